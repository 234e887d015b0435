"""Rules: template rendering, config validation, cooldown and coalescing with an
injected clock, quiet hours, PIN lockout, command matching, and the command engine's
paths that publish nothing (unlisted senders, built-ins, PIN failures), on a real SQLite store."""

from __future__ import annotations

import asyncio
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from config_errors import config_error

from appliance.config import ConfigError, parse_config
from appliance.frozen import replace
from appliance.rules.alerts import Cooldown, Summary, render_summary
from appliance.rules.commands import PinGuard, format_status, match_command, pin_ok
from appliance.rules.config import QuietHours, validate_rules_table
from appliance.rules.engine import RulesEngine
from appliance.rules.templates import Template, TemplateError, alert_context, fit_text
from appliance.store import ReceivedMessage, Store
from drivers.pdu import count_parts

# --- templates ------------------------------------------------------------------------------

TEMPLATE_CASES: list[tuple[str, str, str, str]] = [
    ("Freezer {topic[1]}: {temperature} °C", "sensors/freezer-3/temperature", '{"temperature": -4.5}',
     "Freezer freezer-3: -4.5 °C"),
    ("{payload.temperature:.1f}", "t", '{"temperature": 3.14159}', "3.1"),
    ("{payload.room.name|upper}", "t", '{"room": {"name": "lab"}}', "LAB"),
    ("{payload.levels[1]}", "t", '{"levels": [1, 2, 3]}', "2"),
    ("{payload.levels.0}", "t", '{"levels": [7]}', "7"),
    ("last level {topic[-1]}", "a/b/c", "x", "last level c"),
    ("whole {topic}", "a/b/c", "x", "whole a/b/c"),
    ("raw {payload}", "t", "DOOR OPEN", "raw DOOR OPEN"),
    ("raw {payload}", "t", '{"a": 1}', 'raw {"a": 1}'),
    ("missing {nothing} and {topic[9]} and {payload.x}", "a", "{}", "missing ? and ? and ?"),
    ("{{literal}} {ok}", "t", '{"ok": true}', "{literal} true"),
    ("{value}", "t", '{"value": null}', "null"),
    ("{obj}", "t", '{"obj": {"a": [1, 2]}}', '{"a":[1,2]}'),
    ("{name:.1f}", "t", '{"name": "text"}', "text"),  # a spec that does not fit falls back to str
    ("{rule}", "t", "", "freezer"),
    ("{topic}", "t", '{"topic": "shadowed"}', "t"),  # topic and payload are never shadowed by fields
]


@pytest.mark.parametrize(("template", "topic", "payload", "expected"), TEMPLATE_CASES)
def test_template_rendering(template: str, topic: str, payload: str, expected: str) -> None:
    assert Template(template).render(alert_context(topic, payload.encode(), "freezer")) == expected


def test_template_reports_missing_values() -> None:
    text, missing = Template("{a} {b.c}").render_checked({"a": 1})
    assert text == "1 ?"
    assert missing == ["b.c"]


@pytest.mark.parametrize(("template", "fragment"), [
    ("{unclosed", "never closed"),
    ("stray } brace", "single '}'"),
    ("{payload.__class__.__mro__}", None),  # parses, but only ever looks up JSON keys
    ("{0}", "is not a placeholder"),
    ("{a b}", "is not a placeholder"),
    ("{x!r}", "is not a placeholder"),
])
def test_template_syntax(template: str, fragment: str | None) -> None:
    if fragment is None:
        assert Template(template).render(alert_context("t", b'{"a": 1}')) == "?"
        return
    with pytest.raises(TemplateError, match=fragment):
        Template(template)


def test_template_never_reaches_python_attributes() -> None:
    context = alert_context("t", b'{"s": "x"}')
    assert Template("{s.upper}{payload.text}{topic.levels}").render(context) == "???"


def test_payload_that_is_not_utf8_or_json_still_renders() -> None:
    context = alert_context("t", b"\xff\xfe alarm")
    assert Template("{payload}").render(context) == "\ufffd\ufffd alarm"


# --- quiet hours -----------------------------------------------------------------------------


BERLIN = ZoneInfo("Europe/Berlin")


def _at(hour: int, minute: int = 0) -> float:
    return datetime(2026, 7, 1, hour, minute, tzinfo=BERLIN).timestamp()


