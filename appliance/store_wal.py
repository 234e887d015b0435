"""The WAL's checkpoints, off the connection that commits (docs/store.md, "Checkpoints").

SQLite's auto-checkpoint runs inside the COMMIT that takes the WAL past 1000 pages: the
committing connection copies the pages into the database file and fsyncs it. In the daemon that
connection is the event loop's, so every few dozen sends (a send writes about 30 pages) the loop
waited for two fsyncs, an SD card's tens of milliseconds each, with MQTT and the modems waiting.
``defer_checkpoints`` turns it off for this connection; ``appliance.wal_checkpoint`` checkpoints
through a second connection in a thread instead, when ``wal_frames`` says the WAL holds enough.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from collections.abc import Callable

from appliance.store_base import StoreBase

#: The wal-index header (the ``-shm`` file), https://www.sqlite.org/walformat.html section 2.1:
#: the first WalIndexHdr has ``mxFrame`` (the last valid frame of the WAL) at byte 16, and the
#: WalCkptInfo that follows both copies of it ``nBackfill`` (frames copied into the database) at
#: byte 96; both u32 in the machine's byte order.
_MX_FRAME, _N_BACKFILL, _HEADER = 16, 96, 100


class WalFile(StoreBase):
    _shm_fd: int | None = None
    _checkpoint_conn: sqlite3.Connection | None = None

    def defer_checkpoints(self, after_commit: Callable[[], None]) -> None:
        """No checkpoint at this connection's commits (``wal_autocheckpoint=0``); ``after_commit`` is
        called after each of them instead (on the committing thread; it must not raise)."""
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._after_commit = after_commit

    def wal_frames(self) -> tuple[int, int]:
        """(frames in the WAL, of them not yet copied into the database); (0, 0) when unknown: a
        read of the wal-index header, without a lock or a query (a torn read only makes a
        checkpoint early or late)."""
        if self._shm_fd is None:
            try:
                self._shm_fd = os.open(f"{self.path}-shm", os.O_RDONLY)
            except OSError:
                return 0, 0
        header = os.pread(self._shm_fd, _HEADER, 0)
        if len(header) < _HEADER:
            return 0, 0
        frames = int(struct.unpack_from("=I", header, _MX_FRAME)[0])
        return frames, max(frames - int(struct.unpack_from("=I", header, _N_BACKFILL)[0]), 0)

    def checkpoint(self, *, here: bool = False) -> tuple[int, int, int]:
        """A ``PASSIVE`` checkpoint (it never waits for a lock, readers and the writer go on):
        through the checkpoint connection (a worker thread's; one thread at a time), or ``here`` on
        the store's connection. SQLite's (busy, frames in the WAL, frames checkpointed)."""
        if here:
            conn = self._conn
        else:
            if self._checkpoint_conn is None:
                self._checkpoint_conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._checkpoint_conn.execute("PRAGMA synchronous=FULL")
            conn = self._checkpoint_conn
        busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(busy), int(log), int(done)

    def close(self) -> None:
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None
        if self._shm_fd is not None:
            os.close(self._shm_fd)
            self._shm_fd = None
        super().close()
