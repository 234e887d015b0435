"""`smsgw config check [FILE]`: validate a configuration file without starting anything."""

from __future__ import annotations

import argparse
import os
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
        # the tables other modules own, checked the way `smsgw run` checks them at start
        cfg.check("health", "caps", "rules", "self_alerts", "calls")
    except ConfigError as exc:
        print(f"smsgw config check: {exc}", file=sys.stderr)
        return 2
    modems = ", ".join(f"{m.id} ({m.port})" for m in cfg.modems) or "none"
    mqtt = f"{cfg.mqtt.host}:{cfg.mqtt.port} base topic {cfg.mqtt.base_topic!r}" if cfg.mqtt else "off"
    print(f"{cfg.path}: OK")
    print(f"  store:  {cfg.store.path}")
    print(f"  modems: {modems}")
    print(f"  mqtt:   {mqtt}")
    # A port that is not there now is not a configuration error (a USB modem may appear later, and
    # the daemon waits for it), but an installer wants to know at once.
    for index, modem in enumerate(cfg.modems):
        if modem.auto:
            wanted = f"IMEI {modem.imei}" if modem.imei else f"ICCID {modem.iccid}"
            print(f"  modems[{index}].port: auto: the daemon looks for {wanted} on {' '.join(cfg.modems_auto.globs)}")
            continue
        if not modem.port.startswith(("socket://", "rfc2217://")) and not os.path.exists(modem.port):
            print(f"  warning: modems[{index}].port: {modem.port} does not exist now "
                  "(`smsgw detect` lists attached modems; the daemon waits for it to appear)")
    return 0