@pytest.mark.parametrize(("start", "end", "hour", "minute", "active"), [
    ("22:00", "07:00", 23, 0, True),
    ("22:00", "07:00", 2, 30, True),
    ("22:00", "07:00", 6, 59, True),
    ("22:00", "07:00", 7, 0, False),
    ("22:00", "07:00", 12, 0, False),
    ("22:00", "07:00", 22, 0, True),
    ("12:00", "14:00", 13, 0, True),
    ("12:00", "14:00", 14, 0, False),
    ("12:00", "14:00", 11, 59, False),
    ("08:00", "08:00", 8, 0, False),  # an empty window
])
def test_quiet_hours(start: str, end: str, hour: int, minute: int, active: bool) -> None:
    h1, m1 = map(int, start.split(":"))
    h2, m2 = map(int, end.split(":"))
    quiet = QuietHours(dtime(h1, m1), dtime(h2, m2), BERLIN)
    assert quiet.active(_at(hour, minute)) is active


# --- config validation ----------------------------------------------------------------------

BASE: dict[str, Any] = {
    "contacts": {"alice": "+4917000000001", "bob": "+4917000000002", "carol": "+4917000000003"},
    "groups": {"staff": ["alice", "bob"], "oncall": ["carol", "+4917000000009"]},
    "alerts": [{
        "name": "freezer", "topic": "sensors/+/temperature", "to": ["oncall", "alice"],
        "text": "Freezer {topic[1]}: {temperature} °C", "cooldown": "10m", "label": "{topic[1]}",
    }],
    "commands": [{
        "name": "pump", "pattern": r"PUMP (?P<n>\d+) (?P<state>ON|OFF)", "senders": ["staff"],
        "pin": "4321", "topic": "farm/pump/{n}/set", "payload": "{state|upper}",
        "reply_topic": "farm/pump/{n}/state", "reply_timeout": 5, "reply": "Pump {n} is {payload}",
    }],
    "sources": {"mqtt": {"daily_cap": 100}, "alert:*": {"daily_cap": 2}},
    "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"},
}


def _with(section: str, index: int | None, **changes: Any) -> dict[str, Any]:
    import copy

    data = copy.deepcopy(BASE)
    target = data[section] if index is None else data[section][index]
    for key, value in changes.items():
        if value is ...:
            target.pop(key, None)
        else:
            target[key] = value
    return data


def test_valid_config_resolves_recipients_and_senders() -> None:
    rules = validate_rules_table(BASE, "smsgw.toml")
    alert = rules.alerts[0]
    assert alert.to == ("+4917000000003", "+4917000000009", "+4917000000001")
    assert alert.cooldown == 600.0
    command = rules.commands[0]
    assert command.senders == ("+4917000000001", "+4917000000002")
    assert command.reply_filter() == "farm/pump/+/state"
    assert rules.contact_name("+4917000000002") == "bob"
    assert rules.quiet_hours is not None and rules.quiet_hours.start == dtime(22, 0)


