"""Ember's invoke path against raw baselines measured in the same run.

    bash bench/run.sh [--quick]

Prints cold start (zygote vs fresh interpreter vs a bare fork / interpreter start), warm
sync invoke latency over HTTP (vs a bare uvicorn app returning the same JSON, and vs a raw
Unix-socket round trip) and throughput at 1 and 32 concurrent clients.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import msgpack

sys.path.insert(0, str(Path(__file__).parent))
import apikey
import loadgen
import wrk

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
HANDLER = "def handler(event, context):\n    return {'ok': True, 'echo': event}\n"
EVENT = {"n": 1}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def raw_bwrap_ms(n: int) -> list[float]:
    """``bwrap --ro-bind / / true``: the bare cost of a bubblewrap sandbox (empty where
    bubblewrap is not installed)."""
    if shutil.which("bwrap") is None:
        return []
    found = []
    for _ in range(n):
        started = time.perf_counter()
        subprocess.run(["bwrap", "--ro-bind", "/", "/", "true"], check=True)
        found.append((time.perf_counter() - started) * 1000)
    return found


def start_ember(
    home: Path, zygote: bool, spares: int = 1, sandbox: str = "auto"
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "EMBER_HOME": str(home), "EMBER_ZYGOTE": "1" if zygote else "0",
           "EMBER_SANDBOX": sandbox,
           "EMBER_SPARE_INSTANCES": str(spares), "EMBER_LOG_LEVEL": "warning",
           "EMBER_QUEUE_DEPTH": "1000", "EMBER_ADMIN_KEY": apikey.KEY}
    env.pop("EMBER_DATABASE_URL", None)
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/ember"), "server", "--port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_up(url + "/healthz", proc)
    return proc, url


def start_baseline(module: str = "baseline_app") -> tuple[subprocess.Popen[bytes], str]:
    """``baseline_app``: the bare app; ``floor_app``: the bare app handing each request
    to a worker process (the hop every out-of-process function pays)."""
    port = free_port()
    proc = subprocess.Popen(
        [PY, "-m", "uvicorn", f"{module}:app", "--port", str(port), "--log-level",
         "warning", "--no-access-log"],
        cwd=ROOT / "bench", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_up(url, proc)
    return proc, url


def code_zip() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", HANDLER)
    return base64.b64encode(buf.getvalue()).decode()


def deploy(url: str, name: str, **config: object) -> None:
    answer = apikey.post(f"{url}/functions",
                        json={"name": name, "config": config, "code": {"zip": code_zip()}})
    answer.raise_for_status()


def sequential_latency(url: str, n: int) -> list[float]:
    samples = []
    with httpx.Client(headers=apikey.AUTH) as client:
        for _ in range(min(50, n)):
            client.post(url, json=EVENT)
        for _ in range(n):
            t = time.perf_counter()
            answer = client.post(url, json=EVENT)
            samples.append((time.perf_counter() - t) * 1000)
            answer.raise_for_status()
    return samples


def throughput(url: str, clients: int, seconds: float) -> float:
    async def measure() -> float:
        await loadgen.run(url, connections=clients, requests=clients * 5)  # warm up
        rate, _ = await loadgen.run(url, connections=clients, seconds=seconds)
        return rate

    return asyncio.run(measure())


def cold_starts(url: str, name: str, n: int) -> tuple[list[float], list[float], list[float]]:
    """Each sample changes an env var of ``latest`` (a new pool) and times the first call."""
    totals, inits, warm = [], [], []
    with httpx.Client(timeout=30, headers=apikey.AUTH) as client:
        for i in range(n):
            client.patch(f"{url}/functions/{name}",
                         json={"config": {"environment": {"N": str(i)}}}).raise_for_status()
            time.sleep(0.1)  # let the old pool drain (and a spare refill) outside the timing
            t = time.perf_counter()
            answer = client.post(f"{url}/functions/{name}/invoke", json=EVENT)
            totals.append((time.perf_counter() - t) * 1000)
            answer.raise_for_status()
            assert answer.headers["x-ember-cold-start"] == "true", answer.headers
            inits.append(float(answer.headers["x-ember-init-ms"]))
            t = time.perf_counter()
            client.post(f"{url}/functions/{name}/invoke", json=EVENT).raise_for_status()
            warm.append((time.perf_counter() - t) * 1000)
    return totals, inits, warm


def raw_fork_ms(n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def raw_interpreter_ms(n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([PY, "-c", "pass"], check=True)
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def raw_unix_roundtrip_ms(n: int) -> list[float]:
    """A length-prefixed msgpack frame to a thread and back over a Unix socket pair."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def echo() -> None:
        while True:
            head = b.recv(4)
            if not head:
                return
            size = int.from_bytes(head, "big")
            body = b.recv(size)
            b.sendall(head + body)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    frame = msgpack.packb({"t": "invoke", "id": "x" * 36, "payload": b'{"n": 1}'})
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        a.sendall(len(frame).to_bytes(4, "big") + frame)
        head = a.recv(4)
        a.recv(int.from_bytes(head, "big"))
        samples.append((time.perf_counter() - t) * 1000)
    a.close()
    thread.join(timeout=1)
    b.close()
    return samples


