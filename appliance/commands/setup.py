"""`smsgw setup`: the installer's wizard; every answer is checked against the real thing before it is written.

In order: detect (probe the candidate ports, with progress: identity, SIM state, PIN attempts left)
→ pick the modem → PIN (read without echo, entered once through the PIN guard, the result shown)
→ broker (connect, credentials, TLS: what failed is named) → contacts (default country, the
installer's phone) → test SMS to that phone, and wait for the reply (a timeout; Enter skips)
→ write the config (validated as ``smsgw run`` would, then ``config check``) → enable and start the
service (systemd when it runs here; else what to run is said). The config gets ``port = "auto"``
with the modem's IMEI, so the daemon finds the modem again whatever its device is called.

Every question has a flag; ``--non-interactive`` takes the flags and runs the same checks, and a
failed one ends setup with exit status 2 naming it (``smsgw setup: check failed: pin: …``).
An existing file is never overwritten without ``--force`` (exit 2). ``--no-checks`` writes the
file from the flags without talking to a modem or broker (image building, with nothing attached).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from appliance.config import DEFAULT_AUTO_GLOBS, ConfigError, MqttConfig, TlsConfig, default_config_path
from appliance.numbers import NumberError, countries, country_code_name, normalise
from appliance.wizard.config_file import Answers, render, write

NAME = "setup"
HELP = ("the installer's wizard: find the modem, check the PIN, the broker and a test SMS, write the "
        "config, start the service (--non-interactive for scripts)")

DEFAULT_STORE = "/var/lib/smsgw/smsgw.db"
#: Seconds the interactive wizard waits for the reply to its test SMS.
REPLY_WAIT = 180.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

Ask = Callable[[str], str]


class CheckFailed(Exception):
    """A check of the wizard failed: ``check`` names it (detect, modem, pin, broker, ...)."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", type=Path, default=None,
                        help=f"file to write (default: $SMSGW_CONFIG or {default_config_path()})")
    parser.add_argument("--non-interactive", action="store_true",
                        help="ask nothing: take the flags, run the same checks, exit 2 naming a failed one")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.add_argument("--no-checks", action="store_true",
                        help="talk to no modem or broker: write the file from the flags (image building)")
    parser.add_argument("--port", help="the modem's port (default: probe the candidate ports, take the one chosen)")
    parser.add_argument("--scan", action="append", default=None, metavar="GLOB",
                        help="candidate ports to probe (repeatable; default: " + " ".join(DEFAULT_AUTO_GLOBS) + "); "
                             "also written as [modems_auto] globs")
    parser.add_argument("--modem-id", default="sim0", help="modem id used in topics and logs (default sim0)")
    parser.add_argument("--profile", default="auto", help="firmware profile (default auto)")
    parser.add_argument("--pin", help="SIM PIN, 4-8 digits, when the SIM asks for one (asked without echo)")
    parser.add_argument("--mqtt-host", help="MQTT broker host (default 127.0.0.1); 'none' for no MQTT")
    parser.add_argument("--mqtt-port", type=int, default=None, help="MQTT broker port (default 1883, 8883 with TLS)")
    parser.add_argument("--mqtt-user", help="MQTT username")
    parser.add_argument("--mqtt-password", help="MQTT password (asked without echo)")
    parser.add_argument("--mqtt-tls", action="store_true", help="connect to the broker over TLS")
    parser.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate of the broker's TLS (implies --mqtt-tls)")
    parser.add_argument("--base-topic", default="smsgw", help="MQTT base topic (default smsgw)")
    parser.add_argument("--country", help="default country for national numbers, e.g. DE (default: none)")
    parser.add_argument("--contact", action="append", default=[], metavar="NAME=NUMBER",
                        help="a contact for [contacts] (repeatable); interactive setup asks for the installer's")
    parser.add_argument("--test-sms", metavar="NUMBER", help="send a test SMS to this number (or contact name)")
    parser.add_argument("--wait-reply", type=float, default=None, metavar="SECONDS",
                        help=f"wait this long for a reply to the test SMS (default {REPLY_WAIT:g} interactive, "
                             "0 with --non-interactive: do not wait)")
    parser.add_argument("--no-start", action="store_true", help="do not enable and start the service")
    parser.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite database file (default {DEFAULT_STORE})")


