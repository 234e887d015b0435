"""SIM secrets never reach a log line or an `smsgw at` transcript (drivers/secrets.py).

The commands and where their secret parameters sit are 3GPP TS 27.007: +CPIN (8.3), +CLCK (7.4),
+CPWD (7.5). The daemon test runs `smsgw run` with ``log_level = "debug"`` against a simulated SIM
that asks for its PIN (the simulator answers ``+CPIN: SIM PIN`` until AT+CPIN="<pin>").
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from daemon_helpers import DaemonProcess, write_config
from engine_fixtures import pty_responder
from test_at_command import run_at
from waiting import async_wait_until

from appliance.commands.run import LogFormatter
from drivers.errors import error_from_final
from drivers.secrets import mask_secrets
from drivers.simulator import Simulator

PIN = "8351"


@pytest.mark.parametrize("text, masked", [
    ('AT+CPIN="8351"', 'AT+CPIN="****"'),
    ("AT+CPIN=8351", "AT+CPIN=****"),
    ('AT+CPIN="12345678","8351"', 'AT+CPIN="****","****"'),  # PUK, new PIN
    ('at+cpin2="8351"', 'at+cpin2="****"'),
    ('AT^CPIN="8351"', 'AT^CPIN="****"'),
    ('AT+CLCK="SC",1,"8351"', 'AT+CLCK="SC",1,"****"'),
    ('AT+CLCK="SC",0,"8351",7', 'AT+CLCK="SC",0,"****",****'),
    ('AT+CLCK="SC",2', 'AT+CLCK="SC",2'),  # a query: nothing secret
    ('AT+CPWD="SC","8351","9999"', 'AT+CPWD="SC","****","****"'),
    ("b'AT+CPIN=\"8351\"\\r'", "b'AT+CPIN=\"****\"\\r'"),  # the repr() the engine logs at debug
    ('AT+CPIN="8351";+CSQ', 'AT+CPIN="****";+CSQ'),
    ("AT+CPIN?", "AT+CPIN?"),
    ("+CPIN: SIM PIN", "+CPIN: SIM PIN"),
    ("AT+CMGS=23", "AT+CMGS=23"),
    ('AT+CPIN="8351": +CME ERROR 16', 'AT+CPIN="****": +CME ERROR 16'),
])
def test_mask_secrets(text: str, masked: str) -> None:
    assert mask_secrets(text) == masked


def test_errors_and_every_formatted_log_line_are_masked() -> None:
    error = error_from_final("+CME ERROR: 16", command=f'AT+CPIN="{PIN}"')
    assert PIN not in str(error) and 'AT+CPIN="****"' in str(error)
    formatter = LogFormatter(journal=False)
    try:
        raise RuntimeError(f'while sending AT+CPWD="SC","{PIN}","1111"')
    except RuntimeError:
        import sys

        record = logging.LogRecord("drivers.modem", logging.DEBUG, __file__, 1, "sent %s", (f"AT+CPIN={PIN}",),
                                   sys.exc_info())
    line = formatter.format(record)
    assert PIN not in line and "1111" not in line and "AT+CPIN=****" in line


async def test_debug_log_of_the_daemon_never_shows_the_pin(tmp_path: Path) -> None:
    async with Simulator(tmp_path / "sim", modems=1, pin=PIN) as sim:
        config = write_config(tmp_path / "gw", sim.ports)
        text = config.read_text().replace('profile = "generic"', f'profile = "generic"\npin = "{PIN}"', 1)
        config.write_text('log_level = "debug"\n' + text)
        daemon = DaemonProcess(config)
        await daemon.start()
        try:
            await async_wait_until(lambda: "AT+CPIN=" in daemon.log_text(), timeout=20, what="the PIN entered")
            await async_wait_until(lambda: "+CPIN: READY" in daemon.log_text(),
                                   timeout=20, what="the modem past the PIN")
        finally:
            await daemon.stop()
        log = daemon.log_text()
    assert "debug " in log  # the debug lines are there
    assert 'AT+CPIN=\\"****\\"' in log or 'AT+CPIN="****"' in log
    assert PIN not in log


async def test_smsgw_at_transcript_never_shows_the_pin() -> None:
    async with pty_responder() as responder:
        # a modem with echo on (V.250 E1) repeats the command line before its reply
        responder.on(f'AT+CPIN="{PIN}"', f'AT+CPIN="{PIN}"\r\r\n+CME ERROR: 16\r\n'.encode())
        responder.on(f'AT+CLCK="SC",1,"{PIN}"', None)  # no answer: the timeout message names the command
        code, out, err = await run_at("--timeout", "0.5", responder.path, f'AT+CPIN="{PIN}"',
                                      f'AT+CLCK="SC",1,"{PIN}"')
    assert code == 1
    assert "+CME ERROR: 16" in out
    assert PIN not in out and PIN not in err, (out, err)
    assert 'AT+CLCK="SC",1,"****"' in err


def test_the_at_console_history_file_keeps_no_pin(tmp_path: Path) -> None:
    """The console's readline history (~/.smsgw_at_history) is a saved transcript too."""
    import os

    from test_cli_console import SMSGW, Pty
    from third_party_fixtures import run_simulator

    with run_simulator(tmp_path / "sim", profile="sim800") as sim:
        env = {**os.environ, "HOME": str(tmp_path), "TERM": "xterm", "PYTHONPATH": str(Path(__file__).parent.parent)}
        console = Pty([*SMSGW, "at", sim.port(0)], env)
        try:
            console.expect("AT> ")
            console.type(f'AT+CPIN="{PIN}"\r')
            console.expect("AT> ")
            console.type("ATI\r")
            console.expect("AT> ")
            console.type("\x04")  # Ctrl-D saves the history
            _, status = os.waitpid(console.pid, 0)
            console.pid = 0
        finally:
            if console.pid:
                console.close()
            else:
                os.close(console.fd)
    history = (tmp_path / ".smsgw_at_history").read_text()
    assert 'AT+CPIN="****"' in history and "ATI" in history
    assert PIN not in history
