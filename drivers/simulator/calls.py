"""Incoming calls on a simulated modem, with the URCs real modems send (see docs/simulator.md).

A call rings like a real modem: ``RING`` every ring cycle (``+CRING: VOICE`` after ``AT+CRC=1``,
3GPP TS 27.007 6.11), each followed by the caller ID after ``AT+CLIP=1`` (27.007 7.6) in the
flavour's form, until it is answered (``ATA``), hung up (``ATH``, ``AT+CHUP``: ``OK`` and nothing
more) or the caller gives up after ``rings`` rings: then ``NO CARRIER``, as SIM800 and Quectel
modems report a missed call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.simulator.modem import SimModem

#: Seconds between two rings (real networks ring every 3 to 6 seconds).
RING_INTERVAL = 3.0
#: Rings before the caller gives up (about 20 seconds at the real interval).
RINGS = 6


class SimCall:
    """One call to a simulated modem; ``state`` is "ringing", "active" (answered) or "ended"."""

    def __init__(self, modem: SimModem, caller: str | None, *, rings: int = RINGS,
                 interval: float = RING_INTERVAL) -> None:
        if rings < 1:
            raise ValueError(f"a call rings at least once, not {rings} times")
        if caller is not None and not _is_number(caller):
            raise ValueError(f"the caller must be a phone number such as +4915112345678, not {caller!r}")
        self.modem = modem
        self.caller = caller
        self.max_rings = rings
        self.interval = interval
        self.rings = 0
        self.state = "ringing"

    def start(self) -> None:
        self._ring()

    def describe(self) -> dict[str, Any]:
        return {"from": self.caller, "rings": self.rings, "state": self.state}

    def clip_line(self) -> str:
        """The +CLIP line in the flavour's form: international numbers with type 145, national 129,
        a withheld number empty with type 128 and <CLI validity> 1."""
        if self.caller is None:
            number, toa, validity = "", 128, 1
        else:
            number, toa, validity = self.caller, 145 if self.caller.startswith("+") else 129, 0
        return self.modem.flavour.clip_format.format(number=number, type=toa, validity=validity)

    def _ring(self) -> None:
        modem = self.modem
        if self.state != "ringing":
            return
        if not modem.plugged or not modem.registered:
            self._end()  # the network no longer reaches the modem: the caller hears nothing more
            return
        if self.rings >= self.max_rings:
            self.give_up()
            return
        self.rings += 1
        modem.urc("+CRING: VOICE" if modem.crc else "RING")
        if modem.clip:
            modem.urc(self.clip_line())
        modem.later(self.interval, self._ring)

    def answer(self) -> bool:
        """ATA: the call is connected (no more rings). False when nothing rings."""
        if self.state != "ringing":
            return False
        self.state = "active"
        return True

    def hang_up(self) -> bool:
        """ATH / AT+CHUP from the modem's side: the call ends, the modem says only OK."""
        if self.state == "ended":
            return False
        self._end()
        return True

    def give_up(self) -> None:
        """The caller hangs up: the modem reports NO CARRIER."""
        if self.state == "ended":
            return
        self._end()
        self.modem.urc(self.modem.flavour.call_end_urc)

    def _end(self) -> None:
        self.state = "ended"
        if self.modem.call is self:
            self.modem.call = None


def _is_number(text: str) -> bool:
    digits = text[1:] if text.startswith("+") else text
    return digits.isdigit() and 3 <= len(digits) <= 20
