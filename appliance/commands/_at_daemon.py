"""`smsgw at` while the daemon runs: each command goes over the daemon's control socket."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

from appliance.config import ConfigError, default_config_path, load_config

_WANTS_PAYLOAD = re.compile(r"AT\+CMG[SW]=", re.IGNORECASE)
#: Extra seconds the CLI waits for the daemon beyond the command's own timeout (it may queue).
SOCKET_GRACE = 30.0


def _same_port(a: str, b: str) -> bool:
    return a == b or (not a.startswith("socket://") and os.path.realpath(a) == os.path.realpath(b))


def route(args: argparse.Namespace) -> int | str:
    """Run the commands through the daemon (an exit status), or the port to open directly."""
    explicit = args.config or os.environ.get("SMSGW_CONFIG")
    try:
        cfg = load_config(explicit or default_config_path())
    except ConfigError as exc:
        if args.modem is not None or explicit:
            print(f"smsgw at: {exc}", file=sys.stderr)
            return 2
        cfg = None  # a bare PORT without a config: the console as it always was
    if cfg is None:
        if args.port is None:
            print("smsgw at: give a PORT or --modem ID", file=sys.stderr)
            return 2
        return str(args.port)
    if args.modem is not None:
        modem = next((m for m in cfg.modems if m.id == args.modem), None)
        if modem is None:
            print(f"smsgw at: unknown modem {args.modem!r}; known: {', '.join(m.id for m in cfg.modems)}",
                  file=sys.stderr)
            return 2
    elif args.port is not None:
        modem = next((m for m in cfg.modems if _same_port(m.port, args.port)), None)
        if modem is None:
            return str(args.port)  # not a configured modem's port: the daemon does not hold it
    else:
        print("smsgw at: give a PORT or --modem ID", file=sys.stderr)
        return 2
    from appliance.control import ControlClient, NoDaemon, socket_path

    try:
        client = ControlClient(socket_path(cfg.store.path))
    except NoDaemon:
        if modem.auto:
            print(f"smsgw at: modem {modem.id} has port = \"auto\" and no daemon runs to find it: give its PORT "
                  "(`smsgw detect` lists the modems attached)", file=sys.stderr)
            return 2
        return modem.port
    except PermissionError as exc:
        print(f"smsgw at: {exc}", file=sys.stderr)
        return 1
    with client:
        commands: Iterator[str] = iter(args.commands) if args.commands else (line for line in sys.stdin)
        return _run(client, modem.id, commands, args.timeout)


def _run(client: Any, modem_id: str, commands: Iterator[str], timeout: float) -> int:
    from appliance.commands.at import normalise

    failed = False
    for raw in commands:
        if not raw.strip():
            continue
        command = normalise(raw)
        request: dict[str, Any] = {"op": "at", "modem": modem_id, "command": command, "timeout": timeout}
        if _WANTS_PAYLOAD.match(command):
            payload = next(commands, None)
            if payload is None:
                return 1
            request["payload"] = payload.strip()
        try:
            answer = client.request(request, timeout + SOCKET_GRACE)
        except (OSError, TimeoutError, ValueError) as exc:
            print(f"smsgw at: the daemon's control socket: {exc}", file=sys.stderr)
            return 1
        data = answer.get("data") or {}
        for line in data.get("lines") or []:
            print(line, flush=True)
        if answer.get("ok"):
            print(data.get("final", "OK"), flush=True)
            continue
        failed = True
        error = answer.get("error") or {}
        if error.get("kind") == "modem" and data.get("final"):
            print(data["final"], flush=True)
        else:
            print(f"smsgw at: {command}: {error.get('message')}", file=sys.stderr, flush=True)
            if error.get("kind") in ("bad_request", "unknown_modem"):
                return 2
    return 1 if failed else 0
