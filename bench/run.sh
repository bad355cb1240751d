#!/usr/bin/env bash
# Cold start, warm latency and throughput of Ember beside raw baselines, in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python bench/invoke.py "$@"
