"""MQTT ingest rate: N QoS 1 send requests until all are committed, against the consumer limit.

One mosquitto (started here, on a free loopback port) and one stream: ``mosquitto_pub -l -q 1``
publishes N JSON requests on ``smsgw/send``. Two consumers take the same stream side by side:

- ``mosquitto_sub -C N -q 1``: the consumer limit (a C client that only reads and acknowledges);
- the MQTT bridge with a real Store (WAL, synchronous=FULL): a request counts only once it is
  committed (the bridge acknowledges it then), with validation, number policy and idempotency keys.

Each round prints both rates; the summary gives the medians and the ratio bridge / mosquitto_sub
(target >= 0.5).

    python bench/mqtt_ingest.py [--count 5000] [--rounds 5] [--protocol 5|3.1.1] [--dir DIR]

Run it on the disk the appliance uses (``--dir``): on tmpfs an fsync costs nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from mosquitto import Broker  # noqa: E402

from appliance.config import parse_config  # noqa: E402
from appliance.mqtt import MqttBridge  # noqa: E402
from appliance.store import Store  # noqa: E402


def requests_file(path: Path, count: int, round_no: int) -> Path:
    with path.open("w") as out:
        for n in range(count):
            out.write(json.dumps({"to": f"+4917{n % 100000:08d}", "text": f"alert {n}: freezer 3 is at -4 C",
                                  "id": f"r{round_no}-{n}"}) + "\n")
    return path


def spawn(argv: list[str], *, stdout: Path | None = None, stdin: Path | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdin=stdin.open("rb") if stdin else None,
                            stdout=stdout.open("wb") if stdout else subprocess.DEVNULL, stderr=subprocess.PIPE)


async def one_round(broker: Broker, bridge: MqttBridge, workdir: Path, count: int, round_no: int
                    ) -> tuple[float, float]:
    data = requests_file(workdir / f"requests-{round_no}.jsonl", count, round_no)
    sub_out = workdir / f"sub-{round_no}.txt"
    ready = f"bench/ready/{round_no}"
    sub = spawn(["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-C", str(count + 1),
                 "-t", "smsgw/send", "-t", ready, "-i", f"bench-sub-{round_no}"], stdout=sub_out)
    # wait until mosquitto_sub is subscribed (it prints the marker)
    deadline = time.monotonic() + 10
    while sub_out.stat().st_size == 0:
        broker.pub(ready, "x", qos=1)
        if time.monotonic() > deadline:
            raise RuntimeError("mosquitto_sub did not subscribe")
        await asyncio.sleep(0.05)
    base = bridge.counters["accepted"] + bridge.counters["duplicates"] + bridge.counters["rejected"]

    def bridge_done() -> bool:
        return bridge.counters["accepted"] + bridge.counters["duplicates"] + bridge.counters["rejected"] \
            - base >= count

    start = time.perf_counter()
    pub = spawn(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-l",
                 "-t", "smsgw/send"], stdin=data)
    sub_time = bridge_time = None
    while sub_time is None or bridge_time is None:
        now = time.perf_counter()
        if sub_time is None and sub.poll() is not None:
            sub_time = now - start
        if bridge_time is None and bridge_done():
            bridge_time = now - start
        if now - start > 300:
            raise RuntimeError("round did not finish within 300 s")
        await asyncio.sleep(0.0005)
    pub.wait()
    if pub.returncode:
        raise RuntimeError(f"mosquitto_pub failed: {pub.stderr.read().decode() if pub.stderr else ''}")
    return count / sub_time, count / bridge_time


async def run(args: argparse.Namespace) -> None:
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="smsgw-mqtt-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    broker = Broker(workdir / "broker", persistence=False).start()
    store = Store(workdir / "smsgw.db")
    config = parse_config({
        "store": {"path": str(workdir / "smsgw.db")},
        "mqtt": {"host": broker.host, "port": broker.port, "client_id": "bench-gw", "protocol": args.protocol},
        "numbers": {"default_country": "DE"},
    }, workdir / "smsgw.toml")
    bridge = MqttBridge(config, store)
    await bridge.start()
    try:
        while not bridge.connected:
            await asyncio.sleep(0.01)
        results: list[tuple[float, float]] = []
        print(f"{args.count} QoS 1 requests per round, MQTT {args.protocol}, store in {workdir}; mosquitto "
              "max_inflight_messages 100, max_queued_messages 100000")
        print(f"{'round':>5}  {'mosquitto_sub /s':>16}  {'bridge committed /s':>19}  {'ratio':>5}")
        for round_no in range(args.rounds):
            sub_rate, bridge_rate = await one_round(broker, bridge, workdir, args.count, round_no)
            results.append((sub_rate, bridge_rate))
            print(f"{round_no + 1:>5}  {sub_rate:>16,.0f}  {bridge_rate:>19,.0f}  {bridge_rate / sub_rate:>5.2f}")
        committed = len(store.outbox(args.count * args.rounds + 10))
        sub_median = statistics.median(r[0] for r in results)
        bridge_median = statistics.median(r[1] for r in results)
        ratios = [r[1] / r[0] for r in results]
        print(f"median: mosquitto_sub {sub_median:,.0f}/s, bridge {bridge_median:,.0f}/s committed, "
              f"ratio {bridge_median / sub_median:.2f} (median of per-round ratios {statistics.median(ratios):.2f}; "
              "target >= 0.5)")
        summary: dict[str, Any] = dict(bridge.stats())
        print(f"rows committed: {committed} of {args.count * args.rounds}; bridge rejected {summary['rejected']}")
    finally:
        await bridge.stop()
        store.close()
        broker.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--protocol", default="5", choices=["5", "3.1.1"])
    parser.add_argument("--dir", help="directory for the broker and the store (default: a new temp dir)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
