"""`smsgw setup --no-checks` (the file from the flags, for image building), the service step, and the
Raspberry Pi deploy files. The wizard's checks against a modem and a broker: tests/test_setup_wizard.py."""

from __future__ import annotations

import configparser
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.udev_rules import render

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "raspberrypi"


def smsgw(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SMSGW_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "appliance", *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=30)


def test_non_interactive_writes_a_config_that_loads(tmp_path):
    path = tmp_path / "etc" / "smsgw.toml"
    result = smsgw("setup", "--non-interactive", "--no-checks", "--config", str(path), "--port", "/dev/gsm/sim800-0",
                   "--pin", "0042", "--mqtt-host", "broker.lan", "--mqtt-port", "8883", "--mqtt-user", "gw",
                   "--mqtt-password", 'p"w\\d', "--country", "at", "--store", "data/smsgw.db",
                   "--modem-id", "north", "--profile", "sim800", "--base-topic", "farm/sms")
    assert result.returncode == 0, result.stderr
    assert f"wrote {path}" in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # it holds the PIN and the broker password
    cfg = load_config(path)
    (modem,) = cfg.modems
    assert (modem.id, modem.port, modem.profile, modem.pin) == ("north", "/dev/gsm/sim800-0", "sim800", "0042")
    assert cfg.mqtt is not None
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.username, cfg.mqtt.password, cfg.mqtt.base_topic) == (
        "broker.lan", 8883, "gw", 'p"w\\d', "farm/sms")
    assert cfg.numbers.default_country == "AT" and not cfg.numbers.allow_premium
    assert cfg.store.path == path.parent / "data" / "smsgw.db"
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_non_interactive_defaults(tmp_path):
    path = tmp_path / "smsgw.toml"
    assert smsgw("setup", "--non-interactive", "--no-checks", "--config", str(path), "--port", "socket://127.0.0.1:7000",
                 "--mqtt-host", "none").returncode == 0
    cfg = load_config(path)
    assert cfg.mqtt is None and cfg.store.path == Path("/var/lib/smsgw/smsgw.db")
    assert cfg.modems[0].pin is None and cfg.modems[0].profile == "auto" and cfg.numbers.default_country is None


def test_does_not_overwrite_without_force(tmp_path):
    path = tmp_path / "smsgw.toml"
    path.write_text("# mine\n")
    result = smsgw("setup", "--non-interactive", "--no-checks", "--config", str(path), "--port", "/dev/ttyUSB0")
    assert result.returncode == 2 and "smsgw setup: " in result.stderr and "exists" in result.stderr and path.read_text() == "# mine\n"
    assert smsgw("setup", "--non-interactive", "--no-checks", "--force", "--config", str(path),
                 "--port", "/dev/ttyUSB0", "--no-start").returncode == 0
    assert load_config(path).modems[0].port == "/dev/ttyUSB0"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--pin", "12"], "modems[0].pin: must be 4-8 digits"),
        (["--profile", "nokia"], "modems[0].profile: unknown profile 'nokia'"),
        (["--modem-id", "my modem"], "modems[0].id"),
        (["--mqtt-port", "0"], "mqtt.port: must be at least 1"),
    ],
)
def test_bad_flags_are_refused_and_nothing_is_written(tmp_path, flags, message):
    path = tmp_path / "smsgw.toml"
    result = smsgw("setup", "--non-interactive", "--no-checks", "--config", str(path), "--port", "/dev/ttyUSB0", *flags)
    assert result.returncode == 2
    assert f"{path}: {message}" in result.stderr
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_candidate_ports_one_per_device_stable_names_first(tmp_path):
    from drivers.locate import candidate_ports

    dev = tmp_path / "dev"
    (dev / "serial" / "by-id").mkdir(parents=True)
    for name in ("ttyUSB10", "ttyUSB2", "ttyACM0", "ttyS0"):
        (dev / name).touch()
    (dev / "serial" / "by-id" / "usb-SimTech_SIM7600-if02-port0").symlink_to(dev / "ttyUSB2")
    globs = [str(dev / "serial/by-id/*"), str(dev / "ttyUSB*"), str(dev / "ttyACM*")]
    assert candidate_ports(globs) == [str(dev / "serial/by-id/usb-SimTech_SIM7600-if02-port0"),
                                      str(dev / "ttyUSB10"), str(dev / "ttyACM0")]


def test_unknown_country_names_the_flag(tmp_path):
    result = smsgw("setup", "--non-interactive", "--no-checks", "--config", str(tmp_path / "c.toml"),
                   "--port", "/dev/ttyUSB0", "--country", "Atlantis")
    assert result.returncode == 2
    assert "smsgw setup: check failed: contacts: --country: unknown country 'Atlantis'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_no_checks_needs_a_port(tmp_path):
    result = smsgw("setup", "--non-interactive", "--no-checks", "--config", str(tmp_path / "c.toml"))
    assert result.returncode == 2 and "check failed: modem: --no-checks needs --port" in result.stderr


