"""gammu and gammu-smsd, unmodified, against the pty modem simulator (docs/third-party-clients.md)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from third_party_fixtures import (
    CLIENT_TIMEOUT,
    SimulatorProcess,
    require,
    run_daemon,
    run_simulator,
    tail,
)
from waiting import wait_until

RECIPIENT = "+4915550123"
SENDER = "+4915550111"
SECOND = "+4917612345678"
LONG_TEXT = "".join(f"{i:04d}-" for i in range(80))  # 400 characters, each position distinct

Gammu = Callable[..., str]


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[SimulatorProcess]:
    with run_simulator(tmp_path / "sim") as running:
        yield running


@pytest.fixture
def gammu(simulator: SimulatorProcess, tmp_path: Path) -> Gammu:
    """Run one gammu command against modem0; return its standard output, failing on a non-zero exit."""
    program = require("gammu")
    config = tmp_path / "gammurc"
    debug = tmp_path / "gammu.log"
    config.write_text(
        f"[gammu]\ndevice = {simulator.port(0)}\nconnection = at\nlogfile = {debug}\nlogformat = textall\n"
    )

    def run(*args: str) -> str:
        result = subprocess.run([program, "-c", str(config), *args], capture_output=True,
                                timeout=CLIENT_TIMEOUT)
        stdout = result.stdout.decode("utf-8", "replace")
        assert result.returncode == 0, (
            f"gammu {' '.join(args)} exited with {result.returncode}\nstdout: {stdout}\n"
            f"stderr: {result.stderr.decode('utf-8', 'replace')}\ngammu log:\n{tail(debug, 60)}"
        )
        return stdout

    return run


def field(output: str, name: str) -> str:
    """The value of a ``Name : value`` line of gammu's output."""
    for line in output.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    raise AssertionError(f"no {name!r} line in gammu output:\n{output}")


def test_gammu_identify_reports_the_simulated_modem(gammu: Gammu, simulator: SimulatorProcess) -> None:
    output = gammu("identify")
    imei = field(output, "IMEI")
    assert imei.isdigit() and len(imei) == 15
    expected = simulator.identity(0)
    assert imei == expected["imei"]
    assert field(output, "Manufacturer") == expected["manufacturer"]
    assert field(output, "SIM IMSI") == expected["imsi"]


def test_gammu_sendsms_plain_reaches_the_network(gammu: Gammu, simulator: SimulatorProcess) -> None:
    output = gammu("sendsms", "TEXT", RECIPIENT, "-text", "hello from gammu")
    assert "OK, message reference=" in output
    record = simulator.wait_sent(RECIPIENT, lambda r: r["text"] == "hello from gammu")
    assert record["parts"] == 1
    assert record["from"] == simulator.identity(0)["number"]


def test_gammu_sendsms_400_characters_arrives_as_one_reassembled_message(
    gammu: Gammu, simulator: SimulatorProcess,
) -> None:
    output = gammu("sendsms", "TEXT", RECIPIENT, "-len", "400", "-text", LONG_TEXT)
    assert output.count("OK, message reference=") == 3
    record = simulator.wait_sent(RECIPIENT, lambda r: r["text"] == LONG_TEXT)
    assert record["parts"] >= 3


def test_gammu_sendsms_unicode_text_intact(gammu: Gammu, simulator: SimulatorProcess) -> None:
    text = "Grüße ☃ €"
    gammu("sendsms", "TEXT", RECIPIENT, "-unicode", "-text", text)
    record = simulator.wait_sent(RECIPIENT, lambda r: r["text"] == text)
    assert record["parts"] == 1


def test_gammu_getallsms_lists_injected_messages(gammu: Gammu, simulator: SimulatorProcess) -> None:
    simulator.inject(SENDER, "Injected for getallsms")
    simulator.inject(SECOND, "Grüße ☃ aus dem Netz")
    output = gammu("getallsms")
    assert "Injected for getallsms" in output
    assert "Grüße ☃ aus dem Netz" in output
    assert f'"{SENDER}"' in output
    assert f'"{SECOND}"' in output
    # Each message once: a second storage answered from the same slots would list it twice.
    assert output.count("Injected for getallsms") == 1


def test_gammu_smsd_sends_outbox_and_receives_into_inbox(tmp_path: Path) -> None:
    """gammu-smsd with a SIM PIN in its configuration: it unlocks the SIM, sends, receives."""
    program = require("gammu-smsd")
    with run_simulator(tmp_path / "sim", "--pin", "1234") as simulator:
        gammu_smsd_exchange(program, simulator, tmp_path)


