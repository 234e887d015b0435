"""Start-up of `smsgw --version`, `smsgw send` and `smsgw status --json`: wall time and modules.

    python bench/cli_start.py --base /path/to/other/checkout [--rounds 15]

Every run is its own interpreter (``python -c`` running ``appliance.cli.main``, with PYTHONPATH set
to the checkout under test), timed from spawn to exit; the sides and commands are interleaved
round by round, and the medians are printed side by side: wall time, and the CPU time (user + system)
of the child, which a machine loaded by other work inflates less. Each side uses its own config and store,
created (and migrated by that side's code) before timing, so no run migrates. The module count is
``len(sys.modules)`` at exit; the heavy modules named are those the CLI should not need.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
HEAVY = ("sqlite_utils", "paho", "appliance.rules")
WRAPPER = (
    "import json, sys\n"
    "from appliance.cli import main\n"
    "try:\n"
    "    status = main(sys.argv[1:])\n"
    "except SystemExit as exc:\n"
    "    status = exc.code\n"
    "sys.stdout.flush()\n"
    "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    "sys.exit(status)\n"
)
COMMANDS = {
    "--version": ["--version"],
    "send": ["send", "--config", "{config}", "+491701234567", "bench"],
    "status": ["status", "--config", "{config}", "--json"],
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(root: Path, config: Path, argv: list[str]) -> tuple[float, float, list[str]]:
    """(wall seconds, CPU seconds of the child, modules at exit) of one run."""
    env = {k: v for k, v in os.environ.items() if k != "SMSGW_CONFIG"}
    env["PYTHONPATH"] = str(root)
    args = [sys.executable, "-c", WRAPPER, *(a.format(config=config) for a in argv)]
    cpu = _children_cpu()
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, cwd=config.parent, env=env, check=False)
    elapsed = time.perf_counter() - start
    modules = json.loads(result.stderr.strip().splitlines()[-1])
    return elapsed, _children_cpu() - cpu, modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the checkout to compare against (before)")
    parser.add_argument("--rounds", type=int, default=15)
    opts = parser.parse_args()
    sides = {"before": opts.base.resolve(), "after": HERE}
    with tempfile.TemporaryDirectory() as tmp:
        configs = {}
        for side, root in sides.items():
            directory = Path(tmp) / side
            directory.mkdir()
            config = directory / "smsgw.toml"
            config.write_text('[store]\npath = "smsgw.db"\n[[modems]]\nid = "sim0"\nport = "/dev/ttyUSB2"\n')
            run(root, config, COMMANDS["send"])  # creates and migrates the store with this side's code
            configs[side] = config
        times: dict[tuple[str, str], list[float]] = {}
        cpus: dict[tuple[str, str], list[float]] = {}
        modules: dict[tuple[str, str], list[str]] = {}
        for _ in range(opts.rounds):
            for name, argv in COMMANDS.items():
                for side, root in sides.items():
                    elapsed, cpu, mods = run(root, configs[side], argv)
                    times.setdefault((side, name), []).append(elapsed)
                    cpus.setdefault((side, name), []).append(cpu)
                    modules[(side, name)] = mods
    print(f"median wall and CPU time of {opts.rounds} runs each (ms), modules at exit, heavy modules imported")
    print("| command | ms before | ms after | ratio | CPU ms before | CPU ms after | CPU ratio | modules before "
          "| modules after | heavy before | heavy after |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for name in COMMANDS:
        before, after = (statistics.median(times[(s, name)]) * 1000 for s in sides)
        cpu_before, cpu_after = (statistics.median(cpus[(s, name)]) * 1000 for s in sides)
        heavy = [", ".join(h for h in HEAVY if any(m == h or m.startswith(h + ".") for m in modules[(s, name)]))
                 or "none" for s in sides]
        counts = [len(modules[(s, name)]) for s in sides]
        print(f"| `smsgw {name}` | {before:.1f} | {after:.1f} | {after / before:.2f} | {cpu_before:.1f} "
              f"| {cpu_after:.1f} | {cpu_after / cpu_before:.2f} | {counts[0]} | {counts[1]} | {heavy[0]} | {heavy[1]} |")


if __name__ == "__main__":
    main()
