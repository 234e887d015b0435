"""Incoming calls: the ring URCs of one modem turned into one ``IncomingCall`` and one ``CallEnded``.

A modem announces a call by ``RING`` (or ``+CRING: VOICE``) every ring cycle, each followed by
``+CLIP`` with the caller's number when caller ID is on (3GPP TS 27.007 6.11, 7.6), until the call
is answered, hung up, or the caller gives up (``NO CARRIER``, or a line of the profile's
``calls.end_urcs``). ``CallTracker`` is the pure state machine between those lines and the two
events; the ``Modem`` feeds it and arms its silence timer (some modems stop ringing without a word).

- ``IncomingCall`` once per call, as soon as the caller is known: at the first ``+CLIP``, or, when
  the modem sends no caller ID, at the second ring or when the call ends (``reason = "not-sent"``).
- ``CallEnded`` once per call: ``"hung-up"`` (``Modem.hang_up``), ``"caller"`` (the caller gave up
  or the network ended it), ``"silence"`` (no ring for ``Modem.ring_silence`` seconds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from drivers.parsers import CallerId

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class IncomingCall:
    """Someone calls the modem's SIM. ``number`` is the caller's (``+49…`` when international), None
    when not shown; ``reason`` says why: "withheld", "unavailable", "payphone", "not-sent" (the modem
    gave no caller ID)."""

    modem_id: str
    number: str | None
    number_type: int | None
    reason: str | None
    call_type: str        # "VOICE" from +CRING, "" from a plain RING
    at: float             # wall-clock time of the first ring (seconds since the epoch)


@dataclass(frozen=True)
class CallEnded:
    """The incoming call is over: "hung-up" (by smsgw), "caller" (gave up), "silence" (rings stopped)."""

    modem_id: str
    number: str | None
    reason: str
    rings: int


CallEvent = IncomingCall | CallEnded


class CallTracker:
    """The ringing state of one modem; ``emit`` receives the events. Not thread-safe (the reader's)."""

    def __init__(self, modem_id: str, emit: Callable[[CallEvent], None], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.modem_id = modem_id
        self.emit = emit
        self.clock = clock
        self.ringing = False
        self.rings = 0
        self._call_type = ""
        self._started = 0.0
        self._reported: IncomingCall | None = None

    def ring(self, call_type: str = "") -> None:
        """A ``RING`` or ``+CRING: <type>``."""
        if not self.ringing:
            self._start(call_type)
        elif self._reported is None:
            # 27.007 7.6: +CLIP follows every RING; a second RING without one: no caller ID comes
            self._report(None, None, "not-sent")
        self.rings += 1
        self._call_type = self._call_type or call_type

    def caller_id(self, clip: CallerId) -> None:
        """A ``+CLIP`` line (some modems send it before the first RING)."""
        if not self.ringing:
            self._start("")
        if self._reported is None:
            self._report(clip.number, clip.number_type, clip.reason)

    def ended(self, reason: str) -> None:
        """The call is over ("hung-up", "caller", "silence"); nothing when no call is ringing."""
        if not self.ringing:
            LOG.debug("%s: call end (%s) with no call ringing", self.modem_id, reason)
            return
        if self._reported is None:
            self._report(None, None, "not-sent")
        reported = self._reported
        assert reported is not None
        self.emit(CallEnded(self.modem_id, reported.number, reason, self.rings))
        LOG.info("%s: call from %s ended (%s) after %d ring(s)", self.modem_id, reported.number or "(no number)",
                 reason, self.rings)
        self.ringing = False
        self.rings = 0
        self._reported = None
        self._call_type = ""

    def _start(self, call_type: str) -> None:
        self.ringing = True
        self.rings = 0
        self._call_type = call_type
        self._started = self.clock()
        self._reported = None

    def _report(self, number: str | None, number_type: int | None, reason: str | None) -> None:
        event = IncomingCall(self.modem_id, number, number_type, reason, self._call_type, self._started)
        self._reported = event
        LOG.info("%s: incoming call from %s", self.modem_id, number or f"(no number: {reason})")
        self.emit(event)
