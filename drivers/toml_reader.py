"""Typed reading of TOML tables with errors that name the file, the key and the reason.

One reader for every TOML file smsgw reads (the configuration, the modem profiles): a
:class:`TableReader` checks the keys of one table (an unknown key is an error, with a "did you mean"
hint), and its methods read one key each, checking its type and range. Errors are made by the
caller's ``error(file, key, reason)`` factory, so the configuration raises ``ConfigError`` and the
profiles ``ProfileError``; the reasons read the same everywhere ("must be an integer, not a string
('5')", "must be at least 1, not 0", "is required").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any

#: Makes the caller's exception from (file, key, reason).
ErrorFactory = Callable[[Path, str, str], Exception]

_TYPE_NAMES: dict[type, str] = {
    bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array", dict: "a table",
}
_DURATION = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d)?\s*$"  # compiled by re at its first use
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def type_name(value: object) -> str:
    """``"an integer"``, ``"a table"``...: the TOML name of ``value``'s type, for error messages."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'host'?)`` when ``name`` is close to one of ``known``, else ``""``."""
    import difflib  # only on an error: the CLI starts without it

    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"``."""
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds or a duration like '10m', not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := re.match(_DURATION, value)):
        seconds = float(match[1]) * _UNITS[match[2]]
    else:
        raise ValueError(f"must be a number of seconds or a duration like '90s', '10m', '2h', not {value!r}")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"must be a finite duration of 0 or more, not {value!r}")
    return seconds


class TableReader:
    """Reads the keys of one TOML table; unknown keys are refused when it is made.

    ``prefix`` is the table's dotted key (``"mqtt"``, ``"modems[1]"``, ``""`` for the document);
    ``key_kind`` names what the keys are in the unknown-key error (``"unknown timeout"``);
    ``required_reason`` is the reason given for a required key that is absent.
    """

    def __init__(self, file: Path | str, prefix: str, table: object, known: Iterable[str], *,
                 error: ErrorFactory, key_kind: str = "key", required_reason: str = "is required") -> None:
        self.file = Path(file)
        self.prefix = prefix
        self.known = tuple(known)
        self.make_error = error
        self.required_reason = required_reason
        if not isinstance(table, dict):
            raise error(self.file, prefix, f"must be a table, not {type_name(table)}")
        self.table: dict[str, Any] = table
        for name in table:
            if name not in self.known:
                raise self.error(name, f"unknown {key_kind}{did_you_mean(name, self.known)}; "
                                       f"known {key_kind}s: {', '.join(self.known)}")

    def key(self, name: str) -> str:
        """The dotted key of ``name`` in this table."""
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, reason: str) -> Exception:
        """The caller's error for key ``name`` of this table."""
        return self.make_error(self.file, self.key(name), reason)

    def has(self, name: str) -> bool:
        return name in self.table

    def sub(self, name: str, known: Iterable[str], **options: Any) -> TableReader:
        """A reader of the table at key ``name`` (an empty one when it is absent)."""
        return TableReader(self.file, self.key(name), self.table.get(name, {}), known, error=self.make_error,
                           **options)

    def _absent(self, name: str, required: bool) -> bool:
        if name in self.table:
            return False
        if required:
            raise self.error(name, self.required_reason)
        return True

    def typed(self, name: str, types: tuple[type, ...], what: str) -> Any:
        """The value of ``name`` (present), which must be one of ``types``: "must be WHAT, not ..."."""
        value = self.table[name]
        if isinstance(value, bool) and bool not in types:
            raise self.error(name, f"must be {what}, not a boolean")
        if not isinstance(value, types):
            raise self.error(name, f"must be {what}, not {type_name(value)} ({value!r})")
        return value

    def string(self, name: str, default: str | None = None, *, required: bool = False, empty: bool = False,
               what: str = "a string") -> str | None:
        if self._absent(name, required):
            return default
        value: str = self.typed(name, (str,), what)
        if not empty and not value.strip():
            raise self.error(name, "must not be empty")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        if self._absent(name, False):
            return default
        return bool(self.typed(name, (bool,), "true or false"))

    def integer(self, name: str, default: int | None, *, minimum: int | None = None,
                maximum: int | None = None, required: bool = False, what: str = "an integer") -> int | None:
        if self._absent(name, required):
            return default
        value: int = self.typed(name, (int,), what)
        self._range(name, value, minimum, maximum)
        return value

    def number(self, name: str, default: float | None, *, minimum: float | None = None,
               positive: bool = False) -> float | None:
        if self._absent(name, False):
            return default
        value = float(self.typed(name, (int, float), "a number"))
        if value != value or value in (float("inf"), float("-inf")):
            raise self.error(name, "must be a finite number")
        if positive and value <= 0:
            raise self.error(name, f"must be greater than 0, not {value:g}")
        self._range(name, value, minimum, None)
        return value

    def seconds(self, name: str, default: float | None = None, *, positive: bool = False) -> float:
        """A number of seconds (not a duration string): more than 0 if ``positive``, else 0 or more."""
        what = "a positive number of seconds" if positive else "a non-negative number of seconds"
        if self._absent(name, default is None):
            assert default is not None
            return default
        value = self.typed(name, (int, float), what)
        if value < 0 or (positive and value == 0) or value != value or value == float("inf"):
            raise self.error(name, f"must be {what}, not {value!r}")
        return float(value)

    def duration(self, name: str, default: float | None) -> float | None:
        """Seconds from a number or a duration string (:func:`parse_duration`)."""
        if self._absent(name, False):
            return default
        try:
            return parse_duration(self.table[name])
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def _range(self, name: str, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be at least {minimum:g}, not {value:g}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be at most {maximum:g}, not {value:g}")

    def strings(self, name: str, default: Iterable[str] = (), *, empty: bool = False) -> tuple[str, ...]:
        """An array of strings (each non-empty unless ``empty``); ``default`` when absent."""
        if self._absent(name, False):
            return tuple(default)
        value = self.typed(name, (list,), "an array of strings")
        for index, item in enumerate(value):
            if not isinstance(item, str) or (not empty and not item.strip()):
                what = "a string" if empty else "a non-empty string"
                raise self.make_error(self.file, f"{self.key(name)}[{index}]", f"must be {what}, not {item!r}")
        return tuple(value)

    def choices(self, name: str, known: Sequence[str], what: str, *, hint: bool = True) -> tuple[str, ...]:
        """An array of strings (see ``strings``), each one of ``known``: the first that is not is
        named by its index, "unknown WHAT 'x' (did you mean …?); known: …" (the hint with ``hint``)."""
        values = self.strings(name)
        for index, value in enumerate(values):
            if value not in known:
                near = did_you_mean(value, known) if hint else ""
                raise self.make_error(self.file, f"{self.key(name)}[{index}]",
                                      f"unknown {what} {value!r}{near}; known: {', '.join(known)}")
        return values

    def regexes(self, name: str, default: Iterable[str] = ()) -> tuple[str, ...]:
        """An array of regular expressions, each compiled once to check it."""
        patterns = self.strings(name, default, empty=True)
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise self.error(name, f"bad regular expression {pattern!r}: {exc}") from None
        return patterns

    def table_at(self, name: str) -> dict[str, Any]:
        """The table at key ``name`` as it is (``{}`` when absent)."""
        if self._absent(name, False):
            return {}
        value: dict[str, Any] = self.typed(name, (dict,), "a table")
        return value

    def path(self, name: str, *, required: bool = False) -> Path | None:
        """A file path; a relative one is taken relative to the file's directory."""
        value = self.string(name, required=required)
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = self.file.parent / path
        return path
