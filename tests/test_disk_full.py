"""A full disk, for real: a small tmpfs mounted by the test and filled to ENOSPC.

Read-only commands (`smsgw status`, `inbox`, `outbox`) open the store with SQLite's ``mode=ro`` and
work; `smsgw send` and the daemon say that the disk is full and how much is free; nothing is
acknowledged (exit status 0, PUBACK, response) that was not committed, and once space is back the
daemon commits the request the broker kept for it. SQLite reports the failed write as SQLITE_FULL
("database or disk is full", https://www.sqlite.org/rescode.html#full).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import ROOT, daemon_env, write_config
from mosquitto import Broker, Probe
from test_mqtt_e2e import App, mqtt_section
from test_mqtt_poison import start_online
from tmpfs import small_tmpfs
from waiting import async_wait_until

from appliance.store import OutboundRequest, Store
from drivers.simulator import Simulator

pytest_plugins = ["mosquitto"]

OUTSIDE = "+4915112345678"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, "2m") as mount:
        yield mount


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; the file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 512, 1):  # down to the last byte that fits
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as info:
        (directory / "probe").write_bytes(b"\0" * 4096)
    assert info.value.errno == errno.ENOSPC
    return filler


def smsgw(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", args[0], "--config", str(config), *args[1:]],
                          capture_output=True, text=True, env=daemon_env(), cwd=ROOT, timeout=60)


def test_read_only_commands_work_and_send_says_the_disk_is_full(small_disk: Path) -> None:
    config = write_config(small_disk / "gw", ["/dev/null"])
    with Store(small_disk / "gw" / "smsgw.db") as store:
        store.enqueue([OutboundRequest(to=OUTSIDE, text="before the disk filled", source="test")])
    filler = fill(small_disk)

    for command in ("status", "outbox", "inbox"):
        done = smsgw(config, command, "--json")
        assert done.returncode == 0, (command, done.stderr)
    outbox: list[Any] = json.loads(smsgw(config, "outbox", "--json").stdout)["messages"]
    assert [m["text"] for m in outbox] == ["before the disk filled"]

    sent = smsgw(config, "send", OUTSIDE, "x" * 150)
    assert sent.returncode == 1
    assert "is full" in sent.stderr and "free" in sent.stderr, sent.stderr
    assert sent.stdout == ""  # no id printed: nothing was queued

    filler.unlink()
    outbox = json.loads(smsgw(config, "outbox", "--json").stdout)["messages"]
    assert [m["text"] for m in outbox] == ["before the disk filled"]  # the refused send left nothing


async def test_the_daemon_keeps_a_request_unacknowledged_while_the_disk_is_full(
        small_disk: Path, tmp_path: Path, mosquitto: Broker) -> None:
    async with Simulator(tmp_path / "sim", modems=1) as sim:
        config = write_config(small_disk / "gw", sim.ports, extra=mqtt_section(mosquitto))
        probe = Probe(mosquitto, "smsgw/bridge/#")
        app = App(config)
        try:
            await start_online(app, probe)
            filler = fill(small_disk)
            offset = len(app.log_text())
            for n in range(20):  # enough to need new pages in the WAL
                probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": f"full {n} " + "y" * 140,
                                                        "transaction": f"t{n}"}))
            await async_wait_until(lambda: "the disk holding" in app.log_text()[offset:], timeout=20,
                                   what="the daemon saying the disk is full")
            line = next(line for line in app.log_text()[offset:].splitlines() if "the disk holding" in line and "raise" not in line)
            assert "is full (" in line and " free)" in line, line
            answered = {r["transaction"] for r in probe.json("smsgw/bridge/response/send")}
            done = smsgw(config, "status", "--json")
            assert done.returncode == 0, done.stderr

            filler.unlink()
            await async_wait_until(lambda: len(probe.json("smsgw/bridge/response/send")) >= 20, timeout=30,
                                   what="every request answered once space is back")
            responses = probe.json("smsgw/bridge/response/send")
            assert all(r["status"] == "ok" for r in responses)  # type: ignore[index]
            assert sorted(r["transaction"] for r in responses) == sorted(f"t{n}" for n in range(20))  # type: ignore[index]
            with Store(small_disk / "gw" / "smsgw.db") as store:
                texts = [m["text"] for m in store.outbox(100)]
            assert len(texts) == 20
            # every request answered before the disk filled up was committed: no response without a commit
            assert answered <= {f"t{n}" for n in range(20)}
        finally:
            await app.stop()
            probe.close()
            os.sync()
