"""Bearer tokens (RFC 6750) for the HTTP API: who is asking, may they, and not too often.

``Authorization: Bearer TOKEN``: the SHA-256 of TOKEN is looked up among ``[[http.tokens]]``. A
missing or unknown token is answered 401 with ``WWW-Authenticate: Bearer`` (RFC 6750 section 3,
``error="invalid_token"`` for a wrong one), a token without the route's scope 403 with
``error="insufficient_scope"``. A client address with more than ``[http] auth_failures`` failed
attempts in a minute gets 429 (``Retry-After``) before its token is even looked at, and each token
may make ``token_rate`` requests per second (``token_burst`` at once), past which it gets 429.

The registry watches the config file (its modification time and size): a token created with
``smsgw token`` while the daemon runs works at once, a revoked one is refused within a second,
without a restart; a file that no longer reads leaves the tokens as they were (and is logged).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from appliance.config import ConfigError, load_config
from appliance.http.config import HttpConfig, TokenConfig
from appliance.http.errors import ApiError
from appliance.http.ratelimit import FailureWindow, TokenBuckets
from appliance.http.tokens import token_hash

LOG = logging.getLogger("appliance.http")

#: Seconds between two looks at the config file's modification time.
RELOAD_INTERVAL = 1.0
REALM = 'Bearer realm="smsgw"'


class TokenRegistry:
    """The configured tokens by hash, kept up to date with the config file."""

    def __init__(self, http: HttpConfig, config_path: Path | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.config_path = config_path
        self._by_hash = {token.token_sha256: token for token in http.tokens}
        self._checked_at = clock()
        # unknown: the file may have changed between the daemon reading it and now, so the first look reloads
        self._stamp: tuple[int, int] | None = None

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.config_path is None:
            return None
        try:
            info = os.stat(self.config_path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    def _reload(self) -> None:
        self._checked_at = self.clock()
        if self.config_path is None:
            return
        stamp = self._file_stamp()
        if stamp is None or stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            LOG.error("HTTP tokens not reloaded: %s", exc)
            return
        tokens = config.http.tokens if config.http is not None else ()
        self._by_hash = {token.token_sha256: token for token in tokens}
        LOG.info("HTTP tokens reloaded from %s: %s", self.config_path,
                 ", ".join(token.name for token in tokens) or "none")

    def find(self, token: str) -> TokenConfig | None:
        """The token's entry, or None. An unknown token makes the registry look at the file at once (a
        token just created works); a known one at most every RELOAD_INTERVAL (a revoked one stops)."""
        return self.find_hash(token_hash(token))

    def find_hash(self, digest: str) -> TokenConfig | None:
        """:meth:`find` by the token's SHA-256 (a status-page session keeps only that)."""
        found = self._by_hash.get(digest)
        if found is None or self.clock() - self._checked_at >= RELOAD_INTERVAL:
            self._reload()
            found = self._by_hash.get(digest)
        return found

    @property
    def tokens(self) -> list[TokenConfig]:
        return list(self._by_hash.values())


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class Authenticator:
    """Checks a request's token and scope; ApiError (401, 403, 429) when it may not go on."""

    def __init__(self, http: HttpConfig, registry: TokenRegistry, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self.registry = registry
        self.failures = FailureWindow(http.auth_failures, clock=clock)
        self.buckets = TokenBuckets(clock=clock)

    def check(self, request: web.Request, scope: str) -> TokenConfig:
        client = request.remote or "unknown"
        blocked = self.failures.blocked(client)
        if blocked:
            raise ApiError(429, "too many failed authentication attempts from this address; try again later",
                           kind="auth_rate", headers=_retry_after(blocked))
        header = request.headers.get("Authorization")
        if header is None:
            self.failures.failed(client)
            raise ApiError(401, "missing 'Authorization: Bearer TOKEN' header", kind="unauthorized",
                           headers={"WWW-Authenticate": REALM})
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            self.failures.failed(client)
            raise ApiError(401, "the Authorization header must be 'Bearer TOKEN'", kind="unauthorized",
                           headers={"WWW-Authenticate": f'{REALM}, error="invalid_request"'})
        token = self.registry.find(credentials)
        if token is None:
            self.failures.failed(client)
            LOG.warning("HTTP %s %s from %s: unknown token", request.method, request.path, client)
            raise ApiError(401, "unknown or revoked token", kind="unauthorized",
                           headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'})
        if not token.allows(scope):
            raise ApiError(403, f"token {token.name!r} lacks the scope {scope!r} "
                           f"(it has: {', '.join(sorted(token.scopes))})", kind="forbidden",
                           headers={"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'})
        wait = self.buckets.take(token.name, token.rate or self.http.token_rate,
                                 token.burst or self.http.token_burst)
        if wait:
            raise ApiError(429, f"token {token.name!r} is over its request rate "
                           f"({token.rate or self.http.token_rate:g}/s); slow down", kind="rate_limited",
                           headers=_retry_after(wait))
        return token
