"""MQTT ingest: ``smsgw run`` committing a burst of QoS 1 send requests vs mosquitto_sub reading it.

Every side is its own process: mosquitto (free loopback port), ``smsgw simulate`` (one modem that
takes ``--send-delay`` seconds per SMS, as a real one does, so sending does not compete with the
ingest), ``smsgw run`` (a real store: WAL, ``synchronous=FULL``; a request counts once committed,
after validation, number policy and idempotency key; the bridge acknowledges it then), and
``mosquitto_sub -q 1 -C N`` with the same MQTT version on the same topic: a C client that only
reads and acknowledges, the consumer limit. ``mosquitto_pub -l -q 1`` publishes the burst. This
process only starts the clock when the publisher starts and watches: mosquitto_sub's exit, and the
store's newest message id through a read-only connection (every 2 ms). Each round prints both
rates; the summary gives the medians and the ratio smsgw / mosquitto_sub (target >= 0.5).

    python bench/mqtt_ingest.py [--count 5000] [--rounds 5] [--protocol 5|3.1.1] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def requests_file(path: Path, count: int, round_no: int) -> Path:
    with path.open("w") as out:
        for n in range(count):
            out.write(json.dumps({"to": f"+4917{n % 100000:08d}", "text": f"alert {n}: freezer 3 is at -4 C",
                                  "id": f"r{round_no}-{n}"}) + "\n")
    return path


def one_round(broker: Any, daemon: harness.Daemon, workdir: Path, count: int, round_no: int,
              protocol: str) -> tuple[float, float]:
    data = requests_file(workdir / f"requests-{round_no}.jsonl", count, round_no)
    ready = workdir / f"sub-{round_no}.txt"
    sub = subprocess.Popen(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1",
                            "-V", "mqttv5" if protocol == "5" else "mqttv311", "-C", str(count + 1),
                            "-t", "smsgw/send", "-t", f"bench/ready/{round_no}", "-i", f"bench-sub-{round_no}"],
                           stdout=ready.open("wb"), stderr=subprocess.DEVNULL)
    harness.wait_subscribed(broker, f"bench/ready/{round_no}", ready)  # the marker counts: -C count + 1
    base = int(daemon.query("SELECT COALESCE(MAX(id), 0) FROM message"))
    sub_done: list[float] = []
    def wait_sub() -> None:
        sub.wait()
        sub_done.append(time.perf_counter())

    waiter = threading.Thread(target=wait_sub, daemon=True)
    waiter.start()
    start = time.perf_counter()
    pub = subprocess.Popen(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-l",
                            "-t", "smsgw/send", "-i", f"bench-pub-{round_no}"], stdin=data.open("rb"))
    smsgw_time = None
    while smsgw_time is None:
        if int(daemon.query("SELECT COALESCE(MAX(id), 0) FROM message")) - base >= count:
            smsgw_time = time.perf_counter() - start
            break
        if time.perf_counter() - start > 300:
            raise RuntimeError("smsgw did not commit the burst within 300 s")
        time.sleep(0.002)
    waiter.join(300)
    pub.wait(60)
    if pub.returncode or not sub_done:
        raise RuntimeError(f"mosquitto_pub exited {pub.returncode}; mosquitto_sub done: {bool(sub_done)}")
    return count / (sub_done[0] - start), count / smsgw_time


def run(count: int, rounds: int, protocol: str, send_delay: float) -> dict[str, Any]:
    results: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="smsgw-ingest-") as tmp:
        workdir = Path(tmp)
        with harness.broker(workdir / "broker") as broker, \
                harness.simulator(workdir / "sim", 1, "--send-delay", str(send_delay)) as ports, \
                harness.daemon(workdir / "gw", ports, broker, protocol=protocol) as daemon:
            for round_no in range(rounds):
                results.append(one_round(broker, daemon, workdir, count, round_no, protocol))
                print(f"  round {round_no + 1}: mosquitto_sub {results[-1][0]:,.0f}/s, smsgw {results[-1][1]:,.0f}/s "
                      f"committed, ratio {results[-1][1] / results[-1][0]:.2f}", file=sys.stderr, flush=True)
            committed = int(daemon.query("SELECT COUNT(*) FROM message"))
    sub_median = statistics.median(r[0] for r in results)
    smsgw_median = statistics.median(r[1] for r in results)
    return {"protocol": protocol, "count": count, "rounds": rounds, "mosquitto_sub": sub_median,
            "smsgw": smsgw_median, "ratio": smsgw_median / sub_median,
            "ratio_of_rounds": statistics.median(r[1] / r[0] for r in results), "committed": committed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--protocol", default="5", choices=["5", "3.1.1"])
    parser.add_argument("--send-delay", type=float, default=3.0, help="simulated seconds per SMS (default 3)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.count, args.rounds, args.protocol, args.send_delay)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.count} QoS 1 requests per round, MQTT {args.protocol}, median of {args.rounds} rounds")
    print(f"mosquitto_sub {result['mosquitto_sub']:,.0f}/s read, smsgw {result['smsgw']:,.0f}/s committed: "
          f"ratio {result['ratio']:.2f} (median of per-round ratios {result['ratio_of_rounds']:.2f}; target >= 0.5)")
    print(f"rows committed: {result['committed']} of {args.count * args.rounds}")


if __name__ == "__main__":
    main()
