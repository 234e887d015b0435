"""The dispatcher on a real store file, driving a recording test double of the Modem send interface.

``RecordingModem`` implements what the dispatcher uses of ``drivers.modem.Modem`` (``modem_id`` and
``send_pdu``), records the parts it was given and raises the errors a test scripts. The end-to-end
test with the real Modem over the simulator is in ``test_dispatcher_modem.py``.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from store_helpers import T0, Clock, request
from waiting import async_wait_until

from appliance.dispatcher import Dispatcher, ModemLimits
from appliance.store import Store
from drivers.errors import AtTimeout, TransportError, error_from_final
from drivers.pdu import SubmitPart, decode

pytest_plugins = ["store_fixtures"]

LONG_TEXT = "The pump in station 7 reports low pressure. " * 8  # 352 GSM 7-bit characters: 3 parts


class RecordingModem:
    """Test double of the Modem send interface: records parts, returns TP-MRs, raises scripted errors."""

    def __init__(self, modem_id: str, errors: list[BaseException | None] | None = None,
                 first_reference: int = 0, hold_after: int | None = None) -> None:
        self.modem_id = modem_id
        self.sent: list[SubmitPart] = []
        self.errors: deque[BaseException | None] = deque(errors or [])
        self.reference = first_reference
        self.gate: asyncio.Event | None = None  # when set, a send waits for it
        self.hold_after = hold_after  # with a gate: only sends after this many parts wait
        self.waiting = asyncio.Event()  # set while a send waits at the gate
        self.in_flight = 0
        self.max_in_flight = 0

    async def send_pdu(self, part: SubmitPart, *, ready: Callable[[], Awaitable[None]] | None = None,
                       written: Callable[[], None] | None = None) -> int:
        """As ``Modem.send_pdu``: AT+CMGS (here: the call), ``ready`` awaited before the PDU is taken,
        ``written`` called once it is."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if ready is not None:
                await ready()
            if written is not None:
                written()  # the PDU went to the modem: the gate below is the network taking it
            if self.gate is not None and len(self.sent) >= (self.hold_after or 0):
                self.waiting.set()
                await self.gate.wait()
            await asyncio.sleep(0)
            if self.errors:
                error = self.errors.popleft()
                if error is not None:
                    raise error
            self.sent.append(part)
            self.reference = (self.reference + 1) % 256
            return self.reference
        finally:
            self.in_flight -= 1


def recipients(modem: RecordingModem) -> list[str]:
    return [decode(part.pdu).number for part in modem.sent]  # type: ignore[union-attr]


def cms(code: int) -> BaseException:
    return error_from_final(f"+CMS ERROR: {code}", "AT+CMGS=20")


@pytest.fixture
async def make_dispatcher(store: Store, clock: Clock) -> AsyncIterator[Callable[..., Dispatcher]]:
    started: list[Dispatcher] = []

    def make(*modems: RecordingModem, **kw: object) -> Dispatcher:
        kw.setdefault("clock", clock)
        kw.setdefault("poll_interval", 0.05)
        kw.setdefault("backoff_jitter", 0.0)
        kw.setdefault("lease", 30.0)
        kw.setdefault("send_timeout", 5.0)
        dispatcher = Dispatcher(store, modems, **kw)  # type: ignore[arg-type]
        started.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in started:
        await dispatcher.stop(timeout=2.0)


def state(store: Store, message_id: int) -> str:
    row = store.message(message_id)
    assert row is not None
    return str(row["state"])


async def wait_state(store: Store, message_id: int, wanted: str, timeout: float = 5.0) -> None:
    await async_wait_until(lambda: state(store, message_id) == wanted, timeout=timeout,
                           what=f"message {message_id} {wanted}")


# --- sending ---------------------------------------------------------------------------------------


