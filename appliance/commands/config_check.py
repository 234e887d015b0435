"""`smsgw config check [FILE]`: validate a configuration file without starting anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.config import ConfigError, default_config_path, load_config

NAME = "config"
HELP = "check a configuration file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION")
    check = sub.add_parser("check", help="validate a configuration file; exit 2 naming file, key and reason",
                           description="validate a configuration file; exit 2 naming file, key and reason")
    check.add_argument("file", metavar="FILE", type=Path, nargs="?", default=None,
                       help=f"the file (default: $SMSGW_CONFIG or {default_config_path()})")


def main(args: argparse.Namespace) -> int:
    if args.config_command != "check":
        print("smsgw config: say 'check' (see smsgw config --help)", file=sys.stderr)
        return 2
    path = args.file if args.file is not None else default_config_path()
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(f"smsgw config check: {exc}", file=sys.stderr)
        return 2
    modems = ", ".join(f"{m.id} ({m.port})" for m in cfg.modems) or "none"
    mqtt = f"{cfg.mqtt.host}:{cfg.mqtt.port} base topic {cfg.mqtt.base_topic!r}" if cfg.mqtt else "off"
    print(f"{cfg.path}: OK")
    print(f"  store:  {cfg.store.path}")
    print(f"  modems: {modems}")
    print(f"  mqtt:   {mqtt}")
    return 0
