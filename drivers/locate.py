"""Finding a modem by its IMEI or ICCID among candidate ports (``[[modems]] port = "auto"``).

USB modems re-enumerate (``/dev/ttyUSB2`` becomes ``/dev/ttyUSB3`` after a hot-plug or a
reset) and two identical sticks may swap names between boots; the IMEI (the modem) and the
ICCID (the SIM) do not change. ``find_port`` asks each candidate port who it is, with the
read-only ``inspect_port`` (no PIN is ever entered while looking), and returns the first whose
identity matches.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
from collections.abc import Callable, Iterable

from drivers.errors import ModemError
from drivers.modem import inspect_port

LOG = logging.getLogger(__name__)

#: Seconds each AT command of an identity probe may take.
PROBE_TIMEOUT = 1.0


def candidate_ports(patterns: Iterable[str]) -> list[str]:
    """Existing paths matching ``patterns``, in pattern order, one per real device (the first name wins)."""
    seen: set[str] = set()
    ports: list[str] = []
    for pattern in patterns:
        for port in sorted(glob.glob(pattern), key=lambda p: (len(p), p)):
            real = os.path.realpath(port)
            if real in seen or not os.path.exists(real):
                continue
            seen.add(real)
            ports.append(port)
    return ports


def matches(found_imei: str, found_iccid: str, *, imei: str | None, iccid: str | None) -> bool:
    """The IMEI decides when one is configured; else the ICCID."""
    if imei is not None:
        return found_imei == imei
    return iccid is not None and found_iccid == iccid


async def find_port(
    patterns: Iterable[str],
    *,
    imei: str | None,
    iccid: str | None,
    skip: Callable[[str], bool] = lambda port: False,
    timeout: float = PROBE_TIMEOUT,
    prefer: str | None = None,
) -> str | None:
    """The first candidate port whose modem has ``imei`` (or, without one, whose SIM has ``iccid``).

    ``skip(port)`` leaves out ports that must not be probed (those other modems use). ``prefer``
    (where the modem was last seen) is tried first, when it is a candidate: a silent port costs
    a few ``timeout`` seconds, so the usual case asks one port only.
    """
    ports = candidate_ports(patterns)
    if prefer in ports:
        ports.remove(prefer)
        ports.insert(0, prefer)
    for port in ports:
        if skip(port):
            continue
        try:
            found = await asyncio.wait_for(inspect_port(port, timeout=timeout, sim=imei is None), timeout * 8)
        except (ModemError, OSError, TimeoutError) as exc:
            LOG.debug("looking for %s: %s: %s", imei or iccid, port, exc)
            continue
        if matches(found.identity.imei, found.identity.iccid, imei=imei, iccid=iccid):
            return port
    return None
