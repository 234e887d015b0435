"""Schema of the smsgw SQLite store, versioned by ``PRAGMA user_version``.

Each entry ``n`` of ``MIGRATIONS`` takes the database to version ``n``. A new database runs every step
from 0, so a fresh file and a migrated one end with the same schema; the steps are tested from SQL
dumps of older versions kept in ``tests/databases/``. Version numbers are assigned to schema changes
ahead of their work, so a number may have no step yet: ``migrate`` runs the steps there are, in
order, and skips a number without one (``SCHEMA_VERSION`` is the highest step).

Version history
  1  outbox (message, part), inbound parts and inbox, events, audit, rule state.
  2  reassembly timeout: ``inbox.partial`` / ``inbox.missing`` (a message delivered with parts missing),
     the index used to find open reassembly groups, and the index that matches delivery reports by
     (modem, message_reference, sent_at).
  3  incoming duplicates per modem and SIM slot: ``inbox_part.slot`` (the SIM storage index the part
     was read from, NULL for a part delivered directly by ``+CMT``); the unique index on the PDU is
     replaced by a plain index on (modem, pdu), so identical SMS on two SIMs, or in two slots of one
     SIM, are distinct parts. Indexes for retention (``Store.prune``) by age.
  4  opt-outs: the ``optout`` table (numbers moved from rule state).
  5  send path at any backlog: ``message_due`` (state, next_attempt_at) and ``message_expiry``
     (state, valid_until), so ``Store.next_due_at`` and ``Store.expire_due`` search instead of scanning.
  6  per-message national language: ``message.language`` (ISO 639-1 code of 3GPP TS 23.038 6.2.1.2
     whose shift tables the message may be encoded with; NULL: ``[sms] national_language``).
  7  ``part_unsent``: partial index of the parts without a TP-MR (``Store.next_due_at``).
  8  counters kept by triggers, so ``Store.stats()`` reads a few rows at any history: ``counter``
     (messages per state, inbox rows, unhandled, parts waiting for reassembly, pending events) and
     ``source_count`` (messages accepted and sent per source and quarter hour of ``created_at``);
     ``message_last_error``, a partial index of the messages with an error.
  9  webhooks: ``webhook`` (the configured webhooks and the events each one takes, written by the
     daemon at start) and ``webhook_delivery`` (one row per event and webhook, committed with the
     event, retried until delivered or expired).
 10  urgent and scheduled messages: ``message.message_class`` (TP-DCS message class of 3GPP TS 23.038
     §4; 0 is a flash SMS, NULL none) and ``message.send_at`` (epoch seconds the message was held
     until: a requested ``send_at`` or the end of quiet hours; NULL: sent at once). The hold itself
     is ``next_attempt_at``, which ``Store.claim`` and ``Store.next_due_at`` already honour.
 11  status-page history: ``history_sample`` (one row a minute per modem's signal and per queue state,
     unique by kind, key and minute; ``appliance.store_history``), indexed by time for the charts and
     the retention.
 12  escalating alerts: the ``alert`` table (one row per alert of a rule with ``escalate``: its state,
     the next step of its on-call chain and when it is due), indexed by due time, by active key and
     by closing time (retention).
 13  ``message.held`` (0: a queued message ready, 1: queued and not due yet), indexed where 0 in claim
     order and where 1 in due order, so ``claim`` never walks past the held rows.
 14  fewer index writes per message: ``held`` is 2 for a ``sending`` message (NULL only in the states
     after it), and the four indexes that led with ``state`` (rewritten at every change of state) are
     replaced by partial indexes on ``held`` that each hold only the rows their queries read: the
     queued ones in claim order, the sending ones, the queued ones with a validity, the finished ones.
 15  fewer index writes per part: ``part_unsent`` holds only the unsent parts of messages of more
     than one part (the only ones a modem can be waited for), ``part_report`` only the parts with a
     TP-MR (the only ones a report or a rate limit looks for); a single-part send writes 3 frames
     fewer to the WAL (13 where it wrote 16).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from appliance.deferred_log import get_logger

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:  # imported in migrate(), only when a migration runs: the CLI starts without it
    import sqlite_utils

LOG = get_logger(__name__)


class SchemaError(RuntimeError):
    """The database file cannot be used by this version of smsgw."""


class MigrationFailed(SchemaError):
    """A migration run in a child process (``migrate_in_child``) failed; its message names the file
    and the child's error. The step that failed was rolled back: the file keeps the version of the
    last step that committed."""


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _v1(db: sqlite_utils.Database) -> None:
    db.table("message").create(
        {
            "id": int,
            "client_key": str,
            "source": str,
            "recipient": str,
            "text": str,
            "priority": int,  # 0 high, 1 normal, 2 low
            "created_at": float,
            "valid_until": float,
            "report": int,
            "state": str,
            "attempts": int,
            "next_attempt_at": float,
            "last_error": str,
            "lease_until": float,
            "modem": str,
            "updated_at": float,
        },
        pk="id",
        not_null={"recipient", "text", "priority", "created_at", "report", "state", "attempts", "source"},
        defaults={"priority": 1, "report": 0, "attempts": 0, "source": ""},
    )
    db.table("message").create_index(["client_key", "recipient"], index_name="message_idempotency", unique=True)
    db.table("message").create_index(["state", "priority", "id"], index_name="message_queue")
    db.table("message").create_index(["created_at"], index_name="message_created")

    db.table("part").create(
        {
            "message_id": int,
            "sequence": int,
            "total": int,
            "pdu": str,
            "tpdu_length": int,
            "modem": str,
            "message_reference": int,
            "state": str,  # pending, sent, delivered, failed
            "sent_at": float,
            "delivered_at": float,
            "status": int,  # TP-ST of the last status report
        },
        pk=("message_id", "sequence"),
        foreign_keys=[("message_id", "message", "id")],
        not_null={"total", "pdu", "tpdu_length", "state"},
    )

    db.table("inbox_part").create(
        {
            "id": int,
            "modem": str,
            "pdu": str,
            "sender": str,
            "text": str,
            "encoding": str,
            "sent_at": str,  # the SMSC timestamp, ISO 8601 with its offset
            "concat_reference": int,
            "concat_total": int,
            "concat_sequence": int,
            "received_at": float,
            "error": str,
            "dedup_key": str,
            "inbox_id": int,
        },
        pk="id",
        not_null={"modem", "pdu", "received_at"},
    )
    db.table("inbox_part").create_index(["pdu"], index_name="inbox_part_pdu", unique=True)
    db.table("inbox_part").create_index(["dedup_key"], index_name="inbox_part_dedup", unique=True)

    db.table("inbox").create(
        {
            "id": int,
            "sender": str,
            "text": str,
            "sent_at": str,
            "received_at": float,
            "modem": str,
            "parts": int,
            "error": str,
            "handled_at": float,
        },
        pk="id",
        not_null={"received_at", "parts"},
    )

    db.table("event").create(
        {
            "id": int,
            "topic": str,
            "payload": str,
            "qos": int,
            "retain": int,
            "created_at": float,
            "done_at": float,
        },
        pk="id",
        not_null={"topic", "payload", "qos", "retain", "created_at"},
    )
    db.table("event").create_index(["done_at", "id"], index_name="event_pending")

    db.table("audit").create({"id": int, "at": float, "kind": str, "detail": str}, pk="id",
                       not_null={"at", "kind", "detail"})

    db.table("state").create({"namespace": str, "key": str, "value": str}, pk=("namespace", "key"),
                       not_null={"value"})


def _v2(db: sqlite_utils.Database) -> None:
    db.table("inbox").add_column("partial", int, not_null_default=0)
    db.table("inbox").add_column("missing", str)  # JSON list of the sequence numbers never received
    db.table("inbox_part").create_index(
        ["inbox_id", "sender", "concat_reference", "concat_total"], index_name="inbox_part_group"
    )
    db.table("part").create_index(["modem", "message_reference", "sent_at"], index_name="part_report")


def _v3(db: sqlite_utils.Database) -> None:
    db.table("inbox_part").add_column("slot", int)
    db.execute("DROP INDEX inbox_part_pdu")
    db.table("inbox_part").create_index(["modem", "pdu"], index_name="inbox_part_modem_pdu")
    db.table("inbox").create_index(["received_at"], index_name="inbox_received")
    db.table("audit").create_index(["at"], index_name="audit_at")
    db.table("message").create_index(["state", "updated_at"], index_name="message_finished")


def _v4(db: sqlite_utils.Database) -> None:
    # numbers that sent STOP (or were added with `smsgw optout add`): only critical messages go to them
    db.execute("CREATE TABLE optout (number TEXT PRIMARY KEY, at REAL NOT NULL, source TEXT NOT NULL)")
    # STOPs kept before as state ("optout", <last 9 digits>): the digits still match (store.same_number)
    db.execute("INSERT OR IGNORE INTO optout (number, at, source) SELECT key, strftime('%s', 'now'), 'migrated' "
               "FROM state WHERE namespace = 'optout'")
    db.execute("DELETE FROM state WHERE namespace = 'optout'")


def _v5(db: sqlite_utils.Database) -> None:
    db.table("message").create_index(["state", "next_attempt_at"], index_name="message_due")
    db.table("message").create_index(["state", "valid_until"], index_name="message_expiry")


def _v6(db: sqlite_utils.Database) -> None:
    db.table("message").add_column("language", str)  # NULL for old rows: the configured language


def _v7(db: sqlite_utils.Database) -> None:
    # parts not yet sent: only messages claimed and not finished have them, so next_due_at finds the
    # messages held for the modem that sent their first parts without reading the whole queue
    db.execute("CREATE INDEX part_unsent ON part (message_id) WHERE message_reference IS NULL")


#: Seconds per ``source_count`` bucket: every UTC offset in use is a multiple of a quarter hour, so
#: a local midnight starts a bucket (``Store.source_usage`` counts a partial bucket from ``message``).
SOURCE_BUCKET = 900
#: The states of a message at schema 8 (``appliance.store.STATES``), each a ``counter`` row ``message.<state>``.
STATES = ("queued", "sending", "sent", "delivered", "failed", "expired")
#: SQL: 1 when the state counts as sent for ``source_count`` (``Store.source_usage``), for row R.
_SENT = "(({r}.state IN ('sent', 'delivered')) + 0)"
_BUCKET = f"CAST({{r}}.created_at / {SOURCE_BUCKET} AS INTEGER)"
#: (counter name, SQL of the 0/1 contribution of row R of the table) for the flag counters.
_FLAGS = {
    "inbox": [("inbox", "1"), ("inbox.unhandled", "({r}.handled_at IS NULL)")],
    "inbox_part": [("inbox_part.pending", "({r}.inbox_id IS NULL)")],
    "event": [("event.pending", "({r}.done_at IS NULL)")],
}
#: the column whose change moves a row in or out of a flag counter
_FLAG_COLUMNS = {"inbox": "handled_at", "inbox_part": "inbox_id", "event": "done_at"}


def _source_add(r: str, sign: str) -> str:
    return (f"INSERT INTO source_count (source, bucket, accepted, sent) VALUES ({r}.source, "
            f"{_BUCKET.format(r=r)}, {sign}1, {sign}{_SENT.format(r=r)}) ON CONFLICT (bucket, source) DO UPDATE "
            "SET accepted = accepted + excluded.accepted, sent = sent + excluded.sent;")


def _source_drop_empty(r: str) -> str:
    return f"DELETE FROM source_count WHERE bucket = {_BUCKET.format(r=r)} AND source = {r}.source AND accepted <= 0;"


def _count(name_sql: str, delta: str) -> str:
    # the rows exist from the migration on (every state, every flag): an UPDATE by key is the cheapest
    return f"UPDATE counter SET n = n + {delta} WHERE name = {name_sql};"


def _v8(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE counter (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID")
    db.execute("CREATE TABLE source_count (source TEXT NOT NULL, bucket INTEGER NOT NULL, "
               "accepted INTEGER NOT NULL, sent INTEGER NOT NULL, PRIMARY KEY (bucket, source)) WITHOUT ROWID")
    db.execute("CREATE INDEX message_last_error ON message (updated_at) WHERE last_error IS NOT NULL")
    # the counts of the rows already there, then triggers keep them in every transaction that writes
    db.execute("INSERT INTO counter (name, n) SELECT 'message.' || state, COUNT(*) FROM message GROUP BY state")
    db.conn.executemany("INSERT OR IGNORE INTO counter (name, n) VALUES (?, 0)",
                        [(f"message.{state}",) for state in STATES])
    for table, flags in _FLAGS.items():
        for name, flag in flags:
            db.execute(f"INSERT INTO counter (name, n) SELECT ?, COALESCE(SUM({flag.format(r=table)}), 0) "
                       f"FROM {table}", (name,))
    db.execute(f"INSERT INTO source_count (source, bucket, accepted, sent) SELECT source, {_BUCKET.format(r='m')}, "
               f"COUNT(*), SUM({_SENT.format(r='m')}) FROM message m GROUP BY 1, 2")
    message_name = "'message.' || {r}.state"
    db.execute("CREATE TRIGGER message_count_insert AFTER INSERT ON message BEGIN "
               f"{_count(message_name.format(r='NEW'), '1')} {_source_add('NEW', '')} END")
    db.execute("CREATE TRIGGER message_count_delete AFTER DELETE ON message BEGIN "
               f"{_count(message_name.format(r='OLD'), '-1')} {_source_add('OLD', '-')} "
               f"{_source_drop_empty('OLD')} END")
    db.execute("CREATE TRIGGER message_count_state AFTER UPDATE OF state ON message "
               "WHEN OLD.state IS NOT NEW.state BEGIN "
               f"{_count(message_name.format(r='OLD'), '-1')} {_count(message_name.format(r='NEW'), '1')} END")
    db.execute("CREATE TRIGGER message_count_source AFTER UPDATE OF state, source, created_at ON message "
               f"WHEN {_SENT.format(r='OLD')} != {_SENT.format(r='NEW')} OR OLD.source IS NOT NEW.source "
               f"OR {_BUCKET.format(r='OLD')} IS NOT {_BUCKET.format(r='NEW')} BEGIN "
               f"{_source_add('OLD', '-')} {_source_add('NEW', '')} {_source_drop_empty('OLD')} END")
    for table, flags in _FLAGS.items():
        column = _FLAG_COLUMNS[table]
        plus = " ".join(_count(f"'{name}'", flag.format(r="NEW")) for name, flag in flags)
        minus = " ".join(_count(f"'{name}'", f"-{flag.format(r='OLD')}") for name, flag in flags)
        db.execute(f"CREATE TRIGGER {table}_count_insert AFTER INSERT ON {table} BEGIN {plus} END")
        db.execute(f"CREATE TRIGGER {table}_count_delete AFTER DELETE ON {table} BEGIN {minus} END")
        db.execute(f"CREATE TRIGGER {table}_count_update AFTER UPDATE OF {column} ON {table} "
                   f"WHEN (OLD.{column} IS NULL) != (NEW.{column} IS NULL) BEGIN {minus} {plus} END")


def _v9(db: sqlite_utils.Database) -> None:
    # one row per configured webhook and event it takes; expire_after: seconds a delivery is retried
    db.execute("CREATE TABLE webhook (name TEXT NOT NULL, event TEXT NOT NULL, expire_after REAL NOT NULL, "
               "PRIMARY KEY (name, event))")
    db.execute(
        "CREATE TABLE webhook_delivery ("
        "id INTEGER PRIMARY KEY, "
        "webhook TEXT NOT NULL, "
        "delivery_id TEXT NOT NULL UNIQUE, "  # X-Smsgw-Delivery: the same on every attempt
        "event TEXT NOT NULL, "  # X-Smsgw-Event: received, message
        "body TEXT NOT NULL, "  # the JSON POSTed, exactly (its bytes are signed)
        "created_at REAL NOT NULL, "
        "expires_at REAL NOT NULL, "
        "state TEXT NOT NULL, "  # pending, delivered, expired
        "attempts INTEGER NOT NULL DEFAULT 0, "
        "next_attempt_at REAL NOT NULL, "
        "last_status INTEGER, "  # the HTTP status of the last attempt (NULL: no answer)
        "last_error TEXT, "
        "done_at REAL)"
    )
    # the next delivery of each webhook, in order; the finished ones by age (retention) and by webhook
    # and state (the counts of smsgw status, the last delivery)
    db.execute("CREATE INDEX webhook_delivery_pending ON webhook_delivery (webhook, id) WHERE done_at IS NULL")
    db.execute("CREATE INDEX webhook_delivery_done ON webhook_delivery (done_at) WHERE done_at IS NOT NULL")
    db.execute("CREATE INDEX webhook_delivery_finished ON webhook_delivery (webhook, state, done_at) "
               "WHERE done_at IS NOT NULL")


def _v10(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE message ADD COLUMN message_class INTEGER")
    db.execute("ALTER TABLE message ADD COLUMN send_at REAL")


def _v11(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE history_sample (id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL, "
               "key TEXT NOT NULL, value REAL)")
    db.execute("CREATE UNIQUE INDEX history_sample_key ON history_sample (kind, key, at)")
    db.execute("CREATE INDEX history_sample_at ON history_sample (at)")


def _v12(db: sqlite_utils.Database) -> None:
    # escalating alerts (appliance/escalation.py); step: chain steps done, next_at: when the next is
    # due (NULL once acknowledged or closed); alerted: JSON list of the numbers sent the alert so far
    db.execute(
        "CREATE TABLE alert (id INTEGER PRIMARY KEY, rule TEXT NOT NULL, key TEXT NOT NULL, "
        "topic TEXT NOT NULL, text TEXT NOT NULL, state TEXT NOT NULL, step INTEGER NOT NULL DEFAULT 0, "
        "steps INTEGER NOT NULL, next_at REAL, alerted TEXT NOT NULL DEFAULT '[]', "
        "triggers INTEGER NOT NULL DEFAULT 1, acknowledged_by TEXT, acknowledged_name TEXT, "
        "resolved_by TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL, closed_at REAL)"
    )
    db.execute("CREATE INDEX alert_due ON alert (next_at) WHERE next_at IS NOT NULL")
    db.execute("CREATE INDEX alert_active ON alert (rule, key) WHERE closed_at IS NULL")
    db.execute("CREATE INDEX alert_closed ON alert (closed_at) WHERE closed_at IS NOT NULL")


def _v13(db: sqlite_utils.Database) -> None:
    # held: of a queued message, 0 when it is ready, 1 when it is not due yet (send_at, quiet hours, a
    # retry's backoff, a rate limit); NULL for every other state. The held ones are kept out of the
    # claim order so that claim does not walk past them: it first releases the held rows that became
    # due (message_held, in due order), then takes the first ready one (message_ready). The partial
    # indexes name only `held`: one naming `state` would make SQLite prepare again, at every run,
    # each statement that compares state with a bound parameter (it needs the value to decide
    # whether the partial index applies).
    db.execute("ALTER TABLE message ADD COLUMN held INTEGER")
    # the first claim releases the due ones (a row without next_attempt_at, from schema 1, is due)
    db.execute("UPDATE message SET held = (next_attempt_at IS NOT NULL) WHERE state = 'queued'")
    db.execute("CREATE INDEX message_ready ON message (priority, id) WHERE held = 0")
    db.execute("CREATE INDEX message_held ON message (next_attempt_at) WHERE held = 1")


def _v14(db: sqlite_utils.Database) -> None:
    # held: 0 ready, 1 not due yet (both queued), 2 sending, NULL sent and after. A message inserted
    # writes 3 index entries (4 with a validity) where it wrote 7, a claim and a sent 2 where each
    # rewrote 4 indexes; every query that named `state` to find the queued or sending rows names the
    # literal held values the partial indexes are defined by (see _v13 for why never `state`).
    db.execute("UPDATE message SET held = 2 WHERE state = 'sending'")
    for name in ("message_queue", "message_due", "message_expiry", "message_finished", "message_ready"):
        db.execute(f"DROP INDEX {name}")
    # the queued rows by (held, priority, id): claim takes the first ready one (held = 0), the self
    # alerts the oldest of each priority, ready or held. Not `held < 2`: with statistics (ANALYZE)
    # SQLite 3.40 then searches the range held < 2 and sorts, rather than the equality held = 0; a
    # query's `held = 0` implies the OR, so the index applies without naming it.
    db.execute("CREATE INDEX message_queued ON message (held, priority, id) WHERE held = 0 OR held = 1")
    # the sending rows in claim order: a lease run out is claimed again; at most a few (one per modem)
    db.execute("CREATE INDEX message_leased ON message (priority, id) WHERE held = 2")
    # queued or sending with a validity: a claim does not move a row out of it
    db.execute("CREATE INDEX message_expiring ON message (valid_until) "
               "WHERE held IS NOT NULL AND valid_until IS NOT NULL")
    # sent and after, by state and age: retention, the day's summary
    db.execute("CREATE INDEX message_done ON message (state, updated_at) WHERE held IS NULL")


def _v15(db: sqlite_utils.Database) -> None:
    # A part enters part_unsent at its claim and leaves it at its TP-MR, and entered part_report at
    # its claim (keyed NULL, NULL, NULL) to move at its TP-MR: each an index page written per commit.
    # Only a message of several parts can be held for the modem that sent its first ones (a single
    # part without a TP-MR has sent nothing), and every query of part_report names a TP-MR or
    # sent_at, so neither index needs the rows it now leaves out.
    db.execute("DROP INDEX part_unsent")
    db.execute("CREATE INDEX part_unsent ON part (message_id) WHERE message_reference IS NULL AND total > 1")
    db.execute("DROP INDEX part_report")
    db.execute("CREATE INDEX part_report ON part (modem, message_reference, sent_at) "
               "WHERE message_reference IS NOT NULL")


#: MIGRATIONS[n] takes the schema to version n (from the highest version below n that has a step).
MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {
    1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6, 7: _v7, 8: _v8, 9: _v9,
    10: _v10, 11: _v11, 12: _v12, 13: _v13, 14: _v14, 15: _v15,
}
SCHEMA_VERSION = max(MIGRATIONS)


def refuse_newer(version: int) -> None:
    """``SchemaError`` if ``version`` is from a newer smsgw than this one."""
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"database schema version {version} is newer than this smsgw supports ({SCHEMA_VERSION}); "
            "upgrade smsgw or restore a backup"
        )


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the database to ``target``; each step commits with its new user_version. The old version."""
    start = user_version(conn)
    refuse_newer(start)
    if start >= target:
        return start
    import sqlite_utils

    db = sqlite_utils.Database(conn)
    reached = start
    for version in sorted(v for v in MIGRATIONS if start < v <= target):
        LOG.info("migrating store schema to version %d", version)
        conn.execute("BEGIN IMMEDIATE")
        if (reached := user_version(conn)) >= version:  # another process migrated while we waited for the lock
            conn.execute("COMMIT")
            continue
        try:
            MIGRATIONS[version](db)
            conn.execute(f"PRAGMA user_version = {version}")
        except BaseException as exc:
            conn.execute("ROLLBACK")
            exc.add_note(f"in the step to schema version {version}; the file stays at version {reached}")
            raise
        conn.execute("COMMIT")
    return start


