"""The pty modem simulator, driven over its ptys with plain file descriptors (no drivers.modem)."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import random
import termios
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from waiting import async_wait_until

from drivers.pdu import SmsDeliver, SmsStatusReport, decode, encode_submit
from drivers.profiles import match_identity, profile_names
from drivers.simulator import Simulator
from drivers.simulator.control import request
from drivers.simulator.flavours import FLAVOURS

OUTSIDE = "+4915112345678"
TIMEOUT = 5.0


class PtyClient:
    """A serial client on the simulator's symlink: raw bytes in, a buffer of everything read."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.buffer = bytearray()
        self.error: OSError | None = None
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self.error = exc
            self.loop.remove_reader(self.fd)
            return
        if not data:
            self.error = OSError(errno.EIO, "hang-up")
            self.loop.remove_reader(self.fd)
            return
        self.buffer += data

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    async def expect(self, marker: bytes, timeout: float = TIMEOUT) -> bytes:
        """Everything up to and including ``marker`` (consumed from the buffer)."""
        await async_wait_until(lambda: marker in self.buffer, timeout, what=f"{marker!r} in {bytes(self.buffer)!r}")
        end = self.buffer.index(marker) + len(marker)
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    async def command(self, line: str, final: bytes = b"\r\n") -> str:
        """Send one command line; return the text up to its final result code."""
        self.write(line.encode() + b"\r")
        pattern = (b"\r\nOK\r\n", b"ERROR\r\n", b"ERROR: ")
        await async_wait_until(lambda: any(p in self.buffer for p in pattern), TIMEOUT,
                               what=f"final result for {line!r} in {bytes(self.buffer)!r}")
        ends = [self.buffer.index(p) + len(p) for p in pattern if p in self.buffer]
        end = min(ends)
        if self.buffer[end - 7:end] == b"ERROR: ":
            end = self.buffer.index(b"\r\n", end) + 2
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data.decode("latin-1")

    def close(self) -> None:
        if self.error is None:
            self.loop.remove_reader(self.fd)
        os.close(self.fd)


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    simulator = Simulator(tmp_path / "sim", modems=2)
    async with simulator:
        yield simulator


@pytest.fixture
async def clients(sim: Simulator) -> AsyncIterator[list[PtyClient]]:
    opened = [PtyClient(port) for port in sim.ports]
    yield opened
    for client in opened:
        client.close()


async def send_pdu(client: PtyClient, number: str, text: str, **kwargs: object) -> list[str]:
    replies = []
    for part in encode_submit(number, text, **kwargs):  # type: ignore[arg-type]
        client.write(f"AT+CMGS={part.tpdu_length}\r".encode())
        await client.expect(b"\r\n> ")
        replies.append(await client.command(part.pdu + "\x1a"))
    return replies


async def test_ports_are_symlinks_to_raw_ptys_and_each_modem_has_its_own_identity(sim: Simulator) -> None:
    assert sim.ports == [str(sim.directory / "modem0"), str(sim.directory / "modem1")]
    for port in sim.ports:
        assert os.readlink(port).startswith("/dev/pts/")
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
        try:
            lflag = termios.tcgetattr(fd)[3]
            assert not lflag & termios.ECHO and not lflag & termios.ICANON
        finally:
            os.close(fd)
    first, second = sim.modems
    assert first.number == "+4915550000" and second.number == "+4915550001"
    assert len({first.imei, second.imei}) == 2 and len(first.imei) == 15
    assert len({first.imsi, second.imsi}) == 2 and len({first.iccid, second.iccid}) == 2


async def test_echo_is_on_by_default_and_ate0_ate1_toggle_it(clients: list[PtyClient]) -> None:
    client = clients[0]
    assert await client.command("AT") == "AT\r\r\nOK\r\n"
    assert await client.command("ATE0") == "ATE0\r\r\nOK\r\n"
    assert await client.command("AT") == "\r\nOK\r\n"
    assert await client.command("ATE1") == "\r\nOK\r\n"
    assert await client.command("AT+CSQ") == "AT+CSQ\r\r\n+CSQ: 20,99\r\n\r\nOK\r\n"


