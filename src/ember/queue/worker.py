"""The async worker: claims queued events, runs them through the router, and decides what
each outcome means — done, retried, expired, dead-lettered, sent to a destination."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, replace

import orjson

from ember.clock import Clock, wait_for
from ember.cluster.slots import SlotsTaken
from ember.control import FunctionService
from ember.errors import EmberError, FunctionNotFound, InvalidSpec, PayloadTooLarge
from ember.ids import new_id
from ember.model.function import AsyncConfig, Destination, Function, Qualifier
from ember.model.invocation import Attempt, Event, Task
from ember.model.trigger import CLOUDEVENTS_JSON
from ember.queue.base import Delivery, Queue
from ember.queue.destinations import destination_record
from ember.queue.policy import RetryPolicy, kind_of
from ember.router import InvocationResult, Router

log = logging.getLogger(__name__)

DEDUP_WINDOW_S = 24 * 3600
# How long a function's deletion waits for its queue state to be dropped.
_DELETE_WAIT_S = 30.0
# An attempt's running state is written once it has run this long (real time: it is what
# those who look at the task see, not part of any rule); a shorter attempt goes straight to
# its outcome, one write instead of two.
RUNNING_AFTER_S = 0.05
# An event whose function has every instance of its max_instances up on other nodes goes
# back to the queue for this long: those nodes (or this one, once slots come free) take it.
SLOTS_TAKEN_DELAY_S = 0.5


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 32            # async invocations running at once on this server
    lease_s: float = 30.0            # how long a claimed event is ours without a heartbeat
    poll_interval_s: float = 0.1     # how often an idle worker looks for due retries
    max_payload_bytes: int = 256 * 1024
    shutdown_grace_s: float = 10.0
    retention_s: float = 7 * 24 * 3600  # finished tasks and dead letters are kept this long
    purge_interval_s: float = 3600.0    # how often those older than that are deleted


# How many times a stop looks for its task's event, which may move between the queue and an
# attempt of this server's while it looks.
_STOP_LOOKS = 3


class AsyncInvoker:
    """Accepts async invocations into the queue and runs them with at-least-once delivery."""

    def __init__(
        self, queue: Queue, router: Router, functions: FunctionService, clock: Clock,
        settings: WorkerSettings = WorkerSettings(), policy: RetryPolicy = RetryPolicy(),
        rng: random.Random | None = None,
    ) -> None:
        self.queue = queue
        self._router = router
        self._functions = functions
        self._clock = clock
        self._settings = settings
        self._policy = policy
        self._rng = rng or random.Random()
        self._running: dict[str, asyncio.Task[None]] = {}
        # The deliveries of the attempts above, whose leases one heartbeat keeps (one timer
        # for all of them instead of a task per attempt), and each attempt's write of its
        # ``running`` state: a timer until RUNNING_AFTER_S, then the write itself.
        self._leases: dict[str, Delivery] = {}
        self._saves: dict[str, asyncio.TimerHandle | asyncio.Task[None]] = {}
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._stopping: set[str] = set()
        self._paused: set[str] = set()
        # async.max_concurrency of each function that sets one: the queue leases no more
        # of its events at once. From the latest config at start and on every change, then
        # from the config of what each attempt targets (an alias may set its own).
        self._limits: dict[str, int] = {}
        # The async settings each (function, qualifier) runs with, read once and dropped on
        # every change of the function (here or on another node), like the router's routes:
        # the warm path reads no database. A change heard while a read is in flight bumps
        # the generation, and that read is then answered but not kept.
        self._configs: dict[tuple[str, str], AsyncConfig] = {}
        self._generation: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._purge_task: asyncio.Task[None] | None = None
        self._claims = 0  # claims begun, numbered
        self._refreshing: set[asyncio.Task[None]] = set()
        self._quiet_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._closing = False
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_outcome: Callable[[str, str], None] = lambda function, outcome: None
        # Owners of tasks by idempotency key prefix (the workflow engine's steps): their
        # tasks are not retried on function errors, never dead-lettered nor sent to a
        # destination, and their owner is told when they end.
        self._owners: dict[str, Callable[[Task], None]] = {}
        functions.on_change(self._changed_from_any_thread)
        functions.on_delete(self._deleted_from_any_thread)

    def own(self, prefix: str, on_final: Callable[[Task], None]) -> None:
        """Take the tasks whose idempotency key starts with ``prefix``: they run once per
        submit (function errors are the owner's to retry; system errors are still retried
        with backoff), are not dead-lettered nor sent to destinations, and
        ``on_final(task)`` is called once each reaches a final status."""
        self._owners[prefix] = on_final

    def _owner(self, task: Task) -> Callable[[Task], None] | None:
        key = task.idempotency_key
        if key is None or not self._owners:
            return None
        for prefix, on_final in self._owners.items():
            if key.startswith(prefix):
                return on_final
        return None

    def _ended(self, task: Task) -> None:
        owner = self._owner(task)
        if owner is not None:
            try:
                owner(task)
            except Exception:
                log.exception("the owner of task %s failed to take its outcome", task.id)

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.queue.start()
        functions = await asyncio.to_thread(self._functions.all_functions)
        self._paused = {f.name for f in functions if f.async_paused}
        for function in functions:
            self._set_limit(function.name, function.config.async_.max_concurrency)
        self._loop_task = self._loop.create_task(self._consume())
        self._purge_task = self._loop.create_task(self._purge())
        self._heartbeat_task = self._loop.create_task(self._heartbeat())

    def _set_limit(self, name: str, max_concurrency: int | None) -> None:
        if max_concurrency is None:
            self._limits.pop(name, None)
        else:
            self._limits[name] = max_concurrency

    async def close(self) -> None:
        """Stop claiming; give running attempts a grace period, then cancel them — their
        events stay leased and run again after a restart."""
        self._closing = True
        self._wake.set()
        for loop_task in (self._loop_task, self._purge_task):
            if loop_task is not None:
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
        running = list(self._running.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=self._settings.shutdown_grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        await self.queue.close()

    # accepting ---------------------------------------------------------------------------

    async def submit(
        self, name: str, qualifier: str | None, payload: bytes, content_type: str, *,
        idempotency_key: str | None = None,
    ) -> tuple[Task, bool]:
        """Queue an invocation durably; returns (task, created). A known idempotency key
        returns the first task. Raises PayloadTooLarge, FunctionNotFound, InvalidSpec."""
        if len(payload) > self._settings.max_payload_bytes:
            raise PayloadTooLarge(
                f"async payload of {len(payload)} bytes is over the "
                f"{self._settings.max_payload_bytes} byte limit: send a reference to the "
                "data instead, or invoke synchronously",
                {"size": len(payload), "limit": self._settings.max_payload_bytes},
            )
        if idempotency_key is not None and not 0 < len(idempotency_key) <= 256:
            raise InvalidSpec("the idempotency key must be 1 to 256 characters",
                              {"field": "X-Ember-Idempotency-Key"})
        # The function and its qualifier must exist now; the router's cache answers
        # without a database read on the hot path.
        await self._router.resolve(name, qualifier)
        event = Event(new_id(), name, qualifier or "latest", payload, content_type,
                      self._clock.time())
        task, created = await self.queue.submit(
            event, idempotency_key=idempotency_key, dedup_window_s=DEDUP_WINDOW_S,
            now=self._clock.time(),
        )
        if created:
            self._wake.set()
        return task, created

    async def set_paused(self, name: str, paused: bool) -> Function:
        """Pause or resume the function's async events, on record and in this worker at
        once, so that no event starts after a pause has been answered."""
        function = await asyncio.to_thread(self._functions.set_async_paused, name, paused)
        if paused:
            self._paused.add(name)
        else:
            self._paused.discard(name)
            self._wake.set()
        return function

    async def set_draining(self, draining: bool) -> None:
        """Claim nothing more while the node drains (``NodeRegistry.on_drain``): its running
        attempts go on to the end, and other nodes' workers take the queued events."""
        self._draining = draining
        self._wake.set()

    @property
    def running_count(self) -> int:
        """Attempts running now on this node."""
        return len(self._running)

    def wake(self) -> None:
        """Look for claimable events now (something was queued or redriven)."""
        self._wake.set()

    async def stop(self, task_id: str) -> Task:
        """Stop a task: a queued one never runs; a running one's instance is killed."""
        look = 0
        while True:
            look += 1
            task = await self.queue.stop_queued(task_id, now=self._clock.time())
            if task is not None:
                if task.status == "stopped":
                    self._ended(task)
                return task
            running = self._running.get(task_id)
            if running is None:
                if look < _STOP_LOOKS:
                    continue  # its attempt here may have settled since: look again
                # Leased by an attempt this server does not run (another node, or one that
                # died and has not been redelivered yet): it stops when it is next claimed.
                task = await self.queue.get_task(task_id)
                task.stop_requested = True
                await self.queue.save_task(task)
                return task
            self._stopping.add(task_id)
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            task = await self.queue.get_task(task_id)
            if task.final or look == _STOP_LOOKS:
                return task
            # The attempt settled just as it was cancelled (its retry or postponement was
            # written, and the stop's acknowledgement then held a spent lease): the event
            # is back in the queue, so stop it there.

    # consuming ---------------------------------------------------------------------------

    async def quiet(self) -> None:
        """Return once a claim that began after this call found nothing to start: every
        event due by then (of a function not paused, not at its cap) has been started. A
        point for tests to wait on instead of sleeping."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._quiet_waiters.append((self._claims, future))
        self._wake.set()
        await future

    async def _consume(self) -> None:
        while not self._closing:
            # Cleared before the claim: a wake-up during it makes the loop claim again.
            self._wake.clear()
            self._claims += 1
            number = self._claims
            free = self._settings.concurrency - len(self._running)
            deliveries: list[Delivery] = []
            if self._draining:
                self._found_nothing(number)  # it starts nothing while the node drains
            elif free > 0:
                try:
                    deliveries = await self.queue.claim(
                        free, self._settings.lease_s, now=self._clock.time(),
                        paused=frozenset(self._paused), limits=dict(self._limits),
                    )
                except EmberError as exc:
                    log.warning("cannot claim async events: %s", exc)
                else:
                    if not deliveries:
                        self._found_nothing(number)
            for delivery in deliveries:
                self._begin(delivery)
            if not deliveries:
                with contextlib.suppress(TimeoutError):
                    await wait_for(self._clock, self._wake.wait(),
                                   self._settings.poll_interval_s)

    def _found_nothing(self, claim: int) -> None:
        waiting = []
        for after, future in self._quiet_waiters:
            if claim > after:
                if not future.done():
                    future.set_result(None)
            else:
                waiting.append((after, future))
        self._quiet_waiters = waiting

    async def _purge(self) -> None:
        """Delete finished tasks and dead letters older than the retention, now and then
        every ``purge_interval_s`` (on the injected clock)."""
        while not self._closing:
            try:
                removed = await self.queue.purge(self._clock.time() - self._settings.retention_s)
            except EmberError as exc:
                log.warning("cannot purge finished tasks and dead letters: %s", exc)
            else:
                if removed:
                    log.info("purged %d finished tasks and dead letters older than %g s",
                             removed, self._settings.retention_s)
            await self._clock.sleep(self._settings.purge_interval_s)

    def _begin(self, delivery: Delivery) -> None:
        task = asyncio.get_running_loop().create_task(self._process(delivery))
        self._running[delivery.event.id] = task
        self._leases[delivery.event.id] = delivery

        def done(finished: asyncio.Task[None]) -> None:
            # The event may be claimed again (its retry came due) before an attempt that
            # settled it is done: that attempt leaves the new one's entries alone.
            if self._running.get(delivery.event.id) is finished:
                del self._running[delivery.event.id]
                self._leases.pop(delivery.event.id, None)
                self._saves.pop(delivery.event.id, None)
                self._stopping.discard(delivery.event.id)
            self._wake.set()

        task.add_done_callback(done)

    async def _process(self, delivery: Delivery) -> None:
        try:
            await self._attempt(delivery)
        except asyncio.CancelledError:
            if delivery.event.id in self._stopping:
                await self._stopped(delivery)
            raise
        except Exception:
            # A bug or a backend failure: the lease runs out and the event comes back.
            log.exception("async event %s of %s", delivery.event.id, delivery.event.function)

    async def _attempt(self, delivery: Delivery) -> None:
        event = delivery.event
        now = self._clock.time()
        # The claim read the task in the same step, when the backend could.
        task = delivery.task or await self.queue.get_task(event.id)
        if task.final:
            await self.queue.ack(delivery, task)
            return
        if task.stop_requested:
            await self._stopped(delivery)
            return
        if delivery.redelivered:
            await self._interrupted(delivery, task, now)
        if event.function in self._paused:
            await self.queue.postpone(delivery, delay_s=1.0, now=now)
            return
        try:
            config = await self._config(event.function, event.qualifier)
        except FunctionNotFound as err:
            await self._fail(delivery, task, err, "Failure", AsyncConfig(), now)
            return
        self._set_limit(event.function, config.max_concurrency)
        if now - event.enqueued_at > config.max_event_age_s:
            task.status = "expired"
            await self._fail(delivery, task, None, "EventAgeExceeded", config, now)
            return
        task.status = "running"
        task.attempts = event.attempt + 1
        task.started_at = task.started_at or now
        task.updated_at = now
        # The running state is written while the function runs, once it has run for
        # RUNNING_AFTER_S, rather than before: it is for those who look, and nothing
        # depends on it being durable (a server that dies leaves the lease to run out, and
        # the next claim records the attempt). The outcome cancels it or waits for it
        # (``_saved``), so the final state is always written last.
        self._saves[event.id] = asyncio.get_running_loop().call_later(
            RUNNING_AFTER_S, self._save_running, task)
        started = now
        try:
            result = await self._router.invoke(
                event.function, event.qualifier, event.payload, event.content_type,
                request_id=event.id, mode="async", attempt=event.attempt + 1, background=True,
                trigger=_trigger_of(event),
            )
        except SlotsTaken:
            # max_instances are all up on other nodes (or held by one that died, until its
            # slots lapse): the event waits for them, as for a paused function — no
            # attempt counted, no backoff that grows while the slots come free.
            if await self._saved(event.id):
                task.status, task.attempts = "queued", event.attempt
                await self.queue.save_task(task)
            await self.queue.postpone(delivery, delay_s=SLOTS_TAKEN_DELAY_S,
                                      now=self._clock.time())
            return
        except EmberError as err:
            await self._saved(event.id)
            await self._failed_attempt(delivery, task, err, config, started)
            return
        await self._saved(event.id)
        await self._succeeded(delivery, task, result, config, started)

    def _save_running(self, task: Task) -> None:
        # Still running (an outcome would have cancelled the timer), so the task is as it
        # was when the attempt began; the copy is what the write reads, whatever comes next.
        if task.id in self._saves:
            self._saves[task.id] = asyncio.get_running_loop().create_task(
                self.queue.save_task(replace(task, history=list(task.history))))

    async def _saved(self, event_id: str) -> bool:
        """The attempt's running state is not written if it has not begun to be; else
        wait for that write to end. Whether it was written."""
        saving = self._saves.pop(event_id, None)
        if saving is None:
            return False
        if not isinstance(saving, asyncio.Future):  # the timer (uvloop has its own class)
            saving.cancel()
            return False
        try:
            await saving
        except EmberError as exc:
            log.warning("cannot store the running state of task %s: %s", event_id, exc)
        return True

    async def _config(self, function: str, qualifier: str) -> AsyncConfig:
        key = (function, qualifier)
        config = self._configs.get(key)
        if config is None:
            generation = self._generation.get(function, 0)
            config = await asyncio.to_thread(self._async_config, function, qualifier)
            if self._generation.get(function, 0) == generation:
                self._configs[key] = config
        return config

    def _forget_configs(self, name: str) -> None:
        self._generation[name] = self._generation.get(name, 0) + 1
        for key in [k for k in self._configs if k[0] == name]:
            del self._configs[key]

    def _async_config(self, function: str, qualifier: str) -> AsyncConfig:
        """The async settings of what the qualifier names: an alias's own, else those of
        the version it points at (the primary one of a split)."""
        parsed = Qualifier.parse(qualifier)
        if parsed.kind == "latest":
            return self._functions.get(function).config.async_
        number = parsed.version
        if number is None:
            alias = self._functions.get_alias(function, parsed.value)
            if alias.async_config is not None:
                return alias.async_config
            number = alias.version
        return self._functions.get_version(function, number).config.async_

    async def _interrupted(self, delivery: Delivery, task: Task, now: float) -> None:
        """The previous claim of this event never ended (its holder died, or stalled past
        its lease): record that attempt, which the queue counted in ``event.attempt``."""
        was_running = task.status == "running"
        task.history.append(Attempt(
            delivery.event.attempt, task.updated_at if was_running else now, now,
            "interrupted", task.version if was_running else None, None,
            "the attempt did not finish: its lease ran out (the server stopped or stalled)",
        ))
        task.status = "queued"
        task.attempts = delivery.event.attempt
        task.updated_at = now
        await self.queue.save_task(task)

    async def _heartbeat(self) -> None:
        """Every third of a lease (on the injected clock), extend the lease of every event
        this worker holds, so that a long attempt keeps its event. The beats keep to their
        schedule: time that passed while extending does not push the next one later."""
        period = self._settings.lease_s / 3
        beat_at = self._clock.monotonic() + period
        while True:
            await self._clock.sleep(beat_at - self._clock.monotonic())
            beat_at += period
            if beat_at <= self._clock.monotonic():  # fell behind (a stall): start again
                beat_at = self._clock.monotonic() + period
            now = self._clock.time()
            held = list(self._leases.values())
            outcomes = await asyncio.gather(
                *(self.queue.extend(d, self._settings.lease_s, now=now) for d in held),
                return_exceptions=True)
            for delivery, outcome in zip(held, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    log.warning("cannot extend the lease of async event %s: %s",
                                delivery.event.id, outcome)

    # outcomes ----------------------------------------------------------------------------

    async def _succeeded(self, delivery: Delivery, task: Task, result: InvocationResult,
                         config: AsyncConfig, started: float) -> None:
        now = self._clock.time()
        task.history.append(Attempt(delivery.event.attempt + 1, started, now, "success",
                                    result.version))
        task.status = "succeeded"
        task.version = result.version
        task.result = result.body
        task.result_content_type = result.content_type
        task.error = None
        task.finished_at = task.updated_at = now
        if config.on_success is not None and self._owner(task) is None:
            await self._deliver(config.on_success, delivery, task, "Success")
        await self.queue.ack(delivery, task)
        self.on_outcome(task.function, "succeeded")
        self._ended(task)

    async def _failed_attempt(self, delivery: Delivery, task: Task, err: EmberError,
                              config: AsyncConfig, started: float) -> None:
        event = delivery.event
        now = self._clock.time()
        kind = kind_of(err, event.id)
        task.history.append(Attempt(
            event.attempt + 1, started, now, "system_error" if kind == "system" else "error",
            err.headers.get("X-Ember-Version"), err.code, err.message,
        ))
        task.error = err.to_dict()
        task.version = err.headers.get("X-Ember-Version", task.version)
        if kind == "system":
            delay = self._policy.system_delay(event.attempt + 1, self._rng)
            if now + delay - event.enqueued_at <= config.max_event_age_s:
                await self._retry(delivery, task, delay, now)
                return
            task.status = "expired"
            await self._fail(delivery, task, err, "EventAgeExceeded", config, now)
            return
        retries = 0 if self._owner(task) is not None else config.max_retries
        if kind == "function" and event.attempt < retries:
            delay = self._policy.function_delay(event.attempt + 1)
            if now + delay - event.enqueued_at <= config.max_event_age_s:
                await self._retry(delivery, task, delay, now)
                return
        condition = "RetriesExhausted" if kind == "function" else "Failure"
        await self._fail(delivery, task, err, condition, config, now)

    async def _retry(self, delivery: Delivery, task: Task, delay: float, now: float) -> None:
        task.status = "queued"
        task.updated_at = now
        await self.queue.retry(delivery, task, delay_s=delay, now=now)
        self.on_outcome(task.function, "retried")

    async def _fail(self, delivery: Delivery, task: Task, err: EmberError | None,
                    condition: str, config: AsyncConfig, now: float) -> None:
        if task.status != "expired":
            task.status = "failed"
        if err is not None:
            task.error = err.to_dict()
        elif task.error is None:
            task.error = {"code": "EventAgeExceeded",
                          "message": f"the event was not run within {config.max_event_age_s} s",
                          "details": {}}
        task.finished_at = task.updated_at = now
        destination = config.on_failure
        if self._owner(task) is not None:
            await self.queue.ack(delivery, task)
        elif destination is not None and destination.kind == "function":
            await self._deliver(destination, delivery, task, condition)
            await self.queue.ack(delivery, task)
        else:
            task.dead_lettered = True
            reason = {**(task.error or {}), "condition": condition, "attempts": task.attempts}
            await self.queue.dead_letter(delivery, task, reason, now=now)
            self.on_outcome(task.function, "dead_lettered")
        self.on_outcome(task.function, task.status)
        self._ended(task)

    async def _stopped(self, delivery: Delivery) -> None:
        await self._saved(delivery.event.id)
        task = await self.queue.get_task(delivery.event.id)
        now = self._clock.time()
        if task.status == "running":
            task.history.append(Attempt(delivery.event.attempt + 1, task.started_at or now,
                                        now, "stopped", task.version))
        task.status = "stopped"
        task.finished_at = task.updated_at = now
        await self.queue.ack(delivery, task)
        self.on_outcome(task.function, "stopped")
        self._ended(task)

    async def _deliver(self, destination: Destination, delivery: Delivery, task: Task,
                       condition: str) -> None:
        """Queue the outcome for the destination function. The key makes a redelivered
        event (a crash between this and the ack) send it only once."""
        assert destination.function is not None
        body = orjson.dumps(destination_record(delivery.event, task, condition))
        event = Event(new_id(), destination.function, destination.qualifier, body,
                      "application/json", self._clock.time())
        await self.queue.submit(
            event, idempotency_key=f"destination:{task.id}:{condition}",
            dedup_window_s=DEDUP_WINDOW_S, now=self._clock.time(),
        )
        self._wake.set()

    # control-plane changes ---------------------------------------------------------------

    def _changed_from_any_thread(self, name: str) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._refresh, name)

    def _refresh(self, name: str) -> None:
        self._forget_configs(name)
        task = asyncio.get_running_loop().create_task(self._refresh_paused(name))
        self._refreshing.add(task)
        task.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._refreshing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("cannot follow a change of a function: %s", task.exception())

    async def wait_settled(self) -> None:
        """Let pending reactions to control-plane changes (pause, resume, max_concurrency)
        finish (tests)."""
        while self._refreshing:
            await asyncio.gather(*list(self._refreshing), return_exceptions=True)

    async def _refresh_paused(self, name: str) -> None:
        try:
            function = await asyncio.to_thread(self._functions.get, name)
        except FunctionNotFound:
            self._paused.discard(name)
            self._limits.pop(name, None)
            return
        self._set_limit(name, function.config.async_.max_concurrency)
        if function.async_paused:
            self._paused.add(name)
        else:
            self._paused.discard(name)
            self._wake.set()

    def _deleted_from_any_thread(self, name: str) -> None:
        """Drop the deleted function's queued events, tasks and dead letters. Called from
        another thread (the API's deletion is), this waits until they are gone, so that the
        deletion is answered after them and a function re-created under the name starts
        with an empty queue. An attempt already running finishes; its outcome finds no
        event and no task and is not recorded."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        done = asyncio.run_coroutine_threadsafe(self._forget(name), loop)
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            return  # it cannot be waited for here; it runs next
        try:
            done.result(timeout=_DELETE_WAIT_S)
        except Exception:  # the function is deleted either way: say what was left behind
            log.exception("the async events, tasks and dead letters of deleted function %s "
                          "could not all be dropped", name)

    async def _forget(self, name: str) -> None:
        self._forget_configs(name)
        self._paused.discard(name)
        self._limits.pop(name, None)
        await self.queue.delete_function(name)


def _trigger_of(event: Event) -> str | None:
    """The trigger an event came from: triggers queue CloudEvents that name themselves in
    the ``embertrigger`` attribute."""
    if event.content_type != CLOUDEVENTS_JSON:
        return None
    try:
        envelope = orjson.loads(event.payload)
    except orjson.JSONDecodeError:
        return None
    trigger = envelope.get("embertrigger") if isinstance(envelope, dict) else None
    return trigger if isinstance(trigger, str) else None