@pytest.mark.parametrize(("data", "key", "fragment"), [
    (_with("alerts", 0, topic="sensors/#/x"), "alerts[0].topic", "'#' must be a whole level"),
    (_with("alerts", 0, topic="#"), "alerts[0].topic", "also matches the gateway's request topic 'smsgw/send'"),
    (_with("alerts", 0, topic="+/send/+"), "alerts[0].topic", "request topic 'smsgw/send/+'"),
    (_with("commands", 0, reply_topic="smsgw/send/{n}"), "commands[0].reply_topic", "would deliver each request twice"),
    (_with("alerts", 0, to=["nobody"]), "alerts[0].to[0]", "'nobody' is not a contact, a group or a number"),
    (_with("alerts", 0, to=[]), "alerts[0].to", "non-empty array"),
    (_with("alerts", 0, to=...), "alerts[0].to", "is required"),
    (_with("alerts", 0, text="{oops"), "alerts[0].text", "never closed"),
    (_with("alerts", 0, text=...), "alerts[0].text", "is required"),
    (_with("alerts", 0, cooldown="soon"), "alerts[0].cooldown", "duration"),
    (_with("alerts", 0, priority="urgent"), "alerts[0].priority", "high, normal, low"),
    (_with("alerts", 0, critcal=True), "alerts[0].critcal", "did you mean 'critical'"),
    (_with("alerts", 0, summary="{last} {bogus}"), "alerts[0].summary", "unknown name 'bogus'"),
    (_with("commands", 0, pattern="PUMP (?P<n>"), "commands[0].pattern", "not a valid regular expression"),
    (_with("commands", 0, pattern=".*"), "commands[0].pattern", "matches an empty message"),
    (_with("commands", 0, senders=...), "commands[0].senders", "is required"),
    (_with("commands", 0, topic="farm/{pump}/set"), "commands[0].topic", "unknown name 'pump'"),
    (_with("commands", 0, topic="farm/+/set"), "commands[0].topic", "without wildcards"),
    (_with("commands", 0, pin="12"), "commands[0].pin", "4 to 8 digits"),
    (_with("commands", 0, qos=3), "commands[0].qos", "0, 1 or 2"),
    (_with("commands", 0, reply_topic="farm/pump-{n}/state"), "commands[0].reply_topic",
     "whole topic level"),
    (_with("commands", 0, pin_attempts=0), "commands[0].pin_attempts", "at least 1"),
    (_with("contacts", None, dave="not a number"), "contacts.dave", "not a number"),
    (_with("groups", None, night=["alice", "zed"]), "groups.night[1]", "'zed' is not a contact"),
    (_with("alerts", 0, to=["stafff"]), "alerts[0].to[0]",
     "'stafff' is not a contact, a group or a number (did you mean 'staff'?)"),
    (_with("commands", 0, payload="{stat}"), "commands[0].payload",
     "unknown name 'stat' in template (did you mean 'state'?); known: n, rule, sender, sender_name, state"),
    (_with("quiet_hours", None, start="25:00"), "quiet_hours.start", "time of day"),
    (_with("quiet_hours", None, timezone="Mars/Olympus"), "quiet_hours.timezone", "unknown time zone"),
])
def test_config_errors_name_the_key(data: dict[str, Any], key: str, fragment: str) -> None:
    config_error(lambda: validate_rules_table(data, "smsgw.toml"), "smsgw.toml", key, fragment)


def test_duplicate_rule_names_are_refused() -> None:
    data = _with("alerts", None)
    data["alerts"].append(dict(data["alerts"][0]))
    with pytest.raises(ConfigError, match=r"alerts\[1\]\.name: 'freezer' is used by another alert rule"):
        validate_rules_table(data, "smsgw.toml")


# --- cooldown and coalescing ----------------------------------------------------------------


def test_cooldown_sends_once_per_window_and_summarises_the_rest() -> None:
    cooldown = Cooldown()
    t0 = 1_000_000.0
    sent, carried = cooldown.offer("freezer", "s/f3/t", 600, t0, "first", "f3")
    assert sent and carried is None
    for minute in range(1, 10):  # 9 more alerts inside the 10-minute window
        sent, _ = cooldown.offer("freezer", "s/f3/t", 600, t0 + 60 * minute, f"alert {minute}", "f3")
        assert not sent
    assert cooldown.next_due({"freezer": 600}) == t0 + 600
    assert cooldown.due(t0 + 599, {"freezer": 600}) == []
    [summary] = cooldown.due(t0 + 600, {"freezer": 600})
    assert (summary.count, summary.last_text, summary.label) == (9, "alert 9", "f3")
    # The summary opened a new window: the next alert inside it is counted again.
    sent, _ = cooldown.offer("freezer", "s/f3/t", 600, t0 + 601, "late", "f3")
    assert not sent
    # A quiet window is dropped without a summary.
    assert cooldown.due(t0 + 1300, {"freezer": 600})[0].count == 1
    assert cooldown.due(t0 + 2000, {"freezer": 600}) == []
    assert cooldown.windows == {}


def test_cooldown_is_per_rule_and_topic() -> None:
    cooldown = Cooldown()
    assert cooldown.offer("r", "a", 60, 0.0, "x", "a")[0]
    assert cooldown.offer("r", "b", 60, 1.0, "x", "b")[0]
    assert cooldown.offer("other", "a", 60, 2.0, "x", "a")[0]
    assert not cooldown.offer("r", "a", 60, 3.0, "x", "a")[0]


def test_cooldown_zero_never_suppresses() -> None:
    cooldown = Cooldown()
    assert all(cooldown.offer("r", "t", 0, float(i), "x", "t")[0] for i in range(5))


def test_window_that_ended_unreported_is_carried_into_the_next_alert() -> None:
    cooldown = Cooldown()
    cooldown.offer("r", "t", 60, 0.0, "one", "t")
    cooldown.offer("r", "t", 60, 10.0, "two", "t")
    cooldown.offer("r", "t", 60, 20.0, "three", "t")
    sent, carried = cooldown.offer("r", "t", 60, 100.0, "four", "t")
    assert sent and carried is not None and carried.count == 2


