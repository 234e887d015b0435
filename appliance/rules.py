"""Alert rules (MQTT → SMS) and command rules (SMS → MQTT), and per-source daily caps.

Alert rules (``[[alerts]]``): a message on a topic matching the rule's filter (``+`` and ``#``) becomes
an SMS to the rule's recipients (numbers, contacts, groups), its text rendered from a template that
can use topic segments (``{topic[1]}``) and JSON payload fields (``{payload.temperature}`` or just
``{temperature}``). Per rule and topic, a cooldown keeps one SMS per window; alerts that arrive
during the window are coalesced into one summary at its end ("… and 14 more alerts from freezer-3 in
the last 10 min"). Quiet hours let only ``critical`` alerts through; a recipient who sent STOP gets
only critical alerts until START.

Command rules (``[[commands]]``): an SMS from a listed sender that matches the rule's pattern (named
groups) publishes a rendered payload on a rendered topic and replies by SMS, with fixed text or with
the first message on a reply topic within a timeout. A rule may demand a PIN as the first word of
the message; wrong PINs lock the sender out for a while. HELP, STATUS, STOP and START are built in.
Messages from senders that appear nowhere in the configuration execute nothing and are audited.

Templates are not ``str.format``: only ``{name}``, ``{name.field}``, ``{name[index]}``, an optional
``|upper`` / ``|lower`` / ``|title`` filter and a format spec (``{temperature:.1f}``) are understood, so
a payload can never reach Python attributes. A value that is missing renders as ``?``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import hashlib
import hmac
import inspect
import json
import logging
import re
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from datetime import time as dtime
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.config import ConfigError
from appliance.numbers import check_destination, normalise
from appliance.payload import PayloadError, load_json
from appliance.store import CRITICAL, PRIORITIES, OptedOut, OutboundRequest, local_midnight, same_number
from drivers.pdu import count_parts

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.store import ReceivedMessage, Store

LOG = logging.getLogger(__name__)

#: What a template renders for a value that is not there.
MISSING = "?"
#: Wrong PINs (per sender) before a lockout, and the lockout in seconds.
DEFAULT_PIN_ATTEMPTS = 3
DEFAULT_PIN_LOCKOUT = 900.0
#: Seconds within which an identical (topic, payload) delivery counts as a copy of the first.
DUPLICATE_WINDOW = 1.0
#: Seconds a command waits for the first message on its reply topic.
DEFAULT_REPLY_TIMEOUT = 10.0
DEFAULT_SUMMARY = "{last} (and {more} more alerts from {label} in the last {minutes} min)"
DEFAULT_TIMEOUT_REPLY = "No answer on {reply_topic} within {timeout} s"
DEFAULT_UNKNOWN_REPLY = "Unknown command. Send HELP for the list."
BUILTINS = ("HELP", "STATUS", "STOP", "START")

STATE_PIN = "pin_failures"
STATE_COOLDOWN = "cooldown"


class RulesError(Exception):
    """Base class of rule errors at run time."""


class DailyCapExceeded(RulesError, ValueError):
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


# --- topic filters --------------------------------------------------------------------------


def topic_filter_error(topic_filter: str) -> str | None:
    """Why ``topic_filter`` is not a valid MQTT subscription filter, or None."""
    if not isinstance(topic_filter, str) or topic_filter == "":
        return "must be a non-empty topic filter"
    if "\0" in topic_filter:
        return "must not contain a NUL character"
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the subscription filter (``+`` one level, ``#`` the rest).

    As in MQTT, wildcards at the first level do not match topics starting with ``$``.
    """
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def filter_covers(wide: str, narrow: str) -> bool:
    """Whether every topic matching ``narrow`` also matches ``wide``."""
    wide_levels, narrow_levels = wide.split("/"), narrow.split("/")
    for index, level in enumerate(wide_levels):
        if level == "#":
            return not (index == 0 and narrow_levels[0].startswith("$"))
        if index >= len(narrow_levels):
            return False
        other = narrow_levels[index]
        if other == "#":
            return False
        if level == "+":
            if index == 0 and other.startswith("$"):
                return False
            continue
        if level != other:
            return False
    return len(wide_levels) == len(narrow_levels)


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both subscription filters."""
    a_levels, b_levels = a.split("/"), b.split("/")
    for index in range(max(len(a_levels), len(b_levels))):
        x = a_levels[index] if index < len(a_levels) else None
        y = b_levels[index] if index < len(b_levels) else None
        if x == "#" or y == "#":
            other = y if x == "#" else x
            return not (index == 0 and other is not None and other.startswith("$"))
        if x is None or y is None:
            return False
        if x == "+" or y == "+":
            if index == 0 and (x if y == "+" else y).startswith("$"):
                return False
            continue
        if x != y:
            return False
    return True


def cover_filters(filters: Iterable[str]) -> list[str]:
    """The filters not covered by another one: subscribing to these receives every message once
    per client (overlapping subscriptions make a broker deliver one copy per subscription)."""
    unique = list(dict.fromkeys(filters))
    return [f for f in unique if not any(g != f and filter_covers(g, f) for g in unique)]


def _is_publish_topic(topic: str) -> bool:
    return bool(topic) and not any(ch in topic for ch in "+#\0")


#: Characters a placeholder value that lands in an MQTT topic may not hold: a level separator or a
#: wildcard would let the sender of an SMS choose the topic (``SET ../../smsgw/send 1``).
TOPIC_VALUE_FORBIDDEN = "/+#\0"


def bad_topic_value(value: str) -> str | None:
    """Why ``value`` may not fill a placeholder in a topic (None if it may)."""
    if value in ("", ".", ".."):
        return "is empty" if value == "" else f"is {value!r}"
    for char in TOPIC_VALUE_FORBIDDEN:
        if char in value:
            return "contains NUL" if char == "\0" else f"contains {char!r}"
    return None


# --- templates ------------------------------------------------------------------------------


class TemplateError(ValueError):
    """A template that does not parse; the message names the position."""


_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_PLACEHOLDER = re.compile(
    rf"(?P<root>{_NAME})(?P<path>(?:\.{_NAME}|\.\d+|\[-?\d+\])*)"
    r"(?:\|(?P<filter>upper|lower|title))?(?::(?P<spec>[^{}]*))?"
)
_ACCESSOR = re.compile(rf"\.(?P<attr>{_NAME}|\d+)|\[(?P<index>-?\d+)\]")
_FILTERS: dict[str, Callable[[str], str]] = {"upper": str.upper, "lower": str.lower, "title": str.title}


@dataclass(frozen=True)
class _Field:
    root: str
    path: tuple[str | int, ...]
    filter: str | None
    spec: str | None
    source: str


class Topic:
    """A topic in a template context: ``{topic}`` is the whole topic, ``{topic[1]}`` a level."""

    __slots__ = ("levels", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.levels = text.split("/")

    def __str__(self) -> str:
        return self.text


class Payload:
    """A message payload in a template context: ``{payload}`` is the text, ``{payload.x}`` a JSON field."""

    __slots__ = ("data", "text")

    def __init__(self, raw: bytes | str) -> None:
        self.text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        try:
            self.data: Any = load_json(self.text)
        except PayloadError:
            self.data = None

    def fields(self) -> dict[str, Any]:
        return dict(self.data) if isinstance(self.data, dict) else {}

    def __str__(self) -> str:
        return self.text


class Template:
    """A parsed text template (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pieces: list[str | _Field] = []
        i, literal = 0, []
        while i < len(text):
            ch = text[i]
            if ch == "{" and text.startswith("{{", i):
                literal.append("{")
                i += 2
            elif ch == "}" and text.startswith("}}", i):
                literal.append("}")
                i += 2
            elif ch == "}":
                raise TemplateError(f"single '}}' at position {i} (write '}}}}' for a literal brace)")
            elif ch == "{":
                end = text.find("}", i)
                if end < 0:
                    raise TemplateError(f"'{{' at position {i} is never closed")
                inner = text[i + 1:end]
                match = _PLACEHOLDER.fullmatch(inner)
                if match is None:
                    raise TemplateError(
                        f"{{{inner}}} at position {i} is not a placeholder (use {{name}}, {{name.field}}, "
                        "{name[0]}, {name|upper}, {name:.1f})"
                    )
                path: list[str | int] = []
                for acc in _ACCESSOR.finditer(match["path"] or ""):
                    if acc["index"] is not None:
                        path.append(int(acc["index"]))
                    else:
                        attr = acc["attr"]
                        path.append(int(attr) if attr.isdigit() else attr)
                if literal:
                    self.pieces.append("".join(literal))
                    literal = []
                self.pieces.append(_Field(match["root"], tuple(path), match["filter"], match["spec"], inner))
                i = end + 1
            else:
                literal.append(ch)
                i += 1
        if literal:
            self.pieces.append("".join(literal))

    @property
    def names(self) -> set[str]:
        """The root names the template uses."""
        return {piece.root for piece in self.pieces if isinstance(piece, _Field)}

    def render(self, context: Mapping[str, Any]) -> str:
        return self.render_checked(context)[0]

    def check_topic_values(self, context: Mapping[str, Any]) -> str | None:
        """For a topic template: what is wrong with the first placeholder whose value may not fill a
        topic level (see :func:`bad_topic_value`), e.g. ``"{device} contains '/'"``; None if all may."""
        for piece in self.pieces:
            if isinstance(piece, _Field):
                found, value = _resolve(context, piece)
                if not found:
                    continue
                text = _format(value, piece.spec)
                if piece.filter:
                    text = _FILTERS[piece.filter](text)
                problem = bad_topic_value(text)
                if problem is not None:
                    return f"{{{piece.source}}} {problem}"
        return None

    def render_checked(self, context: Mapping[str, Any]) -> tuple[str, list[str]]:
        """The text and the placeholders that had no value (rendered as ``?``)."""
        out: list[str] = []
        missing: list[str] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
                continue
            found, value = _resolve(context, piece)
            if not found:
                missing.append(piece.source)
                out.append(MISSING)
                continue
            text = _format(value, piece.spec)
            if piece.filter:
                text = _FILTERS[piece.filter](text)
            out.append(text)
        return "".join(out), missing

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def _resolve(context: Mapping[str, Any], piece: _Field) -> tuple[bool, Any]:
    if piece.root not in context:
        return False, None
    value = context[piece.root]
    for step in piece.path:
        if isinstance(value, Topic):
            value = value.levels
        elif isinstance(value, Payload):
            value = value.data
        if isinstance(value, dict) and str(step) in value:
            value = value[str(step)]
        elif isinstance(value, list) and isinstance(step, int) and -len(value) <= step < len(value):
            value = value[step]
        else:
            return False, None
    if value is None and piece.path:
        return True, None
    return True, value


def _format(value: Any, spec: str | None) -> str:
    if isinstance(value, Topic | Payload):
        value = str(value)
    if spec:
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            pass
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def alert_context(topic: str, payload: bytes | str, rule: str = "") -> dict[str, Any]:
    """The names an alert text can use: payload fields, ``topic``, ``payload``, ``rule``."""
    body = Payload(payload)
    context: dict[str, Any] = body.fields()
    context.update(topic=Topic(topic), payload=body, rule=rule)
    return context


# --- durations and quiet hours --------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|d)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"``."""
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds or a duration like '10m', not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match[1]) * _UNITS[match[2]]
    else:
        raise ValueError(f"must be a number of seconds or a duration like '90s', '10m', '2h', not {value!r}")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"must be a finite duration of 0 or more, not {value!r}")
    return seconds


