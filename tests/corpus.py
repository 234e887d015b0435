"""The corpus of real PDUs and +CMGR/+CDS replies in ``tests/data/pdus/corpus.json``, and how each
decoder reads one entry. Used by ``tests/test_corpus.py`` and ``bench/corpus_pass_rate.py``.

An entry passes when the decoder returns a message (not an error) and, where the source asserts
values (``expected``), every one of them matches.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drivers import parsers
from drivers.pdu import PduError, decode

CORPUS = Path(__file__).parent / "data" / "pdus" / "corpus.json"


def load() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(CORPUS.read_text(encoding="utf-8"))["entries"]
    return entries


def pdu_of(entry: dict[str, Any]) -> str | None:
    """The PDU hex of an entry (the line after the +CMGR header); None for a text-mode reply."""
    if entry["kind"] == "cmgr-text":
        return None
    if "pdu" in entry:
        return str(entry["pdu"])
    return str(entry["reply"][1]).strip() if len(entry["reply"]) > 1 else ""


def _matches(values: dict[str, Any], expected: dict[str, Any] | None) -> bool:
    return all(values.get(key) == value for key, value in (expected or {}).items())


def ours(entry: dict[str, Any]) -> tuple[bool, str]:
    """(passed, what happened) for smsgw's parser and codec."""
    try:
        if "reply" in entry:
            reply = parsers.parse_cmgr(entry["reply"])
            if reply.error is not None:
                return False, reply.error
            message = parsers.text_mode_deliver(reply.text_mode) if reply.text_mode else decode(reply.pdu)
        else:
            message = decode(entry["pdu"], with_smsc=entry.get("with_smsc", True))
    except (PduError, parsers.ParseError) as exc:
        return False, str(exc)
    values = {"type": message.type, "number": message.number, "reference": getattr(message, "reference", None),
              "text": getattr(message, "text", None), "status": getattr(message, "status", None)}
    return _matches(values, entry.get("expected")), message.type


_THEIR_TYPES = {"SMS-DELIVER": "deliver", "SMS-SUBMIT": "submit", "SMS-STATUS-REPORT": "status-report"}


def theirs(entry: dict[str, Any]) -> tuple[bool, str] | None:
    """(passed, what happened) for python-gsmmodem-new's ``gsmmodem.pdu.decodeSmsPdu``; None for a
    text-mode reply, which it has no pure decoder for."""
    from gsmmodem.pdu import decodeSmsPdu

    pdu = pdu_of(entry)
    if pdu is None:
        return None
    if not entry.get("with_smsc", True):
        pdu = "00" + pdu
    try:
        result = decodeSmsPdu(pdu)
    except Exception as exc:  # noqa: BLE001 - any failure of theirs is a miss, whatever its type
        return False, f"{type(exc).__name__}: {exc}"
    values = {"type": _THEIR_TYPES.get(result.get("type", ""), result.get("type")), "number": result.get("number"),
              "reference": result.get("reference"), "text": result.get("text"), "status": result.get("status")}
    return _matches(values, entry.get("expected")), str(values["type"])
