"""The daemon's WAL checkpoints, mostly in a worker thread (docs/store.md, "Checkpoints").

The store's connection no longer checkpoints at its commits (``Store.defer_checkpoints``): after
each commit ``note_commit`` reads the wal-index header (``Store.wal_frames``) and, once
``frames`` frames of the WAL are not yet in the database, wakes a thread that runs a ``PASSIVE``
checkpoint through a connection of its own: the copying and the database's fsync happen while
the event loop goes on. SQLite starts the WAL over from its beginning only at a write that finds
every frame copied, which a checkpoint racing a busy writer never leaves it; so once the WAL
holds ``restart`` frames the committing thread checkpoints what is left itself (the pages
written since the thread's last checkpoint, and an fsync), and its next commit starts the WAL
over: the file stays bounded (``restart`` frames and one transaction), and the committing
connection waits for the disk once per ``restart`` frames instead of once per 1000 as with
SQLite's auto-checkpoint.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

LOG = logging.getLogger("appliance.wal_checkpoint")

#: Frames (pages) in the WAL that start a checkpoint in the thread: SQLite's auto-checkpoint default.
CHECKPOINT_FRAMES = 1000
#: Frames in the WAL at which the committing thread checkpoints the rest itself, so that the
#: next commit starts the WAL over (16 MiB of 4 KiB pages).
RESTART_FRAMES = 4000


class CheckpointedStore(Protocol):
    def defer_checkpoints(self, after_commit: Callable[[], None]) -> None: ...
    def wal_frames(self) -> tuple[int, int]: ...
    def checkpoint(self, *, here: bool = False) -> tuple[int, int, int]: ...


class WalCheckpointer:
    """Checkpoints ``store``'s WAL in a thread once it holds ``frames`` frames not yet copied, and
    on the committing thread at ``restart`` frames."""

    def __init__(self, store: CheckpointedStore, frames: int = CHECKPOINT_FRAMES,
                 restart: int = RESTART_FRAMES) -> None:
        self.store = store
        self.frames = frames
        self.restart = restart
        self.checkpoints = 0  # by the thread
        self.inline = 0  # by the committing thread, at ``restart`` frames
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()
        self.store.defer_checkpoints(self.note_commit)

    def note_commit(self) -> None:
        """After a commit of the store's connection (on its thread)."""
        try:
            frames, backlog = self.store.wal_frames()
            if frames >= self.restart and backlog:
                self.store.checkpoint(here=True)
                self.inline += 1
            elif backlog >= self.frames:
                self._wake.set()
        except Exception:  # a commit is made: nothing here may fail it
            LOG.exception("checkpointing the store's WAL failed")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the thread (its checkpoint in progress finishes); the store's close checkpoints the rest."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.store.checkpoint()
                self.checkpoints += 1
            except Exception:
                LOG.exception("checkpointing the store's WAL failed")
