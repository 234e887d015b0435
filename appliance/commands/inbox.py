"""`smsgw inbox [--json] [--limit N]`: the newest received SMS, newest first."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.store import Store

NAME = "inbox"
HELP = "list received SMS (newest first)"

TIME_FIELDS = ("received_at", "handled_at")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_list_arguments(parser)


def render(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(the inbox is empty)"
    return table(
        [[r["id"], local_time(r["received_at"]), r.get("from"), r.get("modem"), r.get("parts"),
          "partial" if r.get("partial") else ("undecodable" if r.get("state") == "undecodable" else ""),
          shorten(r.get("text") if not r.get("error") else f"{r.get('error')}: {r.get('raw')!r}", 60)]
         for r in rows],
        ["ID", "RECEIVED", "FROM", "MODEM", "PARTS", "FLAGS", "TEXT"],
        right=(0, 4),
    )


def _inbox(store: Store, config: Config, limit: int) -> list[dict[str, Any]]:
    from appliance.rules.commands import text_filter

    store.shown_text = text_filter(config)  # a command's PIN is shown as ****
    return store.inbox(limit)


def main(args: argparse.Namespace) -> int:
    from appliance.store import Store

    rows = read_store(args, NAME, Store, lambda store, cfg: _inbox(store, cfg, args.limit))
    if isinstance(rows, int):
        return rows
    if args.json:
        print_json({"messages": [iso_fields(r, TIME_FIELDS) for r in rows]})
    else:
        print(render(rows))
    return EXIT_OK
