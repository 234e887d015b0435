"""`smsgw doctor [--config FILE] [--json] [--no-modems] [--force]`: check an installation.

Walks what an installer gets wrong, in order, and says what to do about each finding: the
configuration file; the store (directory writable, database opens, integrity, WAL mode, queue
state); each modem's port (present, readable and writable by this user, not held by another
process) and, when the port is free, the modem itself (answers AT, identity, SIM state, signal,
registration, operator, SMSC, SMS storage); the MQTT broker (TCP reachable, CONNECT accepted with
the configured credentials and TLS).

A port held by a running ``smsgw run`` is not opened (two programs on one AT port garble each
other's replies): "ok, in use by smsgw", and the daemon's last recorded modem state is shown
instead. ``--force`` opens it anyway. A port held by ModemManager is a failure, with the fix.
A ``port = "auto"`` modem is looked for by its IMEI/ICCID, as the daemon does.

Doctor tells and touches nothing: it never enters a PIN (it reports the SIM's state and the PIN
attempts left, read with ``drivers.modem.inspect_port``; the daemon enters the configured PIN),
and it creates no file (the PIN rejection file is read without its lock). Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed, 2 when the
configuration cannot be loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import grp
import json
import os
import socket
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.config import Config, ConfigError, ModemConfig, MqttConfig, default_config_path, load_config
from appliance.frozen import replace
from appliance.port_holders import MODEM_MANAGER, MODEM_MANAGER_FIX, SMSGW, users

if TYPE_CHECKING:
    from drivers.modem import SimStatus

NAME = "doctor"
HELP = "check an installation: configuration, store, modem ports and modems, MQTT broker"

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Finding:
    area: str
    status: str
    message: str
    hint: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", type=Path, default=None,
                        help=f"configuration file (default: $SMSGW_CONFIG or {default_config_path()})")
    parser.add_argument("--json", action="store_true", help="print the findings as one JSON document")
    parser.add_argument("--no-modems", action="store_true", help="do not open the modem ports")
    parser.add_argument("--force", action="store_true",
                        help="open a modem port even when another process (the daemon) holds it")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="per modem command and MQTT connect timeout (default 5)")


# --- store -------------------------------------------------------------------------------------


def check_store(config: Config) -> list[Finding]:
    path = config.store.path
    directory = path.parent
    if not directory.exists():
        return [Finding("store", FAIL, f"directory {directory} does not exist",
                        f"create it: mkdir -p {directory} (the installer makes /var/lib/smsgw)")]
    if not os.access(directory, os.W_OK | os.X_OK):
        return [Finding("store", FAIL, f"directory {directory} is not writable by this user",
                        "run as the smsgw user or fix the owner: chown smsgw: " + str(directory))]
    if not path.exists():
        return [Finding("store", WARN, f"{path} does not exist yet", "it is created on the first `smsgw run` or `smsgw send`")]
    from appliance.store import check_file

    findings: list[Finding] = []
    try:
        checked = check_file(path)
    except sqlite3.Error as exc:
        return [Finding("store", FAIL, f"{path} cannot be read: {exc}",
                        "check the file's owner; a corrupt file can be moved aside (the daemon starts a new one)")]
    version, mode, integrity, depth = checked.schema_version, checked.journal_mode, checked.integrity, checked.queue
    if integrity != "ok":
        findings.append(Finding("store", FAIL, f"{path} fails PRAGMA quick_check: {integrity}",
                                "stop the daemon, copy the file, then try `sqlite3 FILE .recover`"))
    else:
        findings.append(Finding("store", OK, f"{path}: schema version {version}, journal {mode}, integrity ok",
                                data={"schema_version": version, "journal_mode": mode, "queue": depth}))
    if mode.lower() != "wal":
        findings.append(Finding("store", WARN, f"journal mode is {mode}, not WAL", "the daemon switches it on start"))
    stuck = depth.get("queued", 0) + depth.get("sending", 0)
    if stuck:
        findings.append(Finding("store", WARN if stuck > 100 else OK, f"{stuck} message(s) waiting to be sent",
                                "`smsgw outbox` lists them; `smsgw status` shows the last errors", data=depth))
    return findings


# --- daemon ------------------------------------------------------------------------------------


def judge_daemon(view: dict[str, Any]) -> Finding:
    """Whether ``smsgw run`` holds the store now (its lock), and when it last wrote its state."""
    from appliance.commands._common import iso
    from appliance.liveness import HEARTBEAT_INTERVAL

    age = view.get("heartbeat_age")
    wrote = f"last wrote its state {age:.0f} s ago ({iso(view.get('last_heartbeat'))})" if age is not None else \
        "has written no state"
    if view["running"]:
        if age is not None and age > 3 * HEARTBEAT_INTERVAL:
            return Finding("daemon", WARN, f"smsgw run (pid {view.get('pid')}) holds the store but {wrote}",
                           "is it stuck? journalctl -u smsgw; systemd's watchdog restarts a wedged daemon", view)
        return Finding("daemon", OK, f"smsgw run (pid {view.get('pid')}) holds the store; {wrote}", data=view)
    if view["verdict"] == "never ran":
        return Finding("daemon", WARN, "no daemon holds the store (none has run yet)",
                       "start it: systemctl start smsgw", view)
    if view["verdict"] == "stopped cleanly":
        return Finding("daemon", WARN, f"no daemon holds the store; the last one stopped cleanly at "
                       f"{iso(view.get('stopped_at'))}", "start it: systemctl start smsgw", view)
    return Finding("daemon", FAIL, f"no daemon holds the store: the last one (pid {view.get('last_pid')}) died "
                   f"without stopping; it {wrote}. Its modem and MQTT states are stale",
                   "see why: journalctl -u smsgw; then systemctl restart smsgw", view)


# --- modems ------------------------------------------------------------------------------------


def locate_port(modem: ModemConfig, config: Config) -> tuple[list[Finding], str | None]:
    """``port = "auto"``: the port whose modem has the configured IMEI/ICCID, as the daemon finds it.

    A port held by another process is not probed; one held by ``smsgw run`` is named from the
    daemon's last recorded state.
    """
    from drivers.locate import candidate_ports, find_port

    area = f"modem {modem.id}"
    wanted = f"IMEI {modem.imei}" if modem.imei else f"ICCID {modem.iccid}"
    globs = config.modems_auto.globs
    ports = candidate_ports(globs)
    held = {port for port in ports if users(port)}
    port = asyncio.run(find_port(globs, imei=modem.imei, iccid=modem.iccid, skip=held.__contains__))
    if port is not None:
        return [Finding(area, OK, f"port auto: the modem with {wanted} is on {port}")], port
    hint = f"looked at {', '.join(ports) or 'nothing'} ({', '.join(globs)}); `smsgw detect` lists attached modems"
    if held:
        hint += f"; not probed, held by another process: {', '.join(sorted(held))}"
    return [Finding(area, WARN if held else FAIL, f"port auto: no free port has the modem with {wanted}", hint)], None


def check_port(modem: ModemConfig, port: str | None = None) -> tuple[list[Finding], bool]:
    """Findings about the port itself, and whether it may be opened now."""
    area = f"modem {modem.id}"
    if port is not None and port != modem.port:
        modem = replace(modem, port=port)
    if modem.port.startswith("socket://"):
        hostport = modem.port[len("socket://"):]
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
                pass
        except (OSError, ValueError) as exc:
            return [Finding(area, FAIL, f"{modem.port}: cannot connect: {exc}", "is ser2net running on that host?")], False
        return [Finding(area, OK, f"{modem.port}: reachable")], True
    if not os.path.exists(modem.port):
        hint = "run `smsgw detect` to list attached modems"
        if "/dev/serial/by-id" in modem.port or "/dev/gsm" in modem.port:
            hint += "; check the USB cable and power (a modem drawing too much resets the Pi's USB)"
        return [Finding(area, FAIL, f"port {modem.port} does not exist", hint)], False
    if not os.access(modem.port, os.R_OK | os.W_OK):
        groups = {grp.getgrgid(g).gr_name for g in os.getgroups()}
        hint = "add the user to the dialout group: usermod -aG dialout $USER (then log in again)"
        if "dialout" in groups:
            hint = "check the device's mode and owner (ls -l " + modem.port + ")"
        return [Finding(area, FAIL, f"port {modem.port} is not readable and writable by this user", hint)], False
    # The simulator keeps its own pty slave ends open (clients reopen ports); it is the modem, not a user.
    found = users(modem.port)
    data = {"pids": [h.pid for h in found], "holders": [asdict(h) for h in found]}
    manager = [h for h in found if h.kind == MODEM_MANAGER]
    if manager:
        return [Finding(area, FAIL, f"port {modem.port} is held by ModemManager (pid "
                        f"{', '.join(str(h.pid) for h in manager)}): smsgw cannot use the modem",
                        MODEM_MANAGER_FIX, data=data)], False
    others = [h for h in found if h.kind != SMSGW]
    if others:
        who = ", ".join(str(h) for h in others)
        return [Finding(area, OK, f"port {modem.port} is in use by process {who}",
                        "not opened: two programs on one AT port garble each other's replies (--force opens it)",
                        data=data)], False
    if found:
        return [Finding(area, OK, f"port {modem.port}: ok, in use by smsgw (pid "
                        f"{', '.join(str(h.pid) for h in found)})",
                        "not opened: the daemon's last recorded state follows", data=data)], False
    return [Finding(area, OK, f"port {modem.port} is present and free")], True


def judge_sim(modem: ModemConfig, sim: SimStatus, state_dir: Path) -> Finding:
    """The SIM's state as the daemon will meet it; doctor itself never enters a PIN."""
    from drivers.modem import MIN_PIN_ATTEMPTS

    area = f"modem {modem.id}"
    data = {"state": sim.state, "pin_attempts": sim.pin_attempts}
    text = f"SIM: {sim}"
    if sim.state == "READY":
        if sim.pin_lock and modem.pin is None:
            return Finding(area, WARN, text + "; no [[modems]].pin: after a modem restart nobody can unlock it",
                           "set [[modems]].pin", data | {"pin_lock": True})
        return Finding(area, OK, text, data=data)
    if sim.state == "SIM PUK":
        return Finding(area, FAIL, text, "smsgw never enters a PUK: unlock the SIM in a phone", data)
    if sim.state != "SIM PIN":
        return Finding(area, FAIL, text, "smsgw enters only a SIM PIN: unlock the SIM in a phone", data)
    if modem.pin is None:
        return Finding(area, FAIL, text, "set [[modems]].pin (smsgw setup asks for it and checks it once)", data)
    if sim.pin_attempts is not None and sim.pin_attempts < MIN_PIN_ATTEMPTS:
        return Finding(area, FAIL, text, f"the daemon enters a PIN only with at least {MIN_PIN_ATTEMPTS} attempts "
                       "left: unlock the SIM in a phone", data)
    if _pin_rejected_before(modem, state_dir):
        return Finding(area, FAIL, text + "; the configured PIN was rejected before and is not entered again",
                       f"fix [[modems]].pin, then `smsgw pin clear {modem.id}`", data)
    return Finding(area, WARN, text + "; the daemon enters the configured PIN when it starts (doctor does not)",
                   "`smsgw setup` checks a PIN once; a wrong one costs one of the attempts", data)


