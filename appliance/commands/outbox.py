"""`smsgw outbox [--json] [--limit N]`: the newest outbound messages, newest first."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.commands._common import (
    EXIT_OK,
    add_list_arguments,
    iso_fields,
    local_time,
    print_json,
    read_store,
    shorten,
    table,
)

NAME = "outbox"
HELP = "list outbound messages (newest first) with their state"

TIME_FIELDS = ("created_at", "valid_until", "next_attempt_at", "lease_until", "updated_at", "send_at")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_list_arguments(parser)


def render(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(the outbox is empty)"
    return table(
        [[r["id"], local_time(r["created_at"]), r["to"], _state(r), r["priority"], r["parts"] or "-",
          r["attempts"], r["modem"], r["source"] or "-", shorten(r["last_error"], 30), shorten(r["text"], 40)]
         for r in rows],
        ["ID", "CREATED", "TO", "STATE", "PRIORITY", "PARTS", "TRIES", "MODEM", "SOURCE", "LAST ERROR", "TEXT"],
        right=(0, 5, 6),
    )


def _state(row: dict[str, Any]) -> str:
    """The state, with the time a held message waits for (``send_at``, quiet hours) and "flash"."""
    state = str(row["state"])
    if state == "queued" and row.get("send_at"):
        state += f" until {local_time(row['send_at'])}"
    return state + (" (flash)" if row.get("message_class") == 0 else "")


def main(args: argparse.Namespace) -> int:
    from appliance.store import Store

    rows = read_store(args, NAME, Store, lambda store, _cfg: store.outbox(args.limit))
    if isinstance(rows, int):
        return rows
    if args.json:
        print_json({"messages": [iso_fields(r, TIME_FIELDS) for r in rows]})
    else:
        print(render(rows))
    return EXIT_OK
