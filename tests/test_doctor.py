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
from test_simulate_cli import Running, held_by, modem_status, running_simulator
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
    with running_simulator(tmp_path / "sim", "--modems", "1", "--profile", "sim800") as sim:
        yield sim


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


# --- doctor tells the truth and touches nothing ------------------------------------------------


@pytest.fixture
def pin_simulator(tmp_path: Path) -> Iterator[Running]:
    with running_simulator(tmp_path / "sim", "--modems", "1", "--profile", "sim7600", "--pin", "1234") as sim:
        yield sim


def sim_status(sim: Running) -> dict[str, Any]:
    return modem_status(sim.directory)


def files_under(directory: Path) -> set[Path]:
    return {p for p in directory.rglob("*") if "sim" not in p.relative_to(directory).parts[:1]}


def test_doctor_enters_no_pin_reports_attempts_and_creates_no_file(tmp_path: Path, pin_simulator: Running) -> None:
    port = str(pin_simulator.directory / "modem0")
    config = tmp_path / "smsgw.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "state" / "smsgw.db"}"\n\n[[modems]]\nid = "sim0"\n'
                      f'port = "{port}"\npin = "0000"\n')  # a wrong PIN: entering it would cost an attempt
    before = files_under(tmp_path)
    status, report = doctor(config)
    assert status == 1  # the store directory is missing
    sim = [f for f in report["findings"] if f["message"].startswith("SIM:")]
    assert [f["message"] for f in sim] == [
        "SIM: PIN required, 3 attempts left; the daemon enters the configured PIN when it starts (doctor does not)"]
    assert sim[0]["status"] == "warn" and sim[0]["data"] == {"state": "SIM PIN", "pin_attempts": 3}
    assert "SIMCOM" in "\n".join(messages(report)) and "ICCID 8949" in "\n".join(messages(report))
    # the simulator's counter: no AT+CPIN="..." reached the SIM, all three attempts are left
    assert (sim_status(pin_simulator)["pin_entries"], sim_status(pin_simulator)["pin_attempts"]) == (0, 3)
    assert files_under(tmp_path) == before  # no state directory, no pin-rejections.json

    # `smsgw pin list` shows the same, and enters nothing either
    result = subprocess.run([sys.executable, "-m", "appliance", "pin", "list", "--config", str(config)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"sim0: {port}: SIM: PIN required, 3 attempts left (asked the modem)" in result.stdout
    assert sim_status(pin_simulator)["pin_entries"] == 0


def test_doctor_without_a_pin_for_a_locked_sim_fails_with_the_fix(tmp_path: Path, pin_simulator: Running) -> None:
    status, report = doctor(write(tmp_path, str(pin_simulator.directory / "modem0")))
    assert status == 1
    (finding,) = [f for f in report["findings"] if f["message"].startswith("SIM:")]
    assert finding["status"] == "fail" and "[[modems]].pin" in finding["hint"]
    assert sim_status(pin_simulator)["pin_entries"] == 0


def test_port_held_by_modem_manager_is_a_failure_with_the_fix(tmp_path: Path, simulator: Running) -> None:
    port = str(simulator.directory / "modem0")
    with held_by(port, "ModemManager", tmp_path) as holder:
        status, report = doctor(write(tmp_path, port))
    assert status == 1
    (finding,) = [f for f in report["findings"] if "ModemManager" in f["message"]]
    assert finding["status"] == "fail"
    assert f"held by ModemManager (pid {holder.pid})" in finding["message"]
    assert "ID_MM_DEVICE_IGNORE" in finding["hint"] and "systemctl disable --now ModemManager" in finding["hint"]
    assert "IMEI" not in "\n".join(messages(report))  # not probed


async def test_port_held_by_our_daemon_is_ok(tmp_path: Path, simulator: Running) -> None:
    from daemon_helpers import DaemonProcess

    port = str(simulator.directory / "modem0")
    config = write(tmp_path, port)
    daemon = await DaemonProcess(config).start()
    try:
        await daemon.wait_running()
        from appliance.store import Store

        def online() -> bool:
            with Store(tmp_path / "smsgw.db") as store:
                return (store.state_get("modem", "sim0") or {}).get("state") == "online"

        wait_until(online, 20, what="the daemon's modem online")
        assert daemon.proc is not None
        status, report = doctor(config)
    finally:
        await daemon.stop()
    assert status == 0, report
    text = "\n".join(messages(report, "ok"))
    assert f"port {port}: ok, in use by smsgw (pid {daemon.proc.pid})" in text
    assert "last state recorded by the daemon: online, SIM: ready" in text


def test_auto_port_is_found_by_imei_and_checked(tmp_path: Path, pin_simulator: Running) -> None:
    imei = sim_status(pin_simulator)["imei"]
    config = tmp_path / "smsgw.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "smsgw.db"}"\n\n[modems_auto]\nglobs = ["{pin_simulator.directory}/modem*"]\n\n'
                      f'[[modems]]\nid = "sim0"\nport = "auto"\nimei = "{imei}"\niccid = "89490200000000099999"\npin = "1234"\n')
    status, report = doctor(config)
    assert status == 1
    text = "\n".join(messages(report))
    assert f"port auto: the modem with IMEI {imei} is on {pin_simulator.directory}/modem0" in text
    assert "iccid 8949020000000000000" in "\n".join(messages(report, "fail"))  # another SIM than configured
    result = subprocess.run([sys.executable, "-m", "appliance", "pin", "list", "--config", str(config)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert f"sim0: {pin_simulator.directory}/modem0: SIM: PIN required, 3 attempts left" in result.stdout
    assert sim_status(pin_simulator)["pin_entries"] == 0

    config.write_text(config.read_text().replace(imei, "354861000000999"))
    status, report = doctor(config)
    assert status == 1
    assert "port auto: no free port has the modem with IMEI 354861000000999" in messages(report, "fail")


def test_queued_messages_are_counted(tmp_path: Path) -> None:
    """The store check reads the outbox's depth per state from the file (read-only) and names the
    messages still waiting to be sent."""
    from appliance.store import OutboundRequest, Store

    with Store(tmp_path / "smsgw.db") as store:
        store.enqueue([OutboundRequest("+4917100000001", f"alert {n}", "test") for n in range(3)])
    config = tmp_path / "smsgw.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "smsgw.db"}"\n')
    _status, report = doctor(config, "--no-modems")
    store_findings = [f for f in report["findings"] if f["area"] == "store"]
    assert any(f["data"].get("queue") == {"queued": 3} for f in store_findings), store_findings
    assert "3 message(s) waiting to be sent" in messages(report)
