"""Prometheus metrics of one server, in a registry of its own (no global state).

Every series carries the label ``node`` (this server's node id): each node of a cluster is
scraped on its own, and the label keeps their series apart once Prometheus holds them all."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ember.observability.stats import InvocationRecord
from ember.queue.base import Queue

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

# (function, version, state) -> count, read when Prometheus scrapes.
InstanceCounts = Callable[[], Iterable[tuple[str, str, str, int]]]


# (function, qualifier, desired, current) per provisioned policy, read when scraped.
ProvisionedCounts = Callable[[], Iterable[tuple[str, str, int, int]]]


class _Provisioned(Collector):
    def __init__(self, counts: ProvisionedCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        desired = GaugeMetricFamily(
            "ember_provisioned_desired", "Instances a provisioned policy keeps up now",
            labels=["function", "qualifier"])
        current = GaugeMetricFamily(
            "ember_provisioned_current", "Instances up for a provisioned policy's versions",
            labels=["function", "qualifier"])
        for function, qualifier, wanted, up in self._counts():
            desired.add_metric([function, qualifier], wanted)
            current.add_metric([function, qualifier], up)
        yield desired
        yield current


class _Instances(Collector):
    def __init__(self, counts: InstanceCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "ember_instances", "Function instances by state", labels=["function", "version",
                                                                        "state"]
        )
        for function, version, state, count in self._counts():
            family.add_metric([function, version, state], count)
        yield family


class _NodeLabelled:
    """The registry's metrics with ``node="<id>"`` added to every sample, as rendered."""

    def __init__(self, registry: CollectorRegistry, node: str) -> None:
        self._registry = registry
        self._node = node

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            labelled = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            labelled.samples = [s._replace(labels={**s.labels, "node": self._node})
                                for s in metric.samples]
            yield labelled


class Metrics:
    def __init__(self, node: str) -> None:
        self.node = node
        self.registry = CollectorRegistry()
        self._exposed = _NodeLabelled(self.registry, node)
        self._invocations = Counter(
            "ember_invocations", "Invocations by outcome",
            ["function", "version", "outcome"], registry=self.registry,
        )
        self._cold = Counter(
            "ember_cold_starts", "Invocations that started an instance",
            ["function", "version"], registry=self.registry,
        )
        self._duration = Histogram(
            "ember_invocation_duration_seconds", "Time from request to answer",
            ["function"], buckets=_BUCKETS, registry=self.registry,
        )
        self._init = Histogram(
            "ember_init_duration_seconds", "Cold start time of instances",
            ["function"], buckets=_BUCKETS, registry=self.registry,
        )

        # (function, version, outcome) → its invocations, duration, cold and init series.
        self._series: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}
        self._async_series: dict[tuple[str, str], Any] = {}
        self._async = Counter(
            "ember_async_events", "Async events by what became of an attempt",
            ["function", "outcome"], registry=self.registry,
        )
        queue_labels = ["function"]
        self._queue = {
            "depth": Gauge("ember_queue_depth", "Async events queued or running",
                           queue_labels, registry=self.registry),
            "leased": Gauge("ember_queue_running", "Async events being processed",
                            queue_labels, registry=self.registry),
            "delayed": Gauge("ember_queue_delayed", "Async events waiting for a retry",
                             queue_labels, registry=self.registry),
            "oldest_age_s": Gauge("ember_queue_oldest_age_seconds",
                                  "Age of the oldest queued async event", queue_labels,
                                  registry=self.registry),
            "dead_letters": Gauge("ember_dead_letters", "Dead letters kept", queue_labels,
                                  registry=self.registry),
        }

    def async_outcome(self, function: str, outcome: str) -> None:
        key = (function, outcome)
        series = self._async_series.get(key)
        if series is None:
            series = self._async_series[key] = self._async.labels(function, outcome)
        series.inc()

    async def refresh_queue(self, queue: Queue, functions: list[str], now: float) -> None:
        """Read the queue's figures for every function (Prometheus asks on its schedule)."""
        for gauge in self._queue.values():
            gauge.clear()
        for function in functions:
            figures = await queue.figures(function, now=now)
            for name, gauge in self._queue.items():
                value = getattr(figures, name)
                gauge.labels(function).set(value if value is not None else 0)

    def watch_instances(self, counts: InstanceCounts) -> None:
        self.registry.register(_Instances(counts))

    def watch_provisioned(self, counts: ProvisionedCounts) -> None:
        self.registry.register(_Provisioned(counts))

    def observe(self, r: InvocationRecord) -> None:
        """Count one invocation. The labelled series of each (function, version, outcome)
        are looked up once: ``labels()`` validates and joins its values on every call,
        which was a few per cent of the server's CPU on the warm path."""
        key = (r.function, r.version, r.outcome)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self._invocations.labels(*key), self._duration.labels(r.function),
                self._cold.labels(r.function, r.version), self._init.labels(r.function))
        invocations, duration, cold, init = series
        invocations.inc()
        if r.outcome == "throttled":
            return
        duration.observe(r.total_ms / 1000)
        if r.cold:
            cold.inc()
            init.observe(r.init_ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self._exposed)
