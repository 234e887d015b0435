"""The smsgw configuration: one TOML file, validated up front.

``load_config(path)`` returns a frozen :class:`Config` or raises :class:`ConfigError`, whose text names
the file, the key (dotted, e.g. ``modems[1].pin``) and the reason. Unknown keys in known sections are
errors (with a "did you mean" hint), so a typo never silently falls back to a default. Every table
is read with :class:`drivers.toml_reader.TableReader`. The sections other parts own are parsed once,
on first use, and cached: ``[health]`` (``Config.health``), ``[sources]`` (``Config.caps``,
:mod:`appliance.caps`) and the rule tables (``Config.rules``, :mod:`appliance.rules.config`) and the call rules (``Config.calls``,
:mod:`appliance.calls_config`); a problem
in one is raised to whoever uses it (``Config.check`` asks for them up front, as ``smsgw run`` does).

Every key, its default and its meaning: ``docs/config.md``.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path

from appliance import config_cache
from appliance.frozen import field, frozen
from drivers.toml_reader import TableReader, did_you_mean, parse_duration, type_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    import tomllib
    from typing import Any

    from appliance.calls_config import CallsConfig
    from appliance.caps import DailyCaps
    from appliance.http.config import HttpConfig
    from appliance.rules.config import RulesConfig
    from appliance.self_alerts.config import SelfAlertsConfig

DEFAULT_CONFIG_PATH = Path("/etc/smsgw/smsgw.toml")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
MQTT_PROTOCOLS = ("5", "3.1.1")

# Top-level keys: the sections parsed here, plus the ones kept in ``raw`` for other modules.
OWN_SECTIONS = ("store", "mqtt", "modems", "modems_auto", "numbers", "limits", "hardware", "sms", "log_level",
                "http", "webhooks")
RAW_SECTIONS = ("alerts", "commands", "contacts", "groups", "sources", "quiet_hours", "rules", "health", "calls",
                "call_rules", "self_alerts", "schedules")

# patterns compiled by ``re`` at their first use: most configs have no pin, imei or iccid
_MODEM_ID = r"^[A-Za-z0-9_-]{1,32}$"
_PIN = r"^[0-9]{4,8}$"
_IMEI = r"^[0-9]{14,17}$"
_ICCID = r"^[0-9]{18,22}$"
#: ``port = "auto"``: the daemon looks for the modem with the configured IMEI / ICCID on these.
AUTO_PORT = "auto"
DEFAULT_AUTO_GLOBS = ("/dev/gsm/*", "/dev/serial/by-id/*", "/dev/ttyUSB*", "/dev/ttyACM*", "/dev/ttyAMA0",
                      "/dev/ttyS0")


class ConfigError(Exception):
    """A configuration problem: ``str(e) == f"{file}: {key}: {reason}"``."""

    def __init__(self, file: str | Path, key: str, reason: str) -> None:
        self.file = str(file)
        self.key = key
        self.reason = reason
        super().__init__(f"{self.file}: {key}: {reason}")


def _default_client_id() -> str:
    # the host name as gethostname(2) gives it on Linux (socket.gethostname()), without importing socket
    return f"smsgw-{os.uname().nodename}"


@frozen
class TlsConfig:
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False


@frozen
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    base_topic: str = "smsgw"
    client_id: str = field(default_factory=_default_client_id)
    username: str | None = None
    password: str | None = None
    protocol: str = "5"  # or "3.1.1"
    keepalive: int = 60
    tls: TlsConfig | None = None
    share_group: str | None = None
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0


@frozen
class BalanceConfig:
    """``[[modems]] balance = { code, every, pattern, low, unit }``: a scheduled balance check."""
    code: str
    every: float                      # seconds between two checks
    pattern: re.Pattern[str]          # finds the amount in the network's answer (group "balance")
    low: float | None = None          # below this an alert event is raised
    unit: str | None = None           # shown beside the amount ("EUR")


@frozen
class ModemConfig:
    id: str
    port: str
    profile: str = "auto"
    pin: str | None = None
    baudrate: int = 115200
    rate_per_minute: float | None = None
    daily_cap: int | None = None
    report: bool = False
    power_gpio: int | None = None
    imei: str | None = None   # the modem's IMEI: with port = "auto" it is looked for on every candidate port
    iccid: str | None = None  # the SIM's ICCID: the modem is not used with another SIM
    balance: BalanceConfig | None = None

    @property
    def auto(self) -> bool:
        return self.port == AUTO_PORT


@frozen
class ModemsAutoConfig:
    """``[modems_auto]``: where ``port = "auto"`` looks for its modem."""

    globs: tuple[str, ...] = DEFAULT_AUTO_GLOBS


@frozen
class StoreConfig:
    path: Path
    reassembly_timeout: float = 86400.0
    retention_days: float = 30.0  # finished messages, handled inbox, published events; 0: forever
    audit_retention_days: float = 365.0  # audit rows; 0: forever


@frozen
class NumbersConfig:
    default_country: str | None = None  # ISO 3166 alpha-2, e.g. "DE"
    allow_premium: bool = False
    allow_short_codes: bool = False
    blocked: tuple[str, ...] = ()  # prefixes
    allowed: tuple[str, ...] = ()  # explicit exceptions (prefixes, or exact short codes)


@frozen
class LimitsConfig:
    max_parts: int = 10
    max_attempts: int = 8
    recipient_interval: float = 0.0
    validity: float = 86400.0


@frozen
class SmsConfig:
    #: ISO 639-1 code of a national language of 3GPP TS 23.038 6.2.1.2 ("tr", "es", "pt", "hi"...):
    #: texts that do not fit the default alphabet may use its shift tables instead of UCS-2.
    national_language: str | None = None


@frozen
class HardwareConfig:
    status_led_gpio: int | None = None


#: The events a webhook may subscribe to: a received SMS (``B/received``), an outbound message's
#: state change (``B/message/<id>``).
WEBHOOK_EVENTS = ("received", "message")
#: The shortest webhook secret accepted (``openssl rand -hex 32`` makes a good one).
WEBHOOK_SECRET_MIN = 16


@frozen
class WebhookConfig:
    """``[[webhooks]]``: where events are POSTed, signed with ``secret`` (docs/webhooks.md)."""
    name: str                     # identifies its deliveries in the store; default: the URL
    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...] = WEBHOOK_EVENTS
    expire_after: float = 86400.0  # seconds a delivery is retried before it is given up
    timeout: float = 10.0          # seconds one POST may take
    retry_base: float = 1.0        # first retry after this, doubling up to retry_max
    retry_max: float = 120.0
    ca: Path | None = None         # a CA file for an https receiver with a private certificate


@frozen
class HealthSettings:
    """``[health]``: modem supervision and the daemon's timers (seconds); see ``appliance/daemon.py``."""

    ping_interval: float = 15.0
    radio_interval: float = 60.0
    failures_allowed: int = 2
    backoff_base: float = 2.0
    backoff_max: float = 300.0
    port_wait: float = 30.0
    sweep_interval: float = 60.0
    poll_interval: float = 5.0
    watch_interval: float = 0.1
    retry_base: float = 10.0
    retry_max: float = 1800.0
    flush_interval: float | None = None  # default: from the reassembly timeout
    multipart_wait: float | None = None  # default: the store's MULTIPART_WAIT
    timeouts: tuple[tuple[str, float], ...] = ()


