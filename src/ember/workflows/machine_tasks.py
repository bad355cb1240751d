"""What each task kind does, on the interpreter's core (:mod:`ember.workflows.machine_run`).

``set``, ``call`` (function and http), ``do``, ``fork`` (``compete``), ``switch``, ``for``
(``each`` / ``at`` / ``in`` / ``while`` and Ember's ``concurrency``), ``try`` / ``catch``
(``errors.with``, ``as``, ``when`` / ``exceptWhen``, ``retry`` with backoff and a
deterministic jitter), ``raise``, ``wait``, ``emit``, ``listen`` and ``run: workflow``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from ember.workflows import machine_events as events
from ember.workflows import model
from ember.workflows.dataflow import should_run, task_input, transform
from ember.workflows.errors import EXPRESSION, RUNTIME, TIMEOUT, WorkflowError
from ember.workflows.expressions import evaluate_template, is_expression
from ember.workflows.machine import (
    CANCELLED,
    FAILED,
    RUNNING,
    CallFunction,
    CallHttp,
    CancelTimer,
    Emit,
    Listen,
    StartWorkflow,
)
from ember.workflows.machine_run import SKIPPED, Run
from ember.workflows.model import (
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
)


class Machine(Run):
    """The interpreter: :class:`Run`'s bookkeeping plus every task kind."""

    def run_task(self, task: Task, key: str, node: dict[str, Any]) -> None:
        scope = self.scope(node)
        raw_input = self.raw_input(node)
        if not should_run(task.definition, raw_input, scope):
            node.update(status=SKIPPED, output=raw_input, ended_at=self.now.isoformat())
            self.later(self.notify, key)
            return
        value = task_input(task.definition, raw_input, scope)
        if value is not raw_input:
            node["input"] = value
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
            idempotency_key = f"{self.state.execution_id}:{key}:{node['attempts']}"
            function, qualifier = task.function, task.qualifier
            call = CallFunction(action_id, function, qualifier, payload, idempotency_key, key)
            self.pend(call, "call", key)
        elif isinstance(task, model.CallHttp):
            self.call_http(task, key, value, variables)
        elif isinstance(task, DoTask):
            self.start_list(f"{task.path}/do", node["suffix"], node["vars"], key, None, value)
        elif isinstance(task, ForkTask):
            node["branches"] = {"results": [None] * len(task.branches), "done": 0, "failed": 0}
            for index, branch in enumerate(task.branches):
                source = ["input", key]
                self.start_task(branch, None, key, index, node["suffix"], node["vars"], source)
        elif isinstance(task, SwitchTask):
            self.switch(task, key, node, value, variables)
        elif isinstance(task, ForTask):
            self.start_for(task, key, node, value, variables)
        elif isinstance(task, TryTask):
            node["retry"] = 1
            self.start_attempt(key)
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

    # -- task kinds ----------------------------------------------------------------------

    def call_http(
        self, task: model.CallHttp, key: str, value: Any, variables: dict[str, Any]
    ) -> None:
        def render(field: Any) -> Any:
            if isinstance(field, str) and not is_expression(field):
                return field
            return evaluate_template(field, value, variables)

        self.pend(
            CallHttp(
                self.action_id("http", key),
                task.method,
                str(render(task.endpoint)),
                render(task.headers),
                render(task.query),
                render(task.body),
                task.output_format,
                task.redirect,
                key,
            ),
            "http",
            key,
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
                        self.input(node),
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
            self.start_list(f"{task.path}/do", suffix, bound, key, index, None)
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
        attempt_timer = f"{self.action_id('attempt', key)}.{node['retry']}"
        if self.state.pending.pop(attempt_timer, None) is not None:
            self.actions.append(CancelTimer(attempt_timer))
        try:
            caught = catches(catch.errors_with, error) and self.holds(
                node, catch.when, catch.except_when, f"{task.path}/catch", {catch.as_: error}
            )
            retry = catch.retry
            if caught and retry is not None:
                bound = {catch.as_: error, "error": error}
                where = f"{task.path}/catch/retry"
                delay = retry_delay(
                    retry, node["retry"], f"{self.state.execution_id}|{key}|{node['retry']}"
                )
                if self.holds(node, retry.when, retry.except_when, where, bound) and (
                    self.may_retry(retry, node, delay)
                ):
                    self.timer("retry", key, delay, f".{node['retry']}")
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
            self.start_list(f"{task.path}/catch/do", node["suffix"], bound, key, "catch", None)
        else:
            self.succeed(key, self.input(node))

    def start_attempt(self, key: str) -> None:
        """Run the ``try`` list (again), within ``retry.limit.attempt.duration`` if set."""
        node = self.state.tasks[key]
        task = self.task_of(node)
        assert isinstance(task, TryTask)
        self.start_list(f"{task.path}/try", node["suffix"], node["vars"], key, "try", None)
        retry = task.catch.retry
        if (
            retry is not None
            and retry.limit_attempt_duration is not None
            and (node["status"] == RUNNING)
        ):
            milliseconds = retry.limit_attempt_duration.milliseconds
            self.timer("attempt", key, milliseconds, f".{node['retry']}")

    def attempt_timed_out(self, key: str) -> None:
        """An attempt ran past ``retry.limit.attempt.duration``: stop it; it failed with
        the timeout error, which the ``catch`` sees like any other."""
        node = self.state.tasks[key]
        task = self.task_of(node)
        assert isinstance(task, TryTask)
        list_key = f"{task.path}/try{node['suffix']}"
        if node["status"] != RUNNING or list_key not in self.state.lists:
            return
        attempt = self.state.lists.pop(list_key)
        attempt["status"] = CANCELLED
        self.cancel_below(attempt)
        node["children"].remove(list_key)
        retry = task.catch.retry
        assert retry is not None and retry.limit_attempt_duration is not None
        detail = f"attempt {node['retry']} ran past {retry.limit_attempt_duration.seconds:g} s"
        error = WorkflowError(TIMEOUT, detail=detail, instance=f"{task.path}/try")
        self.try_failed(key, error.to_dict())

    def may_retry(self, retry: RetryPolicy, node: dict[str, Any], delay: int) -> bool:
        """Within ``limit.attempt.count`` (attempts, the first included) and, once the
        delay has passed, within ``limit.duration`` of the ``try``'s start."""
        if retry.limit_attempt_count is not None and node["retry"] >= retry.limit_attempt_count:
            return False
        if retry.limit_duration is not None:
            began = datetime.fromisoformat(node["started_at"])
            retry_at = self.now + timedelta(milliseconds=delay)
            if retry_at - began > timedelta(milliseconds=retry.limit_duration.milliseconds):
                return False
        return True

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
                value = self.input(node)
                result = transform(expression, value, variables, instance=f"{where}/{name}")
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
        filters = node["listen"]["filters"]
        self.pend(Listen(self.action_id("listen", key), task.to.kind, filters, key), "listen", key)

    def listen_event(self, key: str, event: dict[str, Any]) -> None:
        node = self.state.tasks[key]
        if node["status"] != RUNNING:
            return
        task = self.task_of(node)
        assert isinstance(task, ListenTask)
        where = f"{task.path}/listen/to"
        try:
            matched, consumed = events.offer(
                task.to, node["listen"], event, self.variables(node), where
            )
        except WorkflowError as exc:
            self.matched = True  # the listen fails on this event
            self.fail(key, exc)
            return
        self.matched = self.matched or matched
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
        start = StartWorkflow(
            action_id,
            task.namespace,
            task.workflow,
            task.version,
            payload,
            task.await_,
            idempotency_key,
            key,
        )
        if task.await_:
            self.pend(start, "workflow", key)
        else:
            self.actions.append(start)
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
