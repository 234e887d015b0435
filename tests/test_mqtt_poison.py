"""Poison MQTT payloads: one request that raises must never stall its batch nor survive a restart.

``smsgw run`` as a subprocess, two simulated modems and a real mosquitto. Four payloads that each
raised out of the bridge's batch handler before (a lone surrogate ``"\\ud800"``, a text needing more
than 255 parts, JSON nested 100,000 deep, an integer of 5,000 digits) sit in the middle of 100 good
requests: the 100 are sent, the 4 get error responses and audit rows, and after a restart the broker
has nothing to redeliver (every message was acknowledged). mosquitto keeps unacknowledged QoS 1
messages of a persistent session and sends them again on reconnect (MQTT 5.0 section 4.4, "Message
delivery retry"), which is how a poison request used to come back into the same failure.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import write_config
from mosquitto import Broker, Probe
from test_mqtt_e2e import App, mqtt_section, responses, state_is
from waiting import async_wait_until

from appliance.store import Store
from drivers.simulator import Simulator

pytest_plugins = ["mosquitto"]

OUTSIDE = "+4915112345678"
RESPONSES = "smsgw/bridge/response/send"

#: (topic under smsgw/, payload): each raised something other than a refusal on main
POISON: list[tuple[str, bytes]] = [
    ("send", b'{"to": "+4915112345678", "text": "\\ud800", "transaction": "poison-surrogate"}'),
    ("send/004915112345678", b"x" * 1_000_000),  # 1 MB: more than 255 parts
    ("send", b'{"transaction": "poison-deep", "to": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("send", b'{"to": "+4915112345678", "text": "x", "id": ' + b"7" * 5000 + b', "transaction": "poison-int"}'),
]


def good(n: int) -> tuple[str, bytes]:
    """Request ``n``: every other one on ``B/send/<number>`` (no response), the rest on ``B/send``."""
    if n % 2:
        return "send/004915112345678", f"good {n}".encode()
    return "send", json.dumps({"to": OUTSIDE, "text": f"good {n}", "id": f"g{n}", "transaction": f"t{n}"}).encode()


def batch(first: int, count: int) -> list[tuple[str, bytes]]:
    """``count`` good requests with the four poison payloads spread over the middle."""
    items = [good(n) for n in range(first, first + count)]
    for offset, poison in enumerate(POISON):
        items.insert(count // 3 + offset * (count // 8), poison)
    return items


def sent_texts(sim: Simulator) -> list[str]:
    return [record["text"] for record in sim.network.sent]


def errors(probe: Probe) -> list[dict[str, Any]]:
    return [r for r in probe.json(RESPONSES) if isinstance(r, dict) and r.get("status") == "error"]


async def start_online(app: App, probe: Probe) -> None:
    """Start the daemon and wait for its ``online`` state."""
    await app.start()
    await async_wait_until(state_is(probe, "online"), timeout=15, what="online")


async def restart_answers_only(app: App, probe: Probe, transaction: str) -> None:
    """Restart the daemon and send one request: it is the only one answered (the broker redelivered
    nothing, so every earlier message had been acknowledged)."""
    await app.stop()
    answered = len(probe.json(RESPONSES))
    await app.start()
    probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": transaction, "transaction": transaction}))
    got = await responses(probe, answered + 1, timeout=20)
    assert [r.get("transaction") for r in got[answered:]] == [transaction]


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", modems=2, profile="generic") as simulator:
        yield simulator


async def test_poison_payloads_among_good_requests_live_and_after_restart(
        tmp_path: Path, sim: Simulator, mosquitto: Broker) -> None:
    db = tmp_path / "app" / "smsgw.db"
    config = write_config(tmp_path / "app", sim.ports, extra=mqtt_section(mosquitto))
    probe = Probe(mosquitto, "smsgw/#")
    app = App(config)
    try:
        await start_online(app, probe)

        # 1. live: 100 good requests with 4 poison payloads in the middle
        for topic, payload in batch(0, 100):
            probe.publish(f"smsgw/{topic}", payload)
        await async_wait_until(lambda: len(errors(probe)) >= 4, timeout=20, what="4 error responses")
        await async_wait_until(lambda: len(sim.network.sent) >= 100, timeout=40, what="100 SMS sent")
        assert sorted(sent_texts(sim)) == sorted(f"good {n}" for n in range(100))
        refused = errors(probe)
        assert {r.get("transaction") for r in refused} == {"poison-surrogate", None}
        assert {r["topic"] for r in refused} == {"smsgw/send", "smsgw/send/004915112345678"}
        by_transaction = {r.get("transaction"): r["error"] for r in refused if r.get("transaction")}
        assert "lone surrogate" in by_transaction["poison-surrogate"]
        assert any("number that is too long" in r["error"] for r in refused)
        assert any("255" in r["error"] for r in refused)
        assert any("nested deeper" in r["error"] for r in refused)
        ok = [r for r in probe.json(RESPONSES) if isinstance(r, dict) and r.get("status") == "ok"]
        assert len(ok) == 50  # the even-numbered requests ask for a response (transaction)

        # 2. queued by the broker while the daemon is away, delivered together at its start
        await app.stop()
        for topic, payload in batch(100, 50):
            mosquitto.pub(f"smsgw/{topic}", payload)
        await app.start()
        await async_wait_until(lambda: len(errors(probe)) >= 8, timeout=20, what="4 more error responses")
        await async_wait_until(lambda: len(sim.network.sent) >= 150, timeout=40, what="150 SMS sent")

        # 3. another restart: nothing is redelivered (a sentinel request is answered, and nothing before it)
        await restart_answers_only(app, probe, "sentinel")
        await async_wait_until(lambda: "sentinel" in sent_texts(sim), timeout=20, what="sentinel sent")

        assert sorted(sent_texts(sim)) == sorted([f"good {n}" for n in range(150)] + ["sentinel"])
        assert len(errors(probe)) == 8
        with Store(db) as store:
            # the network has the sentinel before the daemon commits its +CMGS reference: wait for that
            await async_wait_until(lambda: {r["state"] for r in store.outbox(1000)} == {"sent"}, timeout=10,
                                   what="every message committed as sent")
            rows = store.outbox(1000)
            assert len(rows) == 151 and {r["state"] for r in rows} == {"sent"}
            audited = store.audit_log(100, kind="mqtt_request_rejected")
            assert len(audited) == 8
            assert store.state_get("mqtt", "rejected") == 8
        assert "Exception in callback" not in app.log_text()
    finally:
        await app.stop()
        probe.close()


async def test_poison_on_other_subscribed_topics_is_audited_and_acknowledged(
        tmp_path: Path, sim: Simulator, mosquitto: Broker) -> None:
    """A rule's alert topic and Home Assistant's status topic get the same payloads: the handlers may
    refuse them, but each is audited or ignored and acknowledged, and a good request after them works."""
    rules = ('\n[[alerts]]\nname = "freezer"\ntopic = "farm/+/alarm"\nto = ["+4915112345678"]\n'
             'text = "alarm {payload.level}"\ncooldown = 0\n')
    config = write_config(tmp_path / "app", sim.ports, extra=mqtt_section(mosquitto) + rules)
    probe = Probe(mosquitto, "smsgw/bridge/#")
    app = App(config)
    try:
        await start_online(app, probe)
        for _, payload in POISON:
            probe.publish("farm/f1/alarm", payload)
            probe.publish("homeassistant/status", payload)
        probe.publish("farm/f1/alarm", json.dumps({"level": "high"}))
        probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "after", "transaction": "after"}))
        await async_wait_until(lambda: {"alarm high", "after"} <= set(sent_texts(sim)), timeout=20,
                               what="the good alert and request sent")
        await restart_answers_only(app, probe, "again")  # nothing of the poison is left at the broker
        assert "Exception in callback" not in app.log_text()
    finally:
        await app.stop()
        probe.close()
