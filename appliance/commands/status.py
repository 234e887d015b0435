"""`smsgw status [--json]`: modems, queue depth per state, webhook backlogs, self-alerts, escalating
alerts, last errors, usage per source.

Reads the store directly (the SQLite file named by ``[store].path``), so it works whether or not the
daemon or the MQTT broker is running. The helpers it shares with ``send``, ``inbox`` and ``outbox``
(config loading, store opening, tables) are in ``appliance.commands._common``.
"""

from __future__ import annotations

import argparse
import time

from appliance.caps import DailyCaps
from appliance.commands._common import (
    EXIT_OK,
    add_config_argument,
    add_json_argument,
    iso,
    iso_fields,
    print_json,
    read_store,
    shorten,
    table,
)
from appliance.config import Config, ConfigError, webhook_display_url
from appliance.liveness import daemon_view
from appliance.self_alerts.view import NAMESPACE as SELF_ALERT_NAMESPACE
from appliance.self_alerts.view import describe as describe_self_alerts
from appliance.store_alerts import ALERT_STATES, StatusStore
from appliance.store_types import STATES, same_number

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any

NAME = "status"
HELP = "show modems, queue depth per state, last errors and usage per source"
GC = False  # returns in milliseconds: no cycle collection (appliance.cli.main)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    add_json_argument(parser)


def modem_states(store: StatusStore, cfg: Config) -> list[dict[str, Any]]:
    """One entry per configured modem (and per modem the store knows that is no longer configured)."""
    known: dict[str, Any] = {key: {"state": "unreadable"} if value is None else value
                             for key, value in store.state_all("modem").items()}
    result = []
    for modem in cfg.modems:
        state = known.pop(modem.id, None)
        entry: dict[str, Any] = {"id": modem.id, "configured": True, "port": modem.port,
                                 "profile": modem.profile}
        if isinstance(state, dict):
            entry.update({k: v for k, v in state.items() if v is not None})
            entry["id"] = modem.id
        else:
            entry["state"] = "unknown"
        result.append(entry)
    for modem_id, state in known.items():
        entry = {"id": modem_id, "configured": False}
        if isinstance(state, dict):
            entry.update(state)
        result.append(entry)
    return result


def mqtt_state(store: StatusStore, cfg: Config, daemon_running: bool = True) -> dict[str, Any] | None:
    """The bridge's connection as the daemon last recorded it, and the count of rejected requests;
    with no daemon running nothing is connected (``recorded_connected`` keeps what it last said)."""
    if cfg.mqtt is None:
        return None
    connection = store.state_get("mqtt", "connection", None)
    state: dict[str, Any] = {"broker": f"{cfg.mqtt.host}:{cfg.mqtt.port}", "connected": None}
    if isinstance(connection, dict):
        state.update({k: v for k, v in connection.items() if k in ("connected", "since", "broker", "last_error")})
        if isinstance(state.get("since"), int | float):
            state["since"] = iso(state["since"])
        if isinstance(connection.get("last_error_at"), int | float):
            state["last_error_at"] = iso(connection["last_error_at"])
        failure = connection.get("last_failure")
        if isinstance(failure, dict) and failure.get("error"):
            at = failure.get("at")
            state["last_failure"] = {"error": failure["error"], "at": iso(at) if isinstance(at, int | float) else None}
    state["rejected_requests"] = int(store.state_get("mqtt", "rejected", 0) or 0)
    if not daemon_running and state.get("connected"):
        state["recorded_connected"], state["connected"] = state["connected"], False
        state["no_daemon"] = True
    return state


def webhook_states(store: StatusStore, cfg: Config) -> list[dict[str, Any]]:
    """Per configured webhook (and per webhook the store still has deliveries of): deliveries by
    state, the age of the oldest pending one, its attempts, next attempt and last error."""
    stats = store.webhook_stats()
    result = []
    for hook in cfg.webhooks:
        entry: dict[str, Any] = {"name": hook.name, "url": webhook_display_url(hook.url), "configured": True,
                                 "events": list(hook.events)}
        entry.update({k: v for k, v in stats.pop(hook.name, {}).items() if k != "events"})
        result.append(entry)
    for name, data in stats.items():
        result.append({"name": name, "configured": False, **data})
    for entry in result:
        for key in ("pending", "delivered", "expired", "attempts"):
            entry.setdefault(key, 0)
        for key in ("next_attempt_at", "last_delivered_at"):
            entry[key] = iso(entry.get(key))
    return result


