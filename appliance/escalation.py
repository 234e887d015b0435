"""Alerts that must be acknowledged: an alert rule with ``escalate`` goes up an on-call chain.

An alert of such a rule (configuration: :mod:`appliance.escalation_config`) is a row in the store
(``Store.alert_open``) with a state: ``open`` while it goes up the chain, ``acknowledged`` when a
chain member replied ``ACK <code>``, ``resolved`` when the sensor said it is fine, ``expired`` when
the chain ran out. Its code is its id. Step ``k`` sends the alert to ``chain[k % len(chain)]`` with
"Reply ACK <code> to acknowledge"; every ``after`` seconds without an acknowledgement the next step
runs, for ``repeat`` rounds; ``after`` seconds after the last step it expires.

While an alert is active (open, or acknowledged and waiting for its resolve), further triggers of
the same sensor (the values of the rule topic's wildcards) are counted into it: no second chain.

Timers are the ``next_at`` column: the loop here sleeps until the earliest, so a restart picks up
where the last process stopped. A step's SMS and the step count commit in one transaction and a
step runs only if the row is still at that step, so a SIGKILL loses no step and doubles none.

Every change publishes ``B/alert/<id>`` (retained while active, cleared when closed) and
``B/alert_rule/<rule>`` (retained: active alerts of the rule and the latest one; Home Assistant's
entities read it, see :mod:`appliance.discovery_alerts`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from appliance.escalation_config import topic_key
from appliance.intake import IntakeError, OverDailyCap, SendRequest, StoreUnavailable
from appliance.rules.commands import normalise_text
from appliance.rules.templates import fit_text
from appliance.store import CRITICAL, OutboundRequest, same_number
from appliance.store_alerts import ALERT_ACKNOWLEDGED, ALERT_OPEN, ALERT_RESOLVED, Alert
from appliance.topics import topic_matches

if TYPE_CHECKING:
    from appliance.intake import Intake
    from appliance.rules.config import AlertRule, RulesConfig
    from appliance.store import Store

LOG = logging.getLogger(__name__)

#: Longest sleep of the timer loop while a step is pending, in seconds.
MAX_WAIT = 30.0

#: ``ACK``, ``ACK 42``, ``ack #42``, ``ACK42`` (after whitespace is collapsed).
ACK = re.compile(r"ACK(?:\s*#?\s*(\d{1,9}))?", re.IGNORECASE)


def parse_ack(text: str) -> tuple[bool, int | None]:
    """(whether ``text`` is an acknowledgement, the code it names or None)."""
    match = ACK.fullmatch(normalise_text(text))
    if match is None:
        return False, None
    return True, int(match[1]) if match[1] else None


def ack_hint(code: int) -> str:
    return f"Reply ACK {code} to acknowledge"


def alert_text(body: str, code: int, max_parts: int) -> str:
    """The alert SMS: the rule's text, cut if needed so that the ACK hint always fits."""
    return fit_text(body, max_parts, suffix="\n" + ack_hint(code))


class Host(Protocol):
    """What the rules engine (:class:`appliance.rules.engine.RulesEngine`) offers the escalation."""

    rules: RulesConfig
    store: Store
    intake: Intake
    clock: Callable[[], float]
    max_parts: int

    def opted_out(self, number: str) -> bool: ...
    def _count(self, name: str, n: int = 1) -> None: ...
    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...


@dataclass(frozen=True)
class AckOutcome:
    """What an ``ACK`` SMS did: ``kind`` for the audit and tests; ``reply`` to send (None: the
    acknowledgement committed its own messages and marked the SMS handled)."""

    kind: str
    reply: str | None = None