def row(label: str, p50: float, p99: float, base: float | None = None) -> str:
    ratio = f"{p50 / base:6.2f}x" if base else ""
    return f"  {label:<58} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms   {ratio}"


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def under_load(base_url: str, invoke_url: str, trigger_url: str, seconds: float,
               runs: int = 3, floor_url: str | None = None) -> None:
    """Issue 11's targets: throughput and p99 at 32 connections against bare uvicorn, the
    p50 added at 1 connection, the HTTP trigger path against direct invoke; each run
    measures the baseline, the floor (``floor_url``: the bare app with a worker process
    hop) and Ember back to back, and the runs show how steady it is."""
    print(f"\nwarm sync invoke under load ({wrk.tool()}, {runs} runs of {seconds:g} s each, "
          "baseline, floor and Ember back to back; the function has cpu: 1, a core per "
          "instance like the bare app's process: the default 256 MB gets 0.145 cores)")
    for url in (base_url, floor_url, invoke_url, trigger_url):  # instances up, warm
        if url is not None:
            wrk.run(url, connections=32, seconds=1)
    for connections in (1, 32):
        ratios, p99s, added, floors = [], [], [], []
        for i in range(runs):
            base = wrk.run(base_url, connections=connections, seconds=seconds)
            floor = (wrk.run(floor_url, connections=connections, seconds=seconds)
                     if floor_url else None)
            ember = wrk.run(invoke_url, connections=connections, seconds=seconds)
            ratios.append(ember.rate / base.rate)
            p99s.append(ember.p99_ms / base.p99_ms)
            added.append(ember.p50_ms - base.p50_ms)
            line = (f"  {connections:>2} conn. run {i + 1}: bare uvicorn {base.rate:7.0f}/s "
                    f"p50 {base.p50_ms:6.3f} p99 {base.p99_ms:6.2f} ms | ")
            if floor is not None:
                floors.append(floor.rate / base.rate)
                line += (f"floor {floor.rate:7.0f}/s p50 {floor.p50_ms:6.3f} p99 "
                         f"{floor.p99_ms:6.2f} ms | ")
            print(line + f"ember {ember.rate:7.0f}/s p50 {ember.p50_ms:6.3f} p99 "
                  f"{ember.p99_ms:6.2f} ms | ratio {ember.rate / base.rate:4.2f}")
        floor_note = (f"; the floor (a process hop, no platform) {median(floors):.2f}, "
                      f"ember {median(ratios) / median(floors):.2f} of the floor"
                      if floors else "")
        if connections == 1:
            print(f"  => 1 connection: p50 added over bare uvicorn {median(added):.3f} ms "
                  "(target <= 0.15 ms)")
        else:
            print(f"  => 32 connections: throughput {median(ratios):.2f} of bare uvicorn "
                  f"(target >= 0.50; runs {min(ratios):.2f}-{max(ratios):.2f}){floor_note}, "
                  f"p99 {median(p99s):.1f}x bare uvicorn's (target <= 3x)")
    trigger_ratios = []
    for i in range(runs):
        direct = wrk.run(invoke_url, connections=32, seconds=seconds)
        trigger = wrk.run(trigger_url, connections=32, seconds=seconds)
        trigger_ratios.append(trigger.rate / direct.rate)
        print(f"  HTTP trigger run {i + 1}: direct invoke {direct.rate:7.0f}/s p99 "
              f"{direct.p99_ms:6.2f} ms | through the trigger {trigger.rate:7.0f}/s p99 "
              f"{trigger.p99_ms:6.2f} ms | ratio {trigger.rate / direct.rate:4.2f}")
    print(f"  => HTTP trigger path {median(trigger_ratios):.2f} of direct invoke "
          "(target >= 0.90)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--warm-only", action="store_true", help="skip the cold starts")
    args = parser.parse_args()
    n_cold = 20 if args.quick else 60
    n_warm = 500 if args.quick else 3000
    seconds = 2.0 if args.quick else 5.0

    tmp = Path(tempfile.mkdtemp(prefix="ember-bench-"))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")

    if not args.warm_only:
        cold(tmp, n_cold)
    warm(tmp, n_warm, seconds)


