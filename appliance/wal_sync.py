"""Group commit for the send path: the store's WAL made durable in a thread of its own.

A send's TP-MR is committed without fsync (``Store.part_sent(durable=False)``: it is in the WAL
file when that returns, so a killed process loses nothing) and then handed to ``WalSync``, which
runs ``Store.sync`` (one ``fdatasync`` of the WAL) in its thread while the event loop goes on. One
sync covers every commit made before it started, so commits that arrive while a sync runs share
the next one.

The dispatcher waits, before a modem's next ``AT+CMGS``, for the TP-MRs of that modem's parts
before the last one: a power cut can then take back the TP-MR of at most two parts per modem
(each sent again after the restart), where a real modem's 2-5 s per SMS leaves the sync long done
before the next part. The event loop never blocks on the disk for a send (an SD card's fsync can
take tens of milliseconds, during which MQTT and the modems would wait).

What a commit costs the event loop is a counter and, when the thread is idle, the release of a
lock it waits on; the thread wakes the loop only for a wait that found its commit not yet synced
(most find it done: the sync overlapped the next part's exchange). Handing each sync to the
default executor from an asyncio task instead (a task, an executor future and a wake-up of the
loop through its self-pipe per sync) cost the loop about 100 us of CPU per send (960 against 860,
measured as ``bench/send_costs.py`` does).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

LOG = logging.getLogger("appliance.wal_sync")

#: Seconds a wait for a sync may take before it fails (a disk that stopped answering).
SYNC_TIMEOUT = 60.0


class SyncFailed(OSError):
    """The sync covering a commit failed or did not finish within ``SYNC_TIMEOUT``."""


class WalSync:
    """Tickets for commits made without fsync, and the syncs (in a thread) that make them durable."""

    def __init__(self, sync: Callable[[], None], timeout: float = SYNC_TIMEOUT) -> None:
        self._sync = sync
        self.timeout = timeout
        self.requested = 0  # tickets handed out
        self.synced = 0  # every ticket up to this one is on disk
        self.syncs = 0  # syncs completed (bridge figures, tests)
        self._failed_up_to = 0  # tickets a failed sync covered
        self._error: Exception | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        # held while no sync is asked for: request() releases it, the thread's acquire takes the request
        self._asked = threading.Lock()
        self._asked.acquire()
        self._lock = threading.Lock()  # synced, _failed_up_to and _waiters between the thread and the loop
        self._thread: threading.Thread | None = None
        self._closing = False

    def request(self) -> int:
        """A commit was just made without fsync: its ticket, for ``wait``. Asks the thread for a
        sync (one running now started before this commit: the next one covers it)."""
        self.requested += 1
        if self._thread is None or not self._thread.is_alive():
            self._closing = False
            self._thread = threading.Thread(target=self._run, name="wal-sync", daemon=True)
            self._thread.start()
        if self._asked.locked():  # else a request is pending: the sync it starts reads ``requested`` later
            self._asked.release()
        return self.requested

    @property
    def waiting(self) -> int:
        """Waits in progress (tests: the dispatcher is held up by the disk)."""
        return len(self._waiters)

    async def wait(self, ticket: int) -> None:
        """Return once the commit of ``ticket`` is on disk; SyncFailed if its sync failed."""
        with self._lock:
            if ticket <= self.synced:
                return
            if ticket <= self._failed_up_to:
                raise SyncFailed(f"syncing the store failed: {self._error}")
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (ticket, future)
            self._waiters.append(entry)
        try:
            async with asyncio.timeout(self.timeout):
                await future
        except TimeoutError as exc:
            raise SyncFailed(f"syncing the store took longer than {self.timeout:.0f}s") from exc
        finally:
            with self._lock:
                self._waiters.remove(entry)

    async def flush(self) -> None:
        """Return once every commit handed in so far is on disk (or its sync failed)."""
        try:
            await self.wait(self.requested)
        except SyncFailed as exc:
            LOG.error("%s", exc)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread once the sync in progress is done, waiting up to ``timeout`` (``flush``
        first to wait for every commit); a later ``request`` starts it again."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._closing = True
        if self._asked.locked():  # else a request is pending: the thread syncs it, then stops
            self._asked.release()
        thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._asked.acquire()  # a request (or close) released it
            target = self.requested
            if target > self.synced and target > self._failed_up_to:
                self._sync_up_to(target)
            if self._closing and self._asked.locked():
                return  # no request pending (the lock held, as the next thread expects)

    def _sync_up_to(self, target: int) -> None:
        error: Exception | None = None
        try:
            self._sync()
        except OSError as exc:
            LOG.error("syncing the store's WAL failed: %s", exc)
            error = exc
        except Exception as exc:  # not the disk's: the thread lives on, and the waits fail as for EIO
            LOG.exception("syncing the store's WAL failed")
            error = exc
        with self._lock:
            if error is None:
                self.synced = max(self.synced, target)
                self.syncs += 1
            else:
                self._error = error
                self._failed_up_to = max(self._failed_up_to, target)
            loops = {future.get_loop() for ticket, future in self._waiters if ticket <= target}
        for loop in loops:
            try:
                loop.call_soon_threadsafe(self._settle)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _settle(self) -> None:
        """On the loop: end the waits the last syncs covered."""
        with self._lock:
            waiters = list(self._waiters)
            synced, failed_up_to, error = self.synced, self._failed_up_to, self._error
        for ticket, future in waiters:
            if future.done():
                continue
            if ticket <= synced:
                future.set_result(None)
            elif ticket <= failed_up_to:
                future.set_exception(SyncFailed(f"syncing the store failed: {error}"))
