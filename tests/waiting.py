"""Waiting in tests for something to happen, without assuming how long it takes.

A test waits on an event when there is one; when there is none, it polls a condition with
these helpers, whose deadline is generous (a slow or loaded machine only makes the test
slower, never wrong) and whose failure says what was awaited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE_S = 30.0


def _fail(what: Callable[[], object], timeout: float, message: str) -> AssertionError:
    name = message or getattr(what, "__name__", repr(what))
    return AssertionError(f"not true within {timeout:g} s: {name}")


def wait_until(
    predicate: Callable[[], T], timeout: float = DEADLINE_S, interval: float = 0.01,
    message: str = "",
) -> T:
    """Poll ``predicate`` until it returns something true, and return that; AssertionError
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _fail(predicate, timeout, message)
        time.sleep(interval)


async def until(
    predicate: Callable[[], T], timeout: float = DEADLINE_S, interval: float = 0.01,
    message: str = "",
) -> T:
    """``wait_until`` on an event loop: the loop runs other tasks between polls. The first
    polls only yield to the loop, so that what ready tasks do is seen at once."""
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _fail(predicate, timeout, message)
        polls += 1
        await asyncio.sleep(0 if polls <= 100 else interval)


async def until_true(
    predicate: Callable[[], Awaitable[T]], timeout: float = DEADLINE_S, interval: float = 0.01,
    message: str = "",
) -> T:
    """``until`` for a predicate that must be awaited (one that asks the API)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {message or predicate}")
        await asyncio.sleep(interval)
