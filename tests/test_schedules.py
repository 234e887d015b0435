"""``[[schedules]]`` (appliance/rules/schedules.py) on a real SQLite store with an injected clock: an
occurrence is queued once with the store's figures in its text, a restart (a new runner on the same
file) neither repeats it nor loses the next, a missed one is sent on start within its grace, else
audited; and the alert rules' ``flash`` and ``quiet_hours``."""

from __future__ import annotations

from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from appliance.config import ConfigError, parse_config
from appliance.rules.config import validate_rules_table
from appliance.rules.engine import RulesEngine
from appliance.rules.schedules import Schedules, occurrence_key
from appliance.store import Store
from appliance.store_schedule import SCHEDULE_STATE

BERLIN = ZoneInfo("Europe/Berlin")
ALICE, BOB = "+4917000000001", "+4917000000002"
SCHEDULE = {
    "name": "morning", "at": "07:00", "timezone": "Europe/Berlin", "to": ["staff"],
    "text": "{date}: {queued} queued, {failed} failed; 24 h: {sent_24h} sent, {received_24h} received",
}
BASE: dict[str, Any] = {
    "contacts": {"alice": ALICE, "bob": BOB},
    "groups": {"staff": ["alice", "bob"]},
    "schedules": [SCHEDULE],
}


def _at(day: int, hour: int, minute: int = 0) -> float:
    return datetime(2026, 12, day, hour, minute, tzinfo=BERLIN).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _config(tmp_path: Path, **schedule: Any) -> Any:
    data = {**BASE, "schedules": [{**SCHEDULE, **schedule}], "store": {"path": str(tmp_path / "smsgw.db")}}
    return parse_config(data, tmp_path / "smsgw.toml")


def _texts(store: Store) -> list[tuple[str, str, str | None]]:
    return [(m["to"], m["text"], m["client_key"]) for m in reversed(store.outbox(100))]


# --- configuration ------------------------------------------------------------------------------


def test_a_schedule_resolves_its_recipients_times_and_days() -> None:
    data = {**BASE, "schedules": [{**SCHEDULE, "at": ["19:30", "07:00", "07:00"], "days": ["Mon", "friday"],
                                   "grace": "30m", "flash": True, "priority": "high"}]}
    (rule,) = validate_rules_table(data, "smsgw.toml").schedules
    assert rule.to == (ALICE, BOB) and rule.at == (dtime(7, 0), dtime(19, 30))
    assert rule.days == frozenset({0, 4}) and rule.grace == 1800.0 and rule.flash and rule.priority == "high"
    assert rule.source == "schedule:morning"
    # Wednesday 2 December 2026 08:00: the next one is Friday 07:00
    assert rule.next_after(_at(2, 8)) == _at(4, 7)


@pytest.mark.parametrize(("change", "key", "fragment"), [
    ({"at": "7 o'clock"}, "schedules[0].at[0]", "time of day like \"07:00\""),
    ({"at": []}, "schedules[0].at", "non-empty array"),
    ({"at": ...}, "schedules[0].at", "is required"),
    ({"days": ["mon", "thurs"]}, "schedules[0].days[1]", "did you mean 'thursday'"),
    ({"days": "mon"}, "schedules[0].days", "non-empty array of weekdays"),
    ({"text": "{queued} and {sent_today}"}, "schedules[0].text", "unknown name 'sent_today'"),
    ({"to": ["nobody"]}, "schedules[0].to[0]", "'nobody' is not a contact"),
    ({"timezone": "Mars/Olympus"}, "schedules[0].timezone", "unknown time zone"),
    ({"grace": "soon"}, "schedules[0].grace", "duration"),
    ({"evry": "1d"}, "schedules[0].evry", "unknown key"),
])
def test_schedule_config_errors_name_the_key(change: dict[str, Any], key: str, fragment: str) -> None:
    schedule = {k: v for k, v in {**SCHEDULE, **change}.items() if v is not ...}
    with pytest.raises(ConfigError) as info:
        validate_rules_table({**BASE, "schedules": [schedule]}, "smsgw.toml")
    assert info.value.key == key
    assert fragment in info.value.reason
    assert str(info.value).startswith(f"smsgw.toml: {key}: ")


def test_alert_flash_and_quiet_hours_config() -> None:
    alert = {"name": "gas", "topic": "hall/gas", "to": "alice", "text": "Gas!", "flash": True,
             "quiet_hours": "22:00-07:00"}
    (rule,) = validate_rules_table({**BASE, "alerts": [alert]}, "smsgw.toml").alerts
    assert rule.flash and rule.quiet_hours is not None and str(rule.quiet_hours) == "22:00-07:00"
    with pytest.raises(ConfigError, match=r"alerts\[0\]\.quiet_hours: must be a window like \"22:00-07:00\""):
        validate_rules_table({**BASE, "alerts": [{**alert, "quiet_hours": "22-7"}]}, "smsgw.toml")
    with pytest.raises(ConfigError, match=r"alerts\[0\]\.flash: must be true or false"):
        validate_rules_table({**BASE, "alerts": [{**alert, "flash": 0}]}, "smsgw.toml")


