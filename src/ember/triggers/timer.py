"""The timer source: fires a trigger's function on a ``cron(…)`` or ``rate(…)`` schedule.

Ticks are whole epoch seconds, computed the same way by every process:

- ``rate(N unit)`` ticks at every multiple of N seconds since 1970-01-01 UTC (``rate(1 day)``
  at midnight UTC; the trigger's time zone plays no part), so a restart keeps the tick times.
- ``cron(M H DOM MON DOW)`` is evaluated in the trigger's ``timezone`` with croniter on
  tz-aware datetimes. Across DST changes it behaves like Vixie cron: a time skipped by the
  spring jump fires at the first time after the jump; in the repeated hour of the autumn,
  a fixed-time job (``30 2 * * *``) fires once, while a job whose minute or hour field is a
  wildcard (``*/20 * * * *``, ``0 * * * *``) fires on both passes.

Delivery: each tick is submitted once, with the idempotency key ``timer:{trigger}:{tick}``;
the queue keeps a key for 24 h, so two processes (a restart that overlaps the old one, or
two nodes) that fire the same tick produce one invocation. A tick whose submit fails (queue
down) is recorded as a failure and not retried; the next tick fires as usual.

Missed ticks are skipped: after ``start()`` and ``resume()`` the first fire is the first
tick strictly after now. While running, a late wake-up (a stalled event loop, a wall-clock
step forward) fires the ticks it overslept, in order, as long as they are at most
``MISFIRE_GRACE_S`` late; older ones count as missed (a suspended host is a stopped server).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from ember.model.trigger import TimerSource
from ember.triggers.base import BackgroundSource, SourceContext

log = logging.getLogger(__name__)

MISFIRE_GRACE_S = 60
"""How late a tick may fire while the source runs; later ones are skipped as missed."""

# Schedule waits are cut into slices so that a step of the wall clock (NTP, a resumed VM) is
# noticed within a slice: the clock's sleep follows the monotonic clock, ticks the wall clock.
_MAX_SLEEP_S = 60.0

# Cron expressions croniter accepts by name, and whether they are wildcard jobs in Vixie
# cron's sense (they run on both passes of a repeated hour).
_NICKNAMES = {
    "@yearly": False, "@annually": False, "@monthly": False, "@weekly": False,
    "@daily": False, "@midnight": False, "@hourly": True,
}


class Schedule:
    """When a timer's ticks fall, as whole epoch seconds."""

    def __init__(self, source: TimerSource) -> None:
        self.zone = ZoneInfo(source.timezone)
        self._rate = source.rate_seconds()
        if self._rate == 0:
            raise ValueError(f"{source.schedule} never fires: the rate must be at least 1 s")
        self._cron = "" if self._rate is not None else source.schedule[len("cron("):-1].strip()
        fields = self._cron.split()
        if self._cron.lower() in _NICKNAMES:
            wildcard = _NICKNAMES[self._cron.lower()]
        else:
            wildcard = len(fields) >= 2 and (fields[0].startswith("*")
                                             or fields[1].startswith("*"))
        self._fixed_time = self._rate is None and not wildcard

    def next_after(self, t: float) -> int:
        """The first tick strictly after ``t``."""
        if self._rate is not None:
            return (math.floor(t) // self._rate + 1) * self._rate
        after = math.floor(t)
        it = croniter(self._cron, datetime.fromtimestamp(after, self.zone))
        # croniter is exact in the zones tested, but a tick that does not move forward would
        # make the source fire in a loop: step past it instead.
        for _ in range(10_000):
            tick = int(it.get_next(datetime).timestamp())
            if tick <= after:
                continue
            if self._fixed_time and datetime.fromtimestamp(tick, self.zone).fold == 1:
                continue  # the second pass of a repeated wall time: it fired on the first
            return tick
        raise RuntimeError(f"cron({self._cron}) yields no time after {after}")

    def iso(self, tick: int) -> str:
        """``tick`` as ISO 8601 in the schedule's zone, with its offset."""
        return datetime.fromtimestamp(tick, self.zone).isoformat()


class TimerTriggerSource(BackgroundSource):
    """Submits one event per tick of a TimerSource's schedule."""

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        source = context.trigger.source
        if not isinstance(source, TimerSource):
            raise TypeError(f"trigger {context.trigger.name!r} has no timer source")
        self.source = source
        self.schedule = Schedule(source)
        self._next = 0
        self._last = 0  # the last tick fired: never planned again, whatever the wall clock says

    async def start(self) -> None:
        # The first tick is fixed here rather than in the loop task, so that it is measured
        # from the moment of start() however late the task first runs.
        self._plan_after(self.context.clock.time())
        self.context.status.connected = True
        await super().start()

    async def pause(self) -> None:
        await super().pause()
        self.context.status.details["next_fire"] = None

    async def resume(self) -> None:
        # Ticks that fell during the pause are missed; the loop, sleeping or waiting for
        # `running`, reads the new `_next` when it looks again.
        self._plan_after(self.context.clock.time())
        await super().resume()

    def _plan_after(self, t: float) -> None:
        self._next = self.schedule.next_after(max(t, self._last))
        self.context.status.details["next_fire"] = self._next

    async def run(self) -> None:
        clock = self.context.clock
        self.context.status.connected = True
        while True:
            await self.running.wait()
            now = clock.time()
            if self._next > now:
                await clock.sleep(min(self._next - now, _MAX_SLEEP_S))
                continue
            for tick in self._due(now):
                if self.paused.is_set():
                    break  # resume() plans afresh
                await self._fire(tick)
            if not self.paused.is_set():
                self._plan_after(now)

    def _due(self, now: float) -> list[int]:
        """The planned tick and those after it up to ``now``, leaving out any more than
        MISFIRE_GRACE_S late."""
        tick = self._next
        oldest = math.ceil(now - MISFIRE_GRACE_S)
        if tick < oldest:
            log.warning("timer %s: ticks from %s to %s missed (more than %d s late)",
                        self.context.trigger.name, self.schedule.iso(tick),
                        self.schedule.iso(oldest), MISFIRE_GRACE_S)
            tick = self.schedule.next_after(oldest - 1)
        due: list[int] = []
        while tick <= now:
            due.append(tick)
            tick = self.schedule.next_after(tick)
        return due

    async def _fire(self, tick: int) -> None:
        context = self.context
        key = f"timer:{context.trigger.name}:{tick}"
        self._last = tick
        context.received()
        context.status.details["last_tick"] = tick
        event = context.event(
            type="timer.tick", id=key, data=self.source.payload, subject=self.source.schedule,
            time=tick, extensions={"embertick": self.schedule.iso(tick)},
        )
        try:
            await context.submit(event, idempotency_key=key)
        except Exception as exc:  # the queue being down must not end the schedule
            context.failed(exc)
            context.status.dropped += 1
            log.warning("timer %s: tick %s not submitted: %s", context.trigger.name,
                        self.schedule.iso(tick), exc)
