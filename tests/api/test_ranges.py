"""Integers beyond what the store holds are refused at the edge: a version in a path that no
version can have is not found, one in a body, query or header is a bad request naming it.
Run on PostgreSQL too (EMBER_DATABASE_URL), whose ``integer`` columns end at 2**31 - 1."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import code, create, error_of

HUGE = "99999999999999999999999"
ABOVE_INT32 = str(2**31)
ABOVE_INT64 = str(2**63)


@pytest.fixture
def fn(api: TestClient) -> TestClient:
    create(api, "fn")
    assert api.post("/functions/fn/versions", json={}).status_code == 201
    assert api.post("/layers/lay/versions", json=code()).status_code == 201
    return api


def _refused(answer: Any, status: int, code_: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    err = error_of(answer)
    assert err["code"] == code_
    assert "SQL" not in answer.text and "integer" not in answer.text
    return err


@pytest.mark.parametrize("number", [HUGE, ABOVE_INT32, ABOVE_INT64, "2147483647", "0"])
def test_path_version_beyond_the_store_is_not_found(fn: TestClient, number: str) -> None:
    for method in ("GET", "DELETE"):
        err = _refused(fn.request(method, f"/functions/fn/versions/{number}"), 404,
                       "VersionNotFound")
        assert number in err["message"]
        err = _refused(fn.request(method, f"/layers/lay/versions/{number}"), 404,
                       "LayerNotFound")
        assert number in err["message"]
    # The function and the layer are looked up first, as for any version.
    _refused(fn.get(f"/functions/nope/versions/{number}"), 404, "FunctionNotFound")
    _refused(fn.get(f"/layers/nope/versions/{number}"), 404, "LayerNotFound")
    assert fn.get("/functions/fn/versions/1").status_code == 200


@pytest.mark.parametrize("number", [HUGE, ABOVE_INT32])
def test_qualifier_beyond_the_store_is_a_bad_request(fn: TestClient, number: str) -> None:
    for mode in ("sync", "async"):
        answer = fn.post(f"/functions/fn/invoke?qualifier={number}", json={},
                         headers={"X-Ember-Invocation-Type": mode})
        assert _refused(answer, 400, "InvalidSpec")["details"]["field"] == "qualifier"
    answer = fn.get(f"/functions/fn/code?qualifier={number}")
    assert _refused(answer, 400, "InvalidSpec")["details"]["field"] == "qualifier"
    answer = fn.get("/functions/fn/http/hello", headers={"X-Ember-Qualifier": number})
    assert _refused(answer, 400, "InvalidSpec")["details"]["field"] == "qualifier"
    trigger = {"name": "t", "function": "fn", "qualifier": number,
               "source": {"kind": "http", "path": "/t"}}
    answer = fn.post("/triggers", json=trigger)
    assert _refused(answer, 400, "InvalidSpec")["details"]["field"] == "qualifier"


@pytest.mark.parametrize("number", [int(HUGE), 2**31])
def test_alias_and_layer_versions_beyond_the_store_are_bad_requests(
    fn: TestClient, number: int
) -> None:
    answer = fn.put("/functions/fn/aliases/live", json={"version": number})
    fields = [e["field"] for e in _refused(answer, 400, "InvalidSpec")["details"]["errors"]]
    assert fields == ["version"]
    answer = fn.put("/functions/fn/aliases/live",
                    json={"version": 1, "additional_version": number, "weight": 0.5})
    fields = [e["field"] for e in _refused(answer, 400, "InvalidSpec")["details"]["errors"]]
    assert fields == ["additional_version"]
    for config in ({"layers": [f"lay:{number}"]},):
        answer = fn.patch("/functions/fn", json={"config": config})
        err = _refused(answer, 400, "InvalidSpec")
        assert [e["field"] for e in err["details"]["errors"]] == ["config.layers"]
        answer = fn.post("/functions", json={"name": "other", "config": config, "code": code()})
        _refused(answer, 400, "InvalidSpec")
    assert fn.put("/functions/fn/aliases/live", json={"version": 1}).status_code == 201


def _queue_cursor(at: float, seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([at, seq]).encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [HUGE, ABOVE_INT64, "\uff11\uff12"])
def test_log_cursor_beyond_the_store_is_a_bad_request(fn: TestClient, cursor: str) -> None:
    answer = fn.get("/functions/fn/logs", params={"cursor": cursor})
    assert _refused(answer, 400, "InvalidSpec")["details"]["field"] == "cursor"


def test_task_and_dead_letter_cursors_beyond_the_store_are_bad_requests(
    fn: TestClient,
) -> None:
    for cursor in (_queue_cursor(1.0, int(HUGE)), _queue_cursor(1.0, 2**63)):
        for path in ("/functions/fn/tasks", "/dead-letters"):
            answer = fn.get(path, params={"cursor": cursor})
            assert _refused(answer, 400, "InvalidRequest")["details"]["field"] == "cursor"
    answer = fn.get("/functions/fn/tasks", params={"cursor": _queue_cursor(1.0, 5)})
    assert answer.status_code == 200
