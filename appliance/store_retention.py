"""Retention: deleting what is finished and older than the configured days, in short
batches, then returning the freed pages (docs/store.md, "Retention")."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from appliance.deferred_log import get_logger
from appliance.store_base import StoreBase
from appliance.store_types import (
    AUDIT_RETENTION_DAYS,
    FINAL_STATES,
    PRUNE_BATCH,
    RETENTION_DAYS,
    VACUUM_PAGES,
    RetentionStep,
)

LOG = get_logger("appliance.store")


class Retention(StoreBase):
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

        None of these commits waits for an fsync of its own (``_tx(fsync=False)``): a power cut can only
        undo a deletion, which the next prune makes again, and the checkpoint at the end syncs them all.
        Deleting 100,000 events of a backlog queued without MQTT took 200 fsyncs on the daemon's event
        loop, in the middle of its sends.
        """
        now = self._now(now)
        totals = dict.fromkeys(("messages", "parts", "inbox", "inbox_parts", "events", "webhook_deliveries",
                                "audit", "pages"), 0)
        steps: list[RetentionStep] = []
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
            steps.extend(self._retention_steps(cutoff, batch))
        if audit_retention_days > 0:
            audit_cutoff = now - audit_retention_days * 86400.0
            steps.append(("audit", lambda c: {"audit": self._delete(
                c, "audit", "SELECT id FROM audit WHERE at < ? LIMIT ?", (audit_cutoff, batch))}))
        for _name, step in steps:
            while True:
                with self._tx(fsync=False) as conn:  # a delete a power cut undoes is done again
                    counts = step(conn)
                for key, value in counts.items():
                    totals[key] = totals.get(key, 0) + value
                yield dict(totals)
                if next(iter(counts.values())) < batch:  # the first count is the batch's own table
                    break
        deleted = sum(value for key, value in totals.items() if key != "pages")
        if deleted and int(self._conn.execute("PRAGMA auto_vacuum").fetchone()[0]) == 2:
            while True:
                free = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
                if not free:
                    break
                # executescript steps the pragma to the end (execute frees one page per call); no
                # fsync of its own either
                with self._unsynced():
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
            "SELECT id FROM message WHERE held IS NULL AND state IN (?, ?, ?) AND updated_at < ? "
            "ORDER BY id LIMIT ?",  # index message_done
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
