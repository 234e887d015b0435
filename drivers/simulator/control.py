"""The control socket ``DIR/control.sock``: one JSON request and one JSON reply per line.

Requests: ``{"action": "inject", "modem": K, "from": NUMBER, "text": TEXT, "parts"?: [3, 1]}``,
``{"action": "fault", "modem": K, "kind": KIND}``, ``{"action": "call", "modem": K, "from": NUMBER | null,
"rings"?: N}`` (null: a withheld number), ``{"action": "end-call", "modem": K}`` (the caller hangs up),
``{"action": "status"}``.
Replies: ``{"ok": true, ...}`` or ``{"ok": false, "error": REASON}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.simulator.calls import RINGS

if TYPE_CHECKING:
    from drivers.simulator import Simulator

SOCKET_NAME = "control.sock"
#: sun_path holds 108 bytes; longer paths are reached through /proc/self/fd/<dir fd>/.
_MAX_SUN_PATH = 100


@contextlib.contextmanager
def short_path(path: Path) -> Iterator[str]:
    """A path to ``path`` short enough for a Unix socket address."""
    if len(os.fsencode(str(path))) < _MAX_SUN_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class ControlServer:
    def __init__(self, simulator: Simulator, path: Path) -> None:
        self.simulator = simulator
        self.path = path
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with short_path(self.path) as address:
            sock.bind(address)
        self._server = await asyncio.start_unix_server(self._client, sock=sock)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = self.handle(line)
                writer.write(json.dumps(reply, ensure_ascii=False).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError as exc:
            return {"ok": False, "error": f"request is not JSON: {exc}"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "request must be a JSON object"}
        action = request.get("action")
        sim = self.simulator
        try:
            if action == "status":
                return {"ok": True, "modems": sim.describe()}
            if action not in ("inject", "fault", "call", "end-call"):
                return {"ok": False, "error": f"unknown action {action!r}; known: inject, fault, call, end-call, status"}
            modem = request.get("modem")
            if not isinstance(modem, int) or isinstance(modem, bool):
                return {"ok": False, "error": "'modem' must be an integer index"}
            if action == "inject":
                sender, text, chosen = request.get("from"), request.get("text"), request.get("parts")
                if not isinstance(sender, str) or not isinstance(text, str):
                    return {"ok": False, "error": "inject needs 'from' and 'text' strings"}
                if chosen is not None and not isinstance(chosen, list):
                    return {"ok": False, "error": "'parts' must be a list of part numbers, as in [3, 1]"}
                parts = sim.inject(modem, sender, text, chosen)
                return {"ok": True, "modem": modem, "parts": parts}
            if action == "call":
                caller, rings = request.get("from"), request.get("rings", RINGS)
                if caller is not None and not isinstance(caller, str):
                    return {"ok": False, "error": "call needs 'from': a phone number, or null for a withheld one"}
                if not isinstance(rings, int) or isinstance(rings, bool) or rings < 1:
                    return {"ok": False, "error": "'rings' must be a whole number of rings, at least 1"}
                return {"ok": True, "modem": modem, "call": sim.call(modem, caller, rings)}
            if action == "end-call":
                return {"ok": True, "modem": modem, "call": sim.end_call(modem)}
            kind = request.get("kind")
            if not isinstance(kind, str):
                return {"ok": False, "error": "fault needs a 'kind' string"}
            sim.fault(modem, kind)
            return {"ok": True, "modem": modem, "fault": kind}
        except (ValueError, IndexError) as exc:
            return {"ok": False, "error": str(exc)}


def request(directory: Path, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to a running simulator (blocking); raises OSError when none listens."""
    path = directory / SOCKET_NAME
    if not path.exists():
        raise FileNotFoundError(f"no simulator is running in {directory} ({path} does not exist)")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        with short_path(path) as address:
            sock.connect(address)
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data)
    if not isinstance(reply, dict):
        raise ValueError(f"unexpected reply from the simulator: {data!r}")
    return reply
