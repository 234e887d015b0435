"""`smsgw detect`: find the modems attached to this machine and say which profile fits each."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from appliance.config import DEFAULT_AUTO_GLOBS
from drivers import locate
from drivers.errors import AtTimeout, ModemError, TransportError
from drivers.modem import probe_port
from drivers.profiles import match_identity, match_usb

NAME = "detect"
HELP = "find attached modems: port, USB id, profile, manufacturer, model, revision, IMEI"

LOG = logging.getLogger(__name__)

#: Seconds each AT command of a probe may take; a silent port costs at most a few of these.
PROBE_TIMEOUT = 1.0
#: Seconds a whole probe of one port may take, whatever happens.
PORT_DEADLINE = 8.0

#: The same candidate ports as ``port = "auto"`` and ``smsgw setup`` (appliance.config.DEFAULT_AUTO_GLOBS).
CANDIDATE_GLOBS = DEFAULT_AUTO_GLOBS
SYSFS_TTY = Path("/sys/class/tty")


@dataclass
class UsbInfo:
    vid: int
    pid: int
    interface: int | None

    def __str__(self) -> str:
        text = f"{self.vid:04x}:{self.pid:04x}"
        return text if self.interface is None else f"{text} if#{self.interface}"


@dataclass
class Found:
    port: str
    device: str
    usb: str | None = None
    profile: str | None = None
    manufacturer: str = ""
    model: str = ""
    revision: str = ""
    imei: str = ""
    status: str = "ok"


def usb_info(device: str, sysfs: Path = SYSFS_TTY) -> UsbInfo | None:
    """VID:PID and interface number of a tty from sysfs, or None (UART, pty, no sysfs)."""
    node = sysfs / os.path.basename(device) / "device"
    if not node.exists():
        return None
    path = node.resolve()
    interface: int | None = None
    for directory in [path, *path.parents]:
        if interface is None and (directory / "bInterfaceNumber").is_file():
            try:
                interface = int((directory / "bInterfaceNumber").read_text().strip(), 16)
            except ValueError:
                interface = None
        if (directory / "idVendor").is_file() and (directory / "idProduct").is_file():
            try:
                vid = int((directory / "idVendor").read_text().strip(), 16)
                pid = int((directory / "idProduct").read_text().strip(), 16)
            except ValueError:
                return None
            return UsbInfo(vid, pid, interface)
        if directory == Path("/sys") or directory == directory.parent:
            break
    return None


def candidate_ports(extra: list[str], *, scan: bool = True) -> list[str]:
    """Ports to probe: ``extra`` as given, then the usual device names, one entry per real device."""
    seen: set[str] = set()
    ports: list[str] = []
    for port in extra:
        real = os.path.realpath(port)
        if real not in seen:
            seen.add(real)
            ports.append(port)
    if scan:
        for port in locate.candidate_ports(CANDIDATE_GLOBS):
            real = os.path.realpath(port)
            if real not in seen:
                seen.add(real)
                ports.append(port)
    return ports


def _describe(port: str) -> tuple[Found, UsbInfo | None]:
    device = os.path.realpath(port)
    usb = usb_info(device)
    return Found(port=port, device=device, usb=str(usb) if usb else None), usb


async def probe(port: str, *, timeout: float = PROBE_TIMEOUT, deadline: float = PORT_DEADLINE) -> Found:
    """Who is on ``port``: never takes longer than ``deadline`` seconds, whatever the port does."""
    found, usb = _describe(port)
    usb_profile = match_usb(usb.vid, usb.pid, usb.interface) if usb else None
    try:
        identity = await asyncio.wait_for(probe_port(port, timeout=timeout), deadline)
    except (TimeoutError, AtTimeout):
        found.status = "no answer"
        if usb and usb_profile is None and match_usb(usb.vid, usb.pid, None) is not None:
            found.status += " (not the AT port)"
        return found
    except TransportError as exc:
        found.status = f"cannot open: {exc}"
        return found
    except ModemError as exc:
        found.status = f"error: {exc}"
        return found
    except OSError as exc:
        found.status = f"cannot open: {exc.strerror or exc}"
        return found
    found.manufacturer, found.model, found.imei = identity.manufacturer, identity.model, identity.imei
    found.revision = identity.revision
    profile = usb_profile or match_identity(identity.manufacturer, identity.model)
    found.profile = profile.name
    return found


async def detect(ports: list[str], *, timeout: float = PROBE_TIMEOUT, deadline: float = PORT_DEADLINE) -> list[Found]:
    return list(await asyncio.gather(*(probe(port, timeout=timeout, deadline=deadline) for port in ports)))


def format_table(found: list[Found]) -> str:
    headers = ("PORT", "USB", "PROFILE", "MANUFACTURER", "MODEL", "REVISION", "IMEI", "STATUS")
    rows = [(f.port, f.usb or "-", f.profile or "-", f.manufacturer or "-", f.model or "-", f.revision or "-",
             f.imei or "-", f.status) for f in found]
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", action="append", default=[], metavar="PATH",
                        help="probe this port too (repeatable), e.g. a simulator's DIR/modem0")
    parser.add_argument("--no-scan", action="store_true", help="probe only the --port paths")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=float, default=PROBE_TIMEOUT,
                        help=f"seconds per AT command while probing (default {PROBE_TIMEOUT})")


def main(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise SystemExit("smsgw detect: --timeout must be more than zero seconds")
    ports = candidate_ports(args.port, scan=not args.no_scan)
    found = asyncio.run(detect(ports, timeout=args.timeout, deadline=max(PORT_DEADLINE, 6 * args.timeout)))
    if args.json:
        print(json.dumps([asdict(f) for f in found], indent=2))
    elif not found:
        print("no serial ports found (looked at " + ", ".join(CANDIDATE_GLOBS) + ")")
    else:
        print(format_table(found))
    return 0 if any(f.profile for f in found) else 1
