"""A fleet: three `smsgw run` daemons, each with its own `smsgw simulate` modem and its own store,
sharing one mosquitto through the shared subscription ``$share/fleet/smsgw/send``.

Every request is sent exactly once across the three simulated networks, the load is spread over the
three, and when one daemon is killed mid-run the other two carry on; the killed one, restarted with
its store and its MQTT session, sends what it had taken, so no request is lost.

Each member publishes its own state under ``smsgw/node/<client id>/``: availability (the last will),
``bridge/info`` and ``modem/<id>`` (all three members have a modem ``sim0``), so the killed member's
last will marks only its own node offline; nothing is published on the plain ``smsgw/bridge/state``.
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


def node(index: int) -> str:
    return f"smsgw/node/{GROUP}-{index}"


class Fleet:
    def __init__(self, tmp_path: Path, broker: Broker, simulators: list[SimulatorProcess], watcher: Probe) -> None:
        self.broker = broker
        self.simulators = simulators
        self.watcher = watcher  # subscribed to smsgw/# before any member started
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

    def availability(self, index: int) -> str | None:
        """The last state member ``index`` published (or its last will) on its node topic."""
        states = self.watcher.json(f"{node(index)}/bridge/state")
        return states[-1]["state"] if states else None  # type: ignore[index]


@pytest.fixture
async def fleet(tmp_path: Path, broker_factory: Any) -> AsyncIterator[Fleet]:
    broker = broker_factory(extra_config="log_type subscribe")
    with contextlib.ExitStack() as stack:
        simulators = [stack.enter_context(run_simulator(tmp_path / f"sim{index}")) for index in range(MEMBERS)]
        watcher = Probe(broker, "smsgw/#")
        stack.callback(watcher.close)
        watcher.subscribed()
        fleet = Fleet(tmp_path, broker, simulators, watcher)
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

    # Message ids are per member store; each member reports its messages under its own node topic.
    def sent_states() -> dict[int, set[str]]:
        out: dict[int, set[str]] = {index: set() for index in range(MEMBERS)}
        for topic, payload, _ in fleet.watcher.snapshot():
            for index in range(MEMBERS):
                if topic.startswith(f"{node(index)}/message/") and json.loads(payload)["state"] == "sent":
                    out[index].add(topic)
        return out

    await async_wait_until(lambda: {i: len(t) for i, t in sent_states().items()} == dict(shares), timeout=20,
                           what=f"per member 'sent' states on its node topics like {dict(shares)}")


async def test_a_killed_member_leaves_the_others_sending_and_loses_nothing(fleet: Fleet) -> None:
    before = [f"before {n:03d}" for n in range(30)]
    after = [f"after {n:03d}" for n in range(30)]
    members = range(MEMBERS)
    # Every member has its own availability and its own modem state (each has a modem "sim0").
    await async_wait_until(lambda: [fleet.availability(i) for i in members] == ["online"] * MEMBERS,
                           timeout=20, what="every member online on its node topic")
    await async_wait_until(lambda: all(fleet.watcher.json(f"{node(i)}/modem/sim0") for i in members),
                           timeout=20, what="every member's modem state")
    await async_wait_until(lambda: all(fleet.watcher.json(f"{node(i)}/bridge/info") for i in members),
                           timeout=20, what="every member's bridge info")
    probe = Probe(fleet.broker)
    try:
        publish(probe, before[:15])
        await fleet.daemons[2].kill()  # SIGKILL mid-run: no clean disconnect, no last commit
        # Its last will marks only its own node offline; the others stay online.
        await async_wait_until(lambda: fleet.availability(2) == "offline", timeout=10,
                               what="the killed member's last will on its node topic")
        assert [fleet.availability(i) for i in (0, 1)] == ["online", "online"]
        publish(probe, before[15:])
        publish(probe, after)
        survivors = (0, 1)
        await async_wait_until(
            lambda: len({t for i, t in fleet.sent() if i in survivors and t.startswith("after")}) >= 10,
            timeout=30, what="the surviving members keep sending")
        while_down = Counter(t for i, t in fleet.sent() if t.startswith("after"))
        assert [fleet.availability(i) for i in members] == ["online", "online", "offline"]
        # The killed member comes back with its store and its MQTT session.
        await fleet.start(2)
        await async_wait_until(lambda: fleet.availability(2) == "online", timeout=10,
                               what="the restarted member online again")
        await async_wait_until(lambda: set(fleet.texts()) >= set(before + after), timeout=60,
                               what=f"every request sent: missing "
                                    f"{sorted(set(before + after) - set(fleet.texts()))}")
    finally:
        probe.close()
    counts = fleet.texts()
    duplicates = {text: n for text, n in counts.items() if n > 1}
    # At most the one SMS that was between AT+CMGS and its commit when the process died goes twice.
    assert len(duplicates) <= 1, duplicates
    assert [fleet.availability(i) for i in members] == ["online"] * MEMBERS
    # Members never publish the plain base topic's state: no shared retained state to fight over.
    shared = {t for t, _, _ in fleet.watcher.snapshot()
              if t in ("smsgw/bridge/state", "smsgw/bridge/info", "smsgw/received")
              or t.startswith(("smsgw/modem/", "smsgw/message/"))}
    assert shared == set()
    by_member = Counter(index for index, text in fleet.sent() if text.startswith("after"))
    print(f"after the kill: {sum(while_down.values())} of {len(after)} sent while member 2 was down; "
          f"per member {dict(by_member)}; duplicates {duplicates}")
