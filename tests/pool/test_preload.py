"""A version's dependencies are imported once, by a confined preloader its instances fork from.

Real processes in the real bubblewrap sandbox (as root: a user id per version); the
dependency directories are made by hand as ``pip install --target`` leaves them (a
``*.dist-info`` naming the top-level modules).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ember.pool.preload import ZygoteInfo, preload_modules
from ember.runtime.preload import import_modules
from tests.pool.conftest import Harness, running_harness
from tests.waiting import until

needs_root_bubblewrap = pytest.mark.skipif(
    shutil.which("bwrap") is None or os.geteuid() != 0,
    reason="preloading needs bubblewrap and root (a user id per version)",
)

# Records, at import, who imported it: the process, its user and its capabilities.
_PROBE = """
import os
LOADED_BY = os.getpid()
UID = os.getuid()
with open("/proc/self/status") as status:
    CAPS = [line.split()[1] for line in status if line.startswith(("CapEff", "CapPrm"))]
ENV = os.environ.get("GREETING")
"""

_HANDLER = """
import os
import probe

def handler(event, context):
    answer = {"loaded_by": probe.LOADED_BY, "pid": os.getpid(), "uid": os.getuid(),
              "caps": probe.CAPS, "import_uid": probe.UID, "env": probe.ENV}
    if event and event.get("peek"):
        # The preloader (its parent) holds the same user id: its memory and environment
        # must still be out of reach (not dumpable since it left root).
        try:
            open(f"/proc/{os.getppid()}/environ", "rb").read()
            answer["peek"] = "read"
        except OSError as exc:
            answer["peek"] = type(exc).__name__
    if event and event.get("import"):
        try:
            __import__(event["import"])
            answer["imported"] = True
        except Exception as exc:
            answer["imported"] = f"{type(exc).__name__}: {exc}"
    return answer
