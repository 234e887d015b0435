"""The JSON shapes of the HTTP API, made from what the store and the daemon hold (pure functions).

Times are RFC 3339 in UTC with milliseconds (``2026-12-02T00:48:05.123Z``); the schemas in
``appliance.http.openapi`` describe exactly these dictionaries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(ts: object) -> str | None:
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """An RFC 3339 / ISO 8601 time (``2026-12-02T00:00:00Z``; no offset: UTC) as seconds since the epoch;
    ValueError."""
    value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def message(row: dict[str, Any], *, detail: bool = False) -> dict[str, Any]:
    """One outbound message (``Store.message`` / ``Store.messages`` row)."""
    parts = row.get("parts")
    detail_parts = row.get("parts_detail")
    if not isinstance(parts, int):
        parts = len(detail_parts) if isinstance(detail_parts, list) else 0
    view: dict[str, Any] = {
        "id": row["id"],
        "client_id": row.get("client_key"),
        "to": row["to"],
        "text": row.get("text"),
        "state": row["state"],
        "priority": row.get("priority"),
        "source": row.get("source") or None,
        "parts": parts,
        "modem": row.get("modem"),
        "error": row.get("last_error"),
        "attempts": row.get("attempts", 0),
        "report": bool(row.get("report")),
        "created_at": iso(row.get("created_at")),
        "updated_at": iso(row.get("updated_at")),
        "valid_until": iso(row.get("valid_until")),
        "send_at": iso(row.get("send_at")),
        "class": row.get("message_class"),
    }
    if detail:
        view["delivery"] = [
            {"sequence": part["sequence"], "total": part["total"], "state": part["state"], "modem": part["modem"],
             "message_reference": part["message_reference"], "sent_at": iso(part["sent_at"]),
             "delivered_at": iso(part["delivered_at"]), "status": part["status"]}
            for part in (detail_parts or [])
        ]
    return view


def received(row: dict[str, Any]) -> dict[str, Any]:
    """One received message (``Store.inbox_after`` row)."""
    view: dict[str, Any] = {
        "id": row["id"],
        "from": row.get("from"),
        "text": row.get("text"),
        "state": row.get("state"),
        "sent_at": row.get("sent_at"),
        "received_at": iso(row.get("received_at")),
        "modem": row.get("modem"),
        "parts": row.get("parts"),
        "partial": bool(row.get("partial")),
        "missing": list(row.get("missing") or []),
    }
    if row.get("error"):
        view["error"] = row["error"]
        view["raw"] = row.get("raw")
    return view


def modem(status: dict[str, Any], balance: object = None) -> dict[str, Any]:
    """One modem from its supervisor's ``status()`` (or its last recorded state) and its balance check."""
    signal = status.get("signal") if isinstance(status.get("signal"), dict) else None
    operator = status.get("operator") if isinstance(status.get("operator"), dict) else None
    registration = status.get("registration") if isinstance(status.get("registration"), dict) else None
    view: dict[str, Any] = {
        "id": status.get("id"),
        "state": status.get("state", "unknown"),
        "healthy": status.get("healthy"),
        "signal": None if signal is None else {"dbm": signal.get("dbm"), "percent": signal.get("percent"),
                                               "rssi": signal.get("rssi"), "ber": signal.get("ber")},
        "operator": None if operator is None else {"name": operator.get("name"), "numeric": operator.get("numeric")},
        "registration": None if registration is None else registration.get("state"),
        "technology": status.get("technology"),
        "sim": status.get("sim"),
        "pin_attempts": status.get("pin_attempts"),
        "model": status.get("model"),
        "imei": status.get("imei"),
        "port": status.get("port"),
        "error": status.get("error"),
        "last_error": status.get("last_error"),
        "last_error_at": iso(status.get("last_error_at")),
        "recoveries": status.get("recoveries", 0),
        "balance": None,
        "updated_at": iso(status.get("at")),
    }
    if isinstance(balance, dict):
        view["balance"] = {"amount": balance.get("balance"), "unit": balance.get("unit"),
                           "below_low": balance.get("below_low"), "error": balance.get("error"),
                           "read_at": iso(balance.get("at")), "checked_at": iso(balance.get("checked_at"))}
    return view
