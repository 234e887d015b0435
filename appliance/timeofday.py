"""Wall-clock times of day: quiet-hour windows and daily schedule times, in a time zone or the
appliance's local time, as epoch seconds (what the store and its clock use).

    quiet = QuietHours.parse("22:00-07:00")
    quiet.active(now)          # inside the window?
    quiet.end_after(now)       # when the window that holds ``now`` ends

    next_daily((dtime(7, 0),), after=now)   # the next 07:00

A time that a daylight-saving change skips (02:30 on the spring-forward night) is taken as the same
wall-clock reading in the offset before the change (zoneinfo's ``fold=0``), i.e. one hour later in
real time; a time that occurs twice is its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as dtime
from pathlib import Path

from appliance.frozen import frozen
from drivers.toml_reader import TableReader

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any

#: ``HH:MM``, as the configuration writes a time of day.
_CLOCK = r"\s*(\d{1,2}):(\d{2})\s*"  # compiled by re at its first use
#: Days a daily search looks ahead (a weekday filter can skip six days; DST never more than one).
_HORIZON_DAYS = 8
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Weekday names a configuration may write (``mon`` or ``monday``, any case) -> 0 (Monday) .. 6.
WEEKDAY_NAMES = {
    **{name: day for day, name in enumerate(WEEKDAYS)},
    **{name: day for day, name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                                             "sunday"))},
}


def parse_clock(value: str) -> dtime | None:
    """``"07:00"`` as a time; None if it is not ``HH:MM`` with HH < 24 and MM < 60."""
    match = re.fullmatch(_CLOCK, value)
    if match and int(match[1]) < 24 and int(match[2]) < 60:
        return dtime(int(match[1]), int(match[2]))
    return None


def _local(moment: float, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(moment, tz) if tz else datetime.fromtimestamp(moment)


def at_clock(day: date, clock: dtime, tz: tzinfo | None) -> float:
    """Epoch seconds of ``clock`` on ``day`` in ``tz`` (None: local time)."""
    return datetime.combine(day, clock, tzinfo=tz).timestamp()


@frozen
class QuietHours:
    """A daily window (``start`` inclusive, ``end`` exclusive; may cross midnight) in a time zone."""

    start: dtime
    end: dtime
    tz: tzinfo | None = None  # None: the appliance's local time

    @classmethod
    def parse(cls, value: str, tz: tzinfo | None = None) -> QuietHours | None:
        """``"22:00-07:00"`` as a window; None if it is not two ``HH:MM`` joined by ``-``."""
        start, dash, end = value.partition("-")
        first, second = parse_clock(start), parse_clock(end)
        if not dash or first is None or second is None:
            return None
        return cls(first, second, tz)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def active(self, now: float) -> bool:
        current = _local(now, self.tz).time().replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= current < self.end
        return current >= self.start or current < self.end

    def end_after(self, moment: float) -> float:
        """When the window holding ``moment`` ends (``moment`` itself when it is outside the window)."""
        if not self.active(moment):
            return moment
        day = _local(moment, self.tz).date()
        for offset in range(_HORIZON_DAYS):
            end = at_clock(day + timedelta(days=offset), self.end, self.tz)
            if end > moment:
                return end
        return moment  # unreachable: an end time comes every day


def next_daily(times: Sequence[dtime], after: float, tz: tzinfo | None = None,
               weekdays: frozenset[int] | None = None) -> float:
    """The first of ``times`` (every day, or on ``weekdays``: 0 = Monday) strictly after ``after``."""
    day = _local(after, tz).date()
    for offset in range(_HORIZON_DAYS):
        current = day + timedelta(days=offset)
        if weekdays is not None and current.weekday() not in weekdays:
            continue
        found = [moment for clock in times if (moment := at_clock(current, clock, tz)) > after]
        if found:
            return min(found)
    raise ValueError("no occurrence within a week (empty times or weekdays)")


def last_daily(times: Sequence[dtime], at_or_before: float, tz: tzinfo | None = None,
               weekdays: frozenset[int] | None = None) -> float:
    """The last of ``times`` (as for :func:`next_daily`) at or before ``at_or_before``."""
    day = _local(at_or_before, tz).date()
    for offset in range(_HORIZON_DAYS):
        current = day - timedelta(days=offset)
        if weekdays is not None and current.weekday() not in weekdays:
            continue
        found = [moment for clock in times if (moment := at_clock(current, clock, tz)) <= at_or_before]
        if found:
            return max(found)
    raise ValueError("no occurrence within a week (empty times or weekdays)")


# --- configuration --------------------------------------------------------------------------


@frozen
class QuietPolicy:
    """``[quiet_hours]``: the window, and whether it holds every channel's non-critical messages
    until it ends (``hold = true``) or only drops non-critical alerts (the default)."""

    hours: QuietHours
    hold: bool = False


def read_quiet_hours(file: str | Path, raw: Mapping[str, Any]) -> QuietPolicy | None:
    """``[quiet_hours]`` of a configuration document (None: no such table); ``ConfigError`` names the key."""
    from appliance.config import ConfigError

    if "quiet_hours" not in raw:
        return None
    reader = TableReader(file, "quiet_hours", raw["quiet_hours"], ("start", "end", "timezone", "hold"),
                         error=ConfigError)
    start, end = (_read_clock(reader, name) for name in ("start", "end"))
    return QuietPolicy(QuietHours(start, end, read_timezone(reader, "timezone")), reader.boolean("hold", False))


def _read_clock(reader: TableReader, name: str) -> dtime:
    value = reader.string(name, None, required=True, what="a time of day like \"22:00\"")
    clock = parse_clock(value or "")
    if clock is None:
        raise reader.error(name, f"must be a time of day like \"22:00\", not {value!r}")
    return clock


def read_timezone(reader: TableReader, name: str) -> tzinfo | None:
    """An optional time zone name (``"Europe/Berlin"``); None: the appliance's local time."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    tz_name = reader.string(name, None, empty=True, what="a time zone name like \"Europe/Berlin\"")
    if not tz_name:
        return None
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise reader.error(name, f"unknown time zone {tz_name!r}") from None
