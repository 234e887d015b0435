"""Who a modem is: manufacturer, model, revision and IMEI from its identity replies, each optional.

Real modems answer some of ``AT+CGMI``/``AT+CGMM``/``AT+CGMR``/``AT+CGSN`` with ERROR, label or
quote their values, or append a serial number to the IMEI. ``read_identity`` asks the 27.007
command, then its V.25ter twin, then ``ATI`` once, and keeps what the modem told; the parsers are
pure and tested from real replies (tests/test_modem_detect.py, tests/data/transcripts/).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from drivers.at import AtResponse
from drivers.errors import AtError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    manufacturer: str = ""
    model: str = ""
    revision: str = ""
    imei: str = ""
    imsi: str = ""
    iccid: str = ""


#: Each identity field: the 27.007 command, then the V.25ter one tried when the first answers an
#: error (the order of ModemManager's src/mm-broadband-modem.c ``manufacturers``/``models``/
#: ``revisions``/``imei`` command tables), and the labels a reply may carry before its value.
IDENTITY_COMMANDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "manufacturer": (("AT+CGMI", "AT+GMI"), ("+CGMI", "+GMI", "Manufacturer")),
    "model": (("AT+CGMM", "AT+GMM"), ("+CGMM", "+GMM", "Model")),
    "revision": (("AT+CGMR", "AT+GMR"), ("+CGMR", "+GMR", "Revision")),
    "imei": (("AT+CGSN", "AT+GSN"), ("+CGSN", "+GSN", "IMEI")),
}


def identity_value(lines: list[str], labels: Iterable[str]) -> str:
    """The value in an identity reply: its first line without a ``+CGMR:``/``Revision:`` label or quotes
    (ModemManager's ``sanitize_info_reply`` in src/mm-broadband-modem.c strips the same)."""
    labels = tuple(labels)
    for line in lines:
        text = line.strip()
        changed = True
        while text and changed:
            changed = False
            for label in labels:
                if text.upper().startswith(label.upper() + ":"):
                    text = text[len(label) + 1 :].strip()
                    changed = True
            if text.startswith('"') and '"' in text[1:]:
                # '"Fibocom"', or '"L850 LTE Module","L850"' (a list: its first item is the name)
                text = text[1 : text.index('"', 1)].strip()
                changed = True
        if text:
            return text
    return ""


def imei_value(text: str) -> str:
    """The IMEI in a +CGSN answer: 15 digits (14 to 17 accepted), without the serial number some
    modems append (``356936001568843,NL2A62Z0N5``, ModemManager src/tests/test-modem-helpers.c
    ``test_cdma_parse_gsn``); "" for an ESN or MEID (hex, CDMA modems)."""
    match = re.match(r"(\d{14,17})(?![0-9A-Za-z])", text)
    return match.group(1) if match else ""


#: Asked once when an identity field is still missing: V.25ter ``ATI`` (product identification),
#: which many modems answer with labelled lines - ``Manufacturer: SIMCOM INCORPORATED``,
#: ``Model: SIMCOM_SIM7600G-H``, ``Revision: ...``, ``IMEI: ...`` (ModemManager's devids table,
#: Xinyuan-LilyGO/T-SIM7600X#135, vshymanskyy/TinyGSM#739).
IDENTITY_FALLBACK = "ATI"
_ATI_LABELS = {"manufacturer": "Manufacturer", "model": "Model", "revision": "Revision", "imei": "IMEI"}


def ati_values(lines: list[str]) -> dict[str, str]:
    """The labelled identity lines of an ``ATI`` answer (unlabelled answers give nothing)."""
    values: dict[str, str] = {}
    for name, label in _ATI_LABELS.items():
        for line in lines:
            if line.strip().upper().startswith(label.upper() + ":"):
                values[name] = identity_value([line], (label, *IDENTITY_COMMANDS[name][1]))
                break
    return values


async def read_identity(run: Callable[[str], Awaitable[AtResponse]], label: str) -> Identity:
    """Manufacturer, model, revision and IMEI, each optional: a field whose commands all answer an
    error (then also ``ATI``) stays "" and is logged. ``run`` executes one command (AtError for an error)."""
    values: dict[str, str] = {}
    for name, (commands, labels) in IDENTITY_COMMANDS.items():
        value = ""
        for cmd in commands:
            try:
                value = identity_value((await run(cmd)).lines, labels)
            except AtError as exc:
                LOG.debug("%s: %s: %s", label, cmd, exc)
                continue
            if value:
                break
        values[name] = value
    if not all(values.values()):
        try:
            found = ati_values((await run(IDENTITY_FALLBACK)).lines)
        except AtError as exc:
            LOG.debug("%s: %s: %s", label, IDENTITY_FALLBACK, exc)
            found = {}
        values = {name: value or found.get(name, "") for name, value in values.items()}
    values["imei"] = imei_value(values["imei"])
    missing = [name for name, value in values.items() if not value]
    if missing:
        LOG.warning("%s: the modem does not tell its %s (%s answered no value); opening with what it told",
                    label, ", ".join(missing), "/".join(c for n in missing for c in IDENTITY_COMMANDS[n][0]))
    return Identity(values["manufacturer"], values["model"], values["revision"], values["imei"])
