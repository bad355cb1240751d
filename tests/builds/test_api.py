"""Dependency builds through the API: a function importing a package its requirements.txt
names, the cache, a broken requirements file failing cleanly on create and update, the
timeout, and a rebuild when the dependency directory is gone."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from ember.artifacts.filesystem import remove_tree
from tests.conftest import make_zip
from tests.inprocess import Ember

Run = Callable[..., None]

REQUIREMENTS = "inflection==0.5.1\n"
BROKEN = "this is not a requirement !!\n"

CAMEL = """
import inflection

def handler(event, context):
    return {"camel": inflection.camelize(event["name"]), "from": inflection.__file__}
"""

PLAIN = "def handler(event, context):\n    return {'plain': True}\n"


def code(source: str, requirements: str | None = REQUIREMENTS) -> dict[str, str]:
    files = {"main.py": source}
    if requirements is not None:
        files["requirements.txt"] = requirements
    return {"zip": base64.b64encode(make_zip(files)).decode()}


async def create(ember: Ember, name: str, source: str, requirements: str | None = REQUIREMENTS,
                 status: int = 201) -> dict[str, Any]:
    answer = await ember.http.post("/functions", json={
        "name": name, "code": code(source, requirements),
    })
    assert answer.status_code == status, answer.text
    await ember.settle()
    return dict(answer.json())


async def builds_of(ember: Ember, name: str) -> list[dict[str, Any]]:
    answer = await ember.http.get(f"/functions/{name}/builds")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["builds"])


def test_a_function_imports_what_its_requirements_name(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await create(ember, "fn", CAMEL)
        answer = await ember.invoke("fn", {"name": "dependency_builds"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["camel"] == "DependencyBuilds"
        # From the build's layer: its host path, or where the sandbox shows it.
        assert "/deps/" in answer.json()["from"] or "/var/layers/" in answer.json()["from"]

        [build] = await builds_of(ember, "fn")
        assert (build["status"], build["cached"], build["function"]) == ("succeeded", False, "fn")
        assert build["python"].startswith("cpython-") and len(build["key"]) == 64
        assert build["finished_at"] is not None and build["error"] is None
        full = (await ember.http.get(f"/builds/{build['id']}")).json()
        assert "Successfully installed inflection-0.5.1" in full["log"]
        assert full["log_offset"] == 0 and full["log_size"] == len(full["log"])
        tail = (await ember.http.get(f"/builds/{build['id']}", params={"offset": 10})).json()
        assert (tail["log_offset"], tail["log"]) == (10, full["log"][10:])

        # The same requirements with other code: a cache hit, pip does not run again.
        updated = await ember.http.put("/functions/fn/code", json=code(
            CAMEL.replace("camelize", "underscore").replace("DependencyBuilds", "")
        ))
        assert updated.status_code == 200, updated.text
        await ember.settle()
        assert [b["id"] for b in await builds_of(ember, "fn")] == [build["id"]]
        again = await ember.invoke("fn", {"name": "DependencyBuilds"})
        assert again.json()["camel"] == "dependency_builds"

        # A build asked for on its own is a cache hit too.
        started = await ember.http.post("/builds", json={**code(PLAIN), "function": "fn"})
        assert started.status_code == 202, started.text
        hit = started.json()
        assert (hit["status"], hit["cached"], hit["key"]) == ("succeeded", True, build["key"])
        assert [b["id"] for b in await builds_of(ember, "fn")] == [hit["id"], build["id"]]

        # Deleting the function deletes its builds.
        assert (await ember.http.delete("/functions/fn")).status_code == 200
        assert await builds_of(ember, "fn") == []

    run(scenario)


def test_a_broken_requirements_file_fails_the_build_cleanly(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        failed = await create(ember, "fn", CAMEL, BROKEN, status=422)
        error = failed["error"]
        build_id = error["details"]["build_id"]
        assert error["code"] == "BuildFailed" and build_id in error["message"]
        assert "Invalid requirement" in error["message"]
        assert f"ember build logs {build_id}" in error["message"]
        assert "this is not a requirement !!" in error["details"]["log_tail"]
        assert (await ember.http.get("/functions/fn")).status_code == 404
        # Nothing uses the uploaded code: it is not kept.
        assert ember.services.functions._artifacts.list() == []  # type: ignore[attr-defined]

        build = (await ember.http.get(f"/builds/{build_id}")).json()
        assert (build["status"], build["function"]) == ("failed", "fn")
        assert "Invalid requirement" in build["error"] and "Invalid requirement" in build["log"]
        assert [b["id"] for b in await builds_of(ember, "fn")] == [build_id]

        # On update, latest keeps its code.
        created = await create(ember, "fn", PLAIN, requirements=None)
        refused = await ember.http.put("/functions/fn/code", json=code(CAMEL, BROKEN))
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "BuildFailed"
        current = (await ember.http.get("/functions/fn")).json()
        assert current["code"] == created["code"]
        assert (await ember.invoke("fn", {})).json() == {"plain": True}

        missing = await ember.http.get("/builds/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "BuildNotFound"
        nothing = await ember.http.post("/builds", json=code(PLAIN, requirements=None))
        assert nothing.status_code == 400 and nothing.json()["error"]["code"] == "InvalidCode"
        bad_name = await ember.http.post("/builds", json={**code(PLAIN), "function": "9x"})
        assert bad_name.status_code == 400 and bad_name.json()["error"]["code"] == "InvalidSpec"

    run(scenario)


def test_a_build_past_its_timeout_is_stopped(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        failed = await create(ember, "fn", CAMEL, status=422)
        assert "EMBER_BUILD_TIMEOUT_S" in failed["error"]["message"]
        assert (await ember.http.get("/functions/fn")).status_code == 404
        assert list((ember.services.settings.home / "deps").iterdir()) == []

    run(scenario, build_timeout_s=0.05)


def test_missing_dependencies_are_built_again_when_the_function_is_resolved(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await create(ember, "fn", CAMEL)
        [first] = await builds_of(ember, "fn")
        # As if the server's Python had changed: the artifact for this key is not there,
        # on this node nor shared through the database (the artifact store on PostgreSQL).
        remove_tree(ember.services.builds.path(first["key"]))
        ember.services.builds._store.unshare(first["key"])
        patched = await ember.http.patch("/functions/fn", json={"config": {"memory_mb": 300}})
        assert patched.status_code == 200
        await ember.settle()
        answer = await ember.invoke("fn", {"name": "built_again"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["camel"] == "BuiltAgain"
        # Resolved by the invocation and by the router's reconciling alike: built once.
        second, _ = await builds_of(ember, "fn")
        assert (second["status"], second["cached"]) == ("succeeded", False)

    run(scenario)
