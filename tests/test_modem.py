"""The Modem API over real ptys against the simulator, for every profile."""

from __future__ import annotations

import asyncio

import pytest
from modem_fixtures import PROFILES, TEST_TIMEOUTS, make_modem, next_event

from drivers.at import Priority
from drivers.errors import AtTimeout, CmsError, TransportError
from drivers.modem import IncomingSms, Modem, ModemClosed, StatusReport, StorageFull
from drivers.simulator import Simulator

OUTSIDE = "+4915112345678"
LONG_TEXT = " ".join(f"word{i}" for i in range(80))  # 479 characters: 4 GSM 7-bit parts
UNICODE_TEXT = "Pumpe 7 läuft 👍 Привет"

pytest_plugins = ["modem_fixtures"]


async def test_open_detects_the_profile_and_reads_the_identity(simulator: Simulator, profile_name: str) -> None:
    modem = make_modem(simulator, 0)
    await modem.open()
    try:
        assert modem.profile.name == profile_name
        assert modem.profile.vendor_class == modem.vendor.name
        sim_modem = simulator.modems[0]
        assert modem.identity.imei == sim_modem.imei
        assert modem.identity.imsi == sim_modem.imsi
        assert modem.identity.iccid == sim_modem.iccid
        assert modem.identity.manufacturer and modem.identity.model
    finally:
        await modem.close()


async def test_explicit_profile_name_gives_the_vendor_class_without_detection(simulator: Simulator,
                                                                             profile_name: str) -> None:
    modem = make_modem(simulator, 0, profile=profile_name)
    assert modem.profile.name == profile_name
    await modem.open()
    try:
        assert modem.profile.name == profile_name
        assert modem.vendor.name == modem.profile.vendor_class
    finally:
        await modem.close()


async def test_send_single_multipart_and_unicode_reach_the_network(simulator: Simulator, modems: list[Modem]) -> None:
    modem = modems[0]
    single = await modem.send_sms(OUTSIDE, "Pump 7 is ON")
    multipart = await modem.send_sms(OUTSIDE, LONG_TEXT)
    unicode = await modem.send_sms(OUTSIDE, UNICODE_TEXT)
    assert len(single) == 1
    assert len(multipart) == 4
    assert len(unicode) == 1
    assert all(0 <= mr <= 255 for mr in single + multipart + unicode)
    assert len(set(multipart)) == 4  # each part has its own message reference
    sent = simulator.network.sent
    texts = [(record["to"], record["text"], record["parts"]) for record in sent]
    assert (OUTSIDE, "Pump 7 is ON", 1) in texts
    assert (OUTSIDE, LONG_TEXT, 4) in texts
    assert (OUTSIDE, UNICODE_TEXT, 1) in texts


async def test_sms_arrives_by_cmti_and_stays_on_the_sim_until_deleted(simulator: Simulator,
                                                                      modems: list[Modem]) -> None:
    sender, receiver = modems
    await sender.send_sms(simulator.modems[1].number, "hello from modem0")
    event = await next_event(receiver, IncomingSms)
    assert isinstance(event, IncomingSms)
    assert event.index is not None
    assert event.error is None
    assert event.deliver is not None and event.deliver.text == "hello from modem0"
    # read again: still stored, the modem never deletes on its own
    stored = await receiver.list_messages()
    assert [m.index for m in stored] == [event.index]
    again = await receiver.read_message(event.index)
    assert again.pdu == event.pdu
    status = await receiver.storage_status()
    assert status.used == 1 and status.total >= 1
    await receiver.delete_message(event.index)
    assert await receiver.list_messages() == []
    assert (await receiver.storage_status()).used == 0


async def test_injected_multipart_sms_arrives_as_one_event_per_part(simulator: Simulator,
                                                                   modems: list[Modem]) -> None:
    receiver = modems[1]
    simulator.inject(1, "+4917000000001", LONG_TEXT)
    events = [await next_event(receiver, IncomingSms) for _ in range(4)]
    parts = sorted(e.deliver.concat.sequence for e in events if e.deliver and e.deliver.concat)  # type: ignore[union-attr]
    assert parts == [1, 2, 3, 4]
    assert "".join(e.deliver.text for e in sorted(events, key=lambda e: e.deliver.concat.sequence)) == LONG_TEXT  # type: ignore[union-attr]
    assert all(e.deliver.number == "+4917000000001" for e in events)  # type: ignore[union-attr]


async def test_sms_arrives_by_cmt_when_the_modem_delivers_directly(simulator: Simulator,
                                                                  modems: list[Modem]) -> None:
    receiver = modems[1]
    await receiver.command("AT+CNMI=2,2,0,0,0")
    simulator.inject(1, "+4917000000002", "direct")
    event = await next_event(receiver, IncomingSms)
    assert isinstance(event, IncomingSms)
    assert event.index is None
    assert event.deliver is not None and event.deliver.text == "direct"
    assert await receiver.list_messages() == []  # nothing was stored


async def test_status_report_arrives_for_a_message_sent_with_report(simulator: Simulator,
                                                                   modems: list[Modem]) -> None:
    sender = modems[0]
    [reference] = await sender.send_sms(simulator.modems[1].number, "report me", report=True)
    event = await next_event(sender, StatusReport)
    assert isinstance(event, StatusReport)
    assert event.error is None
    assert event.report is not None
    assert event.report.reference == reference
    assert event.report.status == 0  # delivered
    if sender.profile.cnmi.endswith(",2,0"):  # ds=2: stored and announced by +CDSI
        assert event.index is not None
    else:  # ds=1: routed directly by +CDS
        assert event.index is None


