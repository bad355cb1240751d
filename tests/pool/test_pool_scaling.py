"""The pool's scaling rules with fake instances and a manual clock: the provisioned floor
and why it is not met, the keep-alive window (reclaim before it opens, pre-warm when it
does), and idle instances frozen then thawed by the next request."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ember.pool.pool import PoolManager, VersionPool
from tests.pool.fakes import FakeInstance, FakeLauncher
from tests.pool.test_pool import World, run
from tests.waiting import until


@dataclass(eq=False)
class FreezableInstance(FakeInstance):
    frozen: bool = False
    freezes: int = 0
    thaws: int = 0
    hold: asyncio.Event | None = field(default=None, repr=False)

    async def freeze(self) -> bool:
        if self.hold is not None:
            await self.hold.wait()
        if not self.alive:
            return False
        self.frozen, self.freezes = True, self.freezes + 1
        return True

    def thaw(self) -> None:
        self.frozen, self.thaws = False, self.thaws + 1


class FreezableLauncher(FakeLauncher):
    async def launch(self, spec: Any, **kwargs: Any) -> FreezableInstance:
        await asyncio.sleep(0)
        instance = FreezableInstance(spec)
        self.launched.append(instance)
        return instance


class Window:
    """A keep-alive policy with a fixed window, recording what it observes."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.seen: list[float] = []

    def observe(self, idle_s: float) -> None:
        self.seen.append(idle_s)

    def window(self) -> tuple[float, float]:
        return self.start, self.end


async def reap(w: World) -> None:
    """One round of the reaper, and what it started or stopped."""
    w.manager.reap()
    await until(lambda: not any(p.starting for p in w.manager.pools())
                and not any(p._provisioning and not p._provisioning.done()
                            for p in w.manager.pools()), message="starts done")
    await w.stops()


async def serve(pool: VersionPool) -> None:
    instance, _ = await pool.acquire()
    pool.release(instance)


def test_the_provisioned_floor_is_kept_up_then_let_go() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(keep_alive_s=30)
        pool.provisioned, pool.provisioned_reason = 2, "provisioned at latest: target 2"
        assert pool.floor == 2
        await reap(w)
        assert len(pool.idle) == 2 and pool.shortfall is None
        w.clock.advance(3600)
        await reap(w)
        assert len(pool.idle) == 2  # the floor is never reclaimed
        instance, cold = await pool.acquire()
        assert not cold
        pool.release(instance)
        pool.provisioned = 0
        w.clock.advance(31)
        await reap(w)
        assert pool.size == 0

    run(scenario)


def test_a_floor_that_cannot_be_met_says_why() -> None:
    async def scenario(w: World) -> None:
        capped = w.pool("capped", max_instances=2)
        capped.provisioned = 3
        await reap(w)
        assert capped.size == 2
        assert capped.shortfall == "max_instances 2 is below the 3 instances wanted"
        full = w.pool("full")
        full.provisioned = 2
        await reap(w)
        assert full.size == 1  # the server holds 3: two of capped, one here
        assert full.shortfall is not None and "instance limit is reached" in full.shortfall
        w.launcher.failures.append(RuntimeError("no code"))
        capped.provisioned = 0
        w.clock.advance(31)
        await reap(w)  # capped's two go; full's second fails to start
        assert full.shortfall == "an instance failed to start: no code"
        await reap(w)
        assert full.size == 2 and full.shortfall is None

    run(scenario, max_instances=3)


def test_an_adaptive_window_reclaims_before_it_opens_and_prewarms_when_it_does() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(keep_alive_s=30)
        window = pool.keep_alive = Window(100.0, 160.0)
        await serve(pool)
        assert pool.idle_since == w.clock.monotonic()
        w.clock.advance(1)
        await reap(w)
        assert pool.size == 0  # unloaded until the window opens
        w.clock.advance(98)
        await reap(w)
        assert pool.size == 0
        w.clock.advance(1)  # 100 s idle: the window opens
        await reap(w)
        assert len(pool.idle) == 1 and len(w.launcher.launched) == 2
        w.clock.advance(30)
        instance, cold = await pool.acquire()
        assert not cold and window.seen == [130.0]
        pool.release(instance)
        w.clock.advance(159)
        await reap(w)
        assert pool.size == 1
        w.clock.advance(2)  # past the window's end
        await reap(w)
        assert pool.size == 0
        await reap(w)
        assert pool.size == 0  # one pre-warm per idle period: it opened and closed

    run(scenario)


