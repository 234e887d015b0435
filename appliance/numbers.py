"""Phone numbers: normalisation to E.164 and the destination policy.

``normalise("0170 1234567", default_country="DE") == "+491701234567"``. ``check_destination`` applies
``[numbers]`` from the config: short codes and premium-rate numbers are refused unless allowed, and
configured prefixes are blocked; the error names the number and the reason.
"""

from __future__ import annotations

import re
from functools import lru_cache

from appliance.frozen import frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from appliance.config import NumbersConfig

E164_MAX_DIGITS = 15
E164_MIN_DIGITS = 7
SHORT_CODE_MAX_DIGITS = 6

#: What formatting a number may carry (compiled by ``re`` at its first use: a plain number needs none).
_FORMATTING = r"[\s\-./()\u00a0\u2010-\u2015]"


class NumberError(ValueError):
    """A number that cannot be used; the message names the number and the reason."""

    def __init__(self, number: str, reason: str) -> None:
        self.number = number
        self.reason = reason
        super().__init__(f"{number!r}: {reason}")


@frozen
class Country:
    code: str  # ISO 3166 alpha-2
    calling: str  # country calling code, digits
    trunk: str  # national trunk prefix ("0"), "" where national numbers keep every digit
    premium: tuple[str, ...] = ()  # premium-rate prefixes as dialled nationally (with the trunk prefix)


_COUNTRY_LIST = (
    Country("DE", "49", "0", ("0900", "0137", "118")),
    Country("GB", "44", "0", ("09", "118", "070")),
    Country("US", "1", "1", ("900", "976")),
    Country("CA", "1", "1", ("900", "976")),
    Country("FR", "33", "0", ("089", "118")),
    Country("IT", "39", "", ("89", "144", "166")),
    Country("ES", "34", "", ("803", "806", "807", "905")),
    Country("NL", "31", "0", ("0900", "0906", "0909")),
    Country("AT", "43", "0", ("0900", "0930", "0939")),
    Country("CH", "41", "0", ("0900", "0901", "0906")),
    Country("PL", "48", "", ("70",)),
    Country("BE", "32", "0", ("090",)),
    Country("DK", "45", "", ("90",)),
    Country("SE", "46", "0", ("0900", "0939", "0944")),
    Country("NO", "47", "", ("820", "829")),
    Country("IE", "353", "0", ("15",)),
    Country("PT", "351", "", ("60",)),
    Country("CZ", "420", "", ("900", "906", "908", "909")),
    Country("AU", "61", "0", ("190",)),
    Country("FI", "358", "0", ("0600", "0700")),
    Country("LU", "352", ""),
    Country("GR", "30", ""),
    Country("HU", "36", "06"),
    Country("SK", "421", "0"),
    Country("SI", "386", "0"),
    Country("HR", "385", "0"),
    Country("RO", "40", "0"),
    Country("BG", "359", "0"),
    Country("EE", "372", ""),
    Country("LV", "371", ""),
    Country("IS", "354", ""),
    Country("UA", "380", "0"),
    Country("TR", "90", "0"),
    Country("RU", "7", "8"),
    Country("IL", "972", "0"),
    Country("AE", "971", "0"),
    Country("SA", "966", "0"),
    Country("EG", "20", "0"),
    Country("ZA", "27", "0"),
    Country("KE", "254", "0"),
    Country("NG", "234", "0"),
    Country("IN", "91", "0"),
    Country("PK", "92", "0"),
    Country("CN", "86", "0"),
    Country("JP", "81", "0"),
    Country("KR", "82", "0"),
    Country("PH", "63", "0"),
    Country("ID", "62", "0"),
    Country("TH", "66", "0"),
    Country("MY", "60", "0"),
    Country("VN", "84", "0"),
    Country("SG", "65", ""),
    Country("HK", "852", ""),
    Country("NZ", "64", "0"),
    Country("BR", "55", "0"),
    Country("MX", "52", ""),
)
COUNTRIES: dict[str, Country] = {c.code: c for c in _COUNTRY_LIST}
_ALIASES = {"UK": "GB"}
# calling code -> the country whose premium table applies (the first listed: US for +1)
_BY_CALLING: dict[str, Country] = {}
for _c in _COUNTRY_LIST:
    _BY_CALLING.setdefault(_c.calling, _c)


