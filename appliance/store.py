"""The SQLite store: outbox, parts, inbound parts and inbox, events to publish, audit log, rule state.

One file in WAL mode with ``synchronous=FULL``: a method that writes has committed (and fsync'ed)
before it returns; ``claim`` and ``events_done`` commit without the fsync, which the next fsync'ed
commit does for them (see ``StoreBase._tx``: a power cut may take them back, losing nothing
accepted). A ``Store`` is used from one thread (the daemon's event loop); other processes
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

``Store`` is one class made of one mixin per table group over ``store_base.StoreBase`` (the
connection, transactions, events, state and audit): ``store_outbound`` (with ``store_optout``),
``store_inbound``, ``store_alerts`` (escalating alerts), ``store_webhooks``, ``store_retention``,
``store_reports``, ``store_schedule`` (the last day's activity of the schedules), ``store_selfalerts``
(the modems a message avoids, the clients' queue) and ``store_history`` (the status page's samples);
the names they share are in ``store_types`` and are imported from here. ``store_cli.QueueStore``
is the groups ``smsgw send`` uses, ``store_alerts.StatusStore`` those of ``smsgw status``; ``Store``
extends them. A new table group is a new
mixin module added to the bases below, never more code in this file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from appliance.event_body import EventBody as EventBody  # re-exported
from appliance.frozen import frozen
from appliance.store_alerts import StatusStore
from appliance.store_history import HistoryQueries
from appliance.store_inbound import InboundTables
from appliance.store_retention import Retention
from appliance.store_schedule import ScheduleQueries
from appliance.store_selfalerts import SelfAlertsQueries
from appliance.store_types import (  # re-exported: the store's names are imported from here
    AUDIT_RETENTION_DAYS as AUDIT_RETENTION_DAYS,
)
from appliance.store_types import (
    BUSY_TIMEOUT as BUSY_TIMEOUT,
)
from appliance.store_types import (
    CRITICAL as CRITICAL,
)
from appliance.store_types import (
    DELIVERED as DELIVERED,
)
from appliance.store_types import (
    DELIVERY_DONE as DELIVERY_DONE,
)
from appliance.store_types import (
    DELIVERY_EXPIRED as DELIVERY_EXPIRED,
)
from appliance.store_types import (
    DELIVERY_PENDING as DELIVERY_PENDING,
)
from appliance.store_types import (
    EXPIRED as EXPIRED,
)
from appliance.store_types import (
    FAILED as FAILED,
)
from appliance.store_types import (
    FINAL_STATES as FINAL_STATES,
)
from appliance.store_types import (
    GATEWAY_SOURCE as GATEWAY_SOURCE,
)
from appliance.store_types import (
    MULTIPART_WAIT as MULTIPART_WAIT,
)
from appliance.store_types import (
    NEARLY_FULL as NEARLY_FULL,
)
from appliance.store_types import (
    PART_DELIVERED as PART_DELIVERED,
)
from appliance.store_types import (
    PART_FAILED as PART_FAILED,
)
from appliance.store_types import (
    PART_PENDING as PART_PENDING,
)
from appliance.store_types import (
    PART_SENT as PART_SENT,
)
from appliance.store_types import (
    PRIORITIES as PRIORITIES,
)
from appliance.store_types import (
    PRIORITY_NAMES as PRIORITY_NAMES,
)
from appliance.store_types import (
    PRUNE_BATCH as PRUNE_BATCH,
)
from appliance.store_types import (
    QUEUED as QUEUED,
)
from appliance.store_types import (
    REASSEMBLY_TIMEOUT as REASSEMBLY_TIMEOUT,
)
from appliance.store_types import (
    RECEIVED as RECEIVED,
)
from appliance.store_types import (
    REPORT_WINDOW as REPORT_WINDOW,
)
from appliance.store_types import (
    RETENTION_DAYS as RETENTION_DAYS,
)
from appliance.store_types import (
    SENDING as SENDING,
)
from appliance.store_types import (
    SENT as SENT,
)
from appliance.store_types import (
    STATES as STATES,
)
from appliance.store_types import (
    UNDECODABLE as UNDECODABLE,
)
from appliance.store_types import (
    VACUUM_PAGES as VACUUM_PAGES,
)
from appliance.store_types import (
    ClaimedMessage as ClaimedMessage,
)
from appliance.store_types import (
    EnqueueResult as EnqueueResult,
)
from appliance.store_types import (
    Event as Event,
)
from appliance.store_types import (
    InvalidRequest as InvalidRequest,
)
from appliance.store_types import (
    OptedOut as OptedOut,
)
from appliance.store_types import (
    OutboundRequest as OutboundRequest,
)
from appliance.store_types import (
    Part as Part,
)
from appliance.store_types import (
    ReceivedMessage as ReceivedMessage,
)
from appliance.store_types import (
    ReportMatch as ReportMatch,
)
from appliance.store_types import (
    StoreError as StoreError,
)
from appliance.store_types import (
    StoreFull as StoreFull,
)
from appliance.store_types import (
    WebhookDelivery as WebhookDelivery,
)
from appliance.store_types import (
    free_space as free_space,
)
from appliance.store_types import (
    iso as iso,
)
from appliance.store_types import (
    local_midnight as local_midnight,
)
from appliance.store_types import (
    same_number as same_number,
)
from appliance.store_types import (
    share_with_group as share_with_group,
)
from appliance.store_types import (
    store_failure as store_failure,
)
from appliance.store_types import (
    webhook_event as webhook_event,
)
from appliance.store_wal import WalFile


class Store(ScheduleQueries, HistoryQueries, SelfAlertsQueries, Retention, InboundTables, WalFile, StatusStore):
    """The store: one SQLite file, one connection, every table group's methods (one mixin each;
    ``store_alerts.StatusStore`` has the outbound queue, reports, webhooks and alerts; ``WalFile``
    the daemon's checkpoints)."""



@frozen
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
        if "message" in tables:  # the outbox
            depth = dict(connection.execute("SELECT state, count(*) FROM message GROUP BY state").fetchall())
    finally:
        connection.close()
    return FileCheck(int(version), str(mode), str(integrity), depth)
