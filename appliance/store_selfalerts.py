"""Store queries of the self-alerts (``appliance.self_alerts``): the modems a message must not go
through, and the clients' queue as the ``no_send`` / ``queue_age`` conditions see it.

A message queued with ``OutboundRequest.avoid_modems`` gets one row per modem in the key-value
``state`` table (namespace ``avoid_modem``, key ``<message id>/<modem id>``), written by ``enqueue``
in the transaction that queues it; ``claim`` and ``next_due_at`` leave a message to the other modems
while such a row names the claiming one (``store_types.NOT_AVOIDED_SQL``, one primary-key search per
candidate). The rows of messages that no longer wait are deleted by ``prune`` (the daemon's hourly
retention run) and :meth:`prune_avoided`. (Rows of
the state table rather than a column: no schema change.)
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence

from appliance.store_outbound import OutboundQueue
from appliance.store_types import (
    AVOID_NAMESPACE,
    EXPIRED,
    GATEWAY_SOURCE,
    PRIORITIES,
    QUEUED,
    SENDING,
    RetentionStep,
)


class SelfAlertsQueries(OutboundQueue):
    def avoided_modems(self, message_id: int) -> list[str]:
        """The modems message ``message_id`` must not be sent through, sorted."""
        prefix = f"{message_id}/"
        rows = self._conn.execute(
            "SELECT key FROM state WHERE namespace = ? AND key >= ? AND key < ? ORDER BY key",
            (AVOID_NAMESPACE, prefix, f"{message_id}0")).fetchall()  # '0' follows '/' in ASCII
        return [str(row[0])[len(prefix):] for row in rows]

    def client_queue(self) -> tuple[int, float | None]:
        """The clients' queue (every source but the gateway's own): how many messages are queued or
        being sent (0 when only the gateway's own wait), and when the oldest queued one was accepted.

        A few index searches whatever the backlog: the count from the schema-8 counters, the oldest
        from the first ready and the first held row of each priority in ``message_queued`` (the
        gateway's own rows are few, and walked past)."""
        # queued (index message_queued) or sending (message_leased): see migrations._v14
        if not any(self._conn.execute(f"SELECT 1 FROM message WHERE held = {held} AND source != ? LIMIT 1",
                                      (GATEWAY_SOURCE,)).fetchone() for held in (0, 1, 2)):
            return 0, None
        counts = dict(self._conn.execute("SELECT name, n FROM counter WHERE name IN (?, ?)",
                                         (f"message.{QUEUED}", f"message.{SENDING}")).fetchall())
        oldest: float | None = None
        for priority, held in itertools.product(sorted(PRIORITIES.values()), (0, 1)):
            row = self._conn.execute(
                # held as a literal: compared with a parameter, it would make SQLite prepare again
                f"SELECT created_at FROM message WHERE held = {held} AND priority = ? "
                "AND source != ? ORDER BY id LIMIT 1", (priority, GATEWAY_SOURCE)).fetchone()
            if row is not None and (oldest is None or row[0] < oldest):
                oldest = float(row[0])
        return max(int(sum(counts.values())), 1), oldest

    def prune_avoided(self) -> int:
        """Delete the avoid rows of messages that no longer wait (sent, failed, expired, pruned); ``prune``
        does it too, in batches (``_retention_steps``)."""
        with self._tx() as conn:
            return self._prune_avoided(conn, -1)

    def _prune_avoided(self, conn: sqlite3.Connection, batch: int) -> int:
        cur = conn.execute(
            "DELETE FROM state WHERE rowid IN (SELECT rowid FROM state WHERE namespace = ? AND NOT EXISTS "
            "(SELECT 1 FROM message WHERE message.id = CAST(substr(state.key, 1, instr(state.key, '/') - 1) "
            "AS INTEGER) AND message.state IN (?, ?)) LIMIT ?)", (AVOID_NAMESPACE, QUEUED, SENDING, batch))
        return int(cur.rowcount)

    def _retention_steps(self, cutoff: float, batch: int) -> list[RetentionStep]:
        return [*super()._retention_steps(cutoff, batch),
                ("avoid_modems", lambda conn: {"avoid_modems": self._prune_avoided(conn, batch)})]

    def withdraw(self, message_ids: Sequence[int], reason: str, now: float | None = None) -> bool:
        """If every one of ``message_ids`` is still queued (no modem has taken it), move them all to
        ``expired`` with ``reason`` and return True; else change nothing and return False. An alert
        whose condition cleared before any of its SMS could be sent."""
        now = self._now(now)
        with self._tx() as conn:
            states = [conn.execute("SELECT state FROM message WHERE id = ?", (i,)).fetchone() for i in message_ids]
            if not message_ids or any(row is None or row[0] != QUEUED for row in states):
                return False
            for message_id in message_ids:
                self._set_state(conn, message_id, EXPIRED, now, last_error=reason, lease_until=None)
        return True
