"""Home Assistant's side of the contract, end to end: `smsgw simulate` + `smsgw run` + mosquitto.

Each notify entity's ``command_template`` is rendered exactly as Home Assistant's ``MqttNotify``
renders it (``value`` and ``entity_id``, ``name``, ``this`` only; sources in home_assistant.py),
the result is published with mosquitto_pub (a real client) to the topic the entity announces, and
the SMS must reach the simulated network. Then the daemon is killed: the broker's last will makes
every entity unavailable, as Home Assistant evaluates ``availability`` (``availability_mode: all``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from home_assistant import render_command, render_value, simulated_gateway, validate
from mosquitto import Broker, Probe
from waiting import async_wait_until

pytest_plugins = ["mosquitto"]

ALICE = "+4917000000001"
BOB = "+4917000000002"
ANYONE = "+4917000000009"


def mosquitto_pub(mosquitto: Broker, topic: str, payload: str) -> None:
    """Publish as any MQTT client would (mosquitto_pub refuses a topic with a wildcard)."""
    subprocess.run(["mosquitto_pub", *mosquitto.client_args(), "-t", topic, "-q", "1", "-m", payload],
                   check=True, capture_output=True, timeout=10)


def latest(probe: Probe) -> dict[str, dict[str, Any]]:
    """The current config per topic (an empty payload removes it), as Home Assistant keeps them."""
    found: dict[str, dict[str, Any]] = {}
    for topic, payload, _ in probe.snapshot():
        if topic.endswith("/config"):
            if payload:
                found[topic] = json.loads(payload)
            else:
                found.pop(topic, None)
    return found


def available(config: dict[str, Any], retained: dict[str, bytes]) -> bool:
    """HA's availability: each entry's value_template applied to its topic's last payload."""
    results = []
    for entry in config["availability"]:
        payload = retained.get(entry["topic"])
        results.append(payload is not None
                       and render_value(entry["value_template"], payload.decode()) == entry["payload_available"])
    return all(results) if config.get("availability_mode") == "all" else results[-1]


async def test_every_notify_entity_sends_through_the_announced_topic(tmp_path: Path, mosquitto: Broker) -> None:
    contacts = f'\n[contacts]\nalice = "{ALICE}"\n\n[groups]\noncall = ["alice", "{BOB}"]\n'
    async with simulated_gateway(tmp_path, mosquitto, "gw-ha", "homeassistant/#", "smsgw/#",
                                 extra=contacts) as (sim, daemon, probe):
        def modem_online() -> bool:
            return any(json.loads(p).get("state") == "online" for p in probe.payloads("smsgw/modem/sim0"))

        await async_wait_until(modem_online, timeout=20, what=f"modem online; log {daemon.log_text()[-2000:]}")
        notify = {}

        def announced() -> bool:
            notify.update({t: c for t, c in latest(probe).items() if "/notify/" in t})
            return len(notify) == 3

        await async_wait_until(announced, timeout=10, what="three notify entities")
        for topic, entity in latest(probe).items():
            assert validate(topic, entity) == [], (topic, entity)
        sends = {
            "homeassistant/notify/gw-ha/sms/config": (f"{ANYONE}: Feed delivered", [(ANYONE, "Feed delivered")]),
            "homeassistant/notify/gw-ha/sms_alice/config": ("Barn door open", [(ALICE, "Barn door open")]),
            "homeassistant/notify/gw-ha/sms_group_oncall/config": (
                "Pump 7 failed", [(ALICE, "Pump 7 failed"), (BOB, "Pump 7 failed")]),
        }
        for topic, (message, expected) in sends.items():
            entity = notify[topic]
            payload = render_command(entity["command_template"], message,
                                     entity_id=entity["default_entity_id"], name=entity["name"])
            mosquitto_pub(mosquitto, entity["command_topic"], payload)
            for number, text in expected:
                sim.wait_sent(number, lambda r, text=text: r.get("text") == text)  # type: ignore[misc]
        errors = [json.loads(p) for p in probe.payloads("smsgw/bridge/response/send")]
        assert [e for e in errors if e.get("status") == "error"] == []

        # every entity is available now ...
        def retained() -> dict[str, bytes]:
            last: dict[str, bytes] = {}
            for topic, payload, _ in probe.snapshot():
                last[topic] = payload
            return last

        entities = latest(probe)
        assert all(available(c, retained()) for c in entities.values()), \
            [t for t, c in entities.items() if not available(c, retained())]
        # ... and unavailable once the daemon is killed (the broker publishes its last will)
        await daemon.kill()
        await async_wait_until(
            lambda: json.loads(retained()["smsgw/bridge/state"]) == {"state": "offline"}, timeout=30,
            what="the last will on smsgw/bridge/state")
        assert [t for t, c in entities.items() if available(c, retained())] == []
