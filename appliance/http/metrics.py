"""What ``GET /metrics`` reports, gathered at scrape time from the store and the running daemon.

Every value is read when Prometheus asks (a few grouped queries, see ``Store.metrics``, run off the
event loop by the route), so nothing is kept in step. The families (docs/http.md, "Metrics"):

- ``smsgw_messages{source,modem,state}``: outbound messages in the store (finished ones leave with
  the retention), so accepted / sent / delivered / failed per source and modem;
- ``smsgw_message_parts{modem,state}``, ``smsgw_received_messages{modem}``;
- ``smsgw_queue_depth{state}``, ``smsgw_oldest_queued_age_seconds``, ``smsgw_events_pending``;
- per modem: ``smsgw_modem_up``, ``smsgw_modem_state{state}``, ``smsgw_modem_signal_dbm``,
  ``smsgw_modem_registration{state}``, ``smsgw_modem_recoveries_total{rung}``,
  ``smsgw_at_errors_total{kind,code}`` (``kind`` cms / cme / error / timeout);
- ``smsgw_mqtt_connected``, ``smsgw_mqtt_requests_total{result}``, ``smsgw_http_requests_total{route,status}``;
- the webhook backlog: ``smsgw_webhook_pending{webhook}``, ``smsgw_webhook_oldest_pending_age_seconds{webhook}``,
  ``smsgw_webhook_deliveries{webhook,state}`` (``delivered``, ``expired``);
- ``smsgw_store_size_bytes``, ``smsgw_uptime_seconds``, ``smsgw_info{version}``.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from appliance import __version__
from appliance.history import signal_dbm
from appliance.http.exposition import Family
from appliance.store import DELIVERY_DONE, DELIVERY_EXPIRED, DELIVERY_PENDING, STATES

if TYPE_CHECKING:
    from appliance.daemon import Daemon

#: The bridge counters exposed as smsgw_mqtt_requests_total{result}.
MQTT_RESULTS = ("received", "accepted", "duplicates", "rejected")


def collect(daemon: Daemon, http_requests: Counter[tuple[str, int]], data: dict[str, Any],
            now: float | None = None) -> list[Family]:
    """The families from ``data`` (``Store.metrics``, read beforehand) and the running daemon."""
    now = time.time() if now is None else now
    families: list[Family] = []

    messages = Family("smsgw_messages", "gauge", "Outbound messages in the store by source, modem and state "
                      "(finished messages are pruned after the retention)")
    for source, modem, state, count in data["messages"]:
        messages.add(count, source=source, modem=modem, state=state)
    parts = Family("smsgw_message_parts", "gauge", "SMS parts in the store by the modem that sent them and state")
    for modem, state, count in data["parts"]:
        parts.add(count, modem=modem, state=state)
    received = Family("smsgw_received_messages", "gauge", "Received messages in the store by modem")
    for modem, count in data["received"]:
        received.add(count, modem=modem)
    depth = Counter({state: 0 for state in STATES})
    for _source, _modem, state, count in data["messages"]:
        depth[state] += count
    queue = Family("smsgw_queue_depth", "gauge", "Outbound messages by state")
    for state in STATES:
        queue.add(depth[state], state=state)
    oldest = Family("smsgw_oldest_queued_age_seconds", "gauge", "Age of the oldest queued message (0: none queued)")
    oldest.add(data["oldest_queued_age"] or 0.0)
    events = Family("smsgw_events_pending", "gauge", "Store events not yet published to MQTT")
    events.add(data["events_pending"])
    families += [messages, parts, received, queue, oldest, events]

    up = Family("smsgw_modem_up", "gauge", "1 while the modem is healthy (in rotation)")
    state = Family("smsgw_modem_state", "gauge", "The modem's supervisor state (1 for the current one)")
    signal = Family("smsgw_modem_signal_dbm", "gauge", "Received signal strength (AT+CSQ) in dBm")
    registration = Family("smsgw_modem_registration", "gauge", "Network registration state (1 for the current one)")
    recoveries = Family("smsgw_modem_recoveries_total", "counter", "Recoveries since start by the rung that worked")
    at_errors = Family("smsgw_at_errors_total", "counter", "Failed AT commands since start by kind and code")
    for modem_id, supervisor in daemon.supervisors.items():
        up.add(1 if supervisor.healthy else 0, modem=modem_id)
        state.add(1, modem=modem_id, state=supervisor.state)
        dbm = signal_dbm(supervisor.radio)
        if dbm is not None:
            signal.add(dbm, modem=modem_id)
        reg = supervisor.radio.get("registration")
        if isinstance(reg, dict) and reg.get("state") is not None:
            registration.add(1, modem=modem_id, state=reg["state"])
        for rung, count in sorted(supervisor.recoveries_by_rung.items()):
            recoveries.add(count, modem=modem_id, rung=rung)
        modem = daemon.modems.get(modem_id)
        for (kind, code), count in sorted(getattr(modem, "at_errors", Counter()).items()):
            at_errors.add(count, modem=modem_id, kind=kind, code=code)
    families += [up, state, signal, registration, recoveries, at_errors]

    bridge = daemon.bridge
    if bridge is not None:
        families.append(Family("smsgw_mqtt_connected", "gauge", "1 while the MQTT bridge is connected")
                        .add(1 if bridge.connected else 0))
        requests = Family("smsgw_mqtt_requests_total", "counter", "MQTT send requests since start by result")
        for result in MQTT_RESULTS:
            requests.add(bridge.requests.counters.get(result, 0), result=result)
        families.append(requests)
    http = Family("smsgw_http_requests_total", "counter", "HTTP API requests since start by route and status")
    for (route, status), count in sorted(http_requests.items()):
        http.add(count, route=route, status=status)
    families.append(http)
    families += _webhooks(data.get("webhooks") or {})
    families.append(Family("smsgw_store_size_bytes", "gauge", "Size of the SQLite store (database and WAL)")
                    .add(data["size_bytes"]))
    families.append(Family("smsgw_uptime_seconds", "gauge", "Seconds since the daemon started")
                    .add(max(now - daemon.started_at, 0.0)))
    families.append(Family("smsgw_info", "gauge", "The running smsgw").add(1, version=__version__))
    return families


def _webhooks(stats: dict[str, dict[str, Any]]) -> list[Family]:
    """The webhook backlog from ``Store.webhook_stats``: deliveries waiting and the age of the oldest."""
    pending = Family("smsgw_webhook_pending", "gauge", "Webhook deliveries not yet accepted by the receiver")
    oldest = Family("smsgw_webhook_oldest_pending_age_seconds", "gauge",
                    "Age of the oldest delivery a webhook has not yet accepted (0: none waiting)")
    finished = Family("smsgw_webhook_deliveries", "gauge", "Finished webhook deliveries in the store by state "
                      "(pruned after the retention)")
    for name, entry in sorted(stats.items()):
        pending.add(entry.get(DELIVERY_PENDING, 0), webhook=name)
        oldest.add(entry.get("oldest_pending_age") or 0.0, webhook=name)
        for state in (DELIVERY_DONE, DELIVERY_EXPIRED):
            finished.add(entry.get(state, 0), webhook=name, state=state)
    return [pending, oldest, finished]
