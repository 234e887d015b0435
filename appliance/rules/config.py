"""The rule tables of the configuration, validated: ``[contacts]``, ``[groups]``, ``[[alerts]]``,
``[[commands]]``, ``[quiet_hours]`` and ``[rules]`` into a frozen :class:`RulesConfig` (``Config.rules``);
every problem is a ``ConfigError`` naming file, key and reason. ``[sources]`` is :mod:`appliance.caps`'s."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from datetime import time as dtime
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.config import ConfigError
from appliance.escalation_config import Escalation, Resolve, check_combination, read_escalation, read_resolve
from appliance.numbers import check_destination, normalise
from appliance.rules.templates import (
    SCHEDULE_NAMES,
    Placeholder,
    Template,
    TemplateError,
    split_template_levels,
)
from appliance.store import PRIORITIES, same_number
from appliance.timeofday import (
    WEEKDAY_NAMES,
    WEEKDAYS,
    QuietHours,
    last_daily,
    next_daily,
    parse_clock,
    read_quiet_hours,
    read_timezone,
)
from appliance.topics import filters_overlap, is_publish_topic, topic_filter_error
from drivers.toml_reader import TableReader, did_you_mean

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
#: Seconds after an occurrence within which a schedule that missed it (the daemon was down) sends it on start.
DEFAULT_SCHEDULE_GRACE = 3600.0


def _clock_time(reader: TableReader, name: str, what: str) -> dtime:
    """A time of day like ``"22:00"`` (required)."""
    value = _string(reader, name, what, required=True)
    clock = parse_clock(value)
    if clock is not None:
        return clock
    raise reader.error(name, f"must be a time of day like \"22:00\", not {value!r}")


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
    escalate: Escalation | None = None  # an on-call chain (appliance/escalation.py) instead of ``to``
    resolve: Resolve | None = None  # what closes an escalating alert
    #: Sent as a flash SMS (TP-DCS message class 0).
    flash: bool = False
    #: The rule's own quiet hours (local time): its non-critical alerts are held until they end.
    quiet_hours: QuietHours | None = None

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
class ScheduleRule:
    """``[[schedules]]``: an SMS at fixed times of day (a daily summary), its text rendered then."""

    name: str
    at: tuple[dtime, ...]  # sorted, distinct
    to: tuple[str, ...]  # normalised numbers
    text: Template
    days: frozenset[int] | None = None  # weekdays (0 = Monday); None: every day
    tz: tzinfo | None = None  # None: the appliance's local time
    grace: float = DEFAULT_SCHEDULE_GRACE
    priority: str = "normal"
    critical: bool = False
    flash: bool = False
    valid_for: float | None = None

    @property
    def source(self) -> str:
        return f"schedule:{self.name}"

    def next_after(self, moment: float) -> float:
        """The first occurrence strictly after ``moment``."""
        return next_daily(self.at, moment, self.tz, self.days)

    def last_at_or_before(self, moment: float) -> float:
        """The last occurrence at or before ``moment``."""
        return last_daily(self.at, moment, self.tz, self.days)


@dataclass(frozen=True)
class RulesConfig:
    alerts: tuple[AlertRule, ...] = ()
    commands: tuple[CommandRule, ...] = ()
    schedules: tuple[ScheduleRule, ...] = ()
    contacts: dict[str, str] = field(default_factory=dict)  # name -> normalised number
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> normalised numbers
    quiet_hours: QuietHours | None = None
    #: ``[quiet_hours] hold = true``: non-critical alerts are held until the end, not dropped.
    quiet_hold: bool = False
    unknown_reply: str | None = DEFAULT_UNKNOWN_REPLY
    builtins: bool = True

    def listed(self) -> set[str]:
        """Every number the configuration names: contacts, group members, alert recipients, senders."""
        numbers = set(self.contacts.values())
        for members in self.groups.values():
            numbers.update(members)
        for alert in self.alerts:
            numbers.update(alert.to)
            numbers.update(alert.escalate.members if alert.escalate else ())
        for command in self.commands:
            numbers.update(command.senders or ())
        return numbers

    def contact_name(self, number: str) -> str | None:
        for name, contact in self.contacts.items():
            if same_number(contact, number):
                return name
        return None


Normaliser = Callable[[str], str]

_ALERT_KEYS = ("name", "topic", "to", "text", "cooldown", "label", "summary", "priority", "critical", "valid_for",
               "escalate", "resolve", "flash", "quiet_hours")
_COMMAND_KEYS = ("name", "pattern", "senders", "topic", "payload", "qos", "retain", "pin", "pin_attempts",
                 "pin_lockout", "reply", "reply_topic", "reply_timeout", "timeout_reply", "help", "ignore_case")
_SUMMARY_NAMES = {"last", "count", "more", "label", "minutes", "rule", "topic"}
_SCHEDULE_KEYS = ("name", "at", "days", "timezone", "to", "text", "grace", "priority", "critical", "flash",
                  "valid_for")


def _reader(file: str, key: str, table: object, known: Iterable[str]) -> TableReader:
    return TableReader(file, key, table, known, error=ConfigError)


def _string(reader: TableReader, name: str, what: str, default: str | None = None, *,
            required: bool = False) -> str:
    """A string key; a blank one is refused only when the key is required."""
    value = reader.string(name, default, required=required, empty=not required, what=what)
    assert value is not None
    return value


def read_template(reader: TableReader, name: str, default: str | None = None, *, required: bool = False,
                  allowed: Set[str] | None = None) -> Template | None:
    """A template key (blank allowed unless ``required``); with ``allowed``, the only names it may use."""
    text = reader.string(name, default, required=required, empty=not required, what="a text template")
    if text is None:
        return None
    try:
        template = Template(text)
    except TemplateError as exc:
        raise reader.error(name, str(exc)) from None
    if allowed is not None:
        unknown = sorted(template.names - allowed)
        if unknown:
            raise reader.error(name, f"unknown name {unknown[0]!r} in template{did_you_mean(unknown[0], sorted(allowed))}; "
                                     f"known: {', '.join(sorted(allowed))}")
    return template


class _Names:
    """What the rule tables resolve against: the contacts and groups, the number policy, and the
    gateway's request topics (which no rule filter may also match)."""

    def __init__(self, file: str, normalise_number: Normaliser, base_topic: str) -> None:
        self.file = file
        self.normalise_number = normalise_number
        self.request_filters = (f"{base_topic}/send", f"{base_topic}/send/+")
        self.contacts: dict[str, str] = {}
        self.groups: dict[str, tuple[str, ...]] = {}

    def overlap_error(self, topic_filter: str) -> str | None:
        # A broker delivers one copy of a message per matching subscription of a client (MQTT 5):
        # a rule filter that also matches the bridge's request topics would queue requests twice.
        for request_filter in self.request_filters:
            if filters_overlap(topic_filter, request_filter):
                return (f"{topic_filter!r} also matches the gateway's request topic {request_filter!r}; "
                        "the broker would deliver each request twice (once per subscription): "
                        "narrow the filter")
        return None

    def recipients(self, reader: TableReader, name: str, *, allow_star: bool = False,
                   use_groups: bool = True) -> tuple[str, ...] | None:
        """The numbers that key ``name`` names (contacts, groups, numbers); None for ``"*"``."""
        return resolve_names(reader, name, self.contacts, self.groups if use_groups else {},
                             self.normalise_number, allow_star=allow_star)

    def _resolve(self, key: str, value: str, groups: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
        return _resolve(self.file, key, value, self.contacts, groups, self.normalise_number)

    def chain_entry(self, key: str, value: str) -> tuple[str, ...]:
        """The numbers of one entry of an on-call chain (a group, a contact or a number)."""
        return self._resolve(key, value, self.groups)


def resolve_names(reader: TableReader, name: str, contacts: Mapping[str, str],
                  groups: Mapping[str, tuple[str, ...]], normalise: Normaliser, *,
                  allow_star: bool = False) -> tuple[str, ...] | None:
    """The numbers that key ``name`` of ``reader``'s table names: a name or number, or an array of them
    (groups, contacts and numbers, normalised), in order without repeats; None for ``"*"`` if allowed."""
    values = reader.table[name]
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values:
        raise reader.error(name, "must be a name or number, or a non-empty array of them"
                                 + (' (or "*")' if allow_star else ""))
    numbers: list[str] = []
    for index, value in enumerate(values):
        key = f"{reader.key(name)}[{index}]"
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(reader.file, key, f"must be a non-empty string, not {value!r}")
        value = value.strip()
        if value == "*" and allow_star:
            return None
        numbers.extend(_resolve(reader.file, key, value, contacts, groups, normalise))
    return tuple(dict.fromkeys(numbers))


def _resolve(file: Path | str, key: str, value: str, contacts: Mapping[str, str],
             groups: Mapping[str, tuple[str, ...]], normalise: Normaliser) -> tuple[str, ...]:
    """The numbers one name or number stands for: a group's, a contact's, or the number normalised."""
    if value in groups:
        return groups[value]
    if value in contacts:
        return (contacts[value],)
    if value[:1] in "+0123456789":
        try:
            return (normalise(value),)
        except ValueError as exc:
            raise ConfigError(file, key, str(exc)) from None
    known = sorted(set(contacts) | set(groups))
    raise ConfigError(file, key, f"{value!r} is not a contact, a group or a number{did_you_mean(value, known)}"
                      + (f"; known names: {', '.join(known)}" if known else ""))


def validate_rules(config: Config) -> RulesConfig:
    """The rule tables of ``config.raw`` (use ``config.rules``, which calls this once); raise ``ConfigError``."""

    def normalise_number(number: str) -> str:
        return check_destination(number, config.numbers)

    base_topic = config.mqtt.base_topic if config.mqtt is not None else "smsgw"
    return validate_rules_table(config.raw, str(config.path), normalise_number, base_topic=base_topic)


def resolve_recipients(config: Config, reader: TableReader, name: str) -> tuple[str, ...]:
    """The numbers key ``name`` of another table (``[self_alerts] to``) names, resolved against
    ``[contacts]`` and ``[groups]`` and the number policy as an alert rule's ``to`` is."""
    names = _Names(str(config.path), lambda number: check_destination(number, config.numbers),
                   config.mqtt.base_topic if config.mqtt is not None else "smsgw")
    names.contacts = _contacts(names, config.raw.get("contacts", {}))  # only these two tables: not the rules
    names.groups = _groups(names, config.raw.get("groups", {}))
    return names.recipients(reader, name) or ()


def validate_rules_table(raw: Mapping[str, Any], file: str = "config",
                         normalise_number: Normaliser | None = None, *,
                         base_topic: str = "smsgw") -> RulesConfig:
    """:func:`validate_rules` on a TOML document (``normalise_number`` defaults to E.164 only)."""
    names = _Names(file, normalise_number or normalise, base_topic)
    names.contacts = _contacts(names, raw.get("contacts", {}))
    names.groups = _groups(names, raw.get("groups", {}))
    alerts = _rule_list(names, raw, "alerts", _ALERT_KEYS, _alert)
    commands = _rule_list(names, raw, "commands", _COMMAND_KEYS, _command)
    schedules = _rule_list(names, raw, "schedules", _SCHEDULE_KEYS, _schedule)
    unknown_reply, builtins = _options(file, raw)
    quiet = read_quiet_hours(file, raw)
    return RulesConfig(
        alerts=alerts, commands=commands, schedules=schedules, contacts=names.contacts, groups=names.groups,
        quiet_hours=quiet.hours if quiet else None, quiet_hold=bool(quiet and quiet.hold),
        unknown_reply=unknown_reply, builtins=builtins,
    )


def _contacts(names: _Names, table: object) -> dict[str, str]:
    if not isinstance(table, dict):
        raise ConfigError(names.file, "contacts", "must be a table of name = \"number\"")
    contacts: dict[str, str] = {}
    for name, number in table.items():
        if not isinstance(number, str):
            raise ConfigError(names.file, f"contacts.{name}", f"must be a phone number string, not {number!r}")
        if name in BUILTINS or name == "*":
            raise ConfigError(names.file, f"contacts.{name}", "is a reserved name")
        try:
            contacts[name] = names.normalise_number(number)
        except ValueError as exc:
            raise ConfigError(names.file, f"contacts.{name}", str(exc)) from None
    return contacts


def _groups(names: _Names, table: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(table, dict):
        raise ConfigError(names.file, "groups", "must be a table of name = [contacts or numbers]")
    reader = _reader(names.file, "groups", table, tuple(table))
    groups: dict[str, tuple[str, ...]] = {}
    for name in table:
        if name in names.contacts:
            raise reader.error(name, f"{name!r} is already a contact name")
        groups[name] = names.recipients(reader, name, use_groups=False) or ()
    return groups


def _rule_list(names: _Names, raw: Mapping[str, Any], section: str, keys: tuple[str, ...],
               parse: Callable[[_Names, TableReader, str], Any]) -> tuple[Any, ...]:
    """``[[alerts]]`` or ``[[commands]]``: each table parsed by ``parse``; the names are unique."""
    table = raw.get(section, [])
    if not isinstance(table, list):
        raise ConfigError(names.file, section, f"must be an array of tables ([[{section}]])")
    kind = section.removesuffix("s")
    rules: list[Any] = []
    seen: set[str] = set()
    for index, item in enumerate(table):
        reader = _reader(names.file, f"{section}[{index}]", item, keys)
        name = _string(reader, "name", "a string", f"{kind}{index + 1}")
        if name in seen:
            raise reader.error("name", f"{name!r} is used by another {kind} rule")
        seen.add(name)
        rules.append(parse(names, reader, name))
    return tuple(rules)


def _alert(names: _Names, reader: TableReader, name: str) -> AlertRule:
    topic = _string(reader, "topic", "a topic filter", required=True)
    if (reason := topic_filter_error(topic) or names.overlap_error(topic)) is not None:
        raise reader.error("topic", reason)
    escalate = read_escalation(reader, names.chain_entry)
    check_combination(reader, name, escalate)
    to = () if escalate else names.recipients(reader, "to") or ()
    resolve = read_resolve(reader, topic, escalate, lambda f: topic_filter_error(f) or names.overlap_error(f))
    text = read_template(reader, "text", required=True)
    priority = _priority(reader)
    return AlertRule(
        name=name, topic=topic, to=to, text=text or Template(""),
        cooldown=reader.duration("cooldown", 0.0) or 0.0,
        label=read_template(reader, "label", "{topic}") or Template("{topic}"),
        summary=read_template(reader, "summary", DEFAULT_SUMMARY, allowed=_SUMMARY_NAMES) or Template(""),
        priority=priority, critical=reader.boolean("critical", False),
        valid_for=reader.duration("valid_for", None), escalate=escalate, resolve=resolve,
        flash=reader.boolean("flash", False), quiet_hours=_rule_quiet_hours(reader),
    )


def _priority(reader: TableReader) -> str:
    priority = _string(reader, "priority", "high, normal or low", "normal")
    if priority not in PRIORITIES:
        raise reader.error("priority", f"must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    return priority


def _schedule(names: _Names, reader: TableReader, name: str) -> ScheduleRule:
    if not reader.has("at"):
        raise reader.error("at", "is required (a time of day like \"07:00\", or an array of them)")
    values = reader.table["at"]
    values = [values] if isinstance(values, str) else values
    if not isinstance(values, list) or not values:
        raise reader.error("at", "must be a time of day like \"07:00\", or a non-empty array of them")
    times: list[dtime] = []
    for index, value in enumerate(values):
        clock = parse_clock(value) if isinstance(value, str) else None
        if clock is None:
            raise ConfigError(names.file, f"{reader.key('at')}[{index}]",
                              f"must be a time of day like \"07:00\", not {value!r}")
        times.append(clock)
    if not reader.has("to"):
        raise reader.error("to", "is required")
    to = names.recipients(reader, "to") or ()
    text = read_template(reader, "text", required=True, allowed=SCHEDULE_NAMES)
    return ScheduleRule(
        name=name, at=tuple(sorted(set(times))), to=to, text=text or Template(""), days=_days(names, reader),
        tz=read_timezone(reader, "timezone"), grace=reader.duration("grace", DEFAULT_SCHEDULE_GRACE) or 0.0,
        priority=_priority(reader), critical=reader.boolean("critical", False), flash=reader.boolean("flash", False),
        valid_for=reader.duration("valid_for", None),
    )


def _days(names: _Names, reader: TableReader) -> frozenset[int] | None:
    """``days = ["mon", "fri"]``: the weekdays of a schedule (None: every day)."""
    if not reader.has("days"):
        return None
    values = reader.table["days"]
    if not isinstance(values, list) or not values:
        raise reader.error("days", f"must be a non-empty array of weekdays ({', '.join(WEEKDAYS)})")
    days: set[int] = set()
    for index, value in enumerate(values):
        day = WEEKDAY_NAMES.get(value.strip().lower()) if isinstance(value, str) else None
        if day is None:
            raise ConfigError(names.file, f"{reader.key('days')}[{index}]",
                              f"must be a weekday ({', '.join(WEEKDAYS)}), not {value!r}"
                              + did_you_mean(str(value).lower(), WEEKDAY_NAMES))
        days.add(day)
    return frozenset(days)


def _rule_quiet_hours(reader: TableReader) -> QuietHours | None:
    """A rule's ``quiet_hours = "22:00-07:00"`` (local time), or None."""
    value = reader.string("quiet_hours", None, what="a window like \"22:00-07:00\"")
    if value is None:
        return None
    quiet = QuietHours.parse(value)
    if quiet is None:
        raise reader.error("quiet_hours", f"must be a window like \"22:00-07:00\" (start-end, local time), "
                                          f"not {value!r}")
    return quiet


def _command(names: _Names, reader: TableReader, name: str) -> CommandRule:
    pattern = _command_pattern(reader)
    if not reader.has("senders"):
        raise reader.error("senders", "is required (group or contact names, numbers, or \"*\")")
    senders = names.recipients(reader, "senders", allow_star=True)
    base_names = set(pattern.groupindex) | {"sender", "sender_name", "rule"}
    topic_template = read_template(reader, "topic", required=True, allowed=base_names)
    assert topic_template is not None
    if not any(isinstance(piece, Placeholder) for piece in topic_template.pieces) and \
            not is_publish_topic(topic_template.text):
        raise reader.error("topic", "must be a topic without wildcards")
    qos = reader.integer("qos", 1, what="0, 1 or 2")
    if qos not in (0, 1, 2):
        raise reader.error("qos", f"must be 0, 1 or 2, not {qos}")
    pin = reader.string("pin", None, empty=True, what="a string of 4 to 8 digits")
    if pin is not None and not re.fullmatch(r"\d{4,8}", pin):
        raise reader.error("pin", "must be 4 to 8 digits")
    attempts = reader.integer("pin_attempts", DEFAULT_PIN_ATTEMPTS)
    assert attempts is not None
    if attempts < 1:
        raise reader.error("pin_attempts", f"must be at least 1, not {attempts}")
    command = CommandRule(
        name=name, pattern=pattern, senders=senders, topic=topic_template,
        payload=read_template(reader, "payload", "", allowed=base_names) or Template(""),
        qos=qos, retain=reader.boolean("retain", False), pin=pin, pin_attempts=attempts,
        pin_lockout=reader.duration("pin_lockout", DEFAULT_PIN_LOCKOUT) or 0.0,
        reply=read_template(reader, "reply", allowed=base_names | {"topic", "payload", "reply_topic"}),
        reply_topic=_reply_topic(reader, base_names),
        reply_timeout=reader.duration("reply_timeout", DEFAULT_REPLY_TIMEOUT) or DEFAULT_REPLY_TIMEOUT,
        timeout_reply=read_template(reader, "timeout_reply", DEFAULT_TIMEOUT_REPLY,
                                allowed=base_names | {"topic", "reply_topic", "timeout"}) or Template(""),
        help=_string(reader, "help", "a string", ""),
    )
    reply_filter = command.reply_filter()
    if reply_filter is not None and (reason := names.overlap_error(reply_filter)) is not None:
        raise reader.error("reply_topic", reason)
    return command


def _command_pattern(reader: TableReader) -> re.Pattern[str]:
    source = _string(reader, "pattern", "a regular expression", required=True)
    flags = re.IGNORECASE if reader.boolean("ignore_case", True) else 0
    try:
        pattern = re.compile(source, flags)
    except re.error as exc:
        raise reader.error("pattern", f"is not a valid regular expression: {exc}") from None
    if pattern.fullmatch("") is not None:
        raise reader.error("pattern", "matches an empty message")
    if pattern.fullmatch(" ".join(BUILTINS[:1])) is not None:
        LOG.warning("%s: %s matches HELP; the built-in answers first", reader.file, reader.key("pattern"))
    return pattern


def _reply_topic(reader: TableReader, allowed: set[str]) -> Template | None:
    reply_topic = read_template(reader, "reply_topic", allowed=allowed)
    if reply_topic is not None:
        for level in split_template_levels(reply_topic):
            if any(isinstance(p, Placeholder) for p in level) and len(level) != 1:
                raise reader.error("reply_topic", "a placeholder must fill a whole topic level")
            if any(isinstance(p, str) and ("+" in p or "#" in p) for p in level):
                raise reader.error("reply_topic", "must be a topic without wildcards")
    return reply_topic


def _options(file: str, raw: Mapping[str, Any]) -> tuple[str | None, bool]:
    """``[rules]``: the reply to an unknown command (None: no reply) and whether the built-ins answer."""
    if "rules" not in raw:
        return DEFAULT_UNKNOWN_REPLY, True
    reader = _reader(file, "rules", raw["rules"], ("unknown_reply", "builtins"))
    unknown_reply = _string(reader, "unknown_reply", "a string (\"\" for no reply)", DEFAULT_UNKNOWN_REPLY)
    return unknown_reply or None, reader.boolean("builtins", True)
