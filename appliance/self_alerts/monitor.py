"""The self-alert monitor: a daemon component that texts the installer about the gateway itself.

Every ``check_interval`` it reads the :class:`~appliance.self_alerts.facts.Facts`, evaluates the
conditions (:mod:`appliance.self_alerts.conditions`) and moves each condition through its states:

* **pending**: the condition holds, not yet for its threshold (``since``: when it was first seen);
* **active**: it has held for its threshold. The alert SMS is queued at once, unless an alert of the
  same condition was queued less than ``cooldown`` ago; then it is queued when the cooldown ends, if
  the condition still holds;
* **cleared**: when an active condition no longer holds, the "recovered" SMS is queued, if its
  alert was; the time of the last alert is kept for the cooldown.

Alerts go through the send intake (:mod:`appliance.intake`) with ``source = "self"`` (so they are
counted in ``smsgw status`` like any source) and the modems of the finding as ``avoid_modems``
(the dispatcher never sends them through the modem that failed). Each SMS has an idempotency key
made of the condition and the start of its episode, so queuing one again after a crash between the
commit and the state write queues nothing new.

The state of every condition is kept in the store (namespace ``self_alert``, one key per condition):
after a restart an alert already sent is not sent again and a recovery is still reported. A
condition that was only pending counts again from the daemon's start (what happened while no
daemon watched is unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from appliance.intake import Intake, IntakeError, SendRequest, StoreUnavailable
from appliance.self_alerts.conditions import KINDS, Finding, evaluate, recovered_text
from appliance.self_alerts.config import SelfAlertsConfig
from appliance.self_alerts.facts import Facts
from appliance.self_alerts.view import NAMESPACE, describe, duration
from appliance.store import GATEWAY_SOURCE, Store

LOG = logging.getLogger(__name__)

#: The intake source of self-alerts (only a ``[sources.self]`` cap applies to it: see docs/rules.md).
SOURCE = GATEWAY_SOURCE


class SelfAlerts:
    """The ``[self_alerts]`` component (``start``/``stop``); :meth:`check` runs one evaluation."""

    def __init__(self, config: SelfAlertsConfig, store: Store, intake: Intake, read_facts: Callable[[], Facts], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.intake = intake
        self.read_facts = read_facts
        self.clock = clock
        self.started_at = clock()
        self.checked_at: float | None = None
        self.state: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self.load()

    # --- life cycle --------------------------------------------------------------------------

    def load(self) -> None:
        """The conditions' state from the store; a pending one counts again from now."""
        self.started_at = self.clock()
        self.state = {}
        for key, value in self.store.state_all(NAMESPACE).items():
            if not isinstance(value, dict):
                continue
            if not value.get("active") and isinstance(value.get("since"), int | float):
                value["since"] = max(float(value["since"]), self.started_at)
            self.state[key] = value

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="self-alerts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            # the first look after one interval: the modems have opened and their storage was read
            await asyncio.sleep(self.config.check_interval)
            try:
                self.check()
            except Exception:
                LOG.exception("checking the self-alert conditions failed")

    # --- one evaluation ----------------------------------------------------------------------

    def check(self, facts: Facts | None = None) -> list[int]:
        """Evaluate every condition now; the ids of the messages queued."""
        now = self.clock()
        facts = self.read_facts() if facts is None else facts
        findings = evaluate(self.config, facts, now)
        queued: list[int] = []
        for key, finding in findings.found.items():
            queued += self._holds(key, finding, now)
        for key in list(self.state):
            if key in findings.found:
                continue
            if key in findings.watched:
                queued += self._cleared(key, now)
            elif not self._may_return(key, facts):
                self._save(key, None)  # a modem no longer configured, a condition turned off
        if self.checked_at is None:
            active = sorted(key for key, record in self.state.items() if record.get("active"))
            LOG.info("self-alerts: first check: %s", f"active {', '.join(active)}" if active else "nothing active")
        self.checked_at = now
        return queued

    def _may_return(self, key: str, facts: Facts) -> bool:
        """Whether an unwatched key may be watched again (a modem that is not healthy yet, an unknown
        disk): kept. A condition turned off in the config, or about a modem no longer configured, is
        forgotten."""
        kind, _, subject = key.partition(":")
        if kind not in KINDS or (subject and subject not in facts.modems):
            return False
        return {"modem_down": self.config.modem_down is not None, "no_send": self.config.no_send is not None,
                "queue_age": self.config.queue_age is not None, "broker_down": self.config.broker_down is not None,
                "disk_free": self.config.disk_free_mb is not None, "sim_full": self.config.sim_full,
                "balance_low": self.config.balance_low}.get(kind, False)

    def _holds(self, key: str, finding: Finding, now: float) -> list[int]:
        """A condition found: pending until it held for its threshold, then active and alerted.

        The record keeps when the condition was first seen (``since``) and, once active, when it began
        (``began``) and what the alert said: none of it changes while the condition holds, so a check
        writes only when a condition changes state."""
        record = dict(self.state.get(key) or {"kind": finding.kind, "subject": finding.subject})
        if record.get("since") is None:
            record["since"] = now
        began = _began(float(record["since"]), finding)
        if now - began < finding.threshold:
            cleared: list[int] = []
            if record.get("active"):  # its clock went back (a part was sent): it cleared, and counts anew
                cleared = self._cleared(key, now)
                record = {**(self.state.get(key) or {"kind": finding.kind, "subject": finding.subject}),
                          "since": record["since"]}
            self._save(key, record)
            return cleared
        if not record.get("active"):
            # recorded before the SMS is queued: after a crash in between, the next life queues it with
            # the same idempotency key (the episode), which finds the first
            record.update(active=True, began=began, episode=f"{key}@{began:.3f}", notified=False,
                          detail=finding.detail, avoid=list(finding.avoid))
            self._save(key, record)
        ids: list[int] = []
        alerted = record.get("alerted_at")
        if not record.get("notified") and (alerted is None or now - float(alerted) >= self.config.cooldown):
            text = finding.detail.replace("{held}", duration(now - began))
            sent = self._send(f"{record['episode']}:alert", text, finding.avoid, now)
            if sent is not None:
                ids = sent
                record = {**record, "notified": True, "alerted_at": now, "alert_ids": sent,
                          "detail": finding.detail, "avoid": list(finding.avoid)}
                LOG.warning("self-alert %s: %s", key, text)
        self._save(key, record)
        return ids

    def _cleared(self, key: str, now: float) -> list[int]:
        """A condition no longer found: the recovery SMS if its alert went out; its last alert time is
        kept until the cooldown ends."""
        record = self.state.get(key) or {}
        ids: list[int] = []
        alerted = record.get("alerted_at")
        cooling = isinstance(alerted, int | float) and now - alerted < self.config.cooldown
        if not record.get("active") and record.get("since") is None:  # cleared before: only its cooldown
            if not cooling:
                self._save(key, None)
            return ids
        if record.get("active") and record.get("notified") and self._withdrawn(key, record, now):
            record = {**record, "notified": False}  # nobody was told: nothing to take back
        if record.get("active") and record.get("notified"):
            held = now - float(record.get("began") or record.get("since") or now)
            text = recovered_text(str(record.get("kind")), record.get("subject"), held)
            sent = self._send(f"{record.get('episode')}:recovered", text, (), now)
            if sent is None:
                return []  # the store failed: reported at the next check
            ids = sent
            LOG.info("self-alert %s cleared: %s", key, text)
        if cooling:
            self._save(key, {"kind": record.get("kind"), "subject": record.get("subject"), "alerted_at": alerted,
                             "cleared_at": now})
        else:
            self._save(key, None)
        return ids

    def _withdrawn(self, key: str, record: dict[str, Any], now: float) -> bool:
        """Whether the alert's SMS were all still queued (no modem could send them yet) and are now
        withdrawn: its recovery is then not sent either (a "back" before its "down" would confuse)."""
        ids = [i for i in record.get("alert_ids") or () if isinstance(i, int)]
        if not self.store.withdraw(ids, "withdrawn: the condition cleared before the alert could be sent", now):
            return False
        LOG.info("self-alert %s cleared before its SMS left; withdrawn: %s", key, ids)
        return True

    def _send(self, client_key: str, detail: str, avoid: tuple[str, ...], now: float) -> list[int] | None:
        """Queue one SMS to every recipient; the ids, ``[]`` if the intake refused it, None if the store
        failed (the caller tries again at the next check)."""
        text = f"{self.config.name}: {detail}" if self.config.name else detail
        request = SendRequest(to=self.config.to, text=text, source=SOURCE, client_key=f"self:{client_key}",
                              priority=self.config.priority, avoid_modems=avoid)
        try:
            return [accepted.id for accepted in self.intake.submit(request, now)]
        except StoreUnavailable as exc:
            LOG.error("self-alert not queued, the store failed: %s (%s)", exc, text)
            return None
        except IntakeError as exc:
            LOG.error("self-alert refused by the send intake: %s (%s)", exc, text)
            return []

    def _save(self, key: str, record: dict[str, Any] | None) -> None:
        """Write a condition's state when it changed (one commit, not one per check)."""
        if record == self.state.get(key):
            return
        self.store.state_set(NAMESPACE, key, record)
        if record is None:
            self.state.pop(key, None)
        else:
            self.state[key] = record

    # --- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {"checked_at": self.checked_at, "conditions": describe(self.state, self.clock())}


def _began(first_seen: float, finding: Finding) -> float:
    """When the condition of ``finding`` began: what the facts say, else when it was first seen; never
    before ``not_before``."""
    began = finding.since if finding.since is not None else first_seen
    if finding.not_before is not None:
        began = max(began, finding.not_before)
    return float(began)
