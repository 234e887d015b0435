"""``GET /metrics``: the Prometheus text format (read back with prometheus_client's own parser, the
reference implementation of the format), with the values the store and the modems show."""

from __future__ import annotations

import math
from typing import Any

import pytest
from http_fixtures import Gateway, GatewayFactory, wait_modems_online
from prometheus_client.parser import text_string_to_metric_families
from waiting import async_wait_until

from appliance.http.exposition import Family, render
from appliance.store import OutboundRequest, Store
from drivers.simulator import Simulator

pytest_plugins = ["daemon_helpers", "http_fixtures"]

OUTSIDE = "+4915112345678"


def parse(text: str) -> dict[str, Any]:
    """name -> {"type", "samples": {(sample name, frozenset(labels)): value}}."""
    families: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {"type": family.type, "help": family.documentation,
                                 "samples": {(s.name, frozenset(s.labels.items())): s.value for s in family.samples}}
    return families


def value(families: dict[str, Any], name: str, **labels: str) -> float | None:
    for (sample, sample_labels), number in families.get(name.removesuffix("_total"), {}).get("samples", {}).items():
        if sample == name and set(labels.items()) <= sample_labels:
            return float(number)
    return None


def test_escaping_and_special_values_read_back_with_the_reference_parser() -> None:
    text = render([
        Family("x_total", "counter", "back\\slash and\nnewline").add(3, path='a "quoted"\nline\\'),
        Family("y", "gauge", "special").add(math.inf, kind="up").add(-math.inf, kind="down").add(0.25, kind="q"),
    ])
    families = parse(text)
    assert families["x"]["type"] == "counter" and families["x"]["help"] == "back\\slash and\nnewline"
    assert families["x"]["samples"] == {("x_total", frozenset({("path", 'a "quoted"\nline\\')})): 3.0}
    assert families["y"]["samples"][("y", frozenset({("kind", "up")}))] == math.inf
    assert families["y"]["samples"][("y", frozenset({("kind", "down")}))] == -math.inf
    assert families["y"]["samples"][("y", frozenset({("kind", "q")}))] == 0.25
    with pytest.raises(ValueError):
        Family("z", "counter", "a counter without _total")
    with pytest.raises(ValueError):
        Family("z", "gauge", "x").add(1, **{"bad-label": "x"})


async def scrape(gateway: Gateway) -> dict[str, Any]:
    status, text, headers = await gateway.request("GET", "/metrics", token="reader")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return parse(text)


