"""The pids and cpu limits of the cgroup sandbox, on real processes where this machine has
the controllers (root with cgroup v1, or v2 with them delegated); skipped, saying why,
where it does not."""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ember.sandbox import CGROUP_HEADROOM_MB, CgroupSandboxFactory, CgroupUnavailable, Limits
from ember.sandbox import cgroups as cgroups_module
from ember.sandbox.cgroups import CPU_PERIOD_US, CgroupSandbox, Hierarchy
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

MIB = 1024 * 1024
SPARE = Limits(memory_mb=16384)  # what the launcher prepares spares at


@pytest.fixture
def factory() -> Iterator[CgroupSandboxFactory]:
    try:
        made = CgroupSandboxFactory.probe()
    except CgroupUnavailable as exc:
        pytest.skip(f"cgroups cannot bound memory here: {exc}")
    try:
        yield made
    finally:
        _close(made)


def _close(factory: CgroupSandboxFactory) -> None:
    """Close until every directory is gone: the kernel may hold an emptied cgroup busy a
    moment after its last process is reaped."""
    directories = [place.path for place in factory.directories.values()]

    def removed() -> bool:
        factory.close()
        return not any(directory.exists() for directory in directories)

    wait_until(removed, message="the factory's cgroups removed")


def _place(factory: CgroupSandboxFactory, sandbox: CgroupSandbox, controller: str) -> Hierarchy:
    if controller not in factory.directories:
        pytest.skip(f"the {controller} cgroup controller is not available here")
    return sandbox.places[controller]


def _closed(sandbox: CgroupSandbox) -> None:
    def removed() -> bool:
        sandbox.close()
        return sandbox.closed

    wait_until(removed, message="the instance's cgroups removed")
    assert not any(place.path.exists() for place in sandbox.places.values())


@contextlib.contextmanager
def _python(code: str) -> Iterator[subprocess.Popen[str]]:
    """An interpreter running ``code`` once it has said ``ready``; killed on exit."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        assert process.stdout.readline() == "ready\n"
        yield process
    finally:
        process.kill()
        process.wait()
        process.stdin.close()
        process.stdout.close()


def _go(process: subprocess.Popen[str]) -> str:
    """Let the child go on, and its answer."""
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("go\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def _pids_max(place: Hierarchy) -> int:
    return int((place.path / "pids.max").read_text())


def _cpu_quota(place: Hierarchy) -> int:
    if place.version == 1:
        assert int((place.path / "cpu.cfs_period_us").read_text()) == CPU_PERIOD_US
        return int((place.path / "cpu.cfs_quota_us").read_text())
    quota, period = (place.path / "cpu.max").read_text().split()
    assert int(period) == CPU_PERIOD_US
    return int(quota)


def _memory_limit(sandbox: CgroupSandbox) -> int:
    name = "memory.limit_in_bytes" if sandbox.version == 1 else "memory.max"
    return int((sandbox.path / name).read_text())


def _expected_quota(factory: CgroupSandboxFactory, quota: int) -> int:
    """``quota``, or less where the server's own cgroups allow fewer cores."""
    if factory.cpu_ceiling is None:
        return quota
    return min(quota, int(factory.cpu_ceiling * CPU_PERIOD_US))


THREADS = """
    import sys, threading

    print("ready", flush=True)
    sys.stdin.readline()
    stop = threading.Event()
    started = 0
    try:
        for _ in range({tries}):
            threading.Thread(target=stop.wait, daemon=True).start()
            started += 1
        print(started, "no error", flush=True)
    except RuntimeError as exc:
        print(started, exc, flush=True)
    stop.set()
    sys.stdin.readline()
"""


def test_threads_stop_at_the_pids_limit_of_a_spare_taken_for_a_function(
    factory: CgroupSandboxFactory,
) -> None:
    """A spare prepared at a large limit, lowered when taken: the instance's main thread and
    ``pids - 1`` more, then a thread start fails."""
    sandbox = factory.create("threads", SPARE)
    place = _place(factory, sandbox, "pids")
    with _python(THREADS.format(tries=100)) as process:
        sandbox.attach(process.pid)
        sandbox.set_limits(Limits(memory_mb=128, pids=16))
        assert _pids_max(place) == 16
        assert _go(process) == "15 can't start new thread"
        sandbox.close()  # kills what is left in the cgroups
        assert process.wait() == -signal.SIGKILL
    _closed(sandbox)


FORKS = """
    import errno, os, signal, sys

    print("ready", flush=True)
    sys.stdin.readline()
    children = 0
    try:
        for _ in range({tries}):
            if os.fork() == 0:
                signal.pause()
                os._exit(0)
            children += 1
        print(children, "no error", flush=True)
    except OSError as exc:
        print(children, errno.errorcode[exc.errno], flush=True)
    sys.stdin.readline()
"""


def test_a_fork_bomb_stops_at_the_pids_limit_and_the_sandbox_still_closes(
    factory: CgroupSandboxFactory,
) -> None:
    sandbox = factory.create("forks", Limits(memory_mb=128, pids=8))
    place = _place(factory, sandbox, "pids")
    assert _pids_max(place) == 8
    with _python(FORKS.format(tries=100)) as process:
        sandbox.attach(process.pid)
        assert _go(process) == "7 EAGAIN"
        assert len((place.path / "cgroup.procs").read_text().split()) == 8
        sandbox.close()  # the forked children too: nobody waits for them
        assert process.wait() == -signal.SIGKILL
    _closed(sandbox)


