"""One view: a control-plane change made through one node reaches the caches of the others
(PostgreSQL LISTEN/NOTIFY), and a node whose listening connection dropped treats everything
as changed once it is back.

Each propagation is awaited with a generous deadline (a loaded machine is only slower); the
time it took is printed (``pytest -s``), not asserted."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable

import httpx
import sqlalchemy as sa

from ember.clock import SystemClock
from ember.cluster.changes import CHANNEL, FUNCTION, KEY, PostgresChangeBus
from tests import apicalls as api
from tests.cluster.harness import Cluster, wait_alive
from tests.cluster.test_cluster import deploy
from tests.conftest import make_zip
from tests.waiting import until, wait_until

SOURCE = ("import os\ndef handler(event, context):\n"
          "    return {'code': %r, 'color': os.environ.get('COLOR')}\n")


def code(tag: str) -> dict[str, str]:
    return {"zip": base64.b64encode(make_zip({"main.py": SOURCE % tag})).decode()}


def invoke(url: str, function: str = "f", qualifier: str | None = None) -> httpx.Response:
    params = {"qualifier": qualifier} if qualifier else {}
    return api.post(f"{url}/functions/{function}/invoke", params=params, json={},
                    timeout=30)


def answers(url: str, expected: dict[str, object], path: str = "/f",
            qualifier: str | None = None) -> Callable[[], bool]:
    """Whether the node at ``url`` runs what is ``expected``, through the API and through
    the HTTP trigger at ``path``. A trigger runs its function on the node it is served by
    (the API may send an invocation to another node): that node's own cache answers."""
    def check() -> bool:
        answer = invoke(url, qualifier=qualifier)
        served = httpx.post(f"{url}/http{path}", json={}, timeout=30)
        return (answer.status_code == 200 and answer.json() == expected
                and served.status_code == 200 and served.json() == expected)
    return check


def refuses(url: str, status: int, code: str, function: str = "f",
            path: str | None = "/f") -> Callable[[], bool]:
    """Whether the node at ``url`` refuses ``function`` with ``status`` and ``code``,
    through the API and through the HTTP trigger at ``path`` (404 once it is gone)."""
    def check() -> bool:
        answer = invoke(url, function)
        if answer.status_code != status or answer.json()["error"]["code"] != code:
            return False
        return path is None or httpx.post(f"{url}/http{path}", json={},
                                          timeout=30).status_code == status
    return check


def http_trigger(url: str, name: str, function: str, qualifier: str = "latest") -> None:
    ok(api.post(f"{url}/triggers", json={
        "name": name, "function": function, "qualifier": qualifier,
        "source": {"kind": "http", "path": f"/{name}"}}), 201)


def propagated(cluster: Cluster, what: str, *checks: Callable[[], bool]) -> float:
    """Wait until every check holds (a change just answered on its node); print how long
    that took."""
    started = time.monotonic()
    for check in checks:
        wait_until(check, timeout=30, interval=0.01, message=f"{what}\n{cluster.logs()}")
    took = time.monotonic() - started
    print(f"\npropagated in {took * 1000:.0f} ms: {what}")
    return took


def ok(answer: httpx.Response, status: int = 200) -> httpx.Response:
    assert answer.status_code == status, answer.text
    return answer


