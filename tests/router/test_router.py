"""Router.invoke with a fake control plane and fake instances: resolve → acquire →
dispatch → release, records, errors and the alias split, without processes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ember.clock import ManualClock
from ember.errors import (
    AliasNotFound,
    FunctionDisabled,
    FunctionError,
    FunctionNotFound,
    FunctionTimeout,
    InvalidRequest,
    InvalidSpec,
    TooManyRequests,
    VersionNotFound,
)
from ember.model.function import (
    Alias,
    CodeRef,
    Function,
    FunctionConfig,
    TrafficSplit,
    Version,
)
from ember.observability.stats import ERROR, SUCCESS, THROTTLED, TIMEOUT, InvocationRecord
from ember.pool.pool import PoolManager
from ember.router.router import LOG_TAIL_BYTES, Router
from tests.pool.fakes import FakeInstance, FakeLauncher
from tests.waiting import until

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeFunctions:
    """The part of FunctionService the router reads, over dictionaries."""

    def __init__(self) -> None:
        self.functions: dict[str, Function] = {}
        self.versions: dict[tuple[str, int], Version] = {}
        self.aliases: dict[tuple[str, str], Alias] = {}
        self.listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> None:
        self.listeners.append(listener)

    def changed(self, name: str) -> None:
        for listener in self.listeners:
            listener(name)

    def put(self, name: str, code: str = "c0", enabled: bool = True, **config: Any) -> None:
        self.functions[name] = Function(
            name, FunctionConfig.model_validate(config), CodeRef(code * 32, 1), enabled,
            EPOCH, EPOCH,
        )

    def publish(self, name: str, number: int) -> None:
        function = self.functions[name]
        self.versions[name, number] = Version(
            name, number, function.config, function.code, "", EPOCH
        )

    def alias(self, name: str, alias: str, version: int,
              split: TrafficSplit | None = None) -> None:
        self.aliases[name, alias] = Alias(name, alias, version, "", EPOCH, EPOCH, split)

    def get(self, name: str) -> Function:
        if name not in self.functions:
            raise FunctionNotFound(f"no function {name!r}")
        return self.functions[name]

    def get_version(self, name: str, number: int) -> Version:
        self.get(name)
        if (name, number) not in self.versions:
            raise VersionNotFound(f"no version {number} of {name!r}")
        return self.versions[name, number]

    def get_alias(self, name: str, alias: str) -> Alias:
        self.get(name)
        if (name, alias) not in self.aliases:
            raise AliasNotFound(f"no alias {alias!r} of {name!r}")
        return self.aliases[name, alias]

    def list_versions(self, name: str) -> list[Version]:
        return [v for (n, _), v in self.versions.items() if n == name]

    def list_aliases(self, name: str) -> list[Alias]:
        return [a for (n, _), a in self.aliases.items() if n == name]

    def all_functions(self) -> list[Function]:
        return list(self.functions.values())

    def code_path(self, code: CodeRef) -> str:
        return f"/code/{code.sha256[:8]}"

    def dependency_dirs(self, code: CodeRef, function: str) -> tuple[Path, ...]:
        return ()


@dataclass
class Sink:
    """Logs, stats and metrics, as lists."""

    records: list[InvocationRecord] = field(default_factory=list)
    lines: list[tuple[Any, ...]] = field(default_factory=list)

    def record(self, record: InvocationRecord) -> None:
        self.records.append(record)

    def observe(self, record: InvocationRecord) -> None:
        assert record in self.records

    def append(self, *line: Any) -> None:
        self.lines.append(line)

    def outcomes(self) -> list[tuple[str, str, str | None]]:
        return [(r.version, r.outcome, r.error_code) for r in self.records]


@dataclass
class World:
    functions: FakeFunctions
    launcher: FakeLauncher
    pools: PoolManager
    router: Router
    sink: Sink
    clock: ManualClock

    async def invoke(self, name: str = "fn", qualifier: str | None = None,
                     payload: bytes = b"hi", **kwargs: Any) -> Any:
        return await self.router.invoke(name, qualifier, payload, "application/json", **kwargs)

    def instances(self, version: str | None = None) -> list[FakeInstance]:
        return [i for i in self.launcher.launched
                if version is None or i.spec.version == version]


def run(scenario: Callable[[World], Awaitable[None]], *, rng: random.Random | None = None,
        handler: Callable[..., Any] | None = None, queue_depth: int = 10) -> None:
    async def main() -> None:
        clock = ManualClock(start=1000.0)
        functions = FakeFunctions()
        launcher = FakeLauncher(handler)
        pools = PoolManager(launcher, clock, max_instances=100, queue_depth=queue_depth,
                            queue_wait_s=10)
        sink = Sink()
        router = Router(functions, pools, sink, sink, sink, clock, rng=rng)  # type: ignore[arg-type]
        await router.start()
        try:
            await scenario(World(functions, launcher, pools, router, sink, clock))
        finally:
            await router.close()

    asyncio.run(main())


def test_cold_then_warm_with_the_request_on_the_instance() -> None:
    async def scenario(w: World) -> None:
        w.functions.put("fn", timeout_s=7)
        first = await w.invoke(request_id="r1", attempt=2, trigger="t1", log_tail=True)
        assert (first.request_id, first.version, first.cold) == ("r1", "latest", True)
        assert first.body == b"hi" and first.init_ms == 1.0 and first.duration_ms == 2.0
        assert first.log_tail == ""
        [instance] = w.instances()
        assert instance.spec.code_dir == Path("/code/c0c0c0c0")
        assert instance.calls == [{
            "request_id": "r1", "payload": b"hi", "deadline": 1007.0, "qualifier": "latest",
            "attempt": 2, "trigger": "t1",
        }]
        second = await w.invoke(payload=b"again")
        assert not second.cold and second.init_ms == 0.0 and second.log_tail is None
        assert second.headers()["X-Ember-Cold-Start"] == "false"
        assert len(w.instances()) == 1
        assert [(r.request_id, r.cold, r.outcome, r.attempt) for r in w.sink.records] == [
            ("r1", True, SUCCESS, 2), (second.request_id, False, SUCCESS, 1),
        ]

    run(scenario)


def test_versions_and_aliases_run_in_pools_of_their_own() -> None:
    async def scenario(w: World) -> None:
        w.functions.put("fn", code="a1")
        w.functions.publish("fn", 1)
        w.functions.put("fn", code="b2")
        w.functions.publish("fn", 2)
        w.functions.alias("fn", "live", 1)
        assert (await w.invoke(qualifier="live")).version == "1"
        assert (await w.invoke(qualifier="2")).version == "2"
        assert (await w.invoke()).version == "latest"
        assert {(i.spec.version, i.spec.code_dir.name) for i in w.instances()} == {
            ("1", "a1a1a1a1"), ("2", "b2b2b2b2"), ("latest", "b2b2b2b2"),
        }

    run(scenario)


def test_the_alias_split_draws_from_the_injected_source() -> None:
    n, weight = 1000, 0.3
    expected = random.Random(3)
    # Each invocation draws once: the same seed replayed says which version each one gets.
    versions = ["2" if expected.random() < weight else "1" for _ in range(n)]

    async def scenario(w: World) -> None:
        w.functions.put("fn")
        w.functions.publish("fn", 1)
        w.functions.publish("fn", 2)
        w.functions.alias("fn", "live", 1, TrafficSplit(2, weight))
        seen = [(await w.invoke(qualifier="live")).version for _ in range(n)]
        assert seen == versions
        assert 250 < versions.count("2") < 350
        assert [r.version for r in w.sink.records] == versions

    run(scenario, rng=random.Random(3))


def test_resolution_errors() -> None:
    async def scenario(w: World) -> None:
        w.functions.put("fn")
        w.functions.put("off", enabled=False)
        for qualifier, error in [("9", VersionNotFound), ("nope", AliasNotFound),
                                 ("0", InvalidSpec), ("bad name!", InvalidSpec)]:
            with pytest.raises(error) as raised:
                await w.invoke(qualifier=qualifier, request_id="r")
            assert raised.value.headers["X-Ember-Request-Id"] == "r"
            assert raised.value.headers["X-Ember-Version"] == "?"
        with pytest.raises(FunctionNotFound):
            await w.invoke("ghost")
        with pytest.raises(FunctionDisabled):
            await w.invoke("off")
        assert w.sink.records == [] and w.instances() == []

    run(scenario)


def test_failures_are_recorded_and_give_the_slot_back() -> None:
    def handler(instance: FakeInstance, payload: bytes) -> bytes:
        if payload == b"raise":
            raise FunctionError("ValueError: no")
        if payload == b"slow":
            raise FunctionTimeout("too slow")
        return payload

    async def scenario(w: World) -> None:
        w.functions.put("fn")
        with pytest.raises(FunctionError) as raised:
            await w.invoke(payload=b"raise")
        assert raised.value.headers["X-Ember-Cold-Start"] == "true"
        with pytest.raises(FunctionTimeout):
            await w.invoke(payload=b"slow")
        assert (await w.invoke(payload=b"ok")).body == b"ok"
        assert len(w.instances()) == 1  # the same instance served all three
        assert w.sink.outcomes() == [
            ("latest", ERROR, "FunctionError"), ("latest", TIMEOUT, "FunctionTimeout"),
            ("latest", SUCCESS, None),
        ]

    run(scenario, handler=handler)


def test_a_full_queue_is_recorded_as_throttled() -> None:
    release = asyncio.Event()

    async def handler(instance: FakeInstance, payload: bytes) -> bytes:
        await release.wait()
        return payload

    async def scenario(w: World) -> None:
        w.functions.put("fn", max_instances=1)
        busy = asyncio.create_task(w.invoke())
        await until(lambda: w.instances() and w.instances()[0].calls)
        with pytest.raises(TooManyRequests) as raised:
            await w.invoke(request_id="r2")
        assert raised.value.headers["X-Ember-Version"] == "latest"
        release.set()
        await busy
        assert w.sink.outcomes() == [("latest", THROTTLED, "TooManyRequests"),
                                     ("latest", SUCCESS, None)]

    run(scenario, handler=handler, queue_depth=0)


def test_the_log_tail_keeps_the_last_lines_of_the_request() -> None:
    def handler(instance: FakeInstance, payload: bytes) -> bytes:
        request_id = instance.calls[-1]["request_id"]
        for n in range(300):
            router.on_log(request_id, "INFO", 0.0, f"line {n:03d} " + "x" * 20)
        router.on_log(None, "INFO", 0.0, "not of a request", function="fn", version="latest")
        return b"done"

    router: Router

    async def scenario(w: World) -> None:
        nonlocal router
        router = w.router
        w.functions.put("fn")
        answer = await w.invoke(request_id="r1", log_tail=True)
        tail = answer.log_tail.splitlines()
        assert tail[-1] == "INFO line 299 " + "x" * 20
        assert len(answer.log_tail) <= LOG_TAIL_BYTES and len(tail) < 300
        assert all(line.startswith("INFO line ") for line in tail)
        assert len(w.sink.lines) == 301
        assert w.sink.lines[0][:4] == ("fn", "latest", w.instances()[0].id, "r1")
        assert w.sink.lines[-1][3] is None

    run(scenario, handler=handler)


def test_http_requests_go_to_web_functions_only() -> None:
    async def scenario(w: World) -> None:
        w.functions.put("fn")
        with pytest.raises(InvalidRequest, match="handler function"):
            await w.router.invoke_http("fn", None, object())  # type: ignore[arg-type]
        assert w.sink.outcomes() == [("latest", ERROR, "InvalidRequest")]

    run(scenario)


def test_a_change_drops_the_cached_route_and_retires_unreachable_pools() -> None:
    async def scenario(w: World) -> None:
        w.functions.put("fn", code="a1")
        await w.invoke()
        [old] = w.instances()
        w.functions.put("fn", code="b2")
        w.functions.changed("fn")
        await w.router.wait_settled()
        await until(lambda: old.stopped, message="the old content's instance stopped")
        await w.invoke()
        assert [i.spec.code_dir.name for i in w.instances()] == ["a1a1a1a1", "b2b2b2b2"]

    run(scenario)


def test_min_instances_are_started_with_the_router_and_after_a_change() -> None:
    async def scenario(w: World) -> None:
        assert w.instances() == []
        w.functions.put("warm", min_instances=2)
        w.functions.changed("warm")
        await w.router.wait_settled()
        await until(lambda: len(w.instances()) == 2, message="two warm instances")
        first = await w.invoke("warm")
        assert not first.cold

    run(scenario)


def test_disabling_retires_the_pools() -> None:
    async def scenario(w: World) -> None:
        w.functions.put("fn")
        await w.invoke()
        w.functions.functions["fn"] = replace(w.functions.functions["fn"], enabled=False)
        w.functions.changed("fn")
        await w.router.wait_settled()
        await until(lambda: all(i.stopped for i in w.instances()))
        with pytest.raises(FunctionDisabled):
            await w.invoke()

    run(scenario)
