"""The API's routes: each one a handler, its scope, and nothing else (docs/http.md lists them).

``ROUTES`` is the one table of (method, path, scope, handler name): the server registers it and the
OpenAPI test checks every entry against ``appliance.http.openapi``. Reads go through named Store
methods; sends through ``appliance.http.send`` (the intake); USSD through ``appliance.ussd.handle``.

The listings, the status and the store's part of the metrics are read in a worker thread on a
read-only connection of their own (SQLite's WAL lets a reader run beside the daemon's writes, and
releases the GIL while it reads): a scrape or a status over 100,000 messages takes a few hundred
milliseconds on a small machine, and none of it holds up the event loop, the modems or MQTT.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from appliance.http import metrics, views
from appliance.http.auth import Authenticator
from appliance.http.bodies import read_object
from appliance.http.config import HttpConfig
from appliance.http.errors import ApiError, json_response
from appliance.http.exposition import CONTENT_TYPE, render
from appliance.store import STATES, Store, StoreError

if TYPE_CHECKING:
    from appliance.daemon import Daemon
    from appliance.http.send import SendIntake

T = TypeVar("T")

#: Most items one list request returns; ``limit`` defaults to DEFAULT_LIMIT.
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
#: The fields of POST /api/v1/ussd (appliance.ussd.handle).
USSD_FIELDS = ("code", "modem", "session", "reply", "cancel", "timeout")
#: HTTP status of each appliance.ussd.UssdRequestError kind.
USSD_STATUS = {"bad_request": 400, "unknown_modem": 404, "unknown_session": 404, "busy": 409,
               "modem_unavailable": 503, "timeout": 504, "network": 502, "modem": 502}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str | None  # None: no token needed
    handler: str       # the name of the Api method


ROUTES: tuple[Route, ...] = (
    Route("POST", "/api/v1/messages", "send", "send"),
    Route("GET", "/api/v1/messages", "read", "list_messages"),
    Route("GET", "/api/v1/messages/{id}", "read", "get_message"),
    Route("GET", "/api/v1/inbox", "read", "inbox"),
    Route("GET", "/api/v1/modems", "read", "modems"),
    Route("GET", "/api/v1/status", "read", "status"),
    Route("POST", "/api/v1/ussd", "admin", "ussd"),
    Route("GET", "/api/v1/openapi.json", None, "openapi"),
    Route("GET", "/metrics", "read", "metrics"),
    Route("GET", "/healthz", None, "healthz"),
)


def _query(request: web.Request, known: tuple[str, ...]) -> Mapping[str, str]:
    for name in request.query:
        if name not in known:
            raise ApiError(400, f"unknown query parameter {name!r}; known: {', '.join(known) or 'none'}",
                           field=name, kind="unknown_field")
    return request.query


def _int_param(query: Mapping[str, str], name: str, default: int | None, *, minimum: int = 1,
               maximum: int | None = None) -> int | None:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name!r} must be a whole number, not {text!r}", field=name, kind="invalid") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"{minimum}-{maximum}" if maximum is not None else f"at least {minimum}"
        raise ApiError(400, f"{name!r} must be {bounds}, not {value}", field=name, kind="invalid")
    return value


class Api:
    """The handlers, bound to the running daemon."""

    def __init__(self, daemon: Daemon, http: HttpConfig, auth: Authenticator, sender: SendIntake) -> None:
        self.daemon = daemon
        self.http = http
        self.auth = auth
        self.sender = sender
        #: Answers by (route path, status), for smsgw_http_requests_total.
        self.requests: Counter[tuple[str, int]] = Counter()

    @property
    def store(self) -> Any:
        store = self.daemon.store
        if store is None:
            raise ApiError(503, "the store is not open", kind="unavailable")
        return store

    async def read(self, work: Callable[[Store], T]) -> T:
        """``work(store)`` in a worker thread on a read-only store of its own (see the module docstring)."""
        shown_text = self.store.shown_text  # PINs withheld as everywhere else
        path = self.daemon.config.store.path

        def run() -> T:
            with Store(path, read_only=True) as store:
                store.shown_text = shown_text
                return work(store)

        try:
            return await asyncio.to_thread(run)
        except StoreError as exc:
            raise ApiError(503, f"the store cannot be read: {exc}", kind="unavailable") from None

    # --- sending -----------------------------------------------------------------------------

    async def send(self, request: web.Request, token: Any) -> web.StreamResponse:
        return await self.sender.handle(request, token)

    # --- reading -----------------------------------------------------------------------------

    async def list_messages(self, request: web.Request, token: Any) -> web.StreamResponse:
        query = _query(request, ("state", "limit", "before"))
        state = query.get("state")
        if state is not None and state not in STATES:
            raise ApiError(400, f"unknown state {state!r}; one of {', '.join(STATES)}", field="state", kind="invalid")
        limit = _int_param(query, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)
        before = _int_param(query, "before", None)
        assert limit is not None
        rows = await self.read(lambda store: store.messages(state=state, limit=limit, before=before))
        document: dict[str, Any] = {"messages": [views.message(row) for row in rows]}
        if len(rows) == limit:
            document["next_before"] = rows[-1]["id"]
        return json_response(document)

    async def get_message(self, request: web.Request, token: Any) -> web.StreamResponse:
        text = request.match_info["id"]
        if not text.isdigit():
            raise ApiError(400, f"a message id is a whole number, not {text!r}", field="id", kind="invalid")
        row = await self.read(lambda store: store.message(int(text)))
        if row is None:
            raise ApiError(404, f"no message {text}", field="id", kind="not_found")
        return json_response(views.message(row, detail=True))

    async def inbox(self, request: web.Request, token: Any) -> web.StreamResponse:
        query = _query(request, ("since", "limit"))
        limit = _int_param(query, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)
        assert limit is not None
        since = query.get("since")
        after_id = since_time = None
        if since is not None:
            if since.isdigit():
                after_id = int(since)
            else:
                try:
                    since_time = views.parse_time(since)
                except ValueError:
                    raise ApiError(400, f"'since' must be the id of the last message seen or an RFC 3339 time "
                                   f"such as 2026-12-01T00:00:00Z, not {since!r}", field="since",
                                   kind="invalid") from None
        rows = await self.read(lambda store: store.inbox_after(after_id=after_id, since=since_time, limit=limit))
        document: dict[str, Any] = {"messages": [views.received(row) for row in rows]}
        document["last_id"] = rows[-1]["id"] if rows else after_id
        return json_response(document)

    async def modems(self, request: web.Request, token: Any) -> web.StreamResponse:
        _query(request, ())
        store = self.store
        recorded = store.modem_states()
        result = []
        for mc in self.daemon.config.modems:
            supervisor = self.daemon.supervisors.get(mc.id)
            status = supervisor.status() if supervisor is not None else recorded.get(mc.id, {"id": mc.id})
            status = {**status, "id": mc.id}
            result.append(views.modem(status, store.state_get("balance", mc.id, None)))
        return json_response({"modems": result})

    async def status(self, request: web.Request, token: Any) -> web.StreamResponse:
        from appliance.commands.status import collect

        _query(request, ())
        config = self.daemon.config
        document = await self.read(lambda store: collect(store, config))
        bridge = self.daemon.bridge
        if document.get("mqtt") is not None and bridge is not None:
            document["mqtt"]["connected"] = bool(bridge.connected)  # live, not the last record
        return json_response(document)

    async def ussd(self, request: web.Request, token: Any) -> web.StreamResponse:
        from appliance.ussd import UssdRequestError, handle

        body = await read_object(request, max_body=self.http.max_body, timeout=self.http.body_timeout,
                                 known=USSD_FIELDS)
        if self.daemon.ussd is None:
            raise ApiError(503, "USSD is not available", kind="unavailable")
        try:
            answer = await handle(self.daemon.ussd, body)
        except UssdRequestError as exc:
            raise ApiError(USSD_STATUS.get(exc.kind, 502), str(exc), kind=exc.kind) from None
        return json_response(answer)

    async def metrics(self, request: web.Request, token: Any) -> web.StreamResponse:
        _query(request, ())
        now = time.time()
        data = await self.read(lambda store: {**store.metrics(now), "webhooks": store.webhook_stats(now)})
        text = render(metrics.collect(self.daemon, self.requests, data, now))
        return web.Response(text=text, headers={"Content-Type": CONTENT_TYPE})

    # --- without a token ---------------------------------------------------------------------

    async def openapi(self, request: web.Request, token: Any) -> web.StreamResponse:
        from appliance.http.openapi import document

        return json_response(document(self.http))

    async def healthz(self, request: web.Request, token: Any) -> web.StreamResponse:
        started = time.monotonic()
        try:
            ok = self.daemon.store is not None and self.daemon.store.ping()
        except Exception as exc:  # noqa: BLE001 - the answer is the point
            raise ApiError(503, f"the store does not answer: {exc}", kind="unavailable") from None
        if not ok:
            raise ApiError(503, "the store is not open", kind="unavailable")
        return json_response({"status": "ok", "store_ms": round((time.monotonic() - started) * 1000, 3)})
