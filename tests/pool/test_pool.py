"""The pool's rules with fake instances and a manual clock: no processes, no real waiting.

Slots and waiters, the wait queue's depth and its deadline, per-instance concurrency,
keep-alive reclaim, min_instances and the server-wide instance limit."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ember.clock import ManualClock
from ember.errors import TooManyRequests
from ember.pool.instance import InstanceSpec, LogSink
from ember.pool.pool import PoolConfig, PoolKey, PoolManager, VersionPool
from tests.waiting import until

_ids = itertools.count(1)


@dataclass(eq=False)
class FakeInstance:
    """What the pool touches of an instance."""

    spec: InstanceSpec
    id: str = field(default_factory=lambda: f"i{next(_ids)}")
    alive: bool = True
    last_used: float = 0.0
    init_ms: float = 1.0
    stopped: bool = False

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

    def __init__(self) -> None:
        self.launched: list[FakeInstance] = []
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
        instance = FakeInstance(spec)
        self.launched.append(instance)
        return instance

    async def close(self) -> None:
        self.closed = True


@dataclass
class World:
    clock: ManualClock
    launcher: FakeLauncher
    manager: PoolManager

    def pool(self, name: str = "fn", *, concurrency: int = 1, max_instances: int = 10,
             min_instances: int = 0, keep_alive_s: float = 30.0) -> VersionPool:
        spec = InstanceSpec(
            function=name, version="1", code_dir=Path("/nonexistent"), handler="main.handler",
            environment={}, memory_mb=128, timeout_s=10.0, concurrency=concurrency,
        )
        config = PoolConfig(max_instances=max_instances, min_instances=min_instances,
                            keep_alive_s=keep_alive_s)
        return self.manager.pool(PoolKey(name, "1", "d"), spec, config)

    async def acquire(self, pool: VersionPool, **kwargs: Any) -> tuple[Any, bool]:
        return await pool.acquire(**kwargs)

    def waiting(self, pool: VersionPool, **kwargs: Any) -> asyncio.Task[tuple[Any, bool]]:
        """A caller that will have to wait for an instance of ``pool``."""
        return asyncio.get_running_loop().create_task(self.acquire(pool, **kwargs))

    async def queued(self, pool: VersionPool, count: int = 1) -> None:
        """Until ``count`` callers wait in ``pool``'s queue, their deadlines set on the clock."""
        await until(lambda: _queued(pool) == count and self.clock.sleeping() >= count,
                    message=f"{count} callers waiting")

    async def stops(self) -> None:
        """Let the stops the pool scheduled run."""
        await until(lambda: not self.manager._stopping, message="instances stopped")


def _queued(pool: VersionPool) -> int:
    return sum(not f.done() for f in (*pool._waiters, *pool._background))


Scenario = Callable[[World], Awaitable[None]]


def run(scenario: Scenario, *, max_instances: int = 100, queue_depth: int = 10,
        queue_wait_s: float = 5.0) -> None:
    async def main() -> None:
        clock = ManualClock(start=1000.0)
        launcher = FakeLauncher()
        manager = PoolManager(launcher, clock, max_instances=max_instances,
                              queue_depth=queue_depth, queue_wait_s=queue_wait_s)
        await scenario(World(clock, launcher, manager))
        await manager.close()

    asyncio.run(main())


# -- the wait queue -------------------------------------------------------------------


def test_a_full_wait_queue_answers_too_many_requests_at_once() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(max_instances=1)
        instance, _ = await w.acquire(pool)
        waiter = w.waiting(pool)
        await w.queued(pool, 1)
        with pytest.raises(TooManyRequests) as raised:
            await w.acquire(pool)
        assert "1 requests waiting" in str(raised.value)
        assert raised.value.details == {"function": "fn", "max_instances": 1}
        pool.release(instance)
        assert await waiter == (instance, False)

    run(scenario, queue_depth=1)


def test_the_queue_wait_ends_on_the_clock_with_too_many_requests() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(max_instances=1)
        instance, _ = await w.acquire(pool)
        waiter = w.waiting(pool)
        await w.queued(pool, 1)
        w.clock.advance(4.9)
        await asyncio.sleep(0)
        assert not waiter.done()
        w.clock.advance(0.1)
        with pytest.raises(TooManyRequests) as raised:
            await waiter
        assert "within 5 s" in str(raised.value)
        assert _queued(pool) == 0 and w.clock.sleeping() == 0
        # The slot it gave up waiting for is not handed to nobody.
        pool.release(instance)
        assert pool.idle == [instance]
        assert await w.acquire(pool) == (instance, False)

    run(scenario, queue_wait_s=5.0)


def test_a_slot_handed_as_the_caller_gives_up_passes_on() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(max_instances=1)
        instance, _ = await w.acquire(pool)
        leaving, staying = w.waiting(pool), w.waiting(pool)
        await w.queued(pool, 2)
        pool.release(instance)  # handed to ``leaving``, which has not run yet
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert await staying == (instance, False)
        pool.release(instance)
        assert pool.idle == [instance] and not pool.busy

    run(scenario)


def test_a_cancelled_waiter_leaves_the_queue() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(max_instances=1)
        instance, _ = await w.acquire(pool)
        waiter = w.waiting(pool)
        await w.queued(pool, 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert _queued(pool) == 0 and w.clock.sleeping() == 0
        pool.release(instance)
        assert pool.idle == [instance]

    run(scenario)


# -- min_instances ---------------------------------------------------------------------


def test_min_instances_beyond_the_server_limit_keep_what_fits_without_churn() -> None:
    """Keeping a version warm never reclaims an idle instance: that used to stop and
    start instances in a loop, in one pool or between two."""

    async def scenario(w: World) -> None:
        first = w.pool("a", min_instances=3)
        first.provision()
        await until(lambda: first._provisioning is not None and first._provisioning.done())
        assert first.size == 2 and w.manager.capacity.used == 2
        second = w.pool("b", min_instances=2)
        for _ in range(3):
            w.manager.reap()
            await until(lambda: all(p._provisioning is None or p._provisioning.done()
                                    for p in (first, second)))
        assert (first.size, second.size) == (2, 0)
        assert len(w.launcher.launched) == 2
        assert not any(i.stopped for i in w.launcher.launched)

    run(scenario, max_instances=2)
