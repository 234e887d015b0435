"""How a text is written and cut into SMS parts (3GPP TS 23.038 / 23.040), without building a PDU.

The encoding is the GSM 7-bit default alphabet (plus its extension table) when the whole text fits,
a national language's shift tables when asked for and they fit, else UCS-2 (UTF-16, surrogate pairs
for characters outside the BMP). Long texts are split into the fewest parts: 160 septets alone / 153
per part with an 8-bit concatenation header (152 with the 16-bit one); 70 / 67 (66) UTF-16 code
units. An escape pair or a surrogate pair is never split.

``drivers.pdu`` encodes the parts planned here; ``count_parts`` and ``split_text`` are what the
intake needs to check a text (``smsgw send``), without the rest of the codec.
"""

from __future__ import annotations

from drivers import gsm7

#: Octets of user data one SMS carries.
MAX_USER_DATA_OCTETS = 140
#: Septets of user data one SMS carries.
MAX_USER_DATA_SEPTETS = 160

# Information element identifiers (23.040 9.2.3.24) of the elements every part may carry
IEI_PORT_8 = 0x04
IEI_PORT_16 = 0x05
IEI_SINGLE_SHIFT = 0x24  # 23.040 9.2.3.24.15 National Language Single Shift
IEI_LOCKING_SHIFT = 0x25  # 23.040 9.2.3.24.16 National Language Locking Shift


class PduError(ValueError):
    """A PDU (or the input for one) is malformed; the reason is in ``str(error)``."""


def _port_ie(port: int) -> bytes:
    if port <= 0xFF:
        return bytes([IEI_PORT_8, 2, port, 0])
    return bytes([IEI_PORT_16, 4, port >> 8, port & 0xFF, 0, 0])


def _capacity(encoding: str, header_octets: int) -> int:
    """Payload units (septets, or octets) one part carries after a UDH of ``header_octets``
    (0: no header; else the header including its length octet)."""
    if encoding == "gsm7":
        return MAX_USER_DATA_SEPTETS - (header_octets * 8 + 6) // 7
    return MAX_USER_DATA_OCTETS - header_octets


def _payload(text: str | bytes) -> tuple[str, bytes]:
    """Text -> (encoding, payload): septets for gsm7, UTF-16-BE octets for ucs2, bytes as 8bit."""
    if isinstance(text, bytes | bytearray):
        return "8bit", bytes(text)
    if not isinstance(text, str):
        raise PduError(f"text must be str or bytes, not {type(text).__name__}")
    try:
        return "gsm7", gsm7.encode(text)
    except gsm7.Gsm7EncodeError:
        pass
    try:
        return "ucs2", text.encode("utf-16-be")
    except UnicodeEncodeError:
        raise PduError("text contains a lone surrogate, which UTF-16 cannot carry") from None


def _cut(encoding: str, payload: bytes, size: int) -> list[bytes]:
    """Split a payload into pieces of at most ``size`` units, never inside an escape or surrogate pair."""
    pieces = []
    start = 0
    total = len(payload)
    if encoding == "ucs2":
        size -= size % 2  # whole UTF-16 code units
    while start < total:
        end = start + size
        if end < total:
            if encoding == "gsm7":
                if payload[end - 1] == gsm7.ESC:  # our extension codes are never ESC themselves
                    end -= 1
            elif encoding == "ucs2" and 0xD8 <= payload[end - 2] <= 0xDB:  # high surrogate
                end -= 2
        else:
            end = total
        pieces.append(payload[start:end])
        start = end
    return pieces


class Plan:
    """How a text goes out: encoding, payload of each part, the header elements every part carries
    besides concatenation (port, national language shifts), and the shift tables used."""

    __slots__ = ("encoding", "pieces", "extra_ies", "tables")

    def __init__(self, encoding: str, pieces: list[bytes], extra_ies: bytes = b"",
                 tables: tuple[int, int] = (0, 0)) -> None:
        self.encoding = encoding
        self.pieces = pieces
        self.extra_ies = extra_ies
        self.tables = tables


