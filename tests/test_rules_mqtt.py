"""Rules through a real mosquitto, the real MqttBridge and a real Store (SQLite file): an alert
published on a sensor topic becomes a queued SMS with the rendered text; a command SMS from a listed
sender publishes on the device topic and its reply (from the device's state topic) is queued."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from mosquitto import Broker, Probe
from waiting import async_wait_until

from appliance.config import parse_config
from appliance.mqtt import MqttBridge
from appliance.rules.engine import RulesEngine
from appliance.store import Store
from drivers.pdu import decode, encode_deliver

pytest_plugins = ["mosquitto"]

ALICE, BOB, CAROL, STRANGER = "+4917000000001", "+4917000000002", "+4917000000003", "+4915199999999"

RULES: dict[str, Any] = {
    "contacts": {"alice": ALICE, "bob": BOB},
    "groups": {"staff": ["alice", "bob"]},
    "alerts": [
        {"name": "freezer", "topic": "sensors/+/temperature", "to": ["staff"], "cooldown": "10m",
         "label": "{topic[1]}", "text": "Freezer {topic[1]}: {temperature:.1f} °C", "priority": "high"},
        {"name": "everything", "topic": "sensors/#", "to": [CAROL], "text": "any {topic}"},
        {"name": "bridges", "topic": "+/bridge/#", "to": [CAROL], "text": "bridge {topic}"},
    ],
    "commands": [
        {"name": "pump", "pattern": r"PUMP (?P<n>\d+) (?P<state>ON|OFF)", "senders": ["staff"],
         "pin": "4321", "topic": "farm/pump/{n}/set", "payload": "{state|upper}",
         "reply_topic": "farm/pump/{n}/state", "reply_timeout": 5,
         "reply": "Pump {n} is {payload.state}", "help": "PIN PUMP <n> ON|OFF"},
        {"name": "gate", "pattern": r"GATE (?P<action>OPEN|CLOSE)", "senders": ["alice"],
         "topic": "farm/gate/set", "payload": '{{"action": "{action|lower}", "by": "{sender_name}"}}',
         "reply": "Gate: {action|lower} sent", "qos": 1},
        {"name": "silo", "pattern": r"SILO (?P<n>\d+)", "senders": "*", "topic": "farm/silo/{n}/get",
         "reply_topic": "farm/silo/{n}/level", "reply_timeout": 0.5},
    ],
}


class Rig:
    def __init__(self, tmp_path: Path, broker: Broker, protocol: str = "5") -> None:
        data: dict[str, Any] = {
            "store": {"path": str(tmp_path / "smsgw.db")},
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw-rules", "reconnect_min": 1,
                     "reconnect_max": 1, "protocol": protocol},
            **RULES,
        }
        self.config = parse_config(data, tmp_path / "smsgw.toml")
        self.store = Store(tmp_path / "smsgw.db")
        self.bridge = MqttBridge(self.config, self.store)
        self.engine = RulesEngine(self.config, self.store, self.bridge, status=lambda: {"state": "online"})
        self.broker = broker

    async def start(self) -> None:
        await self.bridge.start()
        await async_wait_until(lambda: self.bridge.connected, what="bridge connected")
        await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()
        await self.bridge.stop()
        self.store.close()

    def sms_in(self, sender: str, text: str) -> None:
        pdu = encode_deliver(sender, text, timestamp=datetime.now().astimezone())[0]
        self.store.add_incoming_part("modem0", pdu, decode(pdu), None, self.store.clock())  # type: ignore[arg-type]

    def outbox(self, to: str | None = None) -> list[dict[str, Any]]:
        return [m for m in reversed(self.store.outbox(200)) if to is None or m["to"] == to]


@pytest.fixture(params=["5", "3.1.1"])
async def rig(tmp_path: Path, mosquitto: Broker, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    r = Rig(tmp_path, mosquitto, request.param)
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def subscribed(rig: Rig, probe_topic: str) -> None:
    """Wait until the engine's subscriptions are active: a marker alert goes through."""
    probe = Probe(rig.broker)
    try:
        # The SUBACK may still be on its way: a probe published before it is not delivered, so
        # publish again (a new payload each time: the engine drops repeated identical payloads).
        n = len(rig.outbox())
        for attempt in range(40):
            probe.publish(probe_topic, json.dumps({"probe": attempt}).encode())
            try:
                await async_wait_until(lambda: len(rig.outbox()) > n, timeout=0.5, what="engine subscribed")
                return
            except AssertionError:
                continue
        raise AssertionError("engine subscribed: no probe alert was queued in 20 s")
    finally:
        probe.close()


