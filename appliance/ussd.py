"""USSD for the daemon: one request or session at a time per modem, answered as plain data.

Used by the MQTT request topic ``B/ussd`` (``UssdMqtt``), the control socket (``smsgw ussd`` while
the daemon runs) and the scheduled balance checks. A request names a modem or takes the first
healthy one; when the network asks a follow-up (+CUSD: 1) the session stays open on that modem
under a session id, and the next request naming the session answers it (``reply``) or ends it
(``cancel``). While a session is open its modem takes no other USSD request; a session nobody
answers within ``SESSION_TIMEOUT`` seconds is cancelled (AT+CUSD=2) before the next request.

Errors are ``UssdRequestError`` with a ``kind`` that the MQTT and socket answers carry:
``bad_request``, ``unknown_modem``, ``modem_unavailable``, ``busy``, ``unknown_session``,
``timeout`` (no answer from the network), ``network`` (+CUSD: 2/4/5), ``modem`` (an AT error).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drivers.at import Priority
from drivers.errors import AtTimeout, ModemError
from drivers.modem import UssdError

if TYPE_CHECKING:
    from drivers.modem import Modem

LOG = logging.getLogger(__name__)

#: Seconds an open session waits for the client's answer before it is cancelled.
SESSION_TIMEOUT = 120.0
#: Seconds a request may wait for its modem while another request or session uses it.
QUEUE_TIMEOUT = 60.0


class UssdRequestError(Exception):
    """A USSD request that cannot be answered; ``kind`` is one of the module docstring's."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class _Session:
    id: str
    modem_id: str
    code: str
    opened: float


