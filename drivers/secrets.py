"""Masking SIM secrets (PIN, PUK, facility passwords) in text meant for people: log lines, error
messages, ``smsgw at`` transcripts. One function, :func:`mask_secrets`, used everywhere.

The commands that carry a secret (3GPP TS 27.007):

- ``+CPIN=<pin>[,<newpin>]`` (section 8.3): the PIN, or the PUK and the new PIN;
- ``+CPIN2=...`` and the vendor form ``^CPIN=...`` (Huawei) likewise;
- ``+CLCK=<fac>,<mode>[,<passwd>[,<class>]]`` (section 7.4): the password (third parameter on);
- ``+CPWD=<fac>,<oldpwd>,<newpwd>`` (section 7.5): both passwords.

Each secret parameter becomes ``****`` (keeping its quotes); the facility and mode stay readable.
"""

from __future__ import annotations

import re

#: What a masked parameter reads as.
MASK = "****"

# command -> how many leading parameters are not secret
_KEEP = {"+CPIN=": 0, "+CPIN2=": 0, "^CPIN=": 0, "+CLCK=": 2, "+CPWD=": 1}
# the parameters: quoted strings or bare tokens (digits), comma-separated; whatever follows the last
# one (a line end, ';', ':', the quote of a repr()) is left alone
_PARAMETER = r'(?:"[^"\r\n]*"?|[0-9A-Za-z*#]*)'
_SECRET_COMMAND = re.compile(rf"(\+CPIN2?=|\^CPIN=|\+CLCK=|\+CPWD=)({_PARAMETER}(?:,{_PARAMETER})*)", re.IGNORECASE)


def _mask_parameter(parameter: str) -> str:
    if not parameter:
        return parameter
    if parameter.startswith('"'):
        return f'"{MASK}"' if parameter.endswith('"') and len(parameter) > 1 else f'"{MASK}'
    return MASK


def _mask_match(match: re.Match[str]) -> str:
    head, parameters = match.group(1), match.group(2).split(",")
    keep = _KEEP[head.upper()]
    return head + ",".join(p if i < keep else _mask_parameter(p) for i, p in enumerate(parameters))


def mask_secrets(text: str) -> str:
    """``text`` with every PIN, PUK and facility password of an AT command replaced by ``****``.

    >>> mask_secrets('AT+CPIN="1234"')
    'AT+CPIN="****"'
    >>> mask_secrets('AT+CLCK="SC",1,"1234"')
    'AT+CLCK="SC",1,"****"'
    """
    if "PIN" not in text.upper() and "CLCK" not in text.upper() and "CPWD" not in text.upper():
        return text
    return _SECRET_COMMAND.sub(_mask_match, text)

