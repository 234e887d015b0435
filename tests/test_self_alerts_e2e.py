"""Self-alerts end to end: `smsgw run` with two simulated modems (drivers/simulator) and, for the
broker, a real mosquitto (tests/mosquitto.py). A modem made to fail is reported through the other one
and its recovery follows; an alert about a modem (its balance, from the simulated network's USSD
answer) waits for another modem rather than go through it; the store's file system (a real tmpfs)
running short of space is reported and its recovery too;
the broker stopped is reported, a SIGKILL and a restart send it no second time, the broker back is
reported once."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import ROOT, DaemonProcess, daemon_env, write_config
from mosquitto import Broker
from tmpfs import small_tmpfs
from waiting import async_wait_until

from appliance.store import OutboundRequest, Store
from drivers.simulator import Simulator

pytest_plugins = ["mosquitto", "daemon_helpers"]

INSTALLER = "+4917612345678"
OUTSIDE = "+49151123450"
#: Seconds a daemon may take to start: a fraction of one on a quiet machine, more under a loaded one.
START = 30.0


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", modems=2, profile="generic") as simulator:
        yield simulator


def self_alerts(**keys: str) -> str:
    lines = ["", "[self_alerts]", f'to = ["{INSTALLER}"]', 'name = "gw"', 'check_interval = "1s"']
    lines += [f"{key} = {value}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def to_installer(sim: Simulator, needle: str) -> list[dict[str, Any]]:
    return [r for r in sim.network.sent if r["to"].endswith(INSTALLER[3:]) and needle in str(r["text"])]


async def both_online(db: Path) -> None:
    with Store(db) as store:
        await async_wait_until(lambda: all((store.state_get("modem", m) or {}).get("state") == "online"
                                           for m in ("sim0", "sim1")), timeout=15, what="both modems online")


async def smsgw_status(config: Path) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", "status", "--config", str(config), "--json",
        stdout=asyncio.subprocess.PIPE, env=daemon_env(), cwd=ROOT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    document: dict[str, Any] = json.loads(out)
    return document


@pytest.mark.timeout(90)
async def test_a_modem_that_fails_is_reported_through_the_other_one(tmp_path: Path, sim: Simulator,
                                                                    daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path / "gw", sim.ports, extra=self_alerts(modem_down='"2s"'))
    db = tmp_path / "gw" / "smsgw.db"
    daemon = await DaemonProcess(config).start()
    daemons.append(daemon)
    await daemon.wait_running(timeout=START)
    await both_online(db)
    sim.fault(0, "hang")
    (alert,) = await async_wait_until(lambda: to_installer(sim, "modem sim0 down"), timeout=30,
                                      what="the modem_down alert")
    assert alert["modem"] == 1 and alert["text"].startswith("gw: modem sim0 down for ")
    status = await smsgw_status(config)
    assert status["self_alerts"]["modem_down:sim0"]["state"] == "active"
    assert status["sources_today"]["self"]["accepted"] == 1
    sim.fault(0, "recover")
    (back,) = await async_wait_until(lambda: to_installer(sim, "modem sim0 back in service"), timeout=30,
                                     what="the recovery SMS")
    assert back["text"].startswith("gw: modem sim0 back in service after ")
    assert await daemon.stop() == 0
    assert len(to_installer(sim, "sim0 down")) == 1


@pytest.mark.timeout(90)
async def test_an_alert_about_a_healthy_modem_never_goes_through_it(tmp_path: Path, sim: Simulator,
                                                                    daemons: list[DaemonProcess]) -> None:
    """sim0's balance check finds less than its low mark while sim1 hangs: the alert (critical) waits
    for sim1, while a client message queued after it (normal) goes through sim0."""
    config = write_config(tmp_path / "gw", sim.ports, extra=self_alerts(modem_down="false"))
    config.write_text(config.read_text().replace(
        'id = "sim0"', 'id = "sim0"\nbalance = { code = "*100#", every = "1h", low = 5, unit = "EUR" }', 1))
    db = tmp_path / "gw" / "smsgw.db"
    sim.fault(0, "balance:3.50")
    sim.fault(1, "hang")
    daemon = await DaemonProcess(config).start()
    daemons.append(daemon)
    await daemon.wait_running(timeout=START)
    with Store(db) as store:
        alert = await async_wait_until(
            lambda: next((m for m in store.outbox(20) if m["source"] == "self"), None), timeout=20,
            what="the balance_low alert queued")
        assert alert["text"] == "gw: balance of modem sim0 is 3.5 EUR, below 5.0 EUR"
        assert store.avoided_modems(alert["id"]) == ["sim0"]
        (client,) = store.enqueue([OutboundRequest(to=OUTSIDE, text="after the alert", source="cli")])
        await async_wait_until(lambda: (store.message(client.id) or {}).get("state") == "sent", timeout=20,
                               what="the client message sent through sim0")
        assert store.message(client.id)["modem"] == "sim0"  # type: ignore[index]
        assert store.message(alert["id"])["state"] == "queued"  # type: ignore[index]
        sim.fault(1, "recover")
        (sent,) = await async_wait_until(lambda: to_installer(sim, "balance of modem sim0"), timeout=30,
                                         what="the alert through sim1")
        assert sent["modem"] == 1
    assert await daemon.stop() == 0


@pytest.mark.timeout(90)
async def test_a_stalled_queue_is_reported_around_the_modem_that_fails(tmp_path: Path, sim: Simulator,
                                                                      daemons: list[DaemonProcess]) -> None:
    """sim0 has no network (every send: +CMS ERROR: 331, transient; its pings still answer) and sim1
    hangs: nothing leaves. The no_send alert avoids sim0, waits while sim0 keeps retrying the client's
    message, and goes through sim1 once it is back; the next send is texted as "sending again"."""
    config = write_config(tmp_path / "gw", sim.ports, extra=self_alerts(no_send='"2s"', modem_down="false",
                                                                        queue_age="false"))
    db = tmp_path / "gw" / "smsgw.db"
    daemon = await DaemonProcess(config).start()
    daemons.append(daemon)
    await daemon.wait_running(timeout=START)
    await both_online(db)
    sim.fault(1, "hang")
    with Store(db) as store:
        await async_wait_until(lambda: not store.state_get("modem", "sim1")["healthy"], timeout=15,
                               what="sim1 out of rotation")
        sim.fault(0, "no-network")
        (client,) = store.enqueue([OutboundRequest(to=OUTSIDE, text="stuck", source="cli")])
        alert = await async_wait_until(
            lambda: next((m for m in store.outbox(20) if m["source"] == "self"), None), timeout=20,
            what="the no_send alert queued")
        assert alert["text"].startswith("gw: nothing sent for ") and "331" in alert["text"]
        assert store.avoided_modems(alert["id"]) == ["sim0"]
        tried = int(store.message(client.id)["attempts"])  # type: ignore[index]
        await async_wait_until(lambda: int(store.message(client.id)["attempts"]) > tried  # type: ignore[index]
                               or store.message(client.id)["state"] == "failed",  # type: ignore[index]
                               timeout=20, what="sim0 at work again after the alert was queued")
        assert store.message(alert["id"])["attempts"] == 0  # type: ignore[index]  # never claimed by sim0
        sim.fault(1, "recover")
        (sent,) = await async_wait_until(lambda: to_installer(sim, "nothing sent for"), timeout=30,
                                         what="the alert through sim1")
        assert sent["modem"] == 1
        await async_wait_until(lambda: to_installer(sim, "gw: sending again after"), timeout=30,
                               what="the recovery SMS")
    assert await daemon.stop() == 0


@pytest.mark.timeout(120)
async def test_broker_down_is_texted_once_across_a_sigkill_and_its_return_too(
        tmp_path: Path, sim: Simulator, mosquitto: Broker, daemons: list[DaemonProcess]) -> None:
    mqtt = (f'\n[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\nclient_id = "gw-self"\n'
            "reconnect_min = 0.2\nreconnect_max = 0.5\n")
    config = write_config(tmp_path / "gw", sim.ports, extra=mqtt + self_alerts(broker_down='"2s"'))
    db = tmp_path / "gw" / "smsgw.db"
    daemon = await DaemonProcess(config).start()
    daemons.append(daemon)
    await daemon.wait_running(timeout=START)
    with Store(db) as store:
        await async_wait_until(lambda: (store.state_get("mqtt", "connection") or {}).get("connected"),
                               timeout=15, what="MQTT connected")
    mosquitto.stop()
    (alert,) = await async_wait_until(lambda: to_installer(sim, "not connected for"), timeout=30,
                                      what="the broker_down alert")
    assert alert["text"].startswith(f"gw: MQTT broker {mosquitto.host}:{mosquitto.port} not connected for ")
    with Store(db) as store:  # killed after the commit of its TP-MR, not inside the AT+CMGS window
        await async_wait_until(lambda: [m["state"] for m in store.outbox(5) if m["source"] == "self"] == ["sent"],
                               timeout=10, what="the alert recorded as sent")
    await daemon.kill()
    second = await DaemonProcess(config).start()
    daemons.append(second)
    await second.wait_running(timeout=START)
    await async_wait_until(lambda: "self-alerts: first check" in second.log_text(second.log_offset), timeout=15,
                           what="the new life's first check, the broker still down")
    mosquitto.start()
    (back,) = await async_wait_until(lambda: to_installer(sim, "MQTT broker connected again"), timeout=30,
                                     what="the recovery SMS")
    assert back["text"].startswith("gw: MQTT broker connected again after ")
    assert await second.stop() == 0
    assert len(to_installer(sim, "not connected for")) == 1



@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs for the store."""
    with small_tmpfs(tmp_path, "16m") as mount:
        yield mount


