"""Escalating alerts end to end: `smsgw simulate` + `smsgw run` (a subprocess) + a real mosquitto.

A sensor publishes on its topic; the SMS reaching the simulated network carry the ACK code; the
chain moves on when nobody answers; an ``ACK <code>`` SMS injected into the simulator stops it and
tells the others; the sensor's "ok" resolves it. The state is read where users read it: the
retained ``B/alert/<id>`` and ``B/alert_rule/<rule>`` on the broker, ``smsgw status --json``, and
the Home Assistant entities announced for the rule (their templates rendered as HA renders them).
Then the daemon is SIGKILLed between steps and at once after a step: every step still reaches the
network exactly once, and the retained trigger delivered again at each start opens no second chain;
at random moments of a whole chain: one SMS per step in the store, in chain order; and right after
an ACK arrived: it is acknowledged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daemon_helpers import ROOT, DaemonProcess, write_config
from home_assistant import render_value, validate
from mosquitto import Broker, Probe
from third_party_fixtures import SimulatorProcess, run_simulator
from waiting import async_wait_until

from appliance.store import Store

pytest_plugins = ["mosquitto", "daemon_helpers"]

ALICE, BOB, CAROL = "+4917000000001", "+4917000000002", "+4917000000003"


def _config(tmp_path: Path, sim: SimulatorProcess, mosquitto: Broker, *, after: str, repeat: int = 1) -> Path:
    extra = f"""
