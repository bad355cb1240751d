#!/usr/bin/env bash
# Cold start, warm latency and throughput of Ember beside raw baselines, async events and
# workflows beside the invocations they are made of, thaw latency beside a raw SIGCONT,
# forwarding between nodes and async on 1–3 nodes (PostgreSQL + Redis), 10 minutes of
# sustained load, and the keep-alive policies on a replayed trace, in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# wrk loads the servers under test from C (bench/wrk.py falls back to a Python client).
if ! command -v wrk >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q wrk >/dev/null 2>&1 || echo "no wrk: the Python load generator is used" >&2
fi
.venv/bin/python bench/invoke.py "$@"
.venv/bin/python bench/web.py "$@"
.venv/bin/python bench/async_bench.py
.venv/bin/python bench/workflow_bench.py
.venv/bin/python bench/thaw.py
.venv/bin/python bench/cluster_bench.py
.venv/bin/python bench/sustained.py
exec .venv/bin/python bench/trace_replay.py
