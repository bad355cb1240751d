"""Test kit for trigger sources: a recording fake ``submit``, a SourceContext built around it,
and small async helpers (wait for a condition, run a source for the length of a block)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson

from ember.clock import SystemClock
from ember.errors import ServiceUnavailable
from ember.model.trigger import Trigger
from ember.triggers.base import BackgroundSource, Source, SourceContext

Event = dict[str, Any]


class Submits:
    """A fake ``submit``: records every attempt as (event, idempotency key) and the ones it
    accepted. The first ``fail`` attempts raise ServiceUnavailable; while ``gate`` is set to
    an unset Event, attempts wait for it."""

    def __init__(self, fail: int = 0) -> None:
        self.attempts: list[tuple[Event, str | None]] = []
        self.accepted: list[tuple[Event, str | None]] = []
        self.fail = fail
        self.gate: asyncio.Event | None = None

    async def __call__(self, trigger: Trigger, body: bytes, key: str | None) -> str:
        event: Event = orjson.loads(body)
        self.attempts.append((event, key))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail > 0:
            self.fail -= 1
            raise ServiceUnavailable("the queue is down (test)")
        self.accepted.append((event, key))
        return f"task-{len(self.accepted)}"

    @property
    def events(self) -> list[Event]:
        return [event for event, _ in self.accepted]

    def data(self) -> list[Any]:
        """The ``data`` of each accepted event, in order."""
        return [event.get("data") for event in self.events]


async def _no_invoke(trigger: Trigger, body: bytes) -> Any:
    raise AssertionError("broker sources submit; they never invoke synchronously")


def make_context(name: str, source: Any, submits: Submits) -> SourceContext:
    """A SourceContext for a trigger ``name`` with ``source``, delivering to ``submits``."""
    trigger = Trigger(
        name=name, function="fn", qualifier="latest", source=source, state="enabled",
        description="", created_at=0.0, updated_at=0.0,
    )
    return SourceContext(trigger, SystemClock(), submits, _no_invoke)


def unique(prefix: str) -> str:
    """A name no other test run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def eventually(
    predicate: Callable[[], bool], timeout: float = 45.0, what: str = "condition",
) -> None:
    """Wait until ``predicate()`` holds; AssertionError after ``timeout`` seconds.

    The deadline is generous, not a margin: a broker may hold a message for its ack wait
    (JetStream: 30 s) when a source stopped the moment it was being delivered, and a loaded
    machine is slow; waiting longer only costs time when something is wrong."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def started(source: Source, context: SourceContext | None = None,
                  connected: bool = True) -> AsyncIterator[None]:
    """Run ``source`` for the block; with ``context`` and ``connected``, first wait until it
    reports being connected."""
    await source.start()
    try:
        if context is not None and connected:
            await eventually(lambda: context.status.connected, what="connected")
        yield
    finally:
        await source.stop()


def retrying(source: Source) -> bool:
    """Whether a BackgroundSource's loop is still alive (it keeps retrying after failures)."""
    assert isinstance(source, BackgroundSource)
    task = source._task
    return task is not None and not task.done()