@pytest.mark.timeout(90)
async def test_the_store_disk_running_short_is_reported_and_its_return(small_disk: Path, sim: Simulator,
                                                                       daemons: list[DaemonProcess]) -> None:
    config = write_config(small_disk / "gw", sim.ports, extra=self_alerts(disk_free_mb="8"))
    daemon = await DaemonProcess(config).start()
    daemons.append(daemon)
    await daemon.wait_running(timeout=START)
    await async_wait_until(lambda: "self-alerts: first check: nothing active" in daemon.log_text(daemon.log_offset),
                           timeout=15, what="a first check with room on the disk")
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (10 * 1024 * 1024))  # 16 MiB - store - 10 MiB: below 8 MiB free
    assert os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize < 8 * 1024 * 1024
    (alert,) = await async_wait_until(lambda: to_installer(sim, "MiB free on the disk of the store"), timeout=20,
                                      what="the disk_free alert")
    match = re.fullmatch(r"gw: (\d+) MiB free on the disk of the store (.+) \(alert below 8 MiB\)", alert["text"])
    assert match is not None and int(match[1]) < 8 and match[2] == str(small_disk / "gw")
    filler.unlink()
    (back,) = await async_wait_until(lambda: to_installer(sim, "disk space of the store back"), timeout=20,
                                     what="the recovery SMS")
    assert back["text"].startswith("gw: disk space of the store back above the alert level after ")
    assert await daemon.stop() == 0