def test_cooldown_state_survives_export_and_load() -> None:
    cooldown = Cooldown()
    cooldown.offer("r", "t", 60, 0.0, "one", "t")
    cooldown.offer("r", "t", 60, 1.0, "two", "lbl")
    restored = Cooldown()
    restored.load("r", cooldown.export("r"))
    assert restored.due(60.0, {"r": 60})[0].last_text == "two"


def test_summary_text() -> None:
    rules = validate_rules_table(BASE)
    rule = rules.alerts[0]
    text = render_summary(rule, Summary(("freezer", "s/freezer-3/t"), 15, "Freezer freezer-3: -2 °C",
                                        "freezer-3", 600.0))
    assert text == "Freezer freezer-3: -2 °C (and 14 more alerts from freezer-3 in the last 10 min)"
    assert render_summary(rule, Summary(("freezer", "t"), 1, "only one", "x", 600.0)) == "only one"


# --- commands, PINs -------------------------------------------------------------------------


@pytest.fixture
def rules() -> Any:
    data = _with("commands", None)
    data["commands"].append({"name": "light", "pattern": r"LIGHT (?P<room>\w+) (?P<state>ON|OFF)",
                             "senders": "*", "topic": "home/{room}/light/set", "payload": "{state}"})
    return validate_rules_table(data)


@pytest.mark.parametrize(("text", "rule", "groups", "pin"), [
    ("4321 PUMP 7 ON", "pump", {"n": "7", "state": "ON"}, "4321"),
    ("  4321   pump 7 off\n", "pump", {"n": "7", "state": "off"}, "4321"),
    ("PUMP 7 ON", "pump", {"n": "7", "state": "ON"}, None),
    ("0000 PUMP 12 OFF", "pump", {"n": "12", "state": "OFF"}, "0000"),
    ("light kitchen on", "light", {"room": "kitchen", "state": "on"}, None),
    ("PUMP seven ON", None, None, None),
    ("4321 LIGHT hall ON", None, None, None),  # no PIN on that rule: the digits are part of the text
    ("", None, None, None),
])
def test_command_matching(rules: Any, text: str, rule: str | None, groups: dict[str, str] | None,
                          pin: str | None) -> None:
    found = match_command(rules.commands, text)
    if rule is None:
        assert found is None
        return
    assert found is not None
    assert (found.rule.name, found.groups, found.pin_given) == (rule, groups, pin)


def test_pin_check(rules: Any) -> None:
    pump = rules.commands[0]
    assert pin_ok(pump, "4321")
    assert not pin_ok(pump, "4322")
    assert not pin_ok(pump, None)
    assert pin_ok(rules.commands[1], None)


def test_pin_lockout_after_repeated_failures_then_expiry() -> None:
    store = Store(":memory:")
    guard = PinGuard(store)
    sender = "+4917000000001"
    assert guard.failure(sender, 100.0, 3, 900) == (1, False)
    assert guard.failure("017000000001", 101.0, 3, 900) == (2, False)  # same subscriber, national form
    assert guard.locked_for(sender, 101.0) == 0
    assert guard.failure(sender, 102.0, 3, 900) == (3, True)
    assert guard.locked_for(sender, 103.0) == pytest.approx(899.0)
    assert guard.locked_for("+4917000000002", 103.0) == 0  # other senders are not affected
    assert guard.locked_for(sender, 1002.0) == 0  # the lockout ran out
    assert guard.failure(sender, 1003.0, 3, 900) == (1, False)  # and the count started again
    guard.success(sender)
    assert store.state_get("pin_failures", "017000000001"[-9:]) is None


def test_failures_spread_out_beyond_the_window_do_not_lock() -> None:
    guard = PinGuard(Store(":memory:"))
    assert guard.failure("+4917000000001", 0.0, 2, 60) == (1, False)
    assert guard.failure("+4917000000001", 100.0, 2, 60) == (1, False)


# --- status, text fitting, caps -------------------------------------------------------------


