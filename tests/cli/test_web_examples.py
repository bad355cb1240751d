"""The web examples, deployed with ``ember deploy`` on a real server and called through their
HTTP triggers: a Flask app (its requirements.txt built), a FastAPI app, a Node.js server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from tests import apicalls as api
from tests.cli.conftest import Cli

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_the_flask_example(cli: Cli) -> None:
    cli.ok("deploy", EXAMPLES / "flask-app")
    with httpx.Client(base_url=f"{cli.url}/http/notes", timeout=30) as http:
        added = http.post("/", json={"text": "buy milk"})
        assert added.status_code == 200, added.text
        assert "visitor=known" in added.headers["set-cookie"]
        form = http.post("/", data={"text": "call mum"})
        assert form.status_code == 303
        assert form.headers["location"].endswith("/http/notes/")
        listed = http.get("/").json()
        assert listed["title"] == "Team notes" and listed["visitor"] == "known"
        assert {n["text"] for n in listed["notes"]} >= {"buy milk", "call mum"}
        export = http.get("/export")
        assert export.headers["content-type"] == "application/x-ndjson"
        assert [json.loads(line)["text"] for line in export.text.splitlines()][:1] == [
            "buy milk"]
        assert http.get("/999").status_code == 404
        assert http.delete(f"/{added.json()['id']}").status_code == 204
    builds = cli.ok("build", "list", "flask-notes")
    assert "succeeded" in builds.stdout


def test_the_fastapi_example(cli: Cli) -> None:
    cli.ok("deploy", EXAMPLES / "fastapi-app")
    with httpx.Client(base_url=f"{cli.url}/http/quotes", timeout=30) as http:
        first = http.get("/quotes/1")
        assert first.status_code == 200, first.text
        assert first.json()["text"].startswith("Simplicity")
        assert http.get("/quotes/99").json() == {"detail": "no quote 99"}
        made = http.post("/quotes", json={"text": "Ship it."})
        assert made.status_code == 201
        bad = http.post("/quotes", json={"words": 1})
        assert bad.status_code == 422  # FastAPI's own validation error
        events = http.get("/ticker", params={"count": 2})
        assert events.text.count("data: ") == 2
    invoked = cli.ok("invoke", "fastapi-quotes", "--data", '{"n": 1}', "--json")
    assert json.loads(invoked.stdout) == {"quotes": 4, "event": {"n": 1}}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_node_example(cli: Cli) -> None:
    cli.ok("deploy", EXAMPLES / "node-server")
    answer = api.get(f"{cli.url}/http/node/hello", params={"name": "Ada"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] == "Hello from Node, Ada!"
    invoked = cli.ok("invoke", "node-hello", "--data", '{"n": 2}', "--json")
    assert json.loads(invoked.stdout) == {"greeting": "Hello from Node", "event": {"n": 2}}
