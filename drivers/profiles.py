"""Modem profiles: per-model facts kept as data in ``firmware_cfg/<name>.toml``.

A profile says how to find a modem (USB VID:PID and the AT port's interface number, or
+CGMI/+CGMM patterns) and how to drive it (init commands, CNMI, storage, echo, timeouts, URCs
to ignore, the lines that announce a full SMS storage, power-key timing, reset). Code that differs
per vendor lives in ``drivers.vendors``, selected by the profile's ``vendor_class``; nothing else
asks which vendor it talks to.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import firmware_cfg
from drivers.toml_reader import TableReader

PROFILE_DIR = Path(firmware_cfg.__file__).resolve().parent
GENERIC = "generic"

#: Timeouts every profile must define (seconds).
TIMEOUT_KEYS = ("command", "send", "cmgl", "sync", "boot", "ussd")


class ProfileError(ValueError):
    """A profile file is missing, unreadable or has a bad key; the message names file and key."""

    def __init__(self, path: Path | str, key: str | None, reason: str) -> None:
        self.path = str(path)
        self.key = key
        self.reason = reason
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class UsbId:
    """A USB function that carries the modem's AT port: vendor, product, interface number."""

    vid: int
    pid: int
    interface: int | None = None

    def __str__(self) -> str:
        text = f"{self.vid:04x}:{self.pid:04x}"
        return text if self.interface is None else f"{text} if#{self.interface}"


@dataclass(frozen=True)
class PowerKey:
    """PWRKEY timing in seconds: pulse length to power on, pulse length to power off, boot time."""

    on_pulse: float
    off_pulse: float
    boot_time: float


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    vendor_class: str = "generic"
    usb_ids: list[UsbId] = field(default_factory=list)
    manufacturer_patterns: list[str] = field(default_factory=list)
    model_patterns: list[str] = field(default_factory=list)
    init_commands: list[str] = field(default_factory=list)
    cnmi: str = "AT+CNMI=2,1,0,1,0"
    storage: tuple[str, str, str] = ("SM", "SM", "SM")
    echo: bool = False
    prompt: str = "> "
    timeouts: dict[str, float] = field(default_factory=dict)
    ignore_urcs: list[str] = field(default_factory=list)
    final_without_ok: list[str] = field(default_factory=list)
    power_key: PowerKey | None = None
    send_delay_hint: float = 0.0
    #: Lines (regular expressions) by which the modem announces that its SMS storage is full.
    storage_full_urcs: list[str] = field(default_factory=list)
    #: ``[calls]``: commands that turn on what incoming calls need (caller ID), and the hang-up command.
    call_init_commands: list[str] = field(default_factory=lambda: ["AT+CLIP=1"])
    hang_up_command: str = "AT+CHUP"
    reset_command: str = "AT+CFUN=1,1"
    reset_reenumerates: bool = False
    iccid_commands: list[str] = field(default_factory=lambda: ["AT+CCID"])
    #: The command that tells how many SIM PIN attempts are left ("" when the modem has none) and
    #: a regular expression whose one group is that number in its reply.
    pin_attempts_command: str = ""
    pin_attempts_pattern: str = ""
    source: str = ""

    def timeout(self, key: str) -> float:
        """The named timeout in seconds (``command``, ``send``, ``cmgl``, ``sync``, ``boot``, ``ussd``)."""
        try:
            return self.timeouts[key]
        except KeyError:
            raise KeyError(f"profile {self.name!r} has no timeout {key!r}") from None

    def with_timeouts(self, **overrides: float) -> Profile:
        """A copy with some timeouts replaced (e.g. short ones in tests)."""
        unknown = set(overrides) - set(self.timeouts)
        if unknown:
            raise KeyError(f"unknown timeout(s) {sorted(unknown)}; known: {sorted(self.timeouts)}")
        for key, value in overrides.items():
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"timeout {key} must be a positive number of seconds, not {value!r}")
        return dataclasses.replace(self, timeouts={**self.timeouts, **{k: float(v) for k, v in overrides.items()}})

    def matches_identity(self, manufacturer: str, model: str) -> bool:
        """True when +CGMI matches one manufacturer pattern and +CGMM one model pattern. A modem that
        does not tell its manufacturer (+CGMI and +GMI answer ERROR) is matched by its model alone."""
        if not self.model_patterns:
            return False
        if manufacturer and self.manufacturer_patterns and not any(
            re.search(p, manufacturer) for p in self.manufacturer_patterns
        ):
            return False
        return any(re.search(p, model) for p in self.model_patterns)

    def matches_usb(self, vid: int, pid: int, interface: int | None) -> bool:
        for usb in self.usb_ids:
            if usb.vid == vid and usb.pid == pid:
                if interface is None or usb.interface is None or usb.interface == interface:
                    return True
        return False


# --- loading -------------------------------------------------------------------------------