def sources_today(usage: dict[str, dict[str, int]], caps: DailyCaps | None) -> dict[str, dict[str, Any]]:
    """Per source: accepted and sent today, its daily cap and what is left of it (None: no cap).

    Every source named in ``[sources]`` with a cap is listed, used or not (patterns only when a
    source matches them). ``mqtt:<name>`` without a cap of its own shares the ``mqtt`` cap: its
    ``remaining`` is what is left for all of them and ``cap_shared`` says so.
    """
    names = set(usage)
    if caps is not None:
        names.update(key for key in caps.caps if not any(ch in key for ch in "*?["))
    out: dict[str, dict[str, Any]] = {}
    for source in sorted(names):
        entry: dict[str, Any] = {"accepted": usage.get(source, {}).get("accepted", 0),
                                 "sent": usage.get(source, {}).get("sent", 0), "cap": None, "remaining": None}
        key = None if caps is None else caps.cap_key(source)
        if caps is not None and key is not None:
            cap = caps.caps[key]
            entry["cap"] = cap
            entry["remaining"] = max(cap - caps.cap_used(key, usage, source), 0)
            if key != source and key == "mqtt":
                entry["cap_shared"] = key
        out[source] = entry
    return out


def alerts_state(store: StatusStore, cfg: Config) -> dict[str, Any]:
    """Escalating alerts (appliance/escalation.py): counts per state, and the active ones (with the
    contact names of the numbers alerted). Read from the raw tables: the rules are not loaded here."""
    raw_contacts, raw_alerts = cfg.raw.get("contacts"), cfg.raw.get("alerts")
    contacts: dict[str, Any] = raw_contacts if isinstance(raw_contacts, dict) else {}
    alerts: list[Any] = raw_alerts if isinstance(raw_alerts, list) else []

    def name(number: str) -> str:
        return next((k for k, v in contacts.items() if isinstance(v, str) and same_number(v, number)), number)

    active = []
    for alert in store.alerts(active=True, limit=50):
        entry = alert.as_dict()
        entry["alerted_names"] = [name(n) for n in alert.alerted]
        active.append(entry)
    names = [str(a.get("name") or f"alert{i + 1}") for i, a in enumerate(alerts)
             if isinstance(a, dict) and "escalate" in a]
    return {"rules": names, "counts": store.alert_counts(), "active": active}


def render_alerts(alerts: dict[str, Any]) -> list[str]:
    counts = alerts["counts"]
    if not alerts["rules"] and not any(counts.values()):
        return []  # no rule escalates, and none ever did
    out = ["", "Alerts: " + ", ".join(f"{counts.get(state, 0)} {state}" for state in ALERT_STATES)]
    rows = []
    for a in alerts["active"]:
        alerted = ", ".join(a["alerted_names"])
        rows.append([a["id"], a["rule"], a["state"], f"{a['step']}/{a['steps']}", shorten(alerted, 30),
                     shorten(a.get("acknowledged_name") or a.get("acknowledged_by"), 16),
                     a.get("next_at") or "-", shorten(a["text"], 40)])
    if rows:
        out.append(table(rows, ["CODE", "RULE", "STATE", "STEP", "ALERTED", "ACKNOWLEDGED BY", "NEXT STEP", "TEXT"],
                         right=(0,)))
    return out


