"""`smsgw setup`: write a first configuration file by asking a few questions.

Asks for the modem's serial port (offering /dev/gsm/*, /dev/serial/by-id/*, /dev/ttyUSB* and
/dev/ttyACM*), the SIM PIN, the MQTT broker and the default country, then writes the TOML file, checks
it with the same validation as ``smsgw run`` and only then moves it into place (mode 0640: it may
hold the PIN and the broker password). Every question has a flag, and ``--non-interactive`` takes the
flags and defaults without asking, for scripts (``deploy/raspberrypi/install.sh``) and tests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from appliance.config import ConfigError, default_config_path, load_config
from appliance.numbers import countries, country_code_name

NAME = "setup"
HELP = "write a configuration file (asks for serial port, PIN, MQTT broker; --non-interactive for scripts)"

DEFAULT_STORE = "/var/lib/smsgw/smsgw.db"


def candidate_ports(dev: Path = Path("/dev")) -> list[str]:
    """Serial devices a GSM modem may be on: stable names first, then ttyUSB*/ttyACM*."""
    found: list[str] = []
    for pattern in ("gsm/*", "serial/by-id/*", "ttyUSB*", "ttyACM*"):
        for path in sorted(dev.glob(pattern), key=lambda p: (len(p.name), p.name)):
            if str(path) not in found:
                found.append(str(path))
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", type=Path, default=None,
                        help=f"file to write (default: $SMSGW_CONFIG or {default_config_path()})")
    parser.add_argument("--non-interactive", action="store_true",
                        help="ask nothing: take the flags and the defaults")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.add_argument("--port", help="modem serial port or socket://host:port (default: the first one found)")
    parser.add_argument("--modem-id", default="sim0", help="modem id used in topics and logs (default sim0)")
    parser.add_argument("--profile", default="auto", help="firmware profile (default auto)")
    parser.add_argument("--pin", help="SIM PIN, 4-8 digits (default: none)")
    parser.add_argument("--mqtt-host", help="MQTT broker host (default 127.0.0.1); 'none' for no MQTT")
    parser.add_argument("--mqtt-port", type=int, default=None, help="MQTT broker port (default 1883)")
    parser.add_argument("--mqtt-user", help="MQTT username")
    parser.add_argument("--mqtt-password", help="MQTT password")
    parser.add_argument("--base-topic", default="smsgw", help="MQTT base topic (default smsgw)")
    parser.add_argument("--country", help="default country for national numbers, e.g. DE (default: none)")
    parser.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite database file (default {DEFAULT_STORE})")


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def render(*, store: str, modem_id: str, port: str, profile: str, pin: str | None, mqtt_host: str | None,
           mqtt_port: int, mqtt_user: str | None, mqtt_password: str | None, base_topic: str,
           country: str | None) -> str:
    lines = [
        "# smsgw configuration: every key is described in docs/config.md",
        "# check it with: smsgw config check FILE",
        "",
        "[store]",
        f"path = {_quote(store)}",
        "",
    ]
    if mqtt_host is None:
        lines += ["# no [mqtt] section: messages are queued with 'smsgw send' only", ""]
    else:
        lines += ["[mqtt]", f"host = {_quote(mqtt_host)}", f"port = {mqtt_port}", f"base_topic = {_quote(base_topic)}"]
        if mqtt_user:
            lines.append(f"username = {_quote(mqtt_user)}")
        if mqtt_password:
            lines.append(f"password = {_quote(mqtt_password)}")
        lines.append("")
    lines += [
        "[[modems]]",
        f"id = {_quote(modem_id)}",
        f"port = {_quote(port)}",
        f"profile = {_quote(profile)}",
    ]
    if pin:
        lines.append(f"pin = {_quote(pin)}")
    lines += ["# rate_per_minute = 6", "# daily_cap = 500", ""]
    lines += ["[numbers]"]
    lines.append(f"default_country = {_quote(country)}" if country else '# default_country = "DE"')
    lines += ["allow_premium = false", "allow_short_codes = false", ""]
    return "\n".join(lines)


Ask = Callable[[str], str]


def _ask(prompt: str, default: str | None, ask: Ask, check: Callable[[str], str | None] | None = None) -> str:
    """Ask until the answer passes ``check`` (which returns an error text or None); blank = default."""
    suffix = f" [{default}]" if default else ""
    while True:
        try:
            answer = ask(f"{prompt}{suffix}: ").strip()
        except EOFError:
            raise SystemExit("smsgw setup: no answer (end of input); use --non-interactive with flags") from None
        if not answer and default is not None:
            answer = default
        problem = check(answer) if check is not None else None
        if problem is None:
            return answer
        print(f"  {problem}", file=sys.stderr)


def _check_pin(value: str) -> str | None:
    if value in ("", "none"):
        return None
    return None if value.isdigit() and 4 <= len(value) <= 8 else "the PIN is 4-8 digits (or blank for none)"


def _check_country(value: str) -> str | None:
    if value in ("", "none") or country_code_name(value):
        return None
    return f"unknown country; one of {', '.join(countries())} (or blank)"


def _check_port(value: str) -> str | None:
    return None if value else "a serial port is needed, e.g. /dev/ttyUSB2 or socket://127.0.0.1:7000"


def _check_mqtt_port(value: str) -> str | None:
    return None if value.isdigit() and 1 <= int(value) <= 65535 else "a port number, 1-65535"


def _interactive(args: argparse.Namespace, ask: Ask) -> None:
    ports = candidate_ports()
    if args.port is None:
        if ports:
            print("Serial ports found:")
            for number, port in enumerate(ports, 1):
                print(f"  {number}) {port}")
            answer = _ask("Modem port (number or path)", "1", ask, _check_port)
            args.port = ports[int(answer) - 1] if answer.isdigit() and 1 <= int(answer) <= len(ports) else answer
        else:
            print("No serial ports found (/dev/serial/by-id, /dev/ttyUSB*, /dev/ttyACM*): is the modem plugged in?")
            args.port = _ask("Modem port", None, ask, _check_port)
    if args.pin is None:
        args.pin = _ask("SIM PIN (blank if the SIM has none)", "", ask, _check_pin)
    if args.mqtt_host is None:
        args.mqtt_host = _ask("MQTT broker host ('none' for no MQTT)", "127.0.0.1", ask)
    if args.mqtt_port is None and args.mqtt_host not in ("none", ""):
        args.mqtt_port = int(_ask("MQTT broker port", "1883", ask, _check_mqtt_port))
    if args.country is None:
        args.country = _ask("Default country for national numbers, e.g. DE (blank for none)", "", ask, _check_country)


def _write(path: Path, text: str) -> ConfigError | None:
    """Write ``text`` beside ``path``, validate it there, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".smsgw-setup-", suffix=".toml", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o640)
        try:
            load_config(tmp)
        except ConfigError as exc:
            return ConfigError(path, exc.key, exc.reason)
        os.replace(tmp, path)
        return None
    finally:
        tmp.unlink(missing_ok=True)


