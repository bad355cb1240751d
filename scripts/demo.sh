#!/usr/bin/env bash
# Installs Ember, starts a server on the embedded defaults (SQLite, local files), deploys the
# example function, publishes it, points an alias at it, invokes it, deploys the FastAPI
# example and calls it through its HTTP trigger, then stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export EMBER_HOME=${EMBER_HOME:-$(mktemp -d)/ember}
PORT=${EMBER_DEMO_PORT:-8080}
export EMBER_URL=http://127.0.0.1:$PORT
ember=.venv/bin/ember

$ember server --port "$PORT" >"${TMPDIR:-/tmp}/ember-demo-server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -fsS "$EMBER_URL/healthz" >/dev/null 2>&1 && break
    kill -0 $server 2>/dev/null || { cat "${TMPDIR:-/tmp}/ember-demo-server.log"; exit 1; }
    sleep 0.1
done
echo "== ember server on $EMBER_URL, data in $EMBER_HOME"

set -x
$ember deploy examples/hello --publish --alias live -d "first release"
$ember fn list
$ember fn get hello
$ember version list hello
$ember alias list hello
$ember invoke hello -q live --data '{"name": "Ember"}'
$ember invoke hello -q live --data '{"name": "again"}'
$ember invoke hello --async --data '{"name": "queued"}' --wait
$ember logs hello
$ember stats hello
# A web function: a FastAPI app served inside Ember's instances, reached through its trigger.
$ember deploy examples/fastapi-app
curl -fsS "$EMBER_URL/http/quotes/quotes/1"; echo
