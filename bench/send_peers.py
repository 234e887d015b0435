"""Send rate of smsgw run against its peers, each on the same ``smsgw simulate`` modem over a pty.

Every side runs in its own process against a fresh ``smsgw simulate`` (one ``generic`` modem,
answering at once), and the batch is handed over the way that side takes work:

- ``smsgw run``: ``Store.enqueue`` of the batch in one transaction (as ``smsgw send`` or the MQTT
  bridge would), from a process of its own; every send commits its claim and its TP-MR (WAL,
  ``synchronous=FULL``; the claim's commit is not fsync'ed). With ``--base CHECKOUT`` the same for
  that checkout's ``smsgw run`` (side ``smsgw-base``), in the same interleaved rounds: a before/after.
- ``gammu-smsd`` with its SQL backend (``Driver = sqlite3`` through libdbi, the schema gammu
  ships), fastest settings: ``LoopSleep = 0``, ``CommTimeout = 0``, no status, security, battery,
  signal or network checks, incoming checked once an hour; the batch is inserted into ``outbox``
  in one transaction.
- smstools3 ``smsd``, fastest settings: ``delaytime = 1`` (its minimum), ``trust_outgoing``,
  ``spool_directory_order``, ``check_network = 0``, ``incoming = no``; the batch is written to
  ``outgoing/`` (each file created by rename, as smsd asks).
- python-gsmmodem-new: a bare ``sendSms`` loop (PDU mode) in a process of its own, which stores
  nothing and asks for no status report (as smsgw by default); it connects first and starts the loop when told.

The clock runs in this process from the hand-over to the moment the simulated network has the
whole batch (``network.jsonl``, polled every 5 ms). With ``--batches N`` each side takes N batches
one after the other (the next handed over once the network has the last), each timed on its own,
each to numbers of its own: the first batch is the cold start (a daemon just started on a new
store, whose WAL file grows through it; a loop just connected), the last one a side that has been
sending for a while (smsgw's WAL at its working size, as in a daemon that has run for a day). Sides
are interleaved round by round; the medians of the rounds are printed, for the first and the last
batch, with the ratio smsgw / peer (target: >= 1 against the bare python-gsmmodem-new loop). A peer
that is not installed is skipped with a note.

    python bench/send_peers.py [--messages 200] [--rounds 3] [--batches 1] [--sides smsgw,gsmmodem,gammu,smstools]
                               [--base DIR] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

GAMMU_SCHEMA = Path("/usr/share/doc/gammu-smsd/examples/sqlite.sql")
GSMMODEM_LOOP = """
import sys, time
import gsmmodem.modem
from gsmmodem.modem import GsmModem
# no status report requested, as smsgw sends by default: python-gsmmodem-new 0.13.0's sendSms
# (gsmmodem/modem.py) calls encodeSmsSubmitPdu (gsmmodem/pdu.py) with its default requestStatusReport=True,
# and each +CDSI then costs the loop an AT+CMGR and AT+CMGD (_handleSmsStatusReport); its reader
# thread times out once the simulator's report storage is full
encode = gsmmodem.modem.encodeSmsSubmitPdu
gsmmodem.modem.encodeSmsSubmitPdu = lambda *args, **kw: encode(*args, **{**kw, "requestStatusReport": False})
port, count, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
modem = GsmModem(port, 115200)
modem.smsTextMode = False
modem.timeout = 2  # a late answer under load is not a failure; a prompt one costs nothing
modem.connect()
print("ready", flush=True)
for batch in range(batches):  # each batch when told
    sys.stdin.readline()
    for n in range(batch * count, (batch + 1) * count):
        modem.sendSms(f"+4915{n:09d}", f"bench {n}")
modem.close()
"""


def texts(count: int, first: int = 0) -> list[tuple[str, str]]:
    return [(f"+4915{n:09d}", f"bench {n}") for n in range(first, first + count)]


def program(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


#: The rate between the moments the network had 10 % and 90 % of the batch (the last run's): the
#: send rate once under way, without the hand-over and the last message's exchange.
STEADY: list[float | None] = []


def timed_count(directory: Path) -> int:
    """The timed messages (to +4915...) the simulated network has seen: not the backlog's (+4916...)."""
    try:
        return (directory / "network.jsonl").read_bytes().count(b'"to": "+4915')
    except FileNotFoundError:
        return 0


