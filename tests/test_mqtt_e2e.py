"""End to end over MQTT: ``smsgw run`` as a subprocess, the simulator's modems, a real mosquitto.

The simulator runs in the test's event loop; the test talks to the daemon through the broker (and
reads the store file and the simulated network to check). The PUBACK-after-commit proof: the daemon
dies (``os._exit``) between receiving a request and committing it; the broker keeps the
unacknowledged request in the persistent session and redelivers it to the restarted daemon, which
commits it and sends the SMS exactly once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import ROOT, daemon_env
from daemon_helpers import write_config as daemon_config
from mosquitto import Broker, Probe
from waiting import async_wait_until

from appliance.store import Store
from drivers.pdu import decode
from drivers.simulator import Simulator

pytest_plugins = ["mosquitto"]

OUTSIDE = "+4915112345678"  # outside the simulation: its SMS land in the simulated network log
FIELD = "+4917099999999"

# `smsgw run` with optional crash points between receipt and commit, or between commit and PUBACK.
DAEMON_SCRIPT = r"""
import os, sys
from appliance.mqtt import MqttBridge
from appliance.store import Store

crash = os.environ.get("SMSGW_TEST_CRASH")
if crash == "before-commit":
    def enqueue(self, requests, now=None):
        os._exit(17)
    Store.enqueue = enqueue
elif crash == "after-commit":
    real_ack = MqttBridge.ack
    def ack(self, item):
        if item.message.topic.endswith("/send"):  # not the retained modem states discovery reads
            os._exit(18)
        real_ack(self, item)
    MqttBridge.ack = ack
    real_ack_many = MqttBridge.ack_many
    def ack_many(self, items):  # the PUBACKs of a committed batch
        if any(item.message.topic.endswith("/send") for item in items):
            os._exit(18)
        real_ack_many(self, items)
    MqttBridge.ack_many = ack_many

from appliance.cli import main
sys.exit(main(["run", "--config", sys.argv[1]]))
"""


class App:
    """The daemon in a child process (``python -c DAEMON_SCRIPT config``)."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.log = config.with_suffix(".log")
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, crash: str | None = None) -> App:
        env = daemon_env()
        env.pop("SMSGW_TEST_CRASH", None)
        if crash:
            env["SMSGW_TEST_CRASH"] = crash
        with self.log.open("ab") as log:  # noqa: ASYNC230 - a local log file
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", DAEMON_SCRIPT, str(self.config), stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, env=env, cwd=ROOT)
        return self

    async def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", modems=1, profile="generic") as simulator:
        yield simulator


@pytest.fixture
async def apps() -> AsyncIterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        await app.stop()


@pytest.fixture
def probes() -> AsyncIterator[list[Probe]] | Any:
    made: list[Probe] = []
    yield made
    for probe in made:
        probe.close()


def mqtt_section(broker: Broker, **extra: Any) -> str:
    lines = ["", "[mqtt]", f'host = "{broker.host}"', f"port = {extra.pop('port', broker.port)}",
             'client_id = "gw-e2e"', "reconnect_min = 1", "reconnect_max = 1"]
    tls = extra.pop("tls", None)
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    if tls:
        lines += ["", "[mqtt.tls]"] + [f"{key} = {json.dumps(value)}" for key, value in tls.items()]
    lines += ["", "[numbers]", 'default_country = "DE"', 'blocked = ["+4916"]', "", "[limits]", "max_parts = 3"]
    return "\n".join(lines) + "\n"


def make_config(tmp_path: Path, sim: Simulator, broker: Broker, **mqtt: Any) -> Path:
    return daemon_config(tmp_path / "app", sim.ports, extra=mqtt_section(broker, **mqtt))


def outbox(db: Path) -> list[dict[str, Any]]:
    with Store(db) as store:
        return store.outbox(1000)


def inbox(db: Path) -> list[dict[str, Any]]:
    with Store(db) as store:
        return store.inbox(1000)


def sent(sim: Simulator, text: str) -> int:
    return sum(1 for record in sim.network.sent if record["text"] == text)


def state_is(probe: Probe, state: str) -> Callable[[], bool]:
    def check() -> bool:
        states = probe.json("smsgw/bridge/state")
        return bool(states) and states[-1] == {"state": state}
    return check


async def responses(probe: Probe, count: int, timeout: float = 15.0) -> list[Any]:
    await async_wait_until(lambda: len(probe.payloads("smsgw/bridge/response/send")) >= count, timeout=timeout,
                           what=f"{count} response(s)")
    return probe.json("smsgw/bridge/response/send")


