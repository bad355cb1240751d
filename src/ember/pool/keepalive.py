"""How long a pool keeps an instance warm after its last request: a fixed keep-alive, or an
adaptive one learned from the function's own idle times."""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, Protocol

Mode = Literal["learning", "histogram", "out-of-bounds"]


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

    Memory per pool is bounded: one count per bin, and ``oob_memory`` idle times."""

    def __init__(
        self, *, range_s: float = 4 * 3600.0, bin_s: float = 60.0, head_pct: float = 5.0,
        tail_pct: float = 99.0, margin: float = 0.1, cv_threshold: float = 2.0,
        min_samples: int = 5, fallback_s: float | None = None, oob_threshold: float = 0.5,
        oob_margin: float = 0.15, oob_memory: int = 16, oob_decay: float = 0.5,
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
        self._mode: Mode = "learning"
        self._window = (0.0, self.fallback_s)

    @property
    def mode(self) -> Mode:
        """Where the window comes from: ``learning`` (the fallback), ``histogram``, or
        ``out-of-bounds`` (the prediction)."""
        return self._mode

    @property
    def samples(self) -> int:
        return self._in_range + self._out_of_range

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
        self._window = self._decide()

    def window(self) -> tuple[float, float]:
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
        if self.cv() < self.cv_threshold:
            self._mode = "learning"
            return 0.0, self.fallback_s
        self._mode = "histogram"
        head = self._percentile_bin(self.head)
        tail = self._percentile_bin(self.tail)
        start = head * self.bin_s * (1 - self.margin)
        end = (tail + 1) * self.bin_s * (1 + self.margin)
        return start, end

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


def policy_for(name: str, keep_alive_s: float) -> KeepAlive:
    """The policy a function's ``keep_alive_policy`` names: ``fixed`` keeps an idle
    instance ``keep_alive_s``; ``adaptive`` learns the window (``keep_alive_s`` unused)."""
    if name == "fixed":
        return FixedKeepAlive(keep_alive_s)
    if name == "adaptive":
        return HybridHistogram()
    raise ValueError(f"unknown keep-alive policy {name!r}: use 'fixed' or 'adaptive'")
