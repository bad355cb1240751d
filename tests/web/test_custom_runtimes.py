"""Custom runtimes: the user's own HTTP server (Node.js here) started by a command with
$PORT, probed before traffic, health-checked while it runs, and proxied."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

import pytest

from tests.inprocess import Ember
from tests.triggers.test_api import trigger

Run = Callable[..., None]

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")

SERVER_JS = r"""
const http = require("http");
const port = parseInt(process.env.PORT, 10);
let healthy = true;

http.createServer((req, res) => {
  const parts = [];
  req.on("data", (chunk) => parts.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(parts);
    const url = new URL(req.url, "http://localhost");
    if (url.pathname === "/healthz") {
      res.writeHead(healthy ? 200 : 503);
      res.end(healthy ? "ok" : "sick");
    } else if (url.pathname === "/sicken") {
      healthy = false;
      console.log("turning unhealthy");
      res.end("now sick");
    } else if (url.pathname === "/invoke") {
      res.writeHead(200, {"content-type": "application/json"});
      res.end(JSON.stringify({event: JSON.parse(body.toString() || "null"),
                              request_id: req.headers["x-ember-request-id"]}));
    } else if (url.pathname === "/bytes") {
      res.writeHead(200, {"content-type": "application/octet-stream"});
      res.end(Buffer.from([0, 1, 2, 254, 255]));
    } else if (url.pathname === "/stream") {
      res.writeHead(200, {"content-type": "text/plain"});
      let i = 0;
      const timer = setInterval(() => {
        res.write(`tick ${i}\n`);
        if (++i === 3) { clearInterval(timer); res.end(); }
      }, 100);
    } else if (url.pathname.startsWith("/missing")) {
      res.writeHead(404, {"content-type": "text/plain"});
      res.end("node says no");
    } else {
      res.writeHead(200, {"content-type": "application/json",
                          "set-cookie": ["a=1; Path=/", "b=2; HttpOnly"]});
      res.end(JSON.stringify({
        method: req.method, path: url.pathname, query: url.searchParams.get("q"),
        body: body.toString(), cookie: req.headers["cookie"] || null,
        greeting: process.env.GREETING, pid: process.pid,
      }));
    }
  });
}).listen(port, "127.0.0.1", () => console.log(`listening on ${port}`));
"""

CUSTOM = {"kind": "custom", "command": ["node", "server.js"],
          "startup_probe": {"path": "/healthz", "timeout_s": 10}}


async def gone(pids: set[int]) -> bool:
    """Whether every process of ``pids`` ends (within 2 s)."""
    for _ in range(100):
        alive = set()
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.add(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        await asyncio.sleep(0.02)
    return False


def instance_tree(ember: Ember, name: str) -> set[int]:
    """The host pids of ``name``'s live instances and of every process they started (a pid
    a function reports is one of its sandbox's PID namespace, not the host's)."""
    roots = {i.pid for p in ember.services.router._pools.pools() if p.key.function == name
             for i in p.instances() if i.alive}
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, level = set(roots), set(roots)
    while level:
        level = {pid for pid, parent in parents.items() if parent in level} - found
        found |= level
    return found


async def deploy_custom(ember: Ember, name: str, files: dict[str, str | bytes],
                        **config: Any) -> None:
    await ember.deploy_files(name, files, **config)
    await trigger(ember, f"{name}-http", name, {
        "kind": "http", "path": f"/{name}", "methods": ["GET", "POST", "PUT"]})
    await ember.settle()


@needs_node
def test_node_server_as_a_custom_runtime(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await deploy_custom(ember, "node", {"server.js": SERVER_JS}, **CUSTOM,
                            environment={"GREETING": "hi from ember"})
        http = ember.http
        got = await http.get("/http/node/things/1", params={"q": "x y"},
                             headers={"cookie": "session=abc"})
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["method"] == "GET" and body["path"] == "/things/1"
        assert body["query"] == "x y" and body["cookie"] == "session=abc"
        assert body["greeting"] == "hi from ember"
        assert got.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
        assert got.headers["x-ember-cold-start"] == "true"

        posted = await http.post("/http/node/things", content=b"payload")
        assert posted.json()["body"] == "payload" and posted.json()["method"] == "POST"
        assert posted.headers["x-ember-cold-start"] == "false"
        assert posted.json()["pid"] == body["pid"]  # the same server, kept warm

        raw = await http.get("/http/node/bytes")
        assert raw.content == bytes([0, 1, 2, 254, 255])
        missing = await http.get("/http/node/missing/thing")
        assert missing.status_code == 404 and missing.text == "node says no"
        streamed = await http.get("/http/node/stream")
        assert streamed.text == "tick 0\ntick 1\ntick 2\n"

        # Direct invocations reach the same server as POST /invoke.
        invoked = await ember.invoke("node", {"n": 5})
        assert invoked.status_code == 200, invoked.text
        assert invoked.json()["event"] == {"n": 5}
        assert invoked.json()["request_id"] == invoked.headers["x-ember-request-id"]

        # What the server prints is in the function's logs.
        logs = (await http.get("/functions/node/logs")).json()["logs"]
        assert any(r["line"].startswith("listening on ") for r in logs), logs

        # Deleting the function stops its instances, and their servers with them.
        tree = instance_tree(ember, "node")
        assert len(tree) >= 2  # the instance and the server it started
        assert (await http.delete("/functions/node")).status_code == 200
        assert await gone(tree)

    run(scenario)


def test_custom_runtime_failing_its_startup_probe_gets_no_traffic(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        # Runs, but never listens: the probe times out.
        await deploy_custom(
            ember, "mute", {"idle.py": "import time\nprint('up, not listening')\ntime.sleep(60)\n"},
            kind="custom", command=[sys.executable, "idle.py"],
            startup_probe={"path": "/ready", "timeout_s": 0.8},
        )
        answer = await ember.http.get("/http/mute/")
        assert answer.status_code == 502, answer.text
        error = answer.json()["error"]
        assert error["code"] == "InitError"
        assert "startup probe GET /ready" in error["message"]
        assert "did not succeed within 0.8 s" in error["message"]
        assert ember.instances("mute") == 0

        # Exits at once: said so, with its status.
        await deploy_custom(
            ember, "quits", {"quit.py": "import sys\nprint('bad config')\nsys.exit(3)\n"},
            kind="custom", command=[sys.executable, "quit.py"],
        )
        answer = await ember.http.get("/http/quits/")
        assert answer.status_code == 502
        assert "exited with status 3 before its startup probe" in answer.json()["error"][
            "message"]
        logs = (await ember.http.get("/functions/quits/logs")).json()["logs"]
        assert any(r["line"] == "bad config" for r in logs), logs

        # A command that does not exist.
        await deploy_custom(ember, "ghost", {"x.txt": "x"}, kind="custom",
                            command=["no-such-program-anywhere"])
        answer = await ember.http.get("/http/ghost/")
        assert answer.status_code == 502
        assert "cannot start the command" in answer.json()["error"]["message"]

    run(scenario)


@needs_node
def test_unhealthy_custom_runtime_is_replaced(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await deploy_custom(
            ember, "node", {"server.js": SERVER_JS}, **CUSTOM, min_instances=1,
            health_check={"path": "/healthz", "interval_s": 0.1, "timeout_s": 1,
                          "failure_threshold": 2},
        )
        # The instance min_instances asks for, before any traffic (which would otherwise
        # cold-start one of its own meanwhile).
        for _ in range(400):
            old = set(alive_instances(ember, "node"))
            if old:
                break
            await asyncio.sleep(0.05)
        assert len(old) == 1
        first = (await ember.http.get("/http/node/a")).json()["pid"]
        assert (await ember.http.get("/http/node/a")).json()["pid"] == first
        assert set(alive_instances(ember, "node")) == old
        tree = instance_tree(ember, "node")
        assert len(tree) >= 2  # the instance and the server it started
        await ember.http.get("/http/node/sicken")
        # Two failed checks 0.1 s apart, the instance exits, and min_instances brings a
        # new one up without waiting for traffic.
        for _ in range(200):
            now = set(alive_instances(ember, "node"))
            if now and not now & old:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the unhealthy instance was not replaced")
        after = await ember.http.get("/http/node/a")
        assert after.status_code == 200
        assert after.json()["pid"] != first
        assert after.headers["x-ember-cold-start"] == "false"  # the replacement was ready
        assert await gone(tree), "the unhealthy instance's server outlived it"
        logs = (await ember.http.get("/functions/node/logs")).json()["logs"]
        lines = [r["line"] for r in logs]
        assert any("health check GET /healthz failed (2/2)" in line for line in lines), lines
        assert any("unhealthy" in line and "replaced" in line for line in lines), lines

    run(scenario)


def alive_instances(ember: Ember, name: str) -> list[str]:
    return [i.id for p in ember.services.router._pools.pools() if p.key.function == name
            for i in p.instances() if i.alive]
