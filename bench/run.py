"""Run every benchmark, side by side in one run, and write docs/benchmarks.md.

    python bench/run.py [--base CHECKOUT] [--quick] [--no-setup] [--only SECTION,...] [--out docs/benchmarks.md]

First ``bash .ci/setup`` installs what the peers need (mosquitto, gammu-smsd, smstools, libdbd-sqlite3
for gammu-smsd's SQL backend, python-gsmmodem-new in .venv) and stops and disables the services the
peer packages bring (it says what it installs). Then each benchmark script runs in its own process,
one after the other, and the figures it prints go into the document with the command that gives
them: medians over interleaved rounds, each side timed in its own process (see each script's
docstring). ``--base`` is another checkout (``git worktree add --detach /tmp/base <commit>``): the
idle wake-ups and the CLI start-up are then measured for it too, as "before". ``--quick`` runs
fewer rounds and smaller batches (a smoke test of the scripts, not figures to publish).
``--only send_peers,latency`` runs those sections alone and replaces them, and their rows of the
Targets table, in the existing document, adding a line that says which run wrote them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
NOTES = """Every target is met in this run. `SMSGW_BENCH_PROFILE=FILE` runs `smsgw run` under cProfile in any
of the daemon benchmarks; py-spy on its pid shows paho's thread too.

Targets met in the last rounds of work, and what it took:

- **send against a loop that stores nothing**: no send waits for the disk on the event loop: the
  TP-MR commits without fsync while the next `AT+CMGS` waits for its prompt, `WalSync` fdatasyncs
  the WAL in a thread of its own (woken by a lock per commit; it wakes the loop only for a wait it
  has not yet covered), the next message is claimed while the network takes the PDU, and the WAL's
  checkpoints run in a thread too (`WalCheckpointer`, docs/store.md); a daemon without `[mqtt]`
  writes no event rows. The last steps: schema 15, after which a single-part send writes 13 pages
  to the WAL where it wrote 16 (`part_unsent` and `part_report` no longer take every part at its
  claim), and no `PRAGMA synchronous` between the dispatcher's unsynced commits (four statements a
  send). Side by side (`send_peers.py --base`, 7 rounds, 2026-12-03 on the machine of this run) they
  took the first batch from 918 to 1,068 msgs/s and the second from 1,025 to 1,088 (the bare loop:
  965 and 974): fewer pages weigh most while the WAL file still grows, when each fdatasync also
  commits its new size. smsgw is bound by the CPU of its event loop (two commits and their WAL
  writes, the AT exchange: about 0.8 ms a message here), the bare loop by the modem's answers, so
  the ratio moves with the machine: 0.85 on the Intel Xeon machine of the run of 2026-12-03 09:11
  (one batch, as the first here), before the last steps. One fdatasync per message is what "the TP-MR before last
  is on disk before the next PDU" takes at this rate (a power cut takes back at most two parts per
  modem, docs/store.md); a sync covering two TP-MRs would halve them (+7-11 %) at the price of a
  third part, and was left out. A real modem takes 2-5 s per SMS, where this is 0.1 %.

- **send rate with 100,000 queued**: every query on the send path walks an index
  (`test_store_plans.py`; `bench/backlog.py` shows the claim flat at 0.2 ms). What had kept the
  ratio under 0.9 was the daemon's first retention run: without `[mqtt]` it deletes the events the
  backlog's enqueue wrote (100,000 rows, 200 batches), and each batch's commit waited for an fsync
  on the event loop in the middle of the sends; the retention's commits are no longer fsync'ed one
  by one (its closing checkpoint syncs them).
- **MQTT ingest**: the commit is one fsync per batch. paho's socket is read up to 64 KiB at a time,
  a PUBLISH without properties is decoded without paho's per-message objects, pending events and a
  batch's PUBACKs are written to paho's queue as one packet each (`appliance/mqtt_client.py`), and
  the request checks read the opt-out list once per batch (docs/mqtt.md); schema 14 writes 3 index
  entries per queued message where it wrote 7. mosquitto_sub's own rate moves between 7,000 and
  19,000 a second from round to round on this shared machine, so the ratio moves with it.
- **`smsgw send` and `status` in 60 ms**: they do not build dataclasses (`appliance.frozen`), import
  logging until they log, load the PDU codec and the national shift tables, import `typing` (each
  module's `TYPE_CHECKING = False`), or, after the first run on a config, parse it (the tables come
  from `appliance.config_cache`, so no tomllib); they open the store as the table groups they use
  (`store_cli.QueueStore`, `store_alerts.StatusStore`), and the cycle collector is off while a
  command's modules are imported (callgrind: `send` from 432 to 152 million instructions, `status`
  147). What is left is mostly the interpreter and the standard modules `send` still needs (the
  `floor` row of `bench/cli_start.py`): `pathlib` with `urllib.parse` and `ipaddress` about 17
  million instructions, for the config's and the store's paths; `locale` 5 (gettext's, when argparse
  builds its first parser).