def until_sent(sim_dir: Path, count: int, started: float, timeout: float, alive: Callable[[], None],
               counted: Callable[[Path], int] = harness.network_count, before: int = 0) -> float:
    """Seconds from ``started`` until the network has ``count`` SMS more than the ``before`` it had."""
    marks: dict[int, float] = {}
    while (seen := counted(sim_dir) - before) < count:
        alive()
        now = time.perf_counter()
        if now - started > timeout:
            raise TimeoutError(f"{count} SMS did not reach the network within {timeout:.0f} s")
        for share in (10, 90):
            if share not in marks and seen * 100 >= count * share:
                marks[share] = now
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    # one entry per batch (None: too few polls between the marks), so STEADY[0] is the first batch's
    STEADY.append(count * 0.8 / (marks[90] - marks[10])
                  if 10 in marks and 90 in marks and marks[90] > marks[10] else None)
    return elapsed


@contextlib.contextmanager
def group(command: list[str], log: Path, cwd: Path, **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    """A peer daemon in its own process group (smsd forks helpers), stopped with the group."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
                                   **kw)  # type: ignore[call-overload]
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


#: Another checkout (``--base``): its ``smsgw run`` is the side ``smsgw-base``, "before".
BASE: Path | None = None

ENQUEUE = """
import sys, time
from appliance.store import OutboundRequest, Store
with Store(sys.argv[1]) as store:
    if sys.argv[2].startswith("backlog:"):  # due low-priority messages, to numbers the timed ones do not use
        size = int(sys.argv[2].split(":")[1])
        for start in range(0, size, 10_000):
            store.enqueue([OutboundRequest(to=f"+4916{n:09d}", text=f"backlog {n}", source="bench", priority="low")
                           for n in range(start, min(size, start + 10_000))])
    elif sys.argv[2] != "create":
        first = int(sys.argv[3]) if len(sys.argv) > 3 else 0
        batch = [OutboundRequest(to=f"+4915{n:09d}", text=f"bench {n}", source="bench")
                 for n in range(first, first + int(sys.argv[2]))]
        print(time.perf_counter(), flush=True)  # the clock (CLOCK_MONOTONIC, as the bench process's)
        store.enqueue(batch)
"""


def enqueue(root: Path, db: Path, what: str, first: int = 0) -> float:
    """``Store.enqueue`` of the checkout under test (its schema) in a process of its own; the moment
    it started the commit. A batch's numbers start at ``first``."""
    done = subprocess.run([sys.executable, "-c", ENQUEUE, str(db), what, str(first)], check=True, cwd=root,
                          capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(root)})
    return float(done.stdout or 0.0)


#: ``--backlog``: the store with that many due low-priority messages queued, made once (untimed) and
#: copied for each round of the side ``smsgw-backlog``.
BACKLOG = 100_000
BACKLOG_STORE: Path | None = None
BACKLOG_DIR: Path | None = None


def backlog_store(directory: Path) -> Path:
    global BACKLOG_STORE
    if BACKLOG_STORE is None:
        BACKLOG_STORE = directory / f"backlog-{BACKLOG}.db"
        enqueue(harness.UNDER_TEST, BACKLOG_STORE, f"backlog:{BACKLOG}")
        with sqlite3.connect(BACKLOG_STORE) as conn:  # one file to copy: the WAL checkpointed into it
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return BACKLOG_STORE


def run_smsgw(work: Path, port: str, count: int, batches: int, root: Path | None = None,
              backlog: Path | None = None) -> list[float]:
    root = root or harness.UNDER_TEST
    (work / "gw").mkdir(parents=True)
    if backlog is not None:
        shutil.copyfile(backlog, work / "gw" / "smsgw.db")
    else:
        enqueue(root, work / "gw" / "smsgw.db", "create")  # the schema exists before two processes open the file
    under_test, harness.UNDER_TEST = harness.UNDER_TEST, root
    try:
        running = harness.daemon(work / "gw", [port], None)
        daemon = running.__enter__()
    finally:
        harness.UNDER_TEST = under_test
    try:
        def alive() -> None:
            if daemon.process.poll() is not None:
                raise RuntimeError("smsgw run exited")

        seconds = []
        for batch in range(batches):
            started = enqueue(root, daemon.db, str(count), batch * count)
            # with a backlog the daemon is sending it when the batch arrives: the batch (normal
            # priority) goes ahead of it, and only the batch's messages are counted
            seconds.append(until_sent(work / "sim", count, started, 120 + count, alive,
                                      harness.network_count if backlog is None else timed_count,
                                      before=batch * count))
        return seconds
    finally:
        running.__exit__(None, None, None)


