"""appliance.numbers: E.164 normalisation and the destination policy (premium, short codes, prefixes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config import NumbersConfig
from appliance.numbers import NumberError, check_destination, countries, normalise, normalise_prefix


@pytest.mark.parametrize(
    ("number", "country", "expected"),
    [
        ("+491701234567", None, "+491701234567"),
        ("+49 170 1234567", None, "+491701234567"),
        ("+49-170-123.45.67", None, "+491701234567"),
        ("+49 (0)170 1234567", None, "+491701234567"),
        ("0049 170 1234567", None, "+491701234567"),
        ("0049 170 1234567", "FR", "+491701234567"),
        ("0170 1234567", "DE", "+491701234567"),
        ("(0170) 123 45 67", "de", "+491701234567"),
        ("0170/1234567", "DE", "+491701234567"),
        ("07700 900123", "GB", "+447700900123"),
        ("07700 900123", "UK", "+447700900123"),
        ("(212) 555-0123", "US", "+12125550123"),
        ("1 212 555 0123", "US", "+12125550123"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("06 1234 5678", "IT", "+390612345678"),  # Italy keeps the 0
        ("612 345 678", "ES", "+34612345678"),
        ("8 912 345 67 89", "RU", "+79123456789"),
        ("\u00a0+41 79 123 45 67 ", None, "+41791234567"),
    ],
)
def test_normalise(number, country, expected):
    assert normalise(number, default_country=country) == expected


@pytest.mark.parametrize(
    ("number", "country", "reason"),
    [
        ("", None, "is empty"),
        ("   ", None, "is empty"),
        ("+49 170 CALLME", None, "letters"),
        ("0170 1234567", None, "default_country"),
        ("+49 17", None, "too short"),
        ("+1234567890123456", None, "too long: 16 digits"),
        ("000 49 170 1234567", None, "cannot start with 0"),
        ("+0 49 170 1234567", None, "cannot start with 0"),
        ("+49*170", None, "characters other than digits"),
        ("+", None, "has no digits"),
        ("0170 1234567", "XX", "unknown default country"),
    ],
)
def test_normalise_rejects(number, country, reason):
    with pytest.raises(NumberError) as info:
        normalise(number, default_country=country)
    assert reason in str(info.value)
    assert repr(number) in str(info.value)  # the message names the number


@given(st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True))
def test_e164_is_a_fixed_point(number):
    assert normalise(number) == number
    assert normalise(number, default_country="DE") == number


@given(st.text(max_size=30))
def test_normalise_never_crashes_with_anything_but_number_error(text):
    try:
        result = normalise(text, default_country="DE")
    except NumberError:
        return
    assert result.startswith("+") and result[1:].isdigit() and 7 <= len(result) - 1 <= 15


DE = NumbersConfig(default_country="DE")


@pytest.mark.parametrize(
    ("number", "country", "why"),
    [
        ("0900 1234567", "DE", "premium-rate number in DE"),
        ("+49 900 1234567", None, "premium-rate number in DE"),
        ("0137 1234567", "DE", "premium-rate"),
        ("+44 909 8790000", None, "premium-rate number in GB"),
        ("0909 8790000", "GB", "premium-rate number in GB"),
        ("+1 900 555 0123", None, "premium-rate number in US"),
        ("1-976-555-0123", "CA", "premium-rate"),
        ("+33 8 99 12 34 56", None, "premium-rate number in FR"),
        ("+39 899 123456", None, "premium-rate number in IT"),
        ("+34 806 123 456", None, "premium-rate number in ES"),
        ("+34 803 123 456", None, "premium-rate number in ES"),
        ("0906 1234567", "NL", "premium-rate number in NL"),
        ("+43 939 123456", None, "premium-rate number in AT"),
        ("0901 123 456", "CH", "premium-rate number in CH"),
        ("+48 701 234 567", None, "premium-rate number in PL"),
    ],
)
def test_premium_rate_is_refused(number, country, why):
    policy = NumbersConfig(default_country=country)
    with pytest.raises(NumberError) as info:
        check_destination(number, policy)
    assert why in str(info.value)
    assert "numbers.allow_premium" in str(info.value)


def test_premium_allowed_by_flag_or_exception():
    assert check_destination("0900 1234567", NumbersConfig(default_country="DE", allow_premium=True)) == "+499001234567"
    policy = NumbersConfig(default_country="DE", allowed=("0900 123",))
    assert check_destination("0900 1234567", policy) == "+499001234567"
    with pytest.raises(NumberError):
        check_destination("0900 9999999", policy)


def test_ordinary_numbers_pass():
    assert check_destination("0170 1234567", DE) == "+491701234567"
    assert check_destination("+44 7700 900123", DE) == "+447700900123"
    assert check_destination("+49 30 1234567", DE) == "+49301234567"
    # Reading's area code is 0118: only the 6-digit national 118xxx services are premium
    assert check_destination("+44 118 496 0000", DE) == "+441184960000"


@pytest.mark.parametrize("code", ["22255", "112", "8888", "123456"])
def test_short_codes_refused_unless_allowed(code):
    with pytest.raises(NumberError) as info:
        check_destination(code, DE)
    assert "short code" in str(info.value)
    assert check_destination(code, NumbersConfig(default_country="DE", allowed=(code,))) == code
    assert check_destination(code, NumbersConfig(allow_short_codes=True)) == code


def test_premium_short_code_needs_both_flags():
    both = NumbersConfig(default_country="DE", allow_short_codes=True)
    with pytest.raises(NumberError) as info:
        check_destination("11833", both)
    assert "premium-rate" in str(info.value)
    assert check_destination("11833", NumbersConfig(default_country="DE", allow_short_codes=True,
                                                    allow_premium=True)) == "11833"


def test_seven_digit_national_number_is_not_a_short_code():
    with pytest.raises(NumberError) as info:
        check_destination("1234567", NumbersConfig())
    assert "default_country" in str(info.value)


def test_blocked_prefixes():
    policy = NumbersConfig(default_country="DE", blocked=("+44", "0171"))
    with pytest.raises(NumberError) as info:
        check_destination("+44 7700 900123", policy)
    assert "numbers.blocked prefix +44" in str(info.value)
    with pytest.raises(NumberError) as info:
        check_destination("0171 2345678", policy)
    assert "+49171" in str(info.value)
    assert check_destination("0170 2345678", policy) == "+491702345678"
    # an allowed entry is an explicit exception to a blocked prefix
    policy = NumbersConfig(default_country="DE", blocked=("+44",), allowed=("+447700900123",))
    assert check_destination("+44 7700 900123", policy) == "+447700900123"


def test_check_destination_reports_bad_numbers():
    with pytest.raises(NumberError) as info:
        check_destination("call me", DE)
    assert "'call me'" in str(info.value) and "letters" in str(info.value)


def test_normalise_prefix():
    assert normalise_prefix("0900", default_country="DE") == "+49900"
    assert normalise_prefix("00 44", default_country=None) == "+44"
    assert normalise_prefix("22255", keep_short=True) == "22255"
    assert normalise_prefix("900", default_country="US") == "+1900"
    with pytest.raises(NumberError):
        normalise_prefix("0900")
    with pytest.raises(NumberError):
        normalise_prefix("+")


def test_country_table_has_the_common_countries():
    for code in ("DE", "GB", "US", "CA", "FR", "IT", "ES", "NL", "AT", "CH", "PL", "BE"):
        assert code in countries()