def _clock_time(value: object) -> dtime:
    if isinstance(value, dtime):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*", value)
        if match and int(match[1]) < 24 and int(match[2]) < 60:
            return dtime(int(match[1]), int(match[2]))
    raise ValueError(f"must be a time of day like \"22:00\", not {value!r}")


@dataclass(frozen=True)
class QuietHours:
    """A daily window (``start`` inclusive, ``end`` exclusive; may cross midnight) in a time zone."""

    start: dtime
    end: dtime
    tz: tzinfo | None = None  # None: the appliance's local time

    def active(self, now: float) -> bool:
        moment = datetime.fromtimestamp(now, self.tz) if self.tz else datetime.fromtimestamp(now)
        current = moment.time().replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= current < self.end
        return current >= self.start or current < self.end


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertRule:
    name: str
    topic: str
    to: tuple[str, ...]  # normalised numbers, resolved from numbers, contacts and groups
    text: Template
    cooldown: float = 0.0
    label: Template = field(default_factory=lambda: Template("{topic}"))
    summary: Template = field(default_factory=lambda: Template(DEFAULT_SUMMARY))
    priority: str = "normal"
    critical: bool = False
    valid_for: float | None = None

    @property
    def source(self) -> str:
        return f"alert:{self.name}"


@dataclass(frozen=True)
class CommandRule:
    name: str
    pattern: re.Pattern[str]
    senders: tuple[str, ...] | None  # normalised numbers; None: any listed sender ("*")
    topic: Template
    payload: Template
    qos: int = 1
    retain: bool = False
    pin: str | None = None
    pin_attempts: int = DEFAULT_PIN_ATTEMPTS
    pin_lockout: float = DEFAULT_PIN_LOCKOUT
    reply: Template | None = None
    reply_topic: Template | None = None
    reply_timeout: float = DEFAULT_REPLY_TIMEOUT
    timeout_reply: Template = field(default_factory=lambda: Template(DEFAULT_TIMEOUT_REPLY))
    help: str = ""

    @property
    def source(self) -> str:
        return f"command:{self.name}"

    def reply_filter(self) -> str | None:
        """The subscription filter covering every rendering of ``reply_topic``."""
        if self.reply_topic is None:
            return None
        levels = []
        for level in _split_template_levels(self.reply_topic):
            levels.append("+" if any(isinstance(p, _Field) for p in level) else "".join(map(str, level)))
        return "/".join(levels)


def _split_template_levels(template: Template) -> list[list[str | _Field]]:
    levels: list[list[str | _Field]] = [[]]
    for piece in template.pieces:
        if isinstance(piece, str):
            parts = piece.split("/")
            levels[-1].append(parts[0])
            for part in parts[1:]:
                levels.append([part])
        else:
            levels[-1].append(piece)
    return [[p for p in level if p != ""] for level in levels]


