"""`smsgw simulate` as a subprocess: the ready line, inject and fault, clean exit on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def smsgw(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


class Running:
    def __init__(self, directory: Path, *args: str) -> None:
        self.directory = directory
        self.process = subprocess.Popen(
            [sys.executable, "-m", "appliance", "simulate", "--dir", str(directory), *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        stdout = self.process.stdout
        self._reader = threading.Thread(target=lambda: self.lines.extend(stdout), daemon=True)
        self._reader.start()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)


@contextlib.contextmanager
def running_simulator(directory: Path, *args: str) -> Iterator[Running]:
    """``smsgw simulate --dir DIR ARGS`` until its ready line; stopped (SIGTERM) on exit."""
    sim = Running(directory, *args)
    try:
        wait_until(lambda: sim.lines or sim.process.poll() is not None, 20, what="the simulator's ready line")
        assert sim.lines, sim.process.stderr.read() if sim.process.stderr else ""
        yield sim
    finally:
        sim.stop()


def modem_status(directory: Path, index: int = 0) -> dict[str, Any]:
    """The running simulator's view of one modem (PIN entries and attempts, IMEI, ICCID ...)."""
    from drivers.simulator.control import request

    reply = request(directory, {"action": "status"})
    assert reply["ok"], reply
    modem: dict[str, Any] = reply["modems"][index]
    return modem


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    with running_simulator(tmp_path / "sim", "--modems", "2", "--profile", "sim800") as sim:
        yield sim


@contextlib.contextmanager
def held_by(port: str, name: str, directory: Path) -> Iterator[subprocess.Popen[str]]:
    """A process named ``name`` (its comm and argv[0], as ps shows it: a symlink to Python by that
    name) holding ``port`` open, as ModemManager or a getty does, until the block ends."""
    program = directory / name
    program.symlink_to(sys.executable)
    holder = subprocess.Popen([str(program), "-c", "import os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY);"
                               " print('open', flush=True); sys.stdin.read()", port],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        assert Path(f"/proc/{holder.pid}/comm").read_text().strip() == name[:15]
        yield holder
    finally:
        holder.kill()
        holder.wait()


def read_port(port: str, marker: bytes, timeout: float = 5.0) -> bytes:
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    data = bytearray()
    try:
        def more() -> bool:
            try:
                data.extend(os.read(fd, 4096))
            except BlockingIOError:
                pass
            return marker in data
        wait_until(more, timeout, what=f"{marker!r} on {port}")
    finally:
        os.close(fd)
    return bytes(data)


def test_ready_line_inject_fault_and_sigterm(running: Running) -> None:
    directory = running.directory
    [line] = running.lines
    assert line.startswith(f"simulator ready: {directory}/modem0 (+4915550000) {directory}/modem1 (+4915550001)")
    assert os.path.islink(directory / "modem0") and os.path.islink(directory / "modem1")

    result = smsgw("simulate", "inject", "--dir", str(directory), "--modem", "1", "--from", "+4917012345",
                   "--text", "x" * 200)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True, "modem": 1, "parts": 2}
    assert b'+CMTI: "SM",2' in read_port(str(directory / "modem1"), b'+CMTI: "SM",2')
    result = smsgw("simulate", "inject", "--dir", str(directory), "--modem", "1", "--from", "+4917012345",
                   "--text", "y" * 400, "--parts", "3,1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True, "modem": 1, "parts": 2}
    result = smsgw("simulate", "inject", "--dir", str(directory), "--modem", "1", "--from", "+4917012345",
                   "--text", "y", "--parts", "2")
    assert result.returncode == 2 and "part numbers 1..1" in result.stderr
    result = smsgw("simulate", "inject", "--dir", str(directory), "--modem", "1", "--from", "1",
                   "--text", "y", "--parts", "x")
    assert result.returncode == 2 and "--parts takes part numbers" in result.stderr

    result = smsgw("simulate", "fault", "--dir", str(directory), "--modem", "0", "unplug")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True, "modem": 0, "fault": "unplug"}
    assert not os.path.lexists(directory / "modem0")
    result = smsgw("simulate", "fault", "--dir", str(directory), "--modem", "0", "replug")
    assert result.returncode == 0 and os.path.islink(directory / "modem0")

    assert running.stop() == 0
    assert not os.path.lexists(directory / "modem0") and not os.path.lexists(directory / "control.sock")


def test_errors_are_clear_with_status_2(running: Running, tmp_path: Path) -> None:
    directory = str(running.directory)
    result = smsgw("simulate", "fault", "--dir", directory, "--modem", "7", "hang")
    assert result.returncode == 2 and "no modem 7" in result.stderr
    result = smsgw("simulate", "fault", "--dir", directory, "--modem", "0", "explode")
    assert result.returncode == 2 and "unknown fault 'explode'" in result.stderr
    result = smsgw("simulate", "fault", "--dir", directory, "--modem", "0", "cms-error:abc")
    assert result.returncode == 2 and "numeric code" in result.stderr
    result = smsgw("simulate", "--dir", directory)
    assert result.returncode == 2 and "already running" in result.stderr
    nowhere = tmp_path / "nothing-here"
    result = smsgw("simulate", "inject", "--dir", str(nowhere), "--modem", "0", "--from", "1", "--text", "x")
    assert result.returncode == 2 and "no simulator is running" in result.stderr
    result = smsgw("simulate", "--dir", str(nowhere), "--pin", "12")
    assert result.returncode == 2 and "--pin must be 4 to 8 digits" in result.stderr
    result = smsgw("simulate", "--dir", str(nowhere), "--profile", "nokia3310")
    assert result.returncode == 2 and "unknown profile 'nokia3310'" in result.stderr