def test_service_step_without_systemd_says_what_to_run(tmp_path, monkeypatch):
    from appliance.wizard import service

    monkeypatch.setattr(service, "SYSTEMD_RUNTIME", tmp_path / "no-systemd")
    ok, message = service.start(Path("/etc/smsgw/smsgw.toml"))
    assert ok and "smsgw run --config /etc/smsgw/smsgw.toml" in message and "systemctl enable --now" in message


def test_service_step_enables_and_restarts_the_unit(tmp_path, monkeypatch):
    from appliance.wizard import service

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1" != restart ] || [ -z "$FAIL" ] || {{ echo "Job failed" >&2; exit 1; }}\n')
    fake.chmod(0o755)
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(service, "SYSTEMD_RUNTIME", tmp_path / "run")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", str(bin_dir))
    ok, message = service.start(Path("/etc/smsgw/smsgw.toml"))
    assert ok and "enabled and started" in message
    assert calls.read_text().splitlines() == ["enable smsgw.service", "restart smsgw.service"]
    monkeypatch.setenv("FAIL", "1")
    ok, message = service.start(Path("/etc/smsgw/smsgw.toml"))
    assert not ok and "`restart smsgw.service` failed: Job failed" in message and "journalctl -u smsgw" in message


# --- deploy/raspberrypi ---------------------------------------------------------------------------


def test_example_config_loads():
    cfg = load_config(DEPLOY / "smsgw.toml")
    assert cfg.store.path == Path("/var/lib/smsgw/smsgw.db")
    assert cfg.modems[0].port == "/dev/gsm/sim800-0" and cfg.modems[0].rate_per_minute == 6


def test_install_script_syntax():
    script = DEPLOY / "install.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_install_script_shellcheck():
    result = subprocess.run(["shellcheck", str(DEPLOY / "install.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_install_script_staged_twice(tmp_path):
    """--root stages the files; a second run keeps the config (idempotent)."""
    argv = ["bash", str(DEPLOY / "install.sh"), "--root", str(tmp_path), "--no-pip", "--python", sys.executable]
    first = subprocess.run([*argv, "--non-interactive", "--port", "/dev/gsm/ec25", "--country", "DE"],
                           capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    conf = tmp_path / "etc" / "smsgw" / "smsgw.toml"
    cfg = load_config(conf)
    assert cfg.modems[0].port == "/dev/gsm/ec25" and cfg.store.path == Path("/var/lib/smsgw/smsgw.db")
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    assert (tmp_path / "etc/systemd/system/smsgw.service").read_text() == (DEPLOY / "smsgw.service").read_text()
    assert (tmp_path / "etc/udev/rules.d/99-smsgw-gsm.rules").read_text() == render()
    assert (tmp_path / "var/lib/smsgw").is_dir()
    before = conf.read_text()
    second = subprocess.run([*argv, "--non-interactive", "--port", "/dev/ttyUSB0"], capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert "keeping" in second.stdout and conf.read_text() == before


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "smsgw.service")
    return parser


def test_unit_file_keys():
    u = unit()
    service = u["Service"]
    assert service["User"] == "smsgw"
    assert service["Restart"] == "always"
    assert service["StateDirectory"] == "smsgw"
    assert service["ExecStart"].startswith("/opt/smsgw/bin/smsgw run --config /etc/smsgw/smsgw.toml")
    assert service["KillSignal"] == "SIGTERM"
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "RestrictAddressFamilies",
                "CapabilityBoundingSet", "DevicePolicy", "SystemCallFilter"):
        assert key in service, key
    assert u["Install"]["WantedBy"] == "multi-user.target"
    assert "network-online.target" in u["Unit"]["After"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_file_verifies():
    result = subprocess.run(["systemd-analyze", "verify", str(DEPLOY / "smsgw.service")],
                            capture_output=True, text=True, timeout=30)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line.strip() and "is not executable" not in line and "/opt/smsgw/bin/smsgw" not in line]
    assert problems == []


def test_udev_rules_make_gsm_symlinks():
    rules = render()
    assert rules.startswith("# Generated by `smsgw udev-rules`")
    active = [line for line in rules.splitlines() if line.strip() and not line.startswith("#")]
    symlinks = [line for line in active if "SYMLINK+=" in line]
    assert symlinks and all('SYMLINK+="gsm/' in line for line in symlinks)
    assert all("ENV{ID_VENDOR_ID}==" in line and "ENV{ID_MODEL_ID}==" in line for line in symlinks)
    assert 'ENV{ID_VENDOR_ID}=="2c7c", ENV{ID_MODEL_ID}=="0125", ENV{ID_USB_INTERFACE_NUM}=="02"' in rules
    assert 'LABEL="smsgw_gsm_end"' in rules
