"""National language shift tables (3GPP TS 23.038 section 6.2.1.2, 6.2.2, Annex A) and how the codec
uses them: decoding every table announced by UDH IE 0x24 (single shift) / 0x25 (locking shift,
23.040 9.2.3.24.15-16), and encoding with the combination that needs the fewest parts.

Spot values below are read from the tables of TS 23.038 Annex A (as transcribed in oFono's src/util.c
and Android's GsmAlphabet.java); the round trips cover every table entry.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drivers import gsm7
from drivers.gsm7_national import LANGUAGE_IDS, LOCKING, SINGLE
from drivers.pdu import PduError, count_parts, decode, encode_deliver, encode_submit, split_text

STAMP = datetime(2026, 12, 1, 20, 9, 37, tzinfo=UTC)


@pytest.mark.parametrize(
    ("locking", "single", "septets", "text"),
    [
        (0, 1, bytes([0x1B, 0x47, 0x1B, 0x69]), "Ğı"),  # A.2.1 Turkish single shift: 0x47 Ğ, 0x69 ı
        (1, 0, bytes([0x0B, 0x0C, 0x1C, 0x1D, 0x40, 0x07]), "ĞğŞşİı"),  # A.3.1 Turkish locking shift
        (0, 2, bytes([0x1B, 0x09, 0x1B, 0x41, 0x1B, 0x75]), "çÁú"),  # A.2.2 Spanish single shift
        (3, 3, bytes([0x04, 0x0B, 0x1B, 0x05]), "êÔê"),  # A.3.3 / A.2.3 Portuguese
        (6, 6, bytes([0x15, 0x1B, 0x1C, 0x1B, 0x1D]), "क०१"),  # A.3.6 / A.2.6 Hindi: KA, digits zero, one
        (4, 4, bytes([0x15, 0x1B, 0x19]), "ক০"),  # A.3.4 / A.2.4 Bengali: KA, digit zero
        (11, 11, bytes([0x15, 0x1B, 0x1C]), "க௦"),  # A.3.11 / A.2.11 Tamil: KA, digit zero
        (13, 13, bytes([0x00, 0x1B, 0x1C]), "ا۰"),  # A.3.13 / A.2.13 Urdu: ALEF, EXTENDED ARABIC-INDIC DIGIT ZERO
    ],
)
def test_shift_tables_decode_as_23038_annex_a_lists_them(locking, single, septets, text):
    assert gsm7.decode_national(septets, locking, single) == text


def test_every_language_has_its_tables_and_spanish_only_a_single_shift():
    assert set(LANGUAGE_IDS.values()) == set(range(1, 14)) == set(SINGLE)
    assert set(LOCKING) == set(range(1, 14)) - {2}  # 23.038 A.3: no Spanish locking shift table
    assert all(len(table) == 128 and table[0x1B] is None for table in LOCKING.values())


@pytest.mark.parametrize("language", sorted(LANGUAGE_IDS))
def test_every_character_of_every_table_round_trips_through_a_pdu(language):
    ident = LANGUAGE_IDS[language]
    chars = {c for c in SINGLE[ident].values()} | {c for c in LOCKING.get(ident, ()) if c}
    text = "".join(sorted(chars - {"\x0c"}))
    pdus = encode_deliver("+905321234567", text, timestamp=STAMP, language=language)
    messages = [decode(pdu) for pdu in pdus]
    assert "".join(m.text for m in messages) == text  # type: ignore[union-attr]
    assert all(m.encoding == "gsm7" and m.language_tables != (0, 0) for m in messages)  # type: ignore[union-attr]


TURKISH = "Sayın müşterimiz, şifreniz ğ ile başlar. Lütfen İstanbul şubemize uğrayınız. Çok teşekkürler, iyi günler dileriz."


def test_a_turkish_text_that_fits_one_gsm7_part_is_not_sent_as_ucs2_parts():
    assert len(TURKISH) <= 153
    assert count_parts(TURKISH) == 2  # UCS-2 without a language
    assert count_parts(TURKISH, language="tr") == 1
    (part,) = encode_submit("+905321234567", TURKISH, language="tr")
    message = decode(part.pdu)
    assert message.text == TURKISH and message.encoding == "gsm7"  # type: ignore[union-attr]


def test_fewest_parts_picks_locking_and_single_shift_together_when_that_is_shortest():
    text = "ğĞşŞıİ" * 40  # all in the Turkish locking table: one septet each with it, two with single shift
    encoding, parts = split_text(text, language="tr")
    assert encoding == "gsm7" and len(parts) == 2
    messages = [decode(p.pdu) for p in encode_submit("+905321234567", text, language="tr")]
    assert {m.language_tables for m in messages} == {(1, 0)}  # type: ignore[union-attr]
    assert "".join(m.text for m in messages) == text  # type: ignore[union-attr]


def test_default_alphabet_text_gets_no_shift_header_and_other_scripts_fall_back_to_ucs2():
    (plain,) = encode_submit("+905321234567", "hello", language="tr")
    assert decode(plain.pdu).language_tables == (0, 0)  # type: ignore[union-attr]
    assert split_text("Привет ğ", language="tr")[0] == "ucs2"


def test_an_unknown_language_is_refused_by_name():
    with pytest.raises(PduError, match="unknown national language 'xx'; known: bn, es"):
        encode_submit("+905321234567", "ğ", language="xx")
