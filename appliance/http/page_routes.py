"""The status page's routes: ``GET /``, the login form, logout and the test-SMS form (docs/http.md).

- ``GET /``: the page (``appliance.http.page``) for a logged-in browser, else a redirect to ``/login``.
- ``GET /login`` / ``POST /login``: the form takes the ``[http] page_password`` or an API token with the
  ``read`` scope; a good one makes a session (``appliance.http.sessions``) and its cookie, a wrong one
  counts as a failed attempt of the client's address, as a wrong token does on the API (the same
  per-address limit answers 429 past ``[http] auth_failures`` a minute).
- ``POST /logout``: ends the session.
- ``POST /send``: a test SMS, through the same send intake as ``POST /api/v1/messages`` and ``B/send``
  (number policy, length, opt-outs, daily caps), from the source ``http:page`` (the page password) or
  ``http:<token>`` (a token, which needs the ``send`` scope to send). The answer redirects back to
  the page (Post/Redirect/Get), which says what became of it; the message is then in the list.

Every POST needs the CSRF token of its form; the forms are ``application/x-www-form-urlencoded``
and at most ``[http] max_body`` bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from appliance import __version__
from appliance.history import QUEUE_STATES
from appliance.http import page, views
from appliance.http.page import PageData
from appliance.http.sessions import LOGIN_COOKIE, LOGIN_FORM_TTL, SESSION_COOKIE, Session, Sessions, same
from appliance.http.tokens import token_hash
from appliance.intake import IntakeError
from appliance.store import STATES

if TYPE_CHECKING:
    from appliance.daemon import Daemon
    from appliance.http.auth import Authenticator
    from appliance.http.config import HttpConfig
    from appliance.http.routes import Api
    from appliance.http.send import SendIntake
    from appliance.store import Store

LOG = logging.getLogger("appliance.http")

#: Messages each way the page lists.
LISTED = 50
#: Seconds of history the charts show (24 h).
WINDOW = 24 * 3600.0
FORM_TYPE = "application/x-www-form-urlencoded"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8",
                        headers={**page.HEADERS, **(headers or {})})


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **page.HEADERS})


def read_store(store: Store, now: float, modem_ids: list[str]) -> dict[str, Any]:
    """The store's part of the page (run off the event loop, on a read-only store): the queue, the last
    messages each way, the modems' recorded states and balances, the last 24 h of samples, the webhooks."""
    return {"stats": store.stats(now), "outbound": store.messages(limit=LISTED),
            "inbound": store.inbox(limit=LISTED), "recorded": store.modem_states(),
            "balances": {modem_id: store.state_get("balance", modem_id, None) for modem_id in modem_ids},
            "history": store.history(now - WINDOW), "webhooks": store.webhook_stats(now)}