def run_smsgw_backlog(work: Path, port: str, count: int, batches: int) -> list[float]:
    assert BACKLOG_DIR is not None
    return run_smsgw(work, port, count, batches, backlog=backlog_store(BACKLOG_DIR))


def run_smsgw_base(work: Path, port: str, count: int, batches: int) -> list[float]:
    assert BASE is not None
    return run_smsgw(work, port, count, batches, BASE)


def run_gsmmodem(work: Path, port: str, count: int, batches: int) -> list[float]:
    process = subprocess.Popen([sys.executable, "-c", GSMMODEM_LOOP, port, str(count), str(batches)],
                               stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=(work / "gsmmodem.log").open("wb"))
    try:
        assert process.stdout is not None and process.stdin is not None
        if process.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"python-gsmmodem-new did not connect: {(work / 'gsmmodem.log').read_text()[-800:]}")

        def alive() -> None:
            if process.poll() not in (None, 0):
                raise RuntimeError(f"the loop failed: {(work / 'gsmmodem.log').read_text()[-800:]}")

        seconds = []
        for batch in range(batches):
            started = time.perf_counter()
            process.stdin.write(b"go\n")
            process.stdin.flush()
            seconds.append(until_sent(work / "sim", count, started, 120 + count, alive, before=batch * count))
        return seconds
    finally:
        harness.stop(process)


def gammu_spool(spool: Path, port: str) -> Path:
    """``spool/smsd.db`` with the schema gammu ships and ``spool/smsdrc`` for its SQL backend
    (sqlite3 through libdbi) with the fastest settings; the config's path (bench/inject_peers.py
    gives it to gammu-smsd-inject)."""
    spool.mkdir(parents=True)
    db = spool / "smsd.db"
    conn = sqlite3.connect(db)
    conn.executescript(GAMMU_SCHEMA.read_text())
    conn.close()
    (spool / "smsdrc").write_text(
        f"[gammu]\ndevice = {port}\nconnection = at\n"
        "[smsd]\nservice = sql\ndriver = sqlite3\nsql = sqlite\n"
        f"database = {db.name}\ndbdir = {spool}/\nlogfile = {spool / 'smsd.log'}\ndebuglevel = 0\n"
        "PhoneID = bench\nLoopSleep = 0\nCommTimeout = 0\nStatusFrequency = 0\nReceiveFrequency = 3600\n"
        "CheckSecurity = 0\nCheckBattery = 0\nCheckSignal = 0\nCheckNetwork = 0\nDeliveryReport = no\n")
    return spool / "smsdrc"


def run_gammu(work: Path, port: str, count: int, batches: int) -> list[float]:
    spool = work / "gammu"
    gammu_spool(spool, port)
    db = spool / "smsd.db"
    with group([str(program("gammu-smsd")), "-c", str(spool / "smsdrc")], spool / "stdout.log", spool) as smsd:
        reader = sqlite3.connect(db, timeout=30)

        def connected() -> bool:
            if smsd.poll() is not None:
                raise RuntimeError(f"gammu-smsd exited: {(spool / 'smsd.log').read_text()[-800:]}")
            return bool(reader.execute("SELECT COUNT(*) FROM phones").fetchone()[0])

        harness.wait_until(connected, 60, interval=0.05, what="gammu-smsd to register its phone")

        def alive() -> None:
            if smsd.poll() is not None:
                raise RuntimeError(f"gammu-smsd exited: {(spool / 'smsd.log').read_text()[-800:]}")

        seconds = []
        for batch in range(batches):
            with reader:
                reader.executemany("INSERT INTO outbox (DestinationNumber, TextDecoded, CreatorID, Coding) "
                                   "VALUES (?, ?, 'bench', 'Default_No_Compression')", texts(count, batch * count))
                started = time.perf_counter()
            seconds.append(until_sent(work / "sim", count, started, 120 + count, alive, before=batch * count))
        reader.close()
        return seconds


