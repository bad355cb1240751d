"""Traffic routing without processes: a qualifier's targets and an alias's weighted split,
drawn from an injected random source."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from ember.model.function import FunctionConfig
from ember.pool.pool import PoolConfig, PoolKey
from ember.router.traffic import Route, Target


def target(version: str, **config: object) -> Target:
    return Target.of(
        PoolKey("fn", version, f"sha-{version}"),
        FunctionConfig.model_validate(config),
        Path("/code") / version,
        (Path("/layers/a"),),
    )


V1, V2 = target("1"), target("2")


class Draws(random.Random):
    """A random source that returns the given draws, in order."""

    def __init__(self, *draws: float) -> None:
        super().__init__()
        self._draws = list(draws)

    def random(self) -> float:
        return self._draws.pop(0)


def test_a_target_carries_the_pool_and_instance_settings_of_its_version() -> None:
    t = target("3", kind="web", app="app:app", max_instances=7, min_instances=2,
               keep_alive_s=9, concurrency=4, memory_mb=512, timeout_s=12,
               environment={"A": "b"})
    assert t.version == "3"
    assert t.pool_config == PoolConfig(max_instances=7, min_instances=2, keep_alive_s=9)
    spec = t.spec
    assert (spec.function, spec.version, spec.code_dir) == ("fn", "3", Path("/code/3"))
    assert spec.layer_dirs == (Path("/layers/a"),)
    assert (spec.concurrency, spec.memory_mb, spec.timeout_s) == (4, 512, 12)
    assert spec.environment == {"A": "b"}


def test_a_route_without_a_split_always_picks_its_version() -> None:
    route = Route(True, V1)
    assert route.targets() == [V1]
    rng = random.Random(1)
    assert {route.pick(rng).version for _ in range(100)} == {"1"}


def test_the_split_sends_a_draw_below_the_weight_to_the_additional_version() -> None:
    route = Route(True, V1, V2, 0.25)
    assert route.targets() == [V1, V2]
    draws = Draws(0.0, 0.2499, 0.25, 0.9999)
    assert [route.pick(draws).version for _ in range(4)] == ["2", "2", "1", "1"]


@pytest.mark.parametrize(
    ("weight", "expected"), [(0.0, {"1"}), (1.0, {"2"})], ids=["weight-0", "weight-1"]
)
def test_edge_weights_send_everything_to_one_version(weight: float, expected: set[str]) -> None:
    route = Route(True, V1, V2, weight)
    # The extremes of what random() returns: [0, 1).
    assert {route.pick(Draws(0.0)).version, route.pick(Draws(1 - 2**-53)).version} == expected
    rng = random.Random(5)
    assert {route.pick(rng).version for _ in range(1000)} == expected


def test_a_seeded_source_gives_the_same_split_every_time() -> None:
    route = Route(True, V1, V2, 0.3)
    first = [route.pick(random.Random(42)).version for _ in range(50)]
    again = [route.pick(random.Random(42)).version for _ in range(50)]
    assert first == again
    rng1, rng2 = random.Random(7), random.Random(7)
    assert [route.pick(rng1) for _ in range(200)] == [route.pick(rng2) for _ in range(200)]


@pytest.mark.parametrize(("weight", "count"), [(0.3, 2951), (0.05, 490)])
def test_the_split_follows_its_weight_over_many_draws(weight: float, count: int) -> None:
    """Exact counts for a seeded source (Python's generator is reproducible across
    versions), and those counts within 4 standard deviations of the weight."""
    n = 10_000
    route = Route(True, V1, V2, weight)
    rng = random.Random(10)
    seen = Counter(route.pick(rng).version for _ in range(n))
    assert seen == {"1": n - count, "2": count}
    sd = (n * weight * (1 - weight)) ** 0.5
    assert abs(count - n * weight) < 4 * sd
