"""A command SMS that carries a PIN (``4321 PUMP 7 ON``) never shows its PIN: not on ``B/received``,
not in the Home Assistant event rendered from it, not in ``smsgw inbox`` (text and ``--json``), not in
the audit log; the command itself still runs. `smsgw simulate` + `smsgw run` + mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from daemon_helpers import ROOT, daemon_env
from home_assistant import render_value, simulated_gateway
from mosquitto import Broker
from store_helpers import connection
from waiting import async_wait_until

from appliance.discovery import discovery_messages
from appliance.rules.commands import withhold_pin
from appliance.store import Store

pytest_plugins = ["mosquitto"]

ALICE = "+4917000000001"
COMMANDS = (f'\n[contacts]\nalice = "{ALICE}"\n\n[[commands]]\nname = "pump"\n'
            'pattern = "PUMP (?P<n>\\\\d+) (?P<state>ON|OFF)"\nsenders = ["alice"]\npin = "4321"\n'
            'topic = "farm/pump/{n}/set"\npayload = "{state}"\n')


def smsgw(config: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "appliance", args[0], "--config", str(config), *args[1:]],
                            capture_output=True, text=True, cwd=ROOT, env=daemon_env(), timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_pin_is_withheld_wherever_the_sms_is_shown(tmp_path: Path, mosquitto: Broker) -> None:
    async with simulated_gateway(tmp_path, mosquitto, "gw-pin", "smsgw/received", "farm/#",
                                 extra=COMMANDS) as (sim, daemon, probe):
        await async_wait_until(lambda: "MQTT connected" in daemon.log_text(), timeout=20,
                               what=f"daemon connected; log {daemon.log_text()[-2000:]}")
        sim.inject(ALICE, "4321 PUMP 7 ON")
        sim.inject(ALICE, "1111 PUMP 8 OFF")  # a wrong PIN is withheld as well
        sim.inject(ALICE, "4321 PUMP 9 ONN")  # and a mistyped command (audited command_unknown)
        await async_wait_until(lambda: len(probe.payloads("smsgw/received")) == 3, timeout=20,
                               what="the three SMS on smsgw/received")
        # the command still ran, with the right PIN only
        await async_wait_until(lambda: probe.payloads("farm/pump/7/set"), timeout=10, what="pump 7 command")
        assert probe.payloads("farm/pump/7/set") == [b"ON"] and probe.payloads("farm/pump/8/set") == []
        published = [json.loads(p) for p in probe.payloads("smsgw/received")]
        assert sorted(m["text"] for m in published) == ["**** PUMP 7 ON", "**** PUMP 8 OFF", "**** PUMP 9 ONN"]
        assert not any(pin in json.dumps(published) for pin in ("4321", "1111"))
        event = next(p for t, p in discovery_messages(prefix="homeassistant", base_topic="smsgw", node="gw-pin",
                                                      modems={}) if t.endswith("/event/gw-pin/received/config"))
        for message in published:
            fired = json.loads(render_value(event["value_template"], message))
            assert fired["text"].startswith("**** ")
        config = tmp_path / "gw" / "smsgw.toml"  # smsgw inbox reads the store beside the running daemon
        shown = smsgw(config, "inbox") + smsgw(config, "inbox", "--json")
        assert "PUMP 7 ON" in shown and "4321" not in shown and "1111" not in shown
        store = Store(tmp_path / "gw" / "smsgw.db")
        try:
            audit = json.dumps([dict(r) for r in connection(store).execute("SELECT * FROM audit").fetchall()])
            assert "4321" not in audit and "1111" not in audit
            # the inbox row keeps the text as received: the command rules need it
            assert {r["text"] for r in connection(store).execute("SELECT text FROM inbox")} == {
                "4321 PUMP 7 ON", "1111 PUMP 8 OFF", "4321 PUMP 9 ONN"}
        finally:
            store.close()


def test_withhold_pin_masks_a_leading_pin_only_when_a_rule_wants_one() -> None:
    from appliance.rules.config import validate_rules_table

    rules = validate_rules_table({
        "contacts": {"alice": ALICE},
        "commands": [{"name": "pump", "pattern": r"PUMP (?P<n>\d+) (?P<state>ON|OFF)", "senders": ["alice"],
                      "pin": "4321", "topic": "farm/pump/{n}/set", "payload": "{state}"},
                     {"name": "gate", "pattern": r"GATE (?P<n>\d+)", "senders": ["alice"], "topic": "farm/gate"}],
    }, "smsgw.toml", lambda n: n)
    assert withhold_pin(rules.commands, "4321 PUMP 7 ON") == "**** PUMP 7 ON"
    assert withhold_pin(rules.commands, "  9999   PUMP 7   ON ") == "**** PUMP 7 ON"
    assert withhold_pin(rules.commands, "PUMP 7 ON") == "PUMP 7 ON"
    assert withhold_pin(rules.commands, "4321 PUMP 7 ONN") == "**** PUMP 7 ONN"  # no rule matches: still a PIN
    assert withhold_pin(rules.commands, "Meet at 1200") == "Meet at 1200"
    assert withhold_pin(rules.commands, "123 apples") == "123 apples"  # not 4 to 8 digits
    assert withhold_pin(rules.commands, "4321") == "4321"  # nothing after it: not a command with a PIN
    assert withhold_pin(rules.commands[1:], "4321 GATE 2") == "4321 GATE 2"  # no rule wants a PIN
