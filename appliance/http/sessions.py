"""Logins of the status page: random server-side session ids, each with its own CSRF token.

A login (``POST /login`` with the ``[http] page_password`` or an API token with the ``read`` scope)
makes a :class:`Session` under a random id of 256 bits (``secrets.token_urlsafe``); the browser keeps
only that id, in a cookie that is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other
site's page sends it) and ``Secure`` over TLS. The session ends after ``[http] page_session`` seconds
(default 12 h), at logout, when the token it was opened with is revoked (or loses its ``read``
scope), or when the daemon restarts (sessions live in memory only: nothing to
steal from the disk).

Every form the page posts carries the session's CSRF token (the synchronizer token pattern, OWASP
CSRF Prevention Cheat Sheet); the login form, before there is a session, a token bound to a
short-lived pre-login cookie (the double-submit pattern). Both are compared in constant time.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Sessions kept at most (the oldest are dropped first); a flood of logins cannot grow memory.
MAX_SESSIONS = 1000
SESSION_COOKIE = "smsgw_session"
LOGIN_COOKIE = "smsgw_login"
#: Seconds a login form stays good for.
LOGIN_FORM_TTL = 3600.0


def same(a: str, b: str) -> bool:
    """``a == b`` in constant time (for secrets)."""
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass
class Session:
    id: str
    who: str            # "page" (the page password) or the token's name
    source: str         # the usage source of its test SMS: "http:page" or "http:<token>"
    can_send: bool      # the page password, or a token with the "send" scope
    expires_at: float
    token_sha256: str | None = None  # a token's login: its hash, so that revoking the token ends the session
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) shown once on the next page
    form: dict[str, str] = field(default_factory=dict)  # the test SMS form's values after a refusal


class Sessions:
    """The open sessions by id (see the module docstring)."""

    def __init__(self, lifetime: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    def create(self, who: str, source: str, *, can_send: bool, token_sha256: str | None = None) -> Session:
        self._expire()
        session = Session(id=secrets.token_urlsafe(32), who=who, source=source, can_send=can_send,
                          expires_at=self.clock() + self.lifetime, token_sha256=token_sha256)
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of this id, or None (unknown, ended or expired)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if self.clock() >= session.expires_at:
            del self._sessions[session_id]
            return None
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _expire(self) -> None:
        now = self.clock()
        for session_id in [sid for sid, s in self._sessions.items() if now >= s.expires_at]:
            del self._sessions[session_id]

    def __len__(self) -> int:
        return len(self._sessions)
