"""Who has a serial port open: other processes, found through ``/proc/*/fd``, and what they are.

``smsgw doctor`` and ``smsgw pin list`` must not open a port another program holds (two programs
on one AT port garble each other's replies), and must say who it is: ``smsgw run`` is us;
ModemManager probes and grabs every modem it sees (it is the usual reason a Pi's modem "does not
answer"; its process is /usr/sbin/ModemManager, so its name in /proc/<pid>/comm is "ModemManager");
the simulator keeps its own pty ends open and is the modem, not a user.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SMSGW, MODEM_MANAGER, SIMULATOR, OTHER = "smsgw", "modemmanager", "simulator", "other"

#: What to do about ModemManager holding the modem (its udev property, or stop it).
MODEM_MANAGER_FIX = ("tell ModemManager to leave the modem alone: ENV{ID_MM_DEVICE_IGNORE}=\"1\" on the modem's USB "
                     "device in a udev rule (`smsgw udev-rules` writes one for every profile's USB ids into "
                     "/etc/udev/rules.d/99-smsgw-gsm.rules), "
                     "then `udevadm control --reload && udevadm trigger` and `systemctl restart ModemManager`; "
                     "or, with no other modem to manage: systemctl disable --now ModemManager")


@dataclass(frozen=True)
class Holder:
    pid: int
    name: str       # /proc/<pid>/comm: the executable's name, as ps shows it
    command: str    # /proc/<pid>/cmdline with spaces
    kind: str       # SMSGW, MODEM_MANAGER, SIMULATOR or OTHER

    def __str__(self) -> str:
        return f"{self.pid} ({self.command[:60] or self.name})"


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:
        return b""


def classify(name: str, argv: list[str]) -> str:
    if name == "ModemManager" or (argv and os.path.basename(argv[0]) == "ModemManager"):
        return MODEM_MANAGER
    ours = any(os.path.basename(arg) == "smsgw" for arg in argv[:2]) or "appliance" in argv[1:3]
    if ours and "simulate" in argv:
        return SIMULATOR
    if ours and "run" in argv:
        return SMSGW
    return OTHER


def holders(device: str) -> list[Holder]:
    """The other processes that have ``device`` open (only those this user may inspect)."""
    target = os.path.realpath(device)
    found: list[Holder] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fds = list(os.scandir(f"/proc/{entry.name}/fd"))
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd.path) != target:
                    continue
            except OSError:
                continue
            argv = [arg.decode(errors="replace") for arg in _read(f"/proc/{entry.name}/cmdline").split(b"\0") if arg]
            name = _read(f"/proc/{entry.name}/comm").decode(errors="replace").strip()
            found.append(Holder(int(entry.name), name, " ".join(argv), classify(name, argv)))
            break
    return found


def users(device: str) -> list[Holder]:
    """The holders that use ``device`` as a client: every one but the simulator (which is the modem)."""
    return [holder for holder in holders(device) if holder.kind != SIMULATOR]
