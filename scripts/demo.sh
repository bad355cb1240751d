#!/usr/bin/env bash
# Installs Ember, starts a server of its own on the embedded defaults (SQLite, local files, a
# fresh data directory, a free port or EMBER_DEMO_PORT), deploys the example function,
# publishes it, points an alias at it, invokes it, calls it through an HTTP trigger, deploys
# the FastAPI example and calls it through its trigger, runs an order through the
# order-pipeline workflow (examples/order-pipeline), then stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
py=.venv/bin/python
ember=.venv/bin/ember

# The demo's server is its own: nothing of the caller's Ember settings (a database, a queue,
# a home, a URL) may point it, or its commands, elsewhere.
for name in $(compgen -e | grep '^EMBER_' || true); do
    [ "$name" = EMBER_DEMO_PORT ] || unset "$name"
done

port_in_use() {
    "$py" -c 'import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$1"
}

# Whether process $2 is the one listening on TCP port $1 (Linux: /proc; elsewhere assumed).
listens() {
    "$py" - "$1" "$2" <<'EOF'
import os, sys
port, pid = int(sys.argv[1]), sys.argv[2]
if not os.path.exists("/proc/net/tcp"):
    sys.exit(0)
inodes = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        rows = open(table).read().splitlines()[1:]
    except OSError:
        continue
    for row in rows:
        fields = row.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
try:
    fds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
except OSError:
    sys.exit(1)
sys.exit(0 if inodes & fds else 1)
EOF
}

# GET (or POST with a body) a URL; prints the answer, fails on an error status.
fetch() {
    { local -; set +x; } 2>/dev/null
    "$py" - "$@" <<'EOF'
import sys, urllib.request
url, body = sys.argv[1], (sys.argv[2].encode() if len(sys.argv) > 2 else None)
with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as answer:
    print(answer.read().decode())
EOF
}

if [ -n "${EMBER_DEMO_PORT:-}" ]; then
    PORT=$EMBER_DEMO_PORT
    if port_in_use "$PORT"; then
        echo "demo: port $PORT (EMBER_DEMO_PORT) is already in use by another program;" \
             "free it, or unset EMBER_DEMO_PORT to let the demo pick a free port" >&2
        exit 1
    fi
else
    PORT=$("$py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
fi
export EMBER_HOME
EMBER_HOME=$(mktemp -d)/ember
export EMBER_URL=http://127.0.0.1:$PORT
log=$(dirname "$EMBER_HOME")/server.log

$ember server --port "$PORT" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
ready=""
for _ in $(seq 300); do
    if ! kill -0 $server 2>/dev/null; then
        echo "demo: the server exited before it was ready; its log ($log):" >&2
        cat "$log" >&2
        exit 1
    fi
    if fetch "$EMBER_URL/healthz" >/dev/null 2>&1; then
        ready=yes
        break
    fi
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "demo: the server did not answer on $EMBER_URL within 30 s; its log ($log):" >&2
    cat "$log" >&2
    exit 1
fi
if ! listens "$PORT" $server; then
    echo "demo: $EMBER_URL answers, but not from the server the demo started (pid $server):" \
         "another program took port $PORT; run the demo again" >&2
    exit 1
fi
echo "== ember server (pid $server) on $EMBER_URL, data in $EMBER_HOME, log in $log"

set -x
$ember deploy examples/hello --publish --alias live -d "first release"
$ember fn list
$ember fn get hello
$ember invoke hello -q live --data '{"name": "Ember"}'
$ember fn update hello --set environment.GREETING=Bonjour
$ember version publish hello -d "French greeting"
$ember version list hello
$ember alias set hello live 2 --additional-version 1 --weight 0.1
$ember alias list hello
$ember invoke hello -q live --data '{"name": "again"}'
$ember invoke hello --async --data '{"name": "queued"}' --wait
# An HTTP trigger on the alias: the handler reads the request's JSON body.
$ember trigger create hello-web -f hello -q live --http /hello
fetch "$EMBER_URL/http/hello" '{"name": "Ada"}'
$ember fn invocations hello
$ember logs hello
$ember stats hello
# A web function: a FastAPI app served inside Ember's instances, reached through its trigger.
$ember deploy examples/fastapi-app
fetch "$EMBER_URL/http/quotes/quotes/1"
# A workflow: validate an order, charge and reserve at once, wait for its "shipped" event,
# notify. An event sent before the execution listens is kept for it, so no wait is needed.
for fn in examples/order-pipeline/functions/*/; do $ember deploy "$fn"; done
$ember workflow deploy examples/order-pipeline/workflow.yaml
order=$($ember workflow run order-pipeline --data @examples/order-pipeline/order.json)
$ember event send --type com.shop.shipped \
    --data '{"orderId": "A-1001", "carrier": "DHL", "tracking": "JD014600"}'
$ember execution watch "$order"   # the task tree until it ends; fails unless it succeeded
$ember execution get "$order"
# The web console, served by the same server: log in with the admin key the server wrote.
fetch "$EMBER_URL/console" >/dev/null
{ set +x; } 2>/dev/null
echo "demo: done. The web console was at $EMBER_URL/console (admin key in $EMBER_HOME/admin.key);" \
     "this server stops now — run 'ember server' and open http://127.0.0.1:8080/console to keep one."
