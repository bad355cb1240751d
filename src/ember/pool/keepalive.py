"""How long a pool keeps an instance warm after its last request: a fixed keep-alive, or an
adaptive one learned from the function's own idle times."""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, Protocol

Mode = Literal["learning", "histogram", "out-of-bounds"]
Rule = Literal["cost", "percentile"]


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

    def describe(self) -> str:
        return f"fixed {self.keep_alive_s:g} s"


class HybridHistogram:
    """The hybrid histogram policy of "Serverless in the Wild" (Shahrad et al., USENIX ATC
    '20): keep an instance warm only around the idle times the function actually has.

    Idle times up to ``range_s`` go into a histogram of ``bin_s`` bins. Once it holds at
    least ``min_samples`` and is *representative* — the coefficient of variation of its bin
    counts is at least ``cv_threshold``, i.e. the idle times cluster in a few bins — the
    window opens at the ``head_pct`` percentile (its bin's lower edge, less ``margin``) and
    closes at the ``tail_pct`` percentile (its bin's upper edge, plus ``margin``): a
    function called every 30 minutes is unloaded after each call and pre-warmed ~27
    minutes later. Until then the window is ``(0, fallback_s)`` (the whole range, as the
    paper does, so that the idle times get seen rather than cut short).

    When ``oob_threshold`` or more of the idle times fall beyond the range, the window is
    centred on a prediction of the next idle time: ``(1 - oob_margin, 1 + oob_margin)``
    times it. The paper fits ARIMA to the idle times; this predicts with an exponentially
    weighted mean of the last ``oob_memory`` out-of-range idle times (the latest weighing
    most, each older one ``oob_decay`` times the next), which follows a daily timer as
    well and costs nothing.

    ``rule`` picks the window from a representative histogram. ``percentile`` is the
    paper's: head and tail percentiles, as above. ``cost`` (the default) chooses, among
    every window whose edges are bin edges, the one that costs least over the idle times
    seen, when a cold start costs ``cold_cost_s`` seconds of an idle instance: each idle
    time before the window's start or after its end is a cold start, and the instance is
    paid for from the start until the request (or the end). A window must hold at least
    ``support`` of the idle times (and 3), so that a few stray gaps are not learned as a
    pattern. It needs no CV test — a flat
    histogram simply buys no window, a bursty function keeps only its short gaps warm, a
    timer gets its pre-warm — and the margin then widens the window's end only.

    Memory per pool is bounded: one count per bin, and ``oob_memory`` idle times; the cost
    rule runs when the window is next asked for after new idle times, in time linear in
    the occupied bins squared."""

    def __init__(
        self, *, range_s: float = 4 * 3600.0, bin_s: float = 60.0, head_pct: float = 5.0,
        tail_pct: float = 99.0, margin: float = 0.1, cv_threshold: float = 2.0,
        min_samples: int = 5, fallback_s: float | None = None, oob_threshold: float = 0.5,
        oob_margin: float = 0.15, oob_memory: int = 16, oob_decay: float = 0.5,
        rule: Rule = "cost", cold_cost_s: float = 600.0, support: float = 0.05,
    ) -> None:
        if not 0 < bin_s <= range_s:
            raise ValueError(f"bin_s ({bin_s:g}) must be positive and at most range_s "
                             f"({range_s:g})")
        if not 0 <= head_pct <= tail_pct <= 100:
            raise ValueError(f"head_pct ({head_pct:g}) and tail_pct ({tail_pct:g}) must "
                             "satisfy 0 <= head_pct <= tail_pct <= 100")
        if not 0 <= margin < 1 or not 0 <= oob_margin < 1:
            raise ValueError("margin and oob_margin must be in [0, 1)")
        if not 0 < oob_threshold <= 1:
            raise ValueError(f"oob_threshold ({oob_threshold:g}) must be in (0, 1]")
        if cold_cost_s < 0:
            raise ValueError(f"cold_cost_s ({cold_cost_s:g}) must not be negative")
        if min_samples < 1 or oob_memory < 1 or not 0 < oob_decay <= 1:
            raise ValueError("min_samples and oob_memory must be at least 1, oob_decay in "
                             "(0, 1]")
        self.range_s = range_s
        self.bin_s = bin_s
        self.head = head_pct / 100
        self.tail = tail_pct / 100
        self.margin = margin
        self.cv_threshold = cv_threshold
        self.min_samples = min_samples
        self.fallback_s = range_s if fallback_s is None else fallback_s
        self.oob_threshold = oob_threshold
        self.oob_margin = oob_margin
        self.oob_decay = oob_decay
        self._bins = [0] * math.ceil(range_s / bin_s)
        self._in_range = 0  # idle times in the histogram
        self._squares = 0  # sum of the squared bin counts: the CV in O(1)
        self._out_of_range = 0
        self._recent_oob: deque[float] = deque(maxlen=oob_memory)
        self.rule = rule
        self.cold_cost_s = cold_cost_s
        self.support = support
        self._mode: Mode = "learning"
        self._window = (0.0, self.fallback_s)
        self._stale = False  # idle times came since the window was decided

    @property
    def mode(self) -> Mode:
        """Where the window comes from: ``learning`` (the fallback), ``histogram``, or
        ``out-of-bounds`` (the prediction)."""
        self.window()
        return self._mode

    @property
    def samples(self) -> int:
        return self._in_range + self._out_of_range

    def describe(self) -> str:
        """The window and where it comes from, for people."""
        start, end = self.window()
        gaps = f"{self.samples} idle time{'s' if self.samples != 1 else ''}"
        if self._mode == "learning":
            return f"adaptive, learning ({gaps}): keep {_span(end)}"
        if end == 0:
            return f"adaptive ({gaps}): none kept warm"
        if start == 0:
            return f"adaptive ({gaps}): keep {_span(end)}"
        return f"adaptive ({gaps}): pre-warm at {_span(start)}, keep to {_span(end)}"

    def observe(self, idle_s: float) -> None:
        idle_s = max(0.0, idle_s)
        index = int(idle_s // self.bin_s)
        if idle_s < self.range_s and index < len(self._bins):
            count = self._bins[index]
            self._squares += 2 * count + 1  # (c + 1)² - c²
            self._bins[index] = count + 1
            self._in_range += 1
        else:
            self._out_of_range += 1
            self._recent_oob.append(idle_s)
        self._stale = True

    def window(self) -> tuple[float, float]:
        if self._stale:
            self._stale = False
            self._window = self._decide()
        return self._window

    def cv(self) -> float:
        """Coefficient of variation of the bin counts (0 with no idle time in range)."""
        if not self._in_range:
            return 0.0
        bins = len(self._bins)
        mean = self._in_range / bins
        variance = max(0.0, self._squares / bins - mean * mean)
        return math.sqrt(variance) / mean

    def _decide(self) -> tuple[float, float]:
        if self.samples < self.min_samples:
            self._mode = "learning"
            return 0.0, self.fallback_s
        if self._out_of_range / self.samples >= self.oob_threshold:
            self._mode = "out-of-bounds"
            predicted = self._predict()
            return predicted * (1 - self.oob_margin), predicted * (1 + self.oob_margin)
        if self.rule == "cost":
            self._mode = "histogram"
            return self._cheapest()
        if self.cv() < self.cv_threshold:
            self._mode = "learning"
            return 0.0, self.fallback_s
        self._mode = "histogram"
        head = self._percentile_bin(self.head)
        tail = self._percentile_bin(self.tail)
        start = head * self.bin_s * (1 - self.margin)
        end = (tail + 1) * self.bin_s * (1 + self.margin)
        return start, end

    def _cheapest(self) -> tuple[float, float]:
        """The window that would have cost least over the idle times seen (see the class
        docstring); (0, 0) when keeping nothing warm is cheapest."""
        width, price = self.bin_s, self.cold_cost_s
        total = self.samples
        occupied = [i for i, count in enumerate(self._bins) if count]
        # Prefix sums over the occupied bins: idle times and their sum (bin midpoints).
        counts, sums = [0], [0.0]
        for i in occupied:
            counts.append(counts[-1] + self._bins[i])
            sums.append(sums[-1] + self._bins[i] * (i + 0.5) * width)
        best, window = price * total, (0.0, 0.0)  # no window: every idle time is cold
        # A window must hold enough idle times to be more than noise: a few stray long
        # gaps of a random function would otherwise "teach" a pre-warm right there.
        support = max(3, math.ceil(self.support * total))
        for a, first in enumerate(occupied):
            start = first * width
            for b in range(a, len(occupied)):
                end = (occupied[b] + 1) * width
                hits = counts[b + 1] - counts[a]
                if hits < support:
                    continue
                later = total - counts[b + 1]  # after the end: paid until it, then cold
                paid = (sums[b + 1] - sums[a]) - start * hits + later * (end - start)
                cost = paid + price * (total - hits)
                if cost < best:
                    best, window = cost, (start, end)
        if window[1] == 0.0:
            return window
        start, end = window
        return start, end * (1 + self.margin)

    def _percentile_bin(self, fraction: float) -> int:
        """The first bin at which the cumulative count reaches ``fraction`` of them."""
        wanted = max(1.0, fraction * self._in_range)
        seen = 0
        for index, count in enumerate(self._bins):
            seen += count
            if seen >= wanted:
                return index
        return len(self._bins) - 1

    def _predict(self) -> float:
        """The next out-of-range idle time: a weighted mean of the recent ones."""
        total = weights = 0.0
        weight = 1.0
        for idle_s in reversed(self._recent_oob):
            total += weight * idle_s
            weights += weight
            weight *= self.oob_decay
        return total / weights


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 120 else f"{seconds:.0f} s"


def describe(policy: KeepAlive) -> str:
    """What ``policy`` does now, for the instances view."""
    text = getattr(policy, "describe", None)
    return str(text()) if callable(text) else type(policy).__name__


def policy_for(name: str, keep_alive_s: float) -> KeepAlive:
    """The policy a function's ``keep_alive_policy`` names: ``fixed`` keeps an idle
    instance ``keep_alive_s``; ``adaptive`` learns the window, keeping ``keep_alive_s``
    while it learns and pricing a cold start at ``keep_alive_s`` of idle time."""
    if name == "fixed":
        return FixedKeepAlive(keep_alive_s)
    if name == "adaptive":
        return HybridHistogram(cold_cost_s=keep_alive_s, fallback_s=keep_alive_s)
    raise ValueError(f"unknown keep-alive policy {name!r}: use 'fixed' or 'adaptive'")