async def test_send_receive_and_state_topics(tmp_path: Path, sim: Simulator, mosquitto: Broker, apps: list[App],
                                             probes: list[Probe]) -> None:
    probe = Probe(mosquitto, "smsgw/#")
    probes.append(probe)
    apps.append(await App(make_config(tmp_path, sim, mosquitto)).start())
    await async_wait_until(state_is(probe, "online"), timeout=15, what="online")

    probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "Freezer 3 is warm", "id": "f3",
                                            "transaction": "t1"}))
    [response] = await responses(probe, 1)
    assert response["status"] == "ok" and response["transaction"] == "t1"
    message_id = response["data"]["id"]
    await async_wait_until(lambda: sent(sim, "Freezer 3 is warm") == 1, timeout=15, what="SMS on the network")
    topic = f"smsgw/message/{message_id}"
    await async_wait_until(lambda: "sent" in [m["state"] for m in probe.json(topic)], timeout=15)
    states = [m["state"] for m in probe.json(topic)]
    assert states[:3] == ["queued", "sending", "sent"]
    assert probe.json(topic)[-1]["modem"] == "sim0" and probe.json(topic)[-1]["to"] == OUTSIDE

    probe.publish("smsgw/send/004915112345678", "plain text body")
    await async_wait_until(lambda: sent(sim, "plain text body") == 1, timeout=15)

    sim.inject(0, FIELD, "STATUS please")
    await async_wait_until(lambda: probe.json("smsgw/received"), timeout=15, what="received SMS published")
    [received] = probe.json("smsgw/received")
    assert received["from"] == FIELD and received["text"] == "STATUS please" and received["modem"] == "sim0"

    late = Probe(mosquitto, "smsgw/modem/+", "smsgw/bridge/info")  # retained topics
    probes.append(late)
    await async_wait_until(lambda: late.json("smsgw/modem/sim0") and late.json("smsgw/bridge/info"))
    info = late.json("smsgw/bridge/info")[-1]
    assert isinstance(info, dict) and "sim0" in info["modems"] and info["bridge"]["connected"]

    await apps[0].stop()
    await async_wait_until(state_is(probe, "offline"), what="offline after a clean stop")


BAD = [
    (b"not json", "payload is not JSON"),
    (b'"just a string"', "must be a JSON object"),
    (b'{"text": "x", "transaction": 1}', "missing 'to'"),
    (b'{"to": "+4915112345678", "transaction": 2}', "missing 'text'"),
    (b'{"to": "+4915112345678", "text": "", "transaction": 3}', "'text' is empty"),
    (b'{"to": "12ab", "text": "x", "transaction": 4}', "destination '12ab'"),
    (json.dumps({"to": OUTSIDE, "text": "y" * 600, "transaction": 5}).encode(), "text too long"),
    (b'{"to": "+4916012345678", "text": "x", "transaction": 6}', "blocked by numbers.blocked"),
    (b'{"to": "+49900123456", "text": "x", "transaction": 7}', "premium-rate"),
    (b'{"to": "+4915112345678", "text": "x", "priority": "asap", "transaction": 8}', "unknown priority"),
    (b'{"to": "+4915112345678", "text": "x", "language": "klingon", "transaction": 9}', "unknown 'language'"),
    (b'{"to": "+4915112345678", "text": "x", "language": 1, "transaction": 10}', "unknown 'language'"),
]


async def test_each_bad_request_gets_an_error_and_sends_nothing(
        tmp_path: Path, sim: Simulator, mosquitto: Broker, apps: list[App], probes: list[Probe]) -> None:
    db = tmp_path / "app" / "smsgw.db"
    probe = Probe(mosquitto, "smsgw/#")
    probes.append(probe)
    apps.append(await App(make_config(tmp_path, sim, mosquitto)).start())
    await async_wait_until(state_is(probe, "online"), timeout=15)
    for payload, _ in BAD:
        probe.publish("smsgw/send", payload)
    probe.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "the good one", "transaction": "good"}))
    got = await responses(probe, len(BAD) + 1)
    for (payload, expected), response in zip(BAD, got, strict=False):
        assert response["status"] == "error" and expected in response["error"], (payload, response)
    assert got[-1]["status"] == "ok"
    await async_wait_until(lambda: sent(sim, "the good one") == 1, timeout=15)
    assert [r["text"] for r in outbox(db)] == ["the good one"]
    assert len(sim.network.sent) == 1
    with Store(db) as store:
        assert store.state_get("mqtt", "rejected") == len(BAD)
        assert len(store.audit_log(100, kind="mqtt_request_rejected")) == len(BAD)


