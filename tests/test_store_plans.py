"""The send path's queries use indexes: EXPLAIN QUERY PLAN of every statement that claim, set_parts,
part_sent, expire_due and next_due_at run has no SCAN of message or part and no TEMP B-TREE, so
their cost does not grow with the backlog (bench/backlog.py measures it)."""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from store_helpers import T0, Clock, connection, request, submit_parts

from appliance.store import Store


@contextmanager
def traced(conn: sqlite3.Connection) -> Iterator[list[str]]:
    statements: list[str] = []
    conn.set_trace_callback(statements.append)  # the SQL with its parameters bound (expanded)
    try:
        yield statements
    finally:
        conn.set_trace_callback(None)


def plan(conn: sqlite3.Connection, sql: str) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]


# A scan of the partial index part_unsent reads only the unsent parts of messages claimed and not
# finished (those held for the modem that sent their first parts), never the queue or the history.
# The partial index message_leased holds only the sending rows (one per modem, and those whose
# lease ran out), never the queue or the history.
BOUNDED_SCANS = ("SCAN part USING INDEX part_unsent", "SCAN part USING COVERING INDEX part_unsent",
                 "SCAN message USING INDEX message_leased")


def bad_steps(conn: sqlite3.Connection, statements: list[str]) -> list[tuple[str, str]]:
    bad = []
    for sql in statements:
        if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT", "DELETE", "WITH")):
            continue  # BEGIN, COMMIT, PRAGMA
        for step in plan(conn, sql):
            if step.startswith(BOUNDED_SCANS):
                continue
            if step.startswith(("SCAN message", "SCAN part", "SCAN m ", "SCAN p ")) or "TEMP B-TREE" in step:
                bad.append((sql, step))
    return bad


@pytest.fixture
def backlog(tmp_path: Path) -> Iterator[tuple[Store, Clock]]:
    clock = Clock(T0)
    with Store(tmp_path / "smsgw.db", clock=clock) as store:
        # history, a queue with every priority, deferred retries and expiring messages, a leased one
        for n in range(60):
            store.enqueue([request(to=f"+4917000{n:04d}", priority=("high", "normal", "low")[n % 3],
                                   valid_until=T0 + 30 if n % 4 == 0 else None,
                                   send_at=T0 + 86400 if n % 5 == 0 else None)])  # some held a day
        for _ in range(10):
            claimed = store.claim("sim0", lease=60)
            assert claimed is not None
            store.set_parts(claimed.id, submit_parts(1))
            store.part_sent(claimed.id, 1, "sim0", 1)
        claimed = store.claim("sim0", lease=60)
        assert claimed is not None
        store.requeue(claimed.id, "busy", T0 + 600)
        assert store.claim("sim1", lease=5) is not None
        connection(store).execute("ANALYZE")  # plans as after the statistics a long-running store could have
        yield store, clock


SEND_PATH: dict[str, Callable[[Store], object]] = {
    "claim": lambda s: s.claim("sim0", lease=60),
    "claim excluding recipients": lambda s: s.claim("sim0", lease=60, exclude_recipients=["+491700000012"]),
    "next_due_at": lambda s: s.next_due_at(),
    "next_due_at excluding recipients": lambda s: s.next_due_at(["+491700000012", "+491700000013"]),
    "expire_due": lambda s: s.expire_due(),
}


@pytest.mark.parametrize("step", list(SEND_PATH))
def test_send_path_query_plans_use_indexes(backlog: tuple[Store, Clock], step: str) -> None:
    store, clock = backlog
    clock.advance(60)  # the lease of sim1 has run out, the short validity too
    with traced(connection(store)) as statements:
        SEND_PATH[step](store)
    assert any(sql.lstrip().upper().startswith("SELECT") for sql in statements)
    assert bad_steps(connection(store), statements) == []


# read at every self-alert check, every schedule's summary, and once at start: index searches too
OTHER_READS: dict[str, Callable[[Store], object]] = {
    "client_queue": lambda s: s.client_queue(),
    "activity_since": lambda s: s.activity_since(T0),
    "resume_interrupted": lambda s: s.resume_interrupted(),
}


