"""The timer source on a manual clock: rate ticks aligned to the epoch, cron in a time zone
(DST included), one idempotency key per tick, pause and resume skipping missed ticks, and a
failing queue not stopping the schedule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from ember.clock import ManualClock
from ember.model.trigger import TimerSource, Trigger
from ember.triggers.base import SourceContext, make_source
from ember.triggers.timer import MISFIRE_GRACE_S, Schedule, TimerTriggerSource
from tests.triggers import helpers
from tests.triggers.helpers import Submits

# 2024-01-15 00:00:00 UTC, a Monday in winter (Paris is UTC+1).
MIDNIGHT = 1705276800


def utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


async def _no_invoke(trigger: Trigger, body: bytes) -> Any:
    raise AssertionError("the timer submits; it never invokes synchronously")


def timer(schedule: str, clock: ManualClock, submitted: Submits, name: str = "t1",
          **fields: Any) -> SourceContext:
    """The context of a timer trigger ``name`` on ``clock``, delivering to ``submitted``."""
    source = TimerSource(kind="timer", schedule=schedule, **fields)
    trigger = Trigger(name=name, function="fn", qualifier="latest", source=source,
                      state="enabled", description="", created_at=0.0, updated_at=0.0)
    return SourceContext(trigger, clock, submitted, _no_invoke)


@asynccontextmanager
async def started(context: SourceContext) -> AsyncIterator[TimerTriggerSource]:
    """The context's source, made as the supervisor makes it, running for the block."""
    source = make_source(context.trigger, context)
    assert isinstance(source, TimerTriggerSource)
    async with helpers.started(source):
        yield source


async def settle() -> None:
    """Let every ready task run, without the manual clock moving."""
    for _ in range(50):
        await asyncio.sleep(0)


async def step(clock: ManualClock, seconds: float, by: float = 1.0) -> None:
    """Move the clock ``seconds`` forward ``by`` at a time, letting the source run between."""
    await settle()
    moved = 0.0
    while moved < seconds:
        clock.advance(min(by, seconds - moved))
        moved += by
        await settle()


def keys(submitted: Submits) -> list[str | None]:
    return [key for _, key in submitted.accepted]


def ticks(submitted: Submits) -> list[int]:
    return [int(datetime.fromisoformat(e["time"]).timestamp()) for e in submitted.events]


def test_rate_fires_once_per_tick_aligned_to_the_epoch() -> None:
    async def scenario() -> None:
        clock = ManualClock(start=MIDNIGHT + 25)
        submitted = Submits()
        context = timer("rate(1 minute)", clock, submitted)
        async with started(context):
            assert context.status.connected
            assert context.status.details["next_fire"] == MIDNIGHT + 60
            await step(clock, 180)
            assert ticks(submitted) == [MIDNIGHT + 60, MIDNIGHT + 120, MIDNIGHT + 180]
            assert keys(submitted) == [f"timer:t1:{t}" for t in ticks(submitted)]
            assert context.status.details["next_fire"] == MIDNIGHT + 240
            assert context.status.events == 3
            assert context.status.invocations == 3
        assert not context.status.connected

    run(scenario)


def test_the_event_is_a_cloud_event_with_the_payload_as_data() -> None:
    async def scenario() -> None:
        clock = ManualClock(start=MIDNIGHT + 5)
        submitted = Submits()
        payload = {"report": "daily", "n": [1, 2]}
        context = timer("rate(10 seconds)", clock, submitted, payload=payload)
        async with started(context):
            await step(clock, 5)
        [event] = submitted.events
        assert event["type"] == "dev.ember.timer.tick"
        assert event["source"] == "ember/triggers/t1"
        assert event["subject"] == "rate(10 seconds)"
        assert event["data"] == payload
        assert event["time"] == "2024-01-15T00:00:10Z"
        assert event["embertick"] == "2024-01-15T00:00:10+00:00"
        assert event["embertrigger"] == "t1"
        assert event["id"] == keys(submitted)[0]

    run(scenario)


def test_cron_runs_in_the_trigger_time_zone() -> None:
    async def scenario() -> None:
        clock = ManualClock(start=MIDNIGHT)
        submitted = Submits()
        context = timer("cron(30 9 * * *)", clock, submitted, timezone="Europe/Paris")
        async with started(context):
            # 09:30 in Paris in January is 08:30 UTC.
            assert utc(context.status.details["next_fire"]) == "2024-01-15 08:30:00"
            await step(clock, 2 * 86400, by=60)
        assert [utc(t) for t in ticks(submitted)] == ["2024-01-15 08:30:00",
                                                      "2024-01-16 08:30:00"]
        assert submitted.events[0]["embertick"] == "2024-01-15T09:30:00+01:00"

    run(scenario)


def test_cron_follows_daylight_saving_time() -> None:
    paris = TimerSource(kind="timer", schedule="cron(30 9 * * *)", timezone="Europe/Paris")
    summer = Schedule(paris).next_after(datetime(2024, 7, 1, tzinfo=UTC).timestamp())
    assert utc(summer) == "2024-07-01 07:30:00"

    # Autumn, 2024-10-27: 02:00-03:00 happens twice in Paris. A fixed-time job fires once…
    daily = Schedule(paris.model_copy(update={"schedule": "cron(30 2 * * *)"}))
    start = datetime(2024, 10, 26, 12, tzinfo=UTC).timestamp()
    first = daily.next_after(start)
    assert utc(first) == "2024-10-27 00:30:00"  # 02:30 CEST
    assert utc(daily.next_after(first)) == "2024-10-28 01:30:00"
    # …a wildcard one on both passes, as cron does.
    hourly = Schedule(paris.model_copy(update={"schedule": "cron(30 * * * *)"}))
    fires = [hourly.next_after(start + 12 * 3600 - 1)]  # from 2024-10-27 00:00 UTC - 1 s
    while len(fires) < 3:
        fires.append(hourly.next_after(fires[-1]))
    assert [utc(t) for t in fires] == ["2024-10-27 00:30:00", "2024-10-27 01:30:00",
                                       "2024-10-27 02:30:00"]

    # Spring, 2024-03-31: 02:30 does not exist; it fires at 03:00 CEST, right after the jump.
    spring = daily.next_after(datetime(2024, 3, 30, 12, tzinfo=UTC).timestamp())
    assert utc(spring) == "2024-03-31 01:00:00"


