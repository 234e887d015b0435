"""The rule tables of the configuration, validated: ``[contacts]``, ``[groups]``, ``[[alerts]]``,
``[[commands]]``, ``[sources]``, ``[quiet_hours]`` and ``[rules]`` into a frozen :class:`RulesConfig`;
every problem is a ``ConfigError`` naming file, key and reason."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from datetime import time as dtime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.caps import DailyCaps
from appliance.config import ConfigError
from appliance.numbers import check_destination, normalise
from appliance.rules.templates import Placeholder, Template, TemplateError, split_template_levels
from appliance.store import PRIORITIES, same_number
from appliance.topics import filters_overlap, is_publish_topic, topic_filter_error

if TYPE_CHECKING:
    from appliance.config import Config

LOG = logging.getLogger(__name__)

#: Wrong PINs (per sender) before a lockout, and the lockout in seconds.
DEFAULT_PIN_ATTEMPTS = 3
DEFAULT_PIN_LOCKOUT = 900.0
#: Seconds a command waits for the first message on its reply topic.
DEFAULT_REPLY_TIMEOUT = 10.0
DEFAULT_SUMMARY = "{last} (and {more} more alerts from {label} in the last {minutes} min)"
DEFAULT_TIMEOUT_REPLY = "No answer on {reply_topic} within {timeout} s"
DEFAULT_UNKNOWN_REPLY = "Unknown command. Send HELP for the list."
BUILTINS = ("HELP", "STATUS", "STOP", "START")


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
        for level in split_template_levels(self.reply_topic):
            levels.append("+" if any(isinstance(p, Placeholder) for p in level) else "".join(map(str, level)))
        return "/".join(levels)




@dataclass(frozen=True)
class RulesConfig:
    alerts: tuple[AlertRule, ...] = ()
    commands: tuple[CommandRule, ...] = ()
    contacts: dict[str, str] = field(default_factory=dict)  # name -> normalised number
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> normalised numbers
    caps: DailyCaps = field(default_factory=DailyCaps)  # [sources]
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
        if not any(isinstance(piece, Placeholder) for piece in topic_template.pieces) and \
                not is_publish_topic(topic_template.text):
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
            for level in split_template_levels(reply_topic):
                if any(isinstance(p, Placeholder) for p in level) and len(level) != 1:
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
        alerts=tuple(alerts), commands=tuple(commands), contacts=contacts, groups=groups, caps=DailyCaps(caps),
        quiet_hours=quiet, unknown_reply=unknown_reply, builtins=builtins,
    )
