"""The composition root: builds every service from Settings, starts and stops them."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from ember.artifacts import ArtifactLimits, ArtifactStore, FilesystemArtifactStore
from ember.artifacts.database import SqlArtifactStore
from ember.auth.audit import AuditTrail
from ember.auth.keys import KeyService
from ember.auth.sessions import ConsoleSessions
from ember.auth.tokens import InstanceTokens
from ember.clock import Clock, SystemClock
from ember.cluster.changes import ChangeBus, change_bus
from ember.cluster.leases import leases_for
from ember.cluster.nodes import NodeRegistry, capacity, node_id
from ember.cluster.peers import NodeCredential, PeerClient
from ember.cluster.placement import Placement
from ember.cluster.slots import RedisSlots, Slots
from ember.control import FunctionService
from ember.control.builds import BuildService
from ember.control.layers import LayerService
from ember.control.triggers import TriggerService
from ember.control.workflows import WorkflowService
from ember.errors import Conflict, InvalidSpec
from ember.observability.logs import LogStore
from ember.observability.metrics import Metrics
from ember.observability.stats import StatsStore
from ember.pool.launcher import Launcher
from ember.pool.pool import PoolManager
from ember.queue.base import Queue
from ember.queue.policy import RetryPolicy
from ember.queue.worker import AsyncInvoker, WorkerSettings
from ember.router import Router
from ember.scaling.scaler import Scaler
from ember.secrets.crypto import MasterKey, MasterKeyError, SecretCipher, load_master_key
from ember.secrets.service import SecretService
from ember.secrets.store import SqlSecretStore
from ember.settings import MIB, Settings
from ember.store import SqlMetadataStore
from ember.store.builds import SqlBuildStore
from ember.store.keys import SqlKeyStore
from ember.store.layers import SqlLayerStore
from ember.store.migrate import upgrade
from ember.store.nodes import SqlNodeStore
from ember.store.scaling import SqlProvisionedStore
from ember.store.sessions import SqlSessionStore
from ember.store.sql import create_engine
from ember.store.triggers import SqlTriggerStore
from ember.store.workflows import SqlWorkflowStore
from ember.triggers.supervisor import Supervisor
from ember.workflows.engine import Engine, EngineSettings

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
    launcher: Launcher
    engine: Engine
    workflows: WorkflowService
    secrets: SecretService
    keys: KeyService
    key_store: SqlKeyStore
    audit: AuditTrail
    scaler: Scaler
    sessions: ConsoleSessions
    nodes: NodeRegistry
    changes: ChangeBus
    # The admin key this start made (no key existed): printed once by `ember server`.
    new_admin_key: str | None = None
    # Calls to the other nodes (logs and stats of the whole cluster, forwarding).
    peers: PeerClient | None = None
    # Where sync invocations run when several nodes serve (cluster/placement.py).
    placement: Placement | None = None
    # One of max_instances across the nodes per instance (cluster/slots.py; Redis).
    slots: Slots | None = None

    def problem(self) -> str | None:
        """Why this server cannot serve invocations now (``/healthz`` fails), or None."""
        return self.launcher.problem()

    async def start(self) -> None:
        log.info("ember data in %s, metadata at %s", self.settings.home, _safe_url(self.settings))
        await self.changes.start()  # listening before the others load their state
        await self.nodes.start()
        if self.slots is not None:
            await self.slots.start()
        await self.router.start()
        await self.scaler.start()
        await self.audit.start()
        await self.invoker.start()
        await self.engine.start()
        await self.supervisor.start()

    async def close(self) -> None:
        try:
            await self.changes.close()
            await self.supervisor.close()
            await self.engine.close()
            await self.invoker.close()
            await self.audit.close()
            await self.scaler.close()
            await self.router.close()
            if self.slots is not None:
                await self.slots.close()
            await self.nodes.close()
            if self.peers is not None:
                await self.peers.close()
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
    # Before anything is opened: a bad key leaves nothing behind.
    master = _master_key(settings)
    cipher = SecretCipher(master)
    this_node = node_id(settings.home, settings.node_id)
    engine = create_engine(settings.resolved_database_url())
    upgrade(engine)
    store = SqlMetadataStore(engine, clock)
    changes = change_bus(engine, this_node, clock)
    limits = Limits(
        max_code_bytes=int(settings.max_code_mb * MIB),
        max_sync_payload_bytes=int(settings.max_sync_payload_mb * MIB),
        max_async_payload_bytes=int(settings.max_async_payload_kb * 1024),
    )
    artifact_limits = ArtifactLimits(
        max_zip_bytes=limits.max_code_bytes,
        max_entries=settings.max_code_entries,
        max_unpacked_bytes=int(settings.max_unpacked_mb * MIB),
    )
    artifacts = _artifacts(settings, engine, artifact_limits, clock)
    layers = LayerService(SqlLayerStore(engine, clock), artifacts, store.code_in_use)
    builds = BuildService(
        SqlBuildStore(engine), settings.home / "deps", clock,
        timeout_s=settings.build_timeout_s, limits=artifact_limits,
        isolation=settings.sandbox, private=[settings.home],
        shared=artifacts if isinstance(artifacts, SqlArtifactStore) else None,
    )
    builds.recover()
    secrets = SecretService(SqlSecretStore(engine), cipher, clock)
    secrets.check_master_key()
    functions = FunctionService(store, artifacts, clock, layers, builds, secrets,
                                changes=changes)
    logs = LogStore(settings.home / "logs.db", retention=settings.log_retention)
    stats = StatsStore(settings.home / "stats.db", retention_s=settings.stats_retention_s,
                       now=clock.time)
    functions.on_delete(logs.delete_function, each_node=True)
    functions.on_delete(stats.delete_function, each_node=True)
    functions.on_delete(builds.delete_function)
    metrics = Metrics(node=this_node)
    tokens = InstanceTokens(server_url(settings))
    launcher = Launcher(
        settings.home / "run", use_zygote=settings.zygote, log_sink=_unrouted,
        spares=settings.spare_instances, secret_values=secrets, identities=tokens,
        isolation=settings.sandbox, private=[settings.home],
    )
    pools = PoolManager(
        launcher, clock, max_instances=settings.max_instances,
        queue_depth=settings.queue_depth, queue_wait_s=settings.queue_wait_s,
    )
    if settings.queue_url:  # the nodes of a cluster share it: max_instances holds across them
        pools.slots = RedisSlots(settings.queue_url, settings.queue_prefix, this_node,
                                 ttl_s=max(settings.node_dead_s, 3 * settings.node_heartbeat_s))
    router = Router(functions, pools, logs, stats, metrics, clock, layers=layers)
    metrics.watch_instances(pools.counts)
    scaler = Scaler(SqlProvisionedStore(engine), router, pools, clock, changes=changes)
    metrics.watch_provisioned(scaler.counts)
    invoker = AsyncInvoker(
        _queue(settings), router, functions, clock,
        WorkerSettings(
            concurrency=settings.async_concurrency,
            lease_s=settings.async_lease_s,
            max_payload_bytes=limits.max_async_payload_bytes,
            retention_s=settings.task_retention_s,
        ),
        RetryPolicy(
            function_delay_s=settings.async_retry_delay_s,
            system_base_s=settings.async_system_delay_s,
        ),
    )
    invoker.on_outcome = metrics.async_outcome
    workflow_store = SqlWorkflowStore(engine)
    workflow_engine = Engine(
        workflow_store, invoker, clock,
        EngineSettings(
            event_retention_s=settings.workflow_event_retention_s,
            max_payload_bytes=limits.max_async_payload_bytes,
            retention_s=settings.execution_retention_s,
        ),
    )
    functions.on_delete(workflow_engine.function_deleted, each_node=True)
    workflows = WorkflowService(workflow_store, workflow_engine, clock, changes=changes)
    triggers = TriggerService(SqlTriggerStore(engine), functions, clock, workflows,
                              changes=changes)
    key_store = SqlKeyStore(engine)
    admin_key = settings.admin_key.get_secret_value() if settings.admin_key else None
    keys = KeyService(key_store, clock, admin_key=admin_key, tokens=tokens, changes=changes)
    new_admin_key = keys.bootstrap(settings.home)
    audit = AuditTrail(key_store, clock, retention_s=settings.audit_retention_s)
    sessions = ConsoleSessions(SqlSessionStore(engine), keys, clock,
                               ttl_s=settings.console_session_s)

    def load() -> dict[str, Any]:
        """What a heartbeat reports: instances by state, and the work still on the node."""
        states: dict[str, int] = {}
        for _, _, state, count in pools.counts():
            states[state] = states.get(state, 0) + count
        in_flight = sum(pool.in_flight for pool in pools.pools())
        return {"instances": states, "in_flight": in_flight,
                "async": invoker.running_count, "leases": leases.count(), "warm": pools.warm_keys()}

    nodes = NodeRegistry(
        SqlNodeStore(engine), clock, node=this_node,
        address=settings.node_address or server_url(settings),
        capacity=capacity(settings.max_instances), load=load,
        heartbeat_s=settings.node_heartbeat_s,
        dead_s=max(settings.node_dead_s, 2 * settings.node_heartbeat_s))
    nodes.on_drain(invoker.set_draining)
    # Triggers with target "events" publish on the workflow event bus; with target
    # "workflow", each event starts an execution. Non-HTTP sources run where their lease is.
    leases = leases_for(settings.resolved_database_url(), nodes, clock,
                        beat_s=settings.lease_beat_s)
    supervisor = Supervisor(triggers, invoker, router, clock, publish=workflows.publish,
                            run_workflow=workflows.run, leases=leases)
    nodes.on_drain(supervisor.drain)
    peers = PeerClient(NodeCredential(this_node, master.key), nodes.nodes)
    return Services(
        settings=settings, clock=clock, limits=limits, store=store, functions=functions,
        logs=logs, stats=stats, metrics=metrics, router=router, invoker=invoker,
        triggers=triggers, supervisor=supervisor, layers=layers, builds=builds,
        launcher=launcher, engine=workflow_engine, workflows=workflows, secrets=secrets,
        keys=keys, key_store=key_store, audit=audit, new_admin_key=new_admin_key,
        scaler=scaler, sessions=sessions, nodes=nodes, changes=changes,
        peers=peers, placement=Placement(nodes, peers, router.has_room), slots=pools.slots,
    )


def _artifacts(
    settings: Settings, engine: sa.Engine, limits: ArtifactLimits, clock: Clock
) -> ArtifactStore:
    """Code and layer zips in the metadata database when nodes may share it (PostgreSQL, or
    ``database`` asked for), each node unpacking them into its home; else in the home only
    (one machine on SQLite needs no second copy of every zip in its database)."""
    local = FilesystemArtifactStore(settings.home / "artifacts", limits)
    kind = settings.artifact_store
    if kind == "auto":
        postgresql = settings.resolved_database_url().startswith("postgresql")
        kind = "database" if postgresql else "filesystem"
    if kind == "filesystem":
        return local
    return SqlArtifactStore(engine, local, clock)


def _master_key(settings: Settings) -> MasterKey:
    configured = settings.master_key.get_secret_value() if settings.master_key else None
    try:
        return load_master_key(configured, settings.home)
    except MasterKeyError as exc:
        raise InvalidSpec(str(exc), {"field": "master_key"}) from exc


def server_url(settings: Settings) -> str:
    """Where this server's instances reach its API (``EMBER_URL`` in functions with a
    role): loopback unless it listens on one address only."""
    host = settings.host
    if host in ("0.0.0.0", "", "localhost"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.tls_cert is not None else "http"
    return f"{scheme}://{host}:{settings.port}"


class HomeLock:
    """An exclusive lock on a server's home, held while the file stays open: two servers
    on one home would remove each other's instance socket and share SQLite files."""

    def __init__(self, path: Path, file: IO[str]) -> None:
        self.path = path
        self._file = file

    def release(self) -> None:
        self._file.close()  # closing the file releases the lock


