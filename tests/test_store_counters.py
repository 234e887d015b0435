"""The counters behind Store.stats() (schema 8, kept by triggers) equal the COUNT(*) of the rows they
count after any mix of writes: the store's own, another connection's, and retention pruning; and
stats() reads them through indexes only (no SCAN of a history table), so its cost does not grow with
the history (bench/stats.py measures it)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from store_helpers import SENT, T0, Clock, Concat, Deliver, connection, request, submit_parts

from appliance.migrations import SOURCE_BUCKET
from appliance.store import STATES, Store, local_midnight

pytest_plugins = ["store_fixtures"]

DAY = 86400.0
DATABASES = Path(__file__).parent / "databases"


def counted(conn: sqlite3.Connection) -> dict[str, Any]:
    """What the counters must hold, by COUNT(*) over the tables."""
    one = lambda sql: int(conn.execute(sql).fetchone()[0])  # noqa: E731
    outbox = dict.fromkeys(STATES, 0)
    for state, n in conn.execute("SELECT state, COUNT(*) FROM message GROUP BY state"):
        outbox[state] = n
    return {
        "outbox": outbox,
        "inbox": one("SELECT COUNT(*) FROM inbox"),
        "inbox_unhandled": one("SELECT COUNT(*) FROM inbox WHERE handled_at IS NULL"),
        "inbox_parts_pending": one("SELECT COUNT(*) FROM inbox_part WHERE inbox_id IS NULL"),
        "events_pending": one("SELECT COUNT(*) FROM event WHERE done_at IS NULL"),
    }


def usage_counted(conn: sqlite3.Connection, since: float) -> dict[str, dict[str, int]]:
    """Store.source_usage by a scan of every message (the query before schema 8)."""
    rows = conn.execute(
        "SELECT source, COUNT(*), SUM(state IN ('sent', 'delivered')) FROM message WHERE created_at >= ? "
        "GROUP BY source ORDER BY source", (since,)).fetchall()
    return {source: {"accepted": accepted, "sent": sent or 0} for source, accepted, sent in rows}


def assert_counters_match(store: Store) -> None:
    stats = store.stats()
    assert {key: stats[key] for key in counted(connection(store))} == counted(connection(store))
    now = store.clock()
    for since in (0.0, local_midnight(now), now - 3 * DAY + 123.4, now - 1.5, now - SOURCE_BUCKET * 7):
        assert store.source_usage(since) == usage_counted(connection(store), since), since
    assert stats["sources_today"] == usage_counted(connection(store), local_midnight(now))


def receive(store: Store, rng: random.Random, n: int) -> None:
    if rng.random() < 0.5:
        store.add_incoming_part("sim0", f"0b{n:06x}", Deliver(f"+4917{n % 3}", f"in {n}", SENT), None,
                                store.clock(), n)  # type: ignore[arg-type]
    else:  # one part of a two-part message; its partner comes, or the group is flushed partial
        ref = n % 7
        seq = rng.choice([1, 2])
        store.add_incoming_part("sim0", f"0c{n:06x}", Deliver("+49171", f"part {n}", SENT,  # type: ignore[arg-type]
                                Concat(ref, 2, seq)), None, store.clock(), n)


def mixed_step(store: Store, rng: random.Random, clock: Clock, n: int) -> None:
    action = rng.randrange(12)
    if action <= 2:
        store.enqueue([request(f"+4917{rng.randrange(100):08d}", f"m {n}", source=rng.choice(["a", "b", "cli"]),
                               valid_until=clock.now + rng.choice([5, 3600, DAY]), client_key=f"k{n % 40}")
                       for _ in range(rng.randrange(1, 4))])
    elif action <= 4:
        claimed = store.claim(rng.choice(["sim0", "sim1"]), lease=rng.choice([0.5, 60]))
        if claimed is None:
            return
        parts = store.set_parts(claimed.id, submit_parts(rng.choice([1, 2]), f"{n % 256:02X}"))
        outcome = rng.randrange(5)
        if outcome <= 2:
            for part in parts:
                store.part_sent(claimed.id, part.sequence, claimed.modem, (n + part.sequence) % 256)
        elif outcome == 3:
            store.requeue(claimed.id, "transient", clock.now + rng.choice([0, 30]))
        else:
            store.fail(claimed.id, "permanent")
    elif action == 5:
        sent = connection(store).execute("SELECT message_id, modem, message_reference FROM part "
                                  "WHERE state = 'sent' ORDER BY RANDOM() LIMIT 1").fetchone()
        if sent is not None:
            (to,) = connection(store).execute("SELECT recipient FROM message WHERE id = ?", (sent[0],)).fetchone()
            store.delivery_report(sent[1], sent[2], to, rng.choice([0, 0, 0, 70]))
    elif action == 6:
        store.expire_due()
    elif action == 7:
        receive(store, rng, n)
    elif action == 8:
        for message in store.received_unhandled(rng.randrange(1, 4)):
            store.received_handled(message.id)
    elif action == 9:
        store.events_done([event.id for event in store.events_pending(rng.randrange(1, 30))])
    elif action == 10:
        store.flush_partial(timeout=600)
    else:
        store.resume_interrupted()
    clock.advance(rng.choice([1.0, 60.0, 450.0, 3 * 3600.0]))


def test_counters_equal_count_after_mixed_writes_and_pruning(store: Store, clock: Clock) -> None:
    rng = random.Random(8)
    for n in range(600):
        mixed_step(store, rng, clock, n)
        if n % 50 == 49:
            assert_counters_match(store)
    # retention deletes old finished messages, handled inbox rows and published events in batches
    totals = store.prune(clock.now - 2 * DAY, retention_days=1, batch=7)
    assert totals["messages"] > 0 and totals["inbox"] > 0 and totals["events"] > 0
    assert_counters_match(store)
    # without a publisher, every pending event goes at once
    store.prune(retention_days=0, audit_retention_days=0, publisher=False)
    assert store.stats()["events_pending"] == 0
    assert_counters_match(store)
    for n in range(600, 700):
        mixed_step(store, rng, clock, n)
    assert_counters_match(store)


def test_counters_follow_writes_by_another_connection(store: Store, db_path: Path) -> None:
    """Triggers run in whichever process writes: smsgw send, the sqlite3 shell, an older tool."""
    store.enqueue([request("+491", source="cli"), request("+492", source="cli")])
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("UPDATE message SET state = 'failed', last_error = 'by hand' WHERE recipient = '+491'")
        other.execute("INSERT INTO message (recipient, text, created_at, state, source) "
                      "VALUES ('+493', 'raw', ?, 'delivered', 'raw')", (T0,))
        other.execute("UPDATE message SET source = 'moved', created_at = created_at - 86400 "
                      "WHERE recipient = '+492'")
        other.execute("DELETE FROM event")
        other.execute("INSERT INTO inbox (sender, text, received_at, parts) VALUES ('+4917', 'x', ?, 1)", (T0,))
    finally:
        other.close()
    assert_counters_match(store)
    stats = store.stats()
    assert stats["outbox"]["failed"] == 1 and stats["outbox"]["delivered"] == 1 and stats["outbox"]["queued"] == 1
    assert stats["last_error"]["error"] == "by hand"
    assert stats["sources_today"] == {"cli": {"accepted": 1, "sent": 0}, "raw": {"accepted": 1, "sent": 1}}


def test_source_usage_counts_a_partial_quarter_hour_exactly(store: Store, clock: Clock) -> None:
    start = (T0 // SOURCE_BUCKET) * SOURCE_BUCKET
    for offset in (0.0, 1.0, SOURCE_BUCKET - 0.001, SOURCE_BUCKET, SOURCE_BUCKET + 299.5, 3 * SOURCE_BUCKET):
        store.enqueue([request("+491", source="s")], now=start + offset)
    for since in (start, start + 0.5, start + 1.0, start + SOURCE_BUCKET - 0.002, start + SOURCE_BUCKET,
                  start + SOURCE_BUCKET + 299.5, start + 2 * SOURCE_BUCKET):
        assert store.source_usage(since) == usage_counted(connection(store), since), since - start


@pytest.mark.parametrize("version", [1, 2])
def test_migration_counts_the_rows_already_there(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript((DATABASES / f"v{version}_sample.sql").read_text())
    conn.close()
    with Store(path, clock=Clock(T0 + 100)) as store:
        assert store.migrated_from == version
        assert sum(store.stats()["outbox"].values()) > 0
        assert_counters_match(store)


def test_stats_reads_no_history_table_by_a_scan(store: Store) -> None:
    store.enqueue([request("+491", source="a")])
    statements: list[str] = []
    connection(store).set_trace_callback(statements.append)
    try:
        store.stats()
    finally:
        connection(store).set_trace_callback(None)
    steps = [row[3] for sql in statements if sql.lstrip().upper().startswith("SELECT")
             for row in connection(store).execute(f"EXPLAIN QUERY PLAN {sql}")]
    # the counters (a dozen rows); the newest error: the partial index in reverse, LIMIT 1; today's
    # buckets by their key; the partial quarter hour by message_created (grouping only those rows)
    assert steps == ["SCAN counter", "SCAN message USING INDEX message_last_error",
                     "SEARCH source_count USING PRIMARY KEY (bucket>?)", "USE TEMP B-TREE FOR GROUP BY",
                     "SEARCH message USING INDEX message_created (created_at>? AND created_at<?)",
                     "USE TEMP B-TREE FOR GROUP BY"], steps
