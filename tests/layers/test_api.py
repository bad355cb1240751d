"""Layers through the API: the resource's rules, pinning of the layers a function lists, and
functions importing from their layers when invoked."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from tests.conftest import make_zip
from tests.inprocess import Ember

Run = Callable[..., None]

USES_GREETINGS = """
import greetings

def handler(event, context):
    return {"greeting": greetings.greet(event["name"]), "layer": greetings.VERSION}
"""


def greetings(version: int) -> bytes:
    return make_zip({
        "python/greetings.py": f"VERSION = {version}\n\n"
                               "def greet(name):\n    return f'hello, {name}'\n",
    })


async def publish(ember: Ember, name: str, data: bytes, status: int = 201,
                  description: str = "") -> dict[str, Any]:
    answer = await ember.http.post(f"/layers/{name}/versions", json={
        "zip": base64.b64encode(data).decode(), "description": description,
    })
    assert answer.status_code == status, answer.text
    return dict(answer.json())


def fields(answer: Any) -> set[str]:
    return {e["field"] for e in answer.json()["error"]["details"]["errors"]}


def test_layer_resource_rules(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        first = await publish(ember, "greet", greetings(1), description="first")
        assert (first["layer"], first["version"], first["created"]) == ("greet", 1, True)
        assert first["description"] == "first" and len(first["code"]["sha256"]) == 64
        same = await publish(ember, "greet", greetings(1), status=200)
        assert (same["version"], same["created"]) == (1, False)
        second = await publish(ember, "greet", greetings(2))
        assert second["version"] == 2
        await publish(ember, "other", make_zip({"tool.py": "X = 1\n"}))

        listed = (await ember.http.get("/layers")).json()["layers"]
        assert [(x["name"], x["latest_version"]) for x in listed] == [("greet", 2), ("other", 1)]
        versions = (await ember.http.get("/layers/greet/versions")).json()["versions"]
        assert [v["version"] for v in versions] == [1, 2]
        got = await ember.http.get("/layers/greet/versions/1")
        assert got.status_code == 200 and got.json()["description"] == "first"

        for path in ("/layers/ghost/versions", "/layers/greet/versions/9",
                     "/layers/ghost/versions/1"):
            missing = await ember.http.get(path)
            assert missing.status_code == 404, path
            assert missing.json()["error"]["code"] == "LayerNotFound"
        bad = await ember.http.post("/layers/9bad/versions", json={"zip": ""})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidSpec"
        not_zip = await ember.http.post(
            "/layers/x/versions", json={"zip": base64.b64encode(b"nope").decode()}
        )
        assert not_zip.status_code == 400 and not_zip.json()["error"]["code"] == "InvalidCode"

        deleted = await ember.http.delete("/layers/greet/versions/2")
        assert deleted.status_code == 200 and deleted.json()["version"] == 2
        # Numbers are never reused.
        assert (await publish(ember, "greet", greetings(3)))["version"] == 3

    run(scenario)


def test_unknown_layers_are_refused_naming_the_field(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await publish(ember, "greet", greetings(1))
        code = {"zip": base64.b64encode(make_zip({"main.py": USES_GREETINGS})).decode()}
        bad = await ember.http.post("/functions", json={
            "name": "fn", "config": {"layers": ["greet", "ghost", "greet:7"]}, "code": code,
        })
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidSpec"
        assert fields(bad) == {"config.layers[1]", "config.layers[2]"}
        assert (await ember.http.get("/functions/fn")).status_code == 404

        await ember.deploy("fn", USES_GREETINGS)
        patched = await ember.http.patch("/functions/fn", json={"config": {"layers": ["nope:1"]}})
        assert patched.status_code == 400 and fields(patched) == {"config.layers[0]"}
        twice = await ember.http.patch("/functions/fn",
                                       json={"config": {"layers": ["greet", "greet:1"]}})
        assert twice.status_code == 400 and fields(twice) == {"config.layers[1]"}

    run(scenario)


def test_a_function_imports_from_its_layers(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await publish(ember, "greet", greetings(1))
        # A layer without a python/ directory goes on the path from its root.
        await publish(ember, "flat", make_zip({"shout.py": "def up(s):\n    return s.upper()\n"}))
        source = USES_GREETINGS.replace(
            "import greetings", "import greetings, shout"
        ).replace('greetings.greet(event["name"])', 'shout.up(greetings.greet(event["name"]))')
        created = await ember.deploy("fn", source, layers=["greet", "flat"])
        assert created["config"]["layers"] == ["greet:1", "flat:1"]
        answer = await ember.invoke("fn", {"name": "ada"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"greeting": "HELLO, ADA", "layer": 1}

    run(scenario)


def test_layer_versions_are_pinned(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await publish(ember, "greet", greetings(1))
        await ember.deploy("fn", USES_GREETINGS, layers=["greet"])
        published = await ember.http.post("/functions/fn/versions", json={})
        assert published.json()["config"]["layers"] == ["greet:1"]

        await publish(ember, "greet", greetings(2))
        await ember.settle()
        for qualifier in ("1", "latest"):
            answer = await ember.invoke("fn", {"name": "x"}, qualifier=qualifier)
            assert answer.status_code == 200, answer.text
            assert answer.json()["layer"] == 1, qualifier

        # Naming the layer again in an update pins its newest version; version 1 keeps its own.
        patched = await ember.http.patch("/functions/fn", json={"config": {"layers": ["greet"]}})
        assert patched.json()["config"]["layers"] == ["greet:2"]
        await ember.settle()
        assert (await ember.invoke("fn", {"name": "x"})).json()["layer"] == 2
        assert (await ember.invoke("fn", {"name": "x"}, qualifier="1")).json()["layer"] == 1

        # Version 1 of the layer is used by version 1 of fn, version 2 by latest.
        for number, holder in ((1, "fn:1"), (2, "fn:latest")):
            refused = await ember.http.delete(f"/layers/greet/versions/{number}")
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["details"]["used_by"] == [holder]
        assert (await ember.http.delete("/functions/fn/versions/1")).status_code == 200
        assert (await ember.http.delete("/layers/greet/versions/1")).status_code == 200
        assert (await ember.http.delete("/functions/fn")).status_code == 200
        assert (await ember.http.delete("/layers/greet/versions/2")).status_code == 200
        listed = (await ember.http.get("/layers")).json()["layers"]
        assert listed[0]["name"] == "greet" and listed[0]["latest_version"] is None

    run(scenario)


def test_layer_and_function_sharing_an_artifact(run: Run) -> None:
    """Deleting a function keeps the zip a layer version holds, and the other way round."""
    async def scenario(ember: Ember) -> None:
        data = make_zip({"main.py": "def handler(event, context):\n    return 1\n"})
        await publish(ember, "same", data)
        code = {"zip": base64.b64encode(data).decode()}
        created = await ember.http.post("/functions", json={"name": "fn", "code": code})
        assert created.status_code == 201
        assert (await ember.http.delete("/functions/fn")).status_code == 200
        sha = created.json()["code"]["sha256"]
        artifacts = ember.services.functions._artifacts
        assert artifacts.exists(sha)
        assert (await ember.http.delete("/layers/same/versions/1")).status_code == 200
        assert not artifacts.exists(sha)

    run(scenario)
