"""What the self-alert conditions look at, read at one moment: a :class:`Facts`.

The daemon's reader (:func:`daemon_facts`) takes them from the parts that know them: the modem
supervisors (healthy or not, their state and error), the dispatcher (the last part sent in this
daemon's life, each modem's last send error), the store (the clients' queue: its size and oldest
message, ``source = "self"`` left out; the balance records), the inbound side (SIM storage full), the
MQTT bridge (connected or not) and the file system holding the store (free bytes). Tests build a
``Facts`` by hand.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.daemon import Daemon

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModemFact:
    healthy: bool
    state: str = "online"
    error: str | None = None


@dataclass(frozen=True)
class Facts:
    modems: Mapping[str, ModemFact] = field(default_factory=dict)
    #: Messages of the clients (every source but ``self``) queued or being sent.
    queued: int = 0
    #: When the oldest of them that is queued was accepted (None: none queued).
    oldest_queued_at: float | None = None
    #: When this daemon last sent a part (None: not yet).
    last_sent_at: float | None = None
    #: Modem id -> the error of its last send attempt (a modem whose last send succeeded is absent).
    send_errors: Mapping[str, str] = field(default_factory=dict)
    #: ``host:port`` of the MQTT broker (None: no ``[mqtt]``), connected or not, and the bridge's error.
    broker: str | None = None
    broker_connected: bool = False
    broker_error: str | None = None
    #: Free bytes on the file system holding the store (None: unknown) and the store's path.
    disk_free: int | None = None
    disk_path: str = ""
    #: Modem id -> its last "storage full" reading (``used``, ``total``).
    storage_full: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    #: Modem id -> its last balance record (``appliance.balance``: ``balance``, ``low``, ``unit``, ``below_low``).
    balances: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def disk_free(path: str) -> int | None:
    """Free bytes for an unprivileged writer on the file system holding ``path`` (None: unknown)."""
    try:
        return int(shutil.disk_usage(path).free)
    except OSError as exc:
        LOG.warning("free space of %s unknown: %s", path, exc.strerror or exc)
        return None


def daemon_facts(daemon: Daemon) -> Facts:
    """The facts of a running daemon (see the module docstring)."""
    store = daemon.store
    assert store is not None
    queued, oldest = store.client_queue()
    dispatcher = daemon.dispatcher
    errors: dict[str, str] = {}
    if dispatcher is not None:
        for modem_id, status in dispatcher.modem_status().items():
            if status.get("last_error"):
                errors[modem_id] = str(status["last_error"])
    bridge = daemon.bridge
    mqtt = daemon.config.mqtt
    directory = str(daemon.config.store.path.parent)
    balances = {key: value for key, value in store.state_all("balance").items() if isinstance(value, dict)}
    return Facts(
        modems={modem_id: ModemFact(s.healthy, s.state, s.error) for modem_id, s in daemon.supervisors.items()},
        queued=queued, oldest_queued_at=oldest,
        last_sent_at=dispatcher.last_sent_at if dispatcher is not None else None, send_errors=errors,
        broker=f"{mqtt.host}:{mqtt.port}" if mqtt is not None else None,
        broker_connected=bool(bridge is not None and bridge.connected),
        broker_error=getattr(bridge, "last_error", None) if bridge is not None else "not started",
        disk_free=disk_free(directory), disk_path=directory,
        storage_full=dict(daemon.inbound.storage_full) if daemon.inbound is not None else {},
        balances=balances,
    )
