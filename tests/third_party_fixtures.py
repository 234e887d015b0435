"""Run `smsgw simulate` as a process for third-party AT clients (gammu, smsd, python-gsmmodem).

The simulator runs exactly as a user runs it (``python -m appliance simulate --dir DIR``); the tests
drive real client programs against ``DIR/modem0`` and read what reached the network from
``DIR/network.jsonl``. Incoming SMS are injected with ``smsgw simulate inject``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_until

REPO = Path(__file__).resolve().parent.parent
#: Upper bound for one run of a client program.
CLIENT_TIMEOUT = 30.0


def smsgw_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "appliance", *args]


def tail(path: Path, lines: int = 40) -> str:
    """The end of a log file, for assertion messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class SimulatorProcess:
    directory: Path
    process: subprocess.Popen[bytes]
    log: Path
    profile: str = "generic"
    ready_line: str = ""

    def port(self, modem: int = 0) -> str:
        return str(self.directory / f"modem{modem}")

    def network(self) -> list[dict[str, Any]]:
        """Every complete line of DIR/network.jsonl so far."""
        path = self.directory / "network.jsonl"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n") and line.strip()]

    def wait_sent(self, to: str, predicate: Callable[[dict[str, Any]], bool] = lambda r: True,
                  timeout: float = 15.0) -> dict[str, Any]:
        """The first network record for ``to`` (compared by digits) that satisfies ``predicate``."""
        digits = to.lstrip("+")

        def found() -> dict[str, Any]:
            for record in self.network():
                if str(record.get("to", "")).lstrip("+").endswith(digits) and predicate(record):
                    return record
            return {}

        try:
            return wait_until(found, timeout=timeout, what=f"an SMS to {to} in network.jsonl")
        except AssertionError as error:
            raise AssertionError(f"{error}; network.jsonl: {self.network()}") from None

    def inject(self, sender: str, text: str, modem: int = 0) -> None:
        """Deliver an incoming SMS with the `smsgw simulate inject` command."""
        result = subprocess.run(
            smsgw_command("simulate", "inject", "--dir", str(self.directory), "--modem", str(modem),
                          "--from", sender, "--text", text),
            capture_output=True, timeout=CLIENT_TIMEOUT, cwd=REPO,
        )  # fmt: skip
        assert result.returncode == 0, f"inject failed: {result.stdout!r} {result.stderr!r}"

    def fault(self, kind: str, modem: int = 0) -> None:
        """Inject a fault with the `smsgw simulate fault` command."""
        result = subprocess.run(
            smsgw_command("simulate", "fault", "--dir", str(self.directory), "--modem", str(modem), kind),
            capture_output=True, timeout=CLIENT_TIMEOUT, cwd=REPO,
        )  # fmt: skip
        assert result.returncode == 0, f"fault failed: {result.stdout!r} {result.stderr!r}"

    def identity(self, modem: int = 0) -> dict[str, Any]:
        """What the simulator says modem ``modem`` is: number, IMEI, IMSI (control socket ``status``),
        and the manufacturer string its profile answers to +CGMI."""
        from drivers.profiles import load_profile
        from drivers.simulator.control import request
        from drivers.simulator.flavours import flavour_for

        reply = request(self.directory, {"action": "status"})
        assert reply.get("ok"), reply
        described = dict(reply["modems"][modem])
        profile = load_profile(self.profile)
        described["manufacturer"] = flavour_for(profile.name, profile.vendor_class).manufacturer
        return described

    def running(self) -> bool:
        return self.process.poll() is None


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def run_simulator(directory: Path, *args: str, profile: str = "generic") -> Iterator[SimulatorProcess]:
    """Start ``smsgw simulate --dir DIR``, wait for its ready line and its first port, stop it after."""
    directory.mkdir(parents=True, exist_ok=True)
    log = directory.parent / f"{directory.name}-simulator.log"
    out = log.open("wb")
    process = subprocess.Popen(
        smsgw_command("simulate", "--dir", str(directory), "--profile", profile, *args),
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    simulator = SimulatorProcess(directory, process, log, profile)
    try:

        def ready() -> str:
            if process.poll() is not None:
                raise AssertionError(f"smsgw simulate exited with {process.returncode}:\n{tail(log)}")
            text = log.read_text(errors="replace")
            if "\n" in text and os.path.exists(simulator.port(0)):
                return text.splitlines()[0]
            return ""

        simulator.ready_line = wait_until(ready, timeout=15, what="the simulator's ready line")
        yield simulator
    finally:
        _stop(process)
        out.close()


def require(program: str) -> str:
    """The path of an installed client program, or skip the test naming what is missing."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/local/sbin:/sbin")
    if path is None:
        pytest.skip(f"{program} is not installed (.ci/setup installs it)")
    return path


@dataclass
class Daemon:
    """A client daemon (gammu-smsd, smsd) started in its own process group."""

    process: subprocess.Popen[bytes]
    log: Path

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"the client exited with {self.process.returncode}:\n{tail(self.log)}")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # smsd's helper processes share the group; make sure none outlives the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@contextlib.contextmanager
def run_daemon(command: list[str], log: Path, cwd: Path) -> Iterator[Daemon]:
    out = log.open("wb")
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               cwd=cwd, start_new_session=True)
    daemon = Daemon(process, log)
    try:
        yield daemon
    finally:
        daemon.stop()
        out.close()
