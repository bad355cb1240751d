"""The scaler: provisioned capacity per function qualifier, kept up by the pools.

Every ``tick_s`` on the clock, for each stored policy:

1. Scheduled actions due since the last tick set the policy's target (stored first, so a
   restart neither loses nor repeats one; those that fell due while the server was down
   are applied at start, the latest winning).
2. Target tracking samples concurrency: the slot-seconds the qualifier's pools used over
   the tick (``VersionPool.usage``) plus the requests waiting. Each tick it recommends
   ``ceil(average over scale_out_window_s / (concurrency * target))``; the count kept is
   the highest recommendation of the last ``scale_in_window_s`` — out at once, in only
   once the whole window asked for less (Kubernetes' downscale stabilization; Knative's
   stable window) — within ``[min, max]``.
3. The larger of the two is split over the versions the qualifier reaches (an alias's
   split by its weight) and set as each pool's ``provisioned`` floor, with the reason; the
   pool starts what is missing and records why a floor cannot be met.

Moving an alias with provisioned capacity warms its new version before traffic moves:
the router keeps the old route until ``before_move`` has brought the new pools up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from ember.clock import Clock
from ember.cluster.changes import PROVISIONED, ChangeBus
from ember.errors import EmberError, InvalidPolicy, InvalidSpec, NotFound
from ember.model.scaling import (
    Provisioned,
    ProvisionedConfig,
    ProvisionedStatus,
    ScheduledAction,
    TargetTracking,
)
from ember.pool.instance import Instance
from ember.pool.pool import PoolManager, VersionPool
from ember.router.router import Router
from ember.router.traffic import Route, Target
from ember.store.scaling import SqlProvisionedStore

log = logging.getLogger(__name__)

# Scheduled actions are looked for at most this far back at start (a server down longer
# applies the latest action of the last week).
CATCH_UP_S = 7 * 86400.0


def next_fire(action: ScheduledAction, after: float) -> float | None:
    """The first time strictly after ``after`` when ``action`` fires (within its start and
    end), or None when it never fires again."""
    zone = ZoneInfo(action.timezone)
    after = max(after, action.start.timestamp() - 1) if action.start else after
    it = croniter(action.cron, datetime.fromtimestamp(math.floor(after), zone))
    for _ in range(1000):
        tick = float(it.get_next(datetime).timestamp())
        if tick <= after:
            continue
        if action.end is not None and tick >= action.end.timestamp():
            return None
        return tick
    return None


def last_fire(action: ScheduledAction, until: float) -> float | None:
    """The latest time at or before ``until`` when ``action`` fired (within its start and
    end), or None."""
    if action.end is not None:
        until = min(until, action.end.timestamp() - 1e-3)
    if action.start is not None and until < action.start.timestamp():
        return None
    zone = ZoneInfo(action.timezone)
    it = croniter(action.cron, datetime.fromtimestamp(math.floor(until) + 1, zone))
    for _ in range(3):
        tick = float(it.get_prev(datetime).timestamp())
        if tick <= until:
            if action.start is not None and tick < action.start.timestamp():
                return None
            return tick
    return None


def due(actions: Iterable[ScheduledAction], since: float, until: float
        ) -> tuple[int, float, ScheduledAction] | None:
    """The latest firing in ``(since, until]`` of any action: (index, time, action); of
    two at the same time, the one listed last."""
    latest: tuple[int, float, ScheduledAction] | None = None
    for index, action in enumerate(actions):
        last = last_fire(action, until)
        if last is not None and last > since and (latest is None or last >= latest[1]):
            latest = (index, last, action)
    return latest


class Tracker:
    """Target tracking's memory for one policy: recent usage and recommendations.

    ``usage`` is a running total of what the instances did — slot-seconds in use for
    concurrency, CPU seconds for CPU — and ``unit`` what one instance can do per second
    (its slots, its cores)."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, float]] = deque()  # (monotonic, usage)
        self.recommended: deque[tuple[float, int]] = deque()  # decreasing counts: a max-queue
        self.utilization: float | None = None
        self.cpu_seen: dict[str, float] = {}  # CPU seconds of each instance at the last tick
        self.cpu_total = 0.0

    def cpu_usage(self, instances: Iterable[Instance]) -> float:
        """The running total of CPU seconds the instances used since they were first seen
        (an instance's start is not counted; one gone takes nothing away)."""
        seen: dict[str, float] = {}
        for instance in instances:
            used = instance.cpu_seconds()
            if used is None:
                continue
            before = self.cpu_seen.get(instance.id)
            if before is not None and used >= before:
                self.cpu_total += used - before
            seen[instance.id] = used
        self.cpu_seen = seen
        return self.cpu_total

    def sample(self, now: float, usage: float, waiting: float, spec: TargetTracking,
               unit: float, provisioned: int) -> int:
        """Record usage now; the count target tracking keeps."""
        if self.samples and usage < self.samples[-1][1]:
            self.samples.clear()  # other pools now (an alias moved): start over
        self.samples.append((now, usage))
        while len(self.samples) > 2 and now - self.samples[1][0] >= spec.scale_out_window_s:
            self.samples.popleft()
        first_at, first = self.samples[0]
        span = now - first_at
        average = (usage - first) / span if span > 0 else 0.0
        average += waiting
        want = math.ceil(average / (unit * spec.target) - 1e-9)
        capacity = max(provisioned, 1) * unit
        self.utilization = round(average / capacity, 3)
        while self.recommended and self.recommended[-1][1] <= want:
            self.recommended.pop()
        self.recommended.append((now, want))
        while now - self.recommended[0][0] > spec.scale_in_window_s:
            self.recommended.popleft()
        return max(spec.min, min(spec.max, self.recommended[0][1]))


