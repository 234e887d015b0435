"""The dispatcher: sends the outbox through the modems.

One worker task per modem, so one send is in flight per modem and N modems send in parallel.
A worker that is healthy and has capacity claims the next due message from the store (high before
normal before low, FIFO within a priority), encodes it once into parts with the codec (the parts
are stored and reused on every retry, on any modem), and sends the parts that have no TP-MR yet,
committing each part's TP-MR after its ``+CMGS`` and before the modem's next PDU: between the next
``AT+CMGS`` and its PDU, while the modem answers with its prompt, or before the worker does anything
else when no part follows at once (the duplicate window of at-least-once delivery; see
docs/store.md). Those commits are not fsync'ed on the event loop: ``WalSync`` syncs them in a thread,
and a modem's next PDU waits for the sync of its TP-MR before last. While the network takes the last
part of a message (seconds on a real network), the worker already claims and encodes its next
message, so between one ``+CMGS`` and the next ``AT+CMGS`` there is no store work; the claimed
message is given back (without counting the attempt) if the modem cannot send it after all.

Limits: per modem a rate (parts per minute, a sliding window) and a daily cap (parts since local
midnight, counted from the store so a restart does not reset it); per recipient a minimum interval
between sends. Errors: transient ones (CMS 38/42/332/500…, timeouts, a vanished port) requeue the
message with exponential backoff and jitter until ``max_attempts``; permanent ones (invalid number,
rejected) fail it at once with the reason. A modem-level failure (timeout, port gone) also pauses
that modem and lets another modem take the message at once, unless some of its parts already left:
all parts of a multipart SMS leave through one modem (a handset joins parts by sender), so the rest
waits for that modem up to ``multipart_wait``; after that another modem sends the whole message again
from part 1 with a new concatenation reference (the recipient may see an orphaned first part).

Workers sleep on an event: ``wake()`` (called on every enqueue through the store's enqueue
listener), ``set_modem_healthy`` and ``stop()`` set it; ``poll_interval`` is only a safety net
(e.g. a ``smsgw send`` from another process). ``stop()`` lets an AT exchange in progress finish,
commits its result, gives the message back to the queue and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from appliance.frozen import replace
from appliance.store import MULTIPART_WAIT, ClaimedMessage, Part, Store, StoreError, local_midnight
from appliance.wal_sync import SyncFailed, WalSync
from drivers.errors import AtError, AtTimeout, TransportError, is_sim_state_error
from drivers.pdu import PduError, SubmitPart, decode, encode_submit

LOG = logging.getLogger(__name__)

#: Seconds a claim is leased for; renewed before every part. Longer than SEND_TIMEOUT.
LEASE = 180.0
#: Seconds one part may take from AT+CMGS to +CMGS (a safety net over the modem's own timeout).
SEND_TIMEOUT = 120.0
#: Seconds an idle worker sleeps at most before looking at the queue again without a wake-up.
POLL_INTERVAL = 5.0
#: First retry delay after a transient error (seconds); doubled on every further attempt.
BACKOFF_BASE = 10.0
#: The longest retry delay (seconds).
BACKOFF_MAX = 1800.0
#: Random extra delay, as a fraction of the delay (0.25: up to 25 % longer).
BACKOFF_JITTER = 0.25
#: Attempts (claims) before a message that keeps failing transiently is failed.
MAX_ATTEMPTS = 8
#: Seconds a modem rests after a modem-level failure (timeout, port gone) before it claims again.
MODEM_ERROR_PAUSE = 10.0
#: Minimum seconds between two sends to the same recipient (0: no throttle).
RECIPIENT_INTERVAL = 0.0
#: Seconds ``stop()`` waits for sends in progress before cancelling them.
STOP_TIMEOUT = 30.0
#: Sliding window of the per-modem rate limit (seconds).
RATE_WINDOW = 60.0


class SendingModem(Protocol):
    """What the dispatcher needs of a ``drivers.modem.Modem``."""

    @property
    def modem_id(self) -> str: ...

    async def send_pdu(self, part: SubmitPart, *, ready: Callable[[], Awaitable[None]] | None = None,
                       written: Callable[[], None] | None = None) -> int:
        """``ready`` is awaited after AT+CMGS and before the PDU is written; ``written`` is called
        right after the PDU is written."""


@dataclass(frozen=True)
class ModemLimits:
    rate_per_minute: float | None = None  # parts per RATE_WINDOW; None: unlimited
    daily_cap: int | None = None  # parts per local day; None: unlimited


def is_modem_failure(exc: BaseException) -> bool:
    """The modem itself failed (not the network's answer): another modem should take the work.

    A SIM-state error (CMS 310-318, CME 10-18: the SIM asks for its PIN again, is busy or gone)
    is a modem failure too: the message is fine, the modem cannot send until its SIM is ready.
    """
    return isinstance(exc, AtTimeout | TransportError | TimeoutError | ConnectionError) or is_sim_state_error(exc)


def is_transient(exc: BaseException) -> bool:
    """Whether sending again later may succeed.

    CMS/CME errors carry their class (``.transient``, from the code table in drivers.errors);
    timeouts and a vanished port are transient; an encoding error (invalid number, text the
    codec refuses) is permanent; a bare ``ERROR`` and unknown failures count as transient, so a
    message is retried up to ``max_attempts`` rather than dropped.
    """
    if is_modem_failure(exc):
        return True
    transient = getattr(exc, "transient", None)
    if isinstance(transient, bool):
        return transient
    if isinstance(exc, PduError):
        return False
    if isinstance(exc, AtError):
        return True
    return True


def decode_concat_reference(pdu: str) -> int | None:
    """The concatenation reference in a stored SMS-SUBMIT part (None: a single part or undecodable)."""
    try:
        concat = getattr(decode(pdu), "concat", None)
    except PduError:
        return None
    return concat.reference if concat is not None else None


async def _within(awaitable: Awaitable[int], seconds: float) -> int:
    """``awaitable``'s result, or TimeoutError after ``seconds`` (in the awaiting task itself)."""
    async with asyncio.timeout(seconds):
        return await awaitable


def describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError) and not text:
        return "timed out waiting for +CMGS"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _SentPart(NamedTuple):
    """A part the network took (its +CMGS came) whose TP-MR is yet to be committed."""

    message_id: int
    sequence: int
    total: int
    reference: int
    at: float


