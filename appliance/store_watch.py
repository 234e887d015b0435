"""Notice commits to the store by other processes (``smsgw send``, the sqlite3 shell) without polling.

Every commit in WAL mode writes the ``-wal`` file (and a checkpoint writes the database file), so
an inotify watch (Linux inotify(7)) on the store's directory for IN_MODIFY, IN_CREATE and
IN_MOVED_TO of those two names becomes readable exactly when something may have committed. The
daemon then compares ``PRAGMA data_version`` (which changes only for commits by other connections)
and wakes what waits for the store. The frames are written before the commit is visible (the
committer fsyncs the WAL, then updates the wal-index in the ``-shm``, which raises no event): a
look at once can come too early, so ``follow`` looks again 1, 2, 4 and 8 ms later until the commit
is visible (the committer's fsync: a millisecond or two on an SSD, more on an SD card) and once
more at the end of its ``coalesce`` window; the watch also takes IN_CLOSE_WRITE: a process that
wrote the store (``smsgw send``) closes it after its commit is visible, whatever its fsync took.
An idle daemon sleeps in ``epoll`` instead of waking every ``watch_interval``. Readers touch only
the ``-shm`` (through mmap, which raises no inotify event) while they read; but SQLite opens the
``-wal`` for writing even for a read-only connection, so ``smsgw status`` costs the daemon one look
(a ``PRAGMA data_version``) when it closes the store.

Where inotify is not available (not Linux, or the limit of watches reached) ``open_watch`` returns
None and the daemon polls ``data_version`` every ``watch_interval`` as before.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import struct
import sys
from collections.abc import Callable
from pathlib import Path

LOG = logging.getLogger(__name__)

#: Seconds between two looks at the watch while commits keep coming (the daemon's own included:
#: each of its commits raises an event too; meanwhile the events wait in the descriptor).
COALESCE = 0.02
#: Seconds after an event at which a look that found nothing new looks again (doubling each time,
#: within the ``COALESCE`` window).
FIRST_RETRY = 0.001

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)


class StoreWatch:
    """An inotify descriptor watching the store's directory for writes to the store's files."""

    def __init__(self, fd: int, names: set[bytes]) -> None:
        self.fd = fd
        self.names = names

    def fileno(self) -> int:
        return self.fd

    def read(self) -> bool:
        """Drain the pending events; True when one concerns the store's files (or events were lost)."""
        hit = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return hit
            except InterruptedError:
                continue
            if not data:
                return hit
            offset = 0
            while offset + _HEADER.size <= len(data):
                _wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                name = data[offset + _HEADER.size:offset + _HEADER.size + length].rstrip(b"\0")
                offset += _HEADER.size + length
                if mask & IN_Q_OVERFLOW or name in self.names:
                    hit = True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_watch(db_path: Path) -> StoreWatch | None:
    """Watch the directory of ``db_path`` for writes to it and its ``-wal``; None without inotify."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        real = db_path.resolve()  # SQLite follows a symlinked database: its -wal lies beside the target
        directory = os.fsencode(real.parent)
        if libc.inotify_add_watch(fd, directory, IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO) < 0:
            error = ctypes.get_errno()
            os.close(fd)
            raise OSError(error, os.strerror(error))
    except (OSError, AttributeError) as exc:
        LOG.info("no inotify watch on the store (%s); polling it for other processes' commits", exc)
        return None
    name = os.fsencode(real.name)
    return StoreWatch(fd, {name, name + b"-wal"})


async def follow(watch: StoreWatch, look: Callable[[], bool], coalesce: float = COALESCE,
                 first_retry: float = FIRST_RETRY) -> None:
    """Call ``look`` (True: it found a commit by another process) whenever ``watch`` reports a write
    to the store, until cancelled: at once, then after ``first_retry`` seconds, twice that, ...
    until it finds the commit or the ``coalesce`` window since the event ends, and once more at its
    end. The watch is not read during the window, so the daemon's own commits cost at most a few
    looks per window however many there are."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def readable() -> None:
        if watch.read():
            changed.set()

    loop.add_reader(watch.fileno(), readable)
    try:
        look()  # a commit between the start and the watch
        while True:
            await changed.wait()
            changed.clear()
            loop.remove_reader(watch.fileno())
            end = loop.time() + coalesce
            retry = first_retry
            # the event came with the commit's frames, maybe before the committer's fsync made it visible
            while not look() and loop.time() + retry < end:
                await asyncio.sleep(retry)
                retry *= 2
            await asyncio.sleep(max(0.0, end - loop.time()))
            look()  # the commit itself may raise no event after it became visible
            loop.add_reader(watch.fileno(), readable)
    finally:
        loop.remove_reader(watch.fileno())
