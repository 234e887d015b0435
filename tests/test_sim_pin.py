"""A SIM that asks for its PIN again while the daemon runs (a brown-out): `smsgw run` on two simulated modems.

The simulator's ``pin-required`` fault makes modem 1's SIM restart and want its PIN: ``AT+CPIN?``
answers ``+CPIN: SIM PIN``, sends fail with ``+CMS ERROR: 311`` and incoming SMS wait in the network;
the SIMCom profile also sends ``+CPIN: NOT READY`` and ``+CPIN: SIM PIN`` unasked, as SIMCom and
Quectel modems do (the same URC forms MuditaOS handles for its Quectel modem:
mudita/MuditaOS, module-cellular/at/UrcCpin.hpp, commit 1d2f5cf7a49cf1fb9463d289daa1492a2bec2d1d).

Proved here: the queue does not fail (a send refused with CMS 311 goes back to the queue for the
other modem), the daemon takes the modem out of rotation, enters the PIN once through the PIN
guard and puts it back, and an SMS that arrived meanwhile is received. With no PIN, a rejected
PIN or fewer than two attempts left, the modem stays out of rotation and no PIN is spent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from daemon_helpers import DaemonProcess, write_config
from waiting import async_wait_until

from appliance.store import OutboundRequest, Store
from drivers.simulator import Simulator

pytest_plugins = ["daemon_helpers"]

OUTSIDE = "+49151123456"
PIN = "1234"  # the simulator's SIM PIN after the pin-required fault


def enqueue(db: Path, texts: list[str]) -> list[int]:
    with Store(db) as store:
        # one recipient each: the dispatcher sends to one recipient through one modem at a time
        results = store.enqueue([OutboundRequest(to=f"{OUTSIDE}{n % 100:02d}", text=t, source="test")
                                 for n, t in enumerate(texts)])
        return [r.id for r in results]


def states(db: Path, ids: list[int]) -> dict[int, str]:
    with Store(db) as store:
        return {i: str((store.message(i) or {}).get("state")) for i in ids}


def modem_state(db: Path, modem_id: str) -> dict[str, object]:
    with Store(db) as store:
        return dict(store.state_get("modem", modem_id, {}) or {})


def inbox_texts(db: Path) -> list[str]:
    with Store(db) as store:
        return [str(row["text"]) for row in store.inbox(1000)]


async def start(daemons: list[DaemonProcess], tmp_path: Path, sim: Simulator, pins: list[str | None],
                ping_interval: float = 0.3) -> tuple[DaemonProcess, Path]:
    config = write_config(tmp_path / "gw", sim.ports, pins=pins, ping_interval=ping_interval)
    daemon = await DaemonProcess(config).start()
    daemons.append(daemon)
    await daemon.wait_running()
    db = tmp_path / "gw" / "smsgw.db"
    await async_wait_until(lambda: all(modem_state(db, m).get("state") == "online" for m in ("sim0", "sim1")),
                           timeout=15, what="both modems online")
    return daemon, db


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("profile", "ping_interval"), [("generic", 0.3), ("sim800", 30.0)],
                         ids=["AT+CPIN? in the health check", "+CPIN: URC"])
async def test_sim_asking_for_pin_again_is_unlocked_and_nothing_fails(
        tmp_path: Path, daemons: list[DaemonProcess], profile: str, ping_interval: float) -> None:
    # sim800 with a 30 s ping: only the +CPIN: URC (or a refused send) can notice the SIM in time
    async with Simulator(tmp_path / "sim", modems=2, profile=profile) as sim:
        daemon, db = await start(daemons, tmp_path, sim, [PIN, PIN], ping_interval)
        try:
            first = enqueue(db, [f"before {n}" for n in range(5)])
            await async_wait_until(lambda: set(states(db, first).values()) == {"sent"}, timeout=15,
                                   what="first batch sent")
            sim.fault(1, "pin-required")
            second = enqueue(db, [f"during {n}" for n in range(20)])
            sim.inject(1, "+4917000000001", "arrived while the SIM was locked")
            await async_wait_until(lambda: set(states(db, second).values()) == {"sent"}, timeout=20,
                                   what="second batch sent")
            await async_wait_until(lambda: sim.modems[1].pin_entries == 1 and not sim.modems[1].pin_locked,
                                   timeout=15, what="the PIN entered again")
            await async_wait_until(lambda: modem_state(db, "sim1").get("state") == "online", timeout=15,
                                   what="modem 1 back in rotation")
            await async_wait_until(lambda: "arrived while the SIM was locked" in inbox_texts(db), timeout=15,
                                   what="the SMS held by the network received")
            third = enqueue(db, [f"after {n}" for n in range(10)])
            await async_wait_until(lambda: set(states(db, third).values()) == {"sent"}, timeout=15,
                                   what="third batch sent")
            by_modem = {record["modem"] for record in sim.network.sent if str(record["text"]).startswith("after")}
            with Store(db) as store:
                failed = [m for m in store.outbox(1000) if m["state"] == "failed"]
        finally:
            assert await daemon.stop() == 0
        log = daemon.log_text()
    assert not failed, failed
    assert sim.modems[1].pin_entries == 1  # once, never more
    assert sim.modems[1].pin_attempts == 3
    assert by_modem == {0, 1}, by_modem  # modem 1 sends again
    assert "SIM not ready" in log
    if profile == "sim800":
        assert "SIM state SIM PIN (unsolicited)" in log or "SIM state NOT READY (unsolicited)" in log


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("pin", "attempts_left", "entries"), [
    (None, 3, 0),       # no PIN configured: nothing to enter
    ("9999", 3, 1),     # a wrong PIN: tried once (the SIM says 2 left), never again
    (PIN, 1, 0),        # the right PIN but only 1 attempt left: smsgw never enters it
], ids=["no PIN", "rejected PIN", "one attempt left"])
async def test_locked_sim_stays_out_of_rotation_without_spending_pin_attempts(
        tmp_path: Path, daemons: list[DaemonProcess], pin: str | None, attempts_left: int, entries: int) -> None:
    async with Simulator(tmp_path / "sim", modems=2, profile="generic") as sim:
        daemon, db = await start(daemons, tmp_path, sim, [None, pin])
        try:
            sim.fault(1, f"pin-attempts:{attempts_left}")
            sim.fault(1, "pin-required")
            ids = enqueue(db, [f"msg {n}" for n in range(12)])
            await async_wait_until(lambda: set(states(db, ids).values()) == {"sent"}, timeout=20,
                                   what="every message sent through modem 0")
            # several recovery rounds pass, each looking at the SIM again
            await async_wait_until(
                lambda: len(re.findall(r"sim1 SIM locked; next recovery", daemon.log_text())) >= 3,
                timeout=20, what="three rounds of 'SIM locked'")
            state = modem_state(db, "sim1")
        finally:
            assert await daemon.stop() == 0
    assert state.get("healthy") is False and state.get("state") == "SIM locked", state
    assert {record["modem"] for record in sim.network.sent} == {0}
    assert sim.modems[1].pin_entries == entries
    assert sim.modems[1].pin_attempts == (2 if entries else attempts_left)
    assert sim.modems[1].pin_locked