async def test_broker_killed_mid_flow_received_sms_published_late_in_order(
        tmp_path: Path, sim: Simulator, mosquitto: Broker, apps: list[App], probes: list[Probe]) -> None:
    db = tmp_path / "app" / "smsgw.db"
    dashboard = Probe(mosquitto, "smsgw/received", "smsgw/bridge/state", client_id="dashboard", clean=False)
    probes.append(dashboard)
    apps.append(await App(make_config(tmp_path, sim, mosquitto)).start())
    await async_wait_until(state_is(dashboard, "online"), timeout=15)
    for n in range(3):
        sim.inject(0, FIELD, f"reading {n}")
    await async_wait_until(lambda: len(dashboard.payloads("smsgw/received")) == 3, timeout=15)
    mosquitto.kill()
    for n in range(3, 12):
        sim.inject(0, FIELD, f"reading {n}")
    await async_wait_until(lambda: len(inbox(db)) == 12, timeout=20, what="inbound committed while the broker is down")
    with Store(db) as store:
        assert store.stats()["events_pending"] >= 9
    mosquitto.start()
    await async_wait_until(lambda: len({m["text"] for m in dashboard.json("smsgw/received")}) == 12, timeout=30,
                           what="backlog published")
    texts = list(dict.fromkeys(m["text"] for m in dashboard.json("smsgw/received")))
    assert texts == [f"reading {n}" for n in range(12)]  # in order, none lost
    # sending works again after the outage
    dashboard.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "after the outage"}))
    await async_wait_until(lambda: sent(sim, "after the outage") == 1, timeout=15)
    await async_wait_until(lambda: Store(db).stats()["events_pending"] == 0, timeout=15)


async def test_tls_client_certificate_password_and_acl(
        tmp_path: Path, sim: Simulator, broker_factory: Callable[..., Broker], apps: list[App],
        probes: list[Probe]) -> None:
    acl = ("user gateway\ntopic readwrite smsgw/#\n"
           "user sensor\ntopic write smsgw/send\ntopic write smsgw/send/#\n"
           "topic read smsgw/bridge/response/send\ntopic read smsgw/bridge/state\n"
           "user viewer\ntopic read smsgw/#\n")
    broker = broker_factory(users={"gateway": "g-pw", "sensor": "s-pw", "viewer": "v-pw"}, acl=acl, tls=True,
                            require_certificate=True)
    assert broker.certs is not None
    config = make_config(tmp_path, sim, broker, port=broker.tls_port, username="gateway", password="g-pw",
                         tls={"ca": str(broker.certs.ca), "cert": str(broker.certs.client_cert),
                              "key": str(broker.certs.client_key)})
    sensor = Probe(broker, "smsgw/bridge/response/send", "smsgw/bridge/state", user="sensor", tls=True)
    viewer = Probe(broker, "smsgw/#", user="viewer", tls=True)
    probes += [sensor, viewer]
    apps.append(await App(config).start())
    await async_wait_until(state_is(sensor, "online"), timeout=15)
    viewer.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "viewer may not send"}))
    sensor.publish("smsgw/send", json.dumps({"to": OUTSIDE, "text": "over TLS", "transaction": "tls"}))
    [response] = await responses(sensor, 1)
    assert response["status"] == "ok"
    await async_wait_until(lambda: sent(sim, "over TLS") == 1, timeout=15)
    await async_wait_until(lambda: any(m.get("state") == "sent" for m in viewer.json(
        f"smsgw/message/{response['data']['id']}")), timeout=15)
    assert sent(sim, "viewer may not send") == 0
    assert [r["text"] for r in outbox(tmp_path / "app" / "smsgw.db")] == ["over TLS"]


@pytest.mark.parametrize("crash, code, protocol", [("before-commit", 17, "5"), ("after-commit", 18, "5"),
                                                    ("before-commit", 17, "3.1.1")])
