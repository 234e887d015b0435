"""Webhooks end to end: ``smsgw run`` as a subprocess, the simulator's modem, a real mosquitto, and a
real aiohttp receiver on loopback in the test's event loop.

- a received SMS and an outbound message's state changes reach the webhook as the same JSON MQTT
  publishes, signed (checked here with ``hmac``), also for a message queued by ``smsgw send`` in
  another process;
- a SIGKILL of the daemon while a POST is in flight (committed, not yet acknowledged), and while
  the receiver is down: after the restart every event is delivered, in order, with the delivery id
  it had before the kill; a repeat is only a retry with the same id.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import ROOT, DaemonProcess, daemon_env, write_config
from mosquitto import Broker, Probe
from waiting import async_wait_until
from webhook_receiver import Receiver, ReceiverFactory

from appliance.store import Store
from drivers.simulator import Simulator

pytest_plugins = ["mosquitto", "daemon_helpers", "webhook_receiver"]

OUTSIDE = "+4915112345678"
FIELD = "+4917099999999"
SECRET = "e2e-webhook-secret-0123456789"


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", modems=1, profile="generic") as simulator:
        yield simulator


@pytest.fixture
async def receiver(receivers: ReceiverFactory) -> Receiver:
    return await receivers(start=False)  # each test starts it


def webhook_section(receiver: Receiver, timeout: float = 5, **extra: Any) -> str:
    lines = ["", "[[webhooks]]", 'name = "erp"', f'url = "{receiver.url}"', f'secret = "{SECRET}"',
             "retry_base = 0.05", "retry_max = 0.2", f"timeout = {timeout}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def mqtt_section(broker: Broker) -> str:
    return "\n".join(["", "[mqtt]", f'host = "{broker.host}"', f"port = {broker.port}", 'client_id = "gw-webhooks"',
                      "discovery = false", "reconnect_min = 1", "reconnect_max = 1"]) + "\n"


def deliveries(db: Path) -> list[dict[str, Any]]:
    with Store(db) as store:
        return list(reversed(store.deliveries(None, 10_000)))


def inbox_ids(db: Path) -> list[int]:
    with Store(db) as store:
        return sorted(int(row["id"]) for row in store.inbox(10_000))


async def test_received_sms_and_message_states_reach_the_webhook_as_mqtt_publishes_them(
        tmp_path: Path, sim: Simulator, mosquitto: Broker, receiver: Receiver, daemons: list[DaemonProcess]) -> None:
    await receiver.start()
    config = write_config(tmp_path / "gw", sim.ports, extra=mqtt_section(mosquitto) + webhook_section(receiver))
    probe = Probe(mosquitto, "smsgw/#")
    try:
        daemon = await DaemonProcess(config).start()
        daemons.append(daemon)
        await daemon.wait_running(timeout=20)
        await async_wait_until(lambda: probe.json("smsgw/bridge/state")[-1:] == [{"state": "online"}], timeout=15,
                               what="the bridge online")
        probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "Freezer 3 is warm", "id": "f3",
                                                "transaction": "t1"}))
        await async_wait_until(lambda: probe.json("smsgw/bridge/response/send"), timeout=15, what="the response")
        message_id = probe.json("smsgw/bridge/response/send")[0]["data"]["id"]  # type: ignore[index]
        topic = f"smsgw/message/{message_id}"
        await async_wait_until(lambda: "sent" in [r.json["state"] for r in receiver.requests], timeout=20,
                               what="the sent state at the webhook")
        posted = [r for r in receiver.requests if r.event == "message"]
        assert [r.json["state"] for r in posted][:3] == ["queued", "sending", "sent"]
        await async_wait_until(lambda: len(probe.json(topic)) >= len(posted), timeout=10, what="MQTT states")
        assert [r.json for r in posted] == probe.json(topic)[:len(posted)]  # the same documents, in the same order

        sim.inject(0, FIELD, "PUMP 7 STATUS")
        await async_wait_until(lambda: [r for r in receiver.requests if r.event == "received"], timeout=20,
                               what="the received SMS at the webhook")
        (received,) = [r for r in receiver.requests if r.event == "received"]
        assert received.json["from"] == FIELD and received.json["text"] == "PUMP 7 STATUS"
        await async_wait_until(lambda: probe.json("smsgw/received"), timeout=10)
        assert received.json == probe.json("smsgw/received")[0]

        # queued by another process: the daemon's store watch wakes the sender
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "appliance", "send", "--config", str(config), OUTSIDE, "from the command line",
            stdout=asyncio.subprocess.DEVNULL, env=daemon_env(), cwd=ROOT)
        assert await asyncio.wait_for(cli.wait(), 30) == 0
        await async_wait_until(lambda: any(r.json.get("to") == OUTSIDE and r.json["id"] != message_id
                                           for r in receiver.requests if r.event == "message"),
                               timeout=20, what="the CLI message's states at the webhook")

        assert all(r.signed_with(SECRET) for r in receiver.requests)
        assert len({r.delivery for r in receiver.requests}) == len(receiver.requests)  # no repeat without a failure
        assert await daemon.stop() == 0
    finally:
        probe.close()


@pytest.mark.timeout(120)
async def test_sigkill_between_commit_and_delivery_loses_nothing(
        tmp_path: Path, sim: Simulator, receiver: Receiver, daemons: list[DaemonProcess]) -> None:
    db = tmp_path / "gw" / "smsgw.db"
    config = write_config(tmp_path / "gw", sim.ports, sweep_interval=0.5,
                          extra=webhook_section(receiver, timeout=60, events=["received"]))  # held, not timed out
    await receiver.start()
    receiver.hold()  # takes the POSTs and answers none

    # 1. killed while the first POST is in flight: committed, sent, its answer never seen
    daemon = await DaemonProcess(config).start()
    daemons.append(daemon)
    await daemon.wait_running(timeout=20)
    for n in range(3):
        sim.inject(0, FIELD, f"reading {n}")
    await async_wait_until(lambda: len(inbox_ids(db)) == 3, timeout=20, what="three SMS committed")
    await async_wait_until(lambda: receiver.arrived, timeout=10, what="the first POST in flight")
    await daemon.kill()
    before = deliveries(db)
    assert [row["state"] for row in before] == ["pending"] * 3 and before[0]["attempts"] == 0
    assert [json.loads(row["body"])["id"] for row in before] == inbox_ids(db)  # committed with each SMS
    in_flight = receiver.arrived[0].delivery
    assert in_flight == before[0]["delivery_id"]
    receiver.release()

    # 2. the receiver is down and the daemon is killed again with deliveries committed, never POSTed
    await receiver.stop()
    daemon = await DaemonProcess(config).start()
    daemons.append(daemon)
    await daemon.wait_running(timeout=20)
    for n in range(3, 6):
        sim.inject(0, FIELD, f"reading {n}")
    await async_wait_until(lambda: len(inbox_ids(db)) == 6, timeout=20, what="six SMS committed")
    await async_wait_until(lambda: deliveries(db)[0]["attempts"] >= 1, timeout=10, what="an attempt refused")
    await daemon.kill()
    assert [row["state"] for row in deliveries(db)] == ["pending"] * 6
    ids = [row["delivery_id"] for row in deliveries(db)]
    assert ids[:3] == [row["delivery_id"] for row in before]  # the ids are rows: they survive the kills

    # 3. the receiver is back, the daemon restarts: everything arrives, in order, each with its id
    await receiver.start()
    daemon = await DaemonProcess(config).start()
    daemons.append(daemon)
    await async_wait_until(lambda: {row["state"] for row in deliveries(db)} == {"delivered"}, timeout=30,
                           what="every delivery delivered")
    assert await daemon.stop() == 0
    answered = [r for r in receiver.requests if r.answered == 200]
    firsts = list(dict.fromkeys(r.delivery for r in answered))
    assert firsts == ids  # in order; nothing lost
    assert [json.loads(r.body)["text"] for r in answered] == [f"reading {n}" for n in range(6)]
    by_id: dict[str, set[bytes]] = {}
    for r in receiver.arrived:
        by_id.setdefault(r.delivery, set()).add(r.body)
    assert set(by_id) == set(ids)  # a repeat is a retry of a delivery, never a new id for the same event
    assert all(len(bodies) == 1 for bodies in by_id.values())
    assert [r.delivery for r in receiver.arrived].count(in_flight) == 2  # cut off by the kill, sent again
    assert all(r.signed_with(SECRET) for r in receiver.arrived)