_TOP_KEYS = {"description", "vendor_class", "detection", "at", "timeouts", "power_key", "send", "calls"}
_DETECTION_KEYS = {"manufacturer_patterns", "model_patterns", "usb"}
_AT_KEYS = {
    "echo", "prompt", "init_commands", "cnmi", "storage", "reset_command", "reset_reenumerates",
    "iccid_commands", "ignore_urcs", "final_without_ok", "pin_attempts_command", "pin_attempts_pattern",
    "storage_full_urcs",
}
_POWER_KEYS = {"on_pulse", "off_pulse", "boot_time"}
_SEND_KEYS = {"delay_hint"}
_CALLS_KEYS = {"init_commands", "hang_up"}


def _reader(path: Path, table: object, prefix: str, allowed: set[str]) -> TableReader:
    """The reader of one table of a profile file; every failure is a ``ProfileError`` naming file and key."""
    return TableReader(path, prefix, table, sorted(allowed), error=ProfileError, required_reason="missing")


def _string(reader: TableReader, key: str, default: str | None = None) -> str:
    value = reader.string(key, default, required=default is None, empty=True)
    assert value is not None
    return value


def _hex16(reader: TableReader, key: str, value: Any) -> int:
    if isinstance(value, str) and re.fullmatch(r"(0x)?[0-9a-fA-F]{4}", value):
        return int(value[-4:], 16)
    raise reader.error(key, f"must be four hex digits such as \"1e0e\", not {value!r}")


