"""The executor's functional core: a deterministic state machine over one execution.

No I/O, no clock, no asyncio. The durable shell (journal, queue, timers, event bus) drives it:

    state, actions = start(workflow, input, execution_id=..., now=...)
    # persist state, then perform the actions; on each completion:
    state, actions = step(workflow, state, completion, now=...)

``start`` and ``step`` return a new :class:`ExecutionState` (plain JSON-able data: persist
``state.to_dict()``, rebuild with ``ExecutionState.from_dict``) and the :data:`Action` list
the shell must perform, in order. A completion names the action it answers by ``action_id``;
one that names no outstanding action (unknown, already answered, or belonging to a branch
that was cancelled meanwhile) is ignored and the state is returned unchanged, so the shell
may redeliver at least once. An event (:class:`EventArrived`) is ignored the second time
its ``id`` is delivered.

Time is an argument: timers carry their ``fire_at`` (``now`` plus the duration), and the
shell answers with :class:`TimerFired` when that moment has come.

State. Each task *instance* has a key: its path, plus ``@i`` for each enclosing ``for``
iteration (``/do/0/resize/do/0/call@3``); ``state.tasks`` maps keys to the instance's
``status`` (``running``, ``succeeded``, ``failed``, ``skipped``, ``cancelled``),
``output``, ``error`` (problem details), ``attempts`` (how many times it started: a ``try``
retry runs its tasks again), ``started_at`` and ``ended_at``; its raw and transformed
inputs are read with ``state.raw_input(key)`` and ``state.task_input(key)`` (a task whose
input is another task's input or output refers to it instead of holding a copy). Function
calls and sub-workflows carry the idempotency key ``{execution_id}:{key}:{attempt}``.

Determinism. The same state, completion and ``now`` give the same new state and actions:
there is no randomness (retry jitter is drawn from a digest of the execution id, the
``try``'s key and the attempt) and no clock. So the shell may also journal the completions
and rebuild a state by replaying them from ``start``.

Not handled here (the shell's part): retaining events that arrive before a ``listen``
(redeliver them after a :class:`Listen` action), schedules (``schedule`` starts executions),
and ``call: http``'s ``output`` format and ``redirect`` (passed on in :class:`CallHttp`).
A function's output may arrive still encoded (:class:`~ember.workflows.expressions.RawJson`):
the machine passes it on untouched, and expressions read it as JSON text.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import orjson

from ember.workflows.model import Workflow

RUNNING, WAITING = "running", "waiting"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})


# -- actions: what the shell must do ---------------------------------------------------------


@dataclass(frozen=True)
class CallFunction:
    """Invoke an Ember function; answer with :class:`CallResult`."""

    action_id: str
    function: str
    qualifier: str
    payload: Any
    idempotency_key: str
    task: str  # the task's key


@dataclass(frozen=True)
class CallHttp:
    """Send an HTTP request (``call: http``); answer with :class:`CallResult` whose output
    is what ``output`` asks for (``content``, ``response`` or ``raw``)."""

    action_id: str
    method: str
    endpoint: str
    headers: Any
    query: Any
    body: Any
    output: str
    redirect: bool
    task: str


@dataclass(frozen=True)
class StartTimer:
    """Answer with :class:`TimerFired` at ``fire_at``."""

    action_id: str
    fire_at: datetime
    task: str | None  # None: the workflow's timeout


@dataclass(frozen=True)
class CancelTimer:
    action_id: str


@dataclass(frozen=True)
class CancelCall:
    """Stop a function or HTTP call (its result, if it comes, is ignored)."""

    action_id: str


@dataclass(frozen=True)
class Emit:
    """Publish a CloudEvent (``id``, ``specversion``, ``time`` filled in when not written)."""

    event: dict[str, Any]


@dataclass(frozen=True)
class Listen:
    """Deliver matching events to this execution with :class:`EventArrived`.

    ``filters`` as evaluated when the task started: each ``{"with": {attribute: value},
    "correlate": {key: {"from": expr, "expect": value?}}}``; the machine decides what
    matches, so the shell may deliver more than matches (never less)."""

    action_id: str
    kind: str
    filters: list[dict[str, Any]]
    task: str


@dataclass(frozen=True)
class StopListening:
    action_id: str


@dataclass(frozen=True)
class StartWorkflow:
    """Start a sub-workflow; when ``await_``, answer with :class:`WorkflowFinished`."""

    action_id: str
    namespace: str
    name: str
    version: str
    input: Any
    await_: bool
    idempotency_key: str
    task: str


@dataclass(frozen=True)
class CancelWorkflow:
    action_id: str


@dataclass(frozen=True)
class Finished:
    """The execution ended: ``succeeded`` with ``output``, ``failed`` with ``error``
    (problem details), or ``cancelled``."""

    status: str
    output: Any = None
    error: dict[str, Any] | None = None


Action = (
    CallFunction
    | CallHttp
    | StartTimer
    | CancelTimer
    | CancelCall
    | Emit
    | Listen
    | StopListening
    | StartWorkflow
    | CancelWorkflow
    | Finished
)


_ACTION_TYPES: dict[str, type[Any]] = {
    kind.__name__: kind
    for kind in (
        CallFunction,
        CallHttp,
        StartTimer,
        CancelTimer,
        CancelCall,
        Emit,
        Listen,
        StopListening,
        StartWorkflow,
        CancelWorkflow,
        Finished,
    )
}


def action_to_dict(action: Action) -> dict[str, Any]:
    """An action as JSON-able data: its fields and ``type`` (the class name)."""
    data = {f.name: getattr(action, f.name) for f in fields(action)}
    if isinstance(action, StartTimer):
        data["fire_at"] = action.fire_at.isoformat()
    return {"type": type(action).__name__, **data}


def action_from_dict(data: dict[str, Any]) -> Action:
    values = {key: value for key, value in data.items() if key != "type"}
    kind = _ACTION_TYPES[data["type"]]
    if kind is StartTimer:
        values["fire_at"] = datetime.fromisoformat(values["fire_at"])
    action: Action = kind(**values)
    return action


def outstanding(state: ExecutionState) -> list[Action]:
    """The actions issued and not yet completed or cancelled, in the order they were
    issued: what a shell restarted from ``state`` issues again (calls with their
    idempotency keys, timers with their ``fire_at``, listens)."""
    return [action_from_dict(pending["action"]) for pending in state.pending.values()]


# -- completions: what happened --------------------------------------------------------------


@dataclass(frozen=True)
class CallResult:
    """A :class:`CallFunction` or :class:`CallHttp` finished: ``output``, or ``error``
    (problem details; ``type`` defaults to the runtime error, ``instance`` becomes the
    task's path)."""

    action_id: str
    output: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class TimerFired:
    action_id: str


@dataclass(frozen=True)
class EventArrived:
    """A CloudEvent (structured: attributes, ``data``) for this execution's listens."""

    event: dict[str, Any]


@dataclass(frozen=True)
class WorkflowFinished:
    """A sub-workflow (:class:`StartWorkflow`) ended."""

    action_id: str
    output: Any = None
    error: dict[str, Any] | None = None


@dataclass(frozen=True)
class CancelRequested:
    reason: str | None = None


Completion = CallResult | TimerFired | EventArrived | WorkflowFinished | CancelRequested


# -- state -----------------------------------------------------------------------------------


@dataclass
class ExecutionState:
    """One execution, as plain JSON-able data (see the module docstring for ``tasks``).

    ``lists`` are the running task lists (``/do``, a ``for`` iteration's ``do``, ...),
    ``pending`` the outstanding actions by id, ``events`` the ids of the events consumed.
    Treat it as read-only: :func:`step` works on a copy.
    """

    execution_id: str
    started_at: str
    status: str = RUNNING
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    context: Any = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _copy(
            {
                "execution_id": self.execution_id,
                "started_at": self.started_at,
                "status": self.status,
                "input": self.input,
                "output": self.output,
                "error": self.error,
                "context": self.context,
                "tasks": self.tasks,
                "lists": self.lists,
                "pending": self.pending,
                "events": self.events,
            }
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExecutionState:
        return cls(**_copy(data))

    def copy(self) -> ExecutionState:
        return ExecutionState(**_copy(self.__dict__))

    def raw_input(self, key: str) -> Any:
        """The raw input of the task instance ``key``. A task whose raw input is another
        task's input or output names it in ``raw_from`` (``["input", key]``,
        ``["output", key]``) rather than holding a copy: the iterations of a ``for`` all
        start from the ``for``'s input, and the state stays linear in their number."""
        node = self.tasks[key]
        source = node.get("raw_from")
        if source is None:
            return node.get("raw_input")
        kind, other = source
        return self.task_input(other) if kind == "input" else self.tasks[other]["output"]

    def task_input(self, key: str) -> Any:
        """The transformed input (``$input``) of the task instance ``key``: ``input``, or
        the raw input when ``input.from`` left it as it was."""
        node = self.tasks[key]
        return node["input"] if "input" in node else self.raw_input(key)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def _copy(data: dict[str, Any]) -> dict[str, Any]:
    """A deep copy; through orjson (much faster than ``copy.deepcopy``) when the data is
    plain JSON, as it is unless a function returned something orjson cannot encode."""
    try:
        copied: dict[str, Any] = orjson.loads(orjson.dumps(data))
    except (TypeError, orjson.JSONEncodeError):
        copied = copy.deepcopy(data)
    return copied


def start(
    workflow: Workflow, input: Any, *, execution_id: str, now: datetime
) -> tuple[ExecutionState, list[Action]]:
    """Begin an execution of ``workflow`` on ``input`` (the raw workflow input)."""
    from ember.workflows.machine_tasks import Machine as Run

    state = ExecutionState(execution_id=execution_id, started_at=now.isoformat(), input=input)
    run = Run(workflow, state, now)
    run.begin()
    return state, run.actions


def step(
    workflow: Workflow,
    state: ExecutionState,
    completion: Completion,
    *,
    now: datetime,
    in_place: bool = False,
) -> tuple[ExecutionState, list[Action]]:
    """Apply one completion. Returns ``state`` itself and no actions when the completion
    does not belong to it (unknown or answered action, an event already taken or that no
    listen takes, the execution finished).

    The new state is a copy, which costs time in proportion to the state's size (a ``for``
    over many items); ``in_place=True`` updates ``state`` itself instead, for a caller that
    keeps only the latest state (and reloads the persisted one if a step raises)."""
    from ember.workflows.machine_tasks import Machine as Run

    if state.finished or not Run.belongs(state, completion):
        return state, []
    new = state if in_place else state.copy()
    actions = advance(workflow, new, completion, now=now)
    if actions is None:
        return state, []
    return new, actions


def advance(
    workflow: Workflow, state: ExecutionState, completion: Completion, *, now: datetime
) -> list[Action] | None:
    """:func:`step` in place: apply ``completion`` to ``state`` itself and return the
    actions, or None when it does not belong to the state (which is then unchanged). A
    step that raises may leave ``state`` half changed: reload the persisted one."""
    from ember.workflows.machine_tasks import Machine as Run

    if state.finished or not Run.belongs(state, completion):
        return None
    run = Run(workflow, state, now)
    if not run.apply(completion):
        return None
    return run.actions


_COMPLETION_TYPES: dict[str, type[Any]] = {
    kind.__name__: kind
    for kind in (CallResult, TimerFired, EventArrived, WorkflowFinished, CancelRequested)
}


def completion_to_dict(completion: Completion) -> dict[str, Any]:
    """A completion as JSON-able data: its fields and ``type`` (the class name)."""
    data = {f.name: getattr(completion, f.name) for f in fields(completion)}
    return {"type": type(completion).__name__, **data}


def completion_from_dict(data: dict[str, Any]) -> Completion:
    values = {key: value for key, value in data.items() if key != "type"}
    completion: Completion = _COMPLETION_TYPES[data["type"]](**values)
    return completion