def test_status_text() -> None:
    status = {"state": "online", "modems": {"modem0": {"state": "ready", "registration": "home",
                                                       "operator": "Vodafone", "signal": -71}}}
    stats = {"outbox": {"queued": 3, "sending": 1, "failed": 0}}
    assert format_status(status, stats) == (
        "smsgw online; queue 3, sending 1, failed 0; modem0 ready home Vodafone -71 dBm")
    assert format_status({}) == "smsgw running"
    daemon_shape = {"modems": {"sim0": {"state": "online", "registration": {"state": "roaming", "lac": "1A2B"},
                                        "operator": {"name": "Simnet", "numeric": "26299"},
                                        "signal": {"rssi": 20, "dbm": -73, "percent": 65}},
                               "sim1": {"state": "recovering", "signal": {"rssi": 99, "dbm": None},
                                        "operator": {"name": None, "numeric": "26201"}}}}
    assert format_status(daemon_shape) == (
        "smsgw running; sim0 online roaming Simnet -73 dBm; sim1 recovering 26201")


def test_fit_text_cuts_to_the_part_limit() -> None:
    long = "x" * 1000
    fitted = fit_text(long, 2)
    assert count_parts(fitted) == 2 and fitted.endswith("…")
    assert fit_text("short", 1) == "short"


# --- the engine on a real store (paths that publish nothing) --------------------------------


def _config(tmp_path: Path, **extra: Any) -> Any:
    data: dict[str, Any] = {"store": {"path": str(tmp_path / "smsgw.db")}, **_with("commands", None)}
    data.update(extra)
    return parse_config(data, tmp_path / "smsgw.toml")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _incoming(store: Store, sender: str, text: str) -> ReceivedMessage:
    from drivers.pdu import decode, encode_deliver

    pdu = encode_deliver(sender, text, timestamp=datetime.now().astimezone())[0]
    store.add_incoming_part("modem0", pdu, decode(pdu), None, store.clock())  # type: ignore[arg-type]
    return store.received_unhandled()[-1]


def _outbox(store: Store) -> list[tuple[str, str]]:
    return [(m["to"], m["text"]) for m in reversed(store.outbox(100))]


