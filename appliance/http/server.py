"""The HTTP API server: aiohttp in the daemon's event loop, started and stopped with it.

``HttpServer(daemon).start()`` listens on ``[http] listen`` (TLS with ``[http.tls]``), registers
``routes.ROUTES`` behind the token check, and answers every error as JSON. Connections that sit
idle, or take longer than ``idle_timeout`` to send their headers, are closed (aiohttp's keep-alive
timer runs from the connection's start and after each answer); a body that does not arrive within
``body_timeout`` is answered 408. Handlers only touch the store in short calls on the loop, like
the MQTT bridge, so a flood of requests is answered (429 past a token's rate) without holding up
the modems or MQTT for longer than one such call at a time.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from appliance.http.auth import Authenticator, TokenRegistry
from appliance.http.config import HttpConfig
from appliance.http.errors import ApiError, error_middleware
from appliance.http.routes import ROUTES, Api, Route

if TYPE_CHECKING:
    from appliance.daemon import Daemon

LOG = logging.getLogger("appliance.http")

#: Seconds a clean stop waits for the requests in progress.
SHUTDOWN_TIMEOUT = 5.0


def _server_ssl(http: HttpConfig) -> ssl.SSLContext | None:
    if http.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(http.tls.cert, http.tls.key)
    return context


class HttpServer:
    """The API on ``[http] listen`` (see the module docstring)."""

    def __init__(self, daemon: Daemon) -> None:
        from appliance.http.send import SendIntake
        from appliance.intake import Intake, IntakePolicy

        http = daemon.config.http
        assert http is not None and daemon.store is not None
        self.http = http
        self.daemon = daemon
        self.auth = Authenticator(http, TokenRegistry(http, daemon.config.path))
        self.sender = SendIntake(Intake(IntakePolicy.from_config(daemon.config), daemon.store), http)
        self.api = Api(daemon, http, self.auth, self.sender)
        from appliance.http.page_routes import StatusPage

        self.page = StatusPage(daemon, http, self.auth, self.sender, self.api)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None  # the bound port (``listen`` may say 0 in tests)

    def _wrap(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        handler: Callable[[web.Request, Any], Awaitable[web.StreamResponse]] = getattr(self.api, route.handler)
        counts = self.api.requests

        async def answer(request: web.Request) -> web.StreamResponse:
            status = 500
            try:
                token = self.auth.check(request, route.scope) if route.scope is not None else None
                response = await handler(request, token)
                status = response.status
                return response
            except (ApiError, web.HTTPException) as exc:
                status = exc.status
                raise
            finally:
                counts[(route.path, status)] += 1

        return answer

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[error_middleware], client_max_size=self.http.max_body)
        for route in ROUTES:
            app.router.add_route(route.method, route.path, self._wrap(route))
        for method, path, handler in self.page.routes():
            app.router.add_route(method, path, self._counted(path, handler))
        return app

    def _counted(self, path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A status-page handler whose answers count in smsgw_http_requests_total (it checks its own login)."""
        counts = self.api.requests

        async def answer(request: web.Request) -> web.StreamResponse:
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            finally:
                counts[(path, status)] += 1

        return answer

    async def start(self) -> None:
        # lingering_time: after an answer that left the body unread (413, 408), what is still coming
        # is read and dropped for at most body_timeout seconds before the connection is closed
        runner = web.AppRunner(self.make_app(), access_log=None, keepalive_timeout=self.http.idle_timeout,
                               lingering_time=self.http.body_timeout, shutdown_timeout=SHUTDOWN_TIMEOUT,
                               handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.http.host, self.http.port, ssl_context=_server_ssl(self.http),
                           reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.http.port
        LOG.info("HTTP API on %s://%s (%d token(s))", "https" if self.http.tls else "http",
                 self.http.listen if self.http.port else f"{self.http.host}:{self.port}", len(self.http.tokens))

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

