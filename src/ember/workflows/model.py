"""The parsed workflow document: immutable models of the Serverless Workflow DSL 1.0 subset.

Every task carries its ``name`` and its ``path``, a JSON pointer into the document as the
spec's ``$task.reference`` has it (``/do/1/pay/fork/branches/0/charge``). The path is stable
for a given document, so the executor keys durable step state on it. ``walk`` yields every
task with its path, depth first in document order; ``Workflow.tasks`` and ``Workflow.lists``
index tasks and task lists by path, and ``Workflow.siblings`` leads from a task to its list
(the next task, or the one ``then`` names).

Runtime expressions are kept as written (``${ .order.id }``); fields that are always
expressions (``if``, ``when``, ``for.in``, ``while``, ...) may omit the ``${ }`` as the spec
allows. Payload-like values (``with``, ``set``, event attributes) are plain JSON values that
may hold expressions anywhere inside them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

# A JSON value as it appears in the document (dicts are never mutated after parsing).
Json = Any

FlowDirective = str  # "continue", "exit", "end" or the name of a task in the same list
CONTINUE, EXIT, END = "continue", "exit", "end"
FLOW_KEYWORDS = frozenset({CONTINUE, EXIT, END})


@dataclass(frozen=True)
class Duration:
    """A fixed length of time, from ISO 8601 (``PT1M30S``) or ``{minutes: 1, seconds: 30}``."""

    milliseconds: int

    @property
    def seconds(self) -> float:
        return self.milliseconds / 1000


@dataclass(frozen=True)
class Document:
    dsl: str
    namespace: str
    name: str
    version: str
    title: str | None = None
    summary: str | None = None
    tags: dict[str, Json] = field(default_factory=dict)
    metadata: dict[str, Json] = field(default_factory=dict)


@dataclass(frozen=True)
class Input:
    """``input``: ``schema`` (a JSON Schema document, kept as written) and ``from``."""

    schema: dict[str, Json] | None = None
    from_: Json = None


@dataclass(frozen=True)
class Output:
    """``output`` and ``export``: ``schema`` and ``as`` (an expression or a value)."""

    schema: dict[str, Json] | None = None
    as_: Json = None


@dataclass(frozen=True)
class Timeout:
    """``timeout.after``; ``ref`` names the ``use.timeouts`` entry it came from, if any."""

    after: Duration
    ref: str | None = None


@dataclass(frozen=True)
class Error:
    """A problem-details error, as ``raise`` raises it and ``use.errors`` names it."""

    type: str
    status: int
    title: str | None = None
    detail: str | None = None
    instance: str | None = None


@dataclass(frozen=True)
class EventFilter:
    """One event to match: attributes (and ``data``) in ``with``, and correlation keys.

    ``correlate`` maps a key name to ``(from, expect)``: ``from`` is an expression over
    the event, ``expect`` an optional expression or value the result must equal (without
    it, the first matched event sets the value the others must have).
    """

    with_: dict[str, Json]
    correlate: dict[str, tuple[str, Json]] = field(default_factory=dict)


@dataclass(frozen=True)
class EventConsumption:
    """``listen.to`` and ``schedule.on``: exactly one of ``one``, ``all``, ``any``.

    ``until`` (``any`` only) is an expression, or another consumption strategy whose
    completion stops the listening.
    """

    kind: Literal["one", "all", "any"]
    filters: tuple[EventFilter, ...]
    until: str | EventConsumption | None = None


@dataclass(frozen=True)
class Schedule:
    every: Duration | None = None
    cron: str | None = None
    after: Duration | None = None
    on: EventConsumption | None = None


@dataclass(frozen=True)
class Backoff:
    kind: Literal["constant", "linear", "exponential"] = "constant"


@dataclass(frozen=True)
class RetryPolicy:
    """``catch.retry``. ``limit_attempt_count`` counts attempts, the first one included."""

    delay: Duration | None = None
    backoff: Backoff = field(default_factory=Backoff)
    jitter_from: Duration | None = None
    jitter_to: Duration | None = None
    limit_attempt_count: int | None = None
    limit_attempt_duration: Duration | None = None
    limit_duration: Duration | None = None
    when: str | None = None
    except_when: str | None = None
    ref: str | None = None


@dataclass(frozen=True)
class Catch:
    """``try.catch``: errors matching ``errors.with``, bound to ``as``, retried or handled."""

    errors_with: dict[str, Json] = field(default_factory=dict)
    as_: str = "error"
    when: str | None = None
    except_when: str | None = None
    retry: RetryPolicy | None = None
    do: tuple[Task, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Task:
    """Fields every task has. ``then`` defaults to ``continue``."""

    name: str
    path: str
    if_: str | None = None
    input: Input | None = None
    output: Output | None = None
    export: Output | None = None
    timeout: Timeout | None = None
    then: FlowDirective = CONTINUE
    metadata: dict[str, Json] = field(default_factory=dict)
    # The task's mapping as written: ``$task.definition``, and what the data flow reads.
    definition: dict[str, Json] = field(default_factory=dict, compare=False, repr=False)

    def lists(self) -> Iterator[tuple[str, tuple[Task, ...]]]:
        """The task lists directly inside this one, each with its path, in document order."""
        return iter(())

    def children(self) -> Iterator[Task]:
        """The tasks directly inside this one, in document order."""
        for _, tasks in self.lists():
            yield from tasks


@dataclass(frozen=True, kw_only=True)
class CallFunction(Task):
    """``call: resize`` or ``call: resize:live``: an Ember function at a qualifier.

    ``with_`` is the payload; ``None`` means the task's (transformed) input.
    """

    function: str
    qualifier: str = "latest"
    with_: Json = None


@dataclass(frozen=True, kw_only=True)
class CallHttp(Task):
    """``call: http``. ``output`` is ``content`` (the decoded body), ``response`` or ``raw``."""

    method: str
    endpoint: str
    headers: dict[str, Json] | str | None = None
    body: Json = None
    query: dict[str, Json] | str | None = None
    output_format: Literal["content", "response", "raw"] = "content"
    redirect: bool = False


@dataclass(frozen=True, kw_only=True)
class DoTask(Task):
    do: tuple[Task, ...]

    def lists(self) -> Iterator[tuple[str, tuple[Task, ...]]]:
        yield f"{self.path}/do", self.do


@dataclass(frozen=True, kw_only=True)
class ForkTask(Task):
    """``fork.branches`` run concurrently; with ``compete`` the first to finish wins."""

    branches: tuple[Task, ...]
    compete: bool = False

    def lists(self) -> Iterator[tuple[str, tuple[Task, ...]]]:
        yield f"{self.path}/fork/branches", self.branches


@dataclass(frozen=True)
class SwitchCase:
    name: str
    when: str | None
    then: FlowDirective


@dataclass(frozen=True, kw_only=True)
class SwitchTask(Task):
    """Cases in order; the first whose ``when`` holds (a case without one is the default)."""

    cases: tuple[SwitchCase, ...]


@dataclass(frozen=True, kw_only=True)
class ForTask(Task):
    """``for``: ``do`` once per item of ``in``, bound to ``$each`` and ``$at``.

    ``concurrency`` is Ember's extension (``for.concurrency``): how many iterations run at
    once; ``1`` (the default) runs them in order as the spec does.
    """

    each: str = "item"
    in_: str
    at: str = "index"
    while_: str | None = None
    concurrency: int = 1
    do: tuple[Task, ...]

    def lists(self) -> Iterator[tuple[str, tuple[Task, ...]]]:
        yield f"{self.path}/do", self.do


@dataclass(frozen=True, kw_only=True)
class SetTask(Task):
    """``set``: a mapping (values may be expressions) or one expression."""

    set: Json


@dataclass(frozen=True, kw_only=True)
class WaitTask(Task):
    wait: Duration


@dataclass(frozen=True, kw_only=True)
class RaiseTask(Task):
    """``raise.error``: resolved from ``use.errors`` when referenced (``error_ref``)."""

    error: Error
    error_ref: str | None = None


@dataclass(frozen=True, kw_only=True)
class TryTask(Task):
    try_: tuple[Task, ...]
    catch: Catch

    def lists(self) -> Iterator[tuple[str, tuple[Task, ...]]]:
        yield f"{self.path}/try", self.try_
        if self.catch.do:
            yield f"{self.path}/catch/do", self.catch.do


@dataclass(frozen=True, kw_only=True)
class EmitTask(Task):
    """``emit.event.with``: CloudEvents attributes and ``data``."""

    event: dict[str, Json]


@dataclass(frozen=True, kw_only=True)
class ListenTask(Task):
    """``listen.to``; ``read`` is what the task outputs of each event."""

    to: EventConsumption
    read: Literal["data", "envelope", "raw"] = "data"


@dataclass(frozen=True, kw_only=True)
class RunWorkflow(Task):
    """``run.workflow``: a sub-workflow; ``await_`` false starts it and moves on."""

    namespace: str
    workflow: str
    version: str = "latest"
    workflow_input: Json = None
    await_: bool = True


@dataclass(frozen=True)
class Use:
    """The reusable parts Ember reads (``use.functions`` and the others are refused)."""

    errors: dict[str, Error] = field(default_factory=dict)
    timeouts: dict[str, Timeout] = field(default_factory=dict)
    retries: dict[str, RetryPolicy] = field(default_factory=dict)


@dataclass(frozen=True)
class Workflow:
    document: Document
    do: tuple[Task, ...]
    input: Input | None = None
    output: Output | None = None
    timeout: Timeout | None = None
    schedule: Schedule | None = None
    use: Use = field(default_factory=Use)
    # The document as written (decoded): ``$workflow.definition``.
    definition: dict[str, Json] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def tasks(self) -> dict[str, Task]:
        """Every task by its path, in ``walk`` order."""
        return dict(walk(self))

    @cached_property
    def lists(self) -> dict[str, tuple[Task, ...]]:
        """Every task list by its path (``/do``, ``/do/1/pay/fork/branches``, ...)."""
        found = {"/do": self.do}
        for _, task in walk(self):
            found.update(task.lists())
        return found

    def siblings(self, path: str) -> tuple[tuple[Task, ...], int]:
        """The list holding the task at ``path`` and the task's index in it, as the executor
        needs them to go on to the next task or to the one ``then`` names."""
        list_path, index, _name = split_path(path)
        return self.lists[list_path], index


def split_path(path: str) -> tuple[str, int, str]:
    """A task path's list path, index and (unescaped) name: ``/do/1/pay`` → ``("/do", 1,
    "pay")``."""
    list_path, index, name = path.rsplit("/", 2)
    return list_path, int(index), name.replace("~1", "/").replace("~0", "~")


def walk(workflow: Workflow | Task) -> Iterator[tuple[str, Task]]:
    """Yield ``(path, task)`` for every task, parents before children, in document order."""
    stack = list(workflow.do if isinstance(workflow, Workflow) else [workflow])
    stack.reverse()
    while stack:
        task = stack.pop()
        yield task.path, task
        stack.extend(reversed(list(task.children())))
