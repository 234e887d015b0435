"""Reading untrusted MQTT payloads: bytes to text to JSON, and JSON back to bytes, never raising anything
but :class:`PayloadError` on bad input.

``json.loads`` alone raises ``JSONDecodeError`` for bad syntax, but also ``RecursionError`` for deeply
nested arrays, a plain ``ValueError`` for an integer of more than ``sys.get_int_max_str_digits()``
digits, and it accepts lone surrogates (``"\\ud800"``) that no UTF-8 encoder, SQLite binding or SMS
codec can carry. Every reader of a payload goes through :func:`load_json` so one message can never
raise something its caller does not expect.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any

#: How deep a JSON document may nest (a send request needs 2 levels; rules' payloads a few more).
MAX_DEPTH = 64


class PayloadError(ValueError):
    """A payload that cannot be read; ``reason`` names the problem."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_text(payload: bytes | bytearray) -> str:
    """The payload as UTF-8 text."""
    try:
        return bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"payload is not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def _depth_ok(text: str) -> bool:
    """A cheap upper bound on the nesting depth (brackets inside strings count too, which only errs
    towards refusing a very odd document)."""
    depth = 0
    for char in text:
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif char in "]}":
            depth -= 1
    return True


def load_json(text: str | bytes | bytearray, *, text_only: bool = True) -> Any:
    """Parse a JSON document; PayloadError for bad syntax, nesting deeper than MAX_DEPTH, an integer
    too long to convert, or (unless ``text_only`` is false: the caller checks each string it uses)
    a string holding a lone surrogate."""
    if isinstance(text, bytes | bytearray | memoryview):
        text = decode_text(bytes(text))
    # the openers counted in C bound the depth: only a document with more of them is walked
    if text.count("[") + text.count("{") > MAX_DEPTH and not _depth_ok(text):
        raise PayloadError(f"payload is nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"payload is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise PayloadError(f"payload is nested deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # an integer longer than sys.get_int_max_str_digits()
        raise PayloadError(f"payload has a number that is too long ({str(exc).split(':')[0]})") from exc
    if text_only and "\\u" in text:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PayloadError("payload has a lone surrogate (an escaped \\ud800-\\udfff without its pair), "
                               "which is not text") from exc
    return value


def dump_json(value: Any, *, compact: bool = True) -> str:
    """JSON text of ``value``, non-ASCII kept as is; a string with a lone surrogate is written escaped
    (``\\ud800``), so the result always encodes to UTF-8 and binds in SQLite."""
    separators = (",", ":") if compact else None
    text = json.dumps(value, ensure_ascii=False, separators=separators)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=separators)
    return text


def excerpt(payload: bytes | bytearray, limit: int = 200) -> str:
    """The first ``limit`` bytes of a payload as text, for logs and the audit."""
    return bytes(payload[:limit]).decode("utf-8", "replace")
