"""The routes of API keys and the audit (an admin key's): make a key (its secret is in the
answer's ``key``, shown once), list, revoke; read the audit of control-plane changes.

Like ``ember.sdk.calls``, each function returns a ``Call`` that both clients send.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import httpx

from ember.api.schemas import AuditList, AuditOut, KeyCreated, KeyList, KeyOut
from ember.sdk.calls import Call, _params, _segment


def _created(response: httpx.Response) -> KeyCreated:
    return KeyCreated.model_validate_json(response.content)


def _keys(response: httpx.Response) -> list[KeyOut]:
    return KeyList.model_validate_json(response.content).keys


def _none(response: httpx.Response) -> None:
    return None


def _records(response: httpx.Response) -> list[AuditOut]:
    return AuditList.model_validate_json(response.content).records


def create_key(name: str, role: str, *, functions: Sequence[str] = ("*",),
               expires_in_s: float | None = None) -> Call[KeyCreated]:
    """Make a key with ``role`` (``admin``, ``developer``, ``invoker``, ``viewer``),
    limited to the functions and workflows matching ``functions`` (fnmatch patterns).

    Raises:
        InvalidSpec: a wrong name, role, pattern or expiry (``details["errors"]``).
        Conflict: a key with this name exists.
        Forbidden: the caller's key is not an admin key.
    """
    body: dict[str, object] = {"name": name, "role": role, "functions": list(functions)}
    if expires_in_s is not None:
        body["expires_in_s"] = expires_in_s
    return Call("POST", "/keys", _created, json=body)


def list_keys() -> Call[list[KeyOut]]:
    """Every key, never its secret. Raises Forbidden for a key that is not an admin's."""
    return Call("GET", "/keys", _keys)


def revoke_key(name: str) -> Call[None]:
    """Revoke a key at once. Raises KeyNotFound."""
    return Call("DELETE", f"/keys/{_segment(name)}", _none)


def get_audit(*, key: str | None = None, since: datetime | None = None,
              limit: int | None = None) -> Call[list[AuditOut]]:
    """Control-plane changes, newest first (an admin key's)."""
    return Call("GET", "/audit", _records, params=_params(
        key=key, since=since.isoformat() if since else None, limit=limit))
