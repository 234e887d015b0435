"""`smsgw setup` driven as an installer drives it: in a pty (pexpect), against `smsgw simulate --pin`
and a real mosquitto; and `--non-interactive`, whose failed checks exit 2 naming the check.

The simulator counts the AT+CPIN="..." it receives and logs every SMS that leaves for a number
outside the simulation in DIR/network.jsonl (docs/simulator.md); `smsgw simulate inject` plays
the installer's phone answering the test SMS.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
from daemon_helpers import ROOT, DaemonProcess, daemon_env
from test_simulate_cli import Running, held_by, modem_status, running_simulator
from waiting import async_wait_until, wait_until

from appliance.config import load_config
from appliance.store import Store

pytest_plugins = ["mosquitto"]

PHONE = "+4915112345678"  # the installer's phone: outside the simulation, its SMS go to network.jsonl


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Running]:
    with running_simulator(tmp_path / "sim", "--profile", "sim7600", "--pin", "2580") as running:
        yield running


def sim_modem(sim: Running) -> dict[str, Any]:
    return modem_status(sim.directory)


def sent(sim: Running) -> list[dict[str, Any]]:
    log = sim.directory / "network.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def setup(tmp_path: Path, sim: Running, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", "setup", "--non-interactive",
                           "--config", str(tmp_path / "etc" / "smsgw.toml"), "--store", str(tmp_path / "state" / "smsgw.db"),
                           "--scan", str(sim.directory / "modem*"), "--no-start", *args],
                          cwd=ROOT, env=daemon_env(), capture_output=True, text=True, timeout=60)


def test_full_interactive_setup_in_a_pty(tmp_path: Path, sim: Running, broker_factory: Any) -> None:
    broker = broker_factory(users={"smsgw": "s3cret"})
    config = tmp_path / "etc" / "smsgw.toml"
    started = time.monotonic()
    child = pexpect.spawn(sys.executable, ["-m", "appliance", "setup", "--config", str(config),
                                           "--store", str(tmp_path / "state" / "smsgw.db"),
                                           "--scan", str(sim.directory / "modem*"), "--no-start"],
                          cwd=str(ROOT), env=daemon_env(), encoding="utf-8", timeout=20)
    transcript: list[str] = []
    child.logfile_read = _Collect(transcript)
    try:
        child.expect_exact(f"probing {sim.directory}/modem0 … SIMCOM INCORPORATED SIMCOM_SIM7600E-H, IMEI ")
        child.expect_exact("SIM: PIN required, 3 attempts left")
        # a wrong PIN first: entered once, the SIM says what is left, the wizard asks again
        child.expect_exact("SIM PIN (PIN required, 3 attempts left; not shown): ")
        child.sendline("9876")
        child.expect_exact("not accepted: ")
        child.expect_exact("SIM: PIN required, 2 attempts left")
        child.expect_exact("SIM PIN (PIN required, 2 attempts left; not shown): ")
        child.sendline("2580")
        child.expect_exact("accepted, SIM ready")
        # the broker: wrong password first, named as such, then the right one
        child.expect_exact("MQTT broker host ('none' for no MQTT) [127.0.0.1]: ")
        child.sendline("")
        child.expect_exact("Connect over TLS? (y/N): ")
        child.sendline("")
        child.expect_exact("MQTT broker port [1883]: ")
        child.sendline(str(broker.port))
        child.expect_exact("MQTT username (blank: none): ")
        child.sendline("smsgw")
        child.expect_exact("MQTT password (not shown): ")
        child.sendline("wrong")
        child.expect_exact(f"failed (credentials): 127.0.0.1:{broker.port} refused the connection")
        child.expect_exact("Try other broker settings? (Y/n): ")
        child.sendline("y")
        child.expect_exact("MQTT broker host ('none' for no MQTT) [127.0.0.1]: ")
        child.sendline("")
        child.expect_exact("Connect over TLS? (y/N): ")
        child.sendline("n")
        child.expect_exact("MQTT broker port [1883]: ")
        child.sendline(str(broker.port))
        child.expect_exact("MQTT username (blank: none): ")
        child.sendline("smsgw")
        child.expect_exact("MQTT password (not shown): ")
        child.sendline("s3cret")
        child.expect_exact(f"broker 127.0.0.1:{broker.port} accepted MQTT 5")
        # contacts: a national number, in the default country
        child.expect_exact("Default country for national numbers, e.g. DE (blank for none): ")
        child.sendline("DE")
        child.expect_exact("Your mobile number, for a test SMS (blank: skip): ")
        child.sendline("0151 12345678")
        child.expect_exact(f"Send a test SMS to {PHONE} now? (Y/n): ")
        child.sendline("")
        child.expect_exact(f"test SMS sent to {PHONE}")
        child.expect_exact(f"for your reply from {PHONE} (press Enter to skip)")
        # the test SMS left through the simulated network; the installer's phone answers it
        wait_until(lambda: [r for r in sent(sim) if r["to"] == PHONE], 10, what="the test SMS on the network")
        (test_sms,) = sent(sim)
        assert "test SMS of smsgw setup" in test_sms["text"]
        injected = subprocess.run([sys.executable, "-m", "appliance", "simulate", "inject", "--dir", str(sim.directory),
                                   "--modem", "0", "--from", PHONE, "--text", "Got it 👍"],
                                  cwd=ROOT, capture_output=True, text=True, timeout=20)
        assert injected.returncode == 0, injected.stderr
        child.expect_exact(f"reply received from {PHONE}: 'Got it 👍': sending and receiving work")
        child.expect_exact(f"wrote {config}")
        child.expect_exact(f"{config}: OK")
        child.expect_exact("not starting the service (--no-start)")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    elapsed = time.monotonic() - started
    print(f"interactive setup, PIN to reply, with scripted answers: {elapsed:.1f}s")
    assert child.exitstatus == 0, "".join(transcript)
    text = "".join(transcript)
    assert "2580" not in text and "s3cret" not in text and "9876" not in text  # no echo of secrets
    status = sim_modem(sim)
    assert status["pin_entries"] == 2 and not status["pin_locked"]

    cfg = load_config(config)
    (modem,) = cfg.modems
    assert (modem.port, modem.imei, modem.pin) == ("auto", status["imei"], "2580")
    assert cfg.modems_auto.globs == (str(sim.directory / "modem*"),)
    assert cfg.mqtt is not None and (cfg.mqtt.port, cfg.mqtt.username, cfg.mqtt.password) == (
        broker.port, "smsgw", "s3cret")
    assert cfg.raw["contacts"] == {"installer": PHONE} and cfg.numbers.default_country == "DE"

    # the file runs: the daemon finds the modem by its IMEI and takes the reply into the inbox
    assert asyncio.run(run_daemon_until_inbox(config, tmp_path)) == ["Got it 👍"]


async def run_daemon_until_inbox(config: Path, tmp_path: Path) -> list[str]:
    def replies() -> list[str]:
        with Store(tmp_path / "state" / "smsgw.db") as store:
            return [str(row["text"]) for row in store.inbox(10)]

    daemon = await DaemonProcess(config, tmp_path / "daemon.log").start()
    try:
        await daemon.wait_running()
        await async_wait_until(lambda: (tmp_path / "state" / "smsgw.db").exists() and replies(), timeout=20,
                               what="the reply in the inbox")
        return replies()
    finally:
        assert await daemon.stop() == 0


class _Collect:
    def __init__(self, into: list[str]) -> None:
        self.into = into

    def write(self, data: str) -> None:
        self.into.append(data)

    def flush(self) -> None:
        pass


def test_enter_skips_the_wait_for_the_reply(tmp_path: Path, sim: Running) -> None:
    child = pexpect.spawn(sys.executable, ["-m", "appliance", "setup", "--config", str(tmp_path / "c.toml"),
                                           "--store", str(tmp_path / "smsgw.db"), "--pin", "2580",
                                           "--mqtt-host", "none", "--country", "DE", "--test-sms", PHONE,
                                           "--scan", str(sim.directory / "modem*"), "--no-start"],
                          cwd=str(ROOT), env=daemon_env(), encoding="utf-8", timeout=20)
    try:
        child.expect_exact("accepted, SIM ready")
        child.expect_exact("Your mobile number, for a test SMS (blank: skip): ")
        child.sendline("")
        child.expect_exact("(press Enter to skip)")
        child.sendline("")
        child.expect_exact("not waiting for the reply (skipped)")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert [r["to"] for r in sent(sim)] == [PHONE]


# --- --non-interactive: the same checks, exit 2 naming the failed one --------------------------


def test_non_interactive_runs_every_check_and_writes(tmp_path: Path, sim: Running, mosquitto: Any) -> None:
    started = time.monotonic()
    result = setup(tmp_path, sim, "--pin", "2580", "--mqtt-port", str(mosquitto.port), "--country", "DE",
                   "--contact", "ops=0151 7654321", "--test-sms", "ops")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    print(f"non-interactive setup with PIN, broker and test SMS: {elapsed:.1f}s")
    out = result.stdout
    assert out.index("probing") < out.index("accepted, SIM ready") < out.index("accepted MQTT") \
        < out.index("test SMS sent") < out.index("wrote") < out.index(": OK")
    assert [r["to"] for r in sent(sim)] == ["+491517654321"]
    cfg = load_config(tmp_path / "etc" / "smsgw.toml")
    assert cfg.modems[0].imei == sim_modem(sim)["imei"] and cfg.raw["contacts"] == {"ops": "+491517654321"}
    assert oct(os.stat(tmp_path / "etc" / "smsgw.toml").st_mode & 0o777) == "0o640"


def test_non_interactive_tls_broker(tmp_path: Path, sim: Running, broker_factory: Any, tls_certs: Any) -> None:
    broker = broker_factory(tls=True)
    without_ca = setup(tmp_path, sim, "--pin", "2580", "--mqtt-port", str(broker.tls_port), "--mqtt-tls")
    assert without_ca.returncode == 2
    assert "smsgw setup: check failed: broker: connect:" in without_ca.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in without_ca.stderr
    with_ca = setup(tmp_path, sim, "--pin", "2580", "--mqtt-port", str(broker.tls_port), "--mqtt-ca",
                    str(tls_certs.ca))
    assert with_ca.returncode == 0, with_ca.stderr
    assert "over TLS" in with_ca.stdout
    cfg = load_config(tmp_path / "etc" / "smsgw.toml")
    assert cfg.mqtt is not None and cfg.mqtt.tls is not None and cfg.mqtt.tls.ca == tls_certs.ca


@pytest.mark.parametrize(
    ("flags", "check", "detail"),
    [
        (["--mqtt-host", "none"], "pin", "the SIM wants its PIN (PIN required, 3 attempts left): give --pin"),
        (["--pin", "0000", "--mqtt-host", "none"], "pin", "SIM: PIN required, 2 attempts left"),
        (["--pin", "12", "--mqtt-host", "none"], "pin", "--pin: the PIN is 4-8 digits"),
        (["--pin", "2580", "--mqtt-port", "9"], "broker", "reach: broker 127.0.0.1:9 is not reachable"),
        (["--pin", "2580", "--mqtt-host", "none", "--test-sms", PHONE, "--wait-reply", "0.5"], "reply",
         f"no reply from {PHONE} within 0.5s"),
        (["--pin", "2580", "--mqtt-host", "none", "--test-sms", "12ab"], "test-sms", "--test-sms:"),
        (["--pin", "2580", "--mqtt-host", "none", "--contact", "ops"], "contacts", "write NAME=NUMBER"),
    ],
)
def test_non_interactive_failures_exit_2_naming_the_check(tmp_path: Path, sim: Running, flags: list[str],
                                                          check: str, detail: str) -> None:
    result = setup(tmp_path, sim, *flags)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"smsgw setup: check failed: {check}: " in result.stderr and detail in result.stderr, result.stderr
    assert not (tmp_path / "etc" / "smsgw.toml").exists()
    # a PIN of the right form is entered once, a check failing before the PIN step enters none
    assert sim_modem(sim)["pin_entries"] == (1 if {"0000", "2580"} & set(flags) else 0)


def test_non_interactive_without_a_modem(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "appliance", "setup", "--non-interactive", "--config", str(tmp_path / "c.toml")]
    nothing = subprocess.run([*base, "--scan", str(tmp_path / "ttyUSB*")], cwd=ROOT, capture_output=True, text=True,
                             timeout=30)
    assert nothing.returncode == 2 and "check failed: detect: no serial ports found" in nothing.stderr
    missing = subprocess.run([*base, "--port", "/dev/nonexistent"], cwd=ROOT, capture_output=True, text=True,
                             timeout=30)
    assert missing.returncode == 2
    assert "probing /dev/nonexistent … cannot open" in missing.stdout
    assert "check failed: detect: no modem answered on /dev/nonexistent" in missing.stderr
    assert not (tmp_path / "c.toml").exists()


def test_an_existing_config_is_kept_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text("# mine\n")
    result = subprocess.run([sys.executable, "-m", "appliance", "setup", "--config", str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "exists; not overwriting it (use --force)" in result.stderr
    assert path.read_text() == "# mine\n"


def test_a_port_held_by_modem_manager_is_named_not_probed(tmp_path: Path, sim: Running) -> None:
    port = str(sim.directory / "modem0")
    with held_by(port, "ModemManager", tmp_path) as holder:
        result = setup(tmp_path, sim, "--pin", "2580")
    assert result.returncode == 2
    assert f"probing {port} … held by ModemManager (pid {holder.pid}): " in result.stdout
    assert "ID_MM_DEVICE_IGNORE" in result.stdout and "systemctl disable --now ModemManager" in result.stdout
    assert "smsgw setup: check failed: detect: no modem answered" in result.stderr
    assert sim_modem(sim)["pin_entries"] == 0


def test_the_modem_plugged_in_while_the_wizard_waits(tmp_path: Path, sim: Running) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    child = pexpect.spawn(sys.executable, ["-m", "appliance", "setup", "--config", str(tmp_path / "c.toml"),
                                           "--store", str(tmp_path / "smsgw.db"), "--scan", str(dev / "ttyUSB*"),
                                           "--mqtt-host", "none", "--no-start"],
                          cwd=str(ROOT), env=daemon_env(), encoding="utf-8", timeout=20)
    try:
        child.expect_exact("no serial ports found")
        child.expect_exact("Look again (plug the modem in, wait for it)? (Y/n): ")
        (dev / "ttyUSB2").symlink_to(sim.directory / "modem0")  # the stick is plugged in
        child.sendline("")
        child.expect_exact(f"probing {dev}/ttyUSB2 … SIMCOM INCORPORATED SIMCOM_SIM7600E-H")
        child.expect_exact("SIM PIN (PIN required, 3 attempts left; not shown): ")
        child.sendline("2580")
        child.expect_exact("accepted, SIM ready")
        child.expect_exact("Default country")
        child.sendline("")
        child.expect_exact("Your mobile number, for a test SMS (blank: skip): ")
        child.sendline("")
        child.expect_exact(f"wrote {tmp_path / 'c.toml'}")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert load_config(tmp_path / "c.toml").modems_auto.globs == (str(dev / "ttyUSB*"),)


def test_a_sim_unlocked_by_an_earlier_run_still_gets_its_pin_written(tmp_path: Path, sim: Running) -> None:
    # the first run enters the PIN, then fails at the broker: the SIM stays unlocked until the modem restarts
    first = setup(tmp_path, sim, "--pin", "2580", "--mqtt-port", "9")
    assert first.returncode == 2 and "accepted, SIM ready" in first.stdout
    # AT+CLCK="SC",2 (27.007 7.4) says the PIN lock is on: without --pin the file would not survive a restart
    again = setup(tmp_path, sim, "--mqtt-host", "none")
    assert again.returncode == 2
    assert "SIM: ready (unlocked since power-up; PIN lock on)" in again.stdout
    assert "check failed: pin: the SIM's PIN lock is on: give --pin" in again.stderr
    written = setup(tmp_path, sim, "--mqtt-host", "none", "--pin", "2580")
    assert written.returncode == 0, written.stderr
    assert "written unchecked" in written.stdout
    assert load_config(tmp_path / "etc" / "smsgw.toml").modems[0].pin == "2580"
    assert sim_modem(sim)["pin_entries"] == 1
