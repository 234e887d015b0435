"""Pure framing of the bytes an AT modem sends: lines and the SMS ``> `` prompt.

``AtFramer.feed(data)`` takes whatever the transport read (any chunk size) and returns the complete
items found so far. It never raises on any input:

* lines end in CR LF, or a lone CR or LF; empty lines are dropped; text is stripped of surrounding
  whitespace;
* the SMS prompt is ``>`` SPACE at the start of a line with no line end after it (modems send
  ``\\r\\n> ``); it is recognised as soon as its two bytes are in, also when they arrive in separate
  reads; a line that is only ``>`` is a prompt too (some firmwares drop the space);
* NUL and other control bytes (including the Ctrl-Z and ESC of PDU entry) are stripped, so a line
  with garbage in it still comes out as the line; bytes that are not valid UTF-8 are decoded with
  U+FFFD replacement characters;
* a line longer than ``max_line`` bytes without a terminator is dropped, up to the next line end,
  with one log line.

The items are the same whatever the chunking of the input (property-tested).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_LINE = 8192
"""Longest line (in bytes) kept; a longer one is dropped. A +CMGL line with a full PDU is < 400."""

_CONTROL = bytes(b for b in range(0x20) if b not in (0x0A, 0x0D, 0x09)) + b"\x7f"
_EXPECTED_CONTROL = frozenset(b"\x1a\x1b")  # Ctrl-Z / ESC echoed during PDU entry: not worth a warning
_LINE_ENDS = b"\r\n"


@dataclass(frozen=True, slots=True)
class Line:
    """One non-empty line of modem output, decoded and stripped."""

    text: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """The ``> `` prompt that asks for the SMS PDU (or text)."""


PROMPT = Prompt()

Item = Line | Prompt


class AtFramer:
    """Turns a byte stream into :class:`Line` and :class:`Prompt` items. Pure: no I/O, no clock."""

    def __init__(self, *, max_line: int = MAX_LINE, name: str = "") -> None:
        self.max_line = max_line
        self.name = name
        self._pending = bytearray()
        self._discarding = False  # inside an overlong line: drop bytes until the next line end

    def reset(self) -> None:
        """Forget any partial line (after reopening a port)."""
        self._pending.clear()
        self._discarding = False

    @property
    def pending(self) -> bytes:
        """The bytes of the unfinished line (for diagnostics)."""
        return bytes(self._pending)

    def feed(self, data: bytes) -> list[Item]:
        """Add ``data`` and return every complete item it finished, in order."""
        clean = data.translate(None, _CONTROL)
        if len(clean) != len(data):
            dropped = bytes(b for b in data if b in _CONTROL)
            if set(dropped) - _EXPECTED_CONTROL:
                log.warning("%sdropped non-printable bytes %r from %r", self._prefix(), dropped, data)
            else:
                log.debug("%sdropped %r", self._prefix(), dropped)
        items: list[Item] = []
        start = 0
        length = len(clean)
        while start < length:
            end = _next_line_end(clean, start)
            if end < 0:
                self._append(clean[start:], items)
                break
            self._append(clean[start:end], items)
            self._finish_line(items)
            start = end + 1
        return items

    def _prefix(self) -> str:
        return f"{self.name}: " if self.name else ""

    def _append(self, chunk: bytes, items: list[Item]) -> None:
        if self._discarding or not chunk:
            return
        self._pending += chunk
        # The prompt: the line so far starts with "> " (checked as bytes arrive, so a line that
        # only ever gets "> " - with no line end after it - is reported at once).
        while self._pending[:2] == b"> ":
            del self._pending[:2]
            items.append(PROMPT)
        if len(self._pending) > self.max_line:
            log.warning(
                "%sdropped a line longer than %d bytes without a line end: %r...",
                self._prefix(),
                self.max_line,
                bytes(self._pending[:80]),
            )
            self._pending.clear()
            self._discarding = True

    def _finish_line(self, items: list[Item]) -> None:
        if self._discarding:
            self._discarding = False
            self._pending.clear()
            return
        raw = bytes(self._pending)
        self._pending.clear()
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return
        if text == ">":
            items.append(PROMPT)
            return
        if "\ufffd" in text and b"\xef\xbf\xbd" not in raw:
            log.warning("%sline is not valid UTF-8, decoded with replacement: %r", self._prefix(), raw)
        items.append(Line(text))


def _next_line_end(data: bytes, start: int) -> int:
    cr = data.find(b"\r", start)
    lf = data.find(b"\n", start)
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)
