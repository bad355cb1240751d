"""Keep-alive policies replayed on a synthetic trace shaped like Azure Functions' (Shahrad et
al., "Serverless in the Wild", USENIX ATC '20): cold starts and idle memory-time of fixed
keep-alives beside the adaptive (hybrid histogram) one.

The real ``PoolManager``/``VersionPool`` serve every invocation, on a ``ManualClock`` and a
launcher whose instances start at once: no process, no sleep, a simulated week in seconds.
The reaper does not run as a task; the replay calls ``manager.reap()`` every ``--tick``
simulated seconds (10 s by default: reclaims and pre-warms happen up to one tick late, as
they would with a reaper that slow; the server's reaper ticks every second).

The trace: each app's mean rate is drawn so that ~45 % of apps are invoked at most once an
hour and ~81 % at most once a minute, rates spanning 8 orders of magnitude, so that as
drawn a few apps carry almost all invocations. Apps above ``--max-rate`` are replayed at
that rate (they never idle long enough for a keep-alive to matter, and replaying their
millions of calls would only cost time). Each app is a timer (a cron period near its rate,
~1 s of jitter), Poisson, or bursty (bursts of ~10 calls a few seconds apart, the bursts
Poisson); executions last seconds (log-normal, median 1 s). An app is one function
version serving one request per instance: calls that overlap start more instances, which
are reclaimed like any idle one (under the adaptive policy, at the learned window's end).

Reported per policy, as the paper plots them: the cold-start percentage of each app (its
mean over apps, and its 75th percentile), and the wasted memory-time — instance-seconds
alive with no request in flight — normalized to fixed 10 minutes = 100 %.

    .venv/bin/python bench/trace_replay.py [--apps 200] [--hours 168] [--seed 1]
        [--policies fixed-2,fixed-10,adaptive] [--by-pattern]

``--policies`` also takes fixed 20, 30 and 60 minutes, and variants of the adaptive policy
(a 10-minute window while learning, a 95th-percentile tail, 20 idle times before trusting
the histogram); ``--by-pattern`` breaks the table down by timers, Poisson and bursty apps.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import math
import random
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ember.clock import ManualClock
from ember.pool.instance import Instance, InstanceSpec, LogSink
from ember.pool.keepalive import HybridHistogram
from ember.pool.pool import PoolConfig, PoolKey, PoolManager, VersionPool

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
# Cron periods a timer app is given: the one nearest its rate.
TIMER_PERIODS = [m * MINUTE for m in (1, 2, 5, 10, 15, 20, 30)] + [
    h * HOUR for h in (1, 2, 3, 4, 6, 8, 12, 24)]


# -- the trace ----------------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    name: str
    pattern: str  # timer | poisson | bursty
    rate_per_day: float  # as drawn, before --max-rate
    period_s: float  # timers: the cron period; others: the mean gap replayed
    median_exec_s: float
    seed: int


def draw_rate_per_day(rng: random.Random) -> float:
    """A mean rate following the Azure trace's CDF of daily invocations per app: log-uniform
    pieces through (1/hour, 45 %) and (1/minute, 81 %), from ~0.3/day to ~3·10⁷/day."""
    u = rng.random()
    points = [(0.0, math.log10(0.3)), (0.45, math.log10(24)), (0.81, math.log10(1440)),
              (1.0, 7.5)]
    for (u0, x0), (u1, x1) in itertools.pairwise(points):
        if u <= u1:
            return 10 ** (x0 + (x1 - x0) * (u - u0) / (u1 - u0))
    raise AssertionError


def make_apps(count: int, seed: int, max_rate_per_s: float) -> list[App]:
    rng = random.Random(seed)
    apps = []
    for index in range(count):
        rate = draw_rate_per_day(rng)
        mean_gap = max(DAY / rate, 1 / max_rate_per_s)
        roll = rng.random()
        if roll < 0.3 and rate <= 1440:
            pattern = "timer"
            period = min(TIMER_PERIODS, key=lambda p: abs(math.log(p / (DAY / rate))))
        else:
            pattern = "poisson" if roll < 0.75 else "bursty"
            period = mean_gap
        median_exec = min(60.0, max(0.05, rng.lognormvariate(0.0, 1.2)))
        apps.append(App(f"app{index:04d}", pattern, rate, period, median_exec,
                        rng.randrange(2**32)))
    return apps


def arrivals(app: App, horizon_s: float) -> Iterator[float]:
    """The app's invocation times in [0, horizon_s), in order."""
    rng = random.Random(app.seed)
    if app.pattern == "timer":
        t = rng.uniform(0, app.period_s)  # its phase
        while t < horizon_s:
            yield max(0.0, t + rng.gauss(0, 1.0))
            t += app.period_s
    elif app.pattern == "poisson":
        t = rng.expovariate(1 / app.period_s)
        while t < horizon_s:
            yield t
            t += rng.expovariate(1 / app.period_s)
    else:  # bursts of ~10 calls ~5 s apart, bursts Poisson at the app's mean rate
        burst_mean = 10.0
        t = rng.expovariate(1 / (app.period_s * burst_mean))
        while t < horizon_s:
            call = t
            for _ in range(1 + int(rng.expovariate(1 / (burst_mean - 1)))):
                if call >= horizon_s:
                    return
                yield call
                call += rng.expovariate(1 / 5.0)
            t = max(call, t + rng.expovariate(1 / (app.period_s * burst_mean)))


