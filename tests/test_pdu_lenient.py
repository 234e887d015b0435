"""Decoding what real networks send when it does not follow 23.040: status reports with a time-zone
octet that is not BCD, user data lengths that do not match the data, mislabelled shift tables.

Every PDU here is a public capture; the source is named beside it. Where the source asserts a value
(oFono's unit/test-sms.c asserts address and TP-MR) the test asserts the same.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from drivers.pdu import SmsDeliver, SmsStatusReport, decode, to_json


def test_status_report_with_zone_octet_c2_is_read_with_its_wall_time_and_flagged():
    # babca/python-gsmmodem issue #15 (2016-10-29): +CMGR reply of a status report from Indonesia;
    # python-gsmmodem raised ValueError on the service centre time stamp's zone octet C2.
    report = decode("0006230E9126983575169498610103409544C26101034095448200")
    assert isinstance(report, SmsStatusReport)
    assert report.reference == 35 and report.number == "+62895357614989" and report.status == 0
    # wall time kept; the zone read as Android's SmsMessage reads it: sign bit 3 clear, tens 2, units C -> 0
    assert report.timestamp.replace(tzinfo=None) == datetime(2016, 10, 30, 4, 59, 44)
    assert report.timestamp.utcoffset() == timedelta(hours=5)
    assert report.discharge_time == datetime(2016, 10, 30, 4, 59, 44, tzinfo=timezone(timedelta(hours=7)))
    assert report.malformed and "time zone octet C2 is not BCD" in report.anomalies[0]
    obj = to_json(report)
    assert obj["malformed"] is True and obj["anomalies"] == list(report.anomalies)


@pytest.mark.parametrize(
    ("pdu", "number", "reference", "anomalous"),
    [
        # oFono unit/test-sms.c test_sr_assembly (sailfishos-native/ofono-mirror @ 4b95ec99): sr_pdu1..3,
        # decoded there without an SMSC field; sr_pdu3's zone octets are A0.
        ("06040D91945152991136F00160124130340A0160124130940A00", "+4915259911630", 4, False),
        ("06050D91945152991136F00160124130640A0160124130450A00", "+4915259911630", 5, False),
        ("0606098121436587F9019012413064A0019012413045A000", "123456789", 6, True),
    ],
)
def test_ofono_status_reports_decode_with_their_asserted_address_and_reference(pdu, number, reference,
                                                                              anomalous):
    report = decode(pdu, with_smsc=False)
    assert isinstance(report, SmsStatusReport)
    assert (report.number, report.reference) == (number, reference)
    assert report.malformed is anomalous
    if anomalous:
        assert report.timestamp.replace(tzinfo=None) == datetime(2010, 9, 21, 14, 3, 46)
        assert all("A0 is not BCD" in reason for reason in report.anomalies)


def test_udl_larger_than_the_data_keeps_the_text_that_is_there():
    # The UCS-2 part named in issue 9 ("H - Real modems"): TP-UDL 160 with 4 octets of UCS-2 after
    # a concatenation header; gammu and phones show the two characters.
    message = decode("0041010C910661345542F60008A0050003000301306F3044")
    assert message.text == "はい" and message.truncated and message.malformed
    assert message.concat is not None and (message.concat.total, message.concat.sequence) == (3, 1)
    obj = to_json(message)
    assert obj["truncated"] is True and obj["malformed"] is True


def test_surrogate_pairs_in_a_ucs2_cmgr_reply_decode():
    # wdoekes/asterisk-chan-dongle issue #8: "+CMGR: 0,,29" from a Huawei E180, two emoji and a space,
    # which chan_dongle failed to decode as UCS-2BE (the fix was UTF-16BE).
    message = decode("07913306092041F0040B913306991364F60008619091516061800AD83DDE03D83DDE0E0020")
    assert isinstance(message, SmsDeliver)
    assert message.text == "\U0001f603\U0001f60e " and not message.malformed


def test_turkish_shift_announced_as_locking_but_using_single_shift_codes_reads_as_meant():
    # Issue 9's Turkish SMS: UDH 03 25 01 01 (23.040 9.2.3.24.16: IE 0x25 is the locking shift), text
    # septets ESC 67, ESC 73, 61, codes that only the Turkish single shift table (23.038 A.2.1) defines.
    message = decode("00440B919471060000F10000622110029073000A03250101D89C37F330")
    assert message.text == "ğşa" and message.malformed
    assert message.language_tables == (0, 1)
    assert to_json(message)["national_language"] == {"locking": None, "single": "tr"}
