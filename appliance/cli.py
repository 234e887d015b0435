"""The `smsgw` command line: discovers the sub-commands in appliance.commands."""

from __future__ import annotations

import gc

_COLLECTING = gc.isenabled()
gc.disable()  # while argparse and re are imported, as in main()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from types import ModuleType  # noqa: E402

from appliance import __version__, commands  # noqa: E402


def _collect_again(collecting: bool) -> None:
    """Turn the cycle collector back on (if it was), with what was allocated while it was off moved to
    the oldest generation (``gc.freeze`` then ``gc.unfreeze``): modules, classes and functions, which
    live as long as the process; the next collections walk only what is allocated after."""
    if collecting:
        gc.freeze()
        gc.unfreeze()
        gc.enable()


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
        __import__(f"{commands.__name__}.{name}")  # not importlib.import_module: the package is one import more
        module = sys.modules[f"{commands.__name__}.{name}"]
        if hasattr(module, "NAME") and hasattr(module, "main"):
            modules.append(module)
    return sorted(modules, key=lambda m: m.NAME)


def terminal_columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` tells it: ``$COLUMNS``, else the width of
    standard output's terminal, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's own, told the terminal's width: without one, argparse imports ``shutil`` (with
    ``bz2``, ``lzma`` and ``fnmatch``) at the first ``add_argument``, to ask it."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         terminal_columns() - 2 if width is None else width)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every sub-command, or with just the module named ``only`` (a fast start)."""
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS appliance: MQTT <-> GSM modems",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"smsgw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules(only):
        command_parser = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                                        formatter_class=HelpFormatter)
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
    """Run the command of ``argv``; the cycle collector is off while its modules are imported, and
    for the whole command if its module says ``GC = False`` (one that returns in milliseconds).

    A command's imports allocate some 30,000 objects that live as long as the process, and the
    collector would walk them twenty times (a twentieth of what ``smsgw send`` costs) to free none.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _run(list(sys.argv[1:] if argv is None else argv), collecting)
    finally:
        _collect_again(collecting and not gc.isenabled())


def _run(arguments: list[str], collecting: bool) -> int:
    parser = _fast_parser(arguments) or build_parser()
    args = parser.parse_args(arguments)
    if not getattr(args, "_main", None):
        parser.print_help(sys.stderr)
        return 2
    if getattr(sys.modules.get(args._main.__module__), "GC", True):
        _collect_again(collecting)  # a command that runs for long (the daemon) frees its cycles
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


_collect_again(_COLLECTING)