def exec_times(app: App) -> Iterator[float]:
    rng = random.Random(app.seed ^ 0x5EED)
    while True:
        yield min(300.0, app.median_exec_s * rng.lognormvariate(0.0, 0.5))


# -- instances that start at once --------------------------------------------------------


@dataclass(eq=False)
class SimInstance:
    """What the pool touches of an instance, and when it lived."""

    spec: InstanceSpec
    clock: ManualClock
    started_at: float
    id: str = ""
    alive: bool = True
    last_used: float = 0.0
    stopped_at: float | None = None

    async def stop(self) -> None:
        self.kill()

    def kill(self) -> None:
        if self.alive:
            self.alive = False
            self.stopped_at = self.clock.monotonic()


@dataclass
class SimLauncher:
    """Launches instances immediately (no suspension), remembering each for the books."""

    clock: ManualClock
    launched: list[SimInstance] = field(default_factory=list)

    async def start(self) -> None:
        pass

    async def launch(self, spec: InstanceSpec, *, request_id: str | None = None,
                     log_sink: LogSink | None = None) -> Instance:
        instance = SimInstance(spec, self.clock, self.clock.monotonic(),
                               id=f"i{len(self.launched)}")
        self.launched.append(instance)
        return cast(Instance, instance)

    async def close(self) -> None:
        pass

    def prewarm(self, spec: InstanceSpec) -> None:
        pass


# -- the replay ---------------------------------------------------------------------------


@dataclass
class Policy:
    label: str
    keep_alive_s: float
    name: str  # fixed | adaptive
    adaptive: dict[str, Any] = field(default_factory=dict)  # HybridHistogram parameters


POLICIES = {
    "fixed-2": Policy("fixed 2 min", 120.0, "fixed"),
    "fixed-10": Policy("fixed 10 min", 600.0, "fixed"),
    "fixed-20": Policy("fixed 20 min", 1200.0, "fixed"),
    "fixed-30": Policy("fixed 30 min", 1800.0, "fixed"),
    "fixed-60": Policy("fixed 60 min", 3600.0, "fixed"),
    # Ember's adaptive policy: keep_alive_s (10 min here, as the fixed policy it is
    # compared with) while learning and as the price of a cold start.
    "adaptive": Policy("adaptive (cost window)", 600.0, "adaptive"),
    # The paper's policy as published: percentile window, 4 h while learning.
    "paper": Policy("hybrid histogram (paper)", 600.0, "adaptive",
                    {"rule": "percentile"}),
    # Variants, to see what each part of the policy buys.
    "paper-fb10": Policy("paper, learning 10 min", 600.0, "adaptive",
                         {"rule": "percentile", "fallback_s": 600.0}),
    "paper-tail95": Policy("paper, tail 95th pct", 600.0, "adaptive",
                           {"rule": "percentile", "tail_pct": 95.0}),
    "adaptive-nomargin": Policy("adaptive, no margin", 600.0, "adaptive",
                                {"cold_cost_s": 600.0, "fallback_s": 600.0,
                                 "margin": 0.0}),
    "adaptive-price2x": Policy("adaptive, cold start priced 20 min", 600.0, "adaptive",
                               {"cold_cost_s": 1200.0, "fallback_s": 600.0}),
    "adaptive-price3x": Policy("adaptive, cold start priced 30 min", 600.0, "adaptive",
                               {"cold_cost_s": 1800.0, "fallback_s": 600.0}),
    "adaptive-min20": Policy("adaptive, 20 samples", 600.0, "adaptive",
                             {"cold_cost_s": 600.0, "fallback_s": 600.0,
                              "min_samples": 20}),
}


