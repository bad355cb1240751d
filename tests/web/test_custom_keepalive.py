"""The proxy to a custom runtime and the app's kept-alive connections: a connection the app
closed while idle is not reused, and a request the app dropped unanswered is resent only
when that is safe (idempotent methods)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from tests.inprocess import Ember
from tests.waiting import until_true
from tests.web.test_custom_runtimes import CUSTOM, NODE, needs_node

Run = Callable[..., None]

# HTTP/1.1 with keep-alive; a connection idle for IDLE_S is closed (Node's keepAliveTimeout
# does the same, 5 s by default), and each close is logged once done. On a connection's
# second request and later, /flaky/... is read, counted, then dropped without an answer:
# the app closing the connection just as the proxy reuses it.
APP = r'''
import collections, http.server, json, os, sys

hits = collections.Counter()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = float(os.environ.get("IDLE_S", "60"))

    def setup(self):
        super().setup()
        self.served = 0

    def log_message(self, format, *args):
        print("app: " + format % args, file=sys.stderr, flush=True)

    def answer(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.served += 1
        key = f"{self.command} {self.path}"
        if self.path.startswith("/flaky") and self.served > 1:
            hits[key] += 1
            self.close_connection = True
            return
        hits[key] += 1
        data = json.dumps({"hits": dict(hits), "body": body.decode()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = answer


class Server(http.server.HTTPServer):
    def close_request(self, request):
        super().close_request(request)
        print("app: connection closed", file=sys.stderr, flush=True)


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''

CONFIG = {"kind": "custom", "command": [sys.executable, "app.py"]}


async def wait_for_log(ember: Ember, name: str, text: str, count: int) -> None:
    """Until the function's logs hold ``count`` lines containing ``text`` (a deadline, not
    a number of polls: a poll can take no time at all)."""

    async def enough() -> bool:
        await ember.settle()
        logs = (await ember.http.get(f"/functions/{name}/logs",
                                     params={"grep": text, "limit": 1000})).json()["logs"]
        return len(logs) >= count

    await until_true(enough, message=f"{count} lines with {text!r} in the logs of {name}")


def test_a_connection_the_app_closed_while_idle_is_not_reused(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy_files("kept", {"app.py": APP}, **CONFIG,
                                 environment={"IDLE_S": "0.2"})
        for round_ in range(1, 4):
            invoked = await ember.invoke("kept", {"round": round_})
            assert invoked.status_code == 200, invoked.text
            assert invoked.json()["hits"]["POST /invoke"] == round_  # each sent once
            # The app closes the idle connection; the next request must open a new one.
            # (The startup probe's connection, then one kept-alive connection per round.)
            await wait_for_log(ember, "kept", "connection closed", 1 + round_)
        posted = await ember.http.post("/functions/kept/http/things", content=b"thing")
        assert posted.status_code == 200, posted.text
        assert posted.json()["body"] == "thing"

    run(scenario)


def test_a_dropped_request_is_resent_only_when_idempotent(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy_files("flaky", {"app.py": APP}, **CONFIG)
        first = await ember.http.get("/functions/flaky/http/flaky/a")
        assert first.status_code == 200, first.text
        # Dropped on the kept-alive connection, then answered on a fresh one.
        again = await ember.http.get("/functions/flaky/http/flaky/b")
        assert again.status_code == 200, again.text
        assert again.json()["hits"]["GET /flaky/b"] == 2
        # A POST the app may have acted on is not sent twice: the caller is told.
        posted = await ember.http.post("/functions/flaky/http/flaky/c", content=b"once")
        assert posted.status_code == 502, posted.text
        assert "did not answer" in posted.json()["error"]["message"]
        hits = (await ember.http.get("/functions/flaky/http/hits")).json()["hits"]
        assert hits["POST /flaky/c"] == 1

    run(scenario)


# Node's own keep-alive timeout, made short; the server logs each closed connection.
NODE_SERVER = r"""
const http = require("http");
const server = http.createServer((req, res) => {
  const parts = [];
  req.on("data", (chunk) => parts.push(chunk));
  req.on("end", () => {
    res.writeHead(200, {"content-type": "application/json"});
    res.end(JSON.stringify({body: Buffer.concat(parts).toString()}));
  });
});
server.keepAliveTimeout = 100;
server.on("connection", (socket) => socket.on("close", () => console.log("connection closed")));
server.listen(parseInt(process.env.PORT, 10), "127.0.0.1");
"""


@needs_node
def test_node_closing_an_idle_connection_does_not_fail_the_next_post(run: Run) -> None:
    assert NODE is not None

    async def scenario(ember: Ember) -> None:
        await ember.deploy_files("node", {"server.js": NODE_SERVER},
                                 **{**CUSTOM, "startup_probe": {"path": "/"}})
        for round_ in range(1, 4):
            invoked = await ember.invoke("node", {"round": round_})
            assert invoked.status_code == 200, invoked.text
            assert json.loads(invoked.json()["body"]) == {"round": round_}
            # The startup probe's connection, then one kept-alive connection per round.
            await wait_for_log(ember, "node", "connection closed", 1 + round_)
        posted = await ember.http.post("/functions/node/http/x", content=b"after idle")
        assert posted.status_code == 200, posted.text
        assert posted.json()["body"] == "after idle"

    run(scenario)