async def test_alert_becomes_queued_sms_with_rendered_text_and_coalesces(rig: Rig) -> None:
    await subscribed(rig, "sensors/marker/ready")
    sensor = Probe(rig.broker)
    try:
        sensor.publish("sensors/freezer-3/temperature", json.dumps({"temperature": -4.25}))
        await async_wait_until(lambda: len([m for m in rig.outbox() if m["source"] == "alert:freezer"]) == 2,
                               what="alert queued for both staff")
        for value in (-3, -2, -1):
            sensor.publish("sensors/freezer-3/temperature", json.dumps({"temperature": value}))
        # the catch-all rule sees all four messages; the freezer rule is cooling down
        await async_wait_until(
            lambda: len([m for m in rig.outbox() if m["source"] == "alert:everything"
                         and m["text"] == "any sensors/freezer-3/temperature"]) == 4, what="catch-all alerts")
    finally:
        sensor.close()
    freezer = [m for m in rig.outbox() if m["source"] == "alert:freezer"]
    assert [(m["to"], m["text"], m["priority"]) for m in freezer] == [
        (ALICE, "Freezer freezer-3: -4.2 °C", "high"), (BOB, "Freezer freezer-3: -4.2 °C", "high")]
    assert rig.engine.counters["alerts_coalesced"] == 3
    # the window's state is in the store, so a restart keeps the cooldown
    state = rig.store.state_get("cooldown", "freezer")
    assert state["sensors/freezer-3/temperature"]["suppressed"] == 3


async def test_gateway_topics_never_trigger_alerts(rig: Rig) -> None:
    await subscribed(rig, "sensors/marker/ready")
    before = len(rig.outbox())
    probe = Probe(rig.broker)
    try:
        probe.publish("smsgw/bridge/anything", b"x")
        probe.publish("barn/bridge/door", b"x")  # processed after the first one
        await async_wait_until(lambda: any(m["text"] == "bridge barn/bridge/door" for m in rig.outbox()),
                               what="alert from another bridge topic")
    finally:
        probe.close()
    assert [m["text"] for m in rig.outbox()[before:]] == ["bridge barn/bridge/door"]


async def test_a_send_request_is_queued_once_beside_the_rule_subscriptions(rig: Rig) -> None:
    await subscribed(rig, "sensors/marker/ready")
    probe = Probe(rig.broker)
    try:
        probe.publish("smsgw/send", json.dumps({"to": "+4917000000009", "text": "once"}))
        probe.publish("sensors/marker/after", b"{}")
        await async_wait_until(lambda: any(m["text"] == "any sensors/marker/after" for m in rig.outbox()),
                               what="marker alert")
    finally:
        probe.close()
    assert [m["text"] for m in rig.outbox() if m["to"] == "+4917000000009"] == ["once"]


async def test_command_publishes_on_the_device_topic_and_replies_with_its_state(rig: Rig) -> None:
    device = Probe(rig.broker, "farm/#")
    device.subscribed()
    try:
        rig.sms_in(BOB, "4321 pump 7 on")
        await async_wait_until(lambda: device.payloads("farm/pump/7/set"), what="command published")
        assert device.payloads("farm/pump/7/set") == [b"ON"]
        device.publish("farm/pump/7/state", json.dumps({"state": "ON", "power": 1.2}))
        await async_wait_until(lambda: rig.outbox(BOB), what="reply queued")
    finally:
        device.close()
    [reply] = rig.outbox(BOB)
    assert (reply["text"], reply["source"]) == ("Pump 7 is ON", "command:pump")
    assert rig.store.received_unhandled() == []
    [entry] = rig.store.audit_log(kind="command")
    assert entry["detail"]["topic"] == "farm/pump/7/set"
    assert "4321" not in json.dumps(entry["detail"])


async def test_command_with_fixed_reply_and_json_payload(rig: Rig) -> None:
    device = Probe(rig.broker, "farm/#")
    device.subscribed()
    try:
        rig.sms_in(ALICE, "Gate  OPEN")
        await async_wait_until(lambda: device.payloads("farm/gate/set"), what="gate command")
        assert device.json("farm/gate/set") == [{"action": "open", "by": "alice"}]
    finally:
        device.close()
    await async_wait_until(lambda: rig.outbox(ALICE), what="fixed reply")
    assert rig.outbox(ALICE)[0]["text"] == "Gate: open sent"


async def test_reply_topic_timeout_replies_that_nothing_answered(rig: Rig) -> None:
    rig.sms_in(ALICE, "SILO 3")
    await async_wait_until(lambda: rig.outbox(ALICE), what="timeout reply")
    assert rig.outbox(ALICE)[0]["text"] == "No answer on farm/silo/3/level within 0.5 s"