@dataclass
class AppResult:
    invocations: int = 0
    cold: int = 0
    busy_s: float = 0.0
    alive_s: float = 0.0
    mode: str = ""


def spec_for(app: App) -> InstanceSpec:
    return InstanceSpec(function=app.name, version="1", code_dir=Path("/nonexistent"),
                        handler="main.handler", environment={}, memory_mb=128,
                        timeout_s=900.0, concurrency=1)


async def replay(apps: list[App], policy: Policy, hours: float, tick_s: float,
                 ) -> dict[str, AppResult]:
    clock = ManualClock(start=0.0)
    launcher = SimLauncher(clock)
    manager = PoolManager(launcher, clock, max_instances=1_000_000, queue_depth=1000,
                          queue_wait_s=3600.0, reap_interval_s=tick_s)
    config = PoolConfig(max_instances=10_000, min_instances=0,
                        keep_alive_s=policy.keep_alive_s, keep_alive_policy=policy.name)
    horizon = hours * HOUR
    pools: list[VersionPool] = []
    for app in apps:
        pool = manager.pool(PoolKey(app.name, "1", "d"), spec_for(app), config)
        if policy.adaptive:
            pool.keep_alive = HybridHistogram(**policy.adaptive)
        pools.append(pool)
    results = {app.name: AppResult() for app in apps}
    streams = [arrivals(app, horizon) for app in apps]
    durations = [exec_times(app) for app in apps]
    # (time, order, app index, instance or None): None is an arrival, else an end.
    events: list[tuple[float, int, int, SimInstance | None]] = []
    order = itertools.count()
    for index, stream in enumerate(streams):
        first = next(stream, None)
        if first is not None:
            events.append((first, next(order), index, None))
    heapq.heapify(events)
    next_tick = tick_s
    while True:
        when = events[0][0] if events else math.inf
        if next_tick <= min(when, horizon):
            clock.advance(next_tick - clock.monotonic())
            manager.reap()
            await asyncio.sleep(0)  # the stops and pre-warms reap started
            next_tick += tick_s
            continue
        if when >= horizon:
            break
        when, _, index, ended = heapq.heappop(events)
        clock.advance(when - clock.monotonic())
        pool = pools[index]
        if ended is not None:
            pool.release(cast(Instance, ended))
            continue
        result = results[apps[index].name]
        instance, cold = await pool.acquire()
        result.invocations += 1
        result.cold += cold
        duration = next(durations[index])
        result.busy_s += min(duration, horizon - when)
        heapq.heappush(events, (when + duration, next(order), index,
                                cast(SimInstance, instance)))
        following = next(streams[index], None)
        if following is not None:
            heapq.heappush(events, (following, next(order), index, None))
    clock.advance(horizon - clock.monotonic())
    for launched in launcher.launched:
        end = horizon if launched.stopped_at is None else min(launched.stopped_at, horizon)
        results[launched.spec.function].alive_s += max(0.0, end - launched.started_at)
    for app, pool in zip(apps, pools, strict=True):
        results[app.name].mode = str(getattr(pool.keep_alive, "mode", ""))
    await manager.close()
    return results


def run_policy(args: tuple[list[App], Policy, float, float]) -> tuple[dict[str, AppResult],
                                                                      float]:
    apps, policy, hours, tick_s = args
    began = time.perf_counter()
    results = asyncio.run(replay(apps, policy, hours, tick_s))
    return results, time.perf_counter() - began


