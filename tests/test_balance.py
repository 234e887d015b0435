"""Balance checks: the config table, finding the amount in real answers, the Home Assistant entities.

The end-to-end proof (a low balance on the simulated SIM → retained state, an alert SMS, a restart
that does not check again, the HA button's topic) is in tests/test_ussd_e2e.py.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from config_errors import config_error

from appliance.balance import find_balance, parse_amount
from appliance.config import BalanceConfig, load_config
from appliance.discovery import discovery_messages


def load(tmp_path: Path, balance: str) -> Any:
    path = tmp_path / "smsgw.toml"
    path.write_text(textwrap.dedent(f"""
        [store]
        path = "{tmp_path / 'smsgw.db'}"

        [[modems]]
        id = "sim0"
        port = "/dev/ttyUSB2"
        balance = {balance}
    """))
    return load_config(path)


def test_balance_config(tmp_path: Path) -> None:
    cfg = load(tmp_path, '{ code = "*100#", every = "1d", pattern = "(?P<balance>[0-9.,]+)", low = 5 }')
    balance = cfg.modems[0].balance
    assert balance is not None
    assert (balance.code, balance.every, balance.pattern.pattern, balance.low) == ("*100#", 86400.0,
                                                                                  "(?P<balance>[0-9.,]+)", 5.0)
    assert load(tmp_path, '{ code = "*101#" }').modems[0].balance.every == 86400.0


@pytest.mark.parametrize(("table", "key", "words"), [
    ('{ every = "1d" }', "modems[0].balance.code", "is required"),
    ('{ code = "*100#;+CFUN=0" }', "modems[0].balance.code", "USSD code"),
    ('{ code = "*100#", every = "often" }', "modems[0].balance.every", "duration"),
    ('{ code = "*100#", every = "5s" }', "modems[0].balance.every", "at least 60"),
    ('{ code = "*100#", pattern = "([0-9" }', "modems[0].balance.pattern", "not a regular expression"),
    ('{ code = "*100#", pattern = "EUR" }', "modems[0].balance.pattern", "group"),
    ('{ code = "*100#", low = "five" }', "modems[0].balance.low", "number"),
    ('{ code = "*100#", lo = 5 }', "modems[0].balance.lo", "unknown key"),
    ('"*100#"', "modems[0].balance", "must be a table"),
])
def test_balance_config_errors_name_file_key_and_reason(tmp_path: Path, table: str, key: str, words: str) -> None:
    config_error(lambda: load(tmp_path, table), tmp_path / "smsgw.toml", key, words)


@pytest.mark.parametrize(("text", "amount"), [
    ("10.00", 10.0), ("4,20", 4.2), ("1,234.50", 1234.5), ("1.234,50", 1234.5), ("7", 7.0), ("abc", None),
])
def test_amounts_in_either_decimal_convention(text: str, amount: float | None) -> None:
    assert parse_amount(text) == amount


@pytest.mark.parametrize(("answer", "amount"), [
    # python-gsmmodem test/test_modem.py (faucamp, ff36825): a South African network's answer
    ("Available Balance: R 96.45 .", 96.45),
    ("Balance 10.00 EUR. Valid until 31.12.2026", 10.0),  # the simulator's *100#
    ("Ihr Guthaben betraegt 4,20 EUR.", 4.2),
    ("No balance information", None),
])
def test_the_default_pattern_finds_the_amount(answer: str, amount: float | None) -> None:
    config = BalanceConfig("*100#", 86400.0, re.compile(r"(?P<balance>[0-9]+(?:[.,][0-9]+)*)"))
    assert find_balance(config, answer) == amount


def test_home_assistant_gets_a_balance_sensor_and_a_check_button() -> None:
    messages = dict(discovery_messages(prefix="homeassistant", base_topic="smsgw", node="n",
                                       modems={"sim0": {}, "sim1": {}}, balance={"sim0": "EUR"}))
    sensor = messages["homeassistant/sensor/n/sim0_balance/config"]
    button = messages["homeassistant/button/n/sim0_balance_check/config"]
    assert "homeassistant/sensor/n/sim1_balance/config" not in messages  # no balance table
    assert sensor["state_topic"] == "smsgw/modem/sim0/balance"
    assert sensor["unit_of_measurement"] == "EUR" and sensor["state_class"] == "measurement"
    assert sensor["default_entity_id"] == "sensor.n_sim0_balance" and "object_id" not in sensor
    assert button["command_topic"] == "smsgw/modem/sim0/balance/check" and button["payload_press"] == "check"
    assert sensor["device"] == button["device"] and sensor["device"]["identifiers"] == ["smsgw_n_sim0"]
    jinja2 = pytest.importorskip("jinja2")
    record = {"modem": "sim0", "balance": 3.5, "unit": "EUR", "low": 5, "below_low": True,
              "text": "Balance 3.50 EUR", "at": 1.0, "error": None}
    env = jinja2.Environment()
    assert env.from_string(sensor["value_template"]).render(value_json=record) == "3.5"
    assert '"below_low": true' in env.from_string(sensor["json_attributes_template"]).render(value_json=record)
