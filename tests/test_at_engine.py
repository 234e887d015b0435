"""The AT engine over real ptys, against a scripted responder, for every delivery of the bytes."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engine_fixtures import DELIVERIES, PtyResponder, pty_responder
from hypothesis import given, settings
from hypothesis import strategies as st
from waiting import async_wait_until

from drivers.at import AtEngine, Priority, _any_of
from drivers.errors import AtError, AtTimeout, CmeError, CmsError, TransportError
from drivers.modem import Modem
from drivers.profiles import load_profile, profile_names
from drivers.simulator import Simulator

PDU = "0011000B914171234567F80000AA05C8329BFD06"
CMGS = f"AT+CMGS={len(PDU) // 2 - 1}"


@pytest.fixture(params=DELIVERIES)
async def responder(request: pytest.FixtureRequest) -> AsyncIterator[PtyResponder]:
    async with pty_responder(request.param) as r:
        yield r


@pytest.fixture
async def engine(responder: PtyResponder) -> AsyncIterator[AtEngine]:
    eng = AtEngine(default_timeout=3.0, name="test", prompt_timeout=0.3, cancel_grace=0.3)
    await eng.open(responder.path)
    try:
        yield eng
    finally:
        await eng.close()


@pytest.mark.parametrize("echo", [False, True], ids=["echo-off", "echo-on"])
async def test_command_returns_info_lines_and_ok(responder: PtyResponder, engine: AtEngine, echo: bool) -> None:
    responder.echo = echo
    responder.on("AT+CSQ", b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    response = await engine.command("AT+CSQ")
    assert response.command == "AT+CSQ"
    assert response.lines == ["+CSQ: 20,99"]
    assert response.final == "OK"
    assert responder.received == ["AT+CSQ"]


async def test_command_is_terminated_by_cr_only(responder: PtyResponder, engine: AtEngine) -> None:
    seen: list[bytes] = []
    responder.on("AT", lambda text: seen.append(responder._buffer) or b"\r\nOK\r\n")
    await engine.command("AT")
    assert seen == [b""]  # nothing (no LF) after the CR that ended "AT"


@pytest.mark.parametrize(
    "final,error_type,code",
    [
        ("ERROR", AtError, None),
        ("+CME ERROR: 10", CmeError, 10),
        ("+CMS ERROR: 500", CmsError, 500),
        ("NO CARRIER", AtError, None),
        ("COMMAND NOT SUPPORT", AtError, None),
        ("BUSY", AtError, None),
    ],
)
async def test_failed_final_result_raises_typed_error(
    responder: PtyResponder, engine: AtEngine, final: str, error_type: type[AtError], code: int | None
) -> None:
    responder.on("AT+CPMS?", f"\r\n{final}\r\n".encode())
    with pytest.raises(error_type) as caught:
        await engine.command("AT+CPMS?")
    assert caught.value.final == final
    assert caught.value.command == "AT+CPMS?"
    if code is not None:
        assert caught.value.code == code  # type: ignore[attr-defined]


async def test_urc_in_the_middle_of_a_reply_reaches_its_handler_not_the_reply(
    responder: PtyResponder, engine: AtEngine
) -> None:
    got: list[str] = []
    engine.add_urc(r'\+CMTI: "(\w+)",(\d+)', lambda m, extra: got.append(f"{m[1]}:{m[2]}"))
    responder.on("AT+CSQ", b'\r\n+CSQ: 20,99\r\n\r\n+CMTI: "SM",3\r\n\r\nOK\r\n')
    response = await engine.command("AT+CSQ")
    assert response.lines == ["+CSQ: 20,99"]
    assert got == ["SM:3"]


async def test_urc_with_no_command_in_flight_reaches_its_handler(responder: PtyResponder, engine: AtEngine) -> None:
    got: list[str] = []
    engine.add_urc(r"\+CMTI: ", lambda m, extra: got.append(m.string))
    responder.push(b'\r\n+CMTI: "ME",7\r\n')
    await async_wait_until(lambda: got, timeout=5)
    assert got == ['+CMTI: "ME",7']


async def test_two_line_urc_gets_its_pdu_line_even_mid_command(responder: PtyResponder, engine: AtEngine) -> None:
    got: list[tuple[str, list[str]]] = []
    engine.add_urc(r"\+CMT: [^,]*,(\d+)", lambda m, extra: got.append((m[1], extra)), extra_lines=1)
    responder.on("AT+CREG?", b"\r\n+CMT: ,23\r\n07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07\r\n"
                             b"+CREG: 0,1\r\n\r\nOK\r\n")
    response = await engine.command("AT+CREG?")
    assert response.lines == ["+CREG: 0,1"]
    assert got == [("23", ["07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07"])]


async def test_a_urc_whose_quoted_text_spans_lines_is_collected_whole(
    responder: PtyResponder, engine: AtEngine
) -> None:
    # python-gsmmodem test/test_modem.py (faucamp, ff36825, test_sendUssd): a real +CUSD answer
    # whose quoted text holds line breaks; here it arrives in the middle of another command's reply.
    got: list[list[str]] = []
    engine.add_urc(r"\+CUSD:", lambda m, extra: got.append([m.string, *extra]),
                   more=lambda first, extra: (first.count('"') + sum(x.count('"') for x in extra)) % 2 == 1)
    responder.on("AT+CSQ", b'\r\n+CUSD: 2,"You have the following remaining balances:\n0 free minutes\n'
                           b'20 MORE Weekend minutes ",15\r\n+CSQ: 20,99\r\n\r\nOK\r\n')
    assert (await engine.command("AT+CSQ")).lines == ["+CSQ: 20,99"]
    assert got == [['+CUSD: 2,"You have the following remaining balances:', "0 free minutes",
                    '20 MORE Weekend minutes ",15']]


async def test_removed_urc_no_longer_matches(responder: PtyResponder, engine: AtEngine) -> None:
    got: list[str] = []
    remove = engine.add_urc(r"\+CUSD: ", lambda m, extra: got.append(m.string))
    remove()
    responder.on("AT+CUSD?", b"\r\n+CUSD: 1\r\n\r\nOK\r\n")
    assert (await engine.command("AT+CUSD?")).lines == ["+CUSD: 1"]
    assert got == []


async def test_vendor_noise_mid_reply_is_ignored(responder: PtyResponder, engine: AtEngine) -> None:
    responder.on(
        "AT+COPS?",
        b"\r\n^RSSI: 14\r\n\r\n+COPS: 0,0,\"Vodafone\",7\r\n\r\n^HCSQ: \"LTE\",50,44,133,21\r\n"
        b"\r\n+ZDONR: \"x\"\r\n\r\nUNDER-VOLTAGE WARNNING\r\n\r\n+QIND: SMS DONE\r\n\r\nOK\r\n",
    )
    response = await engine.command("AT+COPS?")
    assert response.lines == ['+COPS: 0,0,"Vodafone",7']


async def test_profile_ignore_urcs_are_dropped(responder: PtyResponder) -> None:
    engine = AtEngine(default_timeout=3.0, ignore_urcs=[r"\+STIN:"])
    await engine.open(responder.path)
    try:
        responder.on("AT+CSQ", b"\r\n+STIN: 25\r\n+CSQ: 9,99\r\n\r\nOK\r\n")
        assert (await engine.command("AT+CSQ")).lines == ["+CSQ: 9,99"]
    finally:
        await engine.close()


async def test_noise_prefix_asked_for_is_a_reply(responder: PtyResponder, engine: AtEngine) -> None:
    responder.on("AT+CFUN?", b"\r\n+CFUN: 1\r\n\r\nOK\r\n")
    assert (await engine.command("AT+CFUN?")).lines == ["+CFUN: 1"]


@pytest.mark.parametrize("echo", [False, True], ids=["echo-off", "echo-on"])
async def test_send_with_prompt_skips_noise_and_pdu_echo(
    responder: PtyResponder, engine: AtEngine, echo: bool
) -> None:
    responder.echo = echo
    responder.echo_pdu = echo
    responder.on(
        CMGS,
        b"\r\n^MODE: 5,4\r\n\r\nRDY\r\n\r\n> ",
        pdu_reply=b"\r\n^SRVST: 2\r\n\r\n+CMGS: 42\r\n\r\nOK\r\n",
    )
    response = await engine.command_with_prompt(CMGS, PDU)
    assert response.lines == ["+CMGS: 42"]
    assert responder.pdus == [PDU]


async def test_prompt_split_across_reads(responder: PtyResponder, engine: AtEngine) -> None:
    responder.on(CMGS, [b"\r\n", b">", b" "], pdu_reply=b"\r\n+CMGS: 7\r\n\r\nOK\r\n")
    response = await engine.command_with_prompt(CMGS, PDU)
    assert response.lines == ["+CMGS: 7"]


async def test_send_error_after_pdu_raises_cms_error(responder: PtyResponder, engine: AtEngine) -> None:
    responder.on(CMGS, b"\r\n> ", pdu_reply=b"\r\n+CMS ERROR: 38\r\n")
    with pytest.raises(CmsError) as caught:
        await engine.command_with_prompt(CMGS, PDU)
    assert caught.value.code == 38


async def test_cms_error_instead_of_prompt_raises_without_sending_the_pdu(
    responder: PtyResponder, engine: AtEngine
) -> None:
    responder.on(CMGS, b"\r\n+CMS ERROR: 304\r\n")
    with pytest.raises(CmsError):
        await engine.command_with_prompt(CMGS, PDU)
    responder.on("AT", b"\r\nOK\r\n")
    await engine.command("AT")
    assert responder.pdus == [] and responder.received == [CMGS, "AT"]


async def test_ready_runs_after_the_command_and_before_the_pdu_and_written_after_it(
    responder: PtyResponder, engine: AtEngine
) -> None:
    responder.on(CMGS, b"\r\n> ", pdu_reply=b"\r\n+CMGS: 9\r\n\r\nOK\r\n")
    seen: list[tuple[str, list[str], list[str]]] = []

    async def ready() -> None:
        # the modem answers the command meanwhile; the PDU waits for this
        await async_wait_until(lambda: responder.received == [CMGS], timeout=3, what="AT+CMGS at the modem")
        seen.append(("ready", list(responder.received), list(responder.pdus)))

    response = await engine.command_with_prompt(
        CMGS, PDU, ready=ready, written=lambda: seen.append(("written", [], [])))
    assert response.lines == ["+CMGS: 9"]
    assert seen == [("ready", [CMGS], []), ("written", [], [])]
    assert responder.pdus == [PDU]


async def test_ready_raising_cancels_the_entry_with_esc_and_the_pdu_never_leaves(
    responder: PtyResponder, engine: AtEngine
) -> None:
    responder.on(CMGS, b"\r\n> ", pdu_reply=b"\r\n+CMGS: 9\r\n\r\nOK\r\n", esc_reply=b"\r\nOK\r\n")

    async def ready() -> None:
        raise OSError("the disk failed")

    with pytest.raises(OSError, match="the disk failed"):
        await engine.command_with_prompt(CMGS, PDU, ready=ready)
    assert responder.escapes == 1 and responder.pdus == []
    responder.on("AT+CSQ", b"\r\n+CSQ: 3,99\r\n\r\nOK\r\n")
    assert (await engine.command("AT+CSQ")).lines == ["+CSQ: 3,99"]


async def test_no_prompt_sends_esc_and_raises_then_port_still_works(
    responder: PtyResponder, engine: AtEngine
) -> None:
    responder.on(CMGS, None, esc_reply=b"\r\nOK\r\n")
    with pytest.raises(AtTimeout, match="prompt"):
        await engine.command_with_prompt(CMGS, PDU)
    assert responder.escapes == 1 and responder.pdus == []
    responder.on("AT+CSQ", b"\r\n+CSQ: 3,99\r\n\r\nOK\r\n")
    assert (await engine.command("AT+CSQ")).lines == ["+CSQ: 3,99"]


async def test_timeout_then_next_command_still_works(responder: PtyResponder, engine: AtEngine) -> None:
    responder.on("AT+COPS=?", None)  # the modem stays silent
    with pytest.raises(AtTimeout) as caught:
        await engine.command("AT+COPS=?", timeout=0.3)
    assert caught.value.command == "AT+COPS=?"
    responder.on("AT+CSQ", b"\r\n+CSQ: 11,99\r\n\r\nOK\r\n")
    assert (await engine.command("AT+CSQ")).lines == ["+CSQ: 11,99"]


async def test_late_lines_before_our_echo_are_not_taken_as_the_reply(
    responder: PtyResponder, engine: AtEngine
) -> None:
    responder.on("AT+CGSN", None)
    with pytest.raises(AtTimeout):
        await engine.command("AT+CGSN", timeout=0.3)
    # Echo on: the late info line of the timed-out command arrives after the next command was
    # written but before its echo; it must not end up in the next reply.
    responder.on("AT+CGMR", [b"\r\n356938035643809\r\n", b"AT+CGMR\r", b"\r\nREV1.0\r\n\r\nOK\r\n"])
    response = await engine.command("AT+CGMR")
    assert response.lines == ["REV1.0"]


async def test_reset_queued_behind_polls_runs_first(responder: PtyResponder, engine: AtEngine) -> None:
    responder.on("AT+CSQ", lambda _: None)  # held until the queue is built
    for cmd in ("AT+CREG?", "AT+COPS?", "AT+CPMS?", "AT+CFUN=1,1", "AT+CMGS=5X", "AT^CURC?"):
        responder.on(cmd, b"\r\nOK\r\n")
    first = asyncio.create_task(engine.command("AT+CSQ", timeout=5))
    await async_wait_until(lambda: responder.received == ["AT+CSQ"], timeout=5)
    tasks = [
        asyncio.create_task(engine.command("AT+CREG?")),
        asyncio.create_task(engine.command("AT+COPS?")),
        asyncio.create_task(engine.command("AT+CMGS=5X", priority=Priority.SEND)),
        asyncio.create_task(engine.command("AT+CPMS?")),
        asyncio.create_task(engine.command("AT^CURC?", priority=Priority.HEALTH)),
        asyncio.create_task(engine.command("AT+CFUN=1,1", priority=Priority.RESET)),
    ]
    await async_wait_until(lambda: engine.queued == 6, timeout=5)
    responder.push(b"\r\n+CSQ: 1,1\r\n\r\nOK\r\n")
    await asyncio.gather(first, *tasks)
    assert responder.received == [
        "AT+CSQ", "AT+CFUN=1,1", "AT^CURC?", "AT+CMGS=5X", "AT+CREG?", "AT+COPS?", "AT+CPMS?"
    ]


async def test_port_closing_mid_command_raises_at_once_and_reports_closed_once(
    responder: PtyResponder, engine: AtEngine
) -> None:
    closed: list[BaseException | None] = []
    engine.on_closed = closed.append
    responder.on("AT+CMGL=4", None)
    task = asyncio.create_task(engine.command("AT+CMGL=4", timeout=30))
    await async_wait_until(lambda: responder.received == ["AT+CMGL=4"], timeout=5)
    responder.close_master()
    with pytest.raises(TransportError):
        async with asyncio.timeout(5):  # far less than the command's own 30 s
            await task
    assert len(closed) == 1
    assert not engine.is_open
    with pytest.raises(TransportError):
        await engine.command("AT")
    await engine.close()
    assert len(closed) == 1


async def test_command_to_a_port_that_just_vanished_fails_at_once(responder: PtyResponder, engine: AtEngine) -> None:
    closed: list[BaseException | None] = []
    engine.on_closed = closed.append
    responder.close_master()
    with pytest.raises(TransportError):
        async with asyncio.timeout(5):  # far less than the command's own 30 s
            await engine.command("AT+CSQ", timeout=30)
    assert len(closed) == 1


async def test_handler_that_raises_is_logged_and_reader_survives(
    responder: PtyResponder, engine: AtEngine, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(match: re.Match[str], extra: list[str]) -> None:
        raise RuntimeError("handler bug")

    engine.add_urc(r"\+CDSI: ", broken)
    responder.on("AT+CSQ", b'\r\n+CDSI: "SR",1\r\n+CSQ: 4,99\r\n\r\nOK\r\n')
    with caplog.at_level(logging.ERROR, logger="drivers.at"):
        assert (await engine.command("AT+CSQ")).lines == ["+CSQ: 4,99"]
    assert any("handler bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_wavecom_reply_without_ok_ends_command_and_stray_ok_is_dropped(responder: PtyResponder) -> None:
    engine = AtEngine(default_timeout=3.0, final_without_ok=[r"\+CPIN: READY$"], stray_ok_grace=1.0)
    await engine.open(responder.path)
    try:
        responder.on("AT+CPIN?", [b"\r\n+CPIN: READY\r\n", b"\r\nOK\r\n"])
        responder.on("AT+CSQ", b"\r\n+CSQ: 7,99\r\n\r\nOK\r\n")
        response = await engine.command("AT+CPIN?")
        assert response.final == "+CPIN: READY"
        assert response.lines == ["+CPIN: READY"]
        assert (await engine.command("AT+CSQ")).lines == ["+CSQ: 7,99"]
    finally:
        await engine.close()


# python-gsmmodem test/fakemodems.py (faucamp/python-gsmmodem@834c68b1, class WavecomMultiband900E1800):
# "+CPIN replies are not ended with OK" - 'AT+CPIN?\r': ['+CPIN: READY\r\n'] and ['+CPIN: SIM PIN\r\n'].
@pytest.mark.parametrize("state", [b"READY", b"SIM PIN"])
async def test_a_query_answered_without_a_final_result_ends_after_the_grace_with_no_profile_help(
    responder: PtyResponder, state: bytes
) -> None:
    engine = AtEngine(default_timeout=3.0, reply_grace=0.2, stray_ok_grace=0.5)
    await engine.open(responder.path)
    try:
        responder.on("AT+CPIN?", b"\r\n+CPIN: " + state + b"\r\n")
        responder.on("AT+CSQ", b"\r\n+CSQ: 7,99\r\n\r\nOK\r\n")
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await engine.command("AT+CPIN?")
        assert loop.time() - started < 2.0  # the grace, not the 3 s command timeout
        assert response.lines == ["+CPIN: " + state.decode()]
        assert (await engine.command("AT+CSQ")).lines == ["+CSQ: 7,99"]
    finally:
        await engine.close()


async def test_a_late_ok_after_the_grace_is_dropped_and_not_taken_for_the_next_reply(
    responder: PtyResponder,
) -> None:
    engine = AtEngine(default_timeout=3.0, reply_grace=0.2, stray_ok_grace=1.0)
    await engine.open(responder.path)
    try:
        answered = asyncio.Event()

        def cpin(_text: str) -> bytes:
            asyncio.get_running_loop().call_later(0.5, lambda: (responder.push(b"\r\nOK\r\n"), answered.set()))
            return b"\r\n+CPIN: READY\r\n"

        responder.on("AT+CPIN?", cpin)
        responder.on("AT+CSQ", b"\r\n+CSQ: 9,99\r\n\r\nOK\r\n")
        assert (await engine.command("AT+CPIN?")).lines == ["+CPIN: READY"]
        async with asyncio.timeout(3):
            await answered.wait()
        await responder.drained()
        assert (await engine.command("AT+CSQ")).lines == ["+CSQ: 9,99"]
    finally:
        await engine.close()


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("AT+CSQ", b"\r\n+CPIN: READY\r\n"),          # not the line this command asks for
        ("AT+CMGL=4", b"\r\n+CMGL: 1,0,,23\r\n"),     # a listing may pause between entries
        ("AT+CPIN?", b"\r\nSOMETHING ELSE\r\n"),      # no information line of its own yet
    ],
)
async def test_the_grace_applies_only_after_a_query_s_own_information_line(
    responder: PtyResponder, command: str, reply: bytes
) -> None:
    engine = AtEngine(default_timeout=1.0, reply_grace=0.1)
    await engine.open(responder.path)
    try:
        responder.on(command, reply)
        with pytest.raises(AtTimeout):
            await engine.command(command)
    finally:
        await engine.close()


async def test_unmatched_line_with_no_command_goes_to_on_unsolicited(
    responder: PtyResponder, engine: AtEngine
) -> None:
    seen: list[str] = []
    engine.on_unsolicited = seen.append
    responder.push(b"\r\n+CUSD: 0,\"Balance 5 EUR\",15\r\n\r\n^RSSI: 3\r\n\r\nNORMAL POWER DOWN\r\n")
    await async_wait_until(lambda: len(seen) == 2, timeout=5)
    assert seen == ['+CUSD: 0,"Balance 5 EUR",15', "NORMAL POWER DOWN"]


async def test_garbage_bytes_never_break_the_next_reply(
    responder: PtyResponder, engine: AtEngine, caplog: pytest.LogCaptureFixture
) -> None:
    responder.push(b"\x00\xff\xfe\x01garbage\x02\r\n\x00\x00")
    responder.on("AT+CSQ", b"\r\n+CSQ: \x0012,99\r\n\xff\r\nOK\r\n")
    with caplog.at_level(logging.WARNING):
        await responder.drained()
        response = await engine.command("AT+CSQ")
    assert response.lines == ["+CSQ: 12,99", "\ufffd"]
    assert any("\\x00" in r.getMessage() for r in caplog.records)


async def test_socket_url_against_local_tcp_server() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readuntil(b"\r"):
            if line == b"ATI\r":
                writer.write(b"\r\nQuectel\r\nEC25\r\n\r\nOK\r\n")

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    engine = AtEngine(default_timeout=3.0)
    try:
        await engine.open(f"socket://127.0.0.1:{port}")
        assert (await engine.command("ATI")).lines == ["Quectel", "EC25"]
    finally:
        await engine.close()
        server.close()
        await server.wait_closed()


async def test_open_missing_path_raises_transport_error_naming_it(tmp_path: object) -> None:
    engine = AtEngine()
    with pytest.raises(TransportError, match="/dev/ttyNOPE9"):
        await engine.open("/dev/ttyNOPE9")
    assert not engine.is_open


async def test_command_on_closed_engine_raises_transport_error() -> None:
    with pytest.raises(TransportError):
        await AtEngine().command("AT")


async def test_bad_command_text_is_rejected(engine: AtEngine) -> None:
    with pytest.raises(ValueError, match="CR, LF"):
        await engine.command("AT\nAT")


async def test_reply_without_ok_pattern_does_not_end_another_command(responder: PtyResponder) -> None:
    engine = AtEngine(default_timeout=3.0, final_without_ok=[r"\+CPIN: READY$"])
    await engine.open(responder.path)
    try:
        responder.on("AT+CSQ", b"\r\n+CPIN: READY\r\n\r\n+CSQ: 8,99\r\n\r\nOK\r\n")
        response = await engine.command("AT+CSQ")
        assert response.lines == ["+CSQ: 8,99"] and response.final == "OK"
    finally:
        await engine.close()


async def test_two_line_urc_cut_short_by_a_final_result_does_not_eat_it(
    responder: PtyResponder, engine: AtEngine
) -> None:
    got: list[list[str]] = []
    engine.add_urc(r"\+CDS: ", lambda m, extra: got.append(extra), extra_lines=1)
    responder.on("AT+CNMA", b"\r\n+CDS: 25\r\nOK\r\n")
    assert (await engine.command("AT+CNMA")).final == "OK"
    assert got == []


async def test_ok_instead_of_prompt_raises_at_error(responder: PtyResponder, engine: AtEngine) -> None:
    responder.on(CMGS, b"\r\nOK\r\n")
    with pytest.raises(AtError, match="before the prompt"):
        await engine.command_with_prompt(CMGS, PDU)
    assert responder.pdus == []


async def test_reopen_after_close_works_and_old_port_events_are_ignored(responder: PtyResponder) -> None:
    closed: list[BaseException | None] = []
    engine = AtEngine(default_timeout=3.0)
    engine.on_closed = closed.append
    responder.on("AT", b"\r\nOK\r\n")
    await engine.open(responder.path)
    await engine.command("AT")
    await engine.close()
    assert closed == [None] and not engine.is_open
    await engine.open(responder.path)
    try:
        assert engine.is_open
        assert (await engine.command("AT")).final == "OK"
        assert closed == [None]
    finally:
        await engine.close()
    assert closed == [None, None]


async def test_open_twice_is_refused(responder: PtyResponder, engine: AtEngine) -> None:
    with pytest.raises(TransportError, match="already open"):
        await engine.open(responder.path)


@settings(max_examples=200, deadline=None)
@given(chunks=st.lists(st.binary(max_size=40) | st.sampled_from(
    [b"\r\n", b"> ", b"OK\r\n", b"+CMT: ,5\r\n", b"+CMTI: \"SM\",x\r\n", b"\xff\x00", b"+CME ERROR: \r\n"]
), max_size=30))
def test_arbitrary_bytes_never_raise_out_of_the_reader(chunks: list[bytes]) -> None:
    errors: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = errors.append  # type: ignore[method-assign]

    async def scenario() -> None:
        engine = AtEngine()
        engine.add_urc(r"\+CMT: [^,]*,(\d+)", lambda m, extra: None, extra_lines=1)
        engine.add_urc(r"\+CMTI: \"\w+\",(\d+)", lambda m, extra: None)
        for chunk in chunks:
            engine._data_received(chunk)  # what the transport calls for every read

    logging.getLogger("drivers.at").addHandler(handler)
    try:
        asyncio.run(scenario())
    finally:
        logging.getLogger("drivers.at").removeHandler(handler)
    assert errors == []  # not even a caught internal error


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


#: Every line of the public modem transcripts in tests/data/transcripts (each file names its source).
TRANSCRIPT_LINES = sorted({line for path in (Path(__file__).parent / "data" / "transcripts").glob("*.json")
                           for text in _strings(json.loads(path.read_text())) for line in text.splitlines()})


async def _urc_pattern_sets() -> list[list[re.Pattern[str]]]:
    """The noise patterns of every profile, and the URCs a Modem registers (on the simulator)."""
    sets = [list(AtEngine(ignore_urcs=load_profile(name).ignore_urcs).ignored_urcs) for name in profile_names()]
    with tempfile.TemporaryDirectory() as tmp:
        async with Simulator(Path(tmp) / "sim", modems=1, profile="generic") as sim:
            modem = Modem(sim.ports[0], profile="generic", modem_id="m0")
            await modem.open()
            try:
                sets.append([urc.pattern for urc in modem.engine._urcs])
            finally:
                await modem.close()
    return sets


async def test_one_alternation_of_the_urc_and_noise_patterns_matches_where_one_of_them_does() -> None:
    """The engine asks one regular expression whether a line is a URC or noise (most lines are
    neither) instead of each pattern in turn: over every line of the public transcripts and lines
    made of each pattern's own text, it must agree with asking each."""
    sets = await _urc_pattern_sets()
    assert all(_any_of(patterns) is not None for patterns in sets)  # the real ones all combine
    for patterns in sets:
        combined = _any_of(patterns)
        assert combined is not None
        made = [re.sub(r"[\\^$()?*+\[\]{}|]", "", p.pattern) for p in patterns]
        for line in [*TRANSCRIPT_LINES, *made, *(m + " 1,2" for m in made), "OK", "", "+CMGS: 5"]:
            assert (combined.match(line) is not None) == any(p.match(line) for p in patterns), (line, patterns)


def test_patterns_an_alternation_would_change_are_asked_one_by_one() -> None:
    assert _any_of([re.compile(r"(\d)\1"), re.compile("RING")]) is None  # a numbered back reference
    assert _any_of([re.compile(r"(?P<n>\d+)"), re.compile(r"x(?P<n>\d+)")]) is None  # the same group name
    assert _any_of([re.compile("ring", re.IGNORECASE)]) is None  # flags
    assert _any_of([]) is None