async def test_queued_message_is_encoded_sent_and_marked_sent(store: Store, make_dispatcher) -> None:
    modem = RecordingModem("sim0", first_reference=40)
    (queued,) = store.enqueue([request("+491701234567", "hello world")])
    await make_dispatcher(modem).start()
    await wait_state(store, queued.id, "sent")
    (part,) = modem.sent
    message = decode(part.pdu)
    assert (message.number, message.text) == ("+491701234567", "hello world")  # type: ignore[union-attr]
    assert [p.message_reference for p in store.parts(queued.id)] == [41]
    assert [e.payload["state"] for e in store.events_pending()] == ["queued", "sending", "sent"]


async def test_multipart_message_uses_a_concat_reference_from_its_id_and_requests_reports(
    store: Store, make_dispatcher
) -> None:
    modem = RecordingModem("sim0")
    (queued,) = store.enqueue([request("+491701234567", LONG_TEXT, report=True)])
    await make_dispatcher(modem).start()
    await wait_state(store, queued.id, "sent")
    decoded = [decode(part.pdu) for part in modem.sent]
    assert [(m.concat.reference, m.concat.sequence, m.concat.total) for m in decoded] == [  # type: ignore[union-attr]
        (queued.id % 256, 1, 3), (queued.id % 256, 2, 3), (queued.id % 256, 3, 3)]
    assert all(m.report_requested for m in decoded)  # type: ignore[union-attr]
    assert "".join(m.text for m in decoded) == LONG_TEXT  # type: ignore[union-attr]
    assert [p.message_reference for p in store.parts(queued.id)] == [1, 2, 3]


async def test_a_message_language_overrides_the_configured_national_language(store: Store, make_dispatcher) -> None:
    modem = RecordingModem("sim0")
    text = "Dondurucu 3 ısındı: şu an 12 derece, eşik 4 derece."  # ı ş: Turkish tables, not Spanish ones
    own, configured = store.enqueue([request("+491701234567", text, language="tr"),
                                     request("+491701234568", text)])
    await make_dispatcher(modem, national_language="es").start()
    await wait_state(store, own.id, "sent")
    await wait_state(store, configured.id, "sent")
    by_number = {m.number: m for m in (decode(part.pdu) for part in modem.sent)}  # type: ignore[union-attr]
    turkish, spanish = by_number["+491701234567"], by_number["+491701234568"]
    assert turkish.encoding == "gsm7" and 1 in turkish.language_tables and turkish.text == text  # type: ignore[union-attr]
    assert spanish.encoding == "ucs2" and spanish.text == text  # type: ignore[union-attr]


async def test_high_before_normal_before_low_and_fifo_within_a_priority(store: Store, make_dispatcher) -> None:
    store.enqueue([
        request("+491700000001", priority="low"),
        request("+491700000002"),
        request("+491700000003", priority="high"),
        request("+491700000004"),
    ])
    modem = RecordingModem("sim0")
    await make_dispatcher(modem).start()
    await async_wait_until(lambda: len(modem.sent) == 4, timeout=5)
    assert recipients(modem) == ["+491700000003", "+491700000002", "+491700000004", "+491700000001"]


async def test_enqueue_wakes_an_idle_dispatcher_without_waiting_for_the_poll(store: Store, make_dispatcher) -> None:
    modem = RecordingModem("sim0")
    await make_dispatcher(modem, poll_interval=3600.0).start()
    await asyncio.sleep(0.05)  # let the worker go idle on its wake event
    (queued,) = store.enqueue([request()])
    await wait_state(store, queued.id, "sent", timeout=2.0)


async def test_a_held_message_wakes_the_dispatcher_when_due_without_waiting_for_the_poll(
        store: Store, make_dispatcher, clock: Clock) -> None:
    """``send_at`` is the message's next_attempt_at: the idle worker sleeps until then (next_due_at),
    not until the next poll, and claims nothing before."""
    modem = RecordingModem("sim0")
    (held,) = store.enqueue([request(send_at=T0 + 0.3, message_class=0)])
    await make_dispatcher(modem, poll_interval=3600.0).start()
    await asyncio.sleep(0.05)  # let the worker go idle: nothing is due
    assert modem.sent == [] and state(store, held.id) == "queued"
    clock.advance(0.3)  # no enqueue, no wake event: only the worker's own timer
    await wait_state(store, held.id, "sent", timeout=5.0)
    assert decode(modem.sent[0].pdu).message_class == 0  # type: ignore[union-attr]