def test_paused_ticks_are_skipped_and_resume_waits_for_the_next() -> None:
    async def scenario() -> None:
        clock = ManualClock(start=MIDNIGHT + 30)
        submitted = Submits()
        context = timer("rate(1 minute)", clock, submitted)
        async with started(context) as source:
            await step(clock, 60)  # fires MIDNIGHT+60
            await source.pause()
            assert context.status.details["next_fire"] is None
            await step(clock, 150)  # +120 and +180 fall while paused
            assert ticks(submitted) == [MIDNIGHT + 60]
            await source.resume()  # now MIDNIGHT+240: the next tick is +300, not +240
            assert context.status.details["next_fire"] == MIDNIGHT + 300
            await step(clock, 59)
            assert ticks(submitted) == [MIDNIGHT + 60]
            await step(clock, 1)
            assert ticks(submitted) == [MIDNIGHT + 60, MIDNIGHT + 300]

    run(scenario)


def test_pause_and_resume_before_the_tick_keep_it() -> None:
    async def scenario() -> None:
        clock = ManualClock(start=MIDNIGHT + 10)
        submitted = Submits()
        async with started(timer("rate(1 minute)", clock, submitted)) as source:
            await source.pause()
            await step(clock, 20)
            await source.resume()
            await step(clock, 30)
        assert ticks(submitted) == [MIDNIGHT + 60]

    run(scenario)


def test_a_restart_fires_each_tick_under_the_same_key() -> None:
    async def scenario() -> None:
        clock = ManualClock(start=MIDNIGHT + 50)
        submitted = Submits()
        # An old and a new process overlapping around the tick (or two servers): both fire
        # it, with one key, so the queue keeps one.
        async with started(timer("rate(1 minute)", clock, submitted)), \
                started(timer("rate(1 minute)", clock, submitted)):
            await step(clock, 10)
        assert keys(submitted) == [f"timer:t1:{MIDNIGHT + 60}"] * 2

        # A process started just after the tick does not fire it again, and goes on with
        # the same ticks and keys as its predecessor.
        async with started(timer("rate(1 minute)", clock, submitted)) as restarted:
            assert restarted.context.status.details["next_fire"] == MIDNIGHT + 120
            await step(clock, 60)
        assert keys(submitted)[2:] == [f"timer:t1:{MIDNIGHT + 120}"]

    run(scenario)


def test_a_failing_queue_does_not_stop_the_schedule() -> None:
    async def scenario() -> None:
        clock = ManualClock(start=MIDNIGHT + 1)
        submitted = Submits(fail=1)
        context = timer("rate(1 minute)", clock, submitted)
        async with started(context):
            await step(clock, 60)
            assert context.status.failures == 1
            assert "the queue is down" in (context.status.last_error or "")
            assert context.status.events == 1
            await step(clock, 60)
        assert ticks(submitted) == [MIDNIGHT + 120]
        assert len(submitted.attempts) == 2

    run(scenario)


def test_a_late_wake_fires_the_overslept_ticks_within_the_grace() -> None:
    async def scenario() -> None:
        clock = ManualClock(start=MIDNIGHT + 5)
        submitted = Submits()
        async with started(timer("rate(10 seconds)", clock, submitted)):
            await settle()
            clock.advance(35)  # one wake-up, four ticks due: +10 … +40
            await settle()
            assert ticks(submitted) == [MIDNIGHT + 10, MIDNIGHT + 20, MIDNIGHT + 30,
                                        MIDNIGHT + 40]
            await settle()
            clock.advance(MISFIRE_GRACE_S + 20)  # now +120: +50 … +60 are over the grace
            await settle()
            assert ticks(submitted)[4:] == list(range(MIDNIGHT + 60, MIDNIGHT + 121, 10))
            await step(clock, 10)
            assert ticks(submitted)[-1] == MIDNIGHT + 130

    run(scenario)


def test_the_wall_clock_stepping_back_fires_no_tick_twice() -> None:
    async def scenario() -> None:
        clock = ManualClock(start=MIDNIGHT + 55)
        submitted = Submits()
        async with started(timer("rate(1 minute)", clock, submitted)) as source:
            await step(clock, 10)  # fires +60; now +65
            await source.pause()
            clock._now -= 30  # an NTP step back to +35; the monotonic clock goes on
            await source.resume()  # plans from now, but not a tick it already fired
            assert source.context.status.details["next_fire"] == MIDNIGHT + 120
            await step(clock, 90, by=5)  # the wall clock passes +60 again, then +120
        assert ticks(submitted) == [MIDNIGHT + 60, MIDNIGHT + 120]

    run(scenario)


def test_schedules_outside_the_documented_forms_are_refused() -> None:
    for schedule in ("rate(0 minutes)", "cron(0 0 * * * *)", "cron(@hourly)", "every day"):
        with pytest.raises(ValueError):
            TimerSource(kind="timer", schedule=schedule)