# --- the runner ---------------------------------------------------------------------------------


def test_each_occurrence_is_queued_once_with_the_store_figures(tmp_path: Path) -> None:
    clock = Clock(_at(2, 6, 59))
    with Store(tmp_path / "smsgw.db", clock=clock) as store:
        runner = Schedules(_config(tmp_path), store)
        assert runner.run_due() == _at(2, 7)  # nothing yet; wake at 07:00
        assert _texts(store) == []
        clock.now = _at(2, 7)
        assert runner.run_due() == _at(3, 7)
        key = occurrence_key(runner.rules[0], _at(2, 7))
        assert key == "schedule:morning:2026-12-02T06:00:00Z"
        assert _texts(store) == [(ALICE, "2026-12-02: 0 queued, 0 failed; 24 h: 0 sent, 0 received", key),
                                 (BOB, "2026-12-02: 0 queued, 0 failed; 24 h: 0 sent, 0 received", key)]
        clock.now = _at(2, 7, 1)
        runner.run_due()
        assert len(_texts(store)) == 2  # not again
        # the next day, with yesterday's two queued, one of them sent since
        claimed = store.claim("sim0", lease=60)
        assert claimed is not None
        store.fail(claimed.id, "no network")
        clock.now = _at(3, 7)
        runner.run_due()
        assert _texts(store)[-1][1] == "2026-12-03: 1 queued, 1 failed; 24 h: 0 sent, 0 received"


def test_a_restart_neither_repeats_nor_loses_an_occurrence(tmp_path: Path) -> None:
    clock = Clock(_at(2, 7))
    with Store(tmp_path / "smsgw.db", clock=clock) as store:
        Schedules(_config(tmp_path), store).run_due()
    assert_count = 2
    clock.now = _at(2, 7, 5)
    with Store(tmp_path / "smsgw.db", clock=clock) as store:  # restarted five minutes later
        Schedules(_config(tmp_path), store).run_due()
        assert len(_texts(store)) == assert_count
        # killed after the commit of the 3 December message, before its occurrence was marked done
        clock.now = _at(3, 7)
        Schedules(_config(tmp_path), store).run_due()
        store.state_set(SCHEDULE_STATE, "morning", _at(2, 7))
    with Store(tmp_path / "smsgw.db", clock=clock) as store:
        Schedules(_config(tmp_path), store).run_due()
        texts = _texts(store)
        assert len(texts) == 4  # the same key again: the existing messages, nothing new
        assert store.state_get(SCHEDULE_STATE, "morning") == _at(3, 7)


def test_a_missed_occurrence_is_sent_on_start_within_its_grace(tmp_path: Path) -> None:
    clock = Clock(_at(2, 7))
    with Store(tmp_path / "smsgw.db", clock=clock) as store:
        Schedules(_config(tmp_path, grace="2h"), store).run_due()
        clock.now = _at(3, 8, 30)  # down from before 07:00 until 08:30 on the 3rd
        runner = Schedules(_config(tmp_path, grace="2h"), store)
        assert runner.run_due() == _at(4, 7)
        texts = _texts(store)
        assert len(texts) == 4 and texts[-1][1].startswith("2026-12-03:")
        assert texts[-1][2] == "schedule:morning:2026-12-03T06:00:00Z"  # the occurrence's key, not the start's
        assert store.audit_log(kind="schedule_missed") == []


def test_an_occurrence_missed_beyond_its_grace_is_audited_not_sent(tmp_path: Path) -> None:
    clock = Clock(_at(2, 7))
    with Store(tmp_path / "smsgw.db", clock=clock) as store:
        Schedules(_config(tmp_path), store).run_due()  # grace 1 h (default)
        clock.now = _at(3, 9)
        Schedules(_config(tmp_path), store).run_due()
        assert len(_texts(store)) == 2
        (entry,) = store.audit_log(kind="schedule_missed")
        assert entry["detail"]["rule"] == "morning" and entry["detail"]["at"].startswith("2026-12-03T")
        # a first start long after an occurrence has missed nothing: no audit, nothing sent
    with Store(tmp_path / "other.db", clock=clock) as fresh:
        Schedules(_config(tmp_path), fresh).run_due()
        assert _texts(fresh) == [] and fresh.audit_log(kind="schedule_missed") == []


def test_opted_out_recipients_are_skipped_unless_critical(tmp_path: Path) -> None:
    clock = Clock(_at(2, 7))
    with Store(tmp_path / "smsgw.db", clock=clock) as store:
        store.optout_add(BOB, "sms:STOP")
        Schedules(_config(tmp_path), store).run_due()
        assert [to for to, _, _ in _texts(store)] == [ALICE]
        assert store.audit_log(kind="schedule_optout")[0]["detail"]["skipped"] == [BOB]
    with Store(tmp_path / "critical.db", clock=clock) as store:
        store.optout_add(BOB, "sms:STOP")
        Schedules(_config(tmp_path, critical=True, flash=True), store).run_due()
        assert [to for to, _, _ in _texts(store)] == [ALICE, BOB]
        assert {m["message_class"] for m in store.outbox(10)} == {0}