def _pin_rejected_before(modem: ModemConfig, state_dir: Path) -> bool:
    from drivers.modem import PinRejections

    assert modem.pin is not None
    return PinRejections(state_dir).was_rejected(modem.pin, modem_id=modem.id, port=modem.port)


async def probe_modem(modem: ModemConfig, timeout: float, state_dir: Path) -> list[Finding]:
    """Ask the modem who it is and how its SIM is, read-only; when the SIM is ready, open it as the
    daemon would (with no PIN to enter) and read signal, registration, operator, SMSC and storage.

    Doctor enters no PIN, ever, and writes nothing: not even the PIN rejection file."""
    from drivers.errors import ModemError
    from drivers.modem import Modem, inspect_port

    area = f"modem {modem.id}"
    try:
        inspection = await asyncio.wait_for(inspect_port(modem.port, timeout=timeout, baudrate=modem.baudrate),
                                            timeout * 8)
    except (ModemError, TimeoutError, OSError) as exc:
        return [Finding(area, FAIL, f"{modem.port}: {exc or 'no answer'}",
                        "is it a modem's AT port? (`smsgw detect`; Huawei and Quectel sticks expose several ports)")]
    ident = inspection.identity
    findings = [Finding(area, OK, f"{ident.manufacturer} {ident.model} (profile {inspection.profile}), IMEI "
                        f"{ident.imei or '?'}, ICCID {ident.iccid or '?'}", data=asdict(ident))]
    for key, value, found in (("imei", modem.imei, ident.imei), ("iccid", modem.iccid, ident.iccid)):
        if value is not None and found != value:
            findings.append(Finding(area, FAIL, f"{key} {found or '(none read)'} is not the configured {value}",
                                    "the daemon does not use this modem: another modem or SIM is on this port"))
    assert inspection.sim is not None
    findings.append(judge_sim(modem, inspection.sim, state_dir))
    if inspection.sim.state != "READY":
        findings.append(Finding(area, WARN, "signal, registration and SMS checks skipped: the SIM is locked"))
        return findings
    timeouts = {"command": timeout, "send": timeout, "cmgl": timeout, "sync": min(timeout, 1.0), "boot": timeout}
    device = Modem(modem.port, profile=modem.profile, pin=None, modem_id=modem.id, baudrate=modem.baudrate,
                   timeouts=timeouts)
    try:
        await asyncio.wait_for(device.open(), timeout * 6)
    except (ModemError, TimeoutError, OSError) as exc:
        return [*findings, Finding(area, FAIL, f"{modem.port}: {exc}", "`smsgw at PORT` to look at the modem")]
    try:
        checks: list[tuple[str, Any]] = [
            ("signal", device.signal), ("registration", device.registration), ("operator", device.operator),
            ("smsc", device.smsc), ("storage", device.storage_status),
        ]
        for name, query in checks:
            try:
                value = await asyncio.wait_for(query(), timeout * 2)
            except (ModemError, TimeoutError) as exc:
                findings.append(Finding(area, WARN, f"{name}: no answer ({exc})"))
                continue
            findings.append(_judge(area, name, value))
    finally:
        await device.close()
    return findings


