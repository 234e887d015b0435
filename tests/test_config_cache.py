"""The short commands' cache of the parsed configuration (``appliance.config_cache``): a file read
before with the same text gives the same Config without ``tomllib``; an edit, a foreign or
group-writable cache file, a TOML date, an unwritable cache directory each fall back to the parse."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import config_cache
from appliance.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / "raspberrypi" / "smsgw.toml"  # the installer's example, every section it shows

# what a real file may hold beyond the example: a second modem, a password, floats, text outside ASCII,
# nested tables and an array of them
EXTRA = """
[[modems]]
id = "sim1"
port = "socket://127.0.0.1:7001"
rate_per_minute = 2.5

[[webhooks]]
url = "https://erp.example.com/hooks/sms"
events = ["received"]
secret = "0123456789abcdef0123"
expire_after = "1d"
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(directory))
    return directory / "smsgw"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text().replace('"/var/lib/smsgw/smsgw.db"', '"smsgw.db"')
    text = text.replace('port = 1883', 'port = 1883\nusername = "smsgw"\npassword = "pässwörd"')
    path = tmp_path / "smsgw.toml"
    path.write_text(text + EXTRA)
    return path


def cached_file(cache: Path) -> Path:
    (only,) = [p for p in cache.iterdir() if p.suffix == ".json"]
    return only


def test_a_second_read_gives_the_same_config_from_the_cache(cache: Path, config: Path) -> None:
    parsed = load_config(config)  # no cache asked: nothing written
    assert not cache.exists()
    first = load_config(config, cache=True)
    file = cached_file(cache)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600 and stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert json.loads(file.read_text())["text"] == config.read_text()
    second = load_config(config, cache=True)
    assert first == second == parsed
    assert second.mqtt is not None and second.mqtt.password == "pässwörd"
    assert [m.id for m in second.modems] == ["sim0", "sim1"] and second.modems[1].rate_per_minute == 2.5


def test_a_cached_read_does_not_import_tomllib(cache: Path, config: Path) -> None:
    load_config(config, cache=True)
    probe = ("import sys\nfrom appliance.config import load_config\n"
             f"cfg = load_config({str(config)!r}, cache=True)\n"
             "print(cfg.modems[1].id, 'tomllib' in sys.modules, 'typing' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(cache.parent)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True,
                         timeout=30).stdout.split()
    assert out == ["sim1", "False", "False"]
    config.write_text(config.read_text() + "\n# edited\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True,
                         timeout=30).stdout.split()
    assert out[:2] == ["sim1", "True"]  # another text: parsed again


def test_an_edit_is_read_at_once(cache: Path, config: Path) -> None:
    assert load_config(config, cache=True).limits.max_parts == 10
    config.write_text(config.read_text().replace("max_parts = 10", "max_parts = 3"))
    assert load_config(config, cache=True).limits.max_parts == 3
    assert json.loads(cached_file(cache).read_text())["tables"]["limits"]["max_parts"] == 3  # rewritten


def forge(cache: Path, config: Path, mode: int) -> None:
    """A cache file with the configuration's text and other tables (max_parts 1)."""
    file = cached_file(cache)
    body = json.loads(file.read_text())
    body["tables"]["limits"]["max_parts"] = 1
    file.write_text(json.dumps(body))
    file.chmod(mode)


def test_only_the_users_own_cache_file_that_no_one_else_may_write_is_trusted(cache: Path, config: Path) -> None:
    load_config(config, cache=True)
    forge(cache, config, 0o600)
    assert load_config(config, cache=True).limits.max_parts == 1  # its own file: what the cache holds is used
    forge(cache, config, 0o620)  # group-writable: another user may have written it
    assert load_config(config, cache=True).limits.max_parts == 10
    if os.geteuid() == 0:
        forge(cache, config, 0o600)
        os.chown(cached_file(cache), 65534, 65534)  # nobody's
        assert load_config(config, cache=True).limits.max_parts == 10


def test_a_torn_or_foreign_cache_file_is_a_miss(cache: Path, config: Path) -> None:
    load_config(config, cache=True)
    file = cached_file(cache)
    file.write_text(file.read_text()[:40])  # cut short (a power cut before the rename was on disk)
    assert load_config(config, cache=True).limits.max_parts == 10
    body = json.loads(file.read_text())
    body["path"] = "/etc/smsgw/other.toml"  # another file's entry under this name
    body["tables"]["limits"]["max_parts"] = 1
    file.write_text(json.dumps(body))
    assert load_config(config, cache=True).limits.max_parts == 10


def test_a_toml_date_is_not_cached(cache: Path, config: Path) -> None:
    # TOML has dates and times (TOML 1.0 "Offset Date-Time"), JSON none: such a file is parsed each time
    config.write_text('written = 2026-12-01T10:00:00Z\n' + config.read_text())
    with pytest.raises(ConfigError, match="written"):
        load_config(config, cache=True)  # an unknown key: the same error as without the cache
    assert not cache.exists() or not list(cache.iterdir())


def test_a_cache_that_cannot_be_written_is_only_a_miss(tmp_path: Path, config: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert load_config(config, cache=True) == load_config(config)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG specification says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_cache.directory() == str(tmp_path / "home" / ".cache" / "smsgw")


def test_a_syntax_error_is_reported_as_without_the_cache(cache: Path, config: Path) -> None:
    load_config(config, cache=True)
    config.write_text(config.read_text() + "\n[limits\n")
    with pytest.raises(ConfigError) as error:
        load_config(config, cache=True)
    with pytest.raises(ConfigError) as plain:
        load_config(config)
    assert str(error.value) == str(plain.value) and "line" in str(error.value)
