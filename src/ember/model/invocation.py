"""Async invocations as tasks: what is queued, and the state a caller can query."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

TaskStatus = Literal["queued", "running", "succeeded", "failed", "stopped", "expired"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "stopped", "expired"})
TASK_STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "stopped", "expired")


@dataclass(frozen=True)
class Event:
    """One async invocation waiting in the queue. ``id`` is the request id and the task id;
    ``attempt`` counts the attempts already made."""

    id: str
    function: str
    qualifier: str
    payload: bytes
    content_type: str
    enqueued_at: float
    attempt: int = 0


@dataclass(frozen=True)
class Attempt:
    """What one attempt of a task did."""

    attempt: int
    started_at: float
    finished_at: float
    outcome: str                    # "success", "error", "system_error", "stopped",
                                    # "interrupted" (its lease ran out before it ended)
    version: str | None = None
    error_code: str | None = None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Task:
    """The state of an async invocation, from queued to a final status."""

    id: str
    function: str
    qualifier: str
    status: str
    created_at: float
    updated_at: float
    idempotency_key: str | None = None
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    version: str | None = None
    result: bytes | None = None
    result_content_type: str | None = None
    error: dict[str, Any] | None = None
    history: list[Attempt] = field(default_factory=list)
    stop_requested: bool = False
    dead_lettered: bool = False

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True)
class DeadLetter:
    """An event that could not be processed, kept with the reason until redriven."""

    id: str                          # the task id
    function: str
    qualifier: str
    payload: bytes
    content_type: str
    enqueued_at: float
    dead_at: float
    reason: dict[str, Any]           # {"code", "message", "attempts"}