async def test_esc_and_ctrl_z_are_discarded_and_lf_is_tolerated(clients: list[PtyClient]) -> None:
    client = clients[0]
    client.write(b"\x1b\r\x1a")  # gammu's opening: only the CR is echoed, nothing answered
    assert await client.command("ATE0") == "\rATE0\r\r\nOK\r\n"
    client.write(b"AT\n")
    assert await client.expect(b"OK\r\n") == b"\r\nOK\r\n"
    client.write(b"AT\r\n")  # the LF after CR is not a second command
    assert await client.expect(b"OK\r\n") == b"\r\nOK\r\n"
    assert await client.command("AT") == "\r\nOK\r\n"
    assert client.buffer == b""


async def test_chained_commands_and_registration_forms(clients: list[PtyClient]) -> None:
    client = clients[0]
    await client.command("ATE0")
    assert await client.command("AT+CMEE=1;+CREG=2") == "\r\nOK\r\n"
    assert await client.command("AT+CREG?") == '\r\n+CREG: 2,1,"1A2B","01C3D4E5"\r\n\r\nOK\r\n'
    assert "+CGATT: 1" in await client.command("AT+CGATT?")
    assert "+CGREG: 0,1" in await client.command("AT+CGREG?")
    assert '+COPS: 0,2,"26299"' in await client.command("AT+COPS=3,2;+COPS?")
    assert '+COPS: 0,0,"Simnet"' in await client.command("AT+COPS=3,0;+COPS?")
    assert '+CSCA: "+4915550999",145' in await client.command("AT+CSCA?")
    assert await client.command("AT+NOSUCH") == "\r\n+CME ERROR: 4\r\n"
    assert await client.command("AT+CMEE=0;+NOSUCH") == "\r\nERROR\r\n"
    assert "+CBC: 0,100," in await client.command("AT+CBC")
    supported = await client.command("AT+CLAC")
    assert "\r\nAT+CSCS\r\n" in supported and "\r\nAT+CMGS\r\n" in supported
    listing = await client.command("ATE0V1;+CGMI;+CGMM;+CGSN;+CIMI")
    assert "smsgw" in listing and "Simulated GSM modem" in listing


async def test_storage_forms(clients: list[PtyClient]) -> None:
    client = clients[0]
    await client.command("ATE0")
    assert '+CPMS: "SM",0,30,"SM",0,30,"SM",0,30' in await client.command("AT+CPMS?")
    assert '+CPMS: ("SM","ME"),("SM","ME"),("SM","ME")' in await client.command("AT+CPMS=?")
    assert "+CPMS: 0,100,0,100,0,100" in await client.command('AT+CPMS="ME","ME","ME"')
    assert "+CMS ERROR: 302" in await client.command('AT+CPMS="XX"')


