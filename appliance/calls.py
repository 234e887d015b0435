"""Incoming calls as triggers: ``B/call`` for every call, a hang-up, and ``[[call_rules]]``.

The modems turn ring URCs into ``IncomingCall`` / ``CallEnded`` (``drivers/calls.py``) and the
inbound side hands both to :meth:`CallTriggers.on_call`. For every ``IncomingCall``:

1. the call is rejected with the profile's hang-up command (``[calls] hang_up = true``, the default):
   the caller hears it end before anyone answers, so the call costs the caller nothing;
2. a ``call`` store event is committed, published on ``B/call`` at QoS 1 like ``B/received``
   (``{"from", "at", "modem"}``, plus ``"reason"`` when the number is not shown);
3. every ``[[call_rules]]`` entry whose ``callers`` list the number publishes its MQTT action
   (``topic`` / ``payload``) and, with ``receipt``, queues an SMS to the caller through the send
   intake (``appliance.intake``); a withheld or unlisted caller triggers nothing. Each outcome is
   audited (``call``, ``call_rule``, ``call_ignored``, ``call_receipt_refused``).

Config::

    [calls]
    hang_up = true                 # reject every call at once (false: let it ring out)

    [[call_rules]]
    name    = "gate"
    callers = ["staff", "+4917012345678"]   # groups, contacts, numbers (as command senders), or "*"
    topic   = "farm/gate/set"
    payload = '{{"action": "open", "by": "{caller_name}"}}'
    receipt = "Gate opening, {caller_name}"  # optional SMS back to the caller

``callers = "*"`` means any number the configuration lists (contacts, group members, alert
recipients, command senders), as ``senders = "*"`` does for command rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from appliance.config import Config, ConfigError
from appliance.intake import Intake, IntakeError, IntakePolicy, SendRequest
from appliance.rules.templates import Template, TemplateError
from appliance.store import Store, same_number
from appliance.topics import is_publish_topic
from drivers.toml_reader import did_you_mean

if TYPE_CHECKING:
    from drivers.calls import CallEnded, IncomingCall
    from drivers.modem import Modem

LOG = logging.getLogger(__name__)

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


class _Table:
    """One TOML table; unknown keys are errors with a did-you-mean hint."""

    def __init__(self, file: str, key: str, table: object, known: tuple[str, ...]) -> None:
        self.file, self.key, self.known = file, key, known
        if not isinstance(table, dict):
            raise ConfigError(file, key, f"must be a table, not {type(table).__name__}")
        self.table: dict[str, Any] = table
        for name in table:
            if name not in known:
                raise self.error(name, f"unknown key{did_you_mean(name, known)}; known keys: {', '.join(known)}")

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.file, f"{self.key}.{name}", reason)

    def get(self, name: str, kind: type, what: str, default: Any = None, *, required: bool = False) -> Any:
        if name not in self.table:
            if required:
                raise self.error(name, "is required")
            return default
        value = self.table[name]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise self.error(name, f"must be {what}, not {value!r}")
        return value

    def template(self, name: str, default: str | None = None) -> Template | None:
        text = self.get(name, str, "a text template", default)
        if text is None:
            return None
        try:
            template = Template(text)
        except TemplateError as exc:
            raise self.error(name, str(exc)) from None
        unknown = sorted(template.names - TEMPLATE_NAMES)
        if unknown:
            hint = did_you_mean(unknown[0], sorted(TEMPLATE_NAMES))
            raise self.error(name, f"unknown name {unknown[0]!r} in template{hint}; known: "
                                   f"{', '.join(sorted(TEMPLATE_NAMES))}")
        return template


def _callers(table: _Table, value: object, contacts: Mapping[str, str], groups: Mapping[str, tuple[str, ...]],
             normalise: Callable[[str], str]) -> tuple[str, ...] | None:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise table.error("callers", "must be a name or number, or a non-empty array of them (or \"*\")")
    numbers: list[str] = []
    for index, item in enumerate(value):
        key = f"{table.key}.callers[{index}]"
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(table.file, key, f"must be a non-empty string, not {item!r}")
        item = item.strip()
        if item == "*":
            return None
        if item in groups:
            numbers.extend(groups[item])
        elif item in contacts:
            numbers.append(contacts[item])
        elif item[:1] in "+0123456789":
            try:
                numbers.append(normalise(item))
            except ValueError as exc:
                raise ConfigError(table.file, key, str(exc)) from None
        else:
            known = sorted(set(contacts) | set(groups))
            raise ConfigError(table.file, key, f"{item!r} is not a contact, a group or a number{did_you_mean(item, known)}"
                              + (f"; known names: {', '.join(known)}" if known else ""))
    return tuple(dict.fromkeys(numbers))


def validate_calls(config: Config) -> CallsConfig:
    """``[calls]`` and ``[[call_rules]]`` of ``config.raw``, typed; ``ConfigError`` (FILE: KEY: REASON).

    Contacts and groups are the ones command rules use (``Config.rules``)."""
    from appliance.numbers import check_destination

    file = str(config.path)
    raw = config.raw
    hang_up = True
    if "calls" in raw:
        table = _Table(file, "calls", raw["calls"], CALLS_KEYS)
        hang_up = table.get("hang_up", bool, "true or false", True)
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
        table = _Table(file, f"call_rules[{index}]", item, RULE_KEYS)
        name = table.get("name", str, "a string", f"call{index + 1}")
        if not name.strip():
            raise table.error("name", "must not be empty")
        if name in names:
            raise table.error("name", f"{name!r} is used by another call rule")
        names.add(name)
        if "callers" not in table.table:
            raise table.error("callers", "is required (group or contact names, numbers, or \"*\")")
        callers = _callers(table, table.table["callers"], rules_config.contacts, rules_config.groups, normalise)
        topic = table.get("topic", str, "an MQTT topic", required=True).strip()
        if not is_publish_topic(topic) or topic.startswith("$"):
            raise table.error("topic", f"must be a topic without wildcards (+, #) or a leading $, not {topic!r}")
        qos = table.get("qos", int, "0, 1 or 2", 1)
        if qos not in (0, 1, 2):
            raise table.error("qos", f"must be 0, 1 or 2, not {qos}")
        rules.append(CallRule(
            name=name, callers=callers, topic=topic, payload=table.template("payload", "") or Template(""),
            qos=qos, retain=table.get("retain", bool, "true or false", False), receipt=table.template("receipt"),
        ))
    return CallsConfig(hang_up=hang_up, rules=tuple(rules), contacts=tuple(rules_config.contacts.items()),
                       listed=frozenset(rules_config.listed()))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CallTriggers:
    """Hangs up, publishes ``B/call`` and runs the call rules for the calls the modems report."""

    def __init__(self, config: Config, store: Store, modems: Mapping[str, Modem], *,
                 bridge: Callable[[], Any] = lambda: None, settings: CallsConfig | None = None) -> None:
        self.settings = settings if settings is not None else validate_calls(config)
        self.store = store
        self.modems = modems
        self.bridge = bridge  # the MQTT bridge once it runs (None without [mqtt])
        self.intake = Intake(IntakePolicy.from_config(config), store)
        self.counters = {"calls": 0, "triggered": 0, "ignored": 0, "hung_up": 0}
        self._tasks: set[asyncio.Task[None]] = set()

    def on_call(self, event: IncomingCall | CallEnded) -> None:
        """``Inbound``'s ``on_call``: runs on the event loop, never raises."""
        from drivers.calls import IncomingCall

        if not isinstance(event, IncomingCall):
            LOG.info("call on %s from %s ended (%s) after %d ring(s)", event.modem_id, event.number or "?",
                     event.reason, event.rings)
            return
        task = asyncio.get_running_loop().create_task(self.handle(event), name=f"call-{event.modem_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def handle(self, call: IncomingCall) -> None:
        try:
            await self._handle(call)
        except asyncio.CancelledError:
            raise
        except Exception:
            LOG.exception("handling the call on %s from %s failed", call.modem_id, call.number)

    async def _handle(self, call: IncomingCall) -> None:
        self.counters["calls"] += 1
        LOG.info("call on %s from %s%s", call.modem_id, call.number or "?",
                 f" ({call.reason})" if call.number is None else "")
        # the hang-up goes to the modem's queue first; the store and the rules do not delay it
        hang_up = asyncio.ensure_future(self._hang_up(call)) if self.settings.hang_up else None
        event: dict[str, Any] = {"from": call.number, "at": _iso(call.at), "modem": call.modem_id}
        if call.number is None:
            event["reason"] = call.reason
        self.store.add_event("call", event, qos=1)
        self.store.audit("call", event)
        self._run_rules(call)
        if hang_up is not None:
            await hang_up

    async def _hang_up(self, call: IncomingCall) -> None:
        modem = self.modems.get(call.modem_id)
        if modem is None:
            return
        try:
            await modem.hang_up()
        except Exception as exc:  # the call rings out; nothing else depends on the hang-up
            LOG.warning("hanging up the call on %s failed: %s", call.modem_id, exc)
            self.store.audit("call_hang_up_failed", {"modem": call.modem_id, "error": str(exc)})
            return
        self.counters["hung_up"] += 1

    def _run_rules(self, call: IncomingCall) -> None:
        settings = self.settings
        if not settings.rules:
            return
        number = call.number
        matched = [rule for rule in settings.rules if settings.allowed(rule, number)]
        if not matched:
            self.counters["ignored"] += 1
            reason = f"number not shown ({call.reason})" if number is None else "caller not listed"
            self.store.audit("call_ignored", {"modem": call.modem_id, "from": number, "reason": reason})
            LOG.info("call from %s on %s triggers nothing: %s", number or "?", call.modem_id, reason)
            return
        assert number is not None
        context = {"caller": number, "caller_name": settings.contact_name(number) or number,
                   "modem": call.modem_id, "at": _iso(call.at)}
        bridge = self.bridge()
        for rule in matched:
            context["rule"] = rule.name
            base = {"rule": rule.name, "from": number, "modem": call.modem_id, "topic": rule.topic}
            if bridge is None:
                self.store.audit("call_rule_failed", {**base, "error": "MQTT is not configured"})
                continue
            try:  # one failing rule (a template, the client) never keeps the others from firing
                payload = rule.payload.render(context)
                bridge.publish(rule.topic, payload.encode(), qos=rule.qos, retain=rule.retain)
            except Exception as exc:
                LOG.warning("call rule %s: publishing on %s failed: %s", rule.name, rule.topic, exc)
                self.store.audit("call_rule_failed", {**base, "error": str(exc)})
                continue
            self.counters["triggered"] += 1
            self.store.audit("call_rule", {**base, "payload": payload})
            LOG.info("call from %s on %s: rule %s published on %s", number, call.modem_id, rule.name, rule.topic)
            if rule.receipt is not None:
                self._receipt(rule, number, rule.receipt, context)

    def _receipt(self, rule: CallRule, number: str, receipt: Template, context: Mapping[str, Any]) -> None:
        try:
            text = receipt.render(context)
            self.intake.submit(SendRequest(to=(number,), text=text, source=rule.source, priority="high",
                                           answer=True))
        except (IntakeError, TemplateError, ValueError) as exc:
            LOG.warning("call rule %s: receipt to %s refused: %s", rule.name, number, exc)
            reason = exc.reason if isinstance(exc, IntakeError) else "template"
            self.store.audit("call_receipt_refused", {"rule": rule.name, "to": number, "reason": reason,
                                                      "error": str(exc)})
