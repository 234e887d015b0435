"""`smsgw send|status|inbox|outbox|config check` as subprocesses against a real SQLite file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from store_helpers import connection

from appliance.store import Store
from drivers.pdu import decode, encode_deliver

ROOT = Path(__file__).resolve().parent.parent


def smsgw(*args: str, config: Path | None = None, stdin: str | None = None,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "appliance", *args]
    if config is not None:
        argv[4:4] = ["--config", str(config)]  # after the sub-command name
    full_env = {k: v for k, v in os.environ.items() if k != "SMSGW_CONFIG"}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, cwd=ROOT, env=full_env, timeout=30)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "smsgw.toml"
    path.write_text(
        '[store]\npath = "smsgw.db"\n'
        '[[modems]]\nid = "sim0"\nport = "/dev/ttyUSB2"\n'
        '[[modems]]\nid = "sim1"\nport = "socket://127.0.0.1:7001"\n'
        '[numbers]\ndefault_country = "DE"\nblocked = ["+44"]\n'
        '[limits]\nmax_parts = 2\n'
    )
    return path


def db_rows(config: Path) -> list[dict]:
    with Store(config.parent / "smsgw.db") as store:
        return store.outbox(100)


def test_send_queues_and_prints_the_id(config):
    result = smsgw("send", "0170 1234567", "Hello from the CLI", config=config)
    assert result.returncode == 0, result.stderr
    message_id = int(result.stdout.strip())
    (row,) = db_rows(config)
    assert row["id"] == message_id and row["to"] == "+491701234567" and row["text"] == "Hello from the CLI"
    assert row["source"] == "cli" and row["state"] == "queued" and row["priority"] == "normal"
    assert row["valid_until"] == pytest.approx(row["created_at"] + 86400.0)


def test_send_json_priority_report_and_idempotency_key(config):
    args = ("send", "--json", "--priority", "high", "--report", "--id", "order-7", "--validity", "60",
            "+49 171 2345678", "Ihre Bestellung ist da")
    first = smsgw(*args, config=config)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["state"] == "queued" and doc["duplicate"] is False and doc["to"] == "+491712345678"
    assert doc["parts"] == 1 and doc["priority"] == "high"
    again = json.loads(smsgw(*args, config=config).stdout)
    assert again["id"] == doc["id"] and again["duplicate"] is True
    (row,) = db_rows(config)
    assert row["priority"] == "high" and row["report"] is True and row["client_key"] == "order-7"
    assert row["valid_until"] == pytest.approx(row["created_at"] + 60)
    human = smsgw("send", "--id", "order-7", "+49 171 2345678", "Ihre Bestellung ist da", config=config)
    assert human.returncode == 0 and "already queued" in human.stdout


def test_send_flash_at_a_later_time(config):
    later = datetime.fromtimestamp(time.time() + 3600, UTC).replace(microsecond=0)
    result = smsgw("send", "--json", "--flash", "--at", later.isoformat(), "+491701234567", "Gas alarm", config=config)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["class"] == 0 and datetime.fromisoformat(doc["send_at"].replace("Z", "+00:00")) == later
    (row,) = db_rows(config)
    assert row["message_class"] == 0 and row["send_at"] == later.timestamp() and row["state"] == "queued"
    assert row["valid_until"] == pytest.approx(later.timestamp() + 86400.0)  # counted from send_at
    for value, message in (("soon", "smsgw send: --at: is not an ISO 8601 time ('soon'"),
                           ("2020-01-01T00:00:00Z", "s in the past")):
        bad = smsgw("send", "--at", value, "+491701234567", "x", config=config)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    assert len(db_rows(config)) == 1
    listing = smsgw("outbox", config=config)
    assert listing.returncode == 0 and "queued until " in listing.stdout and "(flash)" in listing.stdout
    held = json.loads(smsgw("outbox", "--json", config=config).stdout)["messages"][0]
    assert held["message_class"] == 0 and datetime.fromisoformat(held["send_at"].replace("Z", "+00:00")) == later


def test_send_text_from_stdin(config):
    result = smsgw("send", "+491701234567", "-", config=config, stdin="line one\nline two\n")
    assert result.returncode == 0, result.stderr
    assert db_rows(config)[0]["text"] == "line one\nline two"


@pytest.mark.parametrize(
    ("to", "text", "message"),
    [
        ("0170 CALL ME", "hi", "contains letters"),
        ("0900 1234567", "hi", "premium-rate"),
        ("22255", "hi", "short code"),
        ("+44 7700 900123", "hi", "numbers.blocked prefix +44"),
        ("+49 1", "hi", "too short"),
        ("+491701234567", "", "the text is empty"),
        ("+491701234567", "   ", "the text is empty"),
        ("+491701234567", "x" * 307, "3 gsm7 parts, more than limits.max_parts = 2"),
        ("+491701234567", "ü€😀" * 40, "ucs2 parts, more than limits.max_parts = 2"),
    ],
)
def test_send_refuses_bad_input_with_exit_2_and_touches_nothing(config, to, text, message):
    assert smsgw("send", "--id", "keep", "+491700000000", "already queued", config=config).returncode == 0
    before = db_rows(config)
    result = smsgw("send", to, text, config=config)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.startswith("smsgw send: ")
    assert result.stdout == ""
    assert db_rows(config) == before


# 200 characters with ı, ş, ğ: 3 UCS-2 parts, 2 GSM-7 parts with the Turkish shift tables (23.038 6.2.1.2.4)
TURKISH = ("Dondurucu 3 ısındı: şu an 12 derece, eşik 4 derece. Lütfen kapıyı kontrol edin; soğuk oda ağır "
           "yüklü. " * 2)[:200]


def test_send_language_counts_and_queues_with_the_turkish_shift_tables(config):
    refused = smsgw("send", "+491701234567", TURKISH, config=config)
    assert refused.returncode == 2 and "3 ucs2 parts, more than limits.max_parts = 2" in refused.stderr
    result = smsgw("send", "--json", "--language", "tr", "+491701234567", TURKISH, config=config)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["parts"] == 2
    (row,) = db_rows(config)
    assert row["language"] == "tr" and row["text"] == TURKISH


@pytest.mark.parametrize("language", ["klingon", "en", ""])
def test_send_refuses_an_unknown_language_with_exit_2(config, language):
    result = smsgw("send", "--language", language, "+491701234567", "hi", config=config)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("smsgw send: --language") and "one of bn, es, gu" in result.stderr
    assert not (config.parent / "smsgw.db").exists()


def test_send_at_the_part_limit_is_accepted(config):
    assert smsgw("send", "+491701234567", "x" * 306, config=config).returncode == 0  # 2 × 153


def test_bad_config_names_file_key_and_reason(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[store]\npath = "q.db"\n[[modems]]\nid = "a"\nport = "/dev/x"\nprofile = "nokia3310"\n')
    for command in (["send", "+491701234567", "hi"], ["status"], ["inbox"], ["outbox"]):
        result = smsgw(*command, config=bad)
        assert result.returncode == 2
        assert f"{bad}: modems[0].profile: unknown profile 'nokia3310'" in result.stderr
    assert not (tmp_path / "q.db").exists()


def test_missing_config_file(tmp_path):
    result = smsgw("status", config=tmp_path / "nope.toml")
    assert result.returncode == 2 and "nope.toml: file: does not exist" in result.stderr


def test_config_from_environment(config):
    result = smsgw("send", "+491701234567", "via env", env={"SMSGW_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert db_rows(config)[0]["text"] == "via env"


def test_read_commands_without_a_database(config):
    for command in ("status", "inbox", "outbox"):
        result = smsgw(command, config=config)
        assert result.returncode == 2  # bad input: the config names a store that is not there
        assert f"smsgw {command}: no database at" in result.stderr
    assert not (config.parent / "smsgw.db").exists()


def fill(config: Path) -> None:
    now = time.time()
    with Store(config.parent / "smsgw.db") as store:
        store.state_set("modem", "sim0", {"id": "sim0", "state": "online", "healthy": True, "model": "SIMCOM SIM800",
                                          "port": "/dev/ttyUSB2", "last_error": None, "at": now})
        store.state_set("modem", "old", {"id": "old", "state": "offline", "healthy": False,
                                         "last_error": "port vanished", "at": now})
        ts = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        pdu = encode_deliver("+491709876543", "Pump 7 is running", timestamp=ts)[0]
        store.add_incoming_part("sim0", pdu, decode(pdu), None, now)  # type: ignore[arg-type]
        store.add_incoming_part("sim1", "00ZZ", None, "not a PDU", now)
    assert smsgw("send", "--priority", "low", "+491701111111", "first", config=config).returncode == 0
    assert smsgw("send", "--id", "a", "+491702222222", "second\nline", config=config).returncode == 0
    with Store(config.parent / "smsgw.db") as store:
        (claimed,) = [m for m in [store.claim("sim0", lease=60)] if m is not None]
        store.fail(claimed.id, "CMS ERROR 21: short message transfer rejected")


def test_status_json(config):
    fill(config)
    result = smsgw("status", "--json", config=config)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    modems = {m["id"]: m for m in doc["modems"]}
    # no daemon holds the store: the recorded "online" is not shown as the modem's state now
    assert doc["daemon"]["running"] is False and doc["daemon"]["verdict"] == "never ran"
    assert modems["sim0"]["state"] == "no daemon" and modems["sim0"]["recorded_state"] == "online"
    assert modems["sim0"]["healthy"] is None
    assert modems["sim0"]["configured"] is True and modems["sim0"]["at"].endswith("Z")
    assert modems["sim1"]["state"] == "unknown" and modems["sim1"]["configured"] is True
    assert modems["old"]["configured"] is False and modems["old"]["last_error"] == "port vanished"
    assert doc["outbox"] == {"queued": 1, "sending": 0, "sent": 0, "delivered": 0, "failed": 1, "expired": 0}
    assert doc["inbox"]["messages"] == 2
    assert doc["sources_today"]["cli"] == {"accepted": 2, "sent": 0, "cap": None, "remaining": None}
    (error,) = doc["last_errors"]
    assert error["state"] == "failed" and "CMS ERROR 21" in error["error"]


def test_status_human(config):
    fill(config)
    result = smsgw("status", config=config)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Modems" in out and "Outbox" in out and "Usage today per source" in out and "Last errors" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("ID ") and "HEALTHY" in line)
    sim0 = next(line for line in lines if line.startswith("sim0 "))
    assert sim0.index("no daemon") == header.index("STATE")  # aligned columns; no daemon runs
    assert "SIMCOM SIM800" in sim0
    assert any(line.startswith("old (not configured)") for line in lines)
    assert any(line.split() == ["failed", "1"] for line in lines)
    assert any(line.split() == ["cli", "2", "0", "-", "-"] for line in lines)  # no cap


def test_outbox(config):
    fill(config)
    doc = json.loads(smsgw("outbox", "--json", config=config).stdout)
    messages = doc["messages"]
    assert [m["to"] for m in messages] == ["+491702222222", "+491701111111"]  # newest first
    assert messages[1]["priority"] == "low" and messages[0]["client_key"] == "a"
    assert messages[0]["created_at"].endswith("Z")
    limited = json.loads(smsgw("outbox", "--json", "--limit", "1", config=config).stdout)
    assert len(limited["messages"]) == 1
    human = smsgw("outbox", config=config).stdout.splitlines()
    assert human[0].split()[:4] == ["ID", "CREATED", "TO", "STATE"]
    assert len(human) == 3
    assert "second line" in human[1]  # a newline in the text does not break the table
    assert smsgw("outbox", "--limit", "0", config=config).returncode == 2


def test_inbox(config):
    fill(config)
    doc = json.loads(smsgw("inbox", "--json", config=config).stdout)
    by_modem = {m["modem"]: m for m in doc["messages"]}
    assert by_modem["sim0"]["from"] == "+491709876543" and by_modem["sim0"]["text"] == "Pump 7 is running"
    assert by_modem["sim0"]["received_at"].endswith("Z")
    assert by_modem["sim1"]["error"]
    human = smsgw("inbox", "--limit", "5", config=config).stdout
    assert "Pump 7 is running" in human and "+491709876543" in human
    assert smsgw("inbox", "--limit", "x", config=config).returncode == 2


def test_empty_listings(config):
    assert smsgw("send", "+491701234567", "x", config=config).returncode == 0
    assert "(the inbox is empty)" in smsgw("inbox", config=config).stdout
    assert json.loads(smsgw("inbox", "--json", config=config).stdout) == {"messages": []}


def test_config_check(config, tmp_path):
    result = smsgw("config", "check", str(config))
    assert result.returncode == 0 and ": OK" in result.stdout and "sim0 (/dev/ttyUSB2)" in result.stdout
    if not os.path.exists("/dev/ttyUSB2"):  # a port that is not there now is a warning, not an error
        assert "warning: modems[0].port: /dev/ttyUSB2 does not exist now" in result.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[store]\npath = \n")
    result = smsgw("config", "check", str(bad))
    assert result.returncode == 2 and f"{bad}: line 2: TOML syntax error" in result.stderr


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_root_acts_as_the_owner_of_the_store_directory():
    """`sudo smsgw send` must not leave root-owned database files the daemon's user cannot write."""
    tmp_path = Path(tempfile.mkdtemp(prefix="smsgw-owner-"))  # pytest's tmp_path is private to root
    try:
        _check_owner(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _check_owner(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 65534, 65534)
    tmp_path.chmod(0o755)
    config = tmp_path / "smsgw.toml"
    config.write_text('[store]\npath = "data/smsgw.db"\n')
    result = smsgw("send", "+491701234567", "as root", config=config)
    assert result.returncode == 0, result.stderr
    owners = {p.name: p.stat().st_uid for p in data.iterdir()}
    assert owners and set(owners.values()) == {65534}, owners
    assert smsgw("status", config=config).returncode == 0
    assert {p.stat().st_uid for p in data.iterdir()} == {65534}


def test_concurrent_sends_to_a_new_database(config):
    """Several processes creating the store at once: each waits for the schema, none fails."""
    env = {k: v for k, v in os.environ.items() if k != "SMSGW_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    procs = [
        subprocess.Popen([sys.executable, "-m", "appliance", "send", "--config", str(config), "+491701234567",
                          f"race {n}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        for n in range(8)
    ]
    results = [(p.wait(timeout=30), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream:
                stream.close()
    assert [code for code, _ in results] == [0] * 8, results
    assert sorted(r["text"] for r in db_rows(config)) == [f"race {n}" for n in range(8)]


def test_status_shows_the_mqtt_connection_and_rejected_requests(config):
    config.write_text(config.read_text() + '[mqtt]\nhost = "127.0.0.1"\nport = 18830\n')
    Store(config.parent / "smsgw.db").close()
    human = smsgw("status", config=config)
    assert human.returncode == 0, human.stderr
    assert "MQTT 127.0.0.1:18830: not started yet; 0 bad request(s) rejected" in human.stdout
    with Store(config.parent / "smsgw.db") as store:
        store.state_set("mqtt", "connection", {"connected": False, "since": 1_700_000_000.0,
                                               "broker": "127.0.0.1:18830", "last_error": "connection refused"})
        store.state_set("mqtt", "rejected", 3)
    doc = json.loads(smsgw("status", "--json", config=config).stdout)
    assert doc["mqtt"] == {"broker": "127.0.0.1:18830", "connected": False, "since": "2023-11-14T22:13:20Z",
                           "last_error": "connection refused", "rejected_requests": 3}
    human = smsgw("status", config=config)
    assert "disconnected since 2023-11-14T22:13:20Z (connection refused); 3 bad request(s) rejected" in human.stdout


def _with_caps(config: Path, caps: str) -> Path:
    config.write_text(config.read_text() + caps)
    return config


def test_send_refuses_over_the_cli_daily_cap_with_exit_2_and_writes_nothing(config):
    _with_caps(config, '[sources.cli]\ndaily_cap = 2\n')
    for n in range(2):
        assert smsgw("send", "+491701111111", f"m{n}", config=config).returncode == 0
    over = smsgw("send", "+491701111111", "one too many", config=config)
    assert over.returncode == 2 and over.stdout == ""
    assert "daily cap of 2 messages for source 'cli' reached (2 accepted today); nothing queued" in over.stderr
    assert [row["text"] for row in db_rows(config)] == ["m1", "m0"]
    # a repeated --id queues nothing new: it is answered, not refused
    with Store(config.parent / "smsgw.db") as store:
        connection(store).execute("UPDATE message SET client_key = 'k' WHERE text = 'm0'")
    again = smsgw("send", "--id", "k", "+491701111111", "m0", config=config)
    assert again.returncode == 0 and "already queued" in again.stdout


def test_send_with_a_zero_cap_creates_no_database(config):
    _with_caps(config, '[sources.cli]\ndaily_cap = 0\n')
    over = smsgw("send", "+491701111111", "never", config=config)
    assert over.returncode == 2 and "daily cap of 0 messages for source 'cli' reached" in over.stderr
    assert not (config.parent / "smsgw.db").exists()


def test_send_with_a_bad_sources_table_is_a_usage_error(config):
    _with_caps(config, '[sources.cli]\ndaily_cap = -1\n')
    bad = smsgw("send", "+491701111111", "x", config=config)
    assert bad.returncode == 2 and "sources.cli.daily_cap" in bad.stderr and "0 or more" in bad.stderr
    assert not (config.parent / "smsgw.db").exists()


def test_status_shows_caps_and_what_is_left_per_source(config):
    _with_caps(config, '[sources.cli]\ndaily_cap = 5\n[sources.mqtt]\ndaily_cap = 10\n'
                       '[sources."mqtt:boiler"]\ndaily_cap = 1\n[sources."alert:*"]\ndaily_cap = 3\n')
    assert smsgw("send", "+491701111111", "a", config=config).returncode == 0
    with Store(config.parent / "smsgw.db") as store:
        from appliance.store import OutboundRequest

        store.enqueue([OutboundRequest("+491701111111", "x", "mqtt:kitchen"),
                       OutboundRequest("+491701111111", "y", "mqtt:kitchen"),
                       OutboundRequest("+491701111111", "z", "mqtt"),
                       OutboundRequest("+491701111111", "w", "alert:freezer")])
    result = smsgw("status", "--json", config=config)
    assert result.returncode == 0, result.stderr
    sources = json.loads(result.stdout)["sources_today"]
    assert sources == {
        "alert:freezer": {"accepted": 1, "sent": 0, "cap": 3, "remaining": 2},
        "cli": {"accepted": 1, "sent": 0, "cap": 5, "remaining": 4},
        "mqtt": {"accepted": 1, "sent": 0, "cap": 10, "remaining": 7},
        "mqtt:boiler": {"accepted": 0, "sent": 0, "cap": 1, "remaining": 1},
        "mqtt:kitchen": {"accepted": 2, "sent": 0, "cap": 10, "remaining": 7, "cap_shared": "mqtt"},
    }
    human = smsgw("status", config=config)
    assert human.returncode == 0, human.stderr
    lines = {line.split()[0]: line.split() for line in human.stdout.splitlines() if line.startswith(("cli ", "mqtt"))}
    assert lines["cli"] == ["cli", "1", "0", "5", "4"]
    assert lines["mqtt:kitchen"] == ["mqtt:kitchen", "2", "0", "10", "(shared:", "mqtt)", "7"]
    assert lines["mqtt:boiler"] == ["mqtt:boiler", "0", "0", "1", "1"]
    assert "SOURCE" in human.stdout and "DAILY CAP" in human.stdout and "REMAINING" in human.stdout


def test_status_still_answers_with_a_bad_sources_table(config):
    assert smsgw("send", "+491701111111", "a", config=config).returncode == 0
    _with_caps(config, '[sources.cli]\ndaily_cap = "many"\n')
    result = smsgw("status", "--json", config=config)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["sources_today"]["cli"] == {"accepted": 1, "sent": 0, "cap": None, "remaining": None}
    assert "sources.cli.daily_cap" in doc["caps_error"]


def test_config_check_validates_rules_and_health_too(tmp_path):
    """`smsgw config check` refuses what `smsgw run` would refuse at start: the rules and [health] tables."""
    path = tmp_path / "rules.toml"
    path.write_text('[store]\npath = "smsgw.db"\n[[alerts]]\ntopic = "a/#"\nto = ["nobody"]\ntext = "x"\n')
    result = smsgw("config", "check", str(path))
    assert result.returncode == 2
    assert f"{path}: alerts[0].to[0]: 'nobody' is not a contact, a group or a number" in result.stderr
    path.write_text('[store]\npath = "smsgw.db"\n[health]\nping_interval = -1\n')
    result = smsgw("config", "check", str(path))
    assert result.returncode == 2 and "health.ping_interval" in result.stderr


def test_send_refuses_a_text_that_is_not_text_with_status_2(config):
    """Bytes that are not UTF-8 in argv reach Python as lone surrogates (PEP 383)."""
    done = subprocess.run([sys.executable, "-m", "appliance", "send", "--config", str(config), "+4915112345678",
                           b"caf\xe9"], capture_output=True, cwd=ROOT, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert b"the text cannot be sent: text contains a lone surrogate" in done.stderr
    assert b"Traceback" not in done.stderr
    assert db_rows(config) == []


def test_send_writes_the_webhook_deliveries_of_its_event(config):
    """`smsgw send` opens only the store's queue (``store_cli.QueueStore``): the webhook deliveries its
    ``queued`` event brings are still written in the same transaction, as the daemon's Store does."""
    with Store(config.parent / "smsgw.db") as store:
        store.configure_webhooks([("crm", ("message",), 3600.0)])
    result = smsgw("send", "+491701234567", "hello", config=config)
    assert result.returncode == 0, result.stderr
    with Store(config.parent / "smsgw.db") as store:
        (delivery,) = store.deliveries("crm")
        assert delivery["event"] == "message" and delivery["state"] == "pending"
        body = json.loads(delivery["body"])
        assert body["id"] == int(result.stdout) and body["state"] == "queued"