class Escalator:
    """Runs the alerts of the rules with ``escalate`` (see the module docstring)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.rules: dict[str, AlertRule] = {r.name: r for r in host.rules.alerts if r.escalate is not None}
        self._wake = asyncio.Event()

    @property
    def store(self) -> Store:
        return self.host.store

    def filters(self) -> list[str]:
        """The resolve topics to subscribe to (besides the rules' own topics)."""
        return [r.resolve.topic for r in self.rules.values() if r.resolve is not None and r.resolve.topic]

    def start(self) -> None:
        if not self.rules:
            return
        now = self.host.clock()
        for name in self.rules:
            self.store.alert_rule_publish(name, now=now)  # the retained rule state reflects the store
        self.host._spawn(self._timers())

    def wake(self) -> None:
        self._wake.set()

    # --- the timers -----------------------------------------------------------------------

    async def _timers(self) -> None:
        while True:
            self._wake.clear()
            try:
                self.run_due()
            except Exception:
                LOG.exception("running due alert steps failed")
                await asyncio.sleep(1.0)
            due = self.store.alert_next_due()
            # the timers are wall-clock times (they outlive the process): wake at least every
            # MAX_WAIT so that a clock set late (NTP after a boot without RTC) is noticed
            timeout = None if due is None else min(MAX_WAIT, max(0.0, due - self.host.clock()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def run_due(self) -> list[int]:
        """Run every step (or expiry) that is due; the ids of the SMS queued."""
        now = self.host.clock()
        ids: list[int] = []
        for alert in self.store.alerts_due(now):
            rule = self.rules.get(alert.rule)
            if rule is None or alert.step >= alert.steps:
                detail = {"rule": alert.rule, "alerted": list(alert.alerted),
                          **({} if rule else {"reason": "rule removed"})}
                if self.store.alert_expire(alert.id, alert.step, now, audit=("alert_expired", detail)) is not None:
                    self.host._count("alerts_expired")
                continue
            ids += self._step(rule, alert, now)
        return ids

    def _requests(self, rule: AlertRule, numbers: Sequence[str], text: str, now: float,
                  what: str) -> list[OutboundRequest]:
        """The SMS of one change of an alert, checked by the send intake (the caller commits them with
        the change): one per number, minus the opted-out ones (unless critical); none past the
        source's daily cap or when the intake refuses them (audited). A store failure is raised:
        nothing is committed, and the change is tried again."""
        if not rule.critical:
            skipped = [n for n in numbers if self.host.opted_out(n)]
            if skipped:
                self.store.audit("alert_optout", {"rule": rule.name, "skipped": skipped, "what": what}, now=now)
            numbers = [n for n in numbers if n not in skipped]
        if not numbers:
            return []
        request = SendRequest(to=tuple(numbers), text=text, source=rule.source,
                              priority=CRITICAL if rule.critical else rule.priority, valid_for=rule.valid_for or None)
        try:
            return list(self.host.intake.admit(request, now).requests)
        except StoreUnavailable:
            raise
        except OverDailyCap as exc:
            self.host._count("alerts_capped")
            self.store.audit("cap_exceeded", {"source": rule.source, "error": str(exc), "what": what}, now=now)
            LOG.warning("%s", exc)
        except IntakeError as exc:
            self.store.audit("alert_refused", {"rule": rule.name, "reason": exc.reason, "error": str(exc),
                                               "what": what}, now=now)
            LOG.warning("alert %s (%s) refused: %s", rule.name, what, exc)
        return []

    def _step(self, rule: AlertRule, alert: Alert, now: float) -> list[int]:
        assert rule.escalate is not None
        text = alert_text(alert.text, alert.id, self.host.max_parts)
        requests = self._requests(rule, rule.escalate.recipients(alert.step), text, now,
                                  f"step {alert.step + 1}")
        # nobody to reach at this step (opted out, capped): the next one at once
        next_at = now + rule.escalate.after if requests else now
        detail = {"rule": rule.name, "step": alert.step + 1, "to": rule.escalate.entry(alert.step),
                  "numbers": [r.to for r in requests]}
        results = self.store.alert_step(alert.id, alert.step, requests, next_at, now=now, audit=("alert_step", detail))
        if results is None:
            return []
        self.host._count("alert_steps")
        self.wake()
        return [r.id for r in results]

    # --- triggers and resolves ------------------------------------------------------------

    def resolves(self, rule: AlertRule, topic: str, payload: bytes | str) -> bool:
        resolve = rule.resolve
        return resolve is not None and topic_matches(resolve.filter(rule.topic), topic) \
            and resolve.payload_matches(payload)

    def fire(self, rule: AlertRule, topic: str, payload: bytes | str, text: str, now: float) -> list[int]:
        """A message that triggers ``rule``: open an alert (its first step at once) unless one is
        active for the same sensor; the ids of the SMS queued."""
        if self.resolves(rule, topic, payload):
            return []  # an "ok" on the rule's own topic: on_message resolved it
        alert, new = self.store.alert_open(
            rule.name, topic_key(rule.topic, topic), topic, text, rule.escalate.steps if rule.escalate else 1,
            now=now, audit=("alert_opened", {"rule": rule.name, "topic": topic, "text": text}))
        if not new:
            self.host._count("alerts_absorbed")
            return []
        self.host._count("alerts_opened")
        ids = self._step(rule, alert, now)
        self.wake()
        return ids

    def on_message(self, topic: str, payload: bytes | str) -> list[int]:
        """Every message the alert rules see: one that resolves a rule closes the active alert of
        its sensor and tells everyone alerted; the ids of the alerts resolved."""
        ids: list[int] = []
        for rule in self.rules.values():
            if rule.resolve is None or not self.resolves(rule, topic, payload):
                continue
            key = topic_key(rule.resolve.filter(rule.topic), topic)
            for alert in self.store.alerts(active=True, rule=rule.name):
                if alert.key == key and self.resolve(rule, alert, topic):
                    ids.append(alert.id)
        return ids

    def resolve(self, rule: AlertRule, alert: Alert, by: str) -> bool:
        now = self.host.clock()
        told = list(alert.alerted)
        if alert.acknowledged_by and not any(same_number(alert.acknowledged_by, n) for n in told):
            told.append(alert.acknowledged_by)
        text = fit_text(f"Alert {alert.id} resolved: {alert.text}", self.host.max_parts)
        requests = self._requests(rule, told, text, now, "resolved")
        detail = {"rule": rule.name, "by": by, "told": [r.to for r in requests]}
        if self.store.alert_resolve(alert.id, by, requests, now=now, audit=("alert_resolved", detail)) is None:
            return False
        self.host._count("alerts_resolved")
        self.wake()
        return True

    # --- acknowledgements -----------------------------------------------------------------

    def _member(self, rule: AlertRule, sender: str) -> str | None:
        """The chain's number for ``sender`` (as configured, normalised), or None if not a member."""
        members = rule.escalate.members if rule.escalate is not None else ()
        return next((number for number in members if same_number(sender, number)), None)

    def help(self, sender: str) -> list[str]:
        """What HELP lists for ``sender``: ``ACK <code>`` if it is in an on-call chain."""
        return ["ACK <code>"] if any(self._member(rule, sender) for rule in self.rules.values()) else []

    def acknowledge(self, message_id: int, sender: str, text: str, now: float) -> AckOutcome | None:
        """An SMS from a listed sender: if it is ``ACK [code]``, acknowledge; None if it is not."""
        if not self.rules:
            return None
        is_ack, code = parse_ack(text)
        if not is_ack:
            return None
        if code is None:
            mine = [a for a in self.store.alerts(states=(ALERT_OPEN,), limit=1000)
                    if a.rule in self.rules and self._member(self.rules[a.rule], sender) is not None]
            if not mine:
                return AckOutcome("ack_none", "No open alert to acknowledge")
            if len(mine) > 1:
                codes = ", ".join(str(a.id) for a in sorted(mine, key=lambda a: a.id))
                return AckOutcome("ack_ambiguous", f"{len(mine)} open alerts: {codes}. Reply ACK <code>")
            alert: Alert | None = mine[0]
        else:
            alert = self.store.alert(code)
        if alert is None or alert.rule not in self.rules:
            return AckOutcome("ack_unknown", f"No alert {code}")
        rule = self.rules[alert.rule]
        member = self._member(rule, sender)
        if member is None:
            return AckOutcome("ack_denied", f"Alert {alert.id}: you are not in its on-call chain")
        sender = member  # the number as configured: replies go to it
        if alert.state == ALERT_ACKNOWLEDGED:
            return AckOutcome("ack_again", f"Alert {alert.id} was acknowledged by "
                                           f"{alert.acknowledged_name or alert.acknowledged_by} already")
        if alert.state == ALERT_RESOLVED:
            return AckOutcome("ack_resolved", f"Alert {alert.id} is resolved already")
        name = self.host.rules.contact_name(sender) or sender
        others = [n for n in alert.alerted if not same_number(n, sender)]
        requests = self._requests(rule, others, fit_text(f"Alert {alert.id} ({rule.name}) acknowledged by {name}",
                                                         self.host.max_parts), now, "acknowledged")
        told = [self.host.rules.contact_name(r.to) or r.to for r in requests]
        confirmation = f"Alert {alert.id} acknowledged" + (f"; told {', '.join(told)}" if told else "")
        requests += self._requests(rule, [sender], confirmation, now, "acknowledged")
        detail = {"rule": rule.name, "by": sender, "told": [r.to for r in requests]}
        done = self.store.alert_acknowledge(alert.id, sender, name, requests, close=rule.resolve is None,
                                            handled=message_id, now=now, audit=("alert_acknowledged", detail))
        if done is None:
            return AckOutcome("ack_again", f"Alert {alert.id} is no longer open")
        self.host._count("alerts_acknowledged")
        self.wake()
        return AckOutcome("acknowledged")
