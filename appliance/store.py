"""The SQLite store: outbox, parts, inbound parts and inbox, events to publish, audit log, rule state.

One file in WAL mode with ``synchronous=FULL``: a method that writes has committed (and fsync'ed)
before it returns. A ``Store`` is used from one thread (the daemon's event loop); other processes
(``smsgw send``) may open the same file at the same time.

Outbound life of a message (one per recipient)::

    queued --claim--> sending --all parts have a TP-MR--> sent --reports--> delivered | failed
       ^                 |  \\--permanent error / attempts exhausted--> failed
       |                 \\--transient error (next_attempt_at = backoff)--> queued
       \\--(valid_until passed while queued)--> expired

A claim writes ``lease_until``; a message still ``sending`` when its lease has run out (the process
died mid-send) may be claimed again, and ``resume_interrupted`` requeues every ``sending`` message at
start. Parts are created once (at the first claim) and a part whose TP-MR was committed is never sent
again: after a crash only the part cut off between ``AT+CMGS`` and its commit can go out twice.

Every state change writes an event row (topic ``message/<id>``) in the same transaction, and every
reassembled incoming message a ``received`` event; the MQTT bridge marks them done with
``event_done`` once the broker acknowledged them. The same transaction writes one webhook delivery
per configured webhook that takes the event (``webhook_delivery``; docs/webhooks.md).

``prune`` deletes what is finished and older than the retention (docs/store.md, "Retention") in
short batches; the daemon runs it at start and hourly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.migrations import SCHEMA_VERSION, SOURCE_BUCKET, migrate
from appliance.payload import dump_json
from drivers.gsm7_national import KNOWN_LANGUAGES, LANGUAGE_IDS
from drivers.pdu import count_parts
from drivers.private_files import create_private, restrict

if TYPE_CHECKING:
    from drivers.pdu import SmsDeliver, SmsStatusReport, SubmitPart

LOG = logging.getLogger(__name__)

#: Seconds SQLite waits for another process's write lock before raising "database is locked".
BUSY_TIMEOUT = 10.0
#: Seconds after a part was sent during which its TP-MR may be matched by a status report.
#: TP-MR wraps at 256, so an old part with the same reference must not match.
REPORT_WINDOW = 3 * 24 * 3600.0
#: Default seconds an incomplete multipart message waits for its missing parts (see flush_partial).
REASSEMBLY_TIMEOUT = 24 * 3600.0
#: Seconds the remaining parts of a multipart message wait for the modem that sent its first parts
#: (unhealthy, capped, or the daemon restarted); after that another modem sends the whole message
#: again from part 1 with a new concatenation reference. ``[health] multipart_wait`` overrides it.
MULTIPART_WAIT = 600.0
#: Default days finished messages, handled received messages and published events are kept.
RETENTION_DAYS = 30.0
#: Default days audit rows are kept.
AUDIT_RETENTION_DAYS = 365.0
#: Rows deleted per transaction by ``prune`` (each batch holds the write lock only briefly).
PRUNE_BATCH = 500
#: Pages returned to the file system per ``PRAGMA incremental_vacuum`` step.
VACUUM_PAGES = 2000

#: ``critical`` (safety alerts) goes first and is the only priority that reaches an opted-out number.
#: SQL: the message (table ``message``) has parts sent through a modem other than the parameter.
_PINNED_ELSEWHERE = ("EXISTS (SELECT 1 FROM part p WHERE p.message_id = message.id "
                     "AND p.message_reference IS NOT NULL AND p.modem != ?)")
#: SQL: the message may be claimed by the modem of the first parameter: not pinned elsewhere, or its
#: last sent part is older than the second parameter (now - multipart_wait).
_NOT_PINNED_ELSEWHERE = (f"(NOT {_PINNED_ELSEWHERE} OR (SELECT MAX(p.sent_at) FROM part p "
                         "WHERE p.message_id = message.id AND p.message_reference IS NOT NULL) <= ?)")

PRIORITIES: dict[str, int] = {"critical": -1, "high": 0, "normal": 1, "low": 2}
CRITICAL = "critical"
PRIORITY_NAMES: dict[int, str] = {rank: name for name, rank in PRIORITIES.items()}

QUEUED, SENDING, SENT, DELIVERED, FAILED, EXPIRED = "queued", "sending", "sent", "delivered", "failed", "expired"
STATES = (QUEUED, SENDING, SENT, DELIVERED, FAILED, EXPIRED)
FINAL_STATES = (DELIVERED, FAILED, EXPIRED)

PART_PENDING, PART_SENT, PART_DELIVERED, PART_FAILED = "pending", "sent", "delivered", "failed"

#: States of a received message: read and decoded, or kept raw because it could not be decoded.
RECEIVED, UNDECODABLE = "received", "undecodable"


class StoreError(Exception):
    """Base class of store errors."""


class StoreFull(StoreError, OSError):
    """A write failed because the file system holding the store is full (SQLITE_FULL); nothing of
    that transaction was committed. The message names the file system's free space."""


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


#: Below this many free bytes a failed open or write is put down to a full disk.
NEARLY_FULL = 256 * 1024


def _nearly_full(path: Path) -> bool:
    import shutil

    try:
        return shutil.disk_usage(path if path.is_dir() else path.parent).free < NEARLY_FULL
    except OSError:
        return False


def free_space(path: Path) -> str:
    """The free space of the file system holding ``path`` (a directory or a file), for messages."""
    import shutil

    try:
        free: float = shutil.disk_usage(path if path.is_dir() else path.parent).free
    except OSError as exc:
        return f"free space unknown: {exc.strerror or exc}"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} {unit} free" if unit == "bytes" else f"{free:.1f} {unit} free"
        free /= 1024
    return f"{free} bytes free"  # pragma: no cover


def store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the store failing (disk full, locked, I/O), not the request that was being
    written: such a request is kept and written again later; any other error refuses that request."""
    if isinstance(exc, sqlite3.OperationalError | OSError):
        return True
    return type(exc) is sqlite3.DatabaseError  # e.g. "database disk image is malformed"


class InvalidRequest(StoreError, ValueError):
    """An outbound request was refused; nothing of its batch was written."""


class OptedOut(InvalidRequest):
    """A non-critical message to a number on the opt-out list (it sent STOP)."""

    def __init__(self, number: str) -> None:
        super().__init__(f"{number} has opted out (sent STOP): only priority 'critical' messages go to it "
                         "until it sends START")
        self.number = number


# --- value objects --------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundRequest:
    to: str  # normalised number (appliance.numbers)
    text: str
    source: str
    client_key: str | None = None
    priority: str = "normal"
    valid_until: float | None = None
    report: bool = False
    #: ISO 639-1 code of a national language (drivers.gsm7_national.LANGUAGE_IDS) whose shift tables
    #: this message may use; None: the configured ``[sms] national_language``.
    language: str | None = None


@dataclass(frozen=True)
class EnqueueResult:
    id: int
    state: str
    duplicate: bool


@dataclass(frozen=True)
class Event:
    id: int
    topic: str
    payload: dict[str, Any]
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True)
class WebhookDelivery:
    """One event to POST to one webhook (a ``webhook_delivery`` row)."""
    id: int
    webhook: str
    delivery_id: str  # X-Smsgw-Delivery, the same on every attempt
    event: str        # X-Smsgw-Event
    body: str         # the JSON document POSTed, exactly as signed
    created_at: float
    expires_at: float
    attempts: int
    next_attempt_at: float


#: States of a webhook delivery.
DELIVERY_PENDING, DELIVERY_DONE, DELIVERY_EXPIRED = "pending", "delivered", "expired"


def webhook_event(topic: str) -> str | None:
    """The webhook event an event topic is (``received``, ``message``), or None."""
    if topic == "received":
        return "received"
    if topic.startswith("message/"):
        return "message"
    return None


@dataclass(frozen=True)
class ReceivedMessage:
    id: int
    sender: str | None
    text: str
    sent_at: str | None
    received_at: float
    modem: str
    parts: int
    partial: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Part:
    message_id: int
    sequence: int
    total: int
    pdu: str
    tpdu_length: int
    modem: str | None = None
    message_reference: int | None = None
    state: str = PART_PENDING
    sent_at: float | None = None
    delivered_at: float | None = None
    status: int | None = None


@dataclass(frozen=True)
class ClaimedMessage:
    """A message claimed for sending by one modem; ``parts`` is empty until ``set_parts``."""

    id: int
    recipient: str
    text: str
    priority: int
    report: bool
    valid_until: float | None
    attempts: int
    modem: str
    lease_until: float
    parts: list[Part] = field(default_factory=list)
    language: str | None = None  # the request's national language; None: the configured one

    @property
    def unsent_parts(self) -> list[Part]:
        return [part for part in self.parts if part.message_reference is None]


@dataclass(frozen=True)
class ReportMatch:
    """What a status report changed: the message, its part, and the message's state afterwards."""

    message_id: int
    sequence: int
    part_state: str
    message_state: str


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def same_number(a: str | None, b: str | None) -> bool:
    """Whether two renderings of a number are the same subscriber (``+49171…`` vs ``0171…``).

    Exact digits match, or the last 9 digits when both have at least 9 (national vs international).
    """
    if not a or not b:
        return False
    if a == b:
        return True
    da, db = _digits(a), _digits(b)
    if not da or not db:
        return False
    if da == db:
        return True
    return len(da) >= 9 and len(db) >= 9 and da[-9:] == db[-9:]