def run_smstools(work: Path, port: str, count: int, batches: int) -> list[float]:
    spool = work / "smstools"
    folders = {name: spool / name for name in ("outgoing", "checked", "failed", "incoming", "sent")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    staging = spool / "staging"
    staging.mkdir()
    (spool / "smsd.conf").write_text(
        "devices = GSM1\n" + "".join(f"{name} = {folder}\n" for name, folder in folders.items())
        + f"logfile = {spool / 'smsd.log'}\ninfofile = {spool / 'smsd.working'}\npidfile = {spool / 'smsd.pid'}\n"
        "loglevel = 5\ndelaytime = 1\ndelaytime_mainprocess = 1\nsleeptime_mainprocess = 1\n"
        "trust_outgoing = yes\nspool_directory_order = yes\n"
        f"\n[GSM1]\ndevice = {port}\nbaudrate = 115200\nincoming = no\ncheck_network = 0\n")
    def staged(batch: int) -> list[Path]:
        files = []
        for n, (to, text) in enumerate(texts(count, batch * count), start=batch * count):
            path = staging / f"bench{n:06d}"
            path.write_text(f"To: {to.lstrip('+')}\n\n{text}\n")
            files.append(path)
        return files

    with group([str(program("smsd")), "-t", "-c", str(spool / "smsd.conf")], spool / "stdout.log", spool) as smsd:
        def ready() -> bool:
            if smsd.poll() is not None:
                raise RuntimeError(f"smsd exited: {(spool / 'smsd.log').read_text()[-800:]}")
            log = spool / "smsd.log"
            return log.exists() and "Waiting for messages to send" in log.read_text(errors="replace")

        harness.wait_until(ready, 60, interval=0.05, what="smsd to open the modem")

        def alive() -> None:
            if smsd.poll() is not None:
                raise RuntimeError("smsd exited")

        seconds = []
        for batch in range(batches):
            files = staged(batch)  # written before the clock starts, as the first batch's
            started = time.perf_counter()
            for path in files:
                path.rename(folders["outgoing"] / path.name)
            seconds.append(until_sent(work / "sim", count, started, 120 + count * 2, alive, before=batch * count))
        return seconds


SIDES: dict[str, tuple[str, Callable[[Path, str, int, int], list[float]], Callable[[], str | None]]] = {
    "smsgw": ("smsgw run", run_smsgw, lambda: None),
    "smsgw-base": ("smsgw run, before (--base)", run_smsgw_base,
                   lambda: None if BASE is not None else "no --base checkout given"),
    "smsgw-backlog": ("smsgw run, a backlog queued behind", run_smsgw_backlog, lambda: None),
    "gsmmodem": ("python-gsmmodem-new sendSms loop", run_gsmmodem,
                 lambda: None if _importable("gsmmodem") else "python-gsmmodem-new is not installed"),
    "gammu": ("gammu-smsd, SQL backend (sqlite3)", run_gammu,
              lambda: None if program("gammu-smsd") and GAMMU_SCHEMA.exists() and _dbd_sqlite3()
              else "gammu-smsd or libdbd-sqlite3 is not installed"),
    "smstools": ("smstools3 smsd", run_smstools, lambda: None if program("smsd") else "smsd is not installed"),
}


def _importable(module: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def _dbd_sqlite3() -> bool:
    return any(Path("/usr/lib").glob("*/dbd/libdbdsqlite3.so")) or Path("/usr/lib/dbd/libdbdsqlite3.so").exists()


def one(side: str, count: int, batches: int = 1) -> tuple[list[float], float | None]:
    """(msgs/s of each batch from its hand-over to the whole batch at the network, the first
    batch's steady rate or None)."""
    STEADY.clear()
    with tempfile.TemporaryDirectory(prefix=f"smsgw-peers-{side}-") as tmp:
        work = Path(tmp)
        with harness.simulator(work / "sim", 1) as ports:
            seconds = SIDES[side][1](work, ports[0], count, batches)
    return [count / s for s in seconds], STEADY[0]


def available(wanted: list[str], table: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The sides of ``wanted`` whose check (the third item of their entry in ``table``) finds what
    they need, and why each other one is skipped."""
    sides: list[str] = []
    skipped: dict[str, str] = {}
    for side in wanted:
        missing = table[side][2]()
        if missing:
            skipped[side] = missing
        else:
            sides.append(side)
    return sides, skipped


def main() -> None:
    global BASE, BACKLOG, BACKLOG_DIR
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sides", default=",".join(side for side in SIDES if side != "smsgw-base"),
                        help="comma-separated, of " + ", ".join(SIDES) + " (smsgw-base: with --base)")
    parser.add_argument("--base", type=Path, help="another checkout; adds its smsgw run as the side smsgw-base")
    parser.add_argument("--backlog", type=int, default=BACKLOG,
                        help="messages queued behind the batch for the side smsgw-backlog (default %(default)s)")
    parser.add_argument("--batches", type=int, default=1,
                        help="batches of --messages each side sends one after the other, each timed (default 1)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    BACKLOG = args.backlog
    if args.base is not None:
        BASE = args.base.resolve()
        if "smsgw-base" not in args.sides.split(","):
            args.sides += ",smsgw-base"
    sides, skipped = available(args.sides.split(","), SIDES)
    names = {side: SIDES[side][0] for side in SIDES}
    names["smsgw-backlog"] = f"smsgw run, {BACKLOG:,} low-priority queued behind"
    rates: dict[str, list[float]] = {side: [] for side in sides}
    later: dict[str, list[float]] = {side: [] for side in sides}  # the last batch's, with --batches > 1
    steady: dict[str, list[float]] = {side: [] for side in sides if side.startswith("smsgw")}
    with tempfile.TemporaryDirectory(prefix="smsgw-peers-backlog-") as backlog_dir:
        BACKLOG_DIR = Path(backlog_dir)
        for round_no in range(args.rounds):
            for side in sides:
                batch_rates, steady_rate = one(side, args.messages, args.batches)
                rates[side].append(batch_rates[0])
                if args.batches > 1:
                    later[side].append(batch_rates[-1])
                if side in steady and steady_rate is not None:
                    steady[side].append(steady_rate)
                print(f"  round {round_no + 1} {side}: {', '.join(f'{r:.1f}' for r in batch_rates)} msgs/s "
                      f"(first batch's steady {steady_rate or 0:.1f})", file=sys.stderr, flush=True)
    medians = {side: statistics.median(values) for side, values in rates.items()}
    result = {"messages": args.messages, "rounds": args.rounds, "batches": args.batches, "rates": rates,
              "medians": medians, "names": names, "skipped": skipped, "backlog": BACKLOG,
              "steady": {side: statistics.median(values) for side, values in steady.items() if values}}
    if args.batches > 1:
        result["later_rates"] = later
        result["later_medians"] = {side: statistics.median(values) for side, values in later.items()}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.messages} messages per batch, one simulated modem, median of {args.rounds} interleaved rounds")
    tables = [("first batch", medians)]
    if args.batches > 1:
        tables.append((f"batch {args.batches}", result["later_medians"]))
    for title, table in tables:
        print(f"{title:<45} {'msgs/s':>8} {'smsgw / side':>12}")
        for side in sides:
            ratio = table.get("smsgw", float("nan")) / table[side]
            print(f"{names[side]:<45} {table[side]:>8.1f} {ratio:>12.2f}")
    steady_medians = result["steady"]
    assert isinstance(steady_medians, dict)
    if "smsgw" in steady_medians and "smsgw-backlog" in steady_medians:
        print(f"steady send rate (10-90 % of the batch) with {BACKLOG:,} queued: "
              f"{steady_medians['smsgw-backlog']:.1f} msgs/s, with none: {steady_medians['smsgw']:.1f}; ratio "
              f"{steady_medians['smsgw-backlog'] / steady_medians['smsgw']:.2f} (target >= 0.9)")
    for side, why in skipped.items():
        print(f"{SIDES[side][0]}: skipped ({why})")


if __name__ == "__main__":
    main()
