"""A tiny scripted AT responder on the master side of a real pty, for the engine and `smsgw at` tests.

Not the simulator: it only answers what a test scripts, and it can deliver its bytes whole, one
byte at a time, or late and in pieces, so each test runs over all three deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from waiting import async_wait_until

DELIVERIES = ["normal", "bytewise", "delayed"]

Reply = bytes | list[bytes] | Callable[[str], "bytes | list[bytes] | None"] | None


@dataclass
class Rule:
    reply: Reply
    pdu_reply: Reply = None  # after Ctrl-Z in PDU entry (the rule's reply then holds the prompt)
    esc_reply: Reply = None  # after ESC in PDU entry


@dataclass
class PtyResponder:
    """Answers AT commands on a pty master. ``path`` is the slave for the code under test."""

    delivery: str = "normal"
    echo: bool = False
    echo_pdu: bool = False
    rules: dict[str, Rule] = field(default_factory=dict)
    received: list[str] = field(default_factory=list)  # commands, in order
    pdus: list[str] = field(default_factory=list)  # PDUs entered after a prompt
    escapes: int = 0

    def __post_init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self._buffer = b""
        self._pdu_rule: Rule | None = None
        self._outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self.closed = False

    def on(self, command: str, reply: Reply, *, pdu_reply: Reply = None, esc_reply: Reply = None) -> None:
        """Script the answer to ``command`` (matched exactly, case-insensitive)."""
        self.rules[command.upper()] = Rule(reply, pdu_reply, esc_reply)

    def start(self) -> None:
        self._loop.add_reader(self.master, self._readable)
        self._writer = self._loop.create_task(self._write_loop())

    def push(self, data: bytes | list[bytes]) -> None:
        """Send unsolicited bytes (URCs, garbage) in delivery order with the replies."""
        for chunk in [data] if isinstance(data, bytes) else data:
            self._outgoing.put_nowait(chunk)

    async def drained(self) -> None:
        await async_wait_until(lambda: self._outgoing.empty() and not self._busy, timeout=5, what="output")

    def close_master(self) -> None:
        """Make the port vanish: the slave side then reads EIO, as when a USB modem is unplugged."""
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self.master)
        os.close(self.master)

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self.close_master()
        with contextlib.suppress(OSError):
            os.close(self.slave)

    # -- internals -------------------------------------------------------------------------------

    _busy = False

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        self._buffer += data
        while self._buffer:
            if self._pdu_rule is not None:
                if not self._pdu_input():
                    return
                continue
            if b"\r" not in self._buffer:
                return
            raw, _, self._buffer = self._buffer.partition(b"\r")
            text = raw.strip(b"\n\x1a\x1b").decode(errors="replace").strip()
            if not text:
                continue
            self.received.append(text)
            if self.echo:
                self.push(raw + b"\r")
            rule = self.rules.get(text.upper())
            if rule is None:
                self.push(b"\r\nERROR\r\n")
                continue
            self._send(rule.reply, text)
            if rule.pdu_reply is not None or rule.esc_reply is not None:
                self._pdu_rule = rule

    def _pdu_input(self) -> bool:
        rule = self._pdu_rule
        assert rule is not None
        for index, byte in enumerate(self._buffer):
            if byte in (0x1A, 0x1B):
                pdu = self._buffer[:index].decode(errors="replace")
                self._buffer = self._buffer[index + 1 :]
                self._pdu_rule = None
                if byte == 0x1A:
                    self.pdus.append(pdu)
                    if self.echo_pdu:
                        self.push(pdu.encode() + b"\x1a")
                    self._send(rule.pdu_reply, pdu)
                else:
                    self.escapes += 1
                    self._send(rule.esc_reply, pdu)
                return True
        return False

    def _send(self, reply: Reply, text: str) -> None:
        if callable(reply):
            reply = reply(text)
        if reply is not None:
            self.push(reply)

    async def _write_loop(self) -> None:
        while True:
            chunk = await self._outgoing.get()
            self._busy = True
            try:
                await self._deliver(chunk)
            except OSError:
                pass  # master closed under us
            finally:
                self._busy = self._outgoing.qsize() > 0

    async def _deliver(self, chunk: bytes) -> None:
        if self.closed:
            return
        if self.delivery == "bytewise":
            for i in range(len(chunk)):
                os.write(self.master, chunk[i : i + 1])
                await asyncio.sleep(0.001)
        elif self.delivery == "delayed":
            await asyncio.sleep(0.02)
            middle = len(chunk) // 2
            for piece in (chunk[:middle], chunk[middle:]):
                if piece and not self.closed:
                    os.write(self.master, piece)
                    await asyncio.sleep(0.01)
        else:
            os.write(self.master, chunk)
            await asyncio.sleep(0.002)  # pieces of a list reply arrive in separate reads


@contextlib.asynccontextmanager
async def pty_responder(delivery: str = "normal", **kwargs: bool) -> AsyncIterator[PtyResponder]:
    responder = PtyResponder(delivery=delivery, **kwargs)  # type: ignore[arg-type]
    responder.start()
    try:
        yield responder
    finally:
        await responder.stop()
