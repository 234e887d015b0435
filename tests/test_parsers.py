"""AT reply parsers and the error tables, driven by tables of replies seen from real modems."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers import parsers
from drivers.errors import CME_ERRORS, CMS_ERRORS, AtError, CmeError, CmsError, error_from_final
from drivers.parsers import CallerId, CmglEntry, CmgrEntry, CopsState, CregState, ParseError, Storage

PDU = "07919471060040340409D0C6A7B90C0000021011210344002AC8329BFD06"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["+CSQ: 21,99"], (21, 99)),
        (["+CSQ: 21, 99"], (21, 99)),  # Huawei spacing
        (["+CSQ: 99,99"], (99, 99)),
        (["+CSQ: 5"], (5, None)),
        (["", "+CSQ: 31,0"], (31, 0)),
    ],
)
def test_csq(lines: list[str], expected: tuple[int, int | None]) -> None:
    assert parsers.parse_csq(lines) == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["+CREG: 0,1"], CregState(0, 1)),
        (["+CREG: 1,5"], CregState(1, 5)),
        (['+CREG: 2,1,"1A2B","01C3D4E5"'], CregState(2, 1, "1A2B", "01C3D4E5")),
        (['+CREG: 2,1,"1a2b","01c3d4e5",7'], CregState(2, 1, "1A2B", "01C3D4E5", 7)),
        (["+CREG: 2, 1, 25AA, 0E5F"], CregState(2, 1, "25AA", "0E5F")),  # Huawei: spaces, no quotes
        (["+CREG: 2,2"], CregState(2, 2)),
        (['+CGREG: 2,1,"00C3","0000A3B1",2'], CregState(2, 1, "00C3", "0000A3B1", 2)),
        (['+CEREG: 2,1,"3A4C","0A1B2C3D",7'], CregState(2, 1, "3A4C", "0A1B2C3D", 7)),
        (['+CEREG: 4,1,"3A4C","0A1B2C3D",7,,,"00100100","01000111"'], CregState(4, 1, "3A4C", "0A1B2C3D", 7)),
        (["+CREG: 3"], CregState(None, 3)),  # stat alone
        (["+CSQ: 10,99"], None),
    ],
)
def test_creg(lines: list[str], expected: CregState | None) -> None:
    assert parsers.parse_creg(lines) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("+CREG: 1", CregState(None, 1)),
        ('+CREG: 5,"1A2B","01C3D4E5"', CregState(None, 5, "1A2B", "01C3D4E5")),
        ('+CREG: 1,"1A2B","01C3D4E5",7', CregState(None, 1, "1A2B", "01C3D4E5", 7)),
        ("+CGREG: 0", CregState(None, 0)),
    ],
)
def test_creg_urc(line: str, expected: CregState) -> None:
    assert parsers.parse_creg_urc(line) == expected


@pytest.mark.parametrize(
    ("pattern", "line", "urc"),
    [
        (parsers.CREG_URC, "+CREG: 1", True),
        (parsers.CREG_URC, '+CEREG: 5,"1A2B","01C3D4E5",7', True),
        (parsers.CREG_URC, "+CREG: 2,1", False),  # the answer to AT+CREG? (<n>,<stat>), not a URC
        (parsers.CREG_URC, '+CREG: 2,1,"1A2B","01C3D4E5"', False),
        (parsers.CMTI_URC, '+CMTI: "SM",3', True),
        (parsers.CMTI_URC, '+CMTI: "ME", 12', True),
        (parsers.CDSI_URC, '+CDSI: "SR",1', True),
        (parsers.CMTI_URC, "+CMGR: 0,,24", False),
        (parsers.CPIN_URC, "+CPIN: NOT READY", True),
        (parsers.CPIN_URC, "+CPIN:", False),
        (parsers.CUSD_URC, '+CUSD: 0,"Balance",15', True),
    ],
)
def test_urc_patterns_tell_urcs_from_replies(pattern: str, line: str, urc: bool) -> None:
    assert (re.match(pattern, line) is not None) is urc


def test_cpin_urc() -> None:
    assert parsers.parse_cpin_urc('+CPIN: "SIM PIN"') == "SIM PIN"
    assert parsers.parse_cpin_urc("+CPIN: NOT READY") == "NOT READY"


def test_cusd_continues_while_its_quoted_text_is_open() -> None:
    assert parsers.cusd_continues('+CUSD: 0,"line one', [])
    assert parsers.cusd_continues('+CUSD: 0,"line one', ["line two"])
    assert not parsers.cusd_continues('+CUSD: 0,"line one', ['line two",15'])
    assert not parsers.cusd_continues("+CUSD: 2", [])


# Incoming-call URCs as real modems send them (3GPP TS 27.007 6.11 +CRC/+CRING, 7.6 +CLIP):
# - ModemManager src/mm-modem-helpers.c (commit 3a886d848dadd98eda8dff354c1d10450d7613fe),
#   mm_voice_clip_regex_get: `+CLIP: "+393351391306",145,,,,0`; mm_voice_cring_regex_get: `+CRING: VOICE`,
#   `+CRING: DATA`; mm_voice_ring_regex_get: `RING`.
# - python-gsmmodem test/fakemodems.py (faucamp/python-gsmmodem, commit 068c6b413237a5e9fc53bbdd6b7de2e99046ffb6),
#   descriptors of real modems: Huawei K3715 / E1752, ZTE K3565-Z, Qualcomm M6280 send `+CRING: VOICE` then
#   `+CLIP: "<number>",145,,,,0`; a Wavecom Multiband 900E 1800 sends `+CLIP: "<number>",145` (two fields).
# - vshymanskyy/TinyGSM issue 721 (a SIM800L, number masked by the reporter): `+CLIP: "+<number>",145,"",0,"",0`
#   then `RING`.
# - A withheld number: <number> empty and <CLI validity> 1 (27.007 7.6); 128 is the <type> modems give it.
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('+CLIP: "+393351391306",145,,,,0', CallerId("+393351391306", 145, 0)),  # ModemManager
        ('+CLIP: "+27820001234",145', CallerId("+27820001234", 145, None)),  # Wavecom (python-gsmmodem)
        ('+CLIP: "+4912345",145,"",0,"",0', CallerId("+4912345", 145, 0)),  # SIM800L (TinyGSM 721)
        ('+CLIP: "0383599999",129,"",,"",0', CallerId("0383599999", 129, 0)),  # national number
        ('+CLIP: "4912345",145,,,,0', CallerId("+4912345", 145, 0)),  # international without its +
        ('+CLIP: "",128,,,,1', CallerId(None, 128, 1)),  # withheld by the caller
        ('+CLIP: "",128,"",0,"",1', CallerId(None, 128, 1)),
        ('+CLIP: "",128', CallerId(None, 128, None)),
        ('+CLIP: "+4912345",145,,,,2', CallerId(None, 145, 2)),  # not available: the number is not used
        ('+CLIP: "+4912345",145,,,"Alice",0', CallerId("+4912345", 145, 0, "Alice")),  # phonebook name
        ("+CLIP:\"+4912345\",145", CallerId("+4912345", 145, None)),
    ],
)
def test_clip(line: str, expected: CallerId) -> None:
    assert parsers.parse_clip(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [('+CLIP: "",128,,,,1', "withheld"), ('+CLIP: "",128', "withheld"), ('+CLIP: "",128,,,,2', "unavailable"),
     ('+CLIP: "",128,,,,3', "payphone"), ('+CLIP: "+4912345",145,,,,0', None)],
)
def test_clip_tells_why_there_is_no_number(line: str, reason: str | None) -> None:
    caller = parsers.parse_clip(line)
    assert caller.reason == reason and caller.withheld is (reason is not None)


@pytest.mark.parametrize("line", ["+CLIP:", "+CLIP: ", '+CLIP: "+4912345",abc', "+CRING: VOICE", '+CLIP: "\x07",129'])
def test_malformed_clip_raises_parse_error(line: str) -> None:
    with pytest.raises(ParseError):
        parsers.parse_clip(line)


def test_cring() -> None:
    assert parsers.parse_cring("+CRING: VOICE") == "VOICE"  # ModemManager, python-gsmmodem
    assert parsers.parse_cring("+CRING: DATA") == "DATA"
    assert parsers.parse_cring("+CRING:REL ASYNC") == "REL ASYNC"
    for line in ("+CRING:", "RING"):
        with pytest.raises(ParseError):
            parsers.parse_cring(line)


@pytest.mark.parametrize(
    ("pattern", "line", "urc"),
    [
        (parsers.RING_URC, "RING", True),
        (parsers.RING_URC, "RINGING", False),
        (parsers.CRING_URC, "+CRING: VOICE", True),
        (parsers.CLIP_URC, '+CLIP: "+393351391306",145,,,,0', True),
        (parsers.NO_CARRIER_URC, "NO CARRIER", True),
    ],
)
def test_call_urc_patterns(pattern: str, line: str, urc: bool) -> None:
    assert (re.match(pattern, line) is not None) is urc


def test_registered_states() -> None:
    assert CregState(0, 1).registered and CregState(0, 5).registered
    assert not CregState(0, 2).registered and not CregState(0, 3).registered


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['+COPS: 0,0,"Vodafone.de",7'], CopsState(0, 0, "Vodafone.de", 7)),
        (['+COPS: 0,2,"26202",7'], CopsState(0, 2, "26202", 7)),
        (['+COPS: 0,0,"CHINA MOBILE"'], CopsState(0, 0, "CHINA MOBILE", None)),
        (['+COPS: 0,0,"O2 - DE, 4G",7'], CopsState(0, 0, "O2 - DE, 4G", 7)),  # comma inside quotes
        (["+COPS: 0"], CopsState(0, None, None, None)),
        (["+COPS: 2"], CopsState(2, None, None, None)),
        ([], None),
    ],
)
def test_cops(lines: list[str], expected: CopsState | None) -> None:
    assert parsers.parse_cops(lines) == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["+CPIN: READY"], "READY"),
        (["+CPIN:READY"], "READY"),
        (["+CPIN: SIM PIN"], "SIM PIN"),
        (["+CPIN: SIM PUK"], "SIM PUK"),
        (['+CPIN: "READY"'], "READY"),
    ],
)
def test_cpin(lines: list[str], expected: str) -> None:
    assert parsers.parse_cpin(lines) == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['+CSCA: "+491710760000",145'], "+491710760000"),
        (['+CSCA: "491710760000",145'], "+491710760000"),
        (['+CSCA: "002B003400390031003700310030003700360030003000300030",145'], "+491710760000"),  # UCS2
        (['+CSCA: "",129'], None),
        (['+CSCA: "0170111000",129'], "0170111000"),
    ],
)
def test_csca(lines: list[str], expected: str | None) -> None:
    assert parsers.parse_csca(lines) == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['+CPMS: "SM",5,30,"SM",5,30,"SM",5,30'], [Storage("SM", 5, 30)] * 3),
        (['+CPMS: "ME",0,23,"ME",0,23,"ME",0,23'], [Storage("ME", 0, 23)] * 3),
        (['+CPMS: "SM_P",1,50,"SM_P",1,50'], [Storage("SM_P", 1, 50)] * 2),
        (["+CPMS: 5,30,5,30,5,30"], [Storage("", 5, 30)] * 3),  # reply to the set form
        (['+CPMS: "SM", 2, 20, "ME", 0, 100'], [Storage("SM", 2, 20), Storage("ME", 0, 100)]),
    ],
)
def test_cpms(lines: list[str], expected: list[Storage]) -> None:
    assert parsers.parse_cpms(lines) == expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["+CMGR: 0,,24", PDU], CmgrEntry(0, 24, PDU)),
        (["+CMGR: ,,27", PDU], CmgrEntry(None, 27, PDU)),
        (["+CMGR: 0,23", PDU], CmgrEntry(0, 23, PDU)),
        (["+CMGR: 24", PDU], CmgrEntry(None, 24, PDU)),
        (['+CMGR: 1,"",24', PDU], CmgrEntry(1, 24, PDU)),
        (['+CMGR: "REC READ",,24', PDU], CmgrEntry(1, 24, PDU)),
        (["+CMGR: 1,,24", "", PDU], CmgrEntry(1, 24, PDU)),
    ],
)
def test_cmgr(lines: list[str], expected: CmgrEntry) -> None:
    assert parsers.parse_cmgr(lines) == expected


def test_cmgr_of_an_empty_slot_raises() -> None:
    with pytest.raises(ParseError):
        parsers.parse_cmgr([])  # an empty slot answers just OK


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (["+CMGR: 0,,24"], "no PDU"),  # truncated: no PDU line
        (["+CMGR: 0,,24", "NOT HEX"], "not a hex PDU"),
        (["+CMGR: 0,,24", "ABC"], "not a hex PDU"),  # odd length
        # gammu tests/at-sms-failing/13.dump: a garbled PDU line from a real modem
        (["+CMGR: 2,,164", "0BD04259303784=96p331p71160016D02B5AEC86BBDD6E37D80DFF00F19C0AC8F7BA3E87BFD7F539FF"],
         "not a hex PDU"),
    ],
)
def test_cmgr_with_an_unreadable_pdu_returns_the_raw_reply_and_the_reason(lines: list[str], error: str) -> None:
    entry = parsers.parse_cmgr(lines)
    assert entry.error is not None and error in entry.error
    assert entry.pdu == (lines[1] if len(lines) > 1 else lines[0])


def test_cmgr_pdu_forms_real_modems_send() -> None:
    # the PDU on the header line after a space, and a PDU line ending in a stray quote
    assert parsers.parse_cmgr([f"+CMGR: 1,,24 {PDU}"]) == CmgrEntry(1, 24, PDU)
    assert parsers.parse_cmgr(["+CMGR: 1,,24", PDU + '"']) == CmgrEntry(1, 24, PDU)
    assert parsers.parse_cmgr(["+CMGR: x,,24", PDU]) == CmgrEntry(None, 24, PDU)


@pytest.mark.parametrize(
    ("lines", "sender", "stamp", "text"),
    [
        # gammu tests/at-sms-txt/timezone.dump
        (['+CMGR: "REC READ","+31625044454",,"07/07/05,09:56:03+08"', "Test message 2"],
         "+31625044454", "07/07/05,09:56:03+08", "Test message 2"),
        # gammu tests/at-sms-txt-detail/sample2.dump
        (['+CMGR: "REC READ","+85291234567",,"07/02/18,00:05:10+32",145,4,0,0,"+85290000000",145,49',
          "It is easy to read text messages via AT commands."],
         "+85291234567", "07/02/18,00:05:10+32", "It is easy to read text messages via AT commands."),
        # gammu tests/at-sms-txt/motorola-l7.dump (Motorola: no <alpha>, four-digit year)
        (['+CMGR: "REC READ", "+4123456789132", "2009/8/18,19:11:45"', "Hoewfliepl jookfotu"],
         "+4123456789132", "2009/8/18,19:11:45", "Hoewfliepl jookfotu"),
    ],
)
def test_cmgr_text_mode_headers(lines: list[str], sender: str, stamp: str, text: str) -> None:
    entry = parsers.parse_cmgr(lines)
    assert entry.error is None and entry.text_mode == parsers.TextModeMessage(sender, stamp, text)
    assert entry.stat == 1


def test_cmgl_entries_and_garbage() -> None:
    lines = [
        "+CMGL: 1,0,,24",
        PDU,
        "",
        "+CMGL: 2,1,,27",
        "ZZZZ",  # a garbled entry comes back with its raw lines and the reason; the next is still read
        '+CMGL: 5,"REC UNREAD",,24',
        PDU,
        "+CMGL: 7,3,,24",  # truncated at the end
    ]
    entries = parsers.parse_cmgl(lines)
    assert [e.index for e in entries] == [1, 2, 5, 7]
    assert entries[0] == CmglEntry(1, 0, 24, PDU) and entries[2] == CmglEntry(5, 0, 24, PDU)
    assert entries[1].pdu == "ZZZZ" and "not a hex PDU" in (entries[1].error or "")
    assert entries[3].pdu == "+CMGL: 7,3,,24" and "no PDU" in (entries[3].error or "")
    assert parsers.parse_cmgl([]) == []


@pytest.mark.parametrize(
    ("lines", "expected"),
    [(["+CMGS: 12"], 12), (["+CMGS: 0"], 0), (['+CMGS: 255,"0791..."'], 255), (["+CMGS:7"], 7)],
)
def test_cmgs(lines: list[str], expected: int) -> None:
    assert parsers.parse_cmgs(lines) == expected


@pytest.mark.parametrize("lines", [[], ["+CMGS: "], ["+CMGS: 256"], ["+CMGS: abc"]])
def test_cmgs_malformed(lines: list[str]) -> None:
    with pytest.raises(ParseError):
        parsers.parse_cmgs(lines)


@pytest.mark.parametrize(
    ("line", "expected"),
    [('+CMTI: "SM",3', ("SM", 3)), ('+CMTI: "ME", 12', ("ME", 12)), ('+CDSI: "SR",1', ("SR", 1)), ("+CMTI: ,4", (None, 4))],
)
def test_cmti(line: str, expected: tuple[str | None, int]) -> None:
    assert parsers.parse_cmti(line) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('+CUSD: 0,"Your balance is 10.00 EUR",15', (0, "Your balance is 10.00 EUR", 15)),
        ("+CUSD: 2", (2, "", None)),
        ('+CUSD: 1,"Menu: 1, 2, 3",15', (1, "Menu: 1, 2, 3", 15)),
        ('+CUSD: 0,"004800690020263A",72', (0, "004800690020263A", 72)),
    ],
)
def test_cusd(line: str, expected: tuple[int, str, int | None]) -> None:
    assert parsers.parse_cusd(line) == expected


@pytest.mark.parametrize(
    ("text", "dcs", "expected"),
    [
        ("004800690020263A", 72, "Hi ☺"),
        ("Balance 5", 15, "Balance 5"),
        ("00480069", None, "00480069"),
        ("NOTHEX!!", 72, "NOTHEX!!"),
    ],
)
def test_ussd_text(text: str, dcs: int | None, expected: str) -> None:
    assert parsers.decode_ussd_text(text, dcs) == expected


@pytest.mark.parametrize(
    ("line", "cls", "code", "transient"),
    [
        ("+CME ERROR: 10", CmeError, 10, False),
        ("+CME ERROR: 14", CmeError, 14, True),
        ("+CME ERROR: SIM not inserted", CmeError, 10, False),
        ("+CME ERROR: something new", CmeError, None, True),
        ("+CMS ERROR: 38", CmsError, 38, True),
        ("+CMS ERROR: 42", CmsError, 42, True),
        ("+CMS ERROR: 332", CmsError, 332, True),
        ("+CMS ERROR: 500", CmsError, 500, True),
        ("+CMS ERROR: 1", CmsError, 1, False),
        ("+CMS ERROR: 21", CmsError, 21, False),
        ("+CMS ERROR: 28", CmsError, 28, False),
        ("+CMS ERROR: 304", CmsError, 304, False),
        ("+CMS ERROR: 9999", CmsError, 9999, True),
        ("+cms error: 330", CmsError, 330, False),
    ],
)
def test_error_from_final(line: str, cls: type[AtError], code: int | None, transient: bool) -> None:
    error = error_from_final(line, "AT+CMGS=20", ["x"])
    assert type(error) is cls
    assert error.code == code  # type: ignore[attr-defined]
    assert error.transient is transient  # type: ignore[attr-defined]
    assert error.command == "AT+CMGS=20" and error.reply == ["x"] and error.final == line
    assert "AT+CMGS=20" in str(error)


@pytest.mark.parametrize("line", ["ERROR", "NO CARRIER", "COMMAND NOT SUPPORT", "BUSY"])
def test_plain_errors(line: str) -> None:
    error = error_from_final(line, "ATD123;")
    assert type(error) is AtError and error.final == line


def test_tables_are_well_formed() -> None:
    for table in (CME_ERRORS, CMS_ERRORS):
        for code, (text, transient) in table.items():
            assert isinstance(code, int) and text and isinstance(transient, bool)


_LINE = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@given(st.lists(_LINE, max_size=6))
def test_parsers_raise_only_parse_error(lines: list[str]) -> None:
    """Whatever a modem sends, a parser returns data or raises ParseError, nothing else."""
    for parse in (parsers.parse_csq, parsers.parse_cpin, parsers.parse_cpms, parsers.parse_cmgr,
                  parsers.parse_cmgs, parsers.parse_csca):
        try:
            parse(lines)
        except ParseError:
            pass
    for lenient in (parsers.parse_creg, parsers.parse_cops, parsers.parse_cmgl):
        try:
            lenient(lines)
        except ParseError:
            pass
    for line in lines:
        for parse_line in (parsers.parse_cusd, parsers.parse_cmti, parsers.parse_creg_urc, parsers.parse_cpin_urc,
                           parsers.parse_clip, parsers.parse_cring):
            try:
                parse_line(line)
            except ParseError:
                pass


@given(st.sampled_from(["+CSQ: ", "+CREG: ", "+CPMS: ", "+CMGR: ", "+CUSD: ", "+COPS: "]), _LINE)
def test_prefixed_garbage(prefix: str, rest: str) -> None:
    line = prefix + rest
    for parse in (parsers.parse_csq, parsers.parse_cpms, parsers.parse_cmgr):
        try:
            parse([line, rest])
        except ParseError:
            pass
    for lenient in (parsers.parse_creg, parsers.parse_cops):
        try:
            lenient([line])
        except ParseError:
            pass
    try:
        parsers.parse_cusd(line)
    except ParseError:
        pass