async def test_signal_registration_operator_and_smsc(simulator: Simulator, modems: list[Modem]) -> None:
    modem = modems[0]
    signal = await modem.signal()
    assert signal.rssi is not None and 0 <= signal.rssi <= 31
    assert signal.dbm == -113 + 2 * signal.rssi
    registration = await modem.registration()
    assert registration.registered
    operator = await modem.operator()
    assert operator.numeric and operator.numeric.isdigit() and len(operator.numeric) in (5, 6)
    assert operator.name
    assert await modem.sim_state() == "READY"
    smsc = await modem.smsc()
    assert smsc and smsc.lstrip("+").isdigit()


async def test_registration_loss_is_seen(simulator: Simulator, modems: list[Modem]) -> None:
    modem = modems[0]
    simulator.fault(0, "no-network")
    registration = await modem.registration()
    assert not registration.registered
    simulator.fault(0, "network")
    assert (await modem.registration()).registered


async def test_a_full_sim_is_announced_as_a_storage_full_event_with_the_vendors_line(
        simulator: Simulator, modems: list[Modem]) -> None:
    modem = modems[0]
    simulator.fault(0, "sim-full")
    simulator.inject(0, OUTSIDE, "no room for this one")  # the modem says so in its own words
    event = await next_event(modem, StorageFull)
    assert isinstance(event, StorageFull)
    assert event.modem_id == modem.modem_id and event.line == simulator.flavour.full_urc


async def test_ussd_returns_the_network_answer(simulator: Simulator, modems: list[Modem]) -> None:
    reply = await modems[0].ussd("*100#")
    assert reply.text
    assert reply.status in (0, 1, 2)


async def test_a_urc_in_the_middle_of_commands_is_neither_lost_nor_taken_for_a_reply(
    simulator: Simulator, modems: list[Modem]
) -> None:
    receiver = modems[1]

    async def poll() -> list[int | None]:
        return [(await receiver.signal()).rssi for _ in range(30)]

    polling = asyncio.create_task(poll())
    for i in range(3):
        simulator.inject(1, "+4917000000003", f"during poll {i}")
    results = await polling
    assert all(r is not None and 0 <= r <= 31 for r in results)
    texts = {(await next_event(receiver, IncomingSms)).deliver.text for _ in range(3)}  # type: ignore[union-attr]
    assert texts == {"during poll 0", "during poll 1", "during poll 2"}


async def test_cms_error_fault_raises_cms_error_with_its_code(simulator: Simulator, modems: list[Modem]) -> None:
    simulator.fault(0, "cms-error:38")
    with pytest.raises(CmsError) as info:
        await modems[0].send_sms(OUTSIDE, "will fail")
    assert info.value.code == 38
    assert info.value.transient
    # the next send works again
    assert len(await modems[0].send_sms(OUTSIDE, "works again")) == 1


async def test_a_hang_times_out_and_the_modem_recovers(simulator: Simulator, modems: list[Modem]) -> None:
    modem = modems[0]
    simulator.fault(0, "hang")
    with pytest.raises(AtTimeout):
        await modem.ping()
    simulator.fault(0, "recover")
    for _ in range(3):  # a reply owed to the timed-out command may still arrive first
        try:
            await modem.ping()
            break
        except AtTimeout:
            continue
    await modem.ping()
    assert (await modem.signal()).rssi is not None


async def test_the_port_vanishing_puts_modem_closed_on_events(simulator: Simulator, modems: list[Modem]) -> None:
    modem = modems[0]
    simulator.fault(0, "unplug")
    event = await next_event(modem, ModemClosed)
    assert isinstance(event, ModemClosed) and event.modem_id == "modem0"
    with pytest.raises(TransportError):
        await modem.ping()
    simulator.fault(0, "replug")
    await modem.open()
    await modem.ping()


async def test_garbage_bytes_do_not_break_the_modem(simulator: Simulator, modems: list[Modem]) -> None:
    modem = modems[0]
    simulator.fault(0, "garbage")
    for _ in range(3):
        try:
            await modem.ping()
            break
        except Exception:  # noqa: BLE001 - garbage may spoil one reply, never the engine
            continue
    assert (await modem.signal()).rssi is not None


async def test_ping_runs_at_health_priority(simulator: Simulator, modems: list[Modem]) -> None:
    # a queued POLL command must not delay a HEALTH ping behind it
    modem = modems[0]
    listing = asyncio.create_task(modem.command("AT+CMGL=4", priority=Priority.POLL))
    await modem.ping()
    await listing


@pytest.mark.parametrize("profile_name", ["generic"], indirect=True)
async def test_timeouts_can_be_overridden_per_modem(simulator: Simulator) -> None:
    modem = make_modem(simulator, 0, timeouts={**TEST_TIMEOUTS, "command": 0.3})
    await modem.open()
    try:
        assert modem.timeout("command") == 0.3
        simulator.fault(0, "hang")
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(AtTimeout):
            await modem.ping()
        assert loop.time() - started < 2.0
    finally:
        await modem.close()


def test_every_profile_is_covered() -> None:
    assert set(PROFILES) == {"generic", "sim800", "sim7600", "ec25", "e3372"}
