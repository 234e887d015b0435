"""`smsgw ussd CODE [REPLY ...] [--modem ID] [--config FILE] [--json]`: a USSD request.

While the daemon runs it owns the modems: the request goes over its control socket
(``<store>.sock``) and queues on the modem's AT engine. With no daemon the modem's port (from the
config) is opened directly. ``REPLY`` arguments answer the network's follow-up questions in order
(``smsgw ussd '*101#' 2 1``: open the menu, choose 2, then 1); a session still open after the last
reply is cancelled. Prints each answer; exit 0 on an answer, 1 when the network or the modem
failed (timeout, +CUSD: 2/4/5, modem not ready), 2 for a bad code or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from appliance.commands._common import add_config_argument, load

NAME = "ussd"
HELP = "send a USSD code (e.g. *100#) and print the network's answer; through the daemon while it runs"

#: Extra seconds the CLI waits for the daemon beyond the USSD timeout.
SOCKET_GRACE = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("code", metavar="CODE", help="the USSD code, e.g. '*100#' (quote it: # starts a shell comment)")
    parser.add_argument("replies", metavar="REPLY", nargs="*",
                        help="answers to the network's follow-up questions, in order")
    parser.add_argument("--modem", metavar="ID", default=None, help="the modem (default: the first ready one)")
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print each answer as one JSON line")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="seconds to wait for each network answer (default 30)")


class _Failed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _print(answer: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(answer, ensure_ascii=False), flush=True)
        return
    print(answer.get("text") or "", flush=True)
    if answer.get("session_open"):
        print(f"[the network waits for an answer; session {answer.get('session')}]", flush=True)


def main(args: argparse.Namespace) -> int:
    cfg = load(args, NAME)
    if isinstance(cfg, int):
        return cfg
    from appliance.control import ControlClient, NoDaemon, socket_path

    requests: list[dict[str, Any]] = [{"op": "ussd", "code": args.code, "timeout": args.timeout}]
    if args.modem is not None:
        requests[0]["modem"] = args.modem
    try:
        client = ControlClient(socket_path(cfg.store.path))
    except NoDaemon:
        client = None
    except PermissionError as exc:
        print(f"smsgw ussd: {exc}", file=sys.stderr)
        return 1
    try:
        if client is not None:
            with client:
                return _through_daemon(client, requests[0], args)
        return asyncio.run(_direct(cfg, args))
    except _Failed as exc:
        print(f"smsgw ussd: {exc}", file=sys.stderr)
        return 2 if exc.kind in ("bad_request", "unknown_modem") else 1


def _through_daemon(client: Any, first: dict[str, Any], args: argparse.Namespace) -> int:
    wait = args.timeout + SOCKET_GRACE
    request: dict[str, Any] = first
    replies = list(args.replies)
    while True:
        try:
            answer = client.request(request, wait)
        except (OSError, TimeoutError, ValueError) as exc:
            raise _Failed("daemon", f"the daemon's control socket: {exc}") from None
        if not answer.get("ok"):
            error = answer.get("error") or {}
            raise _Failed(str(error.get("kind")), str(error.get("message")))
        data = answer["data"]
        _print(data, args.json)
        if not data.get("session_open"):
            return 0
        if not replies:
            client.request({"op": "ussd", "session": data["session"], "cancel": True}, wait)
            print("[no more replies given: session cancelled]", file=sys.stderr)
            return 0
        request = {"op": "ussd", "session": data["session"], "reply": replies.pop(0), "timeout": args.timeout}


async def _direct(cfg: Any, args: argparse.Namespace) -> int:
    """No daemon: open the modem's port as the daemon would, run the request, close."""
    from drivers.errors import AtTimeout, ModemError
    from drivers.modem import Modem, UssdError

    modems = {m.id: m for m in cfg.modems}
    if not modems:
        raise _Failed("unknown_modem", f"no [[modems]] in {cfg.path}")
    if args.modem is not None and args.modem not in modems:
        raise _Failed("unknown_modem", f"unknown modem {args.modem!r}; known: {', '.join(modems)}")
    mc = modems[args.modem] if args.modem is not None else next(iter(modems.values()))
    if mc.auto:
        raise _Failed("unknown_modem", f"modem {mc.id} has port = \"auto\" and no daemon runs to find it; "
                      "start the daemon, or set its port")
    modem = Modem(mc.port, profile=mc.profile, pin=mc.pin, modem_id=mc.id, baudrate=mc.baudrate,
                  state_dir=cfg.store.path.parent)
    try:
        await asyncio.wait_for(modem.open(), 60)
    except (ModemError, TimeoutError, OSError) as exc:
        raise _Failed("modem", f"{mc.id} ({mc.port}): {exc or 'no answer'}") from None
    try:
        replies = list(args.replies)
        text, reply = args.code, False
        while True:
            try:
                answer = await modem.ussd(text, timeout=args.timeout, reply=reply)
            except ValueError as exc:
                raise _Failed("bad_request", str(exc)) from None
            except (UssdError, AtTimeout, ModemError) as exc:
                raise _Failed("network", str(exc)) from None
            _print({"modem": mc.id, "code": args.code, "text": answer.text, "network_status": answer.status,
                    "dcs": answer.dcs, "session_open": answer.session_open, "session": None}, args.json)
            if not answer.session_open:
                return 0
            if not replies:
                await modem.ussd_cancel()
                print("[no more replies given: session cancelled]", file=sys.stderr)
                return 0
            text, reply = replies.pop(0), True
    finally:
        await modem.close()
