"""The HTTP API end to end: ``smsgw run`` with ``[http]`` as a subprocess on the simulator's modems,
an aiohttp client (and raw sockets, for the slow clients) on loopback.

Authentication follows RFC 6750 (the Bearer token usage): section 2.1 (``Authorization: Bearer``),
section 3 (``WWW-Authenticate: Bearer`` on 401, ``error="invalid_token"``, ``error="insufficient_scope"``
on 403); 413 and 429 with ``Retry-After`` are RFC 9110 section 15.5.14 and RFC 6585 section 4.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
from daemon_helpers import ROOT, daemon_env
from http_fixtures import Gateway, GatewayFactory, raw_exchange, wait_modems_online
from mosquitto import Certs
from waiting import async_wait_until

from appliance.store import OutboundRequest, Store
from drivers.simulator import Simulator

pytest_plugins = ["daemon_helpers", "http_fixtures", "mosquitto"]

OUTSIDE = "+4915112345678"


async def cli(*args: str) -> tuple[int, str, str]:
    """``smsgw ARGS`` in its own process: exit status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "appliance", *args, cwd=ROOT, env=daemon_env(),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def enqueue(db: Path, to: str, text: str, key: str | None = None) -> int:
    with Store(db) as store:
        (result,) = store.enqueue([OutboundRequest(to=to, text=text, source="cli", client_key=key)])
        return result.id


# --- authentication and scopes -------------------------------------------------------------


async def test_healthz_and_the_openapi_document_need_no_token(gateway: Gateway) -> None:
    status, body, _ = await gateway.request("GET", "/healthz")
    assert status == 200 and body["status"] == "ok"
    status, body, _ = await gateway.request("GET", "/api/v1/openapi.json")
    assert status == 200 and body["openapi"] == "3.1.0"


async def test_a_missing_malformed_or_unknown_token_is_401_with_www_authenticate(gateway: Gateway) -> None:
    status, body, headers = await gateway.request("GET", "/api/v1/messages")
    assert status == 401 and "Authorization" in body["error"]
    assert headers["WWW-Authenticate"] == 'Bearer realm="smsgw"'
    status, body, headers = await gateway.request("GET", "/api/v1/messages", headers={"Authorization": "Basic eDp5"})
    assert status == 401 and 'error="invalid_request"' in headers["WWW-Authenticate"]
    status, body, headers = await gateway.request("GET", "/api/v1/messages",
                                                  headers={"Authorization": "Bearer smsgw_not-a-token"})
    assert status == 401 and body["error"] == "unknown or revoked token"
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert "smsgw_not-a-token" not in gateway.daemon.log_text()  # the log names the address, not the secret


async def test_a_token_without_the_route_scope_is_403_and_admin_may_do_everything(gateway: Gateway) -> None:
    status, body, headers = await gateway.request("GET", "/api/v1/messages", token="sender")
    assert status == 403 and "'read'" in body["error"]
    assert headers["WWW-Authenticate"] == 'Bearer realm="smsgw", error="insufficient_scope", scope="read"'
    status, body, _ = await gateway.request("POST", "/api/v1/ussd", token="erp", json={"code": "*100#"})
    assert status == 403 and "'admin'" in body["error"]
    status, body, _ = await gateway.request("GET", "/metrics", token="sender")
    assert status == 403
    for route in ("/api/v1/messages", "/api/v1/inbox", "/api/v1/modems", "/api/v1/status", "/metrics"):
        status, _, _ = await gateway.request("GET", route, token="ops")
        assert status == 200, route