async def test_send_to_an_outside_number_reaches_network_jsonl(sim: Simulator, clients: list[PtyClient]) -> None:
    client = clients[0]
    client.write(b"AT+CMGF=0\r")
    await client.expect(b"OK\r\n")
    [part] = encode_submit(OUTSIDE, "Pump 7 is ON")
    client.write(f"AT+CMGS={part.tpdu_length}\r".encode())
    assert await client.expect(b"\r\n> ") == f"AT+CMGS={part.tpdu_length}\r\r\n> ".encode()
    reply = await client.command(part.pdu + "\x1a")
    assert reply.startswith(part.pdu)  # echo of the PDU while echo is on
    assert reply.endswith("\r\n+CMGS: 1\r\n\r\nOK\r\n")
    record = {"modem": 0, "from": "+4915550000", "to": OUTSIDE, "text": "Pump 7 is ON", "parts": 1,
              "class": None}
    assert sim.network.sent == [record]
    lines = (sim.directory / "network.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [record]


async def test_multipart_is_reassembled_into_one_network_line(sim: Simulator, clients: list[PtyClient]) -> None:
    text = "x" * 200 + " é " + "y" * 200
    replies = await send_pdu(clients[0], OUTSIDE, text, concat_reference=7)
    assert len(replies) == 3
    assert [r.split("+CMGS: ")[1].split("\r")[0] for r in replies] == ["1", "2", "3"]
    assert sim.network.sent == [{"modem": 0, "from": "+4915550000", "to": OUTSIDE, "text": text, "parts": 3,
                                 "class": None}]
    assert len((sim.directory / "network.jsonl").read_text().splitlines()) == 1


async def test_bad_pdu_and_escape_at_the_prompt(sim: Simulator, clients: list[PtyClient]) -> None:
    client = clients[0]
    client.write(b"AT+CMGS=10\r")
    await client.expect(b"> ")
    assert (await client.command("00ZZ\x1a")).endswith("+CMS ERROR: 304\r\n")
    client.write(b"AT+CMGS=10\r")
    await client.expect(b"> ")
    client.write(b"0011\x1b")
    assert (await client.expect(b"OK\r\n")).endswith(b"\r\nOK\r\n")
    assert sim.network.sent == []


async def test_a_client_that_died_at_the_prompt_does_not_leave_the_modem_stuck(sim: Simulator) -> None:
    dead = PtyClient(sim.ports[0])
    dead.write(b"ATE0\rAT+CMGS=20\r")
    await dead.expect(b"> ")
    dead.close()
    client = PtyClient(sim.ports[0])
    try:
        client.write(b"AT\r")  # 'T' is no PDU character: the entry fails at once
        assert await client.expect(b"\r\n+CMS ERROR: 304\r\n") == b"\r\n+CMS ERROR: 304\r\n"
        assert await client.command("AT") == "\r\nOK\r\n"
    finally:
        client.close()
    assert sim.network.sent == []


async def test_modem_to_modem_by_cmti_then_cmgr_cmgl_cmgd(sim: Simulator, clients: list[PtyClient]) -> None:
    sender, receiver = clients
    await receiver.command("ATE0")
    await send_pdu(sender, sim.modems[1].number, "hello modem1")
    assert await receiver.expect(b'+CMTI: "SM",1\r\n') == b'\r\n+CMTI: "SM",1\r\n'
    read = await receiver.command("AT+CMGR=1")
    header, pdu = read.strip().splitlines()[:2]
    raw = bytes.fromhex(pdu)
    assert header == f"+CMGR: 0,,{len(raw) - 1 - raw[0]}"  # TPDU length, without the SMSC field
    message = decode(pdu)
    assert isinstance(message, SmsDeliver)
    assert (message.number, message.text) == ("+4915550000", "hello modem1")
    listing = await receiver.command("AT+CMGL=4")
    assert listing.strip().splitlines()[0].startswith("+CMGL: 1,1,,")  # read now
    assert "+CMGL" not in await receiver.command("AT+CMGL=0")
    await receiver.command("AT+CMGD=1")
    assert "+CMS ERROR: 321" in await receiver.command("AT+CMGR=1")
    assert sim.network.sent == []
    assert sim.network.delivered[0]["text"] == "hello modem1"


async def test_cmt_delivers_directly_and_cmgd_4_deletes_all(sim: Simulator, clients: list[PtyClient]) -> None:
    receiver = clients[1]
    await receiver.command("ATE0;+CNMI=2,2,0,0,0")
    sim.inject(1, "+4917000000001", "direct")
    urc = await receiver.expect(b"\r\n", timeout=TIMEOUT) + await receiver.expect(b"\r\n")
    urc += await receiver.expect(b"\r\n")
    lines = urc.decode().split("\r\n")
    assert lines[1].startswith("+CMT: ,")
    assert decode(lines[2]).text == "direct"  # type: ignore[union-attr]
    assert sim.modems[1].storage.used == 0
    await receiver.command("AT+CNMI=2,1,0,0,0")
    for i in range(3):
        sim.inject(1, "+4917000000001", f"stored {i}")
    await async_wait_until(lambda: sim.modems[1].storage.used == 3, TIMEOUT)
    await receiver.command("AT+CMGD=1,4")
    assert sim.modems[1].storage.used == 0


async def test_inject_long_text_arrives_in_parts(sim: Simulator, clients: list[PtyClient]) -> None:
    receiver = clients[1]
    await receiver.command("ATE0")
    text = " ".join(f"word{i}" for i in range(80))
    assert sim.inject(1, "+4917000000001", text) == 4
    await receiver.expect(b'+CMTI: "SM",4\r\n')
    listing = (await receiver.command("AT+CMGL=4")).strip().splitlines()
    parts = [decode(line) for line in listing[1:8:2]]
    assert all(isinstance(p, SmsDeliver) and p.concat is not None and p.concat.total == 4 for p in parts)
    assert "".join(p.text for p in sorted(parts, key=lambda p: p.concat.sequence)) == text  # type: ignore


async def test_inject_chosen_parts_in_a_chosen_order(sim: Simulator, clients: list[PtyClient]) -> None:
    receiver = clients[1]
    await receiver.command("ATE0")
    text = " ".join(f"word{i}" for i in range(50))  # 3 parts
    assert sim.inject(1, "+4917000000001", text, parts=[3, 1]) == 2  # part 3 first, part 2 lost
    await receiver.expect(b'+CMTI: "SM",2\r\n')
    listing = (await receiver.command("AT+CMGL=4")).strip().splitlines()
    parts = [decode(line) for line in listing[1:4:2]]
    assert [p.concat.sequence for p in parts] == [3, 1]  # type: ignore[union-attr]
    assert all(p.concat.total == 3 for p in parts)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="part numbers 1..3"):
        sim.inject(1, "+4917000000001", text, parts=[4])


