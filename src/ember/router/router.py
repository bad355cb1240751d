"""Router.invoke: resolve → acquire → dispatch → release, with logs and a record of each
invocation."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ember.clock import Clock, wait_for
from ember.control import FunctionService
from ember.errors import (
    EmberError,
    FunctionDisabled,
    FunctionNotFound,
    FunctionTimeout,
    InvalidRequest,
    InvalidSpec,
    TooManyRequests,
)
from ember.ids import new_id
from ember.model.function import CodeRef, Function, FunctionConfig, Qualifier, Version
from ember.observability.logs import LogStore
from ember.observability.metrics import Metrics
from ember.observability.stats import (
    ERROR,
    SUCCESS,
    THROTTLED,
    TIMEOUT,
    InvocationRecord,
    StatsStore,
)
from ember.pool.instance import HttpExchange, HttpRequest
from ember.pool.pool import PoolKey, PoolManager
from ember.router.instances import InstancesView, view
from ember.router.traffic import Route, Target

log = logging.getLogger(__name__)

LOG_TAIL_BYTES = 4096


class LayerDirs(Protocol):
    """What the router needs of layers (``LayerService``)."""

    def dirs(self, entries: Sequence[str]) -> tuple[Path, ...]:
        """The unpacked directories of ``name:N`` entries, in order; InvalidSpec when one
        does not exist."""
        ...


@dataclass
class InvocationResult:
    """The answer of one invocation and how it ran."""

    request_id: str
    version: str
    cold: bool
    init_ms: float
    duration_ms: float
    total_ms: float
    body: bytes
    content_type: str
    log_tail: str | None = None

    def headers(self) -> dict[str, str]:
        return {
            "X-Ember-Request-Id": self.request_id,
            "X-Ember-Version": self.version,
            "X-Ember-Cold-Start": "true" if self.cold else "false",
            "X-Ember-Init-Ms": f"{self.init_ms:.3f}",
            "X-Ember-Duration-Ms": f"{self.duration_ms:.3f}",
        }


@dataclass
class HttpResponse:
    """The answer of a web or custom function to an HTTP request, streaming in."""

    request_id: str
    version: str
    cold: bool
    init_ms: float
    exchange: HttpExchange

    def headers(self) -> dict[str, str]:
        return {
            "X-Ember-Request-Id": self.request_id,
            "X-Ember-Version": self.version,
            "X-Ember-Cold-Start": "true" if self.cold else "false",
        }


@dataclass
class _InFlight:
    function: str
    version: str
    instance: str = ""
    tail: deque[str] | None = None
    tail_bytes: int = 0
    lines: list[str] = field(default_factory=list)

    def keep(self, line: str) -> None:
        if self.tail is None:
            return
        self.tail.append(line)
        self.tail_bytes += len(line) + 1
        while self.tail_bytes > LOG_TAIL_BYTES and len(self.tail) > 1:
            self.tail_bytes -= len(self.tail.popleft()) + 1

    def tail_text(self) -> str | None:
        if self.tail is None:
            return None
        text = "\n".join(self.tail)
        return text[-LOG_TAIL_BYTES:]


class Router:
    """Runs invocations. Resolution is cached and dropped whenever the control plane
    changes a function, so the warm path touches no database."""

    def __init__(
        self, functions: FunctionService, pools: PoolManager, logs: LogStore,
        stats: StatsStore, metrics: Metrics, clock: Clock, rng: random.Random | None = None,
        layers: LayerDirs | None = None,
    ) -> None:
        self._functions = functions
        self._layers = layers
        self._pools = pools
        self._logs = logs
        self._stats = stats
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._routes: dict[tuple[str, str], Route] = {}
        self._inflight: dict[str, _InFlight] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Qualifiers whose moves wait for their new version to be warm (provisioned ones).
        self._holds: Callable[[str, str], bool] = lambda _name, _qualifier: False
        self._before_move: Callable[[str, str, Route], Awaitable[None]] | None = None
        self._generation: dict[str, int] = {}
        functions.on_change(self._changed_from_any_thread)
        pools.route_logs(self._sink_for)

    def _sink_for(self, key: PoolKey) -> Callable[[str | None, str, float, str], None]:
        return functools.partial(self.on_log, function=key.function, version=key.version)

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._pools.start()
        # Bring min_instances up for every function that asks for them.
        names = await asyncio.to_thread(self._provisioned_functions)
        for name in names:
            await self._reconcile(name)

    def _provisioned_functions(self) -> list[str]:
        return [f.name for f in self._functions.all_functions() if f.config.min_instances > 0]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._pools.close()

    # logs from instances -----------------------------------------------------------------

    def on_log(self, request_id: str | None, level: str, ts: float, line: str,
               function: str | None = None, version: str | None = None,
               instance: str = "") -> None:
        """A line an instance wrote; lines of a request are tagged with its function."""
        flight = self._inflight.get(request_id) if request_id else None
        if flight is not None:
            flight.keep(f"{level} {line}")
            function, version, instance = flight.function, flight.version, flight.instance
        if function is None or version is None:
            log.debug("log line of no known invocation: %s", line)
            return
        self._logs.append(function, version, instance, request_id, level, ts, line)

    # invocation --------------------------------------------------------------------------

    async def invoke(
        self, name: str, qualifier: str | None, payload: bytes, content_type: str, *,
        request_id: str | None = None, mode: str = "sync", log_tail: bool = False,
        attempt: int = 1, background: bool = False, trigger: str | None = None,
        target: Target | None = None,
    ) -> InvocationResult:
        """Run ``name`` at ``qualifier`` with ``payload``; ``background`` (async) work
        waits for an instance behind synchronous callers.

        Raises FunctionNotFound / VersionNotFound / AliasNotFound, FunctionDisabled,
        TooManyRequests, InitError, FunctionError, FunctionTimeout, FunctionOutOfMemory,
        InstanceCrashed — each with the request id in its headers. ``target``: the version
        already drawn by ``pick`` (cluster placement draws it before choosing a node)."""
        request_id = request_id or new_id()
        started = self._clock.monotonic()
        wall = self._clock.time()
        version = "?"
        cold = False
        init_ms = 0.0
        try:
            target = target or await self._pick(name, qualifier)
            version = target.version
            pool = self._pools.pool(target.key, target.spec, target.pool_config)
            flight = _InFlight(name, version, tail=deque() if log_tail else None)
            self._inflight[request_id] = flight
            try:
                instance, cold = await pool.acquire(request_id, background=background)
                init_ms = instance.init_ms if cold else 0.0
                flight.instance = instance.id
                try:
                    answer = await instance.invoke(
                        request_id, payload, content_type,
                        deadline=self._clock.time() + target.config.timeout_s,
                        qualifier=qualifier or "latest", attempt=attempt, trigger=trigger,
                    )
                finally:
                    pool.release(instance)
            finally:
                self._inflight.pop(request_id, None)
        except EmberError as err:
            if version != "?":  # resolved: a run was attempted or throttled
                total_ms = (self._clock.monotonic() - started) * 1000
                self._record(wall, name, version, request_id, mode, cold, init_ms, 0.0,
                             total_ms, _outcome(err), err.code, attempt, err.message)
            _tag(err, request_id, version, cold)
            if log_tail and "flight" in locals():
                tail = flight.tail_text()
                if tail:
                    err.details.setdefault("log_tail", tail)
            raise
        total_ms = (self._clock.monotonic() - started) * 1000
        self._record(wall, name, version, request_id, mode, cold, init_ms, answer.duration_ms,
                     total_ms, SUCCESS, None, attempt)
        return InvocationResult(
            request_id=request_id,
            version=version,
            cold=cold,
            init_ms=init_ms,
            duration_ms=answer.duration_ms,
            total_ms=total_ms,
            body=answer.body,
            content_type=answer.content_type,
            log_tail=flight.tail_text(),
        )

    async def invoke_http(
        self, name: str, qualifier: str | None, request: HttpRequest, *,
        request_id: str | None = None,
    ) -> HttpResponse:
        """Send an HTTP request to a web or custom function. Returns once the response has
        started; its body streams from ``exchange.body()``, and the instance's slot is
        held until the exchange closes (the invocation is recorded then).

        Raises what ``invoke`` raises, and InvalidRequest when the version that takes the
        request is a handler function."""
        request_id = request_id or new_id()
        started = self._clock.monotonic()
        wall = self._clock.time()
        version = "?"
        cold = False
        init_ms = 0.0
        try:
            target = await self._pick(name, qualifier)
            version = target.version
            if target.config.kind == "event":
                raise InvalidRequest(
                    f"version {version} of {name!r} is a handler function, not a web app: "
                    "it takes events, not HTTP requests",
                    {"function": name, "version": version},
                )
            pool = self._pools.pool(target.key, target.spec, target.pool_config)
            self._inflight[request_id] = _InFlight(name, version)
            try:
                instance, cold = await pool.acquire(request_id)
            except BaseException:
                self._inflight.pop(request_id, None)
                raise
            init_ms = instance.init_ms if cold else 0.0
            self._inflight[request_id].instance = instance.id

            def closed(exchange: HttpExchange) -> None:
                pool.release(instance)
                self._inflight.pop(request_id, None)
                error = exchange.error
                self._record(
                    wall, name, version, request_id, "sync", cold, init_ms,
                    exchange.duration_ms, (self._clock.monotonic() - started) * 1000,
                    SUCCESS if error is None else _outcome(error),
                    None if error is None else error.code, 1,
                    None if error is None else error.message,
                )

            try:
                exchange = await instance.http(
                    request_id, request, deadline=self._clock.time() + target.config.timeout_s,
                    on_close=closed,
                )
            except BaseException:
                pool.release(instance)
                self._inflight.pop(request_id, None)
                raise
        except EmberError as err:
            if version != "?":
                total_ms = (self._clock.monotonic() - started) * 1000
                self._record(wall, name, version, request_id, "sync", cold, init_ms, 0.0,
                             total_ms, _outcome(err), err.code, 1, err.message)
            _tag(err, request_id, version, cold)
            raise
        return HttpResponse(request_id, version, cold, init_ms, exchange)

    def _record(
        self, ts: float, function: str, version: str, request_id: str, mode: str, cold: bool,
        init_ms: float, run_ms: float, total_ms: float, outcome: str, error_code: str | None,
        attempt: int, error_message: str | None = None,
    ) -> None:
        record = InvocationRecord(ts, function, version, request_id, mode, cold, init_ms,
                                  run_ms, total_ms, outcome, error_code, attempt, error_message)
        self._stats.record(record)
        self._metrics.observe(record)

    # resolution --------------------------------------------------------------------------

    async def _pick(self, name: str, qualifier: str | None) -> Target:
        """The version one invocation runs (an alias's split is drawn here)."""
        route = await self._route(name, qualifier)
        if not route.enabled:
            raise FunctionDisabled(
                f"function {name!r} is disabled: enable it to invoke it", {"function": name}
            )
        return route.pick(self._rng)

    async def pick(self, name: str, qualifier: str | None) -> Target:
        """The version one invocation of ``name`` at ``qualifier`` runs (an alias's split
        drawn now); pass it to ``invoke`` as ``target``. Raises what ``invoke`` raises
        before running anything."""
        return await self._pick(name, qualifier)

    def has_room(self, key: PoolKey) -> bool:
        """Whether this node has a warm instance of the pool ``key`` free now."""
        return self._pools.has_room(key)

    async def resolve(self, name: str, qualifier: str | None) -> Route:
        """Where an invocation of ``name`` at ``qualifier`` would go (cached). Raises
        FunctionNotFound, VersionNotFound, AliasNotFound, InvalidSpec."""
        return await self._route(name, qualifier)

    async def _route(self, name: str, qualifier: str | None) -> Route:
        key = (name, qualifier or "latest")
        route = self._routes.get(key)
        if route is None:
            generation = self._generation.get(name, 0)
            route = await asyncio.to_thread(self._resolve, name, qualifier)
            # A change heard while resolving (here or from another node) may have been
            # read before its commit: answer this once, but do not keep it.
            if self._generation.get(name, 0) == generation:
                self._routes[key] = route
        return route

    def _resolve(self, name: str, qualifier: str | None) -> Route:
        try:
            parsed = Qualifier.parse(qualifier)
        except ValueError as exc:
            raise InvalidSpec(str(exc), {"field": "qualifier"}) from exc
        function = self._functions.get(name)
        if parsed.kind == "latest":
            return Route(function.enabled, self._latest_target(function))
        if parsed.kind == "version":
            assert parsed.version is not None
            version = self._functions.get_version(name, parsed.version)
            return Route(function.enabled, self._version_target(version))
        alias = self._functions.get_alias(name, parsed.value)
        primary = self._version_target(self._functions.get_version(name, alias.version))
        if alias.split is None:
            return Route(function.enabled, primary)
        extra = self._version_target(self._functions.get_version(name, alias.split.version))
        return Route(function.enabled, primary, extra, alias.split.weight)

    def _latest_target(self, function: Function) -> Target:
        return Target.of(
            _latest_key(function),
            function.config,
            Path(self._functions.code_path(function.code)),
            self._layer_dirs(function.name, function.code, function.config),
        )

    def _version_target(self, version: Version) -> Target:
        return Target.of(
            PoolKey(version.function, str(version.number), version.code.sha256[:16]),
            version.config,
            Path(self._functions.code_path(version.code)),
            self._layer_dirs(version.function, version.code, version.config),
        )

    def _layer_dirs(
        self, function: str, code: CodeRef, config: FunctionConfig
    ) -> tuple[Path, ...]:
        # Called while a route is resolved (in a worker thread), never on the warm path.
        # After the code dir: its requirements.txt's dependencies (built here when missing,
        # e.g. after the server's Python changed), then its layers in order.
        dependencies = self._functions.dependency_dirs(code, function)
        if self._layers is None or not config.layers:
            return dependencies
        return dependencies + self._layers.dirs(config.layers)

    # what runs now ---------------------------------------------------------------------

    async def instances(self, name: str) -> InstancesView:
        """The pools and instances of ``name`` now. Raises FunctionNotFound."""
        latest, aliases = await asyncio.to_thread(self._qualified, name)
        return view(name, self._pools.pools(), latest, aliases, self._clock)

    async def warm(self, name: str, qualifier: str | None, count: int) -> int:
        """Start ``count`` instances of the version ``qualifier`` reaches (an alias's
        primary version) now; how many started (see ``VersionPool.warm``). Raises what
        resolution raises, FunctionDisabled, and InitError when no instance could start."""
        route = await self._route(name, qualifier)
        if not route.enabled:
            raise FunctionDisabled(
                f"function {name!r} is disabled: enable it to warm it", {"function": name}
            )
        target = route.primary
        return await self._pools.pool(target.key, target.spec, target.pool_config).warm(count)

    def _qualified(self, name: str) -> tuple[PoolKey | None, dict[int, list[str]]]:
        """The pool ``latest`` reaches (None when disabled) and the aliases of each version."""
        function = self._functions.get(name)
        aliases: dict[int, list[str]] = {}
        for alias in self._functions.list_aliases(name):
            for number in alias.versions():
                aliases.setdefault(number, []).append(alias.name)
        return (_latest_key(function) if function.enabled else None), aliases

    # reacting to control-plane changes ----------------------------------------------------

    def _changed_from_any_thread(self, name: str) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._schedule_reconcile, name)

    def hold_moves(self, holds: Callable[[str, str], bool],
                   before_move: Callable[[str, str, Route], Awaitable[None]]) -> None:
        """When a change moves a qualifier for which ``holds(name, qualifier)`` is true to
        other versions, traffic keeps its old route until ``before_move(name, qualifier,
        new_route)`` has returned (the scaler warms the new versions' instances then)."""
        self._holds, self._before_move = holds, before_move

    def _schedule_reconcile(self, name: str) -> None:
        generation = self._generation[name] = self._generation.get(name, 0) + 1
        held: dict[tuple[str, str], Route] = {}
        for key in [k for k in self._routes if k[0] == name]:
            route = self._routes.pop(key)
            # Only an alias moves between versions whose code stays (latest's old code
            # is removed with it, so its old pool could not start what a burst needs).
            if (self._before_move is not None and route.enabled and _is_alias(key[1])
                    and self._holds(*key)):
                held[key] = route
        self._routes.update(held)
        task = asyncio.get_running_loop().create_task(self._reconcile(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        for key, route in held.items():
            moving = asyncio.get_running_loop().create_task(
                self._move(key, route, generation))
            self._tasks.add(moving)
            moving.add_done_callback(self._tasks.discard)

    async def _move(self, key: tuple[str, str], old: Route, generation: int) -> None:
        """Send ``key``'s traffic to its new route once its new versions are warm (at most
        their initializer timeout later)."""
        name, qualifier = key
        try:
            new = await asyncio.to_thread(self._resolve, name, qualifier)
        except EmberError:
            new = None
        moves = (new is not None and new.enabled and self._before_move is not None
                 and [t.key for t in new.targets()] != [t.key for t in old.targets()])
        if moves:
            assert new is not None and self._before_move is not None
            limit = max(t.config.initializer_timeout_s for t in new.targets()) + 10.0
            try:
                await wait_for(self._clock, self._before_move(name, qualifier, new), limit)
            except Exception as exc:  # traffic moves anyway: warming is best effort
                log.warning("warming %s at %s before its move: %s", name, qualifier, exc)
        if self._generation.get(name) != generation:
            return  # a later change decides this route
        if new is None:
            self._routes.pop(key, None)
        else:
            self._routes[key] = new
        await self._reconcile(name)  # what only the old route reached retires now

    async def wait_settled(self) -> None:
        """Let pending reactions to control-plane changes finish (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _reconcile(self, name: str) -> None:
        """Retire pools of content that no qualifier reaches any more; keep min_instances
        warm for ``latest`` and every version an alias points at."""
        try:
            keep, warm, latest = await asyncio.to_thread(self._reachable, name)
        except FunctionNotFound:
            keep, warm, latest = set(), [], None
            self._pools.forget(name)
        except EmberError:
            keep, warm, latest = set(), [], None
        # Routes held until their new versions are warm still send traffic to the old ones.
        keep |= {t.key for k, route in self._routes.items() if k[0] == name
                 for t in route.targets()}
        self._pools.drain(name, keep)
        if latest is not None:
            self._pools.launcher.prewarm(latest.spec)
        for target in warm:
            pool = self._pools.pool(target.key, target.spec, target.pool_config)
            pool.provision()

    def _reachable(self, name: str) -> tuple[set[PoolKey], list[Target], Target | None]:
        """The pools to keep, those min_instances keeps warm, and ``latest`` (None when the
        function is disabled)."""
        function = self._functions.get(name)
        if not function.enabled:
            return set(), [], None
        latest = self._latest_target(function)
        versions = {v.number: self._version_target(v) for v in self._functions.list_versions(name)}
        keep = {latest.key, *(t.key for t in versions.values())}
        warm = [latest] if latest.config.min_instances else []
        for alias in self._functions.list_aliases(name):
            for number in alias.versions():
                target = versions.get(number)
                if target is not None and target.config.min_instances and target not in warm:
                    warm.append(target)
        return keep, warm, latest


def _is_alias(qualifier: str) -> bool:
    return qualifier != "latest" and not qualifier.isdigit()


def _latest_key(function: Function) -> PoolKey:
    digest = f"{function.code.sha256[:16]}-{function.config.digest()[:16]}"
    return PoolKey(function.name, "latest", digest)


def _tag(err: EmberError, request_id: str, version: str, cold: bool) -> None:
    err.headers.update({
        "X-Ember-Request-Id": request_id,
        "X-Ember-Version": version,
        "X-Ember-Cold-Start": "true" if cold else "false",
    })


def _outcome(err: EmberError) -> str:
    if isinstance(err, TooManyRequests):
        return THROTTLED
    if isinstance(err, FunctionTimeout):
        return TIMEOUT
    return ERROR
