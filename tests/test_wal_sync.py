"""The TP-MR's fsync off the event loop: WalSync's group commit, and the dispatcher that waits for
the TP-MR of a modem's part before last before its next AT+CMGS.

The store is a real file; its ``sync`` is wrapped so a test can hold it (a slow disk) or make it
fail (EIO) and count the calls. That ``Store.sync`` really makes the WAL durable is shown from the
system calls in ``test_send_commits.py``.
"""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable

import pytest
from store_helpers import Clock, request
from test_dispatcher import RecordingModem, wait_state
from waiting import async_wait_until, wait_until

from appliance.dispatcher import Dispatcher
from appliance.store import Store
from appliance.wal_sync import SyncFailed, WalSync

pytest_plugins = ["store_fixtures"]


class HeldSync:
    """A sync that blocks (in its worker thread) until released, and can fail once."""

    def __init__(self, inner: Callable[[], None]) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.release.set()
        self.started = 0
        self.done = 0
        self.fail_next = False

    def __call__(self) -> None:
        self.started += 1
        if not self.release.wait(30):
            raise AssertionError("the held sync was never released")
        if self.fail_next:
            self.fail_next = False
            raise OSError(errno.EIO, "Input/output error")
        self.inner()
        self.done += 1


async def test_commits_made_while_a_sync_runs_share_the_next_one() -> None:
    sync = HeldSync(lambda: None)
    sync.release.clear()
    wal = WalSync(sync)
    first = wal.request()
    await async_wait_until(lambda: sync.started == 1, timeout=5, what="the first sync to start")
    later = [wal.request() for _ in range(5)]
    waits = asyncio.gather(*(wal.wait(ticket) for ticket in [first, *later]))
    sync.release.set()
    try:
        await asyncio.wait_for(waits, 10)
    finally:
        wal.close()
    assert sync.done == 2  # one for the first commit, one for the five made while it ran
    assert wal.synced == wal.requested == 6


def test_the_thread_syncs_without_an_event_loop_and_stops_at_close_after_the_pending_request() -> None:
    """A commit costs the loop no callback: the thread syncs on its own, and a wait that finds its
    ticket synced returns at once. ``close`` syncs a request still pending, stops the thread, and a
    later request starts another."""
    sync = HeldSync(lambda: None)
    sync.release.clear()
    wal = WalSync(sync)
    first = wal.request()
    wait_until(lambda: sync.started == 1, timeout=5, what="the first sync to start")
    second = wal.request()  # pending while the first sync is held
    thread = wal._thread
    assert thread is not None
    closing = threading.Thread(target=wal.close)
    closing.start()
    sync.release.set()
    closing.join(10)
    assert not thread.is_alive()
    assert wal.synced == second and sync.done == 2
    asyncio.run(wal.wait(first))  # returns at once: no thread needed
    third = wal.request()
    wait_until(lambda: wal.synced == third, timeout=5, what="a new thread to sync the next commit")
    wal.close()
    assert sync.done == 3


async def test_a_failed_sync_fails_the_waits_it_covered_and_the_next_commit_syncs_again() -> None:
    sync = HeldSync(lambda: None)
    sync.fail_next = True
    wal = WalSync(sync)
    failed = wal.request()
    try:
        with pytest.raises(SyncFailed, match="Input/output error"):
            await wal.wait(failed)
        after = wal.request()
        await asyncio.wait_for(wal.wait(after), 10)
    finally:
        wal.close()
    assert wal.synced == after and sync.done == 1


async def test_a_sync_that_does_not_return_fails_the_wait_after_the_timeout() -> None:
    sync = HeldSync(lambda: None)
    sync.release.clear()
    wal = WalSync(sync, timeout=0.2)
    try:
        with pytest.raises(SyncFailed, match="longer than"):
            await wal.wait(wal.request())
        assert wal.waiting == 0  # the waiter was removed
    finally:
        sync.release.set()
        wal.close()


def make(store: Store, clock: Clock, modem: RecordingModem, sync: HeldSync) -> Dispatcher:
    store.sync = sync  # type: ignore[method-assign]
    return Dispatcher(store, [modem], clock=clock, poll_interval=0.05,  # type: ignore[list-item]
                      backoff_jitter=0.0, lease=30.0, send_timeout=5.0, modem_error_pause=0.2)


async def test_with_the_disk_held_two_parts_leave_and_the_third_waits_for_the_first_tp_mr(
        store: Store, clock: Clock) -> None:
    modem = RecordingModem("sim0")
    sync = HeldSync(store.sync)
    sync.release.clear()
    dispatcher = make(store, clock, modem, sync)
    queued = store.enqueue([request(f"+4917012345{n:02d}", f"message {n}") for n in range(5)])
    await dispatcher.start()
    try:
        await async_wait_until(lambda: dispatcher.wal_sync.waiting == 1, timeout=5,
                               what="the dispatcher to wait for the first TP-MR's sync")
        assert len(modem.sent) == 2  # the second part's exchange overlapped the first one's sync
        # both TP-MRs are committed (in the WAL, not yet synced): a killed process keeps them
        assert [store.message(q.id)["state"] for q in queued[:2]] == ["sent", "sent"]  # type: ignore[index]
        sync.release.set()
        for result in queued:
            await wait_state(store, result.id, "sent")
    finally:
        sync.release.set()
        await dispatcher.stop(timeout=2.0)
    assert dispatcher.wal_sync.synced == dispatcher.wal_sync.requested == 5  # stop waits for the last


async def test_when_the_sync_fails_the_next_message_goes_back_to_the_queue_unsent_and_is_sent_later(
        store: Store, clock: Clock) -> None:
    modem = RecordingModem("sim0")
    sync = HeldSync(store.sync)
    sync.release.clear()
    sync.fail_next = True
    dispatcher = make(store, clock, modem, sync)
    queued = store.enqueue([request(f"+4917012345{n:02d}", f"message {n}") for n in range(4)])
    await dispatcher.start()
    try:
        await async_wait_until(lambda: dispatcher.wal_sync.waiting == 1, timeout=5, what="the wait for the sync")
        sync.release.set()  # the first sync fails: message 2 is given back, the modem pauses
        await async_wait_until(lambda: store.message(queued[2].id)["last_error"] is not None,  # type: ignore[index]
                               timeout=5, what="message 2 to be given back")
        held = store.message(queued[2].id)
        assert held is not None and "syncing the store failed" in held["last_error"]
        clock.now += 1.0  # past the modem's pause
        dispatcher.wake()
        for result in queued:
            await wait_state(store, result.id, "sent")
    finally:
        sync.release.set()
        await dispatcher.stop(timeout=2.0)
    assert len(modem.sent) == 4  # each message once: the one given back had not left
    assert store.message(queued[2].id)["attempts"] == 1  # type: ignore[index]


async def test_a_sync_that_raises_something_else_fails_its_waits_and_the_thread_syncs_the_next_commit() -> None:
    calls: list[int] = []

    def sync() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("not the disk: a bug")

    wal = WalSync(sync)
    try:
        with pytest.raises(SyncFailed, match="not the disk"):
            await wal.wait(wal.request())
        after = wal.request()
        await asyncio.wait_for(wal.wait(after), 10)
    finally:
        wal.close()
    assert wal.synced == after and len(calls) == 2
