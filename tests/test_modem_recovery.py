"""A modem left at the ``> `` prompt by a program that died there is recovered by Modem.open()."""

from __future__ import annotations

import os
import termios
from pathlib import Path

import pytest
from modem_fixtures import make_modem
from waiting import async_wait_until

from drivers.simulator import Simulator


async def leave_at_prompt(port: str, commands: list[bytes]) -> None:
    """Type commands the way a client does, wait for the '> ' prompt, then vanish without ESC or Ctrl-Z."""
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY)
    try:
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~(termios.ICANON | termios.ECHO)
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        os.set_blocking(fd, False)
        seen = bytearray()

        def read() -> bytes:
            try:
                seen.extend(os.read(fd, 4096))
            except BlockingIOError:
                pass
            return bytes(seen)

        for command in commands[:-1]:
            os.write(fd, command + b"\r")
            await async_wait_until(lambda: read().endswith(b"OK\r\n"), timeout=5, what=f"OK to {command!r}")
            seen.clear()
        os.write(fd, commands[-1] + b"\r")
        await async_wait_until(lambda: read().endswith(b"> "), timeout=5, what="the prompt")
    finally:
        os.close(fd)


@pytest.mark.parametrize("mode", ["text", "pdu"])
async def test_open_recovers_a_modem_left_at_the_prompt(tmp_path: Path, mode: str) -> None:
    async with Simulator(tmp_path / "sim", modems=1, profile="generic", control=False) as sim:
        cmgs = b'AT+CMGS="+4915112345678"' if mode == "text" else b"AT+CMGS=20"
        await leave_at_prompt(sim.ports[0], [b"ATE0", b"AT+CMGF=" + (b"1" if mode == "text" else b"0"), cmgs])
        modem = make_modem(sim, 0, profile="generic")
        await modem.open()  # in text mode every AT would be message text without the ESC
        try:
            await modem.send_sms("+4915112345678", "after the prompt")
            await async_wait_until(lambda: any(r["text"] == "after the prompt" for r in sim.network.sent), timeout=5)
            assert [r["text"] for r in sim.network.sent] == ["after the prompt"]  # nothing half-typed went out
        finally:
            await modem.close()
