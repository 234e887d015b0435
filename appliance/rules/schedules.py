"""``[[schedules]]``: SMS at fixed times of day (a daily summary at 07:00), through the send intake.

Each occurrence is queued once: its idempotency key is ``schedule:<name>:<occurrence>`` (per
recipient, as every key), and the last occurrence handled is kept in the store (``state`` namespace
``schedule``), so a restart neither repeats one nor loses the next. After the daemon was down over an
occurrence, it is sent once at start when it is at most ``grace`` old (default 1 h), else audited as
``schedule_missed``. The text is rendered when the occurrence is handled, with the store's figures
then (``appliance.rules.templates.schedule_context``).

The runner sleeps until the next occurrence, at most ``MAX_SLEEP`` at a time: the event loop's clock
is monotonic, and a Raspberry Pi without a real-time clock sets its wall clock from NTP after boot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from appliance.component import cancel_and_wait
from appliance.intake import Intake, IntakeError, IntakePolicy, SendRequest, StoreUnavailable
from appliance.rules.config import ScheduleRule
from appliance.rules.templates import fit_text, schedule_context
from appliance.store_schedule import SCHEDULE_STATE

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.store import Store

LOG = logging.getLogger(__name__)

#: The longest sleep between two looks at the wall clock, in seconds.
MAX_SLEEP = 300.0
#: Seconds before an occurrence whose commit failed (store unavailable) is tried again.
RETRY_AFTER = 30.0
DAY = 86400.0


def occurrence_key(rule: ScheduleRule, occurrence: float) -> str:
    """The idempotency key of one occurrence (``schedule:morning:2026-12-02T06:00:00Z``)."""
    stamp = datetime.fromtimestamp(round(occurrence), UTC)
    return f"schedule:{rule.name}:{stamp:%Y-%m-%dT%H:%M:%SZ}"


class Schedules:
    """Runs the ``[[schedules]]`` of a configuration on one store (a daemon component)."""

    def __init__(self, config: Config, store: Store, *, clock: Callable[[], float] | None = None) -> None:
        self.rules: tuple[ScheduleRule, ...] = config.rules.schedules
        self.store = store
        self.clock = clock or store.clock
        self.intake = Intake(IntakePolicy.from_config(config), store)
        self.max_parts = config.limits.max_parts
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Handle what is due now (an occurrence missed while the daemon was down), then run."""
        if self.rules and self._task is None:
            self._task = asyncio.create_task(self._run(self._tick()), name="schedules")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def _tick(self) -> float:
        """:meth:`run_due`; the seconds until it should run again."""
        try:
            return self.run_due() - self.clock()
        except Exception:
            LOG.exception("running the schedules failed")
            return RETRY_AFTER

    async def _run(self, wait: float) -> None:
        while True:
            await asyncio.sleep(min(max(wait, 0.0), MAX_SLEEP))
            wait = self._tick()

    def run_due(self, now: float | None = None) -> float:
        """Handle every occurrence that is due and not yet handled; when the next one is due."""
        now = self.clock() if now is None else now
        upcoming = [self._run_rule(rule, now) for rule in self.rules]
        return min(upcoming, default=now + MAX_SLEEP)

    def _run_rule(self, rule: ScheduleRule, now: float) -> float:
        occurrence = rule.last_at_or_before(now)
        done = self.store.state_get(SCHEDULE_STATE, rule.name)
        if isinstance(done, int | float) and done >= occurrence:
            return rule.next_after(now)
        if now - occurrence <= rule.grace:
            if not self._send(rule, occurrence, now):
                return now + RETRY_AFTER
        elif done is not None:  # a first start long after an occurrence has missed nothing
            LOG.warning("schedule %s: the occurrence at %s was missed (the gateway was down)", rule.name,
                        _local(occurrence))
            self.store.audit("schedule_missed", {"rule": rule.name, "at": _local(occurrence),
                                                 "grace": rule.grace}, now=now)
        self.store.state_set(SCHEDULE_STATE, rule.name, occurrence)
        return rule.next_after(now)

    def _send(self, rule: ScheduleRule, occurrence: float, now: float) -> bool:
        """Queue one occurrence; False when the store failed (to be tried again)."""
        recipients = list(rule.to)
        if not rule.critical:
            opted_out = [number for number in recipients if self.store.opted_out(number)]
            if opted_out:
                self.store.audit("schedule_optout", {"rule": rule.name, "skipped": opted_out}, now=now)
            recipients = [number for number in recipients if number not in opted_out]
        if not recipients:
            return True
        text = rule.text.render(self._context(rule, occurrence, now))
        request = SendRequest(
            to=tuple(recipients), text=fit_text(text, self.max_parts), source=rule.source,
            client_key=occurrence_key(rule, occurrence), priority="critical" if rule.critical else rule.priority,
            valid_for=rule.valid_for, message_class=0 if rule.flash else None)
        try:
            accepted = self.intake.submit(request, now)
        except StoreUnavailable as exc:
            LOG.error("schedule %s: not queued, will try again: %s", rule.name, exc)
            return False
        except IntakeError as exc:
            LOG.warning("schedule %s: refused: %s", rule.name, exc)
            self.store.audit("schedule_refused", {"rule": rule.name, "at": _local(occurrence), "error": str(exc)},
                             now=now)
            return True
        LOG.info("schedule %s (%s): queued %s", rule.name, _local(occurrence),
                 ", ".join(f"{a.id}{' (already)' if a.duplicate else ''}" for a in accepted))
        return True

    def _context(self, rule: ScheduleRule, occurrence: float, now: float) -> dict[str, Any]:
        moment = datetime.fromtimestamp(occurrence, rule.tz) if rule.tz else datetime.fromtimestamp(occurrence)
        return schedule_context(rule.name, moment, self.store.stats(now), self.store.activity_since(now - DAY))


def _local(moment: float) -> str:
    return datetime.fromtimestamp(moment).astimezone().isoformat(timespec="seconds")
