"""systemd service notification (sd_notify) and watchdog, without a library.

Under ``Type=notify`` systemd passes ``NOTIFY_SOCKET`` (a datagram socket path, ``@`` for the
abstract namespace); under ``WatchdogSec=`` it passes ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``).
The daemon sends ``READY=1`` once it runs, ``WATCHDOG=1`` while its event loop and its store are
alive, ``STATUS=…`` lines that ``systemctl status smsgw`` shows, and ``STOPPING=1`` on shutdown.
Everything here is a no-op outside systemd.
"""

from __future__ import annotations

import logging
import os
import socket

LOG = logging.getLogger("smsgw.systemd")


def _address() -> str | None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return None
    return "\0" + path[1:] if path.startswith("@") else path


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=running"``) to systemd; False when not under it."""
    address = _address()
    if address is None:
        return False
    message = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as exc:
        LOG.warning("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half the configured timeout), or None when not asked."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1_000_000 / 2
