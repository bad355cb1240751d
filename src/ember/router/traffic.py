"""Qualifier → version: ``latest``, a version number, or an alias with an optional
weighted split between two versions."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from ember.model.function import FunctionConfig
from ember.pool.instance import InstanceSpec
from ember.pool.pool import PoolConfig, PoolKey


@dataclass(frozen=True)
class Target:
    """One version an invocation can run: its pool and how to start its instances."""

    key: PoolKey
    config: FunctionConfig
    spec: InstanceSpec
    pool_config: PoolConfig

    @classmethod
    def of(
        cls, key: PoolKey, config: FunctionConfig, code_dir: Path,
        layer_dirs: tuple[Path, ...] = (),
    ) -> Target:
        return cls(
            key,
            config,
            InstanceSpec.from_config(key.function, key.version, code_dir, config, layer_dirs),
            PoolConfig(
                max_instances=config.max_instances,
                min_instances=config.min_instances,
                keep_alive_s=config.keep_alive_s,
                keep_alive_policy=config.keep_alive_policy,
            ),
        )

    @property
    def version(self) -> str:
        return self.key.version


@dataclass(frozen=True)
class Route:
    """Where a (function, qualifier) pair sends traffic."""

    enabled: bool
    primary: Target
    additional: Target | None = None
    weight: float = 0.0

    def pick(self, rng: random.Random) -> Target:
        if self.additional is not None and rng.random() < self.weight:
            return self.additional
        return self.primary

    def targets(self) -> list[Target]:
        return [self.primary] if self.additional is None else [self.primary, self.additional]