[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
client_id = "gw-escalate"
reconnect_min = 0.2
reconnect_max = 1

[contacts]
alice = "{ALICE}"
bob = "{BOB}"
carol = "{CAROL}"

[[alerts]]
name = "freezer"
topic = "sensors/+/temperature"
text = "Freezer {{topic[1]}}: {{temperature}} °C"
escalate = {{ chain = ["alice", "bob", "carol"], after = "{after}", repeat = {repeat} }}
resolve = {{ topic = "sensors/+/ok" }}
priority = "high"
"""
    return write_config(tmp_path / "gw", [sim.port(0)], extra=extra)


def _to(sim: SimulatorProcess, number: str) -> list[str]:
    return [str(r.get("text")) for r in sim.network() if str(r.get("to", "")).lstrip("+") == number.lstrip("+")]


def _status(config: Path) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "appliance", "status", "--config", str(config), "--json"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
    return dict(json.loads(result.stdout))


def _retained(mosquitto: Broker, topic: str) -> bytes | None:
    """What a new subscriber gets as the retained message on ``topic`` (None: nothing retained)."""
    probe = Probe(mosquitto, topic)
    try:
        probe.subscribed()  # the retained message, if any, arrives before the marker
        found = [payload for t, payload, retain in probe.snapshot() if t == topic and retain]
        return found[-1] if found else None
    finally:
        probe.close()


async def _retained_state(mosquitto: Broker, topic: str, state: str, **expected: Any) -> dict[str, Any]:
    """The retained alert on ``topic`` once it is in ``state`` with the ``expected`` fields (the bridge
    publishes the store's events on its own time: the SMS may reach the network first)."""
    def current() -> dict[str, Any]:
        found = json.loads(_retained(mosquitto, topic) or b"{}")
        if not isinstance(found, dict) or found.get("state") != state:
            return {}
        return dict(found) if all(found.get(k) == v for k, v in expected.items()) else {}

    return await async_wait_until(current, timeout=20, interval=0.1, what=f"{topic} retained {state!r}")


async def _rendered(mosquitto: Broker, entity: dict[str, Any], value: str) -> str:
    """The retained payload of the entity's state topic once its value_template renders ``value``."""
    def current() -> str:
        payload = (_retained(mosquitto, entity["state_topic"]) or b"").decode()
        return payload if payload and render_value(entity["value_template"], payload) == value else ""

    return await async_wait_until(current, timeout=20, interval=0.1, what=f"{entity['name']} is {value!r}")


@contextlib.contextmanager
def _rig(tmp_path: Path) -> Iterator[SimulatorProcess]:
    with run_simulator(tmp_path / "sim") as sim:
        yield sim


async def test_chain_ack_resolve_status_and_home_assistant(tmp_path: Path, mosquitto: Broker,
                                                           daemons: list[DaemonProcess]) -> None:
    with _rig(tmp_path) as sim:
        # 12 s between steps: time enough for the ACK to arrive before carol's step, on a loaded machine too
        config = _config(tmp_path, sim, mosquitto, after="12s")
        watch = Probe(mosquitto, "smsgw/alert/#", "smsgw/alert_rule/#", "homeassistant/#")
        try:
            daemon = DaemonProcess(config)
            daemons.append(daemon)
            await daemon.start()
            # retained: the daemon gets it when it subscribes, however late that is
            watch.publish("sensors/freezer-3/temperature", json.dumps({"temperature": -2.5}), retain=True)
            first = sim.wait_sent(ALICE, lambda r: "Reply ACK" in str(r.get("text")), timeout=30)
            match = re.fullmatch(r"Freezer freezer-3: -2\.5 °C\nReply ACK (\d+) to acknowledge", first["text"])
            assert match is not None, first
            code = int(match[1])
            open_state = await _retained_state(mosquitto, f"smsgw/alert/{code}", "open", alerted=[ALICE])
            assert (open_state["rule"], open_state["step"], open_state["steps"]) == ("freezer", 1, 3)

            # nobody answers: bob gets it after 12 s
            sim.wait_sent(BOB, lambda r: r.get("text") == first["text"], timeout=30)
            sim.inject(BOB, f"ACK {code}")
            sim.wait_sent(ALICE, lambda r: r.get("text") == f"Alert {code} (freezer) acknowledged by bob", timeout=30)
            sim.wait_sent(BOB, lambda r: r.get("text") == f"Alert {code} acknowledged; told alice", timeout=30)
            acked = await _retained_state(mosquitto, f"smsgw/alert/{code}", "acknowledged")
            assert (acked["acknowledged_by"], acked["next_at"]) == (BOB, None)

            status = _status(config)["alerts"]
            assert status["counts"]["acknowledged"] == 1 and status["counts"]["active"] == 1
            [active] = status["active"]
            assert (active["id"], active["alerted_names"], active["acknowledged_name"]) == (code, ["alice", "bob"], "bob")

            # Home Assistant: the rule's entities, valid for its schema, say there is a problem
            configs = {t: json.loads(p) for t, p, _ in watch.snapshot() if t.endswith("/config") and "alert_" in t and p}
            problem = configs["homeassistant/binary_sensor/gw-escalate/alert_freezer/config"]
            sensor = configs["homeassistant/sensor/gw-escalate/alert_freezer_state/config"]
            for topic, entity in configs.items():
                assert validate(topic, entity) == [], (topic, entity)
            rule_state = await _rendered(mosquitto, sensor, "acknowledged")
            assert render_value(problem["value_template"], rule_state) == problem["payload_on"]
            attributes = json.loads(render_value(sensor["json_attributes_template"], rule_state))
            assert (attributes["code"], attributes["acknowledged_by"]) == (code, "bob")

            # the sensor says it is fine: everyone alerted is told, the alert is closed and cleared
            watch.publish("sensors/freezer-3/ok", b"ok")
            resolved = f"Alert {code} resolved: Freezer freezer-3: -2.5 °C"
            sim.wait_sent(ALICE, lambda r: r.get("text") == resolved, timeout=30)
            sim.wait_sent(BOB, lambda r: r.get("text") == resolved, timeout=30)
            await async_wait_until(lambda: _retained(mosquitto, f"smsgw/alert/{code}") is None, timeout=20,
                                   what="the retained alert cleared")
            # the clear was seen on a connection of its own: the watch's copy of the closing state
            # (published just before it, not retained) may still be on its way
            def closing() -> list[dict[str, Any]]:
                return [json.loads(p) for p in watch.payloads(f"smsgw/alert/{code}") if p]

            await async_wait_until(lambda: closing()[-1]["state"] == "resolved", timeout=10,
                                   what="the closing state on the watch")
            assert closing()[-1]["resolved_by"] == "sensors/freezer-3/ok"
            rule_state = await _rendered(mosquitto, sensor, "resolved")
            assert render_value(problem["value_template"], rule_state) == problem["payload_off"]
            assert _status(config)["alerts"]["counts"] == {
                "open": 0, "acknowledged": 0, "resolved": 1, "expired": 0, "active": 0}
            assert _to(sim, CAROL) == []  # the chain stopped at bob
            assert len(_to(sim, ALICE)) == 3 and len(_to(sim, BOB)) == 3
            watch.publish("sensors/freezer-3/temperature", b"", retain=True)
            await daemon.stop()
        finally:
            watch.close()


async def test_sigkill_between_and_right_after_steps_loses_none_and_doubles_none(
        tmp_path: Path, mosquitto: Broker, daemons: list[DaemonProcess]) -> None:
    with _rig(tmp_path) as sim:
        config = _config(tmp_path, sim, mosquitto, after="3s")
        db = tmp_path / "gw" / "smsgw.db"
        sensor = Probe(mosquitto)
        try:
            daemon = DaemonProcess(config)
            daemons.append(daemon)
            await daemon.start()
            sensor.publish("sensors/freezer-7/temperature", json.dumps({"temperature": 4}), retain=True)
            text = sim.wait_sent(ALICE, lambda r: "Reply ACK" in str(r.get("text")), timeout=30)["text"]

            def sent(number: str) -> bool:  # its reference committed: the dispatcher will not send it again
                with contextlib.suppress(Exception), Store(db, read_only=True) as store:
                    return any(m["to"] == number and m["state"] in ("sent", "delivered") for m in store.outbox(50))
                return False

            # (a kill between the network's acceptance and that commit may send it twice: the
            # dispatcher's documented window, docs/store.md, not the chain's)
            await async_wait_until(lambda: sent(ALICE), timeout=20, interval=0.02, what="alice's SMS committed")
            await daemon.kill()  # between steps: bob's step is due while no daemon runs
            daemon = DaemonProcess(config)
            daemons.append(daemon)
            await daemon.start()  # a retained trigger delivered again is counted into the open alert
            sim.wait_sent(BOB, lambda r: r.get("text") == text, timeout=30)
            await async_wait_until(lambda: sent(BOB), timeout=20, interval=0.02, what="bob's SMS committed")
            await daemon.kill()  # right after a step was sent
            daemon = DaemonProcess(config)
            daemons.append(daemon)
            await daemon.start()
            sim.wait_sent(CAROL, lambda r: r.get("text") == text, timeout=30)

            def expired() -> bool:
                return bool(_status(config)["alerts"]["counts"]["expired"] == 1)

            await async_wait_until(expired, timeout=30, interval=0.5, what="the alert expired")
            await daemon.stop()
            assert (_to(sim, ALICE), _to(sim, BOB), _to(sim, CAROL)) == ([text], [text], [text])
            counts = _status(config)["alerts"]["counts"]
            assert counts == {"open": 0, "acknowledged": 0, "resolved": 0, "expired": 1, "active": 0}
            code = int(text.rsplit("ACK ", 1)[1].split()[0])
            assert _retained(mosquitto, f"smsgw/alert/{code}") is None
            with Store(db, read_only=True) as store:
                [alert] = store.alerts()  # one chain, however often the retained trigger came
                queued = [m["to"] for m in reversed(store.outbox(50)) if m["source"] == "alert:freezer"]
                assert queued == [ALICE, BOB, CAROL]  # one SMS per step in the store
                assert (alert.id, alert.step, alert.alerted) == (code, 3, (ALICE, BOB, CAROL))
            sensor.publish("sensors/freezer-7/temperature", b"", retain=True)
        finally:
            sensor.close()


async def test_sigkill_at_random_moments_of_a_whole_chain(tmp_path: Path, mosquitto: Broker,
                                                          daemons: list[DaemonProcess]) -> None:
    """Six steps (three members, two rounds, 1 s apart) while the daemon is killed at random
    moments: the store holds exactly one SMS per step, in chain order, and each member's SMS reached
    the network (a kill between the modem's acceptance and the commit of its reference may send one
    twice: the dispatcher's documented window, docs/store.md, not the chain's)."""
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    with _rig(tmp_path) as sim:
        config = _config(tmp_path, sim, mosquitto, after="1s", repeat=2)
        db = tmp_path / "gw" / "smsgw.db"
        sensor = Probe(mosquitto)
        try:
            daemon = await DaemonProcess(config).start()
            daemons.append(daemon)
            sensor.publish("sensors/freezer-9/temperature", json.dumps({"temperature": 6}), retain=True)
            for _kill in range(6):
                await asyncio.sleep(rng.uniform(0.2, 2.0))  # a random moment of this life
                await daemon.kill()
                daemon = await DaemonProcess(config).start()
                daemons.append(daemon)

            def expired() -> bool:
                with contextlib.suppress(Exception), Store(db, read_only=True) as store:
                    return [a.state for a in store.alerts()] == ["expired"]
                return False

            await async_wait_until(expired, timeout=60, interval=0.2, what=f"the alert expired (seed {seed})")
            await async_wait_until(lambda: all(len(_to(sim, n)) >= 2 for n in (ALICE, BOB, CAROL)), timeout=30,
                                   what=f"two SMS for each member on the network (seed {seed})")
            await daemon.stop()
            with Store(db, read_only=True) as store:
                [alert] = store.alerts()
                sms = [m for m in reversed(store.outbox(100)) if m["source"] == "alert:freezer"]
                steps = [e["detail"]["step"] for e in reversed(store.audit_log(kind="alert_step"))]
            assert [m["to"] for m in sms] == [ALICE, BOB, CAROL, ALICE, BOB, CAROL], seed
            assert steps == [1, 2, 3, 4, 5, 6] and alert.step == 6, seed
            assert {m["state"] for m in sms} <= {"sent", "delivered"}, (seed, sms)
            sensor.publish("sensors/freezer-9/temperature", b"", retain=True)
        finally:
            sensor.close()


async def test_an_ack_cut_off_by_sigkill_is_acknowledged_once(tmp_path: Path, mosquitto: Broker,
                                                              daemons: list[DaemonProcess]) -> None:
    with _rig(tmp_path) as sim:
        config = _config(tmp_path, sim, mosquitto, after="10m")
        db = tmp_path / "gw" / "smsgw.db"
        sensor = Probe(mosquitto)
        try:
            daemon = await DaemonProcess(config).start()
            daemons.append(daemon)
            sensor.publish("sensors/freezer-5/temperature", json.dumps({"temperature": 1}), retain=True)
            text = sim.wait_sent(ALICE, lambda r: "Reply ACK" in str(r.get("text")), timeout=30)["text"]
            code = int(text.rsplit("ACK ", 1)[1].split()[0])
            sim.inject(ALICE, f"ACK {code}")
            await daemon.kill()  # the ACK is on the SIM, in the store, or acknowledged: whichever
            daemon = await DaemonProcess(config).start()
            daemons.append(daemon)
            sim.wait_sent(ALICE, lambda r: r.get("text") == f"Alert {code} acknowledged", timeout=30)
            await daemon.stop()
            with Store(db, read_only=True) as store:
                [alert] = store.alerts()
                confirmations = [m for m in store.outbox(100) if m["text"] == f"Alert {code} acknowledged"]
                acks = store.audit_log(kind="alert_acknowledged")
            assert (alert.state, alert.acknowledged_by, len(confirmations), len(acks)) == (
                "acknowledged", ALICE, 1, 1)
            sensor.publish("sensors/freezer-5/temperature", b"", retain=True)
        finally:
            sensor.close()
