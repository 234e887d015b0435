"""PDU codec properties (hypothesis): round trips for any text, part limits, pairs never split,
and malformed input only ever raising PduError."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import gsm7
from drivers.pdu import (
    MAX_USER_DATA_OCTETS,
    MAX_USER_DATA_SEPTETS,
    PduError,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    count_parts,
    decode,
    encode_deliver,
    encode_status_report,
    encode_submit,
    split_text,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Texts that lean on the interesting corners: extension characters, emoji, long runs.
GSM_CHARS = st.sampled_from(sorted(gsm7.CHAR_TO_SEPTETS))
EMOJI = st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF)
TEXTS = st.one_of(
    st.text(),
    st.text(GSM_CHARS, max_size=500),
    st.text(st.one_of(GSM_CHARS, st.sampled_from(sorted(gsm7.EXTENSION_CHARS))), min_size=140, max_size=400),
    st.text(st.one_of(st.characters(max_codepoint=0x7FF), EMOJI), max_size=300),
    st.text(EMOJI, min_size=30, max_size=120),
)
NUMBERS = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{0,14}", fullmatch=True),
    st.from_regex(r"[0-9]{1,20}", fullmatch=True),
    st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,10}", fullmatch=True),
)
OFFSETS = st.integers(min_value=-79, max_value=79).map(lambda q: timezone(timedelta(minutes=15 * q)))
TIMESTAMPS = st.builds(
    lambda dt, tz: dt.replace(tzinfo=tz),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)).map(
        lambda dt: dt.replace(microsecond=0)
    ),
    OFFSETS,
)


def _check_parts(text: str, messages: list[SmsDeliver] | list[SmsSubmit], concat_16bit: bool) -> None:
    assert "".join(m.text for m in messages) == text
    encoding, expected_texts = split_text(text, concat_16bit=concat_16bit)
    assert [m.text for m in messages] == expected_texts
    assert len(messages) == count_parts(text, concat_16bit=concat_16bit)
    total = len(messages)
    header = 0 if total == 1 else (7 if concat_16bit else 6)
    septet_limit = MAX_USER_DATA_SEPTETS - (header * 8 + 6) // 7
    unit_limit = (MAX_USER_DATA_OCTETS - header) // 2
    references = set()
    for sequence, message in enumerate(messages, start=1):
        assert message.encoding == encoding
        if total > 1:
            assert message.concat is not None
            assert (message.concat.sequence, message.concat.total) == (sequence, total)
            references.add(message.concat.reference)
        else:
            assert message.concat is None
        if encoding == "gsm7":
            assert len(message.data) <= septet_limit
            assert not message.data.endswith(b"\x1b")  # an escape pair is never split
        else:
            assert len(message.data) // 2 <= unit_limit
            last = message.data[-2:-1]
            assert not last or not 0xD8 <= last[0] <= 0xDB  # never ends on a high surrogate
    assert len(references) <= 1
    # the split is optimal: each part is full, the next part's first character would not fit
    for this, following in zip(messages, messages[1:], strict=False):
        if encoding == "gsm7":
            assert len(this.data) + len(gsm7.encode(following.text[0])) > septet_limit
        else:
            assert len(this.data) // 2 + len(following.text[0].encode("utf-16-be")) // 2 > unit_limit


@SETTINGS
@given(text=TEXTS, number=NUMBERS, concat_16bit=st.booleans(), reference=st.integers(0, 255))
def test_encode_submit_then_decode_gives_back_the_text(text, number, concat_16bit, reference):
    parts = encode_submit(number, text, reference=reference, concat_16bit=concat_16bit)
    messages = [decode(part.pdu) for part in parts]
    assert all(isinstance(m, SmsSubmit) for m in messages)
    assert all(m.number == number and m.reference == reference for m in messages)  # type: ignore[union-attr]
    for part in parts:
        assert part.tpdu_length == len(part.pdu) // 2 - 1  # SMSC field "00"
    _check_parts(text, messages, concat_16bit)  # type: ignore[arg-type]


@SETTINGS
@given(text=TEXTS, number=NUMBERS, timestamp=TIMESTAMPS, concat_16bit=st.booleans())
def test_encode_deliver_then_decode_gives_back_text_number_and_time(text, number, timestamp, concat_16bit):
    pdus = encode_deliver(number, text, timestamp=timestamp, smsc="+4917000000", concat_16bit=concat_16bit)
    messages = [decode(pdu) for pdu in pdus]
    assert all(isinstance(m, SmsDeliver) for m in messages)
    for message in messages:
        assert message.number == number and message.smsc == "+4917000000"  # type: ignore[union-attr]
        assert message.timestamp == timestamp  # type: ignore[union-attr]
        assert message.timestamp.utcoffset() == timestamp.utcoffset()  # type: ignore[union-attr]
    _check_parts(text, messages, concat_16bit)  # type: ignore[arg-type]


@SETTINGS
@given(
    number=NUMBERS,
    reference=st.integers(0, 255),
    status=st.integers(0, 255),
    timestamp=TIMESTAMPS,
    discharge=TIMESTAMPS,
)
def test_status_report_round_trips(number, reference, status, timestamp, discharge):
    pdu = encode_status_report(number, reference, status, timestamp=timestamp, discharge_time=discharge)
    assert decode(pdu) == SmsStatusReport(
        None, number, decode(pdu).number_type, reference, timestamp, discharge, status
    )


@SETTINGS
@given(septets=st.binary(max_size=700).map(lambda b: bytes(x & 0x7F for x in b)), fill=st.integers(0, 6))
def test_septet_packing_round_trips(septets, fill):
    packed = gsm7.pack(septets, fill)
    assert len(packed) == (len(septets) * 7 + fill + 7) // 8
    assert gsm7.unpack(packed, len(septets), fill) == septets


def _decode_or_pdu_error(data: str | bytes, with_smsc: bool) -> None:
    try:
        message = decode(data, with_smsc=with_smsc)
    except PduError as exc:
        assert str(exc)
    else:
        assert message.type in ("deliver", "submit", "status-report")


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=200), with_smsc=st.booleans())
def test_random_bytes_decode_or_raise_pdu_error(data, with_smsc):
    _decode_or_pdu_error(data, with_smsc)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80), with_smsc=st.booleans())
def test_random_strings_decode_or_raise_pdu_error(text, with_smsc):
    _decode_or_pdu_error(text, with_smsc)


VALID_PDUS = [
    "07911326040000F0040B911346610089F60000208062917314480CC8F71D14969741F977FD07",
    "0791447758100650040DD0F334FC1CA6970100008080312170224008D4F29CDE0EA7D9",
    "0791449737709499440C914487732760570000807051117230401F06080400230202ED73FBDC3EB7CFED33FC0EBF"
    "C3EFF07BFC0EBFC301",
    "0791448720003023440C91446742087377000480601111138040380B0504000000000003B90303000102030405"
    "060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B",
    "07914346466554F601000B914316565811F9000806304253F68449",
    "0019000B917228001011F100003170013193008017D474BB3CA787DB70903DCC4E93D3F43C885E9ED301",
    "0006D60B911326880736F4111011719551401110117195714000",
    "07911326040000F0310D0B911326880736F40000A90FF7FBDD454E87CDE1B0DB357EB701",
]


@st.composite
def mutated_pdus(draw: st.DrawFn) -> bytes:
    data = bytearray.fromhex(draw(st.sampled_from(VALID_PDUS)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "cut":
            del data[position:]
        elif action == "insert":
            data.insert(position, draw(st.integers(0, 255)))
        elif data:
            data[position] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x0F, 0x40, 0x7F, 0x80, 0xFF]))
    return bytes(data)


@settings(max_examples=500, deadline=None)
@given(data=mutated_pdus())
def test_mutated_real_pdus_decode_or_raise_pdu_error(data):
    _decode_or_pdu_error(data, True)
    _decode_or_pdu_error(data.hex(), True)


@SETTINGS
@given(st.one_of(st.text(st.characters(max_codepoint=0x7F), max_size=80), TEXTS), st.booleans())
def test_count_parts_is_the_number_of_parts_encode_submit_makes(text: str, concat_16bit: bool) -> None:
    # count_parts answers short ASCII texts without planning: the same answer as the planner's
    try:
        parts = encode_submit("+491701234567", text, concat_16bit=concat_16bit)
    except PduError:
        return  # (a text the codec refuses: a lone surrogate, more than 255 parts)
    assert count_parts(text, concat_16bit=concat_16bit) == len(parts)
