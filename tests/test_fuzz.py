"""Property-based fuzzing (hypothesis) of what reads untrusted input: every reply parser in
drivers/parsers.py, the final-result classifier, and the MQTT request reader (payload bytes ->
text -> JSON -> the send intake's OutboundRequests). Each may only return data or raise its documented error type
(ParseError; PayloadError or IntakeError), never IndexError, RecursionError, UnicodeError...

The PDU decoder and the AT framing are fuzzed in tests/test_pdu_properties.py and
tests/test_framing.py. CI-sized: a few hundred examples each; bench-sized runs raise the counts.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config import parse_config
from appliance.intake import IntakeError, IntakePolicy, prepare_json
from appliance.payload import MAX_DEPTH, PayloadError, decode_text, dump_json, load_json
from drivers import parsers
from drivers.errors import AtError, error_from_final
from drivers.parsers import ParseError

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# what modems really send: prefixes of every reply the parsers read, fields, quotes, hex, UCS-2
_PREFIXES = ["+CSQ: ", "+CREG: ", "+CGREG: ", "+CEREG: ", "+COPS: ", "+CPIN: ", "+CSCA: ", "+CPMS: ",
             "+CMGL: ", "+CMGR: ", "+CMGS: ", "+CMTI: ", "+CDSI: ", "+CUSD: ", "+CLIP: ", "+CRING: ",
             "+CME ERROR: ", "+CMS ERROR: ", "OK", "ERROR", "RING", ""]
_FIELD = st.one_of(
    st.integers(-5, 70000).map(str),
    st.text(alphabet="0123456789ABCDEFabcdef", max_size=24),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12).map(lambda t: f'"{t}"'),
    st.sampled_from(['"SM"', '"ME"', '"REC UNREAD"', "READY", "SIM PIN", '"', ",", "", "\ud83d\ude00"]),
)
_REPLY_LINE = st.one_of(
    st.tuples(st.sampled_from(_PREFIXES), st.lists(_FIELD, max_size=6)).map(lambda p: p[0] + ",".join(p[1])),
    st.text(max_size=60),  # anything, lone surrogates included (a decoder with errors="surrogateescape")
    st.text(alphabet="0123456789ABCDEF", min_size=2, max_size=120),  # a PDU line
)
_LINES = st.lists(_REPLY_LINE, max_size=6)


def _public_parsers() -> list[Any]:
    return [function for name, function in inspect.getmembers(parsers, inspect.isfunction)
            if function.__module__ == parsers.__name__ and not name.startswith("_")]


def test_every_public_parser_is_fuzzed() -> None:
    names = {function.__name__ for function in _public_parsers()}
    assert names == {"split_fields", "parse_csq", "parse_creg", "parse_creg_urc", "parse_cops", "parse_cpin",
                     "parse_csca", "parse_cpms", "parse_cmgl", "parse_cmgr", "parse_cmgs", "parse_cmti",
                     "parse_cusd", "decode_ussd_text", "access_technology", "text_mode_deliver", "parse_cpin_urc",
                     "cusd_continues", "parse_clip", "parse_cring"}, "a new parser: add it to the fuzz tests below"


@SETTINGS
@given(lines=_LINES, dcs=st.none() | st.integers(-1, 300))
def test_every_parser_returns_data_or_raises_parse_error(lines: list[str], dcs: int | None) -> None:
    line = lines[0] if lines else ""
    framed = line.encode("utf-8", "replace").decode("utf-8")
    calls = [
        lambda: parsers.split_fields(line),
        lambda: parsers.parse_csq(lines),
        lambda: parsers.parse_creg(lines),
        lambda: parsers.parse_creg_urc(line),
        lambda: parsers.parse_cops(lines),
        lambda: parsers.parse_cpin(lines),
        lambda: parsers.parse_csca(lines),
        lambda: parsers.parse_cpms(lines),
        lambda: parsers.parse_cmgl(lines),
        lambda: parsers.parse_cmgr(lines),
        lambda: parsers.parse_cmgs(lines),
        lambda: parsers.parse_cmti(line),
        lambda: parsers.parse_cusd(line),
        lambda: parsers.cusd_continues(line, lines),
        lambda: parsers.parse_cpin_urc(line),
        lambda: parsers.parse_clip(line),
        lambda: parsers.parse_cring(line),
        lambda: parsers.decode_ussd_text(line, dcs),
        lambda: parsers.access_technology(dcs),
        # lines as the framing delivers them (decoded with replacement: never a lone surrogate)
        lambda: parsers.text_mode_deliver(parsers.TextModeMessage(framed or None, framed, framed)),
    ]
    for call in calls:
        try:
            call()
        except ParseError:
            pass


@SETTINGS
@given(line=_REPLY_LINE, command=st.none() | st.text(max_size=20))
def test_any_final_line_classifies_as_an_at_error(line: str, command: str | None) -> None:
    error = error_from_final(line, command, [])
    assert isinstance(error, AtError) and isinstance(str(error), str)


# --- the MQTT request reader --------------------------------------------------------------------

_CONFIG = parse_config({"store": {"path": "/nonexistent/smsgw.db"}, "numbers": {"default_country": "DE"},
                        "limits": {"max_parts": 3}}, Path("smsgw.toml"))

_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=30), st.sampled_from(["+4915112345678", "004915112345678", "\ud800", "high"]))
_JSON = st.recursive(_SCALAR, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
_REQUEST = st.fixed_dictionaries({}, optional={
    "to": _JSON | st.sampled_from(["+4915112345678", ["+4915112345678", "+49170 1234567"]]),
    "text": _JSON | st.text(max_size=500), "id": _JSON, "priority": _JSON, "report": _JSON,
    "valid_for": _JSON, "transaction": _JSON,
})


def read_request(raw: bytes) -> None:
    """What the bridge does with a ``B/send`` payload, up to the store."""
    payload = load_json(decode_text(raw), text_only=False)
    prepared = prepare_json(payload, source="mqtt", now=1_700_000_000.0,
                            policy=IntakePolicy(_CONFIG.numbers, max_parts=_CONFIG.limits.max_parts))
    for request in prepared.requests:  # what reaches SQLite and the SMS codec is real text
        request.text.encode("utf-8")
        request.to.encode("utf-8")
        if request.client_key is not None:
            request.client_key.encode("utf-8")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()  # ASCII: a lone surrogate becomes the escape "\ud800"


@SETTINGS
@given(raw=st.one_of(_REQUEST.map(_json_bytes), _JSON.map(_json_bytes), st.binary(max_size=200),
                     st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_request_reader_raises_only_payload_or_request_errors(raw: bytes) -> None:
    try:
        read_request(raw)
    except (PayloadError, IntakeError):
        pass


@settings(max_examples=30, deadline=None)
@given(depth=st.integers(MAX_DEPTH + 1, 200_000), opener=st.sampled_from(["[", '{"a":']),
       digits=st.integers(4301, 20_000))
def test_hostile_shapes_are_refused_as_payload_errors(depth: int, opener: str, digits: int) -> None:
    closer = "]" if opener == "[" else "}"
    for raw in (opener * depth + closer * depth, '{"to": "+4915112345678", "text": "x", "id": ' + "9" * digits + "}"):
        try:
            load_json(raw)
        except PayloadError:
            continue
        raise AssertionError(f"accepted {raw[:40]!r}...")


@SETTINGS
@given(value=_JSON)
def test_dump_json_always_encodes_and_reads_back(value: Any) -> None:
    text = dump_json(value)
    text.encode("utf-8")
    assert dump_json(json.loads(text)) == text