def _recorded_sim(state: dict[str, Any]) -> str:
    if not state.get("sim"):
        return ""
    from drivers.modem import SimStatus

    return f", SIM: {SimStatus(str(state['sim']), state.get('pin_attempts'))}"


def _judge(area: str, name: str, value: Any) -> Finding:
    data = asdict(value) if hasattr(value, "__dataclass_fields__") else {"value": value}
    if name == "signal":
        if value.rssi is None:
            return Finding(area, WARN, "signal: none measured", "check the antenna", data)
        status = WARN if value.rssi < 8 else OK
        return Finding(area, status, f"signal: {value.dbm} dBm (CSQ {value.rssi})",
                       "weak: move the antenna or use an external one" if status == WARN else "", data)
    if name == "registration":
        if value.registered:
            return Finding(area, OK, f"registration: {value.state} ({value.source})", data=data)
        return Finding(area, FAIL, f"registration: {value.state} ({value.source})",
                       "check the SIM's subscription, coverage and the antenna", data)
    if name == "operator":
        return Finding(area, OK, f"operator: {value.name or '?'} ({value.numeric or '?'})", data=data)
    if name == "smsc":
        if not value:
            return Finding(area, FAIL, "no SMS service centre set on the SIM", 'set it: smsgw at PORT \'AT+CSCA="+..."\'', data)
        return Finding(area, OK, f"SMS service centre: {value}", data=data)
    used, total = value.used, value.total
    status = WARN if total and used >= total else OK
    return Finding(area, status, f"SMS storage {value.storage or '?'}: {used}/{total} used",
                   "full: the daemon reads and clears it on start" if status == WARN else "", data)


