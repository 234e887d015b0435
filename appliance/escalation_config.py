"""The ``escalate`` and ``resolve`` keys of an alert rule: an on-call chain, and what closes an alert.

```toml
[[alerts]]
name     = "freezer"
topic    = "sensors/+/temperature"
text     = "Freezer {topic[1]}: {temperature:.1f} °C"
escalate = { chain = ["oncall_primary", "oncall_backup", "site_manager"], after = "5m", repeat = 2 }
resolve  = { topic = "sensors/+/ok" }          # or { field = "state", value = "ok" } on the same topic
```

Read here (pure, no store) with the one table reader (:class:`drivers.toml_reader.TableReader`) for
:func:`appliance.rules.config.validate_rules_table`; run by :mod:`appliance.escalation`. Errors name
the key: ``FILE: alerts[0].escalate.chain[1]: ...``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.toml_reader import TableReader

#: ``after`` when the rule does not say.
DEFAULT_AFTER = 300.0
#: Limits that keep a typo from sending hundreds of SMS.
MAX_CHAIN = 20
MAX_REPEAT = 10
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")

#: Resolves one chain entry (its dotted key, the entry) to its numbers: a group, a contact or a
#: number; raises ``ConfigError`` naming the key otherwise (``appliance.rules.config``).
Resolver = Callable[[str, str], tuple[str, ...]]
#: Why a topic filter may not be subscribed to by a rule (None if it may).
FilterCheck = Callable[[str], str | None]


@dataclass(frozen=True)
class Escalation:
    """``escalate = { chain, after, repeat }``: step ``k`` goes to ``chain[k % len(chain)]``; the
    alert expires ``after`` seconds after its last step without an acknowledgement."""

    chain: tuple[tuple[str, ...], ...]  # normalised numbers per chain entry
    names: tuple[str, ...]  # the entries as written (contact, group or number)
    after: float = DEFAULT_AFTER
    repeat: int = 1

    @property
    def steps(self) -> int:
        return len(self.chain) * self.repeat

    @property
    def members(self) -> tuple[str, ...]:
        """Every number of the chain (who may acknowledge)."""
        return tuple(dict.fromkeys(number for entry in self.chain for number in entry))

    def recipients(self, step: int) -> tuple[str, ...]:
        return self.chain[step % len(self.chain)]

    def entry(self, step: int) -> str:
        return self.names[step % len(self.names)]


@dataclass(frozen=True)
class Resolve:
    """``resolve``: a message on ``topic`` (default: the rule's own topic) — with ``field`` set, one
    whose JSON field ``field`` equals ``value`` — closes the active alert of the same sensor (the
    values of the topic's wildcards)."""

    topic: str | None = None
    field: str | None = None
    value: str | int | float | bool = True

    def filter(self, rule_topic: str) -> str:
        return self.topic or rule_topic

    def payload_matches(self, payload: bytes | str) -> bool:
        if self.field is None:
            return True
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return False
        return isinstance(data, dict) and self.field in data and _same_value(data[self.field], self.value)


def _same_value(found: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(found, bool):
        return isinstance(found, bool) and isinstance(wanted, bool) and found is wanted
    if isinstance(wanted, str) and isinstance(found, str):
        return found.strip().lower() == wanted.strip().lower()
    return bool(found == wanted)


def wildcards(topic_filter: str) -> tuple[int, bool]:
    """How many ``+`` levels the filter has, and whether it ends in ``#``."""
    levels = topic_filter.split("/")
    return sum(level == "+" for level in levels), levels[-1] == "#"


def topic_key(topic_filter: str, topic: str) -> str:
    """Which sensor ``topic`` is, as the values of the filter's wildcards (JSON): ``sensors/+/ok`` and
    ``sensors/freezer-3/ok`` give ``["freezer-3"]``; so do ``sensors/+/temperature`` and
    ``sensors/freezer-3/temperature``: an "ok" closes the alert of the same sensor."""
    levels, values = topic.split("/"), []
    for index, level in enumerate(topic_filter.split("/")):
        if level == "#":
            values.append("/".join(levels[index:]))
            break
        if level == "+" and index < len(levels):
            values.append(levels[index])
    return json.dumps(values, ensure_ascii=False)


def read_escalation(rule: TableReader, resolve_entry: Resolver) -> Escalation | None:
    """The ``escalate`` table of the alert rule read by ``rule``, or None; chain entries are
    contacts, groups or numbers (``resolve_entry``)."""
    if not rule.has("escalate"):
        return None
    reader = rule.sub("escalate", ("chain", "after", "repeat"))
    if not reader.has("chain"):
        raise reader.error("chain", "is required: the contacts, groups or numbers to alert in turn")
    chain = reader.table["chain"]
    if isinstance(chain, str):
        chain = [chain]
    if not isinstance(chain, list) or not chain:
        raise reader.error("chain", "must be a non-empty array of contacts, groups or numbers")
    if len(chain) > MAX_CHAIN:
        raise reader.error("chain", f"has {len(chain)} entries; at most {MAX_CHAIN}")
    entries = tuple(_chain_entry(reader, f"chain[{index}]", entry, resolve_entry)
                    for index, entry in enumerate(chain))
    after = reader.duration("after", DEFAULT_AFTER)
    if after is None or after <= 0:
        raise reader.error("after", "must be a duration longer than 0, like '5m'")
    repeat = reader.integer("repeat", 1, minimum=1, maximum=MAX_REPEAT, what="a whole number of rounds")
    assert repeat is not None
    return Escalation(chain=entries, names=tuple(str(e).strip() for e in chain), after=after, repeat=repeat)


def _chain_entry(reader: TableReader, name: str, entry: object, resolve_entry: Resolver) -> tuple[str, ...]:
    """The numbers of one chain entry: a group (all its members), a contact or a number."""
    if not isinstance(entry, str) or not entry.strip():
        raise reader.error(name, f"must be a contact, a group or a number, not {entry!r}")
    numbers = resolve_entry(reader.key(name), entry.strip())
    if not numbers:
        raise reader.error(name, f"{entry.strip()!r} names nobody")
    return numbers


def read_resolve(rule: TableReader, rule_topic: str, escalation: Escalation | None,
                 filter_error: FilterCheck) -> Resolve | None:
    """The rule's ``resolve`` (a topic filter, or a table ``{ topic, field, value }``), or None."""
    if not rule.has("resolve"):
        return None
    if escalation is None:
        raise rule.error("resolve", "only applies to a rule with escalate (only escalating alerts stay open "
                                    "until resolved)")
    value = rule.table["resolve"]
    if isinstance(value, str):
        value = {"topic": value}
    reader = TableReader(rule.file, rule.key("resolve"), value, ("topic", "field", "value"), error=rule.make_error)
    topic = reader.string("topic", what="a topic filter like \"sensors/+/ok\"")
    field = reader.string("field", what="the name of a JSON field of the payload")
    if topic is None and field is None:
        raise rule.error("resolve", "needs a topic (the sensor's \"ok\" topic) or a field (of the payload)")
    if field is not None and not _FIELD.fullmatch(field):
        raise reader.error("field", f"must be a field name (letters, digits, _ and -), not {field!r}")
    wanted: str | int | float | bool = True
    if reader.has("value"):
        if field is None:
            raise reader.error("value", "needs field (the JSON field compared with it)")
        wanted = reader.typed("value", (str, int, float, bool), "a string, a number or true/false")
    if topic is not None:
        _check_resolve_topic(reader, topic, rule_topic, field, filter_error)
    return Resolve(topic=topic, field=field, value=wanted)


def _check_resolve_topic(reader: TableReader, topic: str, rule_topic: str, field: str | None,
                         filter_error: FilterCheck) -> None:
    problem = filter_error(topic)
    if problem is not None:
        raise reader.error("topic", problem)
    if wildcards(topic) != wildcards(rule_topic):
        plus, hash_ = wildcards(rule_topic)
        raise reader.error("topic", f"must have the wildcards of the rule's topic {rule_topic!r} ({plus} '+'"
                                    f"{' and a final #' if hash_ else ''}), in the same order, so that an "
                                    "\"ok\" names the sensor whose alert it closes")
    if topic == rule_topic and field is None:
        raise reader.error("field", "is required when resolve.topic is the rule's own topic (which message "
                                    "alerts and which resolves?)")


def check_combination(rule: TableReader, name: str, escalation: Escalation | None) -> None:
    """``to`` and ``cooldown`` do not go with ``escalate``; a rule without it needs ``to``."""
    if escalation is None:
        if not rule.has("to"):
            raise rule.error("to", "is required (or escalate = { chain = [...] })")
        return
    if not name.strip() or any(ch in name for ch in "/+#\0"):
        raise rule.error("name", f"{name!r}: a rule with escalate publishes its state on alert_rule/<name>, so "
                                 "the name may not be empty nor contain '/', '+', '#' or NUL")
    if rule.has("to"):
        raise rule.error("to", "a rule with escalate alerts its escalate.chain; put these recipients in the chain")
    if rule.has("cooldown"):
        raise rule.error("cooldown", "does not apply to a rule with escalate: while its alert is open, further "
                                     "triggers are counted into it")