async def test_report_status_fault_sends_a_failed_status_report(sim: Simulator, clients: list[PtyClient]) -> None:
    # TP-Status 65 = 0x41: "permanent error, incompatible destination" (3GPP TS 23.040 9.2.3.15)
    client = clients[0]
    await client.command("ATE0;+CNMI=2,1,0,1,0")
    sim.fault(0, "report-status:65")
    [reply] = await send_pdu(client, OUTSIDE, "report me", report=True)
    reference = int(reply.split("+CMGS: ")[1].split("\r")[0])
    await client.expect(b"+CDS: ")
    pdu = (await client.expect(b"\r\n", timeout=TIMEOUT)) + await client.expect(b"\r\n")
    report = decode(pdu.decode().split("\r\n")[1])
    assert isinstance(report, SmsStatusReport)
    assert (report.reference, report.status) == (reference, 65)
    assert sim.network.parts[-1]["modem"] == 0 and sim.network.parts[-1]["message_reference"] == reference


@pytest.mark.parametrize("ds", [1, 2])
async def test_status_report_by_cds_or_cdsi(sim: Simulator, clients: list[PtyClient], ds: int) -> None:
    client = clients[0]
    await client.command(f"ATE0;+CNMI=2,1,0,{ds},0")
    [reply] = await send_pdu(client, OUTSIDE, "report me", report=True)
    reference = int(reply.split("+CMGS: ")[1].split("\r")[0])
    if ds == 1:
        await client.expect(b"+CDS: ")
        pdu = (await client.expect(b"\r\n", timeout=TIMEOUT)) + await client.expect(b"\r\n")
        report = decode(pdu.decode().split("\r\n")[1])
    else:
        await client.expect(b'+CDSI: "SM",1\r\n')
        report = decode((await client.command("AT+CMGR=1")).strip().splitlines()[1])
    assert isinstance(report, SmsStatusReport)
    assert (report.reference, report.status, report.number) == (reference, 0, OUTSIDE)


async def test_text_mode_send_and_list(sim: Simulator, clients: list[PtyClient]) -> None:
    client = clients[0]
    await client.command("ATE0;+CMGF=1")
    client.write(f'AT+CMGS="{OUTSIDE}"\r'.encode())
    await client.expect(b"> ")
    assert "+CMGS: 1" in await client.command("plain text\x1a")
    assert sim.network.sent[-1]["text"] == "plain text"
    await client.command('AT+CSCS="UCS2"')
    client.write(b'AT+CMGS="' + OUTSIDE.encode("utf-16-be").hex().upper().encode() + b'"\r')
    await client.expect(b"> ")
    await client.command("Привет".encode("utf-16-be").hex().upper() + "\x1a")
    assert sim.network.sent[-1]["text"] == "Привет"
    await client.command('AT+CSCS="GSM"')
    sim.inject(0, "+4917000000001", "text mode in")
    await client.expect(b"+CMTI")
    listing = await client.command('AT+CMGL="ALL"')
    assert '+CMGL: 1,"REC UNREAD","+4917000000001",,"' in listing and "\r\ntext mode in\r\n" in listing


