"""`smsgw send [--config FILE] [--priority P] [--report] [--id KEY] [--language CODE] TO TEXT`: queue one SMS.

The message is committed to the store (source ``cli``) and the command returns; the daemon sends it
when it runs. It works while the daemon or the MQTT broker is down. The destination passes the
``[numbers]`` policy, the text must not be empty nor longer than ``[limits].max_parts`` parts, and
``--language`` must be a national language of 3GPP TS 23.038 6.2.1.2 (the parts are counted with its
shift tables, or ``[sms] national_language``'s, as the daemon will encode them), the source ``cli``
must be under its daily cap (``[sources.cli] daily_cap``): anything else is refused
with exit status 2 and nothing is written.
"""

from __future__ import annotations

import argparse
import sys
import time

from appliance.commands.status import (
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
from appliance.numbers import NumberError, check_destination
from appliance.rules import DailyCapExceeded, check_daily_cap, validate_rules
from appliance.store import PRIORITIES, InvalidRequest, OutboundRequest
from drivers.gsm7_national import KNOWN_LANGUAGES, LANGUAGE_IDS
from drivers.pdu import PduError, count_parts, split_text

NAME = "send"
SOURCE = "cli"
HELP = "queue an SMS in the store (works while the daemon or the broker is down)"


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
    add_json_argument(parser)
    parser.add_argument("to", metavar="TO", help="destination: +491701234567, or national with [numbers].default_country")
    parser.add_argument("text", metavar="TEXT", help="message text; '-' reads it from stdin")


def main(args: argparse.Namespace) -> int:
    cfg = load(args, NAME)
    if isinstance(cfg, int):
        return cfg
    text: str = sys.stdin.read().rstrip("\n") if args.text == "-" else args.text
    try:
        to = check_destination(args.to, cfg.numbers)
    except NumberError as exc:
        return fail(NAME, f"invalid destination {exc}", EXIT_USAGE)
    if not text.strip():
        return fail(NAME, "the text is empty", EXIT_USAGE)
    language = args.language.lower() if args.language else None
    if args.language is not None and language not in LANGUAGE_IDS:
        return fail(NAME, f"--language {args.language!r} is not a national language; one of "
                          f"{KNOWN_LANGUAGES}", EXIT_USAGE)
    encode_language = language or cfg.sms.national_language  # what the dispatcher will encode with
    try:
        parts = count_parts(text, language=encode_language)
    except PduError as exc:  # a lone surrogate (bytes that are not UTF-8 in argv/stdin), > 255 parts
        return fail(NAME, f"the text cannot be sent: {exc}", EXIT_USAGE)
    if parts > cfg.limits.max_parts:
        encoding, _ = split_text(text, language=encode_language)
        return fail(
            NAME,
            f"the text is too long: {len(text)} characters make {parts} {encoding} parts, "
            f"more than limits.max_parts = {cfg.limits.max_parts}",
            EXIT_USAGE,
        )
    if args.validity is not None and args.validity <= 0:
        return fail(NAME, f"--validity must be greater than 0, not {args.validity:g}", EXIT_USAGE)
    if args.client_key is not None and not args.client_key.strip():
        return fail(NAME, "--id must not be empty", EXIT_USAGE)
    try:
        rules = validate_rules(cfg)  # the [sources] daily caps
    except ConfigError as exc:
        return fail(NAME, str(exc), EXIT_USAGE)
    validity = args.validity if args.validity is not None else cfg.limits.validity
    now = time.time()
    if rules.cap_for(SOURCE) == 0:  # refused before the store is even created
        return fail(NAME, f"{DailyCapExceeded(SOURCE, 0, 0, 1)}; nothing queued", EXIT_USAGE)
    request = OutboundRequest(
        to=to, text=text, source=SOURCE, client_key=args.client_key, priority=args.priority,
        valid_until=now + validity, report=args.report, language=language,
    )
    store = open_store(cfg, NAME, create=True)
    if isinstance(store, int):
        return store
    try:
        if args.client_key is None or store.conn.execute(
                "SELECT 1 FROM message WHERE client_key = ? AND recipient = ?", (args.client_key, to)).fetchone() is None:
            check_daily_cap(rules, store, SOURCE, 1, now)  # a repeated --id queues nothing: not counted
        (result,) = store.enqueue([request], now=now)
    except DailyCapExceeded as exc:
        return fail(NAME, f"{exc}; nothing queued", EXIT_USAGE)
    except InvalidRequest as exc:
        return fail(NAME, str(exc), EXIT_USAGE)
    except Exception as exc:  # a full disk (StoreFull names the free space), permissions, a locked database
        return fail(NAME, f"could not queue the message: {exc}", EXIT_ERROR)
    finally:
        close_store(store)
    if args.json:
        print_json({"id": result.id, "state": result.state, "duplicate": result.duplicate, "to": to,
                    "parts": parts, "priority": args.priority, "valid_until": iso(now + validity)})
    elif result.duplicate:
        print(f"{result.id} (already queued with id {args.client_key!r}: {result.state})")
    else:
        print(result.id)
    return EXIT_OK
