"""The Source interface, and what a source gets to hand events to functions.

A Source is the running mechanism behind one Trigger. The supervisor makes it with
``make_source(trigger, context)``, calls ``start()`` once, ``pause()`` / ``resume()`` as the
trigger's state changes, and ``stop()`` once at the end. A source never raises out of its
own loops: it records connection errors in ``context.status`` and reconnects with backoff.

Delivery: a source hands each event to ``context.submit`` (durable async invocation:
returns once the event is safely queued, so a broker message can be acknowledged then) or,
where order or a response matters, to ``context.invoke`` (synchronous: returns the result or
raises the invocation's error).

A trigger whose target is ``events`` has no function: both ``submit`` and ``invoke`` then
publish the event on the workflow event bus (``context.publish``), which returns once the
event is stored, so the same acknowledgement rule holds. A source that knows it (the HTTP
source, answering 202, and the Redis streams source, publishing a batch record by record)
checks ``context.to_events``.

A trigger whose target is ``workflow`` starts one execution of its workflow per event
(``context.start_workflow``), the event as its input and the idempotency key
``trigger:{trigger}:{event source}|{event id}``, so a broker's redelivery of a message with
a stable id starts nothing more; ``submit`` and ``invoke`` do so too, returning once the
execution is stored. A workflow that no longer exists is a permanent error, as a missing
function is.

A broker source that redelivers what it could not submit uses ``context.submit_or_give_up``,
which tells the two kinds of failure apart. One the same message would meet again
(``PERMANENT_ERRORS``: too large for the queue, invalid, its function, version or alias
missing) is tried ``SUBMIT_TRIES`` times in all, then the message is given up: the reason is
logged, ``status.dropped`` counts it, and the source settles it with its broker so that it
does not come back. Any other failure (the queue unavailable, the function disabled or over
its limits) is the platform's, not the message's: it is raised, and the message is handed
back for redelivery as long as it takes.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import copy
import hashlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson

from ember.aio import cancel_and_wait
from ember.clock import Clock
from ember.errors import (
    AliasNotFound,
    EmberError,
    FunctionNotFound,
    InvalidRequest,
    PayloadTooLarge,
    ServiceUnavailable,
    TriggerNotFound,
    VersionNotFound,
    WorkflowNotFound,
)
from ember.ids import new_id
from ember.model.trigger import SOURCE_KINDS, Trigger, cloud_event

if TYPE_CHECKING:
    from ember.model.workflow import Execution
    from ember.workflows.events import PublishResult

log = logging.getLogger(__name__)

T = TypeVar("T")
_TEXT = "text/plain; charset=utf-8"
_BINARY = "application/octet-stream"
_JSON = "application/json"

PERMANENT_ERRORS: tuple[type[EmberError], ...] = (
    PayloadTooLarge, InvalidRequest, FunctionNotFound, VersionNotFound, AliasNotFound,
    WorkflowNotFound,
)
"""Submit errors that the same message would meet at every try."""
SUBMIT_TRIES = 3
"""How many times a message that meets a permanent error is tried before it is given up."""
MAX_KEY = 256
"""The queue's limit on an idempotency key."""


@dataclass
class TriggerStatus:
    """What a trigger has done since the server started."""

    connected: bool = False
    events: int = 0
    invocations: int = 0
    """Invocations queued or made; for a trigger with target ``events``, events published;
    with target ``workflow``, executions started (or found started, for a redelivery)."""
    failures: int = 0
    dropped: int = 0
    """Events given up: after a permanent failure (see the module docstring), or after any
    failure where nothing can take them back (timer ticks, file changes, core NATS)."""
    last_event_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy(self.__dict__)


class Invoke(Protocol):
    """Run the trigger's function synchronously with a CloudEvent."""

    async def __call__(self, event: dict[str, Any]) -> Any: ...


