"""Peak RSS and CPU of ``smsgw run`` with 4 simulated modems while 10,000 messages go through MQTT 5.

mosquitto, ``smsgw simulate --modems 4`` and ``smsgw run`` (MQTT 5) each run in their own process.
Once every modem is online: RSS at ready, then ``--batches`` times a burst of ``--count`` QoS 1
requests from ``mosquitto_pub -l``, each waited for until every SMS reached the simulated network.
The daemon's own kernel figures, from ``/proc/PID/status``: VmRSS after each burst and VmHWM (the
peak RSS over the whole run, bursts included); CPU time (``/proc/PID/stat``) per 1,000 messages.
Target: peak <= 40 MiB, flat from one burst to the next.

``--store existing`` (the default) gives the daemon a store created and migrated beforehand by
another process, as on every start of an appliance but its first; ``--store new`` lets the daemon
create it (its migrations run in a child process of the daemon's: the daemon never imports
sqlite-utils, about 4 MiB, which it used to keep for the life of the process).

    python bench/memory.py [--count 10000] [--batches 2] [--modems 4] [--store existing|new] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def create_store(path: Path) -> None:
    """Create and migrate the store at ``path`` in a process of its own (the code under test)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", "import sys; from appliance.store import Store; Store(sys.argv[1]).close()",
                    str(path)], check=True, cwd=harness.UNDER_TEST, env=harness.env())


def run(count: int, batches: int, modems: int, store: str = "existing") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="smsgw-memory-") as tmp:
        workdir = Path(tmp)
        if store == "existing":
            create_store(workdir / "gw" / "smsgw.db")
        with harness.broker(workdir / "broker") as broker, \
                harness.simulator(workdir / "sim", modems) as ports, \
                harness.daemon(workdir / "gw", ports, broker, protocol="5") as daemon:
            time.sleep(2.0)  # the start-up work settles
            ready = harness.proc_status(daemon.pid)
            after: list[float] = []
            cpu: list[float] = []
            seconds: list[float] = []
            for batch in range(batches):
                data = workdir / f"requests-{batch}.jsonl"
                data.write_text("".join(json.dumps({"to": f"+4915{n:09d}", "text": f"alert {n}: pump 7 pressure low",
                                                    "id": f"b{batch}-{n}"}) + "\n" for n in range(count)))
                sent_before = harness.network_count(workdir / "sim")
                cpu0, t0 = harness.cpu_seconds(daemon.pid), time.monotonic()
                subprocess.run(["mosquitto_pub", "-h", broker.host, "-p", str(broker.port), "-q", "1", "-l",
                                "-t", "smsgw/send", "-i", f"bench-pub-{batch}"], stdin=data.open("rb"), check=True)
                harness.wait_until(lambda: harness.network_count(workdir / "sim") - sent_before >= count,  # noqa: B023
                                   600, interval=0.05, what=f"{count} SMS at the network")
                seconds.append(time.monotonic() - t0)
                cpu.append(harness.cpu_seconds(daemon.pid) - cpu0)
                after.append(harness.proc_status(daemon.pid)["VmRSS"] / 1024)
                print(f"  burst {batch + 1}: {count} sent in {seconds[-1]:.1f} s, VmRSS {after[-1]:.1f} MiB",
                      file=sys.stderr, flush=True)
            peak = harness.proc_status(daemon.pid)["VmHWM"] / 1024

    return {"modems": modems, "count": count, "batches": batches, "store": store, "ready_mib": ready["VmRSS"] / 1024,
            "after_mib": after, "peak_mib": peak, "cpu_s_per_1000": 1000 * sum(cpu) / (count * batches),
            "msgs_per_s": count * batches / sum(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--modems", type=int, default=4)
    parser.add_argument("--store", choices=("existing", "new"), default="existing",
                        help="a store migrated beforehand (default), or one the daemon creates")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.count, args.batches, args.modems, args.store)
    if args.json:
        print(json.dumps(result))
        return
    print(f"smsgw run, {args.modems} modems, MQTT 5, {args.batches} burst(s) of {args.count}, {args.store} store")
    print(f"RSS at ready {result['ready_mib']:.1f} MiB; after each burst "
          + ", ".join(f"{v:.1f}" for v in result["after_mib"])
          + f" MiB; peak (VmHWM) {result['peak_mib']:.1f} MiB (target <= 40)")
    print(f"CPU {result['cpu_s_per_1000']:.2f} s per 1,000 messages; {result['msgs_per_s']:.0f} msgs/s end to end")


if __name__ == "__main__":
    main()
