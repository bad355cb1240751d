"""How long a pool keeps an instance warm after its last request: a fixed keep-alive, or an
adaptive one learned from the function's own idle times."""

from __future__ import annotations

from typing import Protocol


class KeepAlive(Protocol):
    """One pool's keep-alive policy. Times are seconds after the pool went idle (its last
    request ended and none is in flight)."""

    def observe(self, idle_s: float) -> None:
        """An idle period of the pool ended: a request arrived ``idle_s`` seconds after the
        pool's last instance went idle."""
        ...

    def window(self) -> tuple[float, float]:
        """(start, end) after the pool went idle during which one instance is kept warm.
        Before ``start`` idle instances are reclaimed (beyond min and provisioned ones), at
        ``start`` one is pre-warmed if none is up, after ``end`` they are reclaimed."""
        ...


class FixedKeepAlive:
    """Every idle instance lives ``keep_alive_s`` after its last request."""

    def __init__(self, keep_alive_s: float) -> None:
        self.keep_alive_s = keep_alive_s

    def observe(self, idle_s: float) -> None:
        pass

    def window(self) -> tuple[float, float]:
        return 0.0, self.keep_alive_s


def policy_for(name: str, keep_alive_s: float) -> KeepAlive:
    """The policy a function's ``keep_alive_policy`` names."""
    if name == "fixed":
        return FixedKeepAlive(keep_alive_s)
    raise ValueError(f"unknown keep-alive policy {name!r}")
