"""GSM 7-bit default alphabet (3GPP TS 23.038 6.2.1) and septet packing.

Pure functions on bytes, built for speed: the alphabet is a ``codecs`` charmap, and septets are
packed and unpacked with a handful of whole-integer mask operations instead of a loop per character.

A *septet string* here is ``bytes`` with one septet (0..127) per byte. Extension characters are two
septets: ``ESC`` (0x1B) followed by the extension code.
"""

from __future__ import annotations

import codecs

#: The escape septet that selects the extension table for the next septet.
ESC = 0x1B

#: Septet -> character of the default alphabet; 0x1B is the escape, not a character.
DEFAULT_ALPHABET = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

#: Extension table (23.038 6.2.1.1): code after ESC -> character.
EXTENSION = {
    0x0A: "\x0c",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

assert len(DEFAULT_ALPHABET) == 128

_UNDEFINED = "\ufffe"
# 256-entry charmap: septets 0..127 except ESC; everything else undefined.
_DECODING_TABLE = DEFAULT_ALPHABET[:ESC] + _UNDEFINED + DEFAULT_ALPHABET[ESC + 1 :] + _UNDEFINED * 128
_ENCODING_MAP = codecs.charmap_build(_DECODING_TABLE)
# The same, but ESC decodes to itself, for texts with escapes (resolved by replacements afterwards).
_DECODING_TABLE_ESC = DEFAULT_ALPHABET + _UNDEFINED * 128
_ENCODING_MAP_ESC = codecs.charmap_build(_DECODING_TABLE_ESC)

#: Character -> septet(s), default alphabet and extension table together.
CHAR_TO_SEPTETS: dict[str, bytes] = {
    char: bytes([code]) for code, char in enumerate(DEFAULT_ALPHABET) if code != ESC
}
CHAR_TO_SEPTETS.update({char: bytes([ESC, code]) for code, char in EXTENSION.items()})

# extension character -> ESC and the default-alphabet character of its code (encoded by the ESC map)
_ESCAPED = [(char, "\x1b" + DEFAULT_ALPHABET[code]) for code, char in EXTENSION.items()]

#: Characters that cost two septets.
EXTENSION_CHARS = frozenset(EXTENSION.values())


class Gsm7EncodeError(ValueError):
    """The text has a character outside the default alphabet and its extension table."""


def encode(text: str) -> bytes:
    """Text -> septet string (one septet per byte). Raises Gsm7EncodeError for other characters."""
    # Neither the charmap's "undefined" marker nor a text ESC may pass as a septet.
    if _UNDEFINED not in text and "\x1b" not in text:
        try:
            return codecs.charmap_encode(text, "strict", _ENCODING_MAP)[0]
        except UnicodeEncodeError:
            pass
        escaped = text
        for char, pair in _ESCAPED:
            if char in escaped:
                escaped = escaped.replace(char, pair)
        try:
            return codecs.charmap_encode(escaped, "strict", _ENCODING_MAP_ESC)[0]
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start]
    else:
        bad = _UNDEFINED if _UNDEFINED in text else "\x1b"
    raise Gsm7EncodeError(f"character {bad!r} is not in the GSM 7-bit alphabet")


def fits(text: str) -> bool:
    """True when the whole text can be written in the default alphabet plus extension table."""
    try:
        encode(text)
    except Gsm7EncodeError:
        return False
    return True


def septet_count(text: str) -> int:
    """Septets the text takes (extension characters count two). Raises Gsm7EncodeError."""
    return len(encode(text))


def decode(septets: bytes) -> str:
    """Septet string -> text. An unknown extension code reads as its default-alphabet character and
    a lone trailing ESC as a space (23.038 6.2.1.1); so does ESC ESC (reserved for a further table)."""
    if ESC not in septets:
        return codecs.charmap_decode(septets, "strict", _DECODING_TABLE)[0]
    text: str = codecs.charmap_decode(septets, "strict", _DECODING_TABLE_ESC)[0]
    # Left to right, as a reader would: ESC ESC first, then escape pairs, then what is left of ESC.
    text = text.replace("\x1b\x1b", " ")
    for pair, char in _ESCAPE_PAIRS:
        if pair in text:
            text = text.replace(pair, char)
    if text.endswith("\x1b"):
        text = text[:-1] + " "
    return text.replace("\x1b", "")