def test_unlisted_sender_executes_nothing_and_is_audited(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    engine = RulesEngine(_config(tmp_path), store, None)
    message = _incoming(store, "+4915199999999", "4321 PUMP 7 ON")
    assert asyncio.run(engine.handle_message(message)) == "unlisted"
    assert store.outbox(10) == []
    [entry] = store.audit_log(kind="unlisted_sender")
    assert entry["detail"]["from"] == "+4915199999999"
    assert store.received_unhandled() == []


def test_builtins_stop_start_help_status(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    engine = RulesEngine(_config(tmp_path), store, None, status=lambda: {"state": "online"})
    alice = "+4917000000001"
    assert asyncio.run(engine.handle_message(_incoming(store, alice, "stop"))) == "stop"
    assert engine.opted_out(alice)
    assert asyncio.run(engine.handle_message(_incoming(store, alice, "START "))) == "start"
    assert not engine.opted_out(alice)
    assert asyncio.run(engine.handle_message(_incoming(store, alice, "HELP"))) == "help"
    assert asyncio.run(engine.handle_message(_incoming(store, alice, "status"))) == "status"
    replies = [text for to, text in _outbox(store) if to == alice]
    assert replies[0].startswith("You will get only critical messages")
    assert replies[1].startswith("Messages are on again")
    assert replies[2] == "Commands: PUMP; HELP; STATUS; STOP; START"
    assert replies[3].startswith("smsgw online; queue 3")


def test_pin_failures_lock_the_sender_out_and_are_audited(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    clock = Clock(1_000_000.0)
    engine = RulesEngine(_config(tmp_path), store, None, clock=clock)
    bob = "+4917000000002"
    outcomes = [asyncio.run(engine.handle_message(_incoming(store, bob, text)))
                for text in ("PUMP 7 ON", "1111 PUMP 7 ON", "2222 PUMP 7 ON", "4321 PUMP 7 ON")]
    assert outcomes == ["pin_failure", "pin_failure", "pin_lockout", "locked"]
    replies = [text for _, text in _outbox(store)]
    assert replies == ["PIN required", "Wrong PIN", "Wrong PIN; locked for 15 min",
                       "Locked after wrong PINs; try again in 15 min"]
    kinds = [entry["kind"] for entry in reversed(store.audit_log())]
    assert kinds == ["pin_failure", "pin_failure", "pin_lockout", "pin_locked"]
    assert all("4321" not in str(entry["detail"]) and "1111" not in str(entry["detail"])
               for entry in store.audit_log())


def test_sender_outside_the_allowed_groups_is_denied(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    engine = RulesEngine(_config(tmp_path), store, None)
    carol = "+4917000000003"  # listed (on call), not in staff
    assert asyncio.run(engine.handle_message(_incoming(store, carol, "4321 PUMP 7 ON"))) == "denied"
    assert _outbox(store) == [(carol, "pump: not allowed from this number")]
    assert store.audit_log(kind="command_denied")


def test_unknown_command_gets_the_help_hint(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    engine = RulesEngine(_config(tmp_path), store, None)
    assert asyncio.run(engine.handle_message(_incoming(store, "+4917000000001", "FLY TO MOON"))) == "unknown"
    assert _outbox(store) == [("+4917000000001", "Unknown command. Send HELP for the list.")]


# --- alerts through the engine (no MQTT: fire() is what the subscription calls) -------------


def test_alert_cooldown_coalescing_quiet_hours_and_optout(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    clock = Clock(_at(12))
    config = _config(tmp_path, quiet_hours=BASE["quiet_hours"], sources={})
    engine = RulesEngine(config, store, None, clock=clock)
    freezer = engine.rules.alerts[0]
    payload = b'{"temperature": -2}'
    assert len(engine.fire(freezer, "sensors/freezer-3/temperature", payload)) == 3
    for minute in range(1, 15):  # 14 more inside the 10-minute window
        clock.now = _at(12) + 30 * minute
        assert engine.fire(freezer, "sensors/freezer-3/temperature", payload) == []
    assert engine.flush_summaries() == []  # the window is still running
    clock.now = _at(12, 10)
    assert len(engine.flush_summaries()) == 3
    texts = [text for _, text in _outbox(store)]
    assert texts[-1] == "Freezer freezer-3: -2 °C (and 13 more alerts from freezer-3 in the last 10 min)"
    # STOP: carol (on call) opted out of non-critical alerts.
    engine.set_opt_out("+4917000000003", True)
    clock.now = _at(13)
    assert len(engine.fire(freezer, "sensors/freezer-1/temperature", payload)) == 2
    # Quiet hours: non-critical alerts are audited, not sent; critical ones pass (to opted-out too).
    clock.now = _at(23)
    assert engine.fire(freezer, "sensors/freezer-2/temperature", payload) == []
    assert store.audit_log(kind="alert_quiet")
    critical = type(freezer)(**{**freezer.__dict__, "critical": True, "name": "critical"})
    assert len(engine.fire(critical, "sensors/freezer-2/temperature", payload)) == 3
    # A window that ends inside quiet hours: its summary is held back like any non-critical alert.
    clock.now = _at(21, 55)
    assert len(engine.fire(freezer, "sensors/freezer-5/temperature", payload)) == 2
    clock.now = _at(21, 58)
    assert engine.fire(freezer, "sensors/freezer-5/temperature", payload) == []
    clock.now = _at(22, 5)
    assert engine.flush_summaries() == []
    assert [e["detail"]["topic"] for e in store.audit_log(kind="alert_quiet")][0] == "sensors/freezer-5/temperature"


def test_alert_daily_cap_is_enforced_and_audited(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    data = _with("alerts", 0, to=["alice"], cooldown=0)
    # Noon today in the quiet-hours time zone: outside quiet hours whenever the test runs.
    noon = Clock(datetime.now(BERLIN).replace(hour=12, minute=0, second=0).timestamp())
    engine = RulesEngine(_config(tmp_path, alerts=data["alerts"], sources=data["sources"]), store, None,
                         clock=noon)
    rule = engine.rules.alerts[0]
    assert len(engine.fire(rule, "sensors/a/temperature", b"{}")) == 1
    assert len(engine.fire(rule, "sensors/b/temperature", b"{}")) == 1
    assert engine.fire(rule, "sensors/c/temperature", b"{}") == []
    [entry] = store.audit_log(kind="cap_exceeded")
    assert "daily cap of 2 messages for source 'alert:freezer' reached (2 accepted today)" in entry["detail"]["error"]


def test_replies_go_through_the_send_intake_and_its_caps(tmp_path: Path) -> None:
    """A command's reply is one more send request of the intake: the [sources] cap of its source
    ("builtin" for HELP) refuses the second one, audited; the first was queued as the intake does."""
    store = Store(tmp_path / "db.sqlite")
    engine = RulesEngine(_config(tmp_path, sources={"builtin": {"daily_cap": 1}}), store, None,
                         clock=Clock(store.clock()))
    assert asyncio.run(engine.handle_message(_incoming(store, "+4917000000001", "HELP"))) == "help"
    assert asyncio.run(engine.handle_message(_incoming(store, "+4917000000001", "help"))) == "help"
    [queued] = store.outbox(10)
    assert (queued["to"], queued["source"], queued["priority"]) == ("+4917000000001", "builtin", "high")
    [entry] = store.audit_log(kind="cap_exceeded")
    assert entry["detail"] == {"source": "builtin", "error": "daily cap of 1 messages for source 'builtin' reached "
                                                              "(1 accepted today)"}


def test_rules_section_turns_off_the_unknown_reply_and_the_builtins(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    engine = RulesEngine(_config(tmp_path, rules={"unknown_reply": "", "builtins": False}), store, None)
    alice = "+4917000000001"
    assert asyncio.run(engine.handle_message(_incoming(store, alice, "FLY"))) == "unknown"
    assert asyncio.run(engine.handle_message(_incoming(store, alice, "HELP"))) == "unknown"
    assert store.outbox(10) == []
    with pytest.raises(ConfigError, match=r"rules\.builtin: unknown key \(did you mean 'builtins'\?\)"):
        validate_rules_table({"rules": {"builtin": False}})


def test_the_examples_in_docs_rules_md_are_valid(tmp_path: Path) -> None:
    import re
    import tomllib

    text = (Path(__file__).resolve().parent.parent / "docs" / "rules.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert len(blocks) >= 5
    # a worked example with contacts of its own (the call rules) is a whole file: checked on its own
    whole = [b for b in blocks[1:] if b.lstrip().startswith("[contacts]")]
    for block in whole:
        alone = parse_config({**tomllib.loads(block), "store": {"path": str(tmp_path / "alone.db")}},
                             tmp_path / "alone.toml")
        assert alone.rules.contacts
        alone.check("calls")
        if alone.rules.schedules:  # the urgent and scheduled messages example
            assert [s.name for s in alone.rules.schedules] == ["morning"]
            assert [(a.name, a.flash, a.critical) for a in alone.rules.alerts] == [("gas", True, True),
                                                                                  ("door", False, False)]
            assert alone.rules.quiet_hold and alone.rules.alerts[1].quiet_hours is not None
    assert any("[[schedules]]" in block for block in whole)  # the worked example of schedules is checked
    data = tomllib.loads("\n".join(b for b in blocks if b not in whole))
    data["store"] = {"path": str(tmp_path / "smsgw.db")}
    data["numbers"] = {"default_country": "DE"}
    config = parse_config(data, tmp_path / "smsgw.toml")
    rules = config.rules
    assert rules.contacts["bob"] == "+491761234567"
    assert [a.name for a in rules.alerts] == ["freezer", "coldroom"]
    assert rules.alerts[1].escalate is not None and rules.alerts[1].escalate.steps == 6
    assert rules.commands[0].reply_filter() == "farm/pump/+/state"
    assert config.caps.cap_for("alert:freezer") == 50


@pytest.mark.parametrize("value, problem", [
    ("../../smsgw/send", "{device} contains '/'"),
    ("..", "{device} is '..'"),
    ("pump+", "{device} contains '+'"),
    ("#", "{device} contains '#'"),
    ("a\0b", "{device} contains NUL"),
])
def test_command_placeholder_may_not_add_topic_levels(tmp_path: Path, value: str, problem: str) -> None:
    """``SET ../../smsgw/send 1`` from a listed sender must not publish on ``farm/../../smsgw/send/set``."""
    store = Store(tmp_path / "db.sqlite")
    commands = [{"name": "set", "pattern": r"SET (?P<device>\S+) (?P<value>\S+)", "senders": ["staff"],
                 "topic": "farm/{device}/set", "payload": "{value}"}]
    engine = RulesEngine(_config(tmp_path, commands=commands), store, None)  # nothing may be published
    alice = "+4917000000001"
    message = _incoming(store, alice, "SET x 1")
    message = replace(message, text=f"SET {value} 1")  # NUL: a UCS-2 SMS can carry U+0000
    assert asyncio.run(engine.handle_message(message)) == "bad_topic"
    assert _outbox(store) == [(alice, f"set: refused, {problem}")]
    [entry] = store.audit_log(kind="command_bad_topic")
    assert entry["detail"]["error"] == problem
    assert store.received_unhandled() == []
