"""Per-vendor behaviour objects: only where what the code must do (not data) differs.

Facts are profile data (``firmware_cfg/*.toml``): init commands such as Huawei's ``AT^CURC=0``,
Quectel's ``AT+QCCID`` as the ICCID command, URCs to ignore, timeouts. A behaviour object exists only
for a difference in what the code must do; it holds no state. ``vendor_for(profile)`` picks it by
the profile's ``vendor_class``; a ``Modem`` holds one (``Modem.vendor``) and swaps it when
auto-detection finds the profile, as bellows swaps its protocol object per firmware version.
"""

from __future__ import annotations

import re
from typing import ClassVar

from drivers import parsers
from drivers.gsm7 import pack_ussd, unpack_ussd
from drivers.profiles import GENERIC, Profile

__all__ = ["HuaweiVendor", "Vendor", "pack_ussd", "unpack_ussd", "vendor_for", "vendor_names"]


class Vendor:
    """The generic (3GPP TS 27.007) behaviour; vendors override only what differs."""

    name: ClassVar[str] = GENERIC

    def ussd_encode(self, code: str) -> str:
        """The string put inside ``AT+CUSD=1,"...",15`` for a checked USSD code or reply."""
        return code

    def ussd_decode(self, text: str, dcs: int | None) -> str:
        """The readable text of a +CUSD answer."""
        return parsers.decode_ussd_text(text, dcs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


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


class HuaweiVendor(Vendor):
    """Huawei sticks (E3372, E3272, E1550 ...): USSD strings go out and come back packed.

    With AT+CSCS="GSM" and DCS 15 they expect the USSD string as GSM 7-bit packed septets in hex
    (``*100#`` -> ``AA180C3602``) and answer the same way; many firmware versions refuse a plain
    ``*100#`` with ERROR. ModemManager's Huawei plugin replaces the USSD encode and decode for the
    same reason.
    """

    name: ClassVar[str] = "huawei"

    def ussd_encode(self, code: str) -> str:
        return pack_ussd(code)

    def ussd_decode(self, text: str, dcs: int | None) -> str:
        if _is_gsm7_dcs(dcs) and re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", text):
            try:
                return unpack_ussd(text)
            except ValueError:
                pass
        return super().ussd_decode(text, dcs)


_VENDORS: dict[str, Vendor] = {vendor.name: vendor for vendor in (Vendor(), HuaweiVendor())}


def vendor_names() -> list[str]:
    return sorted(_VENDORS)


def vendor_for(profile: Profile) -> Vendor:
    """The behaviour object for a profile's ``vendor_class``; ValueError naming the profile when unknown."""
    try:
        return _VENDORS[profile.vendor_class]
    except KeyError:
        raise ValueError(
            f"profile {profile.name!r} ({profile.source}): unknown vendor_class {profile.vendor_class!r} "
            f"(known: {', '.join(vendor_names())})"
        ) from None
