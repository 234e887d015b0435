"""The SQLite store: outbox state machine, idempotency, leases, reports, inbox reassembly, events."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from store_helpers import SENT, T0, Clock, Concat, Deliver, connection, request, submit_parts

from appliance.store import InvalidRequest, Store
from drivers.pdu import SmsDeliver, SmsStatusReport, decode, encode_deliver, encode_status_report

pytest_plugins = ["store_fixtures"]

# --- outbound: enqueue and idempotency ----------------------------------------------------------


def test_enqueue_creates_one_queued_message_per_request_with_a_queued_event(store: Store) -> None:
    store.enqueue([request("+491700000000", "x" * 161)])
    assert store.events_pending()[0].payload["parts"] == 2  # counted by the codec before the split
    store.event_done(store.events_pending()[0].id)
    results = store.enqueue([request("+491701111111"), request("+491702222222")])
    assert [r.state for r in results] == ["queued", "queued"]
    assert not any(r.duplicate for r in results)
    events = store.events_pending()
    assert [e.topic for e in events] == [f"message/{results[0].id}", f"message/{results[1].id}"]
    assert events[0].payload == {
        "id": results[0].id, "to": "+491701111111", "state": "queued", "parts": 1, "modem": None,
        "at": "2026-09-21T14:13:20.000Z",
    }


@pytest.mark.parametrize("to", ["+491701111111", 'a"b\\c', "Zoë"])
def test_the_queued_event_is_stored_as_dump_json_writes_its_payload(store: Store, to: str) -> None:
    """The queued event's text is written without the JSON encoder for an ASCII recipient: the same text."""
    from appliance.payload import dump_json

    store.enqueue([request(to, "x" * 161)])
    [body] = store.event_bodies_pending()
    [event] = store.events_pending()
    assert body.body == dump_json(event.payload).encode()


def test_repeat_of_client_key_and_recipient_returns_existing_id_as_duplicate(store: Store) -> None:
    first = store.enqueue([request("+491701111111", client_key="k1"), request("+491702222222", client_key="k1")])
    again = store.enqueue([request("+491701111111", client_key="k1"), request("+491703333333", client_key="k1")])
    assert again[0].id == first[0].id and again[0].duplicate
    assert not again[1].duplicate and again[1].id not in (first[0].id, first[1].id)
    assert store.stats()["outbox"]["queued"] == 3


def test_duplicate_inside_one_batch_is_one_message(store: Store) -> None:
    results = store.enqueue([request(client_key="x"), request(client_key="x")])
    assert results[0].id == results[1].id
    assert [r.duplicate for r in results] == [False, True]


def test_duplicate_reports_the_current_state_of_the_existing_message(store: Store) -> None:
    (first,) = store.enqueue([request(client_key="k")])
    store.fail(first.id, "rejected")
    (again,) = store.enqueue([request(client_key="k")])
    assert (again.id, again.state, again.duplicate) == (first.id, "failed", True)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"text": ""}, "text is empty"),
        ({"to": " "}, "recipient is empty"),
        ({"priority": "urgent"}, "priority 'urgent' is not one of critical, high, normal, low"),
        ({"language": "klingon"}, "language 'klingon' is not one of bn, es, gu"),
    ],
)
def test_one_invalid_request_refuses_the_whole_batch_and_writes_nothing(
    store: Store, bad: dict[str, str], reason: str
) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        store.enqueue([request(), request(**bad)])  # type: ignore[arg-type]
    assert store.outbox(10) == []
    assert store.events_pending() == []


def test_enqueue_listener_fires_after_commit(store: Store, db_path: Path) -> None:
    seen: list[int] = []

    def on_enqueue() -> None:  # the rows must already be visible to another connection
        other = sqlite3.connect(db_path)
        seen.append(other.execute("SELECT COUNT(*) FROM message").fetchone()[0])
        other.close()

    store.add_enqueue_listener(on_enqueue)
    store.enqueue([request(), request("+491709999999")])
    assert seen == [2]


# --- claims, parts and the state machine ---------------------------------------------------------


