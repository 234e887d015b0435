"""One simulated modem: the AT command interpreter behind a pty.

Bytes are handled in order by one task per modem: echo (when on) as the characters arrive, commands
on CR (LF tolerated), chained commands (``AT+CMEE=1;+CREG=2``, ``ATE0V1``), the ``> `` prompt for
AT+CMGS in PDU and text mode, ESC and Ctrl-Z discarded outside message entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from drivers import gsm7
from drivers.pdu import PduError, SmsStatusReport, SmsSubmit, decode, encode_deliver
from drivers.simulator.calls import RING_INTERVAL, RINGS, SimCall
from drivers.simulator.flavours import CMGR_HEADERS, Flavour
from drivers.simulator.network import Submitted
from drivers.simulator.pty import PtyPort
from drivers.simulator.ussd import UssdAnswer, UssdService

if TYPE_CHECKING:
    from drivers.simulator.network import Network

LOG = logging.getLogger(__name__)

CR, LF, BS, DEL, CTRL_Z, ESC = 0x0D, 0x0A, 0x08, 0x7F, 0x1A, 0x1B
_HEX_DIGITS = frozenset(b"0123456789ABCDEFabcdef")
MAX_LINE = 4096
STAT_NAMES = ("REC UNREAD", "REC READ", "STO UNSENT", "STO SENT")
FAULTS = (
    "hang", "recover", "garbage", "unplug", "replug", "cms-error:CODE", "no-network", "network",
    "sim-full", "pin-required", "pin-attempts:N", "report-status:CODE", "cmgr-header:NAME", "balance:AMOUNT",
)
OPERATOR_NAME = "Simnet"
OPERATOR_CODE = "26299"
LAC, CELL = "1A2B", "01C3D4E5"
DEFAULT_PIN = "1234"

CME_TEXT = {
    3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
    11: "SIM PIN required", 12: "SIM PUK required", 16: "incorrect password", 30: "no network service",
    50: "incorrect parameters", 100: "unknown",
}
CMS_TEXT = {
    38: "network out of order", 300: "ME failure", 302: "operation not allowed",
    303: "operation not supported", 304: "invalid PDU mode parameter", 305: "invalid text mode parameter",
    311: "SIM PIN required", 321: "invalid memory index", 322: "memory full", 330: "SMSC address unknown",
    331: "no network service", 500: "unknown error",
}


class CmeError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class CmsError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class PlainError(Exception):
    """Plain ``ERROR`` whatever +CMEE says."""


@dataclass
class StoredSms:
    stat: int
    pdu: str  # hex with the SMSC field


class Storage:
    """One message memory ("SM" or "ME") with a fixed number of slots."""

    def __init__(self, name: str, capacity: int, first_index: int) -> None:
        self.name = name
        self.capacity = capacity
        self.first_index = first_index
        self.slots: dict[int, StoredSms] = {}

    @property
    def used(self) -> int:
        return len(self.slots)

    @property
    def full(self) -> bool:
        return len(self.slots) >= self.capacity

    def add(self, stat: int, pdu: str) -> int | None:
        for index in range(self.first_index, self.first_index + self.capacity):
            if index not in self.slots:
                self.slots[index] = StoredSms(stat, pdu)
                return index
        return None

    def __iter__(self) -> Iterator[tuple[int, StoredSms]]:
        return iter(sorted(self.slots.items()))


def _luhn(digits: str) -> str:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return digits + str((10 - total % 10) % 10)


def split_args(text: str) -> list[str | None]:
    """``1,"a,b",,3`` -> ['1', 'a,b', None, '3'] (quotes removed, empty fields None)."""
    args: list[str | None] = []
    current = ""
    quoted = False
    was_quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
            was_quoted = True
        elif char == "," and not quoted:
            args.append(current if current or was_quoted else None)
            current, was_quoted = "", False
        else:
            current += char
    args.append(current.strip() if current.strip() or was_quoted else None)
    return args


def split_commands(body: str) -> list[str]:
    """The commands of one line after ``AT``: extended ones end at ';', basic ones are a letter
    (or &letter) and digits."""
    commands: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char in " ;":
            i += 1
            continue
        if char in "+^$%*#!":
            j = i
            quoted = False
            while j < len(body) and (quoted or body[j] != ";"):
                if body[j] == '"':
                    quoted = not quoted
                j += 1
            commands.append(body[i:j])
            i = j
        elif char.upper() == "D":
            commands.append(body[i:])
            break
        elif char.upper() == "S" and i + 1 < len(body) and body[i + 1].isdigit():
            j = i + 1
            while j < len(body) and (body[j].isdigit() or body[j] in "=?"):
                j += 1
            commands.append(body[i:j])
            i = j
        else:
            j = i + 2 if char == "&" else i + 1
            while j < len(body) and body[j].isdigit():
                j += 1
            commands.append(body[i:j])
            i = j
    return commands


class SimModem:
    """A simulated modem: identity, SIM storage, settings, the AT interpreter and its pty."""

    def __init__(
        self,
        index: int,
        link: Path,
        network: Network,
        flavour: Flavour,
        *,
        send_delay: float = 0.0,
        sim_slots: int = 30,
        me_slots: int = 100,
        pin: str | None = None,
    ) -> None:
        self.index = index
        self.link = link
        self.network = network
        self.flavour = flavour
        self.send_delay = send_delay
        #: PDUs whose AT+CMGS entry ended (Ctrl-Z) and went to the network, answered or not yet.
        self.submits_started = 0
        self.number = f"+{4915550000 + index}"
        self.imei = _luhn(f"35486100{index:06d}")
        self.imsi = f"26299{index + 1:010d}"
        self.iccid = _luhn(f"894902000000{index:07d}")
        self.storages = {
            "SM": Storage("SM", sim_slots, flavour.first_index),
            "ME": Storage("ME", me_slots, flavour.first_index),
        }
        self.pin = pin
        self.pin_locked = pin is not None
        self.pin_attempts = 3
        #: AT+CPIN="..." commands received (right or wrong), for tests that count PIN entries.
        self.pin_entries = 0
        self.registered = True
        self.radio_on = True
        self.hung = False
        self.ussd = UssdService()
        self.cmgr_header = CMGR_HEADERS[flavour.cmgr_header]
        self.cms_error: int | None = None
        #: TP-Status of the status reports for this modem's sends (TS 23.040 9.2.3.15; 0: delivered,
        #: 65 = 0x41: permanent error, incompatible destination).
        self.report_status = 0
        self.smsc = network.smsc
        #: Deliver PDUs the network holds for this modem (storage full, no network, unplugged).
        self.waiting: list[str] = []
        self._full_announced = False
        self.port = PtyPort(link, self._on_data)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._line = bytearray()
        self._entry: bytearray | None = None
        self._entry_length = 0
        self._entry_number = ""
        self._held_urcs: list[str] = []
        self._mr = 0
        self._commands_seen = 0
        self._timers: set[asyncio.TimerHandle] = set()
        #: The incoming call ringing or connected (``SimCall``), None when there is none.
        self.call: SimCall | None = None
        self.reset_settings()

    # --- life cycle ---------------------------------------------------------------------------

    @property
    def storage(self) -> Storage:
        """The SIM storage ("SM")."""
        return self.storages["SM"]

    @property
    def plugged(self) -> bool:
        return self.port.is_open

    def reset_settings(self) -> None:
        self.echo = True
        self.verbose = True
        self.cmee = 0
        self.cmgf = 0
        self.cscs = "GSM"
        self.creg = self.cgreg = self.cereg = 0
        self.cops_format = 0
        self.cnmi = [2, 1, 0, 0, 0]
        self.csmp = [17, 167, 0, 0]
        self.csms = 0
        self.cusd = 0
        self.clip = 0  # AT+CLIP: caller ID after each RING (27.007 7.6; off after a reset)
        self.crc = 0   # AT+CRC: +CRING: <type> instead of RING (27.007 6.11)
        self.chatter = bool(self.flavour.chatter)
        self.mem = ["SM", "SM", "SM"]
        self._line = bytearray()
        self._entry = None
        self._held_urcs = []

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"sim-modem{self.index}")
        self.plug()

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.port.close()

    def plug(self) -> None:
        self.port.open()
        self.reset_settings()
        self._boot()

    def unplug(self) -> None:
        self.port.close()
        if self.call is not None:
            self.call.hang_up()
        self._line = bytearray()
        self._entry = None
        while not self._queue.empty():
            self._queue.get_nowait()

    def _boot(self) -> None:
        for urc in self.flavour.boot_urcs:
            if urc.startswith("+CPIN:") and self.pin_locked:
                urc = "+CPIN: SIM PIN"
            self.urc(urc)
        self._later(0.05, self._drain_waiting)

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``delay`` seconds (cancelled when the modem stops)."""
        self._later(delay, callback)

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle

        def run() -> None:
            self._timers.discard(timer)
            callback()

        timer = loop.call_later(delay, run)
        self._timers.add(timer)

    # --- faults -------------------------------------------------------------------------------

    def fault(self, kind: str) -> None:
        if ":" in kind:
            self._fault_with_argument(kind)
        elif kind in ("hang", "recover", "garbage", "unplug", "replug"):
            self._port_fault(kind)
        elif kind == "no-network":
            self._set_registered(False)
        elif kind == "network":
            self._set_registered(True)
            self._drain_waiting()
        elif kind == "sim-full":
            storage = self.storages[self.mem[2]]
            filler = encode_deliver(self.network.smsc, "old message", timestamp=self.network.now(),
                                    smsc=self.network.smsc)[0]
            while storage.add(1, filler) is not None:
                pass
        elif kind == "pin-required":
            # a brown-out: the SIM restarts and wants its PIN again; SIMCom and Quectel say so unasked,
            # "+CPIN: NOT READY" while the SIM restarts, then "+CPIN: SIM PIN" (docs/simulator.md)
            self.pin = self.pin or DEFAULT_PIN
            self.pin_locked = True
            if self.flavour.cpin_urcs:
                self.urc("+CPIN: NOT READY")
                self._later(0.02, lambda: self.urc("+CPIN: SIM PIN"))
        else:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")

    def _port_fault(self, kind: str) -> None:
        """``hang``, ``recover``, ``garbage``, ``unplug``, ``replug``: what the serial line does."""
        if kind == "hang":
            self.hung = True
        elif kind == "recover":
            self.hung = False
        elif kind == "garbage":
            noise = bytes(random.randrange(0x80, 0x100) for _ in range(24))
            self.port.write(b"\r\n\xff\xfe\xc3(" + noise + b"\x00\x07garbage\xe2\x82\r\n")
        elif kind == "unplug":
            self.unplug()
        elif not self.plugged:  # replug
            self.plug()

    def _fault_with_argument(self, kind: str) -> None:
        """The faults written ``name:argument``."""
        name, _, argument = kind.partition(":")
        if name == "cms-error":
            self.cms_error = _fault_number(kind, 65535, "a numeric code, as in cms-error:38")
        elif name == "cmgr-header":
            if argument not in CMGR_HEADERS:
                raise ValueError(f"cmgr-header takes one of {', '.join(CMGR_HEADERS)}, not {argument!r}")
            self.cmgr_header = CMGR_HEADERS[argument]
        elif name == "balance":
            self.ussd.set_balance(argument)
        elif name == "pin-attempts":
            self.pin_attempts = _fault_number(kind, 10, "the PIN attempts left (0-10), as in pin-attempts:1")
        elif name == "report-status":
            self.report_status = _fault_number(kind, 255, "a TP-Status 0-255, as in report-status:65")
        else:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")

    def _set_registered(self, registered: bool) -> None:
        changed = registered != self.registered
        self.registered = registered
        if changed:
            for name, n in (("+CREG", self.creg), ("+CGREG", self.cgreg), ("+CEREG", self.cereg)):
                if n and (name != "+CEREG" or self.flavour.lte):
                    self.urc(f"{name}: {self._registration_fields(n, urc=True)}")

    # --- output -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.hung:
            self.port.write(data)

    def urc(self, line: str) -> None:
        """An unsolicited line; held back while the client is typing a message."""
        if self._entry is not None:
            self._held_urcs.append(line)
        else:
            self.write(f"\r\n{line}\r\n".encode("latin-1", "replace"))

    def _final(self, text: str, info: list[str]) -> None:
        out = ""
        if info:
            out = "\r\n" + "\r\n".join(info) + "\r\n" if self.verbose else "\r\n".join(info) + "\r\n"
        self._commands_seen += 1
        if self.chatter and self._commands_seen % 4 == 0:
            chatter = self.flavour.chatter[(self._commands_seen // 4) % len(self.flavour.chatter)]
            out += f"\r\n{chatter}\r\n"
        if self.verbose:
            out += f"\r\n{text}\r\n"
        else:
            out += {"OK": "0", "ERROR": "4"}.get(text, text) + "\r"
        self.write(out.encode("utf-8", "replace"))

    def _error_text(self, exc: Exception) -> str:
        if isinstance(exc, CmsError):
            return f"+CMS ERROR: {CMS_TEXT.get(exc.code, 'unknown error') if self.cmee == 2 else exc.code}"
        if isinstance(exc, CmeError) and self.cmee:
            return f"+CME ERROR: {CME_TEXT.get(exc.code, 'unknown') if self.cmee == 2 else exc.code}"
        return "ERROR"

    # --- input --------------------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        if self.hung:
            return
        self._queue.put_nowait(data)

    async def _run(self) -> None:
        while True:
            chunk = await self._queue.get()
            try:
                await self._process(chunk)
            except asyncio.CancelledError:
                raise
            except Exception:  # the simulator must survive anything a client types
                LOG.exception("modem%d: error handling %r", self.index, chunk)
                self._line = bytearray()
                self._entry = None

    async def _process(self, chunk: bytes) -> None:
        echo = bytearray()
        for byte in chunk:
            if self.hung or not self.plugged:
                return
            if self._entry is not None:
                await self._entry_byte(byte, echo)
            else:
                await self._line_byte(byte, echo)
        if echo:
            self.write(bytes(echo))

    async def _entry_byte(self, byte: int, echo: bytearray) -> None:
        """One byte typed at the ``> `` prompt (the message of AT+CMGS / AT+CMGW)."""
        assert self._entry is not None
        if byte == CTRL_Z:
            self.write(bytes(echo))
            echo.clear()
            await self._submit_entry()
        elif byte == ESC:
            self.write(bytes(echo))
            echo.clear()
            self._leave_entry()
            self._final("OK", [])
        elif byte in (CR, LF):
            if self.cmgf == 1 and byte == CR:
                self._entry += b"\n"
                echo += b"\r\n> "
        elif byte in (BS, DEL):
            if self._entry:
                del self._entry[-1]
        elif self.cmgf == 0 and byte not in _HEX_DIGITS and byte not in b" \t":
            # Not a PDU character (a client that died at the prompt, and the next one's
            # "AT"): the entry fails at once, so the modem does not stay stuck at "> ".
            self.write(bytes(echo))
            echo.clear()
            self._leave_entry()
            self._final(self._error_text(CmsError(304)), [])
        elif len(self._entry) < 2 * MAX_LINE:
            self._entry.append(byte)
            if self.echo:
                echo.append(byte)

    async def _line_byte(self, byte: int, echo: bytearray) -> None:
        """One byte of a command line; CR or LF runs the line."""
        if byte in (CTRL_Z, ESC):
            return
        if byte in (BS, DEL):
            if self._line:
                del self._line[-1]
                if self.echo:
                    echo += b"\x08 \x08"
            return
        if byte in (CR, LF):
            if byte == LF and not self._line:
                return
            if self.echo:
                echo.append(byte)
            self.write(bytes(echo))
            echo.clear()
            line, self._line = bytes(self._line), bytearray()
            await self._execute_line(line)
            return
        if len(self._line) < MAX_LINE:
            self._line.append(byte)
            if self.echo:
                echo.append(byte)

    def _leave_entry(self) -> None:
        self._entry = None
        held, self._held_urcs = self._held_urcs, []
        for line in held:
            self.urc(line)

    async def _execute_line(self, raw: bytes) -> None:
        text = raw.decode("latin-1").strip()
        upper = text.upper()
        start = upper.find("AT")
        if start < 0:
            return  # not a command: real modems ignore it too
        body = text[start + 2 :]
        info: list[str] = []
        for command in split_commands(body):
            try:
                lines = await self._command(command)
            except (CmeError, CmsError, PlainError) as exc:
                self._final(self._error_text(exc), info)
                return
            if lines is None:  # a prompt was opened: the answer comes after the message
                return
            info.extend(lines)
        self._final("OK", info)

    # --- commands -----------------------------------------------------------------------------

    async def _command(self, command: str) -> list[str] | None:
        if command[0] in "+^$%*#!":
            name_end = 1
            while name_end < len(command) and (command[name_end].isalnum() or command[name_end] in "_"):
                name_end += 1
            name = command[:name_end].upper()
            rest = command[name_end:]
            if rest == "?":
                kind, args = "read", ""
            elif rest.startswith("=?"):
                kind, args = "test", ""
            elif rest.startswith("="):
                kind, args = "set", rest[1:]
            elif rest == "":
                kind, args = "exec", ""
            else:
                raise CmeError(50)
            return await self._extended(name, kind, args)
        return self._basic(command.upper())

    def _basic(self, command: str) -> list[str]:
        letter, value = (command[:2], command[2:]) if command.startswith("&") else (command[:1], command[1:])
        number = int(value) if value.isdigit() else 0
        if letter == "E":
            self.echo = number == 1
        elif letter == "V":
            self.verbose = number == 1
        elif letter in ("Z", "&F"):
            self.reset_settings()
        elif letter == "I":
            return [self.flavour.manufacturer, self.flavour.model, self._revision_bare()]
        elif letter == "H":
            if self.call is not None:
                self.call.hang_up()
        elif letter == "A":
            if self.call is None or not self.call.answer():
                raise PlainError()  # nothing rings: real modems answer NO CARRIER or ERROR
        elif letter in ("Q", "X", "&C", "&D", "&W", "S", "L", "M"):
            pass
        else:
            raise CmeError(4)
        return []

    def _revision_bare(self) -> str:
        revision = self.flavour.revision
        return revision.partition(": ")[2] if revision.startswith("+CGMR: ") else revision

    def _need_sim(self, sms: bool = False) -> None:
        if self.pin_locked:
            raise CmsError(311) if sms else CmeError(11)

    async def _extended(self, name: str, kind: str, args: str) -> list[str] | None:
        flavour = self.flavour
        values = split_args(args) if kind == "set" else []
        simple = {
            "+CGMI": flavour.manufacturer, "+GMI": flavour.manufacturer,
            "+CGMM": flavour.model, "+GMM": flavour.model,
            "+CGMR": flavour.revision, "+GMR": self._revision_bare(),
            "+CGSN": self.imei, "+GSN": self.imei,
        }
        if name in simple:
            return [] if kind == "test" else [simple[name]]
        iccid_key = name + ("?" if kind == "read" else "")
        if iccid_key in flavour.iccid or (name in flavour.iccid and kind == "exec"):
            return [flavour.iccid.get(iccid_key, flavour.iccid.get(name, "")).format(iccid=self.iccid)]
        if kind == "test" and name in _TEST_ANSWERS:
            return list(_TEST_ANSWERS[name])
        if name == flavour.pin_counter[0] and kind != "test":
            return [flavour.pin_counter[1].format(pin=max(self.pin_attempts, 0), code=self._cpin_code())]
        handler = _HANDLERS.get(name)
        if handler is None:
            raise CmeError(4)
        return await handler(self, kind, values)

    # generic 27.007 ----------------------------------------------------------------------------

    async def _cmee(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return [f"+CMEE: {self.cmee}"]
        self.cmee = _int(values, 0, 0, (0, 1, 2))
        return []

    async def _cimi(self, kind: str, values: list[str | None]) -> list[str]:
        self._need_sim()
        return [self.imsi]

    def _cpin_code(self) -> str:
        if self.pin_attempts <= 0:
            return "SIM PUK"
        return "SIM PIN" if self.pin_locked else "READY"

    async def _cpin(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return [f"+CPIN: {self._cpin_code()}"]
        if kind != "set" or not values or values[0] is None:
            raise CmeError(50)
        self.pin_entries += 1
        if not self.pin_locked:
            raise CmeError(3)
        if self.pin_attempts <= 0:
            raise CmeError(12)
        if values[0] != self.pin:
            self.pin_attempts -= 1
            raise CmeError(16)
        self.pin_locked = False
        self.pin_attempts = 3
        if self.flavour.cpin_urcs:
            self._later(0.02, lambda: self.urc("+CPIN: READY"))
        self._later(0.05, self._drain_waiting)
        return []

    async def _clck(self, kind: str, values: list[str | None]) -> list[str]:
        """Facility lock (27.007 7.4): only the query of the SIM's PIN lock, ``AT+CLCK="SC",2``."""
        if kind == "test":
            return ['+CLCK: ("SC")']
        if kind != "set" or len(values) < 2 or (values[0] or "").upper() != "SC":
            raise CmeError(4)
        if values[1] != "2":
            raise CmeError(3)  # locking and unlocking (with the PIN) are not simulated
        return [f"+CLCK: {1 if self.pin is not None else 0}"]

    async def _csq(self, kind: str, values: list[str | None]) -> list[str]:
        return ["+CSQ: 20,99" if self._in_service() else "+CSQ: 99,99"]

    def _in_service(self) -> bool:
        return self.registered and self.radio_on and not self.pin_locked

    def _registration_fields(self, n: int, *, urc: bool = False, act: bool = False) -> str:
        stat = 1 if self._in_service() else 0
        fields = [] if urc else [str(n)]
        fields.append(str(stat))
        spaced = self.flavour.spaced_registration
        if n == 2 and stat == 1:
            fields += [LAC, CELL] if spaced else [f'"{LAC}"', f'"{CELL}"']
            if act:
                fields.append(str(self.flavour.act))
        return (", " if spaced else ",").join(fields)

    async def _creg(self, kind: str, values: list[str | None]) -> list[str]:
        return self._registration("+CREG", "creg", kind, values)

    async def _cgreg(self, kind: str, values: list[str | None]) -> list[str]:
        return self._registration("+CGREG", "cgreg", kind, values)

    async def _cereg(self, kind: str, values: list[str | None]) -> list[str]:
        if not self.flavour.lte:
            raise CmeError(4)
        return self._registration("+CEREG", "cereg", kind, values)

    def _registration(self, name: str, attr: str, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return [f"{name}: {self._registration_fields(getattr(self, attr), act=name == '+CEREG')}"]
        if kind == "set":
            setattr(self, attr, _int(values, 0, 0, (0, 1, 2)))
            return []
        raise CmeError(50)

    async def _cgatt(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return [f"+CGATT: {1 if self._in_service() else 0}"]
        return []

    async def _cops(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            if not self._in_service():
                return ["+COPS: 0"]
            operator = {0: OPERATOR_NAME, 1: OPERATOR_NAME[:6], 2: OPERATOR_CODE}[self.cops_format]
            return [f'+COPS: 0,{self.cops_format},"{operator}",{self.flavour.act}']
        if kind == "test":
            return [f'+COPS: (2,"{OPERATOR_NAME}","{OPERATOR_NAME}","{OPERATOR_CODE}",{self.flavour.act}),,'
                    "(0-4),(0-2)"]
        if kind == "set":
            mode = _int(values, 0, 0, (0, 1, 2, 3, 4))
            if mode == 3:
                self.cops_format = _int(values, 1, 0, (0, 1, 2))
        return []

    async def _cfun(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return [f"+CFUN: {1 if self.radio_on else 4}"]
        if kind == "test":
            return ["+CFUN: (0,1,4),(0,1)"]
        fun = _int(values, 0, 1, (0, 1, 4))
        reset = _int(values, 1, 0, (0, 1))
        self.radio_on = fun == 1
        if reset:
            self._later(0.0, self._reset)
        return []

    def _reset(self) -> None:
        if not self.plugged:
            return
        self.reset_settings()
        self.radio_on = True
        if self.pin is not None:
            self.pin_locked = True
        self._boot()

    async def _cusd(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return [f"+CUSD: {self.cusd}"]
        if kind != "set":
            return []
        n = _int(values, 0, 0, (0, 1, 2))
        if n == 2:  # 27.007 7.15: cancel the session
            self.ussd.cancel()
            return []
        self.cusd = n
        if len(values) > 1 and values[1] is not None:
            self._need_sim()
            if not self._in_service():
                raise CmeError(30)
            dcs = _int(values, 2, 15, None)
            code = values[1]
            if self.flavour.ussd_packed:
                try:
                    code = gsm7.unpack_ussd(code)
                except ValueError:
                    raise CmeError(50) from None
            answer = self.ussd.request(code)
            if answer is not None:
                line = self._cusd_line(answer, dcs)
                self._later(0.02, lambda: self.urc(line))
        return []

    def _cusd_line(self, answer: UssdAnswer, dcs: int) -> str:
        """+CUSD as the modem shows it: UCS-2 hex (DCS 72) for text the network sent as UCS-2 or when
        AT+CSCS="UCS2"; packed GSM 7-bit hex on Huawei; the text itself otherwise."""
        if answer.text is None:
            return f"+CUSD: {answer.status}"
        text = answer.text
        if answer.ucs2 or (self.cscs == "UCS2" and not self.flavour.ussd_packed):
            text, dcs = text.encode("utf-16-be").hex().upper(), 72
        elif self.flavour.ussd_packed:
            text = gsm7.pack_ussd(text)
        return f'+CUSD: {answer.status},"{text}",{dcs}'

    async def _ok(self, kind: str, values: list[str | None]) -> list[str]:
        return []

    # 27.007 calls ------------------------------------------------------------------------------

    async def _clip(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return [f"+CLIP: {self.clip},1"]  # <n>,<m>: m = 1, CLIP provisioned
        if kind == "test":
            return ["+CLIP: (0,1)"]
        self.clip = _int(values, 0, 0, (0, 1))
        return []

    async def _crc(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return [f"+CRC: {self.crc}"]
        if kind == "test":
            return ["+CRC: (0,1)"]
        self.crc = _int(values, 0, 0, (0, 1))
        return []

    async def _chup(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "exec" and self.call is not None:
            self.call.hang_up()
        return []

    def incoming_call(self, caller: str | None, *, rings: int = RINGS, interval: float = RING_INTERVAL) -> SimCall:
        """The network puts a call through to this modem: it rings (see ``drivers.simulator.calls``)."""
        if not self.flavour.voice:
            raise ValueError(f"modem {self.index} ({self.flavour.model}) has no voice service: calls do not ring")
        if not self.plugged or not self._in_service():
            raise ValueError(f"modem {self.index} is not reachable (unplugged or not registered): the call does not ring")
        if self.call is not None:
            raise ValueError(f"modem {self.index} is already in a call (from {self.call.caller or 'a withheld number'})")
        call = SimCall(self, caller, rings=rings, interval=interval)
        self.call = call
        call.start()
        return call

    async def _cbc(self, kind: str, values: list[str | None]) -> list[str]:
        return ["+CBC: 0,100,4200"]

    async def _clac(self, kind: str, values: list[str | None]) -> list[str]:
        names = {*_HANDLERS, "+CGMI", "+CGMM", "+CGMR", "+CGSN", "+GMI", "+GMM", "+GMR", "+GSN"}
        names |= {name.rstrip("?") for name in self.flavour.iccid}
        return ["AT" + name for name in sorted(names)]

    async def _cnum(self, kind: str, values: list[str | None]) -> list[str]:
        self._need_sim()
        return [f'+CNUM: "","{self.number}",145']

    async def _cgdcont(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return ['+CGDCONT: 1,"IP","internet","0.0.0.0",0,0']
        return []

    async def _curc(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return [f"^CURC: {1 if self.chatter else 0}"]
        if kind == "set":
            self.chatter = _int(values, 0, 1, (0, 1)) == 1 and bool(self.flavour.chatter)
        return []

    # 27.005 SMS -------------------------------------------------------------------------------

    async def _cmgf(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return [f"+CMGF: {self.cmgf}"]
        self.cmgf = _int(values, 0, 0, (0, 1))
        return []

    async def _cscs(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return [f'+CSCS: "{self.cscs}"']
        if kind == "set":
            charset = (values[0] or "").upper() if values else ""
            if charset not in ("GSM", "IRA", "UCS2", "8859-1", "PCCP437", "HEX"):
                raise CmeError(4)
            self.cscs = charset
        return []

    async def _csca(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            self._need_sim()
            number = self.smsc
            if self.cscs == "UCS2":
                number = number.encode("utf-16-be").hex().upper()
            return [f'+CSCA: "{number}",{145 if self.smsc.startswith("+") else 129}']
        if kind == "set":
            if not values or not values[0]:
                raise CmsError(304)
            number = values[0]
            if self.cscs == "UCS2":
                try:
                    number = bytes.fromhex(number).decode("utf-16-be")
                except ValueError:
                    raise CmsError(304) from None
            self.smsc = number
        return []

    async def _csmp(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return ["+CSMP: " + ",".join(str(v) for v in self.csmp)]
        for position in range(4):
            if position < len(values) and values[position] is not None:
                self.csmp[position] = _int(values, position, 0, None)
        return []

    async def _csms(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return [f"+CSMS: {self.csms},1,1,1"]
        self.csms = _int(values, 0, 0, (0, 1, 128))
        return ["+CSMS: 1,1,1"]

    async def _cnmi(self, kind: str, values: list[str | None]) -> list[str]:
        if kind == "read":
            return ["+CNMI: " + ",".join(str(v) for v in self.cnmi)]
        allowed: tuple[tuple[int, ...], ...] = ((0, 1, 2, 3), (0, 1, 2, 3), (0, 2), (0, 1, 2), (0, 1))
        new = list(self.cnmi)
        for position in range(min(5, len(values))):
            if values[position] is not None:
                new[position] = _int(values, position, 0, allowed[position], cms=True)
        self.cnmi = new
        return []

    async def _cpms(self, kind: str, values: list[str | None]) -> list[str]:
        self._need_sim(sms=True)
        if kind == "read":
            fields = []
            for mem in self.mem:
                storage = self.storages[mem]
                fields.append(f'"{mem}",{storage.used},{storage.capacity}')
            return ["+CPMS: " + ",".join(fields)]
        if kind == "test":
            return ['+CPMS: ("SM","ME"),("SM","ME"),("SM","ME")']
        if kind != "set" or not values:
            raise CmsError(302)
        chosen = list(self.mem)
        for position, value in enumerate(values[:3]):
            if value is None:
                continue
            mem = value.upper()
            if mem == "MT":
                mem = "SM"
            if mem not in self.storages:
                raise CmsError(302)
            chosen[position] = mem
        self.mem = chosen
        out = []
        for mem in chosen:
            out += [str(self.storages[mem].used), str(self.storages[mem].capacity)]
        return ["+CPMS: " + ",".join(out)]

    async def _cmgs(self, kind: str, values: list[str | None]) -> list[str] | None:
        self._need_sim(sms=True)
        if kind == "test":
            return []
        if kind != "set" or not values or values[0] is None:
            raise CmsError(304 if self.cmgf == 0 else 305)
        if self.cmgf == 0:
            if not values[0].isdigit() or not 7 <= int(values[0]) <= 175:
                raise CmsError(304)
            self._entry_length = int(values[0])
        else:
            number = values[0]
            if self.cscs == "UCS2":
                try:
                    number = bytes.fromhex(number).decode("utf-16-be")
                except ValueError:
                    raise CmsError(305) from None
            self._entry_number = number
        self._entry = bytearray()
        self.write(b"\r\n> ")
        return None

    async def _submit_entry(self) -> None:
        entry = bytes(self._entry or b"")
        self._leave_entry()
        try:
            part = self._parse_entry(entry)
            if self.cms_error is not None:
                code, self.cms_error = self.cms_error, None
                raise CmsError(code)
            if not self._in_service():
                raise CmsError(331)
        except CmsError as exc:
            self._final(self._error_text(exc), [])
            return
        self.submits_started += 1  # the PDU is with the "network": tests wait for an exchange in flight
        if self.send_delay > 0:
            await asyncio.sleep(self.send_delay)
        if self.hung or not self.plugged:
            return
        self._mr = (self._mr + 1) % 256
        part.reference = self._mr
        self._final("OK", [f"+CMGS: {self._mr}"])
        self.network.submit(self, part)

    def _parse_entry(self, entry: bytes) -> Submitted:
        if self.cmgf == 0:
            hex_text = entry.decode("latin-1").strip()
            try:
                raw = bytes.fromhex(hex_text)
            except ValueError:
                raise CmsError(304) from None
            if not raw or len(raw) - 1 - raw[0] != self._entry_length:
                raise CmsError(304)
            try:
                message = decode(raw)
            except PduError:
                raise CmsError(304) from None
            if not isinstance(message, SmsSubmit):
                raise CmsError(304)
            if not message.number:
                raise CmsError(304)
            return Submitted(message.number, message.text, message.concat, message.report_requested, 0,
                             raw[1 + raw[0]:], message.message_class)
        text = entry.decode("utf-8", "replace")
        if self.cscs == "UCS2":
            try:
                text = bytes.fromhex(text.replace("\n", "")).decode("utf-16-be")
            except ValueError:
                raise CmsError(305) from None
        report = bool(self.csmp[0] & 0x20)
        # AT+CSMP's <dcs> (27.005 3.3.2) gives a text-mode SMS its class, as a TP-DCS would
        dcs = self.csmp[3]
        message_class = dcs & 0x03 if dcs >> 6 == 0 and dcs & 0x10 else (dcs & 0x03 if dcs >> 4 == 0xF else None)
        return Submitted(self._entry_number, text, None, report, 0, None, message_class)

    def _storage(self, position: int) -> Storage:
        return self.storages[self.mem[position]]

    def _entry_lines(self, index: int, sms: StoredSms, command: str) -> list[str]:
        alpha = '""' if self.flavour.alpha_quoted else ""
        try:  # a test may store a raw, undecodable reply in a slot: it is listed as it is
            raw = bytes.fromhex(sms.pdu)
            length = len(raw) - 1 - raw[0]
        except (ValueError, IndexError):
            length = len(sms.pdu) // 2
        if self.cmgf == 0:
            if command == "+CMGL":
                return [f"+CMGL: {index},{sms.stat},{alpha},{length}", sms.pdu]
            return [f"+CMGR: {self.cmgr_header.format(stat=sms.stat, alpha=alpha, length=length)}", sms.pdu]
        stat = f'"{STAT_NAMES[sms.stat]}"'
        try:
            message = decode(sms.pdu)
        except PduError:
            return [f"{command}: {index},{stat}" if command == "+CMGL" else f"{command}: {stat}", ""]
        if isinstance(message, SmsStatusReport):
            # 27.005 text mode: <stat>,<fo>,<mr>,<ra>,<tora>,<scts>,<dt>,<st>, and no text line
            report = f"{stat},{self._status_report_fields(message)}"
            return [f"+CMGL: {index},{report}" if command == "+CMGL" else f"+CMGR: {report}"]
        number = getattr(message, "number", "")
        stamp = getattr(message, "timestamp", None)
        when = stamp.strftime('%y/%m/%d,%H:%M:%S+00') if stamp is not None else ""
        text = getattr(message, "text", "")
        if self.cscs == "UCS2":
            text = text.encode("utf-16-be").hex().upper()
            number = number.encode("utf-16-be").hex().upper()
        head = f'{stat},"{number}",,"{when}"'
        return [f"+CMGL: {index},{head}" if command == "+CMGL" else f"+CMGR: {head}", text]

    async def _cmgl(self, kind: str, values: list[str | None]) -> list[str]:
        self._need_sim(sms=True)
        if kind == "test":
            return ["+CMGL: (0-4)"] if self.cmgf == 0 else ['+CMGL: ("REC UNREAD","REC READ","STO UNSENT",'
                                                            '"STO SENT","ALL")']
        wanted: int
        raw = (values[0] or "") if values else ("4" if self.cmgf == 0 else "REC UNREAD")
        if kind == "exec":
            raw = "4" if self.cmgf == 0 else "REC UNREAD"
        if self.cmgf == 0:
            if not raw.isdigit() or int(raw) > 4:
                raise CmsError(304)
            wanted = int(raw)
        else:
            names = [*STAT_NAMES, "ALL"]
            if raw.upper() not in names:
                raise CmsError(305)
            wanted = names.index(raw.upper())
        lines: list[str] = []
        for index, sms in self._storage(0):
            if wanted == 4 or sms.stat == wanted:
                lines += self._entry_lines(index, sms, "+CMGL")
                if sms.stat == 0:
                    sms.stat = 1
        return lines

    async def _cmgr(self, kind: str, values: list[str | None]) -> list[str]:
        self._need_sim(sms=True)
        if kind == "test":
            return []
        index = _int(values, 0, -1, None, cms=True)
        sms = self._storage(0).slots.get(index)
        if sms is None:
            raise CmsError(321)
        lines = self._entry_lines(index, sms, "+CMGR")
        if sms.stat == 0:
            sms.stat = 1
        return lines

    async def _cmgd(self, kind: str, values: list[str | None]) -> list[str]:
        self._need_sim(sms=True)
        if kind == "test":
            storage = self._storage(0)
            return [f"+CMGD: ({','.join(str(i) for i, _ in storage)}),(0-4)"]
        index = _int(values, 0, -1, None, cms=True)
        flag = _int(values, 1, 0, (0, 1, 2, 3, 4), cms=True)
        storage = self._storage(0)
        if flag == 0:
            if not storage.first_index <= index < storage.first_index + storage.capacity:
                raise CmsError(321)
            storage.slots.pop(index, None)
        else:
            doomed = {1: (1,), 2: (1, 3), 3: (1, 2, 3), 4: (0, 1, 2, 3)}[flag]
            for slot, sms in list(storage):
                if sms.stat in doomed:
                    del storage.slots[slot]
        self._later(0.01, self._drain_waiting)
        return []

    # --- the network side ---------------------------------------------------------------------

    def receive(self, pdu: str) -> None:
        """The network hands over an SMS-DELIVER (hex with SMSC field)."""
        if self.waiting or not self._deliver(pdu):
            if pdu not in self.waiting:
                self.waiting.append(pdu)

    def _deliver(self, pdu: str) -> bool:
        if not self.plugged or not self._in_service():
            return False
        mode, mt = self.cnmi[0], self.cnmi[1]
        if mt == 2 and mode != 0:
            raw = bytes.fromhex(pdu)
            if self.cmgf == 0:
                self.urc(f"+CMT: ,{len(raw) - 1 - raw[0]}\r\n{pdu}")
            else:
                lines = self._entry_lines(0, StoredSms(0, pdu), "+CMGR")
                header = lines[0].partition(",")[2]  # drop the stat
                self.urc(f"+CMT: {header}\r\n{lines[1]}")
            return True
        storage = self.storages[self.mem[2]]
        index = storage.add(0, pdu)
        if index is None:
            if not self._full_announced:
                self._full_announced = True
                self.urc(self.flavour.full_urc)
            return False
        self._full_announced = False
        if mt in (1, 3) and mode != 0:
            self.urc(f'+CMTI: "{storage.name}",{index}')
        return True

    def _drain_waiting(self) -> None:
        while self.waiting:
            if not self._deliver(self.waiting[0]):
                return
            self.waiting.pop(0)

    def status_report(self, pdu: str) -> None:
        """A status report from the SMSC, routed per +CNMI <ds>."""
        if not self.plugged:
            return
        ds = self.cnmi[3]
        raw = bytes.fromhex(pdu)
        length = len(raw) - 1 - raw[0]
        if ds == 1:
            if self.cmgf == 0:
                self.urc(f"+CDS: {length}\r\n{pdu}")
            else:
                self.urc(self._text_status_report(pdu))
        elif ds == 2:
            storage = self.storages[self.mem[2]]
            index = storage.add(0, pdu)
            if index is not None:
                self.urc(f'+CDSI: "{storage.name}",{index}')

    def _text_status_report(self, pdu: str) -> str:
        message = decode(pdu)
        assert isinstance(message, SmsStatusReport)
        return "+CDS: " + self._status_report_fields(message)

    def _status_report_fields(self, report: SmsStatusReport) -> str:
        """``<fo>,<mr>,"<ra>",<tora>,"<scts>","<dt>",<st>`` (27.005 text mode)."""
        number = report.number
        tora = 145 if number.startswith("+") else 129
        if self.cscs == "UCS2":
            number = number.encode("utf-16-be").hex().upper()
        stamps = [f'"{t.strftime("%y/%m/%d,%H:%M:%S+00")}"' for t in (report.timestamp, report.discharge_time)]
        return ",".join(["6", str(report.reference), f'"{number}"', str(tora), *stamps, str(report.status)])


def _fault_number(kind: str, maximum: int, wanted: str) -> int:
    """The number after the colon of a fault kind such as ``cms-error:38``."""
    name, _, value = kind.partition(":")
    if not value.isdigit() or int(value) > maximum:
        raise ValueError(f"{name} needs {wanted}, not {kind!r}")
    return int(value)


def _int(values: list[str | None], position: int, default: int, allowed: tuple[int, ...] | None,
         *, cms: bool = False) -> int:
    """Argument ``position`` as an int (``default`` when absent); errors name nothing, like modems."""
    if position >= len(values) or values[position] is None:
        return default
    text = (values[position] or "").strip()
    if not text.lstrip("-").isdigit():
        raise CmsError(302) if cms else CmeError(50)
    value = int(text)
    if allowed is not None and value not in allowed:
        raise CmsError(302) if cms else CmeError(50)
    return value


_Handler = Callable[[SimModem, str, list[str | None]], Awaitable[list[str] | None]]

_HANDLERS: dict[str, _Handler] = {}


def _register() -> None:
    table: dict[str, _Handler] = {
        "+CMEE": SimModem._cmee, "+CIMI": SimModem._cimi, "+CPIN": SimModem._cpin, "+CSQ": SimModem._csq,
        "+CLCK": SimModem._clck,
        "+CREG": SimModem._creg, "+CGREG": SimModem._cgreg, "+CEREG": SimModem._cereg,
        "+CGATT": SimModem._cgatt, "+COPS": SimModem._cops, "+CFUN": SimModem._cfun,
        "+CUSD": SimModem._cusd, "+CNUM": SimModem._cnum,
        "+CBC": SimModem._cbc, "+CLAC": SimModem._clac, "+CGDCONT": SimModem._cgdcont,
        "^CURC": SimModem._curc, "+CMGF": SimModem._cmgf, "+CSCS": SimModem._cscs,
        "+CSCA": SimModem._csca, "+CSMP": SimModem._csmp, "+CSMS": SimModem._csms,
        "+CNMI": SimModem._cnmi, "+CPMS": SimModem._cpms, "+CMGS": SimModem._cmgs,
        "+CMGL": SimModem._cmgl, "+CMGR": SimModem._cmgr, "+CMGD": SimModem._cmgd,
        "+CNMA": SimModem._ok, "+CMMS": SimModem._ok, "+QURCCFG": SimModem._ok, "+CLIP": SimModem._clip,
        "+CRC": SimModem._crc, "+CHUP": SimModem._chup, "+CVHU": SimModem._ok, "+IPR": SimModem._ok, "+IFC": SimModem._ok,
        "+CSDH": SimModem._ok,
    }
    _HANDLERS.update(table)


_register()

_TEST_ANSWERS: dict[str, tuple[str, ...]] = {
    "+CMGF": ("+CMGF: (0,1)",),
    "+CSCS": ('+CSCS: ("IRA","GSM","UCS2")',),
    "+CNMI": ("+CNMI: (0-3),(0-3),(0,2),(0-2),(0,1)",),
    "+CMEE": ("+CMEE: (0-2)",),
    "+CREG": ("+CREG: (0-2)",),
    "+CGREG": ("+CGREG: (0-2)",),
    "+CSQ": ("+CSQ: (0-31,99),(0-7,99)",),
    "+CPIN": (),
    "+CSMS": ("+CSMS: (0,1)",),
    "+CUSD": ("+CUSD: (0-2)",),
    "+CSCA": (),
    "+CSMP": (),
    "+CIMI": (),
}

