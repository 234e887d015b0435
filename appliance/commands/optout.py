"""`smsgw optout list|add|remove [NUMBER]`: the opt-out list (numbers that sent STOP).

Every non-critical message to a listed number, from any channel, is refused with an error naming
the opt-out (``Store.check_optout``); ``priority = "critical"`` (safety alerts) still goes. STOP by
SMS adds the sender, START removes it; ``add`` and ``remove`` do the same by hand. Every change is
audited (``optout_added`` / ``optout_removed`` with its source: ``sms:STOP``, ``cli``, …).
"""

from __future__ import annotations

import argparse

from appliance.commands._common import (
    EXIT_OK,
    EXIT_USAGE,
    add_config_argument,
    add_json_argument,
    close_store,
    fail,
    iso,
    load,
    local_time,
    open_store,
    print_json,
    table,
)
from appliance.numbers import NumberError, check_destination

NAME = "optout"
HELP = "list, add or remove numbers that opted out (STOP) of non-critical messages"
SOURCE = "cli"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    add_json_argument(parser)
    parser.add_argument("action", choices=("list", "add", "remove"), help="what to do")
    parser.add_argument("number", nargs="?", metavar="NUMBER", help="the number to add or remove")


def main(args: argparse.Namespace) -> int:
    cfg = load(args, NAME)
    if isinstance(cfg, int):
        return cfg
    number = None
    if args.action != "list":
        if not args.number:
            return fail(NAME, f"{args.action} needs a NUMBER", EXIT_USAGE)
        try:
            number = check_destination(args.number, cfg.numbers)
        except NumberError as exc:
            return fail(NAME, f"invalid number {exc}", EXIT_USAGE)
    elif args.number:
        return fail(NAME, "list takes no NUMBER", EXIT_USAGE)
    from appliance.store import Store

    store = open_store(cfg, NAME, Store, create=args.action != "list")
    if isinstance(store, int):
        return store
    try:
        if number is None:
            rows = store.optouts()
        elif args.action == "add":
            changed = store.optout_add(number, SOURCE)
        else:
            changed = store.optout_remove(number, SOURCE)
    finally:
        close_store(store)
    if number is None:
        if args.json:
            print_json({"optouts": [{**r, "at": iso(r["at"])} for r in rows]})
        elif not rows:
            print("(no number has opted out)")
        else:
            print(table([[r["number"], local_time(r["at"]), r["source"]] for r in rows], ["NUMBER", "SINCE", "BY"]))
        return EXIT_OK
    if args.json:
        print_json({"number": number, "action": args.action, "changed": changed})
    elif args.action == "add":
        print(f"{number} opted out" if changed else f"{number} was already opted out")
    else:
        print(f"{number} opted in again" if changed else f"{number} was not opted out")
    return EXIT_OK
