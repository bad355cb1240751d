"""The Queue interface: durable async invocations, their tasks, and dead letters.

One backend holds all three so that each change is atomic (accepting an event stores its task
and its queue entry together; finishing an attempt writes the task and removes or re-queues
the event together). Implementations: ``embedded.py`` (SQLite in $EMBER_HOME) and
``redis.py`` (Redis streams with consumer groups).

Delivery is at least once: a claimed event is leased; if the lease runs out before it is
acknowledged (the server died), the event is delivered again as a new attempt: ``attempt``
one higher and ``Delivery.redelivered`` set, so that the handler's ``context.attempt`` and
the task's attempts count the run that was cut short.

Stale deliveries: ``extend``, ``ack``, ``retry``, ``postpone`` and ``dead_letter`` with a
delivery whose event has since been claimed again (its lease ran out and another claim took
it, carrying a new token) do nothing at all — neither the event nor the task is written —
so that a slow first attempt never clobbers the second. A lease that ran out but was not
claimed again still honours its token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ember.model.invocation import DeadLetter, Event, Task
from ember.store.base import Page


@dataclass(frozen=True)
class Delivery:
    """A claimed event and the backend's token for its lease. ``redelivered``: the event
    was leased before and its lease ran out (that attempt never ended), so this claim counted
    it (``event.attempt`` is one higher than before that claim). ``task``: the event's task
    as the claim read it, in the same atomic step (None when it was not read, or is gone), so
    that starting the attempt needs no further read."""

    event: Event
    token: str
    redelivered: bool = False
    task: Task | None = None


@dataclass(frozen=True)
class QueueFigures:
    """How the queue stands, for one function or for all."""

    depth: int                  # events waiting or leased
    leased: int                 # events being processed
    delayed: int                # events waiting for a retry delay to pass
    oldest_age_s: float | None  # age of the oldest event still in the queue
    dead_letters: int


class Queue(Protocol):
    """Durable async invocations. Every method is atomic; ``now`` is wall-clock seconds
    (injected so that tests can move time)."""

    async def start(self) -> None:
        """Connect and create what is missing (tables, consumer groups)."""
        ...

    async def close(self) -> None:
        """Release connections and threads; later calls raise ServiceUnavailable."""
        ...

    async def submit(
        self, event: Event, *, idempotency_key: str | None, dedup_window_s: float, now: float
    ) -> tuple[Task, bool]:
        """Store ``event`` and its task (status ``queued``), durably, and return
        (task, True). When a task with the same ``idempotency_key`` of the same function was
        submitted within ``dedup_window_s``, store nothing and return (that task, False)."""
        ...

    async def claim(
        self, limit: int, lease_s: float, *, now: float, paused: frozenset[str] = frozenset(),
        limits: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        """Lease up to ``limit`` events that are due (past their retry delay) and not leased
        (or whose lease ran out), skipping functions in ``paused``; oldest (by the time they
        became due) first, and when several functions have events, spread across them. An
        event whose lease ran out comes back with ``attempt`` + 1 and ``redelivered`` set.

        ``limits`` caps the events of a function leased at once (its
        ``async.max_concurrency``): the live leases it already has, whoever holds them,
        count, and so do the events this claim takes; a function absent from it has no
        cap, one mapped to 0 or less gets nothing."""
        ...

    async def extend(self, delivery: Delivery, lease_s: float, *, now: float) -> None:
        """Keep the lease of a long-running event."""
        ...

    async def ack(self, delivery: Delivery, task: Task) -> None:
        """The attempt ended for good: remove the event, store ``task`` (final status)."""
        ...

    async def retry(self, delivery: Delivery, task: Task, *, delay_s: float, now: float) -> None:
        """Store ``task`` (status ``queued``) and put the event back with ``attempt`` + 1,
        due after ``delay_s``."""
        ...

    async def postpone(self, delivery: Delivery, *, delay_s: float, now: float) -> None:
        """Put the event back unchanged (same ``attempt``), due after ``delay_s``: it was
        claimed but could not start (its function was paused meanwhile)."""
        ...

    async def dead_letter(self, delivery: Delivery, task: Task, reason: dict[str, object],
                          *, now: float) -> None:
        """Remove the event, keep it as a dead letter with ``reason``, store ``task``."""
        ...

    async def get_task(self, task_id: str) -> Task:
        """Raises TaskNotFound."""
        ...

    async def list_tasks(
        self, function: str, *, status: str | None = None, limit: int = 100,
        cursor: str | None = None,
    ) -> Page[Task]:
        """Tasks of a function, newest first."""
        ...

    async def save_task(self, task: Task) -> None:
        """Store the task's new state (e.g. ``running``, ``stop_requested``); a task that
        no longer exists (its function was deleted) is not created again."""
        ...

    async def stop_queued(self, task_id: str, *, now: float) -> Task | None:
        """If the task's event is waiting (not leased, or its lease ran out), remove it and
        mark the task ``stopped``; return the task. Return None when it is leased (running).
        A final task is returned unchanged; an unknown id raises TaskNotFound."""
        ...

    async def list_dead_letters(
        self, function: str | None = None, *, limit: int = 100, cursor: str | None = None
    ) -> Page[DeadLetter]:
        """Dead letters, newest first, of one function or of all."""
        ...

    async def get_dead_letter(self, task_id: str) -> DeadLetter:
        """Raises NotFound."""
        ...

    async def redrive(self, task_id: str, *, now: float) -> Task:
        """Queue a dead letter again as a fresh event (attempt 0, due now), remove it from
        the dead letters, set its task ``queued``; raises NotFound."""
        ...

    async def figures(self, function: str | None = None, *, now: float) -> QueueFigures: ...

    async def delete_function(self, function: str) -> None:
        """Drop every event, task and dead letter of a deleted function."""
        ...

    async def purge(self, before: float) -> int:
        """Delete the tasks that ended (a final status) before ``before`` — by their last
        change, ``updated_at`` — and the dead letters made before it (``dead_at``); return
        how many tasks and dead letters were deleted. A task whose event is still queued
        is kept."""
        ...