def main(args: argparse.Namespace, ask: Ask = input) -> int:
    path: Path = args.config if args.config is not None else default_config_path()
    if path.exists() and not args.force:
        print(f"smsgw setup: {path} exists; not overwriting it (use --force)", file=sys.stderr)
        return 1
    if not args.non_interactive:
        _interactive(args, ask)
    port = args.port
    if not port:
        ports = candidate_ports()
        if not ports:
            print("smsgw setup: no serial port found; give one with --port", file=sys.stderr)
            return 2
        port = ports[0]
    pin = None if args.pin in (None, "", "none") else args.pin
    mqtt_host = args.mqtt_host if args.mqtt_host is not None else "127.0.0.1"
    country = None if args.country in (None, "", "none") else country_code_name(args.country) or args.country
    text = render(
        store=args.store, modem_id=args.modem_id, port=port, profile=args.profile, pin=pin,
        mqtt_host=None if mqtt_host in ("", "none") else mqtt_host,
        mqtt_port=args.mqtt_port if args.mqtt_port is not None else 1883,
        mqtt_user=args.mqtt_user, mqtt_password=args.mqtt_password, base_topic=args.base_topic,
        country=country,
    )
    try:
        error = _write(path, text)
    except OSError as exc:
        print(f"smsgw setup: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if error is not None:
        print(f"smsgw setup: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
