"""The routes of async invocation: queue an event, follow it as a task, stop it, inspect and
redrive what failed, pause and resume a function's async processing.

Like ``ember.sdk.calls``, each function returns a ``Call`` that both clients send. Waiting
for a task takes several requests, so ``wait_task`` returns a ``Plan``: a generator that
yields each ``Call`` and is sent its result, which each client drives with its own I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from ember.api.schemas import (
    AcceptedOut,
    DeadLetterList,
    DeadLetterOut,
    FunctionOut,
    TaskList,
    TaskOut,
)
from ember.errors import InvalidSpec
from ember.model.invocation import FINAL_STATUSES
from ember.sdk.calls import Call, _function_path, _model, _params, _segment, encode_payload

T = TypeVar("T")

Plan = Generator[Call[Any], Any, T]
"""Requests sent one after the other: each yielded ``Call`` is sent its parsed answer; the
generator's return value is the result."""

MAX_WAIT_S = 60.0
"""The longest one ``GET /tasks/{id}?wait_s=`` may wait on the server."""

# How much longer than the server's wait an answer may take to arrive before httpx gives up.
_WAIT_MARGIN_S = 15.0


def _task_path(task_id: str, *rest: str) -> str:
    return "/".join(["/tasks", _segment(task_id), *rest])


def _dead_letter_path(task_id: str, *rest: str) -> str:
    return "/".join(["/dead-letters", _segment(task_id), *rest])


# async invocation ----------------------------------------------------------------------------


def invoke_async(
    name: str,
    payload: Any = None,
    *,
    qualifier: str | int = "latest",
    content_type: str | None = None,
    idempotency_key: str | None = None,
) -> Call[AcceptedOut]:
    """Queue an invocation of the function; it runs in the background, with retries.

    Args:
        payload: bytes are sent as they are, with ``content_type`` (default
            ``application/octet-stream``); anything else is sent as JSON.
        qualifier: ``latest``, a version number or an alias.
        idempotency_key: 1 to 256 characters; another invocation with the same key within
            24 hours queues nothing and returns the first one's task.

    Returns:
        The accepted invocation: its ``request_id`` (also the task id, for ``get_task`` and
        ``wait_task``), ``deduplicated`` (True when the key matched an earlier invocation)
        and the task as it stands.

    Raises:
        FunctionNotFound; PayloadTooLarge (over the async payload limit, 256 KiB by
        default); InvalidSpec: a bad qualifier or idempotency key.
    """
    content, media = encode_payload(payload, content_type)
    headers = {"X-Ember-Invocation-Type": "async", "Content-Type": media}
    if idempotency_key is not None:
        headers["X-Ember-Idempotency-Key"] = idempotency_key
    return Call(
        "POST", _function_path(name, "invoke"), _model(AcceptedOut),
        params={"qualifier": str(qualifier)}, content=content, headers=headers,
    )


# tasks ---------------------------------------------------------------------------------------


def get_task(task_id: str, wait_s: float = 0) -> Call[TaskOut]:
    """The task of an async invocation: its status, attempts, result or error.

    Args:
        task_id: the invocation's request id.
        wait_s: wait up to this many seconds (at most 60) for the task to end before
            answering; 0 answers at once.

    Returns:
        The task. ``status`` is ``queued``, ``running``, or final: ``succeeded`` (with
        ``result``: ``{"value": JSON}``, ``{"text": str}`` or ``{"base64": str}``, see
        ``decode_body``), ``failed``, ``expired`` (too old to run) or ``stopped`` (with
        ``error``, see ``task_error``).

    Raises:
        TaskNotFound: no such task. InvalidSpec: ``wait_s`` is out of range.
    """
    params = _params(wait_s=wait_s or None)
    return Call(
        "GET", _task_path(task_id), _model(TaskOut), params=params,
        min_timeout=wait_s + _WAIT_MARGIN_S if wait_s else None,
    )


