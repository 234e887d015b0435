"""The async Modem API: one GSM modem driven through the AT engine, from a profile.

``Modem.open()`` opens the port, syncs, turns echo off (or on, as the profile says), enables
verbose errors, detects the profile when asked for "auto", unlocks the SIM (carefully: see
``_unlock_sim``), switches to PDU mode, applies the profile's CNMI and storage and turns the
registration URCs on. Incoming SMS and status reports arrive on ``events``; nothing is ever
deleted from the SIM here: the consumer commits a message, then calls ``delete_message``.

Per-vendor behaviour lives in ``drivers.vendors`` as small behaviour objects, chosen by the
profile's ``vendor_class`` (``vendor_for``) and held in ``Modem.vendor``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers import parsers
from drivers.at import AtEngine, AtResponse, Priority
from drivers.calls import CallEnded, CallTracker, IncomingCall
from drivers.errors import AtError, AtTimeout, CmeError, IdentityError, ModemError, PinError, TransportError
from drivers.identity import Identity, identity_value, read_identity
from drivers.pdu import (
    PduError,
    SmsDeliver,
    SmsStatusReport,
    SmsSubmit,
    SubmitPart,
    decode,
    encode_submit,
)
from drivers.private_files import open_private
from drivers.profiles import GENERIC, Profile, load_profile, match_identity
from drivers.vendors import Vendor, vendor_for

LOG = logging.getLogger(__name__)

#: Attempts of a bare ``AT`` while syncing with a modem that may be booting or mid-prompt.
SYNC_ATTEMPTS = 5
#: How long ``open`` waits for the SIM to say READY after a PIN was accepted (seconds).
SIM_READY_TIMEOUT = 15.0
#: How often the SIM state is polled while waiting for READY (seconds).
SIM_READY_POLL = 0.25
#: +CME ERROR code "SIM busy" (TS 27.007 9.2.1): the SIM is starting or unlocking; ask again.
SIM_BUSY = 14
#: How often the port path is checked while a USB modem re-enumerates (seconds).
PORT_POLL = 0.2
#: After a reset, how long a re-enumerating USB modem's port may take to vanish (seconds).
VANISH_GRACE = 5.0
#: Attempts to read a message announced by +CMTI/+CDSI before reporting it with an error.
READ_ATTEMPTS = 3
#: Seconds without a ring after which an incoming call counts as over (modems ring every 3-6 s;
#: some say nothing when the caller gives up).
RING_SILENCE = 12.0



# --- results and events ----------------------------------------------------------------------


@dataclass(frozen=True)
class SimStatus:
    state: str                 # the +CPIN state: "READY", "SIM PIN", "SIM PUK", ...
    pin_attempts: int | None   # PIN attempts left, None when the modem does not tell
    #: Whether the SIM asks for its PIN at power-up (``AT+CLCK="SC",2``), read when READY; None: unknown.
    pin_lock: bool | None = None

    def __str__(self) -> str:
        text = {"READY": "ready", "SIM PIN": "PIN required", "SIM PUK": "PUK required (locked)"}.get(
            self.state, self.state)
        if self.state == "READY" and self.pin_lock:
            text += " (unlocked since power-up; PIN lock on)"
        if self.pin_attempts is not None:
            text += f", {self.pin_attempts} attempt{'s' if self.pin_attempts != 1 else ''} left"
        return text


@dataclass(frozen=True)
class Signal:
    rssi: int | None        # 0..31 as +CSQ reports it, None when unknown (99)
    ber: int | None
    dbm: int | None          # -113 .. -51 dBm, None when unknown

    @property
    def percent(self) -> int | None:
        return None if self.rssi is None else round(self.rssi * 100 / 31)


@dataclass(frozen=True)
class Registration:
    status: int              # 27.007 <stat>: 0 not, 1 home, 2 searching, 3 denied, 4 unknown, 5 roaming
    lac: str | None = None
    cell_id: str | None = None
    act: int | None = None
    source: str = "CREG"

    @property
    def registered(self) -> bool:
        return self.status in (1, 5)

    @property
    def roaming(self) -> bool:
        return self.status == 5

    @property
    def state(self) -> str:
        return REGISTRATION_STATES.get(self.status, "unknown")


REGISTRATION_STATES = {0: "not-registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}


@dataclass(frozen=True)
class Operator:
    numeric: str | None      # MCC MNC, e.g. "26201"
    name: str | None
    act: int | None = None


@dataclass(frozen=True)
class StorageStatus:
    used: int
    total: int
    storage: str


@dataclass(frozen=True)
class UssdReply:
    status: int              # 0 no further action, 1 further action required, 2 terminated, ...
    text: str
    dcs: int | None = None

    @property
    def session_open(self) -> bool:
        """27.007 7.15 <m> = 1: the network asks a follow-up; answer with ``Modem.ussd(reply)``."""
        return self.status == 1


#: 27.007 7.15 +CUSD <m> values that end a USSD request without an answer.
USSD_FAILURES: dict[int, str] = {
    2: "USSD session terminated by the network",
    3: "another local client has responded",
    4: "operation not supported by the network",
    5: "network time out",
}


class UssdError(ModemError):
    """The network ended a USSD request without an answer (+CUSD: 2, 4, 5); ``status`` is <m>."""

    def __init__(self, message: str, status: int, *, command: str | None = None) -> None:
        super().__init__(message, command=command)
        self.status = status


@dataclass(frozen=True)
class IncomingSms:
    modem_id: str
    storage: str | None
    index: int | None        # SIM slot; None for a message delivered directly by +CMT
    pdu: str
    deliver: SmsDeliver | None
    error: str | None = None


@dataclass(frozen=True)
class StatusReport:
    modem_id: str
    storage: str | None
    index: int | None
    pdu: str
    report: SmsStatusReport | None
    error: str | None = None


@dataclass(frozen=True)
class StoredMessage:
    index: int
    stat: int | None          # 27.005 <stat>; None when the modem leaves it out (+CMGR: ,,27)
    pdu: str
    message: SmsDeliver | SmsStatusReport | SmsSubmit | None
    error: str | None = None


@dataclass(frozen=True)
class ModemClosed:
    modem_id: str
    error: str | None = None


@dataclass(frozen=True)
class StorageFull:
    """The modem announced that its SMS storage is full (a line of the profile's ``storage_full_urcs``,
    such as ``+CIEV: "SMSFULL",1``): new messages wait in the network until slots are freed."""

    modem_id: str
    line: str


ModemEvent = IncomingSms | StatusReport | ModemClosed | StorageFull | IncomingCall | CallEnded


# --- PIN rejections ---------------------------------------------------------------------------
#
# A wrong PIN tried three times locks the SIM behind its PUK. A rejection is therefore remembered:
# for the life of the process per port (no state directory), and across processes in
# ``<state_dir>/pin-rejections.json`` (the daemon and ``smsgw doctor`` pass the store's directory),
# keyed by the SIM's ICCID when it can be read before the PIN, else by the port. The file holds
# salted SHA-256 hashes of the rejected PINs, never a PIN. A rejected PIN is never entered again
# until an installer runs ``smsgw pin clear`` or the SIM is seen READY (unlocked elsewhere).

_REJECTED_PINS: dict[str, str] = {}

#: The file in a state directory that holds the rejected PINs (as salted hashes).
PIN_REJECTIONS_FILE = "pin-rejections.json"
#: smsgw enters a PIN only while the SIM has at least this many attempts left.
MIN_PIN_ATTEMPTS = 2


def _port_key(port: str) -> str:
    """One key per device, whichever symlink (by-id, simulator name) it is opened by."""
    return os.path.realpath(port)


def _port_exists(port: str) -> bool:
    return os.path.exists(port)


def pin_rejected(port: str) -> str | None:
    """The PIN that this port's SIM rejected earlier in this process, if any."""
    return _REJECTED_PINS.get(_port_key(port))


