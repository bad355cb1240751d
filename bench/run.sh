#!/usr/bin/env bash
# Cold start, warm latency and throughput of Ember beside raw baselines, async events and
# workflows beside the invocations they are made of, thaw latency beside a raw SIGCONT,
# forwarding between nodes and async on 1–3 nodes (PostgreSQL + Redis), and
# the keep-alive policies on a replayed trace, in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python bench/invoke.py "$@"
.venv/bin/python bench/web.py "$@"
.venv/bin/python bench/async_bench.py
.venv/bin/python bench/workflow_bench.py
.venv/bin/python bench/thaw.py
.venv/bin/python bench/cluster_bench.py
exec .venv/bin/python bench/trace_replay.py
