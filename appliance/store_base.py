"""The store's connection: opening and migrating the file, transactions with their listeners,
the event rows every change writes, the key-value state and the audit log.

The table groups are mixins over ``StoreBase`` (``store_outbound``, ``store_inbound``,
``store_webhooks``, ``store_retention``, ``store_reports``, ...); ``appliance.store.Store`` combines
them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from appliance.deferred_log import get_logger
from appliance.migrations import (
    SCHEMA_VERSION,
    MigrationFailed,
    migrate,
    migrate_in_child,
    refuse_newer,
    user_version,
)
from appliance.payload import dump_json
from appliance.store_types import (
    BUSY_TIMEOUT,
    Event,
    RetentionStep,
    StoreError,
    StoreFull,
    free_space,
    is_full_error,
    nearly_full,
    share_with_group,
    webhook_event,
)
from drivers.private_files import create_private, restrict

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any, Self

    from appliance.event_body import EventBody

LOG = get_logger("appliance.store")


#: SQLite's page cache of the daemon's connection, KiB (SQLite's default is 2,000): the queries of the
#: send path read a few index pages, and the rest of the file is in the kernel's page cache anyway;
#: 1 MiB less of the daemon's peak memory (docs/benchmarks.md, "Memory and CPU").
PAGE_CACHE_KIB = 1024


class StoreBase:
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time, read_only: bool = False,
                 migrate_in_child: bool = False) -> None:
        """Open (creating and migrating) the store at ``path``; with ``read_only``, open an existing
        file with SQLite's ``mode=ro``: no migration, no PRAGMA that writes, nothing created, so it
        works on a full disk (``smsgw status``, ``inbox``, ``outbox``). With ``migrate_in_child``
        (the daemon, the CLI), a file that needs a migration is migrated by a short-lived child
        process (``migrations.migrate_in_child``): this one never imports sqlite_utils."""
        self.path = Path(path)
        self.clock = clock
        self.read_only = read_only
        self._child_migration = migrate_in_child
        self._listeners: list[Callable[[], None]] = []
        self._enqueue_listeners: list[Callable[[], None]] = []
        self._tx_events = 0
        self._tx_enqueued = 0
        self._in_tx = False
        self._synchronous_full = True  # the connection's synchronous (FULL when opened); see _synchronous
        #: Called after each commit of this connection (store_wal.defer_checkpoints).
        self._after_commit: Callable[[], None] | None = None
        #: What a received text looks like wherever it is shown or published (the ``received`` event,
        #: ``inbox()``): the daemon and ``smsgw inbox`` set it to withhold PINs (rules.withhold_pin).
        #: The inbox row keeps the text as received, for the command rules.
        self.shown_text: Callable[[str], str] = lambda text: text
        #: Whether event rows are written (the MQTT publisher's queue). A daemon without ``[mqtt]``
        #: sets it False: nothing would publish them, and its next prune would delete them unpublished.
        #: Webhook deliveries, made from the same payloads, are written either way.
        self.events_published = True
        #: The configured webhooks per event, (name, expire_after) in name order, as
        #: ``configure_webhooks`` recorded them (the daemon's); None in a process that did not
        #: configure them (``smsgw send``), which reads the webhook table per event.
        self._webhooks: dict[str, list[tuple[str, float]]] | None = None
        if read_only:
            self._conn = self._connect_read_only()
            version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
            if version != SCHEMA_VERSION:
                self._conn.close()
                newer = "a newer smsgw" if version > SCHEMA_VERSION else "an older smsgw; 'smsgw run' migrates it"
                raise StoreError(f"{self.path} has schema version {version}, this smsgw reads {SCHEMA_VERSION} "
                                 f"(the file is from {newer})")
            self.migrated_from: int | None = None
            return
        try:
            self._open_writable(str(path))
        except (sqlite3.OperationalError, OSError, MigrationFailed) as exc:
            # on a full disk SQLite fails to create or grow the -shm/-wal ("disk I/O error")
            if str(path) != ":memory:" and nearly_full(self.path):
                raise StoreFull(f"the disk holding {self.path} is full ({free_space(self.path)}): {exc}") from exc
            raise

    def _open_writable(self, path: str) -> None:
        if path != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_private(self.path)  # 0600 (0640 in a setgid directory) whatever the umask
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        # only takes effect on a new file (before its first table and before WAL); see prune(). Asked
        # of an empty file only: on any other it would still commit (page 1 rewritten, an fsync at
        # every open of the store, each `smsgw send`'s)
        if self._conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._set_wal()
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
        if path != ":memory:":
            for suffix in ("-wal", "-shm"):  # SQLite gives them the database's mode; older ones may be wider
                restrict(f"{self.path}{suffix}")
        if self._child_migration and path != ":memory:":
            self.migrated_from = self._migrate_by_child()
        else:
            self.migrated_from = migrate(self._conn)
        if path != ":memory:":
            share_with_group(self.path)

    def _migrate_by_child(self) -> int:
        """``migrate`` run by a child process when the file is older than ``SCHEMA_VERSION`` (a new
        file is at 0); the old version. The file exists, in WAL mode and with ``auto_vacuum`` set:
        the child only runs the steps."""
        start = user_version(self._conn)
        refuse_newer(start)
        if start >= SCHEMA_VERSION:
            return start
        LOG.info("migrating %s from schema %d to %d in a child process", self.path, start, SCHEMA_VERSION)
        migrate_in_child(self.path, BUSY_TIMEOUT)
        reached = user_version(self._conn)
        if reached != SCHEMA_VERSION:  # e.g. a newer smsgw migrated the file meanwhile
            refuse_newer(reached)
            raise MigrationFailed(f"migrating the store {self.path} left schema version {reached}, "
                                  f"not {SCHEMA_VERSION}")
        return start

    def _set_wal(self) -> None:
        """``PRAGMA journal_mode=WAL``, asked again until ``BUSY_TIMEOUT`` while the file is locked.
        Two processes opening a new file at once (the daemon and ``smsgw send``) both ask to change
        its journal mode, and one of them can be answered "database is locked" (seen when a second
        process opened the file while the daemon was creating it)."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _connect_read_only(self) -> sqlite3.Connection:
        """``mode=ro``. A WAL reader needs the -shm file; when the -shm cannot be created (a full disk,
        a read-only directory) and the -wal is missing or empty (no committed frame outside the
        database file), the file is read as ``immutable``: no writer can commit there either, since
        it would have to grow the -wal."""
        uri = self.path.resolve().as_uri()
        if not self.path.exists():
            raise StoreError(f"no database at {self.path}")
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT,
                               check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            conn.close()
            wal = Path(f"{self.path}-wal")
            if wal.exists() and wal.stat().st_size > 0:  # committed frames only the WAL holds
                raise
            LOG.info("reading %s as immutable (%s)", self.path, exc)
            conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None,
                                   check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transactions and listeners ---------------------------------------------------------

    def add_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after every commit that added events; returns a remover."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def add_enqueue_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after every commit that queued messages (the dispatcher's wake-up)."""
        self._enqueue_listeners.append(callback)
        return lambda: (
            self._enqueue_listeners.remove(callback) if callback in self._enqueue_listeners else None
        )

    def notify_changed(self) -> None:
        """Call every listener: another process committed to the file (the daemon's store watch),
        maybe events to publish or messages to send."""
        self._notify(self._enqueue_listeners)
        self._notify(self._listeners)

    def _synchronous(self, full: bool) -> None:
        """``synchronous`` FULL or NORMAL for the connection's next commits, set only when it changes:
        the dispatcher's commits (claims, TP-MRs) all go unsynced, one after the other."""
        if full != self._synchronous_full:
            self._conn.execute("PRAGMA synchronous=FULL" if full else "PRAGMA synchronous=NORMAL")
            self._synchronous_full = full

    @contextmanager
    def _unsynced(self, unsynced: bool = True) -> Iterator[None]:
        """The commits made in this block wait for no fsync (``synchronous=NORMAL``; see ``_tx``).
        It stays NORMAL after the block, until a commit that fsyncs: every commit of the connection
        outside these blocks is a ``_tx``'s, which sets the mode it needs first."""
        self._synchronous(not unsynced)
        yield

    @contextmanager
    def _tx(self, *, fsync: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``), fsync'ed at its commit.

        ``fsync=False`` commits with ``synchronous=NORMAL``: the change is in the WAL file when this
        returns, so a killed process loses nothing of it, and the next fsync'ed commit (whichever
        method makes it) syncs it with its own; only a power cut before that can take it back. Only
        a change that a power cut may undo without losing anything accepted uses it: the claim (the
        message is queued again and the TP-MR's commit, made durable, follows the PDU) and the events
        marked done (an event published again is a duplicate QoS 1 already allows); the retention's
        deletions (``Retention.prune_steps``: a deletion undone is made again); and the
        dispatcher's TP-MRs, which ``WalSync`` syncs in a thread (``sync``) before the modem's part
        after next.
        """
        if self._in_tx:
            raise StoreError("nested store transaction")
        self._in_tx = True
        self._tx_events = 0
        self._tx_enqueued = 0
        try:
            with self._unsynced(not fsync):
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
        except sqlite3.OperationalError as exc:
            if is_full_error(exc):
                raise StoreFull(f"the disk holding {self.path} is full ({free_space(self.path)}): {exc}; "
                                "nothing of this change was committed") from exc
            raise
        finally:
            self._in_tx = False
        if self._after_commit is not None:
            self._after_commit()
        events, enqueued = self._tx_events, self._tx_enqueued
        if enqueued:  # the dispatcher first: its claim goes before the events are published
            self._notify(self._enqueue_listeners)
        if events:
            self._notify(self._listeners)

    def sync(self) -> None:
        """``fdatasync`` the WAL file: every commit made so far, with or without fsync, is on disk
        when this returns (WalSync runs it in a thread: it does not touch the connection)."""
        if str(self.path) == ":memory:":
            return
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except FileNotFoundError:  # no WAL yet: nothing was committed through one
            return
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def _rollback(self) -> None:
        """Roll back what is left of a failed transaction (SQLite may have rolled it back already,
        e.g. after SQLITE_FULL at COMMIT)."""
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                LOG.exception("rolling back a failed transaction failed")

    @staticmethod
    def _notify(callbacks: list[Callable[[], None]]) -> None:
        for callback in list(callbacks):
            try:
                callback()
            except Exception:
                LOG.exception("store listener %r failed", callback)

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    def _add_event(self, conn: sqlite3.Connection, topic: str, payload: dict[str, Any] | None, now: float,
                   qos: int = 1, retain: bool = False, *, body: str | None = None) -> int:
        """The event row (``body``: ``dump_json(payload)`` when the caller has it already) and its
        webhook deliveries."""
        self._tx_events += 1
        event = webhook_event(topic)
        if event is not None and payload is not None and self._takes_webhook_event(event):
            self._add_deliveries(conn, event, payload, now)
        if not self.events_published:
            return 0
        cur = conn.execute(
            "INSERT INTO event (topic, payload, qos, retain, created_at) VALUES (?, ?, ?, ?, ?)",
            (topic, dump_json(payload) if body is None else body, qos, int(retain), now),  # compact: published as stored
        )
        return int(cur.lastrowid or 0)

    def _takes_webhook_event(self, event: str) -> bool:
        """Whether a configured webhook may take ``event`` (True where not known: the table decides)."""
        return self._webhooks is None or bool(self._webhooks.get(event))

    def _wants_event(self, topic: str) -> bool:
        """Whether an event on ``topic`` would be written or delivered: a caller that builds a costly
        payload asks first."""
        if self.events_published:
            return True
        event = webhook_event(topic)
        return event is not None and self._takes_webhook_event(event)

    def _add_deliveries(self, conn: sqlite3.Connection, event: str, payload: dict[str, Any], now: float) -> None:
        """One pending delivery per webhook that takes ``event``, in the event's transaction
        (``store_webhooks.WebhookTables`` writes them)."""

    # --- events -----------------------------------------------------------------------------

    def add_event(self, topic: str, payload: dict[str, Any], *, qos: int = 1, retain: bool = False,
                  now: float | None = None) -> int:
        """Queue an event to publish (topic relative to the base topic, e.g. ``modem/<id>``)."""
        now = self._now(now)
        with self._tx() as conn:
            return self._add_event(conn, topic, payload, now, qos, retain)

    def events_pending(self, limit: int = 100) -> list[Event]:
        rows = self._conn.execute(
            "SELECT * FROM event WHERE done_at IS NULL ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [Event(row["id"], row["topic"], json.loads(row["payload"]), row["qos"], bool(row["retain"]))
                for row in rows]

    def event_bodies_pending(self, limit: int = 100) -> list[EventBody]:
        """``events_pending`` with each payload as stored, for publishing it without reading it (the
        MQTT bridge). An event stored by an older smsgw has spaces in its JSON text: the same JSON."""
        rows = self._conn.execute(
            "SELECT id, topic, payload, qos, retain FROM event WHERE done_at IS NULL ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        from appliance.event_body import EventBody  # the daemon's: the CLI starts without typing

        return [EventBody(row[0], row[1], b"" if row[2] == "null" else row[2].encode(), row[3], bool(row[4]))
                for row in rows]

    def event_done(self, event_id: int, now: float | None = None) -> None:
        now = self._now(now)
        with self._tx(fsync=False) as conn:  # as events_done
            conn.execute("UPDATE event SET done_at = ? WHERE id = ? AND done_at IS NULL", (now, event_id))

    def events_done(self, event_ids: Sequence[int], now: float | None = None) -> None:
        """Mark several events done in one transaction (the MQTT bridge, on a run of PUBACKs)."""
        if not event_ids:
            return
        now = self._now(now)
        with self._tx(fsync=False) as conn:  # lost to a power cut: published again (QoS 1 allows it)
            conn.executemany("UPDATE event SET done_at = ? WHERE id = ? AND done_at IS NULL",
                             [(now, event_id) for event_id in event_ids])

    def _retention_steps(self, cutoff: float, batch: int) -> list[RetentionStep]:
        """The prune steps of a table group beyond the core tables: a mixin with rows to prune
        overrides this, extending ``super()``'s list; each step deletes rows older than ``cutoff``
        (``Retention.prune_steps`` runs them with the others)."""
        return []

    # --- audit and rule state ---------------------------------------------------------------

    def audit(self, kind: str, detail: dict[str, Any], now: float | None = None) -> None:
        now = self._now(now)
        with self._tx() as conn:
            self._audit_row(conn, (kind, detail), now)

    @staticmethod
    def _audit_row(conn: sqlite3.Connection, entry: tuple[str, dict[str, Any]] | None, now: float) -> None:
        """An audit row inside the caller's transaction (``entry``: kind and detail; None: none)."""
        if entry is not None:
            conn.execute("INSERT INTO audit (at, kind, detail) VALUES (?, ?, ?)",
                         (now, entry[0], dump_json(entry[1], compact=False)))

    def audit_log(self, limit: int = 100, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM audit" + (" WHERE kind = ?" if kind else "") + " ORDER BY id DESC LIMIT ?"
        args: tuple[Any, ...] = (kind, limit) if kind else (limit,)
        return [
            {"id": row["id"], "at": row["at"], "kind": row["kind"], "detail": json.loads(row["detail"])}
            for row in self._conn.execute(sql, args).fetchall()
        ]

    def state_get(self, namespace: str, key: str, default: Any = None) -> Any:
        row = self._conn.execute(
            "SELECT value FROM state WHERE namespace = ? AND key = ?", (namespace, key)
        ).fetchone()
        return default if row is None else json.loads(row["value"])

    def state_set(self, namespace: str, key: str, value: Any) -> None:
        """Set (or with ``None``, delete) one JSON value."""
        with self._tx() as conn:
            if value is None:
                conn.execute("DELETE FROM state WHERE namespace = ? AND key = ?", (namespace, key))
            else:
                conn.execute(
                    "INSERT INTO state (namespace, key, value) VALUES (?, ?, ?) "
                    "ON CONFLICT(namespace, key) DO UPDATE SET value = excluded.value",
                    (namespace, key, dump_json(value, compact=False)),
                )

    def state_all(self, namespace: str) -> dict[str, Any]:
        """Every value of ``namespace`` by key, in key order; a value that is not JSON is None."""
        values: dict[str, Any] = {}
        for row in self._conn.execute("SELECT key, value FROM state WHERE namespace = ? ORDER BY key", (namespace,)):
            try:
                values[row["key"]] = json.loads(row["value"])
            except ValueError:
                values[row["key"]] = None
        return values

    # --- liveness ---------------------------------------------------------------------------

    def data_version(self) -> int:
        """A number that changes whenever another connection (``smsgw send``) committed to the file
        (SQLite's ``PRAGMA data_version``); this store's own commits leave it as it is."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    # --- reads for the HTTP API and its metrics ---------------------------------------------

    def ping(self) -> bool:
        """Whether the database answers a query (``GET /healthz``)."""
        return bool(self._conn.execute("SELECT 1").fetchone()[0] == 1)