async def test_metrics_count_messages_modems_recoveries_and_at_errors(gateway_factory: GatewayFactory,
                                                                      sim: Simulator) -> None:
    gateway = await gateway_factory(ports=sim.ports[:1])
    await wait_modems_online(gateway, count=1)
    with Store(gateway.db) as store:
        (ok,) = store.enqueue([OutboundRequest(to=OUTSIDE, text="fine", source="cli")])

    async def sent() -> bool:
        return value(await scrape(gateway), "smsgw_messages", source="cli", modem="sim0", state="sent") == 1

    await async_wait_until(sent, timeout=15, interval=0.05, what="one sent")
    sim.fault(0, "cms-error:21")  # a permanent error: the next send fails
    with Store(gateway.db) as store:
        store.enqueue([OutboundRequest(to=OUTSIDE, text="refused", source="alert:x")])

    async def failed() -> bool:
        return value(await scrape(gateway), "smsgw_messages", source="alert:x", modem="sim0", state="failed") == 1

    await async_wait_until(failed, timeout=15, interval=0.05, what="one failed")
    families = await scrape(gateway)
    assert value(families, "smsgw_at_errors_total", modem="sim0", kind="cms", code="21") == 1
    assert value(families, "smsgw_queue_depth", state="sent") == 1
    assert value(families, "smsgw_queue_depth", state="failed") == 1
    assert value(families, "smsgw_queue_depth", state="queued") == 0
    assert value(families, "smsgw_oldest_queued_age_seconds") == 0
    assert value(families, "smsgw_message_parts", modem="sim0", state="sent") == 1
    assert value(families, "smsgw_modem_up", modem="sim0") == 1
    assert value(families, "smsgw_modem_state", modem="sim0", state="online") == 1
    assert (value(families, "smsgw_store_size_bytes") or 0) > 0
    assert value(families, "smsgw_info", version=__import__("appliance").__version__) == 1
    assert (value(families, "smsgw_http_requests_total", route="/metrics", status="200") or 0) >= 3
    assert families["smsgw_modem_recoveries"]["type"] == "counter"

    async def radio() -> bool:
        return value(await scrape(gateway), "smsgw_modem_signal_dbm", modem="sim0") is not None

    await async_wait_until(radio, timeout=15, interval=0.1, what="signal read")
    families = await scrape(gateway)
    assert (value(families, "smsgw_modem_signal_dbm", modem="sim0") or 0) < 0
    assert value(families, "smsgw_modem_registration", modem="sim0", state="home") == 1

    sim.fault(0, "hang")  # pings time out: the modem leaves rotation and the ladder starts

    async def down() -> bool:
        return value(await scrape(gateway), "smsgw_modem_up", modem="sim0") == 0

    await async_wait_until(down, timeout=15, interval=0.05, what="modem down")
    sim.fault(0, "recover")

    async def recovered() -> dict[str, Any] | None:
        families = await scrape(gateway)
        rungs = [v for (name, _), v in families["smsgw_modem_recoveries"]["samples"].items()
                 if name == "smsgw_modem_recoveries_total"]
        return families if value(families, "smsgw_modem_up", modem="sim0") == 1 and sum(rungs) >= 1 else None

    families = await async_wait_until(recovered, timeout=30, interval=0.1, what="recovered")
    assert (value(families, "smsgw_at_errors_total", modem="sim0", kind="timeout") or 0) >= 1


async def test_the_webhook_backlog_is_scraped_per_webhook(gateway_factory: GatewayFactory, sim: Simulator) -> None:
    """A webhook whose receiver is down keeps its deliveries pending: /metrics shows how many and how old the
    oldest is; a webhook whose receiver answers has none waiting."""
    from mosquitto import free_port
    from webhook_receiver import Receiver

    secret = "0123456789abcdef-webhook-secret"
    receiver = await Receiver(free_port()).start()
    try:
        hooks = (f'\n[[webhooks]]\nname = "down"\nurl = "http://127.0.0.1:{free_port()}/hook"\nsecret = "{secret}"\n'
                 'events = ["message"]\nretry_base = 0.2\nretry_max = 0.5\n'
                 f'\n[[webhooks]]\nname = "up"\nurl = "{receiver.url}"\nsecret = "{secret}"\nevents = ["message"]\n')
        gateway = await gateway_factory(ports=sim.ports[:1], extra=hooks)
        with Store(gateway.db) as store:
            store.enqueue([OutboundRequest(to=OUTSIDE, text="hooked", source="cli")])

        async def backlog() -> dict[str, Any] | None:
            families = await scrape(gateway)
            pending = value(families, "smsgw_webhook_pending", webhook="down") or 0
            age = value(families, "smsgw_webhook_oldest_pending_age_seconds", webhook="down") or 0
            delivered = value(families, "smsgw_webhook_deliveries", webhook="up", state="delivered") or 0
            drained = value(families, "smsgw_webhook_pending", webhook="up") == 0
            # queued, sending, sent: "down" holds them all, "up" has delivered them (and has none waiting)
            return families if pending >= 2 and age > 0 and delivered >= 2 and drained else None

        families = await async_wait_until(backlog, timeout=30, interval=0.1, what="a backlog on 'down' only")
        assert value(families, "smsgw_webhook_oldest_pending_age_seconds", webhook="up") == 0
        assert value(families, "smsgw_webhook_deliveries", webhook="down", state="delivered") == 0
        assert families["smsgw_webhook_pending"]["type"] == "gauge"
        with Store(gateway.db) as store:
            stats = store.webhook_stats()
        assert value(families, "smsgw_webhook_pending", webhook="down") <= stats["down"]["pending"]
    finally:
        await receiver.stop()