# --- alert rules: flash and quiet hours that hold --------------------------------------------------


def _engine(tmp_path: Path, store: Store, clock: Clock, alert: dict[str, Any], **extra: Any) -> RulesEngine:
    data = {**BASE, "alerts": [alert], "store": {"path": str(tmp_path / "smsgw.db")}, **extra}
    return RulesEngine(parse_config(data, tmp_path / "smsgw.toml"), store, None, clock=clock)


def test_a_flash_alert_is_queued_as_class_0(tmp_path: Path) -> None:
    clock = Clock(_at(2, 12))
    with Store(tmp_path / "smsgw.db", clock=clock) as store:
        alert = {"name": "gas", "topic": "hall/gas", "to": "alice", "text": "Gas in {topic}!", "flash": True}
        engine = _engine(tmp_path, store, clock, alert)
        (message_id,) = engine.fire(engine.rules.alerts[0], "hall/gas", b"1")
        assert store.message(message_id)["message_class"] == 0  # type: ignore[index]


def test_quiet_hours_of_a_rule_hold_its_alerts_and_hold_true_holds_instead_of_dropping(tmp_path: Path) -> None:
    clock = Clock(_at(2, 23))
    morning = _at(3, 7)
    with Store(tmp_path / "smsgw.db", clock=clock) as store:
        alert = {"name": "door", "topic": "hall/door", "to": "alice", "text": "Door open", "quiet_hours": "22:00-07:00"}
        engine = _engine(tmp_path, store, clock, alert)
        (held,) = engine.fire(engine.rules.alerts[0], "hall/door", b"1")
        # the rule's quiet_hours are local time; the test runs in whatever zone the machine has
        quiet_hours = engine.rules.alerts[0].quiet_hours
        assert quiet_hours is not None
        assert store.message(held)["send_at"] == quiet_hours.end_after(clock.now)  # type: ignore[index]
    with Store(tmp_path / "hold.db", clock=clock) as store:
        quiet = {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin", "hold": True}
        alert = {"name": "door", "topic": "hall/door", "to": "alice", "text": "Door open"}
        engine = _engine(tmp_path, store, clock, alert, quiet_hours=quiet)
        (held,) = engine.fire(engine.rules.alerts[0], "hall/door", b"1")
        assert store.message(held)["send_at"] == morning  # type: ignore[index]
        assert store.audit_log(kind="alert_quiet") == []
        critical = {**alert, "name": "gas", "critical": True}
        engine = _engine(tmp_path, store, clock, critical, quiet_hours=quiet)
        (now,) = engine.fire(engine.rules.alerts[0], "hall/door", b"1")
        assert store.message(now)["send_at"] is None  # type: ignore[index]


def test_activity_since_counts_the_last_day_through_indexes(tmp_path: Path) -> None:
    from store_helpers import connection, request
    from test_store_plans import plan, traced

    clock = Clock(_at(2, 7))
    with Store(tmp_path / "smsgw.db", clock=clock) as store:
        ids = [r.id for r in store.enqueue([request(to=f"+4917000000{n:03d}") for n in range(4)])]
        store.fail(ids[0], "gone")
        clock.now = _at(3, 6)
        for _ in range(2):
            claimed = store.claim("sim0", lease=60)
            assert claimed is not None
            store.fail(claimed.id, "no network")
        with traced(connection(store)) as statements:
            assert store.activity_since(_at(2, 8)) == {"sent": 0, "failed": 2, "expired": 0, "received": 0}
        steps = [step for sql in statements if sql.lstrip().upper().startswith("SELECT")
                 for step in plan(connection(store), sql)]
        assert steps and all(step.startswith("SEARCH") for step in steps), steps
        assert store.activity_since(_at(1, 0))["failed"] == 3


async def test_the_running_schedule_sleeps_until_the_next_occurrence(tmp_path: Path) -> None:
    from waiting import async_wait_until

    clock = Clock(_at(2, 7) - 0.2)
    with Store(tmp_path / "smsgw.db", clock=clock) as store:
        runner = Schedules(_config(tmp_path), store)
        await runner.start()
        try:
            assert _texts(store) == []  # 1 December 07:00 is older than the grace: not sent on a first start
            clock.now = _at(2, 7)  # the runner's own timer (0.2 s) finds it due; nothing wakes it
            await async_wait_until(lambda: len(_texts(store)) == 2, timeout=5, what="the 07:00 occurrence")
            assert store.state_get(SCHEDULE_STATE, "morning") == _at(2, 7)
        finally:
            await runner.stop()
