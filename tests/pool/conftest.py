"""Fixtures for tests that start real instance processes.

``launch`` starts a launcher (zygote or fresh interpreters), writes a function's code into
a directory and cold-starts it; logs land in ``logs``. Every test runs its scenario with
``run``, on one event loop per test that the fixtures share.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ember.pool.instance import Instance, InstanceSpec
from ember.pool.launcher import Launcher

T = TypeVar("T")


@dataclass
class LogLine:
    request_id: str | None
    level: str
    ts: float
    line: str


@dataclass
class Harness:
    """A running launcher plus helpers to write code and start instances of it."""

    runner: asyncio.Runner
    launcher: Launcher
    base: Path
    logs: list[LogLine] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # "log" / "result" in arrival order
    _count: int = 0

    def run(self, scenario: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(scenario)

    def sink(self, request_id: str | None, level: str, ts: float, line: str) -> None:
        self.logs.append(LogLine(request_id, level, ts, line))
        self.events.append("log")

    def code(self, source: str, **files: str) -> Path:
        """A code directory with ``main.py`` = ``source`` and any other ``files``."""
        self._count += 1
        directory = self.base / f"code{self._count}"
        directory.mkdir(parents=True)
        (directory / "main.py").write_text(textwrap.dedent(source))
        for name, text in files.items():
            path = directory / name.replace("__", "/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return directory

    def spec(self, source: str, **overrides: Any) -> InstanceSpec:
        spec = InstanceSpec(
            function="fn",
            version="latest",
            code_dir=self.code(source),
            handler="main.handler",
            environment={},
            memory_mb=128,
            timeout_s=10.0,
        )
        return replace(spec, **overrides)

    async def start(self, source: str, **overrides: Any) -> Instance:
        return await self.launcher.launch(self.spec(source, **overrides))

    async def invoke(self, instance: Instance, payload: Any = None, *, request_id: str = "r1",
                     content_type: str = "application/json", **kwargs: Any) -> Any:
        import json

        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        result = await instance.invoke(request_id, body, content_type, **kwargs)
        self.events.append("result")
        return result


@contextlib.contextmanager
def running_harness(tmp_path: Path, *, use_zygote: bool, use_cgroups: bool | None = None,
                    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
                    isolation: str = "process") -> Iterator[Harness]:
    """A started launcher on its own event loop (``loop_factory``'s: ``ember server``
    runs on uvloop), closed on exit; ``isolation`` as ``Launcher``'s."""
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        holder: list[Harness] = []
        launcher = Launcher(
            tmp_path / "work",
            use_zygote=use_zygote,
            use_cgroups=use_cgroups,
            log_sink=lambda *args: holder[0].sink(*args),
            isolation=isolation,
        )
        harness = Harness(runner, launcher, tmp_path)
        holder.append(harness)
        runner.run(launcher.start())
        try:
            yield harness
        finally:
            runner.run(launcher.close())


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[Harness]:
    """A launcher forking instances from a zygote."""
    with running_harness(tmp_path, use_zygote=True) as harness:
        yield harness


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Harness]:
    """A launcher starting each instance as a fresh interpreter."""
    with running_harness(tmp_path, use_zygote=False) as harness:
        yield harness


@pytest.fixture(params=["zygote", "fresh"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """Both ways of starting instances, one after the other."""
    with running_harness(tmp_path, use_zygote=request.param == "zygote") as harness:
        yield harness


@pytest.fixture(params=[None, False], ids=["auto-sandbox", "rlimit"])
def sandboxed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The sandbox picked here (cgroups where they work) and the rlimit fallback."""
    with running_harness(tmp_path, use_zygote=True, use_cgroups=request.param) as harness:
        yield harness