@pytest.mark.parametrize(
    ("limits", "cores"),
    [
        (Limits(memory_mb=1769), 1.0),  # one core per 1769 MB, as AWS Lambda
        (Limits(memory_mb=128), 128 / 1769),
        (Limits(memory_mb=16), 0.0),  # never under the kernel's 1 ms
        (Limits(memory_mb=128, cpu=0.25), 0.25),
        (Limits(memory_mb=128, cpu=1.5), 1.5),
    ],
    ids=["1769MB", "128MB", "16MB", "cpu0.25", "cpu1.5"],
)
def test_the_cpu_quota_follows_memory_or_the_cpu_named(
    factory: CgroupSandboxFactory, limits: Limits, cores: float
) -> None:
    quota = max(1_000, int(cores * CPU_PERIOD_US))
    sandbox = factory.create("cpu", limits)
    assert _cpu_quota(_place(factory, sandbox, "cpu")) == _expected_quota(factory, quota)
    sandbox.close()
    assert sandbox.closed


def test_set_limits_lowers_and_raises_every_limit(factory: CgroupSandboxFactory) -> None:
    sandbox = factory.create("limits", SPARE)
    pids, cpu = _place(factory, sandbox, "pids"), _place(factory, sandbox, "cpu")
    assert _pids_max(pids) == SPARE.pids
    assert _cpu_quota(cpu) == _expected_quota(factory, int(SPARE.cpu_share * CPU_PERIOD_US))
    with _python("print('ready', flush=True); import sys; sys.stdin.readline()") as process:
        sandbox.attach(process.pid)
        for directory in {place.path for place in sandbox.places.values()}:
            assert str(process.pid) in (directory / "cgroup.procs").read_text().split()
        sandbox.set_limits(Limits(memory_mb=128, pids=1, cpu=0.5))  # pids below: refused
        assert (_memory_limit(sandbox), _pids_max(pids)) == ((128 + CGROUP_HEADROOM_MB) * MIB, 1)
        assert _cpu_quota(cpu) == _expected_quota(factory, CPU_PERIOD_US // 2)
        sandbox.set_limits(Limits(memory_mb=1024, pids=1000, cpu=2.0))
        assert _memory_limit(sandbox) == (1024 + CGROUP_HEADROOM_MB) * MIB
        assert _pids_max(pids) == 1000
        assert _cpu_quota(cpu) == _expected_quota(factory, 2 * CPU_PERIOD_US)
        sandbox.close()
        assert process.wait() == -signal.SIGKILL
    _closed(sandbox)


def test_a_busy_instance_is_throttled_to_its_quota(factory: CgroupSandboxFactory) -> None:
    sandbox = factory.create("busy", Limits(memory_mb=128, cpu=0.05))
    place = _place(factory, sandbox, "cpu")
    spin = "print('ready', flush=True); import sys; sys.stdin.readline()\nwhile True: pass"
    with _python(spin) as process:
        sandbox.attach(process.pid)
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()

        def throttled() -> int:
            return cgroups_module._counter(place.path / "cpu.stat", "nr_throttled")

        wait_until(throttled, message="the busy instance throttled")
        sandbox.close()
        assert process.wait() == -signal.SIGKILL
    _closed(sandbox)


def test_a_missing_controller_is_left_out_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    find = cgroups_module.find_hierarchy

    def without_cpu(controller: str) -> Hierarchy:
        if controller == "cpu":
            raise CgroupUnavailable("no cpu here")
        return find(controller)

    monkeypatch.setattr(cgroups_module, "find_hierarchy", without_cpu)
    with caplog.at_level(logging.WARNING, logger="ember.sandbox"):
        try:
            factory = CgroupSandboxFactory.probe()
        except CgroupUnavailable as exc:
            pytest.skip(f"cgroups cannot bound memory here: {exc}")
    try:
        assert "cpu" not in factory.directories
        assert factory.enforced.split(", ")[0] == "memory"
        assert "cpu" not in factory.enforced.split(", ")
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        message = caplog.records[0].getMessage()
        assert "do not bound cpu here" in message and "no cpu here" in message
        sandbox = factory.create("nocpu", Limits(memory_mb=64))
        assert set(sandbox.places) == set(factory.directories)
        sandbox.close()
        assert sandbox.closed
    finally:
        _close(factory)


def test_enforced_names_every_controller_in_use(factory: CgroupSandboxFactory) -> None:
    assert factory.enforced == ", ".join(factory.directories)
    assert factory.enforced.startswith("memory")


def test_probe_sweeps_dead_servers_from_every_hierarchy(factory: CgroupSandboxFactory) -> None:
    parents = {place.path.parent for place in factory.directories.values()}
    if len(parents) == 1:
        pytest.skip("one cgroup hierarchy here (v2): test_sandbox.py covers its sweep")
    stale: list[Path] = []
    for parent in parents:
        directory = parent / "ember-4194999-dead00"  # above any pid_max: that server is gone
        directory.mkdir()
        (directory / "leftover").mkdir()
        stale.append(directory)
    second = CgroupSandboxFactory.probe()
    try:
        assert not [directory for directory in stale if directory.exists()]
    finally:
        _close(second)
