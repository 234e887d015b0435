"""The fault campaign, long: many SIGKILLs, a long broker outage, every fault kind, fuzzing; prints the table.

    python bench/faults.py --kills 1000 --outage 60 --fuzz 100000

Runs the campaign tests of tests/ with long settings, each in its own pytest process
(``tests/test_crash.py`` with ``SMSGW_CRASH_KILLS``, ``tests/test_broker_outage.py`` with
``SMSGW_OUTAGE_SECONDS``, ``tests/test_fault_kinds.py``) and prints one row per part: the counts
each test prints (accepted, delivered, lost, duplicated, stored, published, left on the SIM) and
whether its assertions held; then ``bench/fuzz.py --inputs N`` (the modem-facing parsers, the PDU
decoder, the framing, the SIM-to-store path and the MQTT request reader; atheris where it installs,
hypothesis otherwise) and its table: inputs, crashes, seconds per target. Not part of the test
command (it takes minutes to hours).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(test: str, env: dict[str, str], timeout: float) -> tuple[bool, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", f"--timeout={int(timeout)}", test],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout + 60,
    )
    lines = [line for line in proc.stdout.splitlines() if re.match(r"(accepted|\d+ kills)", line)]
    return proc.returncode == 0, "\n".join(lines) or proc.stdout[-2000:], time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=1000, help="SIGKILLs of smsgw run (default 1000)")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the broker stays down (default 60)")
    parser.add_argument("--fuzz", type=int, default=100_000, help="fuzz inputs over all targets (default 100000; 0: none)")
    args = parser.parse_args()
    parts = [
        (f"kill storm ({args.kills} kills)", "tests/test_crash.py",
         {"SMSGW_CRASH_KILLS": str(args.kills)}, 60 + args.kills * 5.0),
        (f"broker outage ({args.outage:.0f} s)", "tests/test_broker_outage.py",
         {"SMSGW_OUTAGE_SECONDS": str(args.outage)}, 120 + args.outage),
        ("every fault kind on one of two modems", "tests/test_fault_kinds.py", {}, 900.0),
    ]
    failures = 0
    for name, test, env, timeout in parts:
        ok, figures, seconds = run(test, env, timeout)
        failures += not ok
        print(f"## {name}: {'passed' if ok else 'FAILED'} in {seconds:.0f} s")
        print(figures)
        print(flush=True)
    if args.fuzz:
        started = time.monotonic()
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz.py"), "--inputs", str(args.fuzz)],
                              cwd=ROOT, capture_output=True, text=True)
        failures += proc.returncode != 0
        print(f"## fuzzing ({args.fuzz} inputs): {'no crash' if proc.returncode == 0 else 'CRASHES'} "
              f"in {time.monotonic() - started:.0f} s")
        print(proc.stdout.strip() or proc.stderr[-3000:], flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