async def test_unlisted_sender_executes_nothing_but_is_still_on_received(rig: Rig) -> None:
    watcher = Probe(rig.broker, "farm/#", "smsgw/received")
    watcher.subscribed()
    try:
        rig.sms_in(STRANGER, "GATE OPEN")
        await async_wait_until(lambda: watcher.payloads("smsgw/received"), what="received event")
        await async_wait_until(lambda: rig.store.audit_log(kind="unlisted_sender"), what="audit")
    finally:
        watcher.close()
    assert watcher.json("smsgw/received")[0]["from"] == STRANGER  # type: ignore[index]
    assert not watcher.payloads("farm/gate/set")
    assert rig.outbox(STRANGER) == []


async def test_stop_opts_out_of_non_critical_alerts(rig: Rig) -> None:
    rig.sms_in(BOB, "STOP")
    await async_wait_until(lambda: rig.outbox(BOB), what="STOP confirmation")
    await subscribed(rig, "sensors/marker/ready")
    sensor = Probe(rig.broker)
    try:
        sensor.publish("sensors/freezer-9/temperature", json.dumps({"temperature": 5}))
        await async_wait_until(lambda: [m for m in rig.outbox() if m["source"] == "alert:freezer"],
                               what="alert queued")
    finally:
        sensor.close()
    assert [m["to"] for m in rig.outbox() if m["source"] == "alert:freezer"] == [ALICE]


# --- the whole appliance: `smsgw simulate` + `smsgw run` + mosquitto ------------------------


async def test_daemon_runs_alerts_and_commands_end_to_end(tmp_path: Path, mosquitto: Broker) -> None:
    """An SMS injected into the simulated modem drives a device over MQTT, and the reply and an
    alert leave through the simulated network."""
    import contextlib

    from daemon_helpers import DaemonProcess, write_config
    from third_party_fixtures import run_simulator

    def toml_value(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    extra = [
        "", "[mqtt]", f'host = "{mosquitto.host}"', f"port = {mosquitto.port}", 'client_id = "gw-e2e"',
        "reconnect_min = 0.2", "reconnect_max = 1", "discovery = false",
        "", "[contacts]", *(f"{name} = {toml_value(number)}" for name, number in RULES["contacts"].items()),
        "", "[groups]", *(f"{name} = {toml_value(members)}" for name, members in RULES["groups"].items()),
    ]
    for section in ("alerts", "commands"):
        for rule in RULES[section]:
            extra += ["", f"[[{section}]]", *(f"{key} = {toml_value(value)}" for key, value in rule.items())]
    with contextlib.ExitStack() as stack:
        sim = stack.enter_context(run_simulator(tmp_path / "sim"))
        config = write_config(tmp_path / "gw", [sim.port(0)], extra="\n".join(extra) + "\n")
        daemon = DaemonProcess(config)
        device = Probe(mosquitto, "farm/#", "smsgw/#")
        stack.callback(device.close)
        await daemon.start()
        try:
            await async_wait_until(
                lambda: any(json.loads(p).get("state") == "online" for p in device.payloads("smsgw/modem/sim0")),
                timeout=20, what=f"modem online; log: {daemon.log_text()[-2000:]}")
            sim.inject(BOB, "4321 PUMP 7 ON")
            await async_wait_until(lambda: device.payloads("farm/pump/7/set"), timeout=20,
                                   what=f"command published; log: {daemon.log_text()[-2000:]}")
            assert device.payloads("farm/pump/7/set") == [b"ON"]
            device.publish("farm/pump/7/state", json.dumps({"state": "ON"}))
            assert sim.wait_sent(BOB)["text"] == "Pump 7 is ON"

            device.publish("sensors/freezer-3/temperature", json.dumps({"temperature": -1.5}))
            assert sim.wait_sent(ALICE)["text"] == "Freezer freezer-3: -1.5 °C"

            sim.inject(ALICE, "status")
            status = sim.wait_sent(ALICE, lambda record: record["text"].startswith("smsgw"))
            assert "sim0 online" in status["text"]

            sim.inject(STRANGER, "4321 PUMP 7 OFF")
            await async_wait_until(
                lambda: any(json.loads(p).get("from") == STRANGER for p in device.payloads("smsgw/received")),
                timeout=20, what="the stranger's SMS on smsgw/received")
            assert device.payloads("farm/pump/7/set") == [b"ON"]
        finally:
            await daemon.stop()
