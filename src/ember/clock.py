"""Time as an interface, so that keep-alive, scaling, timers and backoff can be tested with a
manual clock instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never go backwards."""
        ...

    async def sleep(self, seconds: float) -> None: ...


def utcnow(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.time(), UTC)


async def wait_for(clock: Clock, awaitable: Awaitable[T], seconds: float) -> T:
    """``asyncio.wait_for`` on ``clock``'s time: the result of ``awaitable``, or TimeoutError
    once ``seconds`` have passed on ``clock`` first (``awaitable`` is then cancelled).
    A result that arrives in the same loop step as the deadline wins."""
    if isinstance(clock, SystemClock) and isinstance(awaitable, asyncio.Future):
        return await _wait_future(awaitable, seconds)
    inner = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((inner, timer), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        inner.cancel()
        raise
    finally:
        timer.cancel()
    if inner.done():
        return inner.result()
    inner.cancel()
    raise TimeoutError


async def _wait_future(future: asyncio.Future[T], seconds: float) -> T:
    """``wait_for`` of a future on real time: one timer, where the general case makes a
    task of a sleep and waits on both (a pool's waiting requests take this path, an
    async event behind every busy instance among them)."""
    if future.done():
        return future.result()
    timed_out = False

    def expire() -> None:
        nonlocal timed_out
        if not future.done():
            timed_out = True
            future.cancel()

    timer = asyncio.get_running_loop().call_later(max(seconds, 0.0), expire)
    try:
        return await future
    except asyncio.CancelledError:
        if timed_out:
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that moves only when a test calls ``advance``; sleepers wake when it passes
    their deadline."""

    def __init__(self, start: float | None = None) -> None:
        # Wall time starts at the real time: deadlines handed to instance processes are
        # compared with their own clocks.
        self._now = time.time() if start is None else start
        self._mono = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sleeper = (self._mono + seconds, future)
        self._sleepers.append(sleeper)
        try:
            await future
        finally:
            if sleeper in self._sleepers:  # cancelled before its deadline
                self._sleepers.remove(sleeper)

    def sleeping(self) -> int:
        """How many sleepers wait for the clock to move: a test advances it once the code
        under test is asleep."""
        return len(self._sleepers)

    def sleeping_for(self, seconds: float) -> int:
        """How many sleepers wake once the clock has moved ``seconds`` more: for a test
        that waits for one particular sleep, where another loop going back to sleep would
        also raise ``sleeping()``."""
        return sum(1 for t, _ in self._sleepers if abs(t - self._mono - seconds) < 1e-9)

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds
        due = [f for t, f in self._sleepers if t <= self._mono]
        self._sleepers = [(t, f) for t, f in self._sleepers if t > self._mono]
        for future in due:
            if not future.done():
                future.set_result(None)
