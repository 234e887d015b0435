"""Recorded real modems replayed on ptys: `detect`, the real driver and `smsgw run` open every one.

The transcripts in tests/data/transcripts/ are replies of named real modems gathered from public
sources; each file names its source (repo, path and commit, or the issue). ModemManager's
``devids`` table and most issue logs record identity replies only: where a transcript records no
``AT+CPIN?`` the driver tests supply ``+CPIN: READY`` / ``OK`` (python-gsmmodem's ``FakeModem``
answer for a SIM without a PIN) and say so in the test id; commands no source records get the
transcript's default (OK), as python-gsmmodem's fake modems do.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemon_helpers import FAST_HEALTH, ROOT, DaemonProcess, daemon_env
from waiting import async_wait_until

from appliance.commands import detect
from appliance.store import Store
from drivers.at import AtEngine
from drivers.errors import AtError
from drivers.modem import Modem
from drivers.simulator.replay import ReplayModem, Reply, TranscriptError, command_key, load_transcript

CORPUS = Path(__file__).parent / "data" / "transcripts"
TRANSCRIPTS = sorted(CORPUS.glob("*.json"))
SIM_READY = {"AT+CPIN?": Reply(("+CPIN: READY",))}
FAST = {"command": 1.0, "sync": 0.5}


def _records_cpin(path: Path) -> bool:
    return command_key("AT+CPIN?") in load_transcript(path).commands


def _ids(path: Path) -> str:
    return path.stem if _records_cpin(path) else f"{path.stem}+sim-ready"


@pytest.fixture
async def replay(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ReplayModem]:
    path: Path = request.param
    supplement = None if _records_cpin(path) else SIM_READY
    async with ReplayModem(load_transcript(path), tmp_path / "modem0", supplement=supplement) as modem:
        yield modem


# --- the corpus --------------------------------------------------------------------------------


def test_the_corpus_holds_twenty_or_more_named_modems_each_with_its_source() -> None:
    modems = set()
    for path in TRANSCRIPTS:
        transcript = load_transcript(path)
        source = transcript.source
        assert ("repo" in source and "path" in source and "commit" in source) or "issue" in source, path.name
        if "commit" in source:
            assert len(source["commit"]) == 40
        assert set(transcript.expect) == {"manufacturer", "model", "revision", "imei", "profile"}, path.name
        modems.add(transcript.modem)
    assert len(modems) >= 20


@pytest.mark.parametrize("replay", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS], indirect=True)
async def test_detect_identifies_every_corpus_modem(replay: ReplayModem) -> None:
    expect = replay.transcript.expect
    [found] = await detect.detect([str(replay.link)], timeout=0.5)
    assert found.status == "ok"
    assert (found.manufacturer, found.model, found.revision, found.imei) == (
        expect["manufacturer"], expect["model"], expect["revision"], expect["imei"])
    assert found.profile == expect["profile"]


@pytest.mark.parametrize("replay", TRANSCRIPTS, ids=[_ids(p) for p in TRANSCRIPTS], indirect=True)
async def test_the_driver_opens_every_corpus_modem_with_what_it_answers(replay: ReplayModem) -> None:
    expect = replay.transcript.expect
    modem = Modem(str(replay.link), timeouts=FAST)
    try:
        await modem.open()
        identity = modem.identity
        assert (identity.manufacturer, identity.model, identity.revision, identity.imei) == (
            expect["manufacturer"], expect["model"], expect["revision"], expect["imei"])
        assert modem.profile.name == expect["profile"]
        assert "AT+CMGF=0" in replay.received and any(c.startswith("AT+CNMI=") for c in replay.received)
    finally:
        await modem.close()


# --- the cases the corpus was gathered for ----------------------------------------------------------


def _replay(tmp_path: Path, name: str) -> ReplayModem:
    path = CORPUS / f"{name}.json"
    return ReplayModem(load_transcript(path), tmp_path / "modem0", supplement=None if _records_cpin(path) else SIM_READY)


async def test_wavecom_cpin_without_ok_opens_on_the_generic_profile_within_the_grace(tmp_path: Path) -> None:
    """python-gsmmodem test/fakemodems.py WavecomMultiband900E1800: +CPIN: READY and no OK; +CGMR ERROR."""
    async with _replay(tmp_path, "wavecom-multiband-900e-1800") as replay:
        assert replay.transcript.commands["AT+CPIN?"][0].final is None
        modem = Modem(str(replay.link), timeouts={"command": 5.0, "sync": 0.5})
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await modem.open()
            assert loop.time() - started < 4.0  # far less than the 5 s a missing OK would cost
            assert modem.profile.name == "generic"
            assert modem.identity.revision == ""  # +CGMR and +GMR answered ERROR / nothing
            assert "AT+GMR" in replay.received  # the V.25ter fallback was tried
            assert await modem.sim_state() == "READY"
        finally:
            await modem.close()


async def test_a_modem_whose_identity_commands_all_fail_still_opens(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """LilyGo-Modem-Series#195: an A7670G answers AT+CGSN with +CME ERROR: memory failure."""
    async with _replay(tmp_path, "simcom-a7670g") as replay:
        modem = Modem(str(replay.link), timeouts=FAST)
        try:
            with caplog.at_level("WARNING", logger="drivers.identity"):
                await modem.open()
            assert modem.identity.imei == ""
            assert any("does not tell its" in r.getMessage() and "imei" in r.getMessage() for r in caplog.records)
        finally:
            await modem.close()