def gammu_smsd_exchange(program: str, simulator: SimulatorProcess, tmp_path: Path) -> None:
    spool = tmp_path / "gammu-smsd"
    folders = {name: spool / name for name in ("inbox", "outbox", "sent", "error")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    log = spool / "smsd.log"
    config = spool / "smsdrc"
    config.write_text(
        "[gammu]\n"
        f"device = {simulator.port(0)}\n"
        "connection = at\n"
        "[smsd]\n"
        "service = files\n"
        f"inboxpath = {folders['inbox']}/\n"
        f"outboxpath = {folders['outbox']}/\n"
        f"sentsmspath = {folders['sent']}/\n"
        f"errorsmspath = {folders['error']}/\n"
        f"logfile = {log}\n"
        "debuglevel = 1\n"
        "CommTimeout = 1\n"
        "LoopSleep = 1\n"
        "ReceiveFrequency = 1\n"
        "StatusFrequency = 0\n"
        "PIN = 1234\n"
    )
    short_name = f"OUTC20260101_000000_00_{RECIPIENT}_sms0.txt"
    (folders["outbox"] / short_name).write_text("hello from gammu-smsd")
    long_name = f"OUTC20260101_000001_00_{SECOND}_sms0.txt"
    (folders["outbox"] / long_name).write_text(LONG_TEXT)  # gammu-smsd splits it into three parts

    with run_daemon([program, "-c", str(config)], spool / "stdout.log", spool) as daemon:

        def sent() -> bool:
            daemon.check_running()
            return (folders["sent"] / short_name).exists() and (folders["sent"] / long_name).exists()

        try:
            wait_until(sent, timeout=25, what="gammu-smsd to move both outbox files to sent/")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{tail(log)}\nerror/: {list(folders['error'].iterdir())}") from None
        simulator.wait_sent(RECIPIENT, lambda r: r["text"] == "hello from gammu-smsd")
        assert simulator.wait_sent(SECOND, lambda r: r["text"] == LONG_TEXT)["parts"] == 3

        simulator.inject(SENDER, "Incoming for gammu-smsd")
        long_incoming = "".join(f"{i:03d}." for i in range(60))  # two parts
        simulator.inject(SECOND, long_incoming)

        def received() -> list[Path]:
            daemon.check_running()
            files = sorted(folders["inbox"].iterdir())
            return files if len(files) >= 3 else []

        try:
            files = wait_until(received, timeout=25, what="gammu-smsd to write three inbox files")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{tail(log)}") from None
    # The files backend writes each part to its own file: IN<date>_<time>_<serial>_<sender>_<part>.txt
    from_sender = [path for path in files if SENDER in path.name]
    from_second = [path for path in files if SECOND in path.name]
    assert len(from_sender) == 1 and len(from_second) == 2, files
    assert from_sender[0].read_text(encoding="utf-8") == "Incoming for gammu-smsd"
    assert "".join(path.read_text(encoding="utf-8") for path in from_second) == long_incoming


OTHER_PROFILES = ["sim800", "sim7600", "ec25", "e3372"]


@pytest.mark.parametrize("profile", OTHER_PROFILES)
def test_gammu_batch_against_each_profile(profile: str, tmp_path: Path) -> None:
    """identify, sendsms, getallsms and geteachsms (which joins a multipart message) in one gammu run
    (its batch mode) against each modem profile, with its vendor URCs, identity and slot numbering."""
    program = require("gammu")
    long_text = "".join(f"{i:03d}," for i in range(60))  # 240 characters: two parts
    with run_simulator(tmp_path / "sim", profile=profile) as simulator:
        simulator.inject(SENDER, f"Injected on {profile}")
        simulator.inject(SENDER, long_text)
        config = tmp_path / "gammurc"
        debug = tmp_path / "gammu.log"
        config.write_text(
            f"[gammu]\ndevice = {simulator.port(0)}\nconnection = at\nlogfile = {debug}\nlogformat = textall\n"
        )
        batch = tmp_path / "batch"
        batch.write_text(f'identify\nsendsms TEXT {RECIPIENT} -text "gammu on {profile}"\ngetallsms\ngeteachsms\n')
        result = subprocess.run([program, "-c", str(config), "batch", str(batch)], capture_output=True,
                                timeout=CLIENT_TIMEOUT)
        output = result.stdout.decode("utf-8", "replace")
        assert result.returncode == 0 and "Error" not in output, f"{output}\ngammu log:\n{tail(debug, 60)}"
        sections = dict(zip(("identify", "sendsms", "getallsms", "geteachsms"),
                            output.split("Executing batch")[1:], strict=True))
        expected = simulator.identity(0)
        assert field(sections["identify"], "IMEI") == expected["imei"]
        # gammu prints known vendors its own way ("huawei" from +CGMI becomes "Huawei").
        assert field(sections["identify"], "Manufacturer").lower() == expected["manufacturer"].lower()
        assert "OK, message reference=" in sections["sendsms"]
        assert sections["getallsms"].count(f"Injected on {profile}") == 1
        assert "3 SMS parts in 3 SMS sequences" in sections["getallsms"]
        assert long_text in sections["geteachsms"]
        assert "3 SMS parts in 2 SMS sequences" in sections["geteachsms"]
        simulator.wait_sent(RECIPIENT, lambda r: r["text"] == f"gammu on {profile}")
