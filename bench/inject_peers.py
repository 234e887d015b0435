"""Ingest of a shell script that queues one SMS per command: ``smsgw send`` vs gammu-smsd-inject.

A user's script that queues messages calls a command per message; this measures how many messages
a second such a script gets into durable storage, each side its own ``sh`` script of N command lines
(``set -e``), timed in this process from the script's spawn to its exit, one fresh store per run:

- ``gammu-smsd-inject -c SMSDRC TEXT +4915... -text "bench N"``: gammu-smsd's SQL backend with
  ``Driver = sqlite3`` through libdbi (libdbd-sqlite3) and the schema gammu ships, the config of
  bench/send_peers.py (``send_peers.gammu_spool``). libdbd-sqlite3 opens the file with SQLite's
  defaults: a rollback journal (``journal_mode=delete``) and ``synchronous=FULL``; each command is
  one transaction (the journal created, synced, the directory synced, the journal's header synced,
  the database synced, the journal deleted). No gammu-smsd runs (``pgrep -x gammu-smsd``: a running
  one is named on standard error); the rows are counted in gammu's ``outbox`` afterwards.
- ``smsgw send --config smsgw.toml +4915... "bench N"``: the console script pip writes
  (``appliance.cli:main``) on an interpreter as on an appliance where pip installed the wheel
  (bench/cli_start.py's ``installed_python``: no editable-install hook; the byte code compiled once
  beforehand under a ``PYTHONPYCACHEPREFIX``), into a store created and migrated beforehand (WAL,
  ``synchronous=FULL``). Each command commits once, fsync'ed: the enqueue (the message row
  and its event row, about 13 pages of the WAL; the store asks ``auto_vacuum`` of a new file only). With no daemon (side ``smsgw``) each command is the store's only
  connection: it creates the WAL (its header and the directory synced) and at its close
  checkpoints it into the database (both synced) and deletes it. Side ``smsgw-daemon`` runs the
  same script while ``smsgw run`` (bench/harness.py, no MQTT) holds the store open on a ``smsgw
  simulate`` modem that takes 3 s per SMS, as on an appliance: no checkpoint at each close (a
  command syncs the WAL's header when the log restarts after the daemon's checkpoint). The rows
  are counted in ``message`` afterwards.
- For reference, not a per-command figure: the MQTT ingest of ``smsgw run``, one round of
  bench/mqtt_ingest.py (``mqtt_ingest.one_round``: a QoS 1 burst from ``mosquitto_pub -l``, MQTT 5,
  committed in batches, one fsync each) on a fresh broker, simulator and daemon per round.

Sides are interleaved round by round; the medians are printed with the ratio smsgw / gammu-smsd-inject.
After the first round each CLI side runs 5 more commands under ``strace -f -c`` (untimed): the
fsync and fdatasync calls a command makes, on average, printed beside its rate.

    python bench/inject_peers.py [--messages 200] [--mqtt-count 5000] [--rounds 3] [--sides gammu,smsgw,smsgw-daemon,mqtt] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cli_start  # noqa: E402
import harness  # noqa: E402
import mqtt_ingest  # noqa: E402
import send_peers  # noqa: E402

#: The console script pip writes for ``smsgw = "appliance.cli:main"`` (its shebang is added per venv).
CONSOLE_SCRIPT = "import re\nimport sys\nfrom appliance.cli import main\nif __name__ == '__main__':\n" \
                 "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n    sys.exit(main())\n"
SYNC_CALLS = ("fsync", "fdatasync")


class Interpreter:
    """An appliance-like interpreter with an ``smsgw`` console script, its byte code compiled."""

    def __init__(self, directory: Path) -> None:
        python = cli_start.installed_python(directory / "venv")
        self.bin = python.parent
        (self.bin / "smsgw").write_text(f"#!{python}\n" + CONSOLE_SCRIPT)
        (self.bin / "smsgw").chmod(0o755)
        self.cache = directory / "pycache"
        scratch = directory / "warm-up"
        scratch.mkdir()
        config = harness.write_config(scratch, ["/dev/ttyUSB2"], None)
        subprocess.run([str(self.bin / "smsgw"), "send", "--config", str(config), "+491500000000", "warm-up"],
                       check=True, capture_output=True, env=self.env())

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in harness.env().items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(self.cache)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return env


INTERPRETER: Interpreter | None = None


def numbers(count: int, first: int = 0) -> list[tuple[str, str]]:
    return [(f"+4915{n:09d}", f"bench {n}") for n in range(first, first + count)]


def script(path: Path, lines: list[list[str]]) -> Path:
    path.write_text("set -e\n" + "".join(shlex.join(line) + "\n" for line in lines))
    return path


def timed_script(path: Path, env: dict[str, str], cwd: Path) -> float:
    """Seconds from the spawn of ``sh path`` to its exit (it must exit 0)."""
    with (path.parent / f"{path.name}.log").open("wb") as log:
        start = time.perf_counter()
        done = subprocess.run(["sh", str(path)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env=env, cwd=cwd)
        seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{path.name} exited {done.returncode}: {(path.parent / f'{path.name}.log').read_text()[-800:]}")
    return seconds


def syncs(path: Path, env: dict[str, str], cwd: Path) -> float:
    """fsync and fdatasync calls per command of the script ``path`` (``strace -f -c``), untimed."""
    out = cwd / "strace.txt"
    subprocess.run(["strace", "-f", "-qq", "-c", "-o", str(out), "-e", "trace=" + ",".join(SYNC_CALLS), "sh", str(path)],
                   check=True, capture_output=True, env=env, cwd=cwd)
    total = 0
    for line in out.read_text().splitlines():
        fields = line.split()
        if fields and fields[-1] in SYNC_CALLS:
            total += int(fields[3])  # % time, seconds, usecs/call, calls, [errors,] syscall
    return total / TRACED


def count_rows(db: Path, table: str) -> int:
    """Rows in ``table``, through a read-only connection closed at once (an open one would keep
    ``smsgw send`` from checkpointing at its close)."""
    with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def check_rows(db: Path, table: str, expected: int, side: str) -> None:
    landed = count_rows(db, table)
    if landed != expected:
        raise RuntimeError(f"{side}: {landed} rows in {table}, expected {expected}")


Result = tuple[float, float | None]  # (msgs/s, syncs per command or None)
#: Commands run under strace after the first round's timed script.
TRACED = 5


def run_gammu(work: Path, count: int, trace: bool) -> Result:
    spool = work / "gammu"
    config = send_peers.gammu_spool(spool, "/dev/null")  # the device is not opened by the inject
    inject = str(send_peers.program("gammu-smsd-inject"))
    lines = [[inject, "-c", str(config), "TEXT", to, "-text", text] for to, text in numbers(count)]
    seconds = timed_script(script(work / "gammu.sh", lines), dict(os.environ), spool)
    check_rows(spool / "smsd.db", "outbox", count, "gammu-smsd-inject")
    calls = None
    if trace:
        lines = [[inject, "-c", str(config), "TEXT", to, "-text", text] for to, text in numbers(TRACED, count)]
        calls = syncs(script(work / "gammu-traced.sh", lines), dict(os.environ), spool)
        check_rows(spool / "smsd.db", "outbox", count + TRACED, "gammu-smsd-inject")
    return count / seconds, calls


def smsgw_lines(config: Path, messages: list[tuple[str, str]]) -> list[list[str]]:
    return [["smsgw", "send", "--config", str(config), to, text] for to, text in messages]


def cli(work: Path, config: Path, db: Path, count: int, trace: bool, side: str) -> Result:
    assert INTERPRETER is not None
    env = INTERPRETER.env()
    base = count_rows(db, "message")
    seconds = timed_script(script(work / f"{side}.sh", smsgw_lines(config, numbers(count))), env, config.parent)
    check_rows(db, "message", base + count, side)
    calls = None
    if trace:
        calls = syncs(script(work / f"{side}-traced.sh", smsgw_lines(config, numbers(TRACED, count))), env,
                      config.parent)
        check_rows(db, "message", base + count + TRACED, side)
    return count / seconds, calls


def run_smsgw(work: Path, count: int, trace: bool) -> Result:
    directory = work / "gw"
    directory.mkdir()
    config = harness.write_config(directory, ["/dev/ttyUSB2"], None)
    send_peers.enqueue(harness.UNDER_TEST, directory / "smsgw.db", "create")  # created and migrated, untimed
    return cli(work, config, directory / "smsgw.db", count, trace, "smsgw")


def run_smsgw_daemon(work: Path, count: int, trace: bool) -> Result:
    with harness.simulator(work / "sim", 1, "--send-delay", "3") as ports, \
            harness.daemon(work / "gw", ports, None) as daemon:
        return cli(work, work / "gw" / "smsgw.toml", daemon.db, count, trace, "smsgw-daemon")


MQTT_COUNT = 5000


def run_mqtt(work: Path, count: int, trace: bool) -> Result:
    with harness.broker(work / "broker") as broker, \
            harness.simulator(work / "sim", 1, "--send-delay", "3") as ports, \
            harness.daemon(work / "gw", ports, broker, protocol="5") as daemon:
        _, rate = mqtt_ingest.one_round(broker, daemon, work, MQTT_COUNT, 0, "5")
        committed = int(daemon.query("SELECT COUNT(*) FROM message"))
    if committed != MQTT_COUNT:
        raise RuntimeError(f"mqtt: {committed} rows in message, expected {MQTT_COUNT}")
    return rate, None


def _gammu_missing() -> str | None:
    if not send_peers.program("gammu-smsd-inject"):
        return "gammu-smsd-inject is not installed"
    if not (send_peers.GAMMU_SCHEMA.exists() and send_peers._dbd_sqlite3()):
        return "gammu-smsd's sqlite schema or libdbd-sqlite3 is not installed"
    return None


SIDES: dict[str, tuple[str, Callable[[Path, int, bool], Result], Callable[[], str | None]]] = {
    "gammu": ("gammu-smsd-inject, SQL backend (sqlite3)", run_gammu, _gammu_missing),
    "smsgw": ("smsgw send, no daemon", run_smsgw, lambda: None),
    "smsgw-daemon": ("smsgw send, smsgw run holding the store", run_smsgw_daemon, lambda: None),
    "mqtt": ("smsgw run, MQTT 5 QoS 1 burst (reference)", run_mqtt,
             lambda: None if shutil.which("mosquitto_pub") else "mosquitto-clients is not installed"),
}
CLI_SIDES = ("gammu", "smsgw", "smsgw-daemon")


def one(side: str, count: int, trace: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix=f"smsgw-inject-{side}-") as tmp:
        return SIDES[side][1](Path(tmp), count, trace)


def running_gammu() -> list[str]:
    """gammu-smsd processes already running (a service the package started), named, not stopped."""
    found = subprocess.run(["pgrep", "-a", "-x", "gammu-smsd"], capture_output=True, text=True)
    return found.stdout.splitlines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200, help="commands per CLI script (default 200)")
    parser.add_argument("--mqtt-count", type=int, default=5000, help="requests per MQTT burst (default 5000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated, of " + ", ".join(SIDES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    global INTERPRETER, MQTT_COUNT
    MQTT_COUNT = args.mqtt_count
    for line in running_gammu():
        print(f"inject_peers: a gammu-smsd is running (not ours, left alone): {line}", file=sys.stderr)
    sides, skipped = send_peers.available(args.sides.split(","), SIDES)
    traced = bool(shutil.which("strace"))
    with tempfile.TemporaryDirectory(prefix="smsgw-inject-python-") as tmp:
        INTERPRETER = Interpreter(Path(tmp))
        rates: dict[str, list[float]] = {side: [] for side in sides}
        sync_calls: dict[str, float] = {}
        for round_no in range(args.rounds):
            for side in sides:
                rate, calls = one(side, args.messages, traced and round_no == 0 and side in CLI_SIDES)
                rates[side].append(rate)
                if calls is not None:
                    sync_calls[side] = calls
                print(f"  round {round_no + 1} {side}: {rate:,.1f} msgs/s", file=sys.stderr, flush=True)
    medians = {side: statistics.median(values) for side, values in rates.items()}
    gammu = medians.get("gammu")
    result: dict[str, Any] = {
        "messages": args.messages, "mqtt_count": args.mqtt_count, "rounds": args.rounds, "rates": rates,
        "medians": medians, "syncs": sync_calls, "names": {side: SIDES[side][0] for side in SIDES},
        "skipped": skipped, "ratios": {side: rate / gammu for side, rate in medians.items() if gammu},
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.messages} commands per script (MQTT: bursts of {args.mqtt_count}), fresh store per run, "
          f"median of {args.rounds} interleaved rounds")
    print("| side | msgs/s (median) | rounds | side / gammu-smsd-inject | fsync + fdatasync per command |")
    print("|---|---:|---|---:|---:|")
    for side in sides:
        ratio = f"{medians[side] / gammu:.2f}" if gammu else "-"
        per_command = f"{sync_calls[side]:.1f}" if side in sync_calls else "-"
        print(f"| {SIDES[side][0]} | {medians[side]:,.1f} | {', '.join(f'{r:,.1f}' for r in rates[side])} "
              f"| {ratio} | {per_command} |")
    for side, why in skipped.items():
        print(f"| {SIDES[side][0]} | skipped: {why} | | | |")


if __name__ == "__main__":
    main()
