"""API keys: a name, a role, the functions (and workflows) it is limited to, an expiry.

A key's secret is shown once, when it is made: ``ek_<id>_<secret>``. Only the id (to find
the key) and a SHA-256 digest of the secret are stored. The secret is 256 random bits, so a
fast digest is as safe as a slow password hash would be (nothing to guess), and checking a
key on every request stays cheap.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime

ADMIN, DEVELOPER, INVOKER, VIEWER = "admin", "developer", "invoker", "viewer"
ROLES = (ADMIN, DEVELOPER, INVOKER, VIEWER)
FUNCTION = "function"  # an instance's token: what its function's ``role`` grants
ALL = ("*",)


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether the function or workflow ``name`` matches one of the fnmatch ``patterns``
    (``*``, every key without a limit, is answered without fnmatch: it is on every request)."""
    return "*" in patterns or any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


@dataclass(frozen=True)
class ApiKey:
    name: str
    role: str
    functions: tuple[str, ...]  # fnmatch patterns of function and workflow names
    key_id: str
    secret_sha256: str
    created_at: datetime
    expires_at: datetime | None = None

    def covers(self, name: str) -> bool:
        """Whether the key's patterns take in the function or workflow ``name``."""
        return matches(name, self.functions)

    @property
    def unlimited(self) -> bool:
        return "*" in self.functions

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass(frozen=True)
class AuditRecord:
    """One control-plane change: who (the key's name), what, on what, when, the answer."""

    id: int
    at: datetime
    key: str
    action: str  # "POST /functions/{name}/versions"
    resource: str  # the path as requested
    status: int


@dataclass(frozen=True)
class RoleGrant:
    """A function's ``role`` as its instances carry it: the functions it may invoke and
    the workflows it may start (fnmatch patterns), whether it may send events."""

    invoke: tuple[str, ...] = ()
    workflows: tuple[str, ...] = ()
    events: bool = False
