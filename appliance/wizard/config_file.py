"""The configuration ``smsgw setup`` writes: rendered from the checked answers, validated, then moved in place."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from appliance.config import ConfigError, load_config
from drivers.private_files import replace_file

#: The written file's mode: the service's group may read it, nobody else.
CONFIG_MODE = 0o640


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


@dataclass
class Answers:
    """Everything the wizard asked (or took from flags), ready to be written."""

    store: str
    modem_id: str = "sim0"
    port: str = ""
    profile: str = "auto"
    pin: str | None = None
    imei: str | None = None          # written with port = "auto": the daemon finds the modem by it
    auto_globs: tuple[str, ...] = ()  # [modems_auto] globs, when not the default ones
    mqtt_host: str | None = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_user: str | None = None
    mqtt_password: str | None = None
    mqtt_tls: bool = False
    mqtt_ca: str | None = None
    base_topic: str = "smsgw"
    country: str | None = None
    contacts: dict[str, str] = field(default_factory=dict)


def render(a: Answers) -> str:
    lines = [
        "# smsgw configuration: every key is described in docs/config.md",
        "# check it with: smsgw config check FILE",
        "",
        "[store]",
        f"path = {_quote(a.store)}",
        "",
    ]
    if a.mqtt_host is None:
        lines += ["# no [mqtt] section: messages are queued with 'smsgw send' only", ""]
    else:
        lines += ["[mqtt]", f"host = {_quote(a.mqtt_host)}", f"port = {a.mqtt_port}",
                  f"base_topic = {_quote(a.base_topic)}"]
        if a.mqtt_user:
            lines.append(f"username = {_quote(a.mqtt_user)}")
        if a.mqtt_password:
            lines.append(f"password = {_quote(a.mqtt_password)}")
        if a.mqtt_ca:
            lines += ["", "[mqtt.tls]", f"ca = {_quote(a.mqtt_ca)}"]
        elif a.mqtt_tls:
            lines.append("tls = true")
        lines.append("")
    if a.auto_globs:
        lines += ["[modems_auto]", f"globs = [{', '.join(_quote(g) for g in a.auto_globs)}]", ""]
    lines += ["[[modems]]", f"id = {_quote(a.modem_id)}"]
    if a.imei:
        lines += ['port = "auto"  # found by its IMEI, whatever the device is called after a re-plug',
                  f"imei = {_quote(a.imei)}"]
        if a.port:
            lines.append(f"# found on {a.port} when this file was written")
    else:
        lines.append(f"port = {_quote(a.port)}")
    lines.append(f"profile = {_quote(a.profile)}")
    if a.pin:
        lines.append(f"pin = {_quote(a.pin)}")
    lines += ["# rate_per_minute = 6", "# daily_cap = 500", ""]
    lines += ["[numbers]"]
    lines.append(f"default_country = {_quote(a.country)}" if a.country else '# default_country = "DE"')
    lines += ["allow_premium = false", "allow_short_codes = false", ""]
    if a.contacts:
        lines += ["[contacts]"] + [f"{name} = {_quote(number)}" for name, number in a.contacts.items()] + [""]
    return "\n".join(lines)


def write(path: Path, text: str) -> ConfigError | None:
    """Write ``text`` beside ``path`` (mode 0640: it may hold the PIN and the broker password),
    validate it there as ``smsgw run`` would, then rename it into place; the error, or None."""

    def validate(written: Path) -> None:
        config = load_config(written)
        config.check("health", "caps", "rules", "self_alerts", "calls")  # the sections `smsgw run` reads at start

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        replace_file(path, text, mode=CONFIG_MODE, check=validate)
    except ConfigError as exc:
        return ConfigError(path, exc.key, exc.reason)
    return None
