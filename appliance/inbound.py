"""Incoming SMS and status reports: commit to the store, then (and only then) free the SIM slot.

One ``Inbound`` serves all modems. Per modem, everything that deletes SIM slots runs in one task
(the event consumer, which also runs the sweeps), so two deletions never race:

- ``+CMTI`` / ``+CDSI``: the Modem reads the slot and puts an ``IncomingSms`` / ``StatusReport`` on
  its ``events`` queue; ``+CMT`` / ``+CDS`` carry the PDU directly (no slot).
- The consumer commits the part with ``Store.add_incoming_part`` (a status report with
  ``Store.apply_status_report``), then deletes the slot. Before deleting it reads the slot again and
  deletes only when it still holds the same PDU: a stale event (the sweep already took the message
  and a new SMS arrived in the freed slot) never deletes an uncommitted message.
- The stored-message sweep (``AT+CMGL=4``) runs at start and every ``sweep_interval`` seconds: it
  catches what arrived while the daemon was down, or whose URC was lost. Duplicates are harmless:
  the store ignores a part it already has.
- SIM storage full: a ``StorageFull`` event (the modem announced it with a line of its profile's
  ``storage_full_urcs``) triggers a sweep. After each sweep the storage is checked; when it is full
  after the received messages were taken, stored outgoing messages (``STO SENT``/``STO UNSENT``: not
  ours to keep) are deleted to make room; the condition is logged, audited and shown in the
  modem's state.
- Undecodable PDUs are committed with their error and raw PDU (never dropped), then deleted.
- Incoming calls (``IncomingCall``, ``CallEnded``) are handed to ``on_call``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appliance.store import Store

if TYPE_CHECKING:
    from drivers.calls import CallEnded, IncomingCall
    from drivers.modem import Modem

LOG = logging.getLogger("appliance.inbound")

#: Seconds between two stored-message sweeps of one modem.
SWEEP_INTERVAL = 60.0
#: Statuses of AT+CMGL: 0 REC UNREAD, 1 REC READ, 2 STO UNSENT, 3 STO SENT.
STORED_OUTGOING = (2, 3)


def _same_pdu(a: str, b: str) -> bool:
    return a.strip().upper() == b.strip().upper()


class Inbound:
    """Consumes the modems' events; commits before deleting; sweeps stored messages."""

    def __init__(
        self,
        store: Store,
        *,
        sweep_interval: float = SWEEP_INTERVAL,
        clock: Callable[[], float] = time.time,
        on_closed: Callable[[str, str | None], None] | None = None,
        on_call: Callable[[IncomingCall | CallEnded], None] | None = None,
    ) -> None:
        self.store = store
        self.sweep_interval = sweep_interval
        self.clock = clock
        self.on_closed = on_closed  # the health supervisor hears about a closed port at once
        #: Hears every ``IncomingCall`` and ``CallEnded`` of every modem (nothing else is done with them).
        self.on_call = on_call
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._modems: dict[str, Modem] = {}
        self._sweep_now: dict[str, asyncio.Event] = {}
        self._busy: dict[str, bool] = {}
        self._stopping = False
        self.received = 0  # parts committed since start
        self.reports = 0
        self.storage_full: dict[str, dict[str, int]] = {}  # modem id -> last "full" reading

    # --- life cycle --------------------------------------------------------------------------

    def add_modem(self, modem: Modem) -> None:
        """Start consuming ``modem.events`` (again after a reopen: a consumer that ended restarts)."""
        modem_id = modem.modem_id
        if self._modems.get(modem_id) is modem and modem_id in self._tasks:
            return
        old = self._tasks.pop(modem_id, None)
        if old is not None:
            old.cancel()
        self._modems[modem_id] = modem
        self._sweep_now[modem_id] = asyncio.Event()
        self._sweep_now[modem_id].set()  # sweep at start
        self._tasks[modem_id] = asyncio.create_task(self._consume(modem), name=f"inbound-{modem_id}")

    def request_sweep(self, modem_id: str) -> None:
        """Sweep ``modem_id`` at the next opportunity (after it was reopened, or on SIM full)."""
        event = self._sweep_now.get(modem_id)
        if event is not None:
            event.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Let a commit-and-delete in progress finish, then stop the consumers."""
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(self._busy.values()) and loop.time() < deadline:
            await asyncio.sleep(0.005)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    # --- the consumer ------------------------------------------------------------------------

    async def _consume(self, modem: Modem) -> None:
        modem_id = modem.modem_id
        sweep_now = self._sweep_now[modem_id]
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while not self._stopping:
            timeout = max(0.0, next_sweep - loop.time())
            get = asyncio.ensure_future(modem.events.get())
            flag = asyncio.ensure_future(sweep_now.wait())
            try:
                await asyncio.wait({get, flag}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                flag.cancel()
                if not get.done():
                    get.cancel()
            if get.done() and not get.cancelled():
                event = get.result()
                self._busy[modem_id] = True
                try:
                    await self._handle_event(modem, event)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    LOG.exception("handling %s from %s failed", type(event).__name__, modem_id)
                finally:
                    self._busy[modem_id] = False
                continue
            if sweep_now.is_set() or loop.time() >= next_sweep:
                sweep_now.clear()
                next_sweep = loop.time() + self.sweep_interval
                if not modem.is_open:
                    continue
                self._busy[modem_id] = True
                try:
                    await self.sweep(modem)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a timeout or a vanished port: the health supervisor acts
                    LOG.warning("sweep of %s failed: %s", modem_id, exc)
                finally:
                    self._busy[modem_id] = False

    # --- handling ----------------------------------------------------------------------------

    async def _handle_event(self, modem: Modem, event: object) -> None:
        """One event from the modem's queue: an SMS, a status report, a call, a closed port, full storage."""
        from drivers.calls import CallEnded, IncomingCall
        from drivers.modem import IncomingSms, ModemClosed, StatusReport, StorageFull

        modem_id = modem.modem_id
        if isinstance(event, IncomingSms):
            await self.handle_sms(modem, event)
        elif isinstance(event, StatusReport):
            await self.handle_report(modem, event)
        elif isinstance(event, ModemClosed):
            if self.on_closed is not None:
                self.on_closed(modem_id, event.error)
        elif isinstance(event, IncomingCall | CallEnded):
            if self.on_call is not None:
                self.on_call(event)
        elif isinstance(event, StorageFull):
            LOG.warning("%s announced that its SMS storage is full; sweeping", modem_id)
            self.request_sweep(modem_id)

    async def handle_sms(self, modem: Modem, sms: Any) -> None:
        """Commit an ``IncomingSms``, then delete its SIM slot (if it has one)."""
        if not sms.pdu:
            # the Modem could not read the announced slot: the sweep will find it
            LOG.warning("%s: announced SMS at index %s could not be read (%s); sweeping", modem.modem_id,
                        sms.index, sms.error)
            self.request_sweep(modem.modem_id)
            return
        part_id = self.store.add_incoming_part(modem.modem_id, sms.pdu, sms.deliver, sms.error, self.clock(),
                                               sms.index)
        self.received += 1
        LOG.info("received part %d on %s from %s%s", part_id, modem.modem_id,
                 sms.deliver.number if sms.deliver is not None else "?",
                 f" index={sms.index}" if sms.index is not None else "")
        if sms.index is not None:
            await self._delete_if_same(modem, sms.index, sms.pdu)

    async def handle_report(self, modem: Modem, report: Any) -> None:
        """Apply a ``StatusReport`` to the outbox, then delete its slot."""
        if report.report is not None:
            match = self.store.apply_status_report(modem.modem_id, report.report, self.clock())
            self.reports += 1
            LOG.info("status report on %s: TP-MR %d status %d -> %s", modem.modem_id, report.report.reference,
                     report.report.status, "unmatched" if match is None else f"message {match.message_id}")
        else:
            LOG.warning("%s: undecodable status report %r: %s", modem.modem_id, report.pdu, report.error)
            self.store.audit("undecodable-status-report", {"modem": modem.modem_id, "pdu": report.pdu,
                                                          "error": report.error})
        if report.index is not None and report.pdu:
            await self._delete_if_same(modem, report.index, report.pdu)

    async def _delete_if_same(self, modem: Modem, index: int, pdu: str) -> bool:
        """Delete slot ``index`` if it still holds ``pdu`` (committed by the caller)."""
        try:
            current = await modem.read_message(index)
        except Exception as exc:  # empty slot (CMS 321), or the modem went away: nothing to delete now
            LOG.debug("%s: slot %d not re-read before delete: %s", modem.modem_id, index, exc)
            return False
        if not _same_pdu(current.pdu, pdu):
            LOG.info("%s: slot %d now holds another message; not deleting it", modem.modem_id, index)
            return False
        await modem.delete_message(index)
        return True

    async def sweep(self, modem: Modem) -> int:
        """Commit every received message stored on the modem, deleting each after its commit."""
        from drivers.pdu import SmsDeliver, SmsStatusReport

        modem_id = modem.modem_id
        stored = await modem.list_messages(4)
        taken = 0
        for message in stored:
            if message.stat in STORED_OUTGOING:
                continue
            if isinstance(message.message, SmsStatusReport):
                self.store.apply_status_report(modem_id, message.message, self.clock())
                self.reports += 1
            elif isinstance(message.message, SmsDeliver) or message.message is None:
                error = message.error if message.message is None else None
                self.store.add_incoming_part(modem_id, message.pdu, message.message, error, self.clock(),
                                             message.index)
                self.received += 1
            else:
                continue
            # listed and committed in this task: the slot cannot have changed hands since the list
            await modem.delete_message(message.index)
            taken += 1
        if taken:
            LOG.info("sweep of %s took %d stored message(s)", modem_id, taken)
        await self._check_storage(modem, stored)
        return taken

    async def _check_storage(self, modem: Modem, stored: list[Any]) -> None:
        try:
            status = await modem.storage_status()
        except Exception as exc:
            LOG.debug("%s: storage status unavailable: %s", modem.modem_id, exc)
            return
        if status.total <= 0 or status.used < status.total:
            self.storage_full.pop(modem.modem_id, None)
            return
        LOG.warning("SIM storage full on %s (%d/%d in %s); clearing stored outgoing messages",
                    modem.modem_id, status.used, status.total, status.storage)
        cleared = 0
        for message in stored:
            if message.stat in STORED_OUTGOING:
                await modem.delete_message(message.index)
                cleared += 1
        self.storage_full[modem.modem_id] = {"used": status.used, "total": status.total, "cleared": cleared}
        self.store.audit("sim-storage-full", {"modem": modem.modem_id, "used": status.used,
                                              "total": status.total, "cleared": cleared})
