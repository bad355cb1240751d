"""The retry policy on its own: which errors are whose, and how long each retry waits. No
processes, no queue."""

from __future__ import annotations

import random

import pytest

from ember.errors import (
    AliasNotFound,
    EmberError,
    FunctionDisabled,
    FunctionError,
    FunctionNotFound,
    FunctionOutOfMemory,
    FunctionTimeout,
    InitError,
    InstanceCrashed,
    InvalidRequest,
    ServiceUnavailable,
    TooManyRequests,
    VersionNotFound,
)
from ember.queue.policy import RetryPolicy, kind_of


@pytest.mark.parametrize("error, kind", [
    (FunctionError("boom"), "function"),
    (FunctionTimeout("slow"), "function"),
    (FunctionOutOfMemory("big"), "function"),
    (InitError("import failed"), "function"),
    (TooManyRequests("full"), "system"),
    (ServiceUnavailable("closing"), "system"),
    (FunctionDisabled("off"), "system"),
    (FunctionNotFound("gone"), "permanent"),
    (VersionNotFound("gone"), "permanent"),
    (AliasNotFound("gone"), "permanent"),
    (InvalidRequest("bad"), "permanent"),
    (EmberError("unknown"), "function"),
])
def test_kind_of_each_error(error: EmberError, kind: str) -> None:
    assert kind_of(error, "req-1") == kind


def test_a_crash_with_the_event_in_flight_is_the_functions() -> None:
    crashed = InstanceCrashed("the instance died during the invocation: exit code 1",
                              {"request_id": "req-1", "exit_code": 1})
    assert kind_of(crashed, "req-1") == "function"


def test_a_crash_before_the_event_reached_the_instance_is_the_platforms() -> None:
    # The instance was gone when the event was sent, or never started, or it died with
    # another request in flight: none of these names this event.
    gone = InstanceCrashed("instance abc is gone", {"exit_code": -9, "signal": 9})
    failed_start = InstanceCrashed("instance abc failed to start", {"instance": "abc"})
    other = InstanceCrashed("died during the invocation", {"request_id": "req-2"})
    for error in (gone, failed_start, other):
        assert kind_of(error, "req-1") == "system"
    named = InstanceCrashed("died during the invocation", {"request_id": "req-1"})
    assert kind_of(named) == "system"  # no request to blame


def test_function_errors_wait_a_doubling_delay_up_to_the_ceiling() -> None:
    policy = RetryPolicy(function_delay_s=2.0, function_max_s=20.0)
    assert [policy.function_delay(n) for n in range(1, 7)] == [2, 4, 8, 16, 20, 20]
    assert policy.function_delay(0) == 2.0  # no attempt yet: the first delay


def test_system_errors_back_off_with_jitter_between_half_and_all_of_the_ceiling() -> None:
    policy = RetryPolicy(system_base_s=1.0, system_max_s=60.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (30, 60)]:
        delays = [policy.system_delay(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays))
        assert max(delays) - min(delays) > ceiling / 4  # spread, not in lockstep


def test_system_delays_follow_the_random_source() -> None:
    policy = RetryPolicy()
    first = [policy.system_delay(4, random.Random(1)) for _ in range(3)]
    again = [policy.system_delay(4, random.Random(1)) for _ in range(3)]
    assert first == again


def test_a_zero_delay_policy_retries_at_once() -> None:
    policy = RetryPolicy(function_delay_s=0, system_base_s=0)
    assert policy.function_delay(5) == 0
    assert policy.system_delay(5, random.Random(0)) == 0
