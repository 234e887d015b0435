"""Per-source daily caps (``[sources."<source>"] daily_cap = N``): which cap applies to a source,
how much of it is used today, and the check every channel makes before it queues messages."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping
from pathlib import Path

from appliance.config import ConfigError
from appliance.frozen import field, frozen
from appliance.store_types import GATEWAY_SOURCE
from drivers.toml_reader import TableReader

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any

    from appliance.store_cli import QueueStore


class DailyCapExceeded(ValueError):
    """A source has used its daily cap; nothing of the request was queued."""

    def __init__(self, source: str, cap: int, used: int, wanted: int, key: str | None = None) -> None:
        self.source, self.cap, self.used, self.wanted = source, cap, used, wanted
        self.key = source if key is None else key  # the source, or the shared key ("mqtt") counted
        more = f", {wanted} more refused" if wanted != 1 else ""
        shared = f" (request from {source!r})" if self.key != source else ""
        super().__init__(
            f"daily cap of {cap} messages for source {self.key!r} reached ({used} accepted today{more})"
            f"{shared}"
        )


@frozen
class DailyCaps:
    """The ``[sources]`` table: source (or fnmatch pattern) -> messages a day."""

    caps: Mapping[str, int] = field(default_factory=dict)

    def cap_for(self, source: str) -> int | None:
        key = self.cap_key(source)
        return None if key is None else self.caps[key]

    def cap_key(self, source: str) -> str | None:
        """The ``[sources]`` key whose cap applies to ``source``: its own key, else the first matching
        pattern, else (for ``mqtt:<name>``) ``mqtt``, whose cap is then shared by every MQTT source
        without a cap of its own. The gateway's own alerts (``GATEWAY_SOURCE``, ``self``): only their own
        key, so a pattern (``"*"``) or the ``mqtt`` cap meant for clients never silences them."""
        if source in self.caps:
            return source
        if source == GATEWAY_SOURCE:
            return None
        for pattern in self.caps:
            if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(source, pattern):
                return pattern
        if source.startswith("mqtt:") and "mqtt" in self.caps:
            return "mqtt"
        return None

    def cap_used(self, key: str, usage: Mapping[str, Mapping[str, int]], source: str) -> int:
        """Messages counted against the cap ``key`` for ``source`` in ``usage`` (``Store.source_usage``):
        a pattern caps each source on its own, ``mqtt`` counts every source it covers."""
        if key == "mqtt":
            return sum(u.get("accepted", 0) for s, u in usage.items() if self.cap_key(s) == "mqtt")
        return int(usage.get(source, {}).get("accepted", 0))


def parse_caps(file: Path | str, raw: Mapping[str, Any]) -> DailyCaps:
    """The ``[sources]`` table of the TOML document ``raw``: ``source = { daily_cap = N }``."""
    table = raw.get("sources", {})
    if not isinstance(table, dict):
        raise ConfigError(file, "sources", "must be a table of source = { daily_cap = N }")
    caps: dict[str, int] = {}
    for source, settings in table.items():
        reader = TableReader(file, f"sources.{source}", settings, ("daily_cap",), error=ConfigError)
        cap = reader.integer("daily_cap", None)
        if cap is not None:
            if cap < 0:
                raise reader.error("daily_cap", f"must be 0 or more, not {cap}")
            caps[source] = cap
    return DailyCaps(caps)


def check_daily_cap(caps: DailyCaps, store: QueueStore, source: str, count: int = 1,
                    now: float | None = None) -> None:
    """Raise :class:`DailyCapExceeded` if queuing ``count`` more messages for ``source`` would pass
    its daily cap (``[sources."<source>"] daily_cap``; keys may be patterns like ``"alert:*"``)."""
    CapTally(caps, store, now).charge(source, count)


class CapTally:
    """Daily caps for several batches committed together: the usage is read once and every
    :meth:`charge` adds to it, so the batches cannot together pass a cap."""

    def __init__(self, caps: DailyCaps, store: QueueStore, now: float | None = None) -> None:
        from appliance.store import local_midnight  # the store module is heavy; the caps' users have it

        self.caps = caps
        now = time.time() if now is None else now
        self.usage: dict[str, dict[str, int]] = store.source_usage(local_midnight(now)) if caps.caps else {}

    def check(self, source: str, count: int = 1) -> None:
        """Raise :class:`DailyCapExceeded` if ``count`` more messages for ``source`` pass its cap."""
        key = self.caps.cap_key(source)
        if key is None:
            return
        cap = self.caps.caps[key]
        used = self.caps.cap_used(key, self.usage, source)
        if used + count > cap:
            # a pattern caps each source on its own: name the source; the mqtt cap is shared
            raise DailyCapExceeded(source, cap, used, count, key if key == "mqtt" else None)

    def charge(self, source: str, count: int = 1) -> None:
        """:meth:`check`, then count the ``count`` messages as accepted."""
        self.check(source, count)
        entry = self.usage.setdefault(source, {"accepted": 0, "sent": 0})
        entry["accepted"] = entry.get("accepted", 0) + count
