"""Incoming calls as triggers, end to end: ``smsgw run`` as a subprocess on the simulator's modem (real
ptys), a real mosquitto, the real store.

The simulator rings the way real modems do (``drivers/simulator/calls.py``: ``RING`` followed by
``+CLIP: "<number>",145,,,,0`` per 3GPP TS 27.007 7.6, and ``+CLIP: "",128,,,,1`` for a withheld
number; the captures are cited there and in tests/test_simulator_calls.py). A call from an allowed
number is published on ``B/call``, hung up with the profile's ``AT+CHUP`` (firmware_cfg/generic.toml),
publishes the rule's action and queues the receipt; a withheld or unlisted caller gets only ``B/call``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from config_errors import config_error
from daemon_helpers import DaemonProcess, write_config
from mosquitto import Broker, Probe
from waiting import async_wait_until

from appliance.config import parse_config
from drivers.simulator import Simulator
from drivers.simulator.calls import SimCall

pytest_plugins = ["mosquitto", "daemon_helpers"]

ALICE, BOB, STRANGER = "+4917000000001", "+4917000000002", "+4915199999999"
#: Rings the simulator sends every RING_INTERVAL seconds before the caller gives up (NO CARRIER).
RINGS, RING_INTERVAL = 20, 0.25

RULES = f"""
[contacts]
alice = "{ALICE}"
bob = "{BOB}"

[groups]
staff = ["alice", "bob"]

[[call_rules]]
name = "gate"
callers = ["staff"]
topic = "farm/gate/set"
payload = '{{{{"action": "open", "by": "{{caller_name}}", "modem": "{{modem}}"}}}}'
receipt = "Gate opening, {{caller_name}}"

[[call_rules]]
name = "light"
callers = ["bob"]
topic = "farm/light/set"
payload = "ON"
"""


def mqtt_table(broker: Broker) -> str:
    return (f'\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "gw-calls"\n'
            "reconnect_min = 1\nreconnect_max = 1\n")


def debug_log(config: Path) -> Path:
    """``log_level = "debug"``: the daemon's log then shows every AT command it writes (drivers/at.py)."""
    config.write_text('log_level = "debug"\n' + config.read_text())
    return config


class Rig:
    def __init__(self, tmp_path: Path, broker: Broker, extra: str = "") -> None:
        self.extra = extra
        self.tmp_path = tmp_path
        self.broker = broker
        self.sim = Simulator(tmp_path / "sim", modems=1, ring_interval=RING_INTERVAL)
        self.daemon: DaemonProcess | None = None
        self.config = tmp_path / "unset"

    async def start(self) -> None:
        await self.sim.start()
        self.config = debug_log(write_config(self.tmp_path / "gw", self.sim.ports,
                                             extra=mqtt_table(self.broker) + RULES + self.extra))
        self.daemon = DaemonProcess(self.config)
        await self.daemon.start()
        await self.daemon.wait_running(20)
        assert self.daemon.running, self.daemon.log_text()
        # caller ID is on once the profile's [calls] init_commands ran (AT+CLIP=1)
        await async_wait_until(lambda: self.sim.modems[0].clip and '"state": "online"' in self.modem_state(),
                               timeout=15, what="modem online with caller ID on")

    def modem_state(self) -> str:
        with sqlite3.connect(self.tmp_path / "gw" / "smsgw.db") as conn:
            row = conn.execute("SELECT value FROM state WHERE namespace = 'modem' AND key = 'sim0'").fetchone()
        return str(row[0]) if row else ""

    def audit(self, kind: str) -> list[dict[str, Any]]:
        with sqlite3.connect(self.tmp_path / "gw" / "smsgw.db") as conn:
            rows = conn.execute("SELECT detail FROM audit WHERE kind = ? ORDER BY id", (kind,)).fetchall()
        return [json.loads(row[0]) for row in rows]

    def log(self) -> str:
        assert self.daemon is not None
        return self.daemon.log_text()

    def call(self, caller: str | None) -> SimCall:
        self.sim.call(0, caller, rings=RINGS)
        call = self.sim.modems[0].call
        assert call is not None
        return call

    async def stop(self) -> None:
        if self.daemon is not None and self.daemon.running:
            assert await self.daemon.stop() == 0, self.log()[-3000:]
        await self.sim.stop()


@pytest.fixture
async def rig(tmp_path: Path, mosquitto: Broker) -> AsyncIterator[Rig]:
    rig = Rig(tmp_path, mosquitto)
    try:
        await rig.start()
        yield rig
    finally:
        await rig.stop()


