"""Pure parsers of AT replies and unsolicited result codes.

Each parser takes the information lines of a reply (``AtResponse.lines``: no echo, no final
result) or one URC line, and returns plain data. The pattern by which the AT engine recognises a
URC (``CMTI_URC``, ``CREG_URC`` ...) is defined beside the parser of its line, as ModemManager keeps
``mm_3gpp_cmti_regex_get`` beside its parsers in ``src/mm-modem-helpers.c``; ``drivers.modem``
registers them. ``BASE_NOISE_URCS`` are the unsolicited lines that are dropped for every modem. Real modems differ in spacing, quoting and which
optional fields they send; the variants each parser accepts are listed in its docstring and in
the tables of ``tests/test_parsers.py``. A reply that cannot be understood raises
``ParseError`` naming the line, never IndexError or ValueError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from drivers.errors import AtError
from drivers.pdu import SmsDeliver

__all__ = [
    "CallerId",
    "CmglEntry",
    "CmgrEntry",
    "CopsState",
    "CregState",
    "ParseError",
    "Storage",
    "TextModeMessage",
    "decode_ussd_text",
    "parse_cmgl",
    "parse_cmgr",
    "parse_cmgs",
    "parse_clip",
    "parse_cmti",
    "parse_cops",
    "parse_cpin",
    "parse_cpms",
    "parse_cring",
    "parse_creg",
    "parse_creg_urc",
    "parse_csca",
    "parse_csq",
    "parse_cpin_urc",
    "parse_cusd",
    "split_fields",
    "text_mode_deliver",
]


class ParseError(AtError):
    """A reply or URC that does not have the expected form."""

    def __init__(self, message: str, line: str | None = None) -> None:
        super().__init__(message, final=line if line is not None else "")
        self.line = line


#: Text-mode message states, for modems that answer +CMGL/+CMGR with them even in PDU mode.
STAT_NAMES = {"REC UNREAD": 0, "REC READ": 1, "STO UNSENT": 2, "STO SENT": 3, "ALL": 4}

_HEX = re.compile(r"^[0-9A-Fa-f]+$")


def split_fields(text: str) -> list[str]:
    """Split a comma-separated parameter list, honouring double quotes; fields are stripped and unquoted.

    ``'"SM",5,30'`` → ``["SM", "5", "30"]``; ``'0,,24'`` → ``["0", "", "24"]``;
    ``'1,"a,b"'`` → ``["1", "a,b"]``.
    """
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    fields.append("".join(current).strip())
    return fields


def _payload(lines: list[str], prefix: str) -> tuple[str, str]:
    """The first line starting with ``prefix`` (e.g. ``+CSQ``) and what follows its colon."""
    for line in lines:
        stripped = line.strip()
        if stripped.upper().startswith(prefix.upper()):
            rest = stripped[len(prefix):]
            return stripped, rest[1:].strip() if rest.startswith(":") else rest.strip()
    raise ParseError(f"no {prefix} line in reply {lines!r}")


def _int(field: str, line: str, what: str) -> int:
    value = field.strip()
    if not re.fullmatch(r"-?\d{1,9}", value):
        raise ParseError(f"{what} is not a number in {line!r}", line)
    return int(value)


def _opt_int(field: str | None, line: str, what: str) -> int | None:
    if field is None or field.strip() == "":
        return None
    return _int(field, line, what)


# --- signal and registration --------------------------------------------------------------------


def parse_csq(lines: list[str]) -> tuple[int | None, int | None]:
    """``+CSQ: 21,99`` (also ``+CSQ: 21, 99``) → (rssi, ber); 99 is kept as 99 (not known)."""
    line, rest = _payload(lines, "+CSQ")
    fields = split_fields(rest)
    if len(fields) < 1 or fields[0] == "":
        raise ParseError(f"+CSQ without values: {line!r}", line)
    return _int(fields[0], line, "rssi"), _opt_int(fields[1] if len(fields) > 1 else None, line, "ber")


@dataclass(frozen=True, slots=True)
class CregState:
    """+CREG/+CGREG/+CEREG: ``n`` is the URC mode (None in a URC), ``status`` the 27.007 <stat>."""

    n: int | None
    status: int
    lac: str | None = None
    cell_id: str | None = None
    act: int | None = None

    @property
    def registered(self) -> bool:
        return self.status in (1, 5)


#: 3GPP TS 27.007 §7.2 (+CREG) / §7.3 (+COPS) <AcT> → the radio access technology's name.
ACCESS_TECHNOLOGIES: dict[int, str] = {
    0: "GSM", 1: "GSM Compact", 2: "UMTS", 3: "EDGE", 4: "HSDPA", 5: "HSUPA", 6: "HSPA",
    7: "LTE", 8: "EC-GSM-IoT", 9: "NB-IoT", 10: "LTE (5GC)", 11: "5G NR", 12: "NG-RAN", 13: "EN-DC",
}


def access_technology(act: int | None) -> str | None:
    """The name of a 27.007 <AcT> value (``None`` when the modem did not say; the number when unknown)."""
    if act is None:
        return None
    return ACCESS_TECHNOLOGIES.get(act, f"AcT {act}")


_REG_PREFIX = re.compile(r"^\+C(?:E|G)?REG:\s*(.*)$", re.IGNORECASE)


def _location(field: str) -> str | None:
    value = field.strip().strip('"').strip()
    return value.upper() if value else None


def _creg_fields(line: str, fields: list[str], *, with_n: bool) -> CregState:
    n: int | None = None
    if with_n:
        n = _int(fields[0], line, "n")
        fields = fields[1:]
    if not fields or fields[0] == "":
        raise ParseError(f"registration reply without <stat>: {line!r}", line)
    status = _int(fields[0], line, "stat")
    lac = _location(fields[1]) if len(fields) > 2 else None
    cell = _location(fields[2]) if len(fields) > 2 else None
    act = _opt_int(fields[3], line, "AcT") if len(fields) > 3 else None
    return CregState(n, status, lac, cell, act)


def parse_creg(lines: list[str]) -> CregState | None:
    """The reply to ``AT+CREG?`` / ``AT+CGREG?`` / ``AT+CEREG?``; None when no such line is there.

    Forms: ``+CREG: 0,1``; ``+CREG: 2,1,"1A2B","01C3D4E5"``; ``+CREG: 2,1,"1A2B","01C3D4E5",7``;
    Huawei's ``+CREG: 2, 1, 1A2B, 01C3D4E5``; +CEREG with extra fields after AcT (ignored).
    A reply with a single value is taken as <stat> alone.
    """
    for raw in lines:
        line = raw.strip()
        match = _REG_PREFIX.match(line)
        if match is None:
            continue
        fields = split_fields(match.group(1))
        return _creg_fields(line, fields, with_n=len(fields) != 1 and len(fields) != 3)
    return None


#: The unsolicited forms ``+CREG: <stat>[,<lac>,<ci>[,<act>]]`` (also +CGREG, +CEREG), never the
#: ``+CREG: <n>,<stat>...`` answer to ``AT+CREG?`` (27.007 7.2 with <n> = 2).
CREG_URC = r'^\+C(?:G|E)?REG:\s*(\d+)\s*(?:,\s*"([0-9A-Fa-f]*)"\s*,\s*"([0-9A-Fa-f]*)"\s*(?:,\s*(\d+))?)?\s*$'


def parse_creg_urc(line: str) -> CregState:
    """An unsolicited ``+CREG: 1``, ``+CREG: 1,"1A2B","01C3D4E5"`` or ``+CREG: 5,"1A2B","01C3D4E5",7``."""
    stripped = line.strip()
    match = _REG_PREFIX.match(stripped)
    if match is None:
        raise ParseError(f"not a registration URC: {line!r}", line)
    return _creg_fields(stripped, split_fields(match.group(1)), with_n=False)


@dataclass(frozen=True, slots=True)
class CopsState:
    """+COPS?: mode, format (0 long, 1 short, 2 numeric), operator and access technology."""

    mode: int
    format: int | None
    operator: str | None
    act: int | None


def parse_cops(lines: list[str]) -> CopsState | None:
    """``+COPS: 0,0,"Vodafone.de",7``, ``+COPS: 0,2,"26202",7``, ``+COPS: 0`` (not registered)."""
    try:
        line, rest = _payload(lines, "+COPS")
    except ParseError:
        return None
    fields = split_fields(rest)
    mode = _int(fields[0], line, "mode")
    fmt = _opt_int(fields[1], line, "format") if len(fields) > 1 else None
    operator = fields[2] or None if len(fields) > 2 else None
    act = _opt_int(fields[3], line, "AcT") if len(fields) > 3 else None
    return CopsState(mode, fmt, operator, act)


# --- SIM and service centre ----------------------------------------------------------------------


def parse_cpin(lines: list[str]) -> str:
    """``+CPIN: READY`` / ``+CPIN: SIM PIN`` / ``+CPIN:READY`` → "READY", "SIM PIN"..."""
    line, rest = _payload(lines, "+CPIN")
    state = rest.strip().strip('"').strip().upper()
    if not state:
        raise ParseError(f"+CPIN without a state: {line!r}", line)
    return state


#: ``+CPIN: NOT READY`` / ``+CPIN: SIM PIN`` / ``+CPIN: READY`` sent unasked (SIMCom, Quectel) when the
#: SIM's state changes; the same form answers ``AT+CPIN?``, so it is registered "unless asked".
CPIN_URC = r"^\+CPIN:\s*(\S.*?)\s*$"


def parse_cpin_urc(line: str) -> str:
    """An unsolicited ``+CPIN: <state>`` line → the state ("READY", "SIM PIN", "NOT READY" ...)."""
    return parse_cpin([line])


def _maybe_ucs2(text: str) -> str:
    if text and len(text) % 4 == 0 and _HEX.match(text):
        try:
            decoded = bytes.fromhex(text).decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            return text
        if re.fullmatch(r"\+?\d+", decoded):
            return decoded
    return text


def parse_csca(lines: list[str]) -> str | None:
    """``+CSCA: "+491710760000",145`` → "+491710760000"; an empty address → None.

    With ``AT+CSCS="UCS2"`` some modems answer the address as UCS-2 hex; it is decoded.
    """
    line, rest = _payload(lines, "+CSCA")
    fields = split_fields(rest)
    address = _maybe_ucs2(fields[0]) if fields else ""
    if not address:
        return None
    toa = _opt_int(fields[1], line, "type") if len(fields) > 1 else None
    if toa == 145 and not address.startswith("+"):
        address = "+" + address
    return address


# --- storage and messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Storage:
    storage: str
    used: int
    total: int


def parse_cpms(lines: list[str]) -> list[Storage]:
    """``+CPMS: "SM",5,30,"SM",5,30,"SM",5,30`` (query) or ``+CPMS: 5,30,5,30,5,30`` (set) → storages.

    In the set form the storage names are not given; they come back as "".
    """
    line, rest = _payload(lines, "+CPMS")
    fields = split_fields(rest)
    storages: list[Storage] = []
    if fields and fields[0] and not re.fullmatch(r"\d+", fields[0]):
        if len(fields) < 3:
            raise ParseError(f"+CPMS with too few fields: {line!r}", line)
        for i in range(0, len(fields) - 2, 3):
            storages.append(Storage(fields[i], _int(fields[i + 1], line, "used"), _int(fields[i + 2], line, "total")))
    else:
        if len(fields) < 2:
            raise ParseError(f"+CPMS with too few fields: {line!r}", line)
        for i in range(0, len(fields) - 1, 2):
            storages.append(Storage("", _int(fields[i], line, "used"), _int(fields[i + 1], line, "total")))
    return storages


def _stat(field: str, line: str) -> int | None:
    value = field.strip().strip('"').strip()
    if value == "":
        return None
    if value.upper() in STAT_NAMES:
        return STAT_NAMES[value.upper()]
    return _int(value, line, "stat")


_TEXT_MODE_STAMP = re.compile(r"^(\d{2,4})/(\d{1,2})/(\d{1,2}),(\d{1,2}):(\d{2}):(\d{2})([+-]\d{1,2})?$")


@dataclass(frozen=True, slots=True)
class TextModeMessage:
    """A message as a modem in text mode (AT+CMGF=1) lists it: sender, SMSC time stamp as sent
    (``yy/MM/dd,hh:mm:ss±zz``, zone in quarter hours), and the text lines."""

    sender: str | None
    timestamp: str | None
    text: str


def _clean_pdu(text: str) -> str:
    """A PDU as real modems print it: stray quotes around it (``0791…"``) and spaces dropped."""
    return text.strip().strip('"').strip()


def _is_pdu(text: str) -> bool:
    return bool(text) and bool(_HEX.match(text)) and len(text) % 2 == 0


def _text_mode(fields: list[str]) -> TextModeMessage | None:
    """The text-mode form of a +CMGR/+CMGL header (after the index for +CMGL): <stat>,<oa>,[<alpha>],<scts>...
    (27.005 3.4.2/3.4.3; Motorola's <stat>,<oa>,<scts>); None when the header is a PDU-mode one."""
    if len(fields) < 2 or fields[0].upper() not in STAT_NAMES:
        return None
    stamp = next((field for field in fields[2:4] if _TEXT_MODE_STAMP.match(field)), None)
    sender = fields[1] or None
    if stamp is None and (sender is None or not re.fullmatch(r"\+?[0-9*#]+|.*[A-Za-z].*", sender)):
        return None
    return TextModeMessage(sender, stamp, "")


def _entry(header: str, fields: list[str], body: list[str], position: int, command: str
           ) -> tuple[str, str | None, TextModeMessage | None, int]:
    """(pdu or raw text, error, text-mode message, next position) for the entry whose header is
    ``header``; ``body`` are the reply's non-empty lines, ``position`` the line after the header."""
    # the PDU on the header line after the length, separated by a space: "+CMGR: 1,,147 0791..."
    last = fields[-1].split(None, 1) if fields else []
    if len(last) == 2 and _is_pdu(_clean_pdu(last[1])):
        return _clean_pdu(last[1]), None, None, position
    following = []
    while position < len(body) and not body[position].strip().upper().startswith(command):
        following.append(body[position].strip())
        position += 1
    text_mode = _text_mode(fields)
    if text_mode is not None and not (len(following) == 1 and _is_pdu(_clean_pdu(following[0]))):
        return "\n".join([header, *following]), None, TextModeMessage(
            text_mode.sender, text_mode.timestamp, "\n".join(following)), position
    if following:
        pdu = _clean_pdu(following[0])
        if _is_pdu(pdu) and len(following) == 1:
            return pdu, None, None, position
        # the raw lines after the header (the header itself changes when the modem marks the slot read)
        raw = "\n".join(following)
        return raw, f"the line after {header!r} is not a hex PDU: {following[0][:80]!r}", None, position
    return header, f"no PDU after {header!r}", None, position


@dataclass(frozen=True, slots=True)
class CmglEntry:
    index: int
    stat: int | None
    length: int | None
    pdu: str  # the PDU in hex; the raw lines when ``error`` (after the header; the header if none) or ``text_mode``
    error: str | None = None
    text_mode: TextModeMessage | None = None


def _lenient_stat(field: str, line: str) -> int | None:
    try:
        return _stat(field, line)
    except ParseError:
        return None


def _lenient_length(field: str) -> int | None:
    value = field.split(None, 1)[0] if field.strip() else ""
    return int(value) if re.fullmatch(r"\d{1,9}", value) else None


def parse_cmgl(lines: list[str]) -> list[CmglEntry]:
    """Every ``+CMGL: <index>,<stat>,[<alpha>],<length>`` header and the PDU after it.

    Forms real modems send: the PDU on the next line, with a stray ``"`` around it, or on the header
    line after the length (``+CMGL: 1,0,,147 0791…``); text-mode headers with the text after them.
    An entry whose PDU cannot be read is returned with ``error`` set and its raw lines as ``pdu``,
    never skipped: the caller commits it as undecodable and frees the slot. Only a header without a
    readable index is skipped (there is no slot to free).
    """
    entries: list[CmglEntry] = []
    body = [line for line in lines if line.strip()]
    position = 0
    while position < len(body):
        line = body[position].strip()
        position += 1
        if not line.upper().startswith("+CMGL:"):
            continue
        fields = split_fields(line[6:])
        try:
            index = _int(fields[0], line, "index")
        except ParseError:
            continue
        stat = _lenient_stat(fields[1], line) if len(fields) > 1 else None
        length = _lenient_length(fields[-1]) if len(fields) > 2 else None
        pdu, error, text_mode, position = _entry(line, fields[1:], body, position, "+CMGL:")
        entries.append(CmglEntry(index, stat, length, pdu, error, text_mode))
    return entries


@dataclass(frozen=True, slots=True)
class CmgrEntry:
    stat: int | None
    length: int | None
    pdu: str  # the PDU in hex; the raw lines when ``error`` (after the header; the header if none) or ``text_mode``
    error: str | None = None
    text_mode: TextModeMessage | None = None


def parse_cmgr(lines: list[str]) -> CmgrEntry:
    """``+CMGR: 0,,24`` / ``+CMGR: ,,27`` / ``+CMGR: 0,23`` / ``+CMGR: 24`` and the PDU after it.

    One field is the length alone; two are <stat>,<length>; three are <stat>,<alpha>,<length>. The
    PDU forms and the text-mode header are those of ``parse_cmgl``; a PDU that cannot be read comes
    back with ``error`` and the raw lines. An empty slot (a reply with no +CMGR line) raises ParseError.
    """
    body = [line for line in lines if line.strip()]
    for position, raw in enumerate(body):
        line = raw.strip()
        if not line.upper().startswith("+CMGR:"):
            continue
        fields = split_fields(line[6:])
        if len(fields) == 1:
            stat, length = None, _lenient_length(fields[0])
        else:
            stat, length = _lenient_stat(fields[0], line), _lenient_length(fields[-1])
        pdu, error, text_mode, _ = _entry(line, fields, body, position + 1, "+CMGR:")
        return CmgrEntry(stat, length, pdu, error, text_mode)
    raise ParseError(f"no +CMGR line in reply {lines!r} (empty slot?)")


def parse_cmgs(lines: list[str]) -> int:
    """``+CMGS: 12`` or ``+CMGS: 12,"<ackpdu>"`` → the TP-MR 12."""
    line, rest = _payload(lines, "+CMGS")
    reference = _int(split_fields(rest)[0], line, "message reference")
    if not 0 <= reference <= 255:
        raise ParseError(f"message reference out of range: {line!r}", line)
    return reference


#: A received SMS stored at <mem>,<index> (27.005 3.4.1 +CNMI <mt> = 1) / a stored status report (<ds> = 2).
CMTI_URC = r'^\+CMTI:\s*"?(\w*)"?\s*,\s*(\d+)'
CDSI_URC = r'^\+CDSI:\s*"?(\w*)"?\s*,\s*(\d+)'
#: A received SMS / status report routed directly (<mt> = 2 / <ds> = 1): the PDU is on the next line.
CMT_URC = r"^\+CMT:"
CDS_URC = r"^\+CDS:"


def parse_cmti(line: str) -> tuple[str | None, int]:
    """``+CMTI: "SM",3`` / ``+CDSI: "SR",1`` / ``+CMTI: "ME", 12`` → (storage, index)."""
    stripped = line.strip()
    match = re.match(r"^\+C(?:MTI|DSI):\s*(.*)$", stripped, re.IGNORECASE)
    if match is None:
        raise ParseError(f"not a +CMTI/+CDSI line: {line!r}", line)
    fields = split_fields(match.group(1))
    if len(fields) < 2:
        raise ParseError(f"+CMTI/+CDSI without an index: {line!r}", line)
    return fields[0] or None, _int(fields[1], stripped, "index")


# --- USSD -----------------------------------------------------------------------------------------


#: The network's answer to a USSD request (27.007 7.15); a quoted text may span lines.
CUSD_URC = r"^\+CUSD:"


def cusd_continues(first: str, extra: list[str]) -> bool:
    """Whether a +CUSD URC goes on: its quoted string is still open (an odd number of quotes)."""
    return (first.count('"') + sum(line.count('"') for line in extra)) % 2 == 1


def parse_cusd(line: str) -> tuple[int, str, int | None]:
    """``+CUSD: 0,"Balance 10.00",15`` → (0, "Balance 10.00", 15); ``+CUSD: 2`` → (2, "", None)."""
    stripped = line.strip()
    if not stripped.upper().startswith("+CUSD:"):
        raise ParseError(f"not a +CUSD line: {line!r}", line)
    fields = split_fields(stripped[6:])
    status = _int(fields[0], stripped, "status")
    text = fields[1] if len(fields) > 1 else ""
    dcs = _opt_int(fields[2], stripped, "dcs") if len(fields) > 2 else None
    return status, text, dcs


def _cbs_ucs2(dcs: int) -> bool:
    """Whether a cell-broadcast DCS (TS 23.038 section 5), as used by USSD, means UCS-2."""
    if dcs == 0x11:
        return True
    group = dcs >> 4
    return (group in (4, 5, 6, 7, 9)) and (dcs & 0x0C) == 0x08


def decode_ussd_text(text: str, dcs: int | None) -> str:
    """The readable text of a +CUSD answer: UCS-2 hex is decoded per the DCS; anything else as sent."""
    if dcs is not None and _cbs_ucs2(dcs) and text and len(text) % 4 == 0 and _HEX.match(text):
        try:
            decoded = bytes.fromhex(text).decode("utf-16-be", errors="replace")
        except ValueError:
            return text
        return decoded[1:] if dcs == 0x11 and decoded else decoded
    return text


def text_mode_deliver(message: TextModeMessage) -> SmsDeliver:
    """A text-mode message as an SmsDeliver (encoding "text"), so it is committed like any other.

    The time stamp's zone is in quarter hours (27.005 3.3.1); without a readable stamp the epoch
    is used and the oddity noted."""
    anomalies = ["read from a text-mode (AT+CMGF=1) reply"]
    moment = datetime(1970, 1, 1, tzinfo=UTC)
    match = _TEXT_MODE_STAMP.match(message.timestamp or "")
    if match is not None:
        year, month, day, hour, minute, second = (int(value) for value in match.groups()[:6])
        quarters = int(match.group(7) or 0)
        try:
            moment = datetime(year if year > 99 else 2000 + year, month, day, hour, minute, second,
                              tzinfo=timezone(timedelta(minutes=15 * quarters)))
        except ValueError:
            anomalies.append(f"unreadable time stamp {message.timestamp!r}")
    else:
        anomalies.append(f"unreadable time stamp {message.timestamp!r}")
    sender = message.sender or ""
    number_type = "international" if sender.startswith("+") else "unknown"
    return SmsDeliver(None, sender, number_type, message.text, "text", moment, None, None, 0, 0,
                      message.text.encode(), None, tuple(anomalies))


# --- unsolicited noise ----------------------------------------------------------------------------

#: Unsolicited lines that are never a reply to anything smsgw asks, dropped for every modem
#: (patterns match from the start of the line) unless the command in flight asked for that very
#: prefix (``AT+CFUN?`` wants its ``+CFUN: 1``). They hold for every profile because a modem is
#: driven with the generic profile until +CGMI/+CGMM identify it, and a Huawei stick says ``^RSSI``
#: during those very commands. A profile adds the noise of its own modems in ``at.ignore_urcs``.
BASE_NOISE_URCS: tuple[str, ...] = (
    # Huawei status reports (ModemManager src/plugins/huawei/mm-broadband-modem-huawei.c)
    r"\^SRVST:", r"\^MODE:", r"\^RSSI:", r"\^BOOT:", r"\^DSFLOWRPT:", r"\^HCSQ:", r"\^SIMST:",
    r"\^SYSSTART", r"\^CEND:", r"\^STIN:", r"\^NDISSTAT:",
    # ZTE
    r"\+ZDONR:", r"\+ZPASR:", r"\+ZUSIMR:", r"\+ZEND",
    # SIMCom and Quectel boot and status lines
    r"RDY$", r"SMS Ready$", r"Call Ready$", r"PB DONE$",
    r"UNDER-VOLTAGE (WARNNING|WARNING|POWER DOWN)", r"OVER-VOLTAGE (WARNNING|WARNING|POWER DOWN)",
    r"\+PACSP\d", r"\+QIND:", r"\*PSUTTZ:", r"DST:",
    # 3GPP TS 27.007 URCs smsgw does not use (SIM ready, functionality, packet domain, indicators, zone)
    r"\+CPIN: (NOT )?READY$", r"\+CFUN: 1$", r"\+CGEV:", r"\+CIEV:", r"\+CTZV:",
)


# --- incoming calls -------------------------------------------------------------------------------
#
# 3GPP TS 27.007 6.11 (+CRC): an incoming call is announced by ``RING`` every ring cycle, or with
# ``AT+CRC=1`` by ``+CRING: <type>`` (``+CRING: VOICE``); 7.6 (+CLIP): with ``AT+CLIP=1`` each of them
# is followed by ``+CLIP: <number>,<type>[,<subaddr>,<satype>[,[<alpha>][,<CLI validity>]]]``.
# ModemManager's mm_voice_ring_regex_get / mm_voice_cring_regex_get / mm_voice_clip_regex_get
# (src/mm-modem-helpers.c) match the same three lines. ``NO CARRIER`` (V.250 final result code) is
# what modems send when the caller gives up before the call is answered.

RING_URC = r"^RING$"
CRING_URC = r"^\+CRING:\s*(.*?)\s*$"
#: Registered "unless asked": ``+CLIP: 1,1`` is also the answer to ``AT+CLIP?``.
CLIP_URC = r"^\+CLIP:"
NO_CARRIER_URC = r"^NO CARRIER$"

#: 27.007 7.6 <CLI validity>: why a +CLIP carries no number.
CLI_VALIDITY: dict[int, str] = {
    0: "valid",
    1: "withheld",        # CLI has been withheld by the originator
    2: "unavailable",     # not available due to interworking problems or limitations of the network
    3: "payphone",        # not available: the calling party is a payphone
    4: "unavailable",     # not available for other reasons
}


@dataclass(frozen=True, slots=True)
class CallerId:
    """A +CLIP line: the caller's number (None when not shown) and why it is missing."""

    number: str | None
    number_type: int | None   # <type>: 145 international, 129 unknown/national, 128 (often: none given)
    validity: int | None      # <CLI validity> when the modem sends it
    alpha: str | None = None  # the phonebook name the modem found for the number, if any

    @property
    def withheld(self) -> bool:
        """No number: withheld by the caller, or not available."""
        return self.number is None

    @property
    def reason(self) -> str | None:
        """Why there is no number: "withheld", "unavailable", "payphone"; None when there is one."""
        if self.number is not None:
            return None
        if self.validity is not None and self.validity != 0:
            return CLI_VALIDITY.get(self.validity, "unavailable")
        return "withheld"


def parse_clip(line: str) -> CallerId:
    """``+CLIP: "+4912345",145,,,,0`` / ``+CLIP: "+4912345",145,"",0,"",0`` / ``+CLIP: "",128,"",,"",1``.

    A number of type 145 (international) always starts with ``+``; an empty number is None, and so
    is one the modem sends while saying it is withheld or unavailable (<CLI validity> 1-4). With
    ``AT+CSCS="UCS2"`` a number may come as UCS-2 hex; it is decoded.
    """
    stripped = line.strip()
    if not stripped.upper().startswith("+CLIP:"):
        raise ParseError(f"not a +CLIP line: {line!r}", line)
    if not stripped[6:].strip():
        raise ParseError(f"+CLIP without a number: {line!r}", line)
    fields = split_fields(stripped[6:])
    number_type = _opt_int(fields[1], stripped, "type") if len(fields) > 1 else None
    alpha = fields[4] or None if len(fields) > 4 else None
    validity = _opt_int(fields[5], stripped, "CLI validity") if len(fields) > 5 else None
    number: str | None = _maybe_ucs2(fields[0]) or None
    if number is not None and (len(number) > 40 or re.search(r"[\x00-\x1f\x7f]", number)):
        raise ParseError(f"+CLIP with an unreadable number: {line!r}", line)
    if validity is not None and validity != 0:
        number = None
    if number is not None and number_type == 145 and not number.startswith("+"):
        number = "+" + number
    return CallerId(number, number_type, validity, alpha)


def parse_cring(line: str) -> str:
    """``+CRING: VOICE`` → "VOICE" (27.007 6.11 <type>: VOICE, FAX, ASYNC, REL ASYNC, GPRS ...)."""
    stripped = line.strip()
    if not stripped.upper().startswith("+CRING:"):
        raise ParseError(f"not a +CRING line: {line!r}", line)
    kind = stripped[7:].strip()
    if not kind:
        raise ParseError(f"+CRING without a call type: {line!r}", line)
    return kind.upper()