def countries() -> list[str]:
    """The ISO codes accepted as ``numbers.default_country``."""
    return sorted(COUNTRIES)


def country_code_name(code: str) -> str | None:
    """The canonical ISO code for ``code`` (case-insensitive; "UK" → "GB"), or None if unknown."""
    upper = code.strip().upper()
    upper = _ALIASES.get(upper, upper)
    return upper if upper in COUNTRIES else None


def _country(code: str | None, number: str) -> Country | None:
    if code is None:
        return None
    name = country_code_name(code)
    if name is None:
        raise NumberError(number, f"unknown default country {code!r}")
    return COUNTRIES[name]


def _plain(text: str) -> bool:
    """An optional + and ASCII digits only: no formatting to strip, no letter to look for."""
    digits = text[1:] if text.startswith("+") else text
    return digits.isdigit() and digits.isascii()


def _clean(number: str) -> str:
    """Strip formatting; '00' → '+'. Raises NumberError on letters or stray characters."""
    if not isinstance(number, str):
        raise NumberError(str(number), "is not a string")
    text = number.strip()
    if text.startswith(("+", "00")):
        text = text.replace("(0)", "", 1)  # "+49 (0)170 ...": the trunk 0 in brackets is not dialled
    if not _plain(text):
        text = re.sub(_FORMATTING, "", text)
    if not text:
        raise NumberError(number, "is empty")
    if not _plain(text) and any(ch.isalpha() for ch in text):
        raise NumberError(number, "contains letters; a phone number has only digits and an optional leading +")
    plus = text.startswith("+")
    digits = text[1:] if plus else text
    if not digits:
        raise NumberError(number, "has no digits")
    if not digits.isdigit() or not digits.isascii():
        raise NumberError(number, "contains characters other than digits, spaces, - . / ( ) and a leading +")
    if not plus and digits.startswith("00"):
        plus, digits = True, digits[2:]
    if plus and digits.startswith("0"):
        raise NumberError(number, "an international number cannot start with 0 after the + or 00")
    return ("+" if plus else "") + digits


def _national_to_e164(digits: str, country: Country) -> str:
    if country.calling == "1":
        # NANP: 10 digits, or 11 with the leading 1
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        return "+1" + digits
    if country.trunk and digits.startswith(country.trunk):
        digits = digits[len(country.trunk):]
    return "+" + country.calling + digits


def _check_length(number: str, e164: str) -> str:
    count = len(e164) - 1
    if count > E164_MAX_DIGITS:
        raise NumberError(number, f"is too long: {count} digits, E.164 allows at most {E164_MAX_DIGITS}")
    if count < E164_MIN_DIGITS:
        raise NumberError(number, f"is too short: {count} digits with the country code, at least {E164_MIN_DIGITS}")
    return e164


def normalise(number: str, *, default_country: str | None = None) -> str:
    """Return ``number`` as E.164 ("+491701234567").

    Accepts "+49 170 1234567", "0049 170 1234567", and national numbers ("0170 1234567") when
    ``default_country`` is given; strips spaces, dashes, dots, slashes and parentheses.
    """
    text = _clean(number)
    if text.startswith("+"):
        return _check_length(number, text)
    country = _country(default_country, number)
    if country is None:
        raise NumberError(
            number,
            "is not international (+<country code>...); set numbers.default_country to use national numbers",
        )
    return _check_length(number, _national_to_e164(text, country))


