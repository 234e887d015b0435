"""`smsgw send [--config FILE] [--priority P] [--report] [--id KEY] [--language CODE] TO TEXT`: queue one SMS.

The message is committed to the store (source ``cli``) and the command returns; the daemon sends it
when it runs. It works while the daemon or the MQTT broker is down. The destination passes the
``[numbers]`` policy, the text must not be empty nor longer than ``[limits].max_parts`` parts, and
``--language`` must be a national language of 3GPP TS 23.038 6.2.1.2 (the parts are counted with its
shift tables, or ``[sms] national_language``'s, as the daemon will encode them), the source ``cli``
must be under its daily cap (``[sources.cli] daily_cap``): anything else is refused
with exit status 2 and nothing is written. The checks and the commit are the send intake's
(``appliance.intake``), the same as for ``B/send``; this module only says them in its options' words.
"""

from __future__ import annotations

import argparse
import sys
import time

from appliance.commands._common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    add_config_argument,
    add_json_argument,
    close_store,
    fail,
    iso,
    load,
    open_store,
    print_json,
)
from appliance.config import ConfigError
from appliance.intake import (
    BadDestination,
    Intake,
    IntakeError,
    IntakePolicy,
    InternalError,
    InvalidField,
    OverDailyCap,
    SendRequest,
    StoreUnavailable,
    TextTooLong,
    parse_send_at,
    prepare,
)
from appliance.store_cli import QueueStore
from appliance.store_types import PRIORITIES
from drivers.gsm7_languages import KNOWN_LANGUAGES

NAME = "send"
SOURCE = "cli"
HELP = "queue an SMS in the store (works while the daemon or the broker is down)"
GC = False  # returns in milliseconds: no cycle collection (appliance.cli.main)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--priority", choices=tuple(PRIORITIES), default="normal",
                        help="queue priority (default: normal); only critical (safety alerts) reaches a number "
                             "that opted out with STOP")
    parser.add_argument("--report", action="store_true", help="request a delivery report")
    parser.add_argument("--id", dest="client_key", metavar="KEY",
                        help="idempotency key: sending again with the same KEY and TO queues nothing new")
    parser.add_argument("--validity", type=float, metavar="SECONDS",
                        help="give up if not sent within SECONDS (default: [limits].validity)")
    parser.add_argument("--language", metavar="CODE",
                        help="national language whose shift tables this SMS may use (ISO 639-1: "
                             f"{KNOWN_LANGUAGES}; default: [sms] national_language)")
    parser.add_argument("--flash", action="store_true",
                        help="a flash SMS (message class 0): shown on the screen at once, not stored")
    parser.add_argument("--at", dest="send_at", metavar="TIME",
                        help="do not send before TIME, ISO 8601 (2026-12-24T07:00:00+01:00; without an offset: "
                             "local time); the message waits in the store")
    add_json_argument(parser)
    parser.add_argument("to", metavar="TO", help="destination: +491701234567, or national with [numbers].default_country")
    parser.add_argument("text", metavar="TEXT", help="message text; '-' reads it from stdin")


def _message(exc: IntakeError, args: argparse.Namespace) -> tuple[str, int]:
    """What ``smsgw send`` says for a refusal of the intake (naming its options), and the exit status."""
    if isinstance(exc, BadDestination):
        return f"invalid {exc}", EXIT_USAGE
    if isinstance(exc, TextTooLong):
        if exc.limit is None:
            return f"the text cannot be sent: {exc.cause}", EXIT_USAGE
        return (f"the text is too long: {exc.characters} characters make {exc.parts} {exc.encoding} parts, "
                f"more than limits.max_parts = {exc.limit}"), EXIT_USAGE
    if isinstance(exc, InvalidField):
        if exc.field == "text":  # bytes that are not UTF-8 in argv or stdin (PEP 383)
            return "the text cannot be sent: text contains a lone surrogate, which UTF-16 cannot carry", EXIT_USAGE
        if exc.field == "language":
            return (f"--language {args.language!r} is not a national language; one of {KNOWN_LANGUAGES}",
                    EXIT_USAGE)
        if exc.field == "valid_for":
            return f"--validity must be greater than 0, not {args.validity:g}", EXIT_USAGE
        if exc.field == "send_at":
            return f"--at: {exc.message.removeprefix(chr(39) + 'send_at' + chr(39) + ' ')}", EXIT_USAGE
    if isinstance(exc, OverDailyCap):
        return f"{exc}; nothing queued", EXIT_USAGE
    if isinstance(exc, StoreUnavailable | InternalError):  # a full disk (StoreFull names the free space)
        return f"could not queue the message: {exc}", EXIT_ERROR
    return str(exc), EXIT_USAGE


def main(args: argparse.Namespace) -> int:
    cfg = load(args, NAME)
    if isinstance(cfg, int):
        return cfg
    text: str = sys.stdin.read().rstrip("\n") if args.text == "-" else args.text
    if not text.strip():
        return fail(NAME, "the text is empty", EXIT_USAGE)
    if args.client_key is not None and not args.client_key.strip():
        return fail(NAME, "--id must not be empty", EXIT_USAGE)
    try:
        policy = IntakePolicy.from_config(cfg)  # with the [sources] daily caps
    except ConfigError as exc:
        return fail(NAME, str(exc), EXIT_USAGE)
    now = time.time()
    try:
        request = SendRequest(to=(args.to,), text=text, source=SOURCE, client_key=args.client_key,
                              priority=args.priority, report=args.report, valid_for=args.validity,
                              language=args.language, message_class=0 if args.flash else None,
                              send_at=parse_send_at(args.send_at, now))
        prepared = prepare(request, policy, now)  # every check that needs no store
        policy.check_cap_open(SOURCE)  # a cap of 0: refused before the store is even created
    except IntakeError as exc:
        return fail(NAME, *_message(exc, args))
    store = open_store(cfg, NAME, QueueStore, create=True)
    if isinstance(store, int):
        return store
    try:
        (result,) = Intake(policy, store).submit(prepared, now)
    except IntakeError as exc:
        return fail(NAME, *_message(exc, args))
    finally:
        close_store(store)
    if args.json:
        (queued,) = prepared.requests
        print_json({"id": result.id, "state": result.state, "duplicate": result.duplicate, "to": result.to,
                    "parts": prepared.parts, "priority": args.priority, "valid_until": iso(queued.valid_until),
                    "send_at": iso(queued.send_at), "class": queued.message_class})
    elif result.duplicate:
        print(f"{result.id} (already queued with id {args.client_key!r}: {result.state})")
    else:
        print(result.id)
    return EXIT_OK