async def test_text_mode_status_report_forms(sim: Simulator, clients: list[PtyClient]) -> None:
    client = clients[0]
    await client.command("ATE0;+CMGF=1;+CSMP=49,167,0,0;+CNMI=2,1,0,2,0")
    client.write(f'AT+CMGS="{OUTSIDE}"\r'.encode())
    await client.expect(b"> ")
    reference = (await client.command("report me\x1a")).split("+CMGS: ")[1].split("\r")[0]
    await client.expect(b'+CDSI: "SM",1\r\n')
    read = (await client.command("AT+CMGR=1")).strip().split("\r\n")
    assert read[0].startswith(f'+CMGR: "REC UNREAD",6,{reference},"{OUTSIDE}",145,"')
    assert read[0].endswith('",0') and read[1:] == ["", "OK"]  # no text line
    listing = (await client.command('AT+CMGL="ALL"')).strip().split("\r\n")
    assert listing[0].startswith(f'+CMGL: 1,"REC READ",6,{reference},"{OUTSIDE}",145,"')
    assert listing[1:] == ["", "OK"]
    await client.command("AT+CNMI=2,1,0,1,0")
    client.write(f'AT+CMGS="{OUTSIDE}"\r'.encode())
    await client.expect(b"> ")
    reference = (await client.command("and me\x1a")).split("+CMGS: ")[1].split("\r")[0]
    urc = await client.expect(b"\r\n+CDS: ") + await client.expect(b",0\r\n")
    assert urc.startswith(f'\r\n+CDS: 6,{reference},"{OUTSIDE}",145,"'.encode())


async def test_send_delay_holds_the_answer(tmp_path: Path) -> None:
    async with Simulator(tmp_path / "sim", send_delay=0.3) as sim:
        client = PtyClient(sim.ports[0])
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            await send_pdu(client, OUTSIDE, "slow")
            assert loop.time() - started >= 0.3
        finally:
            client.close()


async def test_client_can_close_and_reopen_the_port(sim: Simulator) -> None:
    for _ in range(3):
        client = PtyClient(sim.ports[0])
        assert (await client.command("AT")).endswith("OK\r\n")
        client.close()


async def test_ussd_and_reset(clients: list[PtyClient]) -> None:
    client = clients[0]
    await client.command("ATE0")
    await client.command('AT+CUSD=1,"*100#",15')
    assert await client.expect(b"\r\n", timeout=TIMEOUT) + await client.expect(b'",15\r\n') == \
        b'\r\n+CUSD: 0,"Balance 10.00 EUR. Valid until 31.12.2026",15\r\n'
    await client.command("AT+CFUN=1,1")
    assert await client.command("AT") == "AT\r\r\nOK\r\n"  # settings back to defaults: echo on


# --- faults -------------------------------------------------------------------------------------


async def test_hang_and_recover(sim: Simulator, clients: list[PtyClient]) -> None:
    client = clients[0]
    sim.fault(0, "hang")
    client.write(b"AT\r")
    with pytest.raises(AssertionError):
        await client.expect(b"OK", timeout=0.3)
    sim.fault(0, "recover")
    assert (await client.command("AT")).endswith("OK\r\n")


async def test_garbage_emits_invalid_utf8_once(sim: Simulator, clients: list[PtyClient]) -> None:
    client = clients[0]
    sim.fault(0, "garbage")
    noise = await client.expect(b"garbage")
    with pytest.raises(UnicodeDecodeError):
        noise.decode("utf-8")
    client.buffer.clear()
    assert (await client.command("AT")).endswith("OK\r\n")


