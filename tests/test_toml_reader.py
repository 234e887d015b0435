"""drivers/toml_reader.py: the one TOML table reader of the configuration and the profiles; every
error is the caller's exception class and names the file, the dotted key and the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.config import ConfigError
from drivers.profiles import ProfileError
from drivers.toml_reader import TableReader, parse_duration

FILE = Path("/etc/smsgw/smsgw.toml")


def reader(table: object, known: tuple[str, ...] = ("host", "port", "tls", "names", "path"),
           **options: Any) -> TableReader:
    return TableReader(FILE, "mqtt", table, known, error=ConfigError, **options)


def test_an_unknown_key_is_refused_with_a_hint_and_the_known_keys() -> None:
    with pytest.raises(ConfigError) as info:
        reader({"hots": "x"})
    assert str(info.value) == ("/etc/smsgw/smsgw.toml: mqtt.hots: unknown key (did you mean 'host'?); "
                               "known keys: host, port, tls, names, path")


def test_the_error_class_is_the_callers() -> None:
    with pytest.raises(ProfileError) as info:
        TableReader("sim800.toml", "at", {"echoo": True}, ("echo",), error=ProfileError, required_reason="missing")
    assert (info.value.key, info.value.path) == ("at.echoo", "sim800.toml")
    assert "did you mean 'echo'" in info.value.reason
    profile = TableReader("sim800.toml", "timeouts", {}, ("send",), error=ProfileError, required_reason="missing")
    with pytest.raises(ProfileError, match=r"^sim800.toml: timeouts.send: missing$"):
        profile.seconds("send")


@pytest.mark.parametrize(("table", "read", "reason"), [
    ({"port": "1883"}, lambda r: r.integer("port", 1883), "must be an integer, not a string ('1883')"),
    ({"port": True}, lambda r: r.integer("port", 1883), "must be an integer, not a boolean"),
    ({"port": 0}, lambda r: r.integer("port", 1883, minimum=1), "must be at least 1, not 0"),
    ({"port": 70000}, lambda r: r.integer("port", 1883, maximum=65535), "must be at most 65535, not 70000"),
    ({"host": ""}, lambda r: r.string("host"), "must not be empty"),
    ({}, lambda r: r.string("host", required=True), "is required"),
    ({"tls": 1}, lambda r: r.boolean("tls", False), "must be true or false, not an integer (1)"),
    ({"port": float("nan")}, lambda r: r.number("port", None), "must be a finite number"),
    ({"port": -1}, lambda r: r.number("port", None, positive=True), "must be greater than 0, not -1"),
    ({"port": -1}, lambda r: r.seconds("port", 1.0, positive=True), "must be a positive number of seconds, not -1"),
    ({"port": "soon"}, lambda r: r.duration("port", None), "duration like '90s'"),
    ({"names": ["a", ""]}, lambda r: r.strings("names"), "must be a non-empty string, not ''"),
    ({"names": ["^(x"]}, lambda r: r.regexes("names"), "bad regular expression '^(x'"),
    ({"tls": "x"}, lambda r: r.table_at("tls"), "must be a table, not a string ('x')"),
])
def test_each_read_names_the_key_and_the_reason(table: dict[str, Any], read: Any, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        read(reader(table))
    assert info.value.key.startswith("mqtt.")
    assert reason in info.value.reason


def test_an_array_item_is_named_by_its_index() -> None:
    with pytest.raises(ConfigError) as info:
        reader({"names": ["a", 5]}).strings("names")
    assert info.value.key == "mqtt.names[1]"


def test_values_defaults_and_relative_paths() -> None:
    r = reader({"host": "broker", "port": 8883, "names": ["a"], "path": "smsgw.db", "tls": {"ca": "x"}})
    assert (r.string("host"), r.integer("port", 1), r.strings("names")) == ("broker", 8883, ("a",))
    assert r.path("path") == Path("/etc/smsgw/smsgw.db")
    assert r.integer("missing", 7) == 7 and r.strings("missing", ("x",)) == ("x",)
    assert r.sub("tls", ("ca",)).string("ca") == "x"


def test_a_sub_table_names_what_its_keys_are() -> None:
    with pytest.raises(ConfigError) as info:
        reader({"tls": {"sned": 3}}).sub("tls", ("send", "command"), key_kind="timeout")
    assert info.value.key == "mqtt.tls.sned"
    assert info.value.reason == "unknown timeout (did you mean 'send'?); known timeouts: send, command"


def test_a_table_that_is_not_a_table() -> None:
    with pytest.raises(ConfigError, match=r"smsgw.toml: mqtt: must be a table, not a string$"):
        reader("mqtt.example.org")


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [
    (600, 600.0), (1.5, 1.5), ("90s", 90.0), ("10m", 600.0), ("10 min", 600.0), ("2h", 7200.0),
    ("1d", 86400.0), ("250ms", 0.25), ("45", 45.0),
])
def test_durations(value: Any, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["ten minutes", "-5", True, [], "5 weeks"])
def test_bad_durations(value: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)
