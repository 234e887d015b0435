"""Whether a daemon holds the store now, and when it last wrote its state.

``smsgw run`` holds an exclusive flock on ``<store>.lock`` for as long as its process lives (the
kernel drops it however the process ends, ``kill -9`` included), and writes a heartbeat into the
store (state ``daemon``/``life``: pid, started_at, heartbeat, and stopped_at after a clean stop).
``smsgw status`` and ``smsgw doctor`` read both: the lock says whether a daemon runs now; the
heartbeat says when it last wrote its state, and whether it stopped cleanly or died.

The lock is looked up in ``/proc/locks`` (Linux), which lists every flock with the holder's pid and
the file's inode, so that looking does not take the lock (a daemon starting at that moment would
find it taken). When it is not listed there, a non-blocking shared flock, released at once, confirms.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from appliance.deferred_log import get_logger
from appliance.frozen import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    import asyncio
    from typing import Any

    from appliance.store import Store
    from appliance.store_base import StoreBase

LOG = get_logger(__name__)

#: Seconds between two heartbeats written by the daemon.
HEARTBEAT_INTERVAL = 30.0
NAMESPACE, KEY = "daemon", "life"


def lock_path(store_path: os.PathLike[str] | str) -> Path:
    return Path(f"{os.fspath(store_path)}.lock")


@frozen
class Holder:
    running: bool
    pid: int | None = None


def _from_proc_locks(path: Path) -> Holder | None:
    """The holder as /proc/locks lists it (matched by inode and the pid the lock file names)."""
    try:
        inode = path.stat().st_ino
        owner = path.read_text(errors="replace").strip()
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 b3:02:262147 0 EOF" (a "->" marks a waiter)
        if len(fields) < 6 or fields[1] != "FLOCK" or "->" in fields:
            continue
        if fields[5].rsplit(":", 1)[-1] == str(inode) and (not owner.isdigit() or fields[4] == owner):
            return Holder(True, int(fields[4]) if fields[4].isdigit() else None)
    return None


def _by_trying(path: Path) -> Holder:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return Holder(False)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return Holder(True, int(owner) if owner.isdigit() else None)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return Holder(False)
    finally:
        os.close(fd)


def daemon_holder(store_path: os.PathLike[str] | str) -> Holder:
    """Whether a daemon holds ``<store>.lock`` now, and its pid."""
    path = lock_path(store_path)
    if not path.exists():
        return Holder(False)
    found = _from_proc_locks(path)
    # not listed (or no /proc): a shared flock taken and released at once confirms it
    return found if found is not None else _by_trying(path)


def daemon_view(store: StoreBase, store_path: os.PathLike[str] | str, now: float | None = None) -> dict[str, Any]:
    """The ``daemon`` entry of ``smsgw status --json``: running, pid, and the recorded life."""
    holder = daemon_holder(store_path)
    life = store.state_get(NAMESPACE, KEY, None)
    life = life if isinstance(life, dict) else {}
    now = time.time() if now is None else now
    view: dict[str, Any] = {"running": holder.running, "pid": holder.pid if holder.running else None,
                            "started_at": life.get("started_at"), "last_heartbeat": life.get("heartbeat"),
                            "stopped_at": life.get("stopped_at"), "last_pid": life.get("pid")}
    if holder.running:
        view["verdict"] = "running"
    elif not life:
        view["verdict"] = "never ran"
    elif life.get("stopped_at"):
        view["verdict"] = "stopped cleanly"
    else:
        view["verdict"] = "died (killed or crashed without stopping)"
    heartbeat = life.get("heartbeat")
    view["heartbeat_age"] = round(now - heartbeat, 1) if isinstance(heartbeat, int | float) else None
    return view


class Heartbeat:
    """Writes the daemon's life record into the store every ``HEARTBEAT_INTERVAL`` seconds."""

    def __init__(self, store: Store, started_at: float, interval: float = HEARTBEAT_INTERVAL) -> None:
        self.store = store
        self.started_at = started_at
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def beat(self, **extra: Any) -> None:
        try:
            self.store.state_set(NAMESPACE, KEY, {"pid": os.getpid(), "started_at": self.started_at,
                                                  "heartbeat": time.time(), **extra})
        except Exception:
            LOG.exception("writing the daemon heartbeat failed")

    def start(self) -> None:
        import asyncio  # here: `smsgw status` and `send` read the heartbeat without an event loop

        self.beat()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="heartbeat")

    async def _run(self) -> None:
        import asyncio

        while True:
            await asyncio.sleep(self.interval)
            self.beat()

    def stopped(self) -> None:
        """A clean stop: the last beat says so."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.beat(stopped_at=time.time())
