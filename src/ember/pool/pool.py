"""Instances per function version: cold starts, warm reuse, a bounded wait queue,
keep-alive then reclaim (fixed, or adaptive with pre-warming), a floor of instances kept up
(min_instances, or the provisioned count the scaler sets), idle provisioned instances
frozen and thawed, and one server-wide instance limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from ember.clock import Clock, wait_for
from ember.cluster.slots import LocalSlots, Slots, SlotsTaken
from ember.errors import TooManyRequests
from ember.pool.instance import Instance, InstanceSpec, LogSink
from ember.pool.keepalive import KeepAlive, policy_for

log = logging.getLogger(__name__)


class InstanceLauncher(Protocol):
    """What the pool needs to cold-start instances (``Launcher``; a fake in unit tests)."""

    async def start(self) -> None:
        """Get ready to launch (e.g. start the zygote)."""
        ...

    async def launch(
        self, spec: InstanceSpec, *, request_id: str | None = None,
        log_sink: LogSink | None = None,
    ) -> Instance:
        """A new instance of ``spec``, ready for its first request; ``request_id`` tags the
        initializer's log lines, which go to ``log_sink``. Raises InitError."""
        ...

    async def close(self) -> None:
        """Stop launching and release what ``start`` took."""
        ...

    def prewarm(self, spec: InstanceSpec) -> None:
        """``spec`` was just deployed: get ready for its first cold start in the
        background, where that costs something (a sandbox to start)."""
        ...


@dataclass(frozen=True)
class PoolKey:
    """One pool per function version; ``digest`` tells two contents of ``latest`` apart."""

    function: str
    version: str
    digest: str


def pool_key_text(key: PoolKey) -> str:
    """``function/version/digest``: a pool's key as heartbeats and placement spell it."""
    return f"{key.function}/{key.version}/{key.digest}"


@dataclass(frozen=True)
class PoolConfig:
    max_instances: int
    min_instances: int
    keep_alive_s: float
    keep_alive_policy: str = "fixed"