def hang_ups(log: str) -> int:
    """``AT+CHUP`` commands the daemon wrote to the modem (drivers/at.py logs every write at debug)."""
    return log.count("-> b'AT+CHUP\\r'")


async def test_a_call_from_an_allowed_number_opens_the_gate_is_hung_up_and_gets_a_receipt(rig: Rig) -> None:
    probe = Probe(rig.broker, "smsgw/call", "farm/#")
    try:
        probe.subscribed()
        call = rig.call(ALICE)
        events = await async_wait_until(lambda: probe.json("smsgw/call"), timeout=15, what="B/call published")
        assert len(events) == 1
        event = events[0]
        assert isinstance(event, dict)
        assert event["from"] == ALICE and event["modem"] == "sim0" and "reason" not in event
        assert event["at"].endswith("Z")
        gate = await async_wait_until(lambda: probe.json("farm/gate/set"), timeout=10, what="gate action")
        assert gate == [{"action": "open", "by": "alice", "modem": "sim0"}]
        assert probe.payloads("farm/light/set") == []  # bob's rule does not list alice
        # hung up by the gateway: the call ended before the caller gave up, without NO CARRIER
        await async_wait_until(lambda: call.state == "ended", timeout=10, what="call hung up")
        assert call.rings < RINGS
        await async_wait_until(lambda: hang_ups(rig.log()) == 1, timeout=10, what="AT+CHUP in the AT log")
        receipts = await async_wait_until(
            lambda: [r for r in rig.sim.network.sent if r["to"] == ALICE], timeout=20, what="receipt SMS sent")
        assert receipts[0]["text"] == "Gate opening, alice"
        await async_wait_until(lambda: [a["rule"] for a in rig.audit("call_rule")] == ["gate"], timeout=10,
                               what="rule audited")
        assert rig.audit("call_ignored") == []
    finally:
        probe.close()


async def test_one_call_fires_every_rule_that_lists_the_caller(rig: Rig) -> None:
    probe = Probe(rig.broker, "smsgw/call", "farm/#")
    try:
        probe.subscribed()
        rig.call(BOB)
        await async_wait_until(lambda: probe.payloads("farm/light/set") == [b"ON"], timeout=15, what="light")
        await async_wait_until(lambda: len(probe.json("farm/gate/set")) == 1, timeout=10, what="gate")
        await async_wait_until(lambda: [a["rule"] for a in rig.audit("call_rule")] == ["gate", "light"],
                               timeout=10, what="both rules audited")
    finally:
        probe.close()


@pytest.mark.parametrize("caller", [None, STRANGER], ids=["withheld", "unlisted"])
async def test_a_withheld_or_unlisted_caller_is_published_and_hung_up_but_triggers_nothing(
        rig: Rig, caller: str | None) -> None:
    probe = Probe(rig.broker, "smsgw/call", "farm/#")
    try:
        probe.subscribed()
        call = rig.call(caller)
        events = await async_wait_until(lambda: probe.json("smsgw/call"), timeout=15, what="B/call published")
        expected: dict[str, Any] = {"from": caller, "modem": "sim0"}
        if caller is None:
            expected["reason"] = "withheld"
        assert isinstance(events[0], dict)
        assert {k: v for k, v in events[0].items() if k != "at"} == expected
        await async_wait_until(lambda: call.state == "ended", timeout=10, what="call hung up")
        ignored = await async_wait_until(lambda: rig.audit("call_ignored"), timeout=10, what="ignored audited")
        assert ignored[0]["from"] == caller
        assert ignored[0]["reason"] == ("number not shown (withheld)" if caller is None else "caller not listed")
        # a second call from alice after it still works, and only its action was published
        rig.call(ALICE)
        await async_wait_until(lambda: probe.json("farm/gate/set"), timeout=15, what="gate action")
        assert [topic for topic, _, _ in probe.snapshot() if topic.startswith("farm/")] == ["farm/gate/set"]
        await async_wait_until(lambda: [a["from"] for a in rig.audit("call_rule")] == [ALICE], timeout=10,
                               what="rule audited")
        assert not [r for r in rig.sim.network.sent if r["to"] == caller]
    finally:
        probe.close()


