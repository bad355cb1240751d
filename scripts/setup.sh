#!/usr/bin/env bash
# Creates .venv with Ember and its development tools; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    PY=$(command -v python3.11 || command -v python3)
    "$PY" -m venv .venv
fi
stamp=.venv/.ember-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    touch "$stamp"
fi