class StatusPage:
    """The handlers of the page, bound to the daemon and the API's parts."""

    def __init__(self, daemon: Daemon, http: HttpConfig, auth: Authenticator, sender: SendIntake, api: Api, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.daemon = daemon
        self.http = http
        self.auth = auth
        self.sender = sender
        self.api = api
        self.sessions = Sessions(http.page_session, clock=clock)
        self._login_key = secrets.token_bytes(32)  # signs the login forms' CSRF tokens; new at each start
        self.hostname = socket.gethostname()

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", "/", self.index), ("GET", "/login", self.login_form), ("POST", "/login", self.login),
                ("POST", "/logout", self.logout), ("POST", "/send", self.send)]

    # --- cookies and tokens ------------------------------------------------------------------

    def _cookie(self, response: web.StreamResponse, name: str, value: str, max_age: float) -> None:
        response.set_cookie(name, value, max_age=int(max_age), path="/", httponly=True, samesite="Strict",
                            secure=self.http.tls is not None)

    def _login_csrf(self, nonce: str) -> str:
        return hmac.new(self._login_key, nonce.encode(), hashlib.sha256).hexdigest()

    def _session(self, request: web.Request) -> Session | None:
        """The request's live session; one opened with a token lives only as long as the token has ``read``
        (``smsgw token revoke`` ends it within a second), and may send only while the token has ``send``."""
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None or session.token_sha256 is None:
            return session
        token = self.auth.registry.find_hash(session.token_sha256)
        if token is None or not token.allows("read"):
            LOG.info("status page: the session of %s ended: its token is revoked", session.who)
            self.sessions.end(session.id)
            return None
        session.can_send = token.allows("send")
        return session

    async def _form(self, request: web.Request) -> dict[str, str] | web.Response:
        """The posted form's fields, or the error page to answer."""
        if request.content_type != FORM_TYPE:
            return _html(page.error_page(f"The form must be sent as {FORM_TYPE}."), 415)
        try:
            async with asyncio.timeout(self.http.body_timeout):
                data = await request.post()
        except TimeoutError:
            return _html(page.error_page("The form came too slowly."), 408)
        except web.HTTPRequestEntityTooLarge:
            return _html(page.error_page("The form is too large."), 413)
        return {name: value for name, value in data.items() if isinstance(value, str)}

    # --- login -------------------------------------------------------------------------------

    def _login_page(self, error: str | None = None, status: int = 200) -> web.Response:
        nonce = secrets.token_urlsafe(24)
        response = _html(page.login_page(self._login_csrf(nonce), error=error,
                                         password=self.http.page_password is not None), status)
        self._cookie(response, LOGIN_COOKIE, nonce, LOGIN_FORM_TTL)
        return response

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is not None:
            return _redirect("/")
        return self._login_page()

    async def login(self, request: web.Request) -> web.StreamResponse:
        client = request.remote or "unknown"
        blocked = self.auth.failures.blocked(client)
        if blocked:
            return self._login_page("Too many failed attempts from this address; try again in a minute.", 429)
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not same(form.get("csrf", ""), self._login_csrf(nonce)):
            return self._login_page("The login form had expired; please log in again.", 403)
        secret = form.get("secret", "").strip()
        session = self._check(secret)
        if session is None:
            self.auth.failures.failed(client)
            LOG.warning("status page: failed login from %s", client)
            return self._login_page("Wrong password or token.", 401)
        if isinstance(session, str):
            return self._login_page(session, 403)
        LOG.info("status page: %s logged in from %s", session.who, client)
        response = _redirect("/")
        self._cookie(response, SESSION_COOKIE, session.id, self.http.page_session)
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    def _check(self, secret: str) -> Session | str | None:
        """A new session for this password or token; a reason when it may not log in; None when wrong."""
        if not secret:
            return None
        password = self.http.page_password
        # compared as digests: the time taken says nothing of the password's length either
        if password is not None and same(token_hash(secret), token_hash(password)):
            return self.sessions.create("page", "http:page", can_send=True)
        token = self.auth.registry.find(secret)
        if token is None:
            return None
        if not token.allows("read"):
            return f"The token {token.name!r} lacks the 'read' scope the status page needs."
        return self.sessions.create(token.name, token.source, can_send=token.allows("send"),
                                    token_sha256=token.token_sha256)

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is not None:
            form = await self._form(request)
            if isinstance(form, web.Response):
                return form
            if not same(form.get("csrf", ""), session.csrf):
                return _html(page.error_page("The form had expired; reload the page."), 403)
            self.sessions.end(session.id)
        response = _redirect("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # --- the page ----------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            return _redirect("/login")
        data = await self.collect()
        flash, session.flash = session.flash, []
        form, session.form = session.form, {}
        return _html(page.status_page(data, who=session.who, csrf=session.csrf, can_send=session.can_send,
                                      flash=flash, form=form))

    async def collect(self) -> PageData:
        """What the page shows: the store's part read off the event loop, the modems' from their supervisors."""
        now = time.time()
        modem_ids = [mc.id for mc in self.daemon.config.modems]

        stored = await self.api.read(lambda store: read_store(store, now, modem_ids))
        modems = []
        for modem_id in modem_ids:
            supervisor = self.daemon.supervisors.get(modem_id)
            status = supervisor.status() if supervisor is not None else stored["recorded"].get(modem_id, {})
            modems.append(views.modem({**status, "id": modem_id}, stored["balances"].get(modem_id)))
        history = stored["history"]
        bridge = self.daemon.bridge
        return PageData(
            version=__version__, hostname=self.hostname, uptime=now - self.daemon.started_at,
            mqtt=None if self.daemon.config.mqtt is None else bool(bridge is not None and bridge.connected),
            modems=modems, depths={state: stored["stats"]["outbox"].get(state, 0) for state in STATES},
            outbound=[views.message(row) for row in stored["outbound"]],
            inbound=[views.received(row) for row in stored["inbound"]],
            signal={modem_id: history.get(("signal", modem_id), []) for modem_id in modem_ids},
            queue={state: history.get(("queue", state), []) for state in QUEUE_STATES},
            now=now, window=WINDOW,
            webhooks={name: w for name, w in stored["webhooks"].items() if w.get("events")},
        )

    # --- the test SMS ------------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.StreamResponse:
        session = self._session(request)
        if session is None:
            return _redirect("/login")
        form = await self._form(request)
        if isinstance(form, web.Response):
            return form
        if not same(form.get("csrf", ""), session.csrf):
            return _html(page.error_page("The form had expired; reload the page and send again."), 403)
        if not session.can_send:
            session.flash.append(("error", f"{session.who} may not send (the token lacks the 'send' scope)."))
            return _redirect("/")
        to, text = form.get("to", "").strip(), form.get("text", "")
        try:
            _, accepted = await self.sender.submit({"to": to, "text": text}, session.source)
        except IntakeError as exc:
            session.flash.append(("error", f"Not sent: {exc.message}"))
            session.form = {"to": to, "text": text}
            return _redirect("/#send")
        for result in accepted:
            session.flash.append(("ok", f"Message {result.id} to {result.to} is {result.state}."))
        LOG.info("status page: test SMS from %s to %s queued", session.source, to)
        return _redirect("/#outbound")