async def test_failed_attempts_from_one_address_are_refused_429_but_not_other_addresses(
        gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(http="auth_failures = 3")
    bad = {"Authorization": "Bearer smsgw_guess"}
    for _ in range(3):
        status, _, _ = await gateway.request("GET", "/api/v1/status", headers=bad)
        assert status == 401
    status, body, headers = await gateway.request("GET", "/api/v1/status", token="reader")  # even a good token
    assert status == 429 and "failed authentication" in body["error"]
    assert 1 <= int(headers["Retry-After"]) <= 60
    # another client address (the whole of 127.0.0.0/8 is loopback) is not held up
    other = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    try:
        async with other.get(gateway.url + "/api/v1/status", headers=gateway.auth("reader")) as response:
            assert response.status == 200
    finally:
        await other.close()
    status, _, _ = await gateway.request("GET", "/healthz")  # routes without a token still answer
    assert status == 200


async def test_a_token_past_its_request_rate_gets_429_and_other_tokens_do_not(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(http="token_rate = 0.01\ntoken_burst = 3")
    answers = [(await gateway.request("GET", "/api/v1/messages", token="reader"))[0] for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    status, body, headers = await gateway.request("GET", "/api/v1/messages", token="reader")
    assert status == 429 and "request rate" in body["error"] and int(headers["Retry-After"]) >= 1
    status, _, _ = await gateway.request("GET", "/api/v1/messages", token="erp")
    assert status == 200


async def test_a_token_created_while_the_daemon_runs_works_at_once_and_a_revoked_one_stops(
        gateway: Gateway) -> None:
    code, out, err = await cli("token", "--config", str(gateway.config), "create", "crm", "--scopes", "read")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("smsgw_") and token not in gateway.config.read_text()

    async def answer() -> int:
        return (await gateway.request("GET", "/api/v1/status", headers={"Authorization": f"Bearer {token}"}))[0]

    await async_wait_until(lambda: _is(answer, 200), timeout=10,
                           what="the new token accepted")
    assert (await cli("token", "--config", str(gateway.config), "revoke", "crm"))[0] == 0
    await async_wait_until(lambda: _is(answer, 401), timeout=10, what="the revoked token refused")


async def _is(call: object, expected: int) -> bool:
    return await call() == expected  # type: ignore[operator,no-any-return]


# --- bad input and slow clients ------------------------------------------------------------


async def test_a_body_over_the_limit_is_413_with_or_without_content_length(gateway: Gateway) -> None:
    big = json.dumps({"code": "*100#", "reply": "x" * 70_000})
    status, body, _ = await gateway.request("POST", "/api/v1/ussd", token="ops", data=big,
                                            headers={"Content-Type": "application/json"})
    assert status == 413 and "65536" in body["error"]

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b"x" * 5000

    status, body, _ = await gateway.request("POST", "/api/v1/ussd", token="ops", data=chunks())
    assert status == 413 and "over the limit" in body["error"]
    status, _, _ = await gateway.request("GET", "/healthz")
    assert status == 200


async def test_malformed_json_and_unknown_fields_are_400_naming_the_problem(gateway: Gateway) -> None:
    cases = [
        (b'{"code": "*100#"', "not JSON", None),
        (b"[1, 2]", "must be a JSON object, not an array", None),
        (b"", "empty", None),
        (b'{"code": "*100#", "colour": "red"}', "unknown field 'colour'", "colour"),
        (b'{"code": "\\ud800"}', "lone surrogate", None),
        (b"\xff\xfe", "not UTF-8", None),
    ]
    for raw, reason, field in cases:
        status, body, _ = await gateway.request("POST", "/api/v1/ussd", token="ops", data=raw,
                                                headers={"Content-Type": "application/json"})
        assert status == 400, (raw, body)
        assert reason in body["error"], (raw, body)
        assert body.get("field") == field
    status, body, _ = await gateway.request("POST", "/api/v1/ussd", token="ops", json={"code": "*100#", "timeout": "x"})
    assert status == 400 and "'timeout'" in body["error"]
    status, body, _ = await gateway.request("GET", "/api/v1/messages?colour=red", token="reader")
    assert (status, body["field"]) == (400, "colour")
    status, body, _ = await gateway.request("GET", "/api/v1/messages?limit=0", token="reader")
    assert (status, body["field"]) == (400, "limit")
    status, body, _ = await gateway.request("GET", "/api/v1/messages?state=lost", token="reader")
    assert (status, body["field"]) == (400, "state") and "queued" in body["error"]
    status, body, _ = await gateway.request("GET", "/api/v1/inbox?since=yesterday", token="reader")
    assert (status, body["field"]) == (400, "since")
    status, body, headers = await gateway.request("DELETE", "/api/v1/messages", token="erp")
    assert status == 405 and "DELETE" in body["error"] and "GET" in headers["Allow"]


async def test_slow_clients_are_cut_off_and_others_are_answered_meanwhile(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(http="idle_timeout = 0.5\nbody_timeout = 0.5")
    # headers that never end: the connection is closed (aiohttp's keep-alive timer runs from the connect)
    trickle = asyncio.create_task(raw_exchange(gateway.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"))
    # a body that never comes: 408 once the headers are in
    token = gateway.tokens["ops"][0].encode()
    stalled = asyncio.create_task(raw_exchange(
        gateway.port, b"POST /api/v1/ussd HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
        b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"code\": "))
    status, _, _ = await gateway.request("GET", "/healthz")  # answered while both hang
    assert status == 200
    assert await trickle == b""  # closed without an answer
    answer = await stalled
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within 0.5 s" in answer


async def test_the_api_over_tls(gateway_factory: GatewayFactory, tls_certs: Certs) -> None:
    import ssl

    context = ssl.create_default_context(cafile=str(tls_certs.ca))
    gateway = await gateway_factory(tls=(tls_certs.server_cert, tls_certs.server_key),
                                    connector=aiohttp.TCPConnector(ssl=context))
    status, body, _ = await gateway.request("GET", "/api/v1/status", token="reader")
    assert status == 200 and body["daemon"]["running"] is True
    # plain HTTP on the TLS port gets no answer
    assert not (await raw_exchange(gateway.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")).startswith(b"HTTP/1.1 200")


# --- the read routes -----------------------------------------------------------------------


async def test_messages_list_and_detail_show_state_parts_modem_and_delivery(gateway: Gateway) -> None:
    long_text = "Pump 7 pressure low, check the valves at station north. " * 3
    first = enqueue(gateway.db, OUTSIDE, "hello over http", key="order-1")
    second = enqueue(gateway.db, OUTSIDE, long_text)

    async def sent() -> bool:
        _, body, _ = await gateway.request("GET", "/api/v1/messages?state=sent", token="reader")
        return {m["id"] for m in body["messages"]} == {first, second}

    await async_wait_until(sent, timeout=20, interval=0.05, what="both sent")
    status, body, _ = await gateway.request("GET", f"/api/v1/messages/{second}", token="reader")
    assert status == 200
    assert (body["state"], body["parts"], body["to"], body["source"]) == ("sent", 2, OUTSIDE, "cli")
    assert body["modem"] in ("sim0", "sim1")
    assert [p["sequence"] for p in body["delivery"]] == [1, 2]  # 168 GSM 7-bit characters: 153 + 15
    assert all(p["state"] == "sent" and p["message_reference"] is not None and p["sent_at"] for p in body["delivery"])
    status, body, _ = await gateway.request("GET", f"/api/v1/messages/{first}", token="reader")
    assert (body["client_id"], body["text"], body["parts"]) == ("order-1", "hello over http", 1)
    status, body, _ = await gateway.request("GET", "/api/v1/messages?limit=1", token="reader")
    assert [m["id"] for m in body["messages"]] == [second] and body["next_before"] == second
    status, body, _ = await gateway.request("GET", f"/api/v1/messages?limit=1&before={second}", token="reader")
    assert [m["id"] for m in body["messages"]] == [first]
    status, body, _ = await gateway.request("GET", "/api/v1/messages?state=queued", token="reader")
    assert body == {"messages": []}
    status, body, _ = await gateway.request("GET", "/api/v1/messages/999", token="reader")
    assert status == 404 and body["field"] == "id"
    status, body, _ = await gateway.request("GET", "/api/v1/messages/abc", token="reader")
    assert status == 400 and body["field"] == "id"


async def test_inbox_polls_by_last_id_or_by_time(gateway: Gateway, sim: Simulator) -> None:
    await wait_modems_online(gateway)
    before = time.time() - 1
    sim.inject(0, "+4917099999999", "first")
    sim.inject(1, "+4917088888888", "second")

    async def both() -> object:
        _, body, _ = await gateway.request("GET", "/api/v1/inbox", token="reader")
        return len(body["messages"]) == 2 and body

    body = await async_wait_until(both, timeout=15, interval=0.05, what="both received")
    assert isinstance(body, dict)
    assert {(m["from"], m["text"], m["state"]) for m in body["messages"]} == {
        ("+4917099999999", "first", "received"), ("+4917088888888", "second", "received")}
    ids = [m["id"] for m in body["messages"]]
    assert ids == sorted(ids) and body["last_id"] == ids[-1]
    _, newer, _ = await gateway.request("GET", f"/api/v1/inbox?since={ids[0]}", token="reader")
    assert [m["id"] for m in newer["messages"]] == ids[1:]
    _, none, _ = await gateway.request("GET", f"/api/v1/inbox?since={ids[-1]}", token="reader")
    assert none == {"messages": [], "last_id": ids[-1]}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before))
    _, by_time, _ = await gateway.request("GET", f"/api/v1/inbox?since={stamp}&limit=1", token="reader")
    assert [m["id"] for m in by_time["messages"]] == ids[:1]


async def test_modems_show_state_signal_operator_and_sim(gateway: Gateway) -> None:
    await wait_modems_online(gateway)

    async def radio_read() -> object:
        _, body, _ = await gateway.request("GET", "/api/v1/modems", token="reader")
        return all(m["signal"] is not None for m in body["modems"]) and body

    body = await async_wait_until(radio_read, timeout=15, interval=0.1, what="signal read")
    assert isinstance(body, dict)
    assert [m["id"] for m in body["modems"]] == ["sim0", "sim1"]
    for modem in body["modems"]:
        assert modem["state"] == "online" and modem["healthy"] is True
        assert isinstance(modem["signal"]["dbm"], int) and modem["signal"]["dbm"] < 0
        assert modem["operator"]["name"] and modem["registration"] in ("home", "roaming")
        assert modem["sim"] == "READY" and modem["imei"]


async def test_status_is_the_document_of_smsgw_status_json(gateway: Gateway) -> None:
    enqueue(gateway.db, OUTSIDE, "counted")
    status, body, _ = await gateway.request("GET", "/api/v1/status", token="reader")
    assert status == 200
    code, out, err = await cli("status", "--json", "--config", str(gateway.config))
    assert code == 0, err
    expected = json.loads(out)
    assert set(body) == set(expected)
    assert body["daemon"]["running"] is True
    assert body["sources_today"]["cli"]["accepted"] == 1


async def test_ussd_over_http_single_and_session_steps(gateway: Gateway) -> None:
    await wait_modems_online(gateway)
    status, body, _ = await gateway.request("POST", "/api/v1/ussd", token="ops", json={"code": "*100#"})
    assert status == 200 and body["text"].startswith("Balance") and body["session_open"] is False
    status, menu, _ = await gateway.request("POST", "/api/v1/ussd", token="ops", json={"code": "*101#", "modem": "sim1"})
    assert status == 200 and menu["session_open"] and menu["modem"] == "sim1"
    status, body, _ = await gateway.request("POST", "/api/v1/ussd", token="ops",
                                            json={"session": menu["session"], "cancel": True})
    assert status == 200 and body["cancelled"] is True
    status, body, _ = await gateway.request("POST", "/api/v1/ussd", token="ops",
                                            json={"session": menu["session"], "reply": "1"})
    assert status == 404 and body["kind"] == "unknown_session"
    status, body, _ = await gateway.request("POST", "/api/v1/ussd", token="ops", json={"code": "*100#", "modem": "x"})
    assert status == 404 and body["kind"] == "unknown_modem"


async def test_a_taken_port_leaves_the_daemon_running_without_http(gateway: Gateway,
                                                                   gateway_factory: GatewayFactory) -> None:
    second = await gateway_factory(port=gateway.port, start=False, ports=[])  # no modem: the first has them
    await second.daemon.start()
    await second.daemon.wait_running(timeout=20)
    assert second.daemon.running
    assert "HTTP API not started: cannot listen on 127.0.0.1" in second.daemon.log_text()
    assert await second.daemon.stop() == 0
    status, _, _ = await gateway.request("GET", "/healthz")  # the first one still serves
    assert status == 200
    assert await gateway.daemon.stop() == 0  # SIGTERM: the server stops with the daemon, exit 0
    assert "info daemon: stopped" in gateway.daemon.log_text()
