"""systemd notification: READY=1 once running, WATCHDOG=1 pings, STOPPING=1 on SIGTERM; no-op outside systemd."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_helpers import daemon_env, write_config
from test_simulate_cli import Running
from waiting import wait_until

from appliance import systemd

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def drain(sock: socket.socket, into: list[str]) -> list[str]:
    while True:
        try:
            into.append(sock.recv(4096).decode())
        except BlockingIOError:
            return into


def test_daemon_notifies_ready_watchdog_and_stopping(tmp_path: Path, notify_socket: socket.socket) -> None:
    sim = Running(tmp_path / "sim", "--modems", "1")
    try:
        wait_until(lambda: sim.lines or sim.process.poll() is not None, 20, what="the simulator")
        config = write_config(tmp_path / "run", [str(tmp_path / "sim" / "modem0")])
        env = daemon_env() | {"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "300000"}
        daemon = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(config)],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        messages: list[str] = []
        try:
            wait_until(lambda: any("WATCHDOG=1\nSTATUS=running; 1/1 modem(s) healthy" in m
                                   for m in drain(notify_socket, messages)), 20,
                       what="a watchdog ping with the modem healthy")
            assert "READY=1" in messages[0]
            assert sum("WATCHDOG=1" in m for m in messages) >= 1
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=15) == 0
            drain(notify_socket, messages)
            assert "STOPPING=1" in messages[-1]
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    finally:
        sim.stop()


def test_notify_outside_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert systemd.notify("READY=1") is False
    assert systemd.watchdog_interval() is None


def test_abstract_socket_and_watchdog_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"smsgw-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("READY=1", "STATUS=x")
        assert sock.recv(100) == b"READY=1\nSTATUS=x"
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    assert systemd.watchdog_interval() is None


def test_notify_to_a_vanished_socket_does_not_raise(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert systemd.notify("WATCHDOG=1") is False