async def test_request_survives_a_crash_between_receipt_and_puback(
        tmp_path: Path, sim: Simulator, mosquitto: Broker, apps: list[App], probes: list[Probe],
        crash: str, code: int, protocol: str) -> None:
    db = tmp_path / "app" / "smsgw.db"
    probe = Probe(mosquitto, "smsgw/bridge/#")
    probes.append(probe)
    config = make_config(tmp_path, sim, mosquitto, protocol=protocol)
    app = App(config)
    apps.append(app)
    await app.start(crash=crash)
    await async_wait_until(state_is(probe, "online"), timeout=15)
    request = {"to": OUTSIDE, "text": "exactly once", "id": "once-1", "transaction": "a"}
    probe.publish("smsgw/send", json.dumps(request))
    assert await app.wait_exit() == code, app.log_text()
    await async_wait_until(state_is(probe, "offline"), what="the last will")
    assert [r["text"] for r in outbox(db)] == ([] if crash == "before-commit" else ["exactly once"])
    assert probe.json("smsgw/bridge/response/send") == []  # nothing was answered before the commit

    await app.start()  # the broker redelivers the unacknowledged request
    [response] = await responses(probe, 1, timeout=20)
    assert response["status"] == "ok" and response["transaction"] == "a"
    assert response["data"]["duplicate"] == (crash == "after-commit")
    probe.publish("smsgw/send", json.dumps(request | {"transaction": "b"}))
    assert (await responses(probe, 2))[1]["data"]["duplicate"] is True
    await async_wait_until(lambda: sent(sim, "exactly once") == 1, timeout=15)
    assert [(r["text"], r["client_key"]) for r in outbox(db)] == [("exactly once", "once-1")]
    await app.stop()
    assert sent(sim, "exactly once") == 1


async def test_requests_queued_by_the_broker_while_the_daemon_is_away(
        tmp_path: Path, sim: Simulator, mosquitto: Broker, apps: list[App], probes: list[Probe]) -> None:
    probe = Probe(mosquitto, "smsgw/bridge/state")
    probes.append(probe)
    app = App(make_config(tmp_path, sim, mosquitto))
    apps.append(app)
    await app.start()
    await async_wait_until(state_is(probe, "online"), timeout=15)
    await app.stop()
    for n in range(5):
        mosquitto.pub("smsgw/send", json.dumps({"to": OUTSIDE, "text": f"away {n}", "id": f"w{n}"}))
    mosquitto.pub("smsgw/send/004915112345678", "plain while away")
    await app.start()
    texts = [f"away {n}" for n in range(5)] + ["plain while away"]
    await async_wait_until(lambda: all(sent(sim, text) == 1 for text in texts), timeout=20,
                           what="every request sent")
    assert len(sim.network.sent) == 6


async def test_daemon_announces_home_assistant_discovery(tmp_path: Path, sim: Simulator, mosquitto: Broker,
                                                         apps: list[App], probes: list[Probe]) -> None:
    """`smsgw run` with [mqtt] announces the gateway and its modem to Home Assistant, and again on its birth."""
    apps.append(await App(make_config(tmp_path, sim, mosquitto)).start())
    probe = Probe(mosquitto, "homeassistant/#")
    probes.append(probe)

    def components() -> set[str]:
        return {topic.split("/")[1] for topic, _payload, _retained in probe.snapshot()}

    await async_wait_until(lambda: {"sensor", "binary_sensor", "event", "notify"} <= components(), timeout=15,
                           what="retained discovery configs")
    configs = {topic: json.loads(payload) for topic, payload, _retained in probe.snapshot()}
    names = {config["name"] for config in configs.values()}
    assert {"Queue", "Received SMS", "SMS", "Signal", "Operator", "Registered"} <= names
    assert any("sim0" in json.dumps(config["device"]) for config in configs.values())
    assert all(config["availability"] for config in configs.values() if "availability" in config)

    def counts() -> Counter[str]:
        return Counter(topic for topic, _payload, _retained in probe.snapshot() if topic.endswith("/config"))

    before = counts()
    probe.publish("homeassistant/status", "online", qos=0)
    await async_wait_until(lambda: all(counts()[topic] > seen for topic, seen in before.items()), timeout=15,
                           what="every config announced again after Home Assistant's birth message")


