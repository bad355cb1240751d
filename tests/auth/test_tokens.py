"""A function's token: what its role grants, and gone with its instance."""

from __future__ import annotations

import pytest

from ember.auth.policy import check
from ember.auth.tokens import InstanceTokens
from ember.errors import Forbidden
from ember.model.key import RoleGrant


def test_a_token_lives_as_long_as_its_instance() -> None:
    tokens = InstanceTokens("http://127.0.0.1:8080")
    env = tokens.issue("abc123", "caller", RoleGrant(invoke=("orders-*",)))
    assert env["EMBER_URL"] == "http://127.0.0.1:8080"
    principal = tokens.principal(env["EMBER_TOKEN"])
    assert principal is not None and principal.name == "function:caller"
    assert tokens.principal(env["EMBER_TOKEN"][:-1] + "x") is None
    assert tokens.principal("et_abc123_" + "x" * 43) is None
    tokens.revoke("abc123")
    assert tokens.principal(env["EMBER_TOKEN"]) is None


@pytest.mark.parametrize("method,path,grant,allowed", [
    ("POST", "/functions/orders-api/invoke", RoleGrant(invoke=("orders-*",)), True),
    ("POST", "/functions/billing/invoke", RoleGrant(invoke=("orders-*",)), False),
    ("GET", "/functions/orders-api/http/x", RoleGrant(invoke=("orders-*",)), True),
    ("POST", "/workflows/ship/executions", RoleGrant(workflows=("ship",)), True),
    ("POST", "/workflows/ship/executions", RoleGrant(invoke=("*",)), False),
    ("POST", "/events", RoleGrant(events=True), True),
    ("POST", "/events", RoleGrant(), False),
    ("GET", "/tasks/t1", RoleGrant(), True),
    ("GET", "/executions/e1", RoleGrant(), True),
    ("POST", "/functions", RoleGrant(invoke=("*",)), False),
    ("GET", "/functions", RoleGrant(invoke=("*",)), False),
    ("GET", "/secrets", RoleGrant(invoke=("*",)), False),
    ("DELETE", "/functions/orders-api", RoleGrant(invoke=("*",)), False),
    ("POST", "/keys", RoleGrant(invoke=("*",), events=True), False),
])
def test_what_a_role_grants(method: str, path: str, grant: RoleGrant, allowed: bool) -> None:
    tokens = InstanceTokens("http://127.0.0.1:8080")
    principal = tokens.principal(tokens.issue("a1", "f", grant)["EMBER_TOKEN"])
    assert principal is not None
    if allowed:
        check(principal, method, path)
    else:
        with pytest.raises(Forbidden):
            check(principal, method, path)
