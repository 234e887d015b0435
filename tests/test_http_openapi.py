"""The OpenAPI document at /api/v1/openapi.json is kept true: it is valid OpenAPI 3.1
(openapi-spec-validator), it lists every route of ``appliance.http.routes.ROUTES`` with its scope and
no other, and what a running server answers matches the documented schema of that status
(openapi-schema-validator's OAS 3.1 validator)."""

from __future__ import annotations

import re
from typing import Any

from http_fixtures import Gateway, GatewayFactory, wait_modems_online
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from appliance.http.openapi import document
from appliance.http.routes import ROUTES
from appliance.store import OutboundRequest, Store

pytest_plugins = ["daemon_helpers", "http_fixtures"]


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema


def test_every_route_is_documented_with_its_scope_and_nothing_else() -> None:
    paths = document()["paths"]
    documented = {(method.upper(), path) for path, item in paths.items() for method in item}
    assert documented == {(route.method, route.path) for route in ROUTES}
    for route in ROUTES:
        operation = paths[route.path][route.method.lower()]
        expected = [{"bearer": [route.scope]}] if route.scope is not None else []
        assert operation["security"] == expected, route
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", route.path)), route
        if route.scope is not None:
            assert {"401", "403", "429"} <= set(operation["responses"]), route


class Checker:
    """Validates answers against the document; remembers which (route, status) were seen."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.seen: set[tuple[str, str, int]] = set()

    def check(self, method: str, path: str, status: int, body: Any, content_type: str) -> None:
        operation = self.doc["paths"][path][method.lower()]
        assert str(status) in operation["responses"], f"{method} {path} answered {status}, not documented"
        content = operation["responses"][str(status)]["content"]
        media = "application/json" if "json" in content_type else content_type.split(";")[0]
        assert media in content, (method, path, status, content_type)
        schema = {**content[media]["schema"], "components": self.doc["components"]}
        OAS31Validator(schema).validate(body)
        self.seen.add((method, path, status))


async def call(gateway: Gateway, checker: Checker, method: str, route: str, url: str | None = None,
               **kwargs: Any) -> tuple[int, Any]:
    assert gateway.session is not None
    headers = dict(kwargs.pop("headers", {}))
    token = kwargs.pop("token", None)
    if token is not None:
        headers.update(gateway.auth(token))
    async with gateway.session.request(method, gateway.url + (url or route), headers=headers, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        checker.check(method, route, response.status, body, response.headers["Content-Type"])
        return response.status, body


async def test_live_answers_match_the_documented_schemas(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(http="token_burst = 1000")
    checker = Checker(document())
    await wait_modems_online(gateway)
    with Store(gateway.db) as store:
        (queued,) = store.enqueue([OutboundRequest(to="+4915112345678", text="documented", source="cli",
                                                   client_key="doc-1")])
    for route in ROUTES:
        if route.method == "GET" and "{" not in route.path:
            status, _ = await call(gateway, checker, "GET", route.path, token="ops")
            assert status == 200, route
    await call(gateway, checker, "GET", "/api/v1/messages/{id}", f"/api/v1/messages/{queued.id}", token="reader")
    await call(gateway, checker, "GET", "/api/v1/messages/{id}", "/api/v1/messages/424242", token="reader")
    await call(gateway, checker, "GET", "/api/v1/messages/{id}", "/api/v1/messages/x", token="reader")
    await call(gateway, checker, "GET", "/api/v1/messages", "/api/v1/messages?limit=1", token="reader")
    await call(gateway, checker, "GET", "/api/v1/messages", "/api/v1/messages?state=nope", token="reader")
    await call(gateway, checker, "GET", "/api/v1/inbox", "/api/v1/inbox?since=x", token="reader")
    await call(gateway, checker, "GET", "/api/v1/status")
    await call(gateway, checker, "GET", "/metrics", token="sender")
    await call(gateway, checker, "POST", "/api/v1/ussd", json={"code": "*100#"}, token="ops")
    await call(gateway, checker, "POST", "/api/v1/ussd", json={"code": "*100#", "modem": "x"}, token="ops")
    await call(gateway, checker, "POST", "/api/v1/ussd", json={"code": "*100#", "x": 1}, token="ops")
    await call(gateway, checker, "POST", "/api/v1/ussd", data=b"x" * 70_000, token="ops")
    send = "/api/v1/messages"
    status, _ = await call(gateway, checker, "POST", send, json={"to": "+4915112345678", "text": "x", "id": "k"},
                           token="sender")
    assert status == 202
    status, _ = await call(gateway, checker, "POST", send, json={"to": "+4915112345678", "text": "x", "id": "k"},
                           token="sender")
    assert status == 200
    status, _ = await call(gateway, checker, "POST", send, json={"to": ["+4915112345678", "+4915112345679"],
                                                                "text": "two"}, token="sender")
    assert status == 202
    await call(gateway, checker, "POST", send, json={"to": "+4915112345678"}, token="sender")
    await call(gateway, checker, "POST", send, json={"to": "112", "text": "x"}, token="sender")
    statuses = {status for _, _, status in checker.seen}
    assert {200, 202, 400, 401, 403, 404, 413, 422} <= statuses
