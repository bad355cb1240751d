"""GET /functions/{name}/instances and ``list_instances``: each pool with what it has and
wants and why, each instance with its state, load, times and memory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ember.client import AsyncClient
from tests.auth.test_keys import as_key, make_key
from tests.conftest import HELLO, HOST_FILES
from tests.inprocess import Ember
from tests.router.test_invoke import GATED
from tests.waiting import until

Run = Callable[..., None]


async def instances(ember: Ember, name: str) -> dict[str, Any]:
    answer = await ember.http.get(f"/functions/{name}/instances")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_an_instance_is_busy_while_it_runs_then_idle(run: Run, tmp_path: Path) -> None:
    gate = tmp_path / "go"

    async def scenario(ember: Ember) -> None:
        await ember.deploy("gated", GATED)
        gate.touch()
        await ember.invoke("gated", {"until": str(gate)})
        gate.unlink()
        call = asyncio.create_task(ember.invoke("gated", {"until": str(gate)}))
        await until(lambda: ember.busy("gated") == 1, message="the invocation running")

        now = await instances(ember, "gated")
        assert now["function"] == "gated"
        assert now["pools"] == [{
            "version": "latest", "qualifiers": ["latest"], "current": 1, "starting": 0,
            "desired": 1, "reason": "on demand", "draining": False, "shortfall": None,
            "keep_alive": "fixed 120 s", "node": ember.services.nodes.id,
        }]
        [busy] = now["instances"]
        assert (busy["version"], busy["state"], busy["in_flight"]) == ("latest", "busy", 1)
        assert busy["memory_mb"] > 0
        started = datetime.fromisoformat(busy["started_at"])
        assert started.utcoffset() == timedelta(0)
        assert datetime.fromisoformat(busy["last_used_at"]) >= started

        gate.touch()
        assert (await call).status_code == 200
        [idle] = (await instances(ember, "gated"))["instances"]
        assert (idle["id"], idle["state"], idle["in_flight"]) == (busy["id"], "idle", 0)
        assert idle["last_used_at"] > busy["last_used_at"]

    run(scenario, **HOST_FILES)


def test_min_instances_and_aliases_show_in_each_pool(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("warm", HELLO["main.py"], min_instances=1)
        assert (await ember.http.post("/functions/warm/versions")).status_code == 201
        answer = await ember.http.put("/functions/warm/aliases/live", json={"version": 1})
        assert answer.status_code == 201, answer.text
        await ember.settle()
        await until(lambda: ember.idle("warm") == 2, message="latest and live kept warm")

        now = await instances(ember, "warm")
        assert [(p["version"], p["qualifiers"], p["current"], p["desired"], p["reason"])
                for p in now["pools"]] == [
            ("latest", ["latest"], 1, 1, "min_instances: 1"),
            ("1", ["live"], 1, 1, "min_instances: 1"),
        ]
        assert sorted(i["version"] for i in now["instances"]) == ["1", "latest"]
        assert {i["state"] for i in now["instances"]} == {"idle"}

    run(scenario)


def test_unknown_function_is_404_and_a_viewer_may_look(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        missing = await ember.http.get("/functions/nope/instances")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "FunctionNotFound"

        await ember.deploy("hello", HELLO["main.py"])
        assert (await ember.invoke("hello", 1)).status_code == 200
        viewer = await make_key(ember, "watcher", "viewer")
        async with as_key(ember, viewer) as http:
            seen = await http.get("/functions/hello/instances")
        assert seen.status_code == 200, seen.text
        assert [i["state"] for i in seen.json()["instances"]] == ["idle"]

    run(scenario)


def test_sdk_lists_instances(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("hello", HELLO["main.py"])
        async with AsyncClient("http://ember",
                               transport=httpx.ASGITransport(app=ember.app)) as client:
            empty = await client.list_instances("hello")
            assert (empty.function, empty.pools, empty.instances) == ("hello", [], [])
            assert (await ember.invoke("hello", 1)).status_code == 200
            now = await client.list_instances("hello")
        assert [(p.version, p.current) for p in now.pools] == [("latest", 1)]
        [instance] = now.instances
        assert instance.state == "idle" and instance.memory_mb and instance.memory_mb > 0

    run(scenario)


def test_warm_starts_instances_of_a_qualifier_now(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("hello", HELLO["main.py"], max_instances=3)
        assert (await ember.http.post("/functions/hello/versions")).status_code == 201
        answer = await ember.http.put("/functions/hello/aliases/live", json={"version": 1})
        assert answer.status_code == 201, answer.text

        warmed = await ember.http.post("/functions/hello/warm",
                                       json={"qualifier": "live", "instances": 2})
        assert warmed.status_code == 200, warmed.text
        assert warmed.json() == {"started": 2}
        now = await instances(ember, "hello")
        assert [(p["version"], p["qualifiers"], p["current"]) for p in now["pools"]] == [
            ("1", ["live"], 2)]
        assert [i["state"] for i in now["instances"]] == ["idle", "idle"]

        # max_instances bounds what starts.
        async with AsyncClient("http://ember",
                               transport=httpx.ASGITransport(app=ember.app)) as client:
            assert (await client.warm("hello", instances=5)).started == 3
            assert (await client.warm("hello", qualifier="1", instances=5)).started == 1
        assert ember.instances("hello") == 6

        for body, field in [({"instances": 0}, "instances"), ({"instances": 101}, "instances"),
                            ({"qualifier": "no such", "instances": 1}, "qualifier")]:
            refused = await ember.http.post("/functions/hello/warm", json=body)
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["code"] == "InvalidSpec"
            assert [e["field"] for e in error["details"]["errors"]] == [field]
        missing = await ember.http.post("/functions/nope/warm", json={"instances": 1})
        assert missing.status_code == 404
        unaliased = await ember.http.post("/functions/hello/warm",
                                          json={"qualifier": "gone", "instances": 1})
        assert unaliased.json()["error"]["code"] == "AliasNotFound"

    run(scenario)


def test_the_version_zygote_is_listed_with_its_memory(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        if ember.services.launcher.isolation is None:
            pytest.skip("without bubblewrap, versions share the server's zygote: none listed")
        await ember.deploy("hello", HELLO["main.py"])
        assert (await ember.invoke("hello", {})).status_code == 200
        now = await instances(ember, "hello")
        [zygote] = [z for z in now["zygotes"] if z["kind"] == "zygote"]
        assert zygote["version"] == "latest"
        assert zygote["children"] >= 1  # the instance (and a spare) forked from it
        assert zygote["rss_mb"] > zygote["pss_mb"] > 0
        assert zygote["node"] == ember.services.nodes.id
        assert zygote["modules"] == [] and zygote["import_ms"] is None

    run(scenario)
