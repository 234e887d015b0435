"""`smsgw udev-rules`: print (or write) the udev rules generated from the modem profiles."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from appliance.udev_rules import RULES_NAME, render
from drivers.profiles import ProfileError

NAME = "udev-rules"
HELP = f"print the udev rules ({RULES_NAME}) for every known modem: /dev/gsm/<profile>-<serial>-at names"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, metavar="FILE",
                        help=f"write the rules to FILE (atomically) instead of printing them, e.g. "
                             f"/etc/udev/rules.d/{RULES_NAME}")


def main(args: argparse.Namespace) -> int:
    try:
        text = render()
    except ProfileError as exc:
        print(f"smsgw udev-rules: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
        return 0
    output: Path = args.output
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        temporary.chmod(0o644)
        os.replace(temporary, output)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        print(f"smsgw udev-rules: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0
