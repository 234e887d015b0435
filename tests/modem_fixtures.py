"""Fixtures for the Modem tests: a simulator per test, Modems on its ptys, short timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.modem import Modem, ModemEvent, forget_pin_rejection
from drivers.profiles import profile_names
from drivers.simulator import Simulator
from drivers.simulator.flavours import FLAVOURS

#: The profiles the simulator mimics (the others are tested against recorded transcripts).
PROFILES = [name for name in profile_names() if name in FLAVOURS]

#: Short timeouts for tests: the simulator answers at once, so only faults wait this long.
TEST_TIMEOUTS = {"command": 2.0, "send": 5.0, "cmgl": 5.0, "sync": 0.5, "boot": 5.0, "ussd": 5.0}
#: How long a test waits for an event that should come.
EVENT_TIMEOUT = 5.0


@pytest.fixture(params=PROFILES)
def profile_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def simulator(tmp_path: Path, profile_name: str) -> AsyncIterator[Simulator]:
    sim = Simulator(tmp_path / "sim", modems=2, profile=profile_name)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def make_modem(sim: Simulator, index: int = 0, **kwargs: object) -> Modem:
    options: dict[str, object] = {"modem_id": f"modem{index}", "timeouts": dict(TEST_TIMEOUTS)}
    options.update(kwargs)
    return Modem(sim.ports[index], **options)  # type: ignore[arg-type]


@pytest.fixture
async def modems(simulator: Simulator) -> AsyncIterator[list[Modem]]:
    opened = [make_modem(simulator, 0), make_modem(simulator, 1)]
    try:
        for modem in opened:
            await modem.open()
        yield opened
    finally:
        for modem in opened:
            await modem.close()
            forget_pin_rejection(modem.port)


async def next_event(modem: Modem, kind: type[ModemEvent] | tuple[type, ...], timeout: float = EVENT_TIMEOUT) -> ModemEvent:
    """The next event of ``kind`` on ``modem.events`` (others before it are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no {kind} event within {timeout}s")
        try:
            event = await asyncio.wait_for(modem.events.get(), remaining)
        except TimeoutError:
            raise AssertionError(f"no {kind} event within {timeout}s") from None
        if isinstance(event, kind):
            return event
