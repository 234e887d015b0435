"""One daemon per store, one program per modem port: a second `smsgw run` or a second opener is refused."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_helpers import ROOT, DaemonProcess, daemon_env, write_config
from test_simulate_cli import Running
from waiting import wait_until

from drivers.errors import TransportError
from drivers.transport import open_transport


@pytest.fixture
def sim(tmp_path: Path) -> Running:
    running = Running(tmp_path / "sim", "--modems", "1")
    wait_until(lambda: running.lines or running.process.poll() is not None, 20, what="the simulator")
    yield running  # type: ignore[misc]
    running.stop()


async def test_second_daemon_on_the_same_store_is_refused(tmp_path: Path, sim: Running) -> None:
    config = write_config(tmp_path / "run", [str(sim.directory / "modem0")])
    first = await DaemonProcess(config).start()
    try:
        await first.wait_running()
        second = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "appliance", "run", "--config", str(config)],
            cwd=ROOT, env=daemon_env(), capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert f"another smsgw run (pid {first.proc.pid}) is using the store" in second.stderr  # type: ignore[union-attr]
        assert first.running
    finally:
        assert await first.stop() == 0
    again = await DaemonProcess(config).start()  # the lock went with the first process
    await again.wait_running()
    assert again.running
    assert await again.stop() == 0


async def test_a_port_in_use_cannot_be_opened_twice(sim: Running) -> None:
    port = str(sim.directory / "modem0")
    first = await open_transport(port, on_data=lambda _data: None, on_closed=lambda _exc: None)
    try:
        with pytest.raises(TransportError, match="another program has the port open"):
            await open_transport(port, on_data=lambda _data: None, on_closed=lambda _exc: None)
    finally:
        first.close()
