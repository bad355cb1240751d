"""What runs for a function now: each pool (a version's instances) with the count it
wants and why, and each instance with its state, load, times and memory."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ember.clock import Clock
from ember.pool.instance import Instance, InstanceState
from ember.pool.keepalive import describe
from ember.pool.pool import PoolKey, VersionPool

_MIB = 1024 * 1024


@dataclass(frozen=True)
class PoolView:
    """One pool: ``current`` counts starting, idle, frozen and busy instances;
    ``desired`` is what the scaler keeps (min_instances while a qualifier reaches the pool,
    or the provisioned count), ``reason`` says why and ``shortfall`` why it is not met."""

    version: str
    qualifiers: tuple[str, ...]
    current: int
    starting: int
    desired: int
    reason: str
    draining: bool
    shortfall: str | None = None
    keep_alive: str = ""


@dataclass(frozen=True)
class InstanceView:
    """One instance; times are Unix time (``last_used`` converted from the monotonic
    clock)."""

    id: str
    version: str
    state: str
    in_flight: int
    started_at: float
    last_used_at: float
    memory_mb: float | None


@dataclass(frozen=True)
class InstancesView:
    function: str
    pools: tuple[PoolView, ...]
    instances: tuple[InstanceView, ...]


def view(
    function: str, pools: Iterable[VersionPool], latest: PoolKey | None,
    aliases: Mapping[int, Sequence[str]], clock: Clock,
) -> InstancesView:
    """The pools of ``function`` and their instances. ``latest`` is the key of the content
    ``latest`` runs now (None: disabled); ``aliases`` names the aliases of each version."""
    mine = sorted((p for p in pools if p.key.function == function), key=_order)
    offset = clock.time() - clock.monotonic()
    return InstancesView(
        function,
        tuple(_pool(p, latest, aliases) for p in mine),
        tuple(sorted((_instance(i, p.draining, offset) for p in mine for i in p.instances()
                      if i.state is not InstanceState.GONE), key=lambda i: i.started_at)),
    )


def _order(pool: VersionPool) -> tuple[int, int, bool]:
    version = pool.key.version
    return (0, 0, pool.draining) if version == "latest" else (1, int(version), pool.draining)


def _pool(
    pool: VersionPool, latest: PoolKey | None, aliases: Mapping[int, Sequence[str]]
) -> PoolView:
    if pool.key.version == "latest":
        qualifiers: tuple[str, ...] = ("latest",) if pool.key == latest else ()
    else:
        qualifiers = tuple(aliases.get(int(pool.key.version), ()))
    current = pool.size
    minimum = pool.config.min_instances if qualifiers and latest is not None else 0
    if pool.draining:
        desired, reason = 0, "draining: replaced"
    elif pool.provisioned > minimum:
        desired, reason = pool.provisioned, pool.provisioned_reason
    elif minimum > 0:
        desired, reason = minimum, f"min_instances: {minimum}"
    else:
        desired, reason = current, "on demand"
    return PoolView(pool.key.version, qualifiers, current, pool.starting, desired, reason,
                    pool.draining, None if pool.draining else pool.shortfall,
                    describe(pool.keep_alive))


def _instance(instance: Instance, draining: bool, offset: float) -> InstanceView:
    state = "draining" if draining else instance.state.value
    used = instance.memory_used()
    return InstanceView(
        id=instance.id,
        version=instance.spec.version,
        state=state,
        in_flight=instance.inflight,
        started_at=instance.started_at,
        last_used_at=instance.last_used + offset,
        memory_mb=None if used is None else round(used / _MIB, 1),
    )
