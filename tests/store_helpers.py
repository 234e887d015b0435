"""Helpers for store and dispatcher tests: a settable clock, requests, codec-shaped values."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from appliance.store import OutboundRequest, Store

T0 = 1_790_000_000.0  # a fixed wall-clock start for tests that inject the clock


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def connection(store: Store) -> sqlite3.Connection:
    """The store's own SQLite connection, for tests that look beneath its methods (PRAGMAs, query
    plans, traces, rows no method returns). Nothing in appliance/ but the store uses it."""
    return store._conn


def request(to: str = "+491701234567", text: str = "hello", **kw: object) -> OutboundRequest:
    kw.setdefault("source", "test")
    return OutboundRequest(to=to, text=text, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FakeSubmitPart:
    """Shape of drivers.pdu.SubmitPart, for store tests that do not exercise the codec."""

    pdu: str
    tpdu_length: int
    sequence: int
    total: int


def submit_parts(total: int, tag: str = "AA") -> list[FakeSubmitPart]:
    return [FakeSubmitPart(f"0051{tag}{n:02X}", 20, n, total) for n in range(1, total + 1)]


@dataclass(frozen=True)
class Concat:
    reference: int
    total: int
    sequence: int
    bits: int = 8


@dataclass(frozen=True)
class Deliver:
    """The SmsDeliver fields the store reads (number, text, encoding, timestamp, concat)."""

    number: str
    text: str
    timestamp: datetime
    concat: Concat | None = None
    encoding: str = "gsm7"


SENT = datetime(2026, 11, 22, 21, 0, 0, tzinfo=timezone(timedelta(hours=1)))
