"""SMS PDU codec (3GPP TS 23.040 / 23.038): SMS-SUBMIT, SMS-DELIVER, SMS-STATUS-REPORT.

Pure code, no I/O. ``decode`` reads a PDU as modems return it (hex, starting with the SMSC field
unless ``with_smsc=False``); ``encode_submit`` / ``encode_deliver`` / ``encode_status_report`` build
them. Malformed input raises ``PduError`` with a reason, never another exception.

Text is written in the GSM 7-bit default alphabet (plus its extension table) when the whole text fits,
else in UCS-2 (UTF-16, surrogate pairs for characters outside the BMP). Long texts are split into
the fewest parts: 160 septets alone / 153 per part with an 8-bit concatenation header (152 with the
16-bit one); 70 / 67 (66) UTF-16 code units. An escape pair or a surrogate pair is never split. That
planning is ``drivers.text_parts``' (re-exported here), which counts parts without the codec.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from drivers import gsm7
from drivers.text_parts import (
    IEI_LOCKING_SHIFT,
    IEI_PORT_8,
    IEI_PORT_16,
    IEI_SINGLE_SHIFT,
    MAX_USER_DATA_OCTETS,
    MAX_USER_DATA_SEPTETS,
    PduError,
    count_parts,
    language_id,
    plan_parts,
    split_text,
)

__all__ = [
    "Concat",
    "PduError",
    "SmsDeliver",
    "SmsStatusReport",
    "SmsSubmit",
    "SubmitPart",
    "count_parts",
    "decode",
    "encode_deliver",
    "encode_status_report",
    "encode_submit",
    "language_id",
    "relative_validity",
    "split_text",
    "to_json",
]

#: Longest alphanumeric address, in characters.
MAX_ALPHANUMERIC = 11
#: Longest address, in digits.
MAX_ADDRESS_DIGITS = 20

# Information element identifiers (23.040 9.2.3.24)
IEI_CONCAT_8 = 0x00
IEI_CONCAT_16 = 0x08

# Type of number (bits 6..4 of the type-of-address octet)
TON_UNKNOWN = 0
TON_INTERNATIONAL = 1
TON_NATIONAL = 2
TON_ALPHANUMERIC = 5
_TON_NAMES = {
    TON_UNKNOWN: "unknown",
    TON_INTERNATIONAL: "international",
    TON_NATIONAL: "national",
    TON_ALPHANUMERIC: "alphanumeric",
}
_TOA_INTERNATIONAL = 0x91  # ISDN/telephone numbering plan
_TOA_UNKNOWN = 0x81
_TOA_ALPHANUMERIC = 0xD0

_DCS_BY_ENCODING = {"gsm7": 0x00, "8bit": 0x04, "ucs2": 0x08}
#: TP-DCS bit 4 of the general data coding group (3GPP TS 23.038 §4, 00xx): bits 1..0 are the
#: message class; class 0 ("flash") is shown at once and not stored by the handset.
_DCS_HAS_CLASS = 0x10
MESSAGE_CLASSES = (0, 1, 2, 3)


def data_coding(encoding: str, message_class: int | None = None) -> int:
    """The TP-DCS octet for ``encoding`` (gsm7, 8bit, ucs2) and an optional message class 0..3, in
    the general data coding group (3GPP TS 23.038 §4: bit 4 set, bits 1..0 the class)."""
    dcs = _DCS_BY_ENCODING[encoding]
    if message_class is None:
        return dcs
    if isinstance(message_class, bool) or message_class not in MESSAGE_CLASSES:
        raise PduError(f"bad message class {message_class!r}: expected 0, 1, 2 or 3")
    return dcs | _DCS_HAS_CLASS | message_class


@dataclass(slots=True)
class Concat:
    """Concatenated-SMS information element: this part is ``sequence`` of ``total``."""

    reference: int
    total: int
    sequence: int
    bits: int = 8


@dataclass(slots=True)
class SmsDeliver:
    smsc: str | None
    number: str
    number_type: str
    text: str
    encoding: str
    timestamp: datetime
    concat: Concat | None
    port: int | None
    protocol_id: int
    dcs: int
    data: bytes
    message_class: int | None = None
    #: What did not follow 23.040 but was read anyway (a bad time-zone octet, a length mismatch...).
    anomalies: tuple[str, ...] = ()
    #: The user data is shorter than TP-UDL says: ``text`` is what was there.
    truncated: bool = False
    #: National language tables used (locking shift, single shift); 0 is the default alphabet.
    language_tables: tuple[int, int] = (0, 0)

    @property
    def type(self) -> str:
        return "deliver"

    @property
    def malformed(self) -> bool:
        return bool(self.anomalies)


@dataclass(slots=True)
class SmsSubmit:
    smsc: str | None
    number: str
    number_type: str
    text: str
    encoding: str
    reference: int
    validity: int | datetime | None
    report_requested: bool
    concat: Concat | None
    port: int | None
    protocol_id: int
    dcs: int
    data: bytes
    message_class: int | None = None
    anomalies: tuple[str, ...] = ()
    truncated: bool = False
    language_tables: tuple[int, int] = (0, 0)

    @property
    def type(self) -> str:
        return "submit"

    @property
    def malformed(self) -> bool:
        return bool(self.anomalies)


@dataclass(slots=True)
class SmsStatusReport:
    smsc: str | None
    number: str
    number_type: str
    reference: int
    timestamp: datetime
    discharge_time: datetime
    status: int
    anomalies: tuple[str, ...] = ()

    @property
    def type(self) -> str:
        return "status-report"

    @property
    def malformed(self) -> bool:
        return bool(self.anomalies)


@dataclass(slots=True)
class SubmitPart:
    """One SMS-SUBMIT ready for ``AT+CMGS=<tpdu_length>``; ``pdu`` is hex including the SMSC field."""

    pdu: str
    tpdu_length: int
    sequence: int
    total: int


Message = SmsDeliver | SmsSubmit | SmsStatusReport


# --- tables -----------------------------------------------------------------------------------------

_BCD_DIGITS = "0123456789*#abc"  # nibble 0xF is the filler
# octet -> its two semi-octet digits in reading order (low nibble first); "F" marks the filler
_SEMI_OCTET_PAIRS = [
    (_BCD_DIGITS + "F")[octet & 0x0F] + (_BCD_DIGITS + "F")[octet >> 4] for octet in range(256)
]
_DIGIT_NIBBLE = {digit: value for value, digit in enumerate(_BCD_DIGITS)}
# octet -> decimal value of its swapped semi-octets, or -1 when a nibble is not a decimal digit
_SWAPPED_DECIMAL = [
    (octet & 0x0F) * 10 + (octet >> 4) if (octet & 0x0F) < 10 and (octet >> 4) < 10 else -1
    for octet in range(256)
]
_SWAP_ENCODE = [((value % 10) << 4) | (value // 10) for value in range(100)]

_TIMEZONES: dict[int, timezone] = {}


def _timezone(quarters: int) -> timezone:
    tz = _TIMEZONES.get(quarters)
    if tz is None:
        tz = timezone(timedelta(minutes=15 * quarters)) if quarters else UTC
        _TIMEZONES[quarters] = tz
    return tz


def _dcs_info(dcs: int) -> tuple[str | None, int | None]:
    """DCS -> (encoding, message class); encoding None means compressed (unsupported)."""
    group = dcs >> 4
    if group <= 0x7:  # general data coding (00xx) and automatic deletion (01xx)
        if dcs & 0x20:
            return None, None
        message_class = dcs & 0x03 if dcs & 0x10 else None
        alphabet = (dcs >> 2) & 0x03
        return ("gsm7", "8bit", "ucs2", "gsm7")[alphabet], message_class
    if group == 0xF:  # data coding / message class
        return ("8bit" if dcs & 0x04 else "gsm7"), dcs & 0x03
    if group == 0xE:  # message waiting indication, store, UCS-2
        return "ucs2", None
    return "gsm7", None  # 0xC, 0xD message waiting; 0x8..0xB reserved: default alphabet


_DCS_TABLE = [_dcs_info(dcs) for dcs in range(256)]


# --- validity period ------------------------------------------------------------------------------

_MINUTE = 60
_HOUR = 3600
_DAY = 86400
_WEEK = 7 * _DAY


def _relative_seconds(value: int) -> int:
    """TP-VP relative octet -> seconds (23.040 9.2.3.12.1)."""
    if value <= 143:
        return (value + 1) * 5 * _MINUTE
    if value <= 167:
        return 12 * _HOUR + (value - 143) * 30 * _MINUTE
    if value <= 196:
        return (value - 166) * _DAY
    return (value - 192) * _WEEK


_RELATIVE_TABLE = [_relative_seconds(value) for value in range(256)]


def relative_validity(seconds: int) -> int:
    """Seconds -> the TP-VP relative octet: the smallest period >= ``seconds``, at most 63 weeks."""
    for value, period in enumerate(_RELATIVE_TABLE):
        if period >= seconds:
            return value
    return 255


# --- reading --------------------------------------------------------------------------------------
# Every read is bounds-checked: a helper takes the octets and a position, checks that what it needs
# is there (else PduError naming the field), and returns the value and the next position. Checks
# are made per field, not per octet, to keep decoding fast.


def _truncated(what: str, pos: int, need: int, size: int) -> PduError:
    left = max(size - pos, 0)
    if left == 0:
        return PduError(f"truncated: PDU ends before the {what} (octet {pos})")
    return PduError(f"truncated: the {what} needs {need} octets at octet {pos}, {left} left")


def _to_octets(pdu: str | bytes | bytearray | memoryview) -> bytes:
    if isinstance(pdu, str):
        try:
            return bytes.fromhex(pdu)
        except ValueError:
            text = pdu.strip()
            bad = next((c for c in text if c not in "0123456789abcdefABCDEF"), None)
            if bad is not None:
                raise PduError(f"bad hex: character {bad!r}") from None
            raise PduError(f"bad hex: odd number of digits ({len(text)})") from None
    if isinstance(pdu, bytes | bytearray | memoryview):
        return bytes(pdu)
    raise PduError(f"PDU must be a hex string or bytes, not {type(pdu).__name__}")


# octet -> the same octet with its nibbles swapped, so that .hex() reads semi-octets in order
_SWAP_NIBBLES = bytes(((octet & 0x0F) << 4) | (octet >> 4) for octet in range(256))
# hex digit -> BCD digit of 23.040 9.1.2.3 ('f', the filler, marked as 'F')
_HEX_TO_BCD = str.maketrans("abcdef", "*#abcF")


def _digits(octets: bytes, count: int, what: str) -> str:
    digits = octets.translate(_SWAP_NIBBLES).hex()[:count]
    if digits.isdigit():
        return digits
    if digits.endswith("f"):
        digits = digits[:-1]  # a filler counted in the length by some senders
    digits = digits.translate(_HEX_TO_BCD)
    if "F" in digits:
        raise PduError(f"bad address: filler digit inside the {what}")
    return digits


def _read_address(data: bytes, pos: int, what: str) -> tuple[str, str, int]:
    """TP-OA / TP-DA / TP-RA at ``pos``: length in semi-octets, type of address, digits or packed
    text. Returns (number, number type, next position)."""
    size = len(data)
    if pos + 2 > size:
        raise _truncated(f"{what} header", pos, 2, size)
    length = data[pos]
    toa = data[pos + 1]
    if length > MAX_ADDRESS_DIGITS:
        raise PduError(f"bad address: {what} length {length} exceeds {MAX_ADDRESS_DIGITS} digits")
    start = pos + 2
    end = start + (length + 1) // 2
    if end > size:
        raise _truncated(what, start, end - start, size)
    octets = data[start:end]
    ton = (toa >> 4) & 0x07
    if ton == TON_INTERNATIONAL:
        return "+" + _digits(octets, length, what), "international", end
    if ton == TON_ALPHANUMERIC:
        count = length * 4 // 7
        septets = gsm7.unpack(octets, count)
        if count and septets[-1] == 0x0D and count * 7 == length * 4:
            septets = septets[:-1]  # CR filling the last 7 spare bits (23.038 6.1.2.3.1)
        return gsm7.decode(septets), "alphanumeric", end
    return _digits(octets, length, what), _TON_NAMES.get(ton, "unknown"), end


def _read_smsc(data: bytes) -> tuple[str | None, int]:
    """The SMSC field: length in octets (type octet included), type of address, digits."""
    if not data:
        raise _truncated("SMSC length", 0, 1, 0)
    length = data[0]
    if length == 0:
        return None, 1
    if length > 1 + MAX_ADDRESS_DIGITS // 2:
        raise PduError(f"bad SMSC address: length {length} octets")
    end = 1 + length
    if end > len(data):
        raise _truncated("SMSC address", 1, length, len(data))
    digits = data[2:end].translate(_SWAP_NIBBLES).hex()
    if not digits.isdigit():
        if digits.endswith("f"):
            digits = digits[:-1]
        digits = digits.translate(_HEX_TO_BCD)
        if "F" in digits:
            raise PduError("bad SMSC address: filler digit inside the number")
    if not digits:
        return None, end
    return ("+" + digits if (data[1] >> 4) & 0x07 == TON_INTERNATIONAL else digits), end


def _read_timestamp(data: bytes, pos: int, what: str, anomalies: list[str]) -> datetime:
    """Seven semi-octet pairs: year, month, day, hour, minute, second, zone (caller checked length).

    A zone octet whose units digit is not BCD (0xC2, 0xE1, 0xA0 from real networks) is read as
    Android's SmsMessage and gammu read it: the sign from bit 3, the valid digit, the bad one as 0;
    the wall time is kept and the oddity is added to ``anomalies``."""
    table = _SWAPPED_DECIMAL
    year = table[data[pos]]
    month = table[data[pos + 1]]
    day = table[data[pos + 2]]
    hour = table[data[pos + 3]]
    minute = table[data[pos + 4]]
    second = table[data[pos + 5]]
    zone = data[pos + 6]
    if min(year, month, day, hour, minute, second) < 0:
        raise PduError(f"bad {what}: non-decimal digit in {data[pos : pos + 7].hex().upper()}")
    units = zone >> 4
    quarters = (zone & 0x07) * 10 + (units if units <= 9 else 0)
    if zone & 0x08:
        quarters = -quarters
    if units > 9:
        sign = "-" if quarters < 0 else "+"
        anomalies.append(
            f"{what}: time zone octet {zone:02X} is not BCD; read as {sign}{abs(quarters) * 15 // 60:02d}:"
            f"{abs(quarters) * 15 % 60:02d}"
        )
    tz = _TIMEZONES.get(quarters) or _timezone(quarters)
    try:
        return datetime(2000 + year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        raise PduError(f"bad {what}: {exc} ({data[pos : pos + 7].hex().upper()})") from None


def _read_validity(
    data: bytes, pos: int, vpf: int, anomalies: list[str]
) -> tuple[int | datetime | None, int]:
    size = len(data)
    if vpf == 0:
        return None, pos
    if vpf == 2:
        if pos >= size:
            raise _truncated("validity period", pos, 1, size)
        return _RELATIVE_TABLE[data[pos]], pos + 1
    if pos + 7 > size:
        raise _truncated("validity period", pos, 7, size)
    if vpf == 3:
        return _read_timestamp(data, pos, "validity period", anomalies), pos + 7
    # enhanced format (23.040 9.2.3.12.3): 7 octets, the first says how the rest reads
    octets = data[pos : pos + 7]
    kind = octets[0] & 0x07
    if kind == 0:
        return None, pos + 7
    if kind == 1:
        return _RELATIVE_TABLE[octets[1]], pos + 7
    if kind == 2:
        return octets[1], pos + 7
    if kind == 3:
        hours, minutes, seconds = (_SWAPPED_DECIMAL[octet] for octet in octets[1:4])
        if min(hours, minutes, seconds) < 0:
            raise PduError(f"bad enhanced validity period: {octets.hex().upper()}")
        return hours * _HOUR + minutes * _MINUTE + seconds, pos + 7
    raise PduError(f"bad enhanced validity period: reserved format {kind}")


@dataclass(slots=True)
class _UserData:
    text: str
    payload: bytes
    concat: Concat | None = None
    port: int | None = None
    tables: tuple[int, int] = (0, 0)
    truncated: bool = False


def _parse_udh(header: bytes, anomalies: list[str]) -> tuple[Concat | None, int | None, tuple[int, int]]:
    """Information elements -> (concatenation, destination port, (locking, single) shift tables).

    Unknown elements are skipped; a truncated element ends the header (noted in ``anomalies``)."""
    concat: Concat | None = None
    port: int | None = None
    locking = single = 0
    pos = 0
    size = len(header)
    while pos < size:
        if pos + 2 > size:
            anomalies.append(f"truncated user data header: element at octet {pos} has no length")
            break
        iei = header[pos]
        length = header[pos + 1]
        body = header[pos + 2 : pos + 2 + length]
        if len(body) < length:
            anomalies.append(f"truncated user data header: element {iei:02X} needs {length} octets")
            break
        pos += 2 + length
        if iei == IEI_CONCAT_8 and length == 3:
            if body[1] and 0 < body[2] <= body[1]:  # 23.040: a zero or out-of-range part is ignored
                concat = Concat(body[0], body[1], body[2], 8)
        elif iei == IEI_CONCAT_16 and length == 4:
            if body[2] and 0 < body[3] <= body[2]:
                concat = Concat((body[0] << 8) | body[1], body[2], body[3], 16)
        elif iei == IEI_PORT_8 and length == 2:
            port = body[0]
        elif iei == IEI_PORT_16 and length == 4:
            port = (body[0] << 8) | body[1]
        elif iei == IEI_SINGLE_SHIFT and length == 1:
            single = body[0]
        elif iei == IEI_LOCKING_SHIFT and length == 1:
            locking = body[0]
    return concat, port, (locking, single)


def _looks_ucs2(payload: bytes) -> bool:
    """Whether octets sent under a GSM 7-bit DCS are really UTF-16 text (a sender's mistake seen in
    the field): an even count, every code unit a printable BMP character, and many zero octets."""
    if len(payload) < 2 or len(payload) % 2:
        return False
    try:
        text = payload.decode("utf-16-be")
    except UnicodeDecodeError:
        return False
    return payload.count(0) * 4 >= len(payload) and all(c.isprintable() or c in "\r\n" for c in text)


def _read_user_data(data: bytes, pos: int, has_udh: bool, encoding: str, anomalies: list[str]) -> _UserData:
    """TP-UDL at ``pos`` and the TP-UD after it, to the end of the PDU.

    Lenient where real senders are wrong, as gammu and phones are: a TP-UDL larger than the data
    present (the text is what is there, ``truncated``), data beyond TP-UDL (ignored), a header flag
    with empty user data, UCS-2 octets under a GSM 7-bit DCS. Each is noted in ``anomalies``."""
    size = len(data)
    if pos >= size:
        raise _truncated("user data length", pos, 1, size)
    length = data[pos]
    pos += 1
    present = size - pos
    if encoding == "gsm7":
        if length > MAX_USER_DATA_SEPTETS:
            anomalies.append(f"user data length {length} exceeds {MAX_USER_DATA_SEPTETS} septets")
        octet_count = (length * 7 + 7) // 8
    else:
        if length > MAX_USER_DATA_OCTETS:
            anomalies.append(f"user data length {length} exceeds {MAX_USER_DATA_OCTETS} octets")
        octet_count = length
    truncated = False
    if present < octet_count:
        truncated = True
        anomalies.append(f"truncated: user data length {length} needs {octet_count} octets, {present} present")
        octet_count = present
        if encoding == "gsm7":
            length = present * 8 // 7
        else:
            length = present
    elif present > octet_count:
        if encoding == "gsm7" and not has_udh and _looks_ucs2(data[pos:]):
            anomalies.append(f"UCS-2 content under a GSM 7-bit DCS (user data length {length}, {present} octets)")
            payload = data[pos:]
            return _UserData(payload.decode("utf-16-be"), payload)
        anomalies.append(
            f"length mismatch: {present - octet_count} octets after the user data (user data length {length})"
        )
    body = data[pos : pos + octet_count]
    result = _UserData("", b"", truncated=truncated)
    header_octets = 0
    if has_udh:
        if not octet_count:
            anomalies.append("user data header indicated but the user data is empty")
            return result
        header_octets = _read_header(body, octet_count, result, anomalies)
    if encoding == "gsm7":
        _decode_septets(body, header_octets, octet_count, length, result, anomalies)
        return result
    payload = body[header_octets:]
    result.payload = payload
    if encoding == "ucs2":
        if len(payload) % 2:
            anomalies.append("UCS-2 user data has an odd number of octets")
        result.text = payload.decode("utf-16-be", "replace")
    else:
        result.text = payload.decode("latin-1")  # 8-bit: one character per octet
    return result


def _read_header(body: bytes, octet_count: int, result: _UserData, anomalies: list[str]) -> int:
    """The user data header at the start of ``body`` into ``result``; the octets it takes (with TP-UDHL)."""
    header_octets = body[0] + 1
    if header_octets > octet_count:
        anomalies.append(f"user data header length {header_octets - 1} exceeds the user data ({octet_count} octets)")
        result.truncated = True
        header_octets = octet_count
    result.concat, result.port, result.tables = _parse_udh(body[1:header_octets], anomalies)
    return header_octets


def _decode_septets(body: bytes, header_octets: int, octet_count: int, length: int, result: _UserData,
                    anomalies: list[str]) -> None:
    """The GSM 7-bit text after the header (and its fill bits) into ``result``."""
    header_bits = header_octets * 8
    fill_bits = (7 - header_bits % 7) % 7 if header_octets else 0
    header_septets = (header_bits + fill_bits) // 7
    available = max(0, ((octet_count - header_octets) * 8 - fill_bits) // 7)
    count = max(0, min(length - header_septets, available))
    septets = gsm7.unpack(body[header_octets:], count, fill_bits)
    result.payload = septets
    locking, single = result.tables
    if locking and not single and gsm7.undefined_escapes(septets, 0, locking):
        # ESC codes only the language's single shift table defines: the sender labelled its single
        # shift (IE 0x24) as a locking shift (IE 0x25). Read it as it was meant, and say so.
        anomalies.append(
            f"locking shift table {locking} announced, but the text uses that language's single shift "
            "codes; read with its single shift table"
        )
        result.tables = (0, locking)
    result.text = gsm7.decode_national(septets, *result.tables)


def decode(pdu: str | bytes, *, with_smsc: bool = True) -> Message:
    """Decode one PDU: a hex string, or raw octets as ``bytes``.

    ``with_smsc=True``: the PDU starts with the SMSC field, as +CMGR/+CMGL/+CMT return it.
    The message type comes from TP-MTI: 00 deliver, 01 submit, 10 status report.
    """
    data = _to_octets(pdu)
    size = len(data)
    anomalies: list[str] = []
    smsc, pos = _read_smsc(data) if with_smsc else (None, 0)
    if pos >= size:
        raise _truncated("first octet", pos, 1, size)
    first = data[pos]
    mti = first & 0x03
    if mti == 0:
        number, number_type, pos = _read_address(data, pos + 1, "originator address")
        if pos + 9 > size:
            raise _truncated("protocol identifier, coding scheme and time stamp", pos, 9, size)
        protocol_id = data[pos]
        dcs = data[pos + 1]
        encoding, message_class = _DCS_TABLE[dcs]
        if encoding is None:
            raise PduError(f"compressed user data (DCS {dcs:02X}) is not supported")
        timestamp = _read_timestamp(data, pos + 2, "service centre time stamp", anomalies)
        ud = _read_user_data(data, pos + 9, bool(first & 0x40), encoding, anomalies)
        return SmsDeliver(
            smsc, number, number_type, ud.text, encoding, timestamp, ud.concat, ud.port, protocol_id, dcs,
            ud.payload, message_class, tuple(anomalies), ud.truncated, ud.tables,
        )  # fmt: skip
    if mti == 1:
        if pos + 2 > size:
            raise _truncated("message reference", pos + 1, 1, size)
        reference = data[pos + 1]
        number, number_type, pos = _read_address(data, pos + 2, "destination address")
        if pos + 2 > size:
            raise _truncated("protocol identifier and coding scheme", pos, 2, size)
        protocol_id = data[pos]
        dcs = data[pos + 1]
        encoding, message_class = _DCS_TABLE[dcs]
        if encoding is None:
            raise PduError(f"compressed user data (DCS {dcs:02X}) is not supported")
        validity, pos = _read_validity(data, pos + 2, (first >> 3) & 0x03, anomalies)
        ud = _read_user_data(data, pos, bool(first & 0x40), encoding, anomalies)
        return SmsSubmit(
            smsc, number, number_type, ud.text, encoding, reference, validity, bool(first & 0x20),
            ud.concat, ud.port, protocol_id, dcs, ud.payload, message_class, tuple(anomalies), ud.truncated,
            ud.tables,
        )  # fmt: skip
    if mti == 2:
        if pos + 2 > size:
            raise _truncated("message reference", pos + 1, 1, size)
        reference = data[pos + 1]
        number, number_type, pos = _read_address(data, pos + 2, "recipient address")
        if pos + 15 > size:
            raise _truncated("time stamps and status", pos, 15, size)
        timestamp = _read_timestamp(data, pos, "service centre time stamp", anomalies)
        discharge = _read_timestamp(data, pos + 7, "discharge time", anomalies)
        status = data[pos + 14]
        # TP-PI, TP-PID, TP-DCS and TP-UD may follow (23.040 9.2.2.3); they carry nothing we use.
        return SmsStatusReport(
            smsc, number, number_type, reference, timestamp, discharge, status, tuple(anomalies)
        )
    raise PduError(f"reserved message type indicator 11 (first octet {first:02X})")


# --- encoding -------------------------------------------------------------------------------------


def _encode_digits(digits: str) -> bytes:
    nibbles = [_DIGIT_NIBBLE[digit] for digit in digits]
    if len(nibbles) % 2:
        nibbles.append(0x0F)
    return bytes([nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2)])


_NUMBER_CHARS = frozenset("0123456789*#")


def _encode_address(number: str, what: str = "number") -> bytes:
    """TP-DA / TP-OA: "+digits" international, digits unknown, anything else alphanumeric."""
    if not isinstance(number, str) or not number:
        raise PduError(f"bad address: empty {what}")
    if number.startswith("+"):
        digits = number[1:]
        if not digits or not _NUMBER_CHARS.issuperset(digits):
            raise PduError(f"bad address: {what} {number!r} has non-digits after '+'")
        toa = _TOA_INTERNATIONAL
    elif _NUMBER_CHARS.issuperset(number):
        digits = number
        toa = _TOA_UNKNOWN
    else:
        if len(number) > MAX_ALPHANUMERIC:
            raise PduError(f"bad address: alphanumeric {what} {number!r} is longer than 11 characters")
        try:
            septets = gsm7.encode(number)
        except gsm7.Gsm7EncodeError:
            raise PduError(f"bad address: {what} {number!r} is not in the GSM 7-bit alphabet") from None
        packed = gsm7.pack(septets)
        return bytes([(len(septets) * 7 + 3) // 4, _TOA_ALPHANUMERIC]) + packed
    if len(digits) > MAX_ADDRESS_DIGITS:
        raise PduError(f"bad address: {what} {number!r} has more than {MAX_ADDRESS_DIGITS} digits")
    return bytes([len(digits), toa]) + _encode_digits(digits)


def _encode_smsc(smsc: str | None) -> bytes:
    if smsc is None or smsc == "":
        return b"\x00"
    if smsc.startswith("+"):
        digits, toa = smsc[1:], _TOA_INTERNATIONAL
    else:
        digits, toa = smsc, _TOA_UNKNOWN
    if not digits or not _NUMBER_CHARS.issuperset(digits) or len(digits) > MAX_ADDRESS_DIGITS:
        raise PduError(f"bad SMSC address {smsc!r}")
    body = _encode_digits(digits)
    return bytes([len(body) + 1, toa]) + body


def _encode_timestamp(moment: datetime, what: str = "timestamp") -> bytes:
    if not isinstance(moment, datetime):
        raise PduError(f"bad {what}: expected a datetime, got {type(moment).__name__}")
    offset = moment.utcoffset()
    quarters = 0 if offset is None else round(offset.total_seconds() / 900)
    if not -79 <= quarters <= 79:
        raise PduError(f"bad {what}: time zone offset {offset} out of range")
    if not 2000 <= moment.year <= 2099:
        raise PduError(f"bad {what}: year {moment.year} outside 2000..2099")
    swap = _SWAP_ENCODE
    zone = swap[abs(quarters)] | (0x08 if quarters < 0 else 0)
    return bytes(
        [
            swap[moment.year - 2000],
            swap[moment.month],
            swap[moment.day],
            swap[moment.hour],
            swap[moment.minute],
            swap[moment.second],
            zone,
        ]
    )


def _concat_ie(reference: int, total: int, sequence: int, bits16: bool) -> bytes:
    if bits16:
        return bytes([IEI_CONCAT_16, 4, reference >> 8, reference & 0xFF, total, sequence])
    return bytes([IEI_CONCAT_8, 3, reference, total, sequence])


def _user_data(encoding: str, piece: bytes, header: bytes) -> bytes:
    """TP-UDL followed by TP-UD (header, fill bits, payload)."""
    if encoding == "gsm7":
        if not header:
            return bytes([len(piece)]) + gsm7.pack(piece)
        header_bits = len(header) * 8
        fill_bits = (7 - header_bits % 7) % 7
        udl = (header_bits + fill_bits) // 7 + len(piece)
        return bytes([udl]) + header + gsm7.pack(piece, fill_bits)
    return bytes([len(header) + len(piece)]) + header + piece


def _check_byte(value: int, what: str, limit: int = 0xFF) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
        raise PduError(f"bad {what} {value!r}: expected 0..{limit}")
    return value


def _concat_reference(value: int | None, bits16: bool) -> int:
    limit = 0xFFFF if bits16 else 0xFF
    if value is None:
        import random  # here: counting parts (`smsgw send`) needs no random numbers

        return random.randint(0, limit)
    return _check_byte(value, "concatenation reference", limit)


def _headers(total: int, reference: int, bits16: bool, extra_ies: bytes) -> list[bytes]:
    if total == 1:
        return [bytes([len(extra_ies)]) + extra_ies if extra_ies else b""]
    headers = []
    for sequence in range(1, total + 1):
        body = _concat_ie(reference, total, sequence, bits16) + extra_ies
        headers.append(bytes([len(body)]) + body)
    return headers


def encode_submit(
    number: str,
    text: str | bytes,
    *,
    smsc: str | None = None,
    report: bool = False,
    reference: int = 0,
    validity: int | timedelta | datetime | None = None,
    concat_reference: int | None = None,
    concat_16bit: bool = False,
    port: int | None = None,
    language: str | None = None,
    message_class: int | None = None,
) -> list[SubmitPart]:
    """SMS-SUBMIT PDUs for ``text`` (``bytes`` are sent as 8-bit data) to ``number``.

    ``validity``: seconds or a timedelta (relative: the smallest TP-VP period that is at least as
    long, at most 63 weeks), or a datetime (absolute). ``concat_reference``: the reference shared by
    the parts of a long message (random when None). ``port``: destination port (adds a UDH).
    ``language``: a national language (ISO 639-1, e.g. "tr") whose shift tables may be used when the
    text does not fit the default alphabet: the combination that needs the fewest parts, else UCS-2.
    ``message_class``: 0 (flash: shown at once, not stored), 1, 2 or 3, in the TP-DCS of every part
    (3GPP TS 23.038 §4); None: no class.
    """
    if port is not None:
        _check_byte(port, "port", 0xFFFF)
    _check_byte(reference, "message reference")
    address = _encode_address(number, "destination number")
    smsc_field = _encode_smsc(smsc)
    first = 0x01
    if report:
        first |= 0x20
    if validity is None:
        vp = b""
    elif isinstance(validity, datetime):
        first |= 0x18
        vp = _encode_timestamp(validity, "validity")
    else:
        seconds = validity.total_seconds() if isinstance(validity, timedelta) else validity
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise PduError(f"bad validity {validity!r}: expected seconds >= 0, a timedelta or a datetime")
        first |= 0x10
        vp = bytes([relative_validity(int(seconds))])
    plan = plan_parts(text, concat_16bit=concat_16bit, port=port, language=language_id(language))
    encoding, pieces = plan.encoding, plan.pieces
    total = len(pieces)
    headers = _headers(
        total, _concat_reference(concat_reference, concat_16bit) if total > 1 else 0, concat_16bit, plan.extra_ies
    )
    dcs = data_coding(encoding, message_class)
    parts = []
    for sequence, (piece, header) in enumerate(zip(pieces, headers, strict=True), start=1):
        tpdu = (
            bytes([first | 0x40 if header else first, reference])
            + address
            + bytes([0x00, dcs])
            + vp
            + _user_data(encoding, piece, header)
        )
        parts.append(SubmitPart((smsc_field + tpdu).hex().upper(), len(tpdu), sequence, total))
    return parts


def encode_deliver(
    originator: str,
    text: str | bytes,
    *,
    timestamp: datetime,
    smsc: str | None = None,
    concat_reference: int | None = None,
    concat_16bit: bool = False,
    port: int | None = None,
    language: str | None = None,
    message_class: int | None = None,
) -> list[str]:
    """SMS-DELIVER PDUs (hex with the SMSC field), as a network hands them to a modem; ``message_class``
    as for :func:`encode_submit`."""
    if port is not None:
        _check_byte(port, "port", 0xFFFF)
    address = _encode_address(originator, "originator")
    smsc_field = _encode_smsc(smsc)
    scts = _encode_timestamp(timestamp, "timestamp")
    plan = plan_parts(text, concat_16bit=concat_16bit, port=port, language=language_id(language))
    encoding, pieces = plan.encoding, plan.pieces
    total = len(pieces)
    headers = _headers(
        total, _concat_reference(concat_reference, concat_16bit) if total > 1 else 0, concat_16bit, plan.extra_ies
    )
    dcs = data_coding(encoding, message_class)
    pdus = []
    for piece, header in zip(pieces, headers, strict=True):
        first = 0x44 if header else 0x04  # TP-MMS: no more messages waiting
        tpdu = bytes([first]) + address + bytes([0x00, dcs]) + scts + _user_data(encoding, piece, header)
        pdus.append((smsc_field + tpdu).hex().upper())
    return pdus


def encode_status_report(
    recipient: str,
    reference: int,
    status: int,
    *,
    timestamp: datetime,
    discharge_time: datetime,
    smsc: str | None = None,
) -> str:
    """An SMS-STATUS-REPORT PDU (hex with the SMSC field) for the message ``reference``."""
    _check_byte(reference, "message reference")
    _check_byte(status, "status")
    tpdu = (
        bytes([0x06, reference])
        + _encode_address(recipient, "recipient")
        + _encode_timestamp(timestamp, "timestamp")
        + _encode_timestamp(discharge_time, "discharge time")
        + bytes([status])
    )
    return (_encode_smsc(smsc) + tpdu).hex().upper()


# --- JSON -----------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _language_json(tables: tuple[int, int]) -> dict[str, str | int | None] | None:
    from drivers.gsm7_languages import LANGUAGE_IDS

    if tables == (0, 0):
        return None
    names = {ident: code for code, ident in LANGUAGE_IDS.items()}
    locking, single = tables
    return {"locking": names.get(locking, locking) if locking else None,
            "single": names.get(single, single) if single else None}


def to_json(message: Message) -> dict[str, Any]:
    """The object ``smsgw pdu decode`` prints for one message."""
    if isinstance(message, SmsStatusReport):
        return {
            "type": message.type,
            "smsc": message.smsc,
            "number": message.number,
            "number_type": message.number_type,
            "text": None,
            "encoding": None,
            "timestamp": _iso(message.timestamp),
            "discharge_time": _iso(message.discharge_time),
            "status": message.status,
            "reference": message.reference,
            "concat": None,
            "port": None,
            "protocol_id": None,
            "dcs": None,
            "malformed": message.malformed,
            "anomalies": list(message.anomalies),
        }
    concat = message.concat
    result: dict[str, Any] = {
        "type": message.type,
        "smsc": message.smsc,
        "number": message.number,
        "number_type": message.number_type,
        "text": message.text,
        "encoding": message.encoding,
        "timestamp": _iso(message.timestamp) if isinstance(message, SmsDeliver) else None,
        "discharge_time": None,
        "status": None,
        "reference": message.reference if isinstance(message, SmsSubmit) else None,
        "concat": None
        if concat is None
        else {"reference": concat.reference, "total": concat.total, "sequence": concat.sequence},
        "port": message.port,
        "protocol_id": message.protocol_id,
        "dcs": message.dcs,
        "message_class": message.message_class,
        "data": message.data.hex().upper(),
        "national_language": _language_json(message.language_tables),
        "truncated": message.truncated,
        "malformed": message.malformed,
        "anomalies": list(message.anomalies),
    }
    if isinstance(message, SmsSubmit):
        validity = message.validity
        result["validity"] = validity.isoformat() if isinstance(validity, datetime) else validity
        result["report_requested"] = message.report_requested
    return result
