"""The retry policy on its own: which errors are whose, and how long each retry waits. No
processes, no queue."""

from __future__ import annotations

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
from ember.queue.policy import kind_of


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
