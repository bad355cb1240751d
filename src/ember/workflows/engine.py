"""The durable shell around the state machine: it runs executions, records every transition
before releasing its effects, and resumes running executions after a restart.

One loop applies completions (a function's result, a timer, an event, a cancel) to the
executions they belong to, in batches: each batch's transitions are written in one
transaction — a journal entry per completion, and now and then a snapshot of the state
that replaces the entries before it — and only then are the actions they produced
performed. A server killed at any point restarts from the snapshot and the journal
(replaying a completion gives the same state: the machine is deterministic, and each entry
keeps the time it was applied at) and issues the outstanding actions again; function steps
find their first task through their idempotency key.

Events go to the executions listening for them (``publish``). One that no execution takes
is kept for ``event_retention_s`` and offered to each listen that starts meanwhile, until an
execution takes it. Every event's key (``source`` and ``id``) is kept for that window, taken
or not, so that the same event delivered again (a broker's redelivery) is a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx

from ember.clock import Clock, utcnow, wait_for
from ember.errors import Conflict, WorkflowNotFound
from ember.model.workflow import Execution, StepRecord, WorkflowInfo, WorkflowRevision
from ember.queue.worker import AsyncInvoker
from ember.store.workflows import Progress, SqlWorkflowStore
from ember.workflows import machine_events
from ember.workflows.effects import Effects, problem_of
from ember.workflows.errors import RUNTIME
from ember.workflows.events import PublishResult, normalize_event
from ember.workflows.machine import (
    FAILED,
    Action,
    CallFunction,
    CallHttp,
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
    WorkflowFinished,
    advance,
    completion_from_dict,
    completion_to_dict,
    outstanding,
    start,
)
from ember.workflows.model import Workflow
from ember.workflows.offload import Offload
from ember.workflows.parser import load_workflow
from ember.workflows.schedules import Schedules
from ember.workflows.values import plain, restore_all, storable

log = logging.getLogger(__name__)

__all__ = ["Engine", "EngineSettings", "PublishResult"]


@dataclass(frozen=True)
class EngineSettings:
    event_retention_s: float = 3600.0   # an event no execution took is kept this long
    snapshot_min_entries: int = 64      # journal entries before a snapshot is considered
    max_batch: int = 512                # completions applied per transaction
    max_payload_bytes: int = 256 * 1024  # a function step's input (the async limit)
    retention_s: float = 7 * 24 * 3600  # finished executions are kept this long
    purge_interval_s: float = 3600.0


@dataclass
class _Live:
    """An execution this engine runs."""

    row: Execution
    workflow: Workflow
    state: ExecutionState
    since_snapshot: int = 0
    listens: dict[str, Listen] = field(default_factory=dict)
    children: dict[str, str] = field(default_factory=dict)  # action id -> child execution
    reruns: int = 0


@dataclass
class _Item:
    execution: str
    completion: Completion
    meta: dict[str, Any] | None
    future: asyncio.Future[bool] | None


def new_execution_id(clock: Clock) -> str:
    """32 hex digits that sort by creation time: milliseconds, then 80 random bits."""
    return f"{int(clock.time() * 1000):012x}{secrets.token_hex(10)}"


class Engine:
    def __init__(self, store: SqlWorkflowStore, invoker: AsyncInvoker, clock: Clock,
                 settings: EngineSettings = EngineSettings(),
                 http: httpx.AsyncClient | None = None) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._effects = Effects(invoker, clock, self._complete,
                                max_payload_bytes=settings.max_payload_bytes, http=http)
        # Blocking store calls (the service's too): closing waits for those running.
        self.db = Offload()
        self._schedules = Schedules(store, clock, self._scheduled, self.db)
        self._live: dict[str, _Live] = {}
        self._offering = asyncio.Lock()  # publish and the offers of retained events
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._workflows: dict[tuple[str, int], Workflow] = {}
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._loop_task: asyncio.Task[None] | None = None
        self._purge_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_finished: Callable[[Execution], None] = lambda execution: None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume every running or waiting execution, then start the schedules."""
        self._loop = asyncio.get_running_loop()
        self._loop_task = self._loop.create_task(self._run())
        rows = await self.db(self._store.active_executions)
        resumed = [live for live in [await self._resume(row) for row in rows] if live]
        for live in resumed:
            if live.row.parent is not None and live.row.parent in self._live:
                self._live[live.row.parent].children[live.row.parent_action or ""] = live.row.id
        for live in resumed:
            for action in outstanding(live.state):
                self._perform(live, action)
        if resumed:
            log.info("resumed %d workflow execution(s)", len(resumed))
        infos = await self.db(self._store.all_workflows)
        await self._schedules.start([(i.latest, self._workflow(i.latest)) for i in infos])
        self._purge_task = self._loop.create_task(self._purge())

    async def close(self) -> None:
        await self._schedules.close()
        for task in (self._loop_task, self._purge_task, *self._background):
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in (self._loop_task, self._purge_task, *self._background)
                               if t is not None], return_exceptions=True)
        await self._effects.close()
        await self.db.close()

    async def _resume(self, row: Execution) -> _Live | None:
        try:
            revision = await self.db(self._store.get_revision, row.workflow,
                                               row.revision)
        except WorkflowNotFound:
            # Its workflow was deleted while this server was down: end it rather than leave
            # it "running" with nothing to run it.
            log.warning("execution %s: its workflow %s is gone", row.id, row.workflow)
            now = utcnow(self._clock)
            problem = {"type": RUNTIME, "status": 410, "title": "WorkflowNotFound",
                       "detail": f"workflow {row.workflow!r} revision {row.revision} was "
                                 "deleted while the execution ran", "instance": "/"}
            await self._record([Progress(row.id, row.seq + 1, [], FAILED, now, error=problem,
                                         finished_at=now)])
            return None
        entries = await self.db(self._store.journal, row.id, row.snapshot_seq)
        state, row.input, row.output, *entries = await self.db(
            restore_all, [row.state, row.input, row.output, *entries],
            partial(self._store.blobs, row.id))
        live = _Live(row, self._workflow(revision), ExecutionState(**state), reruns=row.reruns)
        for entry in entries:
            self._replay(live, entry)
        live.since_snapshot = len(entries)
        if live.state.finished:
            return None
        self._live[row.id] = live
        return live

    def _replay(self, live: _Live, entry: dict[str, Any]) -> None:
        completion = completion_from_dict(entry["completion"])
        if entry.get("broken"):
            self._break(live, entry["broken"])
            return
        owner = self._owner(live.state, completion)
        advance(live.workflow, live.state, completion, now=datetime.fromisoformat(entry["now"]))
        self._annotate(live, owner, entry.get("meta"))

    def _workflow(self, revision: WorkflowRevision) -> Workflow:
        key = (revision.workflow, revision.revision)
        found = self._workflows.get(key)
        if found is None:
            found = self._workflows[key] = load_workflow(revision.document)
        return found

    # -- definitions -------------------------------------------------------------------------

    def deployed(self, info: WorkflowInfo) -> None:
        """A revision was deployed: its schedule replaces the one before (from any thread)."""
        self._call_soon(self._schedules.install, info.latest, self._workflow(info.latest))

    def deleted(self, name: str) -> None:
        self._call_soon(self._schedules.remove, name)

    def scheduled(self) -> set[str]:
        """The workflows whose schedules this server follows (on the event loop)."""
        return self._schedules.names()

    def function_deleted(self, function: str) -> None:
        """Steps of a deleted function fail with FunctionNotFound (from any thread)."""
        self._call_soon(self._effects.function_deleted, function)

    def _call_soon(self, function: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            function(*args)
        else:
            loop.call_soon_threadsafe(function, *args)

    # -- executions --------------------------------------------------------------------------

    async def begin(
        self, revision: WorkflowRevision, input: Any, *, idempotency_key: str | None = None,
        parent: str | None = None, parent_action: str | None = None,
    ) -> tuple[Execution, bool]:
        """Start an execution of ``revision``; (execution, created). A known idempotency key
        of the same workflow returns that execution instead."""
        workflow = self._workflow(revision)
        now = utcnow(self._clock)
        execution_id = new_execution_id(self._clock)
        state, actions = start(workflow, input, execution_id=execution_id, now=now)
        row = Execution(
            id=execution_id, workflow=revision.workflow, revision=revision.revision,
            status=state.status, input=input, created_at=now, updated_at=now,
            output=state.output, error=state.error, idempotency_key=idempotency_key,
            parent=parent, parent_action=parent_action,
            finished_at=now if state.finished else None,
        )
        blobs: dict[str, bytes] = {}
        stored = replace(row, input=storable(input, blobs), output=storable(state.output, blobs),
                         state=storable(state.__dict__, blobs))
        saved, created = await self.db(self._store.create_execution, stored, blobs)
        if not created:
            return await self.get(saved.id), False
        live = _Live(row, workflow, state)
        if not state.finished:
            self._live[execution_id] = live
        if parent is not None and parent in self._live:
            self._live[parent].children[parent_action or ""] = execution_id
        for action in actions:
            self._perform(live, action)
        return _view(row, state), True

    async def get(self, execution_id: str) -> Execution:
        """The execution as recorded; the state is the live one when this engine runs it."""
        live = self._live.get(execution_id)
        if live is not None:
            return _view(live.row, live.state)
        row = await self.db(self._store.get_execution, execution_id)
        entries: list[Any] = []
        if row.active or row.seq > row.snapshot_seq:
            entries = await self.db(self._store.journal, row.id, row.snapshot_seq)
        state, row.input, row.output, *entries = await self.db(
            restore_all, [row.state, row.input, row.output, *entries],
            partial(self._store.blobs, row.id))
        row.state = state
        if entries:
            try:
                revision = await self.db(self._store.get_revision, row.workflow,
                                                   row.revision)
            except WorkflowNotFound:
                return _view(row)
            replayed = _Live(row, self._workflow(revision), ExecutionState(**state))
            for entry in entries:
                self._replay(replayed, entry)
            row.state = replayed.state.__dict__
        return _view(row)

    def views(self, rows: list[Execution]) -> list[Execution]:
        """Stored executions as the API shows them (blobs fetched, values decoded); the
        live ones as this engine has them."""
        shown = []
        for row in rows:
            live = self._live.get(row.id)
            if live is not None:
                shown.append(_view(live.row, live.state))
                continue
            row.input, row.output = restore_all(
                [row.input, row.output], partial(self._store.blobs, row.id))
            shown.append(_view(row))
        return shown

    async def wait(self, execution_id: str, timeout_s: float) -> Execution:
        """The execution once it has finished, or as it is after ``timeout_s``."""
        execution = await self.get(execution_id)
        if not execution.active or execution_id not in self._live:
            return execution
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(execution_id, []).append(future)
        try:
            await wait_for(self._clock, asyncio.shield(future), timeout_s)
        except TimeoutError:
            pass
        finally:
            waiters = self._waiters.get(execution_id, [])
            if future in waiters:
                waiters.remove(future)
        return await self.get(execution_id)

    async def cancel(self, execution_id: str) -> Execution:
        """Cancel a running or waiting execution; a finished one is returned as it is."""
        if execution_id in self._live:
            await self._complete(execution_id, CancelRequested("cancelled by request"))
        execution = await self.get(execution_id)
        if execution.active and execution_id not in self._live:
            raise Conflict(
                f"execution {execution_id!r} is run by another server: cancel it there",
                {"execution": execution_id})
        return execution

    async def cancel_workflow(self, name: str) -> None:
        """Cancel every execution of workflow ``name`` (it is being deleted)."""
        ids = [i for i, live in self._live.items() if live.row.workflow == name]
        await asyncio.gather(*[self.cancel(i) for i in ids])

    def steps(self, execution: Execution) -> list[StepRecord]:
        """The task instances of ``execution``, in the order they started; a running
        function step shows the request id of its task."""
        live = self._live.get(execution.id)
        state = live.state if live is not None else _read_only(execution)
        requests: dict[str, str] = {}
        if live is not None:
            for action_id, task_id in self._effects.step_tasks(execution.id).items():
                pending = state.pending.get(action_id)
                if pending is not None:
                    requests[pending["owner"]] = task_id
        steps = []
        for key, node in state.tasks.items():
            call = node.get("call") or {}
            steps.append(StepRecord(
                key=key, path=node.get("path", key.split("@")[0]), status=node["status"],
                attempts=node.get("attempts", 1), started_at=node.get("started_at"),
                ended_at=node.get("ended_at"), error=node.get("error"),
                function=call.get("function"), version=call.get("version"),
                request_id=call.get("request_id") or requests.get(key),
            ))
        return steps

    def progress(self, execution: Execution) -> list[dict[str, Any]]:
        """Each ``for`` task instance's progress: items in all, done, and those in which a
        task failed (caught or not), by index."""
        live = self._live.get(execution.id)
        state = live.state if live is not None else _read_only(execution)
        loops = {key: node for key, node in state.tasks.items() if "loop" in node}
        if not loops:
            return []
        failed: dict[str, set[int]] = {key: set() for key in loops}
        for key, node in state.tasks.items():
            if node["status"] != FAILED or "@" not in key:
                continue
            for loop_key in loops:
                prefix = loops[loop_key]["path"] + "/do/"
                if key.startswith(prefix):
                    index = key.rsplit("@", 1)[1]
                    if index.isdigit():
                        failed[loop_key].add(int(index))
        found = []
        for key, node in loops.items():
            loop = node["loop"]
            found.append({
                "key": key, "path": node["path"], "total": len(loop["items"]),
                "done": loop["next"] - loop["running"], "failed": len(failed[key]),
                "failed_items": sorted(failed[key]),
            })
        return found

    # -- events ------------------------------------------------------------------------------

    async def publish(self, event: dict[str, Any]) -> PublishResult:
        """Offer a CloudEvent to the executions listening and to the schedules. Raises
        InvalidSpec for an event without its required attributes."""
        event = normalize_event(event, utcnow(self._clock))
        key = machine_events.event_key(event)
        # One at a time with the offers of retained events to listens that just started:
        # else such an offer could read this event once retained, before it is taken
        # here, and take it — and this publish would report it retained, taken by none.
        async with self._offering:
            fresh = await self.db(self._store.retain_event, key, event,
                                  utcnow(self._clock))
            if not fresh:
                return PublishResult(event["id"], 0, 0, retained=True, duplicate=True)
            offers = [
                self._complete(execution_id, EventArrived(event))
                for execution_id, live in list(self._live.items())
                if any(_may_match(listen, event) for listen in live.listens.values())
            ]
            started = await self._schedules.offer(event)
            taken = sum(await asyncio.gather(*offers)) if offers else 0
            if taken or started:
                await self.db(self._store.take_event, key, utcnow(self._clock))
        return PublishResult(event["id"], taken, started, retained=not (taken or started),
                             duplicate=False)

    async def _offer_retained(self, execution_id: str) -> None:
        since = utcnow(self._clock) - timedelta(seconds=self._settings.event_retention_s)
        async with self._offering:  # see ``publish``
            kept = await self.db(self._store.retained_events, since)
            for event in kept:
                if execution_id not in self._live:
                    return
                if await self._complete(execution_id, EventArrived(event)):
                    await self.db(self._store.take_event,
                                  machine_events.event_key(event), utcnow(self._clock))

    async def _scheduled(self, revision: WorkflowRevision, input: Any, key: str) -> None:
        await self.begin(revision, input, idempotency_key=key)

    # -- the loop ----------------------------------------------------------------------------

    def _complete(self, execution_id: str, completion: Completion,
                  meta: dict[str, Any] | None = None) -> asyncio.Future[bool]:
        """Queue a completion; the future says whether it changed the execution, once
        that change is recorded."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Item(execution_id, completion, meta, future))
        return future

    async def _run(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while len(batch) < self._settings.max_batch and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            try:
                await self._apply(batch)
            except Exception:
                log.exception("workflow engine: a batch of %d completions failed", len(batch))
                for item in batch:
                    if item.future is not None and not item.future.done():
                        item.future.set_result(False)

    async def _apply(self, batch: list[_Item]) -> None:
        now = utcnow(self._clock)
        progress: dict[str, Progress] = {}
        effects: list[tuple[_Live, list[Action]]] = []
        answers: list[tuple[asyncio.Future[bool] | None, bool]] = []
        for item in batch:
            live = self._live.get(item.execution)
            if live is None:
                answers.append((item.future, False))
                continue
            entry: dict[str, Any] = {"completion": completion_to_dict(item.completion),
                                     "now": now.isoformat()}
            if item.meta:
                entry["meta"] = item.meta
            try:
                owner = self._owner(live.state, item.completion)
                actions = advance(live.workflow, live.state, item.completion, now=now)
                if actions is not None:
                    self._annotate(live, owner, item.meta)
            except Exception:
                log.exception("workflow execution %s: a transition failed", item.execution)
                problem = {"type": RUNTIME, "status": 500, "title": "EngineError",
                           "detail": "the workflow engine failed on this execution; the "
                                     "server log has the details", "instance": "/"}
                entry["broken"] = problem
                actions = self._break(live, problem)
            if actions is None:
                answers.append((item.future, False))
                continue
            # Listening is in-memory and takes effect now, with the status the execution
            # shows: an event published while this batch is recorded is queued behind it
            # and reaches the listen (no effect goes out before the record).
            for action in actions:
                if isinstance(action, Listen):
                    live.listens[action.action_id] = action
                elif isinstance(action, StopListening):
                    live.listens.pop(action.action_id, None)
            if item.meta and item.meta.get("rerun"):
                live.reruns += 1
                live.row.reruns = live.reruns  # what a read of the live execution shows
            live.row.seq += 1
            live.since_snapshot += 1
            state = live.state
            live.row.status, live.row.output, live.row.error = state.status, state.output, \
                state.error
            live.row.updated_at = now
            if state.finished:
                live.row.finished_at = now
            record = progress.get(item.execution)
            if record is None:
                record = progress[item.execution] = Progress(
                    item.execution, live.row.seq, [], state.status, now)
            record.entries.append(storable(entry, record.blobs))
            record.status, record.error = state.status, state.error
            record.output = storable(state.output, record.blobs)
            record.finished_at, record.updated_at = live.row.finished_at, now
            record.reruns = live.reruns
            effects.append((live, actions))
            answers.append((item.future, True))
        for execution_id, record in progress.items():
            live = self._live[execution_id]
            threshold = max(self._settings.snapshot_min_entries, len(live.state.tasks))
            if live.state.finished or live.since_snapshot >= threshold:
                record.snapshot = storable(live.state.__dict__, record.blobs)
                live.since_snapshot = 0
        if progress:
            await self._record(list(progress.values()))
        for live, actions in effects:
            for action in actions:
                self._perform(live, action)
        for future, changed in answers:
            if future is not None and not future.done():
                future.set_result(changed)

    async def _record(self, batch: list[Progress]) -> None:
        """Write the batch; effects wait until it is written, so a failing database holds
        the engine back (retried) rather than letting effects go unrecorded."""
        delay = 0.1
        while True:
            try:
                await self.db(self._store.record, batch)
                return
            except Exception:
                log.exception("workflow engine: recording %d execution(s) failed; retrying",
                              len(batch))
                await self._clock.sleep(delay)
                delay = min(delay * 2, 5.0)

    @staticmethod
    def _owner(state: ExecutionState, completion: Completion) -> str | None:
        action_id = getattr(completion, "action_id", None)
        pending = state.pending.get(action_id) if action_id is not None else None
        return pending["owner"] if pending is not None else None

    @staticmethod
    def _annotate(live: _Live, owner: str | None, meta: dict[str, Any] | None) -> None:
        """Keep which function version and request a step ran as, with its task."""
        if owner is None or not meta:
            return
        node = live.state.tasks.get(owner)
        if node is not None:
            node["call"] = {k: meta.get(k) for k in ("function", "version", "request_id")}

    def _break(self, live: _Live, problem: dict[str, Any]) -> list[Action]:
        """Fail an execution the machine could not step: cancel what it had outstanding."""
        state = live.state
        cancels: list[Action] = []
        for action_id, pending in state.pending.items():
            kind = pending["kind"]
            if kind in ("call", "http"):
                cancels.append(CancelCall(action_id))
            elif kind == "timer":
                cancels.append(CancelTimer(action_id))
            elif kind == "listen":
                cancels.append(StopListening(action_id))
            elif kind == "workflow":
                cancels.append(CancelWorkflow(action_id))
        state.pending.clear()
        state.status, state.error = FAILED, problem
        return [*cancels, Finished(FAILED, error=problem)]

    # -- effects -----------------------------------------------------------------------------

    def _perform(self, live: _Live, action: Action) -> None:
        execution_id = live.row.id
        if isinstance(action, CallFunction):
            self._effects.call(execution_id, action)
        elif isinstance(action, CallHttp):
            self._effects.call_http(execution_id, action)
        elif isinstance(action, StartTimer):
            self._effects.timer(execution_id, action.action_id, action.fire_at)
        elif isinstance(action, CancelTimer | CancelCall):
            self._effects.cancel(execution_id, action.action_id)
        elif isinstance(action, Listen):
            live.listens[action.action_id] = action  # at once when it comes from start()
            self._spawn(self._offer_retained(execution_id))
        elif isinstance(action, StopListening):
            live.listens.pop(action.action_id, None)
        elif isinstance(action, Emit):
            self._spawn(self._emit(live, action))
        elif isinstance(action, StartWorkflow):
            self._spawn(self._start_child(live, action))
        elif isinstance(action, CancelWorkflow):
            child = live.children.pop(action.action_id, None)
            if child is not None:
                self._spawn(self.cancel(child))
        elif isinstance(action, Finished):
            self._finished(live)

    async def _emit(self, live: _Live, action: Emit) -> None:
        event = plain(dict(action.event))
        event.setdefault("source", f"/workflows/{live.row.workflow}/executions/{live.row.id}")
        await self.publish(event)

    async def _start_child(self, live: _Live, action: StartWorkflow) -> None:
        try:
            revision = await self.db(
                self._store.find_revision, action.namespace, action.name, action.version)
        except WorkflowNotFound as err:
            if action.await_:
                self._complete(live.row.id, WorkflowFinished(action.action_id,
                                                             error=problem_of(err)))
            return
        child, _ = await self.begin(
            revision, action.input, idempotency_key=action.idempotency_key,
            parent=live.row.id if action.await_ else None,
            parent_action=action.action_id if action.await_ else None,
        )
        if action.await_:
            live.children[action.action_id] = child.id
            if not child.active:
                self._complete(live.row.id, WorkflowFinished(
                    action.action_id, output=child.output, error=child.error))

    def _finished(self, live: _Live) -> None:
        row = live.row
        self._live.pop(row.id, None)
        self._effects.forget(row.id)
        for future in self._waiters.pop(row.id, []):
            if not future.done():
                future.set_result(None)
        if row.parent is not None and row.parent in self._live:
            self._complete(row.parent, WorkflowFinished(
                row.parent_action or "", output=row.output, error=row.error))
        self._schedules.finished(row)
        self.on_finished(row)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._background.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("workflow engine", exc_info=finished.exception())

        task.add_done_callback(done)

    async def _purge(self) -> None:
        while True:
            await self._clock.sleep(self._settings.purge_interval_s)
            now = utcnow(self._clock)
            try:
                await self.db(self._store.purge_executions,
                                        now - timedelta(seconds=self._settings.retention_s))
                await self.db(
                    self._store.purge_events,
                    now - timedelta(seconds=self._settings.event_retention_s))
            except Exception:
                log.exception("workflow engine: purging old executions failed")


def _view(row: Execution, state: ExecutionState | None = None) -> Execution:
    """An execution as the API shows it: its input and output decoded; a live one with its
    live state (read-only: the engine changes it)."""
    return replace(row, input=plain(row.input), output=plain(row.output),
                   state=state.__dict__ if state is not None else row.state)


def _read_only(execution: Execution) -> ExecutionState:
    """The recorded state as an ExecutionState, without the copy ``from_dict`` makes: for
    reading only (a large ``for`` holds many tasks)."""
    return ExecutionState(**execution.state)


def _may_match(listen: Listen, event: dict[str, Any]) -> bool:
    """Whether a listen may take ``event`` (the machine decides): a filter without a
    ``type``, or with the event's."""
    return any(f.get("with", {}).get("type") in (None, event.get("type"))
               for f in listen.filters)