@dataclass(frozen=True)
class RulesConfig:
    alerts: tuple[AlertRule, ...] = ()
    commands: tuple[CommandRule, ...] = ()
    contacts: dict[str, str] = field(default_factory=dict)  # name -> normalised number
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> normalised numbers
    caps: dict[str, int] = field(default_factory=dict)  # source (or fnmatch pattern) -> daily cap
    quiet_hours: QuietHours | None = None
    unknown_reply: str | None = DEFAULT_UNKNOWN_REPLY
    builtins: bool = True

    def listed(self) -> set[str]:
        """Every number the configuration names: contacts, group members, alert recipients, senders."""
        numbers = set(self.contacts.values())
        for members in self.groups.values():
            numbers.update(members)
        for alert in self.alerts:
            numbers.update(alert.to)
        for command in self.commands:
            numbers.update(command.senders or ())
        return numbers

    def contact_name(self, number: str) -> str | None:
        for name, contact in self.contacts.items():
            if same_number(contact, number):
                return name
        return None

    def cap_for(self, source: str) -> int | None:
        key = self.cap_key(source)
        return None if key is None else self.caps[key]

    def cap_key(self, source: str) -> str | None:
        """The ``[sources]`` key whose cap applies to ``source``: its own key, else the first matching
        pattern, else (for ``mqtt:<name>``) ``mqtt``, whose cap is then shared by every MQTT source
        without a cap of its own."""
        if source in self.caps:
            return source
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


class _Reader:
    """Reads one TOML table for rule validation; unknown keys are errors."""

    def __init__(self, file: str, key: str, table: object, known: Iterable[str]) -> None:
        self.file, self.key = file, key
        if not isinstance(table, dict):
            raise ConfigError(file, key, f"must be a table, not {type(table).__name__}")
        self.table: dict[str, Any] = table
        self.known = tuple(known)
        for name in table:
            if name not in self.known:
                import difflib

                close = difflib.get_close_matches(name, self.known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(name, f"unknown key{hint}; known keys: {', '.join(self.known)}")

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.file, f"{self.key}.{name}" if self.key else name, reason)

    def get(self, name: str, types: type | tuple[type, ...], what: str, default: Any = None,
            required: bool = False) -> Any:
        if name not in self.table:
            if required:
                raise self.error(name, "is required")
            return default
        value = self.table[name]
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.error(name, f"must be {what}, not a boolean")
        if not isinstance(value, types):
            raise self.error(name, f"must be {what}, not {value!r}")
        if isinstance(value, str) and not value.strip() and required:
            raise self.error(name, "must not be empty")
        return value

    def template(self, name: str, default: str | None = None, *, required: bool = False,
                 allowed: set[str] | None = None) -> Template | None:
        text = self.get(name, str, "a text template", default, required)
        if text is None:
            return None
        try:
            template = Template(text)
        except TemplateError as exc:
            raise self.error(name, str(exc)) from None
        if allowed is not None:
            unknown = sorted(template.names - allowed)
            if unknown:
                raise self.error(name, f"unknown name {unknown[0]!r} in template; known: "
                                       f"{', '.join(sorted(allowed))}")
        return template

    def duration(self, name: str, default: float | None) -> float | None:
        if name not in self.table:
            return default
        try:
            return parse_duration(self.table[name])
        except ValueError as exc:
            raise self.error(name, str(exc)) from None


Normaliser = Callable[[str], str]


def _recipients(reader: _Reader, name: str, values: object, contacts: Mapping[str, str],
                groups: Mapping[str, tuple[str, ...]], normalise_number: Normaliser,
                *, allow_star: bool = False) -> tuple[str, ...] | None:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values:
        raise reader.error(name, "must be a name or number, or a non-empty array of them")
    numbers: list[str] = []
    for index, value in enumerate(values):
        key = f"{reader.key}.{name}[{index}]"
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(reader.file, key, f"must be a non-empty string, not {value!r}")
        value = value.strip()
        if value == "*" and allow_star:
            return None
        if value in groups:
            numbers.extend(groups[value])
        elif value in contacts:
            numbers.append(contacts[value])
        elif value[:1] in "+0123456789":
            try:
                numbers.append(normalise_number(value))
            except ValueError as exc:
                raise ConfigError(reader.file, key, str(exc)) from None
        else:
            known = sorted(set(contacts) | set(groups))
            raise ConfigError(reader.file, key, f"{value!r} is not a contact, a group or a number"
                              + (f"; known names: {', '.join(known)}" if known else ""))
    return tuple(dict.fromkeys(numbers))


def validate_rules(config: Config) -> RulesConfig:
    """Validate ``[contacts]``, ``[groups]``, ``[[alerts]]``, ``[[commands]]``, ``[sources]``,
    ``[quiet_hours]`` (and ``[rules]`` if present) of ``config.raw``; raise ``ConfigError``."""

    def normalise_number(number: str) -> str:
        return check_destination(number, config.numbers)

    mqtt = getattr(config, "mqtt", None)
    base_topic = str(getattr(mqtt, "base_topic", "smsgw") or "smsgw")
    return validate_rules_table(config.raw, str(config.path), normalise_number, base_topic=base_topic)


