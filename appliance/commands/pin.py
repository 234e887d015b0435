"""`smsgw pin list|clear`: the SIM PINs the modems rejected, and letting a fixed PIN be tried again.

When a SIM rejects the configured PIN, smsgw records it (a salted hash, never the PIN) in
``pin-rejections.json`` next to the store, keyed by the SIM's ICCID (or the port when the ICCID
cannot be read with the SIM locked), and never enters that PIN again: three wrong PINs lock the SIM
behind its PUK. After fixing ``[[modems]].pin``, ``smsgw pin clear MODEM_ID`` lets the daemon try
once more (a different PIN is tried once even without clearing). A SIM seen READY, e.g. after
being unlocked in a phone, clears its record by itself.

``smsgw pin list`` also shows each configured modem's SIM state and PIN attempts left: asked of
the modem (read-only, no PIN entered) when its port is free, else the state the daemon recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
from typing import TYPE_CHECKING, Any

from appliance.commands._common import EXIT_OK, EXIT_USAGE, add_config_argument, add_json_argument, fail, load

if TYPE_CHECKING:
    from appliance.config import Config

NAME = "pin"
HELP = ("list the SIMs' state and PIN attempts left and the PINs a modem rejected, or clear those "
        "(smsgw never enters a rejected PIN again)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="show the recorded PIN rejections")
    add_config_argument(listing)
    add_json_argument(listing)
    clear = sub.add_parser("clear", help="forget the PIN rejections of one modem (or all): the PIN may be tried again",
                           description="Forget the recorded PIN rejections of MODEM_ID (all modems when omitted), "
                                       "so that the daemon enters the configured PIN again. Fix [[modems]].pin "
                                       "first: a SIM locks itself after three wrong PINs.")
    add_config_argument(clear)
    clear.add_argument("modem_id", nargs="?", metavar="MODEM_ID", help="the modem's id in the configuration")


def _matches(entry: dict[str, Any], key: str, modem_id: str, port: str) -> bool:
    if entry.get("modem_id") == modem_id:
        return True
    real = os.path.realpath(port)
    return key == f"port:{real}" or (isinstance(entry.get("port"), str) and os.path.realpath(entry["port"]) == real)


def sim_states(config: Config) -> dict[str, dict[str, Any]]:
    """Modem id -> {"port", "sim", "pin_attempts", "source"} (or "error"), without entering a PIN."""
    import asyncio

    from appliance.port_holders import users
    from drivers.errors import ModemError
    from drivers.modem import inspect_port

    recorded: dict[str, Any] = {}
    if config.store.path.exists():
        from appliance.store import Store

        with contextlib.suppress(Exception), Store(config.store.path, migrate_in_child=True) as store:
            recorded = {m.id: store.state_get("modem", m.id) or {} for m in config.modems}
    states: dict[str, dict[str, Any]] = {}
    for modem in config.modems:
        last = recorded.get(modem.id) or {}
        port = last.get("port") if modem.auto else modem.port
        if modem.auto and (not port or port == "auto" or not users(port)):
            from drivers.locate import find_port

            port = asyncio.run(find_port(config.modems_auto.globs, imei=modem.imei, iccid=modem.iccid,
                                         skip=lambda p: bool(users(p))))
        if not port or port == "auto" or "://" in port or not os.path.exists(port):
            states[modem.id] = {"port": port or modem.port, "error": "port not found"}
            continue
        if users(port):
            states[modem.id] = {"port": port, "sim": last.get("sim"), "pin_attempts": last.get("pin_attempts"),
                                "source": "recorded by the daemon (port in use)"}
            continue
        try:
            found = asyncio.run(asyncio.wait_for(inspect_port(port, baudrate=modem.baudrate), 10))
        except (ModemError, OSError, TimeoutError) as exc:
            states[modem.id] = {"port": port, "error": str(exc) or "no answer"}
            continue
        assert found.sim is not None
        states[modem.id] = {"port": port, "sim": found.sim.state, "pin_attempts": found.sim.pin_attempts,
                            "iccid": found.identity.iccid, "source": "asked the modem"}
    return states


def _describe(state: dict[str, Any]) -> str:
    from drivers.modem import SimStatus

    if "error" in state:
        return f"SIM state unknown: {state['error']}"
    if not state.get("sim"):
        return f"SIM state unknown ({state['source']})"
    return f"SIM: {SimStatus(state['sim'], state.get('pin_attempts'))} ({state['source']})"


def main(args: argparse.Namespace) -> int:
    from drivers.errors import PinError
    from drivers.modem import PinRejections

    command = f"pin {args.action}"
    config = load(args, command)
    if isinstance(config, int):
        return config
    guard = PinRejections(config.store.path.parent)
    try:
        if args.action == "list":
            entries = guard.entries()
            sims = sim_states(config)
            if args.json:
                shown = {key: {k: v for k, v in entry.items() if k != "hashes"} | {"pins": len(entry["hashes"])}
                         for key, entry in entries.items()}
                print(json.dumps({"file": str(guard.path), "rejections": shown, "sims": sims}, indent=2))
                return EXIT_OK
            for modem_id, state in sims.items():
                print(f"{modem_id}: {state['port']}: {_describe(state)}")
            if not entries:
                print(f"no PIN rejections recorded ({guard.path})")
            else:
                for key, entry in sorted(entries.items()):
                    print(f"{entry.get('modem_id', '?')}: {key}: {len(entry['hashes'])} rejected PIN(s), last "
                          f"{entry.get('rejected_at', '?')} ({entry.get('reason', '')})")
            return EXIT_OK
        if args.modem_id is None:
            dropped = guard.forget()
        else:
            known = [m.id for m in config.modems]
            if args.modem_id not in known:
                return fail(command, f"no modem {args.modem_id!r} in {config.path} (known: {', '.join(known) or 'none'})",
                            EXIT_USAGE)
            port = config.modem(args.modem_id).port
            entries = guard.entries()
            dropped = guard.forget([k for k, e in entries.items() if _matches(e, k, args.modem_id, port)])
    except PinError as exc:
        return fail(command, str(exc))
    if dropped:
        print(f"cleared {len(dropped)} PIN rejection record(s) ({args.modem_id or 'all modems'}): the configured "
              "PIN is tried once when the daemon next starts (systemctl restart smsgw)")
    else:
        print(f"no PIN rejections recorded for {args.modem_id or 'any modem'}")
    return EXIT_OK
