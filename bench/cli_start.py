"""Start-up of `smsgw --version`, `smsgw send` and `smsgw status --json`: wall time and modules.

    python bench/cli_start.py --base /path/to/other/checkout [--rounds 15]

Every run is its own interpreter (``python -c`` running ``appliance.cli.main`` as the console script
pip writes does, with PYTHONPATH set to the checkout under test), timed from spawn to exit; the sides
and commands are interleaved round by round, and the medians are printed side by side: wall time, and
the CPU time (user + system) of the child, which a machine loaded by other work inflates less. Each
side uses its own config and store, created (and migrated by that side's code) before timing, so no
run migrates. The module count is ``len(sys.modules)`` at exit; the heavy modules named are those the
CLI should not need.

The interpreter runs as on an appliance, where pip installed the wheel: the byte code is compiled
once (``PYTHONDONTWRITEBYTECODE`` is dropped and each side caches it under its own
``PYTHONPYCACHEPREFIX``, written by an untimed first run), and the venv has the dependencies on its
path but not the editable install's import hook, whose ``.pth`` file costs about 20 ms at every
start of a development checkout's ``.venv``. The untimed first run also writes the config cache
(``appliance.config_cache``, under each side's own ``XDG_CACHE_HOME``), so the timed runs take the
parsed config from it, as every run on an appliance but the first after an edit does.

``floor`` imports only the standard modules ``send`` needs (argparse, datetime, json, locale,
pathlib, re, sqlite3: ``locale`` is what gettext imports when argparse builds its first parser and
translates its headings; ``pathlib`` the config's and the store's paths, with ``urllib.parse`` and
``ipaddress``; no tomllib since the config comes from the cache, no typing since no module of the
command imports it at run time, no dataclasses or logging since its records are ``appliance.frozen``
ones and its loggers ``appliance.deferred_log``, no grp since only a refusal names a group): the
least a Python ``smsgw send`` could cost on this interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
HEAVY = ("sqlite_utils", "paho", "appliance.rules", "asyncio", "hashlib", "inspect", "socket", "uuid")
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
FLOOR = ("import argparse, datetime, json, locale, pathlib, re, sqlite3, sys\n"
         "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n")
COMMANDS = {
    "floor": ["floor"],
    "--version": ["--version"],
    "send": ["send", "--config", "{config}", "+491701234567", "bench"],
    "status": ["status", "--config", "{config}", "--json"],
}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def installed_python(directory: Path) -> Path:
    """A venv whose path has this one's site-packages, without running their ``.pth`` files (the
    editable install's finder): the interpreter of an appliance, where pip installed the wheel."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    purelib = Path(sysconfig.get_paths()["purelib"])
    venv_lib = next((directory / "lib").glob("python3*/site-packages"))
    (venv_lib / "smsgw-bench-dependencies.pth").write_text(f"{purelib}\n")
    return directory / "bin" / "python"


def run(root: Path, config: Path, argv: list[str], python: Path, cache: Path) -> tuple[float, float, list[str]]:
    """(wall seconds, CPU seconds of the child, modules at exit) of one run."""
    env = {k: v for k, v in os.environ.items() if k not in ("SMSGW_CONFIG", "PYTHONDONTWRITEBYTECODE")}
    env["PYTHONPATH"] = str(root)
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    env["XDG_CACHE_HOME"] = str(cache)  # the config cache of this side, written by the untimed run
    if argv == ["floor"]:
        args = [str(python), "-c", FLOOR]
    else:
        args = [str(python), "-c", WRAPPER, *(a.format(config=config) for a in argv)]
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
        python = installed_python(Path(tmp) / "venv")
        configs = {}
        for side, root in sides.items():
            directory = Path(tmp) / side
            directory.mkdir()
            config = directory / "smsgw.toml"
            config.write_text('[store]\npath = "smsgw.db"\n[[modems]]\nid = "sim0"\nport = "/dev/ttyUSB2"\n')
            for argv in COMMANDS.values():  # the store created and migrated, the byte code compiled: untimed
                run(root, config, argv, python, directory / "pycache")
            configs[side] = config
        times: dict[tuple[str, str], list[float]] = {}
        cpus: dict[tuple[str, str], list[float]] = {}
        modules: dict[tuple[str, str], list[str]] = {}
        for _ in range(opts.rounds):
            for name, argv in COMMANDS.items():
                for side, root in sides.items():
                    elapsed, cpu, mods = run(root, configs[side], argv, python, configs[side].parent / "pycache")
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
        label = "floor (standard modules only)" if name == "floor" else f"`smsgw {name}`"
        print(f"| {label} | {before:.1f} | {after:.1f} | {after / before:.2f} | {cpu_before:.1f} "
              f"| {cpu_after:.1f} | {cpu_after / cpu_before:.2f} | {counts[0]} | {counts[1]} | {heavy[0]} | {heavy[1]} |")


if __name__ == "__main__":
    main()