@pytest.mark.parametrize("step", list(OTHER_READS))
def test_queue_reads_use_indexes(backlog: tuple[Store, Clock], step: str) -> None:
    store, _ = backlog
    with traced(connection(store)) as statements:
        OTHER_READS[step](store)
    assert any(sql.lstrip().upper().startswith("SELECT") for sql in statements)
    assert bad_steps(connection(store), statements) == []


# the partial index part_report (the parts with a TP-MR) serves a query only when its WHERE implies
# message_reference IS NOT NULL
PART_REPORT_READS: dict[str, Callable[[Store], object]] = {
    "delivery_report": lambda s: s.delivery_report("sim0", 1, None, 0),
    "modem_sent_count": lambda s: s.modem_sent_count("sim0", T0),
    "modem_sent_times": lambda s: s.modem_sent_times("sim0", T0),
}


@pytest.mark.parametrize("step", list(PART_REPORT_READS))
def test_the_reads_of_sent_parts_search_part_report(backlog: tuple[Store, Clock], step: str) -> None:
    store, _ = backlog
    with traced(connection(store)) as statements:
        PART_REPORT_READS[step](store)
    steps = [step for sql in statements if sql.lstrip().upper().startswith("SELECT")
             for step in plan(connection(store), sql)]
    assert any(step.startswith(("SEARCH part USING", "SEARCH p USING")) and "INDEX part_report" in step
               for step in steps), steps
    assert not any(step.startswith(("SCAN part", "SCAN p ")) for step in steps), steps


def test_a_whole_send_uses_indexes(backlog: tuple[Store, Clock]) -> None:
    store, _ = backlog
    with traced(connection(store)) as statements:
        claimed = store.claim("sim0", lease=60)
        assert claimed is not None
        store.set_parts(claimed.id, submit_parts(2))
        store.part_sent(claimed.id, 1, "sim0", 2)
        assert store.part_sent(claimed.id, 2, "sim0", 3) == "sent"
    assert len(statements) > 5
    assert bad_steps(connection(store), statements) == []


def test_the_check_sees_a_scan() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE message (id INTEGER PRIMARY KEY, state TEXT, priority INT)")
    assert bad_steps(conn, ["SELECT * FROM message WHERE state = 'queued' ORDER BY priority"]) != []


def vm_steps(store: Store, step: Callable[[Store], object]) -> int:
    """SQLite virtual-machine instructions the step runs (a count of work, not a time)."""
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    connection(store).set_progress_handler(tick, 1)
    try:
        step(store)
    finally:
        connection(store).set_progress_handler(None, 1)
    return count


def queued_store(path: Path, queued: int) -> Store:
    store = Store(path, clock=Clock(T0))
    store.enqueue([request(to=f"+49170{n:07d}", valid_until=T0 + 3600 + n) for n in range(queued)])
    return store


@pytest.mark.parametrize("step", list(SEND_PATH))
def test_send_path_work_does_not_grow_with_the_backlog(tmp_path: Path, step: str) -> None:
    steps = []
    for queued in (200, 4000):
        with queued_store(tmp_path / f"{queued}.db", queued) as store:
            steps.append(vm_steps(store, SEND_PATH[step]))
    assert steps[1] < steps[0] * 1.5, steps  # a scan of the queue would be 20 times the work


def held_store(path: Path, held: int) -> Store:
    """``held`` messages queued for tomorrow (send_at) before one due now, at the same priority: the
    claim order (priority, id) puts every held row before the due one."""
    store = Store(path, clock=Clock(T0))
    store.enqueue([request(to=f"+49170{n:07d}", send_at=T0 + 86400) for n in range(held)])
    store.enqueue([request(to="+491519999999", text="now")])
    return store


