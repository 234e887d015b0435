"""A modem that answers from a recorded transcript, on a real pty (``smsgw simulate --replay``).

A transcript is JSON (the format is in docs/modems.md, "Replaying a transcript")::

    {
      "modem": "Wavecom MULTIBAND 900E 1800",
      "source": {"repo": "faucamp/python-gsmmodem", "path": "test/fakemodems.py", "commit": "..."},
      "echo": true,
      "boot": ["RDY"],
      "default": {"lines": [], "final": "OK"},
      "commands": {
        "AT+CGMI": {"lines": [" WAVECOM MODEM"], "final": "OK"},
        "AT+CGMR": {"final": "ERROR"},
        "AT+CPIN?": {"lines": ["+CPIN: READY"], "final": null},
        "AT+CSQ": [{"lines": ["+CSQ: 99,99"]}, {"lines": ["+CSQ: 17,99"]}]
      }
    }

Each command line the client sends (up to CR) is looked up in ``commands`` (case and surrounding
spaces ignored); a list of replies is answered in turn, its last one repeating. A reply writes its
``lines`` and its ``final`` result (``null``: none, as the recorded modem did) in verbose form
(CR LF line CR LF), or ``raw`` bytes exactly as recorded; ``urcs`` follow the reply; ``prompt``
answers ``> `` first and the rest after the Ctrl-Z that ends the PDU. A command the transcript does
not record gets ``default`` (``AT``, ``ATE0`` and ``ATE1`` get OK); ``ATE0``/``ATE1`` switch the echo
when answered OK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.simulator.pty import PtyPort

LOG = logging.getLogger(__name__)

CR, LF, CTRL_Z, ESC = 0x0D, 0x0A, 0x1A, 0x1B
MAX_LINE = 4096
_REPLY_KEYS = {"lines", "final", "raw", "urcs", "prompt", "note"}
#: Commands every modem answers OK (ITU-T V.25ter): unrecorded, they get OK whatever ``default`` says.
V25TER_BASICS = frozenset({"AT", "ATE0", "ATE1"})
_TOP_KEYS = {"modem", "source", "echo", "boot", "default", "commands", "expect", "usb", "note"}


class TranscriptError(ValueError):
    """A transcript file that cannot be replayed; the message names the file and the key."""

    def __init__(self, path: Path | str, key: str | None, reason: str) -> None:
        self.path = str(path)
        self.key = key
        super().__init__(f"{path}: {key}: {reason}" if key else f"{path}: {reason}")


@dataclass(frozen=True)
class Reply:
    """One recorded answer: information lines and final result, or raw bytes; URCs after it."""

    lines: tuple[str, ...] = ()
    final: str | None = "OK"
    raw: str | None = None
    urcs: tuple[str, ...] = ()
    prompt: bool = False

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw.encode("latin-1")
        text = "".join(f"\r\n{line}\r\n" for line in self.lines)
        if self.final is not None:
            text += f"\r\n{self.final}\r\n"
        return text.encode("latin-1")


@dataclass(frozen=True)
class Transcript:
    modem: str
    source: dict[str, Any]
    commands: dict[str, tuple[Reply, ...]]
    default: Reply = Reply()
    echo: bool = True
    boot: tuple[str, ...] = ()
    expect: dict[str, Any] = field(default_factory=dict)
    usb: dict[str, Any] = field(default_factory=dict)
    path: str = ""


def command_key(command: str) -> str:
    return command.strip().upper()


def _strings(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TranscriptError(path, key, f"must be a list of strings, not {value!r}")
    return tuple(value)


def _reply(path: Path, key: str, value: Any) -> Reply:
    if not isinstance(value, dict):
        raise TranscriptError(path, key, f"must be a reply object {{lines, final, raw, urcs, prompt}}, not {value!r}")
    unknown = sorted(set(value) - _REPLY_KEYS)
    if unknown:
        raise TranscriptError(path, f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(_REPLY_KEYS))})")
    final = value.get("final", "OK")
    if final is not None and not isinstance(final, str):
        raise TranscriptError(path, f"{key}.final", f"must be a string or null, not {final!r}")
    raw = value.get("raw")
    if raw is not None and not isinstance(raw, str):
        raise TranscriptError(path, f"{key}.raw", f"must be a string, not {raw!r}")
    if raw is not None and ("lines" in value or "final" in value):
        raise TranscriptError(path, f"{key}.raw", "raw replaces lines and final: give one or the other")
    prompt = value.get("prompt", False)
    if not isinstance(prompt, bool):
        raise TranscriptError(path, f"{key}.prompt", f"must be true or false, not {prompt!r}")
    return Reply(
        lines=_strings(path, f"{key}.lines", value.get("lines", [])),
        final=final,
        raw=raw,
        urcs=_strings(path, f"{key}.urcs", value.get("urcs", [])),
        prompt=prompt,
    )


def load_transcript(path: Path | str) -> Transcript:
    """Read and check a transcript file; TranscriptError names the file and the bad key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TranscriptError(path, None, "no such transcript file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TranscriptError(path, None, f"cannot read: {exc}") from None
    except ValueError as exc:
        raise TranscriptError(path, None, f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise TranscriptError(path, None, "must be a JSON object")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise TranscriptError(path, unknown[0], f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")
    modem = data.get("modem")
    if not isinstance(modem, str) or not modem:
        raise TranscriptError(path, "modem", "missing: the name of the recorded modem")
    source = data.get("source")
    if not isinstance(source, dict) or not source:
        raise TranscriptError(path, "source", "missing: where the recording comes from (repo, path, commit or issue)")
    raw_commands = data.get("commands")
    if not isinstance(raw_commands, dict) or not raw_commands:
        raise TranscriptError(path, "commands", "missing: an object of command -> reply")
    commands: dict[str, tuple[Reply, ...]] = {}
    for command, value in raw_commands.items():
        key = f"commands.{command}"
        if not command.strip().upper().startswith("AT"):
            raise TranscriptError(path, key, "a recorded command must start with AT")
        replies = value if isinstance(value, list) else [value]
        if not replies:
            raise TranscriptError(path, key, "an empty list of replies")
        commands[command_key(command)] = tuple(_reply(path, f"{key}[{i}]" if isinstance(value, list) else key, r)
                                               for i, r in enumerate(replies))
    echo = data.get("echo", True)
    if not isinstance(echo, bool):
        raise TranscriptError(path, "echo", f"must be true or false, not {echo!r}")
    expect = data.get("expect", {})
    usb = data.get("usb", {})
    if not isinstance(expect, dict) or not isinstance(usb, dict):
        raise TranscriptError(path, "expect" if not isinstance(expect, dict) else "usb", "must be an object")
    return Transcript(
        modem=modem,
        source=source,
        commands=commands,
        default=_reply(path, "default", data["default"]) if "default" in data else Reply(),
        echo=echo,
        boot=_strings(path, "boot", data.get("boot", [])),
        expect=expect,
        usb=usb,
        path=str(path),
    )


class ReplayModem:
    """Serves one transcript on a pty whose slave is symlinked at ``link``."""

    def __init__(self, transcript: Transcript, link: Path | str, *, supplement: dict[str, Reply] | None = None) -> None:
        self.transcript = transcript
        #: Answers for commands the transcript does not record, tried before ``default`` (a test
        #: that needs a SIM answer from a transcript that only recorded identity says so here).
        self.supplement = {command_key(k): v for k, v in (supplement or {}).items()}
        self.link = Path(link)
        self.port = PtyPort(self.link, self._on_data)
        self.echo = transcript.echo
        #: Every command line received, in order (for tests and the log).
        self.received: list[str] = []
        #: Commands answered with ``default`` because the transcript does not record them.
        self.unrecorded: list[str] = []
        self._buffer = bytearray()
        self._served: dict[str, int] = {}
        self._pending: Reply | None = None  # a prompt reply waiting for the PDU's Ctrl-Z

    async def start(self) -> None:
        self.link.parent.mkdir(parents=True, exist_ok=True)
        self.port.open()
        if self.transcript.boot:
            self.port.write("".join(f"\r\n{urc}\r\n" for urc in self.transcript.boot).encode("latin-1"))

    async def stop(self) -> None:
        self.port.close()

    async def __aenter__(self) -> ReplayModem:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- input ------------------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        for byte in data:
            if self._pending is not None:
                self._pdu_byte(byte)
                continue
            if byte == CR:
                line = self._buffer.decode("latin-1")
                self._buffer.clear()
                if self.echo:
                    self.port.write(line.encode("latin-1") + b"\r")
                if line.strip():
                    self._answer(line.strip())
            elif byte in (LF, CTRL_Z, ESC):
                continue
            elif len(self._buffer) < MAX_LINE:
                self._buffer.append(byte)

    def _pdu_byte(self, byte: int) -> None:
        reply = self._pending
        assert reply is not None
        if byte == ESC:
            self._pending = None
            self._buffer.clear()
            self.port.write(b"\r\nOK\r\n")
        elif byte == CTRL_Z:
            self._pending = None
            self._buffer.clear()
            self._write_reply(reply)
        elif len(self._buffer) < MAX_LINE:
            self._buffer.append(byte)

    # -- answers ----------------------------------------------------------------------------

    def reply_for(self, command: str) -> Reply | None:
        """The recorded reply to ``command`` now (advancing through a list), None when unrecorded."""
        key = command_key(command)
        replies = self.transcript.commands.get(key)
        if replies is None:
            return None
        served = self._served.get(key, 0)
        self._served[key] = served + 1
        return replies[min(served, len(replies) - 1)]

    def _answer(self, command: str) -> None:
        self.received.append(command)
        reply = self.reply_for(command)
        if reply is None:
            self.unrecorded.append(command)
            if command_key(command) in V25TER_BASICS:
                reply = Reply()
            else:
                reply = self.supplement.get(command_key(command), self.transcript.default)
            LOG.debug("replay %s: %r not recorded, answered with the default", self.transcript.modem, command)
        key = command_key(command)
        if key in ("ATE0", "ATE1") and (reply.final == "OK" or reply.raw is not None):
            self.echo = key == "ATE1"
        if reply.prompt:
            self._pending = reply
            self.port.write(b"\r\n> ")
            return
        self._write_reply(reply)

    def _write_reply(self, reply: Reply) -> None:
        data = reply.encode()
        if reply.urcs:
            data += "".join(f"\r\n{urc}\r\n" for urc in reply.urcs).encode("latin-1")
        self.port.write(data)


async def serve_transcript(path: Path | str, directory: Path | str, stop: asyncio.Event,
                           *, ready: Any = None) -> ReplayModem:
    """Replay ``path`` at ``directory/modem0`` until ``stop`` is set; ``ready(modem)`` once listening."""
    modem = ReplayModem(load_transcript(path), Path(directory) / "modem0")
    await modem.start()
    try:
        if ready is not None:
            ready(modem)
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await modem.stop()
    return modem
