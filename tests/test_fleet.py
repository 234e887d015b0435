"""A fleet: three `smsgw run` daemons, each with its own `smsgw simulate` modem and its own store,
sharing one mosquitto through the shared subscription ``$share/fleet/smsgw/send``.

Every request is sent exactly once across the three simulated networks, the load is spread over the
three, and when one daemon is killed mid-run the other two carry on; the killed one, restarted with
its store and its MQTT session, sends what it had taken, so no request is lost.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import DaemonProcess, write_config
from mosquitto import Broker, Probe
from third_party_fixtures import SimulatorProcess, run_simulator
from waiting import async_wait_until

pytest_plugins = ["mosquitto"]

pytestmark = pytest.mark.timeout(120)

OUTSIDE = "+4915112345678"  # outside the simulation: each SMS lands in its simulator's network.jsonl
MEMBERS = 3
GROUP = "fleet"


class Fleet:
    def __init__(self, tmp_path: Path, broker: Broker, simulators: list[SimulatorProcess]) -> None:
        self.broker = broker
        self.simulators = simulators
        self.daemons: list[DaemonProcess] = []
        for index, simulator in enumerate(simulators):
            extra = (
                "\n[mqtt]\n"
                f'host = "{broker.host}"\nport = {broker.port}\nclient_id = "{GROUP}-{index}"\n'
                f'share_group = "{GROUP}"\nreconnect_min = 0.2\nreconnect_max = 1\ndiscovery = false\n'
            )
            config = write_config(tmp_path / f"gw{index}", [simulator.port(0)], extra=extra)
            self.daemons.append(DaemonProcess(config))

    async def start(self, index: int) -> None:
        daemon = self.daemons[index]
        offset = len(self.broker.log())
        await daemon.start()
        client = f"{GROUP}-{index}"

        def subscribed() -> bool:
            if not daemon.running:
                raise AssertionError(f"smsgw run for {client} exited:\n{daemon.log_text()[-3000:]}")
            return any(client in line and f"$share/{GROUP}/smsgw/send" in line
                       for line in self.broker.log()[offset:].splitlines())

        await async_wait_until(subscribed, timeout=20, what=f"{client} subscribed to the shared topic")

    def sent(self) -> list[tuple[int, str]]:
        """(simulator index, text) for every SMS that reached a simulated network."""
        return [(index, record["text"]) for index, simulator in enumerate(self.simulators)
                for record in simulator.network()]

    def texts(self) -> Counter[str]:
        return Counter(text for _, text in self.sent())


@pytest.fixture
async def fleet(tmp_path: Path, broker_factory: Any) -> AsyncIterator[Fleet]:
    broker = broker_factory(extra_config="log_type subscribe")
    with contextlib.ExitStack() as stack:
        simulators = [stack.enter_context(run_simulator(tmp_path / f"sim{index}")) for index in range(MEMBERS)]
        fleet = Fleet(tmp_path, broker, simulators)
        try:
            for index in range(MEMBERS):
                await fleet.start(index)
            yield fleet
        finally:
            for daemon in fleet.daemons:
                if daemon.running:
                    await daemon.stop()


def publish(probe: Probe, texts: list[str]) -> None:
    for text in texts:
        probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": text, "id": text}), qos=1)


async def test_each_request_is_sent_once_and_the_load_is_shared(fleet: Fleet) -> None:
    texts = [f"fleet {n:03d}" for n in range(60)]
    probe = Probe(fleet.broker)
    try:
        started = time.monotonic()
        publish(probe, texts)
        await async_wait_until(lambda: set(fleet.texts()) >= set(texts), timeout=60,
                               what="every request sent")
        elapsed = time.monotonic() - started
    finally:
        probe.close()
    counts = fleet.texts()
    assert [text for text in texts if counts[text] != 1] == []
    shares = Counter(index for index, _ in fleet.sent())
    print(f"fleet of {MEMBERS}: {len(texts)} requests sent in {elapsed:.2f} s; per member {dict(shares)}")
    assert sorted(shares) == list(range(MEMBERS)), f"every member sends a share: {dict(shares)}"


async def test_a_killed_member_leaves_the_others_sending_and_loses_nothing(fleet: Fleet) -> None:
    before = [f"before {n:03d}" for n in range(30)]
    after = [f"after {n:03d}" for n in range(30)]
    probe = Probe(fleet.broker)
    try:
        publish(probe, before[:15])
        await fleet.daemons[2].kill()  # SIGKILL mid-run: no clean disconnect, no last commit
        publish(probe, before[15:])
        publish(probe, after)
        survivors = (0, 1)
        await async_wait_until(
            lambda: len({t for i, t in fleet.sent() if i in survivors and t.startswith("after")}) >= 10,
            timeout=30, what="the surviving members keep sending")
        while_down = Counter(t for i, t in fleet.sent() if t.startswith("after"))
        # The killed member comes back with its store and its MQTT session.
        await fleet.start(2)
        await async_wait_until(lambda: set(fleet.texts()) >= set(before + after), timeout=60,
                               what=f"every request sent: missing "
                                    f"{sorted(set(before + after) - set(fleet.texts()))}")
    finally:
        probe.close()
    counts = fleet.texts()
    duplicates = {text: n for text, n in counts.items() if n > 1}
    # At most the one SMS that was between AT+CMGS and its commit when the process died goes twice.
    assert len(duplicates) <= 1, duplicates
    by_member = Counter(index for index, text in fleet.sent() if text.startswith("after"))
    print(f"after the kill: {sum(while_down.values())} of {len(after)} sent while member 2 was down; "
          f"per member {dict(by_member)}; duplicates {duplicates}")
