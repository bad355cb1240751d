"""Making, finding and revoking API keys, and the admin key a server starts with.

Bootstrap: ``EMBER_ADMIN_KEY`` set is the admin key (it is not stored; a server started
without it no longer accepts it). Otherwise a server whose store holds no key makes one,
named ``admin``, writes it to ``<home>/admin.key`` (mode 0600) and prints it once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ember.clock import Clock, utcnow
from ember.cluster.changes import KEY, ChangeBus
from ember.control.validation import invalid_spec
from ember.errors import Unauthorized
from ember.model.key import ADMIN, ALL, ROLES, ApiKey, matches
from ember.store.keys import SqlKeyStore

if TYPE_CHECKING:
    from ember.auth.tokens import InstanceTokens

log = logging.getLogger(__name__)

ADMIN_KEY_FILE = "admin.key"
_TOKEN = re.compile(r"^ek_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_PATTERN = re.compile(r"^[A-Za-z0-9._*?\[\]-]{1,64}$")
MAX_EXPIRY_S = 10 * 365 * 24 * 3600


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _env_reference(env_digest: str) -> str:
    """Names the ``EMBER_ADMIN_KEY`` a session logged in with, without revealing it."""
    return "env:" + digest("session:" + env_digest)[:32]


def new_token() -> tuple[str, str, str]:
    """A new key: (token, key id, secret)."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"ek_{key_id}_{secret}", key_id, secret


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name, role and patterns."""

    name: str
    role: str
    functions: tuple[str, ...] = ALL
    # A function's token: the workflows it may start, whether it may send events.
    workflows: tuple[str, ...] = ()
    events: bool = False

    def covers(self, name: str) -> bool:
        """Whether the key's patterns take in the function or workflow ``name``."""
        return matches(name, self.functions)

    @property
    def unlimited(self) -> bool:
        return "*" in self.functions


