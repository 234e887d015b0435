"""The daemon's local control socket: CLI tools that need a modem go through the daemon.

The daemon owns the serial ports, so ``smsgw ussd`` and ``smsgw at`` hand their command to it over
a Unix socket beside the store (``<store>.sock``, e.g. ``/var/lib/smsgw/smsgw.db.sock``), mode 0660
and the group of the store's directory (the service group): members of that group may use it.
The daemon queues each command on the modem's AT engine with its priority (``POLL``, below
health checks and sends), so it never talks over an exchange in progress.

Protocol: JSON lines. The client sends one request per line and reads one answer per line, in
order; it may send several on one connection::

    {"op": "ussd", "code": "*100#", "modem"?: "modem0", "timeout"?: 30}
    {"op": "ussd", "session": "modem0-1a2b3c4d", "reply": "2"}     (or "cancel": true)
    {"op": "at", "command": "AT+CSQ", "modem"?: "modem0", "payload"?: "<PDU>", "timeout"?: 10}
    {"op": "ping"}

    {"ok": true, "data": {...}}
    {"ok": false, "error": {"kind": "unknown_modem", "message": "unknown modem 'x'; known: modem0"}}

Error kinds: ``bad_request``, ``unknown_op``, ``unknown_modem``, ``modem_unavailable``, ``busy``,
``unknown_session``, ``timeout``, ``network``, ``modem`` (``data`` of an AT error has the reply lines
and the final result), ``internal``. Each connection is served by its own task: a client that
sends nothing for ``IDLE_TIMEOUT`` seconds, a line longer than ``MAX_LINE`` bytes or bytes that are
not JSON gets an error (and, for the first two, is disconnected); no other client notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.ussd import UssdRequestError, UssdService, handle
from drivers.at import Priority
from drivers.errors import AtError, AtTimeout, ModemError

if TYPE_CHECKING:
    from drivers.modem import Modem

LOG = logging.getLogger(__name__)

#: Seconds a connected client may stay silent before the daemon closes the connection.
IDLE_TIMEOUT = 30.0
#: The longest request line, in bytes.
MAX_LINE = 64 * 1024
#: Default and largest seconds an AT command from the socket may take.
AT_TIMEOUT = 10.0
MAX_AT_TIMEOUT = 300.0
#: Seconds the daemon waits for a client to read an answer.
WRITE_TIMEOUT = 10.0


def socket_path(store_path: os.PathLike[str] | str) -> Path:
    """Where the daemon of this store listens: ``<store>.sock``."""
    return Path(f"{os.fspath(store_path)}.sock")


class ControlError(Exception):
    def __init__(self, kind: str, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.data = data or {}


class ControlServer:
    """Serves the control socket for the daemon (``start``/``stop``)."""

    def __init__(self, path: Path, modems: Mapping[str, Modem], healthy: Callable[[str], bool],
                 ussd: UssdService) -> None:
        self.path = path
        self.modems = modems
        self.healthy = healthy
        self.ussd = ussd
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.path.is_socket():
                self.path.unlink()  # left by a daemon that was killed; the store lock says we own it
        old_umask = os.umask(0o117)  # created 0660: no window in which others could connect
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE)
        finally:
            os.umask(old_umask)
        try:
            group = self.path.parent.stat().st_gid
            if group != os.getegid():
                os.chown(self.path, -1, group)
            os.chmod(self.path, 0o660)
        except OSError as exc:
            LOG.warning("control socket %s: cannot set its group and mode: %s", self.path, exc)
        LOG.info("control socket listening on %s", self.path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(self._clients, timeout=2.0)
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                except TimeoutError:
                    await self._write(writer, _error("timeout", f"no request within {IDLE_TIMEOUT:g}s; closing"))
                    return
                except (ValueError, asyncio.LimitOverrunError):
                    await self._write(writer, _error("bad_request", f"request line longer than {MAX_LINE} bytes"))
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                if not await self._write(writer, await self.answer(line)):
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # noqa: BLE001 - one client never takes the server down
            LOG.exception("control socket client failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            if task is not None:
                self._clients.discard(task)

    async def _write(self, writer: asyncio.StreamWriter, answer: dict[str, Any]) -> bool:
        try:
            writer.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (OSError, TimeoutError):
            return False
        return True

    async def answer(self, line: bytes) -> dict[str, Any]:
        """The answer to one request line."""
        try:
            try:
                request = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise ControlError("bad_request", f"not a JSON line: {exc}") from None
            if not isinstance(request, dict):
                raise ControlError("bad_request", "a request is a JSON object with an \"op\"")
            op = request.get("op")
            if op == "ping":
                return {"ok": True, "data": {"pid": os.getpid(), "modems": {m: self.healthy(m) for m in self.modems}}}
            if op == "ussd":
                return {"ok": True, "data": await handle(self.ussd, request)}
            if op == "at":
                return {"ok": True, "data": await self._at(request)}
            raise ControlError("unknown_op", f"unknown op {op!r}; known: at, ussd, ping")
        except UssdRequestError as exc:
            return _error(exc.kind, str(exc))
        except ControlError as exc:
            return _error(exc.kind, str(exc), exc.data)
        except Exception as exc:  # noqa: BLE001
            LOG.exception("control request failed")
            return _error("internal", f"internal error: {exc}")

    async def _at(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("command")
        if not isinstance(command, str) or not command.strip() or any(c in command for c in "\r\n\x1a\x1b"):
            raise ControlError("bad_request", "'command' must be one AT command line, such as \"AT+CSQ\"")
        command = command.strip()
        if command[:2].upper() != "AT":
            command = "AT" + command
        payload = request.get("payload")
        if payload is not None and not isinstance(payload, str):
            raise ControlError("bad_request", "'payload' must be a string (the PDU after the '> ' prompt)")
        timeout = request.get("timeout", AT_TIMEOUT)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_AT_TIMEOUT:
            raise ControlError("bad_request", f"'timeout' must be seconds between 0 and {MAX_AT_TIMEOUT:g}")
        modem_id = request.get("modem")
        if modem_id is None:
            if not self.modems:
                raise ControlError("unknown_modem", "no modem is configured")
            modem_id = next(iter(self.modems))
        if modem_id not in self.modems:
            raise ControlError("unknown_modem", f"unknown modem {modem_id!r}; known: {', '.join(self.modems)}")
        modem = self.modems[modem_id]
        try:
            engine = modem.engine
            if payload is not None:
                response = await engine.command_with_prompt(command, payload.strip(), timeout=timeout,
                                                            priority=Priority.POLL)
            else:
                response = await engine.command(command, timeout=timeout, priority=Priority.POLL)
        except AtError as exc:
            raise ControlError("modem", str(exc), {"modem": modem_id, "command": command, "lines": exc.reply,
                                                   "final": exc.final}) from None
        except AtTimeout as exc:
            raise ControlError("timeout", f"{command}: no final result within {timeout:g}s",
                               {"modem": modem_id, "command": command, "lines": exc.reply}) from None
        except ModemError as exc:
            raise ControlError("modem_unavailable", f"{modem_id}: {exc}") from None
        return {"modem": modem_id, "command": command, "lines": response.lines, "final": response.final}


def _error(kind: str, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"ok": False, "error": {"kind": kind, "message": message}}
    if data:
        answer["data"] = data
    return answer


# --- client --------------------------------------------------------------------------------------


class NoDaemon(Exception):
    """No daemon listens on the control socket (none runs, or it is not ours to use)."""


class ControlClient:
    """A blocking client of the control socket, for the CLI (one request, one answer)."""

    def __init__(self, path: Path, *, connect_timeout: float = 2.0) -> None:
        self.path = path
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(connect_timeout)
            sock.connect(str(path))
        except FileNotFoundError:
            sock.close()
            raise NoDaemon(f"{path} does not exist") from None
        except ConnectionRefusedError:
            sock.close()
            raise NoDaemon(f"nothing listens on {path}") from None
        except PermissionError:
            sock.close()
            raise PermissionError(f"{path}: permission denied (the socket is for the service group; "
                                  "run as a member of the group that owns it)") from None
        self._sock = sock
        self._file = sock.makefile("rb")

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait at most ``timeout`` seconds for its answer."""
        self._sock.settimeout(timeout)
        self._sock.sendall(json.dumps(request).encode() + b"\n")
        try:
            line = self._file.readline(MAX_LINE * 4)
        except TimeoutError:
            raise TimeoutError(f"the daemon did not answer within {timeout:g}s") from None
        if not line:
            raise ConnectionError("the daemon closed the control socket")
        answer = json.loads(line)
        if not isinstance(answer, dict):
            raise ConnectionError("the daemon sent something that is not an answer")
        return answer
