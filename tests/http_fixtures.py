"""The HTTP API under test: ``smsgw run`` as a subprocess with ``[http]`` on a free loopback port,
the simulator's modems, and an aiohttp client talking to it over real TCP.

Load with ``pytest_plugins = ["daemon_helpers", "http_fixtures"]``. ``gateway`` is a started
:class:`Gateway` with the tokens of ``TOKENS``; ``gateway_factory(extra=..., http=..., tokens=...)``
builds one with other settings (``start=False`` to start it later).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from daemon_helpers import DaemonProcess, write_config
from mosquitto import free_port
from waiting import async_wait_until

from appliance.http.tokens import token_hash
from drivers.simulator import Simulator

#: name -> (token text, scopes): the test's API clients
TOKENS: dict[str, tuple[str, tuple[str, ...]]] = {
    "erp": ("smsgw_test-erp-token", ("send", "read")),
    "reader": ("smsgw_test-reader-token", ("read",)),
    "sender": ("smsgw_test-sender-token", ("send",)),
    "ops": ("smsgw_test-ops-token", ("admin",)),
}


def http_tables(port: int, tokens: Mapping[str, tuple[str, tuple[str, ...]]], settings: str = "") -> str:
    lines = ["", "[http]", f'listen = "127.0.0.1:{port}"', settings, ""]
    for name, (text, scopes) in tokens.items():
        scope_list = ", ".join(f'"{s}"' for s in scopes)
        lines += ["[[http.tokens]]", f'name = "{name}"', f'token_sha256 = "{token_hash(text)}"',
                  f"scopes = [{scope_list}]", ""]
    return "\n".join(lines)


@dataclass
class Gateway:
    directory: Path
    config: Path
    port: int
    daemon: DaemonProcess
    scheme: str = "http"
    tokens: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=lambda: dict(TOKENS))
    session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.directory / "smsgw.db"

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name][0]}"}

    async def start(self) -> Gateway:
        await self.daemon.start()
        await self.daemon.wait_running(timeout=20)
        assert self.daemon.running, self.daemon.log_text()
        assert "HTTP API on" in self.daemon.log_text(self.daemon.log_offset), self.daemon.log_text()
        return self

    async def request(self, method: str, path: str, *, token: str | None = None,
                      headers: Mapping[str, str] | None = None, **kwargs: Any) -> tuple[int, Any, Mapping[str, str]]:
        """(status, JSON body or text, headers) of one request."""
        assert self.session is not None
        all_headers = dict(headers or {})
        if token is not None:
            all_headers.update(self.auth(token))
        async with self.session.request(method, self.url + path, headers=all_headers, **kwargs) as response:
            body: Any
            if response.content_type == "application/json":
                body = await response.json()
            else:
                body = await response.text()
            return response.status, body, response.headers


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", modems=2, profile="generic") as simulator:
        yield simulator


@pytest.fixture
async def gateway_factory(tmp_path: Path, sim: Simulator, daemons: list[DaemonProcess]
                          ) -> AsyncIterator[GatewayFactory]:
    sessions: list[aiohttp.ClientSession] = []
    count = 0

    async def make(*, extra: str = "", http: str = "", tokens: Mapping[str, tuple[str, tuple[str, ...]]] = TOKENS,
                   start: bool = True, ports: list[str] | None = None, port: int | None = None,
                   tls: tuple[Path, Path] | None = None, connector: aiohttp.BaseConnector | None = None,
                   directory: Path | None = None) -> Gateway:
        nonlocal count
        count += 1
        directory = directory or tmp_path / f"gw{count}"
        port = port or free_port()
        settings = http
        if tls is not None:
            settings += f'\ntls = {{ cert = "{tls[0]}", key = "{tls[1]}" }}'
        config = write_config(directory, sim.ports if ports is None else ports,
                              extra=http_tables(port, tokens, settings) + extra)
        daemon = DaemonProcess(config)
        daemons.append(daemon)
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))
        sessions.append(session)
        gateway = Gateway(directory, config, port, daemon, scheme="https" if tls else "http",
                          tokens=dict(tokens), session=session)
        if start:
            await gateway.start()
        return gateway

    yield make
    for session in sessions:
        await session.close()


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory) -> Gateway:
    return await gateway_factory()


async def wait_modems_online(gateway: Gateway, count: int = 2, timeout: float = 15.0) -> None:
    async def online() -> bool:
        status, body, _ = await gateway.request("GET", "/api/v1/modems", token="reader")
        return status == 200 and sum(1 for m in body["modems"] if m["healthy"]) >= count

    await async_wait_until(online, timeout=timeout, interval=0.05, what="modems online")


async def raw_exchange(port: int, data: bytes, *, read_until_close: bool = True, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh TCP connection and read what comes back until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read() if read_until_close else await reader.read(65536)
    finally:
        writer.close()
