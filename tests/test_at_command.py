"""`smsgw at` as a real process against a scripted pty responder."""

from __future__ import annotations

import asyncio
import sys

import pytest
from engine_fixtures import PtyResponder, pty_responder

from appliance.commands.at import normalise

RUN_TIMEOUT = 20.0


async def run_at(*argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", "at", *argv,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(RUN_TIMEOUT):
        out, err = await process.communicate(stdin or b"")
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def script(responder: PtyResponder) -> None:
    responder.on("AT+CSQ", b"\r\n+CSQ: 21,99\r\n\r\nOK\r\n")
    responder.on("ATI", b"\r\nSIMCOM_Ltd\r\nSIMCOM_SIM800\r\nRevision:1418B04SIM800L24\r\n\r\nOK\r\n")
    responder.on("AT+CPIN=1234", b"\r\n+CME ERROR: 16\r\n")
    responder.on("AT+CMGS=5", b"\r\n> ", pdu_reply=b"\r\n+CMGS: 17\r\n\r\nOK\r\n")


@pytest.mark.parametrize("given,sent", [("+CSQ", "AT+CSQ"), ("i", "ATi"), ("at+cpin?", "at+cpin?"), (" ATE0 ", "ATE0")])
def test_missing_at_prefix_is_added(given: str, sent: str) -> None:
    assert normalise(given) == sent


async def test_commands_print_replies_and_finals_and_exit_zero() -> None:
    async with pty_responder() as responder:
        script(responder)
        code, out, err = await run_at(responder.path, "+CSQ", "ATI")
    assert code == 0, err
    assert out.splitlines() == ["+CSQ: 21,99", "OK", "SIMCOM_Ltd", "SIMCOM_SIM800", "Revision:1418B04SIM800L24", "OK"]
    assert responder.received == ["AT+CSQ", "ATI"]


async def test_a_failed_command_prints_its_error_and_exits_one() -> None:
    async with pty_responder() as responder:
        script(responder)
        code, out, _ = await run_at(responder.path, "AT+CPIN=1234", "AT+CSQ")
    assert code == 1
    assert out.splitlines() == ["+CME ERROR: 16", "+CSQ: 21,99", "OK"]


async def test_silent_modem_times_out_and_exits_one() -> None:
    async with pty_responder() as responder:
        responder.on("AT+COPS=?", None)
        code, _, err = await run_at("--timeout", "0.3", responder.path, "AT+COPS=?")
    assert code == 1
    assert "no final result within 0.3s" in err


async def test_cmgs_takes_the_pdu_as_next_argument() -> None:
    async with pty_responder() as responder:
        script(responder)
        code, out, err = await run_at(responder.path, "AT+CMGS=5", "0001000381214300000548656C6C6F")
    assert code == 0, err
    assert out.splitlines() == ["+CMGS: 17", "OK"]
    assert responder.pdus == ["0001000381214300000548656C6C6F"]


async def test_interactive_prints_replies_and_urcs_until_eof() -> None:
    async with pty_responder() as responder:
        script(responder)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "appliance", "at", responder.path,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            async with asyncio.timeout(RUN_TIMEOUT):
                process.stdin.write(b"AT+CSQ\n")
                await process.stdin.drain()
                assert await process.stdout.readline() == b"+CSQ: 21,99\n"
                assert await process.stdout.readline() == b"OK\n"
                responder.push(b'\r\n+CMTI: "SM",4\r\n')
                assert await process.stdout.readline() == b'+CMTI: "SM",4\n'
                process.stdin.write(b"i\n")
                process.stdin.close()
                rest = await process.stdout.read()
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert rest.decode().splitlines()[-1] == "OK"
    assert responder.received == ["AT+CSQ", "ATi"]


async def test_missing_port_is_named_and_exits_two() -> None:
    code, _, err = await run_at("/dev/ttyNOPE7", "AT")
    assert code == 2  # bad input, as the README's exit statuses say
    assert "/dev/ttyNOPE7" in err
