"""The pool's rules with fake instances and a manual clock: no processes, no real waiting.

Slots and waiters, the wait queue's depth and its deadline, per-instance concurrency,
keep-alive reclaim, min_instances and the server-wide instance limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ember.clock import ManualClock
from ember.errors import InitError, TooManyRequests
from ember.pool.instance import InstanceSpec
from ember.pool.pool import PoolConfig, PoolKey, PoolManager, VersionPool
from tests.pool.fakes import FakeLauncher
from tests.waiting import until


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


# -- slots and waiters ------------------------------------------------------------------


def test_cold_start_then_warm_reuse_of_the_most_recently_used() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool()
        first, cold = await w.acquire(pool, request_id="r1")
        assert cold and w.launcher.launched == [first]
        second, cold = await w.acquire(pool)
        assert cold and second is not first
        assert (len(pool.busy), len(pool.idle), pool.size) == (2, 0, 2)
        pool.release(first)
        w.clock.advance(1)
        pool.release(second)
        again, cold = await w.acquire(pool)
        assert again is second and not cold  # the most recent: the others may expire
        assert len(w.launcher.launched) == 2
        assert second.last_used == w.clock.monotonic()

    run(scenario)


def test_a_released_instance_goes_to_the_first_waiter() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(max_instances=1)
        instance, _ = await w.acquire(pool)
        first, second = w.waiting(pool), w.waiting(pool)
        await w.queued(pool, 2)
        pool.release(instance)
        assert await first == (instance, False)
        assert not second.done()
        pool.release(instance)
        assert await second == (instance, False)
        assert len(w.launcher.launched) == 1

    run(scenario)


def test_background_callers_wait_behind_foreground_ones() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(max_instances=1)
        instance, _ = await w.acquire(pool)
        background = w.waiting(pool, background=True)
        await w.queued(pool, 1)
        foreground = w.waiting(pool)
        await w.queued(pool, 2)
        pool.release(instance)
        assert await foreground == (instance, False)
        assert not background.done()
        pool.release(instance)
        assert await background == (instance, False)

    run(scenario)


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


def test_background_callers_have_their_own_queue_depth() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(max_instances=1)
        await w.acquire(pool)
        w.waiting(pool, background=True)
        await w.queued(pool, 1)
        foreground = w.waiting(pool)
        await w.queued(pool, 2)
        with pytest.raises(TooManyRequests):
            await w.acquire(pool, background=True)
        with pytest.raises(TooManyRequests):
            await w.acquire(pool)
        foreground.cancel()

    run(scenario, queue_depth=1)


def test_the_queue_wait_ends_on_the_clock_with_too_many_requests() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(max_instances=1)
        instance, _ = await w.acquire(pool)
        waiter = w.waiting(pool)
        await w.queued(pool, 1)
        w.clock.advance(599.9)
        await asyncio.sleep(0)
        assert not waiter.done()
        w.clock.advance(0.1)
        with pytest.raises(TooManyRequests) as raised:
            await waiter  # at once: ten minutes on the clock, none in real time
        assert "within 600 s" in str(raised.value)
        assert _queued(pool) == 0 and w.clock.sleeping() == 0
        # The slot it gave up waiting for is not handed to nobody.
        pool.release(instance)
        assert pool.idle == [instance]
        assert await w.acquire(pool) == (instance, False)

    run(scenario, queue_wait_s=600.0)


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


# -- per-instance concurrency ----------------------------------------------------------


def test_an_instance_serves_up_to_concurrency_requests_before_another_starts() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(concurrency=3, max_instances=2)
        a, cold = await w.acquire(pool)
        assert cold
        for _ in range(2):
            assert await w.acquire(pool) == (a, False)
        assert pool.load[a] == 3
        b, cold = await w.acquire(pool)
        assert cold and b is not a
        assert await w.acquire(pool) == (b, False)
        pool.release(a)
        pool.release(b)
        pool.release(b)
        assert pool.load == {a: 2}
        assert pool.idle == [b]
        assert await w.acquire(pool) == (b, False)  # an idle instance before a free slot
        assert await w.acquire(pool) == (b, False)  # the least loaded: b 1, a 2
        assert pool.load == {a: 2, b: 2}
        assert len(w.launcher.launched) == 2

    run(scenario)


def test_a_freed_slot_goes_to_a_waiter_while_the_instance_stays_busy() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(concurrency=2, max_instances=1)
        a, _ = await w.acquire(pool)
        await w.acquire(pool)
        waiter = w.waiting(pool)
        await w.queued(pool, 1)
        pool.release(a)
        assert await waiter == (a, False)
        assert pool.load[a] == 2 and not pool.idle

    run(scenario)


def test_a_new_instance_fills_all_its_slots_from_the_queue() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(concurrency=3, max_instances=1)
        gate = w.launcher.hold()
        starter = w.waiting(pool)
        await until(lambda: w.launcher.waiting == 1)
        assert pool.starting == 1
        waiters = [w.waiting(pool) for _ in range(3)]
        await w.queued(pool, 3)
        gate.set()
        instance, cold = await starter
        assert cold
        assert [await waiters[0], await waiters[1]] == [(instance, False)] * 2
        assert not waiters[2].done() and pool.load[instance] == 3
        pool.release(instance)
        assert await waiters[2] == (instance, False)

    run(scenario)


# -- cold starts that fail -------------------------------------------------------------


def test_a_failed_cold_start_gives_its_capacity_back_to_a_waiter() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(max_instances=1)
        gate = w.launcher.hold()
        w.launcher.failures.append(InitError("no db"))
        starter = w.waiting(pool)
        await until(lambda: w.launcher.waiting == 1)
        waiter = w.waiting(pool)
        await w.queued(pool, 1)
        gate.set()
        with pytest.raises(InitError):
            await starter
        instance, cold = await waiter  # woken with the right to start one
        assert cold and w.launcher.launched == [instance]
        assert w.manager.capacity.used == 1

    run(scenario)


def test_a_dead_idle_instance_is_skipped_and_its_capacity_returned() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(max_instances=1)
        dead, _ = await w.acquire(pool)
        pool.release(dead)
        dead.die()
        fresh, cold = await w.acquire(pool)
        assert cold and fresh is not dead
        assert w.manager.capacity.used == 1

    run(scenario)


def test_an_instance_that_dies_busy_frees_its_slot_for_a_cold_start() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(max_instances=1)
        dead, _ = await w.acquire(pool)
        waiter = w.waiting(pool)
        await w.queued(pool, 1)
        dead.die()
        pool.release(dead)
        fresh, cold = await waiter
        assert cold and fresh is not dead and pool.size == 1

    run(scenario)


# -- keep-alive and min_instances ------------------------------------------------------


def test_idle_instances_are_reclaimed_after_keep_alive() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(keep_alive_s=30)
        old, _ = await w.acquire(pool)
        recent, _ = await w.acquire(pool)
        pool.release(old)
        w.clock.advance(10)
        pool.release(recent)
        w.clock.advance(19.9)
        w.manager.reap()
        assert pool.idle == [old, recent]
        w.clock.advance(0.1)
        w.manager.reap()
        assert pool.idle == [recent]
        await w.stops()
        assert old.stopped and not recent.stopped
        assert w.manager.capacity.used == 1
        w.clock.advance(10)
        w.manager.reap()
        await w.stops()
        assert recent.stopped and pool.size == 0 and w.manager.capacity.used == 0

    run(scenario)


def test_the_reaper_runs_on_the_clock() -> None:
    async def scenario(w: World) -> None:
        await w.manager.start()
        assert w.launcher.started
        pool = w.pool(keep_alive_s=3)
        instance, _ = await w.acquire(pool)
        pool.release(instance)
        for _ in range(3):
            await until(lambda: w.clock.sleeping() == 1, message="the reaper asleep")
            w.clock.advance(1)
        await until(lambda: instance.stopped, message="reclaimed by the reaper")
        assert pool.size == 0

    run(scenario)


def test_min_instances_are_started_and_kept_past_keep_alive() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(min_instances=2, keep_alive_s=5)
        pool.provision()
        await until(lambda: len(pool.idle) == 2, message="two instances up")
        extra = [await w.acquire(pool) for _ in range(3)]
        assert [cold for _, cold in extra] == [False, False, True]
        for instance, _ in extra:
            pool.release(instance)
        w.clock.advance(5)
        w.manager.reap()
        await w.stops()
        assert len(pool.idle) == 2 and len(w.launcher.launched) == 3
        # One dies while idle: it is replaced without waiting for traffic.
        pool.idle[0].die()
        w.manager.reap()
        await until(lambda: len(w.launcher.launched) == 4, message="a replacement")
        await until(lambda: len(pool.idle) == 2 and all(i.alive for i in pool.idle))
        assert w.manager.capacity.used == 2

    run(scenario)


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


# -- the server-wide instance limit -----------------------------------------------------


def test_a_full_server_reclaims_another_pools_least_recently_used_idle_instance() -> None:
    async def scenario(w: World) -> None:
        a, b, c = w.pool("a"), w.pool("b"), w.pool("c")
        older, _ = await w.acquire(a)
        newer, _ = await w.acquire(b)
        a.release(older)
        w.clock.advance(1)
        b.release(newer)
        started, cold = await w.acquire(c)
        assert cold and started.spec.function == "c"
        await w.stops()
        assert older.stopped and not newer.stopped
        assert (a.size, b.size, c.size) == (0, 1, 1)
        assert w.manager.capacity.used == 2

    run(scenario, max_instances=2)


def test_a_pool_waiting_on_the_server_limit_starts_when_capacity_comes_back() -> None:
    async def scenario(w: World) -> None:
        a, b = w.pool("a"), w.pool("b")
        held, _ = await w.acquire(a)
        waiter = w.waiting(b)
        await w.queued(b, 1)
        held.die()
        a.release(held)
        instance, cold = await waiter
        assert cold and instance.spec.function == "b"
        assert w.manager.capacity.used == 1

    run(scenario, max_instances=1)


def test_draining_stops_idle_instances_now_and_busy_ones_when_their_request_ends() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool()
        idle, _ = await w.acquire(pool)
        busy, _ = await w.acquire(pool)
        pool.release(idle)
        w.manager.drain("fn", keep=set())
        await w.stops()
        assert idle.stopped and not busy.stopped
        replacement = w.pool()
        assert replacement is not pool  # a new pool for new traffic
        pool.release(busy)
        await w.stops()
        assert busy.stopped and w.manager.capacity.used == 0

    run(scenario)


def test_close_stops_every_instance_and_the_launcher() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool()
        busy, _ = await w.acquire(pool)
        idle, _ = await w.acquire(pool)
        pool.release(idle)
        await w.manager.close()
        assert busy.stopped and idle.stopped and w.launcher.closed
        assert w.manager.pools() == []

    run(scenario)
