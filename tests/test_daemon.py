"""`smsgw run` end to end: the daemon as a subprocess on the simulator's ptys, the store as a file.

The simulator runs in the test's event loop; the test talks to the daemon only through the
store file (as ``smsgw send`` and ``smsgw inbox`` do), the simulator's network log and signals.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import ROOT, DaemonProcess, daemon_env, write_config
from waiting import async_wait_until

from appliance.store import OutboundRequest, Store
from drivers.simulator import Simulator

pytest_plugins = ["daemon_helpers"]

OUTSIDE = "+4915112345678"  # a number outside the simulation: its SMS go to network.jsonl
LONG_TEXT = "Station 7 reports low pressure in the main pump, please check the valves. " * 3


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[Simulator]:
    async with Simulator(tmp_path / "sim", modems=2, profile="generic") as simulator:
        yield simulator


async def start_daemon(daemons: list[DaemonProcess], config: Path) -> DaemonProcess:
    daemon = await DaemonProcess(config).start()
    daemons.append(daemon)
    return daemon


def enqueue(db: Path, to: str, text: str, **kw: object) -> int:
    with Store(db) as store:
        (result,) = store.enqueue([OutboundRequest(to=to, text=text, source="test", **kw)])  # type: ignore[arg-type]
        return result.id


def message(db: Path, message_id: int) -> dict[str, object]:
    with Store(db) as store:
        row = store.message(message_id)
        assert row is not None
        return dict(row)


def inbox_texts(db: Path) -> list[str]:
    with Store(db) as store:
        return [str(row["text"]) for row in store.inbox(1000)]


def sent_texts(sim: Simulator) -> list[str]:
    return [str(record["text"]) for record in sim.network.sent]


def stored_count(sim: Simulator, index: int) -> int:
    return int(sim.modems[index].storage.used)


async def wait_state(db: Path, message_id: int, state: str, daemon: DaemonProcess, timeout: float = 10.0) -> None:
    try:
        await async_wait_until(lambda: message(db, message_id)["state"] == state, timeout=timeout,
                               what=f"message {message_id} {state}")
    except AssertionError:
        print(daemon.log_text()[-4000:])
        raise


# --- configuration errors ------------------------------------------------------------------------


def run_cli(*args: str) -> tuple[int, str]:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          env=daemon_env(), cwd=ROOT, timeout=30)
    return done.returncode, done.stderr


@pytest.mark.parametrize(("text", "key", "reason"), [
    ('[store]\npath = "x.db"\n[[modems]]\nid = "a"\nport = "/dev/null"\nprofile = "nokia"\n',
     "modems[0].profile", "unknown profile"),
    ('[store]\npath = "x.db"\n[[modems]]\nid = "a"\n', "modems[0].port", "required"),
    ('[store]\npath = "x.db"\n[health]\nping_interval = -1\n', "health.ping_interval", "positive"),
    ('[store]\npath = "x.db"\n[health]\ntimeouts = { sned = 3 }\n', "health.timeouts.sned", "unknown timeout"),
])
def test_config_errors_name_file_key_and_reason_and_exit_2(tmp_path: Path, text: str, key: str,
                                                           reason: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    status, err = run_cli("run", "--config", str(config))
    assert status == 2
    assert str(config) in err and key in err and reason in err
    assert not (tmp_path / "x.db").exists()  # nothing started


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    status, err = run_cli("run", "--config", str(tmp_path / "nope.toml"))
    assert status == 2 and "nope.toml" in err and "does not exist" in err


#: Without ``[mqtt]`` the daemon writes no event rows; what it would publish is observed where a
#: consumer gets it: the deliveries of a webhook (to a closed port: they stay pending, in order).
WEBHOOK = '\n[[webhooks]]\nname = "observer"\nurl = "http://127.0.0.1:9/hook"\nsecret = "0123456789abcdef0123"\n'


def published(db: Path, event: str, topic_id: int | None = None) -> list[dict[str, Any]]:
    """The payloads of ``event`` ("message", "received") handed to the webhook, oldest first."""
    with Store(db) as store:
        bodies = [json.loads(row["body"]) for row in reversed(store.deliveries("observer", 10_000))
                  if row["event"] == event]
    return [b for b in bodies if topic_id is None or b.get("id") == topic_id]


# --- outbound ------------------------------------------------------------------------------------


async def test_send_reaches_the_network_and_sigterm_exits_cleanly(tmp_path: Path, sim: Simulator,
                                                                  daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path / "gw", sim.ports)
    db = tmp_path / "gw" / "smsgw.db"
    daemon = await start_daemon(daemons, config)
    ids = [enqueue(db, OUTSIDE, f"hello {n}") for n in range(3)] + [enqueue(db, OUTSIDE, LONG_TEXT)]
    for message_id in ids:
        await wait_state(db, message_id, "sent", daemon)
    assert sorted(sent_texts(sim)) == sorted([f"hello {n}" for n in range(3)] + [LONG_TEXT])
    lines = [line for line in (sim.directory / "network.jsonl").read_text().splitlines() if line]
    assert len(lines) == 4
    assert await daemon.stop() == 0
    log = daemon.log_text()
    assert "info daemon: smsgw running with 2 modem(s)" in log
    assert "info daemon: stopped" in log
    with Store(db) as store:
        states = {m["state"] for m in store.outbox(10)}
        modems = {key: store.state_get("modem", key) for key in ("sim0", "sim1")}
    assert states == {"sent"}
    assert all(state is not None and state["state"] == "offline" for state in modems.values())  # what HA availability reads
    with sqlite3.connect(db) as conn:  # without [mqtt] the daemon writes no event (nothing would publish it)
        assert conn.execute("SELECT topic, payload FROM event WHERE payload LIKE '%\"sen%'").fetchall() == []


async def test_smsgw_send_from_another_process_is_sent(tmp_path: Path, sim: Simulator,
                                                       daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path / "gw", sim.ports)
    db = tmp_path / "gw" / "smsgw.db"
    daemon = await start_daemon(daemons, config)
    status, err = run_cli("send", "--config", str(config), OUTSIDE, "via the CLI")
    assert status == 0, err
    await async_wait_until(lambda: "via the CLI" in sent_texts(sim), timeout=10, what="CLI message sent")
    await daemon.stop()
    assert [m["state"] for m in Store(db).outbox(10)] == ["sent"]


async def test_failover_when_a_modem_hangs(tmp_path: Path, sim: Simulator, daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path / "gw", sim.ports)
    db = tmp_path / "gw" / "smsgw.db"
    daemon = await start_daemon(daemons, config)
    first = enqueue(db, OUTSIDE, "before the hang")
    await wait_state(db, first, "sent", daemon)
    sim.fault(0, "hang")
    ids = [enqueue(db, OUTSIDE, f"during the hang {n}") for n in range(6)]
    for message_id in ids:
        await wait_state(db, message_id, "sent", daemon, timeout=20)
    assert {message(db, i)["modem"] for i in ids} == {"sim1"}
    after = [r for r in sim.network.sent if str(r["text"]).startswith("during the hang")]
    assert len(after) == 6 and {r["modem"] for r in after} == {1}
    with Store(db) as store:
        await async_wait_until(lambda: not store.state_get("modem", "sim0")["healthy"], timeout=10)
    sim.fault(0, "recover")
    with Store(db) as store:
        await async_wait_until(lambda: store.state_get("modem", "sim0")["state"] == "online", timeout=15,
                               what="sim0 back online")
    assert await daemon.stop() == 0


async def test_failover_when_a_modem_is_unplugged_and_it_comes_back(tmp_path: Path, sim: Simulator,
                                                                    daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path / "gw", sim.ports)
    db = tmp_path / "gw" / "smsgw.db"
    daemon = await start_daemon(daemons, config)
    with Store(db) as store:
        await async_wait_until(lambda: all((store.state_get("modem", m) or {}).get("state") == "online"
                                           for m in ("sim0", "sim1")), timeout=10, what="both online")
    sim.fault(0, "unplug")
    ids = [enqueue(db, OUTSIDE, f"while unplugged {n}") for n in range(4)]
    for message_id in ids:
        await wait_state(db, message_id, "sent", daemon, timeout=20)
    assert {message(db, i)["modem"] for i in ids} == {"sim1"}
    sim.fault(0, "replug")
    with Store(db) as store:
        # The state row may still say "online" from before the unplug was noticed: wait for the
        # recovery to be recorded as well.
        await async_wait_until(lambda: store.state_get("modem", "sim0")["state"] == "online"
                               and store.state_get("modem", "sim0")["recoveries"] >= 1, timeout=15,
                               what="sim0 reopened after a recovery")
    assert await daemon.stop() == 0


async def test_transient_cms_38_is_retried_and_permanent_cms_21_fails(tmp_path: Path, sim: Simulator,
                                                                      daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path / "gw", sim.ports[:1], retry_base=0.5, extra=WEBHOOK)
    db = tmp_path / "gw" / "smsgw.db"
    daemon = await start_daemon(daemons, config)
    with Store(db) as store:
        await async_wait_until(lambda: (store.state_get("modem", "sim0") or {}).get("state") == "online",
                               timeout=10)
    sim.fault(0, "cms-error:38")
    transient = enqueue(db, OUTSIDE, "transient")
    await wait_state(db, transient, "sent", daemon)
    row = message(db, transient)
    assert row["attempts"] == 2
    states = [body["state"] for body in published(db, "message", transient)]
    errors = [body.get("error") for body in published(db, "message", transient)]
    assert states == ["queued", "sending", "queued", "sending", "sent"]
    assert any(error and "38" in str(error) for error in errors)
    sim.fault(0, "cms-error:21")
    permanent = enqueue(db, OUTSIDE, "permanent")
    await wait_state(db, permanent, "failed", daemon)
    row = message(db, permanent)
    assert row["attempts"] == 1 and "21" in str(row["last_error"])
    assert "permanent" not in sent_texts(sim)
    assert await daemon.stop() == 0


async def test_message_expires_while_no_modem_can_send(tmp_path: Path, sim: Simulator,
                                                       daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path / "gw", sim.ports[:1])
    db = tmp_path / "gw" / "smsgw.db"
    sim.fault(0, "unplug")
    daemon = await start_daemon(daemons, config)
    expiring = enqueue(db, OUTSIDE, "too late", valid_until=time.time() + 1.0)
    await wait_state(db, expiring, "expired", daemon)
    sim.fault(0, "replug")
    with Store(db) as store:
        await async_wait_until(lambda: (store.state_get("modem", "sim0") or {}).get("state") == "online",
                               timeout=15)
    assert "too late" not in sent_texts(sim)
    assert await daemon.stop() == 0


async def test_delivery_reports_mark_messages_delivered(tmp_path: Path, sim: Simulator,
                                                        daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path / "gw", sim.ports, report=True)
    db = tmp_path / "gw" / "smsgw.db"
    daemon = await start_daemon(daemons, config)
    single = enqueue(db, OUTSIDE, "report me")
    multi = enqueue(db, sim.modems[1].number, LONG_TEXT)
    await wait_state(db, single, "delivered", daemon)
    await wait_state(db, multi, "delivered", daemon)
    with Store(db) as store:
        assert all(p.state == "delivered" for p in store.parts(multi))
    assert await daemon.stop() == 0


# --- inbound -------------------------------------------------------------------------------------


async def test_incoming_sms_is_committed_then_deleted_from_the_sim(tmp_path: Path, sim: Simulator,
                                                                   daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path / "gw", sim.ports, extra=WEBHOOK)
    db = tmp_path / "gw" / "smsgw.db"
    daemon = await start_daemon(daemons, config)
    with Store(db) as store:
        await async_wait_until(lambda: all((store.state_get("modem", m) or {}).get("state") == "online"
                                           for m in ("sim0", "sim1")), timeout=10, what="both online")
    sim.inject(0, "+4917099999999", "hello gateway")
    sim.inject(1, "+4917088888888", LONG_TEXT)
    await async_wait_until(lambda: sorted(inbox_texts(db)) == sorted(["hello gateway", LONG_TEXT]), timeout=10)
    await async_wait_until(lambda: stored_count(sim, 0) == 0 and stored_count(sim, 1) == 0, timeout=10,
                           what="SIM slots freed")
    received = published(db, "received")
    assert {(r["from"], r["text"]) for r in received} == {("+4917099999999", "hello gateway"),
                                                          ("+4917088888888", LONG_TEXT)}
    assert await daemon.stop() == 0


async def test_sweep_picks_up_sms_that_arrived_while_the_daemon_was_down(tmp_path: Path, sim: Simulator,
                                                                         daemons: list[DaemonProcess]) -> None:
    config = write_config(tmp_path / "gw", sim.ports)
    db = tmp_path / "gw" / "smsgw.db"
    sim.inject(0, "+4917011111111", "while you were out")
    sim.inject(1, "+4917022222222", LONG_TEXT)
    await async_wait_until(lambda: stored_count(sim, 0) == 1 and stored_count(sim, 1) >= 2, timeout=5)
    daemon = await start_daemon(daemons, config)
    await async_wait_until(lambda: sorted(inbox_texts(db)) == sorted(["while you were out", LONG_TEXT]),
                           timeout=10, what="swept messages in the inbox")
    await async_wait_until(lambda: stored_count(sim, 0) == 0 and stored_count(sim, 1) == 0, timeout=10)
    assert await daemon.stop() == 0


async def test_reassembly_timeout_delivers_the_partial_text(tmp_path: Path, sim: Simulator,
                                                            daemons: list[DaemonProcess]) -> None:
    from datetime import UTC, datetime

    from drivers.pdu import encode_deliver

    config = write_config(tmp_path / "gw", sim.ports, reassembly_timeout=1.0, extra=WEBHOOK)
    db = tmp_path / "gw" / "smsgw.db"
    daemon = await start_daemon(daemons, config)
    with Store(db) as store:
        await async_wait_until(lambda: (store.state_get("modem", "sim0") or {}).get("state") == "online",
                               timeout=10)
    pdus = encode_deliver("+4917033333333", LONG_TEXT * 2, timestamp=datetime.now(UTC),
                          concat_reference=77)
    assert len(pdus) == 3
    sim.modems[0].receive(pdus[0])  # part 2 never arrives
    sim.modems[0].receive(pdus[2])
    await async_wait_until(lambda: inbox_texts(db), timeout=10, what="partial message delivered")
    with Store(db) as store:
        (row,) = store.inbox(10)
    (event,) = published(db, "received")
    assert row["partial"] and event["partial"] is True and event["missing"] == [2]
    assert await daemon.stop() == 0



async def test_sigterm_finishes_the_send_in_progress_commits_it_and_exits_0(tmp_path: Path,
                                                                           daemons: list[DaemonProcess]) -> None:
    slow = Simulator(tmp_path / "slow", modems=1, send_delay=1.0)
    await slow.start()
    try:
        config = write_config(tmp_path / "gw", slow.ports)
        db = tmp_path / "gw" / "smsgw.db"
        daemon = await start_daemon(daemons, config)
        await daemon.wait_running()
        first = enqueue(db, OUTSIDE, "in flight at SIGTERM")
        second = enqueue(db, "+4915187654321", "still queued at SIGTERM")
        await wait_state(db, first, "sending", daemon)
        # claimed is not yet in flight: wait for the PDU to be with the modem
        await async_wait_until(lambda: slow.modems[0].submits_started >= 1, timeout=10,
                               what="the first PDU submitted")
        assert await daemon.stop() == 0  # during the 1 s the modem takes to answer +CMGS
        assert message(db, first)["state"] == "sent"  # the exchange finished and was committed
        assert sent_texts(slow) == ["in flight at SIGTERM"]
        assert message(db, second)["state"] == "queued"
        log = daemon.log_text()
        assert log.index("signal received") < log.index(f"message {first} part 1/1 sent") < log.index("daemon: stopped")
    finally:
        await slow.stop()


def test_log_lines_are_level_component_message_and_journald_gets_priorities() -> None:
    import logging

    from appliance.commands.run import LogFormatter

    record = logging.LogRecord("appliance.dispatcher", logging.WARNING, __file__, 1, "message %d failed", (7,), None)
    record.fields = {"modem": "sim0", "attempt": 2}
    record.created, record.msecs = time.mktime((2026, 12, 1, 21, 5, 3, 0, 0, -1)) + 0.482, 482.0
    # not under journald: the local time first (a log file or a terminal has no other)
    assert LogFormatter(journal=False).format(record) == (
        "2026-12-01 21:05:03.482 warning dispatcher: message 7 failed modem=sim0 attempt=2")
    assert LogFormatter(journal=True).format(record) == "<4>dispatcher: message 7 failed modem=sim0 attempt=2"
    info = logging.LogRecord("drivers.at", logging.INFO, __file__, 1, "open", (), None)
    assert LogFormatter(journal=True).format(info) == "<6>at: open"


def test_the_demo_selftest_sends_and_receives_through_the_cli_simulator() -> None:
    import subprocess

    done = subprocess.run(["bash", str(ROOT / ".ci" / "demo"), "--selftest"], capture_output=True, text=True,
                          env=daemon_env(), cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "selftest: smsgw send -> simulated network: ok" in done.stdout
    assert "selftest: smsgw simulate inject -> smsgw inbox: ok" in done.stdout
    assert "selftest: passed" in done.stdout
