"""Task mode and dead letters: query, list, stop and wait for async invocations; inspect
and redrive what failed; pause and resume a function's async processing."""

from __future__ import annotations

import asyncio
import base64
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from ember.api.schemas import FunctionOut
from ember.errors import InvalidSpec
from ember.model.invocation import TASK_STATUSES, DeadLetter, Task

router = APIRouter(tags=["tasks"])


def body_json(body: bytes | None, content_type: str | None) -> dict[str, Any]:
    """A payload or result for a JSON answer: as JSON, as text, or as base64."""
    if body is None:
        return {}
    content_type = content_type or ""
    if "json" in content_type:
        try:
            return {"value": orjson.loads(body) if body else None}
        except orjson.JSONDecodeError:
            pass
    if content_type.startswith("text/"):
        return {"text": body.decode("utf-8", "replace")}
    return {"base64": base64.b64encode(body).decode()}


class AttemptOut(BaseModel):
    attempt: int
    started_at: float
    finished_at: float
    outcome: str
    version: str | None
    error_code: str | None
    message: str | None


class TaskOut(BaseModel):
    id: str
    function: str
    qualifier: str
    status: Literal["queued", "running", "succeeded", "failed", "stopped", "expired"]
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    version: str | None
    idempotency_key: str | None
    result: dict[str, Any] | None
    result_content_type: str | None
    error: dict[str, Any] | None
    history: list[AttemptOut]
    stop_requested: bool
    dead_lettered: bool
    logs: str

    @classmethod
    def of(cls, t: Task) -> TaskOut:
        return cls(
            id=t.id, function=t.function, qualifier=t.qualifier,
            status=t.status,
            created_at=t.created_at, updated_at=t.updated_at, started_at=t.started_at,
            finished_at=t.finished_at, attempts=t.attempts, version=t.version,
            idempotency_key=t.idempotency_key,
            result=body_json(t.result, t.result_content_type) if t.result is not None else None,
            result_content_type=t.result_content_type, error=t.error,
            history=[AttemptOut(**a.to_json()) for a in t.history],
            stop_requested=t.stop_requested, dead_lettered=t.dead_lettered,
            logs=f"/functions/{t.function}/logs?request_id={t.id}",
        )


class TaskList(BaseModel):
    tasks: list[TaskOut]
    next_cursor: str | None


class AcceptedOut(BaseModel):
    request_id: str
    deduplicated: bool
    task: TaskOut


class DeadLetterOut(BaseModel):
    id: str
    function: str
    qualifier: str
    payload: dict[str, Any]
    content_type: str
    enqueued_at: float
    dead_at: float
    reason: dict[str, Any]

    @classmethod
    def of(cls, d: DeadLetter) -> DeadLetterOut:
        return cls(
            id=d.id, function=d.function, qualifier=d.qualifier,
            payload=body_json(d.payload, d.content_type), content_type=d.content_type,
            enqueued_at=d.enqueued_at, dead_at=d.dead_at, reason=d.reason,
        )


class DeadLetterList(BaseModel):
    dead_letters: list[DeadLetterOut]
    next_cursor: str | None


def _services(request: Request) -> Any:
    return request.app.state.services


@router.get("/tasks/{task_id}", response_model=TaskOut)
async def get_task(
    task_id: str, request: Request,
    wait_s: Annotated[float, Query(ge=0, le=60, description="wait this long for an end")] = 0,
) -> TaskOut:
    """A task's state; with ``wait_s`` the answer comes when it ends or the wait is over."""
    queue = _services(request).invoker.queue
    task = await queue.get_task(task_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    delay = 0.01
    while not task.final and loop.time() < deadline:
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, 0.25)
        task = await queue.get_task(task_id)
    return TaskOut.of(task)


@router.post("/tasks/{task_id}/stop", response_model=TaskOut)
async def stop_task(task_id: str, request: Request) -> TaskOut:
    """Stop a task: a queued one never runs, a running one's instance is killed."""
    return TaskOut.of(await _services(request).invoker.stop(task_id))


@router.get("/functions/{name}/tasks", response_model=TaskList)
async def list_tasks(
    name: str, request: Request,
    status: Annotated[str | None, Query(description=" | ".join(TASK_STATUSES))] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> TaskList:
    """Tasks of a function, newest first."""
    services = _services(request)
    await asyncio.to_thread(services.functions.get, name)
    if status is not None and status not in TASK_STATUSES:
        raise InvalidSpec(f"status {status!r} is not one of {', '.join(TASK_STATUSES)}",
                          {"field": "status"})
    page = await services.invoker.queue.list_tasks(name, status=status, limit=limit,
                                                   cursor=cursor)
    return TaskList(tasks=[TaskOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/dead-letters", response_model=DeadLetterList)
async def list_dead_letters(
    request: Request, function: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: str | None = None,
) -> DeadLetterList:
    page = await _services(request).invoker.queue.list_dead_letters(
        function, limit=limit, cursor=cursor
    )
    return DeadLetterList(dead_letters=[DeadLetterOut.of(d) for d in page.items],
                          next_cursor=page.next_cursor)


@router.get("/dead-letters/{task_id}", response_model=DeadLetterOut)
async def get_dead_letter(task_id: str, request: Request) -> DeadLetterOut:
    return DeadLetterOut.of(await _services(request).invoker.queue.get_dead_letter(task_id))


@router.post("/dead-letters/{task_id}/redrive", response_model=TaskOut)
async def redrive(task_id: str, request: Request) -> TaskOut:
    """Queue a dead letter again as a fresh event; its task is ``queued`` again."""
    services = _services(request)
    task = await services.invoker.queue.redrive(task_id, now=services.clock.time())
    services.invoker.wake()
    return TaskOut.of(task)


@router.post("/functions/{name}/pause", response_model=FunctionOut, tags=["functions"])
async def pause(name: str, request: Request) -> FunctionOut:
    """Stop processing the function's async events; they stay queued. No event of the
    function starts after this answer."""
    return FunctionOut.of(await _services(request).invoker.set_paused(name, True))


@router.post("/functions/{name}/resume", response_model=FunctionOut, tags=["functions"])
async def resume(name: str, request: Request) -> FunctionOut:
    """Process the function's queued async events again."""
    return FunctionOut.of(await _services(request).invoker.set_paused(name, False))
