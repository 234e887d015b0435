"""`smsgw --version`, `send` and `status` start without the heavy modules they do not need (sqlite_utils,
paho, the rules).

Each command runs in its own interpreter against a store created beforehand (at the current schema,
so no migration runs); the wrapper of bench/cli_start.py runs ``appliance.cli.main`` and prints
the modules imported.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.store import Store

ROOT = Path(__file__).resolve().parent.parent

WRAPPER = runpy.run_path(str(ROOT / "bench" / "cli_start.py"))["WRAPPER"]  # what the bench measures


def modules_after(*args: str) -> tuple[int, set[str]]:
    env = {k: v for k, v in os.environ.items() if k != "SMSGW_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=30)
    return result.returncode, set(json.loads(result.stderr.strip().splitlines()[-1]))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "smsgw.toml"
    path.write_text('[store]\npath = "smsgw.db"\n[[modems]]\nid = "sim0"\nport = "/dev/ttyUSB2"\n')
    Store(tmp_path / "smsgw.db").close()  # created and migrated here, not by the command under test
    return path


@pytest.mark.parametrize("command", [
    ["--version"],
    ["status", "--config", "{config}", "--json"],
    ["send", "--config", "{config}", "+491701234567", "hello"],
])
def test_cli_command_does_not_import_sqlite_utils_or_paho(config: Path, command: list[str]) -> None:
    status, modules = modules_after(*(arg.format(config=config) for arg in command))
    assert status == 0
    assert "appliance.cli" in modules  # the wrapper really ran the CLI
    assert not {m for m in modules if m == "sqlite_utils" or m.startswith(("sqlite_utils.", "paho"))}


@pytest.mark.parametrize("command", [
    ["status", "--config", "{config}", "--json"],
    ["send", "--config", "{config}", "+491701234567", "hello"],
])
def test_send_and_status_do_not_import_the_rules(config: Path, command: list[str]) -> None:
    """They read the daily caps (appliance.caps), not the rule tables."""
    config.write_text(config.read_text() + '[sources.cli]\ndaily_cap = 5\n[[alerts]]\ntopic = "a/#"\nto = "+491701234567"\n'
                      'text = "x"\n')
    status, modules = modules_after(*(arg.format(config=config) for arg in command))
    assert status == 0
    assert "appliance.caps" in modules  # the caps were read
    assert not {m for m in modules if m == "appliance.rules" or m.startswith("appliance.rules.")}


def test_version_imports_no_command_module(config: Path) -> None:
    _, modules = modules_after("--version")
    assert not {m for m in modules if m.startswith("appliance.commands.")}


def test_a_store_that_needs_a_migration_still_gets_it(tmp_path: Path) -> None:
    """A new store file is migrated by a child process: the command itself imports no sqlite_utils."""
    (tmp_path / "smsgw.toml").write_text('[store]\npath = "smsgw.db"\n')
    status, modules = modules_after("send", "--config", str(tmp_path / "smsgw.toml"), "+491701234567", "hi")
    assert status == 0
    assert "appliance.cli" in modules and not {m for m in modules if m.split(".")[0] == "sqlite_utils"}
    with Store(tmp_path / "smsgw.db") as store:
        assert store.migrated_from == store.schema_version  # the child had migrated it
        assert [row["to"] for row in store.outbox(10)] == ["+491701234567"]


#: Neither queueing an SMS nor reading the store needs these: the daemon's network, serial and GPIO
#: stacks, the PDU codec and the national shift tables, the store's table groups these commands do
#: not use (they open an ``appliance.store_cli.QueueStore`` or a ``store_alerts.StatusStore``, not
#: the whole ``appliance.store.Store``), and the standard modules only some paths use (hashlib loads
#: OpenSSL; uuid, socket, random, getpass, grp; inspect, which pkgutil and dataclasses' signatures
#: bring; dataclasses, whose classes compile their methods; logging, for messages these commands
#: write only on rare paths; shutil, which argparse imports to ask the terminal's width).
NOT_FOR_SEND_OR_STATUS = (
    "aiohttp", "appliance.daemon", "appliance.dispatcher", "appliance.mqtt", "appliance.store",
    "appliance.store_history", "appliance.store_inbound", "appliance.store_retention", "appliance.store_schedule",
    "appliance.store_selfalerts", "asyncio", "dataclasses", "drivers.gsm7_national", "drivers.pdu", "email",
    "getpass", "gpiozero", "grp", "hashlib", "inspect", "logging", "paho", "pkgutil", "random", "serial",
    "serial_asyncio", "shutil", "socket", "sqlite_utils", "ssl", "uuid",
)
#: ``smsgw send`` queues without the alerts and the daemon's liveness that ``status`` reads.
NOT_FOR_SEND = ("appliance.liveness", "appliance.self_alerts", "appliance.store_alerts", "fcntl")


def imported(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(p for p in packages if any(m == p or m.startswith(p + ".") for m in modules))


def test_version_lists_no_package_and_reads_no_config(config: Path) -> None:
    status, modules = modules_after("--version")
    assert status == 0
    assert imported(modules, ("appliance.config", "appliance.store", "inspect", "pkgutil")) == []


@pytest.mark.parametrize("command", [
    ["send", "--config", "{config}", "+491701234567", "pump 7 stopped"],
    ["send", "--config", "{config}", "--json", "--id", "k1", "+491701234567", "pump 7 stopped"],
    ["status", "--config", "{config}"],
    ["status", "--config", "{config}", "--json"],
    ["status", "--help"],
    ["send", "--help"],
], ids=["send", "send-json", "status", "status-json", "status-help", "send-help"])
def test_send_and_status_import_only_what_they_use(config: Path, command: list[str]) -> None:
    config.write_text(config.read_text() + '[mqtt]\nhost = "127.0.0.1"\n')  # the default client id
    status, modules = modules_after(*(arg.format(config=config) for arg in command))
    assert status == 0
    assert "appliance.cli" in modules
    assert imported(modules, NOT_FOR_SEND_OR_STATUS) == []
    if command[0] == "send":
        assert imported(modules, NOT_FOR_SEND) == []
    assert {m for m in modules if m.startswith("appliance.commands.")} <= {
        "appliance.commands._access", "appliance.commands._common", "appliance.commands._types",
        f"appliance.commands.{command[0]}"}


def test_status_reads_the_store_without_the_pdu_codec(config: Path) -> None:
    status, modules = modules_after("status", "--config", str(config), "--json")
    assert status == 0 and "drivers.pdu" not in modules


def test_what_the_cli_leaves_out_is_imported_where_it_is_used(config: Path) -> None:
    """The default MQTT client id still names the host as socket.gethostname() does, a long SMS still
    gets a random concatenation reference, and `smsgw --help` still lists every command."""
    config.write_text(config.read_text() + '[mqtt]\nhost = "127.0.0.1"\n')
    code = ("import socket, sys\n"
            "from appliance.config import load_config\n"
            "from drivers.pdu import encode_submit\n"
            "assert load_config(sys.argv[1]).mqtt.client_id == 'smsgw-' + socket.gethostname()\n"
            "parts = encode_submit('+491701234567', 'x' * 200)\n"
            "assert len(parts) == 2 and 'random' in sys.modules\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, env=env,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    status, modules = modules_after("--help")
    commands = {f"appliance.commands.{f.stem}" for f in (ROOT / "appliance" / "commands").glob("[!_]*.py")}
    assert status == 0 and len(commands) > 15 and commands <= modules


@pytest.mark.parametrize("command", [
    ["send", "--config", "{config}", "+491701234567", "pump 7 stopped"],
    ["status", "--config", "{config}", "--json"],
], ids=["send", "status"])
def test_the_second_run_on_the_same_config_does_not_parse_toml(config: Path, command: list[str]) -> None:
    """The first run parses the file and writes the cache (appliance.config_cache); the next reads it,
    without tomllib and so without typing, which tomllib imports and no module of these commands does
    (see appliance/frozen.py)."""
    args = [arg.format(config=config) for arg in command]
    first_status, first = modules_after(*args)
    second_status, second = modules_after(*args)
    assert first_status == second_status == 0
    assert "tomllib" in first and "appliance.config" in second
    assert imported(second, ("tomllib", "typing")) == []
