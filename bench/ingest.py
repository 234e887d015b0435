"""Durable enqueue rate: Store.enqueue in batches (group commit) vs a plain SQLite insert loop.

Both sides have the same durability: WAL with ``synchronous=FULL``, and a request counts as accepted
only once the commit that holds it returned (the MQTT bridge acknowledges then). The plain loop
commits once per row, as a simple queue would; ``Store.enqueue`` commits once per batch (the bridge
batches the requests that arrived together), and also writes the message's ``queued`` event row
in the same transaction. ``store, batch 1`` shows the store's own cost without group commit.

    python bench/ingest.py [--count 2000] [--batch 100] [--repeats 5] [--dir DIR]

Run it on the disk the appliance uses (``--dir``): on tmpfs an fsync costs nothing.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from appliance.store import OutboundRequest, Store


def requests(count: int, offset: int) -> list[OutboundRequest]:
    return [
        OutboundRequest(to=f"+4917{offset + n:08d}", text=f"alert {offset + n}: pump 7 pressure low",
                        source="bench", client_key=f"bench-{offset + n}")
        for n in range(count)
    ]


def store_batched(path: Path, count: int, batch: int) -> float:
    store = Store(path)
    try:
        pending = requests(count, 0)
        start = time.perf_counter()
        for i in range(0, count, batch):
            store.enqueue(pending[i:i + batch])
        elapsed = time.perf_counter() - start
    finally:
        store.close()
    return count / elapsed


def plain_loop(path: Path, count: int, _batch: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE message (id INTEGER PRIMARY KEY, client_key TEXT, source TEXT, recipient TEXT, "
        "text TEXT, priority INTEGER, created_at REAL, state TEXT, UNIQUE (client_key, recipient))"
    )
    rows = [(r.client_key, r.source, r.to, r.text) for r in requests(count, 0)]
    start = time.perf_counter()
    for row in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO message (client_key, source, recipient, text, priority, created_at, state) "
            "VALUES (?, ?, ?, ?, 1, ?, 'queued')", (*row, time.time()),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return count / elapsed


def filesystem(directory: Path) -> str:
    try:
        out = subprocess.run(["df", "-T", str(directory)], capture_output=True, text=True, check=True).stdout
        return out.splitlines()[-1].split()[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="requests per run (default 2000)")
    parser.add_argument("--batch", type=int, default=100, help="requests per Store.enqueue call (default 100)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per variant; medians are printed")
    parser.add_argument("--dir", type=Path, default=None, help="directory for the database files")
    args = parser.parse_args()
    if args.count < 1 or args.batch < 1 or args.repeats < 1:
        parser.error("--count, --batch and --repeats must be at least 1")

    variants: list[tuple[str, Callable[[Path, int, int], float], int]] = [
        (f"store.enqueue, batch {args.batch}", store_batched, args.batch),
        ("store.enqueue, batch 1", store_batched, 1),
        ("plain insert, commit per row", plain_loop, 1),
    ]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="smsgw-bench-") as tmp:
        directory = Path(tmp)
        print(f"{args.count} requests per run, {args.repeats} runs, synchronous=FULL, WAL, "
              f"files in {directory} ({filesystem(directory)})")
        for run in range(args.repeats):  # interleaved, so drift hits every variant alike
            for name, function, batch in variants:
                path = directory / f"run{run}-{name.split(',')[0].replace(' ', '_')}-{batch}.db"
                rates[name].append(function(path, args.count, batch))
                for suffix in ("", "-wal", "-shm"):
                    with_suffix = Path(str(path) + suffix)
                    if with_suffix.exists():
                        os.unlink(with_suffix)
    baseline = statistics.median(rates["plain insert, commit per row"])
    print(f"{'variant':<34} {'median msgs/s':>14} {'min':>10} {'max':>10} {'vs plain':>9}")
    for name, _, _ in variants:
        values = rates[name]
        median = statistics.median(values)
        print(f"{name:<34} {median:>14.0f} {min(values):>10.0f} {max(values):>10.0f} {median / baseline:>8.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