def language_id(language: str | None) -> int:
    """ISO 639-1 code of a national language of 23.038 6.2.1.2.4 -> its identifier; None -> 0."""
    from drivers.gsm7_languages import KNOWN_LANGUAGES, LANGUAGE_IDS

    if language is None or language == "":
        return 0
    ident = LANGUAGE_IDS.get(language.lower()) if isinstance(language, str) else None
    if ident is None:
        raise PduError(f"unknown national language {language!r}; known: {KNOWN_LANGUAGES}")
    return ident


def _language_ies(tables: tuple[int, int]) -> bytes:
    locking, single = tables
    ies = b""
    if single:
        ies += bytes([IEI_SINGLE_SHIFT, 1, single])
    if locking:
        ies += bytes([IEI_LOCKING_SHIFT, 1, locking])
    return ies


def _split(encoding: str, payload: bytes, extra_ies: bytes, concat_16bit: bool) -> list[bytes]:
    single_header = len(extra_ies) + 1 if extra_ies else 0
    if len(payload) <= _capacity(encoding, single_header):
        return [payload]
    header = len(extra_ies) + (7 if concat_16bit else 6)
    return _cut(encoding, payload, _capacity(encoding, header))


def _candidates(text: str | bytes, language: int) -> list[tuple[str, bytes, tuple[int, int]]]:
    """Every way the text can be written, most preferred first: the default alphabet; with a
    national language, its single shift, locking shift, and both (23.038 6.2.1.2); UCS-2 last."""
    from drivers.gsm7_national import LOCKING

    encoding, payload = _payload(text)
    if encoding != "ucs2" or not language or not isinstance(text, str):
        return [(encoding, payload, (0, 0))]
    options: list[tuple[str, bytes, tuple[int, int]]] = []
    pairs = [(0, language)] + ([(language, 0), (language, language)] if language in LOCKING else [])
    for tables in pairs:
        try:
            options.append(("gsm7", gsm7.encode_national(text, *tables), tables))
        except gsm7.Gsm7EncodeError:
            continue
    options.append((encoding, payload, (0, 0)))
    return options


def plan_parts(
    text: str | bytes, *, concat_16bit: bool = False, port: int | None = None, language: int = 0
) -> Plan:
    """The fewest parts among the candidate encodings (the earlier candidate on a tie)."""
    port_ie = b"" if port is None else _port_ie(port)
    best: Plan | None = None
    for encoding, payload, tables in _candidates(text, language):
        extra = port_ie + _language_ies(tables)
        pieces = _split(encoding, payload, extra, concat_16bit)
        if best is None or len(pieces) < len(best.pieces):
            best = Plan(encoding, pieces, extra, tables)
    assert best is not None
    if len(best.pieces) > 255:
        raise PduError(f"text needs {len(best.pieces)} parts; at most 255 fit a concatenated message")
    return best


def _piece_text(plan: Plan, piece: bytes) -> str:
    if plan.encoding == "gsm7":
        return gsm7.decode_national(piece, *plan.tables)
    if plan.encoding == "ucs2":
        return piece.decode("utf-16-be")
    return piece.decode("latin-1")


def split_text(text: str, *, concat_16bit: bool = False, language: str | None = None) -> tuple[str, list[str]]:
    """(encoding, part texts) exactly as ``encode_submit`` splits them: fewest parts, 160/153 septets
    (152 with 16-bit references) or 70/67 (66) UTF-16 code units; fewer with national language
    shift headers (``language``: ISO 639-1 code, e.g. "tr")."""
    plan = plan_parts(text, concat_16bit=concat_16bit, language=language_id(language))
    return plan.encoding, [_piece_text(plan, piece) for piece in plan.pieces]


#: An ASCII text this long is one SMS in any encoding: GSM 7-bit takes at most two septets a
#: character (140 of 160), UCS-2 one UTF-16 unit (70 of 70).
_ONE_PART_ASCII = MAX_USER_DATA_OCTETS // 2


def count_parts(text: str, *, concat_16bit: bool = False, language: str | None = None) -> int:
    """How many SMS the text takes."""
    if not language and isinstance(text, str) and 0 < len(text) <= _ONE_PART_ASCII and text.isascii():
        return 1  # the short ASCII texts of alerts, without planning the encodings
    return len(plan_parts(text, concat_16bit=concat_16bit, language=language_id(language)).pieces)
