"""Incoming calls end to end over real ptys: the simulator rings like a real modem, the Modem turns
the URCs into one ``IncomingCall`` and one ``CallEnded`` per call, and ``Modem.hang_up`` rejects it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from modem_fixtures import PROFILES, TEST_TIMEOUTS, next_event
from waiting import async_wait_until

from drivers.calls import CallEnded, CallTracker, IncomingCall
from drivers.modem import Modem
from drivers.parsers import CallerId
from drivers.profiles import load_profile
from drivers.simulator import Simulator
from drivers.simulator.flavours import FLAVOURS

CALLER = "+4915112345678"
#: The simulated network rings this often in these tests (real networks: every 3 to 6 seconds).
RING_INTERVAL = 0.05
VOICE_PROFILES = [name for name in PROFILES if FLAVOURS[name].voice]

pytest_plugins = ["modem_fixtures"]


@pytest.fixture(params=VOICE_PROFILES)
def voice_profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def sim(tmp_path: Path, voice_profile: str) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", profile=voice_profile, control=False,
                         ring_interval=RING_INTERVAL) as simulator:
        yield simulator


async def opened(sim: Simulator, **kwargs: object) -> Modem:
    modem = Modem(sim.ports[0], modem_id="modem0", timeouts=dict(TEST_TIMEOUTS), **kwargs)  # type: ignore[arg-type]
    await modem.open()
    return modem


async def test_a_call_is_one_event_with_the_callers_number_and_ends_when_the_caller_gives_up(
        sim: Simulator) -> None:
    modem = await opened(sim)
    try:
        sim.call(0, CALLER, rings=4)
        call = await next_event(modem, IncomingCall)
        assert isinstance(call, IncomingCall)
        assert (call.modem_id, call.number, call.number_type, call.reason) == ("modem0", CALLER, 145, None)
        assert call.at > 0
        ended = await next_event(modem, (IncomingCall, CallEnded))  # no second IncomingCall for the rings
        assert ended == CallEnded("modem0", CALLER, "caller", 4)  # NO CARRIER after the fourth ring
    finally:
        await modem.close()


async def test_hang_up_rejects_the_ringing_call_with_the_profiles_command(
        sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    modem = await opened(sim)
    try:
        sim.call(0, CALLER, rings=1000)
        await next_event(modem, IncomingCall)
        with caplog.at_level(logging.DEBUG, logger="drivers.at"):
            await modem.hang_up()
        sent = modem.profile.hang_up_command
        assert sent == ("ATH" if sim.profile.name in ("sim800", "ec25") else "AT+CHUP")
        assert any(f"-> b'{sent}\\r'" in record.getMessage() for record in caplog.records)
        assert sim.modems[0].call is None  # the simulated network saw the call end
        ended = await next_event(modem, CallEnded)
        assert isinstance(ended, CallEnded) and ended.reason == "hung-up" and ended.number == CALLER
        assert (await modem.signal()).rssi is not None  # the modem goes on answering commands
    finally:
        await modem.close()


async def test_a_withheld_number_is_reported_as_withheld(sim: Simulator) -> None:
    modem = await opened(sim)
    try:
        sim.call(0, None, rings=2)
        call = await next_event(modem, IncomingCall)
        assert isinstance(call, IncomingCall) and call.number is None and call.reason == "withheld"
        assert (await next_event(modem, CallEnded)) == CallEnded("modem0", None, "caller", 2)
    finally:
        await modem.close()


async def test_without_caller_id_the_call_is_reported_at_the_second_ring(sim: Simulator) -> None:
    profile = replace(load_profile(sim.profile.name), call_init_commands=[])  # no AT+CLIP=1
    modem = await opened(sim, profile=profile)
    try:
        sim.call(0, CALLER, rings=5)
        call = await next_event(modem, IncomingCall)
        assert isinstance(call, IncomingCall) and call.number is None and call.reason == "not-sent"
        assert sim.modems[0].call is not None and sim.modems[0].call.rings >= 2
        assert (await next_event(modem, CallEnded)) == CallEnded("modem0", None, "caller", 5)
    finally:
        await modem.close()


async def test_cring_after_at_crc_gives_the_call_type(sim: Simulator) -> None:
    profile = replace(load_profile(sim.profile.name), call_init_commands=["AT+CLIP=1", "AT+CRC=1"])
    modem = await opened(sim, profile=profile)
    try:
        sim.call(0, CALLER, rings=2)
        call = await next_event(modem, IncomingCall)
        assert isinstance(call, IncomingCall) and call.call_type == "VOICE" and call.number == CALLER
    finally:
        await modem.close()


async def test_rings_between_and_during_commands_are_never_taken_for_replies(sim: Simulator) -> None:
    modem = await opened(sim)
    try:
        sim.call(0, CALLER, rings=1000)
        for _ in range(20):
            assert (await modem.signal()).rssi is not None
            assert (await modem.sim_state()) == "READY"
        assert sim.modems[0].call is not None and sim.modems[0].call.rings >= 1
        call = await next_event(modem, IncomingCall)
        assert isinstance(call, IncomingCall) and call.number == CALLER
        await modem.hang_up()
    finally:
        await modem.close()


async def test_a_call_that_stops_ringing_without_a_word_ends_by_silence(sim: Simulator) -> None:
    modem = await opened(sim)
    modem.ring_silence = 0.5
    sim.modems[0].flavour = replace(sim.modems[0].flavour, call_end_urc="")  # says nothing at the end
    try:
        sim.call(0, CALLER, rings=1000)
        await next_event(modem, IncomingCall)
        sim.end_call(0)
        ended = await next_event(modem, CallEnded)
        assert isinstance(ended, CallEnded) and ended.reason == "silence" and ended.number == CALLER
    finally:
        await modem.close()


async def test_caller_id_is_turned_on_again_after_a_soft_reset(sim: Simulator) -> None:
    modem = await opened(sim)
    try:
        await modem.soft_reset()
        await async_wait_until(lambda: sim.modems[0].clip == 1, 5, what="AT+CLIP=1 after the reset")
        sim.call(0, CALLER, rings=2)
        call = await next_event(modem, IncomingCall)
        assert isinstance(call, IncomingCall) and call.number == CALLER
    finally:
        await modem.close()


def test_the_tracker_reports_once_per_call_whatever_order_the_lines_come_in() -> None:
    events: list[object] = []
    tracker = CallTracker("m", events.append, clock=lambda: 1000.0)
    clip = CallerId(CALLER, 145, 0)
    tracker.caller_id(clip)  # some modems send +CLIP before the first RING
    tracker.ring()
    tracker.caller_id(clip)
    tracker.ring()
    tracker.ended("caller")
    tracker.ended("caller")  # a second NO CARRIER: no call, nothing
    tracker.ring("VOICE")
    tracker.ended("hung-up")
    assert events == [
        IncomingCall("m", CALLER, 145, None, "", 1000.0),
        CallEnded("m", CALLER, "caller", 2),
        IncomingCall("m", None, None, "not-sent", "VOICE", 1000.0),
        CallEnded("m", None, "hung-up", 1),
    ]
