"""Helpers for the daemon tests: a config file for simulated modems, the daemon as a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Short intervals and timeouts: the simulator answers at once, so only faults wait this long.
FAST_HEALTH = """
[health]
ping_interval = 0.3
failures_allowed = 1
backoff_base = 0.2
backoff_max = 1.0
port_wait = 5
sweep_interval = {sweep_interval}
poll_interval = 0.2
watch_interval = 0.05
retry_base = {retry_base}
retry_max = 2
timeouts = {{ command = 1.5, send = 2.5, cmgl = 5, sync = 0.3, boot = 5 }}
"""


def write_config(
    directory: Path,
    ports: Sequence[str],
    *,
    report: bool = False,
    reassembly_timeout: float | None = None,
    sweep_interval: float = 30.0,
    retry_base: float = 0.3,
    extra: str = "",
    pins: Sequence[str | None] = (),
    ping_interval: float = 0.3,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["[store]", f'path = "{directory / "smsgw.db"}"']
    if reassembly_timeout is not None:
        lines.append(f"reassembly_timeout = {reassembly_timeout}")
    for index, port in enumerate(ports):
        lines += ["", "[[modems]]", f'id = "sim{index}"', f'port = "{port}"', 'profile = "generic"']
        if report:
            lines.append("report = true")
        if index < len(pins) and pins[index] is not None:
            lines.append(f'pin = "{pins[index]}"')
    health = FAST_HEALTH.format(sweep_interval=sweep_interval, retry_base=retry_base)
    text = "\n".join(lines) + "\n" + health.replace("ping_interval = 0.3", f"ping_interval = {ping_interval}")
    path = directory / "smsgw.toml"
    path.write_text(text + extra)
    return path


def daemon_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("JOURNAL_STREAM", None)
    return env


class DaemonProcess:
    """``python -m appliance run --config FILE`` in a subprocess, logging to a file."""

    def __init__(self, config: Path, log: Path | None = None) -> None:
        self.config = config
        self.log = log or config.with_suffix(".log")
        self.proc: asyncio.subprocess.Process | None = None
        self.log_offset = 0

    async def start(self) -> DaemonProcess:
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:  # noqa: ASYNC230 - opening a local log file is instant
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "appliance", "run", "--config", str(self.config),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=daemon_env(), cwd=ROOT,
            )
        return self

    async def wait_running(self, timeout: float = 10.0) -> None:
        """Until this life logged that it runs (or it exited)."""
        from waiting import async_wait_until

        marker = "info daemon: smsgw running"
        await async_wait_until(
            lambda: not self.running or marker in self.log_text(self.log_offset),
            timeout=timeout, interval=0.005, what="daemon start-up")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; the exit status."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()

    def log_text(self, offset: int = 0) -> str:
        try:
            with self.log.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture
async def daemons() -> AsyncIterator[list[DaemonProcess]]:
    """Daemons a test starts (append them); any still running at the end are killed.

    Load with ``pytest_plugins = ["daemon_helpers"]``."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        if daemon.running:
            await daemon.kill()
