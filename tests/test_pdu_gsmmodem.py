"""python-gsmmodem-new's codec as a second opinion on ours, on BMP text (it raises on emoji).

Known differences kept out of the generated alphabet: python-gsmmodem puts '`' where 23.038 has
'§' (septet 0x5F), maps 'ÿ' instead of form feed to extension code 0x0A, and writes a text ESC
character as the bare escape septet (which 23.038 says to display as a space). It also mis-reads 7-bit
text after a UDH whose length is a multiple of 7 bits (16-bit references), so its decoder is only
asked about 8-bit references. Its 7-bit decoder drops a final '@' when the septets fill the last
octet exactly (its own encode -> decode loses it), so texts whose parts end in '@' are not sent to it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from drivers import gsm7
from drivers.pdu import decode, encode_deliver, encode_submit, split_text

gsmpdu = pytest.importorskip("gsmmodem.pdu")

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DISAGREE = set("§`ÿ\x0c\x1b")
BMP_TEXT = st.text(
    st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)).filter(lambda c: c not in DISAGREE),
    max_size=400,
)
GSM_TEXT = st.text(
    st.sampled_from(sorted(set(gsm7.CHAR_TO_SEPTETS) - DISAGREE)),
    max_size=400,
)
TEXTS = st.one_of(BMP_TEXT, GSM_TEXT)
NUMBERS = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{1,14}", fullmatch=True),
    st.from_regex(r"[0-9]{2,15}", fullmatch=True),
)


def _avoid_their_trailing_at_bug(text: str) -> None:
    encoding, parts = split_text(text)
    assume(encoding != "gsm7" or not any(part.endswith("@") for part in parts))


def _their_texts(pdus: list[str]) -> tuple[str, list[dict]]:
    decoded = [gsmpdu.decodeSmsPdu(pdu) for pdu in pdus]
    return "".join(item["text"] for item in decoded), decoded


@SETTINGS
@given(text=TEXTS, number=NUMBERS)
def test_our_decoder_reads_their_submit_pdus(text, number):
    theirs = gsmpdu.encodeSmsSubmitPdu(number, text, reference=7, requestStatusReport=False)
    messages = [decode(str(pdu)) for pdu in theirs]
    assert "".join(m.text for m in messages) == text  # type: ignore[union-attr]
    assert {m.number for m in messages} == {number}
    for pdu, message in zip(theirs, messages, strict=True):
        assert pdu.tpduLength == len(str(pdu)) // 2 - 1
        assert message.reference == 7  # type: ignore[union-attr]


@SETTINGS
@given(text=TEXTS, number=NUMBERS, reference=st.integers(0, 255))
def test_their_decoder_reads_our_submit_pdus(text, number, reference):
    _avoid_their_trailing_at_bug(text)
    parts = encode_submit(number, text, reference=reference, concat_reference=200)
    joined, decoded = _their_texts([part.pdu for part in parts])
    assert joined == text
    for part, item in zip(parts, decoded, strict=True):
        assert item["type"] == "SMS-SUBMIT"
        assert item["number"] == number
        assert item["reference"] == reference
        assert item["tpdu_length"] == part.tpdu_length


@SETTINGS
@given(
    text=TEXTS,
    number=NUMBERS,
    quarters=st.integers(-48, 56),
)
def test_their_decoder_reads_our_deliver_pdus_and_time_zone(text, number, quarters):
    _avoid_their_trailing_at_bug(text)
    stamp = datetime(2024, 3, 1, 12, 0, 30, tzinfo=timezone(timedelta(minutes=15 * quarters)))
    pdus = encode_deliver(number, text, timestamp=stamp, smsc="+491722270333", concat_reference=3)
    joined, decoded = _their_texts(pdus)
    assert joined == text
    for item in decoded:
        assert item["type"] == "SMS-DELIVER"
        assert item["number"] == number
        assert item["smsc"] == "+491722270333"
        assert item["time"] == stamp
        assert item["time"].utcoffset() == stamp.utcoffset()


@pytest.mark.parametrize(
    "validity",
    [timedelta(minutes=30), timedelta(hours=16), timedelta(days=3), timedelta(weeks=5)],
)
def test_relative_validity_agrees_with_theirs(validity):
    ours = encode_submit("+27820001111", "Hello World!", validity=validity)[0].pdu
    theirs = str(
        gsmpdu.encodeSmsSubmitPdu(
            "+27820001111", "Hello World!", validity=validity, requestStatusReport=False
        )[0]
    )
    assert ours == theirs
    assert decode(ours).validity == validity.total_seconds()  # type: ignore[union-attr]


def test_single_part_pdus_are_byte_identical_to_theirs():
    for text in ("Hello World!", "Grüße aus Köln {x} €", "Привет, мир", "a" * 160, "ж" * 70):
        ours = encode_submit("+4917012345678", text)[0].pdu
        theirs = str(gsmpdu.encodeSmsSubmitPdu("+4917012345678", text, requestStatusReport=False)[0])
        assert ours == theirs, text


@pytest.mark.parametrize(
    "text", ["Lorem ipsum dolor sit amet {€} " * 20, "Съешь же ещё этих мягких булок " * 8]
)
def test_long_messages_split_by_either_side_read_back_whole(text):
    ours = encode_submit("+15125551234", text, concat_reference=77)
    assert len(ours) > 1
    assert _their_texts([part.pdu for part in ours])[0] == text
    theirs = gsmpdu.encodeSmsSubmitPdu("+15125551234", text, reference=0, requestStatusReport=False)
    assert len(theirs) > 1
    assert "".join(decode(str(pdu)).text for pdu in theirs) == text  # type: ignore[union-attr]


# --- message class 0 (flash SMS) ------------------------------------------------------------------
# 3GPP TS 23.038 §4, general data coding group 00xx: bit 4 = 1 means bits 1..0 are the message class,
# bits 3..2 the alphabet; class 0 GSM 7-bit is 0x10, class 0 UCS-2 0x18. python-gsmmodem-new 0.13.0
# gsmmodem/pdu.py encodeSmsSubmitPdu(sendFlash=True) writes exactly these octets
# (``pdu.append(alphabet if not sendFlash else (0x10 if alphabet == 0x00 else 0x18))``); its decoder
# reads only the alphabet from the DCS, so the class is compared on the octets and on our decoder.

@pytest.mark.parametrize("text", ["Gas alarm in hall 2", "Grüße {x} €", "Пожар в цеху 3", "ж" * 70, "a" * 160])
def test_flash_single_part_pdus_are_byte_identical_to_theirs(text):
    ours = encode_submit("+4917012345678", text, message_class=0)[0].pdu
    theirs = str(gsmpdu.encodeSmsSubmitPdu("+4917012345678", text, requestStatusReport=False, sendFlash=True)[0])
    assert ours == theirs, text
    message = decode(ours)
    assert message.message_class == 0  # type: ignore[union-attr]
    assert message.dcs == (0x18 if split_text(text)[0] == "ucs2" else 0x10)  # type: ignore[union-attr]
    assert gsmpdu.decodeSmsPdu(ours)["text"] == text


@pytest.mark.parametrize(
    "text", ["Gas alarm {hall 2} " * 20, "Пожарная тревога в цеху " * 8]
)
def test_flash_is_in_every_part_of_a_long_message(text):
    ours = encode_submit("+15125551234", text, message_class=0, concat_reference=9, reference=9)
    theirs = gsmpdu.encodeSmsSubmitPdu("+15125551234", text, reference=9, requestStatusReport=False, sendFlash=True)
    assert len(ours) > 1
    assert [part.pdu for part in ours] == [str(pdu) for pdu in theirs]
    expected = 0x18 if split_text(text)[0] == "ucs2" else 0x10
    for part in ours:
        message = decode(part.pdu)
        assert (message.dcs, message.message_class) == (expected, 0)  # type: ignore[union-attr]
    assert _their_texts([part.pdu for part in ours])[0] == text


def test_no_class_keeps_the_plain_dcs_and_other_classes_are_refused():
    assert decode(encode_submit("+4917012345678", "hi")[0].pdu).message_class is None  # type: ignore[union-attr]
    assert decode(encode_submit("+4917012345678", "hi", message_class=1)[0].pdu).dcs == 0x11  # type: ignore[union-attr]
    for bad in (4, -1, True, "0"):
        with pytest.raises(ValueError, match="message class"):
            encode_submit("+4917012345678", "hi", message_class=bad)  # type: ignore[arg-type]
