"""Time from "modem plugged in" to the first SMS through the wizard, against the simulator.

    .venv/bin/python bench/setup_wizard.py [--rounds 5]

Each round starts `smsgw simulate --pin` (a SIM7600 whose SIM wants its PIN) and a mosquitto on a
free port, then times `smsgw setup --non-interactive` with every check on: probe the ports, enter
the PIN, CONNECT to the broker, send the test SMS and wait for the reply (injected with
`smsgw simulate inject` as soon as the test SMS shows in the simulated network), write and check
the config. Printed: the median and range of the wizard's wall time, and of the part until the
test SMS left. A person typing the answers adds their own time; a real network adds seconds to
the SMS and the reply.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from harness import wait_until  # noqa: E402

PHONE = "+4915112345678"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_round(work: Path) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    smsgw = [sys.executable, "-m", "appliance"]
    sim_dir = work / "sim"
    port = free_port()
    (work / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(work / "mosquitto.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sim = subprocess.Popen([*smsgw, "simulate", "--dir", str(sim_dir), "--profile", "sim7600", "--pin", "2580"],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        sim.stdout.readline()  # the ready line
        wait_until(lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, timeout=10, what="mosquitto")
        network = sim_dir / "network.jsonl"
        started = time.monotonic()
        wizard = subprocess.Popen([*smsgw, "setup", "--non-interactive", "--config", str(work / "smsgw.toml"),
                                   "--store", str(work / "state" / "smsgw.db"), "--scan", str(sim_dir / "modem*"),
                                   "--pin", "2580", "--mqtt-port", str(port), "--country", "DE",
                                   "--test-sms", PHONE, "--wait-reply", "60", "--no-start"],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: network.exists() and json.loads(network.read_text().splitlines()[0])["to"] == PHONE,
                   timeout=30, what="the test SMS")
        sms_out = time.monotonic() - started
        subprocess.run([*smsgw, "simulate", "inject", "--dir", str(sim_dir), "--modem", "0", "--from", PHONE,
                        "--text", "ok"], cwd=ROOT, env=env, check=True, capture_output=True)
        out, err = wizard.communicate(timeout=60)
        total = time.monotonic() - started
        if wizard.returncode != 0 or "reply received" not in out:
            raise SystemExit(f"the wizard failed ({wizard.returncode}): {out}\n{err}")
        return total, sms_out
    finally:
        for process in (sim, broker):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    totals, sms = [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="smsgw-bench-setup-") as work:
            total, out = one_round(Path(work))
        totals.append(total)
        sms.append(out)
    print(f"wizard, all checks, until the reply was seen and the config written: median {statistics.median(totals):.2f}s "
          f"(min {min(totals):.2f}s, max {max(totals):.2f}s, {args.rounds} rounds)")
    print(f"  of which until the test SMS left: median {statistics.median(sms):.2f}s "
          f"(min {min(sms):.2f}s, max {max(sms):.2f}s)")


if __name__ == "__main__":
    main()