async def test_a_refused_receipt_is_audited_and_the_action_still_published(tmp_path: Path,
                                                                          mosquitto: Broker) -> None:
    rig = Rig(tmp_path, mosquitto, extra='\n[sources."call:gate"]\ndaily_cap = 0\n')
    try:
        await rig.start()
        probe = Probe(mosquitto, "farm/#")
        try:
            probe.subscribed()
            call = rig.call(ALICE)
            await async_wait_until(lambda: probe.json("farm/gate/set"), timeout=15, what="gate action")
            await async_wait_until(lambda: call.state == "ended", timeout=10, what="call hung up")
            refused = await async_wait_until(lambda: rig.audit("call_receipt_refused"), timeout=10,
                                             what="receipt refusal audited")
            assert refused[0]["to"] == ALICE and refused[0]["reason"] == "over_cap"
            assert "call:gate" in refused[0]["error"]
            # the next call is handled all the same
            rig.call(ALICE)
            await async_wait_until(lambda: len(probe.json("farm/gate/set")) == 2, timeout=15, what="second call")
            await async_wait_until(lambda: len(rig.audit("call_receipt_refused")) == 2, timeout=10,
                                   what="second refusal audited")
        finally:
            probe.close()
    finally:
        await rig.stop()


async def test_hang_up_false_lets_the_call_ring_out(tmp_path: Path, mosquitto: Broker,
                                                    daemons: list[DaemonProcess]) -> None:
    async with Simulator(tmp_path / "sim", modems=1, ring_interval=0.05) as sim:
        config = debug_log(write_config(tmp_path / "gw", sim.ports,
                                        extra=mqtt_table(mosquitto) + "[calls]\nhang_up = false\n"))
        daemon = DaemonProcess(config)
        daemons.append(daemon)
        await daemon.start()
        await daemon.wait_running(20)
        await async_wait_until(lambda: sim.modems[0].clip, timeout=15, what="caller ID on")
        probe = Probe(mosquitto, "smsgw/call")
        try:
            probe.subscribed()
            sim.call(0, ALICE, rings=3)
            call = sim.modems[0].call
            assert call is not None
            await async_wait_until(lambda: probe.json("smsgw/call"), timeout=15, what="B/call published")
            await async_wait_until(lambda: call.state == "ended", timeout=10, what="caller gave up")
            assert call.rings == 3  # rang out: nobody hung up
            assert hang_ups(daemon.log_text()) == 0
        finally:
            probe.close()
        assert await daemon.stop() == 0


# --- configuration --------------------------------------------------------------------------


def _config(tmp_path: Path, **raw: Any) -> Any:
    data: dict[str, Any] = {"store": {"path": str(tmp_path / "smsgw.db")},
                            "contacts": {"alice": ALICE}, "groups": {"staff": ["alice"]}, **raw}
    return parse_config(data, tmp_path / "smsgw.toml")




def _rule(**fields: Any) -> dict[str, Any]:
    return {"name": "gate", "callers": ["staff"], "topic": "farm/gate/set", **fields}


def test_call_rules_config_is_typed_and_frozen(tmp_path: Path) -> None:
    config = _config(tmp_path, call_rules=[_rule(payload="open {caller_name}", receipt="ok"),
                                           _rule(name="any", callers="*", qos=0)])
    settings = config.calls
    assert config.calls is settings  # parsed once
    assert settings.hang_up is True
    gate, anyone = settings.rules
    assert gate.callers == (ALICE,) and gate.qos == 1 and gate.receipt is not None
    assert anyone.callers is None and anyone.qos == 0
    assert settings.allowed(anyone, ALICE) and not settings.allowed(anyone, STRANGER)
    assert settings.allowed(gate, "004917000000001")  # another rendering of alice's number
    assert settings.allowed(gate, None) is False and settings.allowed(gate, STRANGER) is False
    with pytest.raises(AttributeError):
        gate.topic = "x"  # type: ignore[misc]
    assert _config(tmp_path, calls={"hang_up": False}).calls.hang_up is False