def validate_rules_table(raw: Mapping[str, Any], file: str = "config",
                         normalise_number: Normaliser | None = None, *,
                         base_topic: str = "smsgw") -> RulesConfig:
    """:func:`validate_rules` on a TOML document (``normalise_number`` defaults to E.164 only)."""
    request_filters = (f"{base_topic}/send", f"{base_topic}/send/+")

    def overlap_error(topic_filter: str) -> str | None:
        # A broker delivers one copy of a message per matching subscription of a client (MQTT 5):
        # a rule filter that also matches the bridge's request topics would queue requests twice.
        for request_filter in request_filters:
            if filters_overlap(topic_filter, request_filter):
                return (f"{topic_filter!r} also matches the gateway's request topic {request_filter!r}; "
                        "the broker would deliver each request twice (once per subscription): "
                        "narrow the filter")
        return None

    if normalise_number is None:
        def normalise_number(number: str) -> str:
            return normalise(number)

    contacts: dict[str, str] = {}
    table = raw.get("contacts", {})
    if not isinstance(table, dict):
        raise ConfigError(file, "contacts", "must be a table of name = \"number\"")
    for name, number in table.items():
        if not isinstance(number, str):
            raise ConfigError(file, f"contacts.{name}", f"must be a phone number string, not {number!r}")
        if name in BUILTINS or name == "*":
            raise ConfigError(file, f"contacts.{name}", "is a reserved name")
        try:
            contacts[name] = normalise_number(number)
        except ValueError as exc:
            raise ConfigError(file, f"contacts.{name}", str(exc)) from None

    groups: dict[str, tuple[str, ...]] = {}
    table = raw.get("groups", {})
    if not isinstance(table, dict):
        raise ConfigError(file, "groups", "must be a table of name = [contacts or numbers]")
    for name, members in table.items():
        if name in contacts:
            raise ConfigError(file, f"groups.{name}", f"{name!r} is already a contact name")
        reader = _Reader(file, "groups", {name: members}, (name,))
        resolved = _recipients(reader, name, members, contacts, {}, normalise_number)
        groups[name] = resolved or ()

    alerts: list[AlertRule] = []
    table = raw.get("alerts", [])
    if not isinstance(table, list):
        raise ConfigError(file, "alerts", "must be an array of tables ([[alerts]])")
    names: set[str] = set()
    for index, item in enumerate(table):
        reader = _Reader(file, f"alerts[{index}]", item, (
            "name", "topic", "to", "text", "cooldown", "label", "summary", "priority", "critical",
            "valid_for"))
        name = reader.get("name", str, "a string", f"alert{index + 1}")
        if name in names:
            raise reader.error("name", f"{name!r} is used by another alert rule")
        names.add(name)
        topic = reader.get("topic", str, "a topic filter", required=True)
        if (reason := topic_filter_error(topic) or overlap_error(topic)) is not None:
            raise reader.error("topic", reason)
        if "to" not in item:
            raise reader.error("to", "is required")
        to = _recipients(reader, "to", item["to"], contacts, groups, normalise_number) or ()
        text = reader.template("text", required=True)
        priority = reader.get("priority", str, "high, normal or low", "normal")
        if priority not in PRIORITIES:
            raise reader.error("priority", f"must be one of {', '.join(PRIORITIES)}, not {priority!r}")
        summary_names = {"last", "count", "more", "label", "minutes", "rule", "topic"}
        alerts.append(AlertRule(
            name=name, topic=topic, to=to, text=text or Template(""),
            cooldown=reader.duration("cooldown", 0.0) or 0.0,
            label=reader.template("label", "{topic}") or Template("{topic}"),
            summary=reader.template("summary", DEFAULT_SUMMARY, allowed=summary_names) or Template(""),
            priority=priority, critical=reader.get("critical", bool, "true or false", False),
            valid_for=reader.duration("valid_for", None),
        ))

    commands: list[CommandRule] = []
    table = raw.get("commands", [])
    if not isinstance(table, list):
        raise ConfigError(file, "commands", "must be an array of tables ([[commands]])")
    names = set()
    for index, item in enumerate(table):
        reader = _Reader(file, f"commands[{index}]", item, (
            "name", "pattern", "senders", "topic", "payload", "qos", "retain", "pin", "pin_attempts",
            "pin_lockout", "reply", "reply_topic", "reply_timeout", "timeout_reply", "help",
            "ignore_case"))
        name = reader.get("name", str, "a string", f"command{index + 1}")
        if name in names:
            raise reader.error("name", f"{name!r} is used by another command rule")
        names.add(name)
        source = reader.get("pattern", str, "a regular expression", required=True)
        flags = re.IGNORECASE if reader.get("ignore_case", bool, "true or false", True) else 0
        try:
            pattern = re.compile(source, flags)
        except re.error as exc:
            raise reader.error("pattern", f"is not a valid regular expression: {exc}") from None
        if pattern.fullmatch("") is not None:
            raise reader.error("pattern", "matches an empty message")
        if pattern.fullmatch(" ".join(BUILTINS[:1])) is not None:
            LOG.warning("%s: commands[%d].pattern matches HELP; the built-in answers first", file, index)
        if "senders" not in item:
            raise reader.error("senders", "is required (group or contact names, numbers, or \"*\")")
        senders = _recipients(reader, "senders", item["senders"], contacts, groups, normalise_number,
                              allow_star=True)
        base_names = set(pattern.groupindex) | {"sender", "sender_name", "rule"}
        topic_template = reader.template("topic", required=True, allowed=base_names)
        assert topic_template is not None
        if not any(isinstance(piece, _Field) for piece in topic_template.pieces) and \
                not _is_publish_topic(topic_template.text):
            raise reader.error("topic", "must be a topic without wildcards")
        payload_template = reader.template("payload", "", allowed=base_names) or Template("")
        qos = reader.get("qos", int, "0, 1 or 2", 1)
        if qos not in (0, 1, 2):
            raise reader.error("qos", f"must be 0, 1 or 2, not {qos}")
        pin = reader.get("pin", str, "a string of 4 to 8 digits")
        if pin is not None and not re.fullmatch(r"\d{4,8}", pin):
            raise reader.error("pin", "must be 4 to 8 digits")
        attempts = reader.get("pin_attempts", int, "an integer", DEFAULT_PIN_ATTEMPTS)
        if attempts < 1:
            raise reader.error("pin_attempts", f"must be at least 1, not {attempts}")
        reply_names = base_names | {"topic", "payload", "reply_topic"}
        reply_topic = reader.template("reply_topic", allowed=base_names)
        if reply_topic is not None:
            for level in _split_template_levels(reply_topic):
                if any(isinstance(p, _Field) for p in level) and len(level) != 1:
                    raise reader.error("reply_topic", "a placeholder must fill a whole topic level")
                if any(isinstance(p, str) and ("+" in p or "#" in p) for p in level):
                    raise reader.error("reply_topic", "must be a topic without wildcards")
        commands.append(CommandRule(
            name=name, pattern=pattern, senders=senders, topic=topic_template, payload=payload_template,
            qos=qos, retain=reader.get("retain", bool, "true or false", False), pin=pin,
            pin_attempts=attempts,
            pin_lockout=reader.duration("pin_lockout", DEFAULT_PIN_LOCKOUT) or 0.0,
            reply=reader.template("reply", allowed=reply_names),
            reply_topic=reply_topic,
            reply_timeout=reader.duration("reply_timeout", DEFAULT_REPLY_TIMEOUT) or DEFAULT_REPLY_TIMEOUT,
            timeout_reply=reader.template("timeout_reply", DEFAULT_TIMEOUT_REPLY,
                                          allowed=base_names | {"topic", "reply_topic", "timeout"})
            or Template(""),
            help=reader.get("help", str, "a string", ""),
        ))
        reply_filter = commands[-1].reply_filter()
        if reply_filter is not None and (reason := overlap_error(reply_filter)) is not None:
            raise reader.error("reply_topic", reason)

    caps: dict[str, int] = {}
    table = raw.get("sources", {})
    if not isinstance(table, dict):
        raise ConfigError(file, "sources", "must be a table of source = { daily_cap = N }")
    for source, settings in table.items():
        reader = _Reader(file, f"sources.{source}", settings, ("daily_cap",))
        cap = reader.get("daily_cap", int, "an integer")
        if cap is not None:
            if cap < 0:
                raise reader.error("daily_cap", f"must be 0 or more, not {cap}")
            caps[source] = cap

    quiet: QuietHours | None = None
    if "quiet_hours" in raw:
        reader = _Reader(file, "quiet_hours", raw["quiet_hours"], ("start", "end", "timezone"))
        try:
            start = _clock_time(reader.get("start", str, "a time like \"22:00\"", required=True))
        except ValueError as exc:
            raise reader.error("start", str(exc)) from None
        try:
            end = _clock_time(reader.get("end", str, "a time like \"07:00\"", required=True))
        except ValueError as exc:
            raise reader.error("end", str(exc)) from None
        tz_name = reader.get("timezone", str, "a time zone name like \"Europe/Berlin\"")
        tz: tzinfo | None = None
        if tz_name:
            try:
                tz = ZoneInfo(tz_name)
            except (ZoneInfoNotFoundError, ValueError):
                raise reader.error("timezone", f"unknown time zone {tz_name!r}") from None
        quiet = QuietHours(start, end, tz)

    unknown_reply: str | None = DEFAULT_UNKNOWN_REPLY
    builtins = True
    if "rules" in raw:
        reader = _Reader(file, "rules", raw["rules"], ("unknown_reply", "builtins"))
        unknown_reply = reader.get("unknown_reply", str, "a string (\"\" for no reply)", DEFAULT_UNKNOWN_REPLY)
        unknown_reply = unknown_reply or None
        builtins = reader.get("builtins", bool, "true or false", True)

    return RulesConfig(
        alerts=tuple(alerts), commands=tuple(commands), contacts=contacts, groups=groups, caps=caps,
        quiet_hours=quiet, unknown_reply=unknown_reply, builtins=builtins,
    )


