"""Inbound: the real Modem on the simulator's ptys, a real store file, ``Inbound`` in between.

The invariant under test: a received SMS leaves the SIM only after the store committed it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modem_fixtures import TEST_TIMEOUTS
from store_helpers import connection
from waiting import async_wait_until

from appliance.dispatcher import Dispatcher
from appliance.inbound import Inbound
from appliance.store import OutboundRequest, Store
from drivers.calls import CallEnded, IncomingCall
from drivers.modem import IncomingSms, Modem
from drivers.pdu import decode, encode_deliver, encode_submit
from drivers.simulator import Simulator

LONG_TEXT = "Station 7 reports low pressure in the main pump, please check the valves. " * 3


@pytest.fixture(params=["generic", "sim800"])
async def sim(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", modems=1, profile=request.param, sim_slots=10, control=False) as simulator:
        yield simulator


@pytest.fixture
def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "smsgw.db")
    yield s  # type: ignore[misc]
    s.close()


@pytest.fixture
async def modem(sim: Simulator) -> AsyncIterator[Modem]:
    m = Modem(sim.ports[0], modem_id="sim0", profile=sim.profile.name, timeouts=dict(TEST_TIMEOUTS))
    await m.open()
    try:
        yield m
    finally:
        await m.close()


@pytest.fixture
async def inbound(store: Store) -> AsyncIterator[Inbound]:
    ib = Inbound(store, sweep_interval=3600.0)
    yield ib
    await ib.stop()


def slots(sim: Simulator) -> dict[int, str]:
    return {index: sms.pdu for index, sms in sim.modems[0].storage}


def texts(store: Store) -> list[str]:
    return sorted(str(row["text"]) for row in store.inbox(100))


class Witness:
    """Checks, at every commit and every delete, that the order is commit-then-delete."""

    def __init__(self, store: Store, modem: Modem, sim: Simulator) -> None:
        self.violations: list[str] = []
        self.commits = 0
        self.deletes = 0
        commit, delete = store.add_incoming_part, modem.delete_message

        def add_incoming_part(modem_id: str, pdu: str, *args: object) -> int:
            result = commit(modem_id, pdu, *args)  # type: ignore[arg-type]
            self.commits += 1
            return result

        async def delete_message(index: int) -> None:
            pdu = slots(sim).get(index)
            if pdu is not None:
                known = connection(store).execute("SELECT 1 FROM inbox_part WHERE pdu = ?", (pdu.upper(),)).fetchone()
                if known is None:
                    self.violations.append(f"slot {index} deleted before its commit")
            self.deletes += 1
            await delete(index)

        store.add_incoming_part = add_incoming_part  # type: ignore[method-assign]
        modem.delete_message = delete_message  # type: ignore[method-assign]


async def test_sms_announced_by_cmti_is_committed_then_deleted(sim: Simulator, store: Store, modem: Modem,
                                                               inbound: Inbound) -> None:
    witness = Witness(store, modem, sim)
    inbound.add_modem(modem)
    sim.inject(0, "+4917012345678", "hello gateway")
    sim.inject(0, "+4917012345679", LONG_TEXT)
    await async_wait_until(lambda: texts(store) == sorted(["hello gateway", LONG_TEXT]), timeout=5)
    await async_wait_until(lambda: not slots(sim), timeout=5, what="slots freed")
    assert witness.violations == [] and witness.commits >= 3 and witness.deletes >= 3
    (event,) = [e.payload for e in store.events_pending() if e.payload.get("text") == "hello gateway"]
    assert event["from"] == "+4917012345678" and event["modem"] == "sim0"


async def test_a_failed_commit_leaves_the_sms_on_the_sim_for_the_next_sweep(
    sim: Simulator, store: Store, modem: Modem
) -> None:
    broken = Inbound(store, sweep_interval=3600.0)
    real = store.add_incoming_part

    def failing(*args: object) -> int:
        raise OSError("disk full")

    store.add_incoming_part = failing  # type: ignore[method-assign]
    broken.add_modem(modem)
    sim.inject(0, "+4917012345678", "keep me")
    await async_wait_until(lambda: slots(sim), timeout=5)
    await asyncio.sleep(0.2)  # the event was handled (and failed): the slot must still be there
    assert len(slots(sim)) == 1 and texts(store) == []
    await broken.stop()
    store.add_incoming_part = real  # type: ignore[method-assign]
    fresh = Inbound(store, sweep_interval=3600.0)
    try:
        assert await fresh.sweep(modem) == 1
    finally:
        await fresh.stop()
    assert texts(store) == ["keep me"] and slots(sim) == {}


async def test_a_stale_event_never_deletes_a_newer_sms_in_a_reused_slot(
    sim: Simulator, store: Store, modem: Modem, inbound: Inbound
) -> None:
    sim.inject(0, "+4917000000001", "first")
    await async_wait_until(lambda: slots(sim), timeout=5)
    [(index, first_pdu)] = slots(sim).items()
    stale = await modem.events.get()  # the +CMTI read of "first"
    assert isinstance(stale, IncomingSms) and stale.index == index
    assert await inbound.sweep(modem) == 1  # the sweep took "first" and freed the slot
    sim.inject(0, "+4917000000002", "second")  # ... which "second" now occupies
    await async_wait_until(lambda: slots(sim).get(index, first_pdu) != first_pdu, timeout=5)
    await inbound.handle_sms(modem, stale)  # the stale event comes late
    assert index in slots(sim), "the uncommitted 'second' was deleted"
    inbound.add_modem(modem)  # its own event takes "second" normally
    await async_wait_until(lambda: texts(store) == ["first", "second"] and not slots(sim), timeout=5)


async def test_sweep_takes_stored_messages_and_keeps_undecodable_ones(
    sim: Simulator, store: Store, modem: Modem, inbound: Inbound
) -> None:
    storage = sim.modems[0].storage
    (good,) = encode_deliver("+4917055555555", "stored while away", timestamp=sim.network.now())
    storage.add(1, good)
    storage.add(0, "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07")
    storage.add(0, "0011FFFF")  # truncated garbage
    taken = await inbound.sweep(modem)
    assert taken == 3 and slots(sim) == {}
    rows = {row["text"] or "": row for row in store.inbox(10)}
    assert "stored while away" in rows
    errors = [row for row in store.inbox(10) if row["error"]]
    assert len(errors) == 1 and "0011FFFF" in [e.payload.get("pdu") for e in store.events_pending()
                                               if e.topic == "received"]


async def test_a_part_committed_but_not_deleted_before_a_crash_is_stored_once(
    sim: Simulator, store: Store, modem: Modem, inbound: Inbound
) -> None:
    storage = sim.modems[0].storage
    (twin,) = encode_deliver("+4917055555555", "twice in one second", timestamp=sim.network.now())
    first, second = storage.add(1, twin), storage.add(1, twin)  # the same SMS sent twice: two slots
    assert first is not None and second is not None
    # the previous process committed the first slot and died before its AT+CMGD
    store.add_incoming_part("sim0", twin, decode(twin), None, store.clock(), first)  # type: ignore[arg-type]
    assert await inbound.sweep(modem) == 2 and slots(sim) == {}
    assert texts(store) == ["twice in one second"] * 2  # the re-read slot once, the twin once


async def test_full_sim_of_stored_outgoing_messages_is_cleared_and_waiting_sms_arrive(
    sim: Simulator, store: Store, modem: Modem, inbound: Inbound
) -> None:
    storage = sim.modems[0].storage
    (draft,) = encode_submit("+4917066666666", "old draft")
    while storage.add(3, draft.pdu) is not None:
        pass
    sim.inject(0, "+4917077777777", "held by the network")  # no room: the network holds it
    assert sim.modems[0].waiting
    inbound.add_modem(modem)  # sweeps at start: full of stored outgoing messages -> cleared
    await async_wait_until(lambda: texts(store) == ["held by the network"], timeout=5)
    await async_wait_until(lambda: not slots(sim), timeout=5)
    audit = store.audit_log(10, kind="sim-storage-full")
    assert audit and audit[0]["detail"]["cleared"] == storage.capacity


async def test_status_reports_mark_the_message_delivered_and_free_their_slot(
    sim: Simulator, store: Store, modem: Modem, inbound: Inbound
) -> None:
    dispatcher = Dispatcher(store, [modem], poll_interval=0.05)
    (queued,) = store.enqueue([OutboundRequest(to="+4915112345678", text=LONG_TEXT, source="t", report=True)])
    inbound.add_modem(modem)
    await dispatcher.start()
    try:
        await async_wait_until(lambda: store.message(queued.id)["state"] == "delivered", timeout=5)  # type: ignore[index]
    finally:
        await dispatcher.stop()
    assert all(part.state == "delivered" for part in store.parts(queued.id))
    assert inbound.reports >= 2  # a report can be seen twice (its +CDSI and a sweep): harmless
    await async_wait_until(lambda: not slots(sim), timeout=5)  # +CDSI slots (sim800) are deleted too


async def test_storage_full_urc_triggers_a_sweep_that_makes_room(
    sim: Simulator, store: Store, modem: Modem, inbound: Inbound
) -> None:
    inbound.add_modem(modem)  # the start sweep runs on an empty SIM; the next is an hour away
    await asyncio.sleep(0.1)
    sim.fault(0, "sim-full")  # filled with read messages, unseen by the modem's events
    fillers = len(slots(sim))
    assert fillers > 1
    sim.inject(0, "+4917088888888", "arrives once there is room")  # refused: the modem announces it is full
    await async_wait_until(lambda: "arrives once there is room" in texts(store), timeout=5,
                           what="the held SMS after the storage-full sweep")
    await async_wait_until(lambda: not slots(sim), timeout=5)
    # the fillers were taken too (identical PDUs in distinct slots: one inbox message each), and every
    # slot was freed
    assert texts(store) == ["arrives once there is room"] + ["old message"] * fillers


async def test_incoming_calls_are_handed_to_on_call(sim: Simulator, store: Store, modem: Modem) -> None:
    calls: list[IncomingCall | CallEnded] = []
    inbound = Inbound(store, sweep_interval=3600.0, on_call=calls.append)
    inbound.add_modem(modem)
    try:
        sim.call(0, "+4917099999999", rings=1000)
        await async_wait_until(lambda: calls, timeout=5, what="the IncomingCall")
        await modem.hang_up()
        await async_wait_until(lambda: len(calls) == 2, timeout=5, what="the CallEnded")
    finally:
        await inbound.stop()
    first, second = calls
    assert isinstance(first, IncomingCall) and first.number == "+4917099999999" and first.modem_id == "sim0"
    assert isinstance(second, CallEnded) and second.reason == "hung-up"