"""
MEMORY_NOTES = """Where the memory went, from `/proc/PID/smaps`, glibc's `mallinfo2()`, `sqlite3_memory_used()`
and a count of the live objects by type in the running daemon:

- **The burst was held in memory as paho objects.** mosquitto 2.0.11 (Debian 12's) does not keep to
  the Receive Maximum (500) the bridge asks for: after every PUBACK it sends up to that many more
  (eclipse-mosquitto/mosquitto#2301; a client that acknowledges 10 messages gets 300 more), so
  6,000-9,000 requests of a 10,000 burst sat in the bridge waiting for the event loop, each a paho
  `MQTTMessage` with its `MQTTMessageInfo` (a `Condition`, an `RLock`, a `deque`) and an MQTT 5
  `Properties` object that carries tables of every property name (about 5 KiB a request). Now paho's
  network thread stops reading the socket while 500 received messages wait for the loop (TCP keeps
  the rest at the broker; `read_pauses` in `bridge/info` counts the waits), and a received message
  keeps only the three properties the bridge reads.
- **Not threads or arenas**: the daemon runs two threads (the event loop and paho's), so glibc has
  two malloc arenas; `MALLOC_ARENA_MAX=1` or `2` changed the peak by less than 0.1 MiB. The systemd
  unit sets `MALLOC_ARENA_MAX=2` all the same, for the HTTP API's executor threads.
- **SQLite** used 2.6 MiB at most (its page cache, 2 MB by default); the daemon's connection now has
  a 1 MiB page cache.
- **At ready** about 13 MiB of the RSS are shared library pages (libpython, libcrypto for paho's
  `ssl` and `hashlib`, libc, libsqlite3) and about 21 MiB the Python heap of about 300 modules.
"""


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return (f"{os.cpu_count()} CPU(s) ({model}), Linux {platform.release()}, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}; commit {commit}; started {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
            f" at a load average of {os.getloadavg()[0]:.1f}")


def run(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 3600) -> tuple[str, float]:
    """A benchmark script in its own interpreter: its standard output and how long it took."""
    command = [sys.executable, str(BENCH / script), *args]
    print(f"run.py: {' '.join(['python', f'bench/{script}', *args])}", file=sys.stderr, flush=True)
    start = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if done.returncode:
        raise RuntimeError(f"bench/{script} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout, time.monotonic() - start


def last_json(output: str) -> Any:
    return json.loads(output.strip().splitlines()[-1])


def json_lines(output: str) -> list[Any]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def code(text: str) -> str:
    return "```\n" + text.rstrip() + "\n```\n"


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


Summary = list[tuple[str, str, str, str]]  # (what, target, figure, met)


class Run:
    """One run's settings; each section below runs its benchmark(s) and returns its rows of the
    Targets table and its section of the document."""

    def __init__(self, quick: bool, base: Path | None) -> None:
        self.quick = quick
        self.base = base
        self.base_env = {"SMSGW_BENCH_ROOT": str(base.resolve())} if base else None


def section_stats(r: Run) -> tuple[Summary, str]:
    sizes = "0,10000,100000" if r.quick else "0,100000,1000000"
    out, _ = run("stats.py", "--sizes", sizes, "--rounds", "5" if r.quick else "21", "--json")
    rows = json_lines(out)
    top = rows[-1]
    summary = [(f"`Store.stats()` at {top['rows']:,} rows of history", "<= 5 ms",
                f"{top['stats_ms']:.3f} ms (COUNT(*) queries: {top['before_ms']:.1f} ms)", met(top["stats_ms"] <= 5))]
    table = ["| history rows | `Store.stats()` ms | the COUNT(*) queries it replaced, ms | `smsgw status --json` ms |",
             "|---:|---:|---:|---:|"]
    table += [f"| {r['rows']:,} | {r['stats_ms']:.3f} | {r['before_ms']:.2f} | {r['status_ms']:.1f} |" for r in rows]
    return summary, ("## History scaling: `Store.stats()`\n\n    python bench/stats.py --sizes " + sizes + "\n\n"
                     "Finished messages over 30 days (a part, a published event each; a received message per ten),"
                     " medians; both query sets in the same process, interleaved. `stats()` reads the counters"
                     " kept by triggers (schema 8) and indexes only. `smsgw status` is its own interpreter"
                     " (its start-up is most of it).\n\n" + "\n".join(table) + "\n")


def section_backlog(r: Run) -> tuple[Summary, str]:
    out, _ = run("backlog.py", "--messages", "100" if r.quick else "300", *(["--sizes", "0,10000"] if r.quick else []))
    held_args = ["--sizes", "0,10000" if r.quick else "0,10000,50000", "--claims", "50" if r.quick else "200"]
    held, _ = run("held_claim.py", *held_args)
    held_before = run("held_claim.py", *held_args, env=r.base_env)[0] if r.base_env else None
    claims = [float(line.split()[1]) for line in held.splitlines() if line.strip()[:1].isdigit()]
    summary: Summary = [("claim with held messages ahead (send_at, backoff), most / fewest held", "flat",
                         f"{claims[-1]:.2f} / {claims[0]:.2f} ms", met(claims[-1] <= 2 * claims[0] + 0.1))]
    text = ("## Backlog scaling (send path)\n\n    python bench/backlog.py\n\n" + code(out)
            + "\nMessages held for later (`send_at`, a retry's backoff) ahead of a due one in the claim order:\n\n"
            "    python bench/held_claim.py" + (" # before: SMSGW_BENCH_ROOT=/tmp/base" if r.base else "") + "\n\n"
            + code(held) + ("\nBefore:\n\n" + code(held_before) if held_before else ""))
    return summary, text


def section_idle(r: Run) -> tuple[Summary, str]:
    idle_args = ["--rounds", "1" if r.quick else "3", "--seconds", "5" if r.quick else "10", "--json"]
    after = last_json(run("idle.py", *idle_args)[0])
    before = last_json(run("idle.py", *idle_args, env=r.base_env)[0]) if r.base_env else None
    lines = ["| daemon | wake-ups/s before | after | CPU ms/s before | after | `smsgw send` -> network ms after |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, row in after.items():
        old = before[name] if before else None
        lines.append(f"| {name} | {old['wakeups_per_s']:.1f} | " if old else f"| {name} | - | ")
        lines[-1] += (f"{row['wakeups_per_s']:.1f} | {old['cpu_ms_per_s']:.2f} | " if old
                      else f"{row['wakeups_per_s']:.1f} | - | ")
        lines[-1] += f"{row['cpu_ms_per_s']:.2f} | {row['send_to_network_ms']:.0f} |"
    summary = [("idle wake-ups of `smsgw run` (no MQTT)", "no 0.1 s poll",
                f"{after['without mqtt']['wakeups_per_s']:.1f}/s"
                + (f" (before {before['without mqtt']['wakeups_per_s']:.1f}/s)" if before else ""),
                met(after["without mqtt"]["wakeups_per_s"] < 1))]
    return summary, ("## Idle wake-ups\n\n    python bench/idle.py" + ("  # before: SMSGW_BENCH_ROOT=/tmp/base" if before
                     else "") + "\n\nVoluntary context switches of all the daemon's threads over an idle window,"
                     " per second, and its CPU time; then `smsgw send` from a shell, until the SMS is at the"
                     " simulated network (the daemon notices the other process's commit; the CLI's own start-up"
                     " is most of it). With MQTT, paho's network thread wakes once a second (its select timeout)"
                     " and the event publisher polls once a second.\n\n" + "\n".join(lines) + "\n")


def section_mqtt_ingest(r: Run) -> tuple[Summary, str]:
    ingest: list[tuple[str, dict[str, Any]]] = []
    args = ["--count", "2000" if r.quick else "5000", "--rounds", "2" if r.quick else "5", "--json"]
    for protocol in ("5", "3.1.1"):
        if r.base_env:  # before and after, one after the other, MQTT 5 first
            ingest.append(("before", last_json(run("mqtt_ingest.py", "--protocol", protocol, *args, env=r.base_env)[0])))
        ingest.append(("after" if r.base_env else "", last_json(run("mqtt_ingest.py", "--protocol", protocol, *args)[0])))
    first = ", before and after" if r.base_env else ""
    lines = [f"| MQTT{first} | mosquitto_sub reads /s | smsgw run commits /s | ratio | median of per-round ratios |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {i['protocol']}{' ' + side if side else ''} | {i['mosquitto_sub']:,.0f} | {i['smsgw']:,.0f} | "
              f"{i['ratio']:.2f} | {i['ratio_of_rounds']:.2f} |" for side, i in ingest]
    now = next(i for side, i in ingest if side != "before")
    summary = [("MQTT 5 ingest, smsgw / mosquitto_sub", ">= 0.5", f"{now['ratio']:.2f}"
                + "".join(f" (before {i['ratio']:.2f})" for side, i in ingest[:1] if side == "before"),
                met(now["ratio"] >= 0.5))]
    return summary, ("## MQTT ingest\n\n    python bench/mqtt_ingest.py --protocol 5   # and --protocol 3.1.1"
                     + ("; before: SMSGW_BENCH_ROOT=/tmp/base" if r.base_env else "") + "\n\n"
                     f"{now['count']} QoS 1 requests per round from `mosquitto_pub -l`, median of "
                     f"{now['rounds']} rounds; mosquitto, `smsgw run`, the simulator and mosquitto_sub each"
                     " in their own process, the clock in the bench process (mosquitto_sub's exit; the newest"
                     " committed message id, read-only)"
                     + (", the before of each protocol right before its after" if r.base_env else "")
                     + ".\n\n" + "\n".join(lines) + "\n")


def section_inject_peers(r: Run) -> tuple[Summary, str]:
    args = ["--messages", "30" if r.quick else "200", "--mqtt-count", "2000" if r.quick else "5000",
            "--rounds", "1" if r.quick else "3"]
    peers = last_json(run("inject_peers.py", *args, "--json")[0])
    medians, ratios, syncs = peers["medians"], peers["ratios"], peers["syncs"]
    lines = ["| side | msgs/s (median) | rounds | side / gammu-smsd-inject | fsync + fdatasync per command |",
             "|---|---:|---|---:|---:|"]
    for side, rate in medians.items():
        ratio = f"{ratios[side]:.2f}" if side in ratios else "-"
        per_command = f"{syncs[side]:.1f}" if side in syncs else "-"
        lines.append(f"| {peers['names'][side]} | {rate:,.1f} | {', '.join(f'{r:,.1f}' for r in peers['rates'][side])}"
                     f" | {ratio} | {per_command} |")
    lines += [f"| {peers['names'][side]} | skipped: {why} | | | |" for side, why in peers["skipped"].items()]
    summary: Summary = []
    if "smsgw" in ratios and "gammu" in medians:
        daemon = f" (with `smsgw run` holding the store: {ratios['smsgw-daemon']:.2f})" if "smsgw-daemon" in ratios else ""
        summary.append(("one command per message into the store, `smsgw send` / gammu-smsd-inject",
                        "none (side by side)", f"{ratios['smsgw']:.2f}{daemon}", "measured"))
    return summary, ("## Ingest against gammu-smsd-inject\n\n    python bench/inject_peers.py " + " ".join(args)
                     + "\n\n"
                     f"A shell script of {peers['messages']} commands, one message each, as a user's script queues"
                     " them, timed from its spawn to its exit; each side on a fresh store, median of"
                     f" {peers['rounds']} interleaved rounds (settings in the script's docstring); the rows are"
                     " counted in the store afterwards. gammu-smsd-inject writes gammu-smsd's SQL backend"
                     " (sqlite3 through libdbd-sqlite3, with SQLite's defaults: a rollback journal,"
                     " `synchronous=FULL`), one transaction per command; no gammu-smsd runs. `smsgw send` is the"
                     " console script on an interpreter as pip installs the wheel (no editable-install hook, the"
                     " byte code compiled beforehand); it commits once per command, fsync'ed: the enqueue."
                     " Without a daemon each command also creates the WAL and checkpoints it at its close; with"
                     " `smsgw run` holding the store (one simulated modem at 3 s per SMS) it does not. The fsync"
                     " and fdatasync calls are `strace -f -c` of 5 more commands after the first round,"
                     " untimed. The last row is the same store fed over MQTT (bursts of"
                     f" {peers['mqtt_count']:,} QoS 1 requests from `mosquitto_pub -l`, committed in batches), for"
                     " reference.\n\n" + "\n".join(lines) + "\n")


def section_send_peers(r: Run) -> tuple[Summary, str]:
    # the daemons that poll (gammu-smsd, smstools3: a few messages a second) in a shorter run of
    # their own, each against smsgw's rate in that run
    # two batches per side: the first from a cold start, the second after it (smsgw's WAL grown)
    out, _ = run("send_peers.py", "--sides", "smsgw,gsmmodem,smsgw-backlog", "--messages", "100" if r.quick else "500",
                 "--rounds", "1" if r.quick else "5", "--batches", "2", *(["--base", str(r.base)] if r.base else []),
                 "--json")
    peers = last_json(out)
    slow_out, _ = run("send_peers.py", "--sides", "smsgw,gammu,smstools", "--messages", "20" if r.quick else "100",
                      "--rounds", "1" if r.quick else "3", "--json")
    slow = last_json(slow_out)
    medians, later = peers["medians"], peers.get("later_medians", {})
    lines = ["| sender | messages per batch | first batch: msgs/s (median) | rounds | smsgw / it "
             "| second batch: msgs/s (median) | rounds | smsgw / it |", "|---|---:|---:|---|---:|---:|---|---:|"]

    def columns(rates: list[float], rate: float, smsgw: float) -> str:
        return f"{rate:.1f} | {', '.join(f'{v:.1f}' for v in rates)} | {smsgw / rate:.2f}"

    for run_result in (peers, slow):
        for side, rate in run_result["medians"].items():
            if run_result is slow and side == "smsgw":
                continue
            label = run_result["names"][side] + (" (its run's smsgw: "
                                                 f"{slow['medians']['smsgw']:.1f} msgs/s)" if run_result is slow else "")
            first = columns(run_result["rates"][side], rate, run_result["medians"].get("smsgw", float("nan")))
            second = (columns(run_result["later_rates"][side], run_result["later_medians"][side],
                              run_result["later_medians"].get("smsgw", float("nan")))
                      if side in run_result.get("later_medians", {}) else "| |")
            lines.append(f"| {label} | {run_result['messages']} | {first} | {second} |")
        lines += [f"| {run_result['names'][side]} | | skipped: {why} | | | | | |"
                  for side, why in run_result["skipped"].items()]
    summary: Summary = []
    if "gsmmodem" in medians and "smsgw" in medians:
        ratios = [table["smsgw"] / table["gsmmodem"] for table in (medians, later) if "smsgw" in table]
        before = (" (before " + " / ".join(f"{table['smsgw-base'] / table['gsmmodem']:.2f}" for table in (medians, later)
                                           if "smsgw-base" in table) + ")" if "smsgw-base" in medians else "")
        summary.append(("send, smsgw / bare python-gsmmodem-new loop (first batch / second batch)", ">= 1",
                        " / ".join(f"{ratio:.2f}" for ratio in ratios) + before, met(min(ratios) >= 1)))
    steady = peers.get("steady", {})
    if "smsgw" in steady and "smsgw-backlog" in steady:
        ratio = steady["smsgw-backlog"] / steady["smsgw"]
        summary.append((f"send rate with {peers['backlog']:,} queued / with none (`smsgw run`, steady)", ">= 0.9",
                        f"{ratio:.2f} ({steady['smsgw-backlog']:.0f} / {steady['smsgw']:.0f} msgs/s)",
                        met(ratio >= 0.9)))
    summary.append(("transactions per single-part send", "<= 2",
                    "2 (claim with its parts; the TP-MR), one fdatasync of the WAL in a thread (`WalSync`)",
                    "met (`tests/test_send_commits.py`)"))
    return summary, ("## Send against the peers\n\n    python bench/send_peers.py --sides smsgw,gsmmodem,smsgw-backlog"
                     + f" --messages {peers['messages']} --rounds {peers['rounds']} --batches {peers['batches']}"
                     + (" --base /tmp/base" if r.base else "")
                     + f"\n    python bench/send_peers.py --sides smsgw,gammu,smstools --messages {slow['messages']}"
                     + f" --rounds {slow['rounds']}\n\n"
                     f"Single-part messages, each side on a fresh `smsgw simulate` modem answering at once, median"
                     " of interleaved rounds (settings in the script's docstring). Each side of the first run"
                     " takes two batches one after the other, each timed from its hand-over: the first from a"
                     " cold start (the daemon just started on a new store, whose WAL file grows through it; the"
                     " loop just connected), the second once the first is out (the WAL at its working size, as"
                     " in a daemon that has been running); the polling daemons take one. smsgw commits twice per send, the claim and the TP-MR, neither fsync'ed on"
                     " the event loop: `WalSync` fdatasyncs the WAL in a thread, and a modem's next PDU waits"
                     " for the sync of its TP-MR before last (docs/store.md); the WAL's checkpoints run in a"
                     " thread (`WalCheckpointer`); the bare python-gsmmodem-new loop stores nothing. The side"
                     f" with {peers['backlog']:,} low-priority messages queued behind the batch is sending that"
                     " backlog when the batch arrives (the batch goes first: normal priority); its steady rate,"
                     " between the moments the network had 10 % and 90 % of the batch, against the same of the"
                     " side without a backlog is the backlog target (medians):"
                     + "".join(f" {peers['names'][side]} {rate:.1f} msgs/s;" for side, rate in steady.items())
                     + "\n\n" + "\n".join(lines) + "\n")


def section_memory(r: Run) -> tuple[Summary, str]:
    size = ["--count", "2000" if r.quick else "10000", "--batches", "1" if r.quick else "2", "--json"]
    runs = {store: last_json(run("memory.py", *size, "--store", store)[0]) for store in ("existing", "new")}
    memory = runs["existing"]
    summary = [(f"peak RSS, 4 modems, {memory['count'] * memory['batches']:,} messages through MQTT 5",
                "<= 40 MiB", f"{memory['peak_mib']:.1f} MiB (a new store: {runs['new']['peak_mib']:.1f} MiB)",
                met(memory["peak_mib"] <= 40))]
    rows = "".join(
        f"| {'migrated beforehand' if store == 'existing' else 'new (the daemon migrates it)'} | "
        f"{m['ready_mib']:.1f} MiB | " + ", ".join(f"{v:.1f}" for v in m["after_mib"])
        + f" MiB | {m['peak_mib']:.1f} MiB | {m['cpu_s_per_1000']:.2f} s | {m['msgs_per_s']:.0f} |\n"
        for store, m in runs.items())
    return summary, ("## Memory and CPU\n\n    python bench/memory.py --store existing\n    python bench/memory.py"
                     " --store new\n\n"
                     f"`smsgw run` with {memory['modems']} simulated modems, MQTT 5, {memory['batches']} burst(s) of"
                     f" {memory['count']:,} requests (each sent to the simulated network before the next). The"
                     " store is migrated beforehand, as on every start of an appliance but its first; on a new"
                     " store the daemon runs the migrations in a short-lived child process (docs/store.md), so it never"
                     " imports sqlite-utils:\n\n"
                     "| store | RSS at ready | RSS after each burst | peak (VmHWM) | CPU per 1,000 messages |"
                     " msgs/s end to end |\n|---|---:|---:|---:|---:|---:|\n" + rows + "\n" + MEMORY_NOTES)


def section_http_ingest(r: Run) -> tuple[Summary, str]:
    http_args = ["--count", "1000" if r.quick else "3000", "--rounds", "2" if r.quick else "5"]
    ingest_http = last_json(run("http_ingest.py", *http_args, "--json")[0])
    lines = ["| round | MQTT committed/s | HTTP committed/s | ratio |", "|---:|---:|---:|---:|"]
    lines += [f"| {n} | {m:,.0f} | {h:,.0f} | {h / m:.2f} |"
              for n, (m, h) in enumerate(zip(ingest_http["mqtt"], ingest_http["http"], strict=True), 1)]
    lines.append(f"| median | {ingest_http['mqtt_median']:,.0f} | {ingest_http['http_median']:,.0f} | "
                 f"{ingest_http['ratio']:.2f} (per-round median {ingest_http['ratio_of_rounds']:.2f}) |")
    summary = [("HTTP ingest, HTTP / MQTT committed requests/s", ">= 0.5", f"{ingest_http['ratio']:.2f}",
                met(ingest_http["ratio"] >= 0.5))]
    total = ingest_http["count"] * ingest_http["rounds"]
    return summary, ("## HTTP ingest\n\n    python bench/http_ingest.py " + " ".join(http_args) + "\n\n"
                     "Two `smsgw run` daemons, each in its own process with its own store (`synchronous=FULL`) and"
                     " no modem: one with `[http]`, one with `[mqtt]` (a mosquitto on loopback). The rounds"
                     f" alternate: {ingest_http['count']:,} `POST /api/v1/messages` over {ingest_http['concurrency']}"
                     " keep-alive connections (one request in flight on each, from a client process of its own),"
                     f" then {ingest_http['count']:,} QoS 1 `B/send` requests from `mosquitto_pub`. A request counts"
                     " when its `202` (HTTP) or its answer on `B/bridge/response/send` (MQTT) arrives; both are"
                     f" sent only after the commit. Rows committed afterwards: HTTP {ingest_http['committed']['http']:,},"
                     f" MQTT {ingest_http['committed']['mqtt']:,} of {total:,} each.\n\n" + "\n".join(lines) + "\n")


def section_webhooks(r: Run) -> tuple[Summary, str]:
    hook_args = ["--events", "300" if r.quick else "1000", "--messages", "300" if r.quick else "1000",
                 "--rounds", "1" if r.quick else "5"]
    hooks = last_json(run("webhooks.py", *hook_args, "--json")[0])
    medians = hooks["medians"]
    rounds = hooks["rounds"]
    return [], ("## Webhook deliveries\n\n    python bench/webhooks.py " + " ".join(hook_args) + "\n\n"
                "The receiver is an aiohttp server in its own process on 127.0.0.1 answering 200; each figure"
                f" is timed in its own process on a fresh store file. `drain`: {hooks['events']:,} received-SMS"
                " events are committed with one webhook configured, then the daemon's sender delivers them"
                " (one POST on a kept-alive connection and one commit, a real fsync, per delivery, in order)."
                f" `enqueue`: {hooks['messages']:,} single-message enqueues (one commit each) with no webhook"
                " and with one (each commit also writes a delivery row).\n\n"
                f"| figure | median of {rounds} | runs |\n|---|---:|---|\n"
                f"| deliveries/s to a local receiver | {medians['drain']:.0f} | "
                + ", ".join(f"{r:.0f}" for r in hooks["rates"]["drain"]) + " |\n"
                f"| enqueues/s, no webhook | {medians['enqueue-0']:.0f} | "
                + ", ".join(f"{r:.0f}" for r in hooks["rates"]["enqueue-0"]) + " |\n"
                f"| enqueues/s, one webhook | {medians['enqueue-1']:.0f} | ratio {hooks['ratio']:.2f} |\n")


def printed(title: str, script: str, extra: list[str]) -> tuple[Summary, str]:
    out, _ = run(script, *extra)
    return [], f"## {title}\n\n    python bench/{script} {' '.join(extra)}\n\n" + code(out)


def section_codec(r: Run) -> tuple[Summary, str]:
    return printed("PDU codec against python-gsmmodem-new", "codec.py", ["--rounds", "3"] if r.quick else [])


def latency_figures(out: str) -> tuple[float, float]:
    """p50 and p99 to AT+CMGS from latency.py's last line ("... -> p50 X ms, p99 Y ms")."""
    tail = out.strip().splitlines()[-1].split("->", 1)[1]
    p50, p99 = (float(part.split()[1]) for part in tail.split(","))
    return p50, p99


def section_latency(r: Run) -> tuple[Summary, str]:
    """Three runs (one with --quick), alternating before and after with --base: one run's p99 is its
    second-worst of 200, which one stall of a loaded machine decides, so the medians of the runs'
    p50 and p99 are the figures."""
    title, extra = "Latency: publish to the first byte of AT+CMGS", ["--count", "50"] if r.quick else []
    runs = 1 if r.quick else 3
    outputs: dict[str, list[str]] = {"before": [], "after": []}
    for _ in range(runs):
        if r.base_env:
            outputs["before"].append(run("latency.py", *extra, env=r.base_env)[0])
        outputs["after"].append(run("latency.py", *extra)[0])
    figures = {side: [latency_figures(out) for out in outs] for side, outs in outputs.items() if outs}
    medians = {side: (statistics.median(p for p, _ in values), statistics.median(p for _, p in values))
               for side, values in figures.items()}
    p50, p99 = medians["after"]
    figure = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    if "before" in medians:
        figure += f" (before {medians['before'][0]:.1f} / {medians['before'][1]:.1f})"
    summary = [("latency, MQTT publish to the first byte of AT+CMGS", "p50 <= 10 ms, p99 <= 50 ms",
                figure + (f", medians of {runs} runs" if runs > 1 else ""), met(p50 <= 10 and p99 <= 50))]
    lines = ["| side | run | p50 ms | p99 ms |", "|---|---:|---:|---:|"]
    for side, values in figures.items():
        lines += [f"| {side} | {n} | {a:.2f} | {b:.2f} |" for n, (a, b) in enumerate(values, start=1)]
        lines.append(f"| {side} | median | {medians[side][0]:.2f} | {medians[side][1]:.2f} |")
    how = (f"{runs} runs, before (the `--base` checkout's `smsgw run`) and after alternating; publish to the first"
           " byte of AT+CMGS:" if r.base_env else f"{runs} run(s); publish to the first byte of AT+CMGS:")
    return summary, (f"## {title}\n\n    python bench/latency.py {' '.join(extra)}"
                     + ("  # before: SMSGW_BENCH_ROOT=/tmp/base" if r.base_env else "") + "\n\n"
                     + how + "\n\n" + "\n".join(lines) + "\n\nThe last run in full:\n\n"
                     + code(outputs["after"][-1]))


def section_send(r: Run) -> tuple[Summary, str]:
    return printed("1-8 modems at 1 s per send", "send.py",
                   ["--send-delay", "1", "--repeats", "1" if r.quick else "3", "--seconds", "3" if r.quick else "10"])


def section_status_page(r: Run) -> tuple[Summary, str]:
    return printed("The status page against the history", "status_page.py",
                   ["--messages", "10000", "--rounds", "5"] if r.quick else [])


def section_cli_start(r: Run) -> tuple[Summary, str] | None:
    if r.base is None:
        return None
    out, _ = run("cli_start.py", "--base", str(r.base), "--rounds", "5" if r.quick else "11")
    cpu = {row.split("|")[1].strip(): float(row.split("|")[6]) for row in out.splitlines()
           if row.startswith("| ") and not row.startswith("| command")}
    send, status, floor = cpu["`smsgw send`"], cpu["`smsgw status`"], cpu["floor (standard modules only)"]
    summary = [("`smsgw send` / `smsgw status`, CPU time", "<= 60 ms",
                f"{send:.1f} / {status:.1f} ms (the standard modules alone: {floor:.1f} ms)",
                met(max(send, status) <= 60))]
    return summary, "## CLI start-up\n\n    python bench/cli_start.py --base /tmp/base\n\n" + out


#: The sections in document order, by the name ``--only`` takes.
SECTIONS: dict[str, Callable[[Run], tuple[Summary, str] | None]] = {
    "stats": section_stats, "backlog": section_backlog, "idle": section_idle, "mqtt_ingest": section_mqtt_ingest,
    "inject_peers": section_inject_peers, "send_peers": section_send_peers, "memory": section_memory, "http_ingest": section_http_ingest,
    "webhooks": section_webhooks, "codec": section_codec, "latency": section_latency, "send": section_send,
    "status_page": section_status_page, "cli_start": section_cli_start,
}


def split_document(text: str) -> tuple[list[str], list[list[str]], list[tuple[str, str]]]:
    """An earlier document: its header lines (to the Targets table), its Targets rows (cells), and its
    sections as (heading, text) in order."""
    head, _, rest = text.partition("\n## Targets\n")
    table, _, rest = rest.partition("\n## ")
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in table.splitlines() if line.startswith("| ") and not line.startswith("| what ")]
    sections = []
    for chunk in ("## " + rest).split("\n## "):
        chunk = chunk if chunk.startswith("## ") else "## " + chunk
        heading = chunk.split("\n", 1)[0]
        sections.append((heading, chunk.rstrip("\n") + "\n"))
    return head.rstrip("\n").splitlines(), rows, sections


def merge(old: str, command: str, measured: str, summary: Summary, fresh: list[str]) -> str:
    """``old`` with the sections of ``fresh`` and their Targets rows replaced (sections it does not
    have yet go at the end), and a line saying which ones this run wrote."""
    head, rows, sections = split_document(old)
    new_by_heading = {section.split("\n", 1)[0]: section for section in fresh}
    merged = [new_by_heading.pop(heading, text) for heading, text in sections]
    merged += new_by_heading.values()
    by_what = {what: (what, target, figure, ok) for what, target, figure, ok in summary}
    table = [tuple(row) for row in rows if len(row) == 4]
    table = [by_what.pop(row[0], row) for row in table] + list(by_what.values())
    titles = [section.split("\n", 1)[0][3:] for section in fresh]

    def still_true(line: str) -> str | None:
        """An earlier partial run's line without the sections this run wrote again (None: none left)."""
        if not line.startswith("Then `") or " wrote the sections " not in line:
            return line
        before, rest = line.split(" wrote the sections ", 1)
        named, after = rest.split(" (and their rows", 1)
        kept = [title for title in named.split(", ") if title not in titles]
        return f"{before} wrote the sections {', '.join(kept)} (and their rows{after}" if kept else None

    head = [kept for kept in map(still_true, head) if kept is not None]
    while head and not head[-1].strip():
        head.pop()
    head += ["", f"Then `{command}` wrote the sections {', '.join(titles)} (and their rows of the Targets table)"
             f" from a run on {measured}."]
    lines = head + ["", "## Targets", "", "| what | target | measured | |", "|---|---|---|---|"]
    lines += [f"| {what} | {target} | {figure} | {ok} |" for what, target, figure, ok in table]
    lines += ["", NOTES]
    return "\n".join(lines) + "\n" + "\n".join(section.rstrip("\n") + "\n" for section in merged)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, help="another checkout, measured as 'before' where it says so")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller batches (a smoke test)")
    parser.add_argument("--no-setup", action="store_true", help="do not run .ci/setup first")
    parser.add_argument("--only", help="comma-separated sections to run (" + ", ".join(SECTIONS) + "); the other "
                        "sections of --out stay as they are")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = [name for name in only if name not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    if args.only and not args.out.exists():
        parser.error(f"--only updates an earlier document, and {args.out} does not exist")
    measured = machine()  # the commit measured, before anything runs
    if not args.no_setup:
        print("run.py: bash .ci/setup (installs the peers if missing, disables their services)", file=sys.stderr)
        subprocess.run(["bash", str(ROOT / ".ci" / "setup")], cwd=ROOT, check=True)
    settings = Run(args.quick, args.base)
    summary: Summary = []
    sections: list[str] = []
    for name in SECTIONS:
        if name not in only:
            continue
        result = SECTIONS[name](settings)
        if result is not None:
            summary += result[0]
            sections.append(result[1])
    command = "python bench/run.py" + (" --base /tmp/base" if args.base else "") + (f" --only {args.only}"
                                                                                     if args.only else "")
    if args.only:
        args.out.write_text(merge(args.out.read_text(), command, measured, summary, sections))
        print(f"run.py: updated {', '.join(only)} in {args.out}", file=sys.stderr)
        return 0
    text = ["# Benchmarks", "",
            f"Written by `{command}` from one run on {measured}. A Raspberry Pi 3 or Zero 2 has roughly 1/5-1/10"
            " of this CPU; every commit is a real fsync on this machine's disk (shared with other work, so the"
            " absolute figures move from run to run: the ratios, measured side by side in the same run, are"
            " the figures to compare).", "", "## Targets", "",
            "| what | target | measured | |", "|---|---|---|---|"]
    text += [f"| {what} | {target} | {figure} | {ok} |" for what, target, figure, ok in summary]
    text += ["", NOTES]
    args.out.write_text("\n".join(text) + "\n" + "\n".join(sections))
    print(f"run.py: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
