"""Triggers through the SDK against the real app in process: round trips on both clients,
the errors, state changes, and HTTP triggers answering through the same transport."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ember.client import AsyncClient, Client, TriggerOut
from ember.errors import (
    AliasNotFound,
    Conflict,
    FunctionNotFound,
    InvalidSpec,
    TriggerNotFound,
    WorkflowNotFound,
)
from ember.sdk.triggers import REDACTED, source_spec
from tests.conftest import AUTH, make_zip

WEB = """
def handler(event, context):
    data = event["data"]
    return {"method": data["method"], "path": data["path"], "query": data["query"],
            "body": data["body"], "version": context.function_version,
            "trigger": context.trigger}
"""


@pytest.fixture
def served(app: FastAPI) -> Iterator[tuple[Client, TestClient]]:
    """The SDK and the raw HTTP client it sends through, over the real app."""
    with TestClient(app, base_url="http://ember", headers=AUTH) as http, Client(http=http) as sdk:
        yield sdk, http


def _fields(err: InvalidSpec) -> set[str]:
    return {e["field"] for e in err.details["errors"]}


def test_round_trip(served: tuple[Client, TestClient]) -> None:
    client, _ = served
    client.create_function("web", make_zip({"main.py": WEB}))
    client.publish_version("web")
    client.set_alias("web", "live", 1)

    created = client.create_trigger(
        "orders", "web", {"kind": "http", "path": "/orders/"}, qualifier="live",
        description="orders API",
    )
    assert isinstance(created, TriggerOut)
    assert (created.function, created.qualifier, created.state) == ("web", "live", "enabled")
    assert created.source == {"kind": "http", "path": "/orders", "methods": ["GET", "POST"],
                              "auth": "none", "api_key": None}
    assert created.description == "orders API" and created.status["connected"] is True
    assert client.get_trigger("orders").source == created.source
    client.create_trigger("tick", "web", {"kind": "timer", "schedule": "rate(1 day)"})
    assert [t.name for t in client.list_triggers()] == ["orders", "tick"]
    assert [t.name for t in client.list_triggers(function="web")] == ["orders", "tick"]

    # Only what is given changes; a version number may be given as an int.
    moved = client.update_trigger("orders", qualifier=1)
    assert moved.qualifier == "1" and moved.description == "orders API"
    assert moved.updated_at >= created.updated_at
    # A new source replaces the old whole: its fields not given take their defaults.
    client.update_trigger("orders", source={"kind": "http", "path": "/o", "methods": ["put"]})
    replaced = client.update_trigger("orders", source={"kind": "http", "path": "/o"},
                                     description="")
    assert replaced.source["methods"] == ["GET", "POST"] and replaced.description == ""
    assert replaced.qualifier == "1"

    deleted = client.delete_trigger("orders")
    assert deleted.name == "orders"
    with pytest.raises(TriggerNotFound):
        client.get_trigger("orders")
    # Deleting the function deletes its triggers.
    client.delete_function("web")
    assert client.list_triggers() == []


def test_errors_name_the_field(served: tuple[Client, TestClient]) -> None:
    client, _ = served
    client.create_function("fn", make_zip({"main.py": WEB}))

    with pytest.raises(InvalidSpec) as missing:
        client.create_trigger("m", "fn", {"kind": "mqtt", "qos": 5})
    assert _fields(missing.value) == {"source.topic", "source.qos"}
    with pytest.raises(InvalidSpec) as schedule:
        client.create_trigger("t", "fn", {"kind": "timer", "schedule": "every day"})
    assert _fields(schedule.value) == {"source.schedule"}
    with pytest.raises(InvalidSpec) as unknown:
        client.create_trigger("t", "fn", {"kind": "http", "path": "/x", "verbs": ["GET"]})
    assert _fields(unknown.value) == {"source.verbs"}
    with pytest.raises(InvalidSpec):
        client.create_trigger("t", "fn", {"kind": "carrier-pigeon"})
    with pytest.raises(InvalidSpec) as name:
        client.create_trigger("9lives", "fn", {"kind": "http", "path": "/x"})
    assert _fields(name.value) == {"name"}

    with pytest.raises(FunctionNotFound):
        client.create_trigger("t", "ghost", {"kind": "http", "path": "/x"})
    with pytest.raises(AliasNotFound):
        client.create_trigger("t", "fn", {"kind": "http", "path": "/x"}, qualifier="live")
    with pytest.raises(FunctionNotFound):
        client.list_triggers(function="ghost")

    client.create_trigger("web", "fn", {"kind": "http", "path": "/web"})
    with pytest.raises(Conflict):
        client.create_trigger("web", "fn", {"kind": "http", "path": "/other"})
    with pytest.raises(Conflict) as taken:
        client.create_trigger("web2", "fn", {"kind": "http", "path": "/web"})
    assert taken.value.details["field"] == "source.path"
    with pytest.raises(InvalidSpec) as bad_update:
        client.update_trigger("web", source={"kind": "nats"})
    assert _fields(bad_update.value) == {"source.subject"}

    for call in (client.get_trigger, client.delete_trigger, client.pause_trigger,
                 client.resume_trigger, client.disable_trigger, client.enable_trigger):
        with pytest.raises(TriggerNotFound):
            call("nope")
    with pytest.raises(TriggerNotFound):
        client.update_trigger("nope", description="x")


def test_a_trigger_to_the_event_bus(served: tuple[Client, TestClient]) -> None:
    client, http = served
    bus = client.create_trigger("bus", None, {"kind": "http", "path": "/bus"},
                                target="events")
    assert (bus.target, bus.function, bus.qualifier) == ("events", None, None)
    answer = http.post("/http/bus", json={"n": 1})
    assert answer.status_code == 202, answer.text
    assert answer.json()["matched"] == {"executions": 0, "schedules": 0}
    assert client.get_trigger("bus").status["invocations"] == 1
    with pytest.raises(InvalidSpec) as bound:
        client.create_trigger("t", "fn", {"kind": "http", "path": "/t"}, target="events")
    assert _fields(bound.value) == {"function"}
    with pytest.raises(InvalidSpec) as unbound:
        client.create_trigger("t", None, {"kind": "http", "path": "/t"})
    assert _fields(unbound.value) == {"function"}
    with pytest.raises(InvalidSpec) as moved:
        client.update_trigger("bus", function="fn")
    assert _fields(moved.value) == {"function"}


def test_a_trigger_that_starts_a_workflow(served: tuple[Client, TestClient]) -> None:
    client, http = served
    client.deploy_workflow("flow", {
        "document": {"dsl": "1.0.0", "namespace": "test", "name": "flow", "version": "1.0.0"},
        "do": [{"keep": {"set": {"n": "${ .data.query.n }"}}}]})
    source = {"kind": "http", "path": "/flow"}
    made = client.create_trigger("flow", None, source, target="workflow", workflow="flow")
    assert (made.target, made.workflow, made.function) == ("workflow", "flow", None)
    answer = http.get("/http/flow", params={"n": "3"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["workflow"] == "flow" and answer.json()["created"] is True
    with pytest.raises(WorkflowNotFound):
        client.create_trigger("t", None, {"kind": "http", "path": "/t"}, target="workflow",
                              workflow="nowhere")
    with pytest.raises(InvalidSpec) as unnamed:
        client.create_trigger("t", None, {"kind": "http", "path": "/t"}, target="workflow")
    assert _fields(unnamed.value) == {"workflow"}
    with pytest.raises(Conflict):
        client.delete_workflow("flow")
    client.delete_trigger("flow")
    client.delete_workflow("flow")


def test_http_trigger_answers_through_the_same_transport(
    served: tuple[Client, TestClient],
) -> None:
    client, http = served
    client.create_function("web", make_zip({"main.py": WEB}))
    client.create_trigger("shop", "web", {"kind": "http", "path": "/shop"})

    got = http.get("/http/shop/items/7", params={"color": "red"})
    assert got.status_code == 200, got.text
    assert got.json() == {"method": "GET", "path": "/items/7", "query": {"color": "red"},
                          "body": None, "version": "latest", "trigger": "shop"}
    assert got.headers["x-ember-request-id"]
    posted = http.post("/http/shop", content=b'{"qty": 2}')
    assert posted.status_code == 200
    assert posted.json()["method"] == "POST" and posted.json()["body"] == '{"qty": 2}'
    assert http.put("/http/shop").status_code == 405  # only GET and POST

    status = client.get_trigger("shop").status
    assert (status["events"], status["invocations"], status["failures"]) == (2, 2, 0)
    assert status["last_event_at"] is not None and status["last_error"] is None


def test_state_changes(served: tuple[Client, TestClient]) -> None:
    client, http = served
    client.create_function("web", make_zip({"main.py": WEB}))
    client.create_trigger("st", "web", {"kind": "http", "path": "/st"})

    paused = client.pause_trigger("st")
    assert paused.state == "paused" and paused.status["connected"] is True
    assert http.get("/http/st").status_code == 503
    assert client.resume_trigger("st").state == "enabled"
    assert http.get("/http/st").status_code == 200

    disabled = client.disable_trigger("st")
    assert disabled.state == "disabled" and disabled.status["connected"] is False
    assert http.get("/http/st").status_code == 404
    # The state is kept across an update.
    assert client.update_trigger("st", description="off").state == "disabled"
    assert client.enable_trigger("st").state == "enabled"
    assert http.get("/http/st").status_code == 200
    assert client.get_trigger("st").status["invocations"] == 2


def test_api_key_is_required_and_never_read_back(served: tuple[Client, TestClient]) -> None:
    client, http = served
    client.create_function("web", make_zip({"main.py": WEB}))
    key = "k" * 20
    created = client.create_trigger(
        "private", "web", {"kind": "http", "path": "/private", "auth": "api_key", "api_key": key}
    )
    assert created.source["api_key"] == REDACTED
    assert client.get_trigger("private").source["api_key"] == REDACTED
    assert http.get("/http/private").status_code == 401
    assert http.get("/http/private", headers={"X-Api-Key": key}).status_code == 200
    assert http.get("/http/private", headers={"Authorization": f"Bearer {key}"}).is_success


def test_async_client(app: FastAPI) -> None:
    async def scenario() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with (
                httpx.AsyncClient(transport=transport, base_url="http://ember") as http,
                AsyncClient(http=http) as client,
            ):
                await client.create_function("web", make_zip({"main.py": WEB}))
                created = await client.create_trigger(
                    "a", "web", {"kind": "http", "path": "/a"}, description="async"
                )
                assert created.description == "async"
                assert (await client.get_trigger("a")).name == "a"
                assert [t.name for t in await client.list_triggers("web")] == ["a"]
                answer = await http.post("/http/a/x", content=b"hi")
                assert answer.json()["path"] == "/x" and answer.json()["body"] == "hi"
                assert (await client.update_trigger("a", description="")).description == ""
                assert (await client.pause_trigger("a")).state == "paused"
                assert (await http.get("/http/a")).status_code == 503
                assert (await client.resume_trigger("a")).state == "enabled"
                assert (await client.disable_trigger("a")).state == "disabled"
                assert (await client.enable_trigger("a")).state == "enabled"
                assert (await client.get_trigger("a")).status["events"] == 1
                await client.delete_trigger("a")
                with pytest.raises(TriggerNotFound):
                    await client.get_trigger("a")
                with pytest.raises(InvalidSpec) as bad:
                    await client.create_trigger("b", "web", {"kind": "mqtt"})
                assert _fields(bad.value) == {"source.topic"}

    asyncio.run(scenario())


def test_source_spec_fills_defaults_like_the_server() -> None:
    assert source_spec({"kind": "http", "path": "/a/", "methods": ["get"]}) == {
        "kind": "http", "path": "/a", "methods": ["GET"], "auth": "none", "api_key": None,
    }
    assert source_spec({"kind": "mqtt", "topic": "a/#"})["qos"] == 1
    with pytest.raises(InvalidSpec) as bad:
        source_spec({"kind": "mqtt", "qos": 5})
    assert _fields(bad.value) == {"source.topic", "source.qos"}
    with pytest.raises(InvalidSpec) as unknown:
        source_spec({"kind": "timer", "schedule": "rate(1 minute)", "every": 1})
    assert _fields(unknown.value) == {"source.every"}
