"""Async invocation, task mode and dead letters through the SDK: the sync client against the
real app in process, the async client through ASGITransport, and the requests on the wire."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ember.client import (
    AcceptedOut,
    AsyncClient,
    Client,
    TaskOut,
    decode_body,
    task_error,
)
from ember.errors import (
    FunctionError,
    FunctionNotFound,
    InvalidSpec,
    NotFound,
    TaskNotFound,
)
from ember.settings import Settings
from tests.conftest import AUTH, make_zip
from tests.waiting import DEADLINE_S, wait_until

ECHO = "def handler(event, context):\n    return event\n"
BOOM = "def handler(event, context):\n    raise ValueError('boom')\n"
SLOW = (
    "import time\n\n"
    "def handler(event, context):\n"
    "    time.sleep(event)\n"
    "    return event\n"
)


@pytest.fixture
def settings(home: Path) -> Settings:
    # Retries after a few hundredths of a second instead of one second and more.
    return Settings(home=home, async_retry_delay_s=0.05, async_system_delay_s=0.05)


@pytest.fixture
def client(app: FastAPI) -> Iterator[Client]:
    """The sync SDK over the app in process, with a timeout longer than any long poll here,
    so that it sends none of its own (TestClient warns about per-request timeouts)."""
    with TestClient(app, base_url="http://ember", headers=AUTH) as http, Client(http=http) as sdk:
        http.timeout = httpx.Timeout(120)
        yield sdk


@pytest.fixture
def ember(client: Client) -> Client:
    client.create_function("echo", make_zip({"main.py": ECHO}))
    client.create_function("boom", make_zip({"main.py": BOOM}), {"async": {"max_retries": 1}})
    client.create_function("slow", make_zip({"main.py": SLOW}), {"timeout_s": 900})
    return client


def wait_for_status(client: Client, task_id: str, status: str) -> TaskOut:
    def reached() -> TaskOut | None:
        task = client.get_task(task_id)
        return task if task.status == status else None

    return wait_until(reached, message=f"task {task_id} {status}")


# the sync client against the app -----------------------------------------------------------


def test_invoke_async_then_wait_for_the_result(ember: Client) -> None:
    accepted = ember.invoke_async("echo", {"a": 1})
    assert isinstance(accepted, AcceptedOut)
    assert accepted.deduplicated is False and accepted.task.id == accepted.request_id
    assert accepted.task.status in {"queued", "running"}

    task = ember.wait_task(accepted.request_id, timeout_s=DEADLINE_S)
    assert task.status == "succeeded" and task.attempts == 1
    assert decode_body(task.result) == {"a": 1} and task_error(task) is None
    assert [a.outcome for a in task.history] == ["success"]
    assert ember.get_task(task.id).status == "succeeded"

    raw = ember.wait_task(ember.invoke_async("echo", b"\x00\x01").request_id, timeout_s=DEADLINE_S)
    assert raw.result_content_type == "application/octet-stream"
    assert decode_body(raw.result) == b"\x00\x01"

    listed = ember.list_tasks("echo", status="succeeded")
    assert {t.id for t in listed.tasks} == {task.id, raw.id}
    first = ember.list_tasks("echo", limit=1)
    assert len(first.tasks) == 1 and first.next_cursor
    rest = ember.list_tasks("echo", limit=1, cursor=first.next_cursor)
    assert {first.tasks[0].id, rest.tasks[0].id} == {task.id, raw.id}


def test_idempotency_key_returns_the_first_task(ember: Client) -> None:
    first = ember.invoke_async("echo", 1, idempotency_key="order-17")
    again = ember.invoke_async("echo", 2, idempotency_key="order-17")
    other = ember.invoke_async("echo", 3, idempotency_key="order-18")
    assert again.request_id == first.request_id and again.deduplicated
    assert not first.deduplicated and other.request_id != first.request_id
    task = ember.wait_task(first.request_id, timeout_s=DEADLINE_S)
    assert decode_body(task.result) == 1 and task.idempotency_key == "order-17"


def test_failures_go_to_the_dead_letters_and_redrive(ember: Client) -> None:
    task_id = ember.invoke_async("boom", {"n": 1}).request_id
    task = ember.wait_task(task_id, timeout_s=DEADLINE_S)
    assert task.status == "failed" and task.attempts == 2 and task.dead_lettered
    assert [a.outcome for a in task.history] == ["error", "error"]
    error = task_error(task)
    assert isinstance(error, FunctionError) and "boom" in error.message
    assert error.details["request_id"] == task_id

    assert [d.id for d in ember.list_dead_letters("boom").dead_letters] == [task_id]
    assert ember.list_dead_letters("echo").dead_letters == []
    dead = ember.get_dead_letter(task_id)
    assert dead.function == "boom" and decode_body(dead.payload) == {"n": 1}
    assert dead.reason["condition"] == "RetriesExhausted" and dead.reason["attempts"] == 2
    assert dead.reason["code"] == "FunctionError"

    redriven = ember.redrive(task_id)
    assert redriven.id == task_id and redriven.status in {"queued", "running"}
    again = ember.wait_task(task_id, timeout_s=DEADLINE_S)
    assert again.status == "failed" and again.dead_lettered
    assert len(again.history) == 4
    assert [d.id for d in ember.list_dead_letters().dead_letters] == [task_id]


def test_pause_keeps_events_queued_until_resume_and_stop_a_queued_task(ember: Client) -> None:
    paused = ember.pause_function("echo")
    assert paused.async_state == "paused" and ember.get_function("echo").async_state == "paused"
    kept = ember.invoke_async("echo", "kept").request_id
    dropped = ember.invoke_async("echo", "dropped").request_id

    started = time.monotonic()
    waited = ember.wait_task(kept, timeout_s=0.3, poll_s=0.1)
    assert waited.status == "queued"  # the time ran out: the last state, no error
    assert time.monotonic() - started >= 0.25

    stopped = ember.stop_task(dropped)
    assert stopped.status == "stopped" and stopped.attempts == 0
    assert ember.stop_task(dropped).status == "stopped"  # stopping again changes nothing

    assert ember.resume_function("echo").async_state == "running"
    assert decode_body(ember.wait_task(kept, timeout_s=DEADLINE_S).result) == "kept"
    assert ember.get_task(dropped).status == "stopped"


def test_stop_a_running_task(ember: Client) -> None:
    # The handler would run for an hour (up to its 900 s timeout): a stop that waited for
    # it instead of ending it would outlast the test's own timeout.
    task_id = ember.invoke_async("slow", 3600).request_id
    wait_for_status(ember, task_id, "running")
    stopped = ember.stop_task(task_id)
    assert stopped.status == "stopped"
    assert stopped.history[-1].outcome == "stopped"
    assert ember.wait_task(task_id, timeout_s=0).status == "stopped"


def test_errors(ember: Client) -> None:
    with pytest.raises(TaskNotFound):
        ember.get_task("no-such-task")
    with pytest.raises(TaskNotFound):
        ember.stop_task("no-such-task")
    with pytest.raises(NotFound):
        ember.get_dead_letter("no-such-task")
    with pytest.raises(NotFound):
        ember.redrive("no-such-task")
    with pytest.raises(FunctionNotFound):
        ember.invoke_async("missing", 1)
    with pytest.raises(FunctionNotFound):
        ember.list_tasks("missing")
    with pytest.raises(FunctionNotFound):
        ember.pause_function("missing")
    with pytest.raises(InvalidSpec):
        ember.list_tasks("echo", status="bogus")
    with pytest.raises(InvalidSpec):
        ember.invoke_async("echo", 1, idempotency_key="k" * 300)
    with pytest.raises(InvalidSpec):
        ember.get_task("x", wait_s=61)


def test_invoke_in_async_mode_still_returns_the_bare_answer(ember: Client) -> None:
    result = ember.invoke("echo", 7, mode="async")
    assert result.status_code == 202 and result.request_id
    assert result.json()["request_id"] == result.request_id
    assert ember.wait_task(result.request_id, timeout_s=DEADLINE_S).status == "succeeded"


# the async client --------------------------------------------------------------------------


def test_async_client_tasks_and_dead_letters(app: FastAPI) -> None:
    async def scenario() -> None:
        async with (
            app.router.lifespan_context(app),
            AsyncClient("http://ember", transport=httpx.ASGITransport(app=app)) as client,
        ):
            await client.create_function("echo", make_zip({"main.py": ECHO}))
            await client.create_function(
                "boom", make_zip({"main.py": BOOM}), {"async": {"max_retries": 0}}
            )
            accepted = await client.invoke_async("echo", [1, 2], idempotency_key="k")
            assert (await client.invoke_async("echo", 3, idempotency_key="k")).deduplicated
            task = await client.wait_task(accepted.request_id, timeout_s=DEADLINE_S)
            assert task.status == "succeeded" and decode_body(task.result) == [1, 2]
            assert [t.id for t in (await client.list_tasks("echo")).tasks] == [task.id]

            failed = await client.wait_task(
                (await client.invoke_async("boom")).request_id, timeout_s=DEADLINE_S
            )
            assert failed.status == "failed" and failed.attempts == 1
            dead = await client.get_dead_letter(failed.id)
            assert dead.reason["condition"] == "RetriesExhausted"
            assert [d.id for d in (await client.list_dead_letters()).dead_letters] == [failed.id]
            assert (await client.redrive(failed.id)).id == failed.id
            assert (await client.wait_task(failed.id, timeout_s=DEADLINE_S)).status == "failed"

            assert (await client.pause_function("echo")).async_state == "paused"
            queued = (await client.invoke_async("echo", 4)).request_id
            assert (await client.wait_task(queued, timeout_s=0.2, poll_s=0.1)).status == "queued"
            assert (await client.stop_task(queued)).status == "stopped"
            assert (await client.resume_function("echo")).async_state == "running"
            with pytest.raises(TaskNotFound):
                await client.get_task("no-such-task")

    asyncio.run(scenario())


# the wire ----------------------------------------------------------------------------------


def _task(status: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": "t-1", "function": "f", "qualifier": "latest", "status": status,
        "created_at": 1.0, "updated_at": 1.0, "started_at": None, "finished_at": None,
        "attempts": 0, "version": None, "idempotency_key": None, "result": None,
        "result_content_type": None, "error": None, "history": [], "stop_requested": False,
        "dead_lettered": False, "logs": "/functions/f/logs?request_id=t-1", **fields,
    }


class Wire:
    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.timeouts: list[Any] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.timeouts.append(request.extensions.get("timeout"))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return httpx.Response(202 if "request_id" in answer else 200, json=answer)


@pytest.fixture
def wire() -> Wire:
    return Wire(_task("queued"))


@pytest.fixture
def mocked(wire: Wire) -> Iterator[Client]:
    with Client("http://ember", transport=httpx.MockTransport(wire)) as sdk:
        yield sdk


def test_invoke_async_request(mocked: Client, wire: Wire) -> None:
    wire.answers = [{"request_id": "t-1", "deduplicated": True, "task": _task("running")}]
    accepted = mocked.invoke_async("f", {"a": 1}, qualifier=3, idempotency_key="key")
    sent = wire.requests[-1]
    assert sent.method == "POST" and sent.url.path == "/functions/f/invoke"
    assert sent.url.params["qualifier"] == "3"
    assert sent.headers["x-ember-invocation-type"] == "async"
    assert sent.headers["x-ember-idempotency-key"] == "key"
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == {"a": 1}
    assert accepted.deduplicated and accepted.task.status == "running"

    mocked.invoke_async("f", b"<x/>", content_type="application/xml")
    sent = wire.requests[-1]
    assert sent.content == b"<x/>" and sent.headers["content-type"] == "application/xml"
    assert "x-ember-idempotency-key" not in sent.headers


def test_task_routes_requests(mocked: Client, wire: Wire) -> None:
    mocked.get_task("a/b")
    assert wire.requests[-1].url.raw_path == b"/tasks/a%2Fb"
    assert "wait_s" not in wire.requests[-1].url.params
    mocked.get_task("t-1", wait_s=30)
    assert wire.requests[-1].url.params["wait_s"] == "30"
    assert wire.timeouts[-1]["read"] == 60  # the client's, longer than the server's wait
    with Client("http://ember", timeout=5, transport=httpx.MockTransport(wire)) as short:
        short.get_task("t-1", wait_s=30)
        assert wire.timeouts[-1]["read"] > 30 and wire.timeouts[-1]["connect"] == 5
        short.get_task("t-1")
        assert wire.timeouts[-1]["read"] == 5

    wire.answers = [{"tasks": [_task("failed")], "next_cursor": "c2"}]
    page = mocked.list_tasks("f", status="failed", limit=5, cursor="c1")
    assert dict(wire.requests[-1].url.params) == {"status": "failed", "limit": "5", "cursor": "c1"}
    assert page.tasks[0].status == "failed" and page.next_cursor == "c2"

    wire.answers = [{"dead_letters": [], "next_cursor": None}]
    mocked.list_dead_letters()
    assert wire.requests[-1].url.path == "/dead-letters" and not wire.requests[-1].url.params
    mocked.list_dead_letters("f", limit=2)
    assert dict(wire.requests[-1].url.params) == {"function": "f", "limit": "2"}

    wire.answers = [_task("queued")]
    mocked.stop_task("t-1")
    mocked.redrive("t-1")
    assert [(r.method, r.url.path) for r in wire.requests[-2:]] == [
        ("POST", "/tasks/t-1/stop"), ("POST", "/dead-letters/t-1/redrive"),
    ]


def test_wait_task_asks_again_until_the_task_ends(mocked: Client, wire: Wire) -> None:
    wire.answers = [_task("queued"), _task("running"), _task("succeeded", result={"value": 1})]
    task = mocked.wait_task("t-1", timeout_s=600, poll_s=20)
    assert task.status == "succeeded" and len(wire.requests) == 3
    assert [float(r.url.params["wait_s"]) for r in wire.requests] == [20, 20, 20]


def test_wait_task_gives_the_last_state_when_the_time_is_over(
    mocked: Client, wire: Wire
) -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 4  # each request takes 4 s
        return now[0]

    wire.answers = [_task("running")]
    task = mocked.wait_task("t-1", timeout_s=10, poll_s=5, clock=clock)
    assert task.status == "running"
    assert [float(r.url.params["wait_s"]) for r in wire.requests] == [5, 5, 2]

    wire.requests.clear()
    assert mocked.wait_task("t-1", timeout_s=0).status == "running"
    assert len(wire.requests) == 1 and "wait_s" not in wire.requests[0].url.params


def test_wait_task_checks_its_arguments(mocked: Client, wire: Wire) -> None:
    for timeout_s, poll_s in ((60, 0), (60, 61), (-1, 20)):
        with pytest.raises(InvalidSpec):
            mocked.wait_task("t-1", timeout_s=timeout_s, poll_s=poll_s)
    assert wire.requests == []


def test_decode_body() -> None:
    assert decode_body(None) is None and decode_body({}) is None
    assert decode_body({"value": {"a": [1]}}) == {"a": [1]}
    assert decode_body({"value": None}) is None
    assert decode_body({"text": "hi"}) == "hi"
    assert decode_body({"base64": "AAE="}) == b"\x00\x01"
    with pytest.raises(ValueError):
        decode_body({"base64": "not base64!"})
    with pytest.raises(ValueError):
        decode_body({"other": 1})