@frozen
class Config:
    path: Path
    store: StoreConfig
    mqtt: MqttConfig | None
    modems: tuple[ModemConfig, ...]
    numbers: NumbersConfig
    limits: LimitsConfig
    hardware: HardwareConfig
    sms: SmsConfig = field(default_factory=SmsConfig)
    log_level: str = "info"
    raw: dict[str, Any] = field(default_factory=dict)
    modems_auto: ModemsAutoConfig = field(default_factory=ModemsAutoConfig)
    http: HttpConfig | None = None  # [http]: the HTTP API (appliance.http.config); None: off
    webhooks: tuple[WebhookConfig, ...] = ()
    #: the sections other parts of smsgw use, parsed on first use: name -> the value or its ConfigError
    _parsed: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def modem(self, modem_id: str) -> ModemConfig:
        for modem in self.modems:
            if modem.id == modem_id:
                return modem
        raise KeyError(modem_id)

    def _section(self, name: str, parse: Callable[[Config], Any]) -> Any:
        """``parse(self)``, once; a ``ConfigError`` is kept and raised again on every use, so a part of
        smsgw that does not use a section (``smsgw status`` and ``[[alerts]]``) is not stopped by it."""
        if name not in self._parsed:
            try:
                self._parsed[name] = parse(self)
            except ConfigError as exc:
                self._parsed[name] = exc
        value = self._parsed[name]
        if isinstance(value, ConfigError):
            raise value
        return value

    def check(self, *sections: str) -> None:
        """Parse the named sections now (``"health"``, ``"caps"``, ``"rules"``, ``"self_alerts"``, ``"calls"``):
        a problem raises its ``ConfigError`` here, as ``smsgw run`` does at start, rather than where the
        section is used."""
        for name in sections:
            getattr(self, name)

    @property
    def health(self) -> HealthSettings:
        """``[health]``, validated (raises ``ConfigError``)."""
        result: HealthSettings = self._section("health", _health)
        return result

    @property
    def caps(self) -> DailyCaps:
        """``[sources]``: the daily caps per source, validated (raises ``ConfigError``)."""
        from appliance.caps import parse_caps

        result: DailyCaps = self._section("sources", lambda config: parse_caps(config.path, config.raw))
        return result

    @property
    def rules(self) -> RulesConfig:
        """``[contacts]``, ``[groups]``, ``[[alerts]]``, ``[[commands]]``, ``[[schedules]]``, ``[quiet_hours]`` and ``[rules]``,
        validated (raises ``ConfigError``); the rules package is imported on first use."""
        from appliance.rules.config import validate_rules

        result: RulesConfig = self._section("rules", validate_rules)
        return result

    @property
    def calls(self) -> CallsConfig:
        """``[calls]`` and ``[[call_rules]]``, validated (raises ``ConfigError``); the callers resolve
        against ``Config.rules``' contacts and groups."""
        from appliance.calls_config import validate_calls

        result: CallsConfig = self._section("calls", validate_calls)
        return result

    @property
    def self_alerts(self) -> SelfAlertsConfig | None:
        """``[self_alerts]`` (``appliance.self_alerts.config``), validated; None when absent."""
        from appliance.self_alerts.config import parse_self_alerts

        result: SelfAlertsConfig | None = self._section("self_alerts", parse_self_alerts)
        return result


