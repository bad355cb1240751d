"""Workflow, execution and event routes in process: deploys as JSON and YAML, refused
documents, revisions, runs with waits and idempotency keys, reading, listing, cancelling,
deleting, and CloudEvents in structured and binary mode."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from tests.api.conftest import create, error_of


def doc(name: str, do: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"document": {"dsl": "1.0.0", "namespace": "test", "name": name,
                         "version": "1.0.0"}, "do": do, **extra}


GREET = [{"greet": {"set": {"greeting": "${ \"hello \" + .name }"}}}]
WAIT = [{"pause": {"wait": "PT1H"}}]


def listen(type_: str) -> list[dict[str, Any]]:
    return [{"shipped": {"listen": {"to": {"one": {"with": {"type": type_}}}}}}]


def deploy(api: TestClient, name: str, do: list[dict[str, Any]], code: int = 201,
           ) -> dict[str, Any]:
    answer = api.put(f"/workflows/{name}", json=doc(name, do))
    assert answer.status_code == code, answer.text
    body: dict[str, Any] = answer.json()
    return body


def start(api: TestClient, name: str, input: Any = None, **params: Any) -> dict[str, Any]:
    answer = api.post(f"/workflows/{name}/executions", json={"input": input}, params=params)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_deploy_json_and_yaml_revisions(api: TestClient) -> None:
    first = deploy(api, "greet", GREET)
    assert first["name"] == "greet" and first["revision"] == 1 and first["changed"] is True
    assert (first["namespace"], first["version"]) == ("test", "1.0.0")
    assert first["document"]["do"] == GREET
    assert first["created_at"] and first["updated_at"]

    # The same document again saves nothing.
    again = deploy(api, "greet", GREET, code=200)
    assert again["revision"] == 1 and again["changed"] is False

    # YAML, under each of its media types, makes the next revisions.
    changed = doc("greet", [{"greet": {"set": {"greeting": "hi"}}}])
    for revision, media in enumerate(
            ["application/yaml", "application/x-yaml", "text/yaml; charset=utf-8"], start=2):
        changed["document"]["version"] = f"1.0.{revision}"
        answer = api.put("/workflows/greet", content=yaml.safe_dump(changed),
                         headers={"Content-Type": media})
        assert answer.status_code == 200, answer.text
        assert answer.json()["revision"] == revision and answer.json()["changed"] is True
    got = api.get("/workflows/greet").json()
    assert got["revision"] == 4 and got["version"] == "1.0.4"
    assert got["document"]["do"] == [{"greet": {"set": {"greeting": "hi"}}}]

    deploy(api, "greet-two", GREET)
    deploy(api, "other", GREET)
    listed = api.get("/workflows").json()
    assert [w["name"] for w in listed["workflows"]] == ["greet", "greet-two", "other"]
    assert all("document" not in w for w in listed["workflows"])
    assert listed["next_cursor"] is None
    page = api.get("/workflows", params={"prefix": "greet", "limit": 1}).json()
    assert [w["name"] for w in page["workflows"]] == ["greet"] and page["next_cursor"]
    rest = api.get("/workflows", params={"prefix": "greet", "cursor": page["next_cursor"]})
    assert [w["name"] for w in rest.json()["workflows"]] == ["greet-two"]


def test_refused_documents(api: TestClient) -> None:
    answer = api.put("/workflows/bad", json=doc("bad", [{"x": {"call": "grpc"}}]))
    assert answer.status_code == 400
    err = error_of(answer)
    assert err["code"] == "InvalidSpec"
    assert [e["field"] for e in err["details"]["errors"]] == ["do[0].x.call"]

    mismatch = api.put("/workflows/bad", json=doc("good", GREET))
    assert mismatch.status_code == 400
    assert [e["field"] for e in error_of(mismatch)["details"]["errors"]] == ["document.name"]

    broken = api.put("/workflows/bad", content=b"do: [", headers={"Content-Type": "text/yaml"})
    assert broken.status_code == 400 and error_of(broken)["code"] == "InvalidSpec"

    huge = doc("huge", GREET, metadata={"pad": "x" * (1024 * 1024)})
    too_large = api.put("/workflows/huge", json=huge)
    assert too_large.status_code == 413 and error_of(too_large)["code"] == "PayloadTooLarge"
    assert api.get("/workflows/bad").status_code == 404
    assert error_of(api.get("/workflows/bad"))["code"] == "WorkflowNotFound"


def test_run_with_wait_and_idempotency_key(api: TestClient) -> None:
    deploy(api, "greet", GREET)
    done = start(api, "greet", {"name": "Ada"}, wait_s=60)
    assert done["status"] == "succeeded", done["error"]
    assert done["output"] == {"greeting": "hello Ada"} and done["input"] == {"name": "Ada"}
    assert done["workflow"] == "greet" and done["revision"] == 1
    assert done["finished_at"] and done["error"] is None and done["reruns"] == 0
    assert done["parent"] is None and done["progress"] == []
    [step] = done["history"]
    assert step["key"] == step["path"] == "/do/0/greet" and step["status"] == "succeeded"
    assert step["started_at"] and step["ended_at"] and step["attempts"] == 1

    # No body: the input is null.
    bare = api.post("/workflows/greet/executions", params={"wait_s": 60})
    assert bare.status_code == 201 and bare.json()["input"] is None

    key = {"X-Ember-Idempotency-Key": "order-17"}
    first = api.post("/workflows/greet/executions", json={"input": {"name": "a"}}, headers=key)
    second = api.post("/workflows/greet/executions", json={"input": {"name": "b"}}, headers=key)
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["input"] == {"name": "a"}

    assert api.post("/workflows/ghost/executions").status_code == 404
    unknown = api.post("/workflows/greet/executions", json={"input": 1, "extra": 2})
    assert unknown.status_code == 400
    assert [e["field"] for e in error_of(unknown)["details"]["errors"]] == ["extra"]
    assert api.post("/workflows/greet/executions", params={"wait_s": 901}).status_code == 400


def test_run_calls_a_function(api: TestClient) -> None:
    create(api, "hello")
    deploy(api, "hi", [{"say": {"call": "hello", "with": {"name": "${ .name }"}}}])
    done = start(api, "hi", {"name": "Ada"}, wait_s=60)
    assert done["status"] == "succeeded", done["error"]
    assert done["output"] == {"hello": {"name": "Ada"}}
    [step] = done["history"]
    assert step["function"] == "hello" and step["version"]
    assert step["request_id"]


def test_get_list_and_filter(api: TestClient) -> None:
    deploy(api, "greet", GREET)
    deploy(api, "pause", WAIT)
    done = start(api, "greet", {"name": "x"}, wait_s=60)
    waiting = start(api, "pause")
    assert waiting["status"] == "waiting"

    got = api.get(f"/executions/{done['id']}").json()
    assert got["id"] == done["id"] and got["history"] == done["history"]
    bare = api.get(f"/executions/{done['id']}", params={"history": "false"}).json()
    assert "history" not in bare and bare["output"] == done["output"]
    # A wait on a finished execution answers at once.
    assert api.get(f"/executions/{done['id']}", params={"wait_s": 900}).json()["status"] \
        == "succeeded"
    assert error_of(api.get("/executions/nope"))["code"] == "ExecutionNotFound"

    def ids(answer: Any) -> list[str]:
        assert answer.status_code == 200, answer.text
        executions = answer.json()["executions"]
        assert all("history" not in e for e in executions)
        return [e["id"] for e in executions]

    assert ids(api.get("/executions")) == [waiting["id"], done["id"]]  # newest first
    assert ids(api.get("/workflows/greet/executions")) == [done["id"]]
    assert ids(api.get("/executions", params={"workflow": "pause"})) == [waiting["id"]]
    assert ids(api.get("/executions", params=[("status", "waiting"), ("status", "failed")])) \
        == [waiting["id"]]
    assert ids(api.get("/workflows/pause/executions", params={"status": "succeeded"})) == []
    page = api.get("/executions", params={"limit": 1}).json()
    assert ids(api.get("/executions", params={"cursor": page["next_cursor"]})) == [done["id"]]
    bad = api.get("/executions", params={"status": "done"})
    assert bad.status_code == 400 and error_of(bad)["details"]["field"] == "status"
    assert error_of(api.get("/workflows/ghost/executions"))["code"] == "WorkflowNotFound"


def test_cancel_and_delete(api: TestClient) -> None:
    deploy(api, "pause", WAIT)
    first = start(api, "pause")
    cancelled = api.post(f"/executions/{first['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "cancelled" and body["finished_at"]
    # Cancelling a finished execution changes nothing.
    assert api.post(f"/executions/{first['id']}/cancel").json()["status"] == "cancelled"
    assert error_of(api.post("/executions/nope/cancel"))["code"] == "ExecutionNotFound"

    second = start(api, "pause")
    refused = api.delete("/workflows/pause")
    assert refused.status_code == 409
    err = error_of(refused)
    assert err["code"] == "Conflict" and err["details"]["running"] == 1
    assert api.delete("/workflows/pause", params={"force": "false"}).status_code == 409
    forced = api.delete("/workflows/pause", params={"force": "true"})
    assert forced.status_code == 204 and forced.content == b""
    assert api.get("/workflows/pause").status_code == 404
    assert api.get(f"/executions/{second['id']}").json()["status"] == "cancelled"
    assert api.delete("/workflows/pause").status_code == 404


def test_for_progress(api: TestClient) -> None:
    deploy(api, "each", [{"all": {"for": {"in": ".items", "each": "item"},
                                  "do": [{"one": {"set": {"n": "${ $item }"}}}]}}])
    done = start(api, "each", {"items": [1, 2, 3]}, wait_s=60)
    assert done["status"] == "succeeded", done["error"]
    [progress] = done["progress"]
    assert progress["path"] == "/do/0/all"
    assert (progress["total"], progress["done"], progress["failed"]) == (3, 3, 0)
    assert progress["failed_items"] == []
    keys = [s["key"] for s in done["history"]]
    assert keys[0] == "/do/0/all" and len(keys) == 4


def test_event_structured_and_binary(api: TestClient) -> None:
    deploy(api, "ship", listen("com.shop.shipped"))
    waiting = start(api, "ship")
    assert waiting["status"] == "waiting"
    event = {"specversion": "1.0", "id": "e1", "source": "tests", "type": "com.shop.shipped",
             "data": {"order": 17}}
    answer = api.post("/events", content=json.dumps(event),
                      headers={"Content-Type": "application/cloudevents+json"})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"id": "e1", "matched": {"executions": 1, "schedules": 0},
                             "retained": False, "duplicate": False}
    done = api.get(f"/executions/{waiting['id']}", params={"wait_s": 60}).json()
    assert done["status"] == "succeeded" and done["output"] == [{"order": 17}]

    # Plain JSON with specversion is structured mode too. Nobody listens: the event is
    # retained, and the same source and id again is a duplicate.
    other = {**event, "id": "e0", "type": "com.shop.other"}
    kept = api.post("/events", json=other)
    assert kept.status_code == 202, kept.text
    assert kept.json()["retained"] is True and kept.json()["duplicate"] is False
    assert api.post("/events", json=other).json()["duplicate"] is True

    # Binary mode: attributes in ce-* headers, the body as data.
    second = start(api, "ship")
    headers = {"ce-id": "e2", "ce-source": "tests", "ce-type": "com.shop.shipped",
               "ce-specversion": "1.0", "ce-orderid": "o%2017",
               "Content-Type": "application/json"}
    binary = api.post("/events", content=b'{"order": 18}', headers=headers)
    assert binary.status_code == 202, binary.text
    assert binary.json()["matched"] == {"executions": 1, "schedules": 0}
    done = api.get(f"/executions/{second['id']}", params={"wait_s": 60}).json()
    assert done["output"] == [{"order": 18}]

    # Nobody listens: the event is retained for a later listen.
    text = api.post("/events", content=b"hello", headers={
        **headers, "ce-id": "e3", "Content-Type": "text/plain"})
    assert text.json()["retained"] is True and text.json()["matched"]["executions"] == 0
    third = start(api, "ship", wait_s=60)
    assert third["status"] == "succeeded" and third["output"] == ["hello"]


@pytest.mark.parametrize(("content", "headers", "field"), [
    (b'{"type": "a"}', {"Content-Type": "application/json"}, "body"),
    (b"not json", {"Content-Type": "application/cloudevents+json"}, "body"),
    (b'{"specversion": "1.0", "type": "a"}', {"Content-Type": "application/json"}, "source"),
    (b"", {"ce-specversion": "1.0", "ce-type": "a"}, "source"),
    (b"{", {"ce-specversion": "1.0", "ce-type": "a", "ce-source": "s",
            "Content-Type": "application/json"}, "body"),
])
def test_events_refused(api: TestClient, content: bytes, headers: dict[str, str],
                        field: str) -> None:
    answer = api.post("/events", content=content, headers=headers)
    assert answer.status_code == 400, answer.text
    details = error_of(answer)["details"]
    assert field in [details.get("field")] + [e["field"] for e in details.get("errors", [])]


def test_payload_limits(api: TestClient) -> None:
    deploy(api, "greet", GREET)
    limits = api.app.state.services.limits  # type: ignore[attr-defined]
    big = {"input": "x" * limits.max_sync_payload_bytes}
    assert api.post("/workflows/greet/executions", json=big).status_code == 413
    event = {"specversion": "1.0", "source": "s", "type": "t",
             "data": "x" * limits.max_async_payload_bytes}
    answer = api.post("/events", json=event)
    assert answer.status_code == 413 and error_of(answer)["code"] == "PayloadTooLarge"
