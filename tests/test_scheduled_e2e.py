"""Urgent and scheduled messages end to end: ``smsgw run`` as a subprocess, the simulator's modem over
ptys, a real mosquitto. A ``B/send`` with ``"class": 0`` reaches the simulated network as class 0 in
every part; one with ``send_at`` is held in the store, survives a SIGKILL of the daemon and goes out
once when due; a ``[[schedules]]`` occurrence is sent once on start within its grace and not again
after a SIGKILL and a restart; ``[quiet_hours] hold = true`` holds a normal request until the window
ends while a critical one goes at once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import DaemonProcess
from daemon_helpers import write_config as daemon_config
from mosquitto import Broker, Probe
from test_mqtt_e2e import mqtt_section, responses, state_is
from waiting import async_wait_until

from appliance.store import Store
from drivers.simulator import Simulator

pytest_plugins = ["daemon_helpers", "mosquitto"]

OUTSIDE = "+4915112345678"


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", modems=1, profile="generic") as simulator:
        yield simulator


@pytest.fixture
def probe(mosquitto: Broker) -> Any:
    made = Probe(mosquitto, "smsgw/#")
    yield made
    made.close()


def records(sim: Simulator, text: str) -> list[dict[str, Any]]:
    return [record for record in sim.network.sent if record["text"] == text]


def parts(sim: Simulator, total: int) -> list[dict[str, Any]]:
    return [part for part in sim.network.parts if part["total"] == total]


async def start_daemon(daemons: list[DaemonProcess], config: Path) -> DaemonProcess:
    daemon = await DaemonProcess(config).start()
    daemons.append(daemon)
    await daemon.wait_running(timeout=20)
    assert daemon.running, daemon.log_text()
    return daemon


async def test_flash_and_send_at_over_mqtt_survive_a_sigkill(tmp_path: Path, sim: Simulator, mosquitto: Broker,
                                                             probe: Probe, daemons: list[DaemonProcess]) -> None:
    db = tmp_path / "app" / "smsgw.db"
    config = daemon_config(tmp_path / "app", sim.ports, extra=mqtt_section(mosquitto))
    daemon = await start_daemon(daemons, config)
    await async_wait_until(state_is(probe, "online"), timeout=15, what="online")

    long_text = "GAS ALARM hall 2: leave the building now. " * 5  # two GSM 7-bit parts
    probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": long_text, "class": 0, "transaction": "flash"}))
    probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "Ölstand Tank 2: 5 %", "class": 0,
                                            "transaction": "ucs2"}))
    with Store(db) as store:
        send_at = store.clock() + 4.0
    probe.publish("smsgw/send", json.dumps({
        "to": OUTSIDE, "text": "held until due", "id": "later-1", "transaction": "later",
        "send_at": datetime.fromtimestamp(send_at, UTC).isoformat()}))
    probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "x", "class": 1, "transaction": "bad-class"}))
    probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "x", "send_at": "soon", "transaction": "bad-at"}))
    answers = {r["transaction"]: r for r in await responses(probe, 5)}
    assert answers["flash"]["status"] == answers["ucs2"]["status"] == answers["later"]["status"] == "ok"
    assert answers["bad-class"]["status"] == "error" and "'class' must be 0" in answers["bad-class"]["error"]
    assert answers["bad-at"]["status"] == "error" and "'send_at' is not an ISO 8601 time" in answers["bad-at"]["error"]
    held_id = answers["later"]["data"]["id"]

    await async_wait_until(lambda: records(sim, long_text) and records(sim, "Ölstand Tank 2: 5 %"), timeout=20,
                           what="the flash SMS on the network")
    assert records(sim, long_text)[0]["class"] == 0 and records(sim, long_text)[0]["parts"] == 2
    assert [(part["sequence"], part["class"]) for part in parts(sim, 2)] == [(1, 0), (2, 0)]  # every part
    assert records(sim, "Ölstand Tank 2: 5 %")[0]["class"] == 0  # UCS-2 too
    with Store(db) as store:
        row = store.message(held_id)
        assert row is not None and row["state"] == "queued" and row["send_at"] == pytest.approx(send_at, abs=1e-3)
    assert records(sim, "held until due") == []

    await daemon.kill()  # SIGKILL while the message waits
    await start_daemon(daemons, config)
    await async_wait_until(lambda: records(sim, "held until due"), timeout=30, what="the held SMS after the restart")

    def state() -> str | None:
        with Store(db) as store:
            row = store.message(held_id)
            return None if row is None else str(row["state"])

    # the network has it once the modem answered +CMGS; the TP-MR's commit follows
    await async_wait_until(lambda: state() == "sent", timeout=10, what="the send committed")
    with Store(db) as store:
        (part,) = store.parts(held_id)
        assert part.sent_at is not None and part.sent_at >= send_at - 1e-3
    assert len(records(sim, "held until due")) == 1 and records(sim, "held until due")[0]["class"] is None


async def test_a_schedule_is_sent_once_across_a_sigkill(tmp_path: Path, sim: Simulator,
                                                        daemons: list[DaemonProcess]) -> None:
    now = datetime.now()  # the daemon's local time: the schedule's zone
    text = "Daily summary {date}: {queued} queued, {sent_24h} sent in 24 h"
    extra = "\n".join([
        "", '[contacts]', f'installer = "{OUTSIDE}"',
        "", "[[schedules]]", 'name = "daily"', f'at = "{now:%H:%M}"', 'to = "installer"', f"text = {json.dumps(text)}",
        'grace = "1h"', "flash = true", "",
    ])
    config = daemon_config(tmp_path / "app", sim.ports, extra=extra)
    daemon = await start_daemon(daemons, config)
    expected = f"Daily summary {now:%Y-%m-%d}: 0 queued, 0 sent in 24 h"
    await async_wait_until(lambda: records(sim, expected), timeout=20, what="the occurrence sent on start")
    assert records(sim, expected)[0]["class"] == 0
    await daemon.kill()
    daemon = await start_daemon(daemons, config)
    with Store(tmp_path / "app" / "smsgw.db") as store:
        messages = [m for m in store.outbox(10) if m["source"] == "schedule:daily"]
        assert len(messages) == 1 and messages[0]["client_key"].startswith("schedule:daily:")
        assert store.state_get("schedule", "daily") is not None
    await daemon.stop()
    assert len(records(sim, expected)) == 1


async def test_quiet_hours_that_hold_over_mqtt(tmp_path: Path, sim: Simulator, mosquitto: Broker, probe: Probe,
                                               daemons: list[DaemonProcess]) -> None:
    from datetime import timedelta

    from appliance.timeofday import QuietHours

    now = datetime.now()
    start, end = (now - timedelta(hours=1)).strftime("%H:%M"), (now + timedelta(hours=1)).strftime("%H:%M")
    quiet = "\n".join(["", "[quiet_hours]", f'start = "{start}"', f'end = "{end}"', "hold = true", ""])
    config = daemon_config(tmp_path / "app", sim.ports, extra=mqtt_section(mosquitto) + quiet)
    await start_daemon(daemons, config)
    await async_wait_until(state_is(probe, "online"), timeout=15, what="online")
    probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "weekly report", "transaction": "normal"}))
    probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "FIRE hall 2", "priority": "critical",
                                            "transaction": "critical"}))
    answers = {r["transaction"]: r for r in await responses(probe, 2)}
    await async_wait_until(lambda: records(sim, "FIRE hall 2"), timeout=20, what="the critical SMS at once")
    window = QuietHours.parse(f"{start}-{end}")
    assert window is not None
    with Store(tmp_path / "app" / "smsgw.db") as store:
        held = store.message(answers["normal"]["data"]["id"])
        assert held is not None and held["state"] == "queued"
        assert held["send_at"] == window.end_after(held["created_at"])  # held until the window ends
    assert records(sim, "weekly report") == []
