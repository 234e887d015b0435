"""API tokens: made here, kept in the config only as their SHA-256 (``[[http.tokens]]``).

``new_token()`` is 32 random bytes (``secrets``), URL-safe base64 behind the prefix ``smsgw_`` (so a
leaked token is recognisable in a log or a repository scan). ``add_token`` appends its table to the
config file and ``remove_token`` takes it out again; both check the new text as ``smsgw run`` reads
it before it replaces the file (atomically, keeping its mode and owner), so the file is never left
broken.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import tomllib
from collections.abc import Iterable
from pathlib import Path

from appliance.config import Config, ConfigError, parse_config
from drivers.private_files import replace_file

PREFIX = "smsgw_"
TOKEN_BYTES = 32


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """The hex SHA-256 of the token's text, as ``token_sha256`` holds it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def token_table(name: str, digest: str, scopes: Iterable[str]) -> str:
    scope_list = ", ".join(_quote(scope) for scope in scopes)
    return f"[[http.tokens]]\nname = {_quote(name)}\ntoken_sha256 = {_quote(digest)}\nscopes = [{scope_list}]\n"


def _checked(path: Path, text: str) -> Config:
    """``text`` read as the config at ``path``: ConfigError naming the problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "file", f"the changed file would not be valid TOML ({exc}); edit it by hand") from None
    return parse_config(data, path)


def add_token(path: Path, name: str, scopes: Iterable[str]) -> tuple[str, Config]:
    """Append a new token named ``name`` to the config at ``path``; its text (shown once) and the new config.

    ConfigError when the file has no ``[http]`` table, already has a token of that name, or would
    not be valid afterwards.
    """
    text = path.read_text(encoding="utf-8")
    current = _checked(path, text)
    if current.http is None:
        raise ConfigError(path, "http", 'the HTTP API is off: add [http] with listen = "127.0.0.1:8080" first')
    if any(token.name == name for token in current.http.tokens):
        raise ConfigError(path, "http.tokens", f"a token named {name!r} exists already (revoke it first)")
    token = new_token()
    addition = token_table(name, token_hash(token), scopes)
    updated = text + ("" if text.endswith("\n") or not text else "\n") + "\n" + addition
    config = _checked(path, updated)
    if config.http is None or not any(t.name == name for t in config.http.tokens):
        raise ConfigError(path, "http", "the new token would not be read from this file "
                          "(is [http] written inline?); add it by hand")
    _replace(path, updated)
    return token, config


_TABLE_HEADER = re.compile(r"^\s*\[")


def remove_token(path: Path, name: str) -> Config:
    """Take the ``[[http.tokens]]`` table named ``name`` out of the config at ``path``; the new config."""
    text = path.read_text(encoding="utf-8")
    current = _checked(path, text)
    if current.http is None or not any(token.name == name for token in current.http.tokens):
        raise ConfigError(path, "http.tokens", f"no token named {name!r}")
    lines = text.splitlines(keepends=True)
    start = end = None
    for index, line in enumerate(lines):
        if line.strip() != "[[http.tokens]]":
            continue
        stop = next((j for j in range(index + 1, len(lines)) if _TABLE_HEADER.match(lines[j])), len(lines))
        block = "".join(lines[index:stop])
        try:
            found = tomllib.loads(block).get("http", {}).get("tokens", [{}])[0].get("name")
        except tomllib.TOMLDecodeError:
            continue
        if found == name:
            start, end = index, stop
            break
    if start is None or end is None:
        raise ConfigError(path, "http.tokens", f"the token {name!r} is not written as a [[http.tokens]] table; "
                          "remove it by hand")
    updated = "".join(lines[:start] + lines[end:])
    config = _checked(path, updated)
    left = {token.name for token in config.http.tokens} if config.http is not None else set()
    if left != {token.name for token in current.http.tokens} - {name}:
        raise ConfigError(path, "http.tokens", "removing the table would change other settings; remove it by hand")
    _replace(path, updated)
    return config


def _replace(path: Path, text: str) -> None:
    """Replace the config file with ``text``, keeping its mode and owner (a symbolic link is followed:
    the file it names is replaced)."""
    replace_file(path.resolve(), text)