def lock_home(home: Path) -> HomeLock:
    """Lock ``home`` for this process (``home/server.lock``, holding this pid).

    Raises:
        Conflict: another process holds the lock; the message names its pid.
    """
    home.mkdir(parents=True, exist_ok=True)
    path = home / "server.lock"
    file = open(path, "a+")  # noqa: SIM115 - held open for the life of the server
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = file.read().strip()
        file.close()
        who = f"pid {holder}" if holder.isdigit() else "another process"
        raise Conflict(
            f"another Ember server ({who}) is using the home {home.resolve()}: stop it, or "
            "start this one with another --home (EMBER_HOME)",
            {"home": str(home.resolve()), "pid": int(holder) if holder.isdigit() else None},
        ) from None
    except BaseException:
        file.close()
        raise
    with contextlib.suppress(OSError):
        file.truncate(0)
        file.write(str(os.getpid()))
        file.flush()
    return HomeLock(path, file)


def _queue(settings: Settings) -> Queue:
    if settings.queue_url:
        from ember.queue.redis import RedisQueue

        return RedisQueue(settings.queue_url, prefix=settings.queue_prefix)
    from ember.queue.embedded import EmbeddedQueue

    return EmbeddedQueue(settings.home / "queue.db")


def _unrouted(request_id: str | None, level: str, ts: float, line: str) -> None:
    # Every launch names its pool's sink; a line here came from no known function.
    log.debug("instance log line outside any pool: %s %s", level, line)
