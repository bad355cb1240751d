"""Sustained load: one fresh server under warm sync invocations at 32 connections for
``--minutes`` (10 by default), in slices of ``--slice`` seconds; prints each slice
(requests/s, p99, the server's memory, its invocation records) and the first and last
minute side by side. Throughput and memory should stay flat.

    .venv/bin/python bench/sustained.py [--minutes 10] [--slice 10]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import wrk
from invoke import deploy, start_ember


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--slice", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ember-sustained-"))
    proc, url = start_ember(home, True)
    try:
        deploy(url, "steady", max_instances=64, cpu=1.0)
        invoke_url = f"{url}/functions/steady/invoke"
        wrk.run(invoke_url, connections=args.connections, seconds=2)  # instances up
        print(f"sustained warm sync invoke: {args.connections} connections for "
              f"{args.minutes:g} min ({wrk.tool()}, {args.slice:g} s slices)")
        print(f"  {'at':>6}  {'req/s':>8}  {'p50 ms':>7}  {'p99 ms':>7}  {'server RSS':>10}  "
              f"{'stats.db':>9}")
        slices: list[tuple[float, wrk.Load, float]] = []
        started = time.monotonic()
        while time.monotonic() - started < args.minutes * 60:
            load = wrk.run(invoke_url, connections=args.connections, seconds=args.slice)
            at = time.monotonic() - started
            memory = rss_mib(proc.pid)
            records = (home / "stats.db").stat().st_size / 2**20
            slices.append((at, load, memory))
            print(f"  {at:5.0f}s  {load.rate:8.0f}  {load.p50_ms:7.2f}  {load.p99_ms:7.2f}  "
                  f"{memory:7.0f} MiB  {records:5.0f} MiB", flush=True)
        per_minute = max(1, round(60 / args.slice))
        first, last = slices[:per_minute], slices[-per_minute:]

        def summary(part: list[tuple[float, wrk.Load, float]]) -> tuple[float, float, float]:
            rate = sum(s[1].rate for s in part) / len(part)
            p99 = sorted(s[1].p99_ms for s in part)[len(part) // 2]
            return rate, p99, part[-1][2]

        f_rate, f_p99, f_mem = summary(first)
        l_rate, l_p99, l_mem = summary(last)
        print(f"  first minute: {f_rate:8.0f} req/s, p99 {f_p99:6.2f} ms, RSS {f_mem:5.0f} MiB")
        print(f"  last minute:  {l_rate:8.0f} req/s, p99 {l_p99:6.2f} ms, RSS {l_mem:5.0f} MiB")
        print(f"  last / first: throughput {l_rate / f_rate:4.2f}, p99 {l_p99 / f_p99:4.2f}, "
              f"memory {l_mem / f_mem:4.2f} (flat: 1.00)")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
