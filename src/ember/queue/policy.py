"""When a failed async attempt is tried again: function errors (a crash the event caused
among them) a bounded number of times, system errors with exponential backoff and jitter
until the event's maximum age."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ember.errors import (
    AliasNotFound,
    EmberError,
    FunctionDisabled,
    FunctionNotFound,
    InstanceCrashed,
    InvalidRequest,
    ServiceUnavailable,
    TooManyRequests,
    VersionNotFound,
)

# The platform, not the function, failed: retried until the event is too old.
SYSTEM_ERRORS: tuple[type[EmberError], ...] = (
    InstanceCrashed, TooManyRequests, ServiceUnavailable, FunctionDisabled,
)
# Nothing can run: retrying would fail the same way.
PERMANENT_ERRORS: tuple[type[EmberError], ...] = (
    FunctionNotFound, VersionNotFound, AliasNotFound, InvalidRequest,
)


def kind_of(error: EmberError, request_id: str | None = None) -> str:
    """``system``, ``permanent`` or ``function`` (the handler raised, timed out, ran out
    of memory, failed to initialize, or crashed its instance while running the event).

    An ``InstanceCrashed`` is the function's when it names ``request_id``: the instance
    died with that request in flight, so the event crashed it (``os._exit``, a segfault)
    and retrying it forever would crash it again. One that names no request — the instance
    was gone before the event reached it, or failed to start — is the platform's."""
    if (isinstance(error, InstanceCrashed) and request_id is not None
            and error.details.get("request_id") == request_id):
        return "function"
    if isinstance(error, SYSTEM_ERRORS):
        return "system"
    if isinstance(error, PERMANENT_ERRORS):
        return "permanent"
    return "function"


@dataclass(frozen=True)
class RetryPolicy:
    """Delays between attempts. Function errors wait ``function_delay_s`` doubled per
    attempt; system errors back off exponentially from ``system_base_s`` up to
    ``system_max_s`` with jitter (between half and all of the doubled delay), so that a
    fleet of failing events does not retry in lockstep."""

    function_delay_s: float = 1.0
    function_max_s: float = 300.0
    system_base_s: float = 1.0
    system_max_s: float = 300.0

    def function_delay(self, attempt: int) -> float:
        """Delay before attempt ``attempt + 1`` after ``attempt`` function errors."""
        return float(min(self.function_max_s, self.function_delay_s * 2 ** max(0, attempt - 1)))

    def system_delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.system_max_s, self.system_base_s * 2 ** max(0, attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)
