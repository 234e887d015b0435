"""The WAL's checkpoints off the committing connection (appliance.wal_checkpoint, store_wal).

A real store file, real commits. ``wal_frames`` reads the wal-index header as SQLite's file
format documents it (https://www.sqlite.org/walformat.html, section 2.1): the figures are
compared with what SQLite's own ``PRAGMA wal_checkpoint`` reports for the same WAL. Who
checkpoints is seen from the system calls: the committing thread's fsyncs of the database file
(strace), and SQLite's counts.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from store_helpers import request
from waiting import wait_until

from appliance.store import Store
from appliance.wal_checkpoint import WalCheckpointer


def commits(store: Store, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        store.enqueue([request(f"+49170{i:07d}", "x" * 120)])


def test_wal_frames_read_the_header_sqlite_writes(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.defer_checkpoints(lambda: None)
        commits(store, 40)
        frames, backlog = store.wal_frames()
        assert frames == backlog > 40  # nothing checkpointed yet: every commit writes pages
        other = sqlite3.connect(tmp_path / "s.db")
        busy, log, done = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        other.close()
        assert (busy, log, done) == (0, frames, frames)
        assert store.wal_frames() == (frames, 0)  # all copied: nBackfill caught up with mxFrame


def test_the_thread_checkpoints_and_the_wal_stays_bounded(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        checkpointer = WalCheckpointer(store, frames=50, restart=400)
        checkpointer.start()
        most = 0
        for i in range(300):
            commits(store, 1, i)
            most = max(most, store.wal_frames()[0])
        wait_until(lambda: checkpointer.checkpoints > 0, what="a checkpoint by the thread")
        checkpointer.stop()
        assert checkpointer.checkpoints > 0
        # restart frames and a few commits' pages (~12 each: a commit while the thread's checkpoint
        # reads the WAL cannot start it over; the next one does)
        assert most <= 400 + 100, most
        assert checkpointer.inline < 300 // 5  # the committing thread seldom waits for the disk
        assert len(store.outbox(1000)) == 300
    check = sqlite3.connect(tmp_path / "s.db")
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT COUNT(*) FROM message").fetchone()[0] == 300
    check.close()


def test_a_failing_checkpoint_does_not_fail_the_commit(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Store(tmp_path / "s.db") as store:
        checkpointer = WalCheckpointer(store, frames=1, restart=2)

        def refuse(*, here: bool = False) -> tuple[int, int, int]:
            raise sqlite3.OperationalError("disk I/O error")

        store.checkpoint = refuse  # type: ignore[method-assign]
        checkpointer.start()
        commits(store, 3)
        checkpointer.stop()
        assert len(store.outbox(10)) == 3
        assert "checkpointing the store's WAL failed" in caplog.text


SCRIPT = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from appliance.store import Store, OutboundRequest
from appliance.wal_checkpoint import WalCheckpointer
store = Store(sys.argv[2])
store._conn.execute("PRAGMA synchronous=NORMAL")  # the commits' own fsyncs out of the way: only checkpoints sync
if sys.argv[3] == "thread":
    checkpointer = WalCheckpointer(store)
    checkpointer.start()
print("go", threading.get_native_id(), flush=True)
sys.stdin.readline()
for i in range(1000):
    store.enqueue([OutboundRequest(to=f"+49170{i:07d}", text="x" * 120, source="test")])
store.close()
"""


def db_fsyncs_by_committer(tmp_path: Path, mode: str) -> int:
    """fsync/fdatasync calls of the database file (not its WAL) made by the committing thread."""
    log = tmp_path / f"strace-{mode}.txt"
    db = tmp_path / f"{mode}.db"
    Store(db).close()
    proc = subprocess.Popen(["strace", "-f", "--seccomp-bpf", "-y", "-e", "trace=fsync,fdatasync", "-o", str(log), sys.executable,
                             "-c", SCRIPT, str(Path(__file__).resolve().parent.parent), str(db), mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline().split()
    assert line[0] == "go"
    main_tid = line[1]
    proc.stdin.write("\n")
    proc.stdin.flush()
    assert proc.wait(120) == 0
    calls = [row for row in log.read_text().splitlines() if row.startswith(main_tid + " ")]
    return sum(1 for row in calls if f"<{db}>" in row)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_the_committing_thread_fsyncs_the_database_seldom(tmp_path: Path) -> None:
    """1000 commits: with SQLite's auto-checkpoint the committing thread fsyncs the database file
    at every checkpoint (every 1000 frames); with the checkpointer only once per RESTART_FRAMES."""
    default = db_fsyncs_by_committer(tmp_path, "default")
    deferred = db_fsyncs_by_committer(tmp_path, "thread")
    assert default >= 8  # 1000 commits of ~12 pages: ~12 checkpoints by the committer
    assert deferred * 2 <= default, (deferred, default)  # measured: 13 and 4