def test_function_changes_made_on_one_node_reach_the_others(cluster: Cluster) -> None:
    for name in ("a", "b", "c"):
        cluster.start(name)
    wait_alive(cluster, ["a", "b", "c"], on="a")
    a, b, c = (cluster[n].url for n in ("a", "b", "c"))
    deploy(a, "f", SOURCE % "one", environment={"COLOR": "red"})
    http_trigger(a, "f", "f")
    for url in (b, c):  # both cache the route
        propagated(cluster, "the trigger served", answers(url, {"code": "one", "color": "red"}))

    ok(api.put(f"{a}/functions/f/code", json=code("two"), timeout=30))
    propagated(cluster, "new code on b and c",
               answers(b, {"code": "two", "color": "red"}),
               answers(c, {"code": "two", "color": "red"}))

    ok(api.patch(f"{a}/functions/f", json={"config": {"environment": {"COLOR": "blue"}}}))
    propagated(cluster, "new environment on b and c",
               answers(b, {"code": "two", "color": "blue"}),
               answers(c, {"code": "two", "color": "blue"}))

    ok(api.post(f"{a}/functions/f/versions", json={}), 201)
    ok(api.put(f"{a}/functions/f/aliases/live", json={"version": 1}), 201)
    http_trigger(a, "live", "f", "live")
    propagated(cluster, "a new alias on b",
               answers(b, {"code": "two", "color": "blue"}, "/live", "live"))
    ok(api.put(f"{a}/functions/f/code", json=code("three"), timeout=30))
    assert ok(api.post(f"{a}/functions/f/versions", json={}), 201).json()["version"] == 2
    ok(api.put(f"{a}/functions/f/aliases/live", json={"version": 2}))
    propagated(cluster, "the alias moved to version 2 on b",
               answers(b, {"code": "three", "color": "blue"}, "/live", "live"))
    assert invoke(b, qualifier="live").headers["X-Ember-Version"] == "2"
    assert httpx.post(f"{b}/http/live", json={}).headers["X-Ember-Version"] == "2"

    ok(api.post(f"{a}/functions/f/disable"))
    propagated(cluster, "disabled on b and c", refuses(b, 409, "FunctionDisabled"),
               refuses(c, 409, "FunctionDisabled"))
    ok(api.post(f"{a}/functions/f/enable"))
    propagated(cluster, "enabled on b", answers(b, {"code": "three", "color": "blue"}))

    ok(api.delete(f"{a}/functions/f"))
    propagated(cluster, "deleted on b and c", refuses(b, 404, "FunctionNotFound"),
               refuses(c, 404, "FunctionNotFound"))

    def drained(url: str) -> Callable[[], bool]:
        return lambda: api.get(f"{url}/functions/f/instances").status_code == 404 and not [
            line for line in api.get(f"{url}/metrics").text.splitlines()
            if line.startswith("ember_instances") and 'function="f"' in line
            and not line.endswith(" 0.0")]
    propagated(cluster, "the deleted function's instances gone on b and c", drained(b),
               drained(c))


def test_keys_triggers_and_provisioned_capacity_follow_across_nodes(cluster: Cluster) -> None:
    for name in ("a", "b"):
        cluster.start(name)
    wait_alive(cluster, ["a", "b"], on="a")
    a, b = cluster["a"].url, cluster["b"].url
    deploy(a, "f", SOURCE % "one")

    token = ok(api.post(f"{a}/keys", json={"name": "ci", "role": "admin"}), 201).json()["key"]
    with_key = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{b}/functions/f", headers=with_key).status_code == 200  # cached
    ok(api.delete(f"{a}/keys/ci"), 204)
    propagated(cluster, "the revoked key refused on b", lambda: httpx.get(
        f"{b}/functions/f", headers=with_key).status_code == 401)

    assert httpx.post(f"{b}/http/hello", json={}).status_code == 404
    ok(api.post(f"{a}/triggers", json={
        "name": "hello", "function": "f", "qualifier": "latest",
        "source": {"kind": "http", "path": "/hello"}}), 201)
    propagated(cluster, "the new HTTP trigger served on b", lambda: httpx.post(
        f"{b}/http/hello", json={}, timeout=30).status_code == 200)
    assert httpx.post(f"{b}/http/hello", json={}).json() == {"code": "one", "color": None}
    ok(api.post(f"{a}/triggers/hello/disable"))
    propagated(cluster, "the disabled HTTP trigger gone from b", lambda: httpx.post(
        f"{b}/http/hello", json={}).status_code == 404)

    def provisioned_on_b() -> list[str]:
        return [line for line in api.get(f"{b}/metrics").text.splitlines()
                if line.startswith("ember_provisioned_desired") and 'function="f"' in line]

    assert not provisioned_on_b()
    ok(api.put(f"{a}/functions/f/provisioned", json={"target": 1}))
    propagated(cluster, "the provisioned policy followed on b", provisioned_on_b)
    state = ok(api.get(f"{b}/functions/f/provisioned")).json()["state"]
    assert state["reason"] != "not applied yet", state
    ok(api.delete(f"{a}/functions/f/provisioned"))
    propagated(cluster, "the provisioned policy dropped on b", lambda: not provisioned_on_b())


