"""Urgent and held messages on a real SQLite store: ``"class": 0`` (flash) and ``"send_at"`` through the
send intake, quiet hours that hold, and the store that does not hand a held message out before it is due
(``Store.claim``, ``Store.next_due_at``), with the store's clock injected."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from appliance.config import ConfigError, NumbersConfig, parse_config
from appliance.intake import (
    SEND_AT_PAST_TOLERANCE,
    Intake,
    IntakePolicy,
    InvalidField,
    SendRequest,
    parse_send_at,
    prepare,
    request_from_json,
)
from appliance.store import Store
from appliance.timeofday import QuietHours, last_daily, next_daily, read_quiet_hours
from drivers.pdu import decode

NUMBER = "+4917612345678"
BERLIN = ZoneInfo("Europe/Berlin")
#: 2026-12-02 12:00 in Berlin (UTC+1)
NOON = datetime(2026, 12, 2, 12, 0, tzinfo=BERLIN).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Store]:
    with Store(tmp_path / "smsgw.db", clock=clock) as opened:
        yield opened


def policy(**options: Any) -> IntakePolicy:
    return IntakePolicy(numbers=NumbersConfig(default_country="DE"), **options)


def json_request(now: float = NOON, **fields: Any) -> SendRequest:
    return request_from_json({"to": NUMBER, "text": "Gas alarm", **fields}, source="mqtt", now=now)


# --- "class" ------------------------------------------------------------------------------------


def test_class_0_is_kept_and_reaches_the_claimed_message(store: Store) -> None:
    request = json_request(**{"class": 0})
    assert request.message_class == 0
    (accepted,) = Intake(policy(), store).submit(request)
    assert store.message(accepted.id)["message_class"] == 0  # type: ignore[index]
    claimed = store.claim("sim0", lease=60)
    assert claimed is not None and claimed.message_class == 0


@pytest.mark.parametrize("value", [1, 3, True, "0", 0.0, None, [0]])
def test_class_other_than_0_is_refused_naming_the_field(value: object) -> None:
    if value is None:  # "class": null is the same as no class
        assert json_request(**{"class": None}).message_class is None
        return
    with pytest.raises(InvalidField) as caught:
        json_request(**{"class": value})
    assert caught.value.field == "class"
    assert "'class' must be 0" in str(caught.value)


def test_class_0_from_a_request_object_is_checked_too() -> None:
    with pytest.raises(InvalidField, match="'class'"):
        prepare(SendRequest(to=(NUMBER,), text="x", source="cli", message_class=2), policy(), NOON)


# --- "send_at" ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("2026-12-02T13:00:00+01:00", NOON + 3600),
    ("2026-12-02T12:00:30Z", NOON + 3630),
    ("2026-12-02 12:30:00.5+00:00", NOON + 5400.5),
])
def test_send_at_with_an_offset(text: str, expected: float) -> None:
    assert parse_send_at(text, NOON) == expected


def test_send_at_without_an_offset_is_local_time() -> None:
    local = datetime.fromtimestamp(NOON + 7200).replace(tzinfo=None, microsecond=0)
    assert parse_send_at(local.isoformat(), NOON) == pytest.approx(NOON + 7200, abs=1)


@pytest.mark.parametrize("value, reason", [
    ("tomorrow", "not an ISO 8601 time"),
    ("2026-13-01T00:00:00Z", "not an ISO 8601 time"),
    ("0001-01-01T00:00:00", "is out of range"),  # a local time the platform cannot convert
    ("0001-01-01T00:00:00+00:00", "s in the past"),
    ("9999-12-31T23:59:59", "days ahead"),
    (1790000000, "must be an ISO 8601 time string, got a number"),
    ("2026-12-02T10:00:00Z", "s in the past"),
    ("2028-12-02T10:00:00Z", "days ahead"),
])
def test_bad_send_at_is_refused_naming_the_field(value: object, reason: str) -> None:
    with pytest.raises(InvalidField) as caught:
        json_request(send_at=value)
    assert caught.value.field == "send_at"
    assert reason in str(caught.value)


def test_send_at_a_little_in_the_past_goes_at_once(store: Store) -> None:
    late = datetime.fromtimestamp(NOON - SEND_AT_PAST_TOLERANCE + 10, BERLIN).isoformat()
    (accepted,) = Intake(policy(), store).submit(json_request(send_at=late))
    assert store.message(accepted.id)["send_at"] is None  # type: ignore[index]
    assert store.claim("sim0", lease=60) is not None


def test_a_message_with_send_at_is_not_claimed_before_it_is_due(store: Store, clock: Clock) -> None:
    intake = Intake(policy(validity=3600.0), store)
    (held,) = intake.submit(json_request(send_at="2026-12-02T14:00:00+01:00", id="later"))
    row = store.message(held.id)
    assert row is not None and row["send_at"] == NOON + 7200 and row["state"] == "queued"
    assert row["valid_until"] == NOON + 7200 + 3600  # the lifetime counts from when it is due
    (now,) = intake.submit(json_request(id="now"))
    assert store.next_due_at() == NOON  # the one due now
    claimed = store.claim("sim0", lease=60)
    assert claimed is not None and claimed.id == now.id
    store.release(claimed.id)
    store.fail(claimed.id, "done with it")
    assert store.claim("sim0", lease=60) is None
    assert store.next_due_at() == NOON + 7200  # the dispatcher sleeps until then
    clock.now = NOON + 7199
    assert store.claim("sim0", lease=60) is None
    clock.now = NOON + 7200
    claimed = store.claim("sim0", lease=60)
    assert claimed is not None and claimed.id == held.id
    assert store.expire_due() == []  # not expired while it waited


def test_a_held_message_survives_reopening_the_store(tmp_path: Path, clock: Clock) -> None:
    with Store(tmp_path / "smsgw.db", clock=clock) as first:
        (held,) = Intake(policy(), first).submit(json_request(send_at="2026-12-02T12:00:05+01:00", id="k"))
    with Store(tmp_path / "smsgw.db", clock=clock) as second:
        assert second.claim("sim0", lease=60) is None
        assert second.next_due_at() == NOON + 5
        (again,) = Intake(policy(), second).submit(json_request(send_at="2026-12-02T12:00:05+01:00", id="k"))
        assert again.duplicate and again.id == held.id
        clock.now = NOON + 5
        claimed = second.claim("sim0", lease=60)
        assert claimed is not None and claimed.id == held.id


# --- quiet hours --------------------------------------------------------------------------------


def test_quiet_hours_window_and_its_end() -> None:
    quiet = QuietHours(dtime(22, 0), dtime(7, 0), BERLIN)
    evening = datetime(2026, 12, 2, 23, 30, tzinfo=BERLIN).timestamp()
    morning = datetime(2026, 12, 3, 7, 0, tzinfo=BERLIN).timestamp()
    assert quiet.active(evening) and quiet.end_after(evening) == morning
    early = datetime(2026, 12, 3, 3, 0, tzinfo=BERLIN).timestamp()
    assert quiet.end_after(early) == morning
    assert not quiet.active(NOON) and quiet.end_after(NOON) == NOON
    assert QuietHours.parse("22:00-07:00") == QuietHours(dtime(22, 0), dtime(7, 0))
    assert QuietHours.parse("22:00") is None and QuietHours.parse("25:00-07:00") is None


def test_daily_times_across_a_daylight_saving_change() -> None:
    # Europe/Berlin went from UTC+1 to UTC+2 on 2026-03-29 at 02:00
    before = datetime(2026, 3, 28, 8, 0, tzinfo=BERLIN).timestamp()
    after = next_daily((dtime(7, 0),), before, BERLIN)
    assert datetime.fromtimestamp(after, BERLIN) == datetime(2026, 3, 29, 7, 0, tzinfo=BERLIN)
    assert after - before == timedelta(hours=22).total_seconds()
    assert last_daily((dtime(7, 0),), after, BERLIN) == after
    # 02:30 does not exist that night: it is 02:30 in the offset before the change, 03:30 summer time
    skipped = next_daily((dtime(2, 30),), before, BERLIN)
    assert datetime.fromtimestamp(skipped, BERLIN) == datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)
    # 02:30 on 25 October 2026 happens twice (back from UTC+2 to UTC+1): the first one
    autumn = next_daily((dtime(2, 30),), datetime(2026, 10, 24, 12, 0, tzinfo=BERLIN).timestamp(), BERLIN)
    assert datetime.fromtimestamp(autumn, BERLIN).utcoffset() == timedelta(hours=2)
    monday = next_daily((dtime(7, 0),), before, BERLIN, frozenset({0}))
    assert datetime.fromtimestamp(monday, BERLIN).date().isoformat() == "2026-03-30"


def test_quiet_hours_hold_non_critical_messages_until_they_end(store: Store, clock: Clock) -> None:
    quiet = QuietHours(dtime(22, 0), dtime(7, 0), BERLIN)
    clock.now = datetime(2026, 12, 2, 23, 0, tzinfo=BERLIN).timestamp()
    morning = datetime(2026, 12, 3, 7, 0, tzinfo=BERLIN).timestamp()
    intake = Intake(policy(quiet_hours=quiet), store)
    (normal,) = intake.submit(SendRequest(to=(NUMBER,), text="report", source="mqtt"))
    (critical,) = intake.submit(SendRequest(to=(NUMBER,), text="gas!", source="mqtt", priority="critical"))
    (answer,) = intake.submit(SendRequest(to=(NUMBER,), text="pump on", source="command:pump", answer=True))
    assert store.message(normal.id)["send_at"] == morning  # type: ignore[index]
    assert store.message(critical.id)["send_at"] is None  # type: ignore[index]
    assert store.message(answer.id)["send_at"] is None  # type: ignore[index]
    claimed = [store.claim("sim0", lease=60), store.claim("sim0", lease=60), store.claim("sim0", lease=60)]
    assert sorted(c.id for c in claimed if c is not None) == sorted([critical.id, answer.id])
    for done in (critical.id, answer.id):
        store.fail(done, "sent elsewhere")
    # a send_at inside the window is held to its end; one of the channel's own hours wins over the policy's
    later = SendRequest(to=(NUMBER,), text="x", source="mqtt", send_at=clock.now + 3600,
                        quiet_hours=QuietHours(dtime(23, 30), dtime(6, 0), BERLIN))
    (own,) = intake.submit(later)
    assert store.message(own.id)["send_at"] == morning - 3600  # type: ignore[index]
    clock.now = morning - 3600
    first = store.claim("sim0", lease=60)
    assert first is not None and first.id == own.id and store.claim("sim0", lease=60) is None
    clock.now = morning
    second = store.claim("sim0", lease=60)
    assert second is not None and second.id == normal.id


def test_quiet_hours_config_hold_key(tmp_path: Path) -> None:
    raw = {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin", "hold": True}}
    quiet = read_quiet_hours(tmp_path / "smsgw.toml", raw)
    assert quiet is not None and quiet.hold and quiet.hours.end == dtime(7, 0)
    config = parse_config({"store": {"path": str(tmp_path / "s.db")}, **raw}, tmp_path / "smsgw.toml")
    assert IntakePolicy.from_config(config).quiet_hours == quiet.hours
    raw["quiet_hours"]["hold"] = False
    config = parse_config({"store": {"path": str(tmp_path / "s.db")}, **raw}, tmp_path / "smsgw.toml")
    assert IntakePolicy.from_config(config).quiet_hours is None  # drops alerts only, as before
    with pytest.raises(ConfigError, match=r"smsgw.toml: quiet_hours.hodl: unknown key \(did you mean 'hold'\?\)"):
        read_quiet_hours(tmp_path / "smsgw.toml", {"quiet_hours": {"start": "22:00", "end": "07:00", "hodl": 1}})
    with pytest.raises(ConfigError, match="quiet_hours.hold: must be true or false"):
        read_quiet_hours(tmp_path / "smsgw.toml", {"quiet_hours": {"start": "22:00", "end": "07:00", "hold": "yes"}})


# --- the dispatcher's encoding ------------------------------------------------------------------


def test_the_dispatcher_encodes_the_stored_class(store: Store) -> None:
    from appliance.dispatcher import Dispatcher

    text = "Gas alarm in hall 2, evacuate now. " * 10  # three GSM 7-bit parts (350 characters)
    (accepted,) = Intake(policy(), store).submit(json_request(text=text, **{"class": 0}))
    dispatcher = Dispatcher(store, [])
    claimed = store.claim("sim0", lease=60, encode=dispatcher._encoder("sim0", NOON))
    assert claimed is not None and claimed.id == accepted.id and len(claimed.parts) == 3
    for part in claimed.parts:
        message = decode(part.pdu)
        assert (message.dcs, message.message_class) == (0x10, 0)  # type: ignore[union-attr]
