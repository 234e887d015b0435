"""The files holding the appliance's data are private whatever the umask (drivers/private_files.py),
and a file rewritten whole is replaced atomically with its mode from the start.

The processes run with umask 022 (a shell's usual one, unlike the systemd unit's UMask=0027): the
store, its -wal and -shm (SQLite gives both the database file's mode: sqlite3 src/os_unix.c,
findCreateFileMode), the daemon's lock file and the PIN rejection file must be 0600, or 0640 in a
set-group-ID directory (the service group reads).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_helpers import ROOT, DaemonProcess, daemon_env, write_config
from waiting import async_wait_until

from appliance.store import Store
from drivers.modem import PIN_REJECTIONS_FILE, PinRejections
from drivers.private_files import replace_file
from drivers.simulator import Simulator


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("setgid, expected", [(False, 0o600), (True, 0o640)])
async def test_the_daemon_creates_its_files_private_under_umask_022(
        tmp_path: Path, umask_022: None, setgid: bool, expected: int) -> None:
    directory = tmp_path / "gw"
    directory.mkdir()
    if setgid:
        directory.chmod(0o2750)
    async with Simulator(tmp_path / "sim", modems=1) as sim:
        config = write_config(directory, sim.ports)
        daemon = await DaemonProcess(config).start()
        db = directory / "smsgw.db"
        try:
            await daemon.wait_running(timeout=20)
            await async_wait_until(lambda: Path(f"{db}-wal").exists() and Path(f"{db}-shm").exists(),
                                   timeout=10, what="the WAL files")
            files = {name: mode(directory / name)
                     for name in ("smsgw.db", "smsgw.db-wal", "smsgw.db-shm", "smsgw.db.lock")}
        finally:
            assert await daemon.stop() == 0
    assert files == dict.fromkeys(files, expected)


def test_smsgw_send_creates_a_private_store_and_tightens_a_world_readable_one(tmp_path: Path) -> None:
    directory = tmp_path / "gw"
    config = write_config(directory, ["/dev/null"])
    done = subprocess.run([sys.executable, "-m", "appliance", "send", "--config", str(config), "+4915112345678",
                           "hello"], capture_output=True, text=True, env=daemon_env(), cwd=ROOT, timeout=30,
                          umask=0o022)
    assert done.returncode == 0, done.stderr
    assert mode(directory / "smsgw.db") == 0o600

    # a store made by an older version (or by hand) with umask 022 is 0644: opening it fixes that
    old = tmp_path / "old" / "smsgw.db"
    old.parent.mkdir()
    previous = os.umask(0o022)
    try:
        sqlite3.connect(old).execute("CREATE TABLE t (x)").connection.close()
    finally:
        os.umask(previous)
    assert mode(old) == 0o644
    with Store(old):
        assert mode(old) == 0o600 and mode(Path(f"{old}-wal")) == 0o600


def test_pin_rejection_file_and_its_lock_are_private(tmp_path: Path, umask_022: None) -> None:
    rejections = PinRejections(tmp_path)
    rejections.remember("sim-key", "1234", modem_id="sim0", port="/dev/null", iccid="89", reason="test")
    assert mode(tmp_path / PIN_REJECTIONS_FILE) == 0o600
    assert mode(tmp_path / (PIN_REJECTIONS_FILE + ".lock")) == 0o600


def test_a_group_writable_directory_shares_the_store_with_its_group(tmp_path: Path, umask_022: None) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o770)
    with Store(directory / "smsgw.db"):
        assert mode(directory / "smsgw.db") == 0o660 and mode(directory / "smsgw.db-wal") == 0o660


def test_replace_file_writes_the_new_text_with_its_mode_from_the_start(tmp_path: Path, umask_022: None) -> None:
    target = tmp_path / "smsgw.toml"
    target.write_text("old\n")
    target.chmod(0o644)
    seen: list[tuple[str, int]] = []

    def check(written: Path) -> None:  # the temporary file, before the rename
        assert written.parent == tmp_path and written != target
        seen.append((written.read_text(), mode(written)))

    replace_file(target, "new ✓\n", mode=0o640, check=check)
    assert seen == [("new ✓\n", 0o640)]
    assert target.read_text() == "new ✓\n" and mode(target) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smsgw.toml"]


def test_replace_file_refused_by_its_check_leaves_the_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "smsgw.toml"
    target.write_text("old\n")

    def refuse(written: Path) -> None:
        raise ValueError(f"refused {written.read_text()!r}")

    with pytest.raises(ValueError, match="refused 'bad'"):
        replace_file(target, "bad", mode=0o600, check=refuse)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smsgw.toml"]


def test_replace_file_without_a_mode_keeps_the_mode_of_the_file_it_replaces(tmp_path: Path,
                                                                              umask_022: None) -> None:
    target = tmp_path / "smsgw.toml"
    target.write_text("old\n")
    target.chmod(0o620)
    inode = target.stat().st_ino
    replace_file(target, "new\n")
    assert target.read_text() == "new\n" and mode(target) == 0o620
    assert target.stat().st_ino != inode  # renamed into place, not rewritten in place
