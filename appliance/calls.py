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
recipients, command senders), as ``senders = "*"`` does for command rules. The tables are read by
:mod:`appliance.calls_config` (``Config.calls``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from appliance.calls_config import CallRule, CallsConfig
from appliance.config import Config
from appliance.intake import Intake, IntakeError, IntakePolicy, SendRequest
from appliance.rules.templates import Template, TemplateError
from appliance.store import Store

if TYPE_CHECKING:
    from drivers.calls import CallEnded, IncomingCall
    from drivers.modem import Modem

LOG = logging.getLogger(__name__)

def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CallTriggers:
    """Hangs up, publishes ``B/call`` and runs the call rules for the calls the modems report."""

    def __init__(self, config: Config, store: Store, modems: Mapping[str, Modem], *,
                 bridge: Callable[[], Any] = lambda: None, settings: CallsConfig | None = None) -> None:
        self.settings = settings if settings is not None else config.calls
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
