"""Send throughput of ``smsgw run`` through 1, 2, 4 and 8 simulated modems.

For each modem count N and each simulated send time (``--send-delay``: seconds from the PDU to the
``+CMGS`` answer; 0 and 1 by default), the simulator runs in this process and the real daemon
(``python -m appliance run``) in a subprocess, as in production. Once every modem is online, a
batch of messages is enqueued in one transaction (as ``smsgw send`` or the MQTT bridge would)
and the clock runs until the last one reached the simulated network. Figures: messages per second
(median of ``--repeats`` runs), and for a non-zero send time the ratio to the ideal N / send-delay
(the target is >= 0.95).

    python bench/send.py [--modems 1,2,4,8] [--send-delay 0,1] [--repeats 3]
                         [--messages 400] [--seconds 10] [--dir DIR]

``--messages`` is the batch for a zero send time; with a send time, each modem gets enough
messages for about ``--seconds`` of sending.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from harness import async_wait_until  # noqa: E402

from appliance.store import OutboundRequest, Store  # noqa: E402
from drivers.simulator import Simulator  # noqa: E402

OUTSIDE = "+4915112345678"


def write_config(directory: Path, ports: list[str]) -> Path:
    lines = ["[store]", f'path = "{directory / "smsgw.db"}"']
    for index, port in enumerate(ports):
        lines += ["[[modems]]", f'id = "sim{index}"', f'port = "{port}"', 'profile = "generic"']
    lines += ["[health]", "watch_interval = 0.02", "poll_interval = 1"]
    path = directory / "smsgw.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def one_run(base: Path, modems: int, delay: float, count: int) -> float:
    """Messages per second for one batch of ``count`` through ``modems`` modems."""
    base.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a local temp dir
    sim = Simulator(base / "sim", modems=modems, send_delay=delay, control=False)
    await sim.start()
    config = write_config(base, sim.ports)
    db = base / "smsgw.db"
    Store(db).close()  # create the schema before two processes open the file
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = (base / "daemon.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", "run", "--config", str(config), "--log-level", "warning",
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=ROOT)
    store: Store | None = None
    try:
        store = Store(db)
        ids = [f"sim{i}" for i in range(modems)]
        await async_wait_until(lambda: all((store.state_get("modem", m) or {}).get("state") == "online" for m in ids),
                               timeout=30, interval=0.005, what="every modem online")
        requests = [OutboundRequest(to=f"+4915{n:09d}", text=f"bench {n}", source="bench") for n in range(count)]
        start = time.monotonic()
        store.enqueue(requests)
        await async_wait_until(lambda: len(sim.network.sent) >= count, timeout=60 + count * max(delay, 0.05),
                               interval=0.005, what="the batch sent")
        elapsed = time.monotonic() - start
    finally:
        if store is not None:
            store.close()
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        log.close()
        await sim.stop()
    return count / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modems", default="1,2,4,8")
    parser.add_argument("--send-delay", default="0,1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--messages", type=int, default=400, help="batch size for a zero send time")
    parser.add_argument("--seconds", type=float, default=10.0, help="sending time per run with a send time")
    parser.add_argument("--dir", type=Path, default=None, help="where the store file lives (its disk matters)")
    args = parser.parse_args()
    counts = [int(x) for x in args.modems.split(",")]
    delays = [float(x) for x in args.send_delay.split(",")]
    top = Path(tempfile.mkdtemp(prefix="smsgw-bench-", dir=args.dir))
    rows = []
    try:
        for delay in delays:
            for modems in counts:
                count = args.messages if delay == 0 else max(modems, round(modems * args.seconds / delay))
                rates = []
                for repeat in range(args.repeats):
                    rates.append(await one_run(top / f"d{delay}-n{modems}-r{repeat}", modems, delay, count))
                rows.append((delay, modems, count, rates))
                print(f"  send-delay {delay:g}s, {modems} modem(s): "
                      + ", ".join(f"{r:.2f}" for r in rates) + " msgs/s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print(f"smsgw run -> simulated modems; median of {args.repeats} run(s); one batch enqueued at once")
    print(f"{'send-delay':>10} {'modems':>6} {'msgs':>5} {'median msgs/s':>14} {'min':>8} {'max':>8}"
          f" {'per modem':>10} {'vs ideal':>9}")
    for delay, modems, count, rates in rows:
        median = statistics.median(rates)
        ideal = f"{median / (modems / delay):.3f}" if delay > 0 else "-"
        print(f"{delay:>9g}s {modems:>6} {count:>5} {median:>14.2f} {min(rates):>8.2f} {max(rates):>8.2f}"
              f" {median / modems:>10.2f} {ideal:>9}")
    if 0 in delays and len(counts) > 1:
        base = next(statistics.median(r) for d, n, _, r in rows if d == 0 and n == counts[0])
        print("scaling at send-delay 0 vs " + f"{counts[0]} modem(s): " + ", ".join(
            f"{n}: {statistics.median(r) / base:.2f}x" for d, n, _, r in rows if d == 0))


if __name__ == "__main__":
    asyncio.run(main())
