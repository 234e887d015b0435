"""The history sampler: once a minute, each modem's signal and the queue depth into the store.

A daemon component (``appliance.component``) that runs while ``[http]`` is configured (the status
page draws its 24-hour charts from these samples, ``Store.history``). Each sample is taken at the
start of a minute of the injected ``clock`` (``time.time``) and written in one short transaction
(``Store.record_samples``); a failed write (the disk full) is logged and the next minute tries again.
A clock that jumps (a suspended machine, an NTP step) gives one sample for the minute it lands in,
never a burst of catch-up samples.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from appliance.component import cancel_and_wait
from appliance.store import QUEUED, SENDING, Store

LOG = logging.getLogger("appliance.history")

#: Seconds between two samples.
INTERVAL = 60.0
#: The message states whose counts are sampled (the queue).
QUEUE_STATES = (QUEUED, SENDING)


def signal_dbm(radio: Mapping[str, Any]) -> float | None:
    """The signal in dBm from a supervisor's radio readings (None: no reading)."""
    signal = radio.get("signal")
    if isinstance(signal, dict):
        value = signal.get("dbm")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


class HistorySampler:
    """Samples ``signals()`` (modem id -> dBm or None) and the store's queue every ``interval`` seconds."""

    def __init__(self, store: Store, signals: Callable[[], Mapping[str, float | None]], *,
                 interval: float = INTERVAL, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.store = store
        self.signals = signals
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._last: float | None = None

    def slot(self, now: float) -> float:
        """The start of the interval ``now`` is in."""
        return math.floor(now / self.interval) * self.interval

    def sample(self, now: float | None = None) -> bool:
        """Record the samples of the interval ``now`` is in, once; whether it wrote them."""
        at = self.slot(self.clock() if now is None else now)
        if at == self._last:
            return False
        outbox = self.store.stats(at)["outbox"]
        rows: list[tuple[str, str, float | None]] = [("queue", state, float(outbox.get(state, 0)))
                                                    for state in QUEUE_STATES]
        rows += [("signal", modem_id, dbm) for modem_id, dbm in sorted(self.signals().items())]
        self.store.record_samples(at, rows)
        self._last = at
        return True

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="history")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception as exc:  # the next minute tries again; the daemon goes on
                LOG.error("history sample not recorded: %s", exc)
            now = self.clock()
            await self.sleep(max(self.slot(now) + self.interval - now, 0.001))