def remember_pin_rejection(port: str, pin: str) -> None:
    _REJECTED_PINS[_port_key(port)] = pin


def forget_pin_rejection(port: str) -> None:
    """Allow a new PIN attempt on ``port`` (an installer's deliberate action, never automatic)."""
    _REJECTED_PINS.pop(_port_key(port), None)


def sim_key(port: str, iccid: str) -> str:
    """The key of a SIM in the rejection file: its ICCID when known, else the port's device."""
    return f"iccid:{iccid}" if iccid else f"port:{_port_key(port)}"


class PinRejections:
    """Rejected PINs as salted hashes in ``directory/pin-rejections.json``, shared by processes.

    Every change is a locked read-modify-write, written atomically (temporary file, fsync,
    rename, fsync of the directory). A file that cannot be read raises ``PinError``: without it
    nobody can tell which PIN was rejected, so no PIN is entered until it is fixed or cleared.
    """

    def __init__(self, directory: os.PathLike[str] | str) -> None:
        self.directory = Path(directory)
        self.path = self.directory / PIN_REJECTIONS_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.directory / (PIN_REJECTIONS_FILE + ".lock")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = open_private(lock_path)
        except OSError as exc:
            raise PinError(f"cannot lock {lock_path}: {exc.strerror or exc}") from exc
        self._give_to_directory_owner(lock_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _load(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {"version": 1, "salt": secrets.token_hex(16), "rejections": {}}
        except OSError as exc:
            raise PinError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise PinError(f"{self.path} is not valid JSON ({exc}); run `smsgw pin clear` to reset it") from None
        if (
            not isinstance(data, dict) or not isinstance(data.get("salt"), str)
            or not isinstance(data.get("rejections"), dict)
            or not all(isinstance(e, dict) and isinstance(e.get("hashes"), list) for e in data["rejections"].values())
        ):
            raise PinError(f"{self.path} is not a PIN rejection file; run `smsgw pin clear` to reset it")
        return data

    def _save(self, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = open_private(tmp, os.O_WRONLY)
            try:
                os.ftruncate(fd, 0)
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._give_to_directory_owner(tmp)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise PinError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def _give_to_directory_owner(self, path: Path) -> None:
        """Run as root (``smsgw pin clear``, ``smsgw doctor``) in the service user's directory: the
        files stay the service user's, or the daemon could no longer read them."""
        if os.geteuid() != 0:
            return
        try:
            owner = self.directory.stat()
            if owner.st_uid != 0 and path.stat().st_uid == 0:
                os.chown(path, owner.st_uid, owner.st_gid)
        except OSError as exc:
            LOG.warning("cannot give %s to the owner of %s: %s", path, self.directory, exc)

    @staticmethod
    def _hash(salt: str, pin: str) -> str:
        return hashlib.sha256(f"{salt}:{pin}".encode()).hexdigest()

    def entries(self) -> dict[str, dict[str, Any]]:
        """Key -> {"modem_id", "port", "iccid", "hashes", "rejected_at", "reason"}."""
        if not self.path.exists():
            return {}
        with self._locked():
            return dict(self._load()["rejections"])

    def was_rejected(self, pin: str, *, modem_id: str, port: str) -> bool:
        """Whether ``pin`` is recorded as rejected for this modem id or port's device.

        For readers that must change nothing (``smsgw doctor``): no lock file, no directory is
        made; the file is only ever replaced whole, so an unlocked read sees one version of it.
        """
        try:
            data = self._load() if self.path.exists() else None
        except PinError:
            return False
        if data is None:
            return False
        digest = self._hash(data["salt"], pin)
        real = _port_key(port)
        return any(digest in entry["hashes"] and (
            entry.get("modem_id") == modem_id or (isinstance(entry.get("port"), str) and _port_key(entry["port"]) == real))
            for entry in data["rejections"].values())

    def is_rejected(self, key: str, pin: str) -> bool:
        if not self.path.exists():
            return False
        with self._locked():
            data = self._load()
        entry = data["rejections"].get(key)
        return entry is not None and self._hash(data["salt"], pin) in entry["hashes"]

    def remember(self, key: str, pin: str, *, modem_id: str, port: str, iccid: str, reason: str) -> None:
        with self._locked():
            data = self._load()
            entry = data["rejections"].setdefault(key, {"hashes": []})
            digest = self._hash(data["salt"], pin)
            if digest not in entry["hashes"]:
                entry["hashes"].append(digest)
            entry.update(modem_id=modem_id, port=port, iccid=iccid, reason=reason,
                         rejected_at=datetime.now(UTC).isoformat(timespec="seconds"))
            self._save(data)

    def forget(self, keys: Iterable[str] | None = None) -> list[str]:
        """Drop the entries with these keys (all when None); the keys dropped."""
        if not self.path.exists():
            return []
        with self._locked():
            try:
                data = self._load()
            except PinError:
                if keys is not None:
                    raise
                data = {"version": 1, "salt": secrets.token_hex(16), "rejections": {}}
                self._save(data)
                return ["(unreadable file reset)"]
            wanted = list(data["rejections"]) if keys is None else [k for k in keys if k in data["rejections"]]
            for key in wanted:
                del data["rejections"][key]
            if wanted:
                self._save(data)
            return wanted


def _digits(text: str, low: int, high: int) -> str:
    match = re.search(rf"\d{{{low},{high}}}", text)
    return match.group(0) if match else ""


class Modem:
    """One modem on one port. See the module docstring and docs/modems.md."""

    def __init__(
        self,
        port: str,
        *,
        profile: str | Profile = "auto",
        pin: str | None = None,
        modem_id: str = "modem0",
        baudrate: int = 115200,
        timeouts: Mapping[str, float] | None = None,
        sync_attempts: int = SYNC_ATTEMPTS,
        sim_ready_timeout: float = SIM_READY_TIMEOUT,
        state_dir: os.PathLike[str] | str | None = None,
        expect_imei: str | None = None,
        expect_iccid: str | None = None,
    ) -> None:
        self.port = port
        #: The configured identity (``[[modems]] imei`` / ``iccid``): ``open`` refuses another one.
        self.expect_imei = expect_imei
        self.expect_iccid = expect_iccid
        #: Rejected PINs shared across processes (None: remembered in this process only).
        self.pin_rejections = PinRejections(state_dir) if state_dir is not None else None
        self.modem_id = modem_id
        self.baudrate = baudrate
        self.pin = pin
        self._auto = profile == "auto"
        self._timeouts = dict(timeouts or {})
        self.sync_attempts = sync_attempts
        self.sim_ready_timeout = sim_ready_timeout
        self.vanish_grace = VANISH_GRACE
        base = load_profile(GENERIC) if profile == "auto" else profile
        self.profile: Profile = self._apply_timeouts(base if isinstance(base, Profile) else load_profile(base))
        #: What this modem's vendor does differently in code (``drivers.vendors``), from the profile.
        self.vendor: Vendor = vendor_for(self.profile)
        self.identity = Identity()
        self.events: asyncio.Queue[ModemEvent] = asyncio.Queue()
        self.registration_state: Registration | None = None
        self._engine: AtEngine | None = None
        #: Failed AT commands by (kind, code) over every engine this modem opened (drivers.errors.error_kind).
        self.at_errors: Counter[tuple[str, str]] = Counter()
        self._urc_removers: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._ussd_waiter: asyncio.Future[UssdReply] | None = None
        self._concat_reference = int.from_bytes(os.urandom(1), "big")
        self._closing = False
        #: The state of the last unsolicited ``+CPIN:`` line (None: none seen).
        self.sim_urc_state: str | None = None
        #: Called with the state of every unsolicited ``+CPIN:`` line (the health supervisor listens).
        self.on_sim_state: Callable[[str], None] | None = None
        #: Incoming calls: ``IncomingCall`` and ``CallEnded`` go on ``events`` (``drivers.calls``).
        self.calls = CallTracker(modem_id, self.events.put_nowait)
        #: Seconds without a ring after which a call counts as over (``CallEnded`` "silence").
        self.ring_silence = RING_SILENCE
        self._silence: asyncio.TimerHandle | None = None
        self._no_carrier: Callable[[], None] | None = None

    # --- profile and timeouts -----------------------------------------------------------

    def _apply_timeouts(self, profile: Profile) -> Profile:
        return profile.with_timeouts(**self._timeouts) if self._timeouts else profile

    def timeout(self, key: str) -> float:
        return self.profile.timeout(key)

    @property
    def is_open(self) -> bool:
        return self._engine is not None and self._engine.is_open

    @property
    def engine(self) -> AtEngine:
        if self._engine is None or not self._engine.is_open:
            raise TransportError(f"{self.modem_id}: modem {self.port} is not open")
        return self._engine

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.modem_id} {self.port} profile={self.profile.name}>"

    # --- commands -------------------------------------------------------------------------

    async def command(
        self, cmd: str, *, timeout: float | None = None, priority: Priority = Priority.POLL
    ) -> AtResponse:
        """Run one AT command (the engine enforces the timeout; default: the profile's)."""
        return await self.engine.command(
            cmd, timeout=timeout if timeout is not None else self.timeout("command"), priority=priority
        )

    async def _optional(self, cmd: str, *, priority: Priority = Priority.POLL) -> AtResponse | None:
        """A command a modem may not support: an error answer is logged and returns None."""
        try:
            return await self.command(cmd, priority=priority)
        except AtError as exc:
            LOG.info("%s: %s not supported: %s", self.modem_id, cmd, exc)
            return None

    # --- open / close -----------------------------------------------------------------------

    async def open(self) -> None:
        """Open the port, sync, detect, unlock the SIM and initialise. Safe to call again after close."""
        self._closing = False
        await self._close_engine()  # a port that vanished leaves its dead engine behind
        await self._open_engine()
        try:
            await self._initialise()
        except BaseException:
            await self._close_engine()
            raise

    async def _open_engine(self) -> None:
        engine = AtEngine(
            default_timeout=self.timeout("command"),
            name=self.modem_id,
            ignore_urcs=tuple(self.profile.ignore_urcs),
            final_without_ok=tuple(self.profile.final_without_ok),
            error_counts=self.at_errors,
        )
        engine.on_closed = self._on_engine_closed
        await engine.open(self.port, baudrate=self.baudrate)
        self._engine = engine
        self._register_urcs()

    async def _initialise(self) -> None:
        await self._sync()
        await self.command("ATE1" if self.profile.echo else "ATE0", priority=Priority.RESET)
        await self._optional("AT+CMEE=1", priority=Priority.RESET)
        identity = await read_identity(self.command, self.modem_id)
        manufacturer, model, revision, imei = identity.manufacturer, identity.model, identity.revision, identity.imei
        if self._auto:
            await self._adopt_profile(match_identity(manufacturer, model))
        self.identity = identity
        if self.expect_imei is not None and imei != self.expect_imei:
            raise IdentityError(f"{self.modem_id}: the modem on {self.port} has IMEI {imei or '(none read)'}, "
                                f"not the configured {self.expect_imei}", "wrong modem")
        if self.expect_iccid is not None:
            # before any PIN: the configured PIN must never be spent on another SIM
            early = await self._read_iccid()
            if early and early != self.expect_iccid:
                raise self._wrong_sim(early)
        await self._unlock_sim()
        imsi = _digits(identity_value((await self._optional("AT+CIMI") or _EMPTY).lines, ["+CIMI"]), 6, 15)
        iccid = await self._read_iccid()
        if self.expect_iccid is not None and iccid != self.expect_iccid:
            raise self._wrong_sim(iccid)
        self.identity = Identity(manufacturer, model, revision, imei, imsi, iccid)
        await self._message_settings()
        LOG.info(
            "%s: open on %s: %s %s (profile %s, IMEI %s)",
            self.modem_id, self.port, manufacturer, model, self.profile.name, imei or "?",
        )

    async def _message_settings(self) -> None:
        await self.command("AT+CMGF=0")
        for cmd in self.profile.init_commands:
            await self._optional(cmd)
        mem = ",".join(f'"{m}"' for m in self.profile.storage)
        await self._optional(f"AT+CPMS={mem}")
        await self.command(self.profile.cnmi)
        await self._optional("AT+CREG=2")
        await self._optional("AT+CGREG=2")
        await self._optional("AT+CEREG=2")
        for cmd in self.profile.call_init_commands:  # caller ID (AT+CLIP=1) for the call events
            await self._optional(cmd)

    async def _sync(self) -> None:
        """Bare ``AT`` until the modem answers: it may be booting, or left at a ``> `` prompt."""
        last: Exception | None = None
        self.engine.cancel_entry()
        for attempt in range(self.sync_attempts):
            try:
                await self.command("AT", timeout=self.timeout("sync"), priority=Priority.RESET)
                return
            except (AtTimeout, AtError) as exc:
                last = exc
                LOG.debug("%s: sync attempt %d failed: %s", self.modem_id, attempt + 1, exc)
        raise AtTimeout(f"{self.modem_id}: no answer to AT on {self.port} after {self.sync_attempts} attempts") from last

    async def _adopt_profile(self, profile: Profile) -> None:
        """Switch to the detected profile (and its vendor subclass) after +CGMI/+CGMM."""
        profile = self._apply_timeouts(profile)
        if profile.name == self.profile.name:
            return
        LOG.info("%s: detected profile %s", self.modem_id, profile.name)
        old = self.profile
        self.vendor = vendor_for(profile)
        self.profile = profile
        if (profile.final_without_ok, profile.ignore_urcs) != (old.final_without_ok, old.ignore_urcs):
            # The engine takes these at construction: reopen it with the detected ones.
            await self._close_engine()
            await self._open_engine()
            await self._sync()
        elif profile.storage_full_urcs != old.storage_full_urcs:
            self._remove_urcs()
            self._register_urcs()

    def _wrong_sim(self, iccid: str) -> IdentityError:
        return IdentityError(f"{self.modem_id}: wrong SIM in {self.port}: ICCID {iccid or '(none read)'}, not the "
                             f"configured {self.expect_iccid}; not using it (put the right SIM in, or change "
                             "[[modems]].iccid)", "wrong sim")

    async def _read_iccid(self) -> str:
        for cmd in self.profile.iccid_commands:
            response = await self._optional(cmd)
            if response is not None:
                iccid = _digits(" ".join(response.lines), 18, 22)
                if iccid:
                    return iccid
        return ""

    async def close(self) -> None:
        """Close the port; pending work is cancelled. ``ModemClosed`` goes on ``events``."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        was_open = self._engine is not None
        await self._close_engine()
        if was_open:
            self.events.put_nowait(ModemClosed(self.modem_id, None))

    async def _close_engine(self) -> None:
        self._remove_urcs()
        self._call_over("closed")
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.on_closed = None
            await engine.close()

    def _on_engine_closed(self, error: BaseException | None) -> None:
        LOG.warning("%s: port %s closed%s", self.modem_id, self.port, f": {error}" if error else "")
        self._call_over("closed")
        if self._ussd_waiter is not None and not self._ussd_waiter.done():
            self._ussd_waiter.set_exception(TransportError(f"{self.modem_id}: port closed during USSD"))
        self.events.put_nowait(ModemClosed(self.modem_id, str(error) if error else None))

    # --- SIM --------------------------------------------------------------------------------

    async def sim_state(self, *, priority: Priority = Priority.POLL) -> str:
        """The +CPIN state: "READY", "SIM PIN", "SIM PUK", ..."""
        response = await self.command("AT+CPIN?", priority=priority)
        return parsers.parse_cpin(response.lines)

    async def unlock_sim(self) -> None:
        """A SIM that asks for its PIN again while open (a brown-out reset it): unlock it through the
        PIN guard of ``open`` (never a rejected PIN, never below ``MIN_PIN_ATTEMPTS``), then set the
        message settings again (a SIM reset loses the storage selection on some modems).
        Raises ``PinError`` when the guard does not enter the PIN."""
        await self._unlock_sim()
        await self._message_settings()

    def _on_cpin(self, match: re.Match[str], _extra: list[str]) -> None:
        """``+CPIN: <state>`` sent unasked (SIMCom, Quectel) when the SIM's state changes."""
        state = parsers.parse_cpin_urc(match.string)
        LOG.log(logging.INFO if state == "READY" else logging.WARNING, "%s: SIM state %s (unsolicited)",
                self.modem_id, state)
        self.sim_urc_state = state
        if self.on_sim_state is not None:
            self.on_sim_state(state)

    async def _unlock_sim(self) -> None:
        """Enter the PIN only when the SIM asks for "SIM PIN", once, and never after a rejection.

        A wrong PIN retried a few times locks the SIM behind its PUK: the worst thing we could do
        to an installer. So a rejection is remembered (see ``PinRejections``; without a state
        directory, per port for the life of the process) and no later ``open``, in this process
        or another, enters the same PIN again. No PIN is entered either when the modem says fewer
        than ``MIN_PIN_ATTEMPTS`` attempts are left.
        """
        state = await self._sim_state_after_boot()
        if state == "READY":
            await self._sim_seen_ready()
            return
        if state == "SIM PUK":
            raise PinError(f"{self.modem_id}: the SIM is PUK-locked; smsgw never enters a PUK: unlock it in a phone")
        if state != "SIM PIN":
            raise PinError(f"{self.modem_id}: the SIM wants {state!r}, which smsgw does not enter")
        if self.pin is None:
            raise PinError(f"{self.modem_id}: the SIM wants its PIN and none is configured")
        if not re.fullmatch(r"\d{4,8}", self.pin):
            raise PinError(f"{self.modem_id}: the configured PIN must be 4 to 8 digits")
        iccid = await self._read_iccid()  # most modems answer it with the SIM locked
        key = sim_key(self.port, iccid)
        if self._pin_was_rejected(key):
            raise PinError(
                f"{self.modem_id}: the SIM rejected this PIN before; not trying it again (that would "
                "risk a PUK lockout). Fix the PIN in the configuration, then run `smsgw pin clear "
                f"{self.modem_id}`."
            )
        left = await self._pin_attempts_left()
        if left is not None and left < MIN_PIN_ATTEMPTS:
            raise PinError(
                f"{self.modem_id}: the SIM has only {left} PIN attempt(s) left; smsgw enters a PIN only "
                f"with at least {MIN_PIN_ATTEMPTS} left. Unlock the SIM in a phone."
            )
        try:
            await self.command(f'AT+CPIN="{self.pin}"', priority=Priority.RESET)
        except AtError as exc:
            reason = exc.final.strip() or "ERROR"  # str(exc) names the command, and so the PIN
            if isinstance(exc, CmeError) and exc.text and exc.text not in reason:
                reason += f" ({exc.text})"
            try:
                self._remember_rejection(key, iccid, reason)
            except PinError as failure:
                raise PinError(f"{self.modem_id}: the SIM rejected the PIN ({reason}) and recording that "
                               f"failed: {failure}. Do not restart before fixing the PIN.") from None
            raise PinError(f"{self.modem_id}: the SIM rejected the PIN ({reason}); it will not be retried") from None
        await self._wait_sim_ready()
        await self._sim_seen_ready(iccid)

    def _pin_was_rejected(self, key: str) -> bool:
        assert self.pin is not None
        if pin_rejected(self.port) == self.pin:  # this process saw it rejected, whatever the file says
            return True
        if self.pin_rejections is None:
            return False
        keys = {key, sim_key(self.port, "")}
        return any(self.pin_rejections.is_rejected(k, self.pin) for k in keys)

    def _remember_rejection(self, key: str, iccid: str, reason: str) -> None:
        assert self.pin is not None
        remember_pin_rejection(self.port, self.pin)
        if self.pin_rejections is not None:
            self.pin_rejections.remember(key, self.pin, modem_id=self.modem_id, port=self.port, iccid=iccid, reason=reason)

    async def _sim_seen_ready(self, iccid: str | None = None) -> None:
        """A READY SIM (unlocked here or in a phone): its recorded rejections no longer apply."""
        guard = self.pin_rejections
        if guard is None:
            return
        forget_pin_rejection(self.port)
        try:
            if not guard.entries():
                return
            if iccid is None:
                iccid = await self._read_iccid()
            dropped = guard.forget({sim_key(self.port, iccid), sim_key(self.port, "")})
        except PinError as exc:
            LOG.warning("%s: %s", self.modem_id, exc)
            return
        if dropped:
            LOG.info("%s: the SIM is ready: cleared the recorded PIN rejection(s)", self.modem_id)

    async def _pin_attempts_left(self) -> int | None:
        """The SIM PIN attempts left, when the profile knows how to ask and the modem answers."""
        return await pin_attempts_left(self.engine, self.profile, name=self.modem_id)

    async def sim_status(self) -> SimStatus:
        """The SIM's +CPIN state and the PIN attempts left (None when the modem does not say)."""
        return SimStatus(await self.sim_state(), await self._pin_attempts_left())

    async def _sim_state_after_boot(self) -> str:
        """The SIM state; ``+CME ERROR: SIM busy`` (14), which a modem answers while its SIM starts
        (a SIM7600G-H in Xinyuan-LilyGO/T-SIM7600X#135), is asked again for up to ``sim_ready_timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sim_ready_timeout
        while True:
            try:
                return await self.sim_state()
            except CmeError as exc:
                if exc.code != SIM_BUSY or loop.time() > deadline:
                    raise
                LOG.info("%s: the SIM is busy (starting); asking again", self.modem_id)
            await asyncio.sleep(SIM_READY_POLL)

    async def _wait_sim_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.sim_ready_timeout
        while True:
            try:
                if await self.sim_state() == "READY":
                    return
            except CmeError as exc:  # SIM_BUSY while it unlocks
                LOG.debug("%s: SIM not ready yet: %s", self.modem_id, exc)
            if loop.time() > deadline:
                raise PinError(f"{self.modem_id}: the SIM took the PIN but did not become ready")
            await asyncio.sleep(SIM_READY_POLL)

    # --- sending ------------------------------------------------------------------------------

    async def send_pdu(self, part: SubmitPart, *, priority: Priority = Priority.SEND,
                       ready: Callable[[], Awaitable[None]] | None = None,
                       written: Callable[[], None] | None = None) -> int:
        """Submit one PDU part with AT+CMGS; returns its TP-MR (message reference).

        ``ready`` and ``written``: see ``AtEngine.command_with_prompt`` (awaited before the PDU is
        written; called right after)."""
        response = await self.engine.command_with_prompt(
            f"AT+CMGS={part.tpdu_length}", part.pdu, timeout=self.timeout("send"), priority=priority,
            ready=ready, written=written,
        )
        return parsers.parse_cmgs(response.lines)

    def next_concat_reference(self) -> int:
        self._concat_reference = (self._concat_reference + 1) % 256
        return self._concat_reference

    async def send_sms(
        self, number: str, text: str, *, report: bool = False, validity: int | datetime | None = None
    ) -> list[int]:
        """Encode ``text`` for ``number`` (splitting it if needed) and send every part; the TP-MRs."""
        parts = encode_submit(
            number, text, report=report, validity=validity, concat_reference=self.next_concat_reference()
        )
        return [await self.send_pdu(part) for part in parts]

    # --- stored messages --------------------------------------------------------------------

    @staticmethod
    def _decode(pdu: str) -> tuple[SmsDeliver | SmsStatusReport | SmsSubmit | None, str | None]:
        try:
            return decode(pdu), None
        except PduError as exc:
            return None, f"undecodable PDU: {exc}"
        except Exception as exc:  # a codec bug must not lose the message
            LOG.exception("decoding PDU %s failed", pdu)
            return None, f"undecodable PDU: {type(exc).__name__}: {exc}"

    @classmethod
    def _decode_entry(
        cls, entry: parsers.CmglEntry | parsers.CmgrEntry
    ) -> tuple[SmsDeliver | SmsStatusReport | SmsSubmit | None, str | None]:
        """A listed/read entry -> (message, error): a text-mode entry as an SmsDeliver; an entry whose
        PDU could not be read keeps its raw lines in ``entry.pdu`` and its reason."""
        if entry.error is not None:
            return None, f"undecodable reply: {entry.error}"
        if entry.text_mode is not None:
            return parsers.text_mode_deliver(entry.text_mode), None
        return cls._decode(entry.pdu)

    async def list_messages(self, stat: int = 4) -> list[StoredMessage]:
        """Every stored message (``stat`` 4 = all) via AT+CMGL in PDU mode."""
        response = await self.command(f"AT+CMGL={stat}", timeout=self.timeout("cmgl"))
        messages = []
        for entry in parsers.parse_cmgl(response.lines):
            message, error = self._decode_entry(entry)
            messages.append(StoredMessage(entry.index, entry.stat, entry.pdu, message, error))
        return messages

    async def read_message(self, index: int, *, priority: Priority = Priority.POLL) -> StoredMessage:
        response = await self.command(f"AT+CMGR={index}", priority=priority)
        entry = parsers.parse_cmgr(response.lines)
        message, error = self._decode_entry(entry)
        return StoredMessage(index, entry.stat, entry.pdu, message, error)

    async def delete_message(self, index: int) -> None:
        await self.command(f"AT+CMGD={index}")

    async def storage_status(self) -> StorageStatus:
        response = await self.command("AT+CPMS?")
        storages = parsers.parse_cpms(response.lines)
        first = storages[0]
        return StorageStatus(used=first.used, total=first.total, storage=first.storage)

    # --- state ----------------------------------------------------------------------------------

    async def signal(self) -> Signal:
        response = await self.command("AT+CSQ")
        rssi, ber = parsers.parse_csq(response.lines)
        rssi_value = None if rssi is None or rssi == 99 else rssi
        dbm = None if rssi_value is None else -113 + 2 * rssi_value
        return Signal(rssi_value, None if ber == 99 else ber, dbm)

    async def registration(self) -> Registration:
        """CS registration (+CREG); when that is not registered, PS/EPS (+CGREG/+CEREG) counts too."""
        best: Registration | None = None
        for command in ("AT+CREG?", "AT+CEREG?", "AT+CGREG?"):
            response = await self._optional(command)
            if response is None:
                continue
            parsed = parsers.parse_creg(response.lines)
            if parsed is None:
                continue
            registration = Registration(parsed.status, parsed.lac, parsed.cell_id, parsed.act, command[3:-1])
            if best is None or (registration.registered and not best.registered):
                best = registration
            if best.registered:
                break
        if best is None:
            raise ModemError(f"{self.modem_id}: no registration state from +CREG/+CEREG/+CGREG")
        self.registration_state = best
        return best

    async def operator(self) -> Operator:
        """The operator: numeric MCC MNC (AT+COPS=3,2) and the long name (AT+COPS=3,0)."""
        numeric: str | None = None
        name: str | None = None
        act: int | None = None
        if await self._optional("AT+COPS=3,2") is not None:
            parsed = parsers.parse_cops((await self.command("AT+COPS?")).lines)
            if parsed is not None:
                numeric, act = parsed.operator, parsed.act
        if await self._optional("AT+COPS=3,0") is not None:
            parsed = parsers.parse_cops((await self.command("AT+COPS?")).lines)
            if parsed is not None:
                name = parsed.operator
                act = act if act is not None else parsed.act
        # leave the modem answering with numeric codes, as gammu and friends expect
        await self._optional("AT+COPS=3,2")
        return Operator(numeric, name, act)

    async def smsc(self) -> str | None:
        response = await self.command("AT+CSCA?")
        return parsers.parse_csca(response.lines)

    async def ping(self) -> None:
        """A bare AT at HEALTH priority; raises AtTimeout / TransportError when the modem is gone."""
        await self.command("AT", priority=Priority.HEALTH)

    # --- USSD -------------------------------------------------------------------------------------

    def ussd_encode(self, code: str, *, reply: bool = False) -> str:
        """The string put inside AT+CUSD=1,"...",15 (the vendor may pack it).

        A request is digits, ``*``, ``#`` and ``+``; a ``reply`` to a network's follow-up question
        (a menu choice, or text such as a search word) may be any printable text without ``"``.
        """
        if reply:
            if not re.fullmatch(r'[^"\x00-\x1f\x7f]{1,160}', code):
                raise ValueError(f"USSD reply must be 1-160 printable characters without '\"', not {code!r}")
        elif not re.fullmatch(r"[0-9*#+]{1,160}", code):
            raise ValueError(f"USSD code must be digits, * and #, not {code!r}")
        return self.vendor.ussd_encode(code)

    def ussd_decode(self, text: str, dcs: int | None) -> str:
        """The text of a +CUSD answer (the vendor may unpack it)."""
        return self.vendor.ussd_decode(text, dcs)

    async def ussd(self, code: str, *, timeout: float | None = None, reply: bool = False,
                   priority: Priority = Priority.POLL) -> UssdReply:
        """Send a USSD code (e.g. "*100#") and wait for the network's +CUSD answer.

        With ``reply`` the text answers the question of an open session (``UssdReply.session_open``).
        Raises ``UssdError`` when the network ends the request without an answer (+CUSD: 2 without
        text, 4, 5), ``AtTimeout`` when no +CUSD comes within the ``ussd`` timeout.
        """
        if self._ussd_waiter is not None and not self._ussd_waiter.done():
            raise ModemError(f"{self.modem_id}: a USSD session is already waiting for its answer")
        encoded = self.ussd_encode(code, reply=reply)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[UssdReply] = loop.create_future()
        self._ussd_waiter = waiter
        wait = timeout if timeout is not None else self.timeout("ussd")
        command = f'AT+CUSD=1,"{encoded}",15'
        try:
            await self.command(command, timeout=wait, priority=priority)
            try:
                answer = await asyncio.wait_for(asyncio.shield(waiter), wait)
            except TimeoutError:
                raise AtTimeout(f"{self.modem_id}: no +CUSD answer to {code} within {wait}s",
                                command=command) from None
        finally:
            self._ussd_waiter = None
            if not waiter.done():
                waiter.cancel()
        if answer.status in USSD_FAILURES and not (answer.status == 2 and answer.text):
            raise UssdError(f"{self.modem_id}: {code}: {USSD_FAILURES[answer.status]} (+CUSD: {answer.status})",
                            answer.status, command=command)
        return answer

    async def ussd_cancel(self, *, priority: Priority = Priority.POLL) -> None:
        """End an open USSD session (AT+CUSD=2)."""
        await self.command("AT+CUSD=2", priority=priority)

    # --- reset --------------------------------------------------------------------------------

    async def soft_reset(self) -> None:
        """Restart the modem with the profile's reset command, wait for it to come back, re-init."""
        LOG.warning("%s: soft reset with %s", self.modem_id, self.profile.reset_command)
        try:
            await self.command(self.profile.reset_command, priority=Priority.RESET)
        except (AtTimeout, AtError, TransportError) as exc:
            LOG.info("%s: reset command answered %s (expected while it restarts)", self.modem_id, exc)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout("boot")
        if self.profile.reset_reenumerates:
            await self._close_engine()
            await self._wait_port(deadline)
            await self._open_engine()
        else:
            await self._close_engine()
            await self._open_engine()
        attempts = self.sync_attempts
        try:
            self.sync_attempts = max(attempts, int(self.timeout("boot") / self.timeout("sync")))
            await self._initialise()
        finally:
            self.sync_attempts = attempts

    async def _wait_port(self, deadline: float) -> None:
        """Wait for a re-enumerating USB port to vanish and come back (or for the deadline)."""
        loop = asyncio.get_running_loop()
        vanish_by = min(deadline, loop.time() + self.vanish_grace)
        while _port_exists(self.port) and loop.time() < vanish_by:
            await asyncio.sleep(PORT_POLL)
        while not _port_exists(self.port):
            if loop.time() > deadline:
                raise TransportError(f"{self.modem_id}: {self.port} did not come back after the reset")
            await asyncio.sleep(PORT_POLL)

    # --- URCs -------------------------------------------------------------------------------------

    def _register_urcs(self) -> None:
        engine = self._engine
        assert engine is not None
        add = engine.add_urc
        self._urc_removers += [
            add(parsers.CMTI_URC, self._on_cmti),
            add(parsers.CDSI_URC, self._on_cdsi),
            add(parsers.CMT_URC, self._on_cmt, extra_lines=1),
            add(parsers.CDS_URC, self._on_cds, extra_lines=1),
            add(parsers.CUSD_URC, self._on_cusd, more=parsers.cusd_continues),
            add(parsers.CPIN_URC, self._on_cpin, unless_asked=True),
            add(parsers.CREG_URC, self._on_creg),
        ]
        if self.profile.storage_full_urcs:
            either = "|".join(f"(?:{pattern})" for pattern in self.profile.storage_full_urcs)
            self._urc_removers.append(add(either, self._on_storage_full))
        self._urc_removers += [
            add(parsers.RING_URC, self._on_ring),
            add(parsers.CRING_URC, self._on_cring),
            add(parsers.CLIP_URC, self._on_clip, unless_asked=True),
        ]

    def _remove_urcs(self) -> None:
        for remove in self._urc_removers:
            remove()
        self._urc_removers.clear()

    def _spawn(self, coroutine: Awaitable[None], what: str) -> None:
        async def guarded() -> None:
            try:
                await coroutine
            except asyncio.CancelledError:
                raise
            except Exception:
                LOG.exception("%s: %s failed", self.modem_id, what)

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_cmti(self, match: re.Match[str], _lines: list[str]) -> None:
        storage, index = parsers.parse_cmti(match.string)
        self._spawn(self._read_announced(storage, index, report=False), f"reading SMS {index}")

    def _on_cdsi(self, match: re.Match[str], _lines: list[str]) -> None:
        storage, index = parsers.parse_cmti(match.string)
        self._spawn(self._read_announced(storage, index, report=True), f"reading status report {index}")

    async def _read_announced(self, storage: str | None, index: int, *, report: bool) -> None:
        """Read a message announced by +CMTI/+CDSI and put it on ``events``. Never deletes it."""
        error = "not read"
        for attempt in range(READ_ATTEMPTS):
            try:
                stored = await self.read_message(index, priority=Priority.POLL)
            except (AtError, AtTimeout) as exc:
                error = f"reading index {index} failed: {exc}"
                LOG.warning("%s: %s (attempt %d)", self.modem_id, error, attempt + 1)
                continue
            message = stored.message
            if isinstance(message, SmsStatusReport):
                self.events.put_nowait(StatusReport(self.modem_id, storage, index, stored.pdu, message, None))
            elif isinstance(message, SmsDeliver):
                self.events.put_nowait(IncomingSms(self.modem_id, storage, index, stored.pdu, message, None))
            else:
                problem = stored.error or f"stored message is a {type(message).__name__}, not a received SMS"
                cls_event = StatusReport if report else IncomingSms
                self.events.put_nowait(cls_event(self.modem_id, storage, index, stored.pdu, None, problem))
            return
        cls_event = StatusReport if report else IncomingSms
        self.events.put_nowait(cls_event(self.modem_id, storage, index, "", None, error))

    def _on_cmt(self, match: re.Match[str], lines: list[str]) -> None:
        pdu = lines[0].strip() if lines else ""
        message, error = self._decode(pdu)
        if message is not None and not isinstance(message, SmsDeliver):
            message, error = None, f"+CMT carried a {type(message).__name__}, not an SMS-DELIVER"
        deliver = message if isinstance(message, SmsDeliver) else None
        self.events.put_nowait(IncomingSms(self.modem_id, None, None, pdu, deliver, error))

    def _on_cds(self, match: re.Match[str], lines: list[str]) -> None:
        pdu = lines[0].strip() if lines else ""
        message, error = self._decode_report(pdu)
        self.events.put_nowait(StatusReport(self.modem_id, None, None, pdu, message, error))

    def _decode_report(self, pdu: str) -> tuple[SmsStatusReport | None, str | None]:
        # +CDS carries the report with the SMSC field on most modems; try without it too.
        message, error = self._decode(pdu)
        if isinstance(message, SmsStatusReport):
            return message, None
        try:
            alternative = decode(pdu, with_smsc=False)
        except Exception:  # noqa: BLE001 - the first error is the one reported
            alternative = None
        if isinstance(alternative, SmsStatusReport):
            return alternative, None
        return None, error or f"+CDS carried a {type(message).__name__}, not a status report"

    def _on_cusd(self, match: re.Match[str], lines: list[str]) -> None:
        line = "\n".join([match.string, *lines])  # a GSM-text answer may span lines inside its quotes
        try:
            status, text, dcs = parsers.parse_cusd(line)
            reply = UssdReply(status, self.ussd_decode(text, dcs) if text else "", dcs)
        except Exception as exc:  # noqa: BLE001 - malformed modem output never crashes the reader
            LOG.warning("%s: bad +CUSD line %r: %s", self.modem_id, line, exc)
            reply = UssdReply(2, line, None)
        waiter = self._ussd_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(reply)
        else:
            LOG.info("%s: unsolicited USSD: %s", self.modem_id, reply.text)

    def _on_storage_full(self, match: re.Match[str], _lines: list[str]) -> None:
        LOG.warning("%s: the modem says its SMS storage is full: %r", self.modem_id, match.string)
        self.events.put_nowait(StorageFull(self.modem_id, match.string))

    # --- incoming calls -------------------------------------------------------------------------

    async def hang_up(self, *, priority: Priority = Priority.HEALTH) -> None:
        """Reject (or end) the incoming call with the profile's hang-up command (``ATH`` or
        ``AT+CHUP``); ``CallEnded`` "hung-up" follows on ``events`` when a call was ringing."""
        await self.command(self.profile.hang_up_command, priority=priority)
        self._call_over("hung-up")

    def _on_ring(self, match: re.Match[str], _lines: list[str]) -> None:
        self._ringing()
        self.calls.ring("")

    def _on_cring(self, match: re.Match[str], _lines: list[str]) -> None:
        self._ringing()
        self.calls.ring(parsers.parse_cring(match.string))

    def _on_clip(self, match: re.Match[str], _lines: list[str]) -> None:
        try:
            caller = parsers.parse_clip(match.string)
        except parsers.ParseError as exc:
            LOG.warning("%s: %s", self.modem_id, exc)
            caller = parsers.CallerId(None, None, None)
        self._ringing()
        self.calls.caller_id(caller)

    def _ringing(self) -> None:
        """A ring: (re)arm the silence timer; while a call rings, NO CARRIER means the caller gave up
        (it is a final result code otherwise, for ATD and ATA, which smsgw never sends)."""
        if self._silence is not None:
            self._silence.cancel()
        self._silence = asyncio.get_running_loop().call_later(self.ring_silence, self._call_over, "silence")
        if self._no_carrier is None and self._engine is not None:
            self._no_carrier = self._engine.add_urc(parsers.NO_CARRIER_URC, self._on_no_carrier)

    def _on_no_carrier(self, match: re.Match[str], _lines: list[str]) -> None:
        self._call_over("caller")

    def _call_over(self, reason: str) -> None:
        self._stop_ringing()
        self.calls.ended(reason)

    def _stop_ringing(self) -> None:
        if self._silence is not None:
            self._silence.cancel()
            self._silence = None
        if self._no_carrier is not None:
            self._no_carrier()
            self._no_carrier = None

    def _on_creg(self, match: re.Match[str], _lines: list[str]) -> None:
        state = parsers.parse_creg_urc(match.string)
        self.registration_state = Registration(
            state.status, state.lac, state.cell_id, state.act, match.string.split(":", 1)[0].strip().lstrip("+"),
        )
        LOG.info("%s: registration %s", self.modem_id, self.registration_state.state)


_EMPTY = AtResponse(command="", lines=[], final="OK")


async def pin_attempts_left(engine: AtEngine, profile: Profile, *, name: str) -> int | None:
    """The SIM PIN attempts left by the profile's command, or None (no command, no answer, no count)."""
    command, pattern = profile.pin_attempts_command, profile.pin_attempts_pattern
    if not command or not pattern:
        return None
    try:
        response = await engine.command(command, priority=Priority.RESET)
    except (AtError, AtTimeout) as exc:
        LOG.info("%s: %s: no PIN attempts count (%s)", name, command, exc)
        return None
    for line in response.lines:
        match = re.search(pattern, line)
        if match:
            try:
                return int(match.group(1))
            except (ValueError, IndexError, TypeError):
                break
    LOG.info("%s: %s: no PIN attempts count in %r", name, command, response.lines)
    return None


async def pin_lock(engine: AtEngine, *, timeout: float) -> bool | None:
    """Whether the SIM's PIN lock is on: ``AT+CLCK="SC",2`` answers ``+CLCK: 1`` (3GPP TS 27.007 7.4,
    mode 2 = query status); None when the modem does not answer it."""
    try:
        response = await engine.command('AT+CLCK="SC",2', timeout=timeout)
    except (AtError, AtTimeout):
        return None
    for line in response.lines:
        match = re.match(r"\s*\+CLCK:\s*([01])\b", line)
        if match:
            return match.group(1) == "1"
    return None


@dataclass(frozen=True)
class Inspection:
    """What ``inspect_port`` read: who the modem is and, when asked, the SIM's state."""

    identity: Identity
    profile: str
    sim: SimStatus | None = None


async def probe_port(port: str, *, timeout: float = 1.0, baudrate: int = 115200) -> Identity:
    """Ask whatever is on ``port`` who it is (AT, +CGMI, +CGMM, +CGMR, +CGSN), with short timeouts.

    Raises AtTimeout when nothing answers and TransportError when the port cannot be opened.
    """
    return (await inspect_port(port, timeout=timeout, baudrate=baudrate, sim=False)).identity


async def inspect_port(port: str, *, timeout: float = 1.0, baudrate: int = 115200, sim: bool = True) -> Inspection:
    """``probe_port``, and with ``sim`` the ICCID, the +CPIN state and the PIN attempts left.

    Reads only: never enters a PIN, changes no setting but echo (``ATE0``). The SIM commands are
    the detected profile's (``iccid_commands``, ``pin_attempts_command``).
    """
    engine = AtEngine(default_timeout=timeout, name=f"probe {port}")
    await asyncio.wait_for(engine.open(port, baudrate=baudrate), timeout)
    try:
        for attempt in range(2):
            try:
                await engine.command("AT", timeout=timeout)
                break
            except AtError:
                if attempt:
                    raise
            except AtTimeout:
                if attempt:
                    raise
        await engine.command("ATE0", timeout=timeout)

        async def run(cmd: str) -> AtResponse:
            return await engine.command(cmd, timeout=timeout)

        identity = await read_identity(run, f"probe {port}")
        profile = match_identity(identity.manufacturer, identity.model)
        if not sim:
            return Inspection(identity, profile.name)
        iccid = ""
        for cmd in profile.iccid_commands:
            try:
                iccid = _digits(" ".join((await run(cmd)).lines), 18, 22)
            except AtError:
                iccid = ""
            if iccid:
                break
        try:
            state = parsers.parse_cpin((await run("AT+CPIN?")).lines)
        except AtError as exc:
            state = f"unknown ({exc})"
        attempts = await pin_attempts_left(engine, profile, name=f"probe {port}")
        lock = await pin_lock(engine, timeout=timeout) if state == "READY" else None
        return Inspection(replace(identity, iccid=iccid), profile.name, SimStatus(state, attempts, lock))
    finally:
        await engine.close()
