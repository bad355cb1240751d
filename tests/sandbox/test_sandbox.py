"""Sandboxes on real processes: rlimits always, cgroups where this machine allows them."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ember.sandbox import (
    CGROUP_HEADROOM_MB,
    CgroupSandboxFactory,
    CgroupUnavailable,
    Limits,
    ProcessSandboxFactory,
    choose_sandbox_factory,
)
from ember.sandbox import cgroups as cgroups_module
from ember.sandbox.process import mapped_bytes
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(30)

MIB = 1024 * 1024


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """An interpreter done starting (its address space settled), that lives until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import signal; print('ready', flush=True); signal.pause()"],
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        yield process
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _limit(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(name):
            return line[len(name):].split()[0]
    raise AssertionError(f"no {name} limit")


def test_limits_are_validated() -> None:
    assert Limits(memory_mb=128).open_files == 1024
    with pytest.raises(ValueError, match="memory_mb"):
        Limits(memory_mb=0)
    with pytest.raises(ValueError, match="open_files"):
        Limits(memory_mb=64, open_files=0)


def test_process_sandbox_sets_rlimits(sleeper: subprocess.Popen[bytes]) -> None:
    factory = ProcessSandboxFactory()
    assert factory.supported
    sandbox = factory.create("x", Limits(memory_mb=100, open_files=256))
    before = mapped_bytes(sleeper.pid)
    assert before is not None
    sandbox.attach(sleeper.pid)
    assert _limit(sleeper.pid, "Max open files") == "256"
    address_space = int(_limit(sleeper.pid, "Max address space"))
    assert address_space == sandbox.address_space_limit
    assert 0 <= address_space - (before + 100 * MIB) < 16 * MIB
    assert not sandbox.out_of_memory()
    sandbox.close()
    factory.close()


def test_choose_falls_back_to_rlimits_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unavailable() -> CgroupSandboxFactory:
        raise CgroupUnavailable("not here")

    monkeypatch.setattr(CgroupSandboxFactory, "probe", staticmethod(unavailable))
    with caplog.at_level(logging.WARNING, logger="ember.sandbox"):
        factory = choose_sandbox_factory(None)
    assert factory.name == "rlimit"
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "cgroups are not available (not here)" in caplog.records[0].getMessage()
    with pytest.raises(CgroupUnavailable):
        choose_sandbox_factory(True)
    assert choose_sandbox_factory(False).name == "rlimit"


def test_mount_root_is_taken_into_account() -> None:
    under = cgroups_module._under
    assert under(Path("/sys/fs/cgroup/memory"), "/", "/a/b") == Path("/sys/fs/cgroup/memory/a/b")
    assert under(Path("/mnt"), "/a", "/a/b") == Path("/mnt/b")
    assert under(Path("/mnt"), "/a", "/ab") is None


def test_cgroups_bound_memory_when_available(sleeper: subprocess.Popen[bytes]) -> None:
    """Where cgroups work, one per instance with the limit plus headroom; where they do
    not, the probe says why (and the launcher falls back, tested above)."""
    try:
        factory = CgroupSandboxFactory.probe()
    except CgroupUnavailable as exc:
        assert str(exc)
        return
    try:
        sandbox = factory.create("inst1", Limits(memory_mb=100, open_files=300))
        assert sandbox.path.parent == factory.directory
        limit_file = "memory.limit_in_bytes" if sandbox.version == 1 else "memory.max"
        expected = (100 + CGROUP_HEADROOM_MB) * MIB
        assert int((sandbox.path / limit_file).read_text()) == expected
        sandbox.attach(sleeper.pid)
        assert str(sleeper.pid) in (sandbox.path / "cgroup.procs").read_text().split()
        assert _limit(sleeper.pid, "Max open files") == "300"
        assert not sandbox.out_of_memory()
        sandbox.close()  # kills what is left in the cgroup
        assert sleeper.wait() == -signal.SIGKILL

        def removed() -> bool:
            # The kernel may hold an emptied cgroup busy a moment after its last process
            # is reaped; close is safe to call again until the directory goes.
            sandbox.close()
            return sandbox.closed

        wait_until(removed, message="the emptied cgroup removed")
        assert not sandbox.path.exists()
    finally:
        factory.close()
    assert not factory.directory.exists()


def test_probe_sweeps_directories_of_dead_servers() -> None:
    try:
        first = CgroupSandboxFactory.probe()
    except CgroupUnavailable:
        return  # nothing to sweep where cgroups cannot be made
    parent = first.directory.parent
    first.close()
    stale = parent / "ember-4194999-dead00"  # above any pid_max: that server is gone
    stale.mkdir()
    (stale / "leftover").mkdir()
    second = CgroupSandboxFactory.probe()
    try:
        assert not stale.exists()
    finally:
        second.close()
