"""The byte transport: ptys (pyserial-asyncio) and socket:// (TCP), bytes in order, closes reported."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import tty
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from engine_fixtures import DELIVERIES, PtyResponder, pty_responder
from waiting import async_wait_until

from drivers.errors import TransportError
from drivers.transport import Transport, open_transport


class Collector:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed: list[BaseException | None] = []

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    async def open(self, url: str) -> Transport:
        return await open_transport(url, 115200, on_data=self.chunks.append, on_closed=self.closed.append)


@pytest.fixture
async def loop_errors() -> list[dict[str, Any]]:
    """Everything that reaches the event loop's exception handler (an unhandled callback error)."""
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    return errors


@pytest.fixture(params=DELIVERIES)
async def responder(request: pytest.FixtureRequest) -> AsyncIterator[PtyResponder]:
    async with pty_responder(request.param) as r:
        yield r


async def test_bytes_arrive_complete_and_in_order_whatever_the_delivery(responder: PtyResponder) -> None:
    collector = Collector()
    transport = await collector.open(responder.path)
    try:
        payload = bytes(range(256)) + b"\r\n+CMTI: \"SM\",1\r\n"
        responder.push(payload)
        await async_wait_until(lambda: len(collector.data) >= len(payload), timeout=10)
        assert collector.data == payload
        if responder.delivery == "bytewise":
            assert len(collector.chunks) > 1
    finally:
        transport.close()


async def test_written_bytes_reach_the_modem_unchanged(responder: PtyResponder) -> None:
    responder.on("AT+CSQ", b"\r\nOK\r\n")
    collector = Collector()
    transport = await collector.open(responder.path)
    try:
        transport.write(b"AT+CSQ\r")
        await async_wait_until(lambda: collector.data == b"\r\nOK\r\n", timeout=5)
        assert responder.received == ["AT+CSQ"]
    finally:
        transport.close()


async def test_vanishing_pty_is_reported_closed_once_and_nothing_unhandled(
    responder: PtyResponder, loop_errors: list[dict[str, Any]]
) -> None:
    collector = Collector()
    transport = await collector.open(responder.path)
    responder.close_master()  # EIO on the slave, as when a USB modem is unplugged
    await async_wait_until(lambda: collector.closed, timeout=5)
    assert not transport.is_open
    with pytest.raises(TransportError, match="closed"):
        transport.write(b"AT\r")
    transport.close()
    assert len(collector.closed) == 1
    assert loop_errors == []


async def test_write_to_vanished_pty_is_reported_closed_not_a_loop_error(
    loop_errors: list[dict[str, Any]],
) -> None:
    async with pty_responder() as responder:
        collector = Collector()
        transport = await collector.open(responder.path)
        responder.close_master()
        transport.write(b"AT\r")  # before the reader noticed: the write itself hits EIO
        await async_wait_until(lambda: collector.closed, timeout=5)
        assert len(collector.closed) == 1 and collector.closed[0] is not None
        assert loop_errors == []


async def test_close_reports_closed_once_with_no_error() -> None:
    async with pty_responder() as responder:
        collector = Collector()
        transport = await collector.open(responder.path)
        transport.close()
        await async_wait_until(lambda: collector.closed, timeout=5)
        transport.close()
        assert collector.closed == [None]


async def test_consumer_error_is_logged_and_reading_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    received: list[bytes] = []

    def on_data(data: bytes) -> None:
        received.append(data)
        if len(received) == 1:
            raise RuntimeError("consumer bug")

    async with pty_responder() as responder:
        transport = await open_transport(responder.path, on_data=on_data, on_closed=lambda exc: None)
        try:
            with caplog.at_level(logging.ERROR, logger="drivers.transport"):
                responder.push([b"first", b"second"])
                await async_wait_until(lambda: b"second" in b"".join(received), timeout=5)
            assert transport.is_open
            assert any("consumer bug" in (r.exc_text or "") for r in caplog.records)
        finally:
            transport.close()


async def test_missing_device_raises_transport_error_naming_it() -> None:
    with pytest.raises(TransportError, match="/dev/ttyUSB_missing_42"):
        await Collector().open("/dev/ttyUSB_missing_42")


async def test_path_that_is_not_a_tty_raises_transport_error(tmp_path: Any) -> None:
    path = tmp_path / "plain-file"
    path.write_text("")
    with pytest.raises(TransportError, match=str(path)):
        await Collector().open(str(path))


@pytest.mark.parametrize("url", ["socket://", "socket://127.0.0.1", "socket://:99"])
async def test_malformed_socket_url_raises_transport_error(url: str) -> None:
    with pytest.raises(TransportError, match="socket://host:port"):
        await Collector().open(url)


async def test_refused_socket_raises_transport_error_naming_it() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(TransportError, match=f"127.0.0.1:{port}"):
        await Collector().open(f"socket://127.0.0.1:{port}")


async def test_socket_round_trip_and_peer_close_reported(loop_errors: list[dict[str, Any]]) -> None:
    peers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)
        line = await reader.readuntil(b"\r")
        writer.write(b"\r\n" + line.strip() + b" OK\r\n")

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    collector = Collector()
    try:
        transport = await collector.open(f"socket://127.0.0.1:{port}")
        transport.write(b"ATI\r")
        await async_wait_until(lambda: collector.data == b"\r\nATI OK\r\n", timeout=5)
        peers[0].close()  # ser2net gone
        await async_wait_until(lambda: collector.closed, timeout=5)
        assert not transport.is_open
        assert len(collector.closed) == 1
        assert loop_errors == []
    finally:
        server.close()
        await server.wait_closed()


async def test_raw_pty_fixture_is_really_a_pty() -> None:
    async with pty_responder() as responder:
        assert os.isatty(responder.slave)


@contextlib.contextmanager
def raw_pty() -> Iterator[tuple[int, str]]:
    """A pty in raw mode on both ends (no line-discipline changes to the bytes): master fd, slave path."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def read_now(fd: int, timeout: float = 5.0) -> bytes:
    """What ``fd`` has, without turning the event loop (select's timeout only covers the pty's hop)."""
    ready, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, 4096) if ready else b""


async def test_a_write_to_a_device_is_there_before_the_event_loop_turns() -> None:
    # one write system call from write() itself (pyserial-asyncio alone waits for a writer callback)
    with raw_pty() as (master, path):
        collector = Collector()
        transport = await collector.open(path)
        try:
            transport.write(b"AT+CMGS=21\r")
            assert read_now(master) == b"AT+CMGS=21\r"
            transport.write(b"0001000D91\x1a")
            assert read_now(master) == b"0001000D91\x1a"
        finally:
            transport.close()


async def test_what_the_device_cannot_take_at_once_follows_complete_and_in_order() -> None:
    big = bytes(range(256)) * 1024  # 256 KiB: more than a pty buffers, so write() takes only part
    with raw_pty() as (master, path):
        os.set_blocking(master, False)
        collector = Collector()
        transport = await collector.open(path)
        received = bytearray()
        try:
            transport.write(big)
            transport.write(b"after")  # queued behind the rest of ``big``, never before it

            async def drained() -> bool:
                with contextlib.suppress(BlockingIOError):
                    received.extend(os.read(master, 65536))
                await asyncio.sleep(0)
                return len(received) >= len(big) + 5

            deadline = asyncio.get_running_loop().time() + 20
            while not await drained():
                assert asyncio.get_running_loop().time() < deadline, f"{len(received)} bytes arrived"
            assert bytes(received) == big + b"after"
            assert transport.is_open and collector.closed == []
        finally:
            transport.close()

