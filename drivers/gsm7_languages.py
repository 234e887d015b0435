"""The national languages of 3GPP TS 23.038 6.2.1.2 by name: ISO 639-1 code -> identifier.

Apart from their shift tables (``drivers.gsm7_national``, 400 lines of data), so that checking a
``language`` option (``smsgw send --language``, the intake, the store) does not load the tables.
"""

from __future__ import annotations

#: ISO 639-1 code -> national language identifier (23.038 6.2.1.2.4).
LANGUAGE_IDS: dict[str, int] = {
    "tr": 1,  # Turkish
    "es": 2,  # Spanish
    "pt": 3,  # Portuguese
    "bn": 4,  # Bengali
    "gu": 5,  # Gujarati
    "hi": 6,  # Hindi
    "kn": 7,  # Kannada
    "ml": 8,  # Malayalam
    "or": 9,  # Oriya
    "pa": 10,  # Punjabi
    "ta": 11,  # Tamil
    "te": 12,  # Telugu
    "ur": 13,  # Urdu
}

#: The known codes as error messages list them: "bn, es, gu, …".
KNOWN_LANGUAGES = ", ".join(sorted(LANGUAGE_IDS))
