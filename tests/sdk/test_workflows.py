"""Workflows through the SDK against the real app in process: deploys from text and
mappings, runs, reads, lists, cancels, deletes and events on both clients, and the errors
each raises."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ember.client import AsyncClient, Client, EventOut, ExecutionOut, WorkflowDeployOut
from ember.errors import (
    Conflict,
    ExecutionNotFound,
    InvalidRequest,
    InvalidSpec,
    PayloadTooLarge,
    WorkflowNotFound,
)
from ember.sdk.workflows import document_type, send_event
from tests.conftest import AUTH, make_zip
from tests.sdk.conftest import ECHO


@pytest.fixture
def client(app: FastAPI) -> Iterator[Client]:
    """The sync SDK over the app in process, with a timeout longer than any long poll here,
    so that it sends none of its own (TestClient warns about per-request timeouts)."""
    with TestClient(app, base_url="http://ember", headers=AUTH) as http, Client(http=http) as sdk:
        http.timeout = httpx.Timeout(120)
        yield sdk


def doc(name: str, do: list[dict[str, Any]]) -> dict[str, Any]:
    return {"document": {"dsl": "1.0.0", "namespace": "test", "name": name,
                         "version": "1.0.0"}, "do": do}


SET = [{"double": {"set": {"n": "${ .n * 2 }"}}}]
WAIT = [{"pause": {"wait": "PT1H"}}]
LISTEN = [{"shipped": {"listen": {"to": {"one": {"with": {"type": "com.shop.shipped"}}}}}}]


def test_deploy_forms(client: Client) -> None:
    created = client.deploy_workflow("double", doc("double", SET))
    assert isinstance(created, WorkflowDeployOut)
    assert (created.revision, created.changed) == (1, True)
    # The same document as YAML text and as JSON text is no change.
    assert client.deploy_workflow("double", yaml.safe_dump(doc("double", SET))).changed is False
    as_json = json.dumps(doc("double", SET)).encode()
    assert document_type(as_json) == "application/json"
    assert document_type("  document: {}") == "application/yaml"
    assert client.deploy_workflow("double", as_json).changed is False
    updated = client.deploy_workflow("double", yaml.safe_dump(doc("double", WAIT)),
                                     content_type="application/yaml")
    assert (updated.revision, updated.changed) == (2, True)

    got = client.get_workflow("double")
    assert got.revision == 2 and got.document is not None and got.document["do"] == WAIT
    client.deploy_workflow("other", doc("other", SET))
    page = client.list_workflows(limit=1)
    assert [w.name for w in page.workflows] == ["double"] and page.workflows[0].document is None
    rest = client.list_workflows(cursor=page.next_cursor)
    assert [w.name for w in rest.workflows] == ["other"] and rest.next_cursor is None
    assert [w.name for w in client.list_workflows(prefix="oth").workflows] == ["other"]


def test_errors(client: Client) -> None:
    with pytest.raises(InvalidSpec) as invalid:
        client.deploy_workflow("bad", doc("bad", [{"x": {"call": "grpc"}}]))
    assert [e["field"] for e in invalid.value.details["errors"]] == ["do[0].x.call"]
    with pytest.raises(InvalidSpec) as mismatch:
        client.deploy_workflow("bad", doc("good", SET))
    assert [e["field"] for e in mismatch.value.details["errors"]] == ["document.name"]
    with pytest.raises(PayloadTooLarge):
        client.deploy_workflow("big", "#" + "x" * (1024 * 1024))
    for call in (client.get_workflow, client.delete_workflow, client.run_workflow):
        with pytest.raises(WorkflowNotFound):
            call("ghost")
    with pytest.raises(WorkflowNotFound):
        client.list_executions(workflow="ghost")
    for execution_call in (client.get_execution, client.cancel_execution):
        with pytest.raises(ExecutionNotFound):
            execution_call("nope")
    with pytest.raises(InvalidRequest) as status:
        client.list_executions(status="done")
    assert status.value.details["field"] == "status"
    with pytest.raises(InvalidSpec) as event:
        client.send_event("")
    assert [e["field"] for e in event.value.details["errors"]] == ["type"]


def test_run_follow_cancel_delete(client: Client) -> None:
    client.create_function("echo", make_zip({"main.py": ECHO}))
    client.deploy_workflow("echo", doc("echo", [{"call": {"call": "echo"}}]))
    done = client.run_workflow("echo", {"n": 1}, wait_s=60)
    assert isinstance(done, ExecutionOut)
    assert done.status == "succeeded" and not done.active
    assert done.output == {"event": {"n": 1}, "version": "latest"}
    assert done.history is not None and done.history[0].function == "echo"
    assert done.history[0].request_id

    same = client.run_workflow("echo", {"n": 2}, idempotency_key="k1")
    again = client.run_workflow("echo", {"n": 3}, idempotency_key="k1")
    assert again.id == same.id and again.input == {"n": 2}
    assert client.get_execution(same.id, wait_s=60).status == "succeeded"
    assert client.get_execution(same.id, history=False).history is None

    client.deploy_workflow("pause", doc("pause", WAIT))
    waiting = client.run_workflow("pause")
    assert waiting.status == "waiting" and waiting.active and waiting.input is None
    listed = client.list_executions(status=["waiting", "failed"])
    assert [e.id for e in listed.executions] == [waiting.id]
    assert listed.executions[0].history is None
    assert len(client.list_executions(workflow="echo", status="succeeded").executions) == 2
    assert [e.id for e in client.list_executions(limit=1).executions] == [waiting.id]

    cancelled = client.cancel_execution(waiting.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None

    running = client.run_workflow("pause")
    with pytest.raises(Conflict) as refused:
        client.delete_workflow("pause")
    assert refused.value.details["running"] == 1
    assert client.delete_workflow("pause", force=True) is None
    assert client.get_execution(running.id).status == "cancelled"
    with pytest.raises(WorkflowNotFound):
        client.get_workflow("pause")


def test_events(client: Client) -> None:
    client.deploy_workflow("ship", doc("ship", LISTEN))
    waiting = client.run_workflow("ship")
    sent = client.send_event("com.shop.shipped", {"order": 7}, source="tests", subject="o7",
                             id="ev-1", extensions={"orderid": "7"})
    assert isinstance(sent, EventOut)
    assert sent.id == "ev-1" and sent.matched.executions == 1 and not sent.retained
    done = client.get_execution(waiting.id, wait_s=60)
    assert done.status == "succeeded" and done.output == [{"order": 7}]

    kept = client.send_event("com.shop.other")
    assert kept.retained and kept.matched.executions == 0 and kept.id
    assert client.send_event("com.shop.other", id=kept.id).duplicate


def test_send_event_is_structured() -> None:
    call = send_event("t", [1], subject="s", id="i", extensions={"x": 1})
    assert call.headers == {"Content-Type": "application/cloudevents+json"}
    assert call.content is not None
    assert json.loads(call.content) == {
        "specversion": "1.0", "id": "i", "source": "ember.cli", "type": "t", "subject": "s",
        "datacontenttype": "application/json", "data": [1], "x": 1,
    }
    # No data, no datacontenttype; ids are new each time.
    bare = json.loads(send_event("t").content or b"")
    assert "data" not in bare and "datacontenttype" not in bare
    assert bare["id"] != json.loads(send_event("t").content or b"")["id"]


def test_async_client(app: FastAPI) -> None:
    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with (
                httpx.AsyncClient(transport=transport, base_url="http://ember") as http,
                AsyncClient(http=http) as client,
            ):
                created = await client.deploy_workflow("double", doc("double", SET))
                assert created.changed
                done = await client.run_workflow("double", {"n": 4}, wait_s=60)
                assert done.status == "succeeded" and done.output == {"n": 8}
                assert (await client.get_execution(done.id)).id == done.id
                assert [w.name for w in (await client.list_workflows()).workflows] == ["double"]
                listed = await client.list_executions(workflow="double")
                assert [e.id for e in listed.executions] == [done.id]
                assert (await client.cancel_execution(done.id)).status == "succeeded"
                assert (await client.send_event("t")).retained
                await client.delete_workflow("double")
                with pytest.raises(WorkflowNotFound):
                    await client.get_workflow("double")

    asyncio.run(scenario())