def default_config_path() -> Path:
    """``$SMSGW_CONFIG`` if set, else ``/etc/smsgw/smsgw.toml``."""
    env = os.environ.get("SMSGW_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


# --- validation helpers ---------------------------------------------------------------------


def _section(file: Path, prefix: str, table: object, known: Iterable[str]) -> TableReader:
    """The reader of one table of the file: unknown keys are refused, errors are ``ConfigError``."""
    return TableReader(file, prefix, table, known, error=ConfigError)


# --- sections -------------------------------------------------------------------------------


def _store(file: Path, table: object) -> StoreConfig:
    sec = _section(file, "store", table, ("path", "reassembly_timeout", "retention_days", "audit_retention_days"))
    path = sec.path("path", required=True)
    assert path is not None
    if path.exists() and path.is_dir():
        raise sec.error("path", f"{path} is a directory; name the database file, e.g. {path / 'smsgw.db'}")
    timeout = sec.number("reassembly_timeout", 86400.0, positive=True)
    assert timeout is not None
    retention = sec.number("retention_days", 30.0, minimum=0)
    audit_retention = sec.number("audit_retention_days", 365.0, minimum=0)
    assert retention is not None and audit_retention is not None
    return StoreConfig(path=path, reassembly_timeout=timeout, retention_days=retention,
                       audit_retention_days=audit_retention)


def _tls(file: Path, value: object) -> TlsConfig | None:
    if isinstance(value, bool):
        return TlsConfig() if value else None
    sec = _section(file, "mqtt.tls", value, ("ca", "cert", "key", "insecure"))
    tls = TlsConfig(ca=sec.path("ca"), cert=sec.path("cert"), key=sec.path("key"),
                    insecure=sec.boolean("insecure", False))
    if tls.key is not None and tls.cert is None:
        raise sec.error("key", "a client key needs a client certificate (mqtt.tls.cert)")
    for name in ("ca", "cert", "key"):
        path = getattr(tls, name)
        if path is not None and not path.is_file():
            raise sec.error(name, f"{path} does not exist or is not a file")
    return tls


def _topic_word(sec: TableReader, name: str, value: str) -> None:
    if any(ch in value for ch in "+#\0"):
        raise sec.error(name, f"{value!r} must not contain the MQTT wildcards '+' or '#'")
    if value.startswith("/") or value.endswith("/") or value.startswith("$"):
        raise sec.error(name, f"{value!r} must not start or end with '/' or start with '$'")


def _mqtt(file: Path, table: object) -> MqttConfig:
    known = ("host", "port", "base_topic", "client_id", "username", "password", "protocol", "keepalive",
             "tls", "share_group", "discovery", "discovery_prefix", "reconnect_min", "reconnect_max")
    sec = _section(file, "mqtt", table, known)
    d = MqttConfig()
    protocol = d.protocol
    if sec.has("protocol"):
        raw = sec.table["protocol"]
        protocol = str(raw) if not isinstance(raw, bool) else ""
        protocol = {"5.0": "5", "311": "3.1.1", "3": "3.1.1", "3.1": "3.1.1"}.get(protocol, protocol)
        if protocol not in MQTT_PROTOCOLS:
            raise sec.error("protocol", f"must be \"5\" or \"3.1.1\", not {raw!r}")
    base_topic = sec.string("base_topic", d.base_topic)
    assert base_topic is not None
    _topic_word(sec, "base_topic", base_topic)
    discovery_prefix = sec.string("discovery_prefix", d.discovery_prefix)
    assert discovery_prefix is not None
    _topic_word(sec, "discovery_prefix", discovery_prefix)
    share_group = sec.string("share_group")
    if share_group is not None and any(ch in share_group for ch in "/+#"):
        raise sec.error("share_group", f"{share_group!r} must not contain '/', '+' or '#'")
    client_id = sec.string("client_id", d.client_id)
    username = sec.string("username", empty=True)
    password = sec.string("password", empty=True)
    if password is not None and username is None:
        raise sec.error("password", "a password needs a username (mqtt.username)")
    reconnect_min = sec.number("reconnect_min", d.reconnect_min, positive=True)
    reconnect_max = sec.number("reconnect_max", d.reconnect_max, positive=True)
    assert reconnect_min is not None and reconnect_max is not None
    if reconnect_max < reconnect_min:
        raise sec.error("reconnect_max", f"{reconnect_max:g} is less than mqtt.reconnect_min ({reconnect_min:g})")
    host = sec.string("host", d.host)
    port = sec.integer("port", d.port, minimum=1, maximum=65535)
    keepalive = sec.integer("keepalive", d.keepalive, minimum=1, maximum=65535)
    assert host is not None and port is not None and keepalive is not None and client_id is not None
    return MqttConfig(
        host=host, port=port, base_topic=base_topic, client_id=client_id,
        username=username, password=password, protocol=protocol, keepalive=keepalive,
        tls=_tls(file, sec.table["tls"]) if sec.has("tls") else None,
        share_group=share_group, discovery=sec.boolean("discovery", d.discovery),
        discovery_prefix=discovery_prefix, reconnect_min=reconnect_min, reconnect_max=reconnect_max,
    )


def _profile_names() -> list[str]:
    from drivers.profiles import profile_names

    return profile_names()


def _check_port(sec: TableReader, port: str) -> None:
    if port != port.strip():
        raise sec.error("port", f"{port!r} has leading or trailing spaces")
    if port.startswith("socket://"):
        try:
            parsed = urllib.parse.urlsplit(port)
            tcp_port = parsed.port
        except ValueError:
            tcp_port = None
            parsed = None
        if parsed is None or not parsed.hostname or tcp_port is None or tcp_port == 0:
            raise sec.error("port", f"{port!r}: expected socket://host:port")
    elif port == AUTO_PORT:
        if not sec.has("imei") and not sec.has("iccid"):
            raise sec.error("port", '"auto" needs imei = "..." or iccid = "..." to know which modem to look for')
    elif "://" not in port and not port.startswith("/"):
        raise sec.error("port", f"{port!r} is not an absolute device path (did you mean '/dev/{port}'?)")


def _modems(file: Path, value: object) -> tuple[ModemConfig, ...]:
    if isinstance(value, dict):
        raise ConfigError(file, "modems", "must be an array of tables: write [[modems]], not [modems]")
    if not isinstance(value, list):
        raise ConfigError(file, "modems", f"must be an array of tables ([[modems]]), not {type_name(value)}")
    known = ("id", "port", "profile", "pin", "baudrate", "rate_per_minute", "daily_cap", "report", "power_gpio",
             "imei", "iccid", "balance")
    modems: list[ModemConfig] = []
    seen: dict[str, int] = {}
    identities: dict[tuple[str, str], int] = {}
    for index, table in enumerate(value):
        sec = _section(file, f"modems[{index}]", table, known)
        modem_id = sec.string("id", f"modem{index}")
        assert modem_id is not None
        if not re.match(_MODEM_ID, modem_id):
            raise sec.error("id", f"{modem_id!r} may hold only letters, digits, '-' and '_' (at most 32)")
        if modem_id in seen:
            raise sec.error("id", f"duplicate modem id {modem_id!r} (also modems[{seen[modem_id]}])")
        seen[modem_id] = index
        if not sec.has("port"):
            raise sec.error("port", "is required: a serial device such as /dev/ttyUSB2 or socket://host:port")
        port = sec.string("port")
        assert port is not None
        _check_port(sec, port)
        profile, pin = _modem_profile(sec), _modem_pin(sec)
        ids = _modem_identity(sec, index, identities)
        modems.append(ModemConfig(
            id=modem_id, port=port, profile=profile, pin=pin,
            baudrate=sec.integer("baudrate", 115200, minimum=1200, maximum=4_000_000) or 115200,
            rate_per_minute=sec.number("rate_per_minute", None, positive=True),
            daily_cap=sec.integer("daily_cap", None, minimum=1),
            report=sec.boolean("report", False),
            power_gpio=sec.integer("power_gpio", None, minimum=0, maximum=63),
            imei=ids["imei"], iccid=ids["iccid"],
            balance=_balance(file, f"modems[{index}].balance", sec.table["balance"]) if sec.has("balance") else None,
        ))
    return tuple(modems)


def _modem_profile(sec: TableReader) -> str:
    profile = sec.string("profile", "auto")
    assert profile is not None
    if profile != "auto":
        profiles = _profile_names()
        if profile not in profiles:
            raise sec.error(
                "profile", f"unknown profile {profile!r}{did_you_mean(profile, profiles)}; "
                f"known: auto, {', '.join(profiles)}"
            )
    return profile


def _modem_pin(sec: TableReader) -> str | None:
    if not sec.has("pin"):
        return None
    raw_pin = sec.table["pin"]
    if isinstance(raw_pin, int) and not isinstance(raw_pin, bool):
        raise sec.error("pin", "must be a quoted string of 4-8 digits (pin = \"0000\"), not a number")
    pin = sec.string("pin")
    assert pin is not None
    if not re.match(_PIN, pin):
        raise sec.error("pin", "must be 4-8 digits")
    return pin


def _modem_identity(sec: TableReader, index: int, identities: dict[tuple[str, str], int]) -> dict[str, str | None]:
    """``imei`` and ``iccid`` of one modem; each may name one modem only (``identities`` holds those seen)."""
    ids: dict[str, str | None] = {}
    for name, pattern, what in (("imei", _IMEI, "14-17 digits (AT+CGSN; `smsgw detect` shows it)"),
                                ("iccid", _ICCID, "18-22 digits (printed on the SIM; `smsgw doctor` shows it)")):
        ids[name] = value = sec.string(name)
        if value is None:
            continue
        if not re.match(pattern, value):
            raise sec.error(name, f"{value!r} must be {what}")
        if (name, value) in identities:
            raise sec.error(name, f"{value} is also modems[{identities[(name, value)]}].{name}")
        identities[(name, value)] = index
    return ids


def _modems_auto(file: Path, table: object) -> ModemsAutoConfig:
    sec = _section(file, "modems_auto", table, ("globs",))
    if not sec.has("globs"):
        return ModemsAutoConfig()
    globs = sec.strings("globs")
    if not globs:
        raise sec.error("globs", "must name at least one pattern, e.g. [\"/dev/ttyUSB*\"]")
    for index, pattern in enumerate(globs):
        if not pattern.startswith("/"):
            raise ConfigError(file, f"modems_auto.globs[{index}]", f"{pattern!r} is not an absolute path pattern")
    return ModemsAutoConfig(globs=globs)


def _sms(file: Path, table: object) -> SmsConfig:
    from drivers.gsm7_languages import LANGUAGE_IDS

    sec = _section(file, "sms", table, ("national_language",))
    language = sec.string("national_language")
    if language is not None and language.lower() not in LANGUAGE_IDS:
        known = sorted(LANGUAGE_IDS)
        raise sec.error("national_language", f"unknown national language {language!r}: one of "
                        f"{', '.join(known)}{did_you_mean(language.lower(), known)}")
    return SmsConfig(national_language=language.lower() if language else None)


#: The shortest interval between two scheduled balance checks (each one is a USSD request).
BALANCE_MIN_EVERY = 60.0
DEFAULT_BALANCE_PATTERN = r"(?P<balance>[0-9]+(?:[.,][0-9]+)*)"


def _balance(file: Path, prefix: str, table: object) -> BalanceConfig:
    sec = _section(file, prefix, table, ("code", "every", "pattern", "low", "unit"))
    code = sec.string("code", required=True)
    assert code is not None
    if not re.fullmatch(r"[0-9*#+]{1,160}", code):
        raise sec.error("code", f"must be a USSD code of digits, * and # (such as \"*100#\"), not {code!r}")
    every_raw = sec.table.get("every", "1d")
    try:
        every = parse_duration(every_raw)
    except ValueError as exc:
        raise sec.error("every", str(exc)) from None
    if every < BALANCE_MIN_EVERY:
        raise sec.error("every", f"must be at least {BALANCE_MIN_EVERY:g} s (each check is a USSD request), "
                        f"not {every_raw!r}")
    pattern_text = sec.string("pattern", DEFAULT_BALANCE_PATTERN)
    assert pattern_text is not None
    try:
        pattern = re.compile(pattern_text)
    except re.error as exc:
        raise sec.error("pattern", f"is not a regular expression: {exc}") from None
    if "balance" not in pattern.groupindex and pattern.groups == 0:
        raise sec.error("pattern", "needs a group that captures the amount: (?P<balance>[0-9.,]+)")
    return BalanceConfig(code=code, every=every, pattern=pattern, low=sec.number("low", None),
                         unit=sec.string("unit", None))


def webhook_display_url(url: str) -> str:
    """The URL without its user, password, query and fragment (which may hold credentials)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _webhooks(file: Path, value: object) -> tuple[WebhookConfig, ...]:
    if isinstance(value, dict):
        raise ConfigError(file, "webhooks", "must be an array of tables: write [[webhooks]], not [webhooks]")
    if not isinstance(value, list):
        raise ConfigError(file, "webhooks", f"must be an array of tables ([[webhooks]]), not {type_name(value)}")
    known = ("name", "url", "secret", "events", "expire_after", "timeout", "retry_base", "retry_max", "ca")
    hooks: list[WebhookConfig] = []
    names: dict[str, int] = {}
    for index, table in enumerate(value):
        sec = _section(file, f"webhooks[{index}]", table, known)
        url, parts = _webhook_url(sec)
        name = sec.string("name", webhook_display_url(url))
        assert name is not None
        if name in names:
            raise sec.error("name" if sec.has("name") else "url",
                            f"{name!r} is also webhooks[{names[name]}]; give each webhook its own name = \"...\"")
        names[name] = index
        secret = sec.string("secret", required=True)
        assert secret is not None
        if len(secret) < WEBHOOK_SECRET_MIN:
            raise sec.error("secret", f"must be at least {WEBHOOK_SECRET_MIN} characters, not {len(secret)} "
                            "(`openssl rand -hex 32` makes one)")
        ca = sec.path("ca")
        if ca is not None:
            if parts.scheme != "https":
                raise sec.error("ca", "is only used with an https:// url")
            if not ca.is_file():
                raise sec.error("ca", f"{ca} does not exist or is not a file")
        hooks.append(WebhookConfig(name=name, url=url, secret=secret, events=_webhook_events(file, sec), ca=ca,
                                   **_webhook_durations(sec)))
    return tuple(hooks)


def _webhook_url(sec: TableReader) -> tuple[str, urllib.parse.SplitResult]:
    url = sec.string("url", required=True)
    assert url is not None
    if url != url.strip():
        raise sec.error("url", f"{url!r} has leading or trailing spaces")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise sec.error("url", f"{url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise sec.error("url", f"{url!r} must be an http:// or https:// URL with a host")
    return url, parts


def _webhook_events(file: Path, sec: TableReader) -> tuple[str, ...]:
    if not sec.has("events"):
        return WEBHOOK_EVENTS
    events = sec.choices("events", WEBHOOK_EVENTS, "event")
    if not events:
        raise sec.error("events", f"must name at least one event: {', '.join(WEBHOOK_EVENTS)}")
    return tuple(dict.fromkeys(events))


def _webhook_durations(sec: TableReader) -> dict[str, float]:
    d = WebhookConfig(name="", url="", secret="")
    durations: dict[str, float] = {}
    for key in ("expire_after", "timeout", "retry_base", "retry_max"):
        default = getattr(d, key)
        try:
            durations[key] = parse_duration(sec.table[key]) if sec.has(key) else default
        except ValueError as exc:
            raise sec.error(key, str(exc)) from None
        if durations[key] <= 0:
            raise sec.error(key, f"must be greater than 0, not {sec.table[key]!r}")
    if durations["retry_max"] < durations["retry_base"]:
        raise sec.error("retry_max", f"{durations['retry_max']:g} s is less than retry_base "
                        f"({durations['retry_base']:g} s)")
    return durations


def _numbers(file: Path, table: object) -> NumbersConfig:
    sec = _section(file, "numbers", table,
                   ("default_country", "allow_premium", "allow_short_codes", "blocked", "allowed"))
    country = sec.string("default_country")
    if country is not None or sec.strings("blocked") or sec.strings("allowed"):
        from appliance import numbers  # here: without these `smsgw status` needs no country tables
    if country is not None:
        country = numbers.country_code_name(country)
        if country is None:
            raw = sec.table["default_country"]
            raise sec.error(
                "default_country",
                f"unknown country {raw!r}: use an ISO 3166 alpha-2 code, one of {', '.join(numbers.countries())}",
            )
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("blocked", "allowed"):
        entries = []
        for index, entry in enumerate(sec.strings(name)):
            try:
                entries.append(numbers.normalise_prefix(entry, default_country=country,
                                                        keep_short=(name == "allowed")))
            except numbers.NumberError as exc:
                raise ConfigError(file, f"numbers.{name}[{index}]", str(exc)) from None
        lists[name] = tuple(entries)
    return NumbersConfig(
        default_country=country,
        allow_premium=sec.boolean("allow_premium", False),
        allow_short_codes=sec.boolean("allow_short_codes", False),
        blocked=lists["blocked"], allowed=lists["allowed"],
    )


def _limits(file: Path, table: object) -> LimitsConfig:
    sec = _section(file, "limits", table, ("max_parts", "max_attempts", "recipient_interval", "validity"))
    d = LimitsConfig()
    max_parts = sec.integer("max_parts", d.max_parts, minimum=1, maximum=255)
    max_attempts = sec.integer("max_attempts", d.max_attempts, minimum=1)
    interval = sec.number("recipient_interval", d.recipient_interval, minimum=0)
    validity = sec.number("validity", d.validity, positive=True)
    assert max_parts is not None and max_attempts is not None and interval is not None and validity is not None
    return LimitsConfig(max_parts=max_parts, max_attempts=max_attempts, recipient_interval=interval,
                        validity=validity)


def _hardware(file: Path, table: object) -> HardwareConfig:
    sec = _section(file, "hardware", table, ("status_led_gpio",))
    return HardwareConfig(status_led_gpio=sec.integer("status_led_gpio", None, minimum=0, maximum=63))


_HEALTH_SECONDS = ("ping_interval", "radio_interval", "backoff_base", "backoff_max", "port_wait", "sweep_interval",
                   "poll_interval", "watch_interval", "flush_interval", "retry_base", "retry_max", "multipart_wait")


def _health(config: Config) -> HealthSettings:
    from drivers.profiles import TIMEOUT_KEYS

    sec = _section(config.path, "health", config.raw.get("health", {}),
                   (*_HEALTH_SECONDS, "failures_allowed", "timeouts"))
    values: dict[str, Any] = {name: sec.seconds(name, positive=True) for name in _HEALTH_SECONDS if sec.has(name)}
    if sec.has("failures_allowed"):
        values["failures_allowed"] = sec.integer("failures_allowed", None, minimum=1, what="a whole number >= 1")
    if sec.has("timeouts"):
        timeouts = sec.sub("timeouts", TIMEOUT_KEYS, key_kind="timeout")
        values["timeouts"] = tuple((name, timeouts.seconds(name, positive=True)) for name in timeouts.table)
    return HealthSettings(**values)


def _http(file: Path, table: object) -> HttpConfig:
    from appliance.http.config import parse_http

    return parse_http(file, table)


def _syntax_error(file: Path, exc: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(exc)
    match = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if match:
        reason = message[: match.start()].strip() or "TOML syntax error"
        return ConfigError(file, f"line {match.group(1)}",
                           f"TOML syntax error: {reason} (column {match.group(2)})")
    return ConfigError(file, "syntax", f"TOML syntax error: {message}")


def parse_config(data: dict[str, Any], path: str | Path) -> Config:
    """Validate an already parsed TOML document; ``path`` anchors relative paths and names errors."""
    file = Path(path).absolute()
    sec = _section(file, "", data, OWN_SECTIONS + RAW_SECTIONS)
    if not sec.has("store"):
        raise ConfigError(file, "store.path", "is required: add [store] with path = \"/var/lib/smsgw/smsgw.db\"")
    level = sec.string("log_level", "info")
    assert level is not None
    if level.lower() not in LOG_LEVELS:
        raise sec.error("log_level", f"{level!r} is not one of {', '.join(LOG_LEVELS)}{did_you_mean(level.lower(), LOG_LEVELS)}")
    return Config(
        path=file,
        store=_store(file, data["store"]),
        mqtt=_mqtt(file, data["mqtt"]) if "mqtt" in data else None,
        modems=_modems(file, data["modems"]) if "modems" in data else (),
        numbers=_numbers(file, data.get("numbers", {})),
        limits=_limits(file, data.get("limits", {})),
        hardware=_hardware(file, data.get("hardware", {})),
        sms=_sms(file, data.get("sms", {})),
        log_level=level.lower(),
        raw=data,
        modems_auto=_modems_auto(file, data.get("modems_auto", {})),
        http=_http(file, data["http"]) if "http" in data else None,
        webhooks=_webhooks(file, data["webhooks"]) if "webhooks" in data else (),
    )


def load_config(path: str | Path, *, cache: bool = False) -> Config:
    """Read and validate the TOML file at ``path``; raises ConfigError naming file, key and reason.

    With ``cache`` (the short commands), the parsed TOML of a file read before with the same text
    comes from ``appliance.config_cache`` and ``tomllib`` is not imported."""
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, "file", "does not exist (create it with 'smsgw setup')") from None
    except IsADirectoryError:
        raise ConfigError(file, "file", "is a directory, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(file, "file", f"cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(file, "file", f"is not UTF-8 text (byte {exc.start})") from None
    data = config_cache.read(str(file), text) if cache else None
    if data is None:
        import tomllib  # here: a cached read does without it (a sixth of what `smsgw send` costs)

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _syntax_error(file, exc) from None
        if cache:
            config_cache.write(str(file), text, data)
    return parse_config(data, file)
