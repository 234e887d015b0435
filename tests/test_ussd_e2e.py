"""USSD, the control socket, balance checks and the operator's view, end to end.

``smsgw run`` as a subprocess on the simulator's modems (in the test's loop, on real ptys) and a
real mosquitto; the CLI (``smsgw ussd``, ``smsgw at``, ``status``, ``doctor``) as subprocesses.
The network's answers are the simulator's (``drivers/simulator/ussd.py``; real captures cited
there and in tests/test_ussd.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from daemon_helpers import ROOT, DaemonProcess, write_config
from mosquitto import Broker, Probe
from waiting import async_wait_until

from drivers.simulator import Simulator

pytest_plugins = ["mosquitto"]

BALANCE = "Balance 10.00 EUR. Valid until 31.12.2026"
OUTSIDE = "+4915112345678"


async def cli(*args: str, config: Path, stdin: bytes | None = None) -> tuple[int, str, str]:
    """``smsgw COMMAND --config FILE ARGS`` in a subprocess (the simulator keeps running meanwhile)."""
    env = {k: v for k, v in os.environ.items() if k != "SMSGW_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance", args[0], "--config", str(config), *args[1:],
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=ROOT, env=env)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def mqtt_table(broker: Broker) -> str:
    return (f'\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "gw-ussd"\n'
            "reconnect_min = 1\nreconnect_max = 1\n")


class Rig:
    def __init__(self, tmp_path: Path, broker: Broker, extra: str = "") -> None:
        self.tmp_path = tmp_path
        self.broker = broker
        self.extra = extra
        self.sim = Simulator(tmp_path / "sim", modems=1)
        self.config: Path = tmp_path / "unset"
        self.daemon: DaemonProcess | None = None

    async def start(self) -> None:
        await self.sim.start()
        self.config = write_config(self.tmp_path / "gw", self.sim.ports, extra=mqtt_table(self.broker) + self.extra)
        # USSD answers in the test's simulator come at once; 3 s is plenty and keeps the timeout test short
        text = self.config.read_text().replace("boot = 5 }", "boot = 5, ussd = 3 }")
        self.config.write_text(text)
        await self.start_daemon()

    async def start_daemon(self) -> DaemonProcess:
        self.daemon = DaemonProcess(self.config)
        await self.daemon.start()
        await self.daemon.wait_running(20)
        assert self.daemon.running, self.daemon.log_text()
        await async_wait_until(lambda: '"state": "online"' in self.modem_state(), timeout=15,
                               what="modem online")
        return self.daemon

    def modem_state(self) -> str:
        import sqlite3

        db = self.config.parent / "smsgw.db"
        if not db.exists():
            return ""
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT value FROM state WHERE namespace='modem' AND key='sim0'").fetchone()
        return "" if row is None else str(row[0]).replace('":"', '": "')

    async def stop(self) -> None:
        if self.daemon is not None and self.daemon.running:
            await self.daemon.stop()
        await self.sim.stop()


@pytest.fixture
async def rig(tmp_path: Path, mosquitto: Broker) -> AsyncIterator[Rig]:
    rig = Rig(tmp_path, mosquitto)
    try:
        await rig.start()
        yield rig
    finally:
        await rig.stop()


async def ask(probe: Probe, request: dict[str, Any], transaction: str, timeout: float = 15) -> dict[str, Any]:
    probe.publish("smsgw/ussd", json.dumps({**request, "transaction": transaction}))

    def answered() -> dict[str, Any] | None:
        for doc in probe.json("smsgw/bridge/response/ussd"):
            if isinstance(doc, dict) and doc.get("transaction") == transaction:
                return doc
        return None

    found = await async_wait_until(answered, timeout=timeout, what=f"USSD response {transaction}")
    assert found is not None
    return found


# --- USSD over MQTT --------------------------------------------------------------------------------


async def test_ussd_over_mqtt_single_and_multi_step(rig: Rig) -> None:
    probe = Probe(rig.broker, "smsgw/bridge/response/ussd")
    try:
        single = await ask(probe, {"code": "*100#"}, "t1")
        assert single["status"] == "ok"
        assert single["data"] == {"modem": "sim0", "code": "*100#", "text": BALANCE, "network_status": 0,
                                  "dcs": 15, "session_open": False, "session": None}
        menu = await ask(probe, {"code": "*101#", "modem": "sim0"}, "t2")
        assert menu["data"]["session_open"] and menu["data"]["text"] == "Main menu\n1 Balance\n2 Offers\n0 Exit"
        session = menu["data"]["session"]
        offers = await ask(probe, {"session": session, "reply": "2"}, "t3")
        assert offers["data"]["session_open"] and offers["data"]["session"] == session
        done = await ask(probe, {"session": session, "reply": "1"}, "t4")
        assert done["data"]["text"] == "1 GB booked. Thank you" and done["data"]["session_open"] is False
        stale = await ask(probe, {"session": session, "reply": "1"}, "t5")
        assert stale["status"] == "error" and stale["error_kind"] == "unknown_session"
        cyrillic = await ask(probe, {"code": "*102#"}, "t6")
        assert (cyrillic["data"]["text"], cyrillic["data"]["dcs"]) == ("Баланс: 150 руб", 72)
    finally:
        probe.close()


async def test_ussd_over_mqtt_errors_are_answered_and_harm_no_other_request(rig: Rig) -> None:
    probe = Probe(rig.broker, "smsgw/bridge/response/ussd")
    try:
        probe.publish("smsgw/ussd", b"{not json")
        await async_wait_until(lambda: any("not JSON" in d.get("error", "")
                                           for d in probe.json("smsgw/bridge/response/ussd")),
                               timeout=10, what="bad JSON answered")
        unknown = await ask(probe, {"code": "*100#", "modem": "nope"}, "e1")
        assert unknown["status"] == "error" and unknown["error_kind"] == "unknown_modem"
        assert "nope" in unknown["error"] and "sim0" in unknown["error"]
        bad = await ask(probe, {"code": "*100#;+CFUN=0"}, "e2")
        assert bad["error_kind"] == "bad_request"
        network = await ask(probe, {"code": "*104#"}, "e3")
        assert network["error_kind"] == "network" and "network time out" in network["error"]
        unsupported = await ask(probe, {"code": "*999#"}, "e4")
        assert unsupported["error_kind"] == "network" and "not supported" in unsupported["error"]
        silent = await ask(probe, {"code": "*105#", "timeout": 1}, "e5")
        assert silent["error_kind"] == "timeout"
        after = await ask(probe, {"code": "*100#"}, "e6")
        assert after["status"] == "ok" and after["data"]["text"] == BALANCE
    finally:
        probe.close()


# --- the control socket and the CLI ----------------------------------------------------------------


async def test_cli_ussd_and_at_go_through_the_running_daemon(rig: Rig) -> None:
    mode = os.stat(f"{rig.config.parent / 'smsgw.db'}.sock").st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o660
    code, out, err = await cli("ussd", "*100#", config=rig.config)
    assert (code, out.strip()) == (0, BALANCE), err
    code, out, err = await cli("ussd", "*101#", "2", "1", "--json", config=rig.config)
    assert code == 0, err
    answers = [json.loads(line) for line in out.splitlines()]
    assert [a["session_open"] for a in answers] == [True, True, False]
    assert answers[-1]["text"] == "1 GB booked. Thank you"
    code, out, err = await cli("ussd", "*104#", config=rig.config)
    assert code == 1 and "network time out" in err
    code, out, err = await cli("ussd", "*100#", "--modem", "nope", config=rig.config)
    assert code == 2 and "unknown modem 'nope'" in err
    # smsgw at: the daemon holds the port (flock); the command goes through its AT engine
    code, out, err = await cli("at", "--modem", "sim0", "+CSQ", "AT+CGMI", config=rig.config)
    assert code == 0, err
    assert out.splitlines()[0].startswith("+CSQ: ") and out.splitlines()[1] == "OK"
    code, out, err = await cli("at", rig.sim.ports[0], "AT+CMEE=1", "AT+CPMS=\"XX\"", config=rig.config)
    assert code == 1 and out.splitlines()[0] == "OK" and out.splitlines()[-1].startswith("+CMS ERROR")


async def test_one_bad_control_client_never_affects_another(rig: Rig) -> None:
    path = str(rig.config.parent / "smsgw.db") + ".sock"
    loop = asyncio.get_running_loop()

    def exchange(lines: list[bytes]) -> list[dict[str, Any]]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(20)
            client.connect(path)
            reader = client.makefile("rb")
            answers = []
            for line in lines:
                client.sendall(line)
                answers.append(json.loads(reader.readline()))
            return answers

    # a client that connects and says nothing holds no lock and blocks nobody
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect(path)
    try:
        bad, unknown_op, ussd, at = await loop.run_in_executor(None, exchange, [
            b"\xff\xfe not json\n", b'{"op": "format-disk"}\n', b'{"op": "ussd", "code": "*100#"}\n',
            b'{"op": "at", "command": "AT+CGMI"}\n'])
    finally:
        idle.close()
    assert bad == {"ok": False, "error": {"kind": "bad_request", "message": bad["error"]["message"]}}
    assert unknown_op["error"]["kind"] == "unknown_op"
    assert ussd["ok"] and ussd["data"]["text"] == BALANCE
    assert at["ok"] and at["data"]["final"] == "OK"


async def test_cli_ussd_opens_the_port_itself_when_no_daemon_runs(rig: Rig) -> None:
    assert rig.daemon is not None
    await rig.daemon.stop()
    code, out, err = await cli("ussd", "*100#", config=rig.config)
    assert (code, out.strip()) == (0, BALANCE), err


# --- balance checks ---------------------------------------------------------------------------------

BALANCE_CONFIG = """
[[alerts]]
name = "balance"
topic = "smsgw/modem/+/balance/low"
to = ["{outside}"]
text = "SIM of {{modem}} low: {{balance}} EUR"
"""


async def test_low_balance_publishes_retained_raises_an_alert_and_survives_restarts(
        tmp_path: Path, mosquitto: Broker) -> None:
    rig = Rig(tmp_path, mosquitto, extra=BALANCE_CONFIG.format(outside=OUTSIDE))
    await rig.sim.start()
    rig.sim.fault(0, "balance:3.50")
    try:
        rig.config = write_config(tmp_path / "gw", rig.sim.ports, extra=mqtt_table(mosquitto) + rig.extra)
        text = rig.config.read_text().replace(
            'profile = "generic"', 'profile = "generic"\nbalance = { code = "*100#", every = "1d", low = 5, unit = "EUR" }')
        rig.config.write_text(text)
        await rig.start_daemon()
        probe = Probe(mosquitto, "smsgw/modem/sim0/balance")
        try:
            def retained() -> dict[str, Any] | None:
                docs = probe.json("smsgw/modem/sim0/balance")
                return docs[-1] if docs and isinstance(docs[-1], dict) else None  # type: ignore[return-value]

            record = await async_wait_until(retained, timeout=15, what="retained balance")
            assert record is not None
            assert (record["balance"], record["below_low"], record["unit"]) == (3.5, True, "EUR")
            await async_wait_until(lambda: any(s["to"] == OUTSIDE for s in rig.sim.network.sent),
                                   timeout=15, what="low-balance alert SMS")
            (alert,) = [s for s in rig.sim.network.sent if s["to"] == OUTSIDE]
            assert alert["text"] == "SIM of sim0 low: 3.5 EUR"
        finally:
            probe.close()
        code, out, _ = await cli("status", config=rig.config)
        assert "balance sim0: 3.5 EUR (below 5)" in out
        code, out, _ = await cli("status", "--json", config=rig.config)
        (modem,) = json.loads(out)["modems"]
        checked = modem["balance"]["checked_at"]
        # a restart does not check again (the last check is in the store), nor alert again
        assert rig.daemon is not None
        await rig.daemon.stop()
        await rig.start_daemon()
        code, out, _ = await cli("status", "--json", config=rig.config)
        assert json.loads(out)["modems"][0]["balance"]["checked_at"] == checked
        # the Home Assistant button's command topic checks at once
        rig.sim.fault(0, "balance:12.00")
        pusher = Probe(mosquitto)
        try:
            pusher.publish("smsgw/modem/sim0/balance/check", b"check")
        finally:
            pusher.close()

        async def rechecked() -> bool:
            _, out, _ = await cli("status", "--json", config=rig.config)
            return json.loads(out)["modems"][0]["balance"]["balance"] == 12.0

        async def poll() -> None:
            while not await rechecked():
                await asyncio.sleep(0.2)

        await asyncio.wait_for(poll(), 20)
        assert len([s for s in rig.sim.network.sent if s["to"] == OUTSIDE]) == 1
    finally:
        await rig.stop()


# --- the operator's view of a dead daemon -----------------------------------------------------------


async def test_status_and_doctor_tell_a_killed_daemon_from_a_running_and_a_stopped_one(rig: Rig) -> None:
    assert rig.daemon is not None and rig.daemon.proc is not None
    code, out, _ = await cli("status", "--json", config=rig.config)
    doc = json.loads(out)
    assert doc["daemon"]["running"] is True and doc["daemon"]["pid"] == rig.daemon.proc.pid
    assert doc["modems"][0]["state"] == "online"
    code, out, _ = await cli("doctor", "--json", "--no-modems", config=rig.config)
    (daemon,) = [f for f in json.loads(out)["findings"] if f["area"] == "daemon"]
    assert daemon["status"] == "ok" and str(rig.daemon.proc.pid) in daemon["message"]

    await rig.daemon.kill()  # SIGKILL: nothing runs its shutdown
    code, out, _ = await cli("status", "--json", config=rig.config)
    doc = json.loads(out)
    assert doc["daemon"]["running"] is False and doc["daemon"]["verdict"].startswith("died")
    assert doc["daemon"]["last_heartbeat"] is not None
    assert doc["modems"][0]["state"] == "no daemon" and doc["modems"][0]["recorded_state"] == "online"
    assert doc["mqtt"]["connected"] is False and doc["mqtt"]["recorded_connected"] is True
    code, out, _ = await cli("status", config=rig.config)
    assert "daemon: NOT RUNNING - died" in out and "last wrote its state at" in out
    code, out, _ = await cli("doctor", "--no-modems", config=rig.config)
    assert code == 1 and "died without stopping" in out

    await rig.start_daemon()
    probe = Probe(rig.broker, "smsgw/modem/sim0")
    try:
        await async_wait_until(lambda: any(isinstance(d, dict) and d.get("state") == "online"
                                           for d in probe.json("smsgw/modem/sim0")), timeout=10)
    finally:
        probe.close()
    assert rig.daemon is not None
    assert await rig.daemon.stop() == 0  # SIGTERM
    code, out, _ = await cli("status", "--json", config=rig.config)
    assert json.loads(out)["daemon"]["verdict"] == "stopped cleanly"
    code, out, _ = await cli("doctor", "--no-modems", config=rig.config)
    assert code == 0 and "stopped cleanly" in out
    # the retained modem state on the broker says offline (a new subscriber gets it)
    late = Probe(rig.broker, "smsgw/modem/sim0")
    try:
        state = await async_wait_until(lambda: late.json("smsgw/modem/sim0"), timeout=10, what="retained state")
        assert state is not None and state[-1]["state"] == "offline"  # type: ignore[index]
    finally:
        late.close()


async def test_a_clean_stop_leaves_the_retained_modem_state_offline(rig: Rig) -> None:
    assert rig.daemon is not None
    assert await rig.daemon.stop() == 0  # SIGTERM
    late = Probe(rig.broker, "smsgw/modem/sim0")  # subscribes after the stop: gets what is retained
    try:
        state = await async_wait_until(lambda: late.json("smsgw/modem/sim0"), timeout=10, what="retained state")
        assert state is not None and state[-1]["state"] == "offline"  # type: ignore[index]
    finally:
        late.close()
