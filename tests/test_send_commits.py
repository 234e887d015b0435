"""A send commits twice: the claim with the message's parts (before the PDU leaves) and the TP-MR
after its +CMGS. Counted from the SQL the store's connection runs (sqlite3 trace), a transaction
counting when it changed rows. Only the TP-MR's commit is made durable, by an fsync at its commit or,
as the dispatcher commits it, by WalSync's fdatasync of the WAL in a thread: counted from the system
calls (strace), and a claim made by a process killed right after it is in the file."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from store_helpers import STEP_MARK, Clock, connection, request, run_traced, syncs_by_step
from test_dispatcher import LONG_TEXT, RecordingModem, wait_state

from appliance.dispatcher import Dispatcher
from appliance.store import Store
from drivers.pdu import SubmitPart, decode

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


# The store's writes one after the other in a process of its own, each step marked (STEP_MARK).
STEPS = STEP_MARK + """
import signal, sys
from appliance.store import OutboundRequest, Store
from drivers.pdu import encode_submit

store = Store(sys.argv[1])
kill_after = sys.argv[2] if len(sys.argv) > 2 else None
step("enqueue")
store.enqueue([OutboundRequest(to="+491701234567", text="hello", source="test")])
step("claim")
claimed = store.claim("sim0", lease=60.0, encode=lambda m: encode_submit(m.recipient, m.text, concat_reference=1))
assert claimed is not None and claimed.parts
if kill_after == "claim":
    os.kill(os.getpid(), signal.SIGKILL)
step("part_sent")
if kill_after == "dispatcher":  # as the dispatcher commits it: no fsync, then WalSync's sync
    store.part_sent(claimed.id, 1, "sim0", 42, durable=False)
    step("sync")
    store.sync()
else:
    store.part_sent(claimed.id, 1, "sim0", 42)
step("events_done")
store.events_done([event.id for event in store.events_pending()])
if kill_after == "events_done":
    os.kill(os.getpid(), signal.SIGKILL)
step("end")
"""


def run_steps(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", STEPS, str(db), *args], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parent.parent)


def test_only_the_enqueue_and_the_tp_mr_wait_for_an_fsync(tmp_path: Path) -> None:
    trace = tmp_path / "strace.txt"
    done = run_traced(STEPS, str(tmp_path / "smsgw.db"), trace=trace)
    assert done.returncode == 0, done.stderr
    fsyncs = {step: len(lines) for step, lines in syncs_by_step(trace)}
    assert list(fsyncs) == ["enqueue", "claim", "part_sent", "events_done", "end"], trace.read_text()[-2000:]
    # accepted and TP-MR: fsync'ed before they return; the claim and the events done: synced by the next
    assert fsyncs["enqueue"] >= 1 and fsyncs["part_sent"] >= 1
    assert fsyncs["claim"] == 0 and fsyncs["events_done"] == 0


def test_the_dispatchers_tp_mr_commits_without_fsync_and_its_sync_fdatasyncs_the_wal(tmp_path: Path) -> None:
    trace = tmp_path / "strace.txt"
    done = run_traced(STEPS, str(tmp_path / "smsgw.db"), "dispatcher", trace=trace, options=("-y",))
    assert done.returncode == 0, done.stderr
    syncs = dict(syncs_by_step(trace))
    assert syncs["part_sent"] == []
    assert len(syncs["sync"]) == 1 and syncs["sync"][0].startswith("fdatasync(")
    assert f"<{tmp_path / 'smsgw.db'}-wal>" in syncs["sync"][0]  # strace -y: the file behind the descriptor


@pytest.mark.parametrize("killed_after", ["claim", "events_done"])
def test_what_a_commit_without_fsync_wrote_is_there_after_a_sigkill(tmp_path: Path, killed_after: str) -> None:
    db = tmp_path / "smsgw.db"
    done = run_steps(db, killed_after)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with Store(db) as store:
        (message,) = store.messages()
        if killed_after == "claim":
            assert (message["state"], message["attempts"], message["modem"]) == ("sending", 1, "sim0")
            assert [part.pdu for part in store.parts(message["id"])] != []
        else:
            assert message["state"] == "sent"
            assert store.events_pending() == []


class OrderModem(RecordingModem):
    """Notes when each AT+CMGS starts (the first step of ``send_pdu``, before it awaits anything)."""

    def __init__(self, modem_id: str, order: list[str]) -> None:
        super().__init__(modem_id)
        self.order = order

    async def send_pdu(self, part: SubmitPart, **hooks: Any) -> int:
        self.order.append(f"AT+CMGS {decode(part.pdu).text}")  # type: ignore[union-attr]
        return await super().send_pdu(part, **hooks)


async def test_the_next_message_is_claimed_once_the_last_part_is_in_at_cmgs(store: Store, clock: Clock) -> None:
    # the claim of the next message overlaps the modem's work on this one instead of delaying it
    order: list[str] = []
    modem = OrderModem("sim0", order)
    queued = store.enqueue([request(f"+4917012345{n:02d}", f"message {n}") for n in range(4)])
    claim = store.claim

    def noted_claim(*args: Any, **kwargs: Any) -> Any:
        claimed = claim(*args, **kwargs)
        if claimed is not None:
            order.append(f"claim {claimed.text}")
        return claimed

    store.claim = noted_claim  # type: ignore[method-assign]
    running = Dispatcher(store, [modem], clock=clock, poll_interval=0.05,
                         backoff_jitter=0.0, lease=30.0, send_timeout=5.0)
    await running.start()
    try:
        for result in queued:
            await wait_state(store, result.id, "sent")
    finally:
        await running.stop(timeout=2.0)
    assert order == [step for n in range(4) for step in (f"claim message {n}", f"AT+CMGS message {n}")]


class StateModem(RecordingModem):
    """Notes, at each AT+CMGS and at each PDU (once ``ready`` returned), the state of the message
    sent before it."""

    def __init__(self, modem_id: str, store: Store, ids: list[int]) -> None:
        super().__init__(modem_id)
        self.store, self.ids, self.seen = store, ids, []  # type: list[tuple[str, int, str]]

    def _previous(self, step: str) -> None:
        n = len(self.sent)
        if n:
            self.seen.append((step, n, self.store.message(self.ids[n - 1])["state"]))  # type: ignore[index]

    async def send_pdu(self, part: SubmitPart, **hooks: Any) -> int:
        self._previous("AT+CMGS")
        ready = hooks.pop("ready")

        async def noted_ready() -> None:
            await ready()
            self._previous("PDU")

        return await super().send_pdu(part, ready=noted_ready, **hooks)


async def test_the_tp_mr_is_committed_while_the_next_at_cmgs_waits_for_its_prompt(store: Store, clock: Clock) -> None:
    """The previous part's TP-MR commits between the next AT+CMGS and its PDU, never after that PDU."""
    queued = store.enqueue([request(f"+4917012345{n:02d}", f"message {n}") for n in range(4)])
    modem = StateModem("sim0", store, [q.id for q in queued])
    running = Dispatcher(store, [modem], clock=clock, poll_interval=0.05,  # type: ignore[list-item]
                         backoff_jitter=0.0, lease=30.0, send_timeout=5.0)
    await running.start()
    try:
        for result in queued:
            await wait_state(store, result.id, "sent")  # the last one too: committed once the queue is empty
    finally:
        await running.stop(timeout=2.0)
    assert modem.seen == [(step, n, state) for n in (1, 2, 3)
                          for step, state in (("AT+CMGS", "sending"), ("PDU", "sent"))]
