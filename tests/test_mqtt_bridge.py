"""The MQTT bridge in-process: a real Store (SQLite file) and a real mosquitto on a free port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from mosquitto import Broker, Probe
from waiting import async_wait_until, wait_until

from appliance import mqtt as mqtt_module
from appliance.config import Config, parse_config
from appliance.mqtt import AUDIT_REJECTED, MqttBridge
from appliance.store import Store

pytest_plugins = ["mosquitto"]

NUMBER = "+4917612345678"


def make_config(tmp_path: Path, broker: Broker, sources: dict[str, Any] | None = None, **mqtt: Any) -> Config:
    data: dict[str, Any] = {
        "store": {"path": str(tmp_path / "smsgw.db")},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "gw-test", "reconnect_min": 1,
                 "reconnect_max": 1, **mqtt},
        "numbers": {"default_country": "DE", "blocked": ["+4915"]},
        "limits": {"max_parts": 3},
    }
    if sources is not None:
        data["sources"] = sources
    return parse_config(data, tmp_path / "smsgw.toml")


class Rig:
    def __init__(self, tmp_path: Path, broker: Broker) -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.stores: list[Store] = []
        self.bridges: list[MqttBridge] = []
        self.probes: list[Probe] = []

    async def bridge(self, *, db: str = "smsgw.db", start: bool = True, sources: dict[str, Any] | None = None,
                     **mqtt: Any) -> MqttBridge:
        config = make_config(self.tmp_path, self.broker, sources, **mqtt)
        store = Store(self.tmp_path / db)
        self.stores.append(store)
        bridge = MqttBridge(config, store, status=lambda: {"modems": [{"id": "modem0"}]})
        self.bridges.append(bridge)
        if start:
            await bridge.start()
            await async_wait_until(lambda: bridge.connected, what="bridge connected")
        return bridge

    def probe(self, *topics: str, **kwargs: Any) -> Probe:
        probe = Probe(self.broker, *topics, **kwargs)
        self.probes.append(probe)
        return probe

    async def close(self) -> None:
        for bridge in self.bridges:
            await bridge.stop()
        for probe in self.probes:
            probe.close()
        for store in self.stores:
            store.close()


@pytest.fixture
async def rig(tmp_path: Path, mosquitto: Broker) -> AsyncIterator[Rig]:
    r = Rig(tmp_path, mosquitto)
    try:
        yield r
    finally:
        await r.close()


async def wait_json(probe: Probe, topic: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
    await async_wait_until(lambda: len(probe.payloads(topic)) >= count, timeout=timeout,
                           what=f"{count} message(s) on {topic}: got {probe.snapshot()[-5:]}")
    return probe.json(topic)


# --- the fixture module itself ----------------------------------------------------------------


def test_mosquitto_fixture_restart_keeps_retained(mosquitto: Broker) -> None:
    mosquitto.pub("t/x", "kept", retain=True)
    mosquitto.restart()  # SIGTERM: persistence written
    probe = Probe(mosquitto, "t/#")
    try:
        probe.subscribed()
        assert probe.payloads("t/x") == [b"kept"]
    finally:
        probe.close()


# --- requests in --------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_send_json_is_committed_answered_and_published(rig: Rig, protocol: str) -> None:
    bridge = await rig.bridge(protocol=protocol)
    probe = rig.probe("smsgw/#")
    probe.subscribed()
    probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": "Freezer 3 is warm", "id": "k1",
                                            "transaction": "t-1", "priority": "high", "report": True}))
    [response] = await wait_json(probe, "smsgw/bridge/response/send")
    assert response["status"] == "ok" and response["transaction"] == "t-1"
    message_id = response["data"]["id"]
    assert response["data"]["state"] == "queued" and response["data"]["to"] == NUMBER
    row = bridge.store.message(message_id)
    assert row is not None and row["text"] == "Freezer 3 is warm" and row["to"] == NUMBER and row["priority"] == "high"
    [event] = await wait_json(probe, f"smsgw/message/{message_id}")
    assert event["state"] == "queued" and event["to"] == NUMBER
    await async_wait_until(lambda: bridge.store.events_pending() == [], what="events marked done")
    assert bridge.stats()["accepted"] == 1


async def test_send_plain_text_to_number_topic_and_national_number(rig: Rig) -> None:
    bridge = await rig.bridge()
    probe = rig.probe("smsgw/message/#")
    probe.subscribed()
    probe.publish("smsgw/send/01761234567", "pump 7 stopped")
    [event] = await wait_json(probe, "smsgw/message/1")
    assert event["to"] == "+491761234567"
    assert bridge.store.message(1)["text"] == "pump 7 stopped"  # type: ignore[index]
    assert bridge.store.message(1)["source"] == "mqtt"  # type: ignore[index]


async def test_id_is_an_idempotency_key_and_lists_fan_out(rig: Rig) -> None:
    bridge = await rig.bridge()
    probe = rig.probe("smsgw/bridge/response/send")
    probe.subscribed()
    request = {"to": [NUMBER, "+4917699999999"], "text": "hello", "id": "same", "transaction": 1}
    probe.publish("smsgw/send", json.dumps(request))
    probe.publish("smsgw/send", json.dumps(request | {"transaction": 2}))
    first, second = await wait_json(probe, "smsgw/bridge/response/send", 2)
    assert [m["duplicate"] for m in first["data"]["messages"]] == [False, False]
    assert [m["duplicate"] for m in second["data"]["messages"]] == [True, True]
    assert [m["id"] for m in first["data"]["messages"]] == [m["id"] for m in second["data"]["messages"]]
    assert len(bridge.store.outbox()) == 2
    assert bridge.stats()["duplicates"] == 2


BAD_REQUESTS = [
    ("smsgw/send", b"{not json", "not JSON"),
    ("smsgw/send", b"\xff\xfe", "not UTF-8"),
    ("smsgw/send", b"[1, 2]", "must be a JSON object"),
    ("smsgw/send", b'{"text": "hi", "transaction": "x"}', "missing 'to'"),
    ("smsgw/send", b'{"to": "+4917612345678", "transaction": "x"}', "missing 'text'"),
    ("smsgw/send", b'{"to": "+4917612345678", "text": "", "transaction": "x"}', "'text' is empty"),
    ("smsgw/send", b'{"to": 4917612345678, "text": "x"}', "'to' must be a phone number"),
    ("smsgw/send", b'{"to": "+49abc", "text": "x", "transaction": "x"}', "destination '+49abc'"),
    ("smsgw/send", json.dumps({"to": NUMBER, "text": "x" * 500, "transaction": "x"}).encode(),
     "text too long: 500 characters need 4 SMS parts, the limit is 3"),
    ("smsgw/send", b'{"to": "+4915112345678", "text": "x", "transaction": "x"}', "blocked by numbers.blocked"),
    ("smsgw/send", b'{"to": "+49900123456", "text": "x", "transaction": "x"}', "premium-rate"),
    ("smsgw/send", b'{"to": "+4917612345678", "text": "x", "priority": "urgent", "transaction": "x"}',
     "unknown priority 'urgent'"),
    ("smsgw/send", b'{"to": "+4917612345678", "text": "x", "valid_for": -5}', "'valid_for' must be"),
    ("smsgw/send", b'{"to": "11833", "text": "x"}', "short code"),
    ("smsgw/send/004917612345678", b"", "'text' is empty"),
    ("smsgw/send/12", b"hello", "destination '12'"),
]


async def test_each_bad_request_is_answered_counted_audited_and_acked(rig: Rig, mosquitto: Broker) -> None:
    bridge = await rig.bridge()
    probe = rig.probe("smsgw/bridge/response/send")
    probe.subscribed()
    for topic, payload, _ in BAD_REQUESTS:
        probe.publish(topic, payload)
    responses = await wait_json(probe, "smsgw/bridge/response/send", len(BAD_REQUESTS))
    for (topic, payload, expected), response in zip(BAD_REQUESTS, responses, strict=True):
        assert response["status"] == "error", (topic, payload)
        assert expected in response["error"], (expected, response)
        assert response["topic"] == topic
        if b'"transaction": "x"' in payload:
            assert response["transaction"] == "x"
    assert bridge.store.outbox() == []
    assert bridge.stats()["rejected"] == len(BAD_REQUESTS)
    assert bridge.store.state_get("mqtt", "rejected") == len(BAD_REQUESTS)
    audited = bridge.store.audit_log(100, kind=AUDIT_REJECTED)
    assert len(audited) == len(BAD_REQUESTS)
    # They were acknowledged: a new bridge on the same session gets none of them again.
    await bridge.stop()
    again = await rig.bridge()
    probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": "after", "transaction": "after"}))
    await async_wait_until(lambda: any(r.get("transaction") == "after" for r in
                                       probe.json("smsgw/bridge/response/send")))
    assert again.stats()["rejected"] == 0 and again.stats()["received"] == 1


# --- daily caps per source ----------------------------------------------------------------------


async def test_daily_cap_refuses_requests_over_the_cap_audits_and_acks_them(rig: Rig) -> None:
    bridge = await rig.bridge(sources={"mqtt": {"daily_cap": 2}})
    probe = rig.probe("smsgw/bridge/response/send")
    probe.subscribed()
    # a list counts one message per recipient: 2 of 2 at once
    probe.publish("smsgw/send", json.dumps({"to": [NUMBER, "+4917699999999"], "text": "a", "id": "k",
                                            "transaction": 1}))
    [first] = await wait_json(probe, "smsgw/bridge/response/send")
    assert first["status"] == "ok"
    for n in (2, 3):
        probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": f"over {n}", "transaction": n}))
    probe.publish("smsgw/send/004917611111111", "over, plain text")
    # an idempotent retry of an accepted request is still answered with the queued messages
    probe.publish("smsgw/send", json.dumps({"to": [NUMBER, "+4917699999999"], "text": "a", "id": "k",
                                            "transaction": "retry"}))
    responses = await wait_json(probe, "smsgw/bridge/response/send", 5)
    by_tx = {r.get("transaction", r.get("topic")): r for r in responses[1:]}
    refused = "daily cap of 2 messages for source 'mqtt' reached (2 accepted today)"
    for key in (2, 3, "smsgw/send/004917611111111"):
        assert by_tx[key]["status"] == "error" and by_tx[key]["error"] == refused, by_tx[key]
    assert by_tx["retry"]["status"] == "ok"
    assert [m["duplicate"] for m in by_tx["retry"]["data"]["messages"]] == [True, True]
    assert len(bridge.store.outbox()) == 2
    assert bridge.stats()["rejected"] == 3 and bridge.store.state_get("mqtt", "rejected") == 3
    assert [e["detail"]["error"] for e in bridge.store.audit_log(10, kind=AUDIT_REJECTED)] == [refused] * 3
    assert len(bridge.store.audit_log(10, kind="cap_exceeded")) == 3
    # acknowledged: a new bridge on the same session gets none of them again
    await bridge.stop()
    again = await rig.bridge(sources={"mqtt": {"daily_cap": 2}})
    probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": "after", "transaction": "after"}))
    await async_wait_until(lambda: any(r.get("transaction") == "after" for r in
                                       probe.json("smsgw/bridge/response/send")))
    assert again.stats()["received"] == 1 and again.stats()["rejected"] == 1


async def test_requests_committed_in_one_batch_do_not_pass_the_cap_together(rig: Rig) -> None:
    bridge = await rig.bridge(sources={"mqtt": {"daily_cap": 3}})
    await bridge.stop()
    probe = rig.probe("smsgw/bridge/response/send")
    probe.subscribed()
    # queued by the broker for the persistent session, then delivered together on reconnect
    for n in range(10):
        probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": f"m{n}", "transaction": n}))
    again = await rig.bridge(sources={"mqtt": {"daily_cap": 3}})
    responses = await wait_json(probe, "smsgw/bridge/response/send", 10)
    assert [r["transaction"] for r in responses if r["status"] == "ok"] == [0, 1, 2]
    assert len(again.store.outbox()) == 3 and again.stats()["rejected"] == 7
    assert again.store.source_usage(0) == {"mqtt": {"accepted": 3, "sent": 0}}


async def test_mqtt_cap_is_shared_by_clients_without_their_own_cap(rig: Rig) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    bridge = await rig.bridge(sources={"mqtt": {"daily_cap": 2}, "mqtt:boiler": {"daily_cap": 1}})
    probe = rig.probe("smsgw/bridge/response/send", protocol=paho.MQTTv5)
    probe.subscribed()

    def send(client: str | None, transaction: str) -> None:
        props = Properties(PacketTypes.PUBLISH)
        if client is not None:
            props.UserProperty = ("source", client)
        probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": transaction, "transaction": transaction}),
                      properties=props)

    for count, (client, transaction) in enumerate([("kitchen", "k1"), (None, "p1"), ("kitchen", "k2"),
                                                   ("boiler", "b1"), ("boiler", "b2")], start=1):
        send(client, transaction)
        await wait_json(probe, "smsgw/bridge/response/send", count)
    responses = {r["transaction"]: r for r in probe.json("smsgw/bridge/response/send")}
    assert {t for t, r in responses.items() if r["status"] == "ok"} == {"k1", "p1", "b1"}
    assert responses["k2"]["error"] == ("daily cap of 2 messages for source 'mqtt' reached (2 accepted today) "
                                        "(request from 'mqtt:kitchen')")
    assert responses["b2"]["error"] == "daily cap of 1 messages for source 'mqtt:boiler' reached (1 accepted today)"
    assert bridge.store.source_usage(0) == {"mqtt": {"accepted": 1, "sent": 0},
                                            "mqtt:boiler": {"accepted": 1, "sent": 0},
                                            "mqtt:kitchen": {"accepted": 1, "sent": 0}}


async def test_mqtt5_response_topic_and_correlation_data(rig: Rig) -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    await rig.bridge()
    probe = rig.probe("replies/me", protocol=paho.MQTTv5)
    probe.subscribed()
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = "replies/me"
    props.CorrelationData = b"abc"
    probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": "x"}), properties=props)
    [response] = await wait_json(probe, "replies/me")
    assert response["status"] == "ok" and response["data"]["id"] == 1


async def test_a_burst_waits_at_the_broker_while_the_loop_is_busy(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """paho's network thread stops reading while READ_BACKLOG messages wait for the asyncio loop, so
    a burst stays at the broker (TCP) instead of in memory; nothing of it is lost. The broker's
    Receive Maximum does not bound this: mosquitto 2.0.11 (Debian 12) sends that many more after
    every PUBACK (eclipse-mosquitto/mosquitto#2301); here the loop is simply held, and the backlog
    (50) is set below the Receive Maximum (500) the broker would send without a PUBACK."""
    monkeypatch.setattr(mqtt_module, "READ_BACKLOG", 50)
    bridge = await rig.bridge()
    count = 300
    probe = rig.probe("smsgw/bridge/response/send")
    probe.subscribed()
    for n in range(count):
        probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": f"burst {n}", "id": f"b{n}"}), qos=1)
    # a synchronous wait in the loop's own thread: the loop drains nothing meanwhile
    wait_until(lambda: bridge.read_pauses >= 1, timeout=30, what="the network thread waiting for the loop")
    with bridge._incoming_room:
        waiting = len(bridge._incoming)
    assert 50 <= waiting < 50 + 10  # what one read of the socket may add beyond the backlog
    await async_wait_until(lambda: bridge.store.stats()["outbox"].get("queued", 0) == count, timeout=60,
                           what=f"all {count} requests committed")
    assert bridge.stats()["accepted"] == count and bridge.stats()["read_pauses"] >= 1


async def test_retained_requests_are_refused(rig: Rig, mosquitto: Broker) -> None:
    mosquitto.pub("smsgw/send", json.dumps({"to": NUMBER, "text": "stale", "transaction": "r"}), retain=True)
    probe = rig.probe("smsgw/bridge/response/send")
    probe.subscribed()
    # MQTT 3.1.1: the broker replays it with the retain flag on subscribe; it is refused, not sent
    old = await rig.bridge(protocol="3.1.1", client_id="gw-311", db="311.db")
    [response] = await wait_json(probe, "smsgw/bridge/response/send")
    assert response["status"] == "error" and "retained" in response["error"] and response["transaction"] == "r"
    assert old.store.outbox() == []
    # MQTT 5: subscribed with retain handling 2, it never arrives
    new = await rig.bridge(protocol="5", client_id="gw-5", db="5.db")
    probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": "live", "transaction": "live"}))
    await async_wait_until(lambda: len(new.store.outbox()) == 1 and len(old.store.outbox()) == 1)
    assert new.stats()["received"] == 1 and new.store.outbox()[0]["text"] == "live"


# --- bridge state, info, subscriptions -------------------------------------------------------------


async def test_state_info_and_connect_listeners_across_a_broker_restart(rig: Rig, mosquitto: Broker) -> None:
    bridge = await rig.bridge()
    connects: list[bool] = []
    seen: list[tuple[str, bytes]] = []

    async def on_alarm(topic: str, payload: bytes) -> None:
        seen.append((topic, payload))

    bridge.add_connect_listener(lambda: connects.append(bridge.connected))
    bridge.subscribe("sensors/+/alarm", on_alarm)
    await async_wait_until(lambda: connects == [True])
    probe = rig.probe("smsgw/bridge/#", "sensors/#")
    probe.subscribed()
    assert probe.json("smsgw/bridge/state")[-1] == {"state": "online"}
    info = probe.json("smsgw/bridge/info")[-1]
    assert isinstance(info, dict)
    assert info["version"] and info["modems"] == [{"id": "modem0"}] and info["config"]["max_parts"] == 3
    probe.publish("sensors/freezer-3/alarm", b"warm")
    await async_wait_until(lambda: seen == [("sensors/freezer-3/alarm", b"warm")])

    mosquitto.restart(kill=True)
    await async_wait_until(lambda: len(connects) == 2, timeout=15, what="reconnect")
    await async_wait_until(lambda: probe.connects >= 2, timeout=15)
    probe.subscribed()
    probe.publish("sensors/pump/alarm", b"dry")
    await async_wait_until(lambda: ("sensors/pump/alarm", b"dry") in seen)

    assert bridge.store.state_get("mqtt", "connection")["connected"] is True
    await bridge.stop()
    await async_wait_until(lambda: probe.json("smsgw/bridge/state")[-1] == {"state": "offline"})
    assert bridge.store.state_get("mqtt", "connection")["connected"] is False


async def test_tls_username_and_acl(tmp_path: Path, broker_factory: Callable[..., Broker]) -> None:
    acl = (
        "user gateway\ntopic readwrite smsgw/#\n"
        "user sensor\ntopic write smsgw/send\ntopic write smsgw/send/#\ntopic read smsgw/bridge/response/send\n"
        "user viewer\ntopic read smsgw/#\n"
    )
    broker = broker_factory(users={"gateway": "gw-secret", "sensor": "s-secret", "viewer": "v-secret"},
                            acl=acl, tls=True, require_certificate=True)
    assert broker.certs is not None and broker.tls_port is not None
    rig = Rig(tmp_path, broker)
    try:
        bridge = await rig.bridge(port=broker.tls_port, username="gateway", password="gw-secret",
                                  tls={"ca": str(broker.certs.ca), "cert": str(broker.certs.client_cert),
                                       "key": str(broker.certs.client_key)})
        sensor = rig.probe("smsgw/bridge/response/send", user="sensor", tls=True)
        viewer = rig.probe("smsgw/#", user="viewer", tls=True)
        sensor.publish("smsgw/send", json.dumps({"to": NUMBER, "text": "over TLS", "transaction": "tls"}))
        [response] = await wait_json(sensor, "smsgw/bridge/response/send")
        assert response["status"] == "ok"
        await wait_json(viewer, f"smsgw/message/{response['data']['id']}")
        # the viewer may not publish requests: the broker drops them, nothing is queued
        viewer.publish("smsgw/send", json.dumps({"to": NUMBER, "text": "denied", "transaction": "v"}))
        sensor.publish("smsgw/send", json.dumps({"to": NUMBER, "text": "marker", "transaction": "m"}))
        await async_wait_until(lambda: len(sensor.payloads("smsgw/bridge/response/send")) == 2)
        assert [m["text"] for m in bridge.store.outbox()] == ["marker", "over TLS"]
    finally:
        await rig.close()


async def test_wrong_password_is_reported_and_retried(rig: Rig, broker_factory: Callable[..., Broker],
                                                       tmp_path: Path) -> None:
    broker = broker_factory(users={"gateway": "right"})
    rig.broker = broker
    bridge = await rig.bridge(start=False, username="gateway", password="wrong")
    await bridge.start()
    await async_wait_until(lambda: bridge.last_error is not None, what="refusal reported")
    assert "refused" in str(bridge.last_error) or "disconnected" in str(bridge.last_error)
    assert not bridge.connected


# --- events out --------------------------------------------------------------------------------------


def add_received(store: Store, n: int) -> None:
    store.add_event("received", {"id": n, "from": NUMBER, "text": f"sms {n}"}, qos=1)


async def test_received_backlog_after_broker_outage_in_order_none_lost(rig: Rig, mosquitto: Broker) -> None:
    bridge = await rig.bridge()
    probe = rig.probe("smsgw/received", client_id="dashboard", clean=False)
    probe.subscribed()
    for n in range(1, 6):
        add_received(bridge.store, n)
    await wait_json(probe, "smsgw/received", 5)
    mosquitto.kill()
    await async_wait_until(lambda: not bridge.connected, what="bridge noticed the outage")
    for n in range(6, 31):
        add_received(bridge.store, n)  # while the broker is down
    assert len(bridge.store.events_pending()) == 25
    mosquitto.start()
    await async_wait_until(lambda: len({m["id"] for m in probe.json("smsgw/received")}) == 30, timeout=20,
                           what="the backlog")
    ids = [m["id"] for m in probe.json("smsgw/received")]
    first_seen = list(dict.fromkeys(ids))
    assert first_seen == list(range(1, 31))  # in order, none lost (QoS 1 may repeat one)
    await async_wait_until(lambda: bridge.store.events_pending() == [], what="all marked done")
    # modem state is retained: a later subscriber gets the last one
    bridge.store.add_event("modem/modem0", {"state": "ready", "signal": 17}, retain=True)
    await async_wait_until(lambda: bridge.store.events_pending() == [])
    late = rig.probe("smsgw/modem/#")
    await async_wait_until(lambda: late.json("smsgw/modem/modem0") == [{"state": "ready", "signal": 17}])


async def test_events_stay_pending_until_puback(rig: Rig, mosquitto: Broker) -> None:
    bridge = await rig.bridge(start=False)
    for n in range(1, 4):
        add_received(bridge.store, n)
    mosquitto.kill()
    await bridge.start()
    await async_wait_until(lambda: bridge._client is not None)
    assert [e.payload["id"] for e in bridge.store.events_pending()] == [1, 2, 3]
    mosquitto.start()
    probe = rig.probe("smsgw/received")
    await async_wait_until(lambda: bridge.store.events_pending() == [], timeout=15)
    assert bridge.stats()["events_published"] == 3
    probe.close()


async def test_shared_subscription_splits_requests_between_two_bridges(rig: Rig) -> None:
    one = await rig.bridge(share_group="fleet", client_id="gw-1", db="one.db")
    two = await rig.bridge(share_group="fleet", client_id="gw-2", db="two.db")
    probe = rig.probe("smsgw/bridge/response/send")
    probe.subscribed()
    for n in range(20):
        probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": f"m{n}", "id": f"k{n}", "transaction": n}))
    await wait_json(probe, "smsgw/bridge/response/send", 20)
    texts = [m["text"] for m in one.store.outbox(100)] + [m["text"] for m in two.store.outbox(100)]
    assert sorted(texts) == sorted(f"m{n}" for n in range(20))
    assert one.store.outbox(100) and two.store.outbox(100)


async def test_fleet_members_publish_their_state_under_their_own_node(rig: Rig) -> None:
    """With share_group, each member's state, info and events are under ``B/node/<node>``; nothing on
    ``B/bridge/state``; ``B/send`` stays shared and every response names the member that answered."""
    probe = rig.probe("smsgw/#")
    probe.subscribed()
    one = await rig.bridge(share_group="fleet", client_id="gw.1", db="one.db")
    two = await rig.bridge(share_group="fleet", client_id="gw-2", db="two.db")
    assert (one.node_id, one.state_base) == ("gw_1", "smsgw/node/gw_1")
    await wait_json(probe, "smsgw/node/gw_1/bridge/state")
    await wait_json(probe, "smsgw/node/gw-2/bridge/state")
    await wait_json(probe, "smsgw/node/gw-2/bridge/info")
    info = probe.json("smsgw/node/gw_1/bridge/info")[-1]
    assert isinstance(info, dict) and info["node_id"] == "gw_1" and info["share_group"] == "fleet"
    one.store.add_event("modem/modem0", {"state": "online"}, retain=True)
    two.store.add_event("modem/modem0", {"state": "offline"}, retain=True)
    await wait_json(probe, "smsgw/node/gw_1/modem/modem0")
    await wait_json(probe, "smsgw/node/gw-2/modem/modem0")
    for n in range(6):
        probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": f"m{n}", "transaction": n}))
    responses = await wait_json(probe, "smsgw/bridge/response/send", 6)
    assert {r["node"] for r in responses} == {"gw_1", "gw-2"}
    for response in responses:
        assert isinstance(response, dict) and response["status"] == "ok"
        await wait_json(probe, f"smsgw/node/{response['node']}/message/{response['data']['id']}")
    assert [t for t, _, _ in probe.snapshot() if t in ("smsgw/bridge/state", "smsgw/bridge/info")
            or t.startswith(("smsgw/modem/", "smsgw/message/"))] == []
    # one member stops: only its own availability goes offline
    await one.stop()
    await async_wait_until(lambda: probe.json("smsgw/node/gw_1/bridge/state")[-1] == {"state": "offline"})
    assert probe.json("smsgw/node/gw-2/bridge/state") == [{"state": "online"}]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_a_subscription_made_while_connecting_takes_effect_once(rig: Rig, protocol: str) -> None:
    """subscribe() after paho's on_connect ran but before the bridge counts as connected is still sent
    to the broker, exactly once (a second SUBSCRIBE would replay the retained message with 3.1.1)."""
    probe = rig.probe("smsgw/bridge/state")
    probe.subscribed()
    probe.publish("sensors/freezer/alarm", b"kept", retain=True)
    bridge = await rig.bridge(start=False, protocol=protocol)
    seen: list[tuple[str, bytes]] = []
    await bridge.start()
    # Hold the asyncio loop (a blocking wait, no await) until paho's on_connect has subscribed and
    # published "online" from its network thread: the bridge's own connected step cannot run yet.
    wait_until(lambda: probe.json("smsgw/bridge/state") == [{"state": "online"}], timeout=10,
               what="paho's on_connect")
    assert not bridge.connected
    bridge.subscribe("sensors/+/alarm", lambda topic, payload: seen.append((topic, payload)))
    await async_wait_until(lambda: seen, what="the retained message of the new subscription")
    assert bridge.connected
    probe.publish("sensors/freezer/alarm", b"live")
    await async_wait_until(lambda: len(seen) >= 2, what="a live message")
    assert seen == [("sensors/freezer/alarm", b"kept"), ("sensors/freezer/alarm", b"live")]


async def test_a_subscription_made_while_the_broker_is_down_is_sent_on_reconnect(rig: Rig, mosquitto: Broker) -> None:
    bridge = await rig.bridge()
    seen: list[bytes] = []
    mosquitto.kill()
    await async_wait_until(lambda: not bridge.connected, what="the bridge notices the broker is gone")
    bridge.subscribe("sensors/+/alarm", lambda topic, payload: seen.append(payload))
    mosquitto.start()
    await async_wait_until(lambda: bridge.connected, timeout=15, what="reconnect")
    probe = rig.probe()
    probe.publish("sensors/pump/alarm", b"dry")
    await async_wait_until(lambda: seen == [b"dry"], what="the alarm through the new subscription")


async def test_events_committed_by_another_process_are_published(rig: Rig) -> None:
    bridge = await rig.bridge()
    probe = rig.probe("smsgw/received")
    probe.subscribed()
    with Store(bridge.store.path) as other:  # e.g. `smsgw send` or a second writer
        add_received(other, 99)
    [message] = await wait_json(probe, "smsgw/received")
    assert message["id"] == 99
    await async_wait_until(lambda: bridge.store.events_pending() == [])


async def test_a_failed_commit_is_retried_and_answered_once(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    bridge = await rig.bridge()
    probe = rig.probe("smsgw/bridge/response/send")
    probe.subscribed()
    real_enqueue = bridge.store.enqueue
    failures: list[int] = []

    def flaky(requests: Any, now: Any = None) -> Any:
        if not failures:
            failures.append(len(requests))
            raise sqlite3.OperationalError("disk I/O error")
        return real_enqueue(requests, now)

    monkeypatch.setattr(bridge.store, "enqueue", flaky)
    probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": "retried", "transaction": "r"}))
    await async_wait_until(lambda: failures, what="the failing commit")
    assert "store commit failed: disk I/O error" in str(bridge.last_error)
    [response] = await wait_json(probe, "smsgw/bridge/response/send")
    assert response["status"] == "ok" and response["transaction"] == "r"
    assert [m["text"] for m in bridge.store.outbox()] == ["retried"]
    assert bridge.stats()["received"] == 1 and bridge.stats()["accepted"] == 1


async def test_tls_insecure_skips_certificate_checks(tmp_path: Path, broker_factory: Callable[..., Broker]) -> None:
    broker = broker_factory(tls=True)
    assert broker.tls_port is not None
    rig = Rig(tmp_path, broker)
    try:
        bridge = await rig.bridge(port=broker.tls_port, tls={"insecure": True})
        assert bridge.connected
        # and without `insecure`, a server certificate from an unknown CA is refused
        other = await rig.bridge(start=False, port=broker.tls_port, tls={"insecure": False}, client_id="strict",
                                 db="strict.db")
        await other.start()
        await async_wait_until(lambda: other.last_error is not None or other.connected, timeout=10)
        assert not other.connected
    finally:
        await rig.close()


async def test_a_handler_that_raises_is_audited_and_its_message_acknowledged(rig: Rig) -> None:
    """Any subscribed topic (rules, discovery): a handler raising on a poison payload costs that
    message only. It is audited (``mqtt_handler_failed``) and acknowledged, so a restarted bridge with
    the same persistent session gets nothing again, and the messages after it are handled."""
    seen: list[bytes] = []

    def sync_handler(topic: str, payload: bytes) -> None:
        json.loads(payload)  # RecursionError on 100,000 brackets
        seen.append(payload)

    async def async_handler(topic: str, payload: bytes) -> None:
        if payload.startswith(b"["):
            raise ValueError("poison")

    bridge = await rig.bridge()
    bridge.subscribe("sensors/+/alarm", sync_handler)
    bridge.subscribe("plant/#", async_handler)
    probe = rig.probe("smsgw/bridge/#")
    probe.subscribed()
    poison = b"[" * 100_000 + b"]" * 100_000
    probe.publish("sensors/a/alarm", poison)
    probe.publish("plant/pump", poison)
    probe.publish("sensors/a/alarm", b'{"level": 1}')
    await async_wait_until(lambda: seen == [b'{"level": 1}'], what="the good message after the poison")
    await async_wait_until(lambda: len(bridge.store.audit_log(kind="mqtt_handler_failed")) == 2)
    errors = sorted(entry["detail"]["error"] for entry in bridge.store.audit_log(kind="mqtt_handler_failed"))
    assert errors[0].startswith("the request could not be handled (RecursionError")
    assert errors[1] == "the request could not be handled (ValueError: poison)"
    await bridge.stop()

    again = await rig.bridge()  # same client id, persistent session: unacknowledged messages would come back
    again.subscribe("sensors/+/alarm", sync_handler)
    probe.publish("sensors/a/alarm", b'{"level": 2}')
    await async_wait_until(lambda: len(seen) == 2, what="the next message")
    assert seen == [b'{"level": 1}', b'{"level": 2}']