async def test_validity_period_is_encoded_from_valid_until(store: Store, make_dispatcher, clock: Clock) -> None:
    modem = RecordingModem("sim0")
    store.enqueue([request(valid_until=T0 + 3600)])
    await make_dispatcher(modem).start()
    await async_wait_until(lambda: modem.sent, timeout=5)
    assert decode(modem.sent[0].pdu).validity == 3600  # type: ignore[union-attr]


# --- errors, retries, expiry ------------------------------------------------------------------------


@pytest.mark.parametrize("error", [cms(38), cms(42), cms(332), cms(500), AtTimeout("no +CMGS")],
                         ids=["cms38", "cms42", "cms332", "cms500", "timeout"])
async def test_transient_error_requeues_with_backoff_then_sends(
    store: Store, make_dispatcher, clock: Clock, error: BaseException
) -> None:
    modem = RecordingModem("sim0", errors=[error])
    (queued,) = store.enqueue([request()])
    await make_dispatcher(modem, backoff_base=10.0).start()
    await async_wait_until(lambda: store.message(queued.id)["last_error"], timeout=5)  # type: ignore[index]
    row = store.message(queued.id)
    assert row is not None and row["next_attempt_at"] == T0 + 10.0 and row["attempts"] == 1
    await asyncio.sleep(0.1)  # several polls: nothing is sent before the backoff ran out
    assert modem.sent == []
    clock.advance(10.0)
    await wait_state(store, queued.id, "sent")
    row = store.message(queued.id)
    assert row is not None and row["attempts"] == 2


@pytest.mark.parametrize("code", [1, 21, 28, 29, 50, 96, 304, 305])
async def test_permanent_cms_error_fails_at_once_with_the_reason(store: Store, make_dispatcher, code: int) -> None:
    modem = RecordingModem("sim0", errors=[cms(code)])
    (queued,) = store.enqueue([request()])
    await make_dispatcher(modem).start()
    await wait_state(store, queued.id, "failed")
    row = store.message(queued.id)
    assert row is not None and str(code) in row["last_error"] and row["attempts"] == 1


async def test_invalid_number_fails_without_reaching_the_modem(store: Store, make_dispatcher) -> None:
    modem = RecordingModem("sim0")
    (queued,) = store.enqueue([request("not a number")])
    await make_dispatcher(modem).start()
    await wait_state(store, queued.id, "failed")
    row = store.message(queued.id)
    assert row is not None and row["last_error"].startswith("cannot encode:")
    assert modem.sent == []


