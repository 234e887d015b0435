"""Webhook deliveries (docs/webhooks.md): one row per event and webhook, committed with the
event, delivered in order, retried until a 2xx or their expiry."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from appliance.payload import dump_json
from appliance.store_base import StoreBase
from appliance.store_types import DELIVERY_DONE, DELIVERY_EXPIRED, DELIVERY_PENDING, WebhookDelivery

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any


class WebhookTables(StoreBase):
    # --- webhook deliveries ----------------------------------------------------------------

    def _add_deliveries(self, conn: sqlite3.Connection, event: str, payload: dict[str, Any], now: float) -> None:
        """One pending delivery per webhook that takes ``event``, in the event's transaction."""
        if self._webhooks is not None:  # as this process recorded them
            hooks = self._webhooks.get(event, [])
        else:
            hooks = [(row[0], row[1]) for row in conn.execute(
                "SELECT name, expire_after FROM webhook WHERE event = ? ORDER BY name", (event,))]
        if not hooks:
            return
        import uuid  # here: the CLI reads the store without it

        body = dump_json(payload)
        conn.executemany(
            "INSERT INTO webhook_delivery (webhook, delivery_id, event, body, created_at, expires_at, state, "
            "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(name, str(uuid.uuid4()), event, body, now, now + expire_after, DELIVERY_PENDING, now)
             for name, expire_after in hooks],
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
            self._webhooks = _by_event(wanted)
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
        self._webhooks = _by_event(wanted)
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


def _by_event(wanted: set[tuple[str, str, float]]) -> dict[str, list[tuple[str, float]]]:
    """(name, event, expire_after) rows as ``_add_deliveries`` takes them: per event, in name order."""
    hooks: dict[str, list[tuple[str, float]]] = {}
    for name, event, expire in sorted(wanted):
        hooks.setdefault(event, []).append((name, expire))
    return hooks
