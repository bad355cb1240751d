"""Workflows as resources: a deployed document's immutable revisions, and executions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

RUNNING, WAITING = "running", "waiting"
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
EXECUTION_STATUSES = (RUNNING, WAITING, SUCCEEDED, FAILED, CANCELLED)
ACTIVE = frozenset({RUNNING, WAITING})


@dataclass(frozen=True)
class WorkflowRevision:
    """One deploy of a workflow's document; executions pin the revision they began on."""

    workflow: str
    revision: int
    namespace: str
    version: str  # document.version
    document: dict[str, Any]
    sha256: str  # of the document as canonical JSON: a deploy of the same one is no change
    created_at: datetime


@dataclass(frozen=True)
class WorkflowInfo:
    """A workflow and its latest revision."""

    name: str
    created_at: datetime
    updated_at: datetime
    latest: WorkflowRevision


@dataclass
class StepRecord:
    """One task instance of an execution, as the API shows it."""

    key: str  # the path, with ``@i`` per enclosing ``for`` iteration
    path: str
    status: str
    attempts: int
    started_at: str | None
    ended_at: str | None
    error: dict[str, Any] | None = None
    function: str | None = None
    version: str | None = None
    request_id: str | None = None


@dataclass
class Execution:
    """One run of a workflow revision. ``state`` is the state machine's snapshot as of
    journal entry ``snapshot_seq``; ``seq`` counts the completions applied."""

    id: str
    workflow: str
    revision: int
    status: str
    input: Any
    created_at: datetime
    updated_at: datetime
    output: Any = None
    error: dict[str, Any] | None = None
    idempotency_key: str | None = None
    parent: str | None = None
    parent_action: str | None = None
    finished_at: datetime | None = None
    reruns: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    snapshot_seq: int = 0
    seq: int = 0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE
