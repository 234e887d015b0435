"""Home Assistant discovery through the real MqttBridge and a real mosquitto: the retained configs,
the re-announcement on ``homeassistant/status`` ``online``, and the entities' templates rendered with
Jinja2 (the template engine Home Assistant uses) against the gateway's real payload shapes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from home_assistant import render_command, render_value, simulated_gateway, validate
from mosquitto import Broker, Probe
from waiting import async_wait_until

from appliance.config import Config, parse_config
from appliance.discovery import Discovery, discovery_messages, node_id
from appliance.mqtt import MqttBridge
from appliance.store import Store

pytest_plugins = ["mosquitto"]


def make_config(tmp_path: Path, broker: Broker, **mqtt: Any) -> Config:
    data: dict[str, Any] = {
        "store": {"path": str(tmp_path / "smsgw.db")},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw.test", "reconnect_min": 1,
                 "reconnect_max": 1, **mqtt},
        "modems": [{"id": "modem0", "port": "/dev/null"}, {"id": "modem1", "port": "/dev/null"}],
        "contacts": {"alice": "+4917000000001"},
        "groups": {"oncall": ["alice", "+4917000000002"]},
    }
    return parse_config(data, tmp_path / "smsgw.toml")


STATUS = {"modems": {"modem0": {"id": "modem0", "state": "online", "model": "SIMCOM SIM800",
                                "manufacturer": "SIMCOM", "revision": "1418B05SIM800L24",
                                "imei": "490154203237518"}}}


@pytest.fixture
async def gateway(tmp_path: Path, mosquitto: Broker) -> AsyncIterator[tuple[MqttBridge, Discovery, Probe]]:
    config = make_config(tmp_path, mosquitto)
    store = Store(tmp_path / "smsgw.db")
    probe = Probe(mosquitto, "homeassistant/#")
    probe.subscribed()
    bridge = MqttBridge(config, store, status=lambda: STATUS)
    discovery = Discovery(config, bridge, status=lambda: STATUS)
    await bridge.start()
    await discovery.start()
    try:
        yield bridge, discovery, probe
    finally:
        await discovery.stop()
        await bridge.stop()
        probe.close()
        store.close()


def configs(probe: Probe) -> dict[str, dict[str, Any]]:
    return {topic: json.loads(payload) for topic, payload, _ in probe.snapshot()
            if topic.endswith("/config") and payload}


async def test_announces_gateway_and_modem_devices_retained(gateway: Any, mosquitto: Broker) -> None:
    bridge, discovery, probe = gateway
    expected = len(discovery.messages())
    await async_wait_until(lambda: len(configs(probe)) == expected, what="discovery configs")
    found = configs(probe)
    node = node_id("gw.test")
    assert node == "gw_test"
    queue = found[f"homeassistant/sensor/{node}/queue/config"]
    assert queue["state_topic"] == "smsgw/bridge/info"
    assert queue["device"]["identifiers"] == ["smsgw_gw_test"]
    signal = found[f"homeassistant/sensor/{node}/modem0_signal/config"]
    assert signal["state_topic"] == "smsgw/modem/modem0"
    assert signal["device"]["via_device"] == "smsgw_gw_test"
    assert (signal["device"]["manufacturer"], signal["device"]["model"]) == ("SIMCOM", "SIM800")
    assert signal["device"]["sw_version"] == "1418B05SIM800L24"
    assert signal["device"]["identifiers"] == ["smsgw_gw_test_modem0", "imei_490154203237518"]
    assert signal["device"]["serial_number"] == "490154203237518"
    assert signal["default_entity_id"] == "sensor.gw_test_modem0_signal" and "object_id" not in signal
    assert signal["availability_mode"] == "all"
    assert [a["topic"] for a in signal["availability"]] == ["smsgw/bridge/state", "smsgw/modem/modem0"]
    assert found[f"homeassistant/sensor/{node}/modem1_signal/config"]["device"]["model"] == "GSM modem"
    registration = found[f"homeassistant/binary_sensor/{node}/modem0_registration/config"]
    assert registration["device_class"] == "connectivity"
    event = found[f"homeassistant/event/{node}/received/config"]
    assert (event["state_topic"], event["event_types"]) == ("smsgw/received", ["received"])
    assert found[f"homeassistant/notify/{node}/sms/config"]["command_topic"] == "smsgw/send"
    assert found[f"homeassistant/notify/{node}/sms_alice/config"]["command_topic"] == "smsgw/send"
    assert f"homeassistant/notify/{node}/sms_group_oncall/config" in found
    unique = [c["unique_id"] for c in found.values()]
    assert len(unique) == len(set(unique))
    # Retained: a client that connects later gets every config.
    late = Probe(mosquitto, "homeassistant/#")
    try:
        await async_wait_until(lambda: len(configs(late)) == expected, what="retained configs")
        assert all(retained for topic, _, retained in late.snapshot() if topic.endswith("/config"))
    finally:
        late.close()


async def test_reannounces_when_home_assistant_comes_online(gateway: Any) -> None:
    bridge, discovery, probe = gateway
    expected = len(discovery.messages())
    await async_wait_until(lambda: discovery.announcements == 1, what="first announcement")
    await async_wait_until(lambda: len(probe.snapshot()) >= expected, what="first configs")
    probe.publish("homeassistant/status", b"offline")
    probe.publish("homeassistant/status", b"online")
    await async_wait_until(lambda: discovery.announcements == 2, what="re-announcement")
    topic = "homeassistant/sensor/gw_test/queue/config"
    await async_wait_until(lambda: len([t for t, _, _ in probe.snapshot() if t == topic]) == 2,
                           what="second config for the queue sensor")


async def test_modem_model_from_its_retained_state_is_announced(gateway: Any) -> None:
    bridge, discovery, probe = gateway
    await async_wait_until(lambda: discovery.announcements == 1, what="first announcement")
    topic = "homeassistant/sensor/gw_test/modem1_signal/config"
    await async_wait_until(lambda: probe.payloads(topic), what="modem1 announced")
    assert json.loads(probe.payloads(topic)[-1])["device"]["model"] == "GSM modem"
    probe.publish("smsgw/modem/modem1", json.dumps({"state": "online", "model": "Quectel EC25",
                                                     "imei": "867962040000001"}), retain=True)
    await async_wait_until(lambda: json.loads(probe.payloads(topic)[-1])["device"]["model"] == "Quectel EC25",
                           what="modem1 announced again with its model")
    assert json.loads(probe.payloads(topic)[-1])["device"]["serial_number"] == "867962040000001"
    count = discovery.announcements
    probe.publish("smsgw/modem/modem1", json.dumps({"state": "online", "model": "Quectel EC25",
                                                     "signal": -80}), retain=True)
    probe.publish("homeassistant/status", b"online")  # a marker: handled after the state above
    await async_wait_until(lambda: discovery.announcements == count + 1, what="announcement for the marker")
    # new signal, same model: no extra announcement (only the one for homeassistant/status)
    assert discovery.announcements == count + 1


async def test_fleet_members_are_separate_devices_on_their_own_node_topics(tmp_path: Path,
                                                                            mosquitto: Broker) -> None:
    """With share_group, each member is its own gateway device: availability and state from
    ``smsgw/node/<node>/…``, unique ids per member, commands to the shared ``smsgw/send``; a modem
    state under the member's node topic brings its model into that member's announcement."""
    probe = Probe(mosquitto, "homeassistant/#")
    probe.subscribed()
    members: list[tuple[MqttBridge, Discovery, Store]] = []
    try:
        for name in ("site.a", "site.b"):
            config = make_config(tmp_path, mosquitto, client_id=name, share_group="fleet")
            store = Store(tmp_path / f"{name}.db")
            bridge = MqttBridge(config, store, status=lambda: STATUS)
            discovery = Discovery(config, bridge, status=lambda: STATUS)
            members.append((bridge, discovery, store))
            await bridge.start()
            await discovery.start()
        expected = sum(len(d.messages()) for _, d, _ in members)
        await async_wait_until(lambda: len(configs(probe)) == expected, what="both members' configs")
        found = configs(probe)
        unique = [c["unique_id"] for c in found.values()]
        assert len(unique) == len(set(unique))
        for node in ("site_a", "site_b"):
            base = f"smsgw/node/{node}"
            queue = found[f"homeassistant/sensor/{node}/queue/config"]
            assert queue["state_topic"] == f"{base}/bridge/info"
            assert queue["availability"][0]["topic"] == f"{base}/bridge/state"
            signal = found[f"homeassistant/sensor/{node}/modem0_signal/config"]
            assert signal["state_topic"] == f"{base}/modem/modem0"
            assert [a["topic"] for a in signal["availability"]] == [f"{base}/bridge/state", f"{base}/modem/modem0"]
            assert signal["device"]["identifiers"][0] == f"smsgw_{node}_modem0"
            assert found[f"homeassistant/event/{node}/received/config"]["state_topic"] == f"{base}/received"
            assert found[f"homeassistant/notify/{node}/sms/config"]["command_topic"] == "smsgw/send"
        topic = "homeassistant/sensor/site_b/modem1_signal/config"
        probe.publish("smsgw/node/site_b/modem/modem1", json.dumps({"state": "online", "model": "Quectel EC25"}),
                      retain=True)
        await async_wait_until(lambda: json.loads(probe.payloads(topic)[-1])["device"]["model"] == "Quectel EC25",
                               what="site_b's modem1 announced with its model")
        assert json.loads(probe.payloads("homeassistant/sensor/site_a/modem1_signal/config")[-1])[
            "device"]["model"] == "GSM modem"
    finally:
        for bridge, discovery, store in members:
            await discovery.stop()
            await bridge.stop()
            store.close()
        probe.close()


async def test_disabled_discovery_publishes_nothing(tmp_path: Path, mosquitto: Broker) -> None:
    config = make_config(tmp_path, mosquitto, discovery=False)
    store = Store(tmp_path / "smsgw.db")
    bridge = MqttBridge(config, store)
    discovery = Discovery(config, bridge)
    await bridge.start()
    try:
        await discovery.start()
        await async_wait_until(lambda: bridge.connected, what="bridge connected")
        assert discovery.announcements == 0
    finally:
        await discovery.stop()
        await bridge.stop()
        store.close()


# --- the templates, as Home Assistant would render them --------------------------------------

def render(template: str, payload: dict[str, Any]) -> str:
    return render_value(template, payload)


MESSAGES = {topic.split("/", 1)[1]: payload for topic, payload in discovery_messages(
    prefix="homeassistant", base_topic="smsgw", node="n", modems={"modem0": {}},
    contacts={"alice": "+4917000000001"}, groups={"oncall": ("+4917000000001", "+4917000000002")})}


@pytest.mark.parametrize(("entity", "payload", "expected"), [
    ("n/modem0_signal/config", {"state": "online", "signal": -71}, "-71"),
    ("n/modem0_signal/config", {"state": "online", "signal": {"dbm": -95, "rssi": 9}}, "-95"),
    ("n/modem0_signal/config", {"state": "online"}, "None"),  # HA shows "unknown" for None
    ("n/modem0_operator/config", {"operator": "Vodafone"}, "Vodafone"),
    ("n/modem0_operator/config", {"operator": {"name": "Telekom", "mode": 0}}, "Telekom"),
    ("n/modem0_operator/config", {}, "None"),
    ("n/modem0_registration/config", {"registration": "home"}, "ON"),
    ("n/modem0_registration/config", {"registration": {"state": "roaming"}}, "ON"),
    ("n/modem0_registration/config", {"registration": "searching"}, "OFF"),
    ("n/modem0_registration/config", {}, "OFF"),
    ("n/modem0_state/config", {"state": "recovering"}, "recovering"),
    ("n/queue/config", {"store": {"outbox": {"queued": 4, "sending": 1, "sent": 99}}}, "5"),
    ("n/queue/config", {"queue": {"queued": 2}}, "2"),
    ("n/queue/config", {"version": "0.1.0"}, "0"),
])
def test_state_templates(entity: str, payload: dict[str, Any], expected: str) -> None:
    component = "binary_sensor" if "registration" in entity else "sensor"
    assert render(MESSAGES[f"{component}/{entity}"]["value_template"], payload) == expected


def test_availability_templates() -> None:
    signal = MESSAGES["sensor/n/modem0_signal/config"]
    bridge, modem = signal["availability"]
    assert render(bridge["value_template"], {"state": "online"}) == bridge["payload_available"]
    assert render(modem["value_template"], {"state": "online", "signal": -70}) == "online"
    assert render(modem["value_template"], {"state": "recovering"}) != modem["payload_available"]


def test_event_template_gives_event_type_and_attributes() -> None:
    event = MESSAGES["event/n/received/config"]
    received = {"id": 7, "from": "+4917000000001", "text": "PUMP 7 \"ON\"", "modem": "modem0",
                "sent_at": "2026-01-01T00:00:00Z", "received_at": 1.0, "parts": 1}
    rendered = json.loads(render(event["value_template"], received))
    assert rendered == {"event_type": "received", "id": 7, "from": "+4917000000001",
                        "text": "PUMP 7 \"ON\"", "modem": "modem0"}
    assert rendered["event_type"] in event["event_types"]


def test_notify_templates_render_with_home_assistants_variables() -> None:
    """Rendered as HA's MqttCommandTemplate does (value, entity_id, name, this; see home_assistant.py)."""
    generic = MESSAGES["notify/n/sms/config"]
    request = json.loads(render_command(generic["command_template"], '+4917000000009: Hi "you": 5 min',
                                        entity_id="notify.n_sms", name="SMS"))
    assert request == {"to": "+4917000000009", "text": 'Hi "you": 5 min'}
    alice = MESSAGES["notify/n/sms_alice/config"]
    request = json.loads(render_command(alice["command_template"], "Door open", entity_id="notify.n_sms_alice",
                                        name="SMS alice"))
    assert request == {"to": "+4917000000001", "text": "Door open"}
    group = MESSAGES["notify/n/sms_group_oncall/config"]
    request = json.loads(render_command(group["command_template"], "Door open",
                                        entity_id="notify.n_sms_group_oncall", name="SMS group oncall"))
    assert request == {"to": ["+4917000000001", "+4917000000002"], "text": "Door open"}
    for config in (generic, alice, group):
        assert config["command_topic"] == "smsgw/send"


def test_every_config_passes_home_assistants_discovery_schema() -> None:
    """Keys, required fields, topics, default_entity_id and device info as HA's schemas read them."""
    messages = discovery_messages(prefix="homeassistant", base_topic="smsgw", node="n",
                                  modems={"modem0": {"manufacturer": "Quectel", "model": "Quectel EC25",
                                                     "revision": "EC25EFAR06A03M4G", "imei": "867962040000001"},
                                          "modem1": {}},
                                  contacts={"alice": "+4917000000001"}, groups={"oncall": ("+4917000000001",)})
    problems = {topic: validate(topic, payload) for topic, payload in messages}
    assert {topic: p for topic, p in problems.items() if p} == {}
    ids = [payload["default_entity_id"] for _, payload in messages]
    assert len(ids) == len(set(ids))


def test_modem_sensors_a_home_assistant_user_expects() -> None:
    state = {"state": "online", "signal": {"rssi": 20, "dbm": -73, "percent": 64, "ber": 99},
             "registration": {"state": "home", "act": 7}, "technology": "LTE", "sim": "READY",
             "error": None, "last_error": "AT timeout", "last_error_at": 1767225600.0}
    signal = MESSAGES["sensor/n/modem0_signal/config"]
    assert (signal["device_class"], signal["state_class"], signal["unit_of_measurement"]) == (
        "signal_strength", "measurement", "dBm")
    assert render(signal["value_template"], state) == "-73"
    assert render(MESSAGES["sensor/n/modem0_technology/config"]["value_template"], state) == "LTE"
    assert render(MESSAGES["sensor/n/modem0_sim/config"]["value_template"], state) == "READY"
    attributes = MESSAGES["sensor/n/modem0_state/config"]["json_attributes_template"]
    assert json.loads(render(attributes, state)) == {"error": None, "last_error": "AT timeout",
                                                     "last_error_at": 1767225600.0}
    last = MESSAGES["sensor/n/last_received/config"]
    received = {"id": 3, "from": "+4917000000005", "text": "hi", "modem": "modem0", "parts": 1,
                "sent_at": "2026-01-01T00:00:00+01:00", "received_at": "2026-01-01T00:00:02.000Z"}
    assert last["device_class"] == "timestamp"
    assert render(last["value_template"], received) == "2026-01-01T00:00:02.000Z"
    assert json.loads(render(last["json_attributes_template"], received))["from"] == "+4917000000005"


async def test_removed_contacts_groups_and_modems_are_cleared(tmp_path: Path, mosquitto: Broker) -> None:
    """A config announced before and gone now gets an empty retained payload (HA removes the entity,
    the broker forgets it); what is still configured stays."""
    store = Store(tmp_path / "smsgw.db")
    probe = Probe(mosquitto, "homeassistant/#")
    probe.subscribed()
    try:
        for contacts, groups, modems in (({"alice": "+4917000000001", "bob": "+4917000000003"},
                                          {"oncall": ["alice"]}, ["modem0", "modem1"]),
                                         ({"alice": "+4917000000001"}, {}, ["modem0"])):
            data: dict[str, Any] = {
                "store": {"path": str(tmp_path / "smsgw.db")},
                "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "gw", "reconnect_min": 1,
                         "reconnect_max": 1},
                "modems": [{"id": m, "port": "/dev/null"} for m in modems],
                "contacts": contacts, "groups": groups,
            }
            config = parse_config(data, tmp_path / "smsgw.toml")
            bridge = MqttBridge(config, store)
            discovery = Discovery(config, bridge)
            await bridge.start()
            await discovery.start()
            await async_wait_until(lambda d=discovery: d.announcements == 1, what="announced")  # type: ignore[misc]
            await discovery.stop()
            await bridge.stop()
        late = Probe(mosquitto, "homeassistant/#")
        try:
            await async_wait_until(lambda: configs(late).keys() == {t for t, _ in discovery.messages()},
                                   what=f"only what is configured: {sorted(configs(late))}")
        finally:
            late.close()
        gone = [t for t, p, _ in probe.snapshot() if p == b""]
        assert {t.split("/")[3] for t in gone} >= {"sms_bob", "sms_group_oncall", "modem1_signal"}
    finally:
        probe.close()
        store.close()


# --- through the daemon: `smsgw simulate` + `smsgw run` + mosquitto ---------------------------


async def test_daemon_announces_its_modems_and_their_state_renders(tmp_path: Path, mosquitto: Broker) -> None:
    async with simulated_gateway(tmp_path, mosquitto, "gw-ha", "homeassistant/#", "smsgw/#") as (sim, daemon, probe):
        signal_topic = "homeassistant/sensor/gw-ha/sim0_signal/config"
        await async_wait_until(lambda: probe.payloads(signal_topic), timeout=20,
                               what=f"discovery from the daemon; log: {daemon.log_text()[-2000:]}")

        def reported() -> dict[str, Any]:
            states = [json.loads(p) for p in probe.payloads("smsgw/modem/sim0")]
            return next((m for m in reversed(states) if m.get("state") == "online" and m.get("signal")
                         and m.get("operator") and m.get("registration")), {})

        modem_state = await async_wait_until(reported, timeout=20, what="modem online with its radio state")
        bridge_state = json.loads(probe.payloads("smsgw/bridge/state")[-1])
        # the modem's model, known once it is open, is announced again
        await async_wait_until(
            lambda: json.loads(probe.payloads(signal_topic)[-1])["device"].get("serial_number"),
            timeout=10, what=f"the modem's identity {modem_state.get('model')!r} announced")
        signal = json.loads(probe.payloads(signal_topic)[-1])
        identity = sim.identity()
        assert signal["device"]["serial_number"] == modem_state["imei"] == identity["imei"]
        assert f"imei_{identity['imei']}" in signal["device"]["identifiers"]
        assert signal["device"]["manufacturer"] == modem_state["manufacturer"]
        assert modem_state["model"] == f"{modem_state['manufacturer']} {signal['device']['model']}"
        assert signal["device"]["sw_version"] == modem_state["revision"]
        assert signal["device"]["via_device"] == "smsgw_gw-ha"
        bridge_availability, modem_availability = signal["availability"]
        assert render(bridge_availability["value_template"], bridge_state) == "online"
        assert render(modem_availability["value_template"], modem_state) == "online"
        state = json.loads(probe.payloads("homeassistant/sensor/gw-ha/sim0_state/config")[-1])
        assert render(state["value_template"], modem_state) == "online"
        values = {}
        for component, name in (("sensor", "signal"), ("sensor", "operator"),
                                ("binary_sensor", "registration")):
            entity = json.loads(probe.payloads(f"homeassistant/{component}/gw-ha/sim0_{name}/config")[-1])
            values[name] = render(entity["value_template"], modem_state)
        assert values == {"signal": str(modem_state["signal"]["dbm"]),
                          "operator": modem_state["operator"]["name"], "registration": "ON"}
        # a received SMS becomes a Home Assistant event with its sender and text
        sim.inject("+4917000000005", "Hello HA")
        await async_wait_until(lambda: probe.payloads("smsgw/received"), timeout=20, what="received SMS")
        event = json.loads(probe.payloads("homeassistant/event/gw-ha/received/config")[-1])
        fired = json.loads(render(event["value_template"], json.loads(probe.payloads("smsgw/received")[0])))
        assert (fired["event_type"], fired["from"], fired["text"], fired["modem"]) == (
            "received", "+4917000000005", "Hello HA", "sim0")
