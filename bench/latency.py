"""Latency from an MQTT publish to the first byte of AT+CMGS at the simulated modem.

Runs mosquitto (free loopback port), the simulator (one modem, in this process) and ``smsgw run`` as a
subprocess. An idle appliance: one request at a time, and the next only after the previous SMS left
and a short pause. Measured in this process with one clock: the publish on ``smsgw/send`` (paho,
QoS 1) and the moment the simulator reads the bytes that start ``AT+CMGS``. Side by side, from the
same publish: the ``queued`` event on ``smsgw/message/<id>`` (commit + event out) and the ``sent``
event (the whole send). mosquitto runs with ``set_tcp_nodelay true`` (``--broker-nagle`` for its
default, which delays a message that follows a PUBACK to the same client by the delayed ACK). Targets: p50 <= 10 ms, p99 <= 50 ms to AT+CMGS.

    python bench/latency.py [--count 200] [--gap 0.05] [--dir DIR]   # SMSGW_BENCH_ROOT=CHECKOUT: its smsgw run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The checkout whose ``smsgw run`` is measured (``SMSGW_BENCH_ROOT``, e.g. an older commit for a
#: before/after); the broker, the simulator and the clock are this one's.
UNDER_TEST = Path(os.environ.get("SMSGW_BENCH_ROOT") or ROOT).resolve()
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from harness import async_wait_until  # noqa: E402
from mosquitto import Broker, Probe  # noqa: E402

from drivers.simulator import Simulator  # noqa: E402
from drivers.simulator.modem import SimModem  # noqa: E402

OUTSIDE = "+4915112345678"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def config_text(workdir: Path, sim: Simulator, broker: Broker) -> str:
    return f"""
log_level = "warning"

[store]
path = "{workdir / 'smsgw.db'}"

[[modems]]
id = "sim0"
port = "{sim.ports[0]}"
profile = "generic"

[mqtt]
host = "{broker.host}"
port = {broker.port}
client_id = "bench-latency"

[numbers]
default_country = "DE"

[health]
ping_interval = 60
sweep_interval = 600
poll_interval = 5
"""


async def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Polled every 0.2 ms: the wait is part of the latency measured."""
    await async_wait_until(predicate, timeout=timeout, interval=0.0002)


async def run(args: argparse.Namespace) -> None:
    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="smsgw-latency-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cmgs_at: list[float] = []
    original = SimModem._on_data

    def on_data(self: SimModem, data: bytes) -> None:
        if b"AT+CMGS" in data:
            cmgs_at.append(time.perf_counter())
        original(self, data)

    SimModem._on_data = on_data  # type: ignore[method-assign]
    broker = Broker(workdir / "broker", persistence=False,
                    extra_config="set_tcp_nodelay true" if args.nodelay else "").start()
    sim = Simulator(workdir / "sim", modems=1, profile="generic")
    await sim.start()
    config = workdir / "smsgw.toml"
    config.write_text(config_text(workdir, sim, broker))
    log = (workdir / "daemon.log").open("ab")
    daemon = await asyncio.create_subprocess_exec(sys.executable, "-m", "appliance", "run", "--config", str(config),
                                                  stdout=log, stderr=log, cwd=UNDER_TEST,
                                                  env={**os.environ, "PYTHONPATH": str(UNDER_TEST)})
    events: dict[int, dict[str, float]] = {}

    probe = Probe(broker, "smsgw/bridge/state", "smsgw/message/+")

    def on_message(client: object, userdata: object, message: object) -> None:
        now = time.perf_counter()
        topic = message.topic  # type: ignore[attr-defined]
        if topic.startswith("smsgw/message/"):
            data = json.loads(message.payload)  # type: ignore[attr-defined]
            events.setdefault(int(data["id"]), {}).setdefault(data["state"], now)
        with probe.lock:
            probe.messages.append((topic, bytes(message.payload), False))  # type: ignore[attr-defined]

    probe.client.on_message = on_message
    try:
        await wait_for(lambda: probe.json("smsgw/bridge/state")[-1:] == [{"state": "online"}], 30)
        await wait_for(lambda: sim.modems[0].storage is not None, 30)
        to_cmgs: list[float] = []
        to_queued: list[float] = []
        to_sent: list[float] = []
        total = args.count + args.warmup
        for n in range(total):
            marks_before = len(cmgs_at)
            sent_before = len(sim.network.sent)
            payload = json.dumps({"to": OUTSIDE, "text": f"latency probe {n}", "transaction": n})
            start = time.perf_counter()
            probe.client.publish("smsgw/send", payload, qos=1)
            await wait_for(lambda: len(cmgs_at) > marks_before, 30)  # noqa: B023
            await wait_for(lambda: len(sim.network.sent) > sent_before, 30)  # noqa: B023
            message_id = n + 1
            await wait_for(lambda: "sent" in events.get(message_id, {}), 30)  # noqa: B023
            if n >= args.warmup:
                to_cmgs.append(cmgs_at[marks_before] - start)
                to_queued.append(events[message_id]["queued"] - start)
                to_sent.append(events[message_id]["sent"] - start)
            await asyncio.sleep(args.gap)  # idle between requests

        def row(name: str, values: list[float]) -> str:
            ms = [v * 1000 for v in values]
            return (f"{name:<34} {statistics.median(ms):>8.2f} {percentile(ms, 99):>8.2f} "
                    f"{min(ms):>8.2f} {max(ms):>8.2f}")

        print(f"{args.count} requests one at a time (after {args.warmup} warm-up), {args.gap * 1000:.0f} ms apart; "
              f"mosquitto set_tcp_nodelay {'true' if args.nodelay else 'false'}; milliseconds")
        print(f"{'from the publish on smsgw/send to':<34} {'p50':>8} {'p99':>8} {'min':>8} {'max':>8}")
        print(row("first byte of AT+CMGS at the modem", to_cmgs))
        print(row("'queued' on smsgw/message/<id>", to_queued))
        print(row("'sent' on smsgw/message/<id>", to_sent))
        print(f"targets to AT+CMGS: p50 <= 10 ms, p99 <= 50 ms -> p50 {statistics.median(to_cmgs) * 1000:.2f} ms, "
              f"p99 {percentile(to_cmgs, 99) * 1000:.2f} ms")
    finally:
        probe.close()
        if daemon.returncode is None:
            daemon.terminate()
            await daemon.wait()
        log.close()
        await sim.stop()
        broker.kill()
        SimModem._on_data = original  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--gap", type=float, default=0.05, help="idle seconds between requests")
    parser.add_argument("--dir", help="working directory (default: a new temp dir)")
    parser.add_argument("--broker-nagle", dest="nodelay", action="store_false",
                        help="run mosquitto without set_tcp_nodelay (its default): the events that follow a "
                             "PUBACK wait for the client's delayed ACK, about 40 ms")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
