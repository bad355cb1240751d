"""Web functions (ASGI apps served inside instances through HTTP triggers) against raw
baselines measured in the same run.

    .venv/bin/python bench/web.py [--quick]

Prints warm latency of a request through an HTTP trigger (vs the same app on bare uvicorn),
throughput at 1 and 32 keep-alive connections with one request per instance and with 32 per
instance, and the cold start of a tiny ASGI app and of a one-route FastAPI app (vs a bare
interpreter importing the same module).
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
import apikey
import invoke
import wrk
from invoke import pct, row

BENCH = Path(__file__).resolve().parent
TINY = (BENCH / "baseline_app.py").read_text()
FASTAPI_APP = '''from fastapi import FastAPI

app = FastAPI()


@app.post("/")
async def root() -> dict[str, object]:
    return {"ok": True, "echo": {"n": 1}}
'''


def app_zip(module: str, source: str) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{module}.py", source)
    return base64.b64encode(buf.getvalue()).decode()


def deploy_web(url: str, name: str, module: str, source: str, **config: object) -> str:
    """Deploy ``module:app`` as a web function behind an HTTP trigger; return its URL."""
    config = {"kind": "web", "app": f"{module}:app", **config}
    apikey.post(f"{url}/functions", json={"name": name, "config": config,
                                         "code": {"zip": app_zip(module, source)}},
               timeout=30).raise_for_status()
    apikey.post(f"{url}/triggers", json={
        "name": f"bench-{name}", "function": name,
        "source": {"kind": "http", "path": f"/{name}", "methods": ["GET", "POST"]},
    }).raise_for_status()
    return f"{url}/http/{name}/"


def web_cold_starts(url: str, name: str, n: int) -> list[float]:
    """Each sample changes an env var of ``latest`` (a new pool) and times the first request."""
    samples = []
    with httpx.Client(timeout=30, headers=apikey.AUTH) as client:
        for i in range(n):
            client.patch(f"{url}/functions/{name}",
                         json={"config": {"environment": {"N": str(i)}}}).raise_for_status()
            time.sleep(0.1)  # let the old pool drain (and a spare refill) outside the timing
            t = time.perf_counter()
            answer = client.post(f"{url}/http/{name}/", json=invoke.EVENT)
            samples.append((time.perf_counter() - t) * 1000)
            answer.raise_for_status()
            assert answer.headers["x-ember-cold-start"] == "true", answer.headers
    return samples


def bare_import_ms(directory: Path, module: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([invoke.PY, "-c", f"import {module}"], cwd=directory, check=True)
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    n_warm = 300 if args.quick else 1500
    n_cold = 5 if args.quick else 12
    seconds = 1.0 if args.quick else 5.0

    tmp = Path(tempfile.mkdtemp(prefix="ember-bench-web-"))
    (tmp / "tiny_app.py").write_text(TINY)
    (tmp / "fastapi_app.py").write_text(FASTAPI_APP)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")

    base_proc, base_url = invoke.start_baseline()
    proc, url = invoke.start_ember(tmp / "home", True)
    try:
        one = deploy_web(url, "c1", "baseline_app", TINY, concurrency=1, max_instances=32)
        many = deploy_web(url, "c32", "baseline_app", TINY, concurrency=32, max_instances=2)

        print("\nweb function, warm request through an HTTP trigger (sequential, keep-alive)")
        base = invoke.sequential_latency(base_url, n_warm)
        ember = invoke.sequential_latency(one, n_warm)
        print(row("raw uvicorn, same ASGI app", pct(base, 50), pct(base, 99)))
        print(row("ember HTTP trigger -> ASGI app in an instance", pct(ember, 50),
                  pct(ember, 99), pct(base, 50)))
        print(f"  ember overhead above raw uvicorn: p50 {pct(ember, 50) - pct(base, 50):.3f} ms")

        print(f"\nweb function throughput (requests/s, keep-alive connections, {wrk.tool()}; "
              "target at 32 connections: >= 0.50 of raw uvicorn)")
        for clients in (1, 32):
            for target in (base_url, one, many):  # warm: instances up
                wrk.run(target, connections=clients, seconds=0.5)
            b = wrk.run(base_url, connections=clients, seconds=seconds).rate
            e1 = wrk.run(one, connections=clients, seconds=seconds).rate
            e32 = wrk.run(many, connections=clients, seconds=seconds).rate
            print(f"  {clients:>2} connections: raw uvicorn {b:7.0f}/s   "
                  f"ember concurrency 1 {e1:7.0f}/s ({e1 / b:4.2f}x)   "
                  f"concurrency 32 {e32:7.0f}/s ({e32 / b:4.2f}x)")

        print("\nweb function cold start (first request after a config change)")
        for module, source, label in (("tiny_app", TINY, "tiny ASGI app"),
                                      ("fastapi_app", FASTAPI_APP, "FastAPI app, one route")):
            deploy_web(url, module.replace("_", "-"), module, source, keep_alive_s=1)
            bare = bare_import_ms(tmp, module, n_cold)
            cold = web_cold_starts(url, module.replace("_", "-"), n_cold)
            print(row(f"raw `python -c 'import {module}'`", pct(bare, 50), pct(bare, 99)))
            print(row(f"ember cold request, {label}", pct(cold, 50), pct(cold, 99),
                      pct(bare, 50)))
    finally:
        proc.terminate()
        base_proc.terminate()
        proc.wait()
        base_proc.wait()


if __name__ == "__main__":
    main()
