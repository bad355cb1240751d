"""Fake instances and a fake launcher: the pool and the router without processes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ember.pool.instance import InstanceSpec, InvokeResult, LogSink

Handler = Callable[["FakeInstance", bytes], Any]

_ids = itertools.count(1)


@dataclass(eq=False)
class FakeInstance:
    """What the pool and the router touch of an instance."""

    spec: InstanceSpec
    id: str = field(default_factory=lambda: f"i{next(_ids)}")
    alive: bool = True
    last_used: float = 0.0
    init_ms: float = 1.0
    stopped: bool = False
    handler: Handler | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def invoke(self, request_id: str, payload: bytes, content_type: str,
                     **kwargs: Any) -> InvokeResult:
        """Runs ``handler(instance, payload)`` (an echo without one); it may return an
        awaitable, raise, or return an ``InvokeResult``."""
        self.calls.append({"request_id": request_id, "payload": payload, **kwargs})
        answer = payload if self.handler is None else self.handler(self, payload)
        if asyncio.iscoroutine(answer):
            answer = await answer
        if isinstance(answer, InvokeResult):
            return answer
        return InvokeResult(answer, content_type, 2.0)

    async def stop(self) -> None:
        self.stopped = True
        self.alive = False

    def kill(self) -> None:
        self.alive = False

    def die(self) -> None:
        """The process ended on its own (crash, unhealthy custom runtime)."""
        self.alive = False


class FakeLauncher:
    """Launches fake instances at once, or when a test lets them (``hold``), or fails."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.launched: list[FakeInstance] = []
        self.prewarmed: list[InstanceSpec] = []
        self.failures: list[BaseException] = []
        self.gate: asyncio.Event | None = None
        self.waiting = 0
        self.started = self.closed = False

    def hold(self) -> asyncio.Event:
        """Launches wait until the returned event is set."""
        self.gate = asyncio.Event()
        return self.gate

    async def start(self) -> None:
        self.started = True

    async def launch(
        self, spec: InstanceSpec, *, request_id: str | None = None,
        log_sink: LogSink | None = None,
    ) -> FakeInstance:
        await asyncio.sleep(0)  # a launch always suspends the caller
        if self.gate is not None:
            self.waiting += 1
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
        if self.failures:
            raise self.failures.pop(0)
        instance = FakeInstance(spec, handler=self.handler)
        self.launched.append(instance)
        return instance

    async def close(self) -> None:
        self.closed = True

    def prewarm(self, spec: InstanceSpec) -> None:
        self.prewarmed.append(spec)
