"""Group commit for the send path: the store's WAL made durable in a worker thread.

A send's TP-MR is committed without fsync (``Store.part_sent(durable=False)``: it is in the WAL
file when that returns, so a killed process loses nothing) and then handed to ``WalSync``, which
runs ``Store.sync`` (one ``fdatasync`` of the WAL) in a thread while the event loop goes on. One
sync covers every commit made before it started, so commits that arrive while a sync runs share
the next one.

The dispatcher waits, before a modem's next ``AT+CMGS``, for the TP-MRs of that modem's parts
before the last one: a power cut can then take back the TP-MR of at most two parts per modem
(each sent again after the restart), where a real modem's 2-5 s per SMS leaves the sync long done
before the next part. The event loop never blocks on the disk for a send (an SD card's fsync can
take tens of milliseconds, during which MQTT and the modems would wait).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

LOG = logging.getLogger("appliance.wal_sync")

#: Seconds a wait for a sync may take before it fails (a disk that stopped answering).
SYNC_TIMEOUT = 60.0


class SyncFailed(OSError):
    """The sync covering a commit failed or did not finish within ``SYNC_TIMEOUT``."""


class WalSync:
    """Tickets for commits made without fsync, and the syncs that make them durable."""

    def __init__(self, sync: Callable[[], None], timeout: float = SYNC_TIMEOUT) -> None:
        self._sync = sync
        self.timeout = timeout
        self.requested = 0  # tickets handed out
        self.synced = 0  # every ticket up to this one is on disk
        self.syncs = 0  # syncs completed (bridge figures, tests)
        self._failed_up_to = 0  # tickets a failed sync covered
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def request(self) -> int:
        """A commit was just made without fsync: its ticket, for ``wait``. Starts a sync unless one
        is running (the one after it covers this commit)."""
        self.requested += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="wal-sync")
        return self.requested

    @property
    def waiting(self) -> int:
        """Waits in progress (tests: the dispatcher is held up by the disk)."""
        return len(self._waiters)

    async def wait(self, ticket: int) -> None:
        """Return once the commit of ``ticket`` is on disk; SyncFailed if its sync failed."""
        if ticket <= self._failed_up_to and ticket > self.synced:
            raise SyncFailed(f"syncing the store failed: {self._error}")
        if ticket <= self.synced:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (ticket, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(self.timeout):
                await future
        except TimeoutError as exc:
            raise SyncFailed(f"syncing the store took longer than {self.timeout:.0f}s") from exc
        finally:
            self._waiters.remove(entry)

    async def flush(self) -> None:
        """Return once every commit handed in so far is on disk (or its sync failed)."""
        try:
            await self.wait(self.requested)
        except SyncFailed as exc:
            LOG.error("%s", exc)

    async def _run(self) -> None:
        while self.synced < self.requested and self._failed_up_to < self.requested:
            target = self.requested
            try:
                await asyncio.to_thread(self._sync)
            except OSError as exc:
                LOG.error("syncing the store's WAL failed: %s", exc)
                self._error = exc
                self._failed_up_to = target
                self._settle(target, SyncFailed(f"syncing the store failed: {exc}"))
                continue
            self.synced = target
            self.syncs += 1
            self._settle(target, None)

    def _settle(self, target: int, error: BaseException | None) -> None:
        for ticket, future in self._waiters:
            if ticket <= target and not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
