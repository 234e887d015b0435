"""``POST /api/v1/messages`` end to end: through the send intake, 202 only after the commit, the same
``id`` over HTTP and over MQTT is one message, refusals name the field, the token's source has its
daily cap, a full disk is 503 with nothing lost, and a flood of HTTP requests leaves MQTT working.

The daemon is ``smsgw run`` as a subprocess, with the simulator's modems and a real mosquitto.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import ROOT, daemon_env
from http_fixtures import TOKENS, Gateway, GatewayFactory, wait_modems_online
from mosquitto import Broker, Probe
from test_disk_full import fill, small_disk  # noqa: F401 - the fixture
from test_http_api import cli
from test_mqtt_e2e import mqtt_section
from waiting import async_wait_until

from appliance.store import Store
from drivers.simulator import Simulator

pytest_plugins = ["daemon_helpers", "http_fixtures", "mosquitto"]

OUTSIDE = "+4915112345678"
FIELD = "+4917099999999"


def stored(db: Path, message_id: int) -> dict[str, Any] | None:
    with Store(db) as store:
        return store.message(message_id)


def sent_to(sim: Simulator, text: str) -> int:
    return sum(1 for record in sim.network.sent if record["text"] == text)


async def post(gateway: Gateway, body: object, token: str = "erp", **kwargs: Any) -> tuple[int, Any]:
    status, answer, _ = await gateway.request("POST", "/api/v1/messages", token=token, json=body, **kwargs)
    return status, answer


@pytest.fixture
async def mqtt_gateway(gateway_factory: GatewayFactory, mosquitto: Broker) -> Gateway:
    return await gateway_factory(extra=mqtt_section(mosquitto) + '\n[sources."http:sender"]\ndaily_cap = 2\n')


async def test_a_request_is_answered_202_after_its_commit_and_is_sent(mqtt_gateway: Gateway, sim: Simulator) -> None:
    gateway = mqtt_gateway
    status, body = await post(gateway, {"to": OUTSIDE, "text": "hello over http", "report": True})
    assert status == 202
    assert body == {"id": body["id"], "to": OUTSIDE, "state": "queued", "parts": 1, "duplicate": False}
    row = stored(gateway.db, body["id"])  # in the file already: the answer came after the commit
    assert row is not None and (row["text"], row["source"], row["report"]) == ("hello over http", "http:erp", True)
    await async_wait_until(lambda: sent_to(sim, "hello over http") == 1, timeout=15, what="sent")
    status, several = await post(gateway, {"to": [OUTSIDE, "01701234567", OUTSIDE], "text": "to two",
                                           "priority": "high", "valid_for": 600})
    assert status == 202
    assert [(m["to"], m["parts"], m["duplicate"]) for m in several["messages"]] == [
        (OUTSIDE, 1, False), ("+491701234567", 1, False)]  # national numbers with [numbers] default_country


async def test_a_flash_message_held_until_send_at_is_sent_then_as_class_0(mqtt_gateway: Gateway,
                                                                          sim: Simulator) -> None:
    from datetime import UTC, datetime

    gateway = mqtt_gateway
    with Store(gateway.db) as store:
        send_at = store.clock() + 2.0
    stamp = datetime.fromtimestamp(send_at, UTC).isoformat()
    status, body = await post(gateway, {"to": OUTSIDE, "text": "evacuate hall 2", "class": 0, "send_at": stamp})
    assert status == 202
    status, shown, _ = await gateway.request("GET", f"/api/v1/messages/{body['id']}", token="erp")
    assert status == 200 and shown["class"] == 0
    assert datetime.fromisoformat(shown["send_at"].replace("Z", "+00:00")).timestamp() == pytest.approx(send_at, abs=0.001)
    await async_wait_until(lambda: sent_to(sim, "evacuate hall 2") == 1, timeout=20, what="sent when due")
    [record] = [r for r in sim.network.sent if r["text"] == "evacuate hall 2"]
    assert record["class"] == 0
    # the network has it once the modem answered +CMGS; the TP-MR's commit follows
    await async_wait_until(lambda: (stored(gateway.db, body["id"]) or {}).get("state") == "sent", timeout=10,
                           what="the send committed")
    with Store(gateway.db) as store:
        (part,) = store.parts(body["id"])
    assert part.sent_at is not None and part.sent_at >= send_at - 1e-3  # not sent before it was due


async def test_a_repeated_id_is_200_with_the_existing_message(mqtt_gateway: Gateway, sim: Simulator) -> None:
    gateway = mqtt_gateway
    status, first = await post(gateway, {"to": OUTSIDE, "text": "once only", "id": "order-17"})
    assert status == 202
    status, again = await post(gateway, {"to": OUTSIDE, "text": "once only", "id": "order-17"})
    assert status == 200 and again["duplicate"] is True
    assert (again["id"], again["client_id"], again["text"]) == (first["id"], "order-17", "once only")
    status, header = await post(gateway, {"to": OUTSIDE, "text": "once only"}, headers={"Idempotency-Key": "order-17"})
    assert (status, header["id"], header["duplicate"]) == (200, first["id"], True)
    status, error = await post(gateway, {"to": OUTSIDE, "text": "x", "id": "a"}, headers={"Idempotency-Key": "b"})
    assert (status, error["field"]) == (400, "id")
    await async_wait_until(lambda: sent_to(sim, "once only") == 1, timeout=15, what="sent")
    with Store(gateway.db) as store:
        assert sum(1 for m in store.outbox(100) if m["client_key"] == "order-17") == 1


async def test_an_http_and_an_mqtt_request_with_the_same_id_are_one_message(
        mqtt_gateway: Gateway, mosquitto: Broker, sim: Simulator) -> None:
    gateway = mqtt_gateway
    probe = Probe(mosquitto, "smsgw/bridge/response/send")
    try:
        probe.subscribed()
        # MQTT first, then HTTP
        probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "mqtt first", "id": "shared-1",
                                                "transaction": "m1"}))
        response = await async_wait_until(lambda: probe.json("smsgw/bridge/response/send"), timeout=15,
                                          what="the MQTT answer")
        mqtt_id = response[0]["data"]["id"]  # type: ignore[index]
        status, body = await post(gateway, {"to": OUTSIDE, "text": "mqtt first", "id": "shared-1"})
        assert (status, body["id"], body["duplicate"], body["source"]) == (200, mqtt_id, True, "mqtt")
        # HTTP first, then MQTT
        status, body = await post(gateway, {"to": OUTSIDE, "text": "http first", "id": "shared-2"})
        assert status == 202
        probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "http first", "id": "shared-2",
                                                "transaction": "m2"}))
        answers = await async_wait_until(
            lambda: [r for r in probe.json("smsgw/bridge/response/send") if r.get("transaction") == "m2"],  # type: ignore[union-attr]
            timeout=15, what="the second MQTT answer")
        assert answers[0]["data"] == {"id": body["id"], "to": OUTSIDE, "state": answers[0]["data"]["state"],
                                      "duplicate": True}
    finally:
        probe.close()
    await async_wait_until(lambda: sent_to(sim, "mqtt first") == 1 and sent_to(sim, "http first") == 1, timeout=15,
                           what="both sent")
    with Store(gateway.db) as store:
        keys = [m["client_key"] for m in store.outbox(100)]
    assert sorted(keys) == ["shared-1", "shared-2"]


async def test_bad_requests_are_400_or_422_naming_the_field(mqtt_gateway: Gateway) -> None:
    gateway = mqtt_gateway
    cases: list[tuple[object, int, str | None, str]] = [
        ({"text": "no recipient"}, 400, "to", "missing 'to'"),
        ({"to": OUTSIDE}, 400, "text", "missing 'text'"),
        ({"to": 4915112345678, "text": "x"}, 400, "to", "got a number"),
        ({"to": OUTSIDE, "text": ["x"]}, 400, "text", "got an array"),
        ({"to": OUTSIDE, "text": ""}, 400, "text", "empty"),
        ({"to": OUTSIDE, "text": "x", "priority": "urgent"}, 400, "priority", "unknown priority"),
        ({"to": OUTSIDE, "text": "x", "report": "yes"}, 400, "report", "true or false"),
        ({"to": OUTSIDE, "text": "x", "valid_for": -5}, 400, "valid_for", "positive number"),
        ({"to": OUTSIDE, "text": "x", "transaction": "t"}, 400, "transaction", "unknown field 'transaction'"),
        ({"to": OUTSIDE, "text": "x", "class": 1}, 400, "class", "'class' must be 0"),
        ({"to": OUTSIDE, "text": "x", "send_at": "at noon"}, 400, "send_at", "not an ISO 8601 time"),
        ({"to": OUTSIDE, "text": "x", "send_at": "2020-01-01T00:00:00Z"}, 400, "send_at", "in the past"),
        ({"to": "+4916012345678", "text": "x"}, 422, "to", "destination"),  # blocked = ["+4916"]
        ({"to": "12345", "text": "x"}, 422, "to", "destination"),  # a short code
        ({"to": OUTSIDE, "text": "y" * 1000}, 422, "text", "text too long"),  # max_parts = 3
    ]
    for request, status, field, reason in cases:
        got, body = await post(gateway, request)
        assert (got, body.get("field")) == (status, field), (request, body)
        assert reason in body["error"], (request, body)
    code, _, err = await cli("optout", "--config", str(gateway.config), "add", FIELD)
    assert code == 0, err
    got, body = await post(gateway, {"to": FIELD, "text": "promo"})
    assert (got, body["field"], body["kind"]) == (422, "to", "opted_out")
    got, body = await post(gateway, {"to": FIELD, "text": "fire alarm", "priority": "critical"})
    assert got == 202
    with Store(gateway.db) as store:
        assert [m["text"] for m in store.outbox(100)] == ["fire alarm"]  # nothing refused was written


async def test_the_daily_cap_of_a_token_counts_per_source_and_smsgw_status_shows_it(mqtt_gateway: Gateway) -> None:
    gateway = mqtt_gateway  # [sources."http:sender"] daily_cap = 2
    answers = [await post(gateway, {"to": OUTSIDE, "text": f"capped {n}"}, token="sender") for n in range(3)]
    assert [status for status, _ in answers] == [202, 202, 429]
    assert answers[2][1]["kind"] == "over_cap" and "daily cap" in answers[2][1]["error"]
    status, _ = await post(gateway, {"to": OUTSIDE, "text": "another client"}, token="erp")
    assert status == 202
    status, body = await post(gateway, {"to": OUTSIDE, "text": "capped 0", "id": "k"}, token="sender")
    assert status == 429  # a new message (the id was not used): still over the cap
    code, out, err = await cli("status", "--json", "--config", str(gateway.config))
    assert code == 0, err
    sources = json.loads(out)["sources_today"]
    assert sources["http:sender"] == {"accepted": 2, "sent": sources["http:sender"]["sent"], "cap": 2, "remaining": 0}
    assert sources["http:erp"]["accepted"] == 1
    _, status_doc, _ = await gateway.request("GET", "/api/v1/status", token="reader")
    assert status_doc["sources_today"]["http:sender"]["remaining"] == 0


async def test_a_flood_of_requests_is_answered_and_mqtt_keeps_working(
        gateway_factory: GatewayFactory, mosquitto: Broker, sim: Simulator) -> None:
    gateway = await gateway_factory(extra=mqtt_section(mosquitto), http="token_rate = 5\ntoken_burst = 10")
    await wait_modems_online(gateway)
    probe = Probe(mosquitto, "smsgw/bridge/response/send")
    try:
        probe.subscribed()
        flood = [asyncio.create_task(post(gateway, {"to": OUTSIDE, "text": f"flood {n}"})) for n in range(400)]
        probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "during the flood", "transaction": "f"}))
        statuses = [status for status, _ in await asyncio.gather(*flood)]
        assert set(statuses) <= {202, 429} and 1 <= statuses.count(202) <= 400 - statuses.count(429)
        assert statuses.count(429) > 0
        await async_wait_until(lambda: probe.json("smsgw/bridge/response/send"), timeout=15, what="MQTT answered")
        await async_wait_until(lambda: sent_to(sim, "during the flood") == 1, timeout=30, what="MQTT request sent")
    finally:
        probe.close()
    with Store(gateway.db) as store:
        flooded = sum(1 for m in store.outbox(1000) if m["text"].startswith("flood "))
    assert flooded == statuses.count(202)  # every 202 is a committed message, and nothing else is


async def test_a_full_disk_is_503_and_a_request_answered_202_was_committed(
        gateway_factory: GatewayFactory, small_disk: Path) -> None:  # noqa: F811
    gateway = await gateway_factory(directory=small_disk / "gw", ports=[])
    filler = fill(small_disk)
    try:
        answers = [await post(gateway, {"to": OUTSIDE, "text": f"full {n} " + "y" * 140, "id": f"d{n}"})
                   for n in range(30)]
        refused = [body for status, body in answers if status == 503]
        assert refused, answers
        assert all(body["kind"] == "store_unavailable" and "full" in body["error"] for body in refused)
        assert {status for status, _ in answers} <= {202, 503}
    finally:
        filler.unlink()
        os.sync()
    accepted = {f"d{n}" for n, (status, _) in enumerate(answers) if status == 202}
    retried = [await post(gateway, {"to": OUTSIDE, "text": f"full {n} " + "y" * 140, "id": f"d{n}"})
               for n in range(30)]
    assert all(status in (200, 202) for status, _ in retried)
    assert {f"d{n}" for n, (status, _) in enumerate(retried) if status == 200} == accepted  # nothing lost
    with Store(gateway.db) as store:
        assert len({m["client_key"] for m in store.outbox(100)}) == 30


async def test_the_readme_curl_line_sends_an_sms(gateway_factory: GatewayFactory, sim: Simulator) -> None:
    """The two lines of the README's HTTP section, as written (only the address is this test's)."""
    readme = (ROOT / "README.md").read_text().split("## HTTP API", 1)[1]
    lines = [line for line in readme.split("```sh", 1)[1].split("```", 1)[0].splitlines() if line.strip()]
    assert lines[0].startswith("TOKEN=$(smsgw token create erp") and lines[1].startswith("curl ")
    gateway = await gateway_factory(tokens={"reader": TOKENS["reader"]})  # no "erp" yet: the README makes it
    script = "set -euo pipefail\n" + "\n".join(lines).replace("http://127.0.0.1:8080", gateway.url)
    env = {**daemon_env(), "SMSGW_CONFIG": str(gateway.config),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = await asyncio.create_subprocess_exec("bash", "-c", script, env=env, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    answer = json.loads(out)
    assert (answer["state"], answer["to"], answer["duplicate"]) == ("queued", "+4917612345678", False)
    await async_wait_until(lambda: sent_to(sim, "Freezer 3: -4 °C") == 1, timeout=15, what="the README's SMS sent")
    row = stored(gateway.db, answer["id"])
    assert row is not None and row["source"] == "http:erp"
