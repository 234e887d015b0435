"""The `smsgw` command line: discovers the sub-commands in appliance.commands."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from appliance import __version__, commands


def command_names() -> list[str]:
    """The modules of ``appliance.commands`` that may be sub-commands, without importing any.

    A listing of the package's directory: ``pkgutil.iter_modules`` would import ``inspect`` (with
    ``ast``, ``dis`` and ``tokenize``), a third of what ``smsgw --version`` costs otherwise.
    """
    names = set()
    for directory in commands.__path__:
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            stem, dot, suffix = entry.partition(".")
            if dot and suffix == "py" and stem.isidentifier() and not stem.startswith("_"):
                names.add(stem)
    return sorted(names)


def _command_modules(only: str | None = None) -> list[ModuleType]:
    modules = []
    for name in command_names():
        if only is not None and name != only:
            continue
        module = importlib.import_module(f"{commands.__name__}.{name}")
        if hasattr(module, "NAME") and hasattr(module, "main"):
            modules.append(module)
    return sorted(modules, key=lambda m: m.NAME)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every sub-command, or with just the module named ``only`` (a fast start)."""
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS appliance: MQTT <-> GSM modems")
    parser.add_argument("--version", action="version", version=f"smsgw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules(only):
        command_parser = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_main=module.main)
    return parser


def _fast_parser(argv: Sequence[str]) -> argparse.ArgumentParser | None:
    """A parser that imports only the named command's module, when its file has that name.

    Importing every command (paho, sqlite-utils, the simulator...) costs about 150 ms; the daemon,
    restarted by systemd after a crash, and scripts calling ``smsgw send`` should not pay it.
    """
    if list(argv) == ["--version"]:
        return build_parser(only="")  # no command module is imported to print the version
    if not argv or argv[0].startswith("-"):
        return None
    name = argv[0]
    if name not in command_names():
        return None
    parser = build_parser(only=name)
    modules = _command_modules(only=name)
    return parser if modules and modules[0].NAME == name else None


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a program killed by it


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = _fast_parser(arguments) or build_parser()
    args = parser.parse_args(arguments)
    if not getattr(args, "_main", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        status = int(args._main(args) or 0)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `smsgw doctor | head`: the reader went away; no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except PermissionError as exc:
        from pathlib import Path

        from appliance.commands import _access

        where = Path(exc.filename) if exc.filename else Path(os.getcwd())
        print(f"smsgw {args.command}: {_access.denied(where)}", file=sys.stderr)
        return 2
