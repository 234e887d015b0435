"""Retention: Store.prune deletes what is finished and old, in short batches, and never what is pending."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from store_helpers import (
    SENT,
    STEP_MARK,
    T0,
    Clock,
    Concat,
    Deliver,
    connection,
    request,
    run_traced,
    submit_parts,
    syncs_by_step,
)

from appliance.store import Store

pytest_plugins = ["store_fixtures"]

DAY = 86400.0


def deliver_one(store: Store, to: str, mr: int) -> int:
    (result,) = store.enqueue([request(to, f"to {to}")])
    claimed = store.claim("sim0", lease=60)
    assert claimed is not None and claimed.id == result.id
    store.set_parts(claimed.id, submit_parts(2, f"{mr:02X}"))
    store.part_sent(claimed.id, 1, "sim0", mr)
    store.part_sent(claimed.id, 2, "sim0", mr + 1)
    return result.id


def receive(store: Store, text: str, pdu: str, *, handled: bool = True, published: bool = True) -> int:
    store.add_incoming_part("sim0", pdu, Deliver("+49170", text, SENT), None, store.clock(), 1)  # type: ignore[arg-type]
    inbox_id = int(store.inbox(1)[0]["id"])
    if handled:
        store.received_handled(inbox_id)
    if published:
        store.events_done([e.id for e in store.events_pending(1000) if e.payload.get("id") == inbox_id
                           and e.topic == "received"])
    return inbox_id


def count(store: Store, table: str) -> int:
    return int(connection(store).execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_finished_messages_older_than_the_retention_go_with_their_parts(store: Store, clock: Clock) -> None:
    delivered = deliver_one(store, "+491701111111", 10)
    store.delivery_report("sim0", 10, "+491701111111", 0)
    store.delivery_report("sim0", 11, "+491701111111", 0)
    failed = store.enqueue([request("+491702222222")])[0].id
    store.fail(failed, "rejected")
    expired = store.enqueue([request("+491703333333", valid_until=T0 + 1)])[0].id
    assert store.expire_due(T0 + 2) == [expired]
    awaiting = deliver_one(store, "+491704444444", 20)  # sent, waiting for its reports
    sending = store.enqueue([request("+491706666666")])[0].id
    claimed = store.claim("sim1", lease=3600)
    assert claimed is not None and claimed.id == sending
    queued = store.enqueue([request("+491705555555")])[0].id
    clock.advance(29 * DAY)
    recent = store.enqueue([request("+491707777777")])[0].id
    store.fail(recent, "rejected")  # finished, but only a day old at the prune below
    assert store.prune(T0 + 30 * DAY - 1, audit_retention_days=0)["messages"] == 0  # within 30 days
    totals = store.prune(T0 + 31 * DAY, audit_retention_days=0)
    assert (totals["messages"], totals["parts"]) == (3, 2)
    assert {m["id"] for m in store.outbox(100)} == {awaiting, queued, sending, recent}
    assert store.message(delivered) is None and store.parts(delivered) == []
    assert [p.message_reference for p in store.parts(awaiting)] == [20, 21]  # reports still match
    match = store.delivery_report("sim0", 20, "+491704444444", 0, now=T0 + 31 * DAY, window=40 * DAY)
    assert match is not None and match.message_id == awaiting
    assert store.message(sending)["state"] == "sending"  # type: ignore[index]


def test_received_messages_go_only_when_handled_and_published(store: Store, clock: Clock) -> None:
    gone = receive(store, "handled and published", "0a01")
    unhandled = receive(store, "not handled", "0a02", handled=False)
    unpublished = receive(store, "not published", "0a03", published=False)
    store.add_incoming_part("sim0", "0a04", Deliver("+49170", "half ", SENT, Concat(5, 2, 1)), None,  # type: ignore[arg-type]
                            clock.now, 2)
    clock.advance(31 * DAY)
    totals = store.prune(retention_days=30)
    assert (totals["inbox"], totals["inbox_parts"]) == (1, 1)
    assert {m["id"] for m in store.inbox(10)} == {unhandled, unpublished}
    assert gone not in {m["id"] for m in store.inbox(10)}
    assert len(store.pending_parts()) == 1  # still waiting for its second half
    # published later: the next prune takes it
    store.events_done([e.id for e in store.events_pending(100) if e.payload.get("id") == unpublished])
    assert store.prune(retention_days=30)["inbox"] == 1


def test_done_events_and_audit_rows_have_their_own_limits(store: Store, clock: Clock) -> None:
    store.add_event("modem/sim0", {"state": "ok"})
    pending = store.add_event("modem/sim0", {"state": "still pending"})
    store.events_done([e.id for e in store.events_pending() if e.id != pending])
    store.audit("command.denied", {"from": "+49170"})
    clock.advance(40 * DAY)
    store.audit("command.denied", {"from": "+49171"})
    totals = store.prune(retention_days=30, audit_retention_days=365)
    assert totals["events"] == 1 and totals["audit"] == 0
    assert [e.id for e in store.events_pending()] == [pending]
    clock.advance(330 * DAY)  # the first audit row is 370 days old, the second 330
    assert store.prune(retention_days=30, audit_retention_days=365)["audit"] == 1
    assert [row["detail"]["from"] for row in store.audit_log()] == ["+49171"]


def test_zero_keeps_forever(store: Store, clock: Clock) -> None:
    failed = store.enqueue([request()])[0].id
    store.fail(failed, "rejected")
    store.audit("x", {})
    store.events_done([e.id for e in store.events_pending()])
    clock.advance(5000 * DAY)
    totals = store.prune(retention_days=0, audit_retention_days=0)
    assert not any(totals.values())
    assert store.message(failed) is not None and store.audit_log() and count(store, "event") == 2


def test_without_a_publisher_pending_events_are_dropped_at_once(store: Store, clock: Clock) -> None:
    (queued,) = store.enqueue([request("+491709999999")])
    store.add_event("modem/sim0", {"state": "ok"})
    receive(store, "hello", "0b01", published=False)
    assert store.stats()["events_pending"] == 3
    assert store.prune(retention_days=30)["events"] == 0  # with a publisher: kept until published
    totals = store.prune(retention_days=30, publisher=False)
    assert totals["events"] == 3 and count(store, "event") == 0
    assert store.message(queued.id)["state"] == "queued"  # type: ignore[index]
    assert store.prune(retention_days=0, publisher=False)["events"] == 0  # nothing new, nothing to do
    clock.advance(31 * DAY)
    assert store.prune(retention_days=30, publisher=False)["inbox"] == 1  # handled; nothing to publish


def test_without_mqtt_received_messages_need_not_be_handled(store: Store, clock: Clock) -> None:
    """No [mqtt], no rules engine: nothing ever marks a message handled, so age alone decides."""
    receive(store, "never handled", "0c01", handled=False, published=False)
    clock.advance(29 * DAY)
    assert store.prune(retention_days=30, publisher=False)["inbox"] == 0  # younger than the retention
    clock.advance(2 * DAY)
    assert store.prune(retention_days=30)["inbox"] == 0  # with MQTT (and rules) it waits to be handled
    assert store.prune(retention_days=30, publisher=False)["inbox"] == 1


def test_each_batch_is_its_own_short_transaction(store: Store, db_path: Path, clock: Clock) -> None:
    ids = [r.id for r in store.enqueue([request(f"+4917012{n:05d}") for n in range(45)])]
    for message_id in ids:
        store.fail(message_id, "rejected")
    store.events_done([e.id for e in store.events_pending(1000)])
    clock.advance(31 * DAY)
    other = sqlite3.connect(db_path, timeout=0, isolation_level=None)  # would fail on a held write lock
    steps = []
    for totals in store.prune_steps(retention_days=30, batch=10):
        steps.append(totals["messages"])
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO audit (at, kind, detail) VALUES (?, 'probe', '{}')", (clock.now,))
        other.execute("COMMIT")
    other.close()
    assert steps[:5] == [10, 20, 30, 40, 45] and steps[-1] == 45
    assert count(store, "message") == 0 and count(store, "event") == 0
    assert len(store.audit_log(1000, kind="probe")) == len(steps)


def test_a_new_file_shrinks_after_pruning(db_path: Path, clock: Clock) -> None:
    with Store(db_path, clock=clock) as store:
        assert connection(store).execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        store.enqueue([request(f"+4917012{n:05d}", "x" * 1500) for n in range(1500)])
        for message_id in range(1, 1501):
            store.fail(message_id, "rejected")
        store.events_done([e.id for e in store.events_pending(100000)])
        connection(store).execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = db_path.stat().st_size
        clock.advance(31 * DAY)
        totals = store.prune(retention_days=30)
        assert totals["messages"] == 1500 and totals["pages"] > 0
        after = db_path.stat().st_size
        wal = db_path.with_name(db_path.name + "-wal")
        assert after < before / 4, (before, after)
        assert not wal.exists() or wal.stat().st_size == 0  # truncated
        assert connection(store).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_opening_an_existing_store_commits_nothing(db_path: Path, clock: Clock) -> None:
    """auto_vacuum is asked of a new file only: asked again of one with tables, SQLite commits
    (page 1 rewritten, an fsync) at every open, such as every `smsgw send`'s."""
    Store(db_path, clock=clock).close()
    watcher = sqlite3.connect(db_path)
    version = watcher.execute("PRAGMA data_version").fetchone()[0]  # changes with any other connection's commit
    with Store(db_path, clock=clock) as store:
        assert connection(store).execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert watcher.execute("PRAGMA data_version").fetchone()[0] == version
    with Store(db_path, clock=clock) as store:  # the watcher does see a commit
        store.enqueue([request("+491701234567", "x")])
    assert watcher.execute("PRAGMA data_version").fetchone()[0] != version
    watcher.close()


