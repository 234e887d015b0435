"""Framing: bytes -> lines and the SMS prompt, whatever the chunking, never raising."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.framing import PROMPT, AtFramer, Item, Line


def lines(*texts: str) -> list[Item]:
    return [Line(t) for t in texts]


def feed_all(chunks: list[bytes], **kwargs: int) -> list[Item]:
    framer = AtFramer(**kwargs)
    out: list[Item] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    return out


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


TABLE = [
    ("crlf lines", b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n", lines("+CSQ: 20,99", "OK")),
    ("lone cr", b"OK\r", lines("OK")),
    ("lone lf", b"+CMTI: \"SM\",3\nOK\n", lines('+CMTI: "SM",3', "OK")),
    ("gammu echo", b"AT+CSQ\r\r\n+CSQ: 5,99\r\n\r\nOK\r\n", lines("AT+CSQ", "+CSQ: 5,99", "OK")),
    ("empty lines dropped", b"\r\n\r\n\r\r\n\n  \r\nOK\r\n", lines("OK")),
    ("surrounding spaces stripped", b"  OK  \r\n", lines("OK")),
    ("prompt", b"\r\n> ", [PROMPT]),
    ("prompt after echo", b"AT+CMGS=23\r\r\n> ", [Line("AT+CMGS=23"), PROMPT]),
    ("prompt then pdu echo", b"\r\n> 0011000B91\x1a\r\n+CMGS: 7\r\n\r\nOK\r\n",
     [PROMPT, Line("0011000B91"), Line("+CMGS: 7"), Line("OK")]),
    ("prompt without space on its own line", b"\r\n>\r\n", [PROMPT]),
    ("greater-than inside a line is text", b"+CUSD: 0,\"a > b\",15\r\n", lines('+CUSD: 0,"a > b",15')),
    ("nul bytes stripped", b"\x00\x00O\x00K\r\n", lines("OK")),
    ("control garbage stripped", b"\x01\x02\x7f+CSQ: 1,2\x03\r\n", lines("+CSQ: 1,2")),
    ("invalid utf-8 replaced", b"\xff\xfeOK\r\n", lines("\ufffd\ufffdOK")),
    ("utf-8 kept", "+COPS: 0,0,\"Telefónica\"\r\n".encode(), lines('+COPS: 0,0,"Telefónica"')),
    ("noise before prompt", b"\r\n^RSSI: 12\r\n\r\n> ", [Line("^RSSI: 12"), PROMPT]),
]


@pytest.mark.parametrize("data,expected", [(d, e) for _, d, e in TABLE], ids=[t[0] for t in TABLE])
@pytest.mark.parametrize("chunking", ["whole", "bytewise"])
def test_framer_table(data: bytes, expected: list[Item], chunking: str) -> None:
    chunks = [data] if chunking == "whole" else bytewise(data)
    assert feed_all(chunks) == expected


def test_prompt_reported_without_line_end() -> None:
    framer = AtFramer()
    assert framer.feed(b"\r\n>") == []
    assert framer.feed(b" ") == [PROMPT]
    assert framer.pending == b""


def test_incomplete_line_waits_for_its_end() -> None:
    framer = AtFramer()
    assert framer.feed(b"+CSQ: 2") == []
    assert framer.feed(b"0,99\r") == [Line("+CSQ: 20,99")]


def test_overlong_line_dropped_and_logged_then_resyncs(caplog: pytest.LogCaptureFixture) -> None:
    framer = AtFramer(max_line=16)
    with caplog.at_level(logging.WARNING, logger="drivers.framing"):
        out = framer.feed(b"X" * 40)
        out += framer.feed(b"YYYY\r\nOK\r\n")
    assert out == [Line("OK")]
    assert sum("longer than 16 bytes" in r.getMessage() for r in caplog.records) == 1


def test_garbage_logged_once_with_its_bytes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="drivers.framing"):
        assert AtFramer().feed(b"\x00\x01\x02OK\r\n") == [Line("OK")]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "\\x00\\x01\\x02" in messages[0]


def test_reset_forgets_partial_line() -> None:
    framer = AtFramer()
    framer.feed(b"+CS")
    framer.reset()
    assert framer.feed(b"OK\r\n") == [Line("OK")]


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    alphabet = st.sampled_from(
        [b"\r", b"\n", b"\r\n", b"> ", b">", b" ", b"OK", b"+CMTI: \"SM\",1", b"\x00", b"\x1a", b"\xff",
         b"\xc3", b"\xa9", b"\xc2\x85", b"\t", b"A", b"0"]
    )
    data = b"".join(draw(st.lists(st.one_of(alphabet, st.binary(max_size=8)), max_size=40)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    chunks, start = [], 0
    for cut in cuts:
        chunks.append(data[start:cut])
        start = cut
    chunks.append(data[start:])
    return data, chunks


@settings(max_examples=300, deadline=None)
@given(chunked())
def test_any_bytes_in_any_chunks_never_raise_and_frame_the_same(sample: tuple[bytes, list[bytes]]) -> None:
    data, chunks = sample
    whole = feed_all([data], max_line=64)
    assert feed_all(chunks, max_line=64) == whole
    assert feed_all(bytewise(data), max_line=64) == whole
    for item in whole:
        if isinstance(item, Line):
            assert item.text and item.text == item.text.strip()
            assert "\r" not in item.text and "\n" not in item.text and "\x00" not in item.text
