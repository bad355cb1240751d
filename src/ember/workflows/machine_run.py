"""The interpreter behind ``machine.start`` / ``machine.step``: one transition of one execution.

A :class:`Run` mutates the (already copied) state and collects actions. Work that follows a
task's end (its list going on, a fork joining, a ``for`` launching the next iteration) is
queued on an agenda and done in order before the transition returns, so a long sequence of
tasks that finish at once does not recurse.

Nodes. A *task* node is a task instance (``state.tasks``); a *list* node (``state.lists``)
runs a task list in order: ``/do``, a ``do`` task's list, a ``for`` iteration's ``do``
(key ``…/do@i``), a ``try`` or a ``catch.do``. A task's ``parent`` is the list it is in, or,
for a fork's branch, the fork; a list's ``owner`` is the task that runs it (None: ``/do``).
Every node lists its ``children`` and the ids of its ``actions``, so cancelling a node
cancels everything below it.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ember.workflows import machine_events as events
from ember.workflows import model
from ember.workflows.dataflow import (
    Scope,
    finish_task,
    should_run,
    task_input,
    transform,
    workflow_input,
    workflow_output,
)
from ember.workflows.errors import EXPRESSION, RUNTIME, TIMEOUT, WorkflowError
from ember.workflows.expressions import (
    evaluate_template,
    is_expression,
    task_descriptor,
    workflow_descriptor,
)
from ember.workflows.machine import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    WAITING,
    Action,
    CallFunction,
    CallHttp,
    CallResult,
    CancelCall,
    CancelRequested,
    CancelTimer,
    CancelWorkflow,
    Completion,
    Emit,
    EventArrived,
    ExecutionState,
    Finished,
    Listen,
    StartTimer,
    StartWorkflow,
    StopListening,
    TimerFired,
    WorkflowFinished,
)
from ember.workflows.model import (
    CONTINUE,
    END,
    EXIT,
    DoTask,
    EmitTask,
    ForkTask,
    ForTask,
    ListenTask,
    RaiseTask,
    RetryPolicy,
    RunWorkflow,
    SetTask,
    SwitchTask,
    Task,
    TryTask,
    WaitTask,
    Workflow,
)

SKIPPED = "skipped"
_WORKFLOW_TIMEOUT = "timeout:/"
# Pending action kinds, and how each is cancelled.
_CANCEL: dict[str, Callable[[str], Action]] = {
    "call": CancelCall,
    "http": CancelCall,
    "timer": CancelTimer,
    "listen": StopListening,
    "workflow": CancelWorkflow,
}
_BUSY = frozenset({"call", "http", "workflow"})


class Run:
    def __init__(self, workflow: Workflow, state: ExecutionState, now: datetime) -> None:
        self.workflow = workflow
        self.state = state
        self.now = now
        self.actions: list[Action] = []
        self.agenda: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self.descriptor = workflow_descriptor(
            state.execution_id,
            workflow.definition,
            state.input,
            datetime.fromisoformat(state.started_at),
        )

    # -- entry points --------------------------------------------------------------------

    @staticmethod
    def belongs(state: ExecutionState, completion: Completion) -> bool:
        if isinstance(completion, CancelRequested):
            return True
        if isinstance(completion, EventArrived):
            key = events.event_key(completion.event)
            listening = any(p["kind"] == "listen" for p in state.pending.values())
            return listening and key not in state.events
        return completion.action_id in state.pending

    def begin(self) -> None:
        state = self.state
        if self.workflow.timeout is not None:
            self.pend(_WORKFLOW_TIMEOUT, "timer", None, "workflow-timeout")
            fire_at = self.now + timedelta(milliseconds=self.workflow.timeout.after.milliseconds)
            self.actions.append(StartTimer(_WORKFLOW_TIMEOUT, fire_at, None))
        try:
            raw = workflow_input(self.workflow.definition, state.input, self.scope())
        except WorkflowError as exc:
            self.finish(FAILED, error=exc.to_dict())
            return
        self.start_list("/do", "", {}, None, None, raw)
        self.drain()

    def apply(self, completion: Completion) -> None:
        if isinstance(completion, CancelRequested):
            self.finish(CANCELLED)
        elif isinstance(completion, EventArrived):
            self.state.events.append(events.event_key(completion.event))
            for action_id, pending in list(self.state.pending.items()):
                if pending["kind"] == "listen" and action_id in self.state.pending:
                    self.later(self.listen_event, pending["owner"], completion.event)
        else:
            pending = self.state.pending.pop(completion.action_id)
            owner = pending["owner"]
            if isinstance(completion, TimerFired):
                self.timer_fired(pending["purpose"], owner)
            elif isinstance(completion, (CallResult, WorkflowFinished)):
                if completion.error is not None:
                    problem = {"type": RUNTIME, **completion.error}
                    problem["instance"] = self.state.tasks[owner]["path"]
                    self.fail(owner, WorkflowError.from_dict(problem))
                else:
                    self.succeed(owner, completion.output)
        self.drain()

    def drain(self) -> None:
        while self.agenda and self.state.status not in (SUCCEEDED, FAILED, CANCELLED):
            function, args = self.agenda.popleft()
            function(*args)
        if self.state.status in (RUNNING, WAITING):
            busy = any(p["kind"] in _BUSY for p in self.state.pending.values())
            self.state.status = RUNNING if busy or not self.state.pending else WAITING

    def later(self, function: Callable[..., None], *args: Any) -> None:
        self.agenda.append((function, args))

    # -- helpers -------------------------------------------------------------------------

    def scope(self, node: dict[str, Any] | None = None) -> Scope:
        if node is None:
            return Scope(workflow=self.descriptor, context=self.state.context)
        task = self.task_of(node)
        descriptor = task_descriptor(
            task.name,
            task.path,
            task.definition,
            node["raw_input"],
            datetime.fromisoformat(node["started_at"]),
        )
        return Scope(
            workflow=self.descriptor,
            context=self.state.context,
            task=descriptor,
            variables=node["vars"],
        )

    def task_of(self, node: dict[str, Any]) -> Task:
        return self.workflow.tasks[node["path"]]

    def variables(self, node: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """The arguments of a task definition's own expressions, plus ``extra`` variables."""
        scope = self.scope(node)
        if extra:
            scope = scope.with_variables(**extra)
        return scope.definition_variables(node["input"])

    def pend(self, action_id: str, kind: str, owner: str | None, purpose: str = "") -> None:
        self.state.pending[action_id] = {"kind": kind, "owner": owner, "purpose": purpose}
        if owner is not None:
            self.state.tasks[owner]["actions"].append(action_id)

    def action_id(self, kind: str, key: str) -> str:
        return f"{kind}:{key}#{self.state.tasks[key]['attempts']}"

    def timer(self, kind: str, key: str, milliseconds: int) -> None:
        action_id = self.action_id(kind, key)
        self.pend(action_id, "timer", key, kind)
        fire_at = self.now + timedelta(milliseconds=milliseconds)
        self.actions.append(StartTimer(action_id, fire_at, key))

    def release(self, node: dict[str, Any]) -> None:
        """Cancel the node's outstanding actions."""
        for action_id in node.get("actions", ()):
            pending = self.state.pending.pop(action_id, None)
            if pending is not None:
                self.actions.append(_CANCEL[pending["kind"]](action_id))
        if "actions" in node:
            node["actions"] = []

    def cancel_below(self, node: dict[str, Any]) -> None:
        for child in node["children"]:
            target = self.state.lists.get(child) or self.state.tasks.get(child)
            if target is not None and target["status"] == RUNNING:
                target["status"] = CANCELLED
                if "actions" in target:
                    target["ended_at"] = self.now.isoformat()
                self.release(target)
                self.cancel_below(target)

    # -- lists ---------------------------------------------------------------------------

    def start_list(
        self,
        list_path: str,
        suffix: str,
        variables: dict[str, Any],
        owner: str | None,
        slot: Any,
        raw_input: Any,
    ) -> None:
        key = list_path + suffix
        previous = self.state.lists.get(key)
        self.state.lists[key] = {
            "path": list_path,
            "suffix": suffix,
            "vars": variables,
            "owner": owner,
            "slot": slot,
            "index": 0,
            "status": RUNNING,
            "children": previous["children"] if previous else [],
        }
        if owner is not None and previous is None:
            self.state.tasks[owner]["children"].append(key)
        first = self.workflow.lists[list_path][0]
        self.start_task(first, raw_input, key, None, suffix, variables)

    def list_child_done(self, list_key: str, task_key: str) -> None:
        lst = self.state.lists[list_key]
        node = self.state.tasks[task_key]
        if lst["status"] != RUNNING:
            return
        if node["status"] == FAILED:
            lst["status"] = FAILED
            self.list_done(list_key, None, node["error"])
            return
        task = self.task_of(node)
        directive = CONTINUE if node["status"] == SKIPPED else node.get("then") or task.then
        siblings = self.workflow.lists[lst["path"]]
        if directive == END:
            self.workflow_done(node["output"], None)
            return
        if directive == CONTINUE:
            following = lst["index"] + 1
        elif directive == EXIT:
            following = len(siblings)
        else:
            following = next(i for i, t in enumerate(siblings) if t.name == directive)
        if following < len(siblings):
            lst["index"] = following
            target = siblings[following]
            self.start_task(target, node["output"], list_key, None, lst["suffix"], lst["vars"])
        else:
            lst["status"] = SUCCEEDED
            self.list_done(list_key, node["output"], None)

    def list_done(self, list_key: str, output: Any, error: dict[str, Any] | None) -> None:
        lst = self.state.lists[list_key]
        owner_key = lst["owner"]
        if owner_key is None:
            self.workflow_done(output, error)
            return
        owner = self.state.tasks[owner_key]
        if owner["status"] != RUNNING:
            return
        task = self.task_of(owner)
        if isinstance(task, ForTask):
            self.iteration_done(owner_key, lst["slot"], output, error)
        elif isinstance(task, TryTask) and lst["slot"] == "try" and error is not None:
            self.try_failed(owner_key, error)
        elif error is not None:
            self.fail(owner_key, WorkflowError.from_dict(error))
        else:
            self.succeed(owner_key, output)

    # -- tasks ---------------------------------------------------------------------------

    def start_task(
        self,
        task: Task,
        raw_input: Any,
        parent: str,
        slot: Any,
        suffix: str,
        variables: dict[str, Any],
    ) -> None:
        key = task.path + suffix
        previous = self.state.tasks.get(key)
        if previous is None:
            parent_node = self.state.lists.get(parent) or self.state.tasks[parent]
            parent_node["children"].append(key)
        node = {
            "path": task.path,
            "parent": parent,
            "slot": slot,
            "suffix": suffix,
            "vars": variables,
            "status": RUNNING,
            "raw_input": raw_input,
            "input": None,
            "output": None,
            "error": None,
            "attempts": (previous["attempts"] if previous else 0) + 1,
            "started_at": self.now.isoformat(),
            "ended_at": None,
            "children": previous["children"] if previous else [],
            "actions": [],
        }
        self.state.tasks[key] = node
        try:
            self.run_task(task, key, node)
        except WorkflowError as exc:
            self.fail(key, exc)

    def run_task(self, task: Task, key: str, node: dict[str, Any]) -> None:
        scope = self.scope(node)
        if not should_run(task.definition, node["raw_input"], scope):
            node.update(status=SKIPPED, output=node["raw_input"], ended_at=self.now.isoformat())
            self.later(self.notify, key)
            return
        node["input"] = value = task_input(task.definition, node["raw_input"], scope)
        if task.timeout is not None:
            self.timer("timeout", key, task.timeout.after.milliseconds)
        variables = scope.definition_variables(value)
        if isinstance(task, SetTask):
            self.succeed(key, transform(task.set, value, variables, instance=f"{task.path}/set"))
        elif isinstance(task, model.CallFunction):
            payload = value
            if task.with_ is not None:
                payload = evaluate_template(task.with_, value, variables)
            action_id = self.action_id("call", key)
            self.pend(action_id, "call", key)
            idempotency_key = f"{self.state.execution_id}:{key}:{node['attempts']}"
            function, qualifier = task.function, task.qualifier
            self.actions.append(
                CallFunction(action_id, function, qualifier, payload, idempotency_key, key)
            )
        elif isinstance(task, model.CallHttp):
            self.call_http(task, key, value, variables)
        elif isinstance(task, DoTask):
            self.start_list(f"{task.path}/do", node["suffix"], node["vars"], key, None, value)
        elif isinstance(task, ForkTask):
            node["branches"] = {"results": [None] * len(task.branches), "done": 0, "failed": 0}
            for index, branch in enumerate(task.branches):
                self.start_task(branch, value, key, index, node["suffix"], node["vars"])
        elif isinstance(task, SwitchTask):
            self.switch(task, key, node, value, variables)
        elif isinstance(task, ForTask):
            self.start_for(task, key, node, value, variables)
        elif isinstance(task, TryTask):
            node["retry"] = 1
            self.start_list(f"{task.path}/try", node["suffix"], node["vars"], key, "try", value)
        elif isinstance(task, RaiseTask):
            self.raise_error(task, value, variables)
        elif isinstance(task, WaitTask):
            self.timer("wait", key, task.wait.milliseconds)
        elif isinstance(task, EmitTask):
            self.emit(task, key, node, value, variables)
        elif isinstance(task, ListenTask):
            self.listen(task, key, node, value, variables)
        elif isinstance(task, RunWorkflow):
            self.run_workflow(task, key, node, value, variables)
        else:  # pragma: no cover - the parser builds no other task
            raise WorkflowError(RUNTIME, detail=f"unknown task {task!r}", instance=task.path)

    def succeed(self, key: str, raw_output: Any) -> None:
        node = self.state.tasks[key]
        if node["status"] != RUNNING:
            return
        task = self.task_of(node)
        try:
            result = finish_task(task.definition, raw_output, node["input"], self.scope(node))
        except WorkflowError as exc:
            self.fail(key, exc)
            return
        self.state.context = result.context
        node.update(status=SUCCEEDED, output=result.output, ended_at=self.now.isoformat())
        self.release(node)
        self.later(self.notify, key)

    def fail(self, key: str, error: WorkflowError) -> None:
        node = self.state.tasks[key]
        if node["status"] != RUNNING:
            return
        node.update(status=FAILED, error=error.to_dict(), ended_at=self.now.isoformat())
        self.release(node)
        self.cancel_below(node)
        self.later(self.notify, key)

    def notify(self, key: str) -> None:
        node = self.state.tasks[key]
        parent = node["parent"]
        if parent in self.state.lists:
            self.list_child_done(parent, key)
        else:
            self.branch_done(parent, node["slot"], node)

    def timer_fired(self, purpose: str, owner: str | None) -> None:
        if owner is None:
            error = WorkflowError(TIMEOUT, detail="the workflow timed out", instance="/")
            self.finish(FAILED, error=error.to_dict())
        elif purpose == "timeout":
            node = self.state.tasks[owner]
            task = self.task_of(node)
            assert task.timeout is not None
            detail = f"the task timed out after {task.timeout.after.seconds:g} s"
            self.fail(owner, WorkflowError(TIMEOUT, detail=detail, instance=task.path))
        elif purpose == "wait":
            self.succeed(owner, self.state.tasks[owner]["input"])
        elif purpose == "retry":
            node = self.state.tasks[owner]
            if node["status"] == RUNNING:
                node["retry"] += 1
                task = self.task_of(node)
                suffix, variables = node["suffix"], node["vars"]
                self.start_list(f"{task.path}/try", suffix, variables, owner, "try", node["input"])

    # -- workflow ------------------------------------------------------------------------

    def workflow_done(self, output: Any, error: dict[str, Any] | None) -> None:
        if error is not None:
            self.finish(FAILED, error=error)
            return
        try:
            result = workflow_output(self.workflow.definition, output, self.scope())
        except WorkflowError as exc:
            self.finish(FAILED, error=exc.to_dict())
            return
        self.finish(SUCCEEDED, output=result)

    def finish(
        self, status: str, *, output: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        state = self.state
        if state.status in (SUCCEEDED, FAILED, CANCELLED):
            return
        for lst in state.lists.values():
            if lst["status"] == RUNNING:
                lst["status"] = CANCELLED
        for node in state.tasks.values():
            if node["status"] == RUNNING:
                node.update(status=CANCELLED, ended_at=self.now.isoformat())
        for action_id, pending in list(state.pending.items()):
            self.actions.append(_CANCEL[pending["kind"]](action_id))
        state.pending.clear()
        for node in state.tasks.values():
            node["actions"] = []
        state.status, state.output, state.error = status, output, error
        self.actions.append(Finished(status, output, error))

    # -- task kinds ----------------------------------------------------------------------

    def call_http(
        self, task: model.CallHttp, key: str, value: Any, variables: dict[str, Any]
    ) -> None:
        def render(field: Any) -> Any:
            if isinstance(field, str) and not is_expression(field):
                return field
            return evaluate_template(field, value, variables)

        action_id = self.action_id("http", key)
        self.pend(action_id, "http", key)
        self.actions.append(
            CallHttp(
                action_id,
                task.method,
                str(render(task.endpoint)),
                render(task.headers),
                render(task.query),
                render(task.body),
                task.output_format,
                task.redirect,
                key,
            )
        )

    def switch(
        self, task: SwitchTask, key: str, node: dict[str, Any], value: Any, variables: Any
    ) -> None:
        for index, case in enumerate(task.cases):
            if case.when is not None:
                where = f"{task.path}/switch/{index}/{case.name}/when"
                matched = transform(case.when, value, variables, instance=where)
                if matched is None or matched is False:
                    continue
            node["then"] = case.then
            self.succeed(key, value)
            return
        self.succeed(key, value)  # no case matched: go on as the task's then says

    def start_for(
        self, task: ForTask, key: str, node: dict[str, Any], value: Any, variables: Any
    ) -> None:
        items = transform(task.in_, value, variables, instance=f"{task.path}/for/in")
        if items is None:
            items = []
        if not isinstance(items, list):
            detail = f"for.in gave {type(items).__name__}, not a list"
            raise WorkflowError(EXPRESSION, detail=detail, instance=f"{task.path}/for/in")
        node["loop"] = {"items": items, "next": 0, "running": 0, "stopped": False}
        node["results"] = []
        self.launch(key)

    def launch(self, key: str) -> None:
        node = self.state.tasks[key]
        task = self.task_of(node)
        assert isinstance(task, ForTask)
        loop = node["loop"]
        while (
            loop["running"] < task.concurrency
            and loop["next"] < len(loop["items"])
            and not loop["stopped"]
        ):
            index = loop["next"]
            bound = {**node["vars"], task.each: loop["items"][index], task.at: index}
            if task.while_ is not None:
                try:
                    keep = transform(
                        task.while_,
                        node["input"],
                        self.variables(node, **bound),
                        instance=f"{task.path}/while",
                    )
                except WorkflowError as exc:
                    self.fail(key, exc)
                    return
                if keep is None or keep is False:
                    loop["stopped"] = True
                    break
            loop["next"] += 1
            loop["running"] += 1
            node["results"].append(None)
            suffix = f"{node['suffix']}@{index}"
            self.start_list(f"{task.path}/do", suffix, bound, key, index, node["input"])
        if loop["running"] == 0:
            self.succeed(key, node["results"])

    def iteration_done(
        self, key: str, index: int, output: Any, error: dict[str, Any] | None
    ) -> None:
        node = self.state.tasks[key]
        node["loop"]["running"] -= 1
        if error is not None:
            self.fail(key, WorkflowError.from_dict(error))
            return
        node["results"][index] = output
        self.launch(key)

    def branch_done(self, fork_key: str, index: int, branch: dict[str, Any]) -> None:
        node = self.state.tasks[fork_key]
        if node["status"] != RUNNING:
            return
        task = self.task_of(node)
        assert isinstance(task, ForkTask)
        state = node["branches"]
        if branch["status"] == FAILED:
            state["failed"] += 1
            if not task.compete or state["failed"] == len(task.branches):
                self.fail(fork_key, WorkflowError.from_dict(branch["error"]))
            return
        if task.compete:
            self.cancel_below(node)
            self.succeed(fork_key, branch["output"])
            return
        state["results"][index] = branch["output"]
        state["done"] += 1
        if state["done"] == len(task.branches):
            self.succeed(fork_key, state["results"])

    def try_failed(self, key: str, error: dict[str, Any]) -> None:
        node = self.state.tasks[key]
        task = self.task_of(node)
        assert isinstance(task, TryTask)
        catch = task.catch
        try:
            caught = catches(catch.errors_with, error) and self.holds(
                node, catch.when, catch.except_when, f"{task.path}/catch", {catch.as_: error}
            )
            retry = catch.retry
            if caught and retry is not None:
                bound = {catch.as_: error, "error": error}
                where = f"{task.path}/catch/retry"
                if self.holds(node, retry.when, retry.except_when, where, bound) and (
                    retry.limit_attempt_count is None or node["retry"] < retry.limit_attempt_count
                ):
                    delay = retry_delay(
                        retry, node["retry"], f"{self.state.execution_id}|{key}|{node['retry']}"
                    )
                    self.timer("retry", key, delay)
                    return
                if not catch.do:
                    caught = False  # retries exhausted: the error stands
        except WorkflowError as exc:
            self.fail(key, exc)
            return
        if not caught:
            self.fail(key, WorkflowError.from_dict(error))
        elif catch.do:
            bound = {**node["vars"], catch.as_: error}
            self.start_list(
                f"{task.path}/catch/do", node["suffix"], bound, key, "catch", node["input"]
            )
        else:
            self.succeed(key, node["input"])

    def holds(
        self,
        node: dict[str, Any],
        when: str | None,
        except_when: str | None,
        where: str,
        bound: dict[str, Any],
    ) -> bool:
        variables = self.variables(node, **bound)
        for expression, wanted, name in ((when, True, "when"), (except_when, False, "exceptWhen")):
            if expression is not None:
                result = transform(expression, node["input"], variables, instance=f"{where}/{name}")
                if (result is not None and result is not False) != wanted:
                    return False
        return True

    def raise_error(self, task: RaiseTask, value: Any, variables: Any) -> None:
        written = {
            "type": task.error.type,
            "status": task.error.status,
            "title": task.error.title,
            "detail": task.error.detail,
        }
        problem = evaluate_template(written, value, variables, instance=f"{task.path}/raise")
        problem["instance"] = task.error.instance or task.path
        raise WorkflowError.from_dict(problem)

    def emit(
        self, task: EmitTask, key: str, node: dict[str, Any], value: Any, variables: Any
    ) -> None:
        event = dict(evaluate_template(task.event, value, variables))
        event.setdefault("id", f"{self.state.execution_id}:{key}:{node['attempts']}")
        event.setdefault("specversion", "1.0")
        event.setdefault("time", self.now.isoformat())
        self.actions.append(Emit(event))
        self.succeed(key, value)

    def listen(
        self, task: ListenTask, key: str, node: dict[str, Any], value: Any, variables: Any
    ) -> None:
        node["listen"] = events.prepare(task.to, value, variables)
        action_id = self.action_id("listen", key)
        self.pend(action_id, "listen", key)
        filters = node["listen"]["filters"]
        self.actions.append(Listen(action_id, task.to.kind, filters, key))

    def listen_event(self, key: str, event: dict[str, Any]) -> None:
        node = self.state.tasks[key]
        if node["status"] != RUNNING:
            return
        task = self.task_of(node)
        assert isinstance(task, ListenTask)
        try:
            consumed = events.offer(task.to, node["listen"], event, self.variables(node))
        except WorkflowError as exc:
            self.fail(key, exc)
            return
        if consumed is not None:
            self.succeed(key, [events.read(e, task.read) for e in consumed])

    def run_workflow(
        self, task: RunWorkflow, key: str, node: dict[str, Any], value: Any, variables: Any
    ) -> None:
        payload = value
        if task.workflow_input is not None:
            payload = evaluate_template(task.workflow_input, value, variables)
        action_id = self.action_id("workflow", key)
        idempotency_key = f"{self.state.execution_id}:{key}:{node['attempts']}"
        self.actions.append(
            StartWorkflow(
                action_id,
                task.namespace,
                task.workflow,
                task.version,
                payload,
                task.await_,
                idempotency_key,
                key,
            )
        )
        if task.await_:
            self.pend(action_id, "workflow", key)
        else:
            self.succeed(key, value)


def catches(errors_with: dict[str, Any], error: dict[str, Any]) -> bool:
    """Whether ``error`` has every property ``errors.with`` names (``details`` is the
    problem's ``detail``)."""
    for name, wanted in errors_with.items():
        if error.get("detail" if name == "details" else name) != wanted:
            return False
    return True


def retry_delay(policy: RetryPolicy, attempt: int, seed: str) -> int:
    """Milliseconds before retry number ``attempt`` (1 after the first failure): ``delay``
    as is (constant), times ``attempt`` (linear) or times ``2 ** (attempt - 1)``
    (exponential), plus a jitter between ``jitter.from`` and ``jitter.to`` drawn from
    ``seed`` (the same seed, the same jitter)."""
    base = policy.delay.milliseconds if policy.delay is not None else 0
    if policy.backoff.kind == "linear":
        base *= attempt
    elif policy.backoff.kind == "exponential":
        base *= 2 ** (attempt - 1)
    if policy.jitter_from is not None or policy.jitter_to is not None:
        low = policy.jitter_from.milliseconds if policy.jitter_from is not None else 0
        high = policy.jitter_to.milliseconds if policy.jitter_to is not None else low
        digest = hashlib.sha256(seed.encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        base += low + int(fraction * (high - low))
    return base