_ESCAPE_PAIRS = [("\x1b" + DEFAULT_ALPHABET[code], char) for code, char in EXTENSION.items()]


# --- packing --------------------------------------------------------------------------------------
# Septets are packed least significant bit first (23.038 6.1.2.1.1): the packed stream, read as one
# little-endian integer, is sum(septet[i] << 7*i). One byte per septet, read the same way, is
# sum(septet[i] << 8*i). Converting between the two takes log2(n) rounds of "shift the upper half of
# every lane down by the gap", each one mask-and-shift on the whole integer.

_CHUNK_SEPTETS = 256  # 2048 bits of byte lanes
_LANE_BITS = _CHUNK_SEPTETS * 8


def _repeat(pattern: int, width: int) -> int:
    """``pattern`` (less than ``1 << width``) in every lane of ``width`` bits: a multiple of
    0b...0001_0001 (``width`` a power of two dividing ``_LANE_BITS``), not a loop over the lanes."""
    return pattern * (((1 << _LANE_BITS) - 1) // ((1 << width) - 1))


# (lane width, low-half mask, high-half mask, low-k mask, shift), narrowest lane first.
_STEPS: list[tuple[int, int, int, int, int]] = []
_width = 16
while _width <= _LANE_BITS:
    _half = _width // 2
    _valid = 7 * _width // 16  # valid bits of one half-lane once packed
    _STEPS.append(
        (
            _width,
            _repeat((1 << _half) - 1, _width),
            _repeat(((1 << _width) - 1) ^ ((1 << _half) - 1), _width),
            _repeat((1 << _valid) - 1, _width),
            _half - _valid,
        )
    )
    _width *= 2
_STEPS_REVERSED = _STEPS[::-1]


def _pack_chunk(septets: bytes) -> int:
    value = int.from_bytes(septets, "little")
    bits = len(septets) * 8
    for width, low, high, _lowk, shift in _STEPS:
        if width // 2 >= bits:
            break
        value = (value & low) | ((value & high) >> shift)
    return value


def pack(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack a septet string into octets, after ``fill_bits`` zero bits (used after a UDH)."""
    count = len(septets)
    if count <= _CHUNK_SEPTETS:
        value = _pack_chunk(septets)
    else:
        value = 0
        for start in range(0, count, _CHUNK_SEPTETS):
            value |= _pack_chunk(septets[start : start + _CHUNK_SEPTETS]) << (start * 7)
    return (value << fill_bits).to_bytes((count * 7 + fill_bits + 7) // 8, "little")


def _unpack_chunk(value: int, count: int) -> bytes:
    bits = count * 8
    for width, _low, high, lowk, shift in _STEPS_REVERSED:
        if width // 2 >= bits:
            continue
        value = (value & lowk) | ((value << shift) & high)
    return value.to_bytes(count, "little")


def unpack(octets: bytes, count: int, fill_bits: int = 0) -> bytes:
    """The first ``count`` septets packed in ``octets`` after ``fill_bits`` bits.

    The caller checks that ``octets`` holds enough bits; missing bits read as zero.
    """
    if count <= 0:
        return b""
    value = int.from_bytes(octets, "little") >> fill_bits
    if count <= _CHUNK_SEPTETS:
        return _unpack_chunk(value & ((1 << (count * 7)) - 1), count)
    parts = []
    for start in range(0, count, _CHUNK_SEPTETS):
        size = min(_CHUNK_SEPTETS, count - start)
        parts.append(_unpack_chunk((value >> (start * 7)) & ((1 << (size * 7)) - 1), size))
    return b"".join(parts)


# --- USSD ------------------------------------------------------------------------------------------

#: 23.038 6.1.2.3.1: in USSD, seven spare bits at the end of the last octet are filled with CR.
_USSD_PAD = 0x0D


def pack_ussd(text: str) -> str:
    """Text -> GSM 7-bit packed septets as upper-case hex, USSD style (CR padding)."""
    septets = encode(text)
    if len(septets) % 8 == 7:
        septets += bytes([_USSD_PAD])
    return pack(septets).hex().upper()


def unpack_ussd(hex_text: str) -> str:
    """GSM 7-bit packed hex -> text; drops the CR that pads seven spare bits."""
    octets = bytes.fromhex(hex_text)
    septets = unpack(octets, len(octets) * 8 // 7)
    if len(octets) % 7 == 0 and septets.endswith(bytes([_USSD_PAD])):
        septets = septets[:-1]
    return decode(septets)


# --- national language shift tables (23.038 6.2.1.2, 6.2.2) -----------------------------------------

_TABLE_CACHE: dict[tuple[int, int], tuple[tuple[str, ...], dict[int, str], dict[str, bytes]]] = {}


def _tables(locking: int, single: int) -> tuple[tuple[str, ...], dict[int, str], dict[str, bytes]]:
    """(septet -> character, ESC code -> character, character -> septets) for a table pair.

    An identifier without a table of that kind (Spanish has no locking shift table, an unknown or
    reserved identifier) means the default table, as 23.038 6.2.1.2.4 asks of a receiver."""
    from drivers import gsm7_national as national

    key = (locking, single)
    cached = _TABLE_CACHE.get(key)
    if cached is not None:
        return cached
    base: tuple[str | None, ...] = national.LOCKING.get(locking) or tuple(DEFAULT_ALPHABET)
    alphabet = tuple((" " if char is None else char) if code != ESC else "" for code, char in enumerate(base))
    shift = national.SINGLE.get(single, EXTENSION) if single else EXTENSION
    to_septets: dict[str, bytes] = {}
    for code, char in shift.items():
        to_septets.setdefault(char, bytes([ESC, code]))
    for code, glyph in enumerate(base):
        if code != ESC and glyph is not None:
            to_septets[glyph] = bytes([code])  # a character in both tables costs one septet
    cached = (alphabet, dict(shift), to_septets)
    _TABLE_CACHE[key] = cached
    return cached


def decode_national(septets: bytes, locking: int = 0, single: int = 0) -> str:
    """Septet string -> text, with the locking shift table ``locking`` and the single shift table
    ``single`` (national language identifiers; 0 is the default alphabet / extension table).

    As in ``decode``: an ESC code the single shift table does not define reads as the locking
    table's character, ESC ESC and a trailing ESC as a space; an undefined position as a space."""
    if not locking and not single:
        return decode(septets)
    alphabet, shift, _ = _tables(locking, single)
    out: list[str] = []
    escaped = False
    for septet in septets:
        if escaped:
            escaped = False
            if septet == ESC:
                out.append(" ")
            else:
                out.append(shift.get(septet) or alphabet[septet])
        elif septet == ESC:
            escaped = True
        else:
            out.append(alphabet[septet])
    if escaped:
        out.append(" ")
    return "".join(out)


def encode_national(text: str, locking: int = 0, single: int = 0) -> bytes:
    """Text -> septet string with the given tables. Raises Gsm7EncodeError for other characters."""
    if not locking and not single:
        return encode(text)
    to_septets = _tables(locking, single)[2]
    try:
        return b"".join([to_septets[char] for char in text])
    except KeyError as exc:
        raise Gsm7EncodeError(f"character {exc.args[0]!r} is not in the chosen GSM 7-bit tables") from None


def undefined_escapes(septets: bytes, single: int, language: int) -> bool:
    """True when ``septets`` hold ESC codes that single shift table ``single`` does not define but
    the single shift table of ``language`` does (used to spot a mislabelled shift header)."""
    from drivers import gsm7_national as national

    active = national.SINGLE.get(single, EXTENSION) if single else EXTENSION
    other = national.SINGLE.get(language, {})
    found = False
    pos = septets.find(ESC)
    while pos != -1 and pos + 1 < len(septets):
        code = septets[pos + 1]
        if code not in active:
            if code not in other:
                return False
            found = True
        pos = septets.find(ESC, pos + 2)
    return found