def wait_task(
    task_id: str,
    timeout_s: float = 60,
    poll_s: float = 20,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Plan[TaskOut]:
    """Wait for a task to end, asking the server again every ``poll_s`` seconds.

    The server holds each request until the task ends or ``poll_s`` is over, so the answer
    comes as soon as the task ends. A task still ``queued`` or ``running`` when
    ``timeout_s`` is over is returned as it is: no error is raised, check ``status``.

    Args:
        task_id: the invocation's request id.
        timeout_s: the longest wait in seconds; 0 asks once.
        poll_s: the longest one request waits on the server (0 < poll_s <= 60).
        clock: the monotonic time source the timeout is measured on.

    Returns:
        The task: final (``succeeded``, ``failed``, ``expired``, ``stopped``), or its last
        state when the time was over.

    Raises:
        TaskNotFound: no such task. InvalidSpec: a negative ``timeout_s`` or a ``poll_s``
        out of range.
    """
    check_wait(timeout_s, poll_s)
    deadline = clock() + timeout_s
    while True:
        task: TaskOut = yield get_task(task_id, wait_s=round(min(poll_s, timeout_s), 3))
        timeout_s = deadline - clock()
        if task.status in FINAL_STATUSES or timeout_s <= 0:
            return task


def check_wait(timeout_s: float, poll_s: float) -> None:
    """Raise InvalidSpec for a negative ``timeout_s`` or a ``poll_s`` out of range."""
    if timeout_s < 0:
        raise InvalidSpec(f"timeout_s must be 0 or more, not {timeout_s}", {"field": "timeout_s"})
    if not 0 < poll_s <= MAX_WAIT_S:
        raise InvalidSpec(
            f"poll_s must be over 0 and at most {MAX_WAIT_S:g}, not {poll_s}", {"field": "poll_s"}
        )


def list_tasks(
    name: str,
    *,
    status: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[TaskList]:
    """One page of the function's tasks, newest first; ``next_cursor`` fetches the next.

    Args:
        status: only tasks with this status (``queued``, ``running``, ``succeeded``,
            ``failed``, ``stopped``, ``expired``).
        limit: page size, 1 to 1000 (the server's default is 100).
        cursor: the ``next_cursor`` of the previous page.

    Raises:
        FunctionNotFound: no such function. InvalidSpec: an unknown status, or ``limit``
        out of range.
    """
    params = _params(status=status, limit=limit, cursor=cursor)
    return Call("GET", _function_path(name, "tasks"), _model(TaskList), params=params)


def stop_task(task_id: str) -> Call[TaskOut]:
    """Stop a task: a queued one never runs, a running one's instance is killed.

    Returns:
        The task, ``stopped``; a task that had already ended is returned unchanged. A task
        running on another server is marked ``stop_requested`` and stops when it is next
        claimed.

    Raises:
        TaskNotFound: no such task.
    """
    return Call("POST", _task_path(task_id, "stop"), _model(TaskOut))


# dead letters --------------------------------------------------------------------------------


def list_dead_letters(
    function: str | None = None,
    *,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[DeadLetterList]:
    """One page of dead letters: async events that failed for good (retries exhausted, too
    old, or a permanent error) and have no ``on_failure`` destination function.

    Args:
        function: only those of this function; every function's when None.
        limit: page size, 1 to 1000 (the server's default is 100).
        cursor: the ``next_cursor`` of the previous page.

    Raises:
        InvalidSpec: ``limit`` is out of range.
    """
    params = _params(function=function, limit=limit, cursor=cursor)
    return Call("GET", "/dead-letters", _model(DeadLetterList), params=params)


def get_dead_letter(task_id: str) -> Call[DeadLetterOut]:
    """The dead letter of a task: its payload and ``reason`` (the error's ``code``,
    ``message`` and ``details``, the ``condition`` such as ``RetriesExhausted``, and
    ``attempts``).

    Raises:
        NotFound: the task has no dead letter.
    """
    return Call("GET", _dead_letter_path(task_id), _model(DeadLetterOut))


def redrive(task_id: str) -> Call[TaskOut]:
    """Queue a dead letter's event again, as a fresh event with the same task id; the dead
    letter is removed and the task is ``queued`` again.

    Raises:
        NotFound: the task has no dead letter.
    """
    return Call("POST", _dead_letter_path(task_id, "redrive"), _model(TaskOut))


# async processing of a function --------------------------------------------------------------


def pause_function(name: str) -> Call[FunctionOut]:
    """Stop running the function's async events; new ones are still accepted and wait in the
    queue (``async_state`` ``paused``). Sync invocations are not affected.

    Raises:
        FunctionNotFound: no such function.
    """
    return Call("POST", _function_path(name, "pause"), _model(FunctionOut))


def resume_function(name: str) -> Call[FunctionOut]:
    """Run the function's queued async events again (``async_state`` ``running``).

    Raises:
        FunctionNotFound: no such function.
    """
    return Call("POST", _function_path(name, "resume"), _model(FunctionOut))
