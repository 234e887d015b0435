"""`smsgw simulate`: simulated modems on ptys, and the inject/fault forms that steer them.

``smsgw simulate --dir DIR [--modems N] [--profile NAME] [--send-delay SECONDS] [--pin PIN]
[--report-status TP-ST]`` runs in the foreground until SIGINT/SIGTERM and prints one line when ready.
While it runs, ``smsgw simulate inject --dir DIR --modem K --from NUMBER --text TEXT [--parts 3,1]`` and
``smsgw simulate fault --dir DIR --modem K KIND``, ``smsgw simulate call --dir DIR --from NUMBER
[--modem K] [--rings R]`` (``--withheld`` instead of ``--from``: a caller who withholds the number) and
``smsgw simulate end-call --dir DIR [--modem K]`` (the caller hangs up) talk to it over
``DIR/control.sock`` and print its JSON reply.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from appliance.commands._types import at_least
from drivers.profiles import ProfileError, profile_names
from drivers.simulator import FAULTS, Simulator
from drivers.simulator.control import SOCKET_NAME, request

NAME = "simulate"
HELP = "run simulated GSM modems on ptys (for tests and trying clients), or inject SMS and faults into them"


_positive_int = at_least(int, 1, "number of modems")
_seconds = at_least(float, 0.0, "seconds")
_index = at_least(int, 0, "modem index")
_rings = at_least(int, 1, "number of rings")


def _part_list(text: str) -> list[int]:
    """``3,1``: the parts to deliver, in this order."""
    try:
        parts = [int(piece) for piece in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--parts takes part numbers separated by commas, as in 3,1, not {text!r}") from None
    if not parts or any(n < 1 for n in parts):
        raise argparse.ArgumentTypeError(f"part numbers start at 1, not {text!r}")
    return parts


def _tp_status(text: str) -> int:
    if not text.isdigit() or int(text) > 255:
        raise argparse.ArgumentTypeError(f"--report-status takes a TP-Status 0-255 (65: failed), not {text!r}")
    return int(text)


def _is_number(text: str) -> bool:
    digits = text[1:] if text.startswith("+") else text
    return digits.isdigit() and 3 <= len(digits) <= 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, metavar="DIR",
                        help="directory for the modem symlinks, network.jsonl and control.sock")
    parser.add_argument("--modems", type=_positive_int, default=1, metavar="N", help="number of modems (default 1)")
    parser.add_argument("--profile", default="generic", metavar="NAME",
                        help=f"modem profile to mimic: {', '.join(profile_names())} (default generic)")
    parser.add_argument("--send-delay", type=_seconds, default=0.0, metavar="SECONDS",
                        help="delay before each +CMGS answer (default 0)")
    parser.add_argument("--pin", metavar="PIN",
                        help="the SIMs want this PIN (AT+CPIN) before they work (default: no PIN)")
    parser.add_argument("--replay", type=Path, metavar="TRANSCRIPT.json",
                        help="one modem (DIR/modem0) answering from a recorded transcript (docs/modems.md)")
    parser.add_argument("--report-status", type=_tp_status, default=0, metavar="TP-ST",
                        help="TP-Status of every status report (3GPP TS 23.040 9.2.3.15; default 0 delivered, "
                             "65 a permanent failure)")
    sub = parser.add_subparsers(dest="simulate_action", metavar="ACTION")
    inject = sub.add_parser("inject", help="deliver an incoming SMS to a simulated modem",
                            description="deliver an incoming SMS to a simulated modem (long text: several parts)")
    fault = sub.add_parser("fault", help="inject a fault into a simulated modem",
                           description=f"inject a fault into a simulated modem; KIND: {', '.join(FAULTS)}")
    for action in (inject, fault):
        action.add_argument("--dir", type=Path, metavar="DIR", default=argparse.SUPPRESS,
                            help="the directory the simulator runs in")
        action.add_argument("--modem", type=_index, required=True, metavar="K", help="modem index (0 ...)")
    inject.add_argument("--from", dest="sender", required=True, metavar="NUMBER", help="originator")
    inject.add_argument("--text", required=True, metavar="TEXT", help="message text")
    inject.add_argument("--parts", type=_part_list, metavar="N,N",
                        help="deliver only these parts of a multipart message, in this order (3,1: part 3, "
                             "then part 1; part 2 is lost)")
    fault.add_argument("kind", metavar="KIND", help=", ".join(FAULTS))
    call = sub.add_parser("call", help="call a simulated modem (it rings with the caller's number)",
                          description="call a simulated modem: RING / +CRING with +CLIP every ring until the "
                                      "gateway hangs up or the rings run out (then NO CARRIER)")
    end_call = sub.add_parser("end-call", help="the caller hangs up the call ringing on a simulated modem",
                              description="the caller hangs up: the modem reports NO CARRIER")
    for action in (call, end_call):
        action.add_argument("--dir", type=Path, metavar="DIR", default=argparse.SUPPRESS,
                            help="the directory the simulator runs in")
        action.add_argument("--modem", type=_index, default=0, metavar="K", help="modem index (default 0)")
    caller = call.add_mutually_exclusive_group(required=True)
    caller.add_argument("--from", dest="caller", metavar="NUMBER", help="the caller's number (+4915112345678)")
    caller.add_argument("--withheld", action="store_true", help="the caller withholds the number")
    call.add_argument("--rings", type=_rings, metavar="R", help="rings before the caller gives up (default 6)")


def _fail(message: str) -> int:
    print(f"smsgw simulate: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    directory: Path | None = getattr(args, "dir", None)
    if directory is None:
        return _fail("--dir DIR is required")
    action = getattr(args, "simulate_action", None)
    if action is None:
        if args.pin is not None and not (args.pin.isdigit() and 4 <= len(args.pin) <= 8):
            return _fail(f"--pin must be 4 to 8 digits, not {args.pin!r}")
        if args.replay is not None:
            from appliance.commands._replay import run_replay

            if args.modems != 1 or args.profile != "generic" or args.send_delay or args.pin is not None:
                return _fail("--replay serves the one recorded modem: it takes no --modems, --profile, "
                             "--send-delay or --pin")

            return run_replay(directory, args.replay)
        return _run(directory, args.modems, args.profile, args.send_delay, args.pin, args.report_status)
    message: dict[str, Any]
    if action == "inject":
        message = {"action": "inject", "modem": args.modem, "from": args.sender, "text": args.text}
        if args.parts is not None:
            message["parts"] = args.parts
    elif action == "call":
        if args.caller is not None and not _is_number(args.caller):
            return _fail(f"--from takes a phone number such as +4915112345678, not {args.caller!r}")
        message = {"action": "call", "modem": args.modem, "from": args.caller}
        if args.rings is not None:
            message["rings"] = args.rings
    elif action == "end-call":
        message = {"action": "end-call", "modem": args.modem}
    else:
        message = {"action": "fault", "modem": args.modem, "kind": args.kind}
    try:
        reply = request(directory, message)
    except (FileNotFoundError, ConnectionRefusedError):
        return _fail(f"no simulator is running in {directory} (nothing listens on {directory / SOCKET_NAME})")
    except (OSError, ValueError) as exc:
        return _fail(f"talking to the simulator in {directory} failed: {exc}")
    print(json.dumps(reply, ensure_ascii=False))
    if not reply.get("ok"):
        return _fail(str(reply.get("error", "the simulator refused the request")))
    return 0


def _run(directory: Path, modems: int, profile: str, send_delay: float, pin: str | None,
         report_status: int = 0) -> int:
    if profile not in profile_names():
        return _fail(f"unknown profile {profile!r}; known: {', '.join(profile_names())}")
    try:
        request(directory, {"action": "status"}, timeout=1.0)
    except (OSError, ValueError):
        pass
    else:
        return _fail(f"a simulator is already running in {directory}")
    try:
        return asyncio.run(_serve(directory, modems, profile, send_delay, pin, report_status))
    except (ProfileError, OSError) as exc:
        return _fail(str(exc))


async def _serve(directory: Path, modems: int, profile: str, send_delay: float, pin: str | None,
                 report_status: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    simulator = Simulator(directory, modems=modems, profile=profile, send_delay=send_delay, pin=pin,
                          report_status=report_status)
    await simulator.start()
    try:
        print(simulator.ready_line(), flush=True)
        await stop.wait()
    finally:
        await simulator.stop()
    return 0