class KeyService:
    """Keys, with what was read of each kept in memory. With ``changes``, a key made or
    revoked here leaves every other node's memory of it, and theirs leave this one's."""

    def __init__(self, store: SqlKeyStore, clock: Clock, *, admin_key: str | None = None,
                 tokens: InstanceTokens | None = None, changes: ChangeBus | None = None
                 ) -> None:
        self._store = store
        self._tokens = tokens
        self._clock = clock
        self._changes = changes
        self._env_admin = digest(admin_key) if admin_key else None
        self._cache: dict[str, ApiKey | None] = {}
        self._revocations = 0  # a lookup that raced a revocation is not cached
        if changes is not None:
            changes.follow(KEY, self.changed_elsewhere)
            changes.on_resync(self.resync)

    def changed_elsewhere(self, key_id: str) -> None:
        """Another node made or revoked the key: forget what was read of it."""
        self._revocations += 1
        self._cache.pop(key_id, None)

    def resync(self) -> None:
        """Changes may have been missed: forget every key read."""
        self._revocations += 1
        self._cache.clear()

    def _announce(self, key_id: str) -> None:
        if self._changes is not None:
            self._changes.publish(KEY, key_id)

    def bootstrap(self, home: Path) -> str | None:
        """Make the first admin key when there is none (and no ``EMBER_ADMIN_KEY``):
        written to ``<home>/admin.key`` (0600); returns it, to be printed once."""
        if self._env_admin is not None or self._store.all():
            return None
        token, _ = self.create("admin", ADMIN)
        path = home / ADMIN_KEY_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
        os.chmod(path, 0o600)
        return token

    def create(self, name: str, role: str, functions: list[str] | None = None,
               expires_in_s: float | None = None) -> tuple[str, ApiKey]:
        """A new key; (its token, shown once; the key). Raises InvalidSpec naming the field,
        Conflict when the name is taken."""
        errors = []
        if not _NAME.match(name):
            errors.append({"field": "name", "message": "1 to 64 lower-case letters, digits, "
                                                       "'.', '_' or '-'"})
        if role not in ROLES:
            errors.append({"field": "role", "message": f"one of {', '.join(ROLES)}"})
        patterns = list(functions) if functions else list(ALL)
        for i, pattern in enumerate(patterns):
            if not _PATTERN.match(pattern):
                errors.append({"field": f"functions[{i}]", "message": "a name or a pattern "
                               "of letters, digits, '.', '_', '-', '*', '?', '[ ]'"})
        if expires_in_s is not None and not 0 < expires_in_s <= MAX_EXPIRY_S:
            errors.append({"field": "expires_in_s", "message": "1 s to 10 years"})
        if errors:
            raise invalid_spec(errors)
        token, key_id, secret = new_token()
        now = utcnow(self._clock)
        key = ApiKey(name, role, tuple(patterns), key_id, digest(secret), now,
                     now + timedelta(seconds=expires_in_s) if expires_in_s else None)
        self._store.create(key)
        self._cache.pop(key_id, None)
        self._announce(key_id)
        return token, key

    def list(self) -> list[ApiKey]:
        return self._store.all()

    def revoke(self, name: str) -> ApiKey:
        key = self._store.delete(name)
        self._revocations += 1
        self._cache.pop(key.key_id, None)
        self._announce(key.key_id)
        return key

    def needs_lookup(self, token: str | None) -> bool:
        """Whether :meth:`authenticate` would read the store (a key not seen yet): the
        caller on an event loop runs it in a thread then."""
        match = _TOKEN.match(token or "")
        return match is not None and match.group(1) not in self._cache

    def reference(self, token: str | None) -> tuple[Principal, str, datetime | None]:
        """For a login (the web console): the key's principal, a reference that finds it
        again without its secret (:meth:`by_reference`), and when it expires. Raises
        Unauthorized as :meth:`authenticate` does; a function's token cannot log in."""
        if token and token.startswith("et_"):
            raise Unauthorized("a function's token cannot log in: use an API key",
                               {"field": "key"})
        principal = self.authenticate(token)
        if self._env_admin is not None and hmac.compare_digest(digest(token or ""),
                                                                self._env_admin):
            return principal, _env_reference(self._env_admin), None
        match = _TOKEN.match(token or "")
        assert match is not None  # authenticate() accepted it
        key = self._cache.get(match.group(1)) or self._store.by_id(match.group(1))
        return principal, match.group(1), key.expires_at if key is not None else None

    def by_reference(self, reference: str) -> Principal:
        """The principal behind a :meth:`reference`, as the key is now: Unauthorized once
        it is revoked or expired (or, for ``EMBER_ADMIN_KEY``, once the server runs
        without that key)."""
        if reference.startswith("env:"):
            if self._env_admin is not None and hmac.compare_digest(
                    reference, _env_reference(self._env_admin)):
                return Principal("admin", ADMIN)
            key = None
        elif reference in self._cache:
            key = self._cache[reference]
        else:
            seen = self._revocations
            key = self._store.by_id(reference)
            if seen == self._revocations:
                self._cache[reference] = key
        if key is None or key.expired(utcnow(self._clock)):
            raise Unauthorized("the session's API key is no longer valid (revoked or "
                               "expired): log in again", {"header": "Cookie"})
        return Principal(key.name, key.role, key.functions)

    def cached(self, reference: str) -> bool:
        """Whether :meth:`by_reference` answers without reading the store."""
        return reference.startswith("env:") or reference in self._cache

    def authenticate(self, token: str | None) -> Principal:
        """The caller of a request with this bearer token. Raises Unauthorized (missing,
        unknown, revoked, expired), without saying which of the last three."""
        if not token:
            raise Unauthorized("this route needs an API key: send Authorization: Bearer "
                               "<key> (the CLI and SDK read EMBER_API_KEY, or the server's "
                               "admin.key)", {"header": "Authorization"})
        if self._env_admin is not None and hmac.compare_digest(digest(token), self._env_admin):
            return Principal("admin", ADMIN)
        if token.startswith("et_") and self._tokens is not None:
            principal = self._tokens.principal(token)
            if principal is None:
                raise Unauthorized("the function's token is not valid (its instance is gone)",
                                   {"header": "Authorization"})
            return principal
        match = _TOKEN.match(token)
        key = None
        if match is not None:
            key_id, secret = match.groups()
            if key_id in self._cache:
                key = self._cache[key_id]
            else:
                seen = self._revocations
                key = self._store.by_id(key_id)
                if seen == self._revocations:
                    self._cache[key_id] = key
            if key is not None and not hmac.compare_digest(digest(secret), key.secret_sha256):
                key = None
        if key is None or key.expired(utcnow(self._clock)):
            raise Unauthorized("the API key is not valid (unknown, revoked or expired)",
                               {"header": "Authorization"})
        return Principal(key.name, key.role, key.functions)