def test_claim_takes_high_before_normal_before_low_and_fifo_within_a_priority(store: Store) -> None:
    ids = [r.id for r in store.enqueue([
        request("+491700000001", priority="low"),
        request("+491700000002"),
        request("+491700000003", priority="high"),
        request("+491700000004"),
        request("+491700000005", priority="high"),
    ])]
    order = []
    while (claimed := store.claim("sim0", lease=60)) is not None:
        order.append(claimed.id)
    assert order == [ids[2], ids[4], ids[1], ids[3], ids[0]]


def test_claim_sets_sending_with_modem_lease_and_attempt_and_writes_an_event(store: Store, clock: Clock) -> None:
    (queued,) = store.enqueue([request()])
    claimed = store.claim("sim0", lease=30)
    assert claimed is not None and claimed.id == queued.id
    assert (claimed.attempts, claimed.modem, claimed.lease_until) == (1, "sim0", T0 + 30)
    row = store.message(queued.id)
    assert row is not None and (row["state"], row["modem"], row["lease_until"]) == ("sending", "sim0", T0 + 30)
    assert store.events_pending()[-1].payload["state"] == "sending"
    assert store.claim("sim1", lease=30) is None  # leased: nobody else gets it


def test_claim_skips_excluded_recipients(store: Store) -> None:
    a, b = store.enqueue([request("+491700000001"), request("+491700000002")])
    claimed = store.claim("sim0", lease=60, exclude_recipients=["+491700000001"])
    assert claimed is not None and claimed.id == b.id


def test_parts_are_created_once_and_reused_on_retry(store: Store, clock: Clock) -> None:
    (queued,) = store.enqueue([request()])
    claimed = store.claim("sim0", lease=60)
    assert claimed is not None
    parts = store.set_parts(claimed.id, submit_parts(2, "AA"))
    assert [p.sequence for p in parts] == [1, 2]
    store.part_sent(claimed.id, 1, "sim0", 17)
    store.requeue(claimed.id, "CMS ERROR 38", next_attempt_at=clock.now)
    assert store.claim("sim1", lease=60) is None  # part 1 left through sim0: the rest waits for sim0
    assert store.next_due_at(modem_id="sim1", multipart_wait=600) == clock.now + 600
    again = store.claim("sim0", lease=60)
    assert again is not None and again.attempts == 2
    kept = store.set_parts(again.id, submit_parts(2, "BB"))  # a second encoding is ignored
    assert [p.pdu for p in kept] == [p.pdu for p in parts]
    assert [p.sequence for p in again.unsent_parts] == [2]


def test_message_is_sent_only_when_its_last_part_has_a_message_reference(store: Store) -> None:
    (queued,) = store.enqueue([request()])
    store.claim("sim0", lease=60)
    store.set_parts(queued.id, submit_parts(3))
    assert store.part_sent(queued.id, 1, "sim0", 1) == "sending"
    assert store.part_sent(queued.id, 2, "sim0", 2) == "sending"
    assert store.part_sent(queued.id, 3, "sim0", 3) == "sent"
    row = store.message(queued.id)
    assert row is not None and row["state"] == "sent" and row["lease_until"] is None
    assert [p["message_reference"] for p in row["parts_detail"]] == [1, 2, 3]
    assert [e.payload["state"] for e in store.events_pending()] == ["queued", "sending", "sent"]
    assert store.events_pending()[-1].payload["parts"] == 3


def test_transient_error_requeues_with_next_attempt_and_error(store: Store, clock: Clock) -> None:
    (queued,) = store.enqueue([request()])
    store.claim("sim0", lease=60)
    store.requeue(queued.id, "CMS ERROR 42: congestion", next_attempt_at=clock.now + 10)
    assert store.claim("sim0", lease=60) is None  # not due yet
    assert store.next_due_at() == clock.now + 10
    event = store.events_pending()[-1].payload
    assert (event["state"], event["error"]) == ("queued", "CMS ERROR 42: congestion")
    clock.advance(10)
    assert store.claim("sim0", lease=60) is not None


def test_permanent_error_fails_with_the_reason(store: Store) -> None:
    (queued,) = store.enqueue([request()])
    store.claim("sim0", lease=60)
    store.fail(queued.id, "CMS ERROR 21: short message transfer rejected")
    row = store.message(queued.id)
    assert row is not None and (row["state"], row["last_error"]) == (
        "failed", "CMS ERROR 21: short message transfer rejected")
    assert store.events_pending()[-1].payload["error"] == "CMS ERROR 21: short message transfer rejected"


