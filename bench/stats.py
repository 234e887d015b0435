"""``Store.stats()`` (behind ``smsgw status``, ``bridge/info``, STATUS replies) against the history size.

For each size (0 / 100k / 1M finished messages by default) a fresh store file gets that history:
messages in final states over the last 30 days (the default retention) from a few sources, a part
and a published event per message, a received message per ten; plus a small live queue. Then, in
the same process and interleaved round by round: ``Store.stats()`` (counters kept by triggers,
schema 8) and the queries ``stats()`` ran before (COUNT(*) over the tables, ``source_usage`` over
today's messages). Also ``smsgw status --json`` (its own interpreter, wall time). Medians in ms.

    python bench/stats.py [--sizes 0,100000,1000000] [--rounds 21] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.store import STATES, Store, local_midnight  # noqa: E402

DAY = 86400.0


def build(path: Path, size: int, now: float) -> None:
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    with Store(path) as store:
        conn = store._conn  # the bench reads beneath the store's methods
        conn.execute("BEGIN")
        # finished history: message n created n/size of 30 days ago, in a final state
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) "
            "INSERT INTO message (source, recipient, text, priority, created_at, report, state, attempts, "
            "updated_at, modem, last_error) SELECT CASE i % 4 WHEN 0 THEN 'cli' WHEN 1 THEN 'alerts' "
            "WHEN 2 THEN 'mqtt' ELSE 'rules' END, printf('+4917%08d', i), 'alert ' || i || ': pump 7 pressure low', 1, "
            "? - (? - i) * ? / ?, 1, CASE WHEN i % 50 = 0 THEN 'failed' WHEN i % 97 = 0 THEN 'expired' "
            "ELSE 'delivered' END, 1, ? - (? - i) * ? / ? + 5, 'sim' || (i % 4), "
            "CASE WHEN i % 50 = 0 THEN 'rejected' END FROM n",
            (size, now, size, 30 * DAY, max(size, 1), now, size, 30 * DAY, max(size, 1)))
        conn.execute("INSERT INTO part (message_id, sequence, total, pdu, tpdu_length, modem, message_reference, "
                     "state, sent_at, delivered_at) SELECT id, 1, 1, '0011000B919471', 20, modem, id % 256, "
                     "'delivered', updated_at, updated_at FROM message")
        conn.execute("INSERT INTO event (topic, payload, qos, retain, created_at, done_at) SELECT 'message/' || id, "
                     "'{\"state\": \"delivered\"}', 1, 0, updated_at, updated_at FROM message")
        conn.execute("INSERT INTO inbox (sender, text, received_at, modem, parts, handled_at) "
                     "SELECT recipient, 'reply', created_at, modem, 1, created_at FROM message WHERE id % 10 = 0")
        # the live part: a few queued and pending
        conn.execute("INSERT INTO message (source, recipient, text, created_at, state, updated_at) "
                     "SELECT 'cli', '+491700000000', 'queued', ?, 'queued', ? FROM message LIMIT 20", (now, now))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def stats_before(store: Store, now: float) -> dict[str, Any]:
    """The queries Store.stats() ran before schema 8 (COUNT(*) over the tables)."""
    conn = store._conn  # the bench reads beneath the store's methods
    outbox = dict.fromkeys(STATES, 0)
    for row in conn.execute("SELECT state, COUNT(*) FROM message GROUP BY state"):
        outbox[row[0]] = row[1]
    last = conn.execute("SELECT id, last_error, updated_at FROM message WHERE last_error IS NOT NULL "
                        "ORDER BY updated_at DESC LIMIT 1").fetchone()
    rows = conn.execute("SELECT source, COUNT(*), SUM(CASE WHEN state IN ('sent', 'delivered') THEN 1 ELSE 0 END) "
                        "FROM message NOT INDEXED WHERE created_at >= ? GROUP BY source ORDER BY source",
                        (local_midnight(now),)).fetchall()
    return {
        "outbox": outbox,
        "inbox": conn.execute("SELECT COUNT(*) FROM inbox").fetchone()[0],
        "inbox_unhandled": conn.execute("SELECT COUNT(*) FROM inbox WHERE handled_at IS NULL").fetchone()[0],
        "inbox_parts_pending": conn.execute("SELECT COUNT(*) FROM inbox_part WHERE inbox_id IS NULL").fetchone()[0],
        "events_pending": conn.execute("SELECT COUNT(*) FROM event WHERE done_at IS NULL").fetchone()[0],
        "sources_today": {r[0]: {"accepted": r[1], "sent": r[2]} for r in rows},
        "last_error": None if last is None else last[0],
    }


def status_wall(path: Path) -> float:
    config = path.parent / "smsgw.toml"
    config.write_text(f'[store]\npath = "{path}"\n')
    env = {k: v for k, v in os.environ.items() if k != "SMSGW_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "appliance", "status", "--config", str(config), "--json"], env=env,
                   capture_output=True, check=True, cwd=path.parent)
    return time.perf_counter() - start


def measure(size: int, rounds: int, directory: Path) -> dict[str, float]:
    path = directory / f"stats-{size}.db"
    now = time.time()
    started = time.perf_counter()
    build(path, size, now)
    built = time.perf_counter() - started
    after: list[float] = []
    before: list[float] = []
    status: list[float] = []
    with Store(path, read_only=True) as store:
        new = store.stats(now)
        old = stats_before(store, now)
        assert new["outbox"] == old["outbox"] and new["sources_today"] == old["sources_today"], (new, old)
        assert (new["inbox"], new["events_pending"]) == (old["inbox"], old["events_pending"])
        for _ in range(rounds):
            t0 = time.perf_counter()
            store.stats(now)
            t1 = time.perf_counter()
            stats_before(store, now)
            t2 = time.perf_counter()
            after.append(t1 - t0)
            before.append(t2 - t1)
    for _ in range(max(3, rounds // 4)):
        status.append(status_wall(path))
    for stale in directory.glob(path.name + "*"):
        stale.unlink()
    return {"rows": size, "stats_ms": statistics.median(after) * 1000, "before_ms": statistics.median(before) * 1000,
            "status_ms": statistics.median(status) * 1000, "build_s": built}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,100000,1000000")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object per size")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="smsgw-stats-", dir=args.dir))
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        result = measure(size, args.rounds, directory)
        results.append(result)
        if args.json:
            print(json.dumps(result), flush=True)
    shutil.rmtree(directory, ignore_errors=True)
    if not args.json:
        print(f"{'history rows':>12} {'stats() ms':>10} {'COUNT(*) queries ms':>19} {'smsgw status ms':>15}")
        for r in results:
            print(f"{r['rows']:>12,} {r['stats_ms']:>10.3f} {r['before_ms']:>19.2f} {r['status_ms']:>15.1f}")
        print("target: stats() <= 5 ms at 1M rows")


if __name__ == "__main__":
    main()
