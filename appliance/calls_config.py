"""``[calls]`` and ``[[call_rules]]`` read into typed, frozen objects (``Config.calls``).

Read with :class:`drivers.toml_reader.TableReader` like every other table; errors are ``ConfigError``
(``FILE: KEY: REASON``). The callers resolve against the contacts and groups the command rules use
(``Config.rules``). What the rules do with a call: :mod:`appliance.calls`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.config import ConfigError
from appliance.rules.config import read_template, resolve_names
from appliance.rules.templates import Template
from appliance.store import same_number
from appliance.topics import is_publish_topic
from drivers.toml_reader import TableReader

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.rules.config import RulesConfig

#: Names a call rule's ``payload`` and ``receipt`` may use.
TEMPLATE_NAMES = frozenset({"caller", "caller_name", "modem", "at", "rule"})
CALLS_KEYS = ("hang_up",)
RULE_KEYS = ("name", "callers", "topic", "payload", "qos", "retain", "receipt")


@dataclass(frozen=True)
class CallRule:
    name: str
    callers: tuple[str, ...] | None  # normalised numbers; None: any number the config lists ("*")
    topic: str
    payload: Template
    qos: int = 1
    retain: bool = False
    receipt: Template | None = None

    @property
    def source(self) -> str:
        return f"call:{self.name}"


@dataclass(frozen=True)
class CallsConfig:
    hang_up: bool = True
    rules: tuple[CallRule, ...] = ()
    contacts: tuple[tuple[str, str], ...] = ()  # (name, number), for {caller_name}
    listed: frozenset[str] = frozenset()  # what "*" allows

    def contact_name(self, number: str) -> str | None:
        for name, contact in self.contacts:
            if same_number(contact, number):
                return name
        return None

    def allowed(self, rule: CallRule, number: str | None) -> bool:
        if number is None:
            return False
        numbers: Iterable[str] = self.listed if rule.callers is None else rule.callers
        return any(same_number(number, allowed) for allowed in numbers)


def _callers(reader: TableReader, rules: RulesConfig, normalise: Callable[[str], str]) -> tuple[str, ...] | None:
    """The numbers ``callers`` names, resolved as command rules' senders are; None for ``"*"``."""
    if not reader.has("callers"):
        raise reader.error("callers", "is required (group or contact names, numbers, or \"*\")")
    return resolve_names(reader, "callers", rules.contacts, rules.groups, normalise, allow_star=True)


def _topic(reader: TableReader) -> str:
    topic = reader.string("topic", required=True, what="an MQTT topic")
    assert topic is not None
    topic = topic.strip()
    if not is_publish_topic(topic) or topic.startswith("$"):
        raise reader.error("topic", f"must be a topic without wildcards (+, #) or a leading $, not {topic!r}")
    return topic


def validate_calls(config: Config) -> CallsConfig:
    """``[calls]`` and ``[[call_rules]]`` of ``config.raw``, typed (use ``config.calls``, which calls this
    once); raise ``ConfigError``."""
    from appliance.numbers import check_destination

    file, raw = config.path, config.raw
    hang_up = True
    if "calls" in raw:
        hang_up = TableReader(file, "calls", raw["calls"], CALLS_KEYS, error=ConfigError).boolean("hang_up", True)
    items = raw.get("call_rules", [])
    if not isinstance(items, list):
        raise ConfigError(file, "call_rules", "must be an array of tables ([[call_rules]])")
    if not items:
        return CallsConfig(hang_up=hang_up)
    rules_config = config.rules

    def normalise(number: str) -> str:
        return check_destination(number, config.numbers)

    rules: list[CallRule] = []
    names: set[str] = set()
    for index, item in enumerate(items):
        reader = TableReader(file, f"call_rules[{index}]", item, RULE_KEYS, error=ConfigError)
        name = reader.string("name", f"call{index + 1}")
        assert name is not None
        if name in names:
            raise reader.error("name", f"{name!r} is used by another call rule")
        names.add(name)
        callers = _callers(reader, rules_config, normalise)
        topic = _topic(reader)
        qos = reader.integer("qos", 1, what="0, 1 or 2")
        if qos not in (0, 1, 2):
            raise reader.error("qos", f"must be 0, 1 or 2, not {qos}")
        rules.append(CallRule(
            name=name, callers=callers, topic=topic, payload=read_template(reader, "payload", "", allowed=TEMPLATE_NAMES) or Template(""),
            qos=qos, retain=reader.boolean("retain", False), receipt=read_template(reader, "receipt", allowed=TEMPLATE_NAMES),
        ))
    return CallsConfig(hang_up=hang_up, rules=tuple(rules), contacts=tuple(rules_config.contacts.items()),
                       listed=frozenset(rules_config.listed()))
