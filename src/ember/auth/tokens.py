"""Function identities: the token each instance of a function with a ``role`` gets.

A token (``et_<instance id>_<secret>``) is made when the instance starts, handed to it as
``EMBER_TOKEN`` (with ``EMBER_URL``), and dies with it: it is kept only in this server's
memory, as a digest, and forgotten when the instance is gone. It grants what the
function's ``role`` says and nothing else (``ember.auth.policy``).
"""

from __future__ import annotations

import hmac
import re
import secrets

from ember.auth.keys import Principal, digest
from ember.model.key import FUNCTION, RoleGrant

_TOKEN = re.compile(r"^et_([0-9a-f]{1,32})_([A-Za-z0-9_-]{43})$")


class InstanceTokens:
    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._held: dict[str, tuple[str, Principal]] = {}

    def issue(self, instance_id: str, function: str, grant: RoleGrant) -> dict[str, str]:
        """The environment that gives instance ``instance_id`` its identity."""
        secret = secrets.token_urlsafe(32)
        principal = Principal(f"function:{function}", FUNCTION, grant.invoke,
                              workflows=grant.workflows, events=grant.events)
        self._held[instance_id] = (digest(secret), principal)
        return {"EMBER_TOKEN": f"et_{instance_id}_{secret}", "EMBER_URL": self.server_url}

    def revoke(self, instance_id: str) -> None:
        self._held.pop(instance_id, None)

    def principal(self, token: str) -> Principal | None:
        match = _TOKEN.match(token)
        if match is None:
            return None
        held = self._held.get(match.group(1))
        if held is None or not hmac.compare_digest(digest(match.group(2)), held[0]):
            return None
        return held[1]
