"""The self-alerts' cost per check against the queue size: ``Store.client_queue()`` (the count and the
oldest queued message of the clients) and one whole ``SelfAlerts.check()`` (facts from the store,
every condition evaluated, nothing to send), each the median of many rounds, in ms.

For each size (0 / 10k / 100k queued messages by default) a fresh store file gets that many queued
messages from a client source, in four priorities, plus one queued message of the gateway's own.

    python bench/self_alerts.py [--sizes 0,10000,100000] [--rounds 51] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.config import parse_config  # noqa: E402
from appliance.intake import Intake, IntakePolicy  # noqa: E402
from appliance.self_alerts.facts import Facts, ModemFact, disk_free  # noqa: E402
from appliance.self_alerts.monitor import SelfAlerts  # noqa: E402
from appliance.store import OutboundRequest, Store  # noqa: E402

PRIORITIES = ("low", "normal", "high", "critical")


def build(path: Path, size: int) -> None:
    with Store(path) as store:
        batch: list[OutboundRequest] = []
        for n in range(size):
            batch.append(OutboundRequest(to=f"+4915112{n % 100000:05d}", text=f"message {n}", source="mqtt",
                                         priority=PRIORITIES[n % 4]))
            if len(batch) == 1000:
                store.enqueue(batch)
                batch = []
        store.enqueue([*batch, OutboundRequest(to="+4917612345678", text="alert", source="self",
                                               priority="critical", avoid_modems=("sim0",))])


def median_ms(action: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def measure(directory: Path, size: int, rounds: int) -> dict[str, Any]:
    path = directory / f"self-alerts-{size}.db"
    build(path, size)
    config = parse_config({"store": {"path": str(path)}, "self_alerts": {"to": "+4917612345678"}},
                          directory / "smsgw.toml")
    settings = config.self_alerts
    assert settings is not None
    with Store(path) as store:
        def facts() -> Facts:
            queued, oldest = store.client_queue()
            return Facts(modems={"sim0": ModemFact(True), "sim1": ModemFact(True)}, queued=queued,
                         oldest_queued_at=oldest, last_sent_at=time.time(), disk_free=disk_free(str(directory)),
                         disk_path=str(directory), balances=store.state_all("balance"))

        monitor = SelfAlerts(settings, store, Intake(IntakePolicy.from_config(config), store), facts)
        monitor.check()  # the first: the conditions' state written once
        return {"queued": size, "client_queue_ms": round(median_ms(store.client_queue, rounds), 3),
                "check_ms": round(median_ms(monitor.check, rounds), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0,10000,100000")
    parser.add_argument("--rounds", type=int, default=51)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results = [measure(Path(tmp), int(size), args.rounds) for size in args.sizes.split(",")]
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{'queued':>8}  {'client_queue ms':>15}  {'check ms':>9}")
        for r in results:
            print(f"{r['queued']:>8}  {r['client_queue_ms']:>15.3f}  {r['check_ms']:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
