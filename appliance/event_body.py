"""``EventBody``: a pending event as the MQTT bridge publishes it (``StoreBase.event_bodies_pending``).

A module of its own because a ``NamedTuple`` needs ``typing`` at run time, which the short commands
do without (see ``appliance.frozen``): only the daemon's publisher asks for these.
"""

from __future__ import annotations

from typing import NamedTuple


class EventBody(NamedTuple):
    """A pending event as the MQTT bridge publishes it: its payload as stored (compact JSON text,
    UTF-8), not read back into objects; b"" for an empty payload."""

    id: int
    topic: str
    body: bytes
    qos: int
    retain: bool
