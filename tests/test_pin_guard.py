"""A wrong SIM PIN is entered once, ever: not again by a restarted daemon, nor by another process.

The simulator runs as its own process (`smsgw simulate`) and counts every AT+CPIN="..." it receives;
the daemon (`smsgw run`) and other processes opening the modem as it does (``unlock`` below) share
the store's directory, where the rejection is recorded. `smsgw doctor` enters no PIN at all.
Three wrong PINs would lock the simulated SIM behind its PUK.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import ROOT, DaemonProcess, daemon_env, write_config
from test_simulate_cli import Running
from waiting import async_wait_until, wait_until

from drivers.errors import PinError
from drivers.modem import PIN_REJECTIONS_FILE, PinRejections, sim_key
from drivers.profiles import ProfileError, load_profile_file
from drivers.simulator.control import request

pytestmark = pytest.mark.timeout(90)


def smsgw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args], cwd=ROOT, env=daemon_env(),
                          capture_output=True, text=True, timeout=60)


def sim_status(directory: Path) -> dict[str, Any]:
    reply = request(directory, {"action": "status"})
    assert reply["ok"], reply
    modem: dict[str, Any] = reply["modems"][0]
    return modem


def start_simulator(directory: Path, *args: str) -> Running:
    sim = Running(directory, *args)
    wait_until(lambda: sim.lines or sim.process.poll() is not None, 20, what="the simulator's ready line")
    assert sim.lines, sim.process.stderr.read() if sim.process.stderr else ""
    return sim


def configure(directory: Path, port: str, pin: str, profile: str = "generic") -> Path:
    path = write_config(directory, [port])
    text = path.read_text().replace('profile = "generic"', f'profile = "{profile}"\npin = "{pin}"', 1)
    path.write_text(text)
    return path


def doctor(config: Path) -> subprocess.CompletedProcess[str]:
    return smsgw("doctor", "--config", str(config), "--timeout", "2")


UNLOCK = """
import asyncio, sys
from appliance.config import load_config
from drivers.errors import ModemError
from drivers.modem import Modem

config = load_config(sys.argv[1])
mc = config.modems[0]

async def main():
    modem = Modem(mc.port, profile=mc.profile, pin=mc.pin, modem_id=mc.id, state_dir=config.store.path.parent,
                  timeouts={"command": 2, "sync": 0.5})
    try:
        await modem.open()
    except ModemError as exc:
        print(exc)
        return 1
    await modem.close()
    print("SIM ready")
    return 0