def test_claim_does_not_walk_the_held_rows(tmp_path: Path) -> None:
    steps = []
    for held in (200, 4000):
        with held_store(tmp_path / f"held-{held}.db", held) as store:
            steps.append(vm_steps(store, lambda s: s.claim("sim0", lease=60)))
            claimed = store.claim("sim0", lease=60)
            assert claimed is None  # the due one was taken above; the held ones are not due
    assert steps[1] < steps[0] * 1.5, steps  # walking the held rows would be 20 times the work


def test_a_held_message_is_claimed_once_due_in_priority_order_with_the_ready_ones(tmp_path: Path) -> None:
    clock = Clock(T0)
    with Store(tmp_path / "smsgw.db", clock=clock) as store:
        (later,) = store.enqueue([request(to="+491700000001", text="later", priority="high", send_at=T0 + 60)])
        store.enqueue([request(to="+491700000002", text="normal now")])
        first = store.claim("sim0", lease=60)
        assert first is not None and first.text == "normal now"
        store.fail(first.id, "test")
        assert store.claim("sim0", lease=60) is None  # not yet due
        store.enqueue([request(to="+491700000003", text="low now", priority="low")])
        clock.advance(60)
        due = store.claim("sim0", lease=60)
        assert due is not None and (due.id, due.text) == (later.id, "later")  # high before low, once due
        store.requeue(due.id, "busy", T0 + 600)  # a retry's backoff holds it again
        rest = store.claim("sim0", lease=60)
        assert rest is not None and rest.text == "low now"
        assert store.claim("sim0", lease=60) is None
        clock.advance(540)
        again = store.claim("sim0", lease=60)
        assert again is not None and again.id == later.id and again.attempts == 2


def wal_trees(store: Store, since_frame: int) -> list[str]:
    """The b-trees (tables, indexes) whose pages the WAL's frames after ``since_frame`` hold: what the
    commits since then wrote. Frame layout of the WAL file: sqlite.org/fileformat2.html, 4.1-4.2."""
    frames = store.wal_frames()[0]
    wal = Path(f"{store.path}-wal").read_bytes()
    page_size = struct.unpack(">I", wal[8:12])[0]
    pages = [struct.unpack(">I", wal[offset:offset + 4])[0]
             for offset in range(32 + since_frame * (24 + page_size), 32 + frames * (24 + page_size), 24 + page_size)]
    owner = dict(connection(store).execute("SELECT pageno, name FROM dbstat"))
    return [owner.get(page, "?") for page in pages]


@pytest.mark.parametrize("total", [1, 2])
def test_a_send_writes_the_part_indexes_only_where_their_queries_need_the_rows(tmp_path: Path, total: int) -> None:
    # part_unsent holds the unsent parts of messages of several parts (the only ones next_due_at looks
    # for: held for the modem that sent their first parts), part_report the parts with a TP-MR
    with Store(tmp_path / "smsgw.db", clock=Clock(T0)) as store:
        store.enqueue([request(to=f"+4917000{n:04d}") for n in range(40)])
        for n in range(30):  # pages for every tree, and a WAL that is not starting over
            claimed = store.claim("sim0", lease=60, encode=lambda m: submit_parts(total))
            assert claimed is not None
            for part in claimed.parts:
                store.part_sent(claimed.id, part.sequence, "sim0", n % 256)
        start = store.wal_frames()[0]
        claimed = store.claim("sim0", lease=60, encode=lambda m: submit_parts(total))
        assert claimed is not None
        claim_frames = store.wal_frames()[0]
        claim = wal_trees(store, start)
        assert {"message", "part"} <= set(claim)  # the claim and its parts are in the WAL
        assert "part_report" not in claim
        assert ("part_unsent" in claim) == (total > 1)
        store.part_sent(claimed.id, 1, "sim0", 99)
        first = wal_trees(store, claim_frames)
        assert "part_report" in first
        assert ("part_unsent" in first) == (total > 1)
        if total > 1:  # its second part waits for sim0, which sent the first
            store.requeue(claimed.id, "busy", T0)
            other = store.claim("sim1", lease=60)
            assert other is not None and other.id != claimed.id  # the queue's next, not the held one
            mine = store.claim("sim0", lease=60)
            assert mine is not None and mine.id == claimed.id