class UssdService:
    """Runs USSD requests on the daemon's modems (see the module docstring)."""

    def __init__(self, modems: Mapping[str, Modem], healthy: Callable[[str], bool], *,
                 clock: Callable[[], float] = time.monotonic, session_timeout: float = SESSION_TIMEOUT) -> None:
        self.modems = modems
        self.healthy = healthy
        self.clock = clock
        self.session_timeout = session_timeout
        self._locks: dict[str, asyncio.Lock] = {}
        self._sessions: dict[str, _Session] = {}  # session id -> session
        self._open: dict[str, str] = {}  # modem id -> the id of its open session

    def _lock(self, modem_id: str) -> asyncio.Lock:
        return self._locks.setdefault(modem_id, asyncio.Lock())

    def _pick(self, modem_id: str | None) -> str:
        if modem_id is not None:
            if modem_id not in self.modems:
                known = ", ".join(self.modems) or "none"
                raise UssdRequestError("unknown_modem", f"unknown modem {modem_id!r}; known: {known}")
            if not self.healthy(modem_id):
                raise UssdRequestError("modem_unavailable", f"modem {modem_id!r} is not ready (not open or not healthy)")
            return modem_id
        ready = [m for m in self.modems if self.healthy(m)]
        free = [m for m in ready if m not in self._open]
        if not ready:
            raise UssdRequestError("modem_unavailable", "no modem is ready for USSD")
        return (free or ready)[0]

    async def request(self, code: str, *, modem_id: str | None = None, timeout: float | None = None,
                      priority: Priority = Priority.POLL) -> dict[str, Any]:
        """Start a USSD request (``*100#``); the answer as ``answer()`` describes it."""
        if not isinstance(code, str) or not code:
            raise UssdRequestError("bad_request", "'code' must be a USSD code such as \"*100#\"")
        chosen = self._pick(modem_id)
        async with self._acquire(chosen):
            await self._expire(chosen)
            if chosen in self._open:
                raise UssdRequestError("busy", f"modem {chosen!r} has an open USSD session "
                                       f"({self._open[chosen]}): answer it or cancel it first")
            reply = await self._run(chosen, code, False, timeout, priority)
            return self._answer(chosen, code, reply, None)

    async def reply(self, session_id: str, text: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Answer the open session's question (a menu choice)."""
        session = self._session(session_id)
        if not isinstance(text, str) or not text:
            raise UssdRequestError("bad_request", "'reply' must be the text that answers the network's question")
        async with self._acquire(session.modem_id):
            session = self._session(session_id)  # it may have ended while this request waited
            self._close(session)
            reply = await self._run(session.modem_id, text, True, timeout, Priority.POLL)
            return self._answer(session.modem_id, session.code, reply, session)

    async def cancel(self, session_id: str) -> dict[str, Any]:
        session = self._session(session_id)
        async with self._acquire(session.modem_id):
            self._close(session)
            await self._cancel_on_modem(session.modem_id)
        return {"modem": session.modem_id, "code": session.code, "session": session.id, "session_open": False,
                "cancelled": True}

    # --- internals -------------------------------------------------------------------------

    def _acquire(self, modem_id: str) -> _Acquire:
        return _Acquire(self._lock(modem_id), modem_id)

    def _session(self, session_id: object) -> _Session:
        if not isinstance(session_id, str) or session_id not in self._sessions:
            raise UssdRequestError("unknown_session", f"no open USSD session {session_id!r} "
                                   "(it ended, timed out, or never existed)")
        session = self._sessions[session_id]
        if self.clock() - session.opened > self.session_timeout:
            raise UssdRequestError("unknown_session", f"USSD session {session_id!r} timed out "
                                   f"after {self.session_timeout:g}s without an answer")
        return session

    def _close(self, session: _Session) -> None:
        self._sessions.pop(session.id, None)
        if self._open.get(session.modem_id) == session.id:
            del self._open[session.modem_id]

    async def _expire(self, modem_id: str) -> None:
        session_id = self._open.get(modem_id)
        if session_id is None:
            return
        session = self._sessions[session_id]
        if self.clock() - session.opened <= self.session_timeout:
            return
        LOG.info("USSD session %s on %s timed out; cancelling it", session_id, modem_id)
        self._close(session)
        await self._cancel_on_modem(modem_id)

    async def _cancel_on_modem(self, modem_id: str) -> None:
        try:
            await self.modems[modem_id].ussd_cancel()
        except ModemError as exc:  # the network may have closed it already
            LOG.info("cancelling the USSD session on %s: %s", modem_id, exc)

    async def _run(self, modem_id: str, text: str, reply: bool, timeout: float | None,
                   priority: Priority) -> Any:
        modem = self.modems[modem_id]
        try:
            return await modem.ussd(text, timeout=timeout, reply=reply, priority=priority)
        except ValueError as exc:
            raise UssdRequestError("bad_request", str(exc)) from None
        except UssdError as exc:
            raise UssdRequestError("network", str(exc)) from None
        except AtTimeout as exc:
            raise UssdRequestError("timeout", str(exc)) from None
        except ModemError as exc:
            raise UssdRequestError("modem", f"{modem_id}: {exc}") from None

    def _answer(self, modem_id: str, code: str, reply: Any, previous: _Session | None) -> dict[str, Any]:
        session_id: str | None = None
        if reply.session_open:
            session_id = previous.id if previous is not None else f"{modem_id}-{secrets.token_hex(4)}"
            session = _Session(session_id, modem_id, code, self.clock())
            self._sessions[session_id] = session
            self._open[modem_id] = session_id
        return {"modem": modem_id, "code": code, "text": reply.text, "network_status": reply.status,
                "dcs": reply.dcs, "session_open": reply.session_open, "session": session_id}


class _Acquire:
    """``async with``: the modem's USSD lock, waited for at most QUEUE_TIMEOUT seconds."""

    def __init__(self, lock: asyncio.Lock, modem_id: str) -> None:
        self.lock = lock
        self.modem_id = modem_id

    async def __aenter__(self) -> None:
        try:
            await asyncio.wait_for(self.lock.acquire(), QUEUE_TIMEOUT)
        except TimeoutError:
            raise UssdRequestError("busy", f"modem {self.modem_id!r} stayed busy with another USSD request "
                                   f"for {QUEUE_TIMEOUT:g}s") from None

    async def __aexit__(self, *exc: object) -> None:
        self.lock.release()


async def handle(service: UssdService, request: object) -> dict[str, Any]:
    """One request as JSON data (MQTT ``B/ussd`` or the control socket's ``ussd``): the answer, or
    ``UssdRequestError``. ``{"code", "modem"?}`` starts; ``{"session", "reply"}`` answers;
    ``{"session", "cancel": true}`` ends."""
    if not isinstance(request, dict):
        raise UssdRequestError("bad_request", "the request must be a JSON object such as {\"code\": \"*100#\"}")
    known = {"code", "modem", "session", "reply", "cancel", "transaction", "timeout", "op"}
    unknown = sorted(set(request) - known)
    if unknown:
        raise UssdRequestError("bad_request", f"unknown field(s) {', '.join(map(repr, unknown))}; "
                               f"known: code, modem, session, reply, cancel, timeout, transaction")
    timeout = request.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not 0 < timeout <= 300):
        raise UssdRequestError("bad_request", "'timeout' must be a number of seconds between 0 and 300")
    if "session" in request:
        if request.get("cancel") is True:
            return await service.cancel(request["session"])
        if "reply" not in request:
            raise UssdRequestError("bad_request", "a request naming a 'session' needs 'reply' (or \"cancel\": true)")
        return await service.reply(request["session"], request["reply"], timeout=timeout)
    if "code" not in request:
        raise UssdRequestError("bad_request", "'code' is required (e.g. {\"code\": \"*100#\"})")
    modem_id = request.get("modem")
    if modem_id is not None and not isinstance(modem_id, str):
        raise UssdRequestError("bad_request", "'modem' must be a modem id string")
    return await service.request(request["code"], modem_id=modem_id, timeout=timeout)


class UssdMqtt:
    """``B/ussd`` requests → ``B/bridge/response/ussd`` answers (one task per request)."""

    def __init__(self, service: UssdService, bridge: Any) -> None:
        self.service = service
        self.bridge = bridge
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.bridge.subscribe(self.bridge.topic("ussd"), self._on_request)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)

    def _on_request(self, topic: str, payload: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, payload: bytes) -> None:
        transaction: Any = None
        response: dict[str, Any]
        try:
            if not payload:
                return  # an empty (retained-clearing) message asks nothing
            try:
                request = json.loads(payload.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise UssdRequestError("bad_request", f"payload is not JSON: {exc}") from None
            if isinstance(request, dict):
                transaction = request.get("transaction")
            data = await handle(self.service, request)
            response = {"status": "ok", "data": data}
        except UssdRequestError as exc:
            response = {"status": "error", "error": str(exc), "error_kind": exc.kind, "data": {}}
        except Exception as exc:  # noqa: BLE001 - one bad request never stops the next
            LOG.exception("USSD request failed")
            response = {"status": "error", "error": f"internal error: {exc}", "error_kind": "internal", "data": {}}
        if transaction is not None:
            response["transaction"] = transaction
        self.bridge.publish(self.bridge.topic("bridge/response/ussd"), response, qos=1)
