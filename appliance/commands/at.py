"""`smsgw at`: an AT console on a modem port (device path or socket://host:port).

With commands: sends each (``AT`` is prefixed when missing), prints the reply lines and the final
result, exits 1 if any failed. Without: reads commands from stdin, one per line, and prints replies
and unsolicited lines as they come, until EOF. On a terminal it is a console: a banner, a prompt,
line editing and history (readline; kept in ``~/.smsgw_at_history``), and ``PDU>`` after
``AT+CMGS=n``.

``AT+CMGS=n`` / ``AT+CMGW=n`` take the PDU as the next command argument (or the next input line):
the console waits for the ``> `` prompt, then sends it with Ctrl-Z.

While ``smsgw run`` holds the modem (``--modem ID``, or a PORT that is a configured modem's port),
the commands go through the daemon's control socket and queue on its AT engine (at the lowest
priority, between the daemon's own commands); unsolicited lines stay with the daemon. With no
daemon running, ``--modem ID`` opens that modem's configured port directly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from drivers.at import DEFAULT_TIMEOUT, AtEngine, AtResponse
from drivers.errors import AtError, AtTimeout, ModemError, TransportError
from drivers.secrets import mask_secrets

NAME = "at"
HELP = "AT console: send commands to a modem port and print the replies (interactive without commands)"

log = logging.getLogger(__name__)

_WANTS_PAYLOAD = re.compile(r"AT\+CMG[SW]=", re.IGNORECASE)
PROMPT = "AT> "
PDU_PROMPT = "PDU> "
HISTORY_FILE = Path("~/.smsgw_at_history")
HISTORY_LENGTH = 1000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("port", metavar="PORT", nargs="?", default=None,
                        help="device path (/dev/ttyUSB2) or socket://host:port (not with --modem)")
    parser.add_argument(
        "commands",
        metavar="COMMAND",
        nargs="*",
        help="AT commands to send in order, 'AT' prefixed when missing ('+CSQ' -> 'AT+CSQ'); "
        "without any, commands are read from stdin",
    )
    parser.add_argument("--baud", type=int, default=115200, help="serial speed (default 115200)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds each command may take (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--modem", metavar="ID", default=None,
                        help="a configured modem: through the daemon while it runs, else its port")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="configuration file for --modem and the daemon's socket (default: $SMSGW_CONFIG "
                             "or /etc/smsgw/smsgw.toml)")


def normalise(command: str) -> str:
    """``+CSQ`` -> ``AT+CSQ``, ``i`` -> ``ATi``, ``at+csq`` unchanged."""
    command = command.strip()
    return command if command[:2].upper() == "AT" else "AT" + command


def main(args: argparse.Namespace) -> int:
    if args.modem is not None and args.port is not None:
        args.commands = [args.port, *args.commands]  # with --modem every word is a command
        args.port = None
    from appliance.commands._at_daemon import route

    routed = route(args)
    if isinstance(routed, int):
        return routed
    args.port = routed
    if "://" not in args.port and not os.path.exists(args.port):
        print(f"smsgw at: {args.port}: no such port (`smsgw detect` lists the modems attached)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_console(args))
    except TransportError as exc:
        print(f"smsgw at: {exc}", file=sys.stderr)
        return 1


async def _console(args: argparse.Namespace) -> int:
    engine = AtEngine(default_timeout=args.timeout, name="")
    closed = asyncio.Event()
    engine.on_closed = lambda exc: closed.set()
    await engine.open(args.port, baudrate=args.baud)
    try:
        if args.commands:
            return await _run_all(engine, iter(args.commands), args.timeout)
        return await _interactive(engine, args.timeout, closed, args.port)
    finally:
        engine.on_closed = None
        await engine.close()


async def _run_all(engine: AtEngine, commands: Iterator[str], timeout: float) -> int:
    failed = False
    for raw in commands:
        if not raw.strip():
            continue
        command = normalise(raw)
        payload = next(commands, None) if _WANTS_PAYLOAD.match(command) else None
        if not await _run_one(engine, command, payload, timeout):
            failed = True
        if not engine.is_open:
            break
    return 1 if failed else 0


async def _run_one(engine: AtEngine, command: str, payload: str | None, timeout: float) -> bool:
    """Send one command and print its outcome; True if it succeeded."""
    try:
        if payload is not None:
            response: AtResponse = await engine.command_with_prompt(command, payload.strip(), timeout=timeout)
        else:
            response = await engine.command(command, timeout=timeout)
    except AtError as exc:
        for line in exc.reply:
            print(mask_secrets(line), flush=True)
        print(exc.final, flush=True)
        return False
    except AtTimeout as exc:
        for line in exc.reply:
            print(mask_secrets(line), flush=True)
        print(f"smsgw at: {mask_secrets(command)}: no final result within {timeout:g}s", file=sys.stderr,
              flush=True)
        return False
    except ValueError as exc:
        print(f"smsgw at: {mask_secrets(str(exc))}", file=sys.stderr, flush=True)
        return False
    except ModemError as exc:
        print(f"smsgw at: {mask_secrets(str(exc))}", file=sys.stderr, flush=True)
        return False
    for line in response.lines:
        print(mask_secrets(line), flush=True)
    print(response.final, flush=True)
    return True


def _read_stdin(loop: asyncio.AbstractEventLoop, deliver: Callable[[str | None], None]) -> None:
    """Thread body: hand each stdin line to the loop; None at EOF. Daemon: never blocks exit."""
    try:
        for line in sys.stdin:
            loop.call_soon_threadsafe(deliver, line)
    finally:
        loop.call_soon_threadsafe(deliver, None)


class Terminal:
    """The console on a terminal: readline editing and history, a prompt shown only when the
    previous command has its answer (the loop asks for each line through ``prompts``)."""

    def __init__(self) -> None:
        import readline  # line editing and history for input()
        import termios

        self.readline = readline
        self.termios = termios
        self.mode = termios.tcgetattr(sys.stdin.fileno())  # restored even when Ctrl-C ends a read
        self.history = HISTORY_FILE.expanduser()
        try:
            readline.read_history_file(self.history)
        except OSError:
            pass
        readline.set_history_length(HISTORY_LENGTH)
        self.prompts: queue.Queue[str] = queue.Queue()

    def read(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[str | None], None]) -> None:
        """Thread body: one input() per prompt the loop asks for; None at EOF (Ctrl-D)."""
        try:
            while True:
                prompt = self.prompts.get()
                try:
                    line = input(prompt)
                except EOFError:
                    print(flush=True)
                    return
                loop.call_soon_threadsafe(deliver, line)
        finally:
            loop.call_soon_threadsafe(deliver, None)

    def save(self) -> None:
        # the history file is a transcript too: a PIN typed at the console is kept as AT+CPIN="****"
        for index in range(self.readline.get_current_history_length()):
            line = self.readline.get_history_item(index + 1)
            if line and mask_secrets(line) != line:
                self.readline.replace_history_item(index, mask_secrets(line))
        try:
            self.readline.write_history_file(self.history)
        except OSError:
            pass
        try:
            self.termios.tcsetattr(sys.stdin.fileno(), self.termios.TCSADRAIN, self.mode)
        except (OSError, self.termios.error):
            pass


async def _interactive(engine: AtEngine, timeout: float, closed: asyncio.Event, port: str = "") -> int:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    engine.on_unsolicited = lambda line: print(mask_secrets(line), flush=True)
    terminal = Terminal() if sys.stdin.isatty() and sys.stdout.isatty() else None
    if terminal is None:
        threading.Thread(target=_read_stdin, args=(loop, lines.put_nowait), daemon=True, name="stdin").start()
    else:
        from appliance import __version__

        print(f"smsgw {__version__} AT console on {port}. Type AT commands ('AT' may be left out);\n"
              f"AT+CMGS=n asks for the PDU. Up/Down: history. Ctrl-D quits.", flush=True)
        terminal.prompts.put(PROMPT)
        threading.Thread(target=terminal.read, args=(loop, lines.put_nowait), daemon=True, name="stdin").start()

    def ask(prompt: str) -> None:
        if terminal is not None:
            terminal.prompts.put(prompt)

    failed = False
    closed_wait = asyncio.ensure_future(closed.wait())
    try:
        while True:
            getter = asyncio.ensure_future(lines.get())
            await asyncio.wait({getter, closed_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                print("smsgw at: port closed", file=sys.stderr, flush=True)
                return 1
            raw = getter.result()
            if raw is None:
                return 1 if failed else 0
            if not raw.strip():
                ask(PROMPT)
                continue
            command = normalise(raw)
            payload = None
            if _WANTS_PAYLOAD.match(command):
                ask(PDU_PROMPT)
                payload = await lines.get()
                if payload is None:
                    return 1
            if not await _run_one(engine, command, payload, timeout):
                failed = True
            if not engine.is_open:
                print("smsgw at: port closed", file=sys.stderr, flush=True)
                return 1
            ask(PROMPT)
    finally:
        closed_wait.cancel()
        if terminal is not None:
            terminal.save()