async def test_cms_error_fails_the_next_send_only(sim: Simulator, clients: list[PtyClient]) -> None:
    sim.fault(0, "cms-error:38")
    [first] = await send_pdu(clients[0], OUTSIDE, "fails")
    assert first.endswith("\r\n+CMS ERROR: 38\r\n")
    [second] = await send_pdu(clients[0], OUTSIDE, "works")
    assert "+CMGS:" in second
    assert [r["text"] for r in sim.network.sent] == ["works"]
    with pytest.raises(ValueError, match="numeric code"):
        sim.fault(0, "cms-error:x")


async def test_no_network_and_back(sim: Simulator, clients: list[PtyClient]) -> None:
    client, receiver = clients
    await client.command("ATE0;+CREG=1")
    sim.fault(0, "no-network")
    await client.expect(b"\r\n+CREG: 0\r\n")
    assert "+CREG: 1,0" in await client.command("AT+CREG?")
    assert "+COPS: 0\r\n" in await client.command("AT+COPS?")
    [reply] = await send_pdu(client, OUTSIDE, "no service")
    assert reply.endswith("+CMS ERROR: 331\r\n")
    await send_pdu(receiver, sim.modems[0].number, "waits in the network")
    assert sim.modems[0].waiting and sim.modems[0].storage.used == 0
    sim.fault(0, "network")
    await client.expect(b"\r\n+CREG: 1\r\n")
    await client.expect(b'+CMTI: "SM",1')


async def test_sim_full_holds_incoming_until_space_frees(sim: Simulator, clients: list[PtyClient]) -> None:
    client = clients[0]
    await client.command("ATE0")
    sim.fault(0, "sim-full")
    assert '"SM",30,30' in await client.command("AT+CPMS?")
    sim.inject(0, "+4917000000001", "patience")
    await client.expect(b'+CIEV: "SMSFULL",1\r\n')
    assert sim.modems[0].waiting
    await client.command("AT+CMGD=5")
    await client.expect(b'+CMTI: "SM",5\r\n')
    assert decode((await client.command("AT+CMGR=5")).strip().splitlines()[1]).text == "patience"  # type: ignore


async def test_pin_required(sim: Simulator, clients: list[PtyClient]) -> None:
    client = clients[0]
    await client.command("ATE0;+CMEE=1")
    sim.fault(0, "pin-required")
    assert "+CPIN: SIM PIN" in await client.command("AT+CPIN?")
    assert "+CME ERROR: 11" in await client.command("AT+CIMI")
    assert "+CME ERROR: 16" in await client.command('AT+CPIN="0000"')
    await client.command('AT+CPIN="1234"')
    assert "+CPIN: READY" in await client.command("AT+CPIN?")
    assert sim.modems[0].imsi in await client.command("AT+CIMI")


async def test_unplug_gives_eio_and_replug_brings_a_new_pty_on_the_same_path(sim: Simulator,
                                                                           clients: list[PtyClient]) -> None:
    client = clients[0]
    sim.fault(0, "unplug")
    await async_wait_until(lambda: client.error is not None, TIMEOUT)
    with pytest.raises(FileNotFoundError):
        os.readlink(sim.ports[0])
    with pytest.raises(OSError):
        client.write(b"AT\r")
    sim.fault(0, "replug")
    assert os.readlink(sim.ports[0]).startswith("/dev/pts/")
    again = PtyClient(sim.ports[0])
    try:
        assert (await again.command("AT")).endswith("OK\r\n")
    finally:
        again.close()


async def test_bad_modem_index_and_unknown_fault(sim: Simulator) -> None:
    with pytest.raises(IndexError, match="modems 0..1"):
        sim.fault(2, "hang")
    with pytest.raises(ValueError, match="unknown fault 'melt'"):
        sim.fault(0, "melt")


async def test_control_socket(sim: Simulator, clients: list[PtyClient]) -> None:
    reply = await asyncio.to_thread(request, sim.directory, {"action": "inject", "modem": 1, "from": "+4917", "text": "hi"})
    assert reply == {"ok": True, "modem": 1, "parts": 1}
    await clients[1].expect(b"+CMTI")
    reply = await asyncio.to_thread(request, sim.directory, {"action": "fault", "modem": 9, "kind": "hang"})
    assert reply["ok"] is False and "no modem 9" in reply["error"]
    reply = await asyncio.to_thread(request, sim.directory, {"action": "status"})
    assert [m["number"] for m in reply["modems"]] == ["+4915550000", "+4915550001"]


