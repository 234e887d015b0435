"""The self-alerts' state as ``smsgw status`` reads it from the store (no daemon needed)."""

from __future__ import annotations

from typing import Any

#: The store's state namespace of the conditions (one key per condition: ``modem_down:sim0``).
NAMESPACE = "self_alert"


def describe(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The conditions by key, as ``smsgw status`` shows them: ``pending``, ``active`` (alerted or
    ``waiting for the cooldown``) or ``cleared`` (within the cooldown of its last alert)."""
    out: dict[str, dict[str, Any]] = {}
    for key, record in sorted(state.items()):
        if not isinstance(record, dict):
            continue
        if record.get("active"):
            condition = "active" if record.get("notified") else "active (alert held by the cooldown)"
        elif record.get("since") is not None:
            condition = "pending"
        else:
            condition = "cleared"
        out[key] = {"state": condition, "since": record.get("since"), "alerted_at": record.get("alerted_at"),
                    "detail": record.get("detail")}
    return out