def collect(store: StatusStore, cfg: Config) -> dict[str, Any]:
    stats = store.stats()
    errors = [
        {"id": row["id"], "to": row["recipient"], "state": row["state"], "error": row["last_error"],
         "at": iso(row["updated_at"])}
        for row in store.last_errors(5)
    ]
    daemon = daemon_view(store, cfg.store.path)
    modems = [iso_fields(m, ("at", "updated_at", "since")) for m in modem_states(store, cfg)]
    for modem in modems:
        balance = store.state_get("balance", modem["id"], None)
        if isinstance(balance, dict):
            modem["balance"] = iso_fields(balance, ("at", "checked_at"))
        if not daemon["running"] and modem.get("state") not in (None, "unknown"):
            # what the daemon last recorded; no process watches the modem now
            modem["recorded_state"], modem["state"], modem["healthy"] = modem["state"], "no daemon", None
    caps: DailyCaps | None = None
    caps_error = None
    try:
        caps = cfg.caps
    except ConfigError as exc:  # status still answers; the daemon refuses this config
        caps_error = str(exc)
    doc: dict[str, Any] = {
        "config": str(cfg.path),
        "store": str(cfg.store.path),
        "modems": modems,
        "outbox": {state: stats["outbox"].get(state, 0) for state in STATES},
        "inbox": {
            "messages": stats["inbox"],
            "unhandled": stats["inbox_unhandled"],
            "parts_pending": stats["inbox_parts_pending"],
        },
        "events_pending": stats["events_pending"],
        "webhooks": webhook_states(store, cfg),
        "daemon": iso_fields(daemon, ("started_at", "last_heartbeat", "stopped_at")),
        "mqtt": mqtt_state(store, cfg, daemon["running"]),
        "sources_today": sources_today(stats["sources_today"], caps),
        "alerts": alerts_state(store, cfg),
        "last_errors": errors,
    }
    if caps_error is not None:
        doc["caps_error"] = caps_error
    conditions = describe_self_alerts(store.state_all(SELF_ALERT_NAMESPACE), time.time())
    if conditions or "self_alerts" in cfg.raw:
        doc["self_alerts"] = {key: iso_fields(entry, ("since", "alerted_at")) for key, entry in conditions.items()}
    return doc


def _modem_row(m: dict[str, Any]) -> list[object]:
    signal = m.get("signal")
    if isinstance(signal, dict):
        signal = signal.get("rssi_dbm", signal.get("dbm", signal.get("rssi")))
        signal = f"{signal} dBm" if isinstance(signal, int | float) else signal
    operator = m.get("operator")
    if isinstance(operator, dict):
        operator = operator.get("name") or operator.get("numeric")
    healthy = m.get("healthy")
    return [
        m["id"] + ("" if m.get("configured", True) else " (not configured)"),
        m.get("state", "unknown"),
        "-" if healthy is None else ("yes" if healthy else "no"),
        shorten(signal, 12), shorten(operator, 16), shorten(m.get("model"), 22),
        shorten(m.get("port"), 28), shorten(m.get("last_error"), 40), shorten(m.get("at"), 20),
    ]


def render_daemon(daemon: dict[str, Any]) -> str:
    """``daemon: running (pid 123) ...`` / ``daemon: NOT RUNNING - died ...``."""
    beat = daemon.get("last_heartbeat")
    wrote = f"; last wrote its state at {beat}" if beat else ""
    if daemon.get("running"):
        return f"daemon: running (pid {daemon.get('pid') or '?'}) since {daemon.get('started_at') or '?'}{wrote}"
    if daemon.get("verdict") == "never ran":
        return "daemon: not running (no daemon has used this store yet)"
    line = f"daemon: NOT RUNNING - {daemon.get('verdict')}"
    if daemon.get("stopped_at"):
        line += f" at {daemon['stopped_at']}"
    return line + f"{wrote}; the modem and MQTT states below are what it last recorded"


