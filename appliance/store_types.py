"""What the store's parts share: its constants, errors, value objects and small helpers.

``appliance.store`` re-exports every public name here; import them from there.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from appliance.frozen import field, frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any

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
PINNED_ELSEWHERE_SQL = ("EXISTS (SELECT 1 FROM part p WHERE p.message_id = message.id "
                     "AND p.message_reference IS NOT NULL AND p.modem != ?)")
#: SQL: the message may be claimed by the modem of the first parameter: not pinned elsewhere, or its
#: last sent part is older than the second parameter (now - multipart_wait).
NOT_PINNED_ELSEWHERE_SQL = (f"(NOT {PINNED_ELSEWHERE_SQL} OR (SELECT MAX(p.sent_at) FROM part p "
                         "WHERE p.message_id = message.id AND p.message_reference IS NOT NULL) <= ?)")

#: The source of the gateway's own messages (``[self_alerts]``): left out of the clients' queue, and
#: only a ``[sources.self]`` cap of its own applies to it (``appliance.caps``).
GATEWAY_SOURCE = "self"
#: The modems a message must not be sent through (``OutboundRequest.avoid_modems``): one row per modem in
#: the key-value ``state`` table, namespace ``avoid_modem``, key ``<message id>/<modem id>``
#: (``appliance.store_selfalerts``).
AVOID_NAMESPACE = "avoid_modem"
#: SQL: no avoid row names the modem of the parameter for the message (table ``message``); one
#: primary-key search.
NOT_AVOIDED_SQL = (f"NOT EXISTS (SELECT 1 FROM state WHERE namespace = '{AVOID_NAMESPACE}' "
                   "AND key = message.id || '/' || ?)")

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


def is_full_error(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


#: Below this many free bytes a failed open or write is put down to a full disk.
NEARLY_FULL = 256 * 1024


def nearly_full(path: Path) -> bool:
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


@frozen
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
    #: Modems that must not send this message (the self-alerts' failed modem); the others may.
    avoid_modems: tuple[str, ...] = ()
    #: TP-DCS message class (3GPP TS 23.038 §4): 0 is a flash SMS; None: no class.
    message_class: int | None = None
    #: Epoch seconds before which the message is not claimed (``send_at``, quiet hours); None: now.
    send_at: float | None = None


@frozen
class EnqueueResult:
    id: int
    state: str
    duplicate: bool


@frozen
class Event:
    id: int
    topic: str
    payload: dict[str, Any] | None  # None: an empty payload (with retain: clears the retained message)
    qos: int = 1
    retain: bool = False


@frozen
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


@frozen
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


@frozen
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


@frozen
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
    message_class: int | None = None  # TP-DCS message class; 0: flash SMS

    @property
    def unsent_parts(self) -> list[Part]:
        return [part for part in self.parts if part.message_reference is None]


@frozen
class ReportMatch:
    """What a status report changed: the message, its part, and the message's state afterwards."""

    message_id: int
    sequence: int
    part_state: str
    message_state: str


def iso(ts: float | None) -> str | None:
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


#: One step of ``prune_steps``: a name and a function deleting one batch in the transaction it is
#: given, returning the rows deleted per table (its own table first).
RetentionStep = tuple[str, Callable[[sqlite3.Connection], dict[str, int]]]


def message_dict(row: sqlite3.Row) -> dict[str, Any]:
    """An outbound message row as the API, the CLI and the page show it."""
    data = dict(row)
    data.pop("held", None)  # the claim's bookkeeping (schema 13), not the message's
    data["to"] = data.pop("recipient")
    data["priority"] = PRIORITY_NAMES.get(data["priority"], str(data["priority"]))
    data["report"] = bool(data["report"])
    return data
