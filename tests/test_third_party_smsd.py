"""smstools3 `smsd`, unmodified, against the pty modem simulator (docs/third-party-clients.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from third_party_fixtures import SimulatorProcess, require, run_daemon, run_simulator, tail
from waiting import wait_until

LONG_UNICODE = "Grüße ☃ " + "x" * 100
RECIPIENT = "+4915550123"
SENDER = "+4915550111"


#: The generic modem, a 2G SIMCom with a SIM PIN (it answers the PIN with a +CPIN: READY URC), and
#: the Huawei stick (vendor URCs inside replies, slots from 0); gammu and python-gsmmodem run against
#: every profile.
SETUPS = [("generic", None), ("sim800", "1234"), ("e3372", None)]


def parse_smsd_file(path: Path) -> tuple[dict[str, str], str]:
    """smsd's message file: ``Header: value`` lines, a blank line, the text (UTF-16BE bytes when the
    header says ``Alphabet: UCS2``, which is smsd's default for UCS-2 messages)."""
    head, _, body = path.read_bytes().partition(b"\n\n")
    headers = {}
    for line in head.decode("latin-1").splitlines():
        key, _, value = line.partition(":")
        headers[key.strip()] = value.strip()
    text = body.decode("utf-16-be") if headers.get("Alphabet") == "UCS2" else body.decode("latin-1")
    return headers, text


@pytest.mark.parametrize(("profile", "pin"), SETUPS)
def test_smsd_sends_outgoing_receives_incoming_and_status_report(profile: str, pin: str | None, tmp_path: Path) -> None:
    program = require("smsd")
    with run_simulator(tmp_path / "sim", *(["--pin", pin] if pin else []), profile=profile) as simulator:
        exchange(program, simulator, tmp_path, profile, pin)


def exchange(program: str, simulator: SimulatorProcess, tmp_path: Path, profile: str, pin: str | None) -> None:
    spool = tmp_path / "smstools"
    folders = {name: spool / name for name in ("outgoing", "checked", "failed", "incoming", "sent", "report")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    log = spool / "smsd.log"
    config = spool / "smsd.conf"
    config.write_text(
        "devices = GSM1\n"
        + "".join(f"{name} = {folder}\n" for name, folder in folders.items())
        + f"logfile = {log}\n"
        f"infofile = {spool / 'smsd.working'}\n"
        f"pidfile = {spool / 'smsd.pid'}\n"
        "loglevel = 7\n"
        "delaytime = 1\n"
        "delaytime_mainprocess = 1\n"
        "\n[GSM1]\n"
        f"device = {simulator.port(0)}\n"
        "incoming = yes\n"
        "baudrate = 115200\n"
        # Status reports stored on the SIM (<ds>=2), where smsd polls for them, as smsd's users set it.
        "init = AT+CNMI=2,0,0,2,1\n"
        # Huawei sticks number SIM slots from 0 (smsd's own documentation says so); smsd starts at 1.
        + ("memory_start = 0\n" if profile == "e3372" else "")
        + (f"pin = {pin}\n" if pin else "")
    )
    (folders["outgoing"] / "message1").write_text(
        f"To: {RECIPIENT.lstrip('+')}\nReport: yes\n\nhello from smstools\n"
    )

    with run_daemon([program, "-t", "-c", str(config)], spool / "stdout.log", spool) as daemon:

        def sent() -> bool:
            daemon.check_running()
            return (folders["sent"] / "message1").exists()

        try:
            wait_until(sent, timeout=25, what="smsd to move the outgoing file to sent/")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{tail(log)}\nfailed/: {list(folders['failed'].iterdir())}") from None
        simulator.wait_sent(RECIPIENT, lambda r: r["text"] == "hello from smstools")
        message_id = parse_smsd_file(folders["sent"] / "message1")[0]["Message_id"]

        simulator.inject(SENDER, "Incoming for smstools")
        simulator.inject("+4917612345678", LONG_UNICODE)  # two UCS-2 parts, combined by smsd

        def received() -> list[Path]:
            daemon.check_running()
            files = [path for path in folders["incoming"].iterdir() if path.name.startswith("GSM1.")]
            try:  # smsd keeps the parts of a multipart SMS as files of their own until it combines them
                texts = {parse_smsd_file(path)[1].rstrip("\n") for path in files}
            except FileNotFoundError:
                return []
            return files if {"Incoming for smstools", LONG_UNICODE} <= texts else []

        try:
            files = wait_until(received, timeout=25, what="smsd to write two incoming files")
            reports = wait_until(lambda: list(folders["report"].iterdir()), timeout=15,
                                 what="smsd to write the status report file")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{tail(log)}") from None
    headers, report = parse_smsd_file(reports[0])
    assert len(reports) == 1 and headers["From"] == RECIPIENT.lstrip("+"), reports
    assert report.startswith("SMS STATUS REPORT"), report
    assert f"Message_id: {message_id}\n" in report
    assert "Status: 0,Ok" in report
    messages = {parse_smsd_file(path)[1].rstrip("\n"): parse_smsd_file(path)[0] for path in files}
    assert set(messages) == {"Incoming for smstools", LONG_UNICODE}, messages
    assert messages["Incoming for smstools"]["From"] == SENDER.lstrip("+")
    assert messages[LONG_UNICODE]["From"] == "4917612345678"
