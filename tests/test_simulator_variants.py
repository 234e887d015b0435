"""The reply variants real modems send, produced by the simulator and understood by the driver.

+CMGR headers (``0,,24``, ``,,27``, ``0,23``, ``24``) switched at run time with the ``cmgr-header``
fault, and Huawei's spaced, unquoted +CREG, each read through the real Modem over a pty.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modem_fixtures import make_modem, next_event

from drivers.modem import IncomingSms, Modem
from drivers.simulator import Simulator
from drivers.simulator.flavours import CMGR_HEADERS


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", modems=1, profile="generic", control=False) as simulator:
        yield simulator


@pytest.fixture
async def modem(sim: Simulator) -> AsyncIterator[Modem]:
    opened = make_modem(sim, 0, profile="generic")
    await opened.open()
    yield opened
    await opened.close()


@pytest.mark.parametrize("variant", list(CMGR_HEADERS))
async def test_every_cmgr_header_variant_is_read(sim: Simulator, modem: Modem, variant: str) -> None:
    sim.fault(0, f"cmgr-header:{variant}")
    sim.inject(0, "+4917012345678", f"header {variant}")
    event = await next_event(modem, IncomingSms)
    assert isinstance(event, IncomingSms) and event.error is None and event.deliver is not None
    assert event.deliver.text == f"header {variant}" and event.deliver.number == "+4917012345678"
    assert event.index is not None
    stored = await modem.read_message(event.index)
    assert stored.message == event.deliver
    if variant in ("no-stat", "length-only"):
        assert stored.stat is None
    else:
        assert stored.stat in (0, 1)  # unread, or read by the first AT+CMGR


async def test_the_simulator_sends_the_named_header(sim: Simulator, modem: Modem) -> None:
    sim.inject(0, "+4917012345678", "raw")
    event = await next_event(modem, IncomingSms)
    assert isinstance(event, IncomingSms) and event.index is not None
    for variant, header in (("no-stat", r"^\+CMGR: ,,\d+$"), ("no-alpha", r"^\+CMGR: [01],\d+$"),
                            ("length-only", r"^\+CMGR: \d+$"), ("standard", r"^\+CMGR: [01],,\d+$")):
        sim.fault(0, f"cmgr-header:{variant}")
        lines = (await modem.command(f"AT+CMGR={event.index}")).lines
        assert any(re.match(header, line) for line in lines), (variant, lines)


def test_unknown_header_variant_is_refused(sim: Simulator) -> None:
    with pytest.raises(ValueError, match="cmgr-header takes one of standard, no-stat, no-alpha, length-only"):
        sim.fault(0, "cmgr-header:wavecom")


async def test_huawei_spaced_registration_is_parsed(tmp_path: Path) -> None:
    async with Simulator(tmp_path / "hw", modems=1, profile="e3372", control=False) as simulator:
        modem = make_modem(simulator, 0, profile="e3372")
        await modem.open()
        try:
            await modem.command("AT+CREG=2")
            lines = (await modem.command("AT+CREG?")).lines
            assert lines == ["+CREG: 2, 1, 1A2B, 01C3D4E5"]
            registration = await modem.registration()
            assert registration.registered and (registration.lac, registration.cell_id) == ("1A2B", "01C3D4E5")
        finally:
            await modem.close()
