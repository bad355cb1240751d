"""Cold starts of a handler whose dependencies import numpy (or pandas): preloaded or not.

    .venv/bin/python bench/deps_cold.py [--quick] [--package numpy] [--package pandas]

Needs bubblewrap and root (what preloading needs: a user id per version). In one run:

1. a real server (``EMBER_SANDBOX=bubblewrap``) builds the function's requirements.txt
   (``numpy``) with Ember's own build, then serves it; each HTTP sample kills the
   instance (the handler exits on ``{"exit": true}``), times the next call (a cold start,
   ``X-Ember-Cold-Start: true``) and the one after it (warm). Platform overhead = cold -
   warm. The server preloads (its default).
2. the launcher in this process, on the same built dependency directory, preloading on
   and off, with a spare and without: cold = ``launch`` + the first invoke, warm = the
   second invoke.
3. raw baselines: ``python -c "import numpy"`` with that directory on ``PYTHONPATH``, and
   ``python -c pass``.
4. memory: each idle preloader and zygote (RSS, PSS, the preloader's cgroup), and an idle
   instance's PSS forked from a preloader against one that imported numpy itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import apikey
from invoke import pct, start_ember

from ember.pool.instance import Instance, InstanceSpec
from ember.pool.launcher import Launcher
from ember.pool.preload import memory_of

PY = sys.executable
HANDLER = """\
import os
import {package}

def handler(event, context):
    if event and event.get("exit"):
        os._exit(0)
    return {{"ok": True}}