def normalise_prefix(prefix: str, *, default_country: str | None = None, keep_short: bool = False) -> str:
    """A blocked/allowed prefix as "+<digits>"; with ``keep_short`` a bare short code (≤ 6 digits)
    stays as its digits (it is matched exactly, never as a prefix)."""
    text = _clean(prefix)
    if text.startswith("+"):
        if len(text) < 2:
            raise NumberError(prefix, "a prefix needs at least one digit after +")
        return text
    if keep_short and len(text) <= SHORT_CODE_MAX_DIGITS and not text.startswith("0"):
        return text
    country = _country(default_country, prefix)
    if country is None:
        raise NumberError(prefix, "is not international (+...); set numbers.default_country to use national prefixes")
    result = _national_to_e164(text, country) if country.calling != "1" else "+1" + text.removeprefix("1")
    if len(result) < 2:
        raise NumberError(prefix, "a prefix needs at least one digit after the country code")
    return result


def _country_of(e164: str) -> Country | None:
    digits = e164[1:]
    for length in (3, 2, 1):
        country = _BY_CALLING.get(digits[:length])
        if country is not None:
            return country
    return None


def national_form(e164: str) -> tuple[Country | None, str]:
    """The destination country and the number as dialled there (trunk prefix + national number)."""
    country = _country_of(e164)
    if country is None:
        return None, e164[1:]
    nsn = e164[1 + len(country.calling):]
    if country.calling == "1":
        return country, nsn
    return country, country.trunk + nsn


def is_short_code(number: str) -> bool:
    """True for a national short code (≤ 6 digits, no + or 00)."""
    text = _clean(number)
    return not text.startswith("+") and len(text) <= SHORT_CODE_MAX_DIGITS


@lru_cache(maxsize=32)
def _policy_prefixes(country: str | None, allowed: tuple[str, ...], blocked: tuple[str, ...]
                     ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (tuple(normalise_prefix(p, default_country=country, keep_short=True) for p in allowed),
            tuple(normalise_prefix(p, default_country=country) for p in blocked))


def check_destination(number: str, policy: NumbersConfig) -> str:
    """Normalise ``number`` and apply the policy; return the number to send to.

    Order: an entry in ``allowed`` (exact short code, or E.164 prefix) wins; a short code needs
    ``allow_short_codes``; a ``blocked`` prefix refuses; a premium-rate number (per-country table)
    needs ``allow_premium``. Raises NumberError naming the number and why.
    """
    country = policy.default_country
    text = _clean(number)
    allowed, blocked = _policy_prefixes(country, tuple(policy.allowed), tuple(policy.blocked))

    if not text.startswith("+") and len(text) <= SHORT_CODE_MAX_DIGITS:
        if text in allowed:
            return text
        if not policy.allow_short_codes:
            raise NumberError(
                number, "is a short code; short codes are refused unless numbers.allow_short_codes = true "
                "or the code is listed in numbers.allowed",
            )
        dest = _country(country, number)
        if not policy.allow_premium and dest is not None:
            for prefix in dest.premium:
                if text.startswith(prefix):
                    raise NumberError(
                        number, f"is a premium-rate number in {dest.code} (prefix {prefix}); "
                        "refused unless numbers.allow_premium = true or listed in numbers.allowed",
                    )
        return text

    e164 = normalise(number, default_country=country)
    for prefix in allowed:
        if prefix.startswith("+") and e164.startswith(prefix):
            return e164
    for prefix in blocked:
        if e164.startswith(prefix):
            raise NumberError(number, f"is blocked by numbers.blocked prefix {prefix}")
    if not policy.allow_premium:
        dest, national = national_form(e164)
        if dest is not None:
            for prefix in dest.premium:
                if national.startswith(prefix):
                    raise NumberError(
                        number, f"is a premium-rate number in {dest.code} ({prefix}...); "
                        "refused unless numbers.allow_premium = true or listed in numbers.allowed",
                    )
    return e164