# -- the report ---------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = (len(ordered) - 1) * pct / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(apps: list[App], results: dict[str, AppResult]) -> dict[str, float]:
    used = [results[a.name] for a in apps if results[a.name].invocations]
    cold_pct = [100 * r.cold / r.invocations for r in used]
    return {
        "apps": len(used),
        "invocations": sum(r.invocations for r in used),
        "cold_mean": sum(cold_pct) / len(cold_pct) if cold_pct else math.nan,
        "cold_p75": percentile(cold_pct, 75),
        "cold_all": 100 * sum(r.cold for r in used) / max(1, sum(r.invocations for r in used)),
        "wasted_s": sum(max(0.0, r.alive_s - r.busy_s) for r in used),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--hours", type=float, default=168.0, help="simulated hours")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tick", type=float, default=10.0,
                        help="simulated seconds between reaper ticks")
    parser.add_argument("--max-rate", type=float, default=0.1,
                        help="invocations a second an app is replayed at, at most")
    parser.add_argument("--policies", default="fixed-2,fixed-10,adaptive",
                        help=f"comma-separated, of {', '.join(POLICIES)}")
    parser.add_argument("--jobs", type=int, default=2, help="policies replayed at once")
    parser.add_argument("--by-pattern", action="store_true",
                        help="also break the results down by invocation pattern")
    args = parser.parse_args()

    apps = make_apps(args.apps, args.seed, args.max_rate)
    chosen = [POLICIES[name] for name in args.policies.split(",")]
    work = [(apps, policy, args.hours, args.tick) for policy in chosen]
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as executor:
        outcomes = list(executor.map(run_policy, work))
    elapsed = time.perf_counter() - began

    patterns = {p: sum(a.pattern == p for a in apps) for p in ("timer", "poisson", "bursty")}
    hourly = sum(a.rate_per_day <= 24 for a in apps) / len(apps)
    minutely = sum(a.rate_per_day <= 1440 for a in apps) / len(apps)
    first = outcomes[0][0]
    total = sum(r.invocations for r in first.values())
    busiest = max(1, len(apps) // 20)
    replayed = sorted((r.invocations for r in first.values()), reverse=True)
    drawn = sorted((a.rate_per_day for a in apps), reverse=True)
    print(f"{len(apps)} apps ({patterns['timer']} timers, {patterns['poisson']} Poisson, "
          f"{patterns['bursty']} bursty), {args.hours:g} simulated hours, seed {args.seed}: "
          f"{total} invocations; {hourly:.0%} of apps at most hourly, {minutely:.0%} at most "
          f"once a minute; the busiest 5 % of apps make "
          f"{sum(drawn[:busiest]) / sum(drawn):.1%} of the invocations as drawn, "
          f"{sum(replayed[:busiest]) / max(1, total):.0%} as replayed (at most "
          f"{args.max_rate:g}/s)")
    print(f"replayed in {elapsed:.0f} s wall ({args.jobs} at once; reaper tick "
          f"{args.tick:g} s)\n")

    groups: list[tuple[str, list[App]]] = [("all apps", apps)]
    if args.by_pattern:
        groups += [(p, [a for a in apps if a.pattern == p]) for p in patterns]
    for title, group in groups:
        summaries = [summarize(group, results) for results, _ in outcomes]
        baseline = next((s["wasted_s"] for s, p in zip(summaries, chosen, strict=True)
                         if p.label == "fixed 10 min"), summaries[0]["wasted_s"])
        print(f"{title} ({int(summaries[0]['apps'])} invoked)")
        print(f"| {'policy':<28} | cold starts, mean of apps | 75th pct of apps "
              f"| of all calls | wasted memory-time |")
        print(f"|{'-' * 30}|---------------------------|------------------"
              f"|--------------|--------------------|")
        for policy, summary in zip(chosen, summaries, strict=True):
            wasted = 100 * summary["wasted_s"] / baseline if baseline else math.nan
            print(f"| {policy.label:<28} | {summary['cold_mean']:24.1f}% "
                  f"| {summary['cold_p75']:15.1f}% | {summary['cold_all']:11.2f}% "
                  f"| {wasted:17.1f}% |")
        print()
    for policy, (results, seconds) in zip(chosen, outcomes, strict=True):
        if policy.name == "adaptive":
            modes: dict[str, int] = {}
            for result in results.values():
                if result.invocations:
                    modes[result.mode] = modes.get(result.mode, 0) + 1
            print(f"{policy.label}: windows at the end — "
                  + ", ".join(f"{n} {m}" for m, n in sorted(modes.items())))
        print(f"{policy.label}: replayed in {seconds:.0f} s")


if __name__ == "__main__":
    main()
