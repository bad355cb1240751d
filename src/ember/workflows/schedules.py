"""``schedule``: what starts executions of a workflow by itself.

- ``every`` / ``cron``: one execution per tick (the tick is its idempotency key, so a tick
  is started once even if the server restarts in the middle of it, and once across the
  nodes of a cluster, which all run the schedule); cron in UTC, ``every`` on multiples of
  its period since the epoch.
- ``after``: once an execution ends, the next one starts after the delay.
- ``on``: events, with ``one``, ``any`` or ``all`` as in ``listen``; an execution starts
  when the consumption is complete, its input the list of events consumed. The events an
  ``all`` has matched so far are kept in the store, so a restart between the first and the
  last does not lose them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from ember.clock import Clock, utcnow
from ember.model.workflow import Execution, WorkflowRevision
from ember.store.workflows import SqlWorkflowStore
from ember.workflows import machine_events
from ember.workflows.errors import WorkflowError
from ember.workflows.model import EventConsumption, Schedule, Workflow
from ember.workflows.offload import Offload

log = logging.getLogger(__name__)

Start = Callable[[WorkflowRevision, Any, str], Awaitable[None]]


class Schedules:
    def __init__(self, store: SqlWorkflowStore, clock: Clock, start: Start,
                 db: Offload | None = None) -> None:
        self._store = store
        self._db = db or Offload(1)
        self._clock = clock
        self._start = start
        self._ticking: dict[str, asyncio.Task[None]] = {}
        self._on: dict[str, tuple[WorkflowRevision, EventConsumption]] = {}
        self._after: dict[str, tuple[WorkflowRevision, float]] = {}
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    async def start(self, workflows: list[tuple[WorkflowRevision, Workflow]]) -> None:
        for revision, workflow in workflows:
            self.install(revision, workflow)
            if workflow.schedule is not None and workflow.schedule.after is not None:
                self._spawn(self._resume_after(revision.workflow))

    async def close(self) -> None:
        tasks = [*self._ticking.values(), *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._ticking.clear()

    def install(self, revision: WorkflowRevision, workflow: Workflow) -> None:
        """Follow the schedule of ``revision``, the latest of its workflow."""
        name = revision.workflow
        self.remove(name)
        schedule = workflow.schedule
        if schedule is None:
            return
        if schedule.on is not None:
            self._on[name] = (revision, schedule.on)
        elif schedule.after is not None:
            self._after[name] = (revision, schedule.after.milliseconds / 1000)
        else:
            task = asyncio.get_running_loop().create_task(self._tick(revision, schedule))
            self._ticking[name] = task

    def names(self) -> set[str]:
        """The workflows whose schedule is followed."""
        return {*self._ticking, *self._on, *self._after}

    def remove(self, name: str) -> None:
        ticking = self._ticking.pop(name, None)
        if ticking is not None:
            ticking.cancel()
        self._on.pop(name, None)
        self._after.pop(name, None)

    # -- every, cron, after ------------------------------------------------------------------

    async def _tick(self, revision: WorkflowRevision, schedule: Schedule) -> None:
        while True:
            now = self._clock.time()
            if schedule.every is not None:
                # Ticks on multiples of the period since the epoch: every node of a cluster
                # runs this loop, and aligned ticks share their idempotency key.
                period_ms = max(1, int(schedule.every.milliseconds))
                fire = (int(now * 1000) // period_ms + 1) * period_ms / 1000
            else:
                base = datetime.fromtimestamp(now, UTC)
                fire = float(croniter(schedule.cron or "", base).get_next(float))
            await self._clock.sleep(max(0.0, fire - now))
            await self._begin(revision, None, f"schedule:{fire:.3f}")

    def finished(self, execution: Execution) -> None:
        """An execution ended: with ``schedule.after``, start the next one after the delay."""
        after = self._after.get(execution.workflow)
        if after is not None:
            self._spawn(self._again(after[0], after[1], execution))

    async def _again(self, revision: WorkflowRevision, delay_s: float,
                     previous: Execution) -> None:
        ended = (previous.finished_at or utcnow(self._clock)).timestamp()
        wait = ended + delay_s - self._clock.time()
        if wait > 0:
            await self._clock.sleep(wait)
        if self._after.get(revision.workflow, (None,))[0] == revision:
            await self._begin(revision, None, f"schedule:after:{previous.id}")

    async def _resume_after(self, name: str) -> None:
        """After a restart: the delay since the workflow's last execution ended."""
        page = await self._db(self._store.list_executions, workflow=name, limit=1)
        if page.items and not page.items[0].active and name in self._after:
            revision, delay = self._after[name]
            await self._again(revision, delay, page.items[0])

    # -- on ----------------------------------------------------------------------------------

    async def offer(self, event: dict[str, Any]) -> int:
        """Offer an event to every ``schedule.on``; how many executions it started."""
        started = 0
        async with self._lock:
            for name, (revision, to) in list(self._on.items()):
                try:
                    if await self._offer(name, revision, to, event):
                        started += 1
                except WorkflowError as exc:
                    log.warning("schedule of workflow %s: %s", name, exc)
        return started

    async def _offer(self, name: str, revision: WorkflowRevision, to: EventConsumption,
                     event: dict[str, Any]) -> bool:
        kept = await self._db(self._store.schedule_state, name)
        if kept is None or kept.get("revision") != revision.revision:
            state = machine_events.prepare(to, None, {})
        else:
            state = kept["listen"]
        matched, done = machine_events.offer(to, state, event, {}, "/schedule/on")
        if not matched:
            return False
        if done is not None:
            keys = "|".join(machine_events.event_key(e) for e in done)
            digest = hashlib.sha256(keys.encode()).hexdigest()[:32]
            await self._begin(revision, done, f"schedule:on:{digest}")
            state = machine_events.prepare(to, None, {})
        await self._db(self._store.put_schedule_state, name,
                                {"revision": revision.revision, "listen": state},
                                utcnow(self._clock))
        return done is not None

    # -- plumbing ----------------------------------------------------------------------------

    async def _begin(self, revision: WorkflowRevision, input: Any, key: str) -> None:
        try:
            await self._start(revision, input, key)
        except Exception:
            log.exception("schedule of workflow %s could not start an execution",
                          revision.workflow)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
