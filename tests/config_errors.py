"""Config files for the tests, and the one check of a config error: it names the file, the key and
the reason (``FILE: KEY: REASON``, as every part of smsgw reports a bad config)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.config import ConfigError, load_config

#: The smallest valid config: a store next to the file (a relative path is taken from the file's directory).
STORE_TABLE = '[store]\npath = "smsgw.db"\n'


def config_file(tmp_path: Path, text: str, name: str = "smsgw.toml") -> Path:
    """``tmp_path/name`` holding :data:`STORE_TABLE`, then ``text``."""
    path = tmp_path / name
    path.write_text(STORE_TABLE + text, encoding="utf-8")
    return path


def config_error(parse: Callable[[], object], file: Path | str, key: str, reason: str) -> ConfigError:
    """The ``ConfigError`` that ``parse()`` raises, after checking that it names ``file``, exactly ``key``,
    and a reason that contains ``reason``, in the form ``FILE: KEY: REASON``."""
    with pytest.raises(ConfigError) as caught:
        parse()
    error = caught.value
    assert (error.file, error.key) == (str(file), key), str(error)
    assert reason in error.reason, str(error)
    assert str(error) == f"{file}: {key}: {error.reason}"
    return error


def load_error(path: Path, key: str, reason: str) -> ConfigError:
    """:func:`config_error` for ``load_config(path)``."""
    return config_error(lambda: load_config(path), path, key, reason)