sys.exit(asyncio.run(main()))
"""


def unlock(config: Path) -> subprocess.CompletedProcess[str]:
    """Open the configured modem in a new process, as the daemon does: the PIN guard decides."""
    return subprocess.run([sys.executable, "-c", UNLOCK, str(config)], cwd=ROOT, env=daemon_env(),
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Running]:
    sim = start_simulator(tmp_path / "sim")
    try:
        yield sim
    finally:
        sim.stop()


async def test_a_wrong_pin_is_sent_once_across_daemon_restarts_and_doctor(tmp_path: Path, simulator: Running) -> None:
    sim_dir = simulator.directory
    port = str(sim_dir / "modem0")
    # The reviewer's set-up: the SIM wants its PIN (the simulator's is 1234), the config has 0000.
    assert request(sim_dir, {"action": "fault", "modem": 0, "kind": "pin-required"})["ok"]
    config = configure(tmp_path / "gw", port, "0000")
    rejections = tmp_path / "gw" / PIN_REJECTIONS_FILE

    first = await DaemonProcess(config).start()
    try:
        await first.wait_running()
        await async_wait_until(lambda: "rejected the PIN" in first.log_text(), 15, what="the rejection")
        # the supervisor reopens the modem: every later round refuses without sending the PIN
        await async_wait_until(lambda: "not trying it again" in first.log_text(), 15, what="a refused reopen")
        assert sim_status(sim_dir)["pin_entries"] == 1
    finally:
        assert await first.stop() == 0

    text = rejections.read_text()
    assert '"0000"' not in text and "CPIN" not in text  # a salted hash, never the PIN
    assert 'CPIN="0000"' not in first.log_text()
    entries = json.loads(text)["rejections"]
    assert list(entries) == [f"iccid:{sim_status(sim_dir)['iccid']}"]
    assert entries[next(iter(entries))]["modem_id"] == "sim0"

    # systemd restarts the daemon: the new process does not send the PIN either
    second = await DaemonProcess(config, tmp_path / "second.log").start()
    try:
        await second.wait_running()
        await async_wait_until(lambda: "not trying it again" in second.log_text(), 15, what="the refusal")
        assert "AT+CPIN=" not in second.log_text()
    finally:
        assert await second.stop() == 0
    assert sim_status(sim_dir)["pin_entries"] == 1

    # nor does `smsgw doctor`
    checked = doctor(config)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "rejected before and is not entered again" in checked.stdout and "smsgw pin clear" in checked.stdout
    status = sim_status(sim_dir)
    assert status["pin_entries"] == 1 and status["pin_attempts"] == 2 and status["pin_locked"]

    listed = smsgw("pin", "list", "--config", str(config))
    assert listed.returncode == 0 and "sim0: iccid:" in listed.stdout and "1 rejected PIN(s)" in listed.stdout

    # the installer fixes the PIN and clears the record: the right PIN unlocks the SIM
    unknown = smsgw("pin", "clear", "--config", str(config), "nosuch")
    assert unknown.returncode == 2 and "no modem 'nosuch'" in unknown.stderr and "sim0" in unknown.stderr
    config = configure(tmp_path / "gw", port, "1234")
    cleared = smsgw("pin", "clear", "--config", str(config), "sim0")
    assert cleared.returncode == 0 and "cleared 1 PIN rejection" in cleared.stdout, cleared.stderr
    third = await DaemonProcess(config, tmp_path / "third.log").start()
    try:
        await third.wait_running()
        await async_wait_until(lambda: not sim_status(sim_dir)["pin_locked"], 15, what="the SIM unlocked")
    finally:
        assert await third.stop() == 0
    status = sim_status(sim_dir)
    assert status["pin_entries"] == 2 and status["pin_attempts"] == 3


def test_a_different_pin_is_tried_once_and_none_with_fewer_than_two_attempts_left(tmp_path: Path) -> None:
    # SIM800: detected by `auto`, attempts left read with AT+SPIC while the SIM is locked
    sim = start_simulator(tmp_path / "sim", "--profile", "sim800", "--pin", "1234")
    try:
        port = str(sim.directory / "modem0")
        gw = tmp_path / "gw"
        first = unlock(configure(gw, port, "1111", profile="auto"))
        assert first.returncode == 1 and "rejected the PIN" in first.stdout, first.stdout
        assert sim_status(sim.directory)["pin_entries"] == 1
        # the same PIN: refused without asking the SIM
        again = unlock(configure(gw, port, "1111", profile="auto"))
        assert "not trying it again" in again.stdout
        assert sim_status(sim.directory)["pin_entries"] == 1
        # a different PIN is tried once (2 attempts were left) and rejected too
        other = unlock(configure(gw, port, "2222", profile="auto"))
        assert "rejected the PIN" in other.stdout
        assert sim_status(sim.directory)["pin_attempts"] == 1
        # now only one attempt is left: even the right PIN is not entered
        right = unlock(configure(gw, port, "1234", profile="auto"))
        assert right.returncode == 1 and "only 1 PIN attempt(s) left" in right.stdout, right.stdout
        status = sim_status(sim.directory)
        assert status["pin_entries"] == 2 and status["pin_attempts"] == 1 and status["pin_locked"]
        assert len(json.loads((gw / PIN_REJECTIONS_FILE).read_text())["rejections"]) == 1
        # clearing every record does not change that: the SIM's own counter decides
        cleared = smsgw("pin", "clear", "--config", str(gw / "smsgw.toml"))
        assert cleared.returncode == 0 and "cleared 1" in cleared.stdout
        assert "only 1 PIN attempt(s) left" in unlock(gw / "smsgw.toml").stdout
        assert sim_status(sim.directory)["pin_entries"] == 2
    finally:
        sim.stop()


def test_the_generic_profile_on_a_modem_without_the_attempts_command_keeps_the_guard(tmp_path: Path) -> None:
    # SIM800 modem driven with the generic profile: AT+CPINR answers ERROR; the guard alone decides
    sim = start_simulator(tmp_path / "sim", "--profile", "sim800", "--pin", "1234")
    try:
        config = configure(tmp_path / "gw", str(sim.directory / "modem0"), "9999")
        assert "rejected the PIN" in unlock(config).stdout
        assert "not trying it again" in unlock(config).stdout
        assert sim_status(sim.directory)["pin_entries"] == 1
        right = unlock(configure(tmp_path / "gw", str(sim.directory / "modem0"), "1234"))
        assert right.returncode == 0 and "SIM ready" in right.stdout, right.stdout
        assert not sim_status(sim.directory)["pin_locked"]
        # the SIM was seen READY: its record is gone by itself
        assert json.loads((tmp_path / "gw" / PIN_REJECTIONS_FILE).read_text())["rejections"] == {}
    finally:
        sim.stop()


# --- the rejection file -----------------------------------------------------------------------


def test_rejection_file_holds_salted_hashes_written_atomically(tmp_path: Path) -> None:
    guard = PinRejections(tmp_path)
    key = sim_key("/dev/ttyUSB9", "89490200000000000005")
    assert key == "iccid:89490200000000000005"
    assert sim_key("/dev/null", "") == "port:/dev/null"
    assert not guard.is_rejected(key, "1234")
    guard.remember(key, "1234", modem_id="m", port="/dev/ttyUSB9", iccid="89490200000000000005", reason="+CME ERROR: 16")
    assert guard.is_rejected(key, "1234") and not guard.is_rejected(key, "4321")
    assert not guard.is_rejected(sim_key("/dev/ttyUSB9", ""), "1234")
    text = guard.path.read_text()
    assert "1234" not in text
    other = PinRejections(tmp_path / "other")
    (tmp_path / "other").mkdir()
    other.remember(key, "1234", modem_id="m", port="p", iccid="", reason="r")
    hashes = [json.loads(p.read_text())["rejections"][key]["hashes"] for p in (guard.path, other.path)]
    assert hashes[0] != hashes[1]  # per-file salt
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [PIN_REJECTIONS_FILE, PIN_REJECTIONS_FILE + ".lock"]
    assert guard.forget([key]) == [key] and not guard.is_rejected(key, "1234")


def test_an_unreadable_rejection_file_blocks_every_pin_until_cleared(tmp_path: Path) -> None:
    guard = PinRejections(tmp_path)
    guard.path.write_text("{not json")
    with pytest.raises(PinError, match="not valid JSON.*smsgw pin clear"):
        guard.is_rejected("port:/dev/x", "1234")
    guard.path.write_text('{"salt": 3}')
    with pytest.raises(PinError, match="not a PIN rejection file"):
        guard.entries()
    assert guard.forget() == ["(unreadable file reset)"]
    assert guard.entries() == {}


def test_profile_pin_attempts_keys_are_checked(tmp_path: Path) -> None:
    base = (ROOT / "firmware_cfg" / "generic.toml").read_text()
    cases = {
        'pin_attempts_pattern = "\\\\+CPINR: (\\\\d+),(\\\\d+)"': "exactly one group",
        'pin_attempts_pattern = "(["': "bad regular expression",
        'pin_attempts_command = "CPINR"': "must start with AT",
    }
    for line, reason in cases.items():
        key = line.split(" = ")[0]
        text = "\n".join(line if row.startswith(key + " =") else row for row in base.splitlines())
        path = tmp_path / "bad.toml"
        path.write_text(text)
        with pytest.raises(ProfileError, match=reason):
            load_profile_file(path)


# --- every profile's attempts-left command, in process --------------------------------------

@pytest.mark.parametrize("profile_name", ["generic", "sim800", "sim7600", "ec25", "e3372"])
async def test_each_profile_reads_the_attempts_left_and_refuses_below_two(tmp_path: Path, profile_name: str) -> None:
    from modem_fixtures import TEST_TIMEOUTS

    from drivers.modem import Modem, forget_pin_rejection
    from drivers.simulator import Simulator

    sim = Simulator(tmp_path / "sim", modems=1, profile=profile_name, pin="1234", control=False)
    await sim.start()
    state = tmp_path / "state"
    state.mkdir()
    port = sim.ports[0]
    try:
        for wrong in ("1111", "2222"):  # two different wrong PINs: each tried once
            modem = Modem(port, profile=profile_name, pin=wrong, timeouts=TEST_TIMEOUTS, state_dir=state)
            with pytest.raises(PinError, match="rejected the PIN"):
                await modem.open()
            forget_pin_rejection(port)  # as if in another process
        modem = Modem(port, profile=profile_name, pin="1234", timeouts=TEST_TIMEOUTS, state_dir=state)
        with pytest.raises(PinError, match=r"only 1 PIN attempt\(s\) left"):
            await modem.open()
        assert sim.modems[0].pin_entries == 2 and sim.modems[0].pin_locked
        assert list(PinRejections(state).entries()) == [f"iccid:{sim.modems[0].iccid}"]
    finally:
        forget_pin_rejection(port)
        await sim.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as another user")
def test_run_as_root_the_files_stay_the_service_users(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 4321, 4321)
    guard = PinRejections(state)
    guard.remember("port:/dev/x", "1234", modem_id="m", port="/dev/x", iccid="", reason="ERROR")
    assert {p.name: p.stat().st_uid for p in state.iterdir()} == {PIN_REJECTIONS_FILE: 4321,
                                                                 PIN_REJECTIONS_FILE + ".lock": 4321}


def test_a_missing_state_directory_is_created_on_the_first_rejection(tmp_path: Path) -> None:
    guard = PinRejections(tmp_path / "new" / "dir")
    assert guard.entries() == {} and guard.forget() == []
    guard.remember("port:/dev/x", "1234", modem_id="m", port="/dev/x", iccid="", reason="ERROR")
    assert guard.is_rejected("port:/dev/x", "1234")