@dataclass
class _Policy:
    entry: Provisioned
    tracker: Tracker = field(default_factory=Tracker)
    status: ProvisionedStatus = field(
        default_factory=lambda: ProvisionedStatus(0, "starting"))
    pools: list[VersionPool] = field(default_factory=list)  # those its floor is in
    scanned_until: float = 0.0  # wall time through which schedules were looked at


class Scaler:
    """Keeps each stored policy's instances up. Methods run on the event loop; the store
    is called in worker threads. With ``changes``, a policy set or deleted here is
    announced to the other nodes, and theirs are followed here."""

    def __init__(self, store: SqlProvisionedStore, router: Router, pools: PoolManager,
                 clock: Clock, *, tick_s: float = 1.0, changes: ChangeBus | None = None
                 ) -> None:
        self._store = store
        self._changes = changes
        self._router = router
        self._pools = pools
        self._clock = clock
        self._tick_s = tick_s
        self._policies: dict[tuple[str, str], _Policy] = {}
        self._pending: dict[tuple[str, str], Route] = {}  # alias moves being warmed
        self._floored: set[VersionPool] = set()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        router.hold_moves(self.provisioned, self.before_move)
        if changes is not None:
            changes.follow(PROVISIONED, self.changed_elsewhere)
            changes.on_resync(self.resync)

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        entries = await asyncio.to_thread(self._store.all)
        for entry in entries:
            self._policies[(entry.function, entry.qualifier)] = _Policy(entry)
        await self.tick()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._clock.sleep(self._tick_s)
            try:
                await self.tick()
            except Exception:
                log.exception("scaler tick")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # the API -------------------------------------------------------------------------------

    async def put(self, function: str, qualifier: str, config: ProvisionedConfig
                  ) -> tuple[Provisioned, ProvisionedStatus]:
        """Set the policy of ``function`` at ``qualifier`` (replacing one). Raises
        FunctionNotFound, and InvalidPolicy naming ``qualifier`` when it reaches nothing."""
        await self._check_qualifier(function, qualifier)
        now = self._clock.time()
        entry = Provisioned(function, qualifier, config, config.target, now, now)
        async with self._lock:
            await asyncio.to_thread(self._store.put, entry)
            old = self._policies.get((function, qualifier))
            policy = _Policy(entry, tracker=old.tracker if old else Tracker())
            self._policies[(function, qualifier)] = policy
        await self._announce(function, qualifier)
        await self.tick()
        return entry, policy.status

    async def get(self, function: str, qualifier: str
                  ) -> tuple[Provisioned, ProvisionedStatus]:
        """Raises FunctionNotFound, ProvisionedNotFound."""
        await self._router.resolve(function, None)
        entry = await asyncio.to_thread(self._store.get, function, qualifier)
        policy = self._policies.get((function, qualifier))
        if policy is None:
            return entry, ProvisionedStatus(entry.target, "not applied yet")
        _report(policy)
        return policy.entry, policy.status

    async def list(self, function: str) -> list[tuple[Provisioned, ProvisionedStatus]]:
        entries = await asyncio.to_thread(self._store.all, function)
        out = []
        for entry in entries:
            policy = self._policies.get((entry.function, entry.qualifier))
            if policy is not None:
                _report(policy)
            out.append((entry, policy.status if policy else
                        ProvisionedStatus(entry.target, "not applied yet")))
        return out

    async def delete(self, function: str, qualifier: str) -> Provisioned:
        """Raises FunctionNotFound, ProvisionedNotFound. Its instances then live by
        keep-alive."""
        await self._router.resolve(function, None)
        async with self._lock:
            entry = await asyncio.to_thread(self._store.delete, function, qualifier)
            self._policies.pop((function, qualifier), None)
        await self._announce(function, qualifier)
        await self.tick()
        return entry

    # changes made on other nodes -----------------------------------------------------------

    async def _announce(self, function: str, qualifier: str) -> None:
        if self._changes is not None:
            await asyncio.to_thread(self._changes.publish, PROVISIONED,
                                    f"{function}/{qualifier}")

    async def changed_elsewhere(self, name: str) -> None:
        """Another node set or deleted the policy ``function/qualifier``: follow it."""
        function, _, qualifier = name.partition("/")
        try:
            entries = [await asyncio.to_thread(self._store.get, function, qualifier)]
        except NotFound:
            entries = []
        await self._adopt(entries, {(function, qualifier)})

    async def resync(self) -> None:
        """Changes may have been missed: follow the stored policies, and no other."""
        await self._adopt(await asyncio.to_thread(self._store.all), None)

    async def _adopt(self, entries: Iterable[Provisioned],
                     keys: set[tuple[str, str]] | None) -> None:
        """Take ``entries`` as the policies of ``keys`` (None: of every qualifier)."""
        async with self._lock:
            stored = {(e.function, e.qualifier): e for e in entries}
            for key in (set(self._policies) if keys is None else keys) - set(stored):
                self._policies.pop(key, None)
            for key, entry in stored.items():
                old = self._policies.get(key)
                self._policies[key] = _Policy(entry, tracker=old.tracker if old else Tracker())
        await self.tick()

    async def _check_qualifier(self, function: str, qualifier: str) -> None:
        try:
            await self._router.resolve(function, qualifier)
        except InvalidSpec as err:
            raise _bad_qualifier(qualifier, err.message) from err
        except NotFound as err:
            if err.code == "FunctionNotFound":
                raise
            raise _bad_qualifier(qualifier, err.message) from err

    def counts(self) -> Iterator[tuple[str, str, int, int]]:
        """(function, qualifier, desired, current) of every policy (Prometheus)."""
        for (function, qualifier), policy in list(self._policies.items()):
            yield (function, qualifier, policy.status.desired,
                   sum(p.size for p in policy.pools))

    def provisioned(self, function: str, qualifier: str) -> bool:
        """Whether a policy keeps instances up at ``qualifier`` (its moves warm first)."""
        policy = self._policies.get((function, qualifier))
        return policy is not None and policy.status.desired > 0

    async def before_move(self, function: str, qualifier: str, new: Route) -> None:
        """``qualifier`` is about to send traffic to ``new``: bring its provisioned
        instances up there first."""
        key = (function, qualifier)
        self._pending[key] = new
        try:
            await self.tick()
            tasks = [t for t in (self._pool(target).provision() for target in new.targets())
                     if t is not None]
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._pending.pop(key, None)

    # the tick ------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Apply due scheduled actions, sample the metric, and set every pool's floor."""
        async with self._lock:
            await self._tick()

    async def _tick(self) -> None:
        floors: dict[VersionPool, list[tuple[int, str]]] = {}
        freeze: dict[VersionPool, float | None] = {}
        now, mono = self._clock.time(), self._clock.monotonic()
        for key, policy in list(self._policies.items()):
            await self._apply_schedules(policy, now)
            routes = []
            try:
                routes.append(await self._router.resolve(*key))
            except NotFound:
                log.info("provisioned capacity of %s at %s: the qualifier is gone, dropped",
                         *key)
                self._policies.pop(key, None)
                with contextlib.suppress(EmberError):
                    await asyncio.to_thread(self._store.delete, *key)
                continue
            except EmberError as err:
                policy.status = ProvisionedStatus(0, f"cannot resolve: {err.message}")
                continue
            if key in self._pending:
                routes.append(self._pending[key])
            self._evaluate(policy, routes[0], now, mono)
            policy.pools = []
            for route in routes:
                if not route.enabled:
                    continue
                for target, count in _split(route, policy.status.desired):
                    pool = self._pool(target)
                    policy.pools.append(pool)
                    floors.setdefault(pool, []).append(
                        (count, f"provisioned at {key[1]}: {policy.status.reason}"))
                    freeze[pool] = policy.entry.config.idle_freeze_s
        for pool in self._floored - floors.keys():
            pool.provisioned, pool.provisioned_reason, pool.idle_freeze_s = 0, "", None
        for pool, parts in floors.items():
            pool.provisioned = sum(count for count, _ in parts)
            pool.provisioned_reason = "; ".join(reason for _, reason in parts)
            pool.idle_freeze_s = freeze[pool]
            pool.provision()
        self._floored = set(floors)
        for policy in self._policies.values():
            _report(policy)

    def _pool(self, target: Target) -> VersionPool:
        return self._pools.pool(target.key, target.spec, target.pool_config)

    async def _apply_schedules(self, policy: _Policy, now: float) -> None:
        entry = policy.entry
        if not entry.config.schedules:
            return
        # From the last look (in memory), else from the last action stored: a restart
        # looks back to it, at most CATCH_UP_S.
        since = max(entry.applied_until, policy.scanned_until, now - CATCH_UP_S)
        found = due(entry.config.schedules, since, now)
        policy.scanned_until = now
        if found is None:
            return
        index, at, action = found
        when = datetime.fromtimestamp(at, ZoneInfo(action.timezone)).isoformat()
        what = f"schedule {index} ({action.cron} {action.timezone}) at {when}"
        stored = await asyncio.to_thread(
            self._store.advance, entry.function, entry.qualifier, target=action.target,
            applied_until=now, last_action=what)
        if stored:
            entry.target, entry.applied_until, entry.last_action = action.target, now, what
            log.info("%s at %s: %s", entry.function, entry.qualifier, what)

    def _evaluate(self, policy: _Policy, route: Route, now: float, mono: float) -> None:
        entry = policy.entry
        desired, reason = entry.target, f"target {entry.target}"
        if entry.last_action:
            reason += f", set by {entry.last_action}"
        tracking = entry.config.target_tracking
        metric = None
        if tracking is not None:
            pools = [self._pool(t) for t in route.targets()]
            waiting: float = sum(max(0, p.in_flight - sum(p.load.values())) for p in pools)
            if tracking.metric == "cpu_utilization":
                usage = policy.tracker.cpu_usage(i for p in pools for i in p.instances())
                unit = route.primary.spec.limits().cpu_share
                waiting *= unit  # a request waiting wants a whole instance's cores
            else:
                usage = sum(p.usage() for p in pools)
                unit = route.primary.config.concurrency
            tracked = policy.tracker.sample(mono, usage, waiting, tracking, unit,
                                            policy.status.desired)
            metric = policy.tracker.utilization
            if tracked > desired:
                desired = tracked
                reason = (f"target tracking: {tracking.metric} {metric} "
                          f"(target {tracking.target}) → {tracked}")
        nexts = [t for t in (next_fire(a, now) for a in entry.config.schedules)
                 if t is not None]
        policy.status = ProvisionedStatus(desired, reason, metric=metric,
                                          next_action=min(nexts) if nexts else None)


def _report(policy: _Policy) -> None:
    """Fill the status with what the policy's pools hold now."""
    status = policy.status
    status.versions = {p.key.version: p.provisioned for p in policy.pools}
    status.current = sum(p.size for p in policy.pools)
    status.frozen = sum(1 for p in policy.pools for i in p.idle if getattr(i, "frozen", False))
    status.shortfall = "; ".join(f"version {p.key.version}: {p.shortfall}"
                                 for p in policy.pools if p.shortfall) or None


def _bad_qualifier(qualifier: str, why: str) -> InvalidPolicy:
    message = f"qualifier {qualifier!r}: {why}"
    return InvalidPolicy(message, {"errors": [{"field": "qualifier", "message": why}]})


def _split(route: Route, desired: int) -> list[tuple[Target, int]]:
    """``desired`` instances over the versions ``route`` reaches, by its weight."""
    if route.additional is None:
        return [(route.primary, desired)]
    extra = round(desired * route.weight)
    return [(route.primary, desired - extra), (route.additional, extra)]
