"""Byte transport to a modem: a serial port (pyserial-asyncio) or ``socket://host:port`` (ser2net).

Bytes only: no framing, no AT knowledge. The transport hands every chunk it reads to ``on_data``
and reports the end of the connection once to ``on_closed`` (with the exception, or ``None`` for a
clean close or EOF). A port that vanishes - EIO on a pty whose other end closed, a USB modem
unplugged, a TCP peer gone - is reported through ``on_closed``; nothing raises out of a callback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from collections.abc import Callable
from typing import Any

import serial
import serial_asyncio

from drivers.errors import TransportError

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 10.0
"""Seconds allowed for opening a port or connecting to ``socket://host:port``."""

CLOSE_TIMEOUT = 2.0
"""Seconds allowed for a port to flush and close."""

DataCallback = Callable[[bytes], None]
ClosedCallback = Callable[[BaseException | None], None]


class _ByteProtocol(asyncio.Protocol):
    """asyncio protocol that forwards bytes and reports the close exactly once."""

    def __init__(self, name: str, on_data: DataCallback, on_closed: ClosedCallback) -> None:
        self.name = name
        self._on_data = on_data
        self._on_closed = on_closed
        self.transport: asyncio.BaseTransport | None = None
        self.closed = False
        loop = asyncio.get_running_loop()
        self.made: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if not self.made.done():
            self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self._on_data(data)
        except Exception:  # a bug in the consumer must not kill the transport
            log.exception("%s: error while handling received bytes %r", self.name, data)

    def eof_received(self) -> bool | None:
        log.info("%s: end of stream", self.name)
        return None  # let the transport close itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.report_closed(exc)
        if not self.lost.done():
            self.lost.set_result(None)

    def report_closed(self, exc: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        if exc is not None:
            log.warning("%s: port closed: %s", self.name, exc)
        else:
            log.info("%s: port closed", self.name)
        try:
            self._on_closed(exc)
        except Exception:
            log.exception("%s: error in the on_closed callback", self.name)


class _SerialTransport(serial_asyncio.SerialTransport):  # type: ignore[misc]
    """pyserial-asyncio's transport, but a vanished port is a close, not a loop-level error, and a
    local device is read and written with one system call each.

    Upstream reports a failed write (EIO after a USB unplug) to the event loop's exception handler
    as a "fatal error" before closing; here it is logged and reported through connection_lost only.

    Upstream also writes only from a writer callback (a loop turn and two ``epoll_ctl`` later, then
    pyserial's ``write``), and reads through pyserial's ``read``, which selects before and after its
    ``read``. For a local device (pyserial's POSIX ``Serial``, opened non-blocking) a write with an
    empty buffer goes to the file descriptor at once, as asyncio's own socket transports do, and
    only what the device did not take is left to the writer callback; a read is one ``os.read``.
    The errors are pyserial's: an ``OSError`` or an empty read is a ``SerialException`` and closes
    the transport.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol,
                 serial_instance: serial.SerialBase) -> None:
        super().__init__(loop, protocol, serial_instance)
        fd = getattr(serial_instance, "fd", None)
        # serial_for_url may give another class (rfc2217://, loop://...): those keep pyserial's way
        self._fd: int | None = fd if isinstance(serial_instance, serial.Serial) and isinstance(fd, int) else None

    def write(self, data: bytes) -> None:
        if self._fd is None or self._closing or self._write_buffer or not data:
            super().write(data)
            return
        try:
            written = os.write(self._fd, data)
        except (BlockingIOError, InterruptedError):
            written = 0
        except OSError as exc:
            self._fatal_error(serial.SerialException(f"write failed: {exc}"), "Fatal write error on serial transport")
            return
        if written < len(data):
            super().write(data[written:])  # the rest from the writer callback

    def _read_ready(self) -> None:
        if self._fd is None:
            super()._read_ready()
            return
        try:
            data = os.read(self._fd, self._max_read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(exc=serial.SerialException(f"read failed: {exc}"))
            return
        if not data:
            self._close(exc=serial.SerialException(
                "device reports readiness to read but returned no data "
                "(device disconnected or multiple access on port?)"))
            return
        self._protocol.data_received(data)

    def _fatal_error(self, exc: BaseException, message: str = "serial transport failed") -> None:
        log.warning("%s: %s", message, exc)
        self._abort(exc)


class Transport:
    """An open byte connection to a modem. Create with :func:`open_transport`."""

    def __init__(self, url: str, transport: asyncio.Transport, protocol: _ByteProtocol) -> None:
        self.url = url
        self._transport = transport
        self._protocol = protocol

    @property
    def is_open(self) -> bool:
        return not self._protocol.closed and not self._transport.is_closing()

    def write(self, data: bytes) -> None:
        """Queue ``data`` for writing. Raises :class:`TransportError` if the port is closed."""
        if not self.is_open:
            raise TransportError(f"{self.url}: port is closed")
        try:
            self._transport.write(data)
        except (OSError, serial.SerialException) as exc:
            self._transport.abort()
            self._protocol.report_closed(exc)
            raise TransportError(f"{self.url}: write failed: {exc}") from exc

    def close(self) -> None:
        """Close the port; ``on_closed(None)`` follows (once) if it was open."""
        if not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping unwritten bytes."""
        self._transport.abort()

    async def wait_closed(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Wait until the port is really released (its file descriptor closed)."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._protocol.lost)
        except TimeoutError:
            log.warning("%s: not closed within %ss; aborting", self.url, timeout)
            self._transport.abort()


def _socket_address(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname or parsed.port is None:
        raise TransportError(f"{url}: expected socket://host:port")
    return parsed.hostname, parsed.port


async def open_transport(
    url: str,
    baudrate: int = 115200,
    *,
    on_data: DataCallback,
    on_closed: ClosedCallback,
    timeout: float = OPEN_TIMEOUT,
) -> Transport:
    """Open ``url`` (a device path or ``socket://host:port``) and start reading.

    ``on_data`` gets every chunk read; ``on_closed`` is called once when the connection ends.
    Raises :class:`TransportError` naming the port if it cannot be opened.
    """
    loop = asyncio.get_running_loop()
    protocol = _ByteProtocol(url, on_data, on_closed)
    transport: Any
    try:
        async with asyncio.timeout(timeout):
            if url.startswith("socket://"):
                host, port = _socket_address(url)
                transport, _ = await loop.create_connection(lambda: protocol, host, port)
            else:
                # exclusive: flock the device, so a second smsgw (or `smsgw doctor`) cannot talk over
                # the daemon's AT exchange; pyserial raises SerialException when another holds it
                port = serial.serial_for_url(url, baudrate=baudrate, exclusive=True)
                transport = _SerialTransport(loop, protocol, port)
            await protocol.made
    except TransportError:
        raise
    except TimeoutError as exc:
        raise TransportError(f"{url}: not opened within {timeout}s") from exc
    except (OSError, serial.SerialException, ValueError) as exc:
        hint = " (another program has the port open: a running smsgw, ModemManager?)" if "lock" in str(exc) else ""
        raise TransportError(f"cannot open {url}: {exc}{hint}") from exc
    log.info("%s: opened (%s)", url, "tcp" if url.startswith("socket://") else f"{baudrate} baud")
    return Transport(url, transport, protocol)
