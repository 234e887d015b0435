"""Retained send requests against a real mosquitto, as mosquitto really delivers them.

What the broker does with the retain flag on delivery (mosquitto 2.0, checked here with real
clients): to an MQTT 5 subscription made with *retain as published* (MQTT 5.0 §3.8.3.1) a live
message keeps the publisher's flag; to an MQTT 3.1.1 subscription a live message always arrives with
the flag cleared (MQTT 3.1.1 §3.3.1.3: "it MUST set the RETAIN flag to 0 when a PUBLISH Packet is
sent to a Client because it matches an established subscription"); only the copy replayed on
subscribe carries the flag. The bridge subscribes to ``B/send`` with MQTT 5 and retain-as-published,
so a retained request is refused whatever protocol its publisher speaks; it also clears it from the
broker so it never comes back.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from mosquitto import Broker
from test_mqtt_bridge import NUMBER, Rig, wait_json
from test_mqtt_bridge import rig as mqtt_rig  # noqa: F401  (its fixture, as "mqtt_rig"; F811 below)
from waiting import async_wait_until, wait_until

pytest_plugins = ["mosquitto"]

RESPONSES = "smsgw/bridge/response/send"


def clear_retained(mosquitto: Broker, topic: str, protocol: str) -> None:
    """``mosquitto_pub -r -n``: an empty retained payload, the way a client clears a retained message."""
    subprocess.run(["mosquitto_pub", *mosquitto.client_args(), "-t", topic, "-q", "1", "-r", "-n", "-V", protocol],
                   check=True, capture_output=True, timeout=10)


def retained_on_broker(mosquitto: Broker, topic: str, rig: Rig) -> list[bytes]:
    """What a new subscriber gets retained on ``topic`` (after a marker that is always there)."""
    mosquitto.pub("test/marker", "m", retain=True)
    probe = rig.probe(topic, "test/marker")
    wait_until(lambda: probe.payloads("test/marker"), what="the retained marker")
    return [p for t, p, retained in probe.snapshot() if t == topic and retained]


@pytest.mark.parametrize("publisher", ["mqttv311", "mqttv5"])
@pytest.mark.parametrize(("topic", "payload"), [
    ("smsgw/send", json.dumps({"to": NUMBER, "text": "stale", "transaction": "r1"})),
    ("smsgw/send/004917612345678", "stale plain text"),
])
async def test_live_retained_request_is_refused_and_cleared(mqtt_rig: Rig, mosquitto: Broker, publisher: str,  # noqa: F811
                                                            topic: str, payload: str) -> None:
    bridge = await mqtt_rig.bridge()  # MQTT 5, the default
    probe = mqtt_rig.probe(RESPONSES)
    probe.subscribed()
    mosquitto.pub(topic, payload, retain=True, extra=("-V", publisher))
    [response] = await wait_json(probe, RESPONSES)
    assert response["status"] == "error" and "retained" in response["error"], response
    assert response["topic"] == topic
    if topic == "smsgw/send":
        assert response["transaction"] == "r1"
    assert bridge.store.outbox() == []
    # cleared: a reconnecting client (or this bridge after a restart) never sees it again
    await async_wait_until(lambda: retained_on_broker(mosquitto, topic, mqtt_rig) == [], what="retained cleared")
    # the empty retained payload that cleared it was delivered too, and got no answer
    probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": "marker", "transaction": "m"}))
    responses = await wait_json(probe, RESPONSES, 2)
    assert [r.get("transaction") for r in responses] == [response.get("transaction"), "m"]
    assert [m["text"] for m in bridge.store.outbox()] == ["marker"]


async def test_clearing_a_retained_request_gets_no_answer(mqtt_rig: Rig, mosquitto: Broker) -> None:  # noqa: F811
    bridge = await mqtt_rig.bridge()
    probe = mqtt_rig.probe(RESPONSES)
    probe.subscribed()
    for publisher in ("mqttv311", "mqttv5"):
        for topic in ("smsgw/send", "smsgw/send/004917612345678"):
            clear_retained(mosquitto, topic, publisher)
    probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": "after", "transaction": "after"}))
    [response] = await wait_json(probe, RESPONSES)
    assert response["transaction"] == "after" and response["status"] == "ok"
    assert bridge.stats()["rejected"] == 0


async def test_mqtt311_bridge_refuses_the_replay_and_clears_it(mqtt_rig: Rig, mosquitto: Broker) -> None:  # noqa: F811
    """With ``protocol = "3.1.1"`` a live retained request cannot be told from another one (the flag
    is cleared on delivery): it is sent once. The broker replays it marked retained on the next
    connect: refused, and cleared, so it is not sent again nor refused on every reconnect."""
    mosquitto.pub("smsgw/send", json.dumps({"to": NUMBER, "text": "stale", "transaction": "r"}), retain=True)
    probe = mqtt_rig.probe(RESPONSES)
    probe.subscribed()
    old = await mqtt_rig.bridge(protocol="3.1.1", client_id="gw-311", db="311.db")
    [response] = await wait_json(probe, RESPONSES)
    assert response["status"] == "error" and "retained" in response["error"]
    await async_wait_until(lambda: retained_on_broker(mosquitto, "smsgw/send", mqtt_rig) == [],
                           what="retained request cleared")
    assert old.store.outbox() == []
    # the clearing (an empty payload, flag cleared on delivery with 3.1.1) is not answered either
    probe.publish("smsgw/send", json.dumps({"to": NUMBER, "text": "live", "transaction": "live"}))
    responses: list[Any] = await wait_json(probe, RESPONSES, 2)
    assert [r.get("transaction") for r in responses] == ["r", "live"]