# --- MQTT --------------------------------------------------------------------------------------


def check_mqtt(mqtt: MqttConfig, timeout: float) -> list[Finding]:
    from appliance.broker_check import check_broker

    result = check_broker(mqtt, timeout, client_id=f"smsgw-doctor-{os.getpid()}")
    return [Finding("mqtt", OK if result.ok else FAIL, result.message, result.hint)]


# --- main --------------------------------------------------------------------------------------


def run_checks(config: Config, args: argparse.Namespace) -> list[Finding]:
    findings = [Finding("config", OK, f"{config.path}: {len(config.modems)} modem(s), "
                        f"MQTT {'on' if config.mqtt else 'off'}")]
    findings += check_store(config)
    last_state: dict[str, Any] = {}
    if config.store.path.exists():
        try:
            from appliance.liveness import daemon_view
            from appliance.store import Store

            store = Store(config.store.path, migrate_in_child=True)
            try:
                last_state = {m.id: store.state_get("modem", m.id) for m in config.modems}
                findings.append(judge_daemon(daemon_view(store, config.store.path)))
            finally:
                store.close()
        except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
            findings.append(Finding("store", WARN, f"reading modem state failed: {exc}"))
    for modem in config.modems:
        port: str | None = modem.port
        recorded = last_state.get(modem.id) or {}
        if modem.auto:
            port = recorded.get("port") if recorded.get("port") not in (None, "auto") else None
            if port is None or not users(port):
                if args.no_modems:
                    continue
                auto_findings, port = locate_port(modem, config)
                findings += auto_findings
        if port is None:
            continue
        port_findings, free = check_port(modem, port)
        findings += port_findings
        if not free and recorded:
            findings.append(Finding(f"modem {modem.id}", OK, f"last state recorded by the daemon: "
                                    f"{recorded.get('state', '?')}{_recorded_sim(recorded)}", data=recorded))
        if args.no_modems or not (free or (args.force and os.path.exists(port))):
            continue
        findings += asyncio.run(probe_modem(replace(modem, port=port), args.timeout, config.store.path.parent))
    if config.mqtt is not None:
        findings += check_mqtt(config.mqtt, args.timeout)
    return findings


