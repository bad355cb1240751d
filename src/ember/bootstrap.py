"""The composition root: builds every service from Settings, starts and stops them."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ember.artifacts import ArtifactLimits, FilesystemArtifactStore
from ember.clock import Clock, SystemClock
from ember.control import FunctionService
from ember.control.builds import BuildService
from ember.control.layers import LayerService
from ember.control.triggers import TriggerService
from ember.observability.logs import LogStore
from ember.observability.metrics import Metrics
from ember.observability.stats import StatsStore
from ember.pool.launcher import Launcher
from ember.pool.pool import PoolManager
from ember.queue.base import Queue
from ember.queue.policy import RetryPolicy
from ember.queue.worker import AsyncInvoker, WorkerSettings
from ember.router import Router
from ember.settings import MIB, Settings
from ember.store import SqlMetadataStore
from ember.store.builds import SqlBuildStore
from ember.store.layers import SqlLayerStore
from ember.store.migrate import upgrade
from ember.store.sql import create_engine
from ember.store.triggers import SqlTriggerStore
from ember.triggers.supervisor import Supervisor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """Request limits the API enforces."""

    max_code_bytes: int
    max_sync_payload_bytes: int
    max_async_payload_bytes: int


@dataclass
class Services:
    """Everything the API needs, built once per server."""

    settings: Settings
    clock: Clock
    limits: Limits
    store: SqlMetadataStore
    functions: FunctionService
    logs: LogStore
    stats: StatsStore
    metrics: Metrics
    router: Router
    invoker: AsyncInvoker
    triggers: TriggerService
    supervisor: Supervisor
    layers: LayerService
    builds: BuildService

    async def start(self) -> None:
        log.info("ember data in %s, metadata at %s", self.settings.home, _safe_url(self.settings))
        await self.router.start()
        await self.invoker.start()
        await self.supervisor.start()

    async def close(self) -> None:
        try:
            await self.supervisor.close()
            await self.invoker.close()
            await self.router.close()
        finally:
            self.builds.close()
            self.logs.close()
            self.stats.close()
            self.store.close()


def _safe_url(settings: Settings) -> str:
    url = settings.resolved_database_url()
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}"


def build(settings: Settings, clock: Clock | None = None) -> Services:
    """Make every service from ``settings``; migrates the metadata store."""
    clock = clock or SystemClock()
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url())
    upgrade(engine)
    store = SqlMetadataStore(engine, clock)
    limits = Limits(
        max_code_bytes=int(settings.max_code_mb * MIB),
        max_sync_payload_bytes=int(settings.max_sync_payload_mb * MIB),
        max_async_payload_bytes=int(settings.max_async_payload_kb * 1024),
    )
    artifacts = FilesystemArtifactStore(
        settings.home / "artifacts",
        ArtifactLimits(
            max_zip_bytes=limits.max_code_bytes,
            max_entries=settings.max_code_entries,
            max_unpacked_bytes=int(settings.max_unpacked_mb * MIB),
        ),
    )
    layers = LayerService(SqlLayerStore(engine, clock), artifacts, store.code_in_use)
    builds = BuildService(
        SqlBuildStore(engine), settings.home / "deps", clock,
        timeout_s=settings.build_timeout_s, limits=artifacts.limits,
    )
    builds.recover()
    functions = FunctionService(store, artifacts, clock, layers, builds)
    logs = LogStore(settings.home / "logs.db", retention=settings.log_retention)
    stats = StatsStore(settings.home / "stats.db")
    functions.on_delete(logs.delete_function)
    functions.on_delete(stats.delete_function)
    functions.on_delete(builds.delete_function)
    metrics = Metrics()
    launcher = Launcher(
        settings.home / "run", use_zygote=settings.zygote, log_sink=_unrouted,
        spares=settings.spare_instances,
    )
    pools = PoolManager(
        launcher, clock, max_instances=settings.max_instances,
        queue_depth=settings.queue_depth, queue_wait_s=settings.queue_wait_s,
    )
    router = Router(functions, pools, logs, stats, metrics, clock, layers=layers)
    metrics.watch_instances(pools.counts)
    invoker = AsyncInvoker(
        _queue(settings), router, functions, clock,
        WorkerSettings(
            concurrency=settings.async_concurrency,
            lease_s=settings.async_lease_s,
            max_payload_bytes=limits.max_async_payload_bytes,
        ),
        RetryPolicy(
            function_delay_s=settings.async_retry_delay_s,
            system_base_s=settings.async_system_delay_s,
        ),
    )
    invoker.on_outcome = metrics.async_outcome
    triggers = TriggerService(SqlTriggerStore(engine), functions, clock)
    supervisor = Supervisor(triggers, invoker, router, clock)
    return Services(
        settings=settings, clock=clock, limits=limits, store=store, functions=functions,
        logs=logs, stats=stats, metrics=metrics, router=router, invoker=invoker,
        triggers=triggers, supervisor=supervisor, layers=layers, builds=builds,
    )


def _queue(settings: Settings) -> Queue:
    if settings.queue_url:
        from ember.queue.redis import RedisQueue

        return RedisQueue(settings.queue_url, prefix=settings.queue_prefix)
    from ember.queue.embedded import EmbeddedQueue

    return EmbeddedQueue(settings.home / "queue.db")


def _unrouted(request_id: str | None, level: str, ts: float, line: str) -> None:
    # Every launch names its pool's sink; a line here came from no known function.
    log.debug("instance log line outside any pool: %s %s", level, line)
