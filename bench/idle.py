"""Idle wake-ups of ``smsgw run``: context switches and CPU time over a quiet window.

mosquitto, ``smsgw simulate`` (one modem) and ``smsgw run`` each run in their own process. Once the
modem is online and a few seconds have passed, the daemon is left alone for ``--seconds``: the
voluntary context switches of all its threads (``/proc/PID/task/*/status``; each is a sleep that
ended) and its CPU time (``/proc/PID/stat``) over the window, per second. Then, as a check that the
daemon still notices other processes' commits without polling for them, ``smsgw send`` from the
shell, timed until the simulated network has the SMS. With and without ``[mqtt]``.

    python bench/idle.py [--seconds 10] [--rounds 3] [--json]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def one(workdir: Path, seconds: float, mqtt: bool) -> dict[str, float]:
    with harness.simulator(workdir / "sim", 1) as ports, \
            (harness.broker(workdir / "broker") if mqtt else _nothing()) as broker, \
            harness.daemon(workdir / "gw", ports, broker) as daemon:
        time.sleep(3.0)  # start-up work (first sweep, retained states) settles; not part of the window
        before, cpu0, t0 = harness.proc_status(daemon.pid), harness.cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(seconds)  # the measured idle window: the bench process does nothing meanwhile
        after, cpu1, t1 = harness.proc_status(daemon.pid), harness.cpu_seconds(daemon.pid), time.monotonic()
        sent_before = harness.network_count(workdir / "sim")
        start = time.monotonic()
        subprocess.run([sys.executable, "-m", "appliance", "send", "--config", str(workdir / "gw" / "smsgw.toml"),
                        "+4915112345678", "idle check"], check=True, capture_output=True, cwd=harness.UNDER_TEST,
                       env=harness.env())
        harness.wait_until(lambda: harness.network_count(workdir / "sim") > sent_before, 30,
                           what="the SMS from smsgw send")
        send_s = time.monotonic() - start
    span = t1 - t0
    return {"wakeups_per_s": (after["voluntary"] - before["voluntary"]) / span,
            "involuntary_per_s": (after["involuntary"] - before["involuntary"]) / span,
            "cpu_ms_per_s": (cpu1 - cpu0) * 1000 / span, "send_to_network_ms": send_s * 1000}


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"without mqtt": [], "with mqtt": []}
    for round_no in range(args.rounds):
        for name in results:
            with tempfile.TemporaryDirectory(prefix="smsgw-idle-") as tmp:
                results[name].append(one(Path(tmp), args.seconds, name == "with mqtt"))
            print(f"round {round_no + 1} {name}: {results[name][-1]}", file=sys.stderr, flush=True)
    summary = {name: {key: statistics.median(r[key] for r in rows) for key in rows[0]}
               for name, rows in results.items()}
    if args.json:
        print(json.dumps(summary))
        return
    print(f"idle {args.seconds:g} s, median of {args.rounds}")
    print(f"{'':<14} {'wake-ups/s':>10} {'involuntary/s':>13} {'CPU ms/s':>9} {'smsgw send -> network ms':>25}")
    for name, row in summary.items():
        print(f"{name:<14} {row['wakeups_per_s']:>10.1f} {row['involuntary_per_s']:>13.1f} "
              f"{row['cpu_ms_per_s']:>9.2f} {row['send_to_network_ms']:>25.0f}")


if __name__ == "__main__":
    main()