def main(args: argparse.Namespace) -> int:
    path = args.config or default_config_path()
    started = time.monotonic()
    try:
        config = load_config(path)
    except ConfigError as exc:
        finding = Finding("config", FAIL, str(exc), "fix the file; `smsgw config check FILE` re-checks it")
        _print([finding], args.json)
        return 2
    findings = run_checks(config, args)
    _print(findings, args.json, time.monotonic() - started)
    return 1 if any(f.status == FAIL for f in findings) else 0


def _print(findings: list[Finding], as_json: bool, elapsed: float | None = None) -> None:
    if as_json:
        print(json.dumps({"ok": not any(f.status == FAIL for f in findings),
                          "findings": [asdict(f) for f in findings]}, indent=2, default=str))
        return
    marks = {OK: "  ok ", WARN: " warn", FAIL: " FAIL"}
    for finding in findings:
        print(f"{marks[finding.status]}  {finding.area:<12} {finding.message}")
        if finding.hint and finding.status != OK:
            print(f"{'':19}-> {finding.hint}")
        elif finding.hint:
            print(f"{'':19}({finding.hint})")
    failed = sum(f.status == FAIL for f in findings)
    warned = sum(f.status == WARN for f in findings)
    summary = f"{failed} failed, {warned} warning(s)"
    if elapsed is not None:
        summary += f" in {elapsed:.1f}s"
    print(summary)