# --- in a child process -------------------------------------------------------------------------
#
# The steps are written with sqlite_utils, which imports click, pluggy, dateutil and the email package
# (about 4 MiB that would stay for the life of the process): the daemon and the CLI run them in a
# short-lived interpreter of their own (``Store(path, migrate_in_child=True)``), so they never import it.

#: The child: SIGTERM and SIGINT ignored (systemd and a terminal send them to every process of the
#: daemon, which remembers one during start-up and stops once up: the migration finishes, as it did
#: in-process), the package root first on sys.path (the parent's appliance, wherever it was imported
#: from), then ``main`` with the file and the busy timeout.
_CHILD = ("import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
          "signal.signal(signal.SIGINT, signal.SIG_IGN); sys.path.insert(0, sys.argv[1]); "
          "from appliance.migrations import main; sys.exit(main(sys.argv[2:]))")


def migrate_in_child(path: Path, busy_timeout: float) -> int:
    """Run ``migrate`` on the file at ``path`` (which exists) in a child interpreter, the same as this
    one, and wait for it; the old version it found. Each step is still one transaction with its
    user_version, so two processes migrating at once take turns as in-process (the second skips
    the steps the first committed); ``MigrationFailed`` naming the file and the child's error if
    it failed (a step's error, a lock held past ``busy_timeout``, the child killed)."""
    import subprocess

    root = str(Path(__file__).resolve().parent.parent)
    failed = f"migrating the store {path} to schema version {SCHEMA_VERSION} failed"
    try:
        result = subprocess.run([sys.executable, "-c", _CHILD, root, str(path), repr(busy_timeout)],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", check=False)
    except OSError as exc:  # no interpreter to start (sys.executable empty), no process left
        raise MigrationFailed(f"{failed}: cannot start {sys.executable or 'the interpreter'}: {exc}") from exc
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    if result.returncode == 0:
        try:
            return int(result.stdout.split()[-1])
        except (IndexError, ValueError):
            lines.append(f"unexpected output {result.stdout!r}")
    if result.returncode < 0:
        lines.append(f"the migration process was killed by signal {-result.returncode}")
    reason = lines[-1] if lines else f"the migration process exited with status {result.returncode}"
    raise MigrationFailed(f"{failed}: {reason}")


def migrate_file(path: Path, busy_timeout: float) -> int:
    """``migrate`` the existing file at ``path`` with a connection of its own (``synchronous=FULL``
    and foreign keys on, as the store's); the old version."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None,
                           timeout=busy_timeout)
    try:
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return migrate(conn)
    finally:
        conn.close()


def main(argv: Sequence[str]) -> int:
    """The child of ``migrate_in_child`` (arguments: the file, the busy timeout): prints the old
    version and returns 0, or prints the error as the last line of stderr and returns 1."""
    path, busy_timeout = Path(argv[0]), float(argv[1])
    try:
        start = migrate_file(path, busy_timeout)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises MigrationFailed
        notes = "; ".join(getattr(exc, "__notes__", ()))  # the step that failed
        print(f"{type(exc).__name__}: {' '.join(str(exc).split())}" + (f" ({notes})" if notes else ""),
              file=sys.stderr)  # one line, the last
        return 1
    print(start)
    return 0