class Capacity:
    """The server-wide instance limit, shared by every pool."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def try_take(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def give(self) -> None:
        self.used -= 1


class VersionPool:
    """The instances of one version. All methods run on the event loop.

    An instance serves up to ``concurrency`` requests at once (1 for handler functions).
    ``load`` counts the slots taken on each busy instance; a request gets an idle instance
    first, then a free slot of the least loaded busy one, and only then a cold start."""

    def __init__(
        self, key: PoolKey, spec: InstanceSpec, config: PoolConfig, manager: PoolManager
    ) -> None:
        self.key = key
        self.spec = spec
        self.config = config
        self._manager = manager
        self.idle: list[Instance] = []  # most recently used last: reuse it, reclaim the others
        self.busy: set[Instance] = set()
        self.load: dict[Instance, int] = {}
        self.starting = 0
        self.draining = False
        self._waiters: deque[asyncio.Future[Instance | None]] = deque()
        # Async (background) work waits behind every synchronous caller, so that a deep
        # async backlog never starves request/response traffic.
        self._background: deque[asyncio.Future[Instance | None]] = deque()
        self._provisioning: asyncio.Task[None] | None = None
        self.keep_alive: KeepAlive = manager.keep_alive_for(key.function, config)
        # Monotonic time the last request ended with none in flight; None while serving.
        self.idle_since: float | None = None
        self._prewarmed = False  # one pre-warm per idle period
        self._ahead = 0  # instances starting ahead of traffic, not yet claimed
        # Set by the scaler: instances kept up beyond min_instances, and why.
        self.provisioned = 0
        self.provisioned_reason = ""
        # Idle instances kept by the floor are frozen after this long unused (None: never).
        self.idle_freeze_s: float | None = None
        self.freezing: set[Instance] = set()  # out of `idle` while their pre_freeze runs
        self.shortfall: str | None = None  # why the floor is not met, when it is not
        # Slots in use, and their integral over time (slot-seconds) for the scaler.
        self._level = 0
        self._area = 0.0
        self._area_at = manager.clock.monotonic()

    @property
    def size(self) -> int:
        return len(self.idle) + len(self.busy) + len(self.freezing) + self.starting

    @property
    def floor(self) -> int:
        """Instances kept up whatever the traffic: min_instances or the provisioned count."""
        return max(self.config.min_instances, self.provisioned)

    @property
    def in_flight(self) -> int:
        """Requests being served and waiting now (the scaler's concurrency metric)."""
        waiting = sum(1 for f in (*self._waiters, *self._background) if not f.done())
        return sum(self.load.values()) + waiting

    @property
    def concurrency(self) -> int:
        return self.spec.concurrency

    async def acquire(
        self, request_id: str | None = None, *, background: bool = False
    ) -> tuple[Instance, bool]:
        """A slot of an instance for one request, and whether the instance was
        cold-started for it (``request_id`` then tags the initializer's log lines).
        ``background`` requests are served after every waiting foreground one. Give the
        slot back with ``release``.

        Raises TooManyRequests when the version's wait queue is full or the wait is over,
        InitError when a cold start fails."""
        if self.idle_since is not None:
            self.keep_alive.observe(self._manager.clock.monotonic() - self.idle_since)
            self.idle_since = None
        while True:
            instance = self._pop_idle() or self._free_slot()
            if instance is not None:
                return instance, False
            waiting = len(self._waiters) + len(self._background)
            if self._ahead <= waiting and self.size < self.config.max_instances \
                    and self._manager.reserve():
                try:
                    return await self._start(request_id), True
                except SlotsTaken:
                    # Other nodes hold the rest of max_instances: wait for one of this
                    # node's instances, or (none here) let the caller go to theirs.
                    if self.size == 0:
                        raise
            # Full, or an instance started ahead of traffic is on its way: wait for it.
            instance = await self._wait(self._background if background else self._waiters)
            if instance is not None:
                return instance, False

    def usage(self) -> float:
        """Slot-seconds used since the pool was made: the scaler's average concurrency is
        the difference over a window divided by its length."""
        return self._area + self._level * (self._manager.clock.monotonic() - self._area_at)

    def _account(self, delta: int) -> None:
        now = self._manager.clock.monotonic()
        self._area += self._level * (now - self._area_at)
        self._area_at = now
        self._level += delta

    def _take(self, instance: Instance) -> Instance:
        self._account(1)
        self.load[instance] = self.load.get(instance, 0) + 1
        self.busy.add(instance)
        return instance

    def _pop_idle(self) -> Instance | None:
        """The most recently used warm instance, else a frozen one thawed (a thaw is a
        system call or two: the request waits for nothing else)."""
        for index in range(len(self.idle) - 1, -1, -1):
            if not _frozen(self.idle[index]) and self.idle[index].alive:
                return self._take(self.idle.pop(index))
        while self.idle:
            instance = self.idle.pop()
            if instance.alive:
                if _frozen(instance):
                    instance.thaw()
                if instance.alive:
                    return self._take(instance)
                self._manager.stop_later(instance)
            self._manager.capacity.give()
        return None

    def has_room(self) -> bool:
        """Whether a request would find a warm instance now, without a cold start or a
        wait (idle, frozen or with a free slot): cluster placement keeps it here then."""
        if self.draining:
            return False
        if any(instance.alive for instance in self.idle):
            return True
        return self.concurrency > 1 and any(
            instance.alive and self.load.get(instance, 0) < self.concurrency
            for instance in self.busy)

    def _free_slot(self) -> Instance | None:
        if self.concurrency == 1 or self.draining:
            return None
        best: Instance | None = None
        for instance in self.busy:
            load = self.load.get(instance, 0)
            if instance.alive and load < self.concurrency and (
                best is None or load < self.load.get(best, 0)
            ):
                best = instance
        return self._take(best) if best is not None else None

    async def _start(self, request_id: str | None = None, *, ahead: bool = False) -> Instance:
        """Launch an instance and take its first slot. ``ahead``: started before any
        request asked (floor, pre-warm, warm): requests wait for it rather than start
        another."""
        self.starting += 1
        self._ahead += ahead
        slots, pool = self._manager.slots, pool_key_text(self.key)
        token = None
        try:
            # One of max_instances across the cluster (always granted on one node).
            token = await slots.take(pool, self.config.max_instances)
            instance = await self._manager.launcher.launch(
                self.spec, request_id=request_id, log_sink=self._manager.log_sink(self.key)
            )
        except BaseException:
            self._manager.capacity.give()
            self._wake()
            if token is not None:
                await slots.give(pool, token)
            raise
        finally:
            self.starting -= 1
            self._ahead -= ahead
        if token:
            self._manager.track(asyncio.get_running_loop().create_task(
                self._manager.give_slot_when_gone(instance, pool, token)))
        self._take(instance)
        self._fill(instance)
        return instance

    async def _wait(self, waiters: deque[asyncio.Future[Instance | None]]) -> Instance | None:
        if len(waiters) >= self._manager.queue_depth:
            raise TooManyRequests(
                f"{self.key.function} (version {self.key.version}) has {self.size} instances "
                f"busy (max_instances {self.config.max_instances}) and {len(waiters)} "
                "requests waiting: retry later or raise max_instances",
                {"function": self.key.function, "max_instances": self.config.max_instances},
            )
        future: asyncio.Future[Instance | None] = asyncio.get_running_loop().create_future()
        waiters.append(future)
        handed = False
        try:
            instance = await wait_for(self._manager.clock, future, self._manager.queue_wait_s)
            handed = True
            return instance
        except TimeoutError:
            raise TooManyRequests(
                f"no instance of {self.key.function} was free within "
                f"{self._manager.queue_wait_s:g} s: retry later or raise max_instances",
                {"function": self.key.function, "max_instances": self.config.max_instances},
            ) from None
        finally:
            if future in waiters:
                waiters.remove(future)
            elif not handed and future.done() and not future.cancelled():
                # Given a slot (or the right to start an instance) just as the wait was
                # abandoned: pass it on instead of losing it.
                handed_over = future.result()
                if handed_over is None:
                    self._wake()
                else:
                    self.release(handed_over)

    def release(self, instance: Instance, *, served: bool = True) -> None:
        """Give back a slot after a request; a dead instance frees its capacity once its
        last request is over. ``served`` is False for an instance started ahead of traffic
        (min, provisioned, pre-warmed, warm): no idle period of the pool starts then."""
        self._account(-1)
        left = self.load.get(instance, 1) - 1
        if left > 0:
            self.load[instance] = left
            if instance.alive and not self.draining:
                self._fill(instance)
            return
        self.load.pop(instance, None)
        self.busy.discard(instance)
        if not instance.alive or self.draining:
            if instance.alive:
                self._manager.stop_later(instance)
            self._manager.capacity.give()
            self._wake()
            return
        now = instance.last_used = self._manager.clock.monotonic()
        if not self._fill(instance):
            self.idle.append(instance)
            if served and not self.busy and not self.starting:
                self.idle_since = now
                self._prewarmed = False

    def _fill(self, instance: Instance) -> bool:
        """Hand free slots of ``instance`` to waiters; whether any was handed."""
        handed = False
        while self.load.get(instance, 0) < self.concurrency and self._hand(instance):
            handed = True
        return handed

    def _hand(self, instance: Instance) -> bool:
        future = self._next_waiter()
        if future is None:
            return False
        self._take(instance)
        future.set_result(instance)
        return True

    def _next_waiter(self) -> asyncio.Future[Instance | None] | None:
        """The first caller still waiting: foreground ones before background ones."""
        for waiters in (self._waiters, self._background):
            while waiters:
                future = waiters.popleft()
                if not future.done():
                    return future
        return None

    def _wake(self) -> bool:
        """Hand the right to start an instance to the first waiter, or to another pool."""
        future = self._next_waiter()
        if future is None:
            self._manager.capacity_freed()
            return False
        future.set_result(None)
        return True

    def has_waiters(self) -> bool:
        return any(not f.done() for f in (*self._waiters, *self._background))

    def wake_one(self) -> None:
        self._wake()

    def expired(self, now: float) -> list[Instance]:
        """Idle instances past keep-alive, beyond the floor (min or provisioned). With a
        keep-alive window that opens later (adaptive pre-warming), idle instances are
        reclaimed until it opens."""
        keep = 0 if self.draining else self.floor
        start, end = self.keep_alive.window()
        early = (self.idle_since is not None and start > 0
                 and now - self.idle_since < start)
        expired = []
        for instance in list(self.idle):  # oldest first
            if len(self.idle) + len(self.busy) + len(self.freezing) <= keep:
                break
            # Beyond the last instance, extra ones (a burst's) live by keep_alive_s at
            # least: the learned window is about the gaps between calls, not the load.
            last = len(self.idle) + len(self.busy) + len(self.freezing) == 1
            limit = end if last else max(end, self.config.keep_alive_s)
            if self.draining or early or now - instance.last_used >= limit:
                self.idle.remove(instance)
                expired.append(instance)
        return expired

    def prewarm_due(self, now: float) -> bool:
        """Whether the keep-alive window just opened with no instance up: start one."""
        if self.draining or self.idle_since is None or self._prewarmed or self.size:
            return False
        start, end = self.keep_alive.window()
        return start > 0 and start <= now - self.idle_since < end

    def prewarm(self) -> None:
        """Start one instance ahead of the request the keep-alive policy expects (free
        capacity only); it lives until the window closes."""
        self._prewarmed = True
        if not self._manager.capacity.try_take():
            return
        self._background_start(self._prewarm())

    async def _prewarm(self) -> None:
        try:
            instance = await self._start(ahead=True)
        except Exception as exc:
            log.warning("could not pre-warm an instance of %s: %s", self.key, exc)
            return
        self.release(instance, served=False)
        if instance in self.idle and self.idle_since is not None:
            instance.last_used = self.idle_since  # expires when the window closes

    def to_freeze(self, now: float) -> list[Instance]:
        """Idle instances the floor keeps that have been unused for idle_freeze_s: taken
        out of ``idle`` until ``frozen`` puts them back."""
        if self.idle_freeze_s is None or self.draining or not self.floor:
            return []
        chosen = [i for i in self.idle[:self.floor]
                  if i.alive and not _frozen(i) and now - i.last_used >= self.idle_freeze_s]
        for instance in chosen:
            self.idle.remove(instance)
            self.freezing.add(instance)
        return chosen

    async def freeze(self, instance: Instance) -> None:
        """Freeze one instance ``to_freeze`` chose (its pre_freeze hook runs first). A
        request that came meanwhile gets it still warm."""
        try:
            frozen = await instance.freeze()
        except Exception:
            log.exception("freezing instance %s of %s", instance.id, self.key)
            frozen = False
        self.freezing.discard(instance)
        if not instance.alive:
            self._manager.capacity.give()
            self._wake()
            return
        if frozen and self.has_waiters():
            instance.thaw()
        if self.draining:
            self._manager.stop_later(instance)
            self._manager.capacity.give()
            self._wake()
        elif not (self.has_waiters() and self._fill(instance)):
            self.idle.insert(0, instance)

    def evict_oldest_idle(self) -> Instance | None:
        if not self.idle:
            return None
        return self.idle.pop(0)

    def provision(self) -> asyncio.Task[None] | None:
        """Start instances in the background until the floor (min_instances, or the
        provisioned count) is up; the task doing it, if one runs. What keeps the floor
        from being met is kept in ``shortfall`` (and logged once)."""
        if self.draining:
            return None
        if self._provisioning and not self._provisioning.done():
            return self._provisioning
        if self.size >= self.floor:
            self._short(None if self.floor <= self.config.max_instances else self._capped())
            return None
        self._provisioning = asyncio.get_running_loop().create_task(self._provision())
        return self._provisioning

    def _capped(self) -> str:
        return (f"max_instances {self.config.max_instances} is below the "
                f"{self.floor} instances wanted")

    def _short(self, why: str | None) -> None:
        if why is not None and why != self.shortfall:
            log.warning("%s (version %s) keeps fewer instances up than it wants: %s",
                        self.key.function, self.key.version, why)
        self.shortfall = why

    async def _provision(self) -> None:
        while not self.draining and self.size < self.floor:
            if self.size >= self.config.max_instances:
                self._short(self._capped())
                return
            # Free capacity only: reclaiming an idle instance to keep another warm would
            # reclaim this pool's own (or another pool's floor) and start over forever.
            if not self._manager.capacity.try_take():
                limit = self._manager.capacity.limit
                self._short(f"the server's instance limit is reached ({limit} of {limit} "
                            "in use): raise EMBER_MAX_INSTANCES or lower other floors")
                return
            try:
                instance = await self._start(ahead=True)
            except Exception as exc:
                self._short(f"an instance failed to start: {exc}")
                return
            self.release(instance, served=False)
        self._short(None if self.floor <= self.config.max_instances else self._capped())

    def _background_start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._manager.track(task)

    async def warm(self, count: int) -> int:
        """Start up to ``count`` instances now, beside those already up, within
        max_instances and the server's free capacity (never reclaiming another's
        instance); they then idle, and keep-alive reclaims them like any other. How many
        started; raises the cold start's error (InitError…) when none did."""
        reserved = 0
        while (reserved < count and not self.draining
               and self.size + reserved < self.config.max_instances
               and self._manager.capacity.try_take()):
            reserved += 1
        outcomes = await asyncio.gather(*(self._start(ahead=True) for _ in range(reserved)),
                                        return_exceptions=True)
        started = [i for i in outcomes if isinstance(i, Instance)]
        for instance in started:
            self.release(instance, served=False)
        failures = [e for e in outcomes if isinstance(e, BaseException)]
        if failures and not started:
            raise failures[0]
        return len(started)

    def instances(self) -> Iterator[Instance]:
        yield from self.idle
        yield from self.freezing
        yield from self.busy


class PoolManager:
    """Every pool of the server, the shared capacity, and the reaper of idle instances."""

    def __init__(
        self, launcher: InstanceLauncher, clock: Clock, *, max_instances: int, queue_depth: int,
        queue_wait_s: float, reap_interval_s: float = 1.0,
    ) -> None:
        self.launcher = launcher
        self.clock = clock
        self.capacity = Capacity(max_instances)
        self.queue_depth = queue_depth
        self.queue_wait_s = queue_wait_s
        self._reap_interval_s = reap_interval_s
        self._pools: dict[PoolKey, VersionPool] = {}
        # Learned keep-alive policies, per function: a new version or a new `latest`
        # keeps what the function's traffic taught.
        self._learned: dict[tuple[str, str, float], KeepAlive] = {}
        self._log_sink: Callable[[PoolKey], LogSink | None] = lambda _key: None
        self._reaper: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        # Where instances take one of max_instances across a cluster (cluster/slots.py).
        self.slots: Slots = LocalSlots()

    def route_logs(self, sink_for: Callable[[PoolKey], LogSink | None]) -> None:
        """Send the log lines of each pool's instances to ``sink_for(key)``."""
        self._log_sink = sink_for

    def log_sink(self, key: PoolKey) -> LogSink | None:
        return self._log_sink(key)

    def pool(self, key: PoolKey, spec: InstanceSpec, config: PoolConfig) -> VersionPool:
        pool = self._pools.get(key)
        if pool is None or pool.draining:
            pool = self._pools[key] = VersionPool(key, spec, config, self)
        elif pool.config != config:
            pool.config = config
        return pool

    def keep_alive_for(self, function: str, config: PoolConfig) -> KeepAlive:
        """The keep-alive policy of a new pool of ``function``."""
        if config.keep_alive_policy == "fixed":
            return policy_for("fixed", config.keep_alive_s)
        key = (function, config.keep_alive_policy, config.keep_alive_s)
        policy = self._learned.get(key)
        if policy is None:
            policy = self._learned[key] = policy_for(config.keep_alive_policy,
                                                     config.keep_alive_s)
        return policy

    def forget(self, function: str) -> None:
        """``function`` is deleted: drop what its traffic taught."""
        for key in [k for k in self._learned if k[0] == function]:
            del self._learned[key]

    def pools(self) -> list[VersionPool]:
        return list(self._pools.values())

    def has_room(self, key: PoolKey) -> bool:
        """Whether the pool of ``key`` has a warm instance free now (see
        ``VersionPool.has_room``)."""
        pool = self._pools.get(key)
        return pool is not None and pool.has_room()

    def warm_keys(self, limit: int = 256) -> list[str]:
        """The pools with instances up, as ``function/version/digest`` (at most ``limit``,
        busiest first): what a heartbeat tells the other nodes runs warm here."""
        up = [(len(p.busy) + len(p.idle), p.key) for p in self._pools.values()
              if not p.draining and (p.busy or p.idle)]
        up.sort(key=lambda item: -item[0])
        return [pool_key_text(key) for _, key in up[:limit]]

    def reserve(self) -> bool:
        """Take one unit of server capacity, reclaiming an idle instance elsewhere if full."""
        if self.capacity.try_take():
            return True
        victim = self._least_recently_used_idle()
        if victim is None:
            return False
        self.stop_later(victim)
        # The victim's unit moves to the caller.
        return True

    def _least_recently_used_idle(self) -> Instance | None:
        best: tuple[float, VersionPool] | None = None
        for pool in self._pools.values():
            if pool.idle and (best is None or pool.idle[0].last_used < best[0]):
                best = (pool.idle[0].last_used, pool)
        return best[1].evict_oldest_idle() if best else None

    def capacity_freed(self) -> None:
        """Capacity came back: let a pool waiting on the server limit start an instance."""
        for pool in self._pools.values():
            if pool.has_waiters() and pool.size < pool.config.max_instances:
                pool.wake_one()
                return

    async def give_slot_when_gone(self, instance: Instance, pool: str, token: str) -> None:
        """Give the instance's cluster slot back once its process is gone."""
        try:
            await instance.wait_gone()
        finally:
            await self.slots.give(pool, token)

    def stop_later(self, instance: Instance) -> None:
        self.track(asyncio.get_running_loop().create_task(self._stop(instance)))

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a background task of a pool until it ends (awaited on close)."""
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _stop(self, instance: Instance) -> None:
        try:
            await instance.stop()
        except Exception:
            log.exception("stopping instance %s", instance.id)
            instance.kill()

    def drain(self, function: str, keep: set[PoolKey]) -> None:
        """Retire the pools of ``function`` not in ``keep``: idle instances stop now, busy
        ones when their request ends."""
        for key, pool in list(self._pools.items()):
            if key.function == function and key not in keep:
                pool.draining = True
                self._reclaim(pool)

    def _reclaim(self, pool: VersionPool) -> None:
        for instance in [i for i in pool.idle if not i.alive]:
            if _frozen(instance):
                instance.kill()  # reaps what is left of it (a frozen process)
            # Died while idle (crashed, or a custom runtime turned unhealthy): its
            # capacity comes back now, and min_instances brings a replacement up.
            pool.idle.remove(instance)
            self.capacity.give()
        for instance in pool.expired(self.clock.monotonic()):
            self.stop_later(instance)
            self.capacity.give()
        if pool.draining and pool.size == 0 and self._pools.get(pool.key) is pool:
            del self._pools[pool.key]

    async def start(self) -> None:
        await self.launcher.start()
        self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while True:
            await self.clock.sleep(self._reap_interval_s)
            self.reap()

    def reap(self) -> None:
        """Reclaim instances idle past keep-alive; keep the floors up; pre-warm where the
        keep-alive window opens; freeze idle provisioned instances."""
        now = self.clock.monotonic()
        for pool in list(self._pools.values()):
            self._reclaim(pool)
            if pool.draining:
                continue
            pool.provision()
            if pool.prewarm_due(now):
                pool.prewarm()
            for instance in pool.to_freeze(now):
                self.track(asyncio.get_running_loop().create_task(pool.freeze(instance)))

    def counts(self) -> Iterator[tuple[str, str, str, int]]:
        for pool in self._pools.values():
            frozen = sum(1 for i in pool.idle if _frozen(i))
            yield pool.key.function, pool.key.version, "idle", len(pool.idle) - frozen
            yield pool.key.function, pool.key.version, "frozen", frozen
            yield pool.key.function, pool.key.version, "busy", len(pool.busy)
            yield pool.key.function, pool.key.version, "starting", pool.starting

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        stops = [self._stop(i) for p in self._pools.values() for i in p.instances()]
        for pool in self._pools.values():
            pool.draining = True
        await asyncio.gather(*stops, return_exceptions=True)
        await asyncio.gather(*self._stopping, return_exceptions=True)
        self._pools.clear()
        await self.launcher.close()


def _frozen(instance: Instance) -> bool:
    return bool(getattr(instance, "frozen", False))
