"""Per-vendor Modem subclasses: only where behaviour (not data) differs.

Facts are profile data (``firmware_cfg/*.toml``): init commands such as Huawei's ``AT^CURC=0``,
Quectel's ``AT+QCCID`` as the ICCID command, URCs to ignore, timeouts. A subclass exists only for a
difference in what the code must do, and holds no state of its own (``Modem.open`` may switch an
auto-detected instance to its subclass). Selected by the profile's ``vendor_class``.
"""

from __future__ import annotations

import re
from typing import ClassVar

from drivers.gsm7 import pack_ussd, unpack_ussd
from drivers.modem import Modem, register_vendor


def _is_gsm7_dcs(dcs: int | None) -> bool:
    """23.038 5: DCS groups that mean the GSM 7-bit default alphabet for cell broadcast/USSD."""
    if dcs is None:
        return True
    group = dcs >> 4
    if group in (0x0, 0x2, 0x3):  # language groups: default alphabet
        return True
    if group in (0x1,):
        return dcs in (0x10, 0x1F) or dcs & 0x0F == 0x00
    if group in (0x4, 0x5, 0x6, 0x7):  # general data coding: alphabet in bits 3..2
        return (dcs >> 2) & 0x03 == 0
    if group == 0xF:
        return (dcs >> 2) & 0x01 == 0
    return False


@register_vendor("huawei")
class HuaweiModem(Modem):
    """Huawei sticks (E3372, E3272, E1550 ...): USSD strings go out and come back packed.

    With AT+CSCS="GSM" and DCS 15 they expect the USSD string as GSM 7-bit packed septets in hex
    (``*100#`` -> ``AA180C3602``) and answer the same way; many firmware versions refuse a plain
    ``*100#`` with ERROR. ModemManager's Huawei plugin replaces the USSD encode and decode for the
    same reason.
    """

    vendor: ClassVar[str] = "huawei"

    def ussd_encode(self, code: str, *, reply: bool = False) -> str:
        return pack_ussd(super().ussd_encode(code, reply=reply))

    def ussd_decode(self, text: str, dcs: int | None) -> str:
        if _is_gsm7_dcs(dcs) and re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", text):
            try:
                return unpack_ussd(text)
            except ValueError:
                pass
        return super().ussd_decode(text, dcs)
