"""Property-based fuzzing (hypothesis) of what reads untrusted input: every reply parser in
drivers/parsers.py, the final-result classifier, the path from a SIM listing to the store
(``AT+CMGL`` reply -> entries -> decoded as the modem does -> committed as the inbox does), and the
MQTT request reader (payload bytes -> text -> JSON -> the send intake's OutboundRequests). Each may
only return data or raise its documented error type (ParseError; PayloadError or IntakeError),
never IndexError, RecursionError, UnicodeError...

The PDU decoder and the AT framing are fuzzed in tests/test_pdu_properties.py and
tests/test_framing.py. CI-sized: a few hundred examples each; ``bench/fuzz.py`` runs 100,000 inputs
over the same targets (docs/reliability.md).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config import parse_config
from appliance.intake import IntakeError, IntakePolicy, prepare_json
from appliance.payload import MAX_DEPTH, PayloadError, decode_text, dump_json, load_json
from appliance.store import Store
from drivers import parsers
from drivers.errors import AtError, error_from_final
from drivers.modem import Modem
from drivers.parsers import ParseError
from drivers.pdu import SmsDeliver

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


# --- a SIM listing, from the modem's reply to the store ------------------------------------------

#: Real PDUs (tests/test_pdu_properties.py, tests/test_pdu_lenient.py name their sources).
_PDUS = ["07911326040000F0040B911346610089F60000208062917314480CC8F71D14969741F977FD07",
         "0791448720003023440C91446742087377000480601111138040380B0504000000000003B90303000102030405"
         "060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B",
         "07914346466554F601000B914316565811F9000806304253F68449",
         "0006230E9126983575169498610103409544C26101034095448200"]


@st.composite
def _pdu_line(draw: st.DrawFn) -> str:
    data = bytearray.fromhex(draw(st.sampled_from(_PDUS)))
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(data) - 1)) if data else 0
        action = draw(st.sampled_from(["flip", "cut", "set"]))
        if action == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del data[position:]
        elif data:
            data[position] = draw(st.sampled_from([0x00, 0x08, 0x40, 0x7F, 0x80, 0xD8, 0xDC, 0xFF]))
    return data.hex().upper()


_HEADER = st.tuples(st.integers(-1, 400), st.sampled_from(["0", "1", "4", '"REC UNREAD"', '"X"', ""]),
                    st.integers(0, 200)).map(lambda h: f"+CMGL: {h[0]},{h[1]},,{h[2]}")
_TEXT_HEADER = st.tuples(st.integers(0, 30), st.text(max_size=16), st.text(max_size=22)).map(
    lambda h: f'+CMGL: {h[0]},"REC UNREAD","{h[1]}",,"{h[2]}"')
_LISTING = st.lists(st.one_of(
    st.tuples(_HEADER, _pdu_line()).map(list),
    st.tuples(_TEXT_HEADER, st.text(max_size=40)).map(list),
    st.tuples(_REPLY_LINE).map(list),
), max_size=4).map(lambda groups: [line for group in groups for line in group])


def test_any_sim_listing_is_committed_without_raising(tmp_path: Path) -> None:
    store = Store(tmp_path / "smsgw.db")

    @SETTINGS
    @given(lines=_LISTING)
    def read_and_commit(lines: list[str]) -> None:
        framed = [line.encode("utf-8", "replace").decode("utf-8").strip() for line in lines]
        try:
            entries = parsers.parse_cmgl([line for line in framed if line])
        except ParseError:
            return
        for entry in entries:
            message, error = Modem._decode_entry(entry)
            if message is not None and not isinstance(message, SmsDeliver):
                continue  # a status report in the listing goes to apply_status_report
            part = store.add_incoming_part("sim0", entry.pdu, message, error, 1_700_000_000.0, entry.index)
            # read again after a crash between the commit and AT+CMGD: recognised, not stored twice
            assert store.add_incoming_part("sim0", entry.pdu, message, error, 1_700_000_001.0, entry.index) == part
        events = store.events_pending(limit=100)
        for event in events:  # what the bridge publishes on B/received
            dump_json(event.payload).encode("utf-8")
        store.events_done([event.id for event in events])

    try:
        read_and_commit()
    finally:
        store.close()


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


@pytest.mark.parametrize("opener, closer", [("[", "]"), ('{"a":', "}")])
def test_nesting_up_to_max_depth_is_read_and_one_level_more_refused(opener: str, closer: str) -> None:
    deep = opener * MAX_DEPTH + "1" + closer * MAX_DEPTH
    assert load_json(deep) is not None
    # many brackets side by side are not depth: [[1],[1],...] with more openers than MAX_DEPTH is read
    wide = "[" + ",".join(["[1]"] * (MAX_DEPTH * 2)) + "]"
    assert len(load_json(wide)) == MAX_DEPTH * 2
    with pytest.raises(PayloadError, match="nested deeper"):
        load_json(opener * (MAX_DEPTH + 1) + "1" + closer * (MAX_DEPTH + 1))