@dataclass
class _Slot:
    modem: SendingModem
    limits: ModemLimits
    healthy: bool = True
    paused_until: float = 0.0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sent_times: deque[float] = field(default_factory=deque)  # the rate window only: see note_sent
    day_start: float = -1.0
    day_end: float = -1.0  # the next local midnight: day_start is computed again from then on
    day_count: int = 0
    task: asyncio.Task[None] | None = None
    current: int | None = None  # message id in flight
    next: ClaimedMessage | None = None  # claimed (and encoded) while the last part of ``current`` is sent
    sent: int = 0  # parts sent since start
    last_error: str | None = None
    #: The TP-MR of the last part sent, not committed yet: the next part's AT+CMGS goes out first
    #: and the TP-MR is committed while the modem answers it, before that part's PDU is written.
    pending: _SentPart | None = None
    #: WalSync tickets of the TP-MRs of the last two parts committed (oldest first): the older one
    #: is on disk before the next PDU.
    unsynced: deque[int] = field(default_factory=lambda: deque(maxlen=2))

    @property
    def modem_id(self) -> str:
        return self.modem.modem_id

    def _rate(self) -> float | None:
        rate = self.limits.rate_per_minute
        return rate if rate is not None and rate > 0 else None

    def reset_window(self, times: Iterable[float]) -> None:
        """Start the rate window from ``times`` (ascending); with no rate limit nothing is kept."""
        rate = self._rate()
        self.sent_times = deque(times if rate is not None else (), maxlen=math.ceil(rate) if rate else 0)

    def in_window(self, now: float) -> int:
        """Parts sent within the last RATE_WINDOW (0 when no rate limit is set: nothing is kept)."""
        while self.sent_times and self.sent_times[0] <= now - RATE_WINDOW:
            self.sent_times.popleft()
        return len(self.sent_times)

    def note_sent(self, now: float) -> None:
        """Count a part sent at ``now`` in the rate window.

        The window holds at most ``ceil(rate_per_minute)`` times, the newest (the oldest of them is
        the one a full window waits on), and none without a rate limit, so it does not grow with the
        number of messages sent; the daily cap counts from the store.
        """
        if self._rate() is not None:
            self.in_window(now)
            self.sent_times.append(now)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        modems: Iterable[SendingModem] = (),
        *,
        limits: Mapping[str, ModemLimits] | None = None,
        recipient_interval: float = RECIPIENT_INTERVAL,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
        backoff_jitter: float = BACKOFF_JITTER,
        lease: float = LEASE,
        send_timeout: float = SEND_TIMEOUT,
        poll_interval: float = POLL_INTERVAL,
        modem_error_pause: float = MODEM_ERROR_PAUSE,
        clock: Callable[[], float] = time.time,
        national_language: str | None = None,
        rng: random.Random | None = None,
        reports: Iterable[str] = (),
        on_sim_error: Callable[[str, str], None] | None = None,
        multipart_wait: float = MULTIPART_WAIT,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if lease <= send_timeout:
            raise ValueError(f"lease ({lease}s) must be longer than send_timeout ({send_timeout}s)")
        self.store = store
        self.limits = dict(limits or {})
        self.recipient_interval = recipient_interval
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.backoff_jitter = backoff_jitter
        self.lease = lease
        self.send_timeout = send_timeout
        self.poll_interval = poll_interval
        self.modem_error_pause = modem_error_pause
        self.clock = clock
        self.national_language = national_language  # [sms] national_language: shift tables for encoding
        self.rng = rng or random.Random()
        self.reports = frozenset(reports)  # modem ids that request a status report for every message
        #: Called with (modem id, reason) when a send met a SIM-state error (the health check looks at once).
        self.on_sim_error = on_sim_error
        #: Seconds the rest of a multipart message waits for the modem that sent its first parts.
        self.multipart_wait = multipart_wait
        self._slots: dict[str, _Slot] = {}
        #: Makes the TP-MRs durable in a thread (group commit); see appliance.wal_sync.
        self.wal_sync = WalSync(store.sync)
        #: When a part was last sent (this process's life; None: not yet): the self-alerts' ``no_send``.
        self.last_sent_at: float | None = None
        self._in_flight: dict[str, int] = {}  # recipient -> sends in progress
        self._last_sent: dict[str, float] = {}  # recipient -> time of the last part sent
        self._running = False
        self._stopping = False
        self._remove_listener: Callable[[], None] | None = None
        for modem in modems:
            self.add_modem(modem)

    # --- modems -----------------------------------------------------------------------------

    def add_modem(self, modem: SendingModem, limits: ModemLimits | None = None) -> None:
        """Add a modem, or replace the object of a known modem id (after the daemon reopened it)."""
        if limits is not None:
            self.limits[modem.modem_id] = limits
        slot = self._slots.get(modem.modem_id)
        if slot is not None:
            slot.modem = modem
            slot.limits = self.limits.get(modem.modem_id, ModemLimits())
            slot.reset_window(slot.sent_times)
            slot.wake.set()
            return
        slot = _Slot(modem, self.limits.get(modem.modem_id, ModemLimits()))
        self._slots[modem.modem_id] = slot
        if self._running:
            self._start_slot(slot)

    async def remove_modem(self, modem_id: str) -> None:
        slot = self._slots.pop(modem_id, None)
        if slot is not None and slot.task is not None:
            slot.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slot.task

    def set_modem_healthy(self, modem_id: str, healthy: bool) -> None:
        """The daemon's health supervisor says whether a modem may send."""
        slot = self._slots.get(modem_id)
        if slot is None:
            raise KeyError(f"unknown modem {modem_id!r}")
        if slot.healthy != healthy:
            LOG.info("modem %s is %s", modem_id, "healthy" if healthy else "unhealthy")
        slot.healthy = healthy
        if healthy:
            slot.paused_until = 0.0
        self.wake()

    def modem_status(self) -> dict[str, dict[str, object]]:
        now = self.clock()
        return {
            modem_id: {
                "healthy": slot.healthy,
                "paused": slot.paused_until > now,
                "sending": slot.current,
                "sent": slot.sent,
                "sent_today": slot.day_count,
                "daily_cap": slot.limits.daily_cap,
                "rate_per_minute": slot.limits.rate_per_minute,
                "last_error": slot.last_error,
            }
            for modem_id, slot in self._slots.items()
        }

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume messages a previous process left mid-send, then start one worker per modem."""
        if self._running:
            return
        now = self.clock()
        self.store.resume_interrupted(now)
        if self.recipient_interval > 0:
            self._last_sent = self.store.recipient_last_sent(now - self.recipient_interval)
        self._stopping = False
        self._running = True
        self._remove_listener = self.store.add_enqueue_listener(self.wake)
        for slot in self._slots.values():
            self._start_slot(slot)

    def _start_slot(self, slot: _Slot) -> None:
        now = self.clock()
        slot.reset_window(
            self.store.modem_sent_times(slot.modem_id, now - RATE_WINDOW) if slot.limits.rate_per_minute else ())
        slot.day_start = slot.day_end = -1.0
        slot.task = asyncio.create_task(self._worker(slot), name=f"dispatcher-{slot.modem_id}")

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Finish the AT exchange in progress, commit it, requeue the rest and return."""
        if not self._running:
            return
        self._stopping = True
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        self.wake()
        tasks = [slot.task for slot in self._slots.values() if slot.task is not None]
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                LOG.warning("%s did not stop within %.1fs; cancelling it", task.get_name(), timeout)
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    LOG.error("%s ended with %r", task.get_name(), task.exception())
        for slot in self._slots.values():
            slot.task = None
        await self.wal_sync.flush()  # every TP-MR committed is on disk when stop returns
        self.wal_sync.close()
        self._running = False

    def wake(self) -> None:
        """Something may be due: every idle worker looks at the queue now."""
        for slot in self._slots.values():
            slot.wake.set()

    # --- limits -----------------------------------------------------------------------------

    def _busy_recipients(self, now: float) -> list[str]:
        busy = {recipient for recipient, count in self._in_flight.items() if count > 0}
        if self.recipient_interval > 0:
            horizon = now - self.recipient_interval
            busy.update(r for r, at in self._last_sent.items() if at > horizon)
            for r in [r for r, at in self._last_sent.items() if at <= horizon]:
                del self._last_sent[r]
        return sorted(busy)

    def _refresh_day(self, slot: _Slot, now: float) -> None:
        if slot.day_start <= now < slot.day_end:
            return  # the same local day (the common case: no mktime per part)
        day = local_midnight(now)
        # 25 hours on: past the next midnight on any day, 23-hour and 25-hour DST days included
        slot.day_end = local_midnight(day + 90000)
        if day != slot.day_start:
            slot.day_start = day
            slot.day_count = self.store.modem_sent_count(slot.modem_id, day)

    def _capacity_wait(self, slot: _Slot, now: float) -> float:
        """0 when ``slot`` may send a part now, else seconds until it may (inf: not today/unhealthy)."""
        if not slot.healthy:
            return float("inf")
        if slot.paused_until > now:
            return slot.paused_until - now
        self._refresh_day(slot, now)
        cap = slot.limits.daily_cap
        if cap is not None and slot.day_count >= cap:
            return max(local_midnight(now + 86400 + 3600) - now, 1.0)
        rate = slot.limits.rate_per_minute
        if rate is not None and rate > 0 and slot.in_window(now) >= rate:
            return slot.sent_times[0] + RATE_WINDOW - now
        return 0.0

    def _record_send(self, slot: _Slot, recipient: str, now: float) -> None:
        slot.note_sent(now)
        slot.sent += 1
        self.last_sent_at = now
        self._refresh_day(slot, now)
        slot.day_count += 1
        if self.recipient_interval > 0:
            self._last_sent[recipient] = now

    def backoff(self, attempts: int) -> float:
        """Delay before the next attempt after ``attempts`` transient failures."""
        delay: float = min(self.backoff_max, self.backoff_base * 2.0 ** max(attempts - 1, 0))
        return delay * (1.0 + self.backoff_jitter * self.rng.random())

    # --- the worker -------------------------------------------------------------------------

    async def _sleep(self, slot: _Slot, seconds: float) -> None:
        timeout = max(0.0, min(seconds, self.poll_interval))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # in this task (wait_for: a task more, a loop turn later)
                await slot.wake.wait()

    def _idle_wait(self, slot: _Slot, now: float, busy: list[str]) -> float:
        wait = self.poll_interval
        due = self.store.next_due_at(busy, slot.modem_id, self.multipart_wait)
        if due is not None:
            wait = min(wait, max(due - now, 0.0))
        if self.recipient_interval > 0 and self._last_sent:
            wait = min(wait, max(min(self._last_sent.values()) + self.recipient_interval - now, 0.0))
        return max(wait, 0.001)

    async def _worker(self, slot: _Slot) -> None:
        LOG.debug("dispatcher worker for %s started", slot.modem_id)
        try:
            await self._work(slot)
        finally:  # stopped or cancelled: the last TP-MR is committed, the prefetched message given back
            self._commit_pending_quietly(slot)
            try:
                self._drop_next(slot, self.clock())
            except Exception:
                LOG.exception("giving back the next message of %s failed", slot.modem_id)
        LOG.debug("dispatcher worker for %s stopped", slot.modem_id)

    async def _work(self, slot: _Slot) -> None:
        while not self._stopping:
            slot.wake.clear()
            now = self.clock()
            try:
                self.store.expire_due(now)
                wait = self._capacity_wait(slot, now)
                if wait == 0.0:
                    busy: list[str] = []
                    claimed, slot.next = slot.next, None
                    if claimed is None:
                        busy = self._busy_recipients(now)
                        claimed = self.store.claim(slot.modem_id, lease=self.lease, now=now, exclude_recipients=busy,
                                                   multipart_wait=self.multipart_wait,
                                                   encode=self._encoder(slot.modem_id, now))
                        if claimed is not None:
                            self._hold(claimed.recipient)
                    if claimed is not None:
                        await self._send(slot, claimed)
                        continue
                    wait = self._idle_wait(slot, now, busy)
                else:
                    self._drop_next(slot, now)
            except asyncio.CancelledError:
                raise
            except Exception:  # a store error must not kill the worker for good
                LOG.exception("dispatcher worker for %s failed; retrying", slot.modem_id)
                wait = self.poll_interval
            self._commit_pending_quietly(slot)  # before waiting: the last TP-MR does not wait with it
            await self._sleep(slot, wait)

    def _commit_pending_quietly(self, slot: _Slot) -> None:
        try:
            self._commit_pending(slot)
        except Exception:  # the message stays ``sending``; its lease runs out and it is sent again
            LOG.exception("committing the TP-MR of the last part %s sent failed", slot.modem_id)

    def _hold(self, recipient: str) -> None:
        self._in_flight[recipient] = self._in_flight.get(recipient, 0) + 1

    def _unhold(self, recipient: str) -> None:
        count = self._in_flight.get(recipient, 1) - 1
        if count > 0:
            self._in_flight[recipient] = count
        else:
            self._in_flight.pop(recipient, None)

    def _drop_next(self, slot: _Slot, now: float) -> None:
        """Give the prefetched message back (the modem cannot send it now)."""
        claimed, slot.next = slot.next, None
        if claimed is not None:
            self._unhold(claimed.recipient)
            self.store.release(claimed.id, now)
            self.wake()

    def _can_prefetch(self, slot: _Slot, now: float) -> bool:
        """Whether ``slot`` may send one more part after the one in flight without waiting."""
        if self._stopping or slot.next is not None or not slot.healthy or slot.paused_until > now:
            return False
        cap = slot.limits.daily_cap
        if cap is not None and slot.day_count + 1 >= cap:
            return False
        rate = slot.limits.rate_per_minute
        return not (rate is not None and slot.in_window(now) + 1 >= rate)

    def _prefetch(self, slot: _Slot) -> None:
        """While the network takes the last part of a message (its PDU written), claim and encode the
        next message: the claim and the parts' commit are off the path between one ``+CMGS`` and the
        next ``AT+CMGS``. The TP-MR of the part in flight is committed before the next PDU."""
        now = self.clock()
        if not self._can_prefetch(slot, now):
            return
        claimed = self.store.claim(slot.modem_id, lease=self.lease, now=now,
                                   exclude_recipients=self._busy_recipients(now), multipart_wait=self.multipart_wait,
                                   encode=self._encoder(slot.modem_id, now))
        if claimed is None:
            return
        if not claimed.parts:
            try:
                claimed = replace(claimed, parts=self._encode(claimed, now, slot.modem_id))
            except (PduError, ValueError) as exc:
                LOG.warning("message %d cannot be encoded: %s", claimed.id, exc)
                self.store.fail(claimed.id, f"cannot encode: {exc}", now)
                return
        self._hold(claimed.recipient)
        slot.next = claimed

    def _submit_parts(self, claimed: ClaimedMessage, now: float, modem_id: str, concat_reference: int) -> list[SubmitPart]:
        validity: int | None = None
        if claimed.valid_until is not None:
            validity = max(int(claimed.valid_until - now), 300)  # TP-VP has a 5-minute minimum
        return encode_submit(
            claimed.recipient, claimed.text, report=claimed.report or modem_id in self.reports,
            validity=validity,
            concat_reference=concat_reference, language=claimed.language or self.national_language,
            message_class=claimed.message_class,
        )

    def _encoder(self, modem_id: str, now: float) -> Callable[[ClaimedMessage], list[SubmitPart]]:
        """The parts of a message claimed without any, encoded inside the claim's transaction (one
        commit less per send); on an encoding error none, and ``_send_parts`` fails the message."""
        def encode(claimed: ClaimedMessage) -> list[SubmitPart]:
            try:
                return self._submit_parts(claimed, now, modem_id, claimed.id % 256)
            except (PduError, ValueError):
                return []
        return encode

    def _encode(self, claimed: ClaimedMessage, now: float, modem_id: str) -> list[Part]:
        return self.store.set_parts(claimed.id, self._submit_parts(claimed, now, modem_id, claimed.id % 256))

    def _restart(self, claimed: ClaimedMessage, now: float, modem_id: str) -> list[Part]:
        """Parts of ``claimed`` left through another modem that stayed unusable past ``multipart_wait``:
        send the whole message again from part 1 with a new concatenation reference (the recipient
        may see the earlier parts as an orphaned fragment; a split message would never be joined)."""
        before = {part.modem for part in claimed.parts if part.message_reference is not None}
        old = decode_concat_reference(claimed.parts[0].pdu)
        reference = self.rng.choice([r for r in range(256) if r != old])
        reason = (f"parts sent through {', '.join(sorted(m for m in before if m))} which stayed unusable for "
                  f"{self.multipart_wait:.0f}s")
        LOG.warning("message %d: %s; sending it again from part 1 through %s (new concatenation reference %d)",
                    claimed.id, reason, modem_id, reference)
        return self.store.restart_parts(claimed.id, self._submit_parts(claimed, now, modem_id, reference),
                                        modem_id, reason, now)

    async def _send(self, slot: _Slot, claimed: ClaimedMessage) -> None:
        """Send the unsent parts of ``claimed`` (its recipient is held by whoever claimed it)."""
        slot.current = claimed.id
        try:
            await self._send_parts(slot, claimed)
        finally:
            slot.current = None
            self._unhold(claimed.recipient)
            self.wake()  # the recipient is free again; other workers may want it

    async def _send_parts(self, slot: _Slot, claimed: ClaimedMessage) -> None:
        now = self.clock()
        try:
            parts = claimed.parts or self._encode(claimed, now, slot.modem_id)
            if any(part.message_reference is not None and part.modem != slot.modem_id for part in parts):
                parts = self._restart(replace(claimed, parts=parts), now, slot.modem_id)
        except (PduError, ValueError) as exc:
            LOG.warning("message %d cannot be encoded: %s", claimed.id, exc)
            self.store.fail(claimed.id, f"cannot encode: {exc}", now)
            return
        lease_until = claimed.lease_until
        unsent = [part for part in parts if part.message_reference is None]
        for part in unsent:
            while True:
                slot.wake.clear()
                now = self.clock()
                usable = not self._stopping and slot.healthy and slot.paused_until <= now
                wait = self._capacity_wait(slot, now) if usable else float("inf")
                if wait == 0.0:
                    break
                self._commit_pending(slot)  # not straight on to the next PDU: the last TP-MR first
                if self._stopping:
                    self.store.release(claimed.id, self.clock())
                    return
                if not slot.healthy or slot.paused_until > now:
                    # the modem was declared unhealthy mid-message: the rest waits for it (up to multipart_wait)
                    self.store.requeue(claimed.id, f"modem {slot.modem_id} became unavailable", now, now)
                    return
                if wait == float("inf") or wait > self.lease / 2:
                    # daily cap reached mid-message: the rest waits for this modem (up to multipart_wait)
                    self.store.requeue(claimed.id, f"modem {slot.modem_id} reached its limit", now, now)
                    return
                lease_until = self.store.renew_lease(claimed.id, self.lease, now)
                await self._sleep(slot, wait)
            if lease_until - now < self.lease / 2:
                lease_until = self.store.renew_lease(claimed.id, self.lease, now)
            submit = SubmitPart(part.pdu, part.tpdu_length, part.sequence, part.total)
            # the last part: while the network takes its PDU, the next message is claimed and encoded
            written = (lambda: self._prefetch_quietly(slot)) if part is unsent[-1] else None
            sending = _within(slot.modem.send_pdu(submit, ready=lambda: self._before_pdu(slot), written=written),
                              self.send_timeout)
            try:
                reference = await sending
            except (SyncFailed, StoreError) as exc:  # from _before_pdu: this part's PDU did not leave
                self._store_failed(slot, claimed, exc)
                return
            except Exception as exc:
                self._commit_pending(slot)
                self._failed(slot, claimed, part, exc)
                return
            now = self.clock()
            self._commit_pending(slot)  # a modem that did not await ``ready``
            # the duplicate window of this part closes when its TP-MR is committed: by the next part's
            # _before_pdu, while the modem answers its AT+CMGS, or before this worker does anything else
            slot.pending = _SentPart(claimed.id, part.sequence, part.total, reference, now)
            self._record_send(slot, claimed.recipient, now)
            slot.last_error = None

    async def _before_pdu(self, slot: _Slot) -> None:
        """Between a part's AT+CMGS and its PDU (the modem works on the prompt meanwhile): commit the
        TP-MR of the part before it, then wait until the TP-MR of the part before that is on disk
        (its sync overlapped the last part's exchange)."""
        self._commit_pending(slot)
        if len(slot.unsynced) == slot.unsynced.maxlen:
            await self.wal_sync.wait(slot.unsynced[0])

    def _commit_pending(self, slot: _Slot) -> None:
        """Commit the TP-MR of the last part ``slot`` sent, if not yet (without fsync: WalSync syncs it)."""
        sent, slot.pending = slot.pending, None
        if sent is None:
            return
        state = self.store.part_sent(sent.message_id, sent.sequence, slot.modem_id, sent.reference, sent.at,
                                     durable=False)
        slot.unsynced.append(self.wal_sync.request())
        LOG.info("message %d part %d/%d sent via %s (TP-MR %d)%s", sent.message_id, sent.sequence,
                 sent.total, slot.modem_id, sent.reference, "; message sent" if state == "sent" else "")

    def _prefetch_quietly(self, slot: _Slot) -> None:
        try:
            self._prefetch(slot)
        except Exception:
            LOG.exception("claiming the next message for %s failed", slot.modem_id)

    def _store_failed(self, slot: _Slot, claimed: ClaimedMessage, exc: BaseException) -> None:
        """The store could not commit or sync the previous TP-MR: ``claimed``'s PDU did not leave; it
        goes back to the queue (no attempt counted) and the modem pauses (the disk, not the message
        or the modem)."""
        now = self.clock()
        LOG.error("%s: %s; message %d goes back to the queue and %s pauses for %.0fs", slot.modem_id, exc,
                  claimed.id, slot.modem_id, self.modem_error_pause)
        slot.unsynced.clear()
        slot.paused_until = now + self.modem_error_pause
        slot.last_error = str(exc)
        self.store.release(claimed.id, now, error=str(exc))

    def _failed(self, slot: _Slot, claimed: ClaimedMessage, part: Part, exc: BaseException) -> None:
        now = self.clock()
        reason = describe(exc)
        slot.last_error = reason
        where = f"message {claimed.id} part {part.sequence}/{part.total} via {slot.modem_id}"
        if is_sim_state_error(exc):
            # the SIM, not the message: no attempt counted; another modem (or this one once its SIM is
            # ready again) takes it
            slot.paused_until = now + self.modem_error_pause
            LOG.warning("%s: the modem's SIM is not ready (%s); the message goes back to the queue", where, reason)
            self.store.release(claimed.id, now, error=reason)
            if self.on_sim_error is not None:
                self.on_sim_error(slot.modem_id, reason)
            return
        if not is_transient(exc):
            LOG.warning("%s failed permanently: %s", where, reason)
            self.store.fail(claimed.id, reason, now)
            return
        if claimed.attempts >= self.max_attempts:
            LOG.warning("%s failed after %d attempts: %s", where, claimed.attempts, reason)
            self.store.fail(claimed.id, f"gave up after {claimed.attempts} attempts: {reason}", now)
            return
        if is_modem_failure(exc):
            slot.paused_until = now + self.modem_error_pause
            others = [s for s in self._slots.values() if s is not slot and s.healthy and s.paused_until <= now]
            if others:
                LOG.warning("%s: modem failure (%s); moving the message to another modem", where, reason)
                self.store.requeue(claimed.id, reason, now, now)
                return
        delay = self.backoff(claimed.attempts)
        LOG.info("%s: transient error (%s); retry in %.1fs", where, reason, delay)
        self.store.requeue(claimed.id, reason, now + delay, now)
