"""appliance.config: the TOML file validated up front; every error names file, key and reason."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from config_errors import load_error

from appliance.config import (
    Config,
    ConfigError,
    LimitsConfig,
    MqttConfig,
    NumbersConfig,
    TlsConfig,
    default_config_path,
    load_config,
)

MINIMAL = """
[store]
path = "/var/lib/smsgw/smsgw.db"
[mqtt]
host = "127.0.0.1"
port = 1883
base_topic = "smsgw"
[[modems]]
id = "sim0"
port = "/dev/gsm/sim800-0"
profile = "auto"
"""


def write(tmp_path: Path, text: str, name: str = "smsgw.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, key: str, reason: str) -> ConfigError:
    """The error ``text`` written as ``smsgw.toml`` raises, named ``FILE: KEY: REASON``."""
    return load_error(write(tmp_path, text), key, reason)


def test_minimal_config_from_the_readme(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    assert isinstance(cfg, Config)
    assert cfg.store.path == Path("/var/lib/smsgw/smsgw.db")
    assert cfg.store.reassembly_timeout == 86400.0
    assert cfg.mqtt is not None and cfg.mqtt.host == "127.0.0.1" and cfg.mqtt.port == 1883
    assert cfg.mqtt.protocol == "5" and cfg.mqtt.client_id.startswith("smsgw-") and cfg.mqtt.tls is None
    assert [m.id for m in cfg.modems] == ["sim0"]
    modem = cfg.modem("sim0")
    assert modem.port == "/dev/gsm/sim800-0" and modem.profile == "auto" and modem.pin is None
    assert modem.baudrate == 115200 and modem.rate_per_minute is None and modem.report is False
    assert cfg.numbers == NumbersConfig()
    assert cfg.limits == LimitsConfig()
    assert cfg.log_level == "info"
    assert cfg.raw["modems"][0]["id"] == "sim0"


def test_only_store_is_required(tmp_path):
    cfg = load_config(write(tmp_path, '[store]\npath = "q.db"\n'))
    assert cfg.mqtt is None and cfg.modems == ()
    assert cfg.store.path == tmp_path / "q.db"  # relative to the config file's directory


def test_every_key_is_read(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "client.pem").write_text("x")
    (tmp_path / "client.key").write_text("x")
    cfg = load_config(write(tmp_path, """
        log_level = "DEBUG"
        [store]
        path = "data/smsgw.db"
        reassembly_timeout = 3600
        [mqtt]
        host = "broker.lan"
        port = 8883
        base_topic = "site/sms"
        client_id = "gw-1"
        username = "gw"
        password = "secret"
        protocol = "3.1.1"
        keepalive = 30
        share_group = "fleet"
        discovery = false
        discovery_prefix = "ha"
        reconnect_min = 0.5
        reconnect_max = 30
        [mqtt.tls]
        ca = "ca.pem"
        cert = "client.pem"
        key = "client.key"
        insecure = true
        [[modems]]
        id = "a"
        port = "socket://127.0.0.1:7000"
        profile = "sim800"
        pin = "0000"
        baudrate = 9600
        rate_per_minute = 6
        daily_cap = 100
        report = true
        power_gpio = 17
        [[modems]]
        id = "b"
        port = "/dev/ttyUSB2"
        [numbers]
        default_country = "de"
        allow_premium = true
        allow_short_codes = true
        blocked = ["0900", "+44 9"]
        allowed = ["22255", "+4990012"]
        [limits]
        max_parts = 3
        max_attempts = 4
        recipient_interval = 2.5
        validity = 600
        [hardware]
        status_led_gpio = 26
        [[alerts]]
        topic = "x/#"
        [contacts]
        alice = "+491701234567"
    """))
    assert cfg.log_level == "debug"
    assert cfg.store.path == tmp_path / "data" / "smsgw.db" and cfg.store.reassembly_timeout == 3600.0
    assert cfg.mqtt == MqttConfig(
        host="broker.lan", port=8883, base_topic="site/sms", client_id="gw-1", username="gw",
        password="secret", protocol="3.1.1", keepalive=30,
        tls=TlsConfig(ca=tmp_path / "ca.pem", cert=tmp_path / "client.pem", key=tmp_path / "client.key",
                      insecure=True),
        share_group="fleet", discovery=False, discovery_prefix="ha", reconnect_min=0.5, reconnect_max=30.0,
    )
    a, b = cfg.modems
    assert (a.id, a.port, a.profile, a.pin, a.baudrate, a.rate_per_minute, a.daily_cap, a.report,
            a.power_gpio) == ("a", "socket://127.0.0.1:7000", "sim800", "0000", 9600, 6.0, 100, True, 17)
    assert (b.id, b.profile) == ("b", "auto")
    assert cfg.numbers == NumbersConfig(default_country="DE", allow_premium=True, allow_short_codes=True,
                                        blocked=("+49900", "+449"), allowed=("22255", "+4990012"))
    assert cfg.limits == LimitsConfig(max_parts=3, max_attempts=4, recipient_interval=2.5, validity=600.0)
    assert cfg.hardware.status_led_gpio == 26
    assert cfg.raw["alerts"] == [{"topic": "x/#"}] and cfg.raw["contacts"]["alice"] == "+491701234567"


def test_sections_of_other_modules_are_kept_raw(tmp_path):
    cfg = load_config(write(tmp_path, """
        [store]
        path = "q.db"
        [health]
        ping_interval = 5
        [rules]
        unknown_reply = "?"
        [quiet_hours]
        start = "22:00"
        [sources]
        cli = { daily_cap = 5 }
        [groups]
        staff = ["+491701234567"]
        [[commands]]
        pattern = 'PUMP (?P<n>[0-9]+) ON'
    """))
    assert cfg.raw["health"] == {"ping_interval": 5} and cfg.raw["rules"]["unknown_reply"] == "?"
    assert set(cfg.raw) == {"store", "health", "rules", "quiet_hours", "sources", "groups", "commands"}


def test_unknown_section_is_named_with_a_hint(tmp_path):
    error_of(tmp_path, '[store]\npath = "q.db"\n[alert]\ntopic = "x"\n', "alert", "did you mean 'alerts'")


def test_tls_true_uses_system_cas(tmp_path):
    cfg = load_config(write(tmp_path, '[store]\npath = "q.db"\n[mqtt]\ntls = true\n'))
    assert cfg.mqtt is not None and cfg.mqtt.tls == TlsConfig()


def test_modem_without_id_is_numbered(tmp_path):
    cfg = load_config(write(tmp_path, '[store]\npath="q.db"\n[[modems]]\nport="/dev/a"\n[[modems]]\nport="/dev/b"\n'))
    assert [m.id for m in cfg.modems] == ["modem0", "modem1"]


def test_default_config_path(monkeypatch, tmp_path):
    monkeypatch.delenv("SMSGW_CONFIG", raising=False)
    assert default_config_path() == Path("/etc/smsgw/smsgw.toml")
    monkeypatch.setenv("SMSGW_CONFIG", str(tmp_path / "x.toml"))
    assert default_config_path() == tmp_path / "x.toml"


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[store]\npath = "q.db"\n[mqtt]\nhots = "x"\n', "mqtt.hots", "did you mean 'host'"),
        ('[store]\npath = "q.db"\n[[modems]]\nport = "/dev/x"\nprofle = "sim800"\n', "modems[0].profle",
         "did you mean 'profile'"),
        ('[store]\npath = "q.db"\n[limits]\nmax_part = 3\n', "limits.max_part", "did you mean 'max_parts'"),
        ('[store]\npath = "q.db"\n[modem]\nport = "/dev/x"\n', "modem", "did you mean 'modems'"),
        ('[store]\nfile = "q.db"\n', "store.file", "unknown key"),
        ('[mqtt]\nhost = "x"\n', "store.path", "is required"),
        ('[store]\n', "store.path", "is required"),
        ('[store]\npath = ""\n', "store.path", "must not be empty"),
        ('[store]\npath = 5\n', "store.path", "must be a string, not an integer"),
        ('store = "q.db"\n', "store", "must be a table"),
        ('[store]\npath = "q.db"\n[mqtt]\nport = "1883"\n', "mqtt.port", "must be an integer, not a string"),
        ('[store]\npath = "q.db"\n[mqtt]\nport = 70000\n', "mqtt.port", "at most 65535"),
        ('[store]\npath = "q.db"\n[mqtt]\nport = true\n', "mqtt.port", "not a boolean"),
        ('[store]\npath = "q.db"\n[mqtt]\nprotocol = "4"\n', "mqtt.protocol", "must be \"5\" or \"3.1.1\""),
        ('[store]\npath = "q.db"\n[mqtt]\ndiscovery = "yes"\n', "mqtt.discovery", "true or false"),
        ('[store]\npath = "q.db"\n[mqtt]\nbase_topic = "a/#"\n', "mqtt.base_topic", "wildcards"),
        ('[store]\npath = "q.db"\n[mqtt]\nshare_group = "a/b"\n', "mqtt.share_group", "must not contain"),
        ('[store]\npath = "q.db"\n[mqtt]\npassword = "p"\n', "mqtt.password", "needs a username"),
        ('[store]\npath = "q.db"\n[mqtt]\nreconnect_min = 10\nreconnect_max = 5\n', "mqtt.reconnect_max",
         "less than"),
        ('[store]\npath = "q.db"\n[mqtt.tls]\nca = "nope.pem"\n', "mqtt.tls.ca", "does not exist"),
        ('[store]\npath = "q.db"\n[[modems]]\nid = "a"\n', "modems[0].port", "is required"),
        ('[store]\npath = "q.db"\n[[modems]]\nport = "ttyUSB0"\n', "modems[0].port", "did you mean '/dev/ttyUSB0'"),
        ('[store]\npath = "q.db"\n[[modems]]\nport = "socket://host"\n', "modems[0].port", "socket://host:port"),
        ('[store]\npath = "q.db"\n[[modems]]\nport = "socket://host:99999"\n', "modems[0].port",
         "socket://host:port"),
        ('[store]\npath = "q.db"\n[[modems]]\nid = "a"\nport = "/dev/x"\n[[modems]]\nid = "a"\nport = "/dev/y"\n',
         "modems[1].id", "duplicate modem id 'a'"),
        ('[store]\npath = "q.db"\n[[modems]]\nid = "a b"\nport = "/dev/x"\n', "modems[0].id", "letters, digits"),
        ('[store]\npath = "q.db"\n[[modems]]\nport = "/dev/x"\nprofile = "sim900"\n', "modems[0].profile",
         "unknown profile 'sim900'"),
        ('[store]\npath = "q.db"\n[[modems]]\nport = "/dev/x"\nrate_per_minute = 0\n', "modems[0].rate_per_minute",
         "greater than 0"),
        ('[store]\npath = "q.db"\n[[modems]]\nport = "/dev/x"\nrate_per_minute = -2\n',
         "modems[0].rate_per_minute", "greater than 0"),
        ('[store]\npath = "q.db"\n[[modems]]\nport = "/dev/x"\ndaily_cap = 0\n', "modems[0].daily_cap", "at least 1"),
        ('[store]\npath = "q.db"\n[[modems]]\nport = "/dev/x"\npin = "12"\n', "modems[0].pin", "4-8 digits"),
        ('[store]\npath = "q.db"\n[[modems]]\nport = "/dev/x"\npin = "12345abc"\n', "modems[0].pin", "4-8 digits"),
        ('[store]\npath = "q.db"\n[[modems]]\nport = "/dev/x"\npin = 1234\n', "modems[0].pin", "quoted string"),
        ('[store]\npath = "q.db"\n[modems]\nport = "/dev/x"\n', "modems", "[[modems]]"),
        ('[store]\npath = "q.db"\n[numbers]\ndefault_country = "XX"\n', "numbers.default_country",
         "unknown country 'XX'"),
        ('[store]\npath = "q.db"\n[numbers]\nblocked = ["0900"]\n', "numbers.blocked[0]", "default_country"),
        ('[store]\npath = "q.db"\n[numbers]\nblocked = ["premium"]\n', "numbers.blocked[0]", "letters"),
        ('[store]\npath = "q.db"\n[numbers]\nallowed = "+49"\n', "numbers.allowed", "an array"),
        ('[store]\npath = "q.db"\n[limits]\nmax_parts = 0\n', "limits.max_parts", "at least 1"),
        ('[store]\npath = "q.db"\n[limits]\nvalidity = 0\n', "limits.validity", "greater than 0"),
        ('[store]\npath = "q.db"\n[limits]\nrecipient_interval = -1\n', "limits.recipient_interval", "at least 0"),
        ('[store]\npath = "q.db"\n[hardware]\nstatus_led_gpio = -1\n', "hardware.status_led_gpio", "at least 0"),
        ('log_level = "verbose"\n[store]\npath = "q.db"\n', "log_level", "not one of"),
    ],
)
def test_bad_values_name_the_key_and_the_reason(tmp_path, text, key, reason):
    error_of(tmp_path, text, key, reason)


def test_unknown_profile_lists_the_known_ones(tmp_path):
    err = error_of(tmp_path, '[store]\npath = "q.db"\n[[modems]]\nport = "/dev/x"\nprofile = "sim80"\n',
                   "modems[0].profile", "did you mean 'sim800'")
    assert "auto" in err.reason and "ec25" in err.reason


def test_syntax_error_names_file_and_line(tmp_path):
    err = error_of(tmp_path, '[store]\npath = "q.db"\n\n[mqtt]\nhost = 127.0.0.1.x\n', "line 5", "TOML syntax error")
    assert str(err).startswith(f"{tmp_path / 'smsgw.toml'}: line 5: ")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.toml")
    assert info.value.key == "file" and "does not exist" in info.value.reason
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert "directory" in info.value.reason


def test_not_utf8(tmp_path):
    path = tmp_path / "smsgw.toml"
    path.write_bytes(b'[store]\npath = "\xff.db"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "UTF-8" in info.value.reason


def test_store_path_that_is_a_directory(tmp_path):
    (tmp_path / "data").mkdir()
    error_of(tmp_path, '[store]\npath = "data"\n', "store.path", "is a directory")


def test_config_is_frozen(tmp_path):
    cfg = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        cfg.log_level = "debug"  # type: ignore[misc]


def test_shipped_example_config_loads():
    example = Path(__file__).resolve().parent.parent / "deploy" / "raspberrypi" / "smsgw.toml"
    if not example.exists():
        pytest.skip("no example config")
    cfg = load_config(example)
    assert cfg.modems and cfg.mqtt is not None


def test_sms_national_language_is_read_and_checked(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL + '\n[sms]\nnational_language = "TR"\n'))
    assert cfg.sms.national_language == "tr"
    assert load_config(write(tmp_path, MINIMAL)).sms.national_language is None
    error_of(tmp_path, MINIMAL + '\n[sms]\nnational_language = "tu"\n', "sms.national_language",
             "unknown national language 'tu'")
    error_of(tmp_path, MINIMAL + '\n[sms]\nnational_langauge = "tr"\n', "sms.national_langauge",
             "did you mean 'national_language'")