def test_queued_message_past_its_validity_expires(store: Store, clock: Clock) -> None:
    short, long = store.enqueue([request(valid_until=T0 + 5), request("+491700000009", valid_until=T0 + 500)])
    assert store.expire_due() == []
    clock.advance(5)
    assert store.expire_due() == [short.id]
    row = store.message(short.id)
    assert row is not None and row["state"] == "expired"
    assert store.events_pending()[-1].payload["state"] == "expired"
    claimed = store.claim("sim0", lease=60)
    assert claimed is not None and claimed.id == long.id


def test_release_requeues_without_counting_the_attempt(store: Store) -> None:
    (queued,) = store.enqueue([request()])
    store.claim("sim0", lease=60)
    store.release(queued.id)
    claimed = store.claim("sim0", lease=60)
    assert claimed is not None and claimed.attempts == 1


# --- leases and crashes ---------------------------------------------------------------------------


def test_message_whose_lease_ran_out_is_claimed_again(store: Store, clock: Clock) -> None:
    (queued,) = store.enqueue([request()])
    store.claim("sim0", lease=30)
    clock.advance(29)
    assert store.claim("sim1", lease=30) is None
    clock.advance(2)
    again = store.claim("sim1", lease=30)
    assert again is not None and again.id == queued.id and again.modem == "sim1" and again.attempts == 2


def test_crash_mid_message_resumes_in_a_new_process_without_resending_committed_parts(
    db_path: Path, clock: Clock
) -> None:
    first = Store(db_path, clock=clock)
    (queued,) = first.enqueue([request()])
    claimed = first.claim("sim0", lease=600)
    assert claimed is not None
    first.set_parts(claimed.id, submit_parts(3))
    first.part_sent(claimed.id, 1, "sim0", 41)
    # the process dies here: part 2 went to the modem, +CMGS never committed. No close, no release.
    second = Store(db_path, clock=clock)
    try:
        assert second.resume_interrupted() == [queued.id]
        resumed = second.claim("sim0", lease=600)
        assert resumed is not None and resumed.id == queued.id
        assert [p.sequence for p in resumed.unsent_parts] == [2, 3]
        assert resumed.parts[0].message_reference == 41
    finally:
        second.close()
        first.close()


def test_store_contents_survive_close_and_reopen(db_path: Path, clock: Clock) -> None:
    with Store(db_path, clock=clock) as s:
        (queued,) = s.enqueue([request(client_key="persist")])
        s.state_set("optout", "+491700000001", True)
    with Store(db_path, clock=clock) as s:
        assert s.enqueue([request(client_key="persist")])[0].duplicate
        assert s.state_get("optout", "+491700000001") is True
        assert [e.payload["id"] for e in s.events_pending()] == [queued.id]


def test_store_runs_in_wal_mode_with_synchronous_full(store: Store) -> None:
    assert connection(store).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert connection(store).execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_commit_that_fsyncs_runs_at_full_after_unsynced_ones_with_no_pragma_between_unsynced_ones(
        store: Store) -> None:
    seen: list[str] = []
    connection(store).set_trace_callback(seen.append)
    store.enqueue([request(to="+491700000001"), request(to="+491700000002")])
    for _ in range(2):  # the dispatcher's commits: a claim, then its TP-MR, none fsync'ed
        claimed = store.claim("sim0", lease=60, encode=lambda m: submit_parts(1))
        assert claimed is not None
        store.part_sent(claimed.id, 1, "sim0", 7, durable=False)
    unsynced = seen[seen.index("PRAGMA synchronous=NORMAL"):]
    assert not any(sql.startswith("PRAGMA synchronous") for sql in unsynced[1:])  # set once for all four
    assert connection(store).execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    # the next commit that fsyncs (a state row) is FULL from its BEGIN on: it waits for its fsync
    mark = len(seen)
    store.state_set("test", "key", 1)
    connection(store).set_trace_callback(None)
    assert seen[mark:mark + 2] == ["PRAGMA synchronous=FULL", "BEGIN IMMEDIATE"]
    assert connection(store).execute("PRAGMA synchronous").fetchone()[0] == 2


