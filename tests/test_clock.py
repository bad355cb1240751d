"""The manual clock and ``wait_for`` on a clock's time."""

from __future__ import annotations

import asyncio

import pytest

from ember.clock import ManualClock, SystemClock, wait_for
from tests.waiting import until


def test_manual_sleepers_wake_when_the_clock_passes_their_deadline() -> None:
    async def scenario() -> None:
        clock = ManualClock(start=100.0)
        short = asyncio.create_task(clock.sleep(1))
        long = asyncio.create_task(clock.sleep(2))
        await until(lambda: clock.sleeping() == 2)
        clock.advance(1)
        await short
        assert not long.done() and clock.sleeping() == 1
        assert (clock.time(), clock.monotonic()) == (101.0, 1.0)
        long.cancel()
        with pytest.raises(asyncio.CancelledError):
            await long
        assert clock.sleeping() == 0  # a cancelled sleeper leaves no deadline behind

    asyncio.run(scenario())


def test_sleeping_for_counts_the_sleepers_of_one_duration_from_now() -> None:
    async def scenario() -> None:
        clock = ManualClock(start=100.0)
        clock.advance(0.3)
        sleeps = [asyncio.create_task(clock.sleep(s)) for s in (30, 30, 10)]
        await until(lambda: clock.sleeping() == 3)
        assert (clock.sleeping_for(30), clock.sleeping_for(10), clock.sleeping_for(5)) == (2, 1, 0)
        clock.advance(10)
        assert (clock.sleeping_for(20), clock.sleeping_for(30)) == (2, 0)
        for task in sleeps:
            task.cancel()
        await asyncio.gather(*sleeps, return_exceptions=True)

    asyncio.run(scenario())


def test_wait_for_returns_the_result_that_comes_first() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        waiter = asyncio.create_task(wait_for(clock, future, 5))
        await until(lambda: clock.sleeping() == 1)
        future.set_result("done")
        assert await waiter == "done"
        assert clock.sleeping() == 0

    asyncio.run(scenario())


def test_wait_for_times_out_on_the_clock_and_cancels_what_it_waited_for() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        waiter = asyncio.create_task(wait_for(clock, future, 5))
        await until(lambda: clock.sleeping() == 1)
        clock.advance(4.5)
        await asyncio.sleep(0)
        assert not waiter.done()
        clock.advance(0.5)
        with pytest.raises(TimeoutError):
            await waiter
        assert future.cancelled()

    asyncio.run(scenario())


def test_wait_for_prefers_a_result_that_arrives_with_the_deadline() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        waiter = asyncio.create_task(wait_for(clock, future, 5))
        await until(lambda: clock.sleeping() == 1)
        clock.advance(5)
        future.set_result("just in time")
        assert await waiter == "just in time"

    asyncio.run(scenario())


def test_cancelling_wait_for_cancels_both_waits() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        waiter = asyncio.create_task(wait_for(clock, future, 5))
        await until(lambda: clock.sleeping() == 1)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert future.cancelled()
        await until(lambda: clock.sleeping() == 0)

    asyncio.run(scenario())


def test_wait_for_on_the_system_clock() -> None:
    async def scenario() -> None:
        event = asyncio.Event()
        asyncio.get_running_loop().call_soon(event.set)
        assert await wait_for(SystemClock(), event.wait(), 30) is True
        with pytest.raises(TimeoutError):
            await wait_for(SystemClock(), asyncio.Event().wait(), 0)

    asyncio.run(scenario())


def test_wait_for_a_future_on_the_system_clock() -> None:
    """A future on real time takes a timer of the loop's: same answers as the general
    case — the result, a timeout that cancels the future, a cancellation passed on."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[str] = loop.create_future()
        loop.call_soon(answered.set_result, "done")
        assert await wait_for(SystemClock(), answered, 30) == "done"
        assert await wait_for(SystemClock(), answered, 0) == "done"  # already done

        silent: asyncio.Future[str] = loop.create_future()
        with pytest.raises(TimeoutError):
            await wait_for(SystemClock(), silent, 0.01)
        assert silent.cancelled()

        waited: asyncio.Future[str] = loop.create_future()
        waiter = asyncio.ensure_future(wait_for(SystemClock(), waited, 30))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert waited.cancelled()

        failed: asyncio.Future[str] = loop.create_future()
        failed.set_exception(ValueError("no"))
        with pytest.raises(ValueError):
            await wait_for(SystemClock(), failed, 30)

    asyncio.run(scenario())