def test_a_prewarmed_instance_lives_until_the_window_closes() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool()
        pool.keep_alive = Window(50.0, 80.0)
        await serve(pool)
        w.clock.advance(50)
        await reap(w)
        assert len(pool.idle) == 1
        w.clock.advance(29)
        await reap(w)
        assert len(pool.idle) == 1
        w.clock.advance(1)
        await reap(w)
        assert pool.size == 0

    run(scenario)


def _freezing_world(scenario: Any, **kwargs: Any) -> None:
    async def wrapped(w: World) -> None:
        launcher = FreezableLauncher()
        w.launcher = launcher
        w.manager = PoolManager(launcher, w.clock, max_instances=10, queue_depth=10,
                                queue_wait_s=5.0)
        await scenario(w)
        await w.manager.close()

    run(wrapped, **kwargs)


def test_idle_floor_instances_freeze_and_the_next_request_thaws_one() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(keep_alive_s=30)
        pool.provisioned, pool.idle_freeze_s = 2, 10.0
        await reap(w)
        w.clock.advance(9)
        await reap(w)
        assert not any(i.frozen for i in pool.idle)
        w.clock.advance(1)
        await reap(w)
        await until(lambda: not pool.freezing, message="frozen")
        assert [i.frozen for i in pool.idle] == [True, True]
        instance, cold = await pool.acquire()
        assert not cold and not instance.frozen and instance.thaws == 1
        pool.release(instance)
        assert sum(i.frozen for i in pool.idle) == 1
        instance, _ = await pool.acquire()  # the warm one first
        assert instance.thaws == 1
        pool.release(instance)

    _freezing_world(scenario)


def test_a_request_during_pre_freeze_starts_another_or_gets_it_warm() -> None:
    """pre_freeze may take seconds: a request does not wait for it where another
    instance can start; where none can, it gets this one as soon as the hook is done."""

    async def scenario(w: World) -> None:
        roomy = w.pool("roomy", keep_alive_s=30)
        roomy.provisioned, roomy.idle_freeze_s = 1, 5.0
        await reap(w)
        (first,) = roomy.idle
        assert isinstance(first, FreezableInstance)
        first.hold = asyncio.Event()
        w.clock.advance(5)
        w.manager.reap()
        await until(lambda: first in roomy.freezing, message="pre_freeze running")
        other, cold = await roomy.acquire()
        assert cold and other is not first
        roomy.release(other)
        first.hold.set()
        await until(lambda: not roomy.freezing, message="frozen")
        assert first.frozen and roomy.size == 2

        pool = w.pool(keep_alive_s=30, max_instances=1)
        pool.provisioned, pool.idle_freeze_s = 1, 5.0
        await reap(w)
        (instance,) = pool.idle
        assert isinstance(instance, FreezableInstance)
        instance.hold = asyncio.Event()
        w.clock.advance(5)
        w.manager.reap()
        await until(lambda: instance in pool.freezing, message="pre_freeze running")
        assert pool.size == 1  # still counted: no second instance starts meanwhile
        waiter = w.waiting(pool)
        await w.queued(pool)
        instance.hold.set()
        got, cold = await waiter
        assert got is instance and not cold and not instance.frozen
        assert instance.thaws == 1  # frozen, then at once thawed for the waiter
        assert len(w.launcher.launched) == 3

    _freezing_world(scenario)


def test_a_frozen_instance_that_died_is_replaced() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool()
        pool.provisioned, pool.idle_freeze_s = 1, 1.0
        await reap(w)
        w.clock.advance(1)
        await reap(w)
        await until(lambda: not pool.freezing, message="frozen")
        (dead,) = pool.idle
        dead.die()
        await reap(w)
        (replacement,) = pool.idle
        assert replacement is not dead and replacement.alive and not replacement.frozen
        assert w.manager.capacity.used == 1

    _freezing_world(scenario)


def test_a_request_waits_for_an_instance_started_ahead_instead_of_starting_another() -> None:
    async def scenario(w: World) -> None:
        pool = w.pool(keep_alive_s=30)
        gate = w.launcher.hold()
        pool.provisioned = 1
        w.manager.reap()
        await until(lambda: w.launcher.waiting == 1, message="the floor's start under way")
        waiter = w.waiting(pool)
        await w.queued(pool)
        assert w.launcher.waiting == 1  # no second start
        gate.set()
        instance, cold = await waiter
        assert not cold and len(w.launcher.launched) == 1
        pool.release(instance)

    run(scenario)
