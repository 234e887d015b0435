"""Errors raised by the modem layer, and the +CME/+CMS ERROR code tables.

Every error carries the command that failed and the lines the modem sent before the final result,
so a log line or an MQTT error response can say exactly what happened. Whether a failure is worth
retrying is data (the ``transient`` column of the code tables), not code scattered over callers.

Codes and texts follow 3GPP TS 27.007 section 9.2 (+CME ERROR) and TS 27.005 section 3.2.5
(+CMS ERROR), with the TS 24.011 annex E RP-cause values (1..127) that modems pass through as
+CMS ERROR codes when the network rejects a submission.
"""

from __future__ import annotations

import re

from drivers.secrets import mask_secrets

#: +CME ERROR codes (TS 27.007 9.2.1/9.2.2): code -> (text, transient).
CME_ERRORS: dict[int, tuple[str, bool]] = {
    0: ("phone failure", True),
    1: ("no connection to phone", True),
    2: ("phone-adaptor link reserved", True),
    3: ("operation not allowed", False),
    4: ("operation not supported", False),
    5: ("PH-SIM PIN required", False),
    6: ("PH-FSIM PIN required", False),
    7: ("PH-FSIM PUK required", False),
    10: ("SIM not inserted", False),
    11: ("SIM PIN required", False),
    12: ("SIM PUK required", False),
    13: ("SIM failure", False),
    14: ("SIM busy", True),
    15: ("SIM wrong", False),
    16: ("incorrect password", False),
    17: ("SIM PIN2 required", False),
    18: ("SIM PUK2 required", False),
    20: ("memory full", True),
    21: ("invalid index", False),
    22: ("not found", False),
    23: ("memory failure", True),
    24: ("text string too long", False),
    25: ("invalid characters in text string", False),
    26: ("dial string too long", False),
    27: ("invalid characters in dial string", False),
    30: ("no network service", True),
    31: ("network timeout", True),
    32: ("network not allowed - emergency calls only", True),
    40: ("network personalisation PIN required", False),
    41: ("network personalisation PUK required", False),
    100: ("unknown", True),
    103: ("illegal MS", False),
    106: ("illegal ME", False),
    107: ("GPRS services not allowed", False),
    111: ("PLMN not allowed", False),
    112: ("location area not allowed", False),
    113: ("roaming not allowed in this location area", False),
    132: ("service option not supported", False),
    133: ("requested service option not subscribed", False),
    134: ("service option temporarily out of order", True),
    148: ("unspecified GPRS error", True),
    149: ("PDP authentication failure", False),
    150: ("invalid mobile class", False),
}

#: +CMS ERROR codes (TS 27.005 3.2.5 and TS 24.011 annex E RP-causes): code -> (text, transient).
CMS_ERRORS: dict[int, tuple[str, bool]] = {
    1: ("unassigned (unallocated) number", False),
    8: ("operator determined barring", False),
    10: ("call barred", False),
    17: ("network failure", True),
    21: ("short message transfer rejected", False),
    22: ("memory capacity exceeded", True),
    27: ("destination out of service", True),
    28: ("unidentified subscriber", False),
    29: ("facility rejected", False),
    30: ("unknown subscriber", False),
    38: ("network out of order", True),
    41: ("temporary failure", True),
    42: ("congestion", True),
    47: ("resources unavailable, unspecified", True),
    50: ("requested facility not subscribed", False),
    69: ("requested facility not implemented", False),
    81: ("invalid short message transfer reference value", True),
    95: ("invalid message, unspecified", False),
    96: ("invalid mandatory information", False),
    97: ("message type non-existent or not implemented", False),
    98: ("message not compatible with short message protocol state", True),
    99: ("information element non-existent or not implemented", False),
    111: ("protocol error, unspecified", True),
    127: ("interworking, unspecified", True),
    128: ("telematic interworking not supported", False),
    129: ("short message type 0 not supported", False),
    130: ("cannot replace short message", False),
    143: ("unspecified TP-PID error", False),
    144: ("data coding scheme (alphabet) not supported", False),
    145: ("message class not supported", False),
    159: ("unspecified TP-DCS error", False),
    160: ("command cannot be actioned", False),
    161: ("command unsupported", False),
    175: ("unspecified TP-Command error", False),
    176: ("TPDU not supported", False),
    192: ("SC busy", True),
    193: ("no SC subscription", False),
    194: ("SC system failure", True),
    195: ("invalid SME address", False),
    196: ("destination SME barred", False),
    197: ("SM rejected - duplicate SM", False),
    198: ("TP-VPF not supported", False),
    199: ("TP-VP not supported", False),
    208: ("SIM SMS storage full", True),
    209: ("no SMS storage capability in SIM", False),
    210: ("error in MS", True),
    211: ("memory capacity exceeded", True),
    212: ("SIM application toolkit busy", True),
    213: ("SIM data download error", True),
    255: ("unspecified error cause", True),
    300: ("ME failure", True),
    301: ("SMS service of ME reserved", True),
    302: ("operation not allowed", False),
    303: ("operation not supported", False),
    304: ("invalid PDU mode parameter", False),
    305: ("invalid text mode parameter", False),
    310: ("SIM not inserted", False),
    311: ("SIM PIN required", False),
    312: ("PH-SIM PIN required", False),
    313: ("SIM failure", False),
    314: ("SIM busy", True),
    315: ("SIM wrong", False),
    316: ("SIM PUK required", False),
    317: ("SIM PIN2 required", False),
    318: ("SIM PUK2 required", False),
    320: ("memory failure", True),
    321: ("invalid memory index", False),
    322: ("memory full", True),
    330: ("SMSC address unknown", False),
    331: ("no network service", True),
    332: ("network timeout", True),
    340: ("no +CNMA acknowledgement expected", False),
    500: ("unknown error", True),
    512: ("user abort", True),
}


