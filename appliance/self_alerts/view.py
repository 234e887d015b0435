"""The self-alerts' state as ``smsgw status`` reads it from the store (no daemon needed)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any


#: The store's state namespace of the conditions (one key per condition: ``modem_down:sim0``).
NAMESPACE = "self_alert"


def duration(seconds: float) -> str:
    """``45 s``, ``10 min``, ``2 h 5 min``, ``3 d 4 h``: for SMS texts."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def describe(state: dict[str, Any], now: float) -> dict[str, dict[str, Any]]:
    """The conditions by key, as ``smsgw status`` shows them: ``pending``, ``active`` (alerted or
    held by the cooldown) or ``cleared`` (within the cooldown of its last alert); ``detail`` says how
    long the condition has held at ``now``."""
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
        since, detail = record.get("began", record.get("since")), record.get("detail")
        if isinstance(detail, str):
            held = duration(now - since) if isinstance(since, int | float) else "?"
            detail = detail.replace("{held}", held)
        out[key] = {"state": condition, "since": since, "alerted_at": record.get("alerted_at"), "detail": detail}
    return out
