"""``[[modems]] imei`` / ``iccid`` with ``port = "auto"``: the daemon finds its modem by identity.

Two simulated modems (``smsgw simulate``; distinct IMEIs and ICCIDs, as ``drivers/simulator/modem.py``
numbers them) sit behind ``dev/ttyUSB*`` symlinks the test owns; ``[modems_auto] globs`` points the daemon there.
Swapping the symlinks between two runs, and a hot-plug that brings a modem back under a new name,
must not change which configured modem is which.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import FAST_HEALTH, DaemonProcess
from test_simulate_cli import Running, modem_status, running_simulator
from waiting import async_wait_until

from appliance.config import ConfigError, load_config
from appliance.store import OutboundRequest, Store
from drivers.simulator import Simulator
from drivers.simulator.control import request

pytest_plugins = ["daemon_helpers"]  # the `daemons` fixture

OUTSIDE = "+4915112345678"


class Sim:
    """``smsgw simulate`` in its own process, as on a real machine (the daemon never probes a port
    another program holds, and tells the simulator from other programs by its command line)."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.directory = running.directory
        self.ports = [str(self.directory / "modem0"), str(self.directory / "modem1")]
        self.modems = [modem_status(self.directory, index) for index in range(2)]

    def fault(self, modem: int, kind: str) -> None:
        assert request(self.directory, {"action": "fault", "modem": modem, "kind": kind})["ok"]

    def sent(self) -> list[dict[str, Any]]:
        log = self.directory / "network.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Sim]:
    with running_simulator(tmp_path / "sim", "--modems", "2", "--profile", "generic") as running:
        yield Sim(running)


def link(dev: Path, name: str, target: str) -> None:
    dev.mkdir(exist_ok=True)
    path = dev / name
    if path.is_symlink():
        path.unlink()
    path.symlink_to(target)


def config(tmp_path: Path, modems: str, globs: list[str]) -> Path:
    path = tmp_path / "smsgw.toml"
    quoted = ", ".join(f'"{g}"' for g in globs)
    path.write_text(f'[store]\npath = "{tmp_path / "smsgw.db"}"\n\n[modems_auto]\nglobs = [{quoted}]\n\n{modems}\n'
                    + FAST_HEALTH.format(sweep_interval=30.0, retry_base=0.3))
    return path


def modem_state(db: Path, modem_id: str) -> dict[str, Any]:
    if not db.exists():
        return {}
    with Store(db) as store:
        return store.state_get("modem", modem_id) or {}


async def wait_modem(db: Path, modem_id: str, daemon: DaemonProcess, after: float = 0.0,
                     **expected: Any) -> dict[str, Any]:
    """Until the modem's recorded state has ``expected`` (and was recorded after ``after``)."""
    def ok() -> dict[str, Any] | None:
        state = modem_state(db, modem_id)
        fresh = state.get("at", 0) > after
        return state if fresh and all(state.get(k) == v for k, v in expected.items()) else None

    try:
        return await async_wait_until(ok, timeout=20, interval=0.05, what=f"{modem_id} {expected}")
    except AssertionError:
        print(modem_state(db, modem_id), daemon.log_text()[-3000:])
        raise


async def test_auto_ports_follow_the_imei_across_swaps_and_hot_plug(tmp_path: Path, sim: Sim,
                                                                     daemons: list[DaemonProcess]) -> None:
    dev = tmp_path / "dev"
    first, second = sim.modems
    first_imei, second_imei = first["imei"], second["imei"]
    link(dev, "ttyUSB0", sim.ports[0])
    link(dev, "ttyUSB1", sim.ports[1])
    path = config(tmp_path, f'[[modems]]\nid = "north"\nport = "auto"\nimei = "{second_imei}"\n\n'
                            f'[[modems]]\nid = "south"\nport = "auto"\nimei = "{first_imei}"\n',
                  [str(dev / "ttyUSB*"), str(dev / "ttyACM*")])
    db = tmp_path / "smsgw.db"

    daemon = await DaemonProcess(path).start()
    daemons.append(daemon)
    await wait_modem(db, "north", daemon, state="online", port=str(dev / "ttyUSB1"), imei=second_imei)
    await wait_modem(db, "south", daemon, state="online", port=str(dev / "ttyUSB0"), imei=first_imei)
    assert await daemon.stop() == 0

    # the next boot enumerates the two sticks the other way round
    link(dev, "ttyUSB0", sim.ports[1])
    link(dev, "ttyUSB1", sim.ports[0])
    daemon = await DaemonProcess(path).start()
    daemons.append(daemon)
    await wait_modem(db, "north", daemon, state="online", port=str(dev / "ttyUSB0"), imei=second_imei)
    await wait_modem(db, "south", daemon, state="online", port=str(dev / "ttyUSB1"), imei=first_imei)

    # hot-plug: "north" vanishes and comes back as another device name
    sim.fault(1, "unplug")
    (dev / "ttyUSB0").unlink()
    await wait_modem(db, "north", daemon, healthy=False)
    sim.fault(1, "replug")
    link(dev, "ttyACM3", sim.ports[1])
    await wait_modem(db, "north", daemon, state="online", port=str(dev / "ttyACM3"), imei=second_imei)

    # and it sends from there: the SMS leaves with the second modem's number
    with Store(db) as store:
        store.enqueue([OutboundRequest(to=OUTSIDE, text="after the replug", source="test")])
    sim.fault(0, "no-network")  # only north can send now
    await async_wait_until(lambda: any(r["text"] == "after the replug" for r in sim.sent()), timeout=20,
                           what="the SMS on the network")
    (record,) = [r for r in sim.sent() if r["text"] == "after the replug"]
    assert record["from"] == second["number"]
    assert await daemon.stop() == 0