class ModemError(Exception):
    """Base of every modem-layer failure."""

    def __init__(self, message: str, *, command: str | None = None, reply: list[str] | None = None) -> None:
        super().__init__(mask_secrets(message))  # a PIN in the command never reaches a log or the store
        self.command = command
        self.reply: list[str] = list(reply or [])


class TransportError(ModemError):
    """The port is closed, vanished or cannot be opened."""


class AtTimeout(ModemError):
    """No final result (or no prompt) within the timeout."""


class AtError(ModemError):
    """The modem answered with a final result other than OK; ``final`` is that line."""

    def __init__(
        self, message: str, *, command: str | None = None, reply: list[str] | None = None, final: str = "ERROR"
    ) -> None:
        super().__init__(message, command=command, reply=reply)
        self.final = final


class _CodedError(AtError):
    """An error with a numeric (or textual) code looked up in a table."""

    table: dict[int, tuple[str, bool]] = {}

    def __init__(
        self,
        message: str,
        *,
        code: int | None,
        text: str,
        command: str | None = None,
        reply: list[str] | None = None,
        final: str = "ERROR",
    ) -> None:
        super().__init__(message, command=command, reply=reply, final=final)
        self.code = code
        self.text = text
        known = self.table.get(code) if code is not None else None
        # An unknown code is retried: sending again later is cheaper than dropping a message that
        # a second attempt would have delivered; the dispatcher bounds attempts anyway.
        self.transient: bool = known[1] if known is not None else True


class CmeError(_CodedError):
    """+CME ERROR: an equipment (ME) or SIM failure."""

    table = CME_ERRORS


class CmsError(_CodedError):
    """+CMS ERROR: a message service (network or SMS storage) failure."""

    table = CMS_ERRORS


class PinError(ModemError):
    """The SIM wants a PIN or PUK that smsgw may not, or must not, enter."""


class IdentityError(ModemError):
    """The modem or SIM on the port is not the one configured (``imei`` / ``iccid``).

    ``state`` is the modem state to publish: "wrong modem" or "wrong sim".
    """

    def __init__(self, message: str, state: str = "wrong modem") -> None:
        super().__init__(message)
        self.state = state


#: +CME ERROR codes that say the SIM is not usable (TS 27.007 9.2.1: 10 SIM not inserted ... 18 SIM PUK2
#: required) and the +CMS ERROR codes of the same states (TS 27.005 3.2.5: 310 ... 318).
SIM_STATE_CME_CODES = range(10, 19)
SIM_STATE_CMS_CODES = range(310, 319)


def is_sim_state_error(exc: BaseException) -> bool:
    """The modem refused because of its SIM's state (locked, busy, absent): the modem, not the message."""
    if isinstance(exc, CmeError):
        return exc.code in SIM_STATE_CME_CODES
    if isinstance(exc, CmsError):
        return exc.code in SIM_STATE_CMS_CODES
    return False


_CODED = re.compile(r"^\+(CME|CMS) ERROR:\s*(.*?)\s*$", re.IGNORECASE)


def _lookup_text(table: dict[int, tuple[str, bool]], text: str) -> int | None:
    wanted = text.strip().strip('"').lower()
    for code, (known, _transient) in table.items():
        if known.lower() == wanted:
            return code
    return None


def error_from_final(line: str, command: str | None = None, reply: list[str] | None = None) -> AtError:
    """Turn a failing final result line into the typed error.

    ``+CME ERROR: 10`` and ``+CME ERROR: SIM not inserted`` (after AT+CMEE=2) both give a
    ``CmeError`` with code 10; an unknown text keeps ``code=None``. Anything else (``ERROR``,
    ``NO CARRIER``, ``COMMAND NOT SUPPORT``, ``BUSY``...) is a plain ``AtError``.
    """
    where = f"{command}: " if command else ""
    match = _CODED.match(line.strip())
    if match is None:
        return AtError(f"{where}{line.strip()}", command=command, reply=reply, final=line)
    kind, detail = match.group(1).upper(), match.group(2)
    cls: type[CmeError] | type[CmsError] = CmeError if kind == "CME" else CmsError
    code: int | None
    if re.fullmatch(r"\d{1,5}", detail):
        code = int(detail)
        known = cls.table.get(code)
        text = known[0] if known else "unknown code"
    else:
        code = _lookup_text(cls.table, detail)
        text = detail.strip('"') or "no text"
    return cls(
        f"{where}+{kind} ERROR {code if code is not None else '?'} ({text})",
        code=code,
        text=text,
        command=command,
        reply=reply,
        final=line,
    )


def error_kind(error: ModemError) -> tuple[str, str]:
    """A failed command as (kind, code) for counting: ``("cms", "500")``, ``("cme", "10")``, ``("cme",
    "unknown")`` for a text no table knows, ``("timeout", "")``, or ``("error", FINAL)`` for a plain
    final result (``ERROR``, ``COMMAND NOT SUPPORT``)."""
    if isinstance(error, CmsError | CmeError):
        return ("cms" if isinstance(error, CmsError) else "cme", "unknown" if error.code is None else str(error.code))
    if isinstance(error, AtTimeout):
        return ("timeout", "")
    if isinstance(error, AtError):
        return ("error", error.final.strip()[:40])
    return ("other", type(error).__name__)