# --- cooldown and coalescing ----------------------------------------------------------------


@dataclass
class _Window:
    sent_at: float
    suppressed: int = 0
    last_text: str = ""
    label: str = ""


@dataclass(frozen=True)
class Summary:
    key: tuple[str, str]
    count: int
    last_text: str
    label: str
    window: float


class Cooldown:
    """Per (rule, topic): one SMS per ``cooldown`` seconds; alerts inside the window are counted and
    reported by :meth:`due` when the window ends. Time comes from the caller, so tests inject it."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str, str], _Window] = {}

    def offer(self, rule: str, topic: str, cooldown: float, now: float, text: str,
              label: str) -> tuple[bool, Summary | None]:
        """(True, carried): send now, a new window starts; ``carried`` is a window that ended with
        suppressed alerts nobody reported yet (no timer ran), to fold into this SMS.
        (False, None): counted into the running window."""
        key = (rule, topic)
        if cooldown <= 0:
            return True, None
        window = self.windows.get(key)
        if window is None or now - window.sent_at >= cooldown:
            carried = None
            if window is not None and window.suppressed:
                carried = Summary(key, window.suppressed, window.last_text, window.label, now - window.sent_at)
            self.windows[key] = _Window(sent_at=now)
            return True, carried
        window.suppressed += 1
        window.last_text = text
        window.label = label
        return False, None

    def next_due(self, cooldowns: Mapping[str, float]) -> float | None:
        """When the earliest window with suppressed alerts ends."""
        times = [w.sent_at + cooldowns.get(rule, 0.0) for (rule, _), w in self.windows.items() if w.suppressed]
        return min(times) if times else None

    def due(self, now: float, cooldowns: Mapping[str, float]) -> list[Summary]:
        """Summaries of windows that ended with suppressed alerts; each starts a new window at ``now``
        (the summary is an SMS too). Windows that ended quietly are dropped."""
        summaries: list[Summary] = []
        for key, window in list(self.windows.items()):
            cooldown = cooldowns.get(key[0], 0.0)
            if now - window.sent_at < cooldown:
                continue
            if window.suppressed:
                summaries.append(Summary(key, window.suppressed, window.last_text, window.label,
                                         now - window.sent_at))
                self.windows[key] = _Window(sent_at=now)
            else:
                del self.windows[key]
        return summaries

    def export(self, rule: str) -> dict[str, Any]:
        return {topic: {"sent_at": w.sent_at, "suppressed": w.suppressed, "last_text": w.last_text,
                        "label": w.label}
                for (name, topic), w in self.windows.items() if name == rule}

    def load(self, rule: str, data: Mapping[str, Any]) -> None:
        for topic, value in data.items():
            try:
                self.windows[(rule, topic)] = _Window(float(value["sent_at"]), int(value["suppressed"]),
                                                      str(value["last_text"]), str(value["label"]))
            except (KeyError, TypeError, ValueError):
                LOG.warning("ignoring unreadable cooldown state for %s %s", rule, topic)


def render_summary(rule: AlertRule, summary: Summary) -> str:
    """The coalesced SMS: the last alert's text and how many others it stands for."""
    if summary.count <= 1:
        return summary.last_text
    minutes = max(1, round(summary.window / 60))
    return rule.summary.render({
        "last": summary.last_text, "count": summary.count, "more": summary.count - 1,
        "label": summary.label, "minutes": minutes, "rule": rule.name, "topic": summary.key[1],
    })


# --- PIN lockout ----------------------------------------------------------------------------


class StateStore(Protocol):
    def state_get(self, namespace: str, key: str, default: Any = None) -> Any: ...
    def state_set(self, namespace: str, key: str, value: Any) -> None: ...


