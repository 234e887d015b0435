"""End to end over MQTT: the appliance in its own process, a real mosquitto, a real SQLite file.

The PUBACK-after-commit proof: the appliance process dies (``os._exit``) between receiving a
request and committing it; the broker keeps the unacknowledged request in the persistent session and
redelivers it to the restarted appliance, which commits it exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mosquitto import Broker, Probe
from waiting import wait_until

from appliance.store import Store

pytest_plugins = ["mosquitto"]

ROOT = Path(__file__).resolve().parents[1]
NUMBER = "+4917612345678"

# Runs the bridge alone (no modems) with optional crash points, as a separate process.
BRIDGE_SCRIPT = r"""
import asyncio, os, signal, sys
from appliance.config import load_config
from appliance.mqtt import MqttBridge
from appliance.store import Store

crash = os.environ.get("SMSGW_TEST_CRASH")
if crash == "before-commit":
    def enqueue(self, requests, now=None):
        os._exit(17)
    Store.enqueue = enqueue
elif crash == "after-commit":
    original_ack = MqttBridge._ack
    def ack(self, item):
        os._exit(18)
    MqttBridge._ack = ack

async def main():
    config = load_config(sys.argv[1])
    store = Store(config.store.path)
    bridge = MqttBridge(config, store)
    await bridge.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await bridge.stop()
    store.close()

asyncio.run(main())
"""


def write_config(tmp_path: Path, broker: Broker, **mqtt: Any) -> Path:
    lines = [
        "[store]", f'path = "{tmp_path / "smsgw.db"}"', "",
        "[mqtt]", f'host = "{broker.host}"', f"port = {broker.port}", 'client_id = "gw-e2e"',
        "reconnect_min = 1", "reconnect_max = 1",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in mqtt.items()]
    lines += ["", "[numbers]", 'default_country = "DE"']
    path = tmp_path / "smsgw.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Appliance:
    """The bridge in a child process."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, crash: str | None = None) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("SMSGW_TEST_CRASH", None)
        if crash:
            env["SMSGW_TEST_CRASH"] = crash
        self.process = subprocess.Popen([sys.executable, "-c", BRIDGE_SCRIPT, str(self.config)], env=env,
                                        cwd=ROOT, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def appliance(tmp_path: Path, mosquitto: Broker) -> Iterator[Appliance]:
    app = Appliance(write_config(tmp_path, mosquitto), tmp_path / "appliance.log")
    try:
        yield app
    finally:
        app.stop()


def rows(db: Path) -> list[dict[str, Any]]:
    with Store(db) as store:
        return store.outbox(100)


def last_state(probe: Probe) -> Any:
    states = probe.json("smsgw/bridge/state")
    return states[-1] if states else None


@pytest.mark.parametrize("crash, code", [("before-commit", 17), ("after-commit", 18)])
def test_request_survives_a_crash_between_receipt_and_puback(
        tmp_path: Path, mosquitto: Broker, appliance: Appliance, crash: str, code: int) -> None:
    db = tmp_path / "smsgw.db"
    probe = Probe(mosquitto, "smsgw/bridge/#")
    try:
        appliance.start(crash=crash)
        wait_until(lambda: last_state(probe) == {"state": "online"}, what="appliance online")
        request = {"to": NUMBER, "text": "exactly once", "id": "once-1", "transaction": "a"}
        probe.publish("smsgw/send", json.dumps(request))
        assert appliance.wait_exit() == code, appliance.log.read_text()
        # the last will: the broker says the appliance is gone
        wait_until(lambda: last_state(probe) == {"state": "offline"}, what="last will")
        committed = rows(db)
        if crash == "before-commit":
            assert committed == []
        else:
            assert [m["text"] for m in committed] == ["exactly once"]
        assert probe.json("smsgw/bridge/response/send") == []  # nothing answered before the commit

        appliance.start()  # no crash: the broker redelivers the unacknowledged request
        wait_until(lambda: len(probe.json("smsgw/bridge/response/send")) == 1, timeout=20,
                   what=f"redelivered request answered; log:\n{appliance.log.read_text()}")
        [response] = probe.json("smsgw/bridge/response/send")
        assert response["status"] == "ok" and response["transaction"] == "a"
        assert response["data"]["duplicate"] == (crash == "after-commit")
        probe.publish("smsgw/send", json.dumps(request | {"transaction": "b"}))
        wait_until(lambda: len(probe.json("smsgw/bridge/response/send")) == 2)
        assert probe.json("smsgw/bridge/response/send")[1]["data"]["duplicate"] is True
        committed = rows(db)
        assert [(m["text"], m["client_key"]) for m in committed] == [("exactly once", "once-1")]
        appliance.stop()
        wait_until(lambda: last_state(probe) == {"state": "offline"})
    finally:
        probe.close()


def test_requests_queued_by_the_broker_while_the_appliance_is_away(
        tmp_path: Path, mosquitto: Broker, appliance: Appliance) -> None:
    db = tmp_path / "smsgw.db"
    appliance.start()
    probe = Probe(mosquitto, "smsgw/bridge/#")
    try:
        wait_until(lambda: last_state(probe) == {"state": "online"})
        appliance.stop()
        for n in range(10):
            mosquitto.pub("smsgw/send", json.dumps({"to": NUMBER, "text": f"away {n}", "id": f"w{n}"}))
        mosquitto.pub("smsgw/send/01761234567", "plain while away")
        appliance.start()
        wait_until(lambda: len(rows(db)) == 11, timeout=20, what="all queued requests committed")
        texts = sorted(m["text"] for m in rows(db))
        assert texts == sorted([f"away {n}" for n in range(10)] + ["plain while away"])
    finally:
        probe.close()
