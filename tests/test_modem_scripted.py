"""Modem behaviour that needs exact control of the replies: SIM PIN handling, malformed PDUs, URC forms,
vendor USSD packing, detection. Runs over a real pty with a scripted responder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from engine_fixtures import PtyResponder, pty_responder
from waiting import async_wait_until

from drivers.errors import PinError
from drivers.modem import IncomingSms, Modem, StatusReport, forget_pin_rejection, pin_rejected
from drivers.pdu import encode_deliver
from drivers.profiles import load_profile
from drivers.vendors import HuaweiVendor, Vendor, pack_ussd, unpack_ussd

OK = b"\r\nOK\r\n"
TIMEOUTS = {"command": 1.0, "sync": 0.3, "ussd": 2.0}
PIN = "1234"

# An SMS-DELIVER from +491701234567, "hello", with the SMSC field, as +CMT/+CMGR carry it.
DELIVER_PDU = encode_deliver(
    "+491701234567", "hello", timestamp=datetime(2026, 8, 21, 18, 45, tzinfo=UTC), smsc="+491710760000"
)[0]


def script_generic(responder: PtyResponder, *, manufacturer: bytes = b"ACME", model: bytes = b"M1") -> None:
    for command in ("AT", "ATE0", "AT+CMEE=1", "AT+CMGF=0", 'AT+CPMS="SM","SM","SM"', "AT+CNMI=2,1,0,1,0",
                    "AT+CNMI=2,1,0,2,0", "AT+CREG=2", "AT+CGREG=2", "AT+CEREG=2", "AT^CURC=0"):
        responder.on(command, OK)
    responder.on("AT+CGMI", b"\r\n" + manufacturer + b"\r\n" + OK)
    responder.on("AT+CGMM", b"\r\n" + model + b"\r\n" + OK)
    responder.on("AT+CGMR", b"\r\nR1\r\n" + OK)
    responder.on("AT+CGSN", b"\r\n867000000000001\r\n" + OK)
    responder.on("AT+CIMI", b"\r\n262011234567890\r\n" + OK)
    responder.on("AT+CCID", b"\r\n+CCID: 89490200001234567890\r\n" + OK)
    responder.on("AT+CPIN?", b"\r\n+CPIN: READY\r\n" + OK)


class SimLock:
    """A SIM that wants a PIN: answers like a real one, and counts every AT+CPIN= attempt."""

    def __init__(self, responder: PtyResponder, *, correct: str = PIN, state: str = "SIM PIN") -> None:
        self.state = state
        self.correct = correct
        self.attempts: list[str] = []
        responder.on("AT+CPIN?", lambda _cmd: f"\r\n+CPIN: {self.state}\r\n\r\nOK\r\n".encode())
        for pin in ("1234", "0000", "9999"):
            responder.on(f'AT+CPIN="{pin}"', self._enter)

    def _enter(self, command: str) -> bytes:
        pin = command.split('"')[1]
        self.attempts.append(pin)
        if self.state == "SIM PIN" and pin == self.correct:
            self.state = "READY"
            return OK
        return b"\r\n+CME ERROR: 16\r\n"  # incorrect password


@pytest.fixture
async def responder() -> AsyncIterator[PtyResponder]:
    async with pty_responder() as scripted:
        script_generic(scripted)
        yield scripted
        forget_pin_rejection(scripted.path)


async def test_pin_is_not_entered_when_the_sim_is_ready(responder: PtyResponder) -> None:
    modem = Modem(responder.path, profile="generic", pin=PIN, timeouts=TIMEOUTS)
    await modem.open()
    await modem.close()
    assert not [c for c in responder.received if c.upper().startswith("AT+CPIN=")]


async def test_pin_is_entered_once_when_the_sim_asks_for_it(responder: PtyResponder) -> None:
    lock = SimLock(responder)
    modem = Modem(responder.path, profile="generic", pin=PIN, timeouts=TIMEOUTS)
    await modem.open()
    await modem.close()
    assert lock.attempts == [PIN]
    assert lock.state == "READY"


async def test_a_rejected_pin_is_never_retried_not_even_by_a_new_open(responder: PtyResponder) -> None:
    lock = SimLock(responder, correct="0000")
    modem = Modem(responder.path, profile="generic", pin="9999", timeouts=TIMEOUTS)
    with pytest.raises(PinError, match="rejected"):
        await modem.open()
    assert lock.attempts == ["9999"]
    assert pin_rejected(responder.path) == "9999"
    # the health supervisor reopens the same modem: no second attempt
    with pytest.raises(PinError, match="not trying it again"):
        await modem.open()
    # nor does a fresh Modem object on the same port
    with pytest.raises(PinError, match="not trying it again"):
        await Modem(responder.path, profile="generic", pin="9999", timeouts=TIMEOUTS).open()
    assert lock.attempts == ["9999"]


async def test_a_puk_locked_sim_is_never_touched(responder: PtyResponder) -> None:
    lock = SimLock(responder, state="SIM PUK")
    with pytest.raises(PinError, match="PUK"):
        await Modem(responder.path, profile="generic", pin=PIN, timeouts=TIMEOUTS).open()
    assert lock.attempts == []


async def test_a_sim_asking_for_a_pin_with_none_configured_raises_pin_error(responder: PtyResponder) -> None:
    lock = SimLock(responder)
    with pytest.raises(PinError, match="none is configured"):
        await Modem(responder.path, profile="generic", pin=None, timeouts=TIMEOUTS).open()
    assert lock.attempts == []


async def test_auto_detection_switches_to_the_vendor_class(responder: PtyResponder) -> None:
    script_generic(responder, manufacturer=b"huawei", model=b"E3372")
    responder.on("AT^ICCID?", b"\r\n^ICCID: 89490200001234567890\r\n" + OK)
    modem = Modem(responder.path, timeouts=TIMEOUTS)
    assert type(modem.vendor) is Vendor
    await modem.open()
    try:
        assert modem.profile.name == "e3372"
        assert isinstance(modem.vendor, HuaweiVendor)
        assert modem.identity.iccid == "89490200001234567890"
        assert "AT^CURC=0" in responder.received  # the profile's init command ran
    finally:
        await modem.close()


async def test_a_named_profile_constructs_its_vendor_class() -> None:
    assert type(Modem("/dev/null", profile="e3372").vendor) is HuaweiVendor
    assert type(Modem("/dev/null", profile="ec25").vendor) is Vendor


def test_an_unknown_vendor_class_is_refused_naming_the_profile() -> None:
    profile = replace(load_profile("ec25"), vendor_class="nokia")
    with pytest.raises(ValueError, match="'ec25'.*unknown vendor_class 'nokia'.*known: generic, huawei"):
        Modem("/dev/null", profile=profile)


@pytest.mark.parametrize(
    ("text", "packed"),
    [("*100#", "AA180C3602"), ("*101#", "AA182C3602"), ("1234567", "31D98C56B3DD1A")],
)
def test_huawei_ussd_strings_are_gsm7_packed_hex(text: str, packed: str) -> None:
    assert pack_ussd(text) == packed
    assert unpack_ussd(packed) == text


async def test_huawei_modem_sends_packed_ussd_and_unpacks_the_answer(responder: PtyResponder) -> None:
    script_generic(responder, manufacturer=b"huawei", model=b"E3372")
    answer = pack_ussd("Balance: 5.00 EUR")
    responder.on('AT+CUSD=1,"AA180C3602",15', [OK, f'\r\n+CUSD: 0,"{answer}",15\r\n'.encode()])
    modem = Modem(responder.path, profile="e3372", timeouts=TIMEOUTS)
    await modem.open()
    try:
        reply = await modem.ussd("*100#")
        assert reply.text == "Balance: 5.00 EUR"
        assert reply.status == 0
    finally:
        await modem.close()


async def test_an_undecodable_pdu_still_arrives_with_an_error(responder: PtyResponder) -> None:
    modem = Modem(responder.path, profile="generic", timeouts=TIMEOUTS)
    await modem.open()
    try:
        responder.push(b"\r\n+CMT: ,23\r\n07919471060040F304FFFF\r\n")
        event = await asyncio.wait_for(modem.events.get(), 2)
        assert isinstance(event, IncomingSms)
        assert event.deliver is None and event.error and "undecodable" in event.error
        assert event.pdu == "07919471060040F304FFFF"
        responder.push(f"\r\n+CMT: ,{len(DELIVER_PDU) // 2 - 8}\r\n{DELIVER_PDU}\r\n".encode())
        event = await asyncio.wait_for(modem.events.get(), 2)
        assert isinstance(event, IncomingSms) and event.deliver is not None
        assert event.deliver.number == "+491701234567" and event.deliver.text == "hello"
        responder.push(b"\r\n+CDS: 6\r\nZZZZ\r\n")
        report = await asyncio.wait_for(modem.events.get(), 2)
        assert isinstance(report, StatusReport) and report.report is None and report.error
    finally:
        await modem.close()


async def test_a_stored_message_that_cannot_be_read_still_produces_an_event(responder: PtyResponder) -> None:
    responder.on("AT+CMGR=7", b"\r\n+CMS ERROR: 321\r\n")  # invalid memory index
    modem = Modem(responder.path, profile="generic", timeouts=TIMEOUTS)
    await modem.open()
    try:
        responder.push(b'\r\n+CMTI: "SM",7\r\n')
        event = await asyncio.wait_for(modem.events.get(), 3)
        assert isinstance(event, IncomingSms)
        assert event.index == 7 and event.storage == "SM"
        assert event.deliver is None and event.error and "321" in event.error
        assert "AT+CMGD=7" not in responder.received  # never deleted by the driver
    finally:
        await modem.close()


async def test_registration_urcs_update_the_cached_state_but_query_replies_are_not_taken_for_urcs(
    responder: PtyResponder,
) -> None:
    responder.on("AT+CREG?", b'\r\n+CREG: 2,1,"00A1","0001B2C",7\r\n' + OK)
    modem = Modem(responder.path, profile="generic", timeouts=TIMEOUTS)
    await modem.open()
    try:
        responder.push(b'\r\n+CREG: 5,"00A1","0001B2C",7\r\n')
        await async_wait_until(lambda: modem.registration_state is not None, timeout=2, what="+CREG URC")
        assert modem.registration_state is not None and modem.registration_state.roaming
        registration = await modem.registration()
        assert registration.status == 1 and registration.registered and not registration.roaming
    finally:
        await modem.close()


async def test_soft_reset_sends_the_profile_reset_command_and_initialises_again(responder: PtyResponder) -> None:
    responder.on("AT+CFUN=1,1", OK)
    modem = Modem(responder.path, profile="generic", timeouts=TIMEOUTS)
    await modem.open()
    try:
        before = len(responder.received)
        await modem.soft_reset()
        after = responder.received[before:]
        assert after[0] == "AT+CFUN=1,1"
        assert "AT+CMGF=0" in after and "AT+CNMI=2,1,0,1,0" in after  # initialised again
        await modem.ping()
    finally:
        await modem.close()


async def test_soft_reset_of_a_re_enumerating_modem_waits_for_its_port_to_return(
    responder: PtyResponder, tmp_path: Path
) -> None:
    link = tmp_path / "ttyUSB2"
    link.symlink_to(responder.path)
    responder.on("AT+CFUN=1,1", OK)
    modem = Modem(str(link), profile="sim7600", timeouts=TIMEOUTS)
    modem.vanish_grace = 2.0
    responder.on("AT+CICCID", b"\r\n+ICCID: 89490200001234567890\r\n" + OK)
    responder.on('AT+CSCS="IRA"', OK)
    await modem.open()
    try:
        async def replug() -> None:
            await async_wait_until(lambda: "AT+CFUN=1,1" in responder.received, timeout=2, what="reset")
            link.unlink()  # the USB device goes away ...
            await asyncio.sleep(0.3)
            link.symlink_to(responder.path)  # ... and enumerates again

        replugging = asyncio.create_task(replug())
        await modem.soft_reset()
        await replugging
        await modem.ping()
        assert modem.identity.iccid == "89490200001234567890"
    finally:
        await modem.close()
