"""`smsgw token create NAME --scopes send read | list | revoke NAME`: the HTTP API's tokens.

``create`` prints a new token once and writes only its SHA-256 into the config file's
``[[http.tokens]]`` (the running daemon reads the file again when an unknown token is presented, so
the token works at once); ``revoke`` removes the table (the daemon stops accepting it within a
second). Requests with the token count as the usage source ``http:NAME`` (daily caps, ``smsgw status``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from appliance.commands._common import (
    EXIT_OK,
    EXIT_USAGE,
    add_config_argument,
    add_json_argument,
    fail,
    load,
    print_json,
    table,
)
from appliance.config import Config, ConfigError, default_config_path
from appliance.http.config import SCOPES

NAME = "token"
HELP = "create, list or revoke HTTP API tokens ([[http.tokens]] in the config)"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    add_json_argument(parser)
    parser.add_argument("action", choices=("create", "list", "revoke"), help="what to do")
    parser.add_argument("name", nargs="?", metavar="NAME",
                        help="the token's name (its usage source is http:NAME)")
    parser.add_argument("--scopes", nargs="+", metavar="SCOPE", default=None,
                        help=f"what the new token may do: {', '.join(SCOPES)} (space or comma separated)")


def _scopes(values: list[str]) -> list[str] | str:
    scopes: list[str] = []
    for value in values:
        for scope in filter(None, (part.strip() for part in value.split(","))):
            if scope not in SCOPES:
                return f"unknown scope {scope!r}; known: {', '.join(SCOPES)}"
            if scope not in scopes:
                scopes.append(scope)
    return scopes or f"--scopes needs at least one of {', '.join(SCOPES)}"


def main(args: argparse.Namespace) -> int:
    cfg = load(args, NAME)
    if isinstance(cfg, int):
        return cfg
    if args.action == "list":
        return _list(args, cfg)
    if not args.name:
        return fail(NAME, f"{args.action} needs a NAME", EXIT_USAGE)
    if not _NAME.match(args.name):
        return fail(NAME, f"NAME {args.name!r} may hold only letters, digits, '.', '-' and '_' (at most 32)",
                    EXIT_USAGE)
    path = args.config if args.config is not None else default_config_path()
    if args.action == "revoke":
        return _revoke(args, path)
    return _create(args, path)


def _list(args: argparse.Namespace, cfg: Config) -> int:
    if args.name or args.scopes:
        return fail(NAME, "list takes no NAME and no --scopes", EXIT_USAGE)
    listed = cfg.http.tokens if cfg.http is not None else ()
    if args.json:
        print_json({"tokens": [{"name": t.name, "source": t.source, "scopes": sorted(t.scopes)} for t in listed]})
    elif not listed:
        print("(no HTTP API token)" if cfg.http is not None else "(no HTTP API token; [http] is not configured)")
    else:
        print(table([[t.name, t.source, ", ".join(sorted(t.scopes))] for t in listed], ["NAME", "SOURCE", "SCOPES"]))
    return EXIT_OK


def _revoke(args: argparse.Namespace, path: Path) -> int:
    from appliance.http import tokens

    if args.scopes:
        return fail(NAME, "revoke takes no --scopes", EXIT_USAGE)
    try:
        tokens.remove_token(path, args.name)
    except (ConfigError, OSError) as exc:
        return _rewrite_failed(path, exc)
    if args.json:
        print_json({"name": args.name, "revoked": True})
    else:
        print(f"token {args.name!r} revoked")
    return EXIT_OK


def _create(args: argparse.Namespace, path: Path) -> int:
    from appliance.http import tokens

    if args.scopes is None:
        return fail(NAME, f"create needs --scopes (one or more of {', '.join(SCOPES)})", EXIT_USAGE)
    scopes = _scopes(args.scopes)
    if isinstance(scopes, str):
        return fail(NAME, scopes, EXIT_USAGE)
    try:
        token, _ = tokens.add_token(path, args.name, scopes)
    except (ConfigError, OSError) as exc:
        return _rewrite_failed(path, exc)
    if args.json:
        print_json({"name": args.name, "source": f"http:{args.name}", "scopes": scopes, "token": token})
    else:
        print(token)
        print(f"token {args.name!r} ({', '.join(scopes)}) added to {path}; it is shown only now: keep it safe. "
              f"Use it as 'Authorization: Bearer TOKEN'.", file=sys.stderr)
    return EXIT_OK


def _rewrite_failed(path: Path, exc: ConfigError | OSError) -> int:
    """The config file could not be read or rewritten: its problem, exit 2."""
    if isinstance(exc, ConfigError):
        return fail(NAME, str(exc), EXIT_USAGE)
    return fail(NAME, f"cannot change {path}: {exc.strerror or exc}", EXIT_USAGE)
