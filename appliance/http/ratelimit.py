"""Rate limits for the HTTP API: a token bucket per API token, a failure window per client address.

Both are plain data in the event loop (no I/O) and answer in constant time, so a flood of requests
costs little more than the 429 answers themselves. Keys not seen for a while are forgotten, so the
tables cannot grow without bound under a flood from many addresses.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: Addresses (or tokens) remembered at most; the oldest are dropped first.
MAX_KEYS = 10_000
#: Seconds over which failed authentications are counted.
FAILURE_WINDOW = 60.0


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """``rate`` requests per second sustained, ``burst`` at once, per key."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, rate: float, burst: int) -> float:
        """Take one request from ``key``'s bucket: 0.0 when allowed, else the seconds until one is."""
        now = self.clock()
        bucket = self._buckets.pop(key, None)  # re-inserted last: the dict stays in least-recent order
        if bucket is None:
            bucket = _Bucket(float(burst), now)
        else:
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
        self._buckets[key] = bucket
        if len(self._buckets) > MAX_KEYS:
            del self._buckets[next(iter(self._buckets))]
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate


class FailureWindow:
    """At most ``allowed`` failures per key in ``window`` seconds; past that the key is refused."""

    def __init__(self, allowed: int, window: float = FAILURE_WINDOW, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.allowed = allowed
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def blocked(self, key: str) -> float:
        """0.0 when ``key`` may try again, else the seconds until it may."""
        now = self.clock()
        times = self._recent(key, now)
        if times is None or len(times) < self.allowed:
            return 0.0
        return max(times[0] + self.window - now, 0.001)

    def failed(self, key: str) -> None:
        now = self.clock()
        times = self._recent(key, now)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.allowed)
            if len(self._failures) > MAX_KEYS:
                del self._failures[next(iter(self._failures))]
        times.append(now)
