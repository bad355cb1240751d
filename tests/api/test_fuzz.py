"""The OpenAPI document describes what the server accepts: schemathesis generates requests
from ``/openapi.json`` (valid ones and broken ones, and methods the document does not list)
and the in-process app answers each without a server error, with the status codes, headers
and bodies the document gives.

Bounded and deterministic: a fixed seed, derandomized generation, a few examples per
operation and no example database, so a run takes seconds and repeats itself. Run it on
PostgreSQL too (EMBER_DATABASE_URL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup

from ember.api import create_app
from ember.bootstrap import build
from ember.settings import Settings
from tests.conftest import AUTH

CONFIG = SchemathesisConfig.from_dict({
    "seed": 20261127,
    "generation": {
        "mode": "all", "max-examples": 12, "deterministic": True, "database": "none",
        # NUL characters are refused in every name and text (PostgreSQL cannot hold them),
        # which the document cannot say of each string: test_payloads tests that.
        "allow-x00": False,
    },
    "phases": {"stateful": {"enabled": False}},
})

# Refusals of schema-valid requests that the document does not try to foresee: a code
# archive's contents, a cursor's meaning, rules across fields (which kind of function takes
# 'app' or 'command', min against max instances, a role with no network, an alias's two
# versions and weight) and the trigger sources' own rules (paths, URLs, schedules), a
# trigger's target against its function, qualifier and workflow (none with target events,
# a workflow only with target workflow, a function without); a secret a config lists must
# exist and not also be an environment key, a layer it lists must exist, and a secret's
# value is limited in UTF-8 bytes, not characters.
SEMANTIC = {
    ("InvalidCode", None), ("InvalidRequest", "cursor"),
    ("InvalidSpec", "config.kind"), ("InvalidSpec", "config.app"),
    ("InvalidSpec", "config.command"), ("InvalidSpec", "config.concurrency"),
    ("InvalidSpec", "config.min_instances"), ("InvalidSpec", "config.network"),
    ("InvalidSpec", "additional_version"), ("InvalidSpec", "weight"),
    ("InvalidSpec", "function"), ("InvalidSpec", "qualifier"), ("InvalidSpec", "target"),
    ("InvalidSpec", "workflow"), ("InvalidSpec", "value"),
    # A provisioned policy's qualifier must exist, its max not be below its min, its
    # schedules be cron expressions in known zones, with end after start.
    ("InvalidPolicy", "qualifier"), ("InvalidPolicy", "target_tracking.max"),
}
SEMANTIC_FIELD_PREFIXES = ("source.", "config.secrets", "config.layers", "schedules[")


@pytest.fixture
def fuzz_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(build(settings)), raise_server_exceptions=False,
                    headers=AUTH) as client:
        yield client


@pytest.fixture
def fuzz_schema(fuzz_client: TestClient, request: pytest.FixtureRequest) -> Any:
    # schemathesis renames the running test after each operation through the node's
    # ``_nodeid``, which pytest 9 no longer has: give it one.
    request.node._nodeid = request.node.nodeid
    return schemathesis.openapi.from_dict(fuzz_client.get("/openapi.json").json(), config=CONFIG)


schema = schemathesis.pytest.from_fixture("fuzz_schema")


@schema.parametrize()
def test_api_answers_as_documented(case: Any, fuzz_client: TestClient) -> None:
    prepared = requests.Request(**case.as_transport_kwargs(base_url="http://testserver")).prepare()
    response = fuzz_client.request(
        prepared.method or "GET", prepared.url or "", headers=dict(prepared.headers),
        content=prepared.body,
    )
    assert response.status_code < 500, response.text
    try:
        case.validate_response(response)
    except FailureGroup as group:
        left = [f for f in group.exceptions if not _semantic_refusal(f.code, response)]
        if left:
            raise FailureGroup(left, str(group)) from None


def _semantic_refusal(check: str, response: Any) -> bool:
    """A schema-valid request refused for a reason in SEMANTIC (ST202)."""
    if check != "ST202" or response.status_code not in (400, 422):
        return False
    error = response.json()["error"]
    # A workflow document's own rules (the DSL, and its name against the path's).
    request = response.request
    if request.method == "PUT" and request.url.path.startswith("/workflows/"):
        return bool(error["code"] == "InvalidSpec")
    details = error["details"]
    fields = [details.get("field")] + [e["field"] for e in details.get("errors", [])]
    return any(
        (error["code"], None) in SEMANTIC or (error["code"], field) in SEMANTIC
        or str(field).startswith(SEMANTIC_FIELD_PREFIXES)
        for field in fields
    )