class Publish(Protocol):
    """Offer a CloudEvent to the workflow event bus; returns once it is stored. Raises
    InvalidSpec for an event without its required attributes."""

    async def __call__(self, event: dict[str, Any]) -> PublishResult: ...


class RunWorkflow(Protocol):
    """Start an execution of a workflow's latest revision (``WorkflowService.run``);
    returns (execution, created) once it is stored. Raises WorkflowNotFound, InvalidSpec
    (an input its schema refuses), InvalidRequest."""

    async def __call__(self, name: str, input: Any = None, *,
                       idempotency_key: str | None = None,
                       wait_s: float | None = None) -> tuple[Execution, bool]: ...


class SourceContext:
    """A source's handle on Ember: the trigger, its status, and the ways to deliver."""

    def __init__(
        self, trigger: Trigger, clock: Clock,
        submit: Callable[[Trigger, bytes, str | None], Awaitable[str]],
        invoke: Callable[[Trigger, bytes], Awaitable[Any]],
        status: TriggerStatus | None = None,
        publish: Publish | None = None,
        run_workflow: RunWorkflow | None = None,
    ) -> None:
        self.trigger = trigger
        self.clock = clock
        self.status = status if status is not None else TriggerStatus()
        self._submit = submit
        self._invoke = invoke
        self._publish = publish
        self._run_workflow = run_workflow
        # Set once the trigger is gone (its function was deleted) while its source is still
        # stopping: submit and invoke then refuse.
        self.retired = False

    def event(
        self, *, type: str, data: Any = None, data_base64: str | None = None,
        subject: str | None = None, id: str | None = None, time: float | None = None,
        datacontenttype: str = "application/json", extensions: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A CloudEvent from this trigger; ``type`` is prefixed with ``dev.ember.``."""
        when = datetime.fromtimestamp(self.clock.time() if time is None else time, UTC)
        return cloud_event(
            id=id or new_id(),
            source=f"ember/triggers/{self.trigger.name}",
            type=f"dev.ember.{type}",
            time=when.isoformat().replace("+00:00", "Z"),
            data=data, data_base64=data_base64, subject=subject,
            datacontenttype=datacontenttype,
            extensions={"embertrigger": self.trigger.name, **(extensions or {})},
        )

    def _check_live(self) -> None:
        if self.retired:
            raise TriggerNotFound(f"trigger {self.trigger.name!r} was deleted",
                                  {"trigger": self.trigger.name})

    def received(self) -> None:
        self.status.events += 1
        self.status.last_event_at = self.clock.time()

    def failed(self, error: BaseException | str) -> None:
        self.status.failures += 1
        self.status.last_error = str(error) or type(error).__name__
        self.status.last_error_at = self.clock.time()

    @property
    def to_events(self) -> bool:
        """Whether the trigger delivers to the workflow event bus (target ``events``)."""
        return self.trigger.target == "events"

    async def publish(self, event: dict[str, Any]) -> PublishResult:
        """Publish ``event`` on the workflow event bus; returns once it is stored, with its
        id (the delivery id) and what it reached. Raises InvalidSpec for a bad event (not
        counted here: as with ``submit``, the caller counts its failures)."""
        self._check_live()
        if self._publish is None:
            raise ServiceUnavailable(
                f"trigger {self.trigger.name!r} targets the event bus, which this server "
                "does not run")
        result = await self._publish(event)
        self.status.invocations += 1
        return result

    @property
    def to_function(self) -> bool:
        """Whether the trigger delivers to its function (target ``function``)."""
        return self.trigger.target == "function"

    @property
    def to_workflow(self) -> bool:
        """Whether each event starts an execution of a workflow (target ``workflow``)."""
        return self.trigger.target == "workflow"

    async def start_workflow(self, event: dict[str, Any]) -> tuple[Execution, bool]:
        """Start an execution of the trigger's workflow with ``event`` as its input; returns
        (execution, created) once it is stored: created False when this event (its source
        and id) started one before. Raises WorkflowNotFound, InvalidSpec (not counted here:
        as with ``submit``, the caller counts its failures)."""
        self._check_live()
        workflow = self.trigger.workflow
        if self._run_workflow is None or workflow is None:
            raise ServiceUnavailable(
                f"trigger {self.trigger.name!r} targets a workflow, which this server does "
                "not run")
        key = bounded_key(f"trigger:{self.trigger.name}:{event.get('source')}|{event.get('id')}")
        started = await self._run_workflow(workflow, event, idempotency_key=key)
        self.status.invocations += 1
        return started

    async def submit(self, event: dict[str, Any], *, idempotency_key: str | None = None) -> str:
        """Queue an async invocation of the trigger's function with ``event``; returns its
        task id once it is durably stored (target ``events``: publishes it, see
        ``publish``, and returns the event's id; target ``workflow``: starts an execution,
        see ``start_workflow``, and returns its id). Raises EmberError when it could not be
        queued."""
        self._check_live()
        if self.to_events:
            # The bus deduplicates by source and id, not by an idempotency key.
            return (await self.publish(event)).id
        if self.to_workflow:
            # Its key derives from the event's source and id, not from the source's key.
            return (await self.start_workflow(event))[0].id
        task_id = await self._submit(self.trigger, orjson.dumps(event), idempotency_key)
        self.status.invocations += 1
        return task_id

    async def submit_or_give_up(
        self, event: dict[str, Any], *, idempotency_key: str | None = None,
        retry_delay_s: float = 0.1,
    ) -> bool:
        """Submit ``event``: True once it is queued, False when it was given up after
        ``SUBMIT_TRIES`` tries that each met a permanent error (logged, and counted in
        ``status.failures`` and ``status.dropped``); the caller then settles the message
        with its broker so that it is not delivered again. Raises any other error at once
        (recorded by the caller's loop), for the caller to hand the message back."""
        delay = retry_delay_s
        for tries in range(1, SUBMIT_TRIES + 1):
            try:
                await self.submit(event, idempotency_key=idempotency_key)
                return True
            except PERMANENT_ERRORS as err:
                self.failed(err)
                error = err
            if tries < SUBMIT_TRIES:
                await self.clock.sleep(delay)
                delay *= 2
        self.status.dropped += 1
        log.warning("trigger %s: gave up message %s after %d tries: %s",
                    self.trigger.name, event.get("id"), SUBMIT_TRIES, error)
        return False

    async def invoke(self, event: dict[str, Any]) -> Any:
        """Invoke the trigger's function now with ``event``; returns the router's result
        (target ``events``: publishes it and returns the PublishResult; target
        ``workflow``: starts an execution and returns (execution, created)). Raises the
        invocation's EmberError, which is already counted in ``status`` (a source counts
        only failures of its own)."""
        self._check_live()
        try:
            if self.to_events:
                return await self.publish(event)
            if self.to_workflow:
                return await self.start_workflow(event)
            self.status.invocations += 1
            return await self._invoke(self.trigger, orjson.dumps(event))
        except EmberError as err:
            self.failed(err)
            raise


class Source(Protocol):
    """The running side of one trigger."""

    async def start(self) -> None:
        """Begin consuming in the background; return promptly."""
        ...

    async def pause(self) -> None:
        """Stop taking events; the source keeps what arrives (broker queues, streams)."""
        ...

    async def resume(self) -> None: ...

    async def stop(self) -> None:
        """Stop for good and release connections."""
        ...


class BackgroundSource(abc.ABC):
    """A base for sources that consume in one loop task with reconnect and backoff:
    implement ``run()``, which connects and consumes until cancelled; a failure is recorded
    and ``run()`` is called again after a growing delay (reset once a connection worked:
    ``status.connected`` was set). ``paused`` is an asyncio.Event set while paused and
    ``running`` one set while not: ``pause()`` does not interrupt ``run()``, which must watch
    ``paused`` itself (see ``until_paused``) and wait on ``running`` before returning."""

    retry_initial_s = 0.2
    retry_max_s = 10.0

    def __init__(self, context: SourceContext) -> None:
        self.context = context
        self.paused = asyncio.Event()
        self.running = asyncio.Event()
        self.running.set()
        self._task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def run(self) -> None:
        """Connect and consume until cancelled; raise to be called again after a delay."""

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(self._forever())

    async def _forever(self) -> None:
        delay = self.retry_initial_s
        while True:
            try:
                await self.run()
                # The source ended by itself (a closed stream): connect again, but not in a
                # tight loop.
                delay = self.retry_initial_s
                await self.context.clock.sleep(delay)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the source's own loop must never end the server
                if self.context.status.connected:
                    delay = self.retry_initial_s  # it worked for a while: start over
                self.context.status.connected = False
                self.context.failed(exc)
                log.warning("trigger %s: %s; retrying in %.1f s", self.context.trigger.name,
                            exc, delay)
                await self.context.clock.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.retry_max_s)

    async def pause(self) -> None:
        self.paused.set()
        self.running.clear()

    async def resume(self) -> None:
        self.paused.clear()
        self.running.set()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self.context.status.connected = False


def cannot_connect(what: str, url: str, cause: BaseException | str) -> ConnectionError:
    """A ConnectionError that names the broker, by its URL without the password, and why:
    what ``status.last_error`` shows for a wrong URL or a broker that is down."""
    from ember.queue.redis import _redact

    return ConnectionError(f"cannot connect to {what} at {_redact(url)}: {cause}")


def bounded_key(key: str) -> str:
    """``key``, or when it is longer than the queue takes, ``sha256:`` and its digest."""
    if len(key) <= MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def event_data(body: bytes, content_type: str | None = None) -> dict[str, Any]:
    """The ``data`` (or ``data_base64``) and ``datacontenttype`` keyword arguments of
    ``SourceContext.event`` for a message body.

    A JSON content type (``application/json``, ``…+json``) or, without a content type, a body
    that parses as JSON gives the parsed value; a ``text/*`` content type or an unlabelled
    UTF-8 body gives text; anything else is carried base64-encoded in ``data_base64``."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    labelled_json = kind == _JSON or kind.endswith("+json")
    if not kind or labelled_json:
        with contextlib.suppress(orjson.JSONDecodeError):
            return {"data": orjson.loads(body), "datacontenttype": content_type or _JSON}
    if not kind or labelled_json or kind.startswith("text/"):
        with contextlib.suppress(UnicodeDecodeError):
            text = body.decode("utf-8")
            return {"data": text,
                    "datacontenttype": content_type if kind.startswith("text/") else _TEXT}
    return {"data_base64": base64.b64encode(body).decode("ascii"),
            "datacontenttype": content_type or _BINARY}


async def until_paused(source: BackgroundSource, step: Awaitable[T]) -> T | None:
    """``step``'s result, or None once ``source`` is paused first (``step`` is cancelled).

    A result that is ready when the pause comes is still returned: the caller has taken it
    off the broker and must deliver or release it. A ``step`` cancelled by someone else (a
    client library closing) raises ConnectionError, so that the source reconnects instead of
    ending."""
    if source.paused.is_set():
        if inspect.iscoroutine(step):
            step.close()
        return None
    task = asyncio.ensure_future(step)
    pause = asyncio.ensure_future(source.paused.wait())
    try:
        done, _ = await asyncio.wait((task, pause), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (task, pause):
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
    if task not in done:
        return None
    if task.cancelled():
        raise ConnectionError("the client library cancelled a wait for the next message")
    return task.result()


def make_source(trigger: Trigger, context: SourceContext) -> Source:
    """The Source for ``trigger``'s kind (``SOURCE_KINDS``); its module is imported on
    first use."""
    import importlib

    module_name, _, class_name = SOURCE_KINDS[trigger.source.kind].runner.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    source: Source = cls(context)
    return source