"""


def dependencies(base: Path, **modules: str) -> Path:
    """A dependency directory holding one distribution per module (``name=source``)."""
    directory = base / "deps"
    directory.mkdir(exist_ok=True)
    for name, source in modules.items():
        (directory / name).mkdir()
        (directory / name / "__init__.py").write_text(textwrap.dedent(source))
        info = directory / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "top_level.txt").write_text(f"{name}\n")
        (info / "RECORD").write_text(f"{name}/__init__.py,,\n")
    return directory


def preloaders(harness: Harness) -> list[ZygoteInfo]:
    return [z for z in harness.launcher.zygotes() if z.kind == "preloader"]


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[Harness]:
    with running_harness(tmp_path, use_zygote=True, isolation="bubblewrap") as harness:
        yield harness


def test_the_modules_of_installed_distributions_are_found(tmp_path: Path) -> None:
    deps = tmp_path / "deps"
    (deps / "numpy").mkdir(parents=True)
    (deps / "numpy.libs").mkdir()
    (deps / "six.py").write_text("")
    numpy = deps / "numpy-2.0.dist-info"
    numpy.mkdir()  # built by meson: no top_level.txt, the RECORD says
    (numpy / "RECORD").write_text("numpy/__init__.py,,\nnumpy.libs/x.so,,\n"
                                  "numpy-2.0.dist-info/RECORD,,\n../../bin/f2py,,\n")
    six = deps / "six-1.16.dist-info"
    six.mkdir()
    (six / "top_level.txt").write_text("six\n")
    tools = deps / "setuptools-70.dist-info"
    tools.mkdir()
    (tools / "top_level.txt").write_text("_distutils_hack\npkg_resources\nsetuptools\n")
    assert preload_modules([deps, tmp_path / "code"]) == ("numpy", "six")
    assert preload_modules([tmp_path]) == ()  # a layer of plain code: nothing


def test_a_failed_import_is_undone_and_reported(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "halfway").mkdir()
    (tmp_path / "halfway" / "__init__.py").write_text(
        "from . import part\nraise ValueError('no')\n")
    (tmp_path / "halfway" / "part.py").write_text("")
    (tmp_path / "fine_module_x.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen: list[str] = []
    imported, failed = import_modules(["halfway", "fine_module_x"], seen.append)
    assert imported == ["fine_module_x"] and seen == ["halfway", "fine_module_x"]
    assert failed == {"halfway": "ValueError: no"}
    assert "halfway" not in sys.modules and "halfway.part" not in sys.modules
    sys.modules.pop("fine_module_x", None)


@needs_root_bubblewrap
def test_instances_fork_from_a_confined_preloader(isolated: Harness) -> None:
    deps = dependencies(isolated.base, probe=_PROBE)
    spec = isolated.spec(_HANDLER, layer_dirs=(deps,), environment={"GREETING": "hi"},
                         version="1")

    async def scenario() -> None:
        launcher = isolated.launcher
        first = await launcher.launch(spec)
        second = await launcher.launch(spec)
        one = json.loads((await isolated.invoke(first, {"peek": True})).body)
        two = json.loads((await isolated.invoke(second, {}, request_id="r2")).body)
        # Imported once, by the preloader, not by the instances.
        assert one["loaded_by"] == two["loaded_by"]
        assert one["loaded_by"] not in (one["pid"], two["pid"])
        # ...after it had left root and dropped every capability, under the function's
        # environment; its instances hold its user id.
        assert one["import_uid"] == one["uid"] == two["uid"] != 0
        assert one["caps"] == ["0000000000000000", "0000000000000000"]
        assert one["env"] == "hi"
        assert one["peek"] == "PermissionError"
        zygote, info = launcher.zygotes()
        assert zygote.kind == "zygote" and zygote.children == 1  # the preloader
        assert zygote.rss_bytes and zygote.rss_bytes > 8 << 20 and zygote.pss_bytes  # python
        assert info.kind == "preloader"
        assert info.modules == ("probe",) and info.failed == {}
        assert info.uid == one["uid"] and info.children >= 2
        assert info.rss_bytes and info.pss_bytes and info.pss_bytes <= info.rss_bytes
        for instance in (first, second):
            await instance.stop()

    isolated.run(scenario())


@needs_root_bubblewrap
def test_a_failing_import_leaves_the_version_working(isolated: Harness) -> None:
    deps = dependencies(isolated.base, probe=_PROBE, broken="raise RuntimeError('boom')\n")
    spec = isolated.spec(_HANDLER, layer_dirs=(deps,), version="1")

    async def scenario() -> None:
        instance = await isolated.launcher.launch(spec)
        answer = json.loads((await isolated.invoke(instance, {"import": "broken"})).body)
        assert answer["loaded_by"] != answer["pid"]  # the rest was preloaded
        assert answer["imported"] == "RuntimeError: boom"  # and it fails as it would
        [info] = preloaders(isolated)
        assert info.modules == ("probe",)
        assert info.failed == {"broken": "RuntimeError: boom"}
        await instance.stop()

    isolated.run(scenario())


@needs_root_bubblewrap
def test_an_import_that_hangs_turns_preloading_off_for_the_version(
        isolated: Harness, caplog: pytest.LogCaptureFixture) -> None:
    deps = dependencies(isolated.base, probe=_PROBE,
                        stuck="import time\ntime.sleep(3600)\n")
    spec = replace(isolated.spec(_HANDLER, layer_dirs=(deps,), version="1"),
                   initializer_timeout_s=1.0)

    async def scenario() -> None:
        with caplog.at_level(logging.WARNING, logger="ember.pool.launcher"):
            instance = await isolated.launcher.launch(spec)
        answer = json.loads((await isolated.invoke(instance, {})).body)
        assert answer["loaded_by"] == answer["pid"]  # imported by the instance itself
        assert preloaders(isolated) == []
        assert "importing stuck" in caplog.text and "preloading is off" in caplog.text
        await instance.stop()

    isolated.run(scenario())


@needs_root_bubblewrap
def test_an_idle_preloader_is_closed(isolated: Harness) -> None:
    isolated.launcher.preload_idle_s = 0.0
    isolated.launcher.spares = 0
    deps = dependencies(isolated.base, probe=_PROBE)
    spec = isolated.spec(_HANDLER, layer_dirs=(deps,), version="1")

    async def scenario() -> None:
        instance = await isolated.launcher.launch(spec)
        assert len(preloaders(isolated)) == 1
        await instance.stop()
        await instance.wait_gone()
        await until(lambda: not preloaders(isolated), message="the preloader closed")
        # The next cold start starts it again.
        again = await isolated.launcher.launch(spec)
        answer = json.loads((await isolated.invoke(again, {})).body)
        assert answer["loaded_by"] != answer["pid"]
        await again.stop()

    isolated.run(scenario())


def test_without_isolation_instances_import_themselves(zygote: Harness) -> None:
    deps = dependencies(zygote.base, probe=_PROBE)
    spec = zygote.spec(_HANDLER, layer_dirs=(deps,), version="1")

    async def scenario() -> None:
        instance = await zygote.launcher.launch(spec)
        answer = json.loads((await zygote.invoke(instance, {})).body)
        assert answer["loaded_by"] == answer["pid"]
        assert preloaders(zygote) == []
        await instance.stop()

    zygote.run(scenario())


@needs_root_bubblewrap
def test_a_changed_environment_gets_a_preloader_of_its_own(isolated: Harness) -> None:
    isolated.launcher.spares = 0
    deps = dependencies(isolated.base, probe=_PROBE)
    spec = isolated.spec(_HANDLER, layer_dirs=(deps,), environment={"GREETING": "hi"})
    changed = replace(spec, environment={"GREETING": "hello"})

    async def scenario() -> None:
        launcher = isolated.launcher
        old = await launcher.launch(spec)
        new = await launcher.launch(changed)
        # Modules read the environment when imported: the new one was imported under it.
        assert json.loads((await isolated.invoke(new, {})).body)["env"] == "hello"
        assert json.loads((await isolated.invoke(old, {}, request_id="r2")).body)["env"] == "hi"
        assert len(preloaders(isolated)) == 2  # the old one serves its instance still
        await old.stop()
        await old.wait_gone()
        launcher.preload_idle_s = 0.0
        await until(lambda: len(preloaders(isolated)) == 1, message="the old preloader closed")
        assert json.loads((await isolated.invoke(new, {}, request_id="r3")).body)["env"] == "hello"
        await new.stop()

    isolated.run(scenario())


@needs_root_bubblewrap
def test_closing_does_not_wait_for_a_preloader_still_importing(tmp_path: Path) -> None:
    with running_harness(tmp_path, use_zygote=True, isolation="bubblewrap") as harness:
        deps = dependencies(harness.base, stuck="import time\ntime.sleep(3600)\n")
        spec = replace(harness.spec(_HANDLER, layer_dirs=(deps,), version="1"),
                       initializer_timeout_s=600.0)  # bounded at PRELOAD_TIMEOUT_S: 30 s
        launcher = harness.launcher

        async def scenario() -> None:
            launcher.prewarm(spec)
            await until(lambda: any(z.children for z in launcher._view_zygotes.values()),
                        message="the preloader forked")
            await asyncio.wait_for(launcher.close(), 20.0)  # not the import's 30 s
            assert launcher.zygotes() == []

        harness.run(scenario())


def test_a_preloader_given_up_on_after_its_hello_has_its_connection_closed(tmp_path: Path
                                                                           ) -> None:
    """The start is cancelled just as the preloader says hello: the connection is not yet
    the start's own, and must not be left open (it was: a writer that outlived its loop)."""
    with running_harness(tmp_path, use_zygote=True, isolation="bubblewrap") as harness:
        deps = dependencies(harness.base, probe=_PROBE)
        spec = harness.spec(_HANDLER, layer_dirs=(deps,), version="1")
        launcher = harness.launcher
        real = launcher._await_hello
        connections: list[asyncio.StreamWriter] = []

        async def given_up(instance_id: str, hello: asyncio.Future[Any], process: Any, *,
                           sandboxed: bool = False) -> Any:
            if not instance_id.startswith("preload-"):
                return await real(instance_id, hello, process, sandboxed=sandboxed)
            await hello  # it connected and said hello, as the start was cancelled
            connections.append(hello.result()[1][1])
            raise asyncio.CancelledError

        launcher._await_hello = given_up  # type: ignore[method-assign]

        async def scenario() -> None:
            launcher.prewarm(spec)
            await until(lambda: connections, message="the preloader said hello")
            await until(lambda: connections[0].is_closing(),
                        message="the connection of the start given up on closed")

        harness.run(scenario())