async def test_an_undecodable_reply_is_committed_published_deleted_and_listed(
    tmp_path: Path, sim: Simulator, mosquitto: Broker, apps: list[App], probes: list[Probe]
) -> None:
    # gammu tests/at-sms-failing/17.dump: a real +CMGR reply whose PDU line is not hex at all
    garbled = "0BD0p2608>381p=*70p2616p16000AD0D770BB5D0700F1FF04F4F29C0E9CFFFFFFFF"
    probe = Probe(mosquitto, "smsgw/#")
    probes.append(probe)
    apps.append(await App(make_config(tmp_path, sim, mosquitto)).start())
    await async_wait_until(state_is(probe, "online"), timeout=15, what="online")
    modem = sim.modems[0]
    index = modem.storage.add(0, garbled)
    modem.urc(f'+CMTI: "SM",{index}')
    await async_wait_until(lambda: probe.json("smsgw/received"), timeout=15, what="undecodable SMS published")
    [received] = probe.json("smsgw/received")
    assert received["state"] == "undecodable" and "not a hex PDU" in received["error"]
    assert garbled in received["pdu"] and received["modem"] == "sim0"
    await async_wait_until(lambda: not list(modem.storage), timeout=15, what="slot freed")
    [row] = inbox(tmp_path / "app" / "smsgw.db")
    assert row["state"] == "undecodable" and garbled in row["raw"]
    listing = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", "inbox", "--config", str(tmp_path / "app" / "smsgw.toml"),
        stdout=asyncio.subprocess.PIPE, env=daemon_env(), cwd=ROOT)
    out, _ = await asyncio.wait_for(listing.communicate(), timeout=30)
    assert listing.returncode == 0 and "undecodable" in out.decode()


# 101 characters with ı, ş, ğ: UCS-2 without the Turkish shift tables (2 parts of 67), one GSM-7 part with them
TURKISH = "Dondurucu 3 ısındı: şu an 12 derece, eşik 4 derece. Lütfen kapıyı kontrol edin; soğuk oda ağır yüklü."


async def test_per_send_language_sends_turkish_as_one_gsm7_part(
        tmp_path: Path, sim: Simulator, mosquitto: Broker, apps: list[App], probes: list[Probe]) -> None:
    db = tmp_path / "app" / "smsgw.db"
    probe = Probe(mosquitto, "smsgw/#")
    probes.append(probe)
    apps.append(await App(make_config(tmp_path, sim, mosquitto)).start())  # no [sms] national_language
    await async_wait_until(state_is(probe, "online"), timeout=15)
    long_text = (TURKISH + " ") * 2 + TURKISH[:10]  # 214 characters: 4 UCS-2 parts, 2 Turkish GSM-7 parts
    for request in ({"to": OUTSIDE, "text": TURKISH, "language": "tr", "id": "tr"},
                    {"to": OUTSIDE, "text": TURKISH, "id": "plain"},
                    {"to": OUTSIDE, "text": long_text, "id": "long"},  # over max_parts = 3 as UCS-2
                    {"to": OUTSIDE, "text": long_text, "language": "TR", "id": "long-tr"}):
        probe.publish("smsgw/send", json.dumps({**request, "transaction": request["id"]}))
    got = {r["transaction"]: r for r in await responses(probe, 4)}
    assert got["tr"]["status"] == got["plain"]["status"] == got["long-tr"]["status"] == "ok"
    assert got["long"]["status"] == "error" and "4 SMS parts, the limit is 3" in got["long"]["error"]
    await async_wait_until(lambda: sent(sim, TURKISH) == 2 and sent(sim, long_text) == 1, timeout=20)
    # the simulated network reassembles what it received: the same text, in 1 part with "tr", 2 without
    assert sorted(r["parts"] for r in sim.network.sent if r["text"] == TURKISH) == [1, 2]
    assert [r["parts"] for r in sim.network.sent if r["text"] == long_text] == [2]
    with Store(db) as store:
        by_id = {row["client_key"]: row for row in store.outbox(10)}
        assert by_id["tr"]["language"] == "tr" and by_id["plain"]["language"] is None
        [turkish] = [decode(part.pdu) for part in store.parts(by_id["tr"]["id"])]
        plain = [decode(part.pdu) for part in store.parts(by_id["plain"]["id"])]
    # 23.038 4: DCS 0x00 is the GSM 7-bit alphabet, 0x08 UCS-2; 23.040 9.2.3.24.15/16: the shift IEs
    assert turkish.encoding == "gsm7" and turkish.dcs & 0x0C == 0 and 1 in turkish.language_tables
    assert turkish.text == TURKISH and turkish.concat is None
    assert [p.encoding for p in plain] == ["ucs2", "ucs2"] and plain[0].language_tables == (0, 0)
