"""Task mode and dead letters: query, list, stop and wait for async invocations; inspect
and redrive what failed; pause and resume a function's async processing."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from ember.api.params import Cursor, FunctionName
from ember.api.schemas import (
    DeadLetterList,
    DeadLetterOut,
    FunctionOut,
    TaskList,
    TaskOut,
)
from ember.errors import InvalidSpec
from ember.model.invocation import TASK_STATUSES

router = APIRouter(tags=["tasks"])


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
    name: FunctionName, request: Request,
    status: Annotated[str | None, Query(description=" | ".join(TASK_STATUSES))] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> TaskList:
    """Tasks of a function, newest first."""
    services = _services(request)
    await asyncio.to_thread(services.functions.get, name)
    if status is not None and status not in TASK_STATUSES:
        raise InvalidSpec(f"status {status!r} is not one of {', '.join(TASK_STATUSES)}",
                          {"field": "status"})
    page = await services.invoker.queue.list_tasks(name, status=status, limit=limit,
                                                   cursor=cursor or None)
    return TaskList(tasks=[TaskOut.of(t) for t in page.items], next_cursor=page.next_cursor)


@router.get("/dead-letters", response_model=DeadLetterList)
async def list_dead_letters(
    request: Request, function: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, cursor: Cursor = None,
) -> DeadLetterList:
    page = await _services(request).invoker.queue.list_dead_letters(
        function, limit=limit, cursor=cursor or None
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
async def pause(name: FunctionName, request: Request) -> FunctionOut:
    """Stop processing the function's async events; they stay queued. No event of the
    function starts after this answer."""
    return FunctionOut.of(await _services(request).invoker.set_paused(name, True))


@router.post("/functions/{name}/resume", response_model=FunctionOut, tags=["functions"])
async def resume(name: FunctionName, request: Request) -> FunctionOut:
    """Process the function's queued async events again."""
    return FunctionOut.of(await _services(request).invoker.set_paused(name, False))
