"""The rules engine: runs the alert rules on messages from the broker (and the gateway's own events)
and the command rules on received SMS, against the MQTT bridge and the store."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.escalation import AckOutcome, Escalator
from appliance.intake import (
    BadDestination,
    Intake,
    IntakePolicy,
    OverDailyCap,
    RecipientOptedOut,
    SendRequest,
)
from appliance.rules.alerts import STATE_COOLDOWN, Cooldown, Summary, render_summary
from appliance.rules.commands import (
    CommandMatch,
    PinGuard,
    format_status,
    match_command,
    normalise_text,
    pin_ok,
    sender_allowed,
    withhold_pin,
)
from appliance.rules.config import BUILTINS, AlertRule, CommandRule
from appliance.rules.templates import Payload, alert_context, fit_text
from appliance.store import CRITICAL, same_number
from appliance.topics import cover_filters, is_publish_topic, topic_matches

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.store import ReceivedMessage, Store

LOG = logging.getLogger(__name__)

#: Seconds within which an identical (topic, payload) delivery counts as a copy of the first.
DUPLICATE_WINDOW = 1.0


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


@dataclass
class _Received:
    """A received SMS on its way through the command rules."""

    id: int
    sender: str
    text: str  # whitespace normalised
    now: float
    audit: dict[str, Any]  # what every audit entry about it holds


class RulesEngine:
    """Runs the alert and command rules against the MQTT bridge and the store.

    Every store call happens on the event loop's thread: bridge callbacks are handed over with
    ``call_soon_threadsafe``.
    """

    def __init__(self, config: Config, store: Store, bridge: Any, *,
                 status: Callable[[], dict[str, Any]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.rules = config.rules
        #: every SMS of the rules (alerts, replies) goes through the one send intake
        self.intake = Intake(IntakePolicy.from_config(config), store)
        self.store = store
        self.bridge = bridge
        self.status = status or (lambda: {})
        self.clock = clock
        self.max_parts = config.limits.max_parts
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
        self.escalation = Escalator(self)  # rules with escalate: on-call chains, ACK, resolve

    # --- life cycle ---

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        for rule in self.rules.alerts:
            self.cooldown.load(rule.name, self.store.state_get(STATE_COOLDOWN, rule.name) or {})
        subscriptions: list[tuple[str, Callable[[str, bytes], None]]] = [
            (topic_filter, self._alert_handler)
            for topic_filter in cover_filters([*(rule.topic for rule in self.rules.alerts),
                                               *self.escalation.filters()])]
        subscriptions += [(reply_filter, self._reply_handler) for reply_filter in dict.fromkeys(
            f for f in (c.reply_filter() for c in self.rules.commands) if f is not None)]
        for topic_filter, handler in subscriptions:  # the bridge sends them now or on (re)connect
            self.bridge.subscribe(topic_filter, handler)
        self._remove_listener = self.store.add_listener(self._incoming.set)
        self._spawn(self._summaries())
        self._spawn(self._commands())
        self.escalation.start()
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
        try:
            self.escalation.on_message(topic, payload)  # a resolve closes escalating alerts
        except Exception:
            LOG.exception("resolving alerts on %s failed", topic)
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
        if rule.escalate is not None and self.escalation.resolves(rule, topic, payload):
            return []  # an "ok": resolved in _fire_matching
        context = alert_context(topic, payload, rule.name)
        text, missing = rule.text.render_checked(context)
        if missing:
            LOG.warning("alert %s on %s: no value for %s", rule.name, topic, ", ".join(missing))
        if self._quiet_drops(rule, now):
            self._count("alerts_quiet")
            self.store.audit("alert_quiet", {"rule": rule.name, "topic": topic, "text": text}, now=now)
            return []
        if rule.escalate is not None:  # an on-call chain instead of ``to`` and cooldown
            return self.escalation.fire(rule, topic, payload, text, now)
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

    def _quiet_drops(self, rule: AlertRule, now: float) -> bool:
        """Whether ``[quiet_hours]`` drops this alert now: not critical, inside the window, and neither
        ``hold = true`` nor a ``quiet_hours`` of the rule's own (both hold it in the intake instead)."""
        quiet = self.rules.quiet_hours
        return (not rule.critical and quiet is not None and not self.rules.quiet_hold
                and rule.quiet_hours is None and quiet.active(now))

    def _save_cooldown(self, rule: AlertRule) -> None:
        if rule.cooldown > 0:
            self.store.state_set(STATE_COOLDOWN, rule.name, self.cooldown.export(rule.name) or None)

    def _send_alert(self, rule: AlertRule, text: str, now: float) -> list[int]:
        """Queue one alert SMS through the intake; recipients who sent STOP are skipped (and audited)
        unless the rule is critical."""
        recipients = list(rule.to)
        if not rule.critical:
            opted_out = [n for n in recipients if self.opted_out(n)]
            if opted_out:
                self.store.audit("alert_optout", {"rule": rule.name, "skipped": opted_out}, now=now)
            recipients = [n for n in recipients if n not in opted_out]
        if not recipients:
            return []
        request = SendRequest(to=tuple(recipients), text=fit_text(text, self.max_parts), source=rule.source,
                              priority=CRITICAL if rule.critical else rule.priority, valid_for=rule.valid_for or None,
                              message_class=0 if rule.flash else None, quiet_hours=rule.quiet_hours)
        try:
            accepted = self.intake.submit(request, now)
        except OverDailyCap as exc:
            self._count("alerts_capped")
            self.store.audit("cap_exceeded", {"source": rule.source, "error": str(exc)}, now=now)
            LOG.warning("%s", exc)
            return []
        self._count("alerts_sent")
        return [message.id for message in accepted]

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
            if self._quiet_drops(rule, now):
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
        sender = message.sender or ""
        text = normalise_text(message.text)
        sms = _Received(message.id, sender, text, self.clock(),
                        {"message": message.id, "from": sender, "text": withhold_pin(self.rules.commands, text)})
        if message.error or not sender or not self.is_listed(sender):
            self._done(sms, "unlisted_sender")
            self._count("unlisted")
            return "unlisted"
        acked = self.escalation.acknowledge(sms.id, sender, text, sms.now)  # ACK [code]
        if acked is not None:
            return self._acknowledged(sms, acked)
        word = text.upper()
        if self.rules.builtins and word in BUILTINS:
            return self._run_builtin(sms, word)
        found = match_command(self.rules.commands, text)
        if found is None:
            self._done(sms, "command_unknown", reply=self.rules.unknown_reply)
            return "unknown"
        sms.audit["rule"] = found.rule.name
        if found.rule.pin is not None:
            sms.audit["text"] = "(withheld: may contain a PIN)"
        refused = self._refusal(sms, found)
        if refused is not None:
            return refused
        return await self._execute(sms, found)

    def _done(self, sms: _Received, kind: str, detail: Mapping[str, Any] | None = None, *,
              reply: str | None = None, source: str = "builtin") -> None:
        """Audit ``kind``, mark the SMS handled, and send ``reply`` (if any) to its sender."""
        self.store.audit(kind, {**sms.audit, **(detail or {})}, now=sms.now)
        self.store.received_handled(sms.id)
        if reply:
            self._reply(sms.sender, reply, source, sms.now)

    def _acknowledged(self, sms: _Received, outcome: AckOutcome) -> str:
        """An ``ACK`` SMS (appliance/escalation.py): one that acknowledged committed its SMS and was
        marked handled with the alert; one that did not is audited and answered why."""
        if outcome.reply is not None:
            self._done(sms, outcome.kind, reply=outcome.reply)
        return outcome.kind

    def _run_builtin(self, sms: _Received, word: str) -> str:
        self.store.received_handled(sms.id)
        reply = self._builtin(word, sms.sender, sms.now)
        self.store.audit("builtin", {**sms.audit, "command": word}, now=sms.now)
        # the confirmation of a STOP reaches the number that just opted out
        self._reply(sms.sender, reply, "builtin", sms.now, priority=CRITICAL if word == "STOP" else "high")
        return word.lower()

    def _refusal(self, sms: _Received, found: CommandMatch) -> str | None:
        """Why the matched rule does not run for this sender (denied, locked, PIN), or None if it does."""
        rule = found.rule
        if not sender_allowed(rule, sms.sender):
            self._done(sms, "command_denied", reply=f"{rule.name}: not allowed from this number", source=rule.source)
            return "denied"
        if rule.pin is None:
            return None
        locked = self.pins.locked_for(sms.sender, sms.now)
        if locked > 0:
            self._done(sms, "pin_locked", reply=f"Locked after wrong PINs; try again in "
                                                f"{max(1, round(locked / 60))} min", source=rule.source)
            return "locked"
        if pin_ok(rule, found.pin_given):
            self.pins.success(sms.sender)
            return None
        count, now_locked = self.pins.failure(sms.sender, sms.now, rule.pin_attempts, rule.pin_lockout)
        if now_locked:
            reply = f"Wrong PIN; locked for {max(1, round(rule.pin_lockout / 60))} min"
        else:
            reply = "PIN required" if found.pin_given is None else "Wrong PIN"
        kind = "pin_lockout" if now_locked else "pin_failure"
        self._done(sms, kind, {"failures": count}, reply=reply, source=rule.source)
        return kind

    async def _execute(self, sms: _Received, found: CommandMatch) -> str:
        """Publish the rule's payload on its topic, then reply (fixed text, or the reply topic's answer)."""
        rule = found.rule
        context: dict[str, Any] = dict(found.groups)
        context.update(sender=sms.sender, sender_name=self.rules.contact_name(sms.sender) or sms.sender,
                       rule=rule.name)
        problem = rule.topic.check_topic_values(context) or (
            rule.reply_topic.check_topic_values(context) if rule.reply_topic is not None else None)
        if problem is not None:
            LOG.warning("command %s from %s refused: %s", rule.name, sms.sender, problem)
            self._done(sms, "command_bad_topic", {"error": problem}, reply=f"{rule.name}: refused, {problem}",
                       source=rule.source)
            return "bad_topic"
        topic = rule.topic.render(context)
        payload = rule.payload.render(context)
        if not is_publish_topic(topic):
            self._done(sms, "command_bad_topic", {"topic": topic}, reply=f"{rule.name}: refused, bad topic",
                       source=rule.source)
            return "bad_topic"
        reply_topic = rule.reply_topic.render(context) if rule.reply_topic is not None else None
        waiter = self._add_waiter(reply_topic) if reply_topic is not None else None
        try:
            await _maybe_await(self.bridge.publish(topic, payload.encode(), qos=rule.qos, retain=rule.retain))
            self._done(sms, "command", {"topic": topic, "payload": payload})
            self._count("commands")
            context.update(topic=topic, payload=payload, reply_topic=reply_topic or "")
            return await self._answer(sms, rule, context, waiter)
        finally:
            if waiter is not None and reply_topic is not None:
                self._remove_waiter(reply_topic, waiter)

    async def _answer(self, sms: _Received, rule: CommandRule, context: dict[str, Any],
                      waiter: asyncio.Future[bytes] | None) -> str:
        """The reply of an executed command: the first message on the reply topic, or the fixed text."""
        if waiter is None:
            if rule.reply is not None:
                self._reply(sms.sender, rule.reply.render(context), rule.source, sms.now)
            return "executed"
        try:
            answer = await asyncio.wait_for(waiter, rule.reply_timeout)
        except TimeoutError:
            self._reply(sms.sender, rule.timeout_reply.render({**context, "timeout": f"{rule.reply_timeout:g}"}),
                        rule.source, self.clock())
            return "timeout"
        context["payload"] = Payload(answer)
        reply = rule.reply.render(context) if rule.reply else str(context["payload"])
        self._reply(sms.sender, reply, rule.source, self.clock())
        return "executed"

    def _add_waiter(self, reply_topic: str) -> asyncio.Future[bytes]:
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._reply_waiters.setdefault(reply_topic, []).append(waiter)
        return waiter

    def _remove_waiter(self, reply_topic: str, waiter: asyncio.Future[bytes]) -> None:
        waiters = self._reply_waiters.get(reply_topic, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._reply_waiters.pop(reply_topic, None)
        waiter.cancel()

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
        names += self.escalation.help(sender)  # ACK <code>, for on-call chain members
        return "Commands: " + "; ".join(names + list(BUILTINS))

    def _reply(self, sender: str, text: str, source: str, now: float, *, priority: str = "high") -> int | None:
        """Queue a reply SMS to ``sender`` through the intake; the message id, or None when refused
        (the number policy, the daily cap, an opt-out: each audited)."""
        request = SendRequest(to=(sender,), text=fit_text(text, self.max_parts), source=source, priority=priority,
                              answer=True)
        try:
            (accepted,) = self.intake.submit(request, now)
        except BadDestination as exc:
            self.store.audit("reply_refused", {"to": sender, "error": str(exc.cause)}, now=now)
            return None
        except OverDailyCap as exc:
            self.store.audit("cap_exceeded", {"source": source, "error": str(exc)}, now=now)
            return None
        except RecipientOptedOut as exc:
            self.store.audit("reply_refused", {"to": exc.number, "error": str(exc)}, now=now)
            return None
        return accepted.id