def render(doc: dict[str, Any]) -> str:
    out = [f"store: {doc['store']}", render_daemon(doc["daemon"]), "", "Modems"]
    if doc["modems"]:
        out.append(table([_modem_row(m) for m in doc["modems"]],
                         ["ID", "STATE", "HEALTHY", "SIGNAL", "OPERATOR", "MODEL", "PORT", "LAST ERROR", "SINCE"]))
    else:
        out.append("(none configured)")
    out += [_balance_line(m["id"], m["balance"]) for m in doc["modems"] if isinstance(m.get("balance"), dict)]
    out += ["", "Outbox"]
    out.append(table([[state, count] for state, count in doc["outbox"].items()], ["STATE", "MESSAGES"], right=(1,)))
    inbox = doc["inbox"]
    out += ["", f"Inbox: {inbox['messages']} messages, {inbox['unhandled']} not yet handled, "
                f"{inbox['parts_pending']} parts awaiting reassembly",
            f"Events waiting for the MQTT broker: {doc['events_pending']}" if doc.get("mqtt") is not None
            else "Events: not published, MQTT is not configured"
            + (f" ({doc['events_pending']} to drop at the next hourly prune)" if doc["events_pending"] else "")]
    if doc.get("mqtt") is not None:
        out += _mqtt_lines(doc["mqtt"])
    if doc.get("webhooks"):
        out += ["", "Webhooks"]
        rows = []
        for hook in doc["webhooks"]:
            age = hook.get("oldest_pending_age")
            rows.append([
                hook["name"] + ("" if hook.get("configured", True) else " (not configured)"),
                hook["pending"], hook["delivered"], hook["expired"],
                "-" if age is None else f"{age:.0f}s", hook["attempts"] if hook["pending"] else "-",
                hook.get("next_attempt_at") if hook["pending"] else "-", shorten(hook.get("last_error"), 50),
            ])
        out.append(table(rows, ["WEBHOOK", "PENDING", "DELIVERED", "EXPIRED", "OLDEST", "ATTEMPTS", "NEXT TRY",
                                "LAST ERROR"], right=(1, 2, 3, 4, 5)))
    if "self_alerts" in doc:
        out += ["", "Self-alerts", _self_alerts_table(doc["self_alerts"])]
    out += ["", "Usage today per source", _sources_table(doc["sources_today"])]
    if doc.get("caps_error"):
        out.append(f"daily caps unknown: {doc['caps_error']}")
    out += render_alerts(doc["alerts"])
    out += ["", "Last errors"]
    if doc["last_errors"]:
        out.append(table([[e["id"], e["to"], e["state"], e["at"], shorten(e["error"], 60)] for e in doc["last_errors"]],
                         ["ID", "TO", "STATE", "AT", "ERROR"], right=(0,)))
    else:
        out.append("(none)")
    return "\n".join(out)


def _balance_line(modem_id: str, balance: dict[str, Any]) -> str:
    amount = "-" if balance.get("balance") is None else f"{balance['balance']:g}"
    line = f"balance {modem_id}: {amount}{' ' + balance['unit'] if balance.get('unit') else ''}"
    if balance.get("below_low"):
        line += f" (below {balance.get('low'):g})"
    line += f", checked {balance.get('checked_at') or '?'}"
    if balance.get("error"):
        line += f"; last check failed: {balance['error']}"
    return line


def _mqtt_lines(mqtt: dict[str, Any]) -> list[str]:
    connected = {True: "connected", False: "disconnected", None: "not started yet"}[mqtt.get("connected")]
    if mqtt.get("no_daemon"):
        connected = "not connected: no daemon runs (it last recorded " + (
            "connected" if mqtt.get("recorded_connected") else "disconnected") + ")"
    line = f"MQTT {mqtt['broker']}: {connected}"
    if mqtt.get("since"):
        line += f" since {mqtt['since']}"
    if mqtt.get("last_error") and not mqtt.get("connected"):
        line += f" ({mqtt['last_error']}" + (f" at {mqtt['last_error_at']}" if mqtt.get("last_error_at") else "") + ")"
    lines = [line + f"; {mqtt['rejected_requests']} bad request(s) rejected"]
    failure = mqtt.get("last_failure")
    if mqtt.get("connected") and failure:
        lines.append(f"MQTT last error: {failure['error']} (at {failure['at']})")
    return lines


def _self_alerts_table(conditions: dict[str, dict[str, Any]]) -> str:
    if not conditions:
        return "(every condition fine)"
    rows = [[key, c["state"], c.get("since") or "-", c.get("alerted_at") or "-", shorten(c.get("detail"), 60)]
            for key, c in conditions.items()]
    return table(rows, ["CONDITION", "STATE", "SINCE", "LAST ALERT", "DETAIL"])


def _sources_table(sources: dict[str, dict[str, Any]]) -> str:
    if not sources:
        return "(nothing accepted today)"
    rows = []
    for source, u in sources.items():
        cap = "-" if u["cap"] is None else str(u["cap"])
        if u.get("cap_shared"):
            cap += f" (shared: {u['cap_shared']})"
        rows.append([source or "-", u["accepted"], u["sent"], cap, u["remaining"]])
    return table(rows, ["SOURCE", "ACCEPTED", "SENT", "DAILY CAP", "REMAINING"], right=(1, 2, 4))


def main(args: argparse.Namespace) -> int:
    doc = read_store(args, NAME, StatusStore, collect)
    if isinstance(doc, int):
        return doc
    if args.json:
        print_json(doc)
    else:
        print(render(doc))
    return EXIT_OK
