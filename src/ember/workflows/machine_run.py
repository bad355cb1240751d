"""The interpreter's core behind ``machine.start`` / ``machine.step``: one transition of one
execution. The task kinds are in :mod:`ember.workflows.machine_tasks` (``Machine``).

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

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ember.workflows import machine_events as events
from ember.workflows.dataflow import (
    Scope,
    finish_task,
    workflow_input,
    workflow_output,
)
from ember.workflows.errors import RUNTIME, TIMEOUT, WorkflowError
from ember.workflows.expressions import (
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
    CallResult,
    CancelCall,
    CancelRequested,
    CancelTimer,
    CancelWorkflow,
    Completion,
    EventArrived,
    ExecutionState,
    Finished,
    StartTimer,
    StopListening,
    TimerFired,
    WorkflowFinished,
    action_to_dict,
)
from ember.workflows.model import (
    CONTINUE,
    END,
    EXIT,
    ForTask,
    Task,
    TryTask,
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
# Which pending actions each completion answers.
_ANSWERED_BY: dict[type, frozenset[str]] = {
    CallResult: frozenset({"call", "http"}),
    WorkflowFinished: frozenset({"workflow"}),
    TimerFired: frozenset({"timer"}),
}


class Run(ABC):
    def __init__(self, workflow: Workflow, state: ExecutionState, now: datetime) -> None:
        self.workflow = workflow
        self.state = state
        self.now = now
        self.actions: list[Action] = []
        self.matched = False  # whether an event was taken by a listen
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
        pending = state.pending.get(completion.action_id)
        return pending is not None and pending["kind"] in _ANSWERED_BY[type(completion)]

    def begin(self) -> None:
        state = self.state
        if self.workflow.timeout is not None:
            fire_at = self.now + timedelta(milliseconds=self.workflow.timeout.after.milliseconds)
            self.pend(StartTimer(_WORKFLOW_TIMEOUT, fire_at, None), "timer", None, "timeout")
        try:
            raw = workflow_input(self.workflow.definition, state.input, self.scope())
        except WorkflowError as exc:
            self.finish(FAILED, error=exc.to_dict())
            return
        self.start_list("/do", "", {}, None, None, raw)
        self.drain()

    def apply(self, completion: Completion) -> bool:
        """Apply ``completion``; False when it changed nothing (an event no listen took)."""
        if isinstance(completion, EventArrived):
            for pending in list(self.state.pending.values()):
                if pending["kind"] == "listen":
                    self.later(self.listen_event, pending["owner"], completion.event)
            self.drain()
            if self.matched:
                self.state.events.append(events.event_key(completion.event))
            return self.matched
        if isinstance(completion, CancelRequested):
            self.finish(CANCELLED)
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
        return True

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
            self.raw_input(node),
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
        return scope.definition_variables(self.input(node))

    def raw_input(self, node: dict[str, Any]) -> Any:
        return self.state.raw_input(node["path"] + node["suffix"])

    def input(self, node: dict[str, Any]) -> Any:
        return self.state.task_input(node["path"] + node["suffix"])

    def pend(self, action: Action, kind: str, owner: str | None, purpose: str = "") -> None:
        """Issue ``action`` and keep it outstanding until its completion (or cancellation);
        the state holds it, so a shell restarted from the state can issue it again."""
        action_id: str = getattr(action, "action_id")  # noqa: B009 - every pended action has one
        self.state.pending[action_id] = {
            "kind": kind,
            "owner": owner,
            "purpose": purpose,
            "action": action_to_dict(action),
        }
        if owner is not None:
            self.state.tasks[owner]["actions"].append(action_id)
        self.actions.append(action)

    def action_id(self, kind: str, key: str) -> str:
        return f"{kind}:{key}#{self.state.tasks[key]['attempts']}"

    def timer(self, kind: str, key: str, milliseconds: int, qualifier: str = "") -> None:
        action_id = self.action_id(kind, key) + qualifier
        fire_at = self.now + timedelta(milliseconds=milliseconds)
        self.pend(StartTimer(action_id, fire_at, key), "timer", key, kind)

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
        if owner is not None and key not in self.state.tasks[owner]["children"]:
            self.state.tasks[owner]["children"].append(key)
        first = self.workflow.lists[list_path][0]
        source = ["input", owner] if owner is not None else None
        self.start_task(first, raw_input, key, None, suffix, variables, source)

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
            source = ["output", task_key]
            suffix, variables = lst["suffix"], lst["vars"]
            self.start_task(target, None, list_key, None, suffix, variables, source)
        else:
            lst["status"] = SUCCEEDED
            self.list_done(list_key, node["output"], None)

    def list_done(self, list_key: str, output: Any, error: dict[str, Any] | None) -> None:
        # A list that ended is forgotten: the state keeps running lists only.
        lst = self.state.lists.pop(list_key)
        owner_key = lst["owner"]
        if owner_key is None:
            self.workflow_done(output, error)
            return
        owner = self.state.tasks[owner_key]
        owner["children"].remove(list_key)
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
        source: list[str] | None = None,
    ) -> None:
        """Start ``task``; its raw input is ``raw_input``, or, to keep the state small,
        ``source``: ``["input", key]`` (the transformed input of the task at ``key``) or
        ``["output", key]`` (its output)."""
        key = task.path + suffix
        previous = self.state.tasks.get(key)
        parent_node = self.state.lists.get(parent) or self.state.tasks[parent]
        if key not in parent_node["children"]:
            parent_node["children"].append(key)
        node = {
            "path": task.path,
            "parent": parent,
            "slot": slot,
            "suffix": suffix,
            "vars": variables,
            "status": RUNNING,
            "output": None,
            "error": None,
            "attempts": (previous["attempts"] if previous else 0) + 1,
            "started_at": self.now.isoformat(),
            "ended_at": None,
            "children": previous["children"] if previous else [],
            "actions": [],
        }
        if source is not None:
            node["raw_from"] = source
        else:
            node["raw_input"] = raw_input
        self.state.tasks[key] = node
        try:
            self.run_task(task, key, node)
        except WorkflowError as exc:
            self.fail(key, exc)

    def succeed(self, key: str, raw_output: Any) -> None:
        node = self.state.tasks[key]
        if node["status"] != RUNNING:
            return
        task = self.task_of(node)
        try:
            result = finish_task(task.definition, raw_output, self.input(node), self.scope(node))
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
        elif parent in self.state.tasks:
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
            self.succeed(owner, self.input(self.state.tasks[owner]))
        elif purpose == "retry":
            node = self.state.tasks[owner]
            if node["status"] == RUNNING:
                node["retry"] += 1
                self.start_attempt(owner)
        elif purpose == "attempt":
            self.attempt_timed_out(owner)

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

    # -- what the task kinds do (machine_tasks.Machine) --------------------------------

    @abstractmethod
    def run_task(self, task: Task, key: str, node: dict[str, Any]) -> None:
        """Run ``task`` (the instance ``node``) after its ``if`` and ``input.from``."""
        ...

    @abstractmethod
    def iteration_done(
        self, key: str, index: int, output: Any, error: dict[str, Any] | None
    ) -> None:
        ...

    @abstractmethod
    def try_failed(self, key: str, error: dict[str, Any]) -> None:
        ...

    @abstractmethod
    def start_attempt(self, key: str) -> None:
        ...

    @abstractmethod
    def attempt_timed_out(self, key: str) -> None:
        ...

    @abstractmethod
    def branch_done(self, fork_key: str, index: int, branch: dict[str, Any]) -> None:
        ...

    @abstractmethod
    def listen_event(self, key: str, event: dict[str, Any]) -> None:
        ...