# --- the replay itself ------------------------------------------------------------------------------


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    return path


GOOD = {"modem": "X", "source": {"issue": "https://example.invalid/1"}, "commands": {"AT": {}}}


@pytest.mark.parametrize(("data", "key", "reason"), [
    ({**GOOD, "modem": ""}, "modem", "missing"),
    ({k: v for k, v in GOOD.items() if k != "source"}, "source", "missing"),
    ({**GOOD, "commands": {}}, "commands", "missing"),
    ({**GOOD, "commands": {"CGMI": {}}}, "commands.CGMI", "start with AT"),
    ({**GOOD, "commands": {"AT": {"line": ["x"]}}}, "commands.AT.line", "unknown key"),
    ({**GOOD, "commands": {"AT": {"final": 0}}}, "commands.AT.final", "string or null"),
    ({**GOOD, "commands": {"AT": [{}, {"lines": "x"}]}}, "commands.AT[1].lines", "list of strings"),
    ({**GOOD, "commands": {"AT": {"raw": "OK", "final": "OK"}}}, "commands.AT.raw", "one or the other"),
    ({**GOOD, "echo": "yes"}, "echo", "true or false"),
    ({**GOOD, "extra": 1}, "extra", "unknown key"),
])
def test_a_bad_transcript_names_file_and_key(tmp_path: Path, data: object, key: str, reason: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(TranscriptError) as info:
        load_transcript(path)
    assert info.value.key == key and str(path) in str(info.value) and reason in str(info.value)


def test_a_transcript_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("{nope")
    with pytest.raises(TranscriptError, match="not valid JSON"):
        load_transcript(path)


async def test_replies_come_in_turn_with_echo_raw_bytes_urcs_boot_lines_and_the_prompt(tmp_path: Path) -> None:
    path = _write(tmp_path, {
        **GOOD, "boot": ["RDY"], "default": {"final": "ERROR"},
        "commands": {
            "AT+CSQ": [{"lines": ["+CSQ: 99,99"]}, {"lines": ["+CSQ: 17,99"]}],
            "AT+CGMR": {"raw": "\r\nREV 1\r\n\r\nOK\r\n"},
            "AT+CNMI=2,1,0,2,0": {"urcs": ['+CMTI: "SM",3']},
            "AT+CMGS=5": {"prompt": True, "lines": ["+CMGS: 42"]},
        },
    })
    received: list[str] = []
    async with ReplayModem(load_transcript(path), tmp_path / "modem0") as replay:
        engine = AtEngine(default_timeout=2.0)
        engine.add_urc(r"\+CMTI: ", lambda match, _extra: received.append(match.string))
        await engine.open(str(replay.link))
        try:
            assert (await engine.command("AT+CSQ")).lines == ["+CSQ: 99,99"]  # echo on: skipped
            await engine.command("ATE0")
            assert (await engine.command("AT+CSQ")).lines == ["+CSQ: 17,99"]
            assert (await engine.command("at+csq")).lines == ["+CSQ: 17,99"]  # the last one repeats
            assert (await engine.command("AT+CGMR")).lines == ["REV 1"]
            await engine.command("AT+CNMI=2,1,0,2,0")
            await async_wait_until(lambda: received == ['+CMTI: "SM",3'], timeout=5)
            assert (await engine.command_with_prompt("AT+CMGS=5", "0011000000")).lines == ["+CMGS: 42"]
            with pytest.raises(AtError):
                await engine.command("AT+CUSD=1")  # not recorded: the default, ERROR
            assert replay.unrecorded == ["ATE0", "AT+CUSD=1"]
            assert replay.echo is False
        finally:
            await engine.close()


# --- the command line: simulate --replay, detect --json, run ------------------------------------------


class ReplayProcess:
    def __init__(self, directory: Path, transcript: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "simulate", "--dir", str(directory), "--replay", str(transcript)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=daemon_env(), cwd=ROOT)
        assert self.proc.stdout is not None
        self.ready = self.proc.stdout.readline()
        self.port = str(directory / "modem0")

    def stop(self) -> tuple[int, str]:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, err


@pytest.mark.parametrize("name", ["fibocom-l850-gl", "simcom-sim7600-tinygsm-444", "wavecom-multiband-900e-1800"])
def test_cli_detect_json_reports_revision_and_a_bare_imei_from_a_replayed_modem(tmp_path: Path, name: str) -> None:
    transcript = CORPUS / f"{name}.json"
    expect = load_transcript(transcript).expect
    replay = ReplayProcess(tmp_path / "sim", transcript)
    try:
        assert replay.ready.startswith("replay ready: ")
        done = subprocess.run([sys.executable, "-m", "appliance", "detect", "--no-scan", "--json", "--timeout", "0.5",
                               "--port", replay.port], capture_output=True, text=True, env=daemon_env(), cwd=ROOT,
                              timeout=30)
        assert done.returncode == 0, done.stderr
        [entry] = json.loads(done.stdout)
        assert {k: entry[k] for k in ("manufacturer", "model", "revision", "imei", "profile")} == expect
    finally:
        status, err = replay.stop()
    assert status == 0, err


def test_cli_replay_of_a_bad_transcript_exits_2_naming_it(tmp_path: Path) -> None:
    bad = _write(tmp_path, {**GOOD, "commands": {"CGMI": {}}})
    done = subprocess.run([sys.executable, "-m", "appliance", "simulate", "--dir", str(tmp_path / "sim"), "--replay",
                           str(bad)], capture_output=True, text=True, env=daemon_env(), cwd=ROOT, timeout=30)
    assert done.returncode == 2
    assert str(bad) in done.stderr and "commands.CGMI" in done.stderr
    good = CORPUS / "huawei-k3715.json"
    mixed = subprocess.run([sys.executable, "-m", "appliance", "simulate", "--dir", str(tmp_path / "sim"), "--replay",
                            str(good), "--modems", "2"], capture_output=True, text=True, env=daemon_env(), cwd=ROOT,
                           timeout=30)
    assert mixed.returncode == 2 and "--replay serves the one recorded modem" in mixed.stderr
    missing = subprocess.run([sys.executable, "-m", "appliance", "simulate", "--dir", str(tmp_path / "sim"), "--replay",
                              str(tmp_path / "none.json")], capture_output=True, text=True, env=daemon_env(), cwd=ROOT,
                             timeout=30)
    assert missing.returncode == 2 and "no such transcript file" in missing.stderr


def _run_config(directory: Path, port: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "smsgw.db"
    config = directory / "smsgw.toml"
    config.write_text(f'[store]\npath = "{db}"\n\n[[modems]]\nid = "m0"\nport = "{port}"\nprofile = "auto"\n'
                      + FAST_HEALTH.format(sweep_interval=30.0, retry_base=0.3))
    return config, db


async def _run_until_online(config: Path, db: Path) -> dict[str, object]:
    """`smsgw run` until modem m0 is online; its published state. The daemon is stopped (exit 0)."""
    daemon = await DaemonProcess(config).start()

    def state() -> dict[str, object]:
        if not db.exists():
            return {}
        with Store(db) as store:
            return dict(store.state_get("modem", "m0") or {})

    try:
        try:
            await async_wait_until(lambda: state().get("state") == "online", timeout=20, what="modem online")
        except AssertionError:
            print(daemon.log_text()[-4000:])
            raise
        status = state()
        assert await daemon.stop() == 0
        return status
    finally:
        if daemon.running:
            await daemon.kill()


@pytest.mark.parametrize("replay", TRANSCRIPTS, ids=[_ids(p) for p in TRANSCRIPTS], indirect=True)
async def test_smsgw_run_brings_every_corpus_modem_online(replay: ReplayModem, tmp_path: Path) -> None:
    expect = replay.transcript.expect
    status = await _run_until_online(*_run_config(tmp_path / "gw", str(replay.link)))
    assert status["profile"] == expect["profile"]
    assert status["imei"] == (expect["imei"] or None)


def test_smsgw_run_against_smsgw_simulate_replay(tmp_path: Path) -> None:
    """Both sides as the commands a user runs: the Wavecom transcript (+CPIN: READY without OK)."""
    transcript = CORPUS / "wavecom-multiband-900e-1800.json"
    replay = ReplayProcess(tmp_path / "sim", transcript)
    try:
        status = asyncio.run(_run_until_online(*_run_config(tmp_path / "gw", replay.port)))
        assert status["profile"] == "generic" and status["imei"] == "111111111111111"
    finally:
        code, err = replay.stop()
    assert code == 0, err
    assert "answered with the default" in err  # the commands no source recorded are named


async def test_signal_and_registration_replies_of_a_quectel_ec200a_are_read(tmp_path: Path) -> None:
    """luci-app-3ginfo-lite#135: +CSQ: 17,99 and +CREG: 2,1,"00A8","5355E8D",7 from an EC200A."""
    async with _replay(tmp_path, "quectel-ec200a") as replay:
        modem = Modem(str(replay.link), timeouts=FAST)
        try:
            await modem.open()
            signal = await modem.signal()
            assert (signal.rssi, signal.ber) == (17, None)
            registration = await modem.registration()
            assert (registration.state, registration.lac, registration.cell_id, registration.act) == (
                "home", "00A8", "5355E8D", 7)
        finally:
            await modem.close()


async def test_registration_replies_of_a_quectel_ec25_are_read(tmp_path: Path) -> None:
    """luci-app-modeminfo#45: +CREG: 0,1, +CEREG: 0,1, +CSQ: 30,99 from an EC25."""
    async with _replay(tmp_path, "quectel-ec25-modeminfo-45") as replay:
        modem = Modem(str(replay.link), timeouts=FAST)
        try:
            await modem.open()
            assert (await modem.signal()).rssi == 30
            registration = await modem.registration()
            assert registration.registered and registration.state == "home"
        finally:
            await modem.close()


async def test_a_sim_busy_at_start_is_asked_again_and_ati_names_the_model(tmp_path: Path) -> None:
    """T-SIM7600X#135: AT+CPIN? answers +CME ERROR: SIM busy, then +CPIN: READY without OK; the
    identity comes from the labelled ATI answer (Model: SIMCOM_SIM7600G-H)."""
    async with _replay(tmp_path, "simcom-sim7600g-h-t-sim7600x-135") as replay:
        modem = Modem(str(replay.link), timeouts=FAST)
        try:
            await modem.open()
            assert replay.received.count("AT+CPIN?") >= 2
            assert "ATI" in replay.received
            assert modem.profile.name == "sim7600"
            assert modem.identity.model == "SIMCOM_SIM7600G-H"
        finally:
            await modem.close()
