"""Send-path cost against the size of the queued backlog (0 / 10k / 100k queued by default).

Each size runs in its own process (``--one N``) on a fresh store file: the backlog is enqueued,
then the dispatcher's store calls run in a loop as the daemon makes them for each message -
``expire_due``, ``next_due_at``, ``claim`` -> ``set_parts`` -> ``part_sent`` - for ``--messages``
messages. Figures: the median of each call (ms) and the send rate of the loop (messages/s),
with the ratio of the rate to the empty queue's (the target is >= 0.9).

    python bench/backlog.py [--sizes 0,10000,100000] [--messages 300] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.store import OutboundRequest, Store  # noqa: E402
from drivers.pdu import encode_submit  # noqa: E402


def one(size: int, messages: int, directory: Path) -> dict[str, float]:
    path = directory / f"backlog-{size}.db"
    for stale in directory.glob(f"backlog-{size}.db*"):
        stale.unlink()
    with Store(path) as store:
        for start in range(0, size, 10_000):
            store.enqueue([OutboundRequest(to=f"+49170{n:07d}", text="backlog", source="bench", priority="low",
                                           valid_until=time.time() + 86400)
                           for n in range(start, min(size, start + 10_000))])
        # the messages timed go first (normal before low), as new traffic behind an old backlog would
        store.enqueue([OutboundRequest(to=f"+49151{n:07d}", text="timed", source="bench")
                       for n in range(messages)])
        parts = encode_submit("+4915100000000", "timed")
        times: dict[str, list[float]] = {"expire_due": [], "next_due_at": [], "claim": []}
        started = time.perf_counter()
        for _ in range(messages):
            t0 = time.perf_counter()
            store.expire_due()
            t1 = time.perf_counter()
            store.next_due_at()
            t2 = time.perf_counter()
            claimed = store.claim("sim0", lease=60)
            t3 = time.perf_counter()
            assert claimed is not None and claimed.text == "timed"
            store.set_parts(claimed.id, parts)
            for part in parts:
                store.part_sent(claimed.id, part.sequence, "sim0", part.sequence)
            times["expire_due"].append(t1 - t0)
            times["next_due_at"].append(t2 - t1)
            times["claim"].append(t3 - t2)
        elapsed = time.perf_counter() - started
    result = {name: statistics.median(values) * 1000 for name, values in times.items()}
    result["rate"] = messages / elapsed
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0,10000,100000")
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="smsgw-backlog-"))
    if args.one is not None:
        print(json.dumps(one(args.one, args.messages, directory)))
        return
    print(f"{'queued':>8} {'claim ms':>9} {'expire_due ms':>14} {'next_due_at ms':>15} {'msgs/s':>8} {'ratio':>6}")
    base = None
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--messages", str(args.messages),
                              "--dir", str(directory)], check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
        base = base or r["rate"]
        print(f"{size:>8} {r['claim']:>9.3f} {r['expire_due']:>14.3f} {r['next_due_at']:>15.3f} "
              f"{r['rate']:>8.1f} {r['rate'] / base:>6.2f}")
        for stale in directory.glob(f"backlog-{size}.db*"):
            stale.unlink()


if __name__ == "__main__":
    main()
