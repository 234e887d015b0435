"""One simulated serial port: a pty pair, raw, with a symlink to the slave.

The simulator keeps its own slave descriptor open, so a client may close and reopen the port (gammu
does so on every command) without the pty hanging up. Output goes through a buffer flushed with
``add_writer`` when the pty is full, so a client that stops reading never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import tty
from collections.abc import Callable
from pathlib import Path

#: Output kept for a client that does not read, before the oldest bytes are dropped.
MAX_PENDING = 256 * 1024


class PtyPort:
    def __init__(self, link: Path, on_data: Callable[[bytes], None]) -> None:
        self.link = link
        self.on_data = on_data
        self.master: int | None = None
        self.slave: int | None = None
        self.slave_name = ""
        self._pending = bytearray()
        self._writer_added = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_open(self) -> bool:
        return self.master is not None

    def open(self) -> None:
        """Create the pty, make it raw with echo off, point the symlink at it, start reading."""
        if self.master is not None:
            return
        self._loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.master, self.slave = master, slave
        self.slave_name = os.ttyname(slave)
        temporary = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        os.symlink(self.slave_name, temporary)
        os.replace(temporary, self.link)
        self._loop.add_reader(master, self._readable)

    def close(self, *, remove_link: bool = True) -> None:
        """Close both ends (clients then read EIO / see HUP) and remove the symlink."""
        master, slave = self.master, self.slave
        self.master = self.slave = None
        self._pending.clear()
        if master is not None and self._loop is not None:
            self._loop.remove_reader(master)
            if self._writer_added:
                self._loop.remove_writer(master)
        self._writer_added = False
        for fd in (master, slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if remove_link:
            with contextlib.suppress(FileNotFoundError):
                if self.link.is_symlink() and os.readlink(self.link) == self.slave_name:
                    self.link.unlink()

    def _readable(self) -> None:
        if self.master is None:
            return
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open: cannot happen while we hold one
                return
            raise
        if data:
            self.on_data(data)

    def write(self, data: bytes) -> None:
        """Queue ``data`` for the client; dropped when the port is closed (unplugged)."""
        if self.master is None or not data:
            return
        self._pending += data
        if len(self._pending) > MAX_PENDING:
            del self._pending[: len(self._pending) - MAX_PENDING]
        self._flush()

    def _flush(self) -> None:
        if self.master is None:
            return
        while self._pending:
            try:
                written = os.write(self.master, self._pending)
            except BlockingIOError:
                break
            except OSError:
                self._pending.clear()
                break
            del self._pending[:written]
        assert self._loop is not None
        if self._pending and not self._writer_added:
            self._loop.add_writer(self.master, self._flush)
            self._writer_added = True
        elif not self._pending and self._writer_added:
            self._loop.remove_writer(self.master)
            self._writer_added = False