def test_an_old_file_without_auto_vacuum_reuses_the_freed_pages(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")  # WAL before auto_vacuum: the setting never applies
    conn.close()
    with Store(path, clock=clock) as store:
        assert connection(store).execute("PRAGMA auto_vacuum").fetchone()[0] == 0
        store.enqueue([request(f"+4917012{n:05d}", "y" * 1500) for n in range(500)])
        for message_id in range(1, 501):
            store.fail(message_id, "rejected")
        store.events_done([e.id for e in store.events_pending(100000)])
        pages = connection(store).execute("PRAGMA page_count").fetchone()[0]
        clock.advance(31 * DAY)
        assert store.prune(retention_days=30)["messages"] == 500
        assert connection(store).execute("PRAGMA freelist_count").fetchone()[0] > 0
        store.enqueue([request(f"+4917013{n:05d}", "z" * 1500) for n in range(400)])
        assert connection(store).execute("PRAGMA page_count").fetchone()[0] <= pages  # did not grow


def test_store_retention_settings_are_read_and_checked(tmp_path: Path) -> None:
    from appliance.config import ConfigError, parse_config

    cfg = parse_config({"store": {"path": "s.db"}}, tmp_path / "smsgw.toml")
    assert (cfg.store.retention_days, cfg.store.audit_retention_days) == (30.0, 365.0)
    cfg = parse_config({"store": {"path": "s.db", "retention_days": 0, "audit_retention_days": 7.5}},
                       tmp_path / "smsgw.toml")
    assert (cfg.store.retention_days, cfg.store.audit_retention_days) == (0.0, 7.5)
    for key, value, reason in (("retention_days", -1, "at least 0"), ("audit_retention_days", "1y", "a number")):
        with pytest.raises(ConfigError, match=rf"store\.{key}.*{reason}"):
            parse_config({"store": {"path": "s.db", key: value}}, tmp_path / "smsgw.toml")


async def test_the_daemon_prunes_at_start_and_drops_events_without_mqtt(tmp_path: Path) -> None:
    from daemon_helpers import DaemonProcess, write_config
    from waiting import async_wait_until

    from drivers.simulator import Simulator

    sim = Simulator(tmp_path / "sim", modems=1, profile="generic")
    await sim.start()
    config = write_config(tmp_path / "gw", sim.ports, extra="")
    db = tmp_path / "gw" / "smsgw.db"
    long_ago = time.time() - 40 * DAY
    with Store(db, clock=Clock(long_ago)) as store:
        old = store.enqueue([request("+491701230000")])[0].id
        store.fail(old, "rejected")
        store.audit("command.denied", {"from": "+49170"})
        store.add_event("modem/sim0", {"state": "ok"})  # written while nothing published events
        assert store.stats()["events_pending"] == 3
    daemon = await DaemonProcess(config).start()
    try:
        await daemon.wait_running()

        def pruned() -> bool:
            with Store(db) as store:
                return store.message(old) is None and not connection(store).execute(
                    "SELECT COUNT(*) FROM event WHERE created_at < ?", (long_ago + 1,)).fetchone()[0]

        await async_wait_until(pruned, timeout=10, what="the start-up prune")
        with Store(db) as store:
            assert len(store.audit_log()) >= 1  # 40 days: within the audit retention
        assert await daemon.stop() == 0
    finally:
        if daemon.running:
            await daemon.kill()
        await sim.stop()


# A store with pending events and nobody to publish them, pruned in a process of its own, each
# step marked (STEP_MARK).
PRUNE_STEPS = STEP_MARK + """
import sys
from appliance.store import OutboundRequest, Store

store = Store(sys.argv[1])
for start in range(0, 1500, 500):
    store.enqueue([OutboundRequest(to=f"+4917012{n:05d}", text="hello", source="test") for n in range(start, start + 500)])
step("prune")
for totals in store.prune_steps(publisher=False, batch=200):
    step("yielded")
print(totals["events"], totals["pages"])
step("enqueue")
store.enqueue([OutboundRequest(to="+491701234567", text="after", source="test")])
step("end")
"""


def test_pruning_waits_for_no_fsync_until_its_checkpoint_and_leaves_commits_durable(tmp_path: Path) -> None:
    """Each batch deleted and each vacuum step commits without an fsync of its own (a power cut can
    only undo a deletion); the closing checkpoint syncs; the next enqueue is fsync'ed again."""
    trace = tmp_path / "trace"
    done = run_traced(PRUNE_STEPS, str(tmp_path / "smsgw.db"), trace=trace, timeout=120)
    assert done.returncode == 0, done.stderr
    events, pages = map(int, done.stdout.split())
    assert events == 1500 and pages > 0  # 8 batches and a vacuum ran
    segments = [(name, len(lines)) for name, lines in syncs_by_step(trace)]
    names = [name for name, _ in segments]
    assert names[0] == "prune" and names[-2:] == ["enqueue", "end"] and names.count("yielded") > 8
    fsyncs = [n for _, n in segments]
    # each segment runs from one mark to the next: every batch and vacuum step, none; the step
    # before the last yield, the checkpoint's; after the last yield, nothing; then the enqueue's
    assert fsyncs[:-4] == [0] * (len(fsyncs) - 4), str(segments)
    assert fsyncs[-4] >= 1 and fsyncs[-3] == 0 and fsyncs[-2] >= 1, str(segments)
    with Store(tmp_path / "smsgw.db") as store:
        assert count(store, "event") == 1 and count(store, "message") == 1501
