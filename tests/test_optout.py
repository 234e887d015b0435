"""STOP / START: one opt-out list by number (store table ``optout``, schema 4) checked for every
channel by one function (``Store.check_optout``): MQTT, ``smsgw send``, alert rules and command
replies refuse a non-critical message to an opted-out number with an error naming the opt-out;
``priority: "critical"`` still goes; START removes the number; ``smsgw optout`` lists, adds and
removes, audited. Real SQLite files, a real mosquitto, the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mosquitto import Broker
from store_helpers import connection
from test_mqtt_bridge import Rig, wait_json
from test_mqtt_bridge import rig as mqtt_rig  # noqa: F401  (its fixture, as "mqtt_rig"; F811 below)
from test_rules import Clock, _at, _config, _incoming, _outbox

from appliance.intake import RecipientOptedOut, SendRequest
from appliance.migrations import migrate, user_version
from appliance.rules.engine import RulesEngine
from appliance.store import OptedOut, OutboundRequest, Store

pytest_plugins = ["mosquitto"]

ROOT = Path(__file__).resolve().parent.parent
ALICE = "+4917000000001"
BOB = "+4917000000002"


def test_store_list_add_remove_and_the_one_check(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    assert store.optout_add(ALICE, "cli") is True
    assert store.optout_add("017000000001", "cli") is False  # the same subscriber, national form
    assert [r["number"] for r in store.optouts()] == [ALICE]
    with pytest.raises(OptedOut, match=r"\+4917000000001 has opted out \(sent STOP\)"):
        store.enqueue([OutboundRequest(to=BOB, text="a", source="cli"),
                       OutboundRequest(to=ALICE, text="b", source="cli")])
    assert store.outbox(10) == []  # nothing of the batch was written
    [result] = store.enqueue([OutboundRequest(to=ALICE, text="gas leak", source="cli", priority="critical")])
    assert store.outbox(10)[0]["priority"] == "critical"
    assert store.optout_remove(ALICE, "sms:START") is True and store.optout_remove(ALICE, "cli") is False
    store.enqueue([OutboundRequest(to=ALICE, text="back", source="cli")])
    kinds = [(e["kind"], e["detail"]["source"]) for e in reversed(store.audit_log(kind=None))
             if e["kind"].startswith("optout")]
    assert kinds == [("optout_added", "cli"), ("optout_removed", "sms:START")]
    store.close()


def test_schema_4_keeps_the_stops_of_schema_3(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    migrate(conn, target=3)
    conn.execute("INSERT INTO state (namespace, key, value) VALUES ('optout', '170000000', 'true')")
    conn.commit()
    conn.close()
    store = Store(path)
    assert user_version(connection(store)) >= 4 and store.migrated_from == 3
    assert store.opted_out("+49170000000") and store.state_get("optout", "170000000") is None
    store.close()


def test_stop_and_start_by_sms_govern_alerts_and_replies(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    engine = RulesEngine(_config(tmp_path, sources={}), store, None, status=lambda: {"state": "online"},
                         clock=Clock(_at(12)))  # outside the quiet hours
    assert asyncio.run(engine.handle_message(_incoming(store, ALICE, "STOP"))) == "stop"
    assert store.opted_out(ALICE)
    # the confirmation of the STOP reaches her; a later reply does not (refused, audited)
    assert asyncio.run(engine.handle_message(_incoming(store, ALICE, "HELP"))) == "help"
    assert [text for to, text in _outbox(store) if to == ALICE] == [
        "You will get only critical messages now. Send START to get all messages again."]
    [refused] = store.audit_log(kind="reply_refused")
    assert "has opted out" in refused["detail"]["error"]
    # an alert to her and carol: non-critical skips her; a critical one reaches her
    freezer = type(engine.rules.alerts[0])(**{**engine.rules.alerts[0].__dict__, "to": (ALICE, BOB),
                                              "cooldown": 0.0})
    assert len(engine.fire(freezer, "sensors/f/temperature", b'{"temperature": 9}')) == 1
    critical = type(freezer)(**{**freezer.__dict__, "critical": True, "name": "gas"})
    assert len(engine.fire(critical, "sensors/f/temperature", b'{"temperature": 9}')) == 2
    assert asyncio.run(engine.handle_message(_incoming(store, ALICE, "START"))) == "start"
    assert not store.opted_out(ALICE)
    assert _outbox(store)[-1] == (ALICE, "Messages are on again. Send STOP to get only critical ones.")
    store.close()


async def test_mqtt_requests_to_an_opted_out_number_are_refused(mqtt_rig: Rig, mosquitto: Broker) -> None:  # noqa: F811
    bridge = await mqtt_rig.bridge()
    bridge.store.optout_add("+4917612345678", "cli")
    probe = mqtt_rig.probe("smsgw/bridge/response/send")
    probe.subscribed()
    probe.publish("smsgw/send", json.dumps({"to": "+4917612345678", "text": "hi", "transaction": "n"}))
    probe.publish("smsgw/send/004917612345678", "plain")
    probe.publish("smsgw/send", json.dumps({"to": "+4917612345678", "text": "fire", "priority": "critical",
                                            "transaction": "c"}))
    responses = await wait_json(probe, "smsgw/bridge/response/send", 3)
    assert [r["status"] for r in responses] == ["error", "error", "ok"]
    assert all("+4917612345678 has opted out (sent STOP)" in r["error"] for r in responses[:2])
    assert [m["text"] for m in bridge.store.outbox()] == ["fire"]
    with pytest.raises(RecipientOptedOut, match="has opted out"):  # the intake the rules send through
        bridge.requests.intake.submit(SendRequest(to=("+4917612345678",), text="x", source="rule:x"))


def smsgw(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", args[0], "--config", str(config), *args[1:]],
                          capture_output=True, text=True, cwd=ROOT, timeout=30,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_cli_optout_and_send(tmp_path: Path) -> None:
    config = tmp_path / "smsgw.toml"
    config.write_text('[store]\npath = "smsgw.db"\n[[modems]]\nid = "sim0"\nport = "/dev/ttyUSB2"\n'
                      '[numbers]\ndefault_country = "DE"\n')
    assert smsgw(config, "optout", "add", "0170 00000001").stdout.strip() == f"{ALICE} opted out"
    listed = json.loads(smsgw(config, "optout", "list", "--json").stdout)
    assert [(r["number"], r["source"]) for r in listed["optouts"]] == [(ALICE, "cli")]
    refused = smsgw(config, "send", ALICE, "hello")
    assert refused.returncode == 2 and f"{ALICE} has opted out (sent STOP)" in refused.stderr
    assert smsgw(config, "send", "--priority", "critical", ALICE, "gas leak").returncode == 0
    assert smsgw(config, "optout", "remove", ALICE).stdout.strip() == f"{ALICE} opted in again"
    assert smsgw(config, "send", ALICE, "hello").returncode == 0
    assert smsgw(config, "optout", "list").stdout.strip() == "(no number has opted out)"
    bad = smsgw(config, "optout", "add", "not a number")
    assert bad.returncode == 2 and "invalid number" in bad.stderr
    store = Store(tmp_path / "smsgw.db")
    assert [e["kind"] for e in reversed(store.audit_log())] == ["optout_added", "optout_removed"]
    store.close()