"""


def mib(value: int | None) -> str:
    return "?" if value is None else f"{value / 1048576:.1f} MiB"


def code_zip(package: str) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", HANDLER.format(package=package))
        zf.writestr("requirements.txt", f"{package}\n")
    return base64.b64encode(buf.getvalue()).decode()


@dataclass
class Series:
    cold: list[float]
    warm: list[float]
    init: list[float]

    def line(self, label: str) -> str:
        overhead = [c - w for c, w in zip(self.cold, self.warm, strict=True)]
        init = f"   init p50 {pct(self.init, 50):6.1f}" if self.init else ""
        return (f"  {label:<44} cold p50 {pct(self.cold, 50):7.1f} p99 {pct(self.cold, 99):7.1f}"
                f"   warm p50 {pct(self.warm, 50):5.2f}   overhead p50 "
                f"{pct(overhead, 50):7.1f} p99 {pct(overhead, 99):7.1f} ms{init}")


def http_cold_starts(url: str, name: str, n: int) -> Series:
    cold, warm, init = [], [], []
    invoke = f"{url}/functions/{name}/invoke"
    with httpx.Client(timeout=60, headers=apikey.AUTH) as client:
        client.post(invoke, json={}).raise_for_status()
        for _ in range(n):
            client.post(invoke, json={"exit": True})  # the instance dies: an error answer
            time.sleep(0.3)  # its death is noticed and a spare is forked, off the timing
            started = time.perf_counter()
            answer = client.post(invoke, json={})
            cold.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
            assert answer.headers["x-ember-cold-start"] == "true", answer.headers
            init.append(float(answer.headers["x-ember-init-ms"]))
            started = time.perf_counter()
            client.post(invoke, json={}).raise_for_status()
            warm.append((time.perf_counter() - started) * 1000)
    return Series(cold, warm, init)


def build_with_ember(package: str, home: Path) -> tuple[Path, Series]:
    """Deploy through a real server (its build installs ``package``) and measure HTTP cold
    starts; the built dependency directory and the series."""
    proc, url = start_ember(home, zygote=True, sandbox="bubblewrap")
    try:
        name = f"deps-{package}"
        answer = apikey.post(f"{url}/functions", timeout=900, json={
            "name": name, "config": {"memory_mb": 1024},
            "code": {"zip": code_zip(package)}})
        answer.raise_for_status()
        series = http_cold_starts(url, name, ARGS.n)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    built = [d for d in (home / "deps").iterdir() if (d / package).is_dir()]
    if not built:
        raise SystemExit(f"no dependency directory holding {package} under {home / 'deps'}")
    return built[0], series


async def launcher_cold_starts(package: str, deps: Path, work: Path, *, preload: bool,
                               spares: int, n: int) -> tuple[Series, list[str]]:
    code = work / "code"
    code.mkdir(parents=True, exist_ok=True)
    (code / "main.py").write_text(HANDLER.format(package=package))
    launcher = Launcher(work / "run", log_sink=lambda *a: None, isolation="bubblewrap",
                        preload=preload, spares=spares)
    await launcher.start()
    spec = InstanceSpec(function=f"bench-{package}", version="1", code_dir=code,
                        handler="main.handler", environment={}, memory_mb=1024,
                        timeout_s=60.0, layer_dirs=(deps,))
    memory: list[str] = []
    try:
        launcher.prewarm(spec)
        await asyncio.sleep(1.0 if package == "numpy" else 2.0)  # the zygote (+ preloader)
        cold, warm = [], []
        last: Instance | None = None
        for i in range(n):
            await asyncio.sleep(0.15)  # a spare, where there is one, is forked meanwhile
            started = time.perf_counter()
            instance = await launcher.launch(spec)
            await instance.invoke(f"c{i}", b"{}", "application/json")
            cold.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await instance.invoke(f"w{i}", b"{}", "application/json")
            warm.append((time.perf_counter() - started) * 1000)
            if last is not None:
                await last.stop()
            last = instance
        assert last is not None
        await asyncio.sleep(0.5)
        for info in launcher.zygotes():
            extra = (f", cgroup {mib(info.cgroup_bytes)}, imported "
                     f"{', '.join(info.modules)} in {info.import_ms:.0f} ms"
                     f"{' (failed: ' + ', '.join(info.failed) + ')' if info.failed else ''}"
                     f", {info.threads} threads" if info.kind == "preloader" else "")
            memory.append(f"  idle {info.kind:<9} RSS {mib(info.rss_bytes):>10}  PSS "
                          f"{mib(info.pss_bytes):>10}{extra}")
        rss, pss = memory_of(last.pid)
        memory.append(f"  idle instance ({'preloaded' if preload else 'imports itself'}) "
                      f"RSS {mib(rss):>10}  PSS {mib(pss):>10}")
        await last.stop()
    finally:
        await launcher.close()
    return Series(cold, warm, []), memory


def raw_ms(argv: list[str], n: int, env: dict[str, str] | None = None) -> list[float]:
    found = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run(argv, check=True, env=env)
        found.append((time.perf_counter() - started) * 1000)
    return found


def main() -> None:
    if shutil.which("bwrap") is None or os.geteuid() != 0:
        raise SystemExit("preloading needs bubblewrap and root: run this as root with bwrap")
    for package in ARGS.package:
        home = Path(tempfile.mkdtemp(prefix="ember-deps-bench-"))
        try:
            print(f"\n{package}: building it with Ember, {ARGS.n} samples per line "
                  f"({os.cpu_count()} cores)", flush=True)
            deps, http = build_with_ember(package, home)
            lines = [http.line("HTTP, server (bubblewrap, preload, spare)")]
            memory: list[str] = []
            for preload in (True, False):
                for spares in (1, 0):
                    series, found = asyncio.run(launcher_cold_starts(
                        package, deps, home / f"launcher-{preload}-{spares}",
                        preload=preload, spares=spares, n=ARGS.n))
                    label = (f"launcher, {'preloaded' if preload else 'not preloaded'}, "
                             f"{'spare' if spares else 'no spare'}")
                    lines.append(series.line(label))
                    if spares:
                        memory += found
            env = {**os.environ, "PYTHONPATH": str(deps)}
            fresh = raw_ms([PY, "-c", f"import {package}"], ARGS.n, env)
            bare = raw_ms([PY, "-c", "pass"], ARGS.n)
            label = f'raw python -c "import {package}"'
            lines.append(f"  {label:<44} p50 {pct(fresh, 50):7.1f} p99 {pct(fresh, 99):7.1f} ms")
            lines.append(f"  {'raw python -c pass':<44} p50 {pct(bare, 50):7.1f} "
                         f"p99 {pct(bare, 99):7.1f} ms")
            print("\n".join(lines))
            print("\n".join(memory))
            print(json.dumps({"package": package, "deps": str(deps)}))
        finally:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="10 samples per line")
    parser.add_argument("--package", action="append", help="numpy (default), pandas")
    parser.add_argument("-n", type=int, default=40, help="samples per line")
    ARGS = parser.parse_args()
    ARGS.package = ARGS.package or ["numpy"]
    if ARGS.quick:
        ARGS.n = 10
    main()
