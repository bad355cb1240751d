"""What the engine does for the state machine's actions: function steps through the async
queue, ``call: http`` with httpx, timers on the injected clock. Each answers with a
completion given to ``complete``; none of them blocks the engine's loop.

Function steps are async invocations whose idempotency key is ``wf:`` plus the action's key
(execution, task instance, attempt): the queue runs each once, and a step issued again after
a crash (its result not recorded yet) finds the first task — finished, or still running —
instead of running the function again. Only a step whose run was itself interrupted runs
twice; :func:`interrupted` tells which.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import httpx
import orjson

from ember.clock import Clock
from ember.errors import EmberError, FunctionTimeout, TaskNotFound
from ember.model.invocation import Task
from ember.queue.worker import AsyncInvoker
from ember.workflows.errors import COMMUNICATION, RUNTIME, TIMEOUT
from ember.workflows.expressions import RawJson
from ember.workflows.machine import CallFunction, CallHttp, CallResult, Completion, TimerFired
from ember.workflows.values import encoded

log = logging.getLogger(__name__)

STEP_KEY_PREFIX = "wf:"
"""The idempotency key prefix of the engine's function steps (tasks the engine owns)."""

Complete = Callable[[str, Completion, dict[str, Any] | None], object]


def step_key(idempotency_key: str) -> str:
    """The queue's idempotency key of a step (at most 256 characters)."""
    key = STEP_KEY_PREFIX + idempotency_key
    if len(key) <= 256:
        return key
    return STEP_KEY_PREFIX + hashlib.sha256(idempotency_key.encode()).hexdigest()


def problem_of(error: dict[str, Any] | EmberError) -> dict[str, Any]:
    """An Ember error (or a task's ``{"code", "message"}``) as the DSL's problem details:
    a function that timed out is a timeout error, any other failure a runtime error; the
    Ember code is the title."""
    if isinstance(error, EmberError):
        code, message, status = error.code, error.message, error.http_status
    else:
        code = str(error.get("code", "Internal"))
        message = str(error.get("message", ""))
        status = 504 if code == FunctionTimeout.code else 502
    kind = TIMEOUT if code == FunctionTimeout.code else RUNTIME
    return {"type": kind, "status": 408 if kind == TIMEOUT else status, "title": code,
            "detail": message}


def decode_output(body: bytes | None, content_type: str | None) -> Any:
    """A function's result as data: JSON decoded, text as a string, other bytes as
    ``{"base64": …}``."""
    if not body:
        return None
    media = (content_type or "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json") or not media:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    if media.startswith("text/") or not media:
        try:
            return body.decode()
        except UnicodeDecodeError:
            pass
    return {"base64": base64.b64encode(body).decode()}


def interrupted(task: Task) -> bool:
    """Whether an attempt of ``task`` was cut short (a crash while it ran): the function
    may have run more than once."""
    return any(attempt.outcome == "interrupted" for attempt in task.history)


def task_meta(task: Task) -> dict[str, Any]:
    return {"function": task.function, "request_id": task.id, "version": task.version,
            "rerun": interrupted(task)}


def task_result(action_id: str, task: Task) -> CallResult:
    """A finished step's completion: a JSON result stays the bytes the instance returned."""
    if task.status == "succeeded":
        if task.result and "json" in (task.result_content_type or ""):
            return CallResult(action_id, output=RawJson(task.result))
        return CallResult(action_id, output=decode_output(task.result, task.result_content_type))
    if task.status == "stopped":
        error: dict[str, Any] = {"code": "Stopped", "message": f"task {task.id} was stopped"}
    else:
        error = task.error or {"code": "Internal", "message": f"task {task.id} {task.status}"}
    return CallResult(action_id, error=problem_of(error))


