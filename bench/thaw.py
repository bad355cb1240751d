"""Idle mode: how long a thaw takes, against raw baselines measured in the same run.

    .venv/bin/python bench/thaw.py [--cycles 200]

For each sandbox that freezes instances (the cgroup freezer, SIGSTOP; each as a plain
process and inside bubblewrap where it is installed), one idle instance goes through
``--cycles`` freeze/thaw cycles: ``Instance.thaw()`` is timed (what the pool pays on the
acquire path), and the invocation that follows it (the first after a thaw) beside warm
invocations of an instance never frozen. Baselines: a raw ``os.kill(pid, SIGCONT)`` of a
stopped plain process, and a raw write of ``THAWED`` to the freezer of a cgroup holding one.
The issue's target: thaw p50 at most 1 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ember.pool.instance import Instance, InstanceSpec
from ember.pool.launcher import Launcher
from ember.sandbox import CgroupSandboxFactory, CgroupUnavailable, Limits
from ember.sandbox.freezer import CgroupFreezer

HANDLER = "def handler(event, context):\n    return {'ok': True}\n"
MODES = [  # (label, use_cgroups, isolation)
    ("cgroup freezer", None, "process"),
    ("SIGSTOP", False, "process"),
    ("bubblewrap + cgroup freezer", None, "bubblewrap"),
    ("bubblewrap + SIGSTOP", False, "bubblewrap"),
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def raw_sigcont(cycles: int) -> list[float]:
    """os.kill(SIGCONT) of a stopped plain process, in seconds per call."""
    process = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(1)"])
    took = []
    try:
        for _ in range(cycles):
            os.kill(process.pid, signal.SIGSTOP)
            while _state(process.pid) != "T":
                time.sleep(0.0005)
            started = time.perf_counter()
            os.kill(process.pid, signal.SIGCONT)
            took.append(time.perf_counter() - started)
    finally:
        process.kill()
        process.wait()
    return took


def raw_cgroup_thaw(cycles: int) -> list[float] | None:
    """A write of THAWED to the freezer of a cgroup holding a plain process."""
    try:
        factory = CgroupSandboxFactory.probe()
    except CgroupUnavailable:
        return None
    process = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(1)"])
    sandbox = factory.create("thaw-bench", Limits(memory_mb=64))
    took = []
    try:
        sandbox.attach(process.pid)
        freezer = sandbox.freezer()
        if not isinstance(freezer, CgroupFreezer):
            return None
        state = os.path.join(freezer.path, "freezer.state" if freezer.version == 1
                             else "cgroup.freeze")
        thawed = b"THAWED" if freezer.version == 1 else b"0"
        for _ in range(cycles):
            freezer.freeze()
            while not freezer.frozen():
                time.sleep(0.0005)
            started = time.perf_counter()
            fd = os.open(state, os.O_WRONLY)
            os.write(fd, thawed)
            os.close(fd)
            took.append(time.perf_counter() - started)
    finally:
        process.kill()
        process.wait()
        sandbox.close()
        factory.close()
    return took


async def run_mode(work: Path, use_cgroups: bool | None, isolation: str, cycles: int
                   ) -> dict[str, list[float]] | None:
    launcher = Launcher(work, use_zygote=True, use_cgroups=use_cgroups,
                        log_sink=lambda *args: None, isolation=isolation)
    await launcher.start()
    try:
        freezes = "freezer" in getattr(launcher.sandboxes, "enforced", "")
        if freezes != (use_cgroups is None):
            return None  # no cgroup freezer here: nothing to measure in this mode
        code = work / "code"
        code.mkdir(exist_ok=True)
        (code / "main.py").write_text(HANDLER)
        spec = InstanceSpec(function="bench", version="1", code_dir=code,
                            handler="main.handler", environment={}, memory_mb=128,
                            timeout_s=10.0)
        frozen_one = await launcher.launch(spec)
        warm_one = await launcher.launch(spec)
        result: dict[str, list[float]] = {"thaw": [], "freeze": [], "first": [], "warm": []}
        for n in range(cycles):
            await invoke(warm_one, n)  # the same work between two warm invocations
            started = time.perf_counter()
            await invoke(warm_one, n)
            result["warm"].append(time.perf_counter() - started)
            started = time.perf_counter()
            assert await frozen_one.freeze()
            result["freeze"].append(time.perf_counter() - started)
            started = time.perf_counter()
            frozen_one.thaw()
            result["thaw"].append(time.perf_counter() - started)
            started = time.perf_counter()
            await invoke(frozen_one, n)
            result["first"].append(time.perf_counter() - started)
        return result
    finally:
        await launcher.close()


async def invoke(instance: Instance, n: int) -> None:
    result = await instance.invoke(f"r{n}", b"{}", "application/json")
    assert result.body == b'{"ok": true}', result.body


def row(label: str, values: list[float], raw: float) -> str:
    p50, p99 = pct(values, 50) * 1e6, pct(values, 99) * 1e6
    return f"  {label:<44} {p50:9.1f} {p99:9.1f}   {p50 / raw:6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()
    cycles = args.cycles
    raw = raw_sigcont(cycles)
    raw_p50 = pct(raw, 50) * 1e6
    raw_cgroup = raw_cgroup_thaw(cycles)
    measured: list[tuple[str, dict[str, list[float]]]] = []
    with tempfile.TemporaryDirectory(prefix="ember-thaw-") as temp:
        for i, (label, use_cgroups, isolation) in enumerate(MODES):
            if isolation == "bubblewrap" and shutil.which("bwrap") is None:
                continue
            found = asyncio.run(run_mode(Path(temp) / f"m{i}", use_cgroups, isolation, cycles))
            if found is not None:
                measured.append((label, found))
    print(f"thaw latency, {cycles} freeze/thaw cycles of one idle instance (zygote, no "
          f"pre_freeze hook)")
    print(f"  {'':<44} {'p50 µs':>9} {'p99 µs':>9}   {'/ raw':>6}")
    print(row("raw os.kill(SIGCONT), stopped plain process", raw, raw_p50))
    if raw_cgroup is not None:
        print(row("raw THAWED write, frozen cgroup (1 process)", raw_cgroup, raw_p50))
    for label, found in measured:
        print(row(f"Instance.thaw, {label}", found["thaw"], raw_p50))
    print()
    print("freeze (Instance.freeze until every process stopped), and invocations, ms")
    print(f"  {'':<30} {'freeze p50':>10} {'p99':>7}   {'warm p50':>8} {'p99':>7}   "
          f"{'1st after thaw p50':>18} {'p99':>7}   {'/ warm':>6}")
    for label, found in measured:
        ms = {key: (pct(v, 50) * 1e3, pct(v, 99) * 1e3) for key, v in found.items()}
        print(f"  {label:<30} {ms['freeze'][0]:10.2f} {ms['freeze'][1]:7.2f}   "
              f"{ms['warm'][0]:8.3f} {ms['warm'][1]:7.3f}   {ms['first'][0]:18.3f} "
              f"{ms['first'][1]:7.3f}   {ms['first'][0] / ms['warm'][0]:6.2f}")
    target = all(pct(found["thaw"], 50) <= 0.001 for _, found in measured)
    print(f"\ntarget thaw p50 <= 1 ms: {'met' if target else 'NOT met'}")


if __name__ == "__main__":
    main()
