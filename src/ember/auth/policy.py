"""What each role may do, decided from the request's method and path.

- ``admin``: everything, keys, the audit and draining nodes included.
- ``developer``: every route but keys and the audit: functions, versions, aliases,
  triggers, layers, builds, workflows, and what invokers and viewers do.
- ``invoker``: invoke functions (and their direct HTTP), run and cancel workflow
  executions, send events, stop tasks; read tasks and executions.
- ``viewer``: read (GET) everything but keys and the audit: functions, logs, stats, …

A key limited to patterns (``functions``) reaches only the functions and workflows whose
names match them, for routes whose path names one; routes whose request body names it
(creating a function or a trigger) are checked by their handler with :func:`check_named`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ember.auth.keys import Principal
from ember.errors import Forbidden
from ember.model.key import ADMIN, DEVELOPER, FUNCTION, INVOKER, VIEWER, matches

READ, WRITE, INVOKE, MANAGE = "read", "write", "invoke", "manage"

_ADMIN_PATHS = re.compile(r"^/(keys|audit)(/|$)")
_ADMIN_WRITES = re.compile(r"^/nodes(/|$)")  # reading the nodes is a viewer's
_NAMED = re.compile(r"^/(functions|workflows)/([^/]+)")
_INVOKE = [
    ("POST", re.compile(r"^/functions/[^/]+/invoke$")),
    ("*", re.compile(r"^/functions/[^/]+/http(/|$)")),
    ("POST", re.compile(r"^/workflows/[^/]+/executions$")),
    ("POST", re.compile(r"^/executions/[^/]+/cancel$")),
    ("POST", re.compile(r"^/tasks/[^/]+/stop$")),
    ("POST", re.compile(r"^/events$")),
]
_INVOKER_READS = re.compile(
    r"^/(tasks|executions)(/|$)|^/workflows/[^/]+/executions$|^/functions/[^/]+/tasks$")
_ALLOWED = {
    ADMIN: {READ, WRITE, INVOKE, MANAGE},
    DEVELOPER: {READ, WRITE, INVOKE},
    INVOKER: {INVOKE},
    VIEWER: {READ},
}


@dataclass(frozen=True)
class Need:
    kind: str
    named: str | None  # the function or workflow the path names


@functools.lru_cache(maxsize=1024)
def need(method: str, path: str) -> Need:
    """What a request needs (asked twice per request, by authentication and the check;
    the same paths come again and again, so the answers are kept)."""
    found = _NAMED.match(path)
    named = found.group(2) if found else None
    if _ADMIN_PATHS.match(path) or (
            method not in ("GET", "HEAD", "OPTIONS") and _ADMIN_WRITES.match(path)):
        return Need(MANAGE, None)
    for verb, pattern in _INVOKE:
        if verb in (method, "*") and pattern.match(path):
            return Need(INVOKE, named)
    if method in ("GET", "HEAD", "OPTIONS"):
        return Need(READ, named)
    return Need(WRITE, named)


_FUNCTION_PATHS = [
    ("POST", re.compile(r"^/functions/([^/]+)/invoke$"), "invoke"),
    ("*", re.compile(r"^/functions/([^/]+)/http(/|$)"), "invoke"),
    ("POST", re.compile(r"^/workflows/([^/]+)/executions$"), "workflows"),
    ("POST", re.compile(r"^/events$"), "events"),
    ("GET", re.compile(r"^/(tasks|executions)/[^/]+$"), "results"),
    ("POST", re.compile(r"^/tasks/[^/]+/stop$|^/executions/[^/]+/cancel$"), "results"),
]


def _check_function(principal: Principal, method: str, path: str) -> None:
    """A function's token: only what its ``role`` grants, and reading what it started."""
    for verb, pattern, grant in _FUNCTION_PATHS:
        found = pattern.match(path)
        if found is None or verb not in (method, "*"):
            continue
        if grant == "results":
            return
        if grant == "events":
            if principal.events:
                return
            break
        name = found.group(1)
        patterns = principal.functions if grant == "invoke" else principal.workflows
        if matches(name, patterns):
            return
        break
    raise Forbidden(
        f"{principal.name}'s role does not allow {method} {path}: add it to the function's "
        "config role (invoke, workflows, events)", {"key": principal.name, "path": path},
    )


def check(principal: Principal, method: str, path: str) -> None:
    """Raise Forbidden unless ``principal`` may make this request."""
    if principal.role == FUNCTION:
        _check_function(principal, method, path)
        return
    required = need(method, path)
    allowed = _ALLOWED.get(principal.role, set())
    ok = required.kind in allowed or (
        principal.role == INVOKER and required.kind == READ and _INVOKER_READS.match(path))
    if not ok:
        raise Forbidden(
            f"the key {principal.name!r} ({principal.role}) may not {method} {path}",
            {"key": principal.name, "role": principal.role, "needs": required.kind},
        )
    if required.named is not None:
        check_named(principal, required.named)
    elif (required.kind in (WRITE, INVOKE) and not principal.unlimited
          and not _UNNAMED_OK.match(f"{method} {path}")):
        raise Forbidden(
            f"the key {principal.name!r} is limited to {', '.join(principal.functions)}: "
            f"{method} {path} is for keys without that limit",
            {"key": principal.name, "path": path},
        )


# Changes a key limited to patterns may still make: their handlers check the name the
# request's body gives (a new function, a trigger's function), and layers, builds, events,
# tasks and executions are not any one function's.
_UNNAMED_OK = re.compile(
    r"^(POST /functions|POST /triggers|\w+ /layers(/.*)?|\w+ /builds(/.*)?|POST /events"
    r"|POST /tasks/[^/]+/stop|POST /executions/[^/]+/cancel)$")


def check_named(principal: Principal, name: str) -> None:
    """Raise Forbidden unless the key's patterns take in the function or workflow ``name``."""
    if not principal.covers(name):
        raise Forbidden(
            f"the key {principal.name!r} is limited to {', '.join(principal.functions)}: "
            f"not {name!r}", {"key": principal.name, "name": name},
        )