def _usb_ids(reader: TableReader) -> list[UsbId]:
    raw = reader.table.get("usb", [])
    if not isinstance(raw, list):
        raise reader.error("usb", "must be a list of {vid, pid, interface} tables")
    result = []
    for i, entry in enumerate(raw):
        key = f"usb[{i}]"
        if not isinstance(entry, dict):
            raise reader.error(key, "must be a table {vid = \"xxxx\", pid = \"xxxx\", interface = n}")
        unknown = sorted(set(entry) - {"vid", "pid", "interface"})
        if unknown:
            raise reader.error(f"{key}.{unknown[0]}", "unknown key (known: vid, pid, interface)")
        interface = entry.get("interface")
        if interface is not None and (isinstance(interface, bool) or not isinstance(interface, int) or interface < 0):
            raise reader.error(f"{key}.interface", f"must be a non-negative integer, not {interface!r}")
        result.append(
            UsbId(_hex16(reader, f"{key}.vid", entry.get("vid")), _hex16(reader, f"{key}.pid", entry.get("pid")), interface)
        )
    return result


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ProfileError(path, None, "no such profile file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(path, None, f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise ProfileError(path, None, f"cannot read: {exc}") from None


def _storage(at: TableReader) -> tuple[str, str, str]:
    storage = list(at.strings("storage", ["SM", "SM", "SM"], empty=True))
    if not 1 <= len(storage) <= 3 or not all(re.fullmatch(r"[A-Z]{2}", mem) for mem in storage):
        raise at.error("storage", f"must be one to three memory names such as \"SM\" or \"ME\", not {storage!r}")
    while len(storage) < 3:
        storage.append(storage[-1])
    return storage[0], storage[1], storage[2]


def _init_commands(at: TableReader) -> tuple[str, list[str]]:
    """``cnmi`` and ``init_commands``."""
    cnmi = _string(at, "cnmi", "AT+CNMI=2,1,0,1,0")
    if not re.fullmatch(r"AT\+CNMI=\d(,\d){0,4}", cnmi):
        raise at.error("cnmi", f"must be an AT+CNMI=<mode>,<mt>,<bm>,<ds>,<bfr> command, not {cnmi!r}")
    commands = list(at.strings("init_commands", empty=True))
    for command in commands:
        if not command.upper().startswith("AT"):
            raise at.error("init_commands", f"every command must start with AT, not {command!r}")
    return cnmi, commands


def _pin_attempts(at: TableReader) -> tuple[str, str]:
    """``pin_attempts_command`` and ``pin_attempts_pattern`` (one group: the attempts left), or neither."""
    command = _string(at, "pin_attempts_command", "")
    pattern = _string(at, "pin_attempts_pattern", "")
    if command and not command.upper().startswith("AT"):
        raise at.error("pin_attempts_command", f"must start with AT, not {command!r}")
    if bool(command) != bool(pattern):
        raise at.error("pin_attempts_pattern", "pin_attempts_command and pin_attempts_pattern go together")
    if pattern:
        try:
            groups = re.compile(pattern).groups
        except re.error as exc:
            raise at.error("pin_attempts_pattern", f"bad regular expression {pattern!r}: {exc}") from None
        if groups != 1:
            raise at.error("pin_attempts_pattern", "must have exactly one group: the attempts left")
    return command, pattern


def _timeouts(table: TableReader) -> dict[str, float]:
    timeouts: dict[str, float] = {}
    for key in TIMEOUT_KEYS:
        value = table.seconds(key)
        if value <= 0:
            raise table.error(key, "must be more than zero seconds")
        timeouts[key] = value
    return timeouts


def load_profile_file(path: Path | str) -> Profile:
    """Load and validate one profile file; the profile's name is the file's stem."""
    path = Path(path)
    data = _read_toml(path)
    top = _reader(path, data, "", _TOP_KEYS)
    detection = _reader(path, top.table_at("detection"), "detection", _DETECTION_KEYS)
    at = _reader(path, top.table_at("at"), "at", _AT_KEYS)
    timeouts_table = _reader(path, top.table_at("timeouts"), "timeouts", set(TIMEOUT_KEYS))
    send = _reader(path, top.table_at("send"), "send", _SEND_KEYS)
    calls = _reader(path, top.table_at("calls"), "calls", _CALLS_KEYS)
    call_init_commands = list(calls.strings("init_commands", ["AT+CLIP=1"], empty=True))
    hang_up_command = _string(calls, "hang_up", "AT+CHUP")
    for key, values in (("init_commands", call_init_commands), ("hang_up", [hang_up_command])):
        for command in values:
            if not command.upper().startswith("AT"):
                raise calls.error(key, f"every command must start with AT, not {command!r}")

    vendor_class = _string(top, "vendor_class", GENERIC)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", vendor_class):
        raise top.error("vendor_class", f"must be a lower-case name such as \"generic\", not {vendor_class!r}")
    storage = _storage(at)
    cnmi, commands = _init_commands(at)
    iccid_commands = list(at.strings("iccid_commands", ["AT+CCID"], empty=True))
    pin_attempts_command, pin_attempts_pattern = _pin_attempts(at)
    timeouts = _timeouts(timeouts_table)

    power_key = None
    if "power_key" in data:
        power = _reader(path, top.table_at("power_key"), "power_key", _POWER_KEYS)
        power_key = PowerKey(power.seconds("on_pulse"), power.seconds("off_pulse"), power.seconds("boot_time"))

    prompt = _string(at, "prompt", "> ")
    if not prompt:
        raise at.error("prompt", "must not be empty")

    return Profile(
        name=path.stem,
        description=_string(top, "description"),
        vendor_class=vendor_class,
        usb_ids=_usb_ids(detection),
        manufacturer_patterns=list(detection.regexes("manufacturer_patterns")),
        model_patterns=list(detection.regexes("model_patterns")),
        init_commands=commands,
        cnmi=cnmi,
        storage=storage,
        echo=at.boolean("echo", False),
        prompt=prompt,
        timeouts=timeouts,
        ignore_urcs=list(at.regexes("ignore_urcs")),
        final_without_ok=list(at.regexes("final_without_ok")),
        power_key=power_key,
        send_delay_hint=send.seconds("delay_hint", 0.0),
        storage_full_urcs=list(at.regexes("storage_full_urcs")),
        call_init_commands=call_init_commands,
        hang_up_command=hang_up_command,
        reset_command=_string(at, "reset_command", "AT+CFUN=1,1"),
        reset_reenumerates=at.boolean("reset_reenumerates", False),
        iccid_commands=iccid_commands,
        pin_attempts_command=pin_attempts_command,
        pin_attempts_pattern=pin_attempts_pattern,
        source=str(path),
    )


def profile_names(directory: Path | str | None = None) -> list[str]:
    """Names of the profiles shipped in ``firmware_cfg`` (or ``directory``), sorted."""
    root = Path(directory) if directory is not None else PROFILE_DIR
    return sorted(p.stem for p in root.glob("*.toml"))


@lru_cache(maxsize=64)
def _load_cached(path: str, mtime: float) -> Profile:
    return load_profile_file(path)


def load_profile(name: str, *, directory: Path | str | None = None) -> Profile:
    """Load the profile called ``name`` (``generic``, ``sim800``, ...)."""
    root = Path(directory) if directory is not None else PROFILE_DIR
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ProfileError(root / f"{name}.toml", None, f"bad profile name {name!r}")
    path = root / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(profile_names(root)) or "none"
        raise ProfileError(path, None, f"no profile called {name!r} (known: {known})")
    return _load_cached(str(path), path.stat().st_mtime)


def load_all(directory: Path | str | None = None) -> list[Profile]:
    return [load_profile(name, directory=directory) for name in profile_names(directory)]


def match_identity(manufacturer: str, model: str, *, directory: Path | str | None = None) -> Profile:
    """The profile whose +CGMI/+CGMM patterns match; ``generic`` when none does."""
    manufacturer = manufacturer.strip()
    model = model.strip()
    for profile in load_all(directory):
        if profile.name != GENERIC and profile.matches_identity(manufacturer, model):
            return profile
    return load_profile(GENERIC, directory=directory)


def match_usb(vid: int, pid: int, interface: int | None, *, directory: Path | str | None = None) -> Profile | None:
    """The profile listing this USB VID:PID (and AT interface, when given); None when unknown."""
    for profile in load_all(directory):
        if profile.matches_usb(vid, pid, interface):
            return profile
    return None
