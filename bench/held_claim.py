"""What messages held for later (``send_at``, quiet hours) cost the send path: the median time of
``Store.claim`` and ``Store.next_due_at`` with 0 / 10k / 50k messages held a day ahead, queued
before the due ones at the same priority (the worst case: ``claim`` walks the queue index in
priority and id order past the held rows).

Each size runs in its own process (``--one N``) on a fresh store file. Since schema 13 a held row
is outside the claim order (``message.held``; the ready rows are in index ``message_ready``, in
``message_queued`` from schema 14); ``SMSGW_BENCH_ROOT`` at an older checkout measures the store
before it (the walk past every held row).

    python bench/held_claim.py [--sizes 0,10000,50000] [--claims 50] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(os.environ.get("SMSGW_BENCH_ROOT") or Path(__file__).resolve().parent.parent).resolve()
sys.path.insert(0, str(ROOT))

from appliance.store import OutboundRequest, Store  # noqa: E402


def one(size: int, claims: int, directory: Path) -> dict[str, float]:
    path = directory / f"held-{size}.db"
    for stale in directory.glob(f"{path.name}*"):
        stale.unlink()
    later = time.time() + 86400
    with Store(path) as store:
        for start in range(0, size, 10_000):
            store.enqueue([OutboundRequest(to=f"+49170{n:07d}", text="later", source="bench", send_at=later)
                           for n in range(start, min(size, start + 10_000))])
        claim_times, due_times = [], []
        for n in range(claims):
            store.enqueue([OutboundRequest(to=f"+49151{n:07d}", text="now", source="bench")])
            started = time.perf_counter()
            claimed = store.claim("sim0", lease=60)
            claim_times.append(time.perf_counter() - started)
            assert claimed is not None and claimed.text == "now"
            store.fail(claimed.id, "bench")
            started = time.perf_counter()
            store.next_due_at()
            due_times.append(time.perf_counter() - started)
    return {"held": size, "claim_ms": statistics.median(claim_times) * 1000,
            "next_due_at_ms": statistics.median(due_times) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0,10000,50000")
    parser.add_argument("--claims", type=int, default=50)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="smsgw-held-"))
    if args.one is not None:
        print(json.dumps(one(args.one, args.claims, directory)))
        return
    print(f"store of {ROOT}")
    print(f"{'held':>7} {'claim ms':>9} {'next_due_at ms':>15}")
    for size in (int(s) for s in args.sizes.split(",")):
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--claims", str(args.claims),
                              "--dir", str(directory)], check=True, capture_output=True, text=True).stdout
        row = json.loads(out)
        print(f"{row['held']:>7} {row['claim_ms']:>9.2f} {row['next_due_at_ms']:>15.2f}")


if __name__ == "__main__":
    main()
