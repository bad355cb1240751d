"""Runs the source of every enabled or paused trigger, and follows trigger changes.

A trigger delivers to its function (queued or invoked), with target ``events`` to the
workflow event bus (published), or with target ``workflow`` to its workflow (an execution
started per event).

Ownership: the source of an HTTP trigger runs on every node (its requests arrive wherever
a client calls). Any other source runs only while this node holds the trigger's lease
(``ember.cluster.leases``): it is started when the lease is taken (at once when free, or
later at a beat of the lease manager), stopped when the lease is lost or handed over, and
the lease is released when the trigger is disabled or deleted. On a server alone on its
store every lease is granted at once, so every source runs here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterator
from typing import Any

from ember.clock import Clock
from ember.cluster.leases import Leases, LocalLeases
from ember.control.triggers import TriggerService
from ember.errors import TriggerNotFound
from ember.model.trigger import CLOUDEVENTS_JSON, HttpSource, Trigger
from ember.queue.worker import AsyncInvoker
from ember.router import InvocationResult, Router
from ember.triggers.base import (
    Publish,
    RunWorkflow,
    Source,
    SourceContext,
    TriggerStatus,
    make_source,
)

log = logging.getLogger(__name__)


class _Running:
    def __init__(self, trigger: Trigger, source: Source, context: SourceContext) -> None:
        self.trigger = trigger
        self.source = source
        self.context = context


class Supervisor:
    """One running Source per trigger that is not disabled. ``publish`` puts an event on
    the workflow event bus (``WorkflowService.publish``), for triggers with target
    ``events``; ``run_workflow`` starts an execution (``WorkflowService.run``), for triggers
    with target ``workflow``. Without them, such triggers fail each delivery with
    ServiceUnavailable. ``leases`` decide which non-HTTP sources run on this node (all of
    them without it)."""

    def __init__(self, triggers: TriggerService, invoker: AsyncInvoker, router: Router,
                 clock: Clock, publish: Publish | None = None,
                 run_workflow: RunWorkflow | None = None, leases: Leases | None = None) -> None:
        self.leases: Leases = leases if leases is not None else LocalLeases("local")
        self._triggers = triggers
        self._invoker = invoker
        self._router = router
        self._clock = clock
        self._publish = publish
        self._run_workflow = run_workflow
        self._running: dict[str, _Running] = {}
        # The running HTTP triggers by path, made again on the first request after any
        # change to ``_running``: a request looks up the prefixes of its path, whatever
        # the number of triggers.
        self._routes: dict[str, list[_Running]] | None = None
        # Every trigger that is enabled or paused, as last read: its source runs here when
        # this node holds its lease (always, for HTTP).
        self._wanted: dict[str, Trigger] = {}
        self._closing = False
        # Counters outlive a source that is restarted or disabled, until the trigger goes.
        self._statuses: dict[str, TriggerStatus] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        triggers.on_change(self._changed_from_any_thread)
        triggers.on_function_deleted(self._function_deleted_from_any_thread)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.leases.start(self)
        for trigger in await asyncio.to_thread(self._triggers.list):
            await self._apply(trigger.name, trigger)

    async def close(self) -> None:
        """Stop every source, then free the leases (so that no other node starts a source
        while this one still runs it)."""
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        async with self._lock:
            running, self._running = list(self._running.values()), {}
            self._routes = None
        await asyncio.gather(*(self._stop(r) for r in running), return_exceptions=True)
        await self.leases.close()

    # leases ------------------------------------------------------------------------------

    async def lease_gained(self, name: str) -> None:
        """The lease manager took ``name``'s lease: run its source (``leases.Owner``)."""
        async with self._lock:
            trigger = self._wanted.get(name)
            if trigger is None or self._closing:
                await self.leases.release(name)
            elif name not in self._running:
                await self._start(name, trigger)

    async def lease_lost(self, name: str) -> None:
        """``name``'s lease is lost or handed over: stop its source (``leases.Owner``)."""
        async with self._lock:
            running = self._running.pop(name, None)
            self._routes = None
            if running is not None:
                await self._stop(running)

    async def drain(self, draining: bool) -> None:
        """Hand every lease over to the other nodes (True: this node is draining), or
        compete for them again (False). HTTP triggers go on being served."""
        await self.leases.drain(draining)

    # delivery ----------------------------------------------------------------------------

    async def _submit(self, trigger: Trigger, body: bytes, key: str | None) -> str:
        function, qualifier = _bound(trigger)
        task, _ = await self._invoker.submit(
            function, qualifier, body, CLOUDEVENTS_JSON, idempotency_key=key
        )
        return task.id

    async def _invoke(self, trigger: Trigger, body: bytes) -> InvocationResult:
        function, qualifier = _bound(trigger)
        return await self._router.invoke(
            function, qualifier, body, CLOUDEVENTS_JSON, trigger=trigger.name
        )

    # following changes -------------------------------------------------------------------

    def _changed_from_any_thread(self, name: str) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._schedule, name)

    def _schedule(self, name: str) -> None:
        self._spawn(self._reload(name))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _function_deleted_from_any_thread(self, function: str) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._retire, function)

    def _retire(self, function: str) -> None:
        """The triggers of a deleted function deliver nothing from now on; their sources stop
        in the background. This callback runs before the API answers the deletion (whose
        answer reaches the loop after it), so no request after that answer finds a route
        of the function, and a function re-created under its name inherits nothing."""
        for running in self._running.values():
            if running.trigger.function == function:
                running.context.retired = True
        self._spawn(self._forget_missing())

    async def _forget_missing(self) -> None:
        """Stop the sources, and drop the statuses, of triggers no longer in the store."""
        present = {t.name for t in await asyncio.to_thread(self._triggers.list)}
        for name in (set(self._running) | set(self._statuses) | set(self._wanted)) - present:
            await self._apply(name, None)

    async def _reload(self, name: str) -> None:
        try:
            trigger: Trigger | None = await asyncio.to_thread(self._triggers.get, name)
        except TriggerNotFound:
            trigger = None
        await self._apply(name, trigger)

    async def _apply(self, name: str, trigger: Trigger | None) -> None:
        """Bring the running source of ``name`` in line with ``trigger`` (None: deleted),
        and this node's lease of it."""
        async with self._lock:
            running = self._running.get(name)
            if running is not None and (
                trigger is None or trigger.state == "disabled" or running.context.retired
                or _binding(running.trigger) != _binding(trigger)
            ):
                del self._running[name]
                self._routes = None
                await self._stop(running)
                if running.context.retired:
                    self._statuses.pop(name, None)  # a new trigger of the same name
                running = None
            if trigger is None or trigger.state == "disabled":
                self._wanted.pop(name, None)
                await self.leases.release(name)
                if trigger is None:
                    self._statuses.pop(name, None)
                return
            self._wanted[name] = trigger
            if running is None:
                # Not leased here: the lease manager starts it once it takes the lease.
                if not _leased(trigger) or await self.leases.acquire(name):
                    await self._start(name, trigger)
                return
            was_paused = running.trigger.state == "paused"
            running.trigger = trigger
            running.context.trigger = trigger
            if trigger.state == "paused" and not was_paused:
                await running.source.pause()
            elif trigger.state == "enabled":
                # Also restarts what a source stopped on its own (an ordered shard that
                # gave up on a poison batch).
                await running.source.resume()

    async def _start(self, name: str, trigger: Trigger) -> None:
        """Under the lock: make and start ``trigger``'s source. One that cannot start
        (logged, and its error in the status) gives its lease up until the trigger
        changes."""
        status = self._statuses.setdefault(name, TriggerStatus())
        context = SourceContext(trigger, self._clock, self._submit, self._invoke, status,
                                self._publish, self._run_workflow)
        try:
            source = make_source(trigger, context)
            await source.start()
        except Exception as exc:
            log.exception("trigger %s could not start", name)
            context.failed(exc)
            if _leased(trigger):
                await self.leases.release(name)
            return
        self._running[name] = _Running(trigger, source, context)
        self._routes = None
        if trigger.state == "paused":
            await source.pause()

    async def _stop(self, running: _Running) -> None:
        try:
            await running.source.stop()
        except Exception:
            log.exception("stopping trigger %s", running.trigger.name)

    # what the API asks -------------------------------------------------------------------

    def running(self) -> list[str]:
        """The names of the triggers whose source runs (enabled or paused), sorted."""
        return sorted(self._running)

    def status(self, name: str) -> TriggerStatus:
        """What the trigger's source did on this node since the server started."""
        return self._statuses.get(name) or TriggerStatus()

    def node(self, trigger: Trigger) -> str | None:
        """The node whose source of ``trigger`` runs (holds its lease): None when no node
        holds it, and for an HTTP trigger, which every node serves. Another node's lease
        is seen as of this node's last lease beat."""
        if not _leased(trigger):
            return None
        return self.leases.holder(trigger.name)

    def http_route(self, path: str) -> tuple[Source, str] | None:
        """The source of the HTTP trigger whose path is the longest prefix of ``path`` (on a
        ``/`` boundary), and the rest of the path below that prefix."""
        routes = self._routes
        if routes is None:
            routes = {}
            for running in self._running.values():
                source = running.trigger.source
                if isinstance(source, HttpSource):
                    routes.setdefault(source.path, []).append(running)
            self._routes = routes
        if not routes:
            return None
        for prefix in _prefixes(path):
            for running in routes.get(prefix, ()):
                if not running.context.retired:
                    rest = path if prefix == "/" else path[len(prefix):]
                    return running.source, rest or "/"
        return None

    async def wait_settled(self) -> None:
        """Let pending change notifications finish (tests and the API's read-your-writes)."""
        while self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _prefixes(path: str) -> Iterator[str]:
    """``path`` and each of its prefixes that ends before a ``/``, longest first, then
    ``/``: every path an HTTP trigger may have to take ``path``."""
    yield path
    end = len(path)
    while (end := path.rfind("/", 0, end)) > 0:
        yield path[:end]
    if path != "/":
        yield "/"


def _leased(trigger: Trigger) -> bool:
    """Whether the trigger's source runs on one node at a time, under a lease: any that
    pulls its events; an HTTP trigger's requests arrive at every node."""
    return not isinstance(trigger.source, HttpSource)


def _binding(trigger: Trigger | None) -> tuple[Any, ...] | None:
    """What, when changed, needs a new source (the state alone does not)."""
    if trigger is None:
        return None
    return (trigger.target, trigger.function, trigger.qualifier, trigger.workflow,
            trigger.source)


def _bound(trigger: Trigger) -> tuple[str, str]:
    """The function and qualifier of a trigger with target ``function``. A trigger with
    another target never gets here: its context publishes or starts a workflow instead."""
    if trigger.function is None or trigger.qualifier is None:
        raise TypeError(f"trigger {trigger.name!r} targets {trigger.target}, not a function")
    return trigger.function, trigger.qualifier
