"""Escalating alerts on a real SQLite store with a clock the test moves: the chain walk, ACK with and
without a code, repeated triggers counted into the open alert, resolve by topic and by field, the
events (``B/alert/<id>`` retained while active, cleared when closed), a restart picking up the
timers, a step that cannot run twice, and every configuration error naming its key."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from home_assistant import render_value, validate
from store_helpers import Clock, connection

from appliance.config import ConfigError, parse_config
from appliance.discovery import discovery_messages
from appliance.escalation import alert_text, parse_ack
from appliance.rules.config import validate_rules_table
from appliance.rules.engine import RulesEngine
from appliance.store import ReceivedMessage, Store
from drivers.pdu import count_parts, decode, encode_deliver

ALICE, BOB, CAROL, DAVE, ERIN = (f"+491700000000{n}" for n in range(1, 6))
T0 = 1_800_000_000.0

CONTACTS = {"alice": ALICE, "bob": BOB, "carol": CAROL, "dave": DAVE, "erin": ERIN}
FREEZER: dict[str, Any] = {
    "name": "freezer", "topic": "sensors/+/temperature", "text": "Freezer {topic[1]}: {temperature} °C",
    "escalate": {"chain": ["alice", "bob", "carol"], "after": "5m", "repeat": 2},
    "resolve": {"topic": "sensors/+/ok"},
}


def _engine(tmp_path: Path, clock: Clock, *alerts: dict[str, Any], store: Store | None = None,
            **extra: Any) -> RulesEngine:
    data: dict[str, Any] = {"store": {"path": str(tmp_path / "smsgw.db")}, "contacts": CONTACTS,
                            "groups": {"managers": ["dave", "erin"]}, "alerts": list(alerts or [FREEZER]), **extra}
    config = parse_config(data, tmp_path / "smsgw.toml")
    return RulesEngine(config, store or Store(tmp_path / "smsgw.db", clock=clock), None, clock=clock)


def _outbox(store: Store) -> list[tuple[str, str]]:
    return [(m["to"], m["text"]) for m in reversed(store.outbox(200))]


def _sms(store: Store, sender: str, text: str) -> ReceivedMessage:
    pdu = encode_deliver(sender, text, timestamp=datetime.now().astimezone())[0]
    store.add_incoming_part("modem0", pdu, decode(pdu), None, store.clock())  # type: ignore[arg-type]
    return store.received_unhandled()[-1]


def _reply(engine: RulesEngine, sender: str, text: str) -> str:
    return asyncio.run(engine.handle_message(_sms(engine.store, sender, text)))


def _hot(engine: RulesEngine, sensor: str = "freezer-3", value: float = -2.0) -> None:
    engine.on_alert(f"sensors/{sensor}/temperature", json.dumps({"temperature": value}).encode())


def test_the_chain_is_walked_every_after_for_repeat_rounds_then_the_alert_expires(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    store = engine.store
    _hot(engine)
    [alert] = store.alerts()
    assert (alert.state, alert.step, alert.steps, alert.next_at) == ("open", 1, 6, T0 + 300)
    assert _outbox(store) == [(ALICE, f"Freezer freezer-3: -2.0 °C\nReply ACK {alert.id} to acknowledge")]
    assert engine.escalation.run_due() == []  # not due yet
    for expected in (BOB, CAROL, ALICE, BOB, CAROL):
        clock.advance(300)
        assert len(engine.escalation.run_due()) == 1
        assert _outbox(store)[-1][0] == expected
    assert store.alert(alert.id).state == "open"  # type: ignore[union-attr]
    clock.advance(299)
    assert engine.escalation.run_due() == [] and store.alert(alert.id).state == "open"  # type: ignore[union-attr]
    clock.advance(1)
    engine.escalation.run_due()
    done = store.alert(alert.id)
    assert done is not None and done.state == "expired" and done.closed_at == clock.now and done.next_at is None
    assert done.alerted == (ALICE, BOB, CAROL)
    assert len(_outbox(store)) == 6
    assert [e["detail"]["step"] for e in reversed(store.audit_log(kind="alert_step"))] == [1, 2, 3, 4, 5, 6]
    assert store.audit_log(kind="alert_expired")[0]["detail"]["alert"] == alert.id


def test_ack_with_its_code_stops_the_chain_and_tells_the_others(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    store = engine.store
    _hot(engine)
    clock.advance(300)
    engine.escalation.run_due()  # bob has it now
    [alert] = store.alerts()
    assert _reply(engine, BOB, f"  ack   {alert.id} ") == "acknowledged"
    done = store.alert(alert.id)
    assert done is not None and (done.state, done.acknowledged_by, done.acknowledged_name) == (
        "acknowledged", BOB, "bob")
    assert done.active and done.next_at is None  # it waits for its resolve
    assert _outbox(store)[2:] == [(ALICE, f"Alert {alert.id} (freezer) acknowledged by bob"),
                                  (BOB, f"Alert {alert.id} acknowledged; told alice")]
    assert store.received_unhandled() == []
    clock.advance(3600)
    assert engine.escalation.run_due() == [] and len(_outbox(store)) == 4  # carol is never woken
    assert _reply(engine, ALICE, f"ACK {alert.id}") == "ack_again"
    assert _outbox(store)[-1] == (ALICE, f"Alert {alert.id} was acknowledged by bob already")


def test_ack_alone_when_one_alert_is_open_for_that_person(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    store = engine.store
    assert _reply(engine, ALICE, "ACK") == "ack_none"
    assert _outbox(store)[-1] == (ALICE, "No open alert to acknowledge")
    _hot(engine, "freezer-1")
    _hot(engine, "freezer-2")
    first, second = sorted(a.id for a in store.alerts())
    assert _reply(engine, ALICE, "ack") == "ack_ambiguous"
    assert _outbox(store)[-1] == (ALICE, f"2 open alerts: {first}, {second}. Reply ACK <code>")
    assert _reply(engine, ALICE, f"ACK #{first}") == "acknowledged"
    assert _reply(engine, ALICE, "Ack") == "acknowledged"
    assert {a.state for a in store.alerts()} == {"acknowledged"}


def test_only_chain_members_acknowledge(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    _hot(engine)
    [alert] = engine.store.alerts()
    assert _reply(engine, DAVE, f"ACK {alert.id}") == "ack_denied"  # a listed contact, not in the chain
    assert _outbox(engine.store)[-1] == (DAVE, f"Alert {alert.id}: you are not in its on-call chain")
    assert _reply(engine, CAROL, "ACK 999") == "ack_unknown"
    assert _reply(engine, "+4915199999999", f"ACK {alert.id}") == "unlisted"
    assert engine.store.alert(alert.id).state == "open"  # type: ignore[union-attr]
    # carol has not been alerted yet, but she is in the chain: she may take it (her phone sends her
    # number in national format; the answer goes to the number configured)
    assert _reply(engine, "0" + CAROL[3:], f"ACK {alert.id}") == "acknowledged"
    assert engine.store.alert(alert.id).acknowledged_by == CAROL  # type: ignore[union-attr]
    assert _outbox(engine.store)[-2:] == [(ALICE, f"Alert {alert.id} (freezer) acknowledged by carol"),
                                          (CAROL, f"Alert {alert.id} acknowledged; told alice")]


def test_repeated_triggers_are_counted_into_the_active_alert(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    for value in (-2.0, -1.0, 0.5):  # (identical deliveries within 1 s count as one)
        _hot(engine, value=value)
    _hot(engine, "freezer-9")
    alerts = {json.loads(a.key)[0]: a for a in engine.store.alerts()}
    assert alerts["freezer-3"].triggers == 3 and alerts["freezer-9"].triggers == 1
    assert [to for to, _ in _outbox(engine.store)] == [ALICE, ALICE]  # one chain per sensor


def test_resolve_topic_closes_the_alert_of_that_sensor_and_tells_who_was_alerted(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    store = engine.store
    _hot(engine, "freezer-3")
    _hot(engine, "freezer-4")
    clock.advance(300)
    engine.escalation.run_due()
    by_sensor = {json.loads(a.key)[0]: a for a in store.alerts()}
    sent = len(_outbox(store))
    engine.on_alert("sensors/freezer-3/ok", b"")
    done = store.alert(by_sensor["freezer-3"].id)
    assert done is not None and (done.state, done.resolved_by, done.active) == (
        "resolved", "sensors/freezer-3/ok", False)
    assert store.alert(by_sensor["freezer-4"].id).state == "open"  # type: ignore[union-attr]
    assert _outbox(store)[sent:] == [
        (ALICE, f"Alert {done.id} resolved: Freezer freezer-3: -2.0 °C"),
        (BOB, f"Alert {done.id} resolved: Freezer freezer-3: -2.0 °C")]
    assert _reply(engine, ALICE, f"ACK {done.id}") == "ack_resolved"
    _hot(engine, "freezer-3", -1.0)  # the sensor alarms again: a new alert, a new chain
    assert len(store.alerts(active=True)) == 2


def test_resolve_by_a_field_on_the_rules_own_topic(tmp_path: Path) -> None:
    clock = Clock(T0)
    rule = {**FREEZER, "text": "Door {topic[1]} {state}", "topic": "doors/+",
            "resolve": {"field": "state", "value": "closed"}}
    engine = _engine(tmp_path, clock, rule)
    engine.on_alert("doors/barn", b'{"state": "open"}')
    [alert] = engine.store.alerts()
    assert _reply(engine, ALICE, "ACK") == "acknowledged"
    engine.on_alert("doors/barn", b'{"state": "Closed"}')  # does not alert: it resolves
    done = engine.store.alert(alert.id)
    assert done is not None and done.state == "resolved"
    assert engine.store.alerts(active=True) == []
    assert _outbox(engine.store)[-1] == (ALICE, f"Alert {alert.id} resolved: Door barn open")


def test_without_resolve_an_acknowledgement_closes_the_alert(tmp_path: Path) -> None:
    clock = Clock(T0)
    rule = {k: v for k, v in FREEZER.items() if k != "resolve"}
    engine = _engine(tmp_path, clock, rule)
    _hot(engine)
    assert _reply(engine, ALICE, "ACK") == "acknowledged"
    [alert] = engine.store.alerts()
    assert alert.state == "acknowledged" and not alert.active
    _hot(engine, value=-1.0)  # the next trigger opens a new alert
    assert len(engine.store.alerts(active=True)) == 1 and len(engine.store.alerts()) == 2


def test_a_group_in_the_chain_gets_the_step_together(tmp_path: Path) -> None:
    clock = Clock(T0)
    rule = {**FREEZER, "escalate": {"chain": ["alice", "managers"], "after": 60}}
    engine = _engine(tmp_path, clock, rule)
    _hot(engine)
    clock.advance(60)
    engine.escalation.run_due()
    assert [to for to, _ in _outbox(engine.store)] == [ALICE, DAVE, ERIN]
    assert _reply(engine, ERIN, "ACK") == "acknowledged"
    assert [to for to, _ in _outbox(engine.store)][3:] == [ALICE, DAVE, ERIN]  # told alice and dave


def test_opted_out_members_are_skipped_and_the_next_step_comes_at_once(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    engine.store.optout_add(ALICE, "test")
    _hot(engine)
    assert _outbox(engine.store) == []
    engine.escalation.run_due()  # alice's step was empty: bob's is due now
    assert [to for to, _ in _outbox(engine.store)] == [BOB]
    assert engine.store.audit_log(kind="alert_optout")[0]["detail"]["skipped"] == [ALICE]


def test_a_step_past_the_daily_cap_sends_nothing_and_the_chain_goes_on(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock, sources={"alert:freezer": {"daily_cap": 1}})
    store = engine.store
    _hot(engine)
    clock.advance(300)
    assert engine.escalation.run_due() == []  # bob's step: over the cap, checked by the send intake
    [alert] = store.alerts()
    assert (alert.state, alert.step, alert.next_at) == ("open", 2, clock.now)  # carol's step at once
    assert [to for to, _ in _outbox(store)] == [ALICE]
    [capped] = store.audit_log(kind="cap_exceeded")
    assert capped["detail"]["source"] == "alert:freezer" and capped["detail"]["what"] == "step 2"
    assert engine.counters["alerts_capped"] == 1


def test_events_keep_the_alert_retained_while_active_and_clear_it_when_closed(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    store = engine.store
    _hot(engine)
    [alert] = store.alerts()
    engine.on_alert("sensors/freezer-3/ok", b"ok")
    events = [e for e in store.events_pending(1000) if e.topic.startswith("alert")]
    mine = [(e.retain, e.payload and e.payload["state"]) for e in events if e.topic == f"alert/{alert.id}"]
    # opened, step 1, then closed: the last state without retain and an empty retained payload
    assert mine == [(True, "open"), (True, "open"), (False, "resolved"), (True, None)]
    rule_states = [e.payload for e in events if e.topic == "alert_rule/freezer"]
    assert all(e.retain for e in events if e.topic == "alert_rule/freezer")
    assert rule_states[0] is not None and rule_states[0]["active"] == 1
    assert rule_states[-1] == {"rule": "freezer", "active": 0, "latest": store.alert(alert.id).as_dict()}  # type: ignore[union-attr]


def test_a_restart_resumes_the_timers_from_the_store(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    _hot(engine)
    engine.store.close()
    clock.advance(3 * 300)  # down for three steps' time: one step runs, the next comes after `after`
    again = _engine(tmp_path, clock)
    assert len(again.escalation.run_due()) == 1
    assert again.escalation.run_due() == []
    assert [to for to, _ in _outbox(again.store)] == [ALICE, BOB]
    assert again.store.alert_next_due() == clock.now + 300


def test_a_step_runs_once_whoever_asks(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    _hot(engine)
    [alert] = engine.store.alerts()
    assert engine.store.alert_step(alert.id, 0, [], T0) is None  # step 0 is done: nothing written
    assert engine.store.alert_expire(alert.id, 0) is None
    assert len(_outbox(engine.store)) == 1


def test_quiet_hours_hold_non_critical_escalating_alerts(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock, quiet_hours={"start": "00:00", "end": "23:59"})
    _hot(engine)
    assert engine.store.alerts() == [] and engine.store.audit_log(kind="alert_quiet")


def test_the_ack_hint_always_fits() -> None:
    text = alert_text("x" * 2000, 12345, 2)
    assert text.endswith("…\nReply ACK 12345 to acknowledge") and count_parts(text) <= 2
    assert alert_text("short", 7, 1) == "short\nReply ACK 7 to acknowledge"


@pytest.mark.parametrize(("text", "expected"), [
    ("ACK", (True, None)), ("ack 42", (True, 42)), (" Ack  #42 ", (True, 42)), ("ACK42", (True, 42)),
    ("ACKNOWLEDGE", (False, None)), ("ACK 4 2", (False, None)), ("PUMP 1 ON", (False, None)),
])
def test_parse_ack(text: str, expected: tuple[bool, int | None]) -> None:
    assert parse_ack(text) == expected


def _rules(**alert: Any) -> Any:
    return validate_rules_table({"contacts": {"alice": ALICE, "bob": BOB}, "groups": {"oncall": ["alice"]},
                                 "alerts": [{"topic": "sensors/+/temp", "text": "t", **alert}]}, "smsgw.toml")


@pytest.mark.parametrize(("alert", "error"), [
    ({"escalate": {"chain": ["alice"], "afer": "5m"}},
     r"alerts\[0\]\.escalate\.afer: unknown key \(did you mean 'after'\?\)"),
    ({"escalate": {"chain": ["alice", "bobb"]}},
     r"alerts\[0\]\.escalate\.chain\[1\]: 'bobb' is not a contact, a group or a number \(did you mean 'bob'\?\)"),
    ({"escalate": {"chain": ["alice", "12ab"]}}, r"alerts\[0\]\.escalate\.chain\[1\]: "),
    ({"escalate": {"after": "5m"}}, r"alerts\[0\]\.escalate\.chain: is required"),
    ({"escalate": {"chain": []}}, r"alerts\[0\]\.escalate\.chain: must be a non-empty array"),
    ({"escalate": {"chain": ["alice"], "after": 0}}, r"alerts\[0\]\.escalate\.after: must be a duration longer"),
    ({"escalate": {"chain": ["alice"], "after": "soon"}}, r"alerts\[0\]\.escalate\.after: must be a number"),
    ({"escalate": {"chain": ["alice"], "repeat": 0}}, r"alerts\[0\]\.escalate\.repeat: must be at least 1, not 0"),
    ({"escalate": {"chain": ["alice"], "repeat": "2"}}, r"alerts\[0\]\.escalate\.repeat: must be a whole number of rounds, not a string \('2'\)"),
    ({"escalate": "alice"}, r"alerts\[0\]\.escalate: must be a table"),
    ({"escalate": {"chain": ["alice"]}, "to": ["bob"]}, r"alerts\[0\]\.to: a rule with escalate alerts"),
    ({"escalate": {"chain": ["alice"]}, "cooldown": "10m"}, r"alerts\[0\]\.cooldown: does not apply"),
    ({"to": ["bob"], "resolve": "sensors/+/ok"}, r"alerts\[0\]\.resolve: only applies to a rule with escalate"),
    ({}, r"alerts\[0\]\.to: is required \(or escalate"),
    ({"escalate": {"chain": ["alice"]}, "resolve": "sensors/ok"},
     r"alerts\[0\]\.resolve\.topic: must have the wildcards of the rule's topic"),
    ({"escalate": {"chain": ["alice"]}, "resolve": "sensors/+/ok/#x"}, r"alerts\[0\]\.resolve\.topic: '#' must"),
    ({"escalate": {"chain": ["alice"]}, "resolve": "smsgw/+/send"}, r"alerts\[0\]\.resolve\.topic: .*request"),
    ({"escalate": {"chain": ["alice"]}, "resolve": "sensors/+/temp"}, r"alerts\[0\]\.resolve\.field: is required"),
    ({"escalate": {"chain": ["alice"]}, "resolve": {"value": "ok"}}, r"alerts\[0\]\.resolve: needs a topic"),
    ({"escalate": {"chain": ["alice"]}, "resolve": {"topic": "sensors/+/ok", "value": "ok"}},
     r"alerts\[0\]\.resolve\.value: needs field"),
    ({"escalate": {"chain": ["alice"]}, "resolve": {"field": "sta te"}}, r"alerts\[0\]\.resolve\.field: must be"),
    ({"escalate": {"chain": ["alice"]}, "resolve": {"fild": "state"}},
     r"alerts\[0\]\.resolve\.fild: unknown key \(did you mean 'field'\?\)"),
])
def test_config_errors_name_the_key(alert: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=rf"^smsgw\.toml: {error}"):
        _rules(**alert)


def test_chain_members_are_listed_senders() -> None:
    rules = validate_rules_table({"groups": {"night": ["+4917000000007"]},
                                  "alerts": [{"topic": "a/+", "text": "t", "escalate": {"chain": ["night"]}}]})
    assert "+4917000000007" in rules.listed()
    [rule] = rules.alerts
    assert rule.to == () and rule.escalate is not None and rule.escalate.steps == 1
    assert rule.escalate.after == 300.0


def test_home_assistant_entities_of_an_escalating_rule_read_its_retained_state(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    messages = dict(discovery_messages(prefix="homeassistant", base_topic="smsgw", node="barn", modems={},
                                       alerts=["freezer"]))
    problem = messages["homeassistant/binary_sensor/barn/alert_freezer/config"]
    state = messages["homeassistant/sensor/barn/alert_freezer_state/config"]
    for topic in ("homeassistant/binary_sensor/barn/alert_freezer/config",
                  "homeassistant/sensor/barn/alert_freezer_state/config"):
        assert validate(topic, messages[topic]) == []
    assert problem["state_topic"] == state["state_topic"] == "smsgw/alert_rule/freezer"
    assert problem["device_class"] == "problem"

    def rule_state() -> str:
        payload = [e.payload for e in engine.store.events_pending(1000) if e.topic == "alert_rule/freezer"][-1]
        return json.dumps(payload)

    engine.store.alert_rule_publish("freezer")
    assert (render_value(problem["value_template"], rule_state()), render_value(state["value_template"], rule_state())) \
        == ("OFF", "none")
    _hot(engine)
    assert (render_value(problem["value_template"], rule_state()), render_value(state["value_template"], rule_state())) \
        == ("ON", "open")
    attributes = json.loads(render_value(state["json_attributes_template"], rule_state()))
    assert (attributes["active"], attributes["alerted"], attributes["step"]) == (1, [ALICE], 1)
    engine.on_alert("sensors/freezer-3/ok", b"")
    assert (render_value(problem["value_template"], rule_state()), render_value(state["value_template"], rule_state())) \
        == ("OFF", "resolved")


def test_closed_alerts_are_pruned_after_the_retention_active_ones_never(tmp_path: Path) -> None:
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    _hot(engine, "freezer-1")
    _hot(engine, "freezer-2")
    engine.on_alert("sensors/freezer-1/ok", b"")
    clock.advance(31 * 86400)
    assert engine.store.prune(retention_days=30)["alerts"] == 1
    assert [json.loads(a.key) for a in engine.store.alerts()] == [["freezer-2"]]


def test_help_lists_ack_for_chain_members_only(tmp_path: Path) -> None:
    engine = _engine(tmp_path, Clock(T0))
    assert _reply(engine, BOB, "HELP") == "help"
    assert _outbox(engine.store)[-1] == (BOB, "Commands: ACK <code>; HELP; STATUS; STOP; START")
    assert _reply(engine, DAVE, "HELP") == "help"
    assert _outbox(engine.store)[-1] == (DAVE, "Commands: HELP; STATUS; STOP; START")


def test_smsgw_status_lists_the_active_alerts_with_the_names_alerted(tmp_path: Path) -> None:
    from appliance.commands.status import collect, render

    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    _hot(engine, "freezer-1")
    _hot(engine, "freezer-2")
    engine.on_alert("sensors/freezer-2/ok", b"")
    clock.advance(300)
    engine.escalation.run_due()
    doc = collect(engine.store, engine.config)
    assert doc["alerts"]["rules"] == ["freezer"]
    assert doc["alerts"]["counts"] == {"open": 1, "acknowledged": 0, "resolved": 1, "expired": 0, "active": 1}
    [active] = doc["alerts"]["active"]
    assert (active["state"], active["alerted_names"], active["step"]) == ("open", ["alice", "bob"], 2)
    text = render(doc)
    assert "Alerts: 1 open, 0 acknowledged, 1 resolved, 0 expired" in text
    [row] = [line for line in text.splitlines() if line.split()[:2] == [str(active["id"]), "freezer"]]
    assert row.split()[2:6] == ["open", "2/6", "alice,", "bob"] and "Freezer freezer-1" in row


@pytest.mark.parametrize("drop", [None, "alert_due", "alert_active"])
def test_the_timer_and_trigger_queries_search_indexes(tmp_path: Path, drop: str | None) -> None:
    # the timer loop runs alerts_due and alert_next_due at every wake-up, and a repeated trigger looks
    # up the active alert of its sensor: none may read the table's history
    clock = Clock(T0)
    engine = _engine(tmp_path, clock)
    for n in range(30):
        _hot(engine, f"freezer-{n}")
        if n % 2:
            engine.on_alert(f"sensors/freezer-{n}/ok", b"")  # closed: history
    conn = connection(engine.store)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        engine.store.alerts_due(clock.now + 300)
        engine.store.alert_next_due()
        _hot(engine, "freezer-2", 3.0)  # counted into its open alert
    finally:
        conn.set_trace_callback(None)
    if drop:
        conn.execute(f"DROP INDEX {drop}")
    lookups = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT") and "FROM alert" in sql]
    assert len(lookups) >= 3
    bad = [(sql, step) for sql in lookups for step in [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
           if (step.startswith("SCAN alert") and "INDEX alert_" not in step) or "TEMP B-TREE" in step]
    assert bool(bad) == (drop is not None), bad  # without either index the check sees the scan
