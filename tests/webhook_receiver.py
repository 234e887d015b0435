"""A real HTTP receiver for webhook tests: an aiohttp server on a loopback port that records every POST.

``Receiver(port)`` answers ``status`` (200 by default) to every request; ``hold()`` makes it keep
requests waiting until ``release()``; ``stop()`` closes the listening socket and every connection
(new ones are refused, as by a receiver that is down) and ``start()`` listens again on the same port. Each request is kept as
a :class:`Received` (headers, the body bytes as sent, the status answered).

The ``receivers`` fixture (``pytest_plugins = ["webhook_receiver"]``) makes receivers on free ports,
started unless ``start=False``, and closes every one after the test.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from mosquitto import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event(self) -> str:
        return self.headers.get("X-Smsgw-Event", "")

    @property
    def delivery(self) -> str:
        return self.headers.get("X-Smsgw-Delivery", "")

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        """The signature header is the HMAC-SHA256 of the body with ``secret``, computed here."""
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("X-Smsgw-Signature", ""), expected)


class Receiver:
    def __init__(self, port: int, host: str = "127.0.0.1", status: int = 200,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self.status = status
        self.requests: list[Received] = []  # answered ones (a held request when answered, if its client waited)
        self.arrived: list[Received] = []   # every request, when it arrived
        self._held: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        self.arrived.append(Received(request.path, headers, body, 0))
        if self._held is not None:
            await self._held.wait()
        status = self.status
        if request.transport is None or request.transport.is_closing():  # the client is gone: no answer
            raise ConnectionResetError("the client closed the connection")
        self.requests.append(Received(request.path, headers, body, status))
        return web.Response(status=status, text="ok" if status < 300 else "receiver refuses")

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True,
                                 ssl_context=self.ssl_context)
        await self._site.start()
        return self

    async def stop(self) -> None:
        """Down: the listening socket and every open connection closed (new ones are refused)."""
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def close(self) -> None:
        await self.stop()

    def hold(self) -> None:
        self._held = asyncio.Event()

    def release(self) -> None:
        if self._held is not None:
            self._held.set()
            self._held = None

    def answered(self, status: int = 200) -> list[Received]:
        return [r for r in self.requests if r.answered == status]


#: ``await receivers(status=200, start=True, ssl_context=None)``: a new receiver.
ReceiverFactory = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def receivers() -> AsyncIterator[ReceiverFactory]:
    made: list[Receiver] = []

    async def make(status: int = 200, start: bool = True, ssl_context: ssl.SSLContext | None = None) -> Receiver:
        receiver = Receiver(free_port(), status=status, ssl_context=ssl_context)
        made.append(receiver)
        if start:
            await receiver.start()
        return receiver

    yield make
    for receiver in made:
        await receiver.close()
