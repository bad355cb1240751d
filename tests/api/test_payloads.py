"""Input that would break instances is refused when it arrives: environment values holding a
NUL byte, and JSON events nested deeper than the runtime can parse."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from ember.api.payloads import MAX_JSON_DEPTH, json_depth
from tests.api.conftest import code, create, error_of

ECHO = {"main.py": "import os\n\ndef handler(event, context):\n"
                   "    if isinstance(event, bytes):\n"
                   "        event = len(event)\n"
                   "    return {'event': event, 'env': os.environ.get('GREETING')}\n"}


def _fields(answer: object) -> list[str]:
    assert answer.status_code == 400, answer.text  # type: ignore[attr-defined]
    err = error_of(answer)
    assert err["code"] == "InvalidSpec"
    return [e["field"] for e in err["details"]["errors"]]


def test_environment_value_with_nul_is_refused(api: TestClient) -> None:
    bad = {"GREETING": "hi\x00there"}
    answer = api.post("/functions", json={"name": "fn", "config": {"environment": bad},
                                          "code": code(ECHO)})
    assert _fields(answer) == ["config.environment.GREETING"]
    assert "NUL" in error_of(answer)["message"]
    assert api.get("/functions/fn").status_code == 404

    good = {"environment": {"GREETING": "hi"}}
    answer = api.post("/functions", json={"name": "fn", "config": good, "code": code(ECHO)})
    assert answer.status_code == 201, answer.text
    assert _fields(api.patch("/functions/fn", json={"config": {"environment": bad}})) == [
        "config.environment.GREETING"
    ]
    # Nothing was changed, and the function still runs.
    answer = api.post("/functions/fn/invoke", json=1)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"event": 1, "env": "hi"}


@pytest.mark.parametrize("name", ["A\x00B", "A\x00", "A\n", ""])
def test_environment_name_with_nul_or_newline_is_refused(api: TestClient, name: str) -> None:
    answer = api.post("/functions", json={"name": "fn", "config": {"environment": {name: "x"}},
                                          "code": code()})
    assert _fields(answer) == ["config.environment"]
    assert repr(name) in error_of(answer)["message"]


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_deeply_nested_event_is_refused_before_an_instance(api: TestClient, mode: str) -> None:
    create(api, "fn", **{"async": {"max_retries": 0}})
    for depth in (MAX_JSON_DEPTH + 1, 100_000):
        answer = api.post("/functions/fn/invoke", content=_nested(depth),
                          headers={"Content-Type": "application/json",
                                   "X-Ember-Invocation-Type": mode})
        assert answer.status_code == 400, answer.text
        err = error_of(answer)
        assert err["code"] == "InvalidPayload"
        assert err["details"]["limit"] == MAX_JSON_DEPTH
    assert api.get("/functions/fn/tasks").json()["tasks"] == []
    # Nothing reached an instance: the function's first invocation is its cold start.
    answer = api.post("/functions/fn/invoke", content=_nested(MAX_JSON_DEPTH),
                      headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Ember-Cold-Start"] == "true"


def test_brackets_in_strings_and_other_media_types_do_not_count(api: TestClient) -> None:
    answer = api.post("/functions", json={"name": "fn", "code": code(ECHO)})
    assert answer.status_code == 201, answer.text
    deep_text = "[{" * 100_000
    answer = api.post("/functions/fn/invoke", json={"text": deep_text})
    assert answer.status_code == 200, answer.text
    assert answer.json()["event"] == {"text": deep_text}
    answer = api.post("/functions/fn/invoke", content=_nested(100_000),
                      headers={"Content-Type": "application/octet-stream"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["event"] == 200_000


@pytest.mark.parametrize(
    "value",
    [
        [], {}, "[[[", ["]]]", "\\", ['"[']], {"a\\\"[": {"b": [[{}]]}},
        [[{"x": [1, {"y": "}}}"}]}], "\\\\"], json.loads(_nested(40)),
    ],
)
def test_json_depth_counts_only_structure(value: object) -> None:
    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    assert json_depth(json.dumps(value).encode()) == depth(value)


def test_nul_in_names_queries_and_bodies_is_refused(api: TestClient) -> None:
    """PostgreSQL cannot hold a NUL character: every store would refuse it the same way."""
    create(api, "fn")
    for method, path in (
        ("GET", "/functions/a%00b"), ("POST", "/functions/a%00b/invoke"),
        ("GET", "/triggers/%00"), ("GET", "/layers/%00/versions"), ("GET", "/builds/%00"),
        ("GET", "/functions/a%00/http/x"),
    ):
        answer = api.request(method, path)
        assert answer.status_code == 400, (path, answer.text)
        assert error_of(answer)["details"] == {"field": "path"}
    for query in ("prefix=%00", "tag=a%00"):
        answer = api.get(f"/functions?{query}")
        assert answer.status_code == 400, answer.text
        assert error_of(answer)["details"] == {"field": "query"}
    for method, path, body, field in (
        ("POST", "/functions/fn/versions", {"description": "v\x00"}, "description"),
        ("PATCH", "/functions/fn", {"config": {"tags": {"k": "\x00"}}}, "config.tags.k"),
        ("POST", "/layers/lay/versions", {**code(), "description": "\x00"}, "description"),
        ("POST", "/triggers", {"name": "t", "function": "fn", "description": "\x00",
                               "source": {"kind": "http", "path": "/t"}}, "description"),
    ):
        assert _fields(api.request(method, path, json=body)) == [field], path
    # A NUL in an event is the function's business.
    answer = api.post("/functions/fn/invoke", json={"text": "a\x00b"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"hello": {"text": "a\x00b"}}
