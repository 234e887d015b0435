"""The store's reads for scheduled messages (a mixin of :class:`appliance.store.Store`): the last
day's activity that a ``[[schedules]]`` summary reports. Messages held for later (``send_at``, quiet
hours; schema 10) are ordinary queued rows whose ``next_attempt_at`` is that time. Which occurrence
of a schedule was handled is rule state (``Store.state_get("schedule", name)``)."""

from __future__ import annotations

from appliance.store_base import StoreBase

#: The ``state`` namespace of ``[[schedules]]``: rule name -> epoch seconds of its last handled occurrence.
SCHEDULE_STATE = "schedule"


class ScheduleQueries(StoreBase):
    def activity_since(self, since: float) -> dict[str, int]:
        """Messages sent (or delivered), failed and expired whose state changed since ``since`` (index
        ``message_done``), and SMS received since then (index ``inbox_received``)."""
        counts = dict(self._conn.execute(
            "SELECT state, COUNT(*) FROM message WHERE held IS NULL AND state IN ('sent', 'delivered', 'failed', "
            "'expired') AND updated_at >= ? GROUP BY state", (since,)).fetchall())
        received = self._conn.execute("SELECT COUNT(*) FROM inbox WHERE received_at >= ?", (since,)).fetchone()
        return {
            "sent": int(counts.get("sent", 0)) + int(counts.get("delivered", 0)),
            "failed": int(counts.get("failed", 0)),
            "expired": int(counts.get("expired", 0)),
            "received": int(received[0]),
        }
