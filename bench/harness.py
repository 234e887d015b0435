"""What the daemon benchmarks share: mosquitto, ``smsgw simulate`` and ``smsgw run``, each its own process,
and the waits for a condition with a timeout (``wait_until``, ``async_wait_until``: the tests' own, from
``tests/waiting.py``).

The bench process only starts them and observes: it reads ``/proc/PID`` of the daemon and the
store file (read-only), so none of the timed work runs in its event loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The checkout whose smsgw the benchmarks run (``SMSGW_BENCH_ROOT``, e.g. an older commit checked out
#: with ``git worktree add --detach``, for a before/after); the harness itself is this one's.
UNDER_TEST = Path(os.environ.get("SMSGW_BENCH_ROOT") or ROOT).resolve()
sys.path.insert(0, str(ROOT / "tests"))

from mosquitto import Broker  # noqa: E402
from waiting import async_wait_until, wait_until  # noqa: E402

__all__ = ["Broker", "async_wait_until", "wait_until"]  # the bench scripts wait with these


def wait_subscribed(broker: Broker, topic: str, output: Path, timeout: float = 10.0) -> None:
    """Wait until a ``mosquitto_sub`` writing to ``output`` and subscribed to ``topic`` is subscribed:
    a marker published on ``topic`` until the first line appears (it counts towards ``-C``)."""

    def subscribed() -> bool:
        if output.stat().st_size:
            return True
        broker.pub(topic, "x", qos=1)
        return False

    wait_until(subscribed, timeout=timeout, interval=0.05, what="mosquitto_sub to subscribe")


def env() -> dict[str, str]:
    result = {k: v for k, v in os.environ.items() if k != "SMSGW_CONFIG"}
    result["PYTHONPATH"] = str(UNDER_TEST) + os.pathsep + result.get("PYTHONPATH", "")
    return result


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@contextlib.contextmanager
def simulator(directory: Path, modems: int = 1, *args: str) -> Iterator[list[str]]:
    """``smsgw simulate --dir DIR --modems N`` in its own process; yields the modem ports."""
    directory.mkdir(parents=True, exist_ok=True)
    log = (directory.parent / f"{directory.name}.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "appliance", "simulate", "--dir", str(directory),
                                "--modems", str(modems), *args], stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, cwd=UNDER_TEST, env=env())
    ports = [str(directory / f"modem{i}") for i in range(modems)]
    try:
        wait_until(lambda: process.poll() is not None or all(os.path.exists(p) for p in ports), timeout=30,
                   interval=0.005, what="the simulator")
        if process.poll() is not None:
            raise RuntimeError(f"smsgw simulate exited with {process.returncode}")
        yield ports
    finally:
        stop(process)
        log.close()


def network_count(directory: Path) -> int:
    """SMS the simulated network has seen (lines of DIR/network.jsonl)."""
    try:
        with (directory / "network.jsonl").open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 16), b""))
    except FileNotFoundError:
        return 0


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    db: Path
    modems: list[str]
    _reader: sqlite3.Connection | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def reader(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = sqlite3.connect(f"{self.db.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        return self._reader

    def query(self, sql: str, *args: Any) -> Any:
        return self.reader().execute(sql, args).fetchone()[0]

    def online(self) -> bool:
        rows = self.reader().execute("SELECT key, value FROM state WHERE namespace = 'modem'").fetchall()
        states = {key: json.loads(value).get("state") for key, value in rows}
        return all(states.get(m) == "online" for m in self.modems)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def write_config(directory: Path, ports: list[str], broker: Broker | None, **mqtt: Any) -> Path:
    lines = ['log_level = "warning"', "[store]", f'path = "{directory / "smsgw.db"}"']
    for index, port in enumerate(ports):
        lines += ["[[modems]]", f'id = "sim{index}"', f'port = "{port}"', 'profile = "generic"']
    if broker is not None:
        lines += ["[mqtt]", f'host = "{broker.host}"', f"port = {broker.port}", 'client_id = "bench-gw"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in mqtt.items()]
    lines += ["[numbers]", 'default_country = "DE"']
    path = directory / "smsgw.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def daemon(directory: Path, ports: list[str], broker: Broker | None, **mqtt: Any) -> Iterator[Daemon]:
    """``smsgw run`` in its own process with a modem per port; yields once every modem is online.
    With ``SMSGW_BENCH_PROFILE=FILE`` it runs under cProfile, which writes FILE when it stops."""
    directory.mkdir(parents=True, exist_ok=True)
    config = write_config(directory, ports, broker, **mqtt)
    log = (directory / "daemon.log").open("wb")
    profile = ["-m", "cProfile", "-o", os.environ["SMSGW_BENCH_PROFILE"]] if os.environ.get("SMSGW_BENCH_PROFILE") else []
    process = subprocess.Popen([sys.executable, *profile, "-m", "appliance", "run", "--config", str(config)],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=UNDER_TEST, env=env())
    running = Daemon(process, directory / "smsgw.db", [f"sim{i}" for i in range(len(ports))])
    try:
        wait_until(lambda: process.poll() is not None or running.db.exists(), timeout=30, interval=0.005,
                   what="the store file")

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"smsgw run exited with {process.returncode}: "
                                   f"{(directory / 'daemon.log').read_text()[-2000:]}")
            try:
                return running.online()
            except sqlite3.OperationalError:
                return False

        wait_until(ready, timeout=60, interval=0.02, what="every modem online")
        yield running
    finally:
        running.close()
        stop(process)
        log.close()


@contextlib.contextmanager
def broker(directory: Path, extra: str = "") -> Iterator[Broker]:
    started = Broker(directory, persistence=False, extra_config=extra).start()
    try:
        yield started
    finally:
        started.kill()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (KiB) of the process, and its context switches summed over all its threads."""
    result: dict[str, int] = {"voluntary": 0, "involuntary": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            result[key] = int(value.split()[0])
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            for line in (task / "status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "voluntary_ctxt_switches":
                    result["voluntary"] += int(value)
                elif key == "nonvoluntary_ctxt_switches":
                    result["involuntary"] += int(value)
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