def test_the_page_cache_of_the_store_is_bounded_below_sqlites_default(store: Store) -> None:
    """1 MiB (a negative cache_size is KiB, SQLite's default is -2000): part of the daemon's 40 MiB."""
    assert connection(store).execute("PRAGMA cache_size").fetchone()[0] == -1024


# --- delivery reports ----------------------------------------------------------------------------


def _sent_message(store: Store, to: str, parts: int, references: list[int], modem: str = "sim0") -> int:
    (queued,) = store.enqueue([request(to, report=True)])
    store.claim(modem, lease=60)
    store.set_parts(queued.id, submit_parts(parts))
    for sequence, reference in enumerate(references, start=1):
        store.part_sent(queued.id, sequence, modem, reference)
    return queued.id


def test_status_report_completed_marks_single_part_message_delivered(store: Store) -> None:
    message_id = _sent_message(store, "+491701234567", 1, [7])
    match = store.delivery_report("sim0", 7, "+491701234567", 0)
    assert match is not None and (match.message_id, match.message_state) == (message_id, "delivered")
    assert store.events_pending()[-1].payload["state"] == "delivered"


def test_multipart_message_is_delivered_only_when_all_parts_are(store: Store) -> None:
    message_id = _sent_message(store, "+491701234567", 2, [8, 9])
    assert store.delivery_report("sim0", 9, "+491701234567", 0).message_state == "sent"  # type: ignore[union-attr]
    assert store.delivery_report("sim0", 8, "+491701234567", 0).message_state == "delivered"  # type: ignore[union-attr]
    row = store.message(message_id)
    assert row is not None and [p["state"] for p in row["parts_detail"]] == ["delivered", "delivered"]


def test_temporary_status_changes_nothing_and_permanent_status_fails(store: Store) -> None:
    message_id = _sent_message(store, "+491701234567", 2, [10, 11])
    events_before = len(store.events_pending())
    still_trying = store.delivery_report("sim0", 10, "+491701234567", 48)
    assert still_trying is not None and still_trying.message_state == "sent"
    assert len(store.events_pending()) == events_before
    failed = store.delivery_report("sim0", 11, "+491701234567", 65)
    assert failed is not None and failed.message_state == "failed"
    row = store.message(message_id)
    assert row is not None and row["last_error"] == "delivery failed: part 2 status 65"


def test_report_matches_the_recent_part_when_the_message_reference_wrapped(store: Store, clock: Clock) -> None:
    old = _sent_message(store, "+491701234567", 1, [5])
    clock.advance(4 * 24 * 3600)  # older than the report window: TP-MR 5 came round again
    new = _sent_message(store, "+491701234567", 1, [5])
    match = store.delivery_report("sim0", 5, "+491701234567", 0)
    assert match is not None and match.message_id == new
    old_row = store.message(old)
    assert old_row is not None and old_row["state"] == "sent"


def test_report_needs_the_same_modem_and_recipient(store: Store) -> None:
    _sent_message(store, "+491701234567", 1, [12])
    assert store.delivery_report("sim1", 12, "+491701234567", 0) is None
    assert store.delivery_report("sim0", 12, "+491709999999", 0) is None
    match = store.delivery_report("sim0", 12, "01701234567", 0)  # national rendering of the number
    assert match is not None and match.message_state == "delivered"


# --- inbound ---------------------------------------------------------------------------------------


def test_single_part_sms_goes_to_inbox_with_a_received_event(store: Store, clock: Clock) -> None:
    part_id = store.add_incoming_part("sim0", "07aa01", Deliver("+491705555555", "PUMP 7 ON", SENT), None, T0)
    assert part_id > 0
    (event,) = store.events_pending()
    assert event.topic == "received"
    assert event.payload == {
        "id": 1, "from": "+491705555555", "text": "PUMP 7 ON", "sent_at": "2026-11-22T21:00:00+01:00",
        "received_at": "2026-09-21T14:13:20.000Z", "modem": "sim0", "parts": 1,
    }
    (received,) = store.received_unhandled()
    assert (received.sender, received.text, received.partial) == ("+491705555555", "PUMP 7 ON", False)
    store.received_handled(received.id)
    assert store.received_unhandled() == []