async def test_backoff_doubles_per_attempt_up_to_the_maximum_with_bounded_jitter(store: Store) -> None:
    plain = Dispatcher(store, backoff_base=2.0, backoff_max=30.0, backoff_jitter=0.0)
    assert [plain.backoff(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    jittered = Dispatcher(store, backoff_base=2.0, backoff_max=30.0, backoff_jitter=0.5)
    samples = [jittered.backoff(3) for _ in range(200)]
    assert all(8.0 <= s <= 12.0 for s in samples)
    assert len(set(samples)) > 100  # really random


async def test_message_fails_after_max_attempts_of_transient_errors(store: Store, make_dispatcher,
                                                                    clock: Clock) -> None:
    modem = RecordingModem("sim0", errors=[cms(42)] * 3)
    (queued,) = store.enqueue([request()])
    await make_dispatcher(modem, max_attempts=3, backoff_base=1.0).start()
    for attempt in (1, 2):
        await async_wait_until(lambda n=attempt: store.message(queued.id)["attempts"] == n  # type: ignore[index]
                               and state(store, queued.id) == "queued", timeout=5)
        clock.advance(10.0)
    await wait_state(store, queued.id, "failed")
    row = store.message(queued.id)
    assert row is not None and row["last_error"].startswith("gave up after 3 attempts")


async def test_message_expires_while_waiting_for_its_retry(store: Store, make_dispatcher, clock: Clock) -> None:
    modem = RecordingModem("sim0", errors=[cms(38)])
    (queued,) = store.enqueue([request(valid_until=T0 + 5.0)])
    await make_dispatcher(modem, backoff_base=60.0).start()
    await async_wait_until(lambda: store.message(queued.id)["last_error"], timeout=5)  # type: ignore[index]
    clock.advance(5.0)
    await wait_state(store, queued.id, "expired")
    assert modem.sent == []


# --- limits --------------------------------------------------------------------------------------


async def test_rate_limit_per_modem_holds_sends_to_the_sliding_minute(store: Store, make_dispatcher,
                                                                     clock: Clock) -> None:
    modem = RecordingModem("sim0")
    store.enqueue([request(f"+4917000000{n}") for n in range(3)])
    await make_dispatcher(modem, limits={"sim0": ModemLimits(rate_per_minute=2)}).start()
    await async_wait_until(lambda: len(modem.sent) == 2, timeout=5)
    await asyncio.sleep(0.1)
    assert len(modem.sent) == 2
    clock.advance(60.0)
    await async_wait_until(lambda: len(modem.sent) == 3, timeout=5)


async def test_daily_cap_stops_a_modem_until_the_next_day(store: Store, make_dispatcher, clock: Clock) -> None:
    modem = RecordingModem("sim0")
    store.enqueue([request(f"+4917000000{n}") for n in range(3)])
    dispatcher = make_dispatcher(modem, limits={"sim0": ModemLimits(daily_cap=2)})
    await dispatcher.start()
    await async_wait_until(lambda: len(modem.sent) == 2, timeout=5)
    await asyncio.sleep(0.1)
    assert len(modem.sent) == 2 and store.stats()["outbox"]["queued"] == 1
    assert dispatcher.modem_status()["sim0"]["sent_today"] == 2
    clock.advance(86400.0)
    dispatcher.wake()
    await async_wait_until(lambda: len(modem.sent) == 3, timeout=5)


async def test_daily_cap_counts_parts_sent_before_a_restart(store: Store, make_dispatcher, clock: Clock) -> None:
    first = RecordingModem("sim0")
    store.enqueue([request("+491700000001")])
    dispatcher = make_dispatcher(first, limits={"sim0": ModemLimits(daily_cap=1)})
    await dispatcher.start()
    await async_wait_until(lambda: len(first.sent) == 1, timeout=5)
    await dispatcher.stop()
    second = RecordingModem("sim0")
    store.enqueue([request("+491700000002")])
    await make_dispatcher(second, limits={"sim0": ModemLimits(daily_cap=1)}).start()
    await asyncio.sleep(0.15)
    assert second.sent == []


async def test_recipient_throttle_spaces_sends_to_the_same_number(store: Store, make_dispatcher,
                                                                 clock: Clock) -> None:
    modem = RecordingModem("sim0")
    store.enqueue([request("+491700000001", "a"), request("+491700000001", "b"), request("+491700000002", "c")])
    await make_dispatcher(modem, recipient_interval=30.0).start()
    await async_wait_until(lambda: len(modem.sent) == 2, timeout=5)
    assert recipients(modem) == ["+491700000001", "+491700000002"]
    await asyncio.sleep(0.1)
    assert len(modem.sent) == 2
    clock.advance(30.0)
    await async_wait_until(lambda: len(modem.sent) == 3, timeout=5)
    assert decode(modem.sent[2].pdu).text == "b"  # type: ignore[union-attr]


# --- several modems ------------------------------------------------------------------------------


async def test_modems_send_in_parallel_with_one_send_in_flight_each(store: Store, make_dispatcher) -> None:
    modems = [RecordingModem("sim0"), RecordingModem("sim1")]
    for modem in modems:
        modem.gate = asyncio.Event()
    store.enqueue([request(f"+4917000000{n}") for n in range(4)])
    await make_dispatcher(*modems).start()
    await async_wait_until(lambda: all(m.waiting.is_set() for m in modems), timeout=5)
    assert [m.in_flight for m in modems] == [1, 1]  # both modems busy at once
    for modem in modems:
        modem.gate.set()  # type: ignore[union-attr]
    await async_wait_until(lambda: sum(len(m.sent) for m in modems) == 4, timeout=5)
    assert [m.max_in_flight for m in modems] == [1, 1]


async def test_modem_failure_mid_message_waits_then_resends_whole_message_on_another_modem(
    store: Store, make_dispatcher, clock: Clock
) -> None:
    failing = RecordingModem("sim0", errors=[None, TransportError("sim0: port vanished")], hold_after=1)
    failing.gate = asyncio.Event()
    spare = RecordingModem("sim1")
    (queued,) = store.enqueue([request("+491701234567", LONG_TEXT)])
    dispatcher = make_dispatcher(failing, spare, modem_error_pause=3600.0, multipart_wait=60.0)
    dispatcher.set_modem_healthy("sim1", False)  # sim0 takes the message
    await dispatcher.start()
    await async_wait_until(failing.waiting.is_set, timeout=5)  # part 1 went out, part 2 is in AT+CMGS
    dispatcher.set_modem_healthy("sim1", True)
    failing.gate.set()  # ... and the port vanishes
    await async_wait_until(lambda: state(store, queued.id) == "queued", timeout=5)
    assert spare.sent == []
    clock.advance(61.0)  # sim0 stays unusable past multipart_wait
    dispatcher.wake()
    await wait_state(store, queued.id, "sent")
    assert [p.sequence for p in spare.sent] == [1, 2, 3]  # never parts 2, 3 alone: the whole message, from part 1
    assert [p.modem for p in store.parts(queued.id)] == ["sim1", "sim1", "sim1"]
    old = decode(failing.sent[0].pdu).concat  # type: ignore[union-attr]
    new = decode(spare.sent[0].pdu).concat  # type: ignore[union-attr]
    assert old is not None and new is not None and new.reference != old.reference
    assert store.audit_log(5, "multipart_restart")


async def test_rest_of_a_multipart_message_waits_for_its_modem_and_goes_out_there(
    store: Store, make_dispatcher
) -> None:
    first = RecordingModem("sim0", hold_after=1)
    first.gate = asyncio.Event()
    other = RecordingModem("sim1")
    (queued,) = store.enqueue([request("+491701234567", LONG_TEXT)])
    dispatcher = make_dispatcher(first, other, multipart_wait=60.0)
    dispatcher.set_modem_healthy("sim1", False)
    await dispatcher.start()
    await async_wait_until(first.waiting.is_set, timeout=5)  # part 1 sent, part 2 in AT+CMGS
    dispatcher.set_modem_healthy("sim1", True)
    dispatcher.set_modem_healthy("sim0", False)  # sim0 leaves rotation mid-message
    first.gate.set()
    await async_wait_until(lambda: state(store, queued.id) == "queued", timeout=5)
    dispatcher.set_modem_healthy("sim0", True)  # ... and comes back within the limit
    await wait_state(store, queued.id, "sent")
    assert other.sent == []
    assert [p.modem for p in store.parts(queued.id)] == ["sim0", "sim0", "sim0"]


async def test_modem_declared_unhealthy_hands_its_queue_to_the_healthy_one(store: Store, make_dispatcher) -> None:
    sick, well = RecordingModem("sim0"), RecordingModem("sim1")
    store.enqueue([request(f"+4917000000{n}") for n in range(3)])
    dispatcher = make_dispatcher(sick, well)
    dispatcher.set_modem_healthy("sim0", False)
    await dispatcher.start()
    await async_wait_until(lambda: len(well.sent) == 3, timeout=5)
    assert sick.sent == []


# --- crash, resume, stop --------------------------------------------------------------------------


async def test_crash_mid_message_resumes_in_a_new_process_without_resending_committed_parts(
    db_path: Path, clock: Clock
) -> None:
    first_store = Store(db_path, clock=clock)
    before = RecordingModem("sim0", first_reference=10, hold_after=1)
    before.gate = asyncio.Event()  # part 2 hangs in AT+CMGS ...
    (queued,) = first_store.enqueue([request("+491701234567", LONG_TEXT)])
    dispatcher = Dispatcher(first_store, [before], clock=clock, poll_interval=0.05, lease=30.0, send_timeout=5.0)
    await dispatcher.start()
    await async_wait_until(before.waiting.is_set, timeout=5)
    for task in asyncio.all_tasks():  # ... and the process dies: no stop, no release, no commit
        if task.get_name() == "dispatcher-sim0":
            task.cancel()
    second_store = Store(db_path, clock=clock)  # a new process opens the file
    after = RecordingModem("sim0", first_reference=50)
    restarted = Dispatcher(second_store, [after], clock=clock, poll_interval=0.05, lease=30.0, send_timeout=5.0)
    try:
        await restarted.start()
        await async_wait_until(lambda: state(second_store, queued.id) == "sent", timeout=5)
        assert [p.sequence for p in after.sent] == [2, 3]  # part 1 (TP-MR committed) is not sent again
        assert [p.message_reference for p in second_store.parts(queued.id)] == [11, 51, 52]
    finally:
        await restarted.stop()
        second_store.close()
        first_store.close()


async def test_stop_finishes_the_exchange_in_progress_commits_it_and_requeues_the_rest(
    store: Store, make_dispatcher
) -> None:
    modem = RecordingModem("sim0")
    modem.gate = asyncio.Event()
    (queued,) = store.enqueue([request("+491701234567", LONG_TEXT)])
    dispatcher = make_dispatcher(modem)
    await dispatcher.start()
    await async_wait_until(modem.waiting.is_set, timeout=5)
    stopping = asyncio.create_task(dispatcher.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the +CMGS in progress
    modem.gate.set()
    await asyncio.wait_for(stopping, 5)
    assert len(modem.sent) == 1
    parts = store.parts(queued.id)
    assert parts[0].message_reference == 1 and parts[1].message_reference is None
    row = store.message(queued.id)
    assert row is not None and (row["state"], row["attempts"], row["lease_until"]) == ("queued", 0, None)


async def test_expired_lease_of_a_dead_claim_is_taken_over(
    store: Store, make_dispatcher, clock: Clock, db_path: Path
) -> None:
    modem = RecordingModem("sim0")
    await make_dispatcher(modem).start()
    with Store(db_path, clock=clock) as other:  # another process claims and dies holding the lease
        (queued,) = other.enqueue([request()])
        other.claim("ghost", lease=30.0)
    await asyncio.sleep(0.1)
    assert modem.sent == []  # the lease is still valid
    clock.advance(31.0)
    await wait_state(store, queued.id, "sent")
    row = store.message(queued.id)
    assert row is not None and (row["modem"], row["attempts"]) == ("sim0", 2)


async def test_next_message_is_claimed_while_the_last_part_is_in_flight_and_given_back_on_stop(
    store: Store, make_dispatcher
) -> None:
    modem = RecordingModem("sim0")
    modem.gate = asyncio.Event()
    first, second = store.enqueue([request("+491700000001", "one"), request("+491700000002", "two")])
    dispatcher = make_dispatcher(modem)
    await dispatcher.start()
    await async_wait_until(modem.waiting.is_set, timeout=5)
    assert state(store, second.id) == "sending" and store.parts(second.id)  # claimed and encoded already
    stopping = asyncio.create_task(dispatcher.stop())
    await asyncio.sleep(0.05)
    modem.gate.set()
    await asyncio.wait_for(stopping, 5)
    assert state(store, first.id) == "sent"
    row = store.message(second.id)
    assert row is not None and (row["state"], row["attempts"], row["lease_until"]) == ("queued", 0, None)
    assert recipients(modem) == ["+491700000001"]


async def test_prefetched_message_moves_to_another_modem_when_its_modem_fails(store: Store, make_dispatcher) -> None:
    failing = RecordingModem("sim0", errors=[TransportError("sim0: port vanished")])
    failing.gate = asyncio.Event()
    spare = RecordingModem("sim1")
    first, second = store.enqueue([request("+491700000001", "one"), request("+491700000002", "two")])
    dispatcher = make_dispatcher(failing, spare, modem_error_pause=3600.0)
    dispatcher.set_modem_healthy("sim1", False)
    await dispatcher.start()
    await async_wait_until(failing.waiting.is_set, timeout=5)
    assert state(store, second.id) == "sending"  # prefetched by sim0
    dispatcher.set_modem_healthy("sim1", True)
    failing.gate.set()  # sim0's port vanishes during the send
    await wait_state(store, first.id, "sent")
    await wait_state(store, second.id, "sent")
    assert sorted(recipients(spare)) == ["+491700000001", "+491700000002"]
    row = store.message(second.id)
    assert row is not None and row["attempts"] == 1  # giving it back did not count an attempt


async def test_no_message_is_claimed_ahead_when_the_rate_limit_would_hold_it(store: Store, make_dispatcher) -> None:
    modem = RecordingModem("sim0")
    modem.gate = asyncio.Event()
    first, second = store.enqueue([request("+491700000001", "one"), request("+491700000002", "two")])
    await make_dispatcher(modem, limits={"sim0": ModemLimits(rate_per_minute=1)}).start()
    await async_wait_until(modem.waiting.is_set, timeout=5)
    assert state(store, second.id) == "queued"
    modem.gate.set()
    await wait_state(store, first.id, "sent")
    row = store.message(second.id)
    assert row is not None and (row["state"], row["attempts"]) == ("queued", 0)


@pytest.mark.parametrize("rate", [None, 6.0, 2.5])
async def test_rate_window_does_not_grow_with_the_number_of_parts_sent(store: Store, clock: Clock,
                                                                       rate: float | None) -> None:
    """The per-modem accounting keeps the rate window only (nothing without a rate limit)."""
    dispatcher = Dispatcher(store, [RecordingModem("sim0")], clock=clock,  # type: ignore[list-item]
                            limits={"sim0": ModemLimits(rate_per_minute=rate)})
    slot = dispatcher._slots["sim0"]
    sent_in_last_minute: deque[float] = deque()
    for _ in range(5000):
        wait = dispatcher._capacity_wait(slot, clock())
        if wait > 0:
            clock.advance(wait)
        now = clock()
        dispatcher._record_send(slot, "+491701234567", now)
        sent_in_last_minute.append(now)
        while sent_in_last_minute[0] <= now - 60.0:
            sent_in_last_minute.popleft()
        if rate is not None:  # the limit still holds: a fractional rate admits ceil(rate) parts a minute
            assert len(sent_in_last_minute) <= math.ceil(rate)
        clock.advance(1.0)
    assert slot.sent == 5000
    assert len(slot.sent_times) == (0 if rate is None else math.ceil(rate))
    assert dispatcher.modem_status()["sim0"]["sent"] == 5000


# --- avoid_modems (the self-alerts: never through the modem that failed) ----------------------------


async def test_a_message_avoiding_a_modem_waits_for_another_one(store: Store, make_dispatcher) -> None:
    sim0, sim1 = RecordingModem("sim0"), RecordingModem("sim1")
    dispatcher = make_dispatcher(sim0, sim1)
    dispatcher.set_modem_healthy("sim1", False)
    (alert,) = store.enqueue([request("+491701234567", "sim0 is in trouble", priority="critical",
                                      avoid_modems=("sim0",))])
    (client,) = store.enqueue([request("+491701234568", "queued after the alert")])
    await dispatcher.start()
    await wait_state(store, client.id, "sent")  # sim0 took the later, lower message: the alert is not for it
    assert state(store, alert.id) == "queued"
    assert recipients(sim0) == ["+491701234568"]
    assert store.next_due_at(modem_id="sim0") is None  # its idle worker sleeps; it does not spin on the alert
    dispatcher.set_modem_healthy("sim1", True)
    await wait_state(store, alert.id, "sent")
    assert recipients(sim1) == ["+491701234567"]
    assert store.message(alert.id)["modem"] == "sim1"  # type: ignore[index]
