"""The opt-out list (STOP / START): the one check every channel's messages pass."""

from __future__ import annotations

import json
from collections.abc import Sequence

from appliance.store_base import StoreBase
from appliance.store_types import CRITICAL, OptedOut, OutboundRequest, same_number

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any


class OptOutList(StoreBase):
    # --- opt-outs (STOP / START) -------------------------------------------------------------

    def check_optout(self, requests: Sequence[OutboundRequest], listed: Sequence[str] | None = None) -> None:
        """Raise ``OptedOut`` for the first non-critical request to a number on the opt-out list
        (``listed``: the list as ``optout_numbers`` read it, for a batch of checks; else read here).

        The one opt-out check: ``enqueue`` calls it for every channel (CLI, rules, replies), and the
        intake calls it per request first, to answer that request alone with the error.
        """
        candidates = [r.to for r in requests if r.priority != CRITICAL]
        if not candidates:
            return
        numbers = self.optout_numbers() if listed is None else listed
        for to in candidates:
            if any(same_number(to, number) for number in numbers):
                raise OptedOut(to)

    def optout_numbers(self) -> list[str]:
        """The numbers on the opt-out list, as written."""
        return [row[0] for row in self._conn.execute("SELECT number FROM optout")]

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