def share_with_group(path: Path) -> None:
    """In a directory its group may write (``/var/lib/smsgw``, 0770: the daemon and the operators),
    give the database files this process owns that group and group read/write, whoever made them.
    SQLite creates -wal and -shm with the database file's mode, so they follow."""
    try:
        directory = path.parent.stat()
    except OSError:
        return
    if not directory.st_mode & stat.S_IWGRP:
        return
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        file = path.parent / name
        try:
            info = file.stat()
            if info.st_uid != os.geteuid():
                continue
            if info.st_gid != directory.st_gid:
                os.chown(file, -1, directory.st_gid)
            if info.st_mode & 0o060 != 0o060:
                os.chmod(file, stat.S_IMODE(info.st_mode) | 0o060)
        except OSError:
            continue


def local_midnight(now: float) -> float:
    """The start of the local calendar day containing ``now`` (daily caps and usage reset then)."""
    lt = time.localtime(now)
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))


# --- the store ------------------------------------------------------------------------------


class Store:
    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time, read_only: bool = False) -> None:
        """Open (creating and migrating) the store at ``path``; with ``read_only``, open an existing
        file with SQLite's ``mode=ro``: no migration, no PRAGMA that writes, nothing created, so it
        works on a full disk (``smsgw status``, ``inbox``, ``outbox``)."""
        self.path = Path(path)
        self.clock = clock
        self.read_only = read_only
        self._listeners: list[Callable[[], None]] = []
        self._enqueue_listeners: list[Callable[[], None]] = []
        self._tx_events = 0
        self._tx_enqueued = 0
        self._in_tx = False
        #: What a received text looks like wherever it is shown or published (the ``received`` event,
        #: ``inbox()``): the daemon and ``smsgw inbox`` set it to withhold PINs (rules.withhold_pin).
        #: The inbox row keeps the text as received, for the command rules.
        self.shown_text: Callable[[str], str] = lambda text: text
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
        except (sqlite3.OperationalError, OSError) as exc:
            # on a full disk SQLite fails to create or grow the -shm/-wal ("disk I/O error")
            if str(path) != ":memory:" and _nearly_full(self.path):
                raise StoreFull(f"the disk holding {self.path} is full ({free_space(self.path)}): {exc}") from exc
            raise

    def _open_writable(self, path: str) -> None:
        if path != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_private(self.path)  # 0600 (0640 in a setgid directory) whatever the umask
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        # only takes effect on a new file (before its first table and before WAL); see prune()
        self._conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        if path != ":memory:":
            for suffix in ("-wal", "-shm"):  # SQLite gives them the database's mode; older ones may be wider
                restrict(f"{self.path}{suffix}")
        self.migrated_from = migrate(self._conn)
        if path != ":memory:":
            share_with_group(self.path)

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

    def __enter__(self) -> Store:
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
        self._notify(self._listeners)
        self._notify(self._enqueue_listeners)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self._in_tx:
            raise StoreError("nested store transaction")
        self._in_tx = True
        self._tx_events = 0
        self._tx_enqueued = 0
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        except sqlite3.OperationalError as exc:
            if _is_full(exc):
                raise StoreFull(f"the disk holding {self.path} is full ({free_space(self.path)}): {exc}; "
                                "nothing of this change was committed") from exc
            raise
        finally:
            self._in_tx = False
        events, enqueued = self._tx_events, self._tx_enqueued
        if events:
            self._notify(self._listeners)
        if enqueued:
            self._notify(self._enqueue_listeners)

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

    def _add_event(self, conn: sqlite3.Connection, topic: str, payload: dict[str, Any], now: float,
                   qos: int = 1, retain: bool = False) -> int:
        cur = conn.execute(
            "INSERT INTO event (topic, payload, qos, retain, created_at) VALUES (?, ?, ?, ?, ?)",
            (topic, dump_json(payload, compact=False), qos, int(retain), now),
        )
        self._tx_events += 1
        event = webhook_event(topic)
        if event is not None:
            self._add_deliveries(conn, event, payload, now)
        return int(cur.lastrowid or 0)

    def _message_event(self, conn: sqlite3.Connection, message_id: int, now: float) -> None:
        row = conn.execute(
            "SELECT m.id, m.recipient, m.text, m.state, m.modem, m.last_error, m.language, "
            "(SELECT COUNT(*) FROM part p WHERE p.message_id = m.id) AS parts "
            "FROM message m WHERE m.id = ?",
            (message_id,),
        ).fetchone()
        payload: dict[str, Any] = {
            "id": row["id"],
            "to": row["recipient"],
            "state": row["state"],
            "parts": row["parts"] or count_parts(row["text"], language=row["language"]),
            "modem": row["modem"],
        }
        if row["last_error"] and row["state"] in (QUEUED, FAILED, EXPIRED):
            payload["error"] = row["last_error"]
        payload["at"] = _iso(now)
        self._add_event(conn, f"message/{message_id}", payload, now)

    def _set_state(self, conn: sqlite3.Connection, message_id: int, state: str, now: float,
                   **columns: Any) -> None:
        columns["state"] = state
        columns["updated_at"] = now
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(f"UPDATE message SET {assignments} WHERE id = ?", (*columns.values(), message_id))
        self._message_event(conn, message_id, now)

    # --- outbound ---------------------------------------------------------------------------

    @staticmethod
    def _validate(index: int, request: OutboundRequest) -> None:
        where = f"request {index}" + (f" (id {request.client_key!r})" if request.client_key else "")
        if not isinstance(request.to, str) or not request.to.strip():
            raise InvalidRequest(f"{where}: recipient is empty")
        if not isinstance(request.text, str) or request.text == "":
            raise InvalidRequest(f"{where}: text is empty")
        if request.priority not in PRIORITIES:
            raise InvalidRequest(
                f"{where}: priority {request.priority!r} is not one of {', '.join(PRIORITIES)}"
            )
        if request.valid_until is not None and not isinstance(request.valid_until, int | float):
            raise InvalidRequest(f"{where}: valid_until must be a number of seconds since the epoch")
        if request.language is not None and (not isinstance(request.language, str)
                                             or request.language not in LANGUAGE_IDS):
            raise InvalidRequest(f"{where}: language {request.language!r} is not one of "
                                 f"{KNOWN_LANGUAGES}")

    def enqueue(self, requests: Sequence[OutboundRequest], now: float | None = None) -> list[EnqueueResult]:
        """Queue every request in one transaction (one fsync for the batch).

        A request whose (client_key, recipient) is already known returns the existing message with
        ``duplicate=True``. Every request is validated before anything is written: one bad request
        refuses the whole batch with ``InvalidRequest``.
        """
        for index, request in enumerate(requests):
            self._validate(index, request)
        self.check_optout(requests)
        now = self._now(now)
        results: list[EnqueueResult] = []
        if not requests:
            return results
        at = _iso(now)
        with self._tx() as conn:
            for request in requests:
                # a repeated (client_key, recipient) hits the unique index message_idempotency and
                # inserts nothing; NULL keys never conflict
                cur = conn.execute(
                    "INSERT INTO message (client_key, source, recipient, text, priority, created_at, "
                    "valid_until, report, state, attempts, next_attempt_at, updated_at, language) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?) "
                    "ON CONFLICT (client_key, recipient) DO NOTHING",
                    (
                        request.client_key, request.source or "", request.to, request.text,
                        PRIORITIES[request.priority], now, request.valid_until, int(request.report),
                        QUEUED, now, now, request.language,
                    ),
                )
                if cur.rowcount == 0 and request.client_key is not None:
                    existing = self._queued_with_key(conn, request.client_key, request.to)
                    assert existing is not None  # the row the insert conflicted with
                    results.append(existing)
                    continue
                message_id = int(cur.lastrowid or 0)
                # the queued event from what was just written (as _message_event would read it back)
                self._add_event(conn, f"message/{message_id}", {
                    "id": message_id, "to": request.to, "state": QUEUED,
                    "parts": count_parts(request.text, language=request.language), "modem": None, "at": at,
                }, now)
                self._tx_enqueued += 1
                results.append(EnqueueResult(message_id, QUEUED, False))
        return results

    @staticmethod
    def _queued_with_key(conn: sqlite3.Connection, client_key: str, recipient: str) -> EnqueueResult | None:
        row = conn.execute("SELECT id, state FROM message WHERE client_key = ? AND recipient = ?",
                           (client_key, recipient)).fetchone()
        return None if row is None else EnqueueResult(row["id"], row["state"], True)

    def queued_with_key(self, client_key: str, recipient: str) -> EnqueueResult | None:
        """The message already queued for ``recipient`` with idempotency key ``client_key`` (as
        ``enqueue`` would answer it: ``duplicate=True``), or None."""
        return self._queued_with_key(self._conn, client_key, recipient)

    def expire_due(self, now: float | None = None) -> list[int]:
        """Move queued messages whose validity has passed to ``expired``; their ids."""
        now = self._now(now)
        rows = self._conn.execute(
            "SELECT id FROM message WHERE state = ? AND valid_until <= ?",  # index message_expiry
            (QUEUED, now),
        ).fetchall()
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        with self._tx() as conn:
            for message_id in ids:
                self._set_state(conn, message_id, EXPIRED, now, last_error="validity period passed",
                                lease_until=None)
        return ids

    def resume_interrupted(self, now: float | None = None) -> list[int]:
        """At start: requeue every message left ``sending`` by a previous process; their ids.

        Call this only from the one dispatcher that owns the file (the daemon), before it claims.
        Parts that already have a TP-MR stay sent.
        """
        now = self._now(now)
        ids = [row["id"] for row in self._conn.execute(
            "SELECT id FROM message WHERE state = ?", (SENDING,)).fetchall()]
        if ids:
            with self._tx() as conn:
                for message_id in ids:
                    self._set_state(conn, message_id, QUEUED, now, lease_until=None, next_attempt_at=now,
                                    last_error="sending was interrupted; resumed")
            LOG.info("resumed %d interrupted message(s): %s", len(ids), ids)
        return ids

    def claim(
        self,
        modem_id: str,
        *,
        lease: float,
        now: float | None = None,
        exclude_recipients: Sequence[str] = (),
        multipart_wait: float = MULTIPART_WAIT,
        encode: Callable[[ClaimedMessage], Sequence[SubmitPart]] | None = None,
    ) -> ClaimedMessage | None:
        """Take the next due message (high before normal before low, FIFO within a priority).

        Due means ``queued`` with ``next_attempt_at <= now``, or ``sending`` with its lease run out.
        A message with parts already sent through another modem is due for ``modem_id`` only
        ``multipart_wait`` seconds after its last sent part: all parts of a multipart SMS leave
        through one modem (a handset joins parts by sender), and the claimer must then send the
        whole message again (``restart_parts``).
        The claim sets ``sending``, the modem, ``lease_until = now + lease`` and counts an attempt.
        With ``encode``, a message without parts gets the parts ``encode`` returns for it in the same
        transaction (as ``set_parts`` would), so a send commits twice: here, and its TP-MR
        (``part_sent``); when ``encode`` returns nothing the message is claimed without parts.
        """
        now = self._now(now)
        exclude = list(exclude_recipients)
        placeholders = ", ".join("?" for _ in exclude)
        not_in = f"AND recipient NOT IN ({placeholders})" if exclude else ""
        with self._tx() as conn:
            # one query per state, each walking the index message_queue (state, priority, id) in claim
            # order and stopping at the first due row: an OR of both would scan and sort every due row.
            # Parts already sent through another modem: the rest waits for that modem, up to
            # multipart_wait after its last part (then the whole message goes again from here).
            candidates = [conn.execute(
                f"SELECT * FROM message WHERE state = ? AND {due} {not_in} AND {_NOT_PINNED_ELSEWHERE} "
                "ORDER BY priority, id LIMIT 1",
                (state, now, *exclude, modem_id, now - multipart_wait),
            ).fetchone() for state, due in (
                (QUEUED, "(next_attempt_at IS NULL OR next_attempt_at <= ?)"), (SENDING, "lease_until < ?"))]
            found = [c for c in candidates if c is not None]
            if not found:
                return None
            row = min(found, key=lambda c: (c["priority"], c["id"]))
            lease_until = now + lease
            self._set_state(conn, row["id"], SENDING, now, modem=modem_id, lease_until=lease_until,
                            attempts=row["attempts"] + 1)
            claimed = ClaimedMessage(
                id=row["id"], recipient=row["recipient"], text=row["text"], priority=row["priority"],
                report=bool(row["report"]), valid_until=row["valid_until"], attempts=row["attempts"] + 1,
                modem=modem_id, lease_until=lease_until, parts=self._parts(conn, row["id"]),
                language=row["language"],
            )
            if not claimed.parts and encode is not None:
                submit = encode(claimed)
                if submit:
                    self._insert_parts(conn, claimed.id, submit)
                    claimed = replace(claimed, parts=self._parts(conn, claimed.id))
        return claimed

    def next_due_at(self, exclude_recipients: Sequence[str] = (), modem_id: str | None = None,
                    multipart_wait: float = MULTIPART_WAIT) -> float | None:
        """The earliest time a queued message becomes due (for ``modem_id``: a message with parts
        sent through another modem is due ``multipart_wait`` after its last part), or a lease runs
        out (None: nothing)."""
        exclude = list(exclude_recipients)
        not_in = f"AND recipient NOT IN ({', '.join('?' for _ in exclude)})" if exclude else ""
        # the first row of index message_due (state, next_attempt_at); NULL sorts first and means "now"
        queued = self._conn.execute(
            f"SELECT COALESCE(next_attempt_at, 0) FROM message WHERE state = ? {not_in} "
            f"AND NOT {_PINNED_ELSEWHERE} ORDER BY next_attempt_at LIMIT 1",
            (QUEUED, *exclude, modem_id or ""),
        ).fetchone()
        # messages whose first parts left through another modem: due for this one after multipart_wait
        pinned = self._conn.execute(
            "SELECT MIN(MAX(COALESCE(next_attempt_at, 0), (SELECT MAX(p.sent_at) FROM part p "
            f"WHERE p.message_id = message.id AND p.message_reference IS NOT NULL) + ?)) "
            # only a message with unsent parts can be held: walk those (partial index part_unsent),
            # never the whole queue (CROSS JOIN keeps them the outer loop)
            "FROM (SELECT DISTINCT message_id FROM part INDEXED BY part_unsent WHERE message_reference IS NULL) "
            "AS unsent "
            "CROSS JOIN message ON message.id = unsent.message_id "
            f"WHERE state = ? {not_in} AND {_PINNED_ELSEWHERE}",
            (multipart_wait, QUEUED, *exclude, modem_id or ""),
        ).fetchone()
        lease = self._conn.execute(
            "SELECT MIN(lease_until) FROM message WHERE state = ?", (SENDING,)).fetchone()
        times = [float(t) for t in (queued[0] if queued else None, pinned[0], lease[0]) if t is not None]
        return min(times) if times else None

    @staticmethod
    def _parts(conn: sqlite3.Connection, message_id: int) -> list[Part]:
        rows = conn.execute(
            "SELECT * FROM part WHERE message_id = ? ORDER BY sequence", (message_id,)
        ).fetchall()
        return [Part(**dict(row)) for row in rows]

    def parts(self, message_id: int) -> list[Part]:
        return self._parts(self._conn, message_id)

    def set_parts(self, message_id: int, parts: Sequence[SubmitPart]) -> list[Part]:
        """Store the encoded parts of a message (once, at its first claim); returns the stored parts.

        When parts already exist they are kept as they are (a retry reuses them).
        """
        with self._tx() as conn:
            existing = self._parts(conn, message_id)
            if existing:
                return existing
            self._insert_parts(conn, message_id, parts)
            return self._parts(conn, message_id)

    @staticmethod
    def _insert_parts(conn: sqlite3.Connection, message_id: int, parts: Sequence[SubmitPart]) -> None:
        conn.executemany(
            "INSERT INTO part (message_id, sequence, total, pdu, tpdu_length, state) VALUES (?, ?, ?, ?, ?, ?)",
            [(message_id, part.sequence, part.total, part.pdu, part.tpdu_length, PART_PENDING) for part in parts])

    def restart_parts(self, message_id: int, parts: Sequence[SubmitPart], modem_id: str, reason: str,
                      now: float | None = None) -> list[Part]:
        """Replace the parts of a message whose first parts left through a modem that stayed unusable:
        the whole message goes again, from part 1, with the new encoding (a new concatenation reference).
        An audit row ``multipart_restart`` records it."""
        now = self._now(now)
        with self._tx() as conn:
            old = self._parts(conn, message_id)
            conn.execute("DELETE FROM part WHERE message_id = ?", (message_id,))
            self._insert_parts(conn, message_id, parts)
            sent = [(p.sequence, p.modem, p.message_reference) for p in old if p.message_reference is not None]
            conn.execute("INSERT INTO audit (at, kind, detail) VALUES (?, ?, ?)", (now, "multipart_restart", json.dumps(
                {"message": message_id, "modem": modem_id, "reason": reason, "sent_before": sent})))
            return self._parts(conn, message_id)

    def renew_lease(self, message_id: int, lease: float, now: float | None = None) -> float:
        now = self._now(now)
        with self._tx() as conn:
            conn.execute("UPDATE message SET lease_until = ? WHERE id = ? AND state = ?",
                         (now + lease, message_id, SENDING))
        return now + lease

    def part_sent(
        self, message_id: int, sequence: int, modem_id: str, message_reference: int, now: float | None = None
    ) -> str:
        """Commit a part's TP-MR right after its +CMGS; the message's state afterwards.

        When it was the last unsent part the message becomes ``sent``.
        """
        now = self._now(now)
        with self._tx() as conn:
            conn.execute(
                "UPDATE part SET modem = ?, message_reference = ?, state = ?, sent_at = ? "
                "WHERE message_id = ? AND sequence = ?",
                (modem_id, message_reference, PART_SENT, now, message_id, sequence),
            )
            unsent = conn.execute(
                "SELECT COUNT(*) FROM part WHERE message_id = ? AND message_reference IS NULL", (message_id,)
            ).fetchone()[0]
            if unsent:
                conn.execute("UPDATE message SET modem = ?, updated_at = ? WHERE id = ?",
                             (modem_id, now, message_id))
                return SENDING
            self._set_state(conn, message_id, SENT, now, modem=modem_id, lease_until=None, last_error=None)
            return SENT

    def requeue(self, message_id: int, error: str, next_attempt_at: float, now: float | None = None) -> None:
        """A transient failure: back to ``queued``, due again at ``next_attempt_at``."""
        now = self._now(now)
        with self._tx() as conn:
            self._set_state(conn, message_id, QUEUED, now, last_error=error, next_attempt_at=next_attempt_at,
                            lease_until=None)

    def release(self, message_id: int, now: float | None = None, *, error: str | None = None) -> None:
        """Give a claimed message back without counting the attempt (dispatcher stopping, or the
        modem's SIM not ready: not the message's fault); ``error`` is kept as its last error."""
        now = self._now(now)
        extra = {} if error is None else {"last_error": error}
        with self._tx() as conn:
            conn.execute("UPDATE message SET attempts = MAX(attempts - 1, 0) WHERE id = ?", (message_id,))
            self._set_state(conn, message_id, QUEUED, now, next_attempt_at=now, lease_until=None, **extra)

    def fail(self, message_id: int, error: str, now: float | None = None) -> None:
        """A permanent failure: ``failed`` with the reason."""
        now = self._now(now)
        with self._tx() as conn:
            self._set_state(conn, message_id, FAILED, now, last_error=error, lease_until=None)

    def message(self, message_id: int) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM message WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            return None
        result = self._message_dict(row)
        result["parts_detail"] = [part.__dict__ for part in self.parts(message_id)]
        return result

    @staticmethod
    def _message_dict(row: sqlite3.Row) -> dict[str, Any]:
        data = dict(row)
        data["to"] = data.pop("recipient")
        data["priority"] = PRIORITY_NAMES.get(data["priority"], str(data["priority"]))
        data["report"] = bool(data["report"])
        return data

    # --- sending statistics for rate limits -------------------------------------------------

    def modem_sent_count(self, modem_id: str, since: float) -> int:
        """Parts sent through ``modem_id`` since ``since`` (daily caps count parts: each is one SMS)."""
        return int(self._conn.execute(
            "SELECT COUNT(*) FROM part WHERE modem = ? AND sent_at >= ?", (modem_id, since)
        ).fetchone()[0])

    def modem_sent_times(self, modem_id: str, since: float) -> list[float]:
        rows = self._conn.execute(
            "SELECT sent_at FROM part WHERE modem = ? AND sent_at >= ? ORDER BY sent_at", (modem_id, since)
        ).fetchall()
        return [float(row[0]) for row in rows]

    def recipient_last_sent(self, since: float) -> dict[str, float]:
        """Recipient -> time of the last part sent to them, for parts sent since ``since``."""
        rows = self._conn.execute(
            "SELECT m.recipient, MAX(p.sent_at) FROM part p JOIN message m ON m.id = p.message_id "
            "WHERE p.sent_at >= ? GROUP BY m.recipient", (since,)
        ).fetchall()
        return {row[0]: float(row[1]) for row in rows}

    # --- delivery reports -------------------------------------------------------------------

    def delivery_report(
        self,
        modem_id: str,
        message_reference: int,
        recipient: str | None,
        status: int,
        now: float | None = None,
        window: float = REPORT_WINDOW,
    ) -> ReportMatch | None:
        """Apply a status report (TP-ST ``status``) to the part it belongs to; None when none matches.

        The part is the most recent one sent through ``modem_id`` with this TP-MR within ``window``
        seconds whose recipient is the report's. TP-ST 0-31: delivered; 32-63: the SC is still
        trying (no change); 64-127 (and reserved values above): failed. A message is delivered when
        all its parts are, failed as soon as one part failed.
        """
        now = self._now(now)
        rows = self._conn.execute(
            "SELECT p.message_id, p.sequence, p.state AS part_state, m.recipient, m.state "
            "FROM part p JOIN message m ON m.id = p.message_id "
            "WHERE p.modem = ? AND p.message_reference = ? AND p.sent_at >= ? "
            "ORDER BY p.sent_at DESC, p.message_id DESC",
            (modem_id, message_reference, now - window),
        ).fetchall()
        match = next((row for row in rows if recipient is None or same_number(row["recipient"], recipient)),
                     None)
        if match is None:
            LOG.info("status report from %s for TP-MR %d to %s matches no recent part",
                     modem_id, message_reference, recipient)
            return None
        message_id, sequence = match["message_id"], match["sequence"]
        if 32 <= status <= 63:
            return ReportMatch(message_id, sequence, match["part_state"], match["state"])
        part_state = PART_DELIVERED if status <= 31 else PART_FAILED
        with self._tx() as conn:
            conn.execute(
                "UPDATE part SET state = ?, status = ?, delivered_at = ? WHERE message_id = ? AND sequence = ?",
                (part_state, status, now if part_state == PART_DELIVERED else None, message_id, sequence),
            )
            state = match["state"]
            if state in (SENT, SENDING, DELIVERED):
                if part_state == PART_FAILED and state != FAILED:
                    self._set_state(conn, message_id, FAILED, now,
                                    last_error=f"delivery failed: part {sequence} status {status}")
                    state = FAILED
                elif part_state == PART_DELIVERED and state == SENT:
                    undelivered = conn.execute(
                        "SELECT COUNT(*) FROM part WHERE message_id = ? AND state != ?",
                        (message_id, PART_DELIVERED),
                    ).fetchone()[0]
                    if not undelivered:
                        self._set_state(conn, message_id, DELIVERED, now)
                        state = DELIVERED
        return ReportMatch(message_id, sequence, part_state, state)

    def apply_status_report(self, modem_id: str, report: SmsStatusReport, received_at: float | None = None,
                            window: float = REPORT_WINDOW) -> ReportMatch | None:
        """``delivery_report`` for a decoded SMS-STATUS-REPORT (its TP-MR, recipient and TP-ST)."""
        return self.delivery_report(modem_id, report.reference, report.number, report.status,
                                    received_at, window)

    # --- inbound ----------------------------------------------------------------------------

    def add_incoming_part(
        self,
        modem_id: str,
        pdu: str,
        deliver: SmsDeliver | None,
        error: str | None,
        received_at: float,
        slot: int | None = None,
    ) -> int:
        """Commit one received PDU; returns its row id (the existing one for a duplicate).

        Only after this returns may the caller delete the SIM slot. ``slot`` is the SIM storage index
        the PDU was read from (None for ``+CMT``, delivered without a slot). A duplicate is the same
        part read again from the same slot of the same modem (the sweep after a crash between this
        commit and ``AT+CMGD``): same modem, slot and PDU, or same modem, slot, sender, SMSC
        timestamp, concatenation reference/total/sequence and text. Identical SMS received by two
        modems, or stored in two slots of one SIM, are distinct parts. When the part completes its
        message, the message is written to the inbox and a ``received`` event is added in the same
        transaction. A PDU that did not decode is kept and published with its error, never dropped.
        """
        pdu_key = pdu.strip().upper()
        sender = text = encoding = sent_at = None
        ref = total = seq = None
        legacy_key = None
        if deliver is not None:
            sender = deliver.number
            text = deliver.text
            encoding = deliver.encoding
            sent_at = deliver.timestamp.isoformat() if deliver.timestamp is not None else None
            if deliver.concat is not None and deliver.concat.total > 1:
                ref, total, seq = deliver.concat.reference, deliver.concat.total, deliver.concat.sequence
            content: list[Any] = [sender, sent_at, ref, total, seq, text]
            # the key of schema 1-2 (no modem, no slot): matches parts stored before the upgrade
            legacy_key = hashlib.sha1(json.dumps(content).encode()).hexdigest()
        else:
            content = [pdu_key]
        dedup_key = hashlib.sha1(json.dumps(["v3", modem_id, slot, *content]).encode()).hexdigest()
        with self._tx() as conn:
            existing = conn.execute(
                "SELECT id FROM inbox_part WHERE dedup_key = ? UNION ALL "
                "SELECT id FROM inbox_part WHERE modem = ? AND pdu = ? AND slot IS NULL "
                "AND dedup_key IS NULL LIMIT 1",
                (dedup_key, modem_id, pdu_key),
            ).fetchone()
            if existing is None and legacy_key is not None:
                existing = conn.execute(
                    "SELECT id FROM inbox_part WHERE dedup_key = ? AND modem = ? AND slot IS NULL",
                    (legacy_key, modem_id),
                ).fetchone()
            if existing is not None:
                LOG.info("duplicate incoming part on %s slot %s ignored (part %d)", modem_id, slot,
                         existing["id"])
                return int(existing["id"])
            cur = conn.execute(
                "INSERT INTO inbox_part (modem, pdu, sender, text, encoding, sent_at, concat_reference, "
                "concat_total, concat_sequence, received_at, error, dedup_key, slot) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (modem_id, pdu_key if deliver is not None else pdu.strip(), sender, text, encoding, sent_at,
                 ref, total, seq, received_at, error if deliver is None else None, dedup_key, slot),
            )
            part_id = int(cur.lastrowid or 0)
            if deliver is None:
                self._assemble(conn, [part_id], partial=False, missing=[], now=received_at,
                               error=error or "undecodable PDU")
            elif total is None:
                self._assemble(conn, [part_id], partial=False, missing=[], now=received_at)
            else:
                group = conn.execute(
                    "SELECT id, concat_sequence FROM inbox_part WHERE inbox_id IS NULL AND sender = ? "
                    "AND concat_reference = ? AND concat_total = ? AND modem = ? ORDER BY concat_sequence, id",
                    (sender, ref, total, modem_id),
                ).fetchall()
                sequences = {row["concat_sequence"] for row in group}
                if all(n in sequences for n in range(1, total + 1)):
                    first: dict[int, int] = {}
                    for row in group:
                        first.setdefault(row["concat_sequence"], row["id"])
                    self._assemble(conn, [first[n] for n in range(1, total + 1)], partial=False,
                                   missing=[], now=received_at)
            return part_id

    def _assemble(self, conn: sqlite3.Connection, part_ids: list[int], *, partial: bool, missing: list[int],
                  now: float, error: str | None = None) -> int:
        placeholders = ", ".join("?" for _ in part_ids)
        rows = {row["id"]: row for row in conn.execute(
            f"SELECT * FROM inbox_part WHERE id IN ({placeholders})", part_ids).fetchall()}
        ordered = [rows[i] for i in part_ids]
        first = ordered[0]
        text = "".join(row["text"] or "" for row in ordered)
        sent_at = next((row["sent_at"] for row in ordered if row["concat_sequence"] in (None, 1)),
                       first["sent_at"])
        received_at = max(row["received_at"] for row in ordered)
        total = first["concat_total"] or 1
        cur = conn.execute(
            "INSERT INTO inbox (sender, text, sent_at, received_at, modem, parts, error, partial, missing) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (first["sender"], text, sent_at, received_at, first["modem"], total, error, int(partial),
             json.dumps(missing) if missing else None),
        )
        inbox_id = int(cur.lastrowid or 0)
        conn.execute(f"UPDATE inbox_part SET inbox_id = ? WHERE id IN ({placeholders})", (inbox_id, *part_ids))
        payload: dict[str, Any] = {
            "id": inbox_id,
            "from": first["sender"],
            "text": self.shown_text(text) if text is not None else None,
            "sent_at": sent_at,
            "received_at": _iso(received_at),
            "modem": first["modem"],
            "parts": total,
        }
        if partial:
            payload["partial"] = True
            payload["missing"] = missing
        if error:
            payload["state"] = UNDECODABLE
            payload["error"] = error
            payload["pdu"] = first["pdu"]  # the raw reply as the modem sent it
        self._add_event(conn, "received", payload, now)
        return inbox_id

    def flush_partial(self, now: float | None = None, timeout: float = REASSEMBLY_TIMEOUT) -> list[int]:
        """Deliver incomplete multipart messages whose first part arrived ``timeout`` seconds ago.

        The text is the parts received, in order, flagged ``"partial": true`` with the missing
        sequence numbers. A part arriving later starts a new group (and is flushed on its own).
        Returns the new inbox ids. The daemon calls this periodically.
        """
        now = self._now(now)
        groups = self._conn.execute(
            "SELECT modem, sender, concat_reference, concat_total, MIN(received_at) AS first_at "
            "FROM inbox_part WHERE inbox_id IS NULL AND concat_total IS NOT NULL "
            "GROUP BY modem, sender, concat_reference, concat_total HAVING MIN(received_at) <= ?",
            (now - timeout,),
        ).fetchall()
        if not groups:
            return []
        created: list[int] = []
        with self._tx() as conn:
            for group in groups:
                rows = conn.execute(
                    "SELECT id, concat_sequence FROM inbox_part WHERE inbox_id IS NULL AND sender IS ? "
                    "AND concat_reference = ? AND concat_total = ? AND modem = ? ORDER BY concat_sequence, id",
                    (group["sender"], group["concat_reference"], group["concat_total"], group["modem"]),
                ).fetchall()
                first: dict[int, int] = {}
                for row in rows:
                    first.setdefault(row["concat_sequence"], row["id"])
                total = group["concat_total"]
                missing = [n for n in range(1, total + 1) if n not in first]
                ids = [first[n] for n in sorted(first)]
                inbox_id = self._assemble(conn, ids, partial=True, missing=missing, now=now)
                # duplicates of a sequence inside the group belong to the same message
                extra = [row["id"] for row in rows if row["id"] not in ids]
                if extra:
                    conn.execute(
                        f"UPDATE inbox_part SET inbox_id = ? WHERE id IN ({', '.join('?' for _ in extra)})",
                        (inbox_id, *extra),
                    )
                created.append(inbox_id)
        return created

    def pending_parts(self) -> list[dict[str, Any]]:
        """Incoming parts still waiting for the rest of their message."""
        rows = self._conn.execute(
            "SELECT id, modem, sender, concat_reference, concat_total, concat_sequence, received_at "
            "FROM inbox_part WHERE inbox_id IS NULL ORDER BY id"
        ).fetchall()
        return [dict(row) for row in rows]

    def _received(self, row: sqlite3.Row) -> ReceivedMessage:
        return ReceivedMessage(
            id=row["id"], sender=row["sender"], text=row["text"] or "", sent_at=row["sent_at"],
            received_at=row["received_at"], modem=row["modem"], parts=row["parts"],
            partial=bool(row["partial"]), error=row["error"],
        )

    def received_unhandled(self, limit: int = 100) -> list[ReceivedMessage]:
        rows = self._conn.execute(
            "SELECT * FROM inbox WHERE handled_at IS NULL ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [self._received(row) for row in rows]

    def received_handled(self, message_id: int, now: float | None = None) -> None:
        now = self._now(now)
        with self._tx() as conn:
            conn.execute("UPDATE inbox SET handled_at = ? WHERE id = ? AND handled_at IS NULL", (now, message_id))

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

    def event_done(self, event_id: int, now: float | None = None) -> None:
        now = self._now(now)
        with self._tx() as conn:
            conn.execute("UPDATE event SET done_at = ? WHERE id = ? AND done_at IS NULL", (now, event_id))

    def events_done(self, event_ids: Sequence[int], now: float | None = None) -> None:
        """Mark several events done in one transaction (the MQTT bridge, on a run of PUBACKs)."""
        if not event_ids:
            return
        now = self._now(now)
        with self._tx() as conn:
            conn.executemany("UPDATE event SET done_at = ? WHERE id = ? AND done_at IS NULL",
                             [(now, event_id) for event_id in event_ids])

    # --- webhook deliveries ----------------------------------------------------------------

    def _add_deliveries(self, conn: sqlite3.Connection, event: str, payload: dict[str, Any], now: float) -> None:
        """One pending delivery per webhook that takes ``event``, in the event's transaction."""
        hooks = conn.execute("SELECT name, expire_after FROM webhook WHERE event = ? ORDER BY name",
                             (event,)).fetchall()
        if not hooks:
            return
        body = dump_json(payload)
        conn.executemany(
            "INSERT INTO webhook_delivery (webhook, delivery_id, event, body, created_at, expires_at, state, "
            "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(hook["name"], str(uuid.uuid4()), event, body, now, now + hook["expire_after"], DELIVERY_PENDING, now)
             for hook in hooks],
        )

    def configure_webhooks(self, webhooks: Sequence[tuple[str, Sequence[str], float]],
                           now: float | None = None) -> dict[str, int]:
        """Record the configured webhooks as (name, events, expire_after): every process that commits
        an event (the daemon, ``smsgw send``) writes deliveries for them. The pending deliveries of a
        webhook no longer configured expire (nothing would deliver them); their count per webhook."""
        now = self._now(now)
        names = {name for name, _events, _expire in webhooks}
        wanted = {(name, event, float(expire)) for name, events, expire in webhooks for event in events}
        recorded = {(row[0], row[1], row[2]) for row in self._conn.execute("SELECT name, event, expire_after FROM webhook")}
        orphans = self._conn.execute("SELECT DISTINCT webhook FROM webhook_delivery WHERE done_at IS NULL").fetchall()
        if wanted == recorded and all(row[0] in names for row in orphans):
            return {}  # as recorded: no transaction (a daemon without webhooks starts without an fsync)
        dropped: dict[str, int] = {}
        with self._tx() as conn:
            conn.execute("DELETE FROM webhook")
            conn.executemany("INSERT INTO webhook (name, event, expire_after) VALUES (?, ?, ?)",
                             [(name, event, expire) for name, events, expire in webhooks for event in events])
            for row in conn.execute("SELECT webhook, COUNT(*) AS n FROM webhook_delivery WHERE done_at IS NULL "
                                    "GROUP BY webhook").fetchall():
                if row["webhook"] not in names:
                    dropped[row["webhook"]] = row["n"]
            for name, count in dropped.items():
                conn.execute("UPDATE webhook_delivery SET state = ?, done_at = ?, last_error = ? "
                             "WHERE webhook = ? AND done_at IS NULL",
                             (DELIVERY_EXPIRED, now, "the webhook is no longer configured", name))
                conn.execute("INSERT INTO audit (at, kind, detail) VALUES (?, ?, ?)",
                             (now, "webhook.removed", dump_json({"webhook": name, "expired": count}, compact=False)))
        return dropped

    def next_delivery(self, webhook: str) -> WebhookDelivery | None:
        """The oldest delivery of ``webhook`` not yet delivered or expired (deliveries go in order)."""
        row = self._conn.execute(
            "SELECT id, webhook, delivery_id, event, body, created_at, expires_at, attempts, next_attempt_at "
            "FROM webhook_delivery WHERE webhook = ? AND done_at IS NULL ORDER BY id LIMIT 1",  # index pending
            (webhook,),
        ).fetchone()
        return None if row is None else WebhookDelivery(**dict(row))

    def delivery_done(self, delivery_id: int, status: int, now: float | None = None) -> None:
        """The receiver answered ``status`` (2xx): delivered."""
        now = self._now(now)
        with self._tx() as conn:
            conn.execute("UPDATE webhook_delivery SET state = ?, done_at = ?, attempts = attempts + 1, "
                         "last_status = ?, last_error = NULL WHERE id = ? AND done_at IS NULL",
                         (DELIVERY_DONE, now, status, delivery_id))

    def delivery_failed(self, delivery_id: int, error: str, next_attempt_at: float, *, status: int | None = None,
                        now: float | None = None) -> None:
        """An attempt failed (no answer, or a status other than 2xx); the next one at ``next_attempt_at``."""
        now = self._now(now)
        with self._tx() as conn:
            conn.execute("UPDATE webhook_delivery SET attempts = attempts + 1, next_attempt_at = ?, last_status = ?, "
                         "last_error = ? WHERE id = ? AND done_at IS NULL",
                         (next_attempt_at, status, error, delivery_id))

    def expire_deliveries(self, webhook: str, now: float | None = None) -> int:
        """Give up the pending deliveries of ``webhook`` whose time has run out; how many."""
        now = self._now(now)
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE webhook_delivery SET state = ?, done_at = ? WHERE id IN (SELECT id FROM webhook_delivery "
                "WHERE webhook = ? AND done_at IS NULL AND expires_at <= ?)",
                (DELIVERY_EXPIRED, now, webhook, now),
            )
            if cur.rowcount:
                conn.execute("INSERT INTO audit (at, kind, detail) VALUES (?, ?, ?)",
                             (now, "webhook.expired",
                              dump_json({"webhook": webhook, "expired": cur.rowcount}, compact=False)))
        return cur.rowcount

    def deliveries(self, webhook: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest deliveries (of one webhook), newest first."""
        where, args = ("WHERE webhook = ? ", (webhook, limit)) if webhook else ("", (limit,))
        rows = self._conn.execute(f"SELECT * FROM webhook_delivery {where}ORDER BY id DESC LIMIT ?", args).fetchall()
        return [dict(row) for row in rows]

    def webhook_stats(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """Per webhook with deliveries (or configured): counts by state, the oldest pending one's age,
        the next attempt, and the last error and last delivery."""
        now = self._now(now)
        out: dict[str, dict[str, Any]] = {}

        def entry(name: str) -> dict[str, Any]:
            return out.setdefault(name, {"events": [], DELIVERY_PENDING: 0, DELIVERY_DONE: 0, DELIVERY_EXPIRED: 0,
                                         "oldest_pending_age": None, "next_attempt_at": None, "attempts": 0,
                                         "last_error": None, "last_status": None, "last_delivered_at": None})

        for row in self._conn.execute("SELECT name, event FROM webhook ORDER BY name, event"):
            entry(row["name"])["events"].append(row["event"])
        for row in self._conn.execute("SELECT webhook, COUNT(*) AS n FROM webhook_delivery "
                                     "WHERE done_at IS NULL GROUP BY webhook"):  # index webhook_delivery_pending
            entry(row["webhook"])[DELIVERY_PENDING] = row["n"]
        for row in self._conn.execute("SELECT webhook, state, COUNT(*) AS n FROM webhook_delivery "
                                     "WHERE done_at IS NOT NULL GROUP BY webhook, state"):  # index ..._finished
            entry(row["webhook"])[row["state"]] = row["n"]
        for name, data in out.items():
            head = self._conn.execute(
                "SELECT created_at, next_attempt_at, attempts, last_error, last_status FROM webhook_delivery "
                "WHERE webhook = ? AND done_at IS NULL ORDER BY id LIMIT 1", (name,)).fetchone()
            if head is not None:
                data["oldest_pending_age"] = max(now - head["created_at"], 0.0)
                data["next_attempt_at"] = head["next_attempt_at"]
                data["attempts"] = head["attempts"]
                data["last_error"], data["last_status"] = head["last_error"], head["last_status"]
            last = self._conn.execute(
                "SELECT MAX(done_at) FROM webhook_delivery WHERE webhook = ? AND state = ? AND done_at IS NOT NULL",
                (name, DELIVERY_DONE)).fetchone()[0]
            data["last_delivered_at"] = last
        return out

    # --- retention -------------------------------------------------------------------------

    def prune_steps(
        self,
        now: float | None = None,
        *,
        retention_days: float = RETENTION_DAYS,
        audit_retention_days: float = AUDIT_RETENTION_DAYS,
        batch: int = PRUNE_BATCH,
        publisher: bool = True,
    ) -> Iterator[dict[str, int]]:
        """Delete what is finished and old, one short transaction per batch; yields after each.

        Deleted, when older than ``retention_days`` (0: kept forever): outbound messages in a final
        state (delivered, failed, expired: by their last change) with their parts; received
        messages that were handled and whose ``received`` event is published (by ``received_at``)
        with their parts; events marked done and webhook deliveries delivered or expired (by
        ``done_at``). Audit rows older than
        ``audit_retention_days`` (0: forever). Never deleted: queued, sending or sent messages, parts
        waiting for reassembly, unhandled received messages, and pending events, except without a
        ``publisher`` (no ``[mqtt]``: nothing will publish them): then pending events are deleted at
        once, whatever their age, and do not hold back received messages, so that enabling MQTT
        later does not publish a backlog; and received messages need not be handled (without MQTT
        no rules engine runs to handle them), only older than the retention.

        Each yield carries the running totals per table; the caller (the daemon) gives the event
        loop a turn in between, so the write lock is never held for more than one batch. At the end
        freed pages are returned to the file system (``PRAGMA incremental_vacuum``, on a file created
        with ``auto_vacuum=INCREMENTAL``) and the WAL is truncated.
        """
        now = self._now(now)
        totals = dict.fromkeys(("messages", "parts", "inbox", "inbox_parts", "events", "webhook_deliveries",
                                "audit", "pages"), 0)
        steps: list[tuple[str, Callable[[sqlite3.Connection], dict[str, int]]]] = []
        if not publisher:
            steps.append(("events", lambda c: {"events": self._delete(
                c, "event", "SELECT id FROM event WHERE done_at IS NULL LIMIT ?", (batch,))}))
        if retention_days > 0:
            cutoff = now - retention_days * 86400.0
            steps.append(("messages", lambda c: self._prune_messages(c, cutoff, batch)))
            # without MQTT there is no rules engine either: nothing will ever mark a message handled
            steps.append(("inbox", lambda c: self._prune_inbox(c, cutoff, batch, require_handled=publisher)))
            steps.append(("events", lambda c: {"events": self._delete(
                c, "event", "SELECT id FROM event WHERE done_at IS NOT NULL AND done_at < ? LIMIT ?",
                (cutoff, batch))}))
            steps.append(("webhook_deliveries", lambda c: {"webhook_deliveries": self._delete(
                c, "webhook_delivery", "SELECT id FROM webhook_delivery WHERE done_at IS NOT NULL "
                "AND done_at < ? LIMIT ?", (cutoff, batch))}))
        if audit_retention_days > 0:
            audit_cutoff = now - audit_retention_days * 86400.0
            steps.append(("audit", lambda c: {"audit": self._delete(
                c, "audit", "SELECT id FROM audit WHERE at < ? LIMIT ?", (audit_cutoff, batch))}))
        for _name, step in steps:
            while True:
                with self._tx() as conn:
                    counts = step(conn)
                for key, value in counts.items():
                    totals[key] += value
                yield dict(totals)
                if next(iter(counts.values())) < batch:  # the first count is the batch's own table
                    break
        deleted = sum(value for key, value in totals.items() if key != "pages")
        if deleted and int(self._conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:
            while True:
                free = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
                if not free:
                    break
                # executescript steps the pragma to the end (execute frees one page per call)
                self._conn.executescript(f"PRAGMA incremental_vacuum({min(free, VACUUM_PAGES)});")
                after = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
                totals["pages"] += free - after
                yield dict(totals)
                if after >= free:
                    break
        if deleted:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.OperationalError as exc:  # another process holds the file: next time
                LOG.debug("WAL checkpoint after pruning skipped: %s", exc)
            LOG.info("pruned %s", ", ".join(f"{n} {key}" for key, n in totals.items() if n))
        yield totals

    def prune(
        self,
        now: float | None = None,
        *,
        retention_days: float = RETENTION_DAYS,
        audit_retention_days: float = AUDIT_RETENTION_DAYS,
        batch: int = PRUNE_BATCH,
        publisher: bool = True,
    ) -> dict[str, int]:
        """Run ``prune_steps`` to the end; the number of rows deleted per table (and pages freed)."""
        totals: dict[str, int] = {}
        for step in self.prune_steps(now, retention_days=retention_days,
                                     audit_retention_days=audit_retention_days, batch=batch,
                                     publisher=publisher):
            totals = step
        return totals

    @staticmethod
    def _delete(conn: sqlite3.Connection, table: str, select: str, args: tuple[Any, ...]) -> int:
        cur = conn.execute(f"DELETE FROM {table} WHERE id IN ({select})", args)
        return cur.rowcount

    @staticmethod
    def _prune_messages(conn: sqlite3.Connection, cutoff: float, batch: int) -> dict[str, int]:
        ids = [row[0] for row in conn.execute(
            "SELECT id FROM message WHERE state IN (?, ?, ?) AND updated_at < ? ORDER BY id LIMIT ?",
            (*FINAL_STATES, cutoff, batch)).fetchall()]
        if not ids:
            return {"messages": 0, "parts": 0}
        marks = ", ".join("?" for _ in ids)
        parts = conn.execute(f"DELETE FROM part WHERE message_id IN ({marks})", ids).rowcount
        messages = conn.execute(f"DELETE FROM message WHERE id IN ({marks})", ids).rowcount
        return {"messages": messages, "parts": parts}

    @staticmethod
    def _prune_inbox(conn: sqlite3.Connection, cutoff: float, batch: int, *,
                     require_handled: bool = True) -> dict[str, int]:
        handled = "handled_at IS NOT NULL AND " if require_handled else ""
        ids = [row[0] for row in conn.execute(
            f"SELECT id FROM inbox WHERE {handled}received_at < ? AND id NOT IN ("
            " SELECT json_extract(payload, '$.id') FROM event WHERE done_at IS NULL AND topic = 'received'"
            " AND json_extract(payload, '$.id') IS NOT NULL) ORDER BY id LIMIT ?",
            (cutoff, batch)).fetchall()]
        if not ids:
            return {"inbox": 0, "inbox_parts": 0}
        marks = ", ".join("?" for _ in ids)
        parts = conn.execute(f"DELETE FROM inbox_part WHERE inbox_id IN ({marks})", ids).rowcount
        inbox = conn.execute(f"DELETE FROM inbox WHERE id IN ({marks})", ids).rowcount
        return {"inbox": inbox, "inbox_parts": parts}

    # --- audit and rule state ---------------------------------------------------------------

    # --- opt-outs (STOP / START) -------------------------------------------------------------

    def check_optout(self, requests: Sequence[OutboundRequest]) -> None:
        """Raise ``OptedOut`` for the first non-critical request to a number on the opt-out list.

        The one opt-out check: ``enqueue`` calls it for every channel (CLI, rules, replies), and the
        MQTT bridge calls it per request first, to answer that request alone with the error.
        """
        candidates = [r.to for r in requests if r.priority != CRITICAL]
        if not candidates:
            return
        numbers = [row[0] for row in self._conn.execute("SELECT number FROM optout")]
        for to in candidates:
            if any(same_number(to, number) for number in numbers):
                raise OptedOut(to)

    def opted_out(self, number: str) -> bool:
        return any(same_number(number, row[0]) for row in self._conn.execute("SELECT number FROM optout"))

    def optout_add(self, number: str, source: str, now: float | None = None) -> bool:
        """Put ``number`` on the opt-out list (audited ``optout_added``); False if it was already."""
        now = self._now(now)
        if self.opted_out(number):
            return False
        with self._tx() as conn:
            conn.execute("INSERT INTO optout (number, at, source) VALUES (?, ?, ?)", (number, now, source))
            conn.execute("INSERT INTO audit (at, kind, detail) VALUES (?, ?, ?)",
                         (now, "optout_added", json.dumps({"number": number, "source": source})))
        return True

    def optout_remove(self, number: str, source: str, now: float | None = None) -> bool:
        """Take ``number`` off the list (audited ``optout_removed``); False if it was not on it."""
        now = self._now(now)
        listed = [row[0] for row in self._conn.execute("SELECT number FROM optout") if same_number(number, row[0])]
        if not listed:
            return False
        with self._tx() as conn:
            conn.executemany("DELETE FROM optout WHERE number = ?", [(n,) for n in listed])
            conn.execute("INSERT INTO audit (at, kind, detail) VALUES (?, ?, ?)",
                         (now, "optout_removed", json.dumps({"number": number, "source": source})))
        return True

    def optouts(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._conn.execute("SELECT number, at, source FROM optout ORDER BY at")]

    def audit(self, kind: str, detail: dict[str, Any], now: float | None = None) -> None:
        now = self._now(now)
        with self._tx() as conn:
            conn.execute("INSERT INTO audit (at, kind, detail) VALUES (?, ?, ?)",
                         (now, kind, dump_json(detail, compact=False)))

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

    # --- listings and statistics ------------------------------------------------------------

    def last_errors(self, limit: int = 5) -> list[dict[str, Any]]:
        """The messages with an error, the most recently updated first: id, recipient, state,
        last_error, updated_at."""
        rows = self._conn.execute(
            "SELECT id, recipient, state, last_error, updated_at FROM message "
            "WHERE last_error IS NOT NULL ORDER BY updated_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [dict(row) for row in rows]

    def source_usage(self, since: float) -> dict[str, dict[str, int]]:
        """Per source: messages accepted since ``since`` and how many of them were sent.

        The whole quarter hours come from ``source_count`` (kept by triggers, schema 8), the part
        of a quarter hour before them from ``message`` (index ``message_created``): a few rows read
        whatever the history, and none from ``message`` when ``since`` starts a quarter hour (a
        local midnight does)."""
        first = math.ceil(since / SOURCE_BUCKET)
        usage: dict[str, dict[str, int]] = {}
        rows = self._conn.execute(
            "SELECT source, SUM(accepted), SUM(sent) FROM source_count WHERE bucket >= ? GROUP BY source",
            (first,)).fetchall()
        rows += self._conn.execute(
            "SELECT source, COUNT(*), SUM(state IN (?, ?)) FROM message "
            f"WHERE created_at >= ? AND created_at < ? AND CAST(created_at / {SOURCE_BUCKET} AS INTEGER) < ? "
            "GROUP BY source",
            (SENT, DELIVERED, since, first * SOURCE_BUCKET + SOURCE_BUCKET, first)).fetchall()
        for source, accepted, sent in rows:
            counts = usage.setdefault(source, {"accepted": 0, "sent": 0})
            counts["accepted"] += int(accepted)
            counts["sent"] += int(sent or 0)
        return {source: usage[source] for source in sorted(usage) if usage[source]["accepted"] > 0}

    def stats(self, now: float | None = None) -> dict[str, Any]:
        """Counts of the outbox per state, the inbox and the pending events, today's usage per source
        and the last error: read from the counters the triggers of schema 8 keep and from indexes,
        so the cost does not grow with the history (``bench/stats.py``)."""
        now = self._now(now)
        counts = dict(self._conn.execute("SELECT name, n FROM counter").fetchall())
        outbox = {state: int(counts.get(f"message.{state}", 0)) for state in STATES}
        last_error = self._conn.execute(
            "SELECT id, last_error, updated_at FROM message WHERE last_error IS NOT NULL "
            "ORDER BY updated_at DESC LIMIT 1"  # index message_last_error
        ).fetchone()
        return {
            "outbox": outbox,
            "inbox": int(counts.get("inbox", 0)),
            "inbox_unhandled": int(counts.get("inbox.unhandled", 0)),
            "inbox_parts_pending": int(counts.get("inbox_part.pending", 0)),
            "events_pending": int(counts.get("event.pending", 0)),
            "sources_today": self.source_usage(local_midnight(now)),
            "last_error": None if last_error is None else {
                "id": last_error["id"], "error": last_error["last_error"], "at": _iso(last_error["updated_at"])},
        }

    def outbox(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT m.*, (SELECT COUNT(*) FROM part p WHERE p.message_id = m.id) AS parts "
            "FROM message m ORDER BY m.id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [self._message_dict(row) for row in rows]

    def inbox(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._conn.execute("SELECT * FROM inbox ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [self._inbox_dict(row) for row in rows]

    def _inbox_dict(self, row: sqlite3.Row) -> dict[str, Any]:
        data = dict(row)
        data["from"] = data.pop("sender")
        if data["text"] is not None:
            data["text"] = self.shown_text(data["text"])
        data["partial"] = bool(data["partial"])
        data["missing"] = json.loads(data["missing"]) if data["missing"] else []
        data["state"] = UNDECODABLE if data["error"] else RECEIVED
        if data["error"]:
            raw = self._conn.execute("SELECT pdu FROM inbox_part WHERE inbox_id = ? ORDER BY id LIMIT 1",
                                    (data["id"],)).fetchone()
            data["raw"] = raw["pdu"] if raw is not None else None
        return data

    # --- reads for the HTTP API and its metrics ---------------------------------------------

    def ping(self) -> bool:
        """Whether the database answers a query (``GET /healthz``)."""
        return bool(self._conn.execute("SELECT 1").fetchone()[0] == 1)

    def messages(self, *, state: str | None = None, limit: int = 50,
                 before: int | None = None) -> list[dict[str, Any]]:
        """Outbound messages, newest first: all, or those in ``state``; with ``before``, only those with
        a smaller id (the next page). Each with its count of parts and the modem that sent them."""
        where: list[str] = []
        args: list[Any] = []
        if state is not None:
            where.append("m.state = ?")
            args.append(state)
        if before is not None:
            where.append("m.id < ?")
            args.append(before)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._conn.execute(
            "SELECT m.*, (SELECT COUNT(*) FROM part p WHERE p.message_id = m.id) AS parts "
            f"FROM message m {clause}ORDER BY m.id DESC LIMIT ?", (*args, limit)  # index message_queue / pk
        ).fetchall()
        return [self._message_dict(row) for row in rows]

    def inbox_after(self, *, after_id: int | None = None, since: float | None = None,
                    limit: int = 50) -> list[dict[str, Any]]:
        """Received messages oldest first: those with an id above ``after_id`` and/or received at or
        after ``since`` (a poller passes the last id it saw)."""
        where: list[str] = []
        args: list[Any] = []
        if after_id is not None:
            where.append("id > ?")
            args.append(after_id)
        if since is not None:
            where.append("received_at >= ?")
            args.append(since)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._conn.execute(f"SELECT * FROM inbox {clause}ORDER BY id LIMIT ?", (*args, limit)).fetchall()
        return [self._inbox_dict(row) for row in rows]

    def modem_states(self) -> dict[str, dict[str, Any]]:
        """The last recorded state of every modem the store knows (``state_set("modem", …)``)."""
        result: dict[str, dict[str, Any]] = {}
        for row in self._conn.execute("SELECT key, value FROM state WHERE namespace = 'modem' ORDER BY key"):
            try:
                value = json.loads(row[1])
            except ValueError:
                value = None
            result[row[0]] = value if isinstance(value, dict) else {"state": "unreadable"}
        return result

    def metrics(self, now: float | None = None) -> dict[str, Any]:
        """What ``GET /metrics`` reports from the store: messages by (source, modem, state), received
        messages by modem, the age of the oldest queued message, unpublished events, the file's size."""
        now = self._now(now)
        messages = [(row[0] or "", row[1] or "", row[2], int(row[3])) for row in self._conn.execute(
            "SELECT source, modem, state, COUNT(*) FROM message GROUP BY source, modem, state")]
        parts = [(row[0] or "", row[1], int(row[2])) for row in self._conn.execute(
            "SELECT modem, state, COUNT(*) FROM part WHERE modem IS NOT NULL GROUP BY modem, state")]
        received = [(row[0] or "", int(row[1])) for row in self._conn.execute(
            "SELECT modem, COUNT(*) FROM inbox GROUP BY modem")]
        oldest = self._conn.execute("SELECT MIN(created_at) FROM message WHERE state = ?", (QUEUED,)).fetchone()[0]
        pending = int(self._conn.execute("SELECT COUNT(*) FROM event WHERE done_at IS NULL").fetchone()[0])
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += os.stat(str(self.path) + suffix).st_size
            except OSError:
                pass
        return {"messages": messages, "parts": parts, "received": received,
                "oldest_queued_age": None if oldest is None else max(now - float(oldest), 0.0),
                "events_pending": pending, "size_bytes": size}


@dataclass(frozen=True)
class FileCheck:
    """What ``check_file`` read of a store file without opening it as a Store."""

    schema_version: int
    journal_mode: str
    integrity: str  # "ok", or the first problem PRAGMA quick_check found
    queue: dict[str, int]  # messages per state


def check_file(path: Path, timeout: float = 5.0) -> FileCheck:
    """Read ``path`` with SQLite's ``mode=ro`` (nothing written, no migration): its schema version,
    journal mode, ``PRAGMA quick_check`` and queue depth (``smsgw doctor``); ``sqlite3.Error`` if it
    cannot be read."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        integrity = connection.execute("PRAGMA quick_check").fetchone()[0]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        depth: dict[str, int] = {}
        # The outbox table is "message"; "messages" is what this check has always looked for, so the
        # queue depth stays empty (a known fault, kept unchanged here).
        if "messages" in tables:
            depth = dict(connection.execute("SELECT state, count(*) FROM messages GROUP BY state").fetchall())
    finally:
        connection.close()
    return FileCheck(int(version), str(mode), str(integrity), depth)
