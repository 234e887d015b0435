"""``[http]`` in the config and ``smsgw token``: errors name file, key and reason; a token is printed
once and only its SHA-256 is written; the file stays valid and keeps its mode."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from config_errors import STORE_TABLE, config_file, load_error

from appliance.cli import main
from appliance.config import load_config
from appliance.http.config import parse_listen

DIGEST = "a" * 64


def test_without_an_http_table_the_api_is_off(tmp_path: Path) -> None:
    assert load_config(config_file(tmp_path, "")).http is None


@pytest.mark.parametrize(("listen", "expected"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("[::1]:8443", ("::1", 8443)),
    ("8080", ("127.0.0.1", 8080)),  # a bare port stays on loopback
    ("gateway.local:8080", ("gateway.local", 8080)),
])
def test_listen_forms(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


def test_a_full_http_table_is_read(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    cfg = load_config(config_file(tmp_path, f"""
[http]
listen = "[::]:8443"
tls = {{ cert = "c.pem", key = "k.pem" }}
max_body = 4096
token_rate = 5
[[http.tokens]]
name = "erp"
token_sha256 = "{DIGEST.upper()}"
scopes = ["send", "read"]
rate = 100
"""))
    http = cfg.http
    assert http is not None
    assert (http.host, http.port, http.listen, http.max_body, http.token_rate) == ("::", 8443, "[::]:8443", 4096, 5.0)
    assert http.tls is not None and http.tls.cert == tmp_path / "c.pem"
    (token,) = http.tokens
    assert (token.name, token.source, token.token_sha256, token.rate) == ("erp", "http:erp", DIGEST, 100.0)
    assert token.allows("send") and token.allows("read") and not token.allows("admin")


@pytest.mark.parametrize(("text", "key", "reason"), [
    ("[http]\n", "http.listen", "is required"),
    ('[http]\nlisten = "localhost"\n', "http.listen", "expected host:port"),
    ('[http]\nlisten = "127.0.0.1:99999"\n', "http.listen", "1-65535"),
    ('[http]\nlisten = ":8080"\nport = 1\n', "http.port", "unknown key"),
    ('[http]\nlisten = "8080"\nmax_body = 10\n', "http.max_body", "at least 1024"),
    ('[http]\nlisten = "8080"\ntls = { cert = "nope.pem", key = "nope.pem" }\n', "http.tls.cert", "does not exist"),
    ('[http]\nlisten = "8080"\n[http.tokens]\nname = "x"\n', "http.tokens", "[[http.tokens]]"),
    ('[http]\nlisten = "8080"\n[[http.tokens]]\nname = "erp"\nscopes = ["send"]\n', "http.tokens[0].token_sha256",
     "is required"),
    ('[http]\nlisten = "8080"\n[[http.tokens]]\nname = "erp"\ntoken_sha256 = "abc"\nscopes = ["send"]\n',
     "http.tokens[0].token_sha256", "64 hex digits"),
    (f'[http]\nlisten = "8080"\n[[http.tokens]]\nname = "erp"\ntoken_sha256 = "{DIGEST}"\nscopes = ["write"]\n',
     "http.tokens[0].scopes[0]", "unknown scope 'write'"),
    (f'[http]\nlisten = "8080"\n[[http.tokens]]\nname = "erp"\ntoken_sha256 = "{DIGEST}"\nscopes = []\n',
     "http.tokens[0].scopes", "at least one"),
    (f'[http]\nlisten = "8080"\n[[http.tokens]]\nname = "e r p"\ntoken_sha256 = "{DIGEST}"\nscopes = ["read"]\n',
     "http.tokens[0].name", "letters, digits"),
    (f'[http]\nlisten = "8080"\n[[http.tokens]]\nname = "a"\ntoken_sha256 = "{DIGEST}"\nscopes = ["read"]\n'
     f'[[http.tokens]]\nname = "a"\ntoken_sha256 = "{"b" * 64}"\nscopes = ["read"]\n',
     "http.tokens[1].name", "duplicate token name"),
    (f'[http]\nlisten = "8080"\n[[http.tokens]]\nname = "a"\ntoken_sha256 = "{DIGEST}"\nscopes = ["read"]\n'
     f'[[http.tokens]]\nname = "b"\ntoken_sha256 = "{DIGEST}"\nscopes = ["read"]\n',
     "http.tokens[1].token_sha256", "the same token"),
])
def test_bad_http_settings_name_file_key_and_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    load_error(config_file(tmp_path, text), key, reason)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_token_create_prints_the_token_once_and_writes_only_its_hash(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path, '\n[http]\nlisten = "127.0.0.1:8080"\n')
    os.chmod(path, 0o640)
    code, out, err = run(capsys, "token", "--config", str(path), "create", "erp", "--scopes", "send,read")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("smsgw_") and len(token) > 40
    assert "shown only now" in err and token not in err
    text = path.read_text()
    assert token not in text and hashlib.sha256(token.encode()).hexdigest() in text
    assert os.stat(path).st_mode & 0o777 == 0o640
    (created,) = load_config(path).http.tokens  # type: ignore[union-attr]
    assert created.name == "erp" and created.scopes == {"send", "read"}
    assert run(capsys, "config", "check", str(path))[0] == 0
    code, out, _ = run(capsys, "token", "--config", str(path), "create", "ops", "--scopes", "admin", "--json")
    assert code == 0 and json.loads(out)["source"] == "http:ops"
    code, out, _ = run(capsys, "token", "--config", str(path), "list", "--json")
    assert [(t["name"], t["scopes"]) for t in json.loads(out)["tokens"]] == [("erp", ["read", "send"]),
                                                                            ("ops", ["admin"])]
    code, _, err = run(capsys, "token", "--config", str(path), "create", "erp", "--scopes", "read")
    assert code == 2 and "exists already" in err
    code, _, err = run(capsys, "token", "--config", str(path), "revoke", "erp")
    assert code == 0
    assert [t.name for t in load_config(path).http.tokens] == ["ops"]  # type: ignore[union-attr]
    code, _, err = run(capsys, "token", "--config", str(path), "revoke", "erp")
    assert code == 2 and "no token named 'erp'" in err


@pytest.mark.parametrize(("args", "reason"), [
    (["create", "erp"], "needs --scopes"),
    (["create", "erp", "--scopes", "write"], "unknown scope 'write'"),
    (["create", "--scopes", "read"], "needs a NAME"),
    (["create", "e/rp", "--scopes", "read"], "letters, digits"),
    (["list", "erp"], "takes no NAME"),
])
def test_token_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                   reason: str) -> None:
    path = config_file(tmp_path, '\n[http]\nlisten = "127.0.0.1:8080"\n')
    before = path.read_text()
    code, _, err = run(capsys, "token", "--config", str(path), *args)
    assert code == 2 and reason in err
    assert path.read_text() == before


def test_token_create_without_an_http_table_says_to_add_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = config_file(tmp_path, "")
    code, _, err = run(capsys, "token", "--config", str(path), "create", "erp", "--scopes", "send")
    assert code == 2 and "add [http]" in err
    assert path.read_text() == STORE_TABLE


def test_token_create_refuses_an_inline_http_table_and_leaves_the_file(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "smsgw.toml"
    path.write_text('http = { listen = "127.0.0.1:8080" }\n' + STORE_TABLE)
    before = path.read_text()
    code, _, err = run(capsys, "token", "--config", str(path), "create", "erp", "--scopes", "send")
    assert code == 2 and "edit it by hand" in err
    assert path.read_text() == before
