"""``[self_alerts]``: the conditions the gateway texts its installer about, validated.

::

    [self_alerts]
    to = ["installer"]          # contacts, groups or numbers, as the alert rules name them
    modem_down = "10m"          # a modem out of rotation longer than this
    no_send = "15m"             # nothing sent for this long while messages are queued
    queue_age = "30m"           # the oldest queued message is older than this
    broker_down = "10m"         # the MQTT broker unreachable this long ([mqtt] only)
    disk_free_mb = 200          # less free space on the store's file system
    sim_full = true             # a modem's SIM storage is full
    balance_low = true          # a balance check found less than its ``low``
    cooldown = "1h"             # at most one alert per condition in this time
    check_interval = "30s"      # how often the conditions are looked at
    priority = "critical"       # of the alert SMS (critical: ahead of a backlog)
    name = "pumphouse"          # starts every alert text (default: the host name)

Every threshold has the default shown; ``false`` turns that condition off. Errors are
``ConfigError`` (``FILE: self_alerts.KEY: REASON``, with a "did you mean" hint for an unknown key).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance.config import ConfigError
from appliance.store import PRIORITIES
from drivers.toml_reader import TableReader

if TYPE_CHECKING:
    from appliance.config import Config

KEYS = ("to", "modem_down", "no_send", "queue_age", "broker_down", "disk_free_mb", "sim_full", "balance_low",
        "cooldown", "check_interval", "priority", "name")
#: The duration thresholds and their defaults (seconds).
DURATIONS = {"modem_down": 600.0, "no_send": 900.0, "queue_age": 1800.0, "broker_down": 600.0}
DEFAULT_DISK_FREE_MB = 200
DEFAULT_COOLDOWN = 3600.0
DEFAULT_CHECK_INTERVAL = 30.0
DEFAULT_PRIORITY = "critical"
#: The shortest check interval: each check reads the store and the file system.
MIN_CHECK_INTERVAL = 1.0


@dataclass(frozen=True)
class SelfAlertsConfig:
    to: tuple[str, ...]  # normalised numbers
    modem_down: float | None = DURATIONS["modem_down"]  # None: the condition is off
    no_send: float | None = DURATIONS["no_send"]
    queue_age: float | None = DURATIONS["queue_age"]
    broker_down: float | None = DURATIONS["broker_down"]
    disk_free_mb: int | None = DEFAULT_DISK_FREE_MB
    sim_full: bool = True
    balance_low: bool = True
    cooldown: float = DEFAULT_COOLDOWN
    check_interval: float = DEFAULT_CHECK_INTERVAL
    priority: str = DEFAULT_PRIORITY
    name: str = ""


def _threshold(reader: TableReader, name: str) -> float | None:
    """A duration, or ``false`` for off."""
    if reader.table.get(name) is False:
        return None
    if reader.table.get(name) is True:
        raise reader.error(name, "must be a duration like \"10m\", or false to turn it off, not true")
    value = reader.duration(name, DURATIONS[name])
    assert value is not None
    if value <= 0:
        raise reader.error(name, "must be longer than 0 (false turns the condition off)")
    return value


def parse_self_alerts(config: Config) -> SelfAlertsConfig | None:
    """``[self_alerts]`` of ``config`` (None when absent); use ``Config.self_alerts``."""
    table = config.raw.get("self_alerts")
    if table is None:
        return None
    reader = TableReader(config.path, "self_alerts", table, KEYS, error=ConfigError)
    if not reader.has("to"):
        raise reader.error("to", "is required: the contacts, groups or numbers the gateway texts about itself")
    to = _recipients(config, reader)
    disk: int | None
    if reader.table.get("disk_free_mb") is False:
        disk = None
    else:
        disk = reader.integer("disk_free_mb", DEFAULT_DISK_FREE_MB, minimum=1,
                              what="a number of MiB (an integer), or false to turn it off")
    cooldown = reader.duration("cooldown", DEFAULT_COOLDOWN)
    interval = reader.duration("check_interval", DEFAULT_CHECK_INTERVAL)
    assert cooldown is not None and interval is not None
    if interval < MIN_CHECK_INTERVAL:
        raise reader.error("check_interval", f"must be at least {MIN_CHECK_INTERVAL:g} s, not {interval:g} s")
    priority = reader.string("priority", DEFAULT_PRIORITY, what="one of " + ", ".join(PRIORITIES))
    assert priority is not None
    if priority not in PRIORITIES:
        raise reader.error("priority", f"must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    name = reader.string("name", None) or socket.gethostname()
    return SelfAlertsConfig(
        to=to, modem_down=_threshold(reader, "modem_down"), no_send=_threshold(reader, "no_send"),
        queue_age=_threshold(reader, "queue_age"), broker_down=_threshold(reader, "broker_down"),
        disk_free_mb=disk, sim_full=reader.boolean("sim_full", True), balance_low=reader.boolean("balance_low", True),
        cooldown=cooldown, check_interval=interval, priority=priority, name=name.strip(),
    )


def _recipients(config: Config, reader: TableReader) -> tuple[str, ...]:
    """``to`` resolved as an alert rule's ``to`` is: contacts, groups, numbers."""
    from appliance.rules.config import resolve_recipients

    return resolve_recipients(config, reader, "to")