class Effects:
    """Performs calls and timers for every execution; ``complete(execution_id, completion,
    meta)`` takes each answer."""

    def __init__(self, invoker: AsyncInvoker, clock: Clock, complete: Complete, *,
                 max_payload_bytes: int, http: httpx.AsyncClient | None = None) -> None:
        self._invoker = invoker
        self._clock = clock
        self._complete = complete
        self._max_payload = max_payload_bytes
        self._http = http
        # The steps submitted and not answered: queue key -> (execution, action id).
        self._steps: dict[str, tuple[str, str]] = {}
        # Running work per execution and action id (timers, HTTP calls), and each step's
        # task id, so that a cancel finds them.
        self._running: dict[str, dict[str, asyncio.Task[Any]]] = {}
        self._tasks: dict[str, dict[str, str]] = {}
        self._keys: dict[str, dict[str, str]] = {}
        invoker.own(STEP_KEY_PREFIX, self._task_ended)

    async def close(self) -> None:
        running = [t for tasks in self._running.values() for t in tasks.values()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        self._running.clear()
        if self._http is not None:
            await self._http.aclose()

    # -- function steps ----------------------------------------------------------------------

    def call(self, execution: str, action: CallFunction) -> None:
        self._spawn(execution, action.action_id, self._submit(execution, action))

    async def _submit(self, execution: str, action: CallFunction) -> None:
        key = step_key(action.idempotency_key)
        try:
            payload = encoded(action.payload)
        except TypeError as exc:
            self._answer(execution, CallResult(action.action_id, error={
                "type": RUNTIME, "status": 400, "title": "InvalidPayload",
                "detail": f"the step's input cannot be sent as JSON: {exc}"}))
            return
        self._steps[key] = (execution, action.action_id)
        self._keys.setdefault(execution, {})[action.action_id] = key
        try:
            task, _ = await self._invoker.submit(
                action.function, action.qualifier, payload, "application/json",
                idempotency_key=key,
            )
        except EmberError as err:
            self._forget_step(execution, action.action_id)
            self._answer(execution, CallResult(action.action_id, error=problem_of(err)),
                         {"function": action.function})
            return
        self._tasks.setdefault(execution, {})[action.action_id] = task.id
        if task.final and self._steps.pop(key, None) is not None:
            self._answer(execution, task_result(action.action_id, task), task_meta(task))

    def _task_ended(self, task: Task) -> None:
        found = self._steps.pop(task.idempotency_key or "", None)
        if found is None:
            return
        execution, action_id = found
        self._answer(execution, task_result(action_id, task), task_meta(task))

    def step_tasks(self, execution: str) -> dict[str, str]:
        """The task id of each step submitted and not answered, by action id."""
        return dict(self._tasks.get(execution, {}))

    def function_deleted(self, function: str) -> None:
        """A deleted function's queued steps are dropped with it: answer them."""
        for key, (execution, action_id) in list(self._steps.items()):
            task_id = self._tasks.get(execution, {}).get(action_id)
            if task_id is None:
                continue
            self._spawn(execution, f"deleted:{action_id}",
                        self._answer_if_gone(execution, action_id, key, task_id, function))

    async def _answer_if_gone(self, execution: str, action_id: str, key: str, task_id: str,
                              function: str) -> None:
        try:
            task = await self._invoker.queue.get_task(task_id)
        except TaskNotFound:
            task = None
        if task is not None and task.function != function:
            return
        if task is not None and not task.final:
            return
        if self._steps.pop(key, None) is None:
            return
        result = task_result(action_id, task) if task is not None else CallResult(
            action_id, error=problem_of({"code": "FunctionNotFound",
                                         "message": f"function {function!r} was deleted"}))
        self._answer(execution, result, {"function": function})

    # -- HTTP calls --------------------------------------------------------------------------

    def call_http(self, execution: str, action: CallHttp) -> None:
        self._spawn(execution, action.action_id, self._send(execution, action))

    async def _send(self, execution: str, action: CallHttp) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=30.0)
        headers = {str(k): str(v) for k, v in (action.headers or {}).items()}
        body = action.body
        content: str | bytes | None = None
        if isinstance(body, str | bytes):
            content = body
        elif body is not None:
            content = encoded(body)
            if not any(name.lower() == "content-type" for name in headers):
                headers["content-type"] = "application/json"
        try:
            response = await self._http.request(
                action.method.upper(), action.endpoint, headers=headers,
                params={str(k): str(v) for k, v in (action.query or {}).items()},
                content=content, follow_redirects=action.redirect,
            )
        except httpx.HTTPError as exc:
            self._answer(execution, CallResult(action.action_id, error={
                "type": COMMUNICATION, "status": 503, "title": "CallFailed",
                "detail": f"{action.method.upper()} {action.endpoint}: {exc}"}))
            return
        if response.status_code >= 400 or (response.is_redirect and not action.redirect):
            self._answer(execution, CallResult(action.action_id, error={
                "type": COMMUNICATION, "status": response.status_code,
                "title": response.reason_phrase or "HTTP error",
                "detail": f"{action.method.upper()} {action.endpoint} answered "
                          f"{response.status_code}: {response.text[:500]}"}))
            return
        content = decode_output(response.content, response.headers.get("content-type"))
        output: Any
        if action.output == "raw":
            output = base64.b64encode(response.content).decode()
        elif action.output == "response":
            output = {"statusCode": response.status_code, "headers": dict(response.headers),
                      "content": content}
        else:
            output = content
        self._answer(execution, CallResult(action.action_id, output=output))

    # -- timers ------------------------------------------------------------------------------

    def timer(self, execution: str, action_id: str, fire_at: datetime) -> None:
        self._spawn(execution, action_id, self._fire(execution, action_id, fire_at))

    async def _fire(self, execution: str, action_id: str, fire_at: datetime) -> None:
        delay = fire_at.timestamp() - self._clock.time()
        if delay > 0:
            await self._clock.sleep(delay)
        self._answer(execution, TimerFired(action_id))

    # -- cancelling --------------------------------------------------------------------------

    def cancel(self, execution: str, action_id: str) -> None:
        """Stop a timer, an HTTP call or a function step (its task is stopped)."""
        running = self._running.get(execution, {}).pop(action_id, None)
        if running is not None:
            running.cancel()
        key = self._keys.get(execution, {}).pop(action_id, None)
        if key is not None:
            self._steps.pop(key, None)
        task_id = self._tasks.get(execution, {}).pop(action_id, None)
        if task_id is not None:
            self._spawn(execution, f"stop:{action_id}", self._stop(task_id))

    async def _stop(self, task_id: str) -> None:
        with contextlib.suppress(EmberError):
            await self._invoker.stop(task_id)

    def forget(self, execution: str) -> None:
        """The execution ended: cancel what still runs for it (stops are let finish)."""
        for action_id, task in self._running.pop(execution, {}).items():
            if not action_id.startswith("stop:"):
                task.cancel()
        for key in self._keys.pop(execution, {}).values():
            self._steps.pop(key, None)
        self._tasks.pop(execution, None)

    # -- plumbing ----------------------------------------------------------------------------

    def _forget_step(self, execution: str, action_id: str) -> None:
        key = self._keys.get(execution, {}).pop(action_id, None)
        if key is not None:
            self._steps.pop(key, None)

    def _answer(self, execution: str, completion: Completion,
                meta: dict[str, Any] | None = None) -> None:
        action_id = getattr(completion, "action_id", None)
        if action_id is not None:
            self._keys.get(execution, {}).pop(action_id, None)
            self._tasks.get(execution, {}).pop(action_id, None)
        self._complete(execution, completion, meta)

    def _spawn(self, execution: str, action_id: str,
               work: Coroutine[Any, Any, None]) -> None:
        running = self._running.setdefault(execution, {})
        task = asyncio.get_running_loop().create_task(work)
        running[action_id] = task

        def done(finished: asyncio.Task[Any]) -> None:
            tasks = self._running.get(execution)
            if tasks is not None and tasks.get(action_id) is finished:
                del tasks[action_id]
                if not tasks:
                    self._running.pop(execution, None)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("workflow execution %s, action %s failed", execution, action_id,
                          exc_info=finished.exception())

        task.add_done_callback(done)
