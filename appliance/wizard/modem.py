"""The wizard's modem steps: probe the candidate ports, enter the PIN once, the test SMS and its reply.

Probing is read-only (``drivers.modem.inspect_port``: identity, ICCID, SIM state, PIN attempts
left). The PIN goes through the same guard as the daemon's (``Modem.open`` with the store's
directory as ``state_dir``): entered only when the SIM asks, never a PIN it rejected before,
never with fewer than two attempts left, and a rejection is recorded for the daemon to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.port_holders import MODEM_MANAGER, MODEM_MANAGER_FIX, SMSGW, users
from drivers.errors import ModemError, TransportError
from drivers.modem import IncomingSms, Inspection, Modem, inspect_port

#: Seconds each AT command of a probe may take (a silent port costs a few of these).
PROBE_TIMEOUT = 1.0
#: Seconds the modem commands of the PIN and test SMS steps may take.
COMMAND_TIMEOUT = 5.0
#: Seconds an SMS submission may take (AT+CMGS answers after the network took it).
SEND_TIMEOUT = 60.0

Say = Callable[[str], None]


@dataclass
class Candidate:
    port: str
    found: Inspection | None = None
    error: str = ""

    def describe(self) -> str:
        if self.found is None:
            return self.error
        ident = self.found.identity
        text = f"{ident.manufacturer} {ident.model}".strip() or "a modem"
        if ident.imei:
            text += f", IMEI {ident.imei}"
        return f"{text}, SIM: {self.found.sim}" if self.found.sim is not None else text


async def probe_ports(ports: list[str], say: Say, *, timeout: float = PROBE_TIMEOUT) -> list[Candidate]:
    """Ask each port who is there, one after the other, saying so as it goes."""
    results = []
    for port in ports:
        say(f"probing {port} … ")
        candidate = Candidate(port)
        candidate.error = _not_probed(port)
        if candidate.error:
            say(candidate.error + "\n")
            results.append(candidate)
            continue
        try:
            candidate.found = await asyncio.wait_for(inspect_port(port, timeout=timeout), timeout * 8)
        except TransportError as exc:
            candidate.error = f"cannot open: {exc}"
        except (TimeoutError, ModemError) as exc:
            candidate.error = "no answer" if isinstance(exc, TimeoutError) or "no answer" in str(exc).lower() \
                else f"no modem ({exc})"
        except OSError as exc:
            candidate.error = f"cannot open: {exc.strerror or exc}"
        say(candidate.describe() + "\n")
        results.append(candidate)
    return results


def _not_probed(port: str) -> str:
    """Why ``port`` must not be probed (missing, or held by another program), or ""."""
    if "://" in port:
        return ""
    if not os.path.exists(port):
        return "cannot open: it does not exist"
    held = users(port)
    if not held:
        return ""
    who = held[0]
    return {MODEM_MANAGER: f"held by ModemManager (pid {who.pid}): {MODEM_MANAGER_FIX}",
            SMSGW: f"in use by smsgw (pid {who.pid}): stop it first (systemctl stop smsgw)"}.get(
        who.kind, f"in use by process {who}: not probed")


def _modem(port: str, profile: str, pin: str | None, state_dir: Path | None) -> Modem:
    return Modem(port, profile=profile, pin=pin, modem_id="setup", state_dir=state_dir,
                 timeouts={"command": COMMAND_TIMEOUT, "send": SEND_TIMEOUT, "sync": 1.0})


async def unlock(port: str, pin: str, *, profile: str, state_dir: Path | None) -> None:
    """Open the modem with ``pin`` through the PIN guard (the PIN is entered at most once); raises
    ``PinError`` naming what the SIM said."""
    modem = _modem(port, profile, pin, state_dir)
    try:
        await modem.open()
    finally:
        await modem.close()


@dataclass
class TestSms:
    references: list[int]
    reply: str | None = None   # the reply's text, None when none came
    skipped: bool = False      # the installer pressed Enter


def _same_number(a: str, b: str) -> bool:
    digits_a, digits_b = "".join(c for c in a if c.isdigit()), "".join(c for c in b if c.isdigit())
    return bool(digits_a) and len(digits_a) >= 6 and len(digits_b) >= 6 and digits_a[-9:] == digits_b[-9:]


async def test_sms(port: str, number: str, text: str, *, profile: str, wait: float, say: Say,
                   skip_fd: int | None = None) -> TestSms:
    """Send ``text`` to ``number``; then wait up to ``wait`` seconds for an SMS from that number
    (a line on ``skip_fd``, the installer pressing Enter, ends the wait). The reply stays on the SIM:
    the daemon reads it into the inbox when it starts."""
    modem = _modem(port, profile, None, None)  # the SIM is ready by now: no PIN is needed or entered
    await modem.open()
    loop = asyncio.get_running_loop()
    skipped = asyncio.Event()
    try:
        references = await modem.send_sms(number, text)
        result = TestSms(references)
        say(f"test SMS sent to {number} (message reference {', '.join(map(str, references))})\n")
        if wait <= 0:
            return result
        if skip_fd is not None:
            def on_line() -> None:
                with contextlib.suppress(OSError):
                    os.read(skip_fd, 1024)
                skipped.set()
            loop.add_reader(skip_fd, on_line)
        say(f"waiting up to {wait:.0f}s for your reply from {number}"
            f"{' (press Enter to skip)' if skip_fd is not None else ''} …\n")
        deadline = loop.time() + wait
        while not skipped.is_set():
            left = deadline - loop.time()
            if left <= 0:
                return result
            getter = asyncio.ensure_future(modem.events.get())
            stopper = asyncio.ensure_future(skipped.wait())
            done, pending = await asyncio.wait({getter, stopper}, timeout=left,
                                               return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if getter in done:
                event = getter.result()
                if isinstance(event, IncomingSms) and event.deliver is not None \
                        and _same_number(event.deliver.number, number):
                    result.reply = event.deliver.text
                    return result
        result.skipped = True
        return result
    finally:
        if skip_fd is not None:
            loop.remove_reader(skip_fd)
        await modem.close()