@pytest.mark.parametrize(("raw", "expected"), [
    ({"calls": {"hangup": True}}, "calls.hangup: unknown key (did you mean 'hang_up'?)"),
    ({"calls": {"hang_up": "yes"}}, "calls.hang_up: must be true or false, not a string ('yes')"),
    ({"calls": True}, "calls: must be a table, not a boolean"),
    ({"call_rules": {"name": "x"}}, "call_rules: must be an array of tables ([[call_rules]])"),
    ({"call_rules": [_rule(name=5)]}, "call_rules[0].name: must be a string, not an integer (5)"),
    ({"call_rules": [_rule(topic=["a"])]}, "call_rules[0].topic: must be an MQTT topic, not an array (['a'])"),
    ({"call_rules": [_rule(qos="1")]}, "call_rules[0].qos: must be 0, 1 or 2, not a string ('1')"),
    ({"call_rules": [_rule(retain=1)]}, "call_rules[0].retain: must be true or false, not an integer (1)"),
    ({"call_rules": [_rule(receipt=True)]}, "call_rules[0].receipt: must be a text template, not a boolean"),
    ({"call_rules": [_rule(topc="x")]}, "call_rules[0].topc: unknown key (did you mean 'topic'?)"),
    ({"call_rules": [{"name": "gate", "topic": "a/b"}]}, "call_rules[0].callers: is required"),
    ({"call_rules": [_rule(callers=["stafff"])]},
     "call_rules[0].callers[0]: 'stafff' is not a contact, a group or a number (did you mean 'staff'?)"),
    ({"call_rules": [_rule(callers=["+49abc"])]}, "call_rules[0].callers[0]: "),
    ({"call_rules": [_rule(topic="farm/+/set")]}, "call_rules[0].topic: must be a topic without wildcards"),
    ({"call_rules": [{"name": "gate", "callers": "*"}]}, "call_rules[0].topic: is required"),
    ({"call_rules": [_rule(topic=" ")]}, "call_rules[0].topic: must not be empty"),
    ({"call_rules": [_rule(payload="{callr}")]},
     "call_rules[0].payload: unknown name 'callr' in template (did you mean 'caller'?)"),
    ({"call_rules": [_rule(receipt="{oops")]}, "call_rules[0].receipt: "),
    ({"call_rules": [_rule(qos=3)]}, "call_rules[0].qos: must be 0, 1 or 2, not 3"),
    ({"call_rules": [_rule(), _rule()]}, "call_rules[1].name: 'gate' is used by another call rule"),
])
def test_call_rules_config_errors_name_file_key_and_reason(tmp_path: Path, raw: dict[str, Any],
                                                           expected: str) -> None:
    key, reason = expected.split(": ", 1)
    error = config_error(lambda: _config(tmp_path, **raw).check("calls"), tmp_path / "smsgw.toml", key, reason)
    assert error.reason.startswith(reason)


async def test_smsgw_run_and_config_check_refuse_a_bad_call_rule(tmp_path: Path) -> None:
    config = tmp_path / "smsgw.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "smsgw.db"}"\n[[call_rules]]\ncallers = "*"\n'
                      'topic = "gate"\npayload = "{nope}"\n')
    for command in (("config", "check", str(config)), ("run", "--config", str(config))):
        status, _out, err = await _smsgw(*command)
        assert status == 2, err
        assert "call_rules[0].payload: unknown name 'nope' in template" in err
        assert str(config) in err


# --- smsgw simulate call ----------------------------------------------------------------------


async def test_smsgw_simulate_call_rings_the_modem_and_refuses_bad_input(tmp_path: Path) -> None:
    async with Simulator(tmp_path / "sim", modems=2, ring_interval=5) as sim:
        directory = str(tmp_path / "sim")
        status, out, err = await _smsgw("simulate", "call", "--dir", directory, "--from", STRANGER, "--modem", "1",
                                           "--rings", "2")
        assert status == 0, err
        assert json.loads(out) == {"ok": True, "modem": 1, "call": {"from": STRANGER, "rings": 1, "state": "ringing"}}
        assert sim.modems[1].call is not None and sim.modems[1].call.caller == STRANGER
        status, out, err = await _smsgw("simulate", "end-call", "--dir", directory, "--modem", "1")
        assert status == 0 and json.loads(out)["call"]["state"] == "ended"
        status, out, _err = await _smsgw("simulate", "call", "--dir", directory, "--withheld")
        assert status == 0 and json.loads(out)["call"]["from"] is None
        for args, message in [
            (("--from", "gate"), "--from takes a phone number such as +4915112345678, not 'gate'"),
            (("--from", ALICE, "--rings", "0"), "number of rings"),
            (("--from", ALICE, "--withheld"), "not allowed with argument"),
            ((), "one of the arguments --from --withheld is required"),
            (("--from", ALICE, "--modem", "5"), "no modem 5"),
        ]:
            status, _out, err = await _smsgw("simulate", "call", "--dir", directory, *args)
            assert status == 2, (args, err)
            assert message in err, (args, err)
    status, _out, err = await _smsgw("simulate", "call", "--dir", directory, "--from", ALICE)
    assert status == 2 and "no simulator is running" in err


async def _smsgw(*args: str) -> tuple[int, str, str]:
    import os
    import sys

    from daemon_helpers import ROOT, daemon_env

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=ROOT, env={**daemon_env(), "PATH": os.environ.get("PATH", "")})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