def test_multipart_in_any_order_hours_apart_is_reassembled_once_complete(db_path: Path, clock: Clock) -> None:
    texts = {1: "first ", 2: "second ", 3: "third"}
    with Store(db_path, clock=clock) as s:
        s.add_incoming_part("sim0", "07aa03", Deliver("+49170", texts[3], SENT, Concat(200, 3, 3)), None, T0)
        s.add_incoming_part("sim0", "07aa01", Deliver("+49170", texts[1], SENT, Concat(200, 3, 1)), None, T0 + 1)
        assert s.received_unhandled() == []
    with Store(db_path, clock=clock) as s:  # parts survive a restart
        assert len(s.pending_parts()) == 2
        s.add_incoming_part("sim0", "07aa02", Deliver("+49170", texts[2], SENT, Concat(200, 3, 2)), None,
                            T0 + 3 * 3600)
        (received,) = s.received_unhandled()
        assert received.text == "first second third" and received.parts == 3
        assert s.events_pending()[-1].payload["text"] == "first second third"
        assert s.pending_parts() == []


def test_duplicate_parts_are_ignored(store: Store) -> None:
    deliver = Deliver("+49170", "hi ", SENT, Concat(9, 2, 1))
    first = store.add_incoming_part("sim0", "07AA01", deliver, None, T0)
    assert store.add_incoming_part("sim0", "07aa01", deliver, None, T0 + 5) == first  # same PDU
    # the same part read again with another SMSC field: same sender, timestamp, reference and sequence
    assert store.add_incoming_part("sim0", "0007aa01", deliver, None, T0 + 6) == first
    store.add_incoming_part("sim0", "07aa02", Deliver("+49170", "there", SENT, Concat(9, 2, 2)), None, T0 + 7)
    (received,) = store.received_unhandled()
    assert received.text == "hi there"
    store.add_incoming_part("sim0", "07aa02", Deliver("+49170", "there", SENT, Concat(9, 2, 2)), None, T0 + 8)
    assert len(store.received_unhandled()) == 1  # a late repeat after completion is still a duplicate


def test_the_same_sms_on_two_modems_is_two_messages(store: Store) -> None:
    deliver = Deliver("+49170", "to both SIMs", SENT)
    first = store.add_incoming_part("sim0", "07ad01", deliver, None, T0, 1)
    second = store.add_incoming_part("sim1", "07ad01", deliver, None, T0, 1)
    assert first != second
    assert [(m.modem, m.text) for m in store.received_unhandled()] == [("sim0", "to both SIMs"),
                                                                       ("sim1", "to both SIMs")]


def test_identical_sms_in_two_slots_of_one_sim_are_distinct_and_a_reread_slot_is_not(store: Store) -> None:
    deliver = Deliver("+49170", "same text, same second", SENT)
    ids = [store.add_incoming_part("sim0", "07ae01", deliver, None, T0, slot) for slot in (1, 2, 3)]
    assert len(set(ids)) == 3
    # the sweep after a crash between the commit and AT+CMGD reads slot 2 again: the same part
    assert store.add_incoming_part("sim0", "07ae01", deliver, None, T0 + 30, 2) == ids[1]
    assert len(store.received_unhandled()) == 3


def test_parts_of_one_multipart_sms_on_two_modems_are_reassembled_per_modem(store: Store) -> None:
    for modem in ("sim0", "sim1"):
        store.add_incoming_part(modem, "0f01", Deliver("+49170", "left ", SENT, Concat(7, 2, 1)), None, T0, 1)
    assert store.received_unhandled() == []  # sim1's part 1 does not complete sim0's message
    for modem in ("sim1", "sim0"):
        store.add_incoming_part(modem, "0f02", Deliver("+49170", "right", SENT, Concat(7, 2, 2)), None, T0, 2)
    assert sorted((m.modem, m.text) for m in store.received_unhandled()) == [("sim0", "left right"),
                                                                             ("sim1", "left right")]