def cold(tmp: Path, n_cold: int) -> None:
    print("\ncold start (client-measured first invoke of a new instance)")
    fork = raw_fork_ms(200)
    interp = raw_interpreter_ms(20)
    print(row("raw os.fork + exit + wait", pct(fork, 50), pct(fork, 99)))
    print(row("raw `python -c pass`", pct(interp, 50), pct(interp, 99)))
    bwrap = raw_bwrap_ms(20)
    if bwrap:
        print(row("raw `bwrap --ro-bind / / true`", pct(bwrap, 50), pct(bwrap, 99)))
    results = {}
    modes = {"zygote + spare": (True, 1, "process"), "zygote, no spare": (True, 0, "process"),
             "fresh interpreter": (False, 0, "process")}
    if bwrap:
        modes.update({"bubblewrap, zygote + spare": (True, 1, "bubblewrap"),
                      "bubblewrap, zygote, no spare": (True, 0, "bubblewrap")})
    for label, (zygote, spares, sandbox) in modes.items():
        proc, url = start_ember(tmp / f"home-{zygote}-{spares}-{sandbox}", zygote, spares,
                                sandbox)
        try:
            deploy(url, "cold", keep_alive_s=1)
            totals, inits, warm = cold_starts(url, "cold", n_cold)
        finally:
            proc.terminate()
            proc.wait()
        overhead = [t - w for t, w in zip(totals, warm, strict=True)]
        results[label] = overhead
        print(row(f"ember cold invoke, {label}", pct(totals, 50), pct(totals, 99)))
        print(row(f"  instance init (X-Ember-Init-Ms), {label}", pct(inits, 50), pct(inits, 99)))
        print(row(f"  cold minus warm = platform overhead, {label}",
                  pct(overhead, 50), pct(overhead, 99), pct(fork, 50)))
    fresh = pct(results["fresh interpreter"], 50)
    for label in ("zygote + spare", "zygote, no spare", "bubblewrap, zygote + spare"):
        if label not in results:
            continue
        print(f"  {label} vs fresh interpreter overhead: "
              f"{fresh / max(pct(results[label], 50), 1e-6):.1f}x faster")


def warm(tmp: Path, n_warm: int, seconds: float) -> None:
    print("\nwarm sync invoke over HTTP (sequential, keep-alive)")
    raw = raw_unix_roundtrip_ms(5000)
    base_proc, base_url = start_baseline()
    proc, url = start_ember(tmp / "home-warm", True)
    try:
        deploy(url, "warm", max_instances=64, cpu=1.0)
        invoke_url = f"{url}/functions/warm/invoke"
        base = sequential_latency(base_url, n_warm)
        ember = sequential_latency(invoke_url, n_warm)
        print(row("raw Unix-socket msgpack round trip", pct(raw, 50), pct(raw, 99)))
        print(row("raw uvicorn app, same JSON", pct(base, 50), pct(base, 99)))
        print(row("ember invoke", pct(ember, 50), pct(ember, 99), pct(base, 50)))
        print(f"  ember overhead above raw uvicorn: p50 {pct(ember, 50) - pct(base, 50):.3f} ms")

        apikey.post(f"{url}/triggers", json={
            "name": "warm-http", "function": "warm",
            "source": {"kind": "http", "path": "/warm", "methods": ["POST"]},
        }).raise_for_status()
        floor_proc, floor_url = start_baseline("floor_app")
        try:
            under_load(base_url, invoke_url, f"{url}/http/warm", seconds,
                       floor_url=floor_url)
        finally:
            floor_proc.terminate()
            floor_proc.wait()
    finally:
        proc.terminate()
        base_proc.terminate()
        proc.wait()
        base_proc.wait()


if __name__ == "__main__":
    main()
