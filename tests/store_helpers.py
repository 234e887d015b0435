"""Helpers for store and dispatcher tests: a settable clock, requests, codec-shaped values."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

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


#: The start of a script whose fsyncs are counted (``run_traced``): ``step(name)`` marks where each
#: step begins, by a stat of a path that does not exist, among the system calls strace records.
STEP_MARK = """
import os

def step(name):
    os.path.exists("/smsgw-step/" + name)
"""


def run_traced(script: str, *args: str, trace: Path, options: tuple[str, ...] = (),
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``script`` (starting with STEP_MARK) in a Python of its own under strace, which writes the
    fsync, fdatasync and stat calls to ``trace``; ``options`` go to strace (``-y``: the files)."""
    strace = shutil.which("strace")
    assert strace is not None, "strace is installed by .ci/setup"
    command = [strace, *options, "-o", str(trace), "-e", "trace=fsync,fdatasync,newfstatat,stat,statx",
               sys.executable, "-c", script, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parent.parent)


def syncs_by_step(trace: Path) -> list[tuple[str, list[str]]]:
    """The fsync and fdatasync lines of ``trace`` (``run_traced``), each under the step marked
    before it, the steps in order (one may be marked more than once)."""
    steps: list[tuple[str, list[str]]] = []
    for line in trace.read_text().splitlines():
        if "/smsgw-step/" in line:
            steps.append((line.split("/smsgw-step/", 1)[1].split('"', 1)[0], []))
        elif line.startswith(("fsync(", "fdatasync(")) and steps:
            steps[-1][1].append(line)
    return steps