def test_incomplete_groups_are_flushed_per_modem(store: Store) -> None:
    store.add_incoming_part("sim0", "1001", Deliver("+49170", "a", SENT, Concat(8, 2, 1)), None, T0, 1)
    store.add_incoming_part("sim1", "1002", Deliver("+49170", "b", SENT, Concat(8, 2, 2)), None, T0, 1)
    assert len(store.flush_partial(now=T0 + 10, timeout=5)) == 2
    assert sorted((m.modem, m.text, m.partial) for m in store.received_unhandled()) == [
        ("sim0", "a", True), ("sim1", "b", True)]


def test_reused_concat_reference_after_completion_starts_a_new_message(store: Store) -> None:
    later = SENT.replace(hour=22)
    for n, text in ((1, "a"), (2, "b")):
        store.add_incoming_part("sim0", f"01{n}", Deliver("+49170", text, SENT, Concat(4, 2, n)), None, T0)
    for n, text in ((1, "c"), (2, "d")):
        store.add_incoming_part("sim0", f"02{n}", Deliver("+49170", text, later, Concat(4, 2, n)), None, T0)
    assert [m.text for m in store.received_unhandled()] == ["ab", "cd"]


def test_incomplete_message_is_delivered_partial_after_the_reassembly_timeout(store: Store, clock: Clock) -> None:
    store.add_incoming_part("sim0", "0a01", Deliver("+49170", "one ", SENT, Concat(3, 3, 1)), None, T0)
    store.add_incoming_part("sim0", "0a03", Deliver("+49170", "three", SENT, Concat(3, 3, 3)), None, T0 + 60)
    assert store.flush_partial(now=T0 + 3599, timeout=3600) == []
    (inbox_id,) = store.flush_partial(now=T0 + 3600, timeout=3600)
    (received,) = store.received_unhandled()
    assert (received.id, received.text, received.partial) == (inbox_id, "one three", True)
    event = store.events_pending()[-1].payload
    assert (event["partial"], event["missing"], event["text"]) == (True, [2], "one three")
    assert store.flush_partial(now=T0 + 99999, timeout=3600) == []


def test_undecodable_pdu_is_kept_and_published_with_its_error(store: Store) -> None:
    store.add_incoming_part("sim0", "ZZ01", None, "undecodable PDU: truncated user data", T0)
    (event,) = store.events_pending()
    assert event.payload["error"] == "undecodable PDU: truncated user data"
    assert event.payload["pdu"] == "ZZ01"
    assert store.add_incoming_part("sim0", "zz01", None, "undecodable PDU", T0) == 1  # duplicate


# --- events, audit, rule state, stats ----------------------------------------------------------------


def test_events_stay_pending_until_marked_done(store: Store) -> None:
    store.enqueue([request()])
    (event,) = store.events_pending()
    store.event_done(event.id)
    assert store.events_pending() == []


def test_event_listener_fires_after_commits_that_added_events_only(store: Store) -> None:
    calls: list[str] = []
    store.add_listener(lambda: calls.append("events"))
    store.state_set("ns", "k", 1)
    store.audit("login", {"user": "x"})
    assert calls == []
    store.enqueue([request()])
    store.add_event("modem/sim0", {"signal": 20}, retain=True)
    assert calls == ["events", "events"]
    assert store.events_pending()[-1].retain is True


def test_audit_rows_and_rule_state_round_trip_as_json(store: Store) -> None:
    store.audit("command.denied", {"from": "+49170", "text": "PUMP 7 ON"})
    assert store.audit_log()[0]["detail"] == {"from": "+49170", "text": "PUMP 7 ON"}
    assert store.state_get("pin", "+49170", default={"failures": 0}) == {"failures": 0}
    store.state_set("pin", "+49170", {"failures": 2, "locked_until": 5.5})
    assert store.state_get("pin", "+49170") == {"failures": 2, "locked_until": 5.5}
    store.state_set("pin", "+49170", None)
    assert store.state_get("pin", "+49170") is None


