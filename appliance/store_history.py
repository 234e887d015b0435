"""The store's queries for the status page's history (schema 11): one sample a minute of each
modem's signal and of the queue depth, for the page's 24-hour charts.

A sample is ``(at, kind, key, value)``: ``kind`` ``"signal"`` with the modem id as ``key`` and the
signal in dBm (NULL: no reading, the modem was down), or ``"queue"`` with a message state as ``key``
and the number of messages in it. ``at`` is the start of the sample's minute, and (kind, key, at)
is unique, so a daemon restarted within a minute replaces that minute's sample instead of adding one.
Samples leave with the store's retention (``Store.prune``: older than ``[store] retention_days``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from appliance.store_base import StoreBase
from appliance.store_types import RetentionStep

#: (kind, key) -> [(at, value)], oldest first.
History = dict[tuple[str, str], list[tuple[float, float | None]]]


class HistoryQueries(StoreBase):
    """Mixed into :class:`appliance.store.Store`."""

    def record_samples(self, at: float, samples: Iterable[tuple[str, str, float | None]]) -> int:
        """Write the samples of the minute ``at`` (one transaction); the number written."""
        rows = [(at, kind, key, value) for kind, key, value in samples]
        if not rows:
            return 0
        with self._tx() as conn:
            conn.executemany("INSERT OR REPLACE INTO history_sample (at, kind, key, value) VALUES (?, ?, ?, ?)",
                             rows)
        return len(rows)

    def history(self, since: float, until: float | None = None) -> History:
        """The samples taken at or after ``since`` (and before ``until``), per (kind, key), oldest first."""
        out: History = {}
        args: tuple[float, ...] = (since,) if until is None else (since, until)
        clause = "at >= ?" if until is None else "at >= ? AND at < ?"
        for row in self._conn.execute(  # index history_sample_at
                f"SELECT at, kind, key, value FROM history_sample WHERE {clause} ORDER BY at", args):
            out.setdefault((row[1], row[2]), []).append((float(row[0]), None if row[3] is None else float(row[3])))
        return out

    def _retention_steps(self, cutoff: float, batch: int) -> list[RetentionStep]:
        """The samples older than ``cutoff`` go with the retention (``Store.prune_steps``), a batch at a time."""
        def step(conn: sqlite3.Connection) -> dict[str, int]:
            cur = conn.execute("DELETE FROM history_sample WHERE id IN "
                               "(SELECT id FROM history_sample WHERE at < ? ORDER BY at LIMIT ?)", (cutoff, batch))
            return {"history_samples": cur.rowcount}

        return [*super()._retention_steps(cutoff, batch), ("history_samples", step)]


