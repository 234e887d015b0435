"""The simulated network and SMSC: routes SMS between simulated modems, records the rest.

An SMS-SUBMIT for a simulated modem's number becomes an SMS-DELIVER in that modem's storage (built
from the submitted user data, so every part keeps its header and coding). One for any other number
is recorded in ``sent`` and appended to ``DIR/network.jsonl`` once all its parts have arrived. A
status report goes back to the sender when TP-SRR was set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.pdu import Concat, encode_deliver, encode_status_report

if TYPE_CHECKING:
    from drivers.simulator.modem import SimModem

SMSC_NUMBER = "+4915550999"
#: Seconds between the +CMGS answer and the status report (a real SMSC takes seconds; clients such
#: as python-gsmmodem expect a multipart send to be over before the first report arrives).
REPORT_DELAY = 0.5


def normalise(number: str) -> str:
    """Digits of an international number; national 0-prefixed numbers are taken as German."""
    number = number.strip()
    if number.startswith("+"):
        return number[1:]
    if number.startswith("00"):
        return number[2:]
    if number.startswith("0"):
        return "49" + number[1:]
    return number


def _semi_octets(digits: str) -> bytes:
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex("".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2)))


def encode_address(number: str) -> bytes:
    """A TP-OA/TP-DA field for a phone number (international when it starts with '+')."""
    international = number.startswith("+")
    digits = number.lstrip("+")
    if not digits.isdigit():
        raise ValueError(f"not a phone number: {number!r}")
    return bytes([len(digits), 0x91 if international else 0x81]) + _semi_octets(digits)


def encode_scts(moment: datetime) -> bytes:
    """A service-centre timestamp (UTC, zone 0)."""
    moment = moment.astimezone(UTC)
    fields = (moment.year % 100, moment.month, moment.day, moment.hour, moment.minute, moment.second, 0)
    return bytes(((value % 10) << 4) | (value // 10) for value in fields)


def deliver_from_submit(tpdu: bytes, originator: str, moment: datetime, smsc: str) -> str:
    """The SMS-DELIVER (hex, with SMSC field) a recipient gets for a submitted TPDU."""
    first = tpdu[0]
    pos = 2 + 2 + (tpdu[2] + 1) // 2  # first octet, TP-MR, address length, type, digits
    pid, dcs = tpdu[pos], tpdu[pos + 1]
    pos += 2
    pos += {0: 0, 2: 1, 1: 7, 3: 7}[(first >> 3) & 0x03]  # TP-VP by TP-VPF
    user_data = tpdu[pos:]
    deliver_first = 0x04 | (first & 0xC0)  # TP-MMS, keep TP-UDHI and TP-RP
    body = bytes([deliver_first]) + encode_address(originator) + bytes([pid, dcs]) + encode_scts(moment)
    smsc_address = encode_address(smsc)
    smsc_field = bytes([len(smsc_address) - 1]) + smsc_address[1:]  # length counts octets, not digits
    return (smsc_field + body + user_data).hex().upper()


@dataclass
class Submitted:
    """One submitted part as the network sees it."""

    to: str
    text: str
    concat: Concat | None
    report: bool
    reference: int
    tpdu: bytes | None  # None for text-mode submits
    #: The TP-DCS message class (3GPP TS 23.038 §4): 0 is a flash SMS; None: no class.
    message_class: int | None = None


class Network:
    def __init__(self, directory: Path, smsc: str = SMSC_NUMBER, report_delay: float = REPORT_DELAY) -> None:
        self.directory = directory
        self.report_delay = report_delay
        self.smsc = smsc
        self.journal = directory / "network.jsonl"
        self.modems: list[SimModem] = []
        #: SMS that left for numbers outside the simulation (multipart reassembled).
        self.sent: list[dict[str, Any]] = []
        #: SMS between simulated modems (reassembled, for tests and logs).
        self.delivered: list[dict[str, Any]] = []
        #: Every submitted part as it reached the network, in order: which modem sent it, its TP-MR
        #: and concatenation header (a multipart split over two SIMs shows here).
        self.parts: list[dict[str, Any]] = []
        self._parts: dict[tuple[int, str, int, int], dict[int, tuple[str, int | None]]] = {}
        self._concat_reference = 0

    def find(self, number: str) -> SimModem | None:
        wanted = normalise(number)
        for modem in self.modems:
            if normalise(modem.number) == wanted:
                return modem
        return None

    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)

    def submit(self, sender: SimModem, part: Submitted) -> None:
        """Route one submitted part (called after the modem answered +CMGS)."""
        moment = self.now()
        recipient = self.find(part.to)
        concat = part.concat
        self.parts.append({
            "modem": sender.index, "to": part.to, "text": part.text, "message_reference": part.reference,
            "concat_reference": concat.reference if concat else None,
            "sequence": concat.sequence if concat else 1, "total": concat.total if concat else 1,
            "class": part.message_class,
        })
        if recipient is not None:
            if part.tpdu is not None:
                pdus = [deliver_from_submit(part.tpdu, sender.number, moment, self.smsc)]
            else:
                pdus = encode_deliver(sender.number, part.text, timestamp=moment, smsc=self.smsc,
                                      concat_reference=self.next_concat_reference(),
                                      message_class=part.message_class)
            for pdu in pdus:
                recipient.receive(pdu)
        record = self._reassemble(sender, part)
        if record is not None:
            if recipient is not None:
                self.delivered.append(record)
            else:
                self.sent.append(record)
                with self.journal.open("a", encoding="utf-8") as journal:
                    journal.write(json.dumps(record, ensure_ascii=False) + "\n")
        if part.report:
            report = encode_status_report(
                part.to, part.reference, sender.report_status, timestamp=moment, discharge_time=self.now(),
                smsc=self.smsc,
            )
            if self.report_delay > 0:
                asyncio.get_running_loop().call_later(self.report_delay, sender.status_report, report)
            else:
                sender.status_report(report)

    def _reassemble(self, sender: SimModem, part: Submitted) -> dict[str, Any] | None:
        """The whole SMS once its last part arrived; ``class`` is the parts' message class when they
        all have the same, else the list of them in sequence order."""
        if part.concat is None or part.concat.total <= 1:
            text, total, classes = part.text, 1, [part.message_class]
        else:
            key = (sender.index, normalise(part.to), part.concat.reference, part.concat.total)
            pieces = self._parts.setdefault(key, {})
            pieces[part.concat.sequence] = (part.text, part.message_class)
            if len(pieces) < part.concat.total:
                return None
            del self._parts[key]
            ordered = [pieces[i] for i in sorted(pieces)]
            text, total, classes = "".join(t for t, _ in ordered), part.concat.total, [c for _, c in ordered]
        message_class: int | None | list[int | None] = classes[0] if len(set(classes)) == 1 else classes
        return {"modem": sender.index, "from": sender.number, "to": part.to, "text": text, "parts": total,
                "class": message_class}

    def next_concat_reference(self) -> int:
        self._concat_reference = (self._concat_reference + 1) % 256
        return self._concat_reference

    def inject(self, modem: SimModem, sender: str, text: str, parts: Sequence[int] | None = None) -> int:
        """An SMS from ``sender`` (any number or name) to ``modem``; returns the part count.

        ``parts``: deliver only these parts (1-based), in this order (``[3, 1]``: part 3, then part 1,
        part 2 never), as a network that reorders or loses parts does.
        """
        pdus = encode_deliver(sender, text, timestamp=self.now(), smsc=self.smsc,
                              concat_reference=self.next_concat_reference())
        if parts is not None:
            wrong = [n for n in parts if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(pdus)]
            if wrong or not parts:
                raise ValueError(f"parts must be part numbers 1..{len(pdus)} of this {len(pdus)}-part "
                                 f"message, not {list(parts)!r}")
            pdus = [pdus[n - 1] for n in parts]
        for pdu in pdus:
            modem.receive(pdu)
        return len(pdus)
