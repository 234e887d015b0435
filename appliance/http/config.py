"""``[http]`` and ``[[http.tokens]]``: where the API listens, its limits and its tokens (docs/config.md).

The table is read once with the rest of the config (``appliance.config.load_config``); without it the
API is off. ``listen`` is ``host:port`` (``[::1]:8080`` for IPv6; a bare port listens on 127.0.0.1):
every interface (``0.0.0.0``, ``::``) only when written so. A token is stored only as the SHA-256 of
its text (``smsgw token create`` prints the text once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from appliance.config import ConfigError, _section

#: What a token may do: ``send`` (POST /api/v1/messages), ``read`` (every GET, /metrics), ``admin``
#: (USSD, and everything ``send`` and ``read`` may).
SCOPES = ("send", "read", "admin")
#: Bytes a request body may have; a larger one is answered 413.
MAX_BODY = 64 * 1024
#: Seconds a connection may stay idle, or take to send its request line and headers.
IDLE_TIMEOUT = 15.0
#: Seconds a client has to send a request body.
BODY_TIMEOUT = 10.0
#: Requests per second one token may make (sustained); ``burst`` more may come at once.
TOKEN_RATE = 50.0
TOKEN_BURST = 100
#: Failed authentications one client address may make per minute before it is answered 429.
AUTH_FAILURES = 10
#: Characters a ``page_password`` has at least.
PAGE_PASSWORD_MIN = 8
#: Seconds a status-page login lasts (``page_session``).
PAGE_SESSION = 12 * 3600.0

_TOKEN_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
KNOWN = ("listen", "tls", "tokens", "max_body", "idle_timeout", "body_timeout", "token_rate", "token_burst",
         "auth_failures", "page_password", "page_session")


@dataclass(frozen=True)
class HttpTls:
    cert: Path
    key: Path


@dataclass(frozen=True)
class TokenConfig:
    name: str           # the usage source is ``http:<name>``
    token_sha256: str   # hex SHA-256 of the token's text
    scopes: frozenset[str]
    rate: float | None = None    # requests per second; None: [http] token_rate
    burst: int | None = None     # None: [http] token_burst

    @property
    def source(self) -> str:
        return f"http:{self.name}"

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True)
class HttpConfig:
    host: str
    port: int
    tls: HttpTls | None = None
    tokens: tuple[TokenConfig, ...] = ()
    max_body: int = MAX_BODY
    idle_timeout: float = IDLE_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    token_rate: float = TOKEN_RATE
    token_burst: int = TOKEN_BURST
    auth_failures: int = AUTH_FAILURES
    page_password: str | None = field(default=None, repr=False)  # the status page's password (a ``read`` token also logs in)
    page_session: float = PAGE_SESSION

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"``, ``"[::1]:8080"`` or ``"8080"`` (loopback) → (host, port); ValueError."""
    text = value.strip()
    if re.fullmatch(r"[0-9]+", text):
        host, port_text = "127.0.0.1", text
    elif text.startswith("["):
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]+)", text)
        if match is None:
            raise ValueError(f"{value!r}: expected [IPv6]:port, e.g. \"[::1]:8080\"")
        host, port_text = match.groups()
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or ":" in host or not port_text.isdigit():
            raise ValueError(f"{value!r}: expected host:port, e.g. \"127.0.0.1:8080\"")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{value!r}: the port must be 1-65535")
    return host, port


def _tokens(file: Path, value: object) -> tuple[TokenConfig, ...]:
    if isinstance(value, dict):
        raise ConfigError(file, "http.tokens", "must be an array of tables: write [[http.tokens]]")
    if not isinstance(value, list):
        raise ConfigError(file, "http.tokens", "must be an array of tables ([[http.tokens]])")
    tokens: list[TokenConfig] = []
    names: dict[str, int] = {}
    hashes: dict[str, int] = {}
    for index, table in enumerate(value):
        sec = _section(file, f"http.tokens[{index}]", table, ("name", "token_sha256", "scopes", "rate", "burst"))
        name = sec.string("name", required=True)
        assert name is not None
        if not _TOKEN_NAME.match(name):
            raise sec.error("name", f"{name!r} may hold only letters, digits, '.', '-' and '_' (at most 32)")
        if name in names:
            raise sec.error("name", f"duplicate token name {name!r} (also http.tokens[{names[name]}])")
        names[name] = index
        digest = sec.string("token_sha256", required=True)
        assert digest is not None
        digest = digest.lower()
        if not _SHA256.match(digest):
            raise sec.error("token_sha256", "must be the 64 hex digits of the token's SHA-256 "
                            "(smsgw token create writes it)")
        if digest in hashes:
            raise sec.error("token_sha256", f"the same token as http.tokens[{hashes[digest]}]")
        hashes[digest] = index
        if not sec.has("scopes"):
            raise sec.error("scopes", f"is required: a list of {', '.join(SCOPES)}")
        scopes = sec.choices("scopes", SCOPES, "scope", hint=False)
        if not scopes:
            raise sec.error("scopes", f"must name at least one of {', '.join(SCOPES)}")
        burst = sec.integer("burst", None, minimum=1)
        tokens.append(TokenConfig(name=name, token_sha256=digest, scopes=frozenset(scopes),
                                  rate=sec.number("rate", None, positive=True), burst=burst))
    return tuple(tokens)


def parse_http(file: Path, table: object) -> HttpConfig:
    """The ``[http]`` table, validated; errors name file, key and reason."""
    sec = _section(file, "http", table, KNOWN)
    listen = sec.string("listen", required=True)
    assert listen is not None
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise sec.error("listen", str(exc)) from None
    tls = None
    if sec.has("tls"):
        tls_sec = _section(file, "http.tls", sec.table["tls"], ("cert", "key"))
        cert, key = tls_sec.path("cert", required=True), tls_sec.path("key", required=True)
        assert cert is not None and key is not None
        for name, path in (("cert", cert), ("key", key)):
            if not path.is_file():
                raise tls_sec.error(name, f"{path} does not exist or is not a file")
        tls = HttpTls(cert=cert, key=key)
    d = HttpConfig(host=host, port=port)
    max_body = sec.integer("max_body", d.max_body, minimum=1024, maximum=16 * 1024 * 1024)
    burst = sec.integer("token_burst", d.token_burst, minimum=1)
    failures = sec.integer("auth_failures", d.auth_failures, minimum=1)
    idle = sec.number("idle_timeout", d.idle_timeout, positive=True)
    body = sec.number("body_timeout", d.body_timeout, positive=True)
    rate = sec.number("token_rate", d.token_rate, positive=True)
    assert max_body is not None and burst is not None and failures is not None
    assert idle is not None and body is not None and rate is not None
    password = sec.string("page_password", empty=True)
    if password is not None and len(password) < PAGE_PASSWORD_MIN:
        raise sec.error("page_password", f"must have at least {PAGE_PASSWORD_MIN} characters, not {len(password)}")
    session = sec.duration("page_session", d.page_session)
    assert session is not None
    if not 60 <= session <= 30 * 86400:
        raise sec.error("page_session", f"must be from 1 minute to 30 days ('10m', '12h', '7d'), not {session:g} s")
    return HttpConfig(
        host=host, port=port, tls=tls,
        tokens=_tokens(file, sec.table["tokens"]) if sec.has("tokens") else (),
        max_body=max_body, idle_timeout=idle, body_timeout=body, token_rate=rate, token_burst=burst,
        auth_failures=failures, page_password=password, page_session=session,
    )