class PinGuard:
    """Counts wrong PINs per sender (in the store, so a restart does not reset them)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    @staticmethod
    def _key(sender: str) -> str:
        digits = "".join(ch for ch in sender if ch.isdigit())
        return digits[-9:] if len(digits) >= 9 else (digits or sender)

    def locked_for(self, sender: str, now: float) -> float:
        """Seconds the sender is still locked out (0: not locked)."""
        record = self.state.state_get(STATE_PIN, self._key(sender)) or {}
        until = float(record.get("locked_until") or 0.0)
        return max(0.0, until - now)

    def failure(self, sender: str, now: float, attempts: int, lockout: float) -> tuple[int, bool]:
        """Record a wrong or missing PIN; (failures so far, whether the sender is now locked out)."""
        key = self._key(sender)
        record = self.state.state_get(STATE_PIN, key) or {}
        first = float(record["first_at"]) if record.get("first_at") is not None else now
        count = int(record.get("count") or 0)
        locked_until = record.get("locked_until")
        lockout_over = locked_until is not None and now >= float(locked_until)
        if now - first > lockout or lockout_over:
            first, count = now, 0
        count += 1
        locked = count >= attempts
        self.state.state_set(STATE_PIN, key, {
            "count": count, "first_at": first, "locked_until": now + lockout if locked else None})
        return count, locked

    def success(self, sender: str) -> None:
        self.state.state_set(STATE_PIN, self._key(sender), None)


# --- command matching (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class CommandMatch:
    rule: CommandRule
    groups: dict[str, str]
    pin_given: str | None  # the first word when it was digits and the rule wants a PIN


def normalise_text(text: str) -> str:
    """Trim and collapse whitespace (SMS typed on phones carry stray spaces and newlines)."""
    return " ".join(text.split())


def match_command(rules: Sequence[CommandRule], text: str) -> CommandMatch | None:
    """The first rule whose pattern matches the whole message (after the PIN, for PIN rules)."""
    text = normalise_text(text)
    first, _, rest = text.partition(" ")
    for rule in rules:
        if rule.pin is not None and first.isdigit() and rest:
            match = rule.pattern.fullmatch(rest)
            if match:
                return CommandMatch(rule, _groups(match), first)
        match = rule.pattern.fullmatch(text)
        if match:
            return CommandMatch(rule, _groups(match), None)
    return None


#: What a PIN given in a command SMS is shown as (``smsgw inbox``, ``B/received``, the HA event).
PIN_WITHHELD = "****"


def withhold_pin(commands: Sequence[CommandRule], text: str) -> str:
    """``text`` as it may be shown or published: when a rule wants a PIN, a message that starts with
    4 to 8 digits and goes on (``4321 PUMP 7 ON``, also a mistyped ``4321 PUMP 7 ONN``) has that
    first word, a PIN right or wrong, replaced by ``****`` (``**** PUMP 7 ON``); others unchanged."""
    if not any(rule.pin is not None for rule in commands):
        return text
    first, _, rest = normalise_text(text).partition(" ")
    if not (rest and first.isdigit() and 4 <= len(first) <= 8):
        return text
    return f"{PIN_WITHHELD} {rest}"


def text_filter(config: Any) -> Callable[[str], str]:
    """``Store.shown_text`` for ``config``: withholds PINs (``withhold_pin``); the identity when the
    rules do not validate (the rules engine reports that)."""
    try:
        commands = validate_rules(config).commands
    except Exception:
        commands = ()
    if not any(rule.pin is not None for rule in commands):
        return lambda text: text
    return functools.partial(withhold_pin, commands)


def _groups(match: re.Match[str]) -> dict[str, str]:
    return {name: value for name, value in match.groupdict().items() if value is not None}


def pin_ok(rule: CommandRule, given: str | None) -> bool:
    if rule.pin is None:
        return True
    return given is not None and hmac.compare_digest(given.encode(), rule.pin.encode())


def sender_allowed(rule: CommandRule, sender: str) -> bool:
    if rule.senders is None:
        return True
    return any(same_number(sender, allowed) for allowed in rule.senders)


def format_status(status: Mapping[str, Any], stats: Mapping[str, Any] | None = None) -> str:
    """A short STATUS reply from the daemon's status dict and the store's stats."""
    parts: list[str] = []
    state = status.get("state") or status.get("bridge") or "running"
    parts.append(f"smsgw {state}")
    outbox = (stats or {}).get("outbox") or status.get("outbox") or {}
    if isinstance(outbox, dict) and outbox:
        parts.append(f"queue {outbox.get('queued', 0)}, sending {outbox.get('sending', 0)}, "
                     f"failed {outbox.get('failed', 0)}")
    modems = status.get("modems") or {}
    items = modems.items() if isinstance(modems, dict) else (
        (m.get("id", f"modem{i}") if isinstance(m, dict) else str(m), m) for i, m in enumerate(modems))
    for modem_id, modem in items:
        if not isinstance(modem, dict):
            parts.append(f"{modem_id} {modem}")
            continue
        bits = []
        for key, inner in (("state", ()), ("registration", ("state",)), ("operator", ("name", "numeric"))):
            value = modem.get(key)
            if isinstance(value, dict):
                value = next((value[k] for k in inner if value.get(k) is not None), None)
            if value not in (None, ""):
                bits.append(str(value))
        signal = modem.get("signal")
        if isinstance(signal, dict):
            signal = signal.get("dbm")
        if isinstance(signal, int | float) and not isinstance(signal, bool):
            bits.append(f"{signal:g} dBm")
        parts.append(f"{modem_id} " + (" ".join(bits) if bits else "?"))
    return "; ".join(parts)


def fit_text(text: str, max_parts: int) -> str:
    """Cut ``text`` (with an ellipsis) so it fits in ``max_parts`` SMS parts."""
    if count_parts(text) <= max_parts:
        return text
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if count_parts(text[:mid] + "…") <= max_parts:
            low = mid
        else:
            high = mid - 1
    return text[:low] + "…"


# --- usage caps -----------------------------------------------------------------------------


def check_daily_cap(rules: RulesConfig, store: Store, source: str, count: int = 1,
                    now: float | None = None) -> None:
    """Raise :class:`DailyCapExceeded` if queuing ``count`` more messages for ``source`` would pass
    its daily cap (``[sources."<source>"] daily_cap``; keys may be patterns like ``"alert:*"``)."""
    CapTally(rules, store, now).charge(source, count)


class CapTally:
    """Daily caps for several batches committed together: the usage is read once and every
    :meth:`charge` adds to it, so the batches cannot together pass a cap."""

    def __init__(self, rules: RulesConfig, store: Store, now: float | None = None) -> None:
        self.rules = rules
        now = time.time() if now is None else now
        self.usage: dict[str, dict[str, int]] = store.source_usage(local_midnight(now)) if rules.caps else {}

    def check(self, source: str, count: int = 1) -> None:
        """Raise :class:`DailyCapExceeded` if ``count`` more messages for ``source`` pass its cap."""
        key = self.rules.cap_key(source)
        if key is None:
            return
        cap = self.rules.caps[key]
        used = self.rules.cap_used(key, self.usage, source)
        if used + count > cap:
            # a pattern caps each source on its own: name the source; the mqtt cap is shared
            raise DailyCapExceeded(source, cap, used, count, key if key == "mqtt" else None)

    def charge(self, source: str, count: int = 1) -> None:
        """:meth:`check`, then count the ``count`` messages as accepted."""
        self.check(source, count)
        entry = self.usage.setdefault(source, {"accepted": 0, "sent": 0})
        entry["accepted"] = entry.get("accepted", 0) + count


# --- the engine -----------------------------------------------------------------------------


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class RulesEngine:
    """Runs the alert and command rules against the MQTT bridge and the store.

    Every store call happens on the event loop's thread: bridge callbacks are handed over with
    ``call_soon_threadsafe``.
    """

    def __init__(self, config: Config, store: Store, bridge: Any, *,
                 status: Callable[[], dict[str, Any]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.rules = validate_rules(config)
        self.store = store
        self.bridge = bridge
        self.status = status or (lambda: {})
        self.clock = clock
        self.max_parts = getattr(getattr(config, "limits", None), "max_parts", 10)
        #: [limits].validity: a queued alert or reply not sent within it expires
        self.default_validity: float | None = getattr(getattr(config, "limits", None), "validity", None)
        self.cooldown = Cooldown()
        self.pins = PinGuard(store)
        self.counters: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inflight: set[int] = set()
        self._wake = asyncio.Event()
        self._incoming = asyncio.Event()
        self._reply_waiters: dict[str, list[asyncio.Future[bytes]]] = {}
        self._remove_listener: Callable[[], None] | None = None
        self._running = False
        self._cooldowns = {rule.name: rule.cooldown for rule in self.rules.alerts}
        self._base = str(getattr(bridge, "base_topic", "") or "")
        self._recent: dict[tuple[str, bytes], float] = {}

    # --- life cycle ---

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        for rule in self.rules.alerts:
            self.cooldown.load(rule.name, self.store.state_get(STATE_COOLDOWN, rule.name) or {})
        subscriptions: list[tuple[str, Callable[[str, bytes], None]]] = [
            (topic_filter, self._alert_handler)
            for topic_filter in cover_filters(rule.topic for rule in self.rules.alerts)]
        subscriptions += [(reply_filter, self._reply_handler) for reply_filter in dict.fromkeys(
            f for f in (c.reply_filter() for c in self.rules.commands) if f is not None)]
        for topic_filter, handler in subscriptions:  # the bridge sends them now or on (re)connect
            self.bridge.subscribe(topic_filter, handler)
        self._remove_listener = self.store.add_listener(self._incoming.set)
        self._spawn(self._summaries())
        self._spawn(self._commands())
        self._incoming.set()

    async def stop(self) -> None:
        self._running = False
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            LOG.error("rules task failed", exc_info=task.exception())

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    # --- alerts ---

    def _on_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` now if called on the engine's loop (the bridge's handlers are), else hand
        it over to that loop's thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            callback(*args)
        else:
            loop.call_soon_threadsafe(callback, *args)

    def _alert_handler(self, topic: str, payload: bytes) -> None:
        self._on_loop(self.on_alert, topic, bytes(payload))

    def _duplicate(self, topic: str, payload: bytes) -> bool:
        """Whether this is a copy of a delivery seen within DUPLICATE_WINDOW (a broker sends one copy
        per matching subscription of the client, and the bridge hands each to every handler)."""
        now = time.monotonic()
        if len(self._recent) > 1000 or (self._recent and next(iter(self._recent.values())) < now - 60):
            self._recent = {k: t for k, t in self._recent.items() if now - t < DUPLICATE_WINDOW}
        key = (topic, hashlib.blake2b(payload, digest_size=16).digest())
        seen = self._recent.get(key)
        self._recent[key] = now
        return seen is not None and now - seen < DUPLICATE_WINDOW

    def on_alert(self, topic: str, payload: bytes) -> None:
        """Run every alert rule whose filter matches ``topic`` on one message."""
        if self._base and (topic == self._base or topic.startswith(self._base + "/")):
            return  # never turn the gateway's own events into alerts (a loop)
        if self._duplicate(topic, payload):
            return
        self._fire_matching(topic, payload)

    def gateway_event(self, topic: str, payload: Mapping[str, Any]) -> None:
        """An event of the gateway itself (``B/modem/<id>/balance/low``): the alert rules whose
        filter matches ``topic`` run on it, as for a message from the broker (which ignores the
        gateway's own topics, so the copy the broker sends back does not alert twice)."""
        self._fire_matching(topic, json.dumps(dict(payload), ensure_ascii=False).encode())

    def _fire_matching(self, topic: str, payload: bytes) -> None:
        for rule in self.rules.alerts:
            if topic_matches(rule.topic, topic):
                try:
                    self.fire(rule, topic, payload)
                except Exception as exc:
                    LOG.exception("alert rule %s failed on %s", rule.name, topic)
                    try:
                        self.store.audit("alert_failed", {"rule": rule.name, "topic": topic,
                                                          "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
                    except Exception:
                        LOG.exception("auditing a failed alert failed")

    def fire(self, rule: AlertRule, topic: str, payload: bytes | str) -> list[int]:
        """Apply one alert rule to one message; the ids of the queued SMS."""
        now = self.clock()
        context = alert_context(topic, payload, rule.name)
        text, missing = rule.text.render_checked(context)
        if missing:
            LOG.warning("alert %s on %s: no value for %s", rule.name, topic, ", ".join(missing))
        if not rule.critical and self.rules.quiet_hours and self.rules.quiet_hours.active(now):
            self._count("alerts_quiet")
            self.store.audit("alert_quiet", {"rule": rule.name, "topic": topic, "text": text}, now=now)
            return []
        label = rule.label.render(context)
        send, carried = self.cooldown.offer(rule.name, topic, rule.cooldown, now, text, label)
        self._save_cooldown(rule)
        if not send:
            self._count("alerts_coalesced")
            self._wake.set()
            return []
        if carried is not None:
            text = render_summary(rule, Summary(carried.key, carried.count + 1, text, label, carried.window))
        return self._send_alert(rule, text, now)

    def _save_cooldown(self, rule: AlertRule) -> None:
        if rule.cooldown > 0:
            self.store.state_set(STATE_COOLDOWN, rule.name, self.cooldown.export(rule.name) or None)

    def _send_alert(self, rule: AlertRule, text: str, now: float) -> list[int]:
        recipients = list(rule.to)
        if not rule.critical:
            opted_out = [n for n in recipients if self.opted_out(n)]
            if opted_out:
                self.store.audit("alert_optout", {"rule": rule.name, "skipped": opted_out}, now=now)
            recipients = [n for n in recipients if n not in opted_out]
        if not recipients:
            return []
        valid_for = rule.valid_for or self.default_validity
        valid_until = now + valid_for if valid_for else None
        requests = [OutboundRequest(to=number, text=fit_text(text, self.max_parts), source=rule.source,
                                    priority=CRITICAL if rule.critical else rule.priority, valid_until=valid_until)
                    for number in recipients]
        try:
            check_daily_cap(self.rules, self.store, rule.source, len(requests), now)
        except DailyCapExceeded as exc:
            self._count("alerts_capped")
            self.store.audit("cap_exceeded", {"source": rule.source, "error": str(exc)}, now=now)
            LOG.warning("%s", exc)
            return []
        results = self.store.enqueue(requests, now=now)
        self._count("alerts_sent")
        return [r.id for r in results]

    async def _summaries(self) -> None:
        while self._running:
            self.flush_summaries()
            due = self.cooldown.next_due(self._cooldowns)
            timeout = None if due is None else max(0.0, due - self.clock())
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def flush_summaries(self) -> list[int]:
        """Send the coalesced summaries of windows that have ended; the queued ids."""
        now = self.clock()
        ids: list[int] = []
        rules = {rule.name: rule for rule in self.rules.alerts}
        for summary in self.cooldown.due(now, self._cooldowns):
            rule = rules.get(summary.key[0])
            if rule is None:
                continue
            self._save_cooldown(rule)
            text = render_summary(rule, summary)
            if not rule.critical and self.rules.quiet_hours and self.rules.quiet_hours.active(now):
                self._count("alerts_quiet")
                self.store.audit("alert_quiet", {"rule": rule.name, "topic": summary.key[1], "text": text},
                                 now=now)
                continue
            ids += self._send_alert(rule, text, now)
        return ids

    # --- opt-out ---

    def opted_out(self, number: str) -> bool:
        return self.store.opted_out(number)

    def set_opt_out(self, number: str, out: bool) -> None:
        """STOP / START: the store's opt-out list, which every channel's messages are checked against."""
        if out:
            self.store.optout_add(number, "sms:STOP")
        else:
            self.store.optout_remove(number, "sms:START")

    # --- commands ---

    def _reply_handler(self, topic: str, payload: bytes) -> None:
        self._on_loop(self._on_reply, topic, bytes(payload))

    def _on_reply(self, topic: str, payload: bytes) -> None:
        for future in self._reply_waiters.pop(topic, []):
            if not future.done():
                future.set_result(payload)

    async def _commands(self) -> None:
        while self._running:
            self._incoming.clear()
            for message in self.store.received_unhandled():
                if message.id in self._inflight:
                    continue
                self._inflight.add(message.id)
                self._spawn(self._handle_guarded(message))
            await self._incoming.wait()

    async def _handle_guarded(self, message: ReceivedMessage) -> None:
        try:
            await self.handle_message(message)
        except Exception:
            LOG.exception("command handling failed for message %s", message.id)
            self.store.received_handled(message.id)
        finally:
            self._inflight.discard(message.id)

    def is_listed(self, sender: str) -> bool:
        return any(same_number(sender, number) for number in self.rules.listed())

    async def handle_message(self, message: ReceivedMessage) -> str:
        """Run the command rules on one received SMS; what happened (for tests and the audit)."""
        now = self.clock()
        sender = message.sender or ""
        text = normalise_text(message.text)
        base = {"message": message.id, "from": sender, "text": withhold_pin(self.rules.commands, text)}
        if message.error or not sender or not self.is_listed(sender):
            self.store.audit("unlisted_sender", base, now=now)
            self.store.received_handled(message.id)
            self._count("unlisted")
            return "unlisted"
        word = text.upper()
        if self.rules.builtins and word in BUILTINS:
            self.store.received_handled(message.id)
            reply = self._builtin(word, sender, now)
            self.store.audit("builtin", {**base, "command": word}, now=now)
            # the confirmation of a STOP reaches the number that just opted out
            self._reply(sender, reply, "builtin", now, priority=CRITICAL if word == "STOP" else "high")
            return word.lower()
        found = match_command(self.rules.commands, text)
        if found is None:
            self.store.audit("command_unknown", base, now=now)
            self.store.received_handled(message.id)
            if self.rules.unknown_reply:
                self._reply(sender, self.rules.unknown_reply, "builtin", now)
            return "unknown"
        rule = found.rule
        base["rule"] = rule.name
        if rule.pin is not None:
            base["text"] = "(withheld: may contain a PIN)"
        if not sender_allowed(rule, sender):
            self.store.audit("command_denied", base, now=now)
            self.store.received_handled(message.id)
            self._reply(sender, f"{rule.name}: not allowed from this number", rule.source, now)
            return "denied"
        if rule.pin is not None:
            locked = self.pins.locked_for(sender, now)
            if locked > 0:
                self.store.audit("pin_locked", base, now=now)
                self.store.received_handled(message.id)
                self._reply(sender, f"Locked after wrong PINs; try again in {max(1, round(locked / 60))} min",
                            rule.source, now)
                return "locked"
            if not pin_ok(rule, found.pin_given):
                count, now_locked = self.pins.failure(sender, now, rule.pin_attempts, rule.pin_lockout)
                kind = "pin_lockout" if now_locked else "pin_failure"
                self.store.audit(kind, {**base, "failures": count}, now=now)
                self.store.received_handled(message.id)
                if now_locked:
                    reply = f"Wrong PIN; locked for {max(1, round(rule.pin_lockout / 60))} min"
                else:
                    reply = "PIN required" if found.pin_given is None else "Wrong PIN"
                self._reply(sender, reply, rule.source, now)
                return kind
            self.pins.success(sender)
        context: dict[str, Any] = dict(found.groups)
        context.update(sender=sender, sender_name=self.rules.contact_name(sender) or sender, rule=rule.name)
        problem = rule.topic.check_topic_values(context) or (
            rule.reply_topic.check_topic_values(context) if rule.reply_topic is not None else None)
        if problem is not None:
            LOG.warning("command %s from %s refused: %s", rule.name, sender, problem)
            self.store.audit("command_bad_topic", {**base, "error": problem}, now=now)
            self.store.received_handled(message.id)
            self._reply(sender, f"{rule.name}: refused, {problem}", rule.source, now)
            return "bad_topic"
        topic = rule.topic.render(context)
        payload = rule.payload.render(context)
        if not _is_publish_topic(topic):
            self.store.audit("command_bad_topic", {**base, "topic": topic}, now=now)
            self.store.received_handled(message.id)
            self._reply(sender, f"{rule.name}: refused, bad topic", rule.source, now)
            return "bad_topic"
        waiter: asyncio.Future[bytes] | None = None
        reply_topic = rule.reply_topic.render(context) if rule.reply_topic is not None else None
        if reply_topic is not None:
            waiter = asyncio.get_running_loop().create_future()
            self._reply_waiters.setdefault(reply_topic, []).append(waiter)
        try:
            await _maybe_await(self.bridge.publish(topic, payload.encode(), qos=rule.qos, retain=rule.retain))
            self.store.audit("command", {**base, "topic": topic, "payload": payload}, now=now)
            self.store.received_handled(message.id)
            self._count("commands")
            context.update(topic=topic, payload=payload, reply_topic=reply_topic or "")
            if waiter is not None and reply_topic is not None:
                try:
                    answer = await asyncio.wait_for(waiter, rule.reply_timeout)
                except TimeoutError:
                    self._reply(sender, rule.timeout_reply.render(
                        {**context, "timeout": f"{rule.reply_timeout:g}"}), rule.source, self.clock())
                    return "timeout"
                context["payload"] = Payload(answer)
                reply = rule.reply.render(context) if rule.reply else str(context["payload"])
                self._reply(sender, reply, rule.source, self.clock())
            elif rule.reply is not None:
                self._reply(sender, rule.reply.render(context), rule.source, now)
        finally:
            if waiter is not None and reply_topic is not None:
                waiters = self._reply_waiters.get(reply_topic, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._reply_waiters.pop(reply_topic, None)
                waiter.cancel()
        return "executed"

    def _builtin(self, word: str, sender: str, now: float) -> str:
        if word == "STOP":
            self.set_opt_out(sender, True)
            return "You will get only critical messages now. Send START to get all messages again."
        if word == "START":
            self.set_opt_out(sender, False)
            return "Messages are on again. Send STOP to get only critical ones."
        if word == "STATUS":
            try:
                status = self.status() or {}
            except Exception as exc:  # the daemon's status must never break a reply
                status = {"state": f"status unavailable ({exc})"}
            return format_status(status, self.store.stats(now))
        names = [c.help or c.name.upper() for c in self.rules.commands if sender_allowed(c, sender)]
        return "Commands: " + "; ".join(names + list(BUILTINS))

    def _reply(self, sender: str, text: str, source: str, now: float, *, priority: str = "high") -> int | None:
        try:
            to = check_destination(sender, self.config.numbers)
        except ValueError as exc:
            self.store.audit("reply_refused", {"to": sender, "error": str(exc)}, now=now)
            return None
        try:
            check_daily_cap(self.rules, self.store, source, 1, now)
        except DailyCapExceeded as exc:
            self.store.audit("cap_exceeded", {"source": source, "error": str(exc)}, now=now)
            return None
        valid_until = now + self.default_validity if self.default_validity else None
        try:
            result = self.store.enqueue([OutboundRequest(to=to, text=fit_text(text, self.max_parts),
                                                         source=source, priority=priority, valid_until=valid_until)],
                                        now=now)
        except OptedOut as exc:
            self.store.audit("reply_refused", {"to": to, "error": str(exc)}, now=now)
            return None
        return result[0].id
