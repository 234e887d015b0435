"""A send commits twice: the claim with the message's parts (the durable write before the PDU leaves)
and the TP-MR after its +CMGS. Counted from the SQL the store's connection runs (sqlite3 trace), a
transaction counting when it changed rows."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
from store_helpers import Clock, connection, request
from test_dispatcher import LONG_TEXT, RecordingModem, wait_state

from appliance.dispatcher import Dispatcher
from appliance.store import Store

pytest_plugins = ["store_fixtures"]


@pytest.fixture
def modem() -> RecordingModem:
    return RecordingModem("sim0")


@pytest.fixture
async def dispatcher(store: Store, clock: Clock, modem: RecordingModem) -> AsyncIterator[Dispatcher]:
    running = Dispatcher(store, [modem], clock=clock, poll_interval=0.05,  # type: ignore[list-item]
                         backoff_jitter=0.0, lease=30.0, send_timeout=5.0)
    yield running
    await running.stop(timeout=2.0)


@contextmanager
def writing_transactions(conn: sqlite3.Connection) -> Iterator[list[list[str]]]:
    """The transactions that changed rows, each as the statements it ran."""
    done: list[list[str]] = []
    current: list[str] = []
    changes_at_begin = [0]

    def trace(sql: str) -> None:
        word = sql.lstrip().split(" ", 1)[0].upper()
        if word == "BEGIN":
            current.clear()
            changes_at_begin[0] = conn.total_changes
        elif word == "COMMIT" and conn.total_changes != changes_at_begin[0]:
            done.append(list(current))
        elif not sql.startswith("--"):  # "-- TRIGGER name": the statements of a trigger
            current.append(sql)

    conn.set_trace_callback(trace)
    try:
        yield done
    finally:
        conn.set_trace_callback(None)


async def test_a_single_part_send_commits_the_claim_with_its_parts_then_the_tp_mr(
        store: Store, dispatcher: Dispatcher, modem: RecordingModem) -> None:
    queued = store.enqueue([request(f"+4917012345{n:02d}", f"message {n}") for n in range(20)])
    with writing_transactions(connection(store)) as transactions:
        await dispatcher.start()
        for result in queued:
            await wait_state(store, result.id, "sent")
    assert len(modem.sent) == 20
    assert len(transactions) == 2 * 20, [t[0][:60] for t in transactions]
    claims = [t for t in transactions if any(s.startswith("INSERT INTO part") for s in t)]
    assert len(claims) == 20 and all(any("state = 'sending'" in s for s in t) for t in claims)


async def test_a_multipart_send_commits_once_more_per_part(store: Store, dispatcher: Dispatcher, modem: RecordingModem) -> None:
    (queued,) = store.enqueue([request("+491701234567", LONG_TEXT)])
    with writing_transactions(connection(store)) as transactions:
        await dispatcher.start()
        await wait_state(store, queued.id, "sent")
    assert len(modem.sent) == 3
    assert len(transactions) == 1 + 3
