"""Where a send's time goes on the event loop: the dispatcher, the store and one modem (``smsgw
simulate``, answering at once) in one process, with the WAL's sync as the daemon does it and with
the sync taken out piece by piece.

Variants, each in a process of its own (``--one VARIANT``), interleaved round by round:

- ``daemon``: as ``smsgw run`` sends (``WalSync`` fdatasyncs the WAL in its thread, the
  checkpoints in theirs, no event rows: no ``[mqtt]``);
- ``sync-other-file``: the sync is an fdatasync of another file of one page (does the WAL's size
  matter, or the fdatasync as such?);
- ``sync-nothing``: the sync thread runs, wakes and returns without a system call;
- ``no-sync``: no thread at all, every commit counted as synced at once (what the durability of
  the TP-MRs costs).

Printed per variant: msgs/s from the first claim to the last ``sent``, CPU time of the event
loop's thread per message, and of the process's other threads (the sync's, the checkpoints').

    python bench/send_costs.py [--messages 3000] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

VARIANTS = ("daemon", "sync-other-file", "sync-nothing", "no-sync")


async def measure(variant: str, port: str, db: Path, count: int) -> dict[str, float]:
    sys.path.insert(0, str(harness.UNDER_TEST))
    from appliance.dispatcher import Dispatcher
    from appliance.store import OutboundRequest, Store
    from appliance.wal_checkpoint import WalCheckpointer
    from drivers.modem import Modem

    store = Store(db)
    store.events_published = False  # as a daemon without [mqtt]
    store.configure_webhooks([])
    checkpointer = WalCheckpointer(store)
    checkpointer.start()
    modem = Modem(port, profile="generic", modem_id="sim0")
    await modem.open()
    if variant == "sync-other-file":
        other = os.open(f"{db}-other", os.O_RDWR | os.O_CREAT, 0o600)
        os.pwrite(other, b"\0" * 4096, 0)

        def sync_other() -> None:
            os.fdatasync(other)
        store.sync = sync_other  # type: ignore[method-assign]  # what the dispatcher's WalSync runs
    elif variant == "sync-nothing":
        store.sync = lambda: None  # type: ignore[method-assign]
    dispatcher = Dispatcher(store, [modem])
    wal = dispatcher.wal_sync
    if variant == "no-sync":
        def synced_at_once() -> int:
            wal.requested += 1
            wal.synced = wal.requested
            return wal.requested
        wal.request = synced_at_once  # type: ignore[method-assign]
    queued = store.enqueue([OutboundRequest(to=f"+4915{n:09d}", text=f"bench {n}", source="bench")
                            for n in range(count)])
    last = max(result.id for result in queued)
    process_cpu, loop_cpu, started = harness.cpu_seconds(os.getpid()), time.thread_time(), time.perf_counter()
    await dispatcher.start()
    await harness.async_wait_until(lambda: (store.message(last) or {}).get("state") == "sent",
                                   timeout=120 + count / 10, interval=0.01, what="the last message sent")
    elapsed, loop_cpu = time.perf_counter() - started, time.thread_time() - loop_cpu
    others = max(harness.cpu_seconds(os.getpid()) - process_cpu - loop_cpu, 0.0)  # the sync's, the checkpoints
    syncs = wal.syncs
    await dispatcher.stop()
    await modem.close()
    checkpointer.stop()
    store.close()
    return {"rate": count / elapsed, "loop_us": loop_cpu / count * 1e6, "others_us": others / count * 1e6,
            "syncs": syncs / count}


def one(variant: str, count: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"smsgw-send-costs-{variant}-") as tmp:
        work = Path(tmp)
        with harness.simulator(work / "sim", 1) as ports:
            return asyncio.run(measure(variant, ports[0], work / "smsgw.db", count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.messages)))
        return
    variants = args.variants.split(",")
    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in variants}
    for round_no in range(args.rounds):
        for variant in variants:
            done = subprocess.run([sys.executable, __file__, "--one", variant, "--messages", str(args.messages)],
                                  check=True, capture_output=True, text=True)
            runs[variant].append(json.loads(done.stdout))
            print(f"  round {round_no + 1} {variant}: {runs[variant][-1]}", file=sys.stderr, flush=True)
    medians = {variant: {key: statistics.median(run[key] for run in values) for key in values[0]}
               for variant, values in runs.items()}
    if args.json:
        print(json.dumps({"messages": args.messages, "rounds": args.rounds, "medians": medians}))
        return
    print(f"{args.messages} single-part sends per run, one simulated modem, median of {args.rounds} interleaved rounds")
    print(f"{'variant':<18} {'msgs/s':>8} {'loop us/msg':>12} {'other threads us/msg':>21} {'syncs/msg':>10}")
    for variant, m in medians.items():
        print(f"{variant:<18} {m['rate']:>8.0f} {m['loop_us']:>12.0f} {m['others_us']:>21.0f} {m['syncs']:>10.2f}")


if __name__ == "__main__":
    main()