async def test_wrong_sim_is_refused_before_any_pin(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    async with Simulator(tmp_path / "sim", modems=1, profile="generic", pin="4321") as sim:
        path = config(tmp_path, f'[[modems]]\nid = "gate"\nport = "{sim.ports[0]}"\npin = "4321"\n'
                                f'iccid = "89490200000000099999"\n', [str(tmp_path / "none*")])
        daemon = await DaemonProcess(path).start()
        daemons.append(daemon)
        db = tmp_path / "smsgw.db"
        state = await wait_modem(db, "gate", daemon, state="wrong sim")
        assert state["healthy"] is False
        assert f"ICCID {sim.modems[0].iccid}, not the configured 89490200000000099999" in state["last_error"]
        assert sim.modems[0].pin_entries == 0  # the configured PIN was not spent on another SIM
        # (the same status goes out retained on modem/gate with [mqtt]; this daemon has none, so it
        # writes no event: the state row above is what `smsgw status` reads)
        assert await daemon.stop() == 0


@pytest.mark.parametrize(
    ("modem", "message"),
    [
        ('port = "auto"', 'modems[0].port: "auto" needs imei'),
        ('port = "auto"\nimei = "12ab"', "modems[0].imei: '12ab' must be 14-17 digits"),
        ('port = "/dev/ttyUSB0"\niccid = "123"', "modems[0].iccid: '123' must be 18-22 digits"),
    ],
)
def test_identity_keys_are_validated(tmp_path: Path, modem: str, message: str) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text(f'[store]\npath = "x.db"\n[[modems]]\nid = "a"\n{modem}\n')
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(error.value) == f"{path}: {message}" or str(error.value).startswith(f"{path}: {message}")


def test_duplicate_imei_and_relative_glob_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "smsgw.toml"
    imei = "354861000000017"
    path.write_text(f'[store]\npath = "x.db"\n[[modems]]\nid = "a"\nport = "auto"\nimei = "{imei}"\n'
                    f'[[modems]]\nid = "b"\nport = "auto"\nimei = "{imei}"\n')
    with pytest.raises(ConfigError, match=r"modems\[1\]\.imei: 354861000000017 is also modems\[0\]\.imei"):
        load_config(path)
    path.write_text('[store]\npath = "x.db"\n[modems_auto]\nglobs = ["ttyUSB*"]\n')
    with pytest.raises(ConfigError, match=r"modems_auto\.globs\[0\]: 'ttyUSB\*' is not an absolute"):
        load_config(path)
    path.write_text('[store]\npath = "x.db"\n')
    assert "/dev/serial/by-id/*" in load_config(path).modems_auto.globs
    assert os.path.isabs(load_config(path).modems_auto.globs[0])


async def test_a_port_another_program_holds_is_not_probed(tmp_path: Path, sim: Sim,
                                                          daemons: list[DaemonProcess]) -> None:
    import asyncio
    import sys

    dev = tmp_path / "dev"
    link(dev, "ttyS0", sim.ports[0])  # a serial console's getty, or ModemManager, has it open
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import os, sys; os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY);"
        " print('open', flush=True); sys.stdin.read()", str(dev / "ttyS0"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        assert holder.stdout is not None and await holder.stdout.readline() == b"open\n"
        path = config(tmp_path, f'[[modems]]\nid = "a"\nport = "auto"\nimei = "{sim.modems[0]["imei"]}"\n',
                      [str(dev / "ttyS*")])
        daemon = await DaemonProcess(path).start()
        daemons.append(daemon)
        db = tmp_path / "smsgw.db"
        state = await wait_modem(db, "a", daemon, healthy=False, state="waiting for port")
        assert state["last_error"] == f"no port has the modem with IMEI {sim.modems[0]['imei']}"
        # if the daemon had probed the held port it would have found the modem there: it did not
    finally:
        holder.kill()
        await holder.wait()
    await wait_modem(db, "a", daemon, state="online", port=str(dev / "ttyS0"))
    assert await daemon.stop() == 0


async def test_the_port_of_the_last_run_is_asked_first(tmp_path: Path, sim: Sim, daemons: list[DaemonProcess]) -> None:
    """A silent candidate (a serial port with nothing behind it) costs seconds per probe: after the
    first run the daemon asks the port it found the modem on before any other."""
    dev = tmp_path / "dev"
    master, slave = os.openpty()
    try:
        link(dev, "tty0", os.ttyname(slave))  # sorts first, never answers
        os.close(slave)
        os.set_blocking(master, False)
        link(dev, "tty1", sim.ports[0])
        path = config(tmp_path, f'[[modems]]\nid = "a"\nport = "auto"\nimei = "{sim.modems[0]["imei"]}"\n',
                      [str(dev / "tty*")])
        db = tmp_path / "smsgw.db"

        def written() -> bytes:
            try:
                return os.read(master, 4096)
            except (BlockingIOError, OSError):
                return b""

        daemon = await DaemonProcess(path).start()
        daemons.append(daemon)
        await wait_modem(db, "a", daemon, state="online", port=str(dev / "tty1"))
        assert await daemon.stop() == 0
        assert b"AT" in written()  # the first run had to ask the silent port too

        second_run = time.time()
        daemon = await DaemonProcess(path).start()
        daemons.append(daemon)
        await wait_modem(db, "a", daemon, after=second_run, state="online", port=str(dev / "tty1"))
        assert await daemon.stop() == 0
        assert written() == b""  # the second went to tty1 at once
    finally:
        os.close(master)
