#!/usr/bin/env bash
# Runs the test suite on SQLite, then again on PostgreSQL (EMBER_TEST_POSTGRES_URL, default
# the local server) when it answers. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PG_URL=${EMBER_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}

echo "== tests on SQLite"
env -u EMBER_DATABASE_URL .venv/bin/python -m pytest -q --durations=15 "$@"

if .venv/bin/python - "$PG_URL" <<'PY' 2>/dev/null
import sys, psycopg
psycopg.connect(sys.argv[1], connect_timeout=3).close()
PY
then
    echo "== tests on PostgreSQL"
    # The console's browser tests drive the same API in Chromium, and the multi-node tests
    # run on PostgreSQL whichever pass runs them: both run once, above. The pool's tests
    # start instances without any metadata store: a second pass would repeat them as they were.
    EMBER_DATABASE_URL=$PG_URL .venv/bin/python -m pytest -q --durations=15 \
        -m "not browser and not cluster" --ignore=tests/pool "$@"
elif [ "${CI:-}" = "true" ]; then
    echo "PostgreSQL at $PG_URL does not answer; CI runs every test on it" >&2
    exit 1
else
    echo "== PostgreSQL at $PG_URL does not answer: skipped the PostgreSQL pass" >&2
fi
