"""`smsgw run --config FILE`: the daemon.

The config is validated before anything starts: an error prints ``smsgw: FILE: KEY: REASON`` and
exits 2. Logs go to stderr, one line per record, ``<local time> <level> <component>: <message>
key=value``; under systemd (``$JOURNAL_STREAM`` set) each line starts with the syslog priority
prefix (``<6>``) instead, which journald turns into the record's priority, and no time (journald
stamps every line itself). SIGTERM and SIGINT let the AT
exchange in progress finish, commit, close and exit 0.

Imports are lazy: the daemon starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from drivers.secrets import mask_secrets

NAME = "run"
HELP = "run the SMS gateway daemon"

_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
_PREFIXES = ("appliance.", "drivers.")


class LogFormatter(logging.Formatter):
    """``2026-12-01 21:05:03.482 info dispatcher: message key=value`` (``<6>dispatcher: ...`` for journald)."""

    def __init__(self, journal: bool) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        name = record.name
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
        message = record.getMessage()
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            message += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        message = mask_secrets(message)  # every line, at every level, whatever logged it
        if self.journal:
            return f"<{_PRIORITY.get(record.levelname, 6)}>{name}: {message}"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        return f"{stamp}.{int(record.msecs):03d} {record.levelname.lower()} {name}: {message}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", default=None,
                        help="TOML config file (default: $SMSGW_CONFIG or /etc/smsgw/smsgw.toml)")
    parser.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"],
                        help="override the config's log_level")


def single_instance_lock(store_path: os.PathLike[str] | str) -> int | str | None:
    """Take ``<store>.lock`` (flock) so only one daemon runs on a store; the fd, or why not.

    Two daemons on one store would open the same modems (garbled AT exchanges) and connect to the
    broker with the same client id (each disconnecting the other). The lock is released by the
    kernel when the process ends, however it ends; the file holds the owner's PID for the message.
    None when the store's directory does not exist (opening the store reports that).
    """
    import fcntl

    path = f"{os.fspath(store_path)}.lock"
    if not os.path.isdir(os.path.dirname(path) or "."):
        return None
    from drivers.private_files import open_private

    fd = open_private(path)  # 0600 (0640 in a setgid directory) whatever the umask
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        return f"another smsgw run (pid {owner}) is using the store {os.fspath(store_path)}; stop it first"
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def main(args: argparse.Namespace) -> int:
    import signal

    # A SIGTERM during start-up is remembered and honoured as soon as the daemon is up.
    early: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: early.append(number))

    import asyncio

    from appliance.config import ConfigError, load_config

    path = args.config or os.environ.get("SMSGW_CONFIG") or "/etc/smsgw/smsgw.toml"
    try:
        config = load_config(path)
        config.check("health", "self_alerts", "calls")  # before anything starts
        if config.mqtt is not None or "schedules" in config.raw:  # the rules run with MQTT; schedules without
            config.check("caps", "rules")
    except ConfigError as exc:
        print(f"smsgw run: {exc}", file=sys.stderr)
        return 2
    if early:  # stopped before anything started
        return 0
    lock = single_instance_lock(config.store.path)
    if isinstance(lock, str):
        print(f"smsgw run: {lock}", file=sys.stderr)
        return 1
    setup_logging(args.log_level or config.log_level)
    log = logging.getLogger("appliance.run")

    async def serve() -> int:
        from appliance.daemon import Daemon

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if early:
            stop.set()
        daemon = Daemon(config)
        try:
            await daemon.start()
        except BaseException:
            await daemon.stop()
            raise
        try:
            await stop.wait()
            log.info("signal received; finishing the exchange in progress")
        finally:
            await daemon.stop()
        return 0

    try:
        return asyncio.run(serve())
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # e.g. the store file cannot be opened
        log.critical("smsgw run: %s", exc, exc_info=logging.getLogger().isEnabledFor(logging.DEBUG))
        return 1