def test_stats_count_states_inbox_events_and_todays_usage_per_source(store: Store) -> None:
    a, b, _ = store.enqueue([request("+491", source="alerts"), request("+492", source="alerts"),
                             request("+493", source="cli")])
    store.claim("sim0", lease=60)
    store.set_parts(a.id, submit_parts(1))
    store.part_sent(a.id, 1, "sim0", 1)
    store.add_incoming_part("sim0", "0b01", Deliver("+49170", "x", SENT), None, T0)
    stats = store.stats()
    assert stats["outbox"] == {"queued": 2, "sending": 0, "sent": 1, "delivered": 0, "failed": 0, "expired": 0}
    assert (stats["inbox"], stats["inbox_unhandled"], stats["events_pending"]) == (1, 1, 6)
    assert stats["sources_today"] == {"alerts": {"accepted": 2, "sent": 1}, "cli": {"accepted": 1, "sent": 0}}


def test_outbox_and_inbox_list_newest_first(store: Store) -> None:
    store.enqueue([request("+491", text="one"), request("+492", text="two")])
    store.add_incoming_part("sim0", "0c01", Deliver("+49170", "in", SENT), None, T0)
    assert [m["text"] for m in store.outbox(10)] == ["two", "one"]
    assert store.outbox(1)[0]["to"] == "+492" and store.outbox(1)[0]["priority"] == "normal"
    assert store.inbox(10)[0]["from"] == "+49170"


# --- with the real codec -------------------------------------------------------------------------------


def test_real_multipart_deliver_pdus_in_reverse_order_reassemble_to_the_original_text(store: Store) -> None:
    text = "Pumpe 7 meldet Druckverlust in Halle 3 — bitte prüfen. " * 4  # UCS-2: the dash
    pdus = encode_deliver("+491705555555", text, timestamp=SENT, smsc="+491710760000", concat_reference=77)
    assert len(pdus) > 1
    for n, pdu in enumerate(reversed(pdus)):
        message = decode(pdu)
        assert isinstance(message, SmsDeliver)
        store.add_incoming_part("sim0", pdu, message, None, T0 + n)
    (received,) = store.received_unhandled()
    assert (received.text, received.sender, received.parts) == (text, "+491705555555", len(pdus))
    assert received.sent_at == SENT.isoformat()


def test_real_status_report_pdu_marks_the_part_delivered(store: Store) -> None:
    message_id = _sent_message(store, "+491701234567", 1, [200])
    pdu = encode_status_report("+491701234567", 200, 0, timestamp=SENT, discharge_time=SENT)
    report = decode(pdu)
    assert isinstance(report, SmsStatusReport)
    match = store.apply_status_report("sim0", report)
    assert match is not None and (match.message_id, match.message_state) == (message_id, "delivered")


# --- listings (the HTTP API's reads) -------------------------------------------------------------


def test_messages_filter_by_state_and_page_with_before_together(store: Store) -> None:
    ids = [result.id for result in store.enqueue([request(to=f"+49170123456{n}", text=f"m{n}") for n in range(4)])]
    claimed = store.claim("sim0", lease=60)
    assert claimed is not None and claimed.id == ids[0]  # sending; the other three stay queued
    assert [m["id"] for m in store.messages()] == ids[::-1]
    assert [m["id"] for m in store.messages(state="queued")] == ids[:0:-1]
    assert [m["id"] for m in store.messages(state="queued", before=ids[3])] == [ids[2], ids[1]]
    assert [m["id"] for m in store.messages(state="queued", before=ids[3], limit=1)] == [ids[2]]
    assert [m["id"] for m in store.messages(state="sending", before=ids[0])] == []


def test_inbox_after_takes_an_id_and_a_time_together(store: Store) -> None:
    for n in range(4):
        store.add_incoming_part("sim0", f"07aa0{n}", Deliver("+491705555555", f"in {n}", SENT), None, T0 + n)
    ids = [row["id"] for row in store.inbox_after()]
    assert len(ids) == 4
    assert [row["id"] for row in store.inbox_after(after_id=ids[0])] == ids[1:]
    assert [row["id"] for row in store.inbox_after(since=T0 + 2)] == ids[2:]
    assert [row["id"] for row in store.inbox_after(after_id=ids[2], since=T0 + 1)] == ids[3:]
    assert [row["id"] for row in store.inbox_after(after_id=ids[0], since=T0 + 2, limit=1)] == [ids[2]]