class Wizard:
    """The steps, in order; ``ask``/``secret`` read answers (``secret`` without echo)."""

    def __init__(self, args: argparse.Namespace, path: Path, ask: Ask, secret: Ask) -> None:
        self.args = args
        self.path = path
        self.interactive = not args.non_interactive
        self._ask = ask
        self._secret = secret
        self.answers = Answers(store=args.store, modem_id=args.modem_id, profile=args.profile,
                               base_topic=args.base_topic)
        self.detected_profile = args.profile

    # --- talking to the installer -----------------------------------------------------------

    @staticmethod
    def say(text: str) -> None:
        print(text, end="", flush=True)

    def ask(self, prompt: str, default: str | None = None, check: Callable[[str], str | None] | None = None,
            *, secret: bool = False) -> str:
        """Ask until ``check`` (an error text or None) passes; a blank answer takes ``default``."""
        suffix = f" [{default}]" if default else ""
        while True:
            try:
                answer = (self._secret if secret else self._ask)(f"{prompt}{suffix}: ").strip()
            except EOFError:
                raise SystemExit("smsgw setup: no answer (end of input); use --non-interactive with flags") from None
            if not answer and default is not None:
                answer = default
            problem = check(answer) if check is not None else None
            if problem is None:
                return answer
            print(f"  {problem}")

    def yes(self, prompt: str, default: bool = True) -> bool:
        answer = self.ask(f"{prompt} ({'Y/n' if default else 'y/N'})", None,
                          lambda a: None if a.lower() in ("", "y", "yes", "n", "no") else "answer y or n")
        return default if not answer else answer.lower().startswith("y")

    # --- the steps ----------------------------------------------------------------------------

    def detect_and_pick(self) -> None:
        from appliance.wizard.modem import probe_ports
        from drivers.locate import candidate_ports

        args = self.args
        globs = tuple(args.scan) if args.scan else DEFAULT_AUTO_GLOBS
        while True:
            ports = [args.port] if args.port else candidate_ports(globs)
            if ports:
                self.say("Looking for modems:\n")
                found = [c for c in asyncio.run(probe_ports(ports, self.say)) if c.found is not None]
                if found:
                    break
                problem = f"no modem answered on {', '.join(ports)}"
            else:
                problem = (f"no serial ports found (looked at {' '.join(globs)}): is the modem plugged in and "
                           "powered? (`dmesg | tail` shows a new USB device)")
            if not self.interactive or not self.yes(f"{problem}. Look again (plug the modem in, wait for it)?"):
                raise CheckFailed("detect", problem)
        chosen = found[0]
        if self.interactive and len(found) > 1:
            for number, candidate in enumerate(found, 1):
                print(f"  {number}) {candidate.port}: {candidate.describe()}")
            answer = self.ask("Modem to use (number)", "1",
                              lambda a: None if a.isdigit() and 1 <= int(a) <= len(found) else
                              f"a number from 1 to {len(found)}")
            chosen = found[int(answer) - 1]
        assert chosen.found is not None
        print(f"modem: {chosen.port}: {chosen.describe()}")
        self.chosen = chosen
        self.answers.port = chosen.port
        if chosen.found.identity.imei and "://" not in chosen.port:
            self.answers.imei = chosen.found.identity.imei
            self.answers.auto_globs = tuple(args.scan) if args.scan else ()
        if args.profile == "auto":
            self.detected_profile = chosen.found.profile

    def pin(self) -> None:
        from appliance.wizard.modem import unlock
        from drivers.errors import ModemError, PinError
        from drivers.modem import inspect_port

        sim = self.chosen.found.sim if self.chosen.found is not None else None
        assert sim is not None
        port = self.chosen.port
        if sim.state == "READY":
            self._ready_sim(sim.pin_lock)
            return
        if sim.state != "SIM PIN":
            raise CheckFailed("pin", f"the SIM wants {sim.state}: smsgw enters only a SIM PIN, never a PUK; "
                                     "unlock the SIM in a phone")
        pin = self.args.pin
        state_dir = self._state_dir()
        while True:
            if pin is None:
                if not self.interactive:
                    raise CheckFailed("pin", f"the SIM wants its PIN ({sim}): give --pin")
                pin = self.ask(f"SIM PIN ({sim}; not shown)", None, _check_pin, secret=True)
            elif _check_pin(pin) is not None:
                raise CheckFailed("pin", f"--pin: {_check_pin(pin)}")
            print("entering the PIN … ", end="", flush=True)
            try:
                asyncio.run(unlock(port, pin, profile=self.detected_profile, state_dir=state_dir))
            except (PinError, ModemError, OSError) as exc:
                try:
                    after = asyncio.run(inspect_port(port)).sim
                except (ModemError, OSError, TimeoutError):
                    after = None
                problem = f"not accepted: {exc}" + (f"; SIM: {after}" if after is not None else "")
                print(problem)
                left = after.pin_attempts if after is not None else None
                if not self.interactive or after is None or after.state != "SIM PIN" or (left is not None and left < 2):
                    raise CheckFailed("pin", problem) from None
                pin = None
                sim = after
                continue
            print("accepted, SIM ready")
            self.answers.pin = pin
            return

    def _ready_sim(self, pin_lock: bool | None) -> None:
        """A READY SIM needs no PIN now; one whose PIN lock is on wants it again after a restart."""
        pin = self.args.pin
        if not pin_lock:
            print("SIM: ready, no PIN needed" + (" (PIN lock off)" if pin_lock is False else ""))
            if pin:
                print("  (--pin is written but cannot be checked now: the SIM is already unlocked)")
                self.answers.pin = pin
            return
        print("SIM: ready, but its PIN lock is on (it was unlocked since the modem powered up): it asks for "
              "the PIN again after a restart")
        if pin is None:
            if not self.interactive:
                raise CheckFailed("pin", "the SIM's PIN lock is on: give --pin, or the daemon cannot unlock it after "
                                         "the modem restarts")
            pin = self.ask("SIM PIN, for the daemon after a restart (not shown)", None, _check_pin, secret=True)
        elif _check_pin(pin) is not None:
            raise CheckFailed("pin", f"--pin: {_check_pin(pin)}")
        print("  written unchecked (the SIM is unlocked now): the daemon enters it once, when the SIM asks")
        self.answers.pin = pin

    def _state_dir(self) -> Path | None:
        """The store's directory, where the daemon looks for rejected PINs (made if missing)."""
        store = Path(self.args.store)
        directory = (store if store.is_absolute() else self.path.parent / store).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        return directory if os.access(directory, os.W_OK) else None

    def broker(self) -> None:
        from appliance.broker_check import check_broker

        args = self.args
        a = self.answers
        host = args.mqtt_host
        while True:
            if host is None:
                host = self.ask("MQTT broker host ('none' for no MQTT)", "127.0.0.1") if self.interactive \
                    else "127.0.0.1"
            if host in ("none", ""):
                a.mqtt_host = None
                print("MQTT: off (messages are queued with `smsgw send` only)")
                return
            tls = args.mqtt_tls or bool(args.mqtt_ca)
            port, user, password, ca = args.mqtt_port, args.mqtt_user, args.mqtt_password, args.mqtt_ca
            if self.interactive:
                if not tls and port is None:
                    tls = self.yes("Connect over TLS?", default=False)
                if port is None:
                    port = int(self.ask("MQTT broker port", "8883" if tls else "1883", _check_mqtt_port))
                if tls and ca is None:
                    ca = self.ask("CA certificate file of the broker (blank: the system's)", "",
                                  lambda v: None if not v or os.path.isfile(v) else f"{v} is not a file") or None
                if user is None:
                    user = self.ask("MQTT username (blank: none)", "") or None
                if user and password is None:
                    password = self.ask("MQTT password (not shown)", "", secret=True)
            port = port if port is not None else (8883 if tls else 1883)
            a.mqtt_host, a.mqtt_port, a.mqtt_user, a.mqtt_password = host, port, user, password or None
            a.mqtt_tls, a.mqtt_ca = tls, ca
            try:
                mqtt = MqttConfig(host=host, port=port, username=user, password=password or None,
                                  tls=TlsConfig(ca=Path(ca) if ca else None) if tls else None)
            except (TypeError, ValueError) as exc:
                raise CheckFailed("broker", str(exc)) from None
            print(f"testing the broker {host}:{port} … ", end="", flush=True)
            result = check_broker(mqtt, 5.0, client_id=f"smsgw-setup-{socket.gethostname()}-{os.getpid()}")
            print(result.message if result.ok else f"failed ({result.stage}): {result.message}")
            if result.ok:
                return
            if not self.interactive:
                raise CheckFailed("broker", f"{result.stage}: {result.message}" +
                                  (f" ({result.hint})" if result.hint else ""))
            print(f"  -> {result.hint}")
            if not self.yes("Try other broker settings?"):
                raise CheckFailed("broker", f"{result.stage}: {result.message}")
            host = args.mqtt_host = args.mqtt_port = args.mqtt_user = args.mqtt_password = None

    def contacts(self) -> None:
        a = self.answers
        country = self.args.country
        if country is None and self.interactive:
            country = self.ask("Default country for national numbers, e.g. DE (blank for none)", "", _check_country)
        if country not in (None, "", "none"):
            code = country_code_name(country)
            if code is None:
                raise CheckFailed("contacts", f"--country: unknown country {country!r}; one of {', '.join(countries())}")
            a.country = code
        for entry in self.args.contact:
            name, _, number = entry.partition("=")
            name = name.strip()
            if not name or not number:
                raise CheckFailed("contacts", f"--contact {entry!r}: write NAME=NUMBER")
            try:
                a.contacts[name] = normalise(number, default_country=a.country)
            except NumberError as exc:
                raise CheckFailed("contacts", f"--contact {name}: {exc}") from None
        if self.interactive and "installer" not in a.contacts:
            def check(value: str) -> str | None:
                if not value:
                    return None
                try:
                    normalise(value, default_country=a.country)
                except NumberError as exc:
                    return str(exc)
                return None

            number = self.ask("Your mobile number, for a test SMS (blank: skip)", "", check)
            if number:
                a.contacts["installer"] = normalise(number, default_country=a.country)

    def test_sms(self) -> None:
        from appliance.wizard.modem import test_sms
        from drivers.errors import ModemError

        a = self.answers
        target = self.args.test_sms
        if target is None and self.interactive and "installer" in a.contacts:
            if self.yes(f"Send a test SMS to {a.contacts['installer']} now?"):
                target = a.contacts["installer"]
        if target is None:
            return
        try:
            number = a.contacts[target] if target in a.contacts else normalise(target, default_country=a.country)
        except NumberError as exc:
            raise CheckFailed("test-sms", f"--test-sms: {exc}") from None
        wait = self.args.wait_reply if self.args.wait_reply is not None else (REPLY_WAIT if self.interactive else 0)
        text = (f"smsgw on {socket.gethostname()}: this is the test SMS of smsgw setup. "
                "Reply to it to check that receiving works too.")
        skip_fd = sys.stdin.fileno() if self.interactive and sys.stdin.isatty() else None
        try:
            result = asyncio.run(test_sms(self.chosen.port, number, text, profile=self.detected_profile, wait=wait,
                                          say=self.say, skip_fd=skip_fd))
        except (ModemError, OSError) as exc:
            raise CheckFailed("test-sms", f"sending to {number} failed: {exc}") from None
        if result.reply is not None:
            print(f"reply received from {number}: {result.reply!r}: sending and receiving work")
        elif result.skipped:
            print("not waiting for the reply (skipped)")
        elif wait > 0:
            message = f"no reply from {number} within {wait:g}s"
            if not self.interactive:
                raise CheckFailed("reply", message)
            print(f"{message}: receiving is not confirmed (a late reply shows in `smsgw inbox` once the daemon runs)")

    # --- all of it -------------------------------------------------------------------------------

    def run(self) -> int:
        args = self.args
        if args.no_checks:
            if not args.port:
                raise CheckFailed("modem", "--no-checks needs --port (nothing is probed)")
            self.answers.port = args.port
            self.answers.pin = args.pin
            a = self.answers
            a.mqtt_host = None if args.mqtt_host in ("none", "") else (args.mqtt_host or "127.0.0.1")
            a.mqtt_tls = args.mqtt_tls or bool(args.mqtt_ca)
            a.mqtt_port = args.mqtt_port if args.mqtt_port is not None else (8883 if a.mqtt_tls else 1883)
            a.mqtt_user, a.mqtt_password, a.mqtt_ca = args.mqtt_user, args.mqtt_password, args.mqtt_ca
            self.interactive = False
            self.contacts()
        else:
            self.detect_and_pick()
            self.pin()
            self.broker()
            self.contacts()
            self.test_sms()
        return self.write_and_start()

    def write_and_start(self) -> int:
        from appliance.commands import config_check
        from appliance.wizard import service

        try:
            error = write(self.path, render(self.answers))
        except OSError as exc:
            print(f"smsgw setup: cannot write {self.path}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAILED
        if error is not None:
            print(f"smsgw setup: {error}", file=sys.stderr)
            return EXIT_USAGE
        print(f"wrote {self.path}")
        status = config_check.main(argparse.Namespace(config_command="check", file=self.path))
        if status != 0:
            return EXIT_USAGE
        if self.args.no_start:
            print(f"not starting the service (--no-start): `smsgw run --config {self.path}` starts the daemon")
            return EXIT_OK
        ok, message = service.start(self.path)
        print(message)
        return EXIT_OK if ok else EXIT_FAILED


def _check_pin(value: str) -> str | None:
    return None if value.isdigit() and 4 <= len(value) <= 8 else "the PIN is 4-8 digits"


def _check_country(value: str) -> str | None:
    if value in ("", "none") or country_code_name(value):
        return None
    return f"unknown country; one of {', '.join(countries())} (or blank)"


def _check_mqtt_port(value: str) -> str | None:
    return None if value.isdigit() and 1 <= int(value) <= 65535 else "a port number, 1-65535"


def main(args: argparse.Namespace, ask: Ask = input, secret: Ask = getpass.getpass) -> int:
    path: Path = args.config if args.config is not None else default_config_path()
    if path.exists() and not args.force:
        print(f"smsgw setup: {path} exists; not overwriting it (use --force)", file=sys.stderr)
        return EXIT_USAGE
    try:
        return Wizard(args, path, ask, secret).run()
    except CheckFailed as exc:
        print(f"smsgw setup: check failed: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"smsgw setup: {exc}", file=sys.stderr)
        return EXIT_USAGE
