"""Reads for people and monitors: the listings of `smsgw outbox`/`inbox`, `smsgw status`'s
statistics, and what the HTTP API and its metrics return."""

from __future__ import annotations

import json
import math
import os
import sqlite3

from appliance.migrations import SOURCE_BUCKET
from appliance.store_base import StoreBase
from appliance.store_types import (
    DELIVERED,
    QUEUED,
    RECEIVED,
    SENT,
    STATES,
    UNDECODABLE,
    iso,
    local_midnight,
    message_dict,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any


def _where(*conditions: tuple[str, object]) -> tuple[str, tuple[object, ...]]:
    """``"WHERE a AND b "`` and its arguments from the ``(condition, value)`` pairs whose value is not
    None (each condition has one ``?``); ``""`` when none is."""
    kept = [(condition, value) for condition, value in conditions if value is not None]
    clause = f"WHERE {' AND '.join(condition for condition, _ in kept)} " if kept else ""
    return clause, tuple(value for _, value in kept)


class Reports(StoreBase):
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
                "id": last_error["id"], "error": last_error["last_error"], "at": iso(last_error["updated_at"])},
        }

    def outbox(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT m.*, (SELECT COUNT(*) FROM part p WHERE p.message_id = m.id) AS parts "
            "FROM message m ORDER BY m.id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [message_dict(row) for row in rows]

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


    def messages(self, *, state: str | None = None, limit: int = 50,
                 before: int | None = None) -> list[dict[str, Any]]:
        """Outbound messages, newest first: all, or those in ``state``; with ``before``, only those with
        a smaller id (the next page). Each with its count of parts and the modem that sent them."""
        clause, args = _where(("m.state = ?", state), ("m.id < ?", before))
        rows = self._conn.execute(
            "SELECT m.*, (SELECT COUNT(*) FROM part p WHERE p.message_id = m.id) AS parts "
            f"FROM message m {clause}ORDER BY m.id DESC LIMIT ?", (*args, limit)  # newest first: the primary key
        ).fetchall()
        return [message_dict(row) for row in rows]

    def inbox_after(self, *, after_id: int | None = None, since: float | None = None,
                    limit: int = 50) -> list[dict[str, Any]]:
        """Received messages oldest first: those with an id above ``after_id`` and/or received at or
        after ``since`` (a poller passes the last id it saw)."""
        clause, args = _where(("id > ?", after_id), ("received_at >= ?", since))
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