def test_a_node_whose_listening_connection_dropped_drops_what_it_cached(
        cluster: Cluster) -> None:
    for name in ("a", "b"):
        cluster.start(name)
    wait_alive(cluster, ["a", "b"], on="a")
    a, b = cluster["a"].url, cluster["b"].url
    for name in ("f", "g"):
        deploy(a, name, SOURCE % name)
    ok(api.post(f"{a}/triggers", json={
        "name": "hello", "function": "f", "qualifier": "latest",
        "source": {"kind": "http", "path": "/hello"}}), 201)
    token = ok(api.post(f"{a}/keys", json={"name": "ci", "role": "admin"}), 201).json()["key"]
    with_key = {"Authorization": f"Bearer {token}"}
    # b caches the routes of f and g, the trigger and the key.
    propagated(cluster, "the trigger served on b", lambda: httpx.post(
        f"{b}/http/hello", json={}, timeout=30).status_code == 200)
    for name in ("f", "g"):
        assert ok(invoke(b, name)).json() == {"code": name, "color": None}
    assert httpx.get(f"{b}/functions/f", headers=with_key).status_code == 200

    # Changes whose notifications b never gets: made in the database behind Ember's back.
    engine = sa.create_engine(cluster.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE functions SET enabled = false WHERE name = 'f'"))
            conn.execute(sa.text("DELETE FROM functions WHERE name = 'g'"))
            conn.execute(sa.text("DELETE FROM triggers WHERE name = 'hello'"))
            conn.execute(sa.text("DELETE FROM api_keys WHERE name = 'ci'"))
        assert ok(invoke(b, "g")).json() == {"code": "g", "color": None}  # still cached

        assert terminate_listener(engine, "b") == [True]
    finally:
        engine.dispose()

    propagated(
        cluster, "b's caches dropped after it listens again",
        refuses(b, 409, "FunctionDisabled", "f", None),
        refuses(b, 404, "FunctionNotFound", "g", None),
        lambda: httpx.post(f"{b}/http/hello", json={}).status_code == 404,
        lambda: httpx.get(f"{b}/functions/f", headers=with_key).status_code == 401)
    assert "lost the connection that hears other nodes' changes" in cluster["b"].log()


def terminate_listener(engine: sa.Engine, node: str) -> list[bool]:
    with engine.begin() as conn:
        return list(conn.execute(sa.text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = :name AND datname = current_database()"),
            {"name": f"ember-changes-{node}"}).scalars())


def test_the_bus_delivers_other_nodes_changes_in_order_and_resyncs_after_a_drop(
        cluster: Cluster) -> None:
    """Two buses on one database (the cluster's, no node started): each hears the other's
    changes in order, never its own, skips what is not Ember's, and after its connection
    is cut, connects again and resyncs."""
    engine = sa.create_engine(cluster.database_url)

    async def main() -> None:
        one = PostgresChangeBus(engine, "one", SystemClock(), ping_s=0.2)
        two = PostgresChangeBus(engine, "two", SystemClock(), ping_s=0.2)
        heard: dict[str, list[str]] = {"one": [], "two": []}
        resyncs: list[str] = []
        one.follow(FUNCTION, heard["one"].append)
        two.follow(FUNCTION, heard["two"].append)

        async def keys(name: str) -> None:  # an async receiver runs on the loop
            heard["two"].append(f"key {name}")

        two.follow(KEY, keys)
        two.on_resync(lambda: resyncs.append("two"))
        await one.start()
        await two.start()
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(f"NOTIFY {CHANNEL}, 'not json'"))
            for n in range(5):
                await asyncio.to_thread(one.publish, FUNCTION, f"f{n}")
            await asyncio.to_thread(one.publish, KEY, "k")
            await asyncio.to_thread(two.publish, FUNCTION, "from-two")
            await until(lambda: len(heard["two"]) == 6 and heard["one"], timeout=30)
            assert heard["two"] == ["f0", "f1", "f2", "f3", "f4", "key k"]
            assert heard["one"] == ["from-two"]
            assert resyncs == []

            assert terminate_listener(engine, "two") == [True]
            await until(lambda: resyncs, timeout=30, message="two resynced")
            assert two.connects == 2 and one.connects == 1
            await asyncio.to_thread(one.publish, FUNCTION, "after")
            await until(lambda: heard["two"][-1] == "after", timeout=30)
        finally:
            await one.close()
            await two.close()

    try:
        asyncio.run(main())
    finally:
        engine.dispose()
