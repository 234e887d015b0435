"""Scheduled prepaid balance checks: a USSD code per modem, the amount found in the answer.

``[[modems]] balance = { code = "*100#", every = "1d", pattern = "(?P<balance>[0-9.,]+)", low = 5 }``.
Each check runs the code through the daemon's ``UssdService`` (so it queues behind other USSD
requests on that modem), finds the amount with the pattern, and records it:

* in the store (state ``balance``/<modem id>), so ``smsgw status`` shows it and a restart knows
  when the last check ran (the next one is due ``every`` after it, not at every start);
* as the retained event ``B/modem/<id>/balance``:
  ``{"modem", "balance", "unit", "low", "below_low", "text", "at", "error"}``;
* when the amount falls below ``low`` (it was at or above it, or unknown, at the previous check):
  the event ``B/modem/<id>/balance/low`` (not retained), which an alert rule matches like any
  topic (``topic = "smsgw/modem/+/balance/low"``), and an audit row ``balance_low``.

``B/modem/<id>/balance/check`` (any payload; the Home Assistant "Check balance" button) runs a
check at once. A failed check records its error and keeps the last amount; it is tried again after
``RETRY_INTERVAL`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from appliance.ussd import UssdRequestError

if TYPE_CHECKING:
    from appliance.config import BalanceConfig
    from appliance.store import Store
    from appliance.ussd import UssdService

LOG = logging.getLogger(__name__)

NAMESPACE = "balance"
#: Seconds before a failed check (modem not ready, network error) is tried again.
RETRY_INTERVAL = 300.0
#: Seconds between two looks at a modem that is not ready yet.
READY_POLL = 2.0


def parse_amount(text: str) -> float | None:
    """``"10.00"`` → 10.0, ``"4,20"`` → 4.2, ``"1,234.50"`` / ``"1.234,50"`` → 1234.5; None if none."""
    text = text.strip()
    if not re.fullmatch(r"-?[0-9]+(?:[.,][0-9]+)*", text):
        return None
    if "," in text and "." in text:
        decimal = "," if text.rfind(",") > text.rfind(".") else "."
        thousands = "." if decimal == "," else ","
        text = text.replace(thousands, "").replace(decimal, ".")
    elif text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")
    elif text.count(",") > 1 or text.count(".") > 1:
        text = text.replace(",", "").replace(".", "")
    try:
        return float(text)
    except ValueError:
        return None


def find_balance(config: BalanceConfig, answer: str) -> float | None:
    match = config.pattern.search(answer)
    if match is None:
        return None
    group = match.group("balance") if "balance" in config.pattern.groupindex else match.group(1)
    return None if group is None else parse_amount(group)


class BalanceChecker:
    """One task per modem with a ``balance`` table (see the module docstring)."""

    def __init__(self, store: Store, ussd: UssdService, checks: Mapping[str, BalanceConfig],
                 ready: Callable[[str], bool], *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.ussd = ussd
        self.checks = dict(checks)
        self.ready = ready
        self.clock = clock
        self.bridge: Any = None
        self.rules: Any = None
        self._wake = {modem_id: asyncio.Event() for modem_id in self.checks}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(modem_id), name=f"balance-{modem_id}") for modem_id in self.checks]

    def attach(self, bridge: Any, rules: Any) -> None:
        """MQTT: the check topic, and the rules engine that hears the low-balance event."""
        self.bridge = bridge
        self.rules = rules
        bridge.subscribe(bridge.topic("modem/+/balance/check"), self._on_check)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    def last(self, modem_id: str) -> dict[str, Any]:
        value = self.store.state_get(NAMESPACE, modem_id, None)
        return value if isinstance(value, dict) else {}

    def request_check(self, modem_id: str) -> bool:
        event = self._wake.get(modem_id)
        if event is None:
            return False
        event.set()
        return True

    def _on_check(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        modem_id = parts[-3] if len(parts) >= 3 else ""
        if not self.request_check(modem_id):
            LOG.info("balance check asked for %r, which has no [[modems]] balance", modem_id)

    def _due_in(self, modem_id: str) -> float:
        last = self.last(modem_id)
        config = self.checks[modem_id]
        checked = last.get("checked_at")
        if not isinstance(checked, int | float):
            return 0.0
        interval = config.every if last.get("error") is None else min(config.every, RETRY_INTERVAL)
        return max(checked + interval - self.clock(), 0.0)

    async def _run(self, modem_id: str) -> None:
        wake = self._wake[modem_id]
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self._due_in(modem_id))
            wake.clear()
            while not self.ready(modem_id):
                await asyncio.sleep(READY_POLL)
            try:
                await self.check(modem_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                LOG.exception("balance check of %s failed", modem_id)

    async def check(self, modem_id: str) -> dict[str, Any]:
        """Run one check now; the record it stored."""
        config = self.checks[modem_id]
        previous = self.last(modem_id)
        record: dict[str, Any] = {"modem": modem_id, "balance": previous.get("balance"), "unit": config.unit,
                                  "low": config.low, "below_low": previous.get("below_low"),
                                  "text": previous.get("text"), "at": previous.get("at"), "error": None}
        try:
            answer = await self.ussd.request(config.code, modem_id=modem_id)
            if answer.get("session_open") and answer.get("session"):
                with contextlib.suppress(UssdRequestError):
                    await self.ussd.cancel(answer["session"])
            text = str(answer.get("text") or "")
            amount = find_balance(config, text)
            if amount is None:
                record["error"] = f"no amount found by the pattern {config.pattern.pattern!r} in {text!r}"
            else:
                record.update(balance=amount, text=text, at=self.clock(),
                              below_low=config.low is not None and amount < config.low)
        except UssdRequestError as exc:
            record["error"] = str(exc)
        record["checked_at"] = self.clock()
        self.store.state_set(NAMESPACE, modem_id, record)
        event = {k: v for k, v in record.items() if k != "checked_at"}
        self.store.add_event(f"modem/{modem_id}/balance", event, retain=True)
        if record["error"] is not None:
            LOG.warning("balance check of %s: %s", modem_id, record["error"])
        else:
            LOG.info("balance of %s: %s%s", modem_id, record["balance"], f" {config.unit}" if config.unit else "")
        if record["error"] is None and record["below_low"] and not previous.get("below_low"):
            self._low(modem_id, event)
        return record

    def _low(self, modem_id: str, event: dict[str, Any]) -> None:
        self.store.audit("balance_low", {"modem": modem_id, "balance": event["balance"], "low": event["low"]})
        self.store.add_event(f"modem/{modem_id}/balance/low", event)
        if self.rules is not None and self.bridge is not None:
            topic = self.bridge.state_topic(f"modem/{modem_id}/balance/low")
            try:
                self.rules.gateway_event(topic, event)
            except Exception:
                LOG.exception("alert rules on %s failed", topic)
