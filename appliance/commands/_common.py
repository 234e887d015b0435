"""What the store commands share (``send``, ``status``, ``inbox``, ``outbox``, ``optout``, ...): the
``--config`` and ``--json`` options, loading the config, opening and closing the store, times and
tables printed, exit statuses.

Kept apart from any one command so that a command imports only these helpers, not another
command's own modules (``status`` reads the daemon's liveness and the self-alerts; ``send`` needs
neither).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from appliance.commands import _access
from appliance.commands._types import positive_int
from appliance.config import Config, ConfigError, default_config_path, load_config
from appliance.store_types import free_space

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: see appliance/frozen.py
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from appliance.store_base import StoreBase

    T = TypeVar("T")
    S = TypeVar("S", bound="StoreBase")

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2



def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", type=Path, default=None,
        help=f"configuration file (default: $SMSGW_CONFIG or {default_config_path()})",
    )


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--json`` and ``--limit N`` (newest N, default 20): the inbox and outbox listings."""
    add_config_argument(parser)
    add_json_argument(parser)
    parser.add_argument("--limit", type=positive_int, default=20, metavar="N",
                        help="show the newest N messages (default 20)")


def fail(command: str, message: str, code: int = EXIT_ERROR) -> int:
    print(f"smsgw {command}: {message}", file=sys.stderr)
    return code


def load(args: argparse.Namespace, command: str) -> Config | int:
    """The config named by ``--config`` (or the default), or an exit status after printing why."""
    path = args.config if args.config is not None else default_config_path()
    if _access.blocked_directory(path) is not None or (path.is_file() and not os.access(path, os.R_OK)):
        return fail(command, _access.denied(path), EXIT_USAGE)
    try:
        return load_config(path, cache=True)
    except ConfigError as exc:
        return fail(command, str(exc), EXIT_USAGE)


def give_to_store_owner(path: Path) -> None:
    """Run as root against a store owned by the service user: hand the files SQLite created (the
    database, -wal, -shm) to the owner of the store's directory, so that the daemon can still
    write them."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    try:
        owner = path.parent.stat()
    except OSError:
        return
    if owner.st_uid == 0:
        return
    for name in (path.name, path.name + "-wal", path.name + "-shm", path.name + "-journal"):
        file = path.parent / name
        try:
            if file.stat().st_uid == 0:
                os.chown(file, owner.st_uid, owner.st_gid)
        except OSError:
            continue


def close_store(store: StoreBase) -> None:
    store.close()
    give_to_store_owner(store.path)


def open_store(cfg: Config, command: str, kind: type[S], *, create: bool = False, read_only: bool = False) -> S | int:
    """Open the configured store as a ``kind`` (``appliance.store.Store``, or the part of it a command
    uses, ``appliance.store_cli``); without ``create``, a missing database is an error; ``read_only``
    opens it with SQLite's ``mode=ro`` (no migration, no writes: works on a full disk)."""
    path = cfg.store.path
    problem = _access.store_access_problem(path, create=create)
    if problem is not None:
        return fail(command, problem, EXIT_USAGE)
    if not create and not path.exists():
        return fail(command, f"no database at {path} (it is created by 'smsgw run' or 'smsgw send')", EXIT_USAGE)
    if not path.parent.is_dir():
        return fail(command, f"{path.parent} does not exist (store.path in {cfg.path})", EXIT_USAGE)
    try:
        store = kind(path, read_only=read_only, migrate_in_child=True)
    except Exception as exc:  # sqlite3 errors, a newer schema, a full disk
        give_to_store_owner(path)
        reason = str(exc)
        if "full" in reason and "free" not in reason:
            reason += f" ({free_space(path)})"
        return fail(command, f"cannot open the store {path}: {reason}")
    give_to_store_owner(path)
    return store


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def local_time(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def iso_fields(row: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    out = dict(row)
    for name in names:
        if name in out and isinstance(out[name], int | float) and not isinstance(out[name], bool):
            out[name] = iso(out[name])
    return out


def shorten(text: object, width: int) -> str:
    value = "-" if text is None or text == "" else str(text)
    value = " ".join(value.split())  # newlines and tabs would break the table
    return value if len(value) <= width else value[: max(width - 1, 0)] + "…"


def table(rows: Sequence[Sequence[object]], headers: Sequence[str], *, right: Sequence[int] = ()) -> str:
    """Aligned columns, a header line, two spaces between columns."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def print_json(document: object) -> None:
    print(json.dumps(document, ensure_ascii=False, indent=2, sort_keys=False))


def read_store(args: argparse.Namespace, command: str, kind: type[S], read: Callable[[S, Config], T]) -> T | int:
    """Load the config, open its store as a ``kind`` (see ``open_store``), ``read(store, config)``,
    close; an exit status on failure."""
    cfg = load(args, command)
    if isinstance(cfg, int):
        return cfg
    store = open_store(cfg, command, kind, read_only=True)
    if isinstance(store, int):
        return store
    try:
        return read(store, cfg)
    finally:
        close_store(store)
