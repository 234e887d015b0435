"""`smsgw doctor`: a healthy installation passes; each typical installer mistake is named with a hint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_simulate_cli import Running
from waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["mosquitto"]


def doctor(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run([sys.executable, "-m", "appliance", "doctor", "--config", str(config), "--json",
                             "--timeout", "2", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def messages(report: dict[str, Any], status: str | None = None) -> list[str]:
    return [f["message"] for f in report["findings"] if status is None or f["status"] == status]


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Running]:
    sim = Running(tmp_path / "sim", "--modems", "1", "--profile", "sim800")
    try:
        wait_until(lambda: sim.lines or sim.process.poll() is not None, 20, what="the ready line")
        assert sim.lines
        yield sim
    finally:
        sim.stop()


def write(tmp_path: Path, port: str, mqtt: str = "") -> Path:
    path = tmp_path / "smsgw.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "smsgw.db"}"\n\n[[modems]]\nid = "sim0"\nport = "{port}"\n'
                    f'profile = "auto"\n{mqtt}')
    return path


def test_healthy_installation(tmp_path: Path, simulator: Running, mosquitto: Any) -> None:
    config = write(tmp_path, str(simulator.directory / "modem0"),
                   f'\n[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n')
    status, report = doctor(config)
    assert status == 0, report
    text = "\n".join(messages(report))
    assert "SIMCOM" in text.upper() and "profile sim800" in text
    assert "registration: home" in text
    assert "SMS service centre: +" in text
    assert "accepted MQTT 5" in text
    assert "does not exist yet" in text  # the store is made by the first run or send


def test_port_missing_broker_down_and_store_dir_missing(tmp_path: Path) -> None:
    config = tmp_path / "smsgw.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "nowhere" / "smsgw.db"}"\n\n[[modems]]\nid = "m"\n'
                      f'port = "{tmp_path / "ttyUSB9"}"\n\n[mqtt]\nhost = "127.0.0.1"\nport = 9\n')
    status, report = doctor(config)
    assert status == 1
    failed = "\n".join(messages(report, "fail"))
    assert "ttyUSB9 does not exist" in failed
    assert "127.0.0.1:9 is not reachable" in failed
    assert "nowhere does not exist" in failed
    hints = [f["hint"] for f in report["findings"] if f["status"] == "fail"]
    assert any("smsgw detect" in hint for hint in hints)


def test_port_held_by_another_process_is_not_opened(tmp_path: Path, simulator: Running) -> None:
    port = str(simulator.directory / "modem0")
    holder = os.open(port, os.O_RDWR | os.O_NOCTTY)
    try:
        status, report = doctor(write(tmp_path, port))
    finally:
        os.close(holder)
    assert status == 0
    text = "\n".join(messages(report))
    assert f"in use by process {os.getpid()}" in text
    assert "IMEI" not in text  # the modem was not probed


def test_refused_credentials(tmp_path: Path, broker_factory: Any) -> None:
    broker = broker_factory(users={"smsgw": "right"})
    config = tmp_path / "smsgw.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "smsgw.db"}"\n\n[mqtt]\nhost = "127.0.0.1"\n'
                      f'port = {broker.port}\nusername = "smsgw"\npassword = "wrong"\n')
    status, report = doctor(config, "--no-modems")
    assert status == 1
    assert any("refused the connection" in m for m in messages(report, "fail"))


def test_config_error_is_named(tmp_path: Path) -> None:
    config = tmp_path / "smsgw.toml"
    config.write_text('[store]\npath = "x.db"\n[[modems]]\nid = "a"\nport = "/dev/ttyUSB0"\nprofile = "nokia"\n')
    status, report = doctor(config)
    assert status == 2
    assert "profile" in messages(report, "fail")[0] and str(config) in messages(report, "fail")[0]
