"""Web console sessions: a login with an API key gives a random session id, kept by the
browser in an HttpOnly cookie; the key itself never reaches the page again, nor a URL.

Only a SHA-256 digest of the id is stored (with the key's reference, not its secret), so
the store leaks no usable session. Every request finds the key again
(``KeyService.by_reference``): revoking or expiring the key ends its sessions at once.

Changes made with the cookie need the session's CSRF token in ``X-Ember-CSRF`` (an HMAC of
the id: nothing more is stored); the cookie is ``SameSite=Strict`` too, and the request
guard refuses changes from other origins.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from ember.auth.keys import KeyService, Principal
from ember.clock import Clock
from ember.errors import Forbidden, Unauthorized
from ember.store.sessions import SessionRow, SqlSessionStore

COOKIE = "ember_session"
CSRF_HEADER = "x-ember-csrf"
DEFAULT_TTL_S = 12 * 3600.0
# How long a node trusts what it read of a session: a logout on another node (several
# nodes share the store) takes effect here within this time.
RECHECK_S = 5.0
_ID_LENGTH = 43  # token_urlsafe(32)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Login:
    session_id: str
    principal: Principal
    expires_at: float
    csrf: str


class ConsoleSessions:
    def __init__(self, store: SqlSessionStore, keys: KeyService, clock: Clock,
                 *, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._store = store
        self._keys = keys
        self._clock = clock
        self._ttl_s = ttl_s
        # digest → (key reference, expiry, when read): read again after RECHECK_S.
        self._cache: dict[str, tuple[str, float, float]] = {}

    def login(self, key: str) -> Login:
        """A new session for the API key ``key``; raises Unauthorized."""
        principal, reference, key_expiry = self._keys.reference(key)
        now = self._clock.time()
        expires = now + self._ttl_s
        if key_expiry is not None:
            expires = min(expires, key_expiry.timestamp())
        session_id = secrets.token_urlsafe(32)
        self._store.purge(now)
        self._cache = {d: c for d, c in self._cache.items() if c[1] > now}
        self._store.create(SessionRow(_digest(session_id), reference, principal.name, now,
                                      expires))
        return Login(session_id, principal, expires, self.csrf(session_id))

    def logout(self, session_id: str) -> None:
        digest = _digest(session_id)
        self._cache.pop(digest, None)
        self._store.delete(digest)

    def needs_lookup(self, session_id: str) -> bool:
        """Whether :meth:`principal` would read the store (run it in a thread then)."""
        cached = self._cache.get(_digest(session_id))
        return (cached is None or self._clock.time() - cached[2] >= RECHECK_S
                or not self._keys.cached(cached[0]))

    def principal(self, session_id: str) -> Principal:
        """Who the session is; Unauthorized when it is unknown, expired or logged out, or
        its key no longer valid."""
        if len(session_id) != _ID_LENGTH:
            raise _expired()
        digest = _digest(session_id)
        now = self._clock.time()
        cached = self._cache.get(digest)
        if cached is None or now - cached[2] >= RECHECK_S:
            row = self._store.get(digest)
            if row is None:
                self._cache.pop(digest, None)
                raise _expired()
            cached = (row.key_ref, row.expires_at, now)
            self._cache[digest] = cached
        if now >= cached[1]:
            self._cache.pop(digest, None)
            raise _expired()
        return self._keys.by_reference(cached[0])

    async def principal_async(self, session_id: str) -> Principal:
        if self.needs_lookup(session_id):
            return await asyncio.to_thread(self.principal, session_id)
        return self.principal(session_id)

    @staticmethod
    def csrf(session_id: str) -> str:
        return hmac.new(session_id.encode(), b"ember-console-csrf", hashlib.sha256).hexdigest()

    def check_csrf(self, session_id: str, sent: str | None) -> None:
        """Raise Forbidden unless ``sent`` is the session's CSRF token."""
        if not sent or not hmac.compare_digest(sent, self.csrf(session_id)):
            raise Forbidden("a change made with the console's session needs its CSRF token "
                            "in X-Ember-CSRF (reload the console)", {"header": "X-Ember-CSRF"})


def _expired() -> Unauthorized:
    return Unauthorized("the console session is unknown or expired: log in again",
                        {"header": "Cookie"})
