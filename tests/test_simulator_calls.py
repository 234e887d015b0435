"""The simulator's incoming calls over a raw pty: the URCs real modems send, ATH/AT+CHUP/ATA, the
caller giving up, and the control socket's ``call`` / ``end-call`` requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_simulator import PtyClient

from drivers.simulator import Simulator
from drivers.simulator.control import request

CALLER = "+4915112345678"
RING_INTERVAL = 0.05


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", modems=2, ring_interval=RING_INTERVAL) as simulator:
        yield simulator


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[PtyClient]:
    opened = PtyClient(sim.ports[0])
    await opened.command("ATE0")
    yield opened
    opened.close()


async def test_a_call_rings_with_caller_id_until_the_caller_gives_up_then_no_carrier(
        sim: Simulator, client: PtyClient) -> None:
    await client.command("AT+CLIP=1")
    assert await client.command("AT+CLIP?") == "\r\n+CLIP: 1,1\r\n\r\nOK\r\n"
    assert sim.call(0, CALLER, rings=3) == {"from": CALLER, "rings": 1, "state": "ringing"}
    ring = f'\r\nRING\r\n\r\n+CLIP: "{CALLER}",145,,,,0\r\n'.encode()
    for _ in range(3):
        assert (await client.expect(ring)).endswith(ring)
    assert await client.expect(b"\r\nNO CARRIER\r\n") == b"\r\nNO CARRIER\r\n"  # nothing rang in between
    assert sim.modems[0].call is None


async def test_without_at_clip_only_ring_and_with_at_crc_cring_voice(sim: Simulator, client: PtyClient) -> None:
    sim.call(0, CALLER, rings=1)
    assert await client.expect(b"\r\nNO CARRIER\r\n") == b"\r\nRING\r\n\r\nNO CARRIER\r\n"  # caller ID is off by default
    await client.command("AT+CRC=1;+CLIP=1")
    sim.call(0, "030123456", rings=1)  # a national number: type 129
    assert await client.expect(b"\r\nNO CARRIER\r\n") == (
        b'\r\n+CRING: VOICE\r\n\r\n+CLIP: "030123456",129,,,,0\r\n\r\nNO CARRIER\r\n')


async def test_a_withheld_number_and_the_sim800_form_of_clip(tmp_path: Path) -> None:
    async with Simulator(tmp_path / "sim", profile="sim800", ring_interval=RING_INTERVAL) as sim:
        client = PtyClient(sim.ports[0])
        try:
            await client.command("ATE0;+CLIP=1")
            sim.call(0, CALLER, rings=1)
            await client.expect(f'\r\n+CLIP: "{CALLER}",145,"",0,"",0\r\n'.encode())
            await client.expect(b"\r\nNO CARRIER\r\n")
            sim.call(0, None, rings=1)
            await client.expect(b'\r\n+CLIP: "",128,"",0,"",1\r\n')
        finally:
            client.close()


@pytest.mark.parametrize("hang_up", ["ATH", "AT+CHUP"])
async def test_hanging_up_ends_the_call_with_only_ok(sim: Simulator, client: PtyClient, hang_up: str) -> None:
    sim.call(0, CALLER, rings=1000)
    await client.expect(b"\r\nRING\r\n")
    reply = await client.command(hang_up)
    assert reply.endswith("\r\nOK\r\n") and "NO CARRIER" not in reply
    assert sim.modems[0].call is None and sim.describe()[0]["call"] is None
    assert "NO CARRIER" not in await client.command("AT")  # the caller is not told NO CARRIER by the modem
    with pytest.raises(ValueError, match="no call to end"):
        sim.end_call(0)


async def test_an_answered_call_stops_ringing_and_the_caller_hanging_up_says_no_carrier(
        sim: Simulator, client: PtyClient) -> None:
    assert (await client.command("ATA")).endswith("ERROR\r\n")  # nothing rings
    sim.call(0, CALLER, rings=1000)
    await client.expect(b"\r\nRING\r\n")
    assert (await client.command("ATA")).endswith("\r\nOK\r\n")
    assert sim.describe()[0]["call"]["state"] == "active"
    assert sim.end_call(0)["state"] == "ended"
    await client.expect(b"\r\nNO CARRIER\r\n")


async def test_calls_that_cannot_ring_are_refused_naming_the_reason(tmp_path: Path, sim: Simulator) -> None:
    with pytest.raises(ValueError, match="phone number"):
        sim.call(0, "not a number")
    with pytest.raises(ValueError, match="at least once"):
        sim.call(0, CALLER, rings=0)
    sim.fault(0, "no-network")
    with pytest.raises(ValueError, match="not reachable"):
        sim.call(0, CALLER)
    sim.call(1, CALLER, rings=1000)
    with pytest.raises(ValueError, match="already in a call"):
        sim.call(1, CALLER)
    async with Simulator(tmp_path / "stick", profile="e3372", control=False) as stick:
        with pytest.raises(ValueError, match="no voice service"):
            stick.call(0, CALLER)


async def test_control_socket_places_and_ends_calls(sim: Simulator, client: PtyClient) -> None:
    def ask(message: dict[str, object]) -> dict[str, object]:
        return request(sim.directory, message)

    reply = await asyncio.to_thread(ask, {"action": "call", "modem": 0, "from": CALLER, "rings": 1000})
    assert reply == {"ok": True, "modem": 0, "call": {"from": CALLER, "rings": 1, "state": "ringing"}}
    await client.expect(b"\r\nRING\r\n")
    status = await asyncio.to_thread(ask, {"action": "status"})
    assert status["modems"][0]["call"]["from"] == CALLER  # type: ignore[index]
    reply = await asyncio.to_thread(ask, {"action": "end-call", "modem": 0})
    assert reply["ok"] is True and reply["call"]["state"] == "ended"  # type: ignore[index]
    await client.expect(b"\r\nNO CARRIER\r\n")
    reply = await asyncio.to_thread(ask, {"action": "call", "modem": 0, "from": None, "rings": 1})
    assert reply["ok"] is True and reply["call"]["from"] is None  # type: ignore[index]
    for bad, error in [
        ({"action": "call", "modem": 0, "from": 4917}, "'from'"),
        ({"action": "call", "modem": 0, "from": CALLER, "rings": 0}, "'rings'"),
        ({"action": "call", "modem": 7, "from": CALLER}, "no modem 7"),
        ({"action": "end-call", "modem": 1}, "no call to end"),
        ({"action": "ring"}, "known: inject, fault, call, end-call, status"),
    ]:
        reply = await asyncio.to_thread(ask, bad)
        assert reply["ok"] is False and error in str(reply["error"]), (bad, reply)