async def test_control_socket_in_a_directory_too_long_for_a_socket_address(tmp_path: Path) -> None:
    directory = tmp_path / ("d" * 120) / "sim"
    async with Simulator(directory, pin="4321") as sim:
        reply = await asyncio.to_thread(request, directory, {"action": "status"})
        assert reply["ok"] and reply["modems"][0]["port"] == sim.ports[0]
        client = PtyClient(sim.ports[0])
        try:
            assert "+CPIN: SIM PIN" in await client.command("AT+CPIN?")
            await client.command('AT+CPIN="4321"')
            assert await client.command("AT+CPIN?") == 'AT+CPIN?\r\r\n+CPIN: READY\r\n\r\nOK\r\n'
            assert await client.command("AT") == "AT\r\r\nOK\r\n"  # generic: no +CPIN: READY URC
        finally:
            client.close()


# --- profile flavours ---------------------------------------------------------------------------


@pytest.mark.parametrize("profile", [name for name in profile_names() if name in FLAVOURS])
async def test_each_profile_is_detected_from_its_identity(tmp_path: Path, profile: str) -> None:
    async with Simulator(tmp_path / "sim", profile=profile) as sim:
        client = PtyClient(sim.ports[0])
        try:
            await client.command("ATE0")
            manufacturer = (await client.command("AT+CGMI")).split("\r\n")[1]
            model = (await client.command("AT+CGMM")).split("\r\n")[1]
            assert match_identity(manufacturer, model).name == profile
        finally:
            client.close()


async def test_sim800_boot_urcs_and_quoted_alpha(tmp_path: Path) -> None:
    async with Simulator(tmp_path / "sim", profile="sim800") as sim:
        fd = os.open(sim.ports[0], os.O_RDWR | os.O_NOCTTY)  # the boot lines wait in the pty
        os.close(fd)
        client = PtyClient(sim.ports[0])
        try:
            boot = await client.expect(b"SMS Ready\r\n")
            assert boot == b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\nCall Ready\r\n\r\nSMS Ready\r\n"
            await client.command("ATE0")
            sim.inject(0, "+4917000000001", "quoted")
            await client.expect(b"+CMTI")
            assert '+CMGR: 0,"",' in await client.command("AT+CMGR=1")
            assert "ERROR" in await client.command("AT+CEREG?")  # 2G only
            sim.fault(0, "pin-required")
            await client.expect(b"\r\n+CPIN: SIM PIN\r\n")
            await client.command('AT+CPIN="1234"')
            await client.expect(b"\r\n+CPIN: READY\r\n")
        finally:
            client.close()


async def test_huawei_counts_from_zero_and_interleaves_its_urcs_until_curc_0(tmp_path: Path) -> None:
    async with Simulator(tmp_path / "sim", profile="e3372") as sim:
        client = PtyClient(sim.ports[0])
        try:
            await client.command("ATE0")
            replies = [await client.command("AT") for _ in range(8)]
            assert any("^" in reply for reply in replies)
            await client.command("AT^CURC=0")
            assert [await client.command("AT") for _ in range(8)] == ["\r\nOK\r\n"] * 8
            sim.inject(0, "+4917000000001", "zero")
            await client.expect(b'+CMTI: "SM",0')
            assert "^ICCID: " + sim.modems[0].iccid in await client.command("AT^ICCID?")
        finally:
            client.close()


async def test_random_input_never_breaks_the_interpreter(sim: Simulator, clients: list[PtyClient]) -> None:
    client = clients[0]
    generator = random.Random(20261125)
    for _ in range(20):
        client.write(bytes(generator.randrange(256) for _ in range(200)))
    client.write(b"\x1b\rATE1\r")  # leave a message prompt if the noise opened one; echo back on
    await client.expect(b"ATE1\r")
    client.buffer.clear()
    assert (await client.command("AT")).endswith("\r\nOK\r\n")
    assert sim.modems[0].plugged
