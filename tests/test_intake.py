"""The send intake (appliance/intake.py) on a real SQLite store: what MQTT, the CLI and the rules hand
it, and the kinds of refusal a transport tells apart (field named, opted out, over the cap, store
unavailable; a repeated ``id`` answered with the queued message)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_disk_full import fill, small_disk  # noqa: F401  (its fixture; F811 below)

from appliance.config import Config, NumbersConfig, parse_config
from appliance.intake import (
    BadDestination,
    Intake,
    IntakeError,
    IntakePolicy,
    InvalidField,
    OverDailyCap,
    Prepared,
    RecipientOptedOut,
    SendRequest,
    StoreUnavailable,
    TextTooLong,
    prepare,
    prepare_json,
    request_from_json,
)
from appliance.store import Store

NUMBER = "+4917612345678"


def make_config(tmp_path: Path, sources: dict[str, Any] | None = None) -> Config:
    data: dict[str, Any] = {
        "store": {"path": str(tmp_path / "smsgw.db")},
        "numbers": {"default_country": "DE", "blocked": ["+4915"]},
        "limits": {"max_parts": 3},
    }
    if sources is not None:
        data["sources"] = sources
    return parse_config(data, tmp_path / "smsgw.toml")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "smsgw.db") as opened:
        yield opened


def intake_for(tmp_path: Path, store: Store, sources: dict[str, Any] | None = None) -> Intake:
    return Intake(IntakePolicy.from_config(make_config(tmp_path, sources)), store)


def send(to: str | tuple[str, ...], text: str = "hi", source: str = "rule:x", **options: Any) -> SendRequest:
    return SendRequest(to=(to,) if isinstance(to, str) else to, text=text, source=source, **options)


def test_submit_normalises_queues_and_names_the_source(tmp_path: Path, store: Store) -> None:
    intake = intake_for(tmp_path, store)
    [accepted] = intake.submit(send("0176 1234 5678", "rule fired", "rule:freezer", client_key="r1"))
    assert not accepted.duplicate and accepted.to == NUMBER and accepted.state == "queued"
    row = store.message(accepted.id)
    assert row is not None and row["source"] == "rule:freezer" and row["to"] == NUMBER
    with pytest.raises(BadDestination, match="premium-rate") as info:
        intake.submit(send("+49900123456", "x"))
    assert info.value.reason == "bad_destination" and info.value.field == "to"


def test_a_repeated_id_returns_the_queued_message(tmp_path: Path, store: Store) -> None:
    intake = intake_for(tmp_path, store)
    first = intake.submit(send((NUMBER, "+4917699999999", "0176 1234 5678"), client_key="same"))
    assert [a.duplicate for a in first] == [False, False]  # the national form is the same recipient
    again = intake.submit(send((NUMBER, "+4917699999999"), client_key="same"))
    assert [(a.id, a.state, a.duplicate) for a in again] == [(a.id, "queued", True) for a in first]
    assert len(store.outbox()) == 2


def test_the_daily_cap_refuses_over_it_but_not_a_repeated_id(tmp_path: Path, store: Store) -> None:
    intake = intake_for(tmp_path, store, sources={"rule:*": {"daily_cap": 1}})
    intake.submit(send(NUMBER, "first", "rule:freezer", client_key="k"))
    with pytest.raises(OverDailyCap, match=r"daily cap of 1 messages for source 'rule:freezer' reached") as info:
        intake.submit(send(NUMBER, "second", "rule:freezer"))
    assert info.value.reason == "over_cap" and info.value.cause.cap == 1 and info.value.field is None
    [again] = intake.submit(send(NUMBER, "first", "rule:freezer", client_key="k"))
    assert again.duplicate
    intake.submit(send(NUMBER, "other rule", "rule:boiler"))
    assert len(store.outbox()) == 2


def test_a_batch_is_counted_together_and_each_request_answered_on_its_own(tmp_path: Path, store: Store) -> None:
    intake = intake_for(tmp_path, store, sources={"mqtt": {"daily_cap": 2}})
    store.optout_add("+4917600000001", "test")
    batch = [intake.prepare(r) for r in (send(NUMBER, "a", "mqtt"), send("+4917600000001", "b", "mqtt"),
                                          send(NUMBER, "c", "mqtt:kitchen"), send(NUMBER, "d", "mqtt"))]
    outcomes = intake.submit_many(batch)
    assert isinstance(outcomes[0], list) and isinstance(outcomes[2], list)
    assert isinstance(outcomes[1], RecipientOptedOut) and outcomes[1].field == "to"
    assert isinstance(outcomes[3], OverDailyCap)
    assert str(outcomes[3]) == "daily cap of 2 messages for source 'mqtt' reached (2 accepted today)"
    assert [m["text"] for m in store.outbox()] == ["c", "a"]


def test_admit_checks_as_submit_does_and_commits_nothing(tmp_path: Path, store: Store) -> None:
    intake = intake_for(tmp_path, store, sources={"alert:*": {"daily_cap": 2}})
    prepared = intake.admit(send(("0176 1234 5678", "+4917699999999"), "cold room", "alert:coldroom"))
    assert [r.to for r in prepared.requests] == [NUMBER, "+4917699999999"] and store.outbox() == []
    store.enqueue(list(prepared.requests))  # the caller commits them (an alert's step, with its row)
    with pytest.raises(OverDailyCap, match="'alert:coldroom' reached"):
        intake.admit(send(NUMBER, "again", "alert:coldroom"))
    store.optout_add("+4917600000001", "test")
    with pytest.raises(RecipientOptedOut):
        intake.admit(send("+4917600000001", "x", "alert:other"))
    assert intake.admit(send("+4917600000001", "x", "alert:other", priority="critical")).requests
    with pytest.raises(BadDestination):
        intake.admit(send("+49900123456", "x", "alert:other"))
    with pytest.raises(TextTooLong):
        intake.admit(send(NUMBER, "x" * 1000, "alert:other"))
    assert len(store.outbox()) == 2


def test_validity_defaults_to_the_configured_limit() -> None:
    """Without ``valid_for`` a request expires after ``[limits].validity``, as `smsgw send` does."""
    policy = IntakePolicy(NumbersConfig(), max_parts=10, validity=3600.0)
    plain = prepare(request_from_json({"to": NUMBER, "text": "hi"}, source="mqtt"), policy, 1000.0)
    assert [r.valid_until for r in plain.requests] == [4600.0]
    explicit = prepare(request_from_json({"to": NUMBER, "text": "hi", "valid_for": 60}, source="mqtt"), policy,
                       1000.0)
    assert [r.valid_until for r in explicit.requests] == [1060.0]


@pytest.mark.parametrize(
    ("request_", "field", "message"),
    [
        (send(NUMBER, ""), "text", "'text' is empty"),
        (send(NUMBER, "ca\udce9"), "text", "'text' has a lone surrogate at character 2 (not text)"),
        (send(NUMBER, client_key=""), "id", "'id' is empty"),
        (send(NUMBER, priority="urgent"), "priority", "unknown priority 'urgent' (one of critical, high"),
        (send(NUMBER, valid_for=0), "valid_for", "'valid_for' must be a positive number of seconds, got 0"),
        (send(NUMBER, valid_for=float("nan")), "valid_for", "'valid_for' must be a positive number"),
        (send(NUMBER, language="klingon"), "language", "unknown 'language' 'klingon' (one of bn, es"),
        (send(()), "to", "'to' is an empty list"),
    ],
)
def test_a_bad_field_is_named(request_: SendRequest, field: str, message: str) -> None:
    with pytest.raises(InvalidField) as info:
        prepare(request_, IntakePolicy(NumbersConfig()), 0.0)
    assert info.value.reason == "invalid" and info.value.field == field and message in str(info.value)


def test_the_part_limit_counts_as_the_dispatcher_encodes() -> None:
    policy = IntakePolicy(NumbersConfig(), max_parts=2)
    # UCS-2: 3 parts of 67; with the Turkish shift tables (3GPP TS 23.038 6.2.1.2.4) one GSM-7 part
    turkish = "ışğ" * 50
    with pytest.raises(TextTooLong) as info:
        prepare(send(NUMBER, turkish), policy, 0.0)
    assert (info.value.parts, info.value.limit, info.value.encoding, info.value.field) == (3, 2, "ucs2", "text")
    assert str(info.value) == "text too long: 150 characters need 3 SMS parts, the limit is 2 (limits.max_parts)"
    assert prepare(send(NUMBER, turkish, language="tr"), policy, 0.0).parts == 1
    with pytest.raises(TextTooLong) as info:  # past 255 parts no concatenated SMS carries it
        prepare(send(NUMBER, "x" * 40_000), IntakePolicy(NumbersConfig()), 0.0)
    assert info.value.limit is None and "text too long: 40000 characters" in str(info.value)


def test_json_requests_name_the_field_and_its_type() -> None:
    for payload, field, message in [
        ([1, 2], "request", "request must be a JSON object, got an array"),
        ({"text": "x"}, "to", "missing 'to' (a phone number or a list of numbers)"),
        ({"to": NUMBER}, "text", "missing 'text'"),
        ({"to": 49176, "text": "x"}, "to", "'to' must be a phone number string or a list of them, got a number"),
        ({"to": NUMBER, "text": "x", "id": 1.5}, "id", "'id' must be a string, got a number"),
        ({"to": NUMBER, "text": "x", "report": "yes"}, "report", "'report' must be true or false, got a string"),
    ]:
        with pytest.raises(InvalidField) as info:
            request_from_json(payload, source="mqtt")
        assert (info.value.field, str(info.value)) == (field, message)
    request = request_from_json({"to": [NUMBER], "text": "x", "id": 7, "language": "TR", "transaction": 1},
                                source="mqtt:kitchen")
    assert request == SendRequest(to=(NUMBER,), text="x", source="mqtt:kitchen", client_key="7", language="tr")
    policy = IntakePolicy(NumbersConfig(), validity=60.0)
    assert prepare_json({"to": [NUMBER], "text": "x", "id": 7, "language": "TR"}, source="mqtt:kitchen", policy=policy,
                        now=0.0) == prepare(request, policy, 0.0)


def test_a_cap_of_zero_is_refused_without_the_store(tmp_path: Path) -> None:
    policy = IntakePolicy.from_config(make_config(tmp_path, sources={"cli": {"daily_cap": 0}}))
    with pytest.raises(OverDailyCap, match="daily cap of 0 messages for source 'cli' reached"):
        policy.check_cap_open("cli")
    policy.check_cap_open("mqtt")
    assert not (tmp_path / "smsgw.db").exists()


def test_a_full_disk_is_store_unavailable_and_nothing_is_lost(small_disk: Path) -> None:  # noqa: F811
    config = make_config(small_disk)
    with Store(small_disk / "smsgw.db") as store:
        intake = Intake(IntakePolicy.from_config(config), store)
        intake.submit(send(NUMBER, "before"))
        prepared: Prepared = intake.prepare(send(NUMBER, "x" * 150, client_key="later"))
        filler = fill(small_disk)
        try:
            outcomes = intake.submit_many([prepared, prepared])
            assert all(isinstance(o, StoreUnavailable) and "is full" in str(o) for o in outcomes), outcomes
            assert all(isinstance(o, IntakeError) and o.reason == "store_unavailable" for o in outcomes)
        finally:
            filler.unlink()
        [accepted] = intake.submit(prepared)  # the same request, once there is room again
        assert not accepted.duplicate
        assert [m["text"] for m in store.outbox()] == ["x" * 150, "before"]
