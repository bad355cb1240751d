"""Three ``ember server`` processes on one PostgreSQL and one Redis are one Ember: what is
deployed through one node runs when invoked through any other, sync and async."""

from __future__ import annotations

import base64

import httpx

from tests import apicalls as api
from tests.cluster.harness import Cluster, wait_alive, wait_known
from tests.conftest import make_zip
from tests.waiting import wait_until

ECHO = "import os\ndef handler(event, context):\n    return {'echo': event}\n"


def deploy(url: str, name: str, source: str, **config: object) -> None:
    code = {"zip": base64.b64encode(make_zip({"main.py": source})).decode()}
    answer = api.post(f"{url}/functions", json={"name": name, "config": config, "code": code},
                      timeout=30)
    assert answer.status_code == 201, answer.text


def test_deployed_on_one_node_invoked_sync_and_async_on_the_others(cluster: Cluster) -> None:
    for name in ("a", "b", "c"):
        cluster.start(name)
    wait_alive(cluster, ["a", "b", "c"], on="a")
    deploy(cluster["a"].url, "echo", ECHO)

    for name in ("b", "c"):
        answer = api.post(f"{cluster[name].url}/functions/echo/invoke", json={"from": name},
                          timeout=30)
        assert answer.status_code == 200, answer.text + cluster.logs()
        assert answer.json() == {"echo": {"from": name}}

    queued = api.post(f"{cluster['c'].url}/functions/echo/invoke", json={"n": 1},
                      headers={"X-Ember-Invocation-Type": "async"}, timeout=30)
    assert queued.status_code == 202, queued.text
    task = queued.json()["request_id"]

    def done() -> bool:
        status = api.get(f"{cluster['b'].url}/tasks/{task}", timeout=10).json()["status"]
        assert status != "failed", cluster.logs()
        return bool(status == "succeeded")

    wait_until(done, timeout=60, interval=0.1, message="the async task succeeded")


def ran_on(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Ember-Node"]


def test_a_version_runs_on_one_node_whichever_receives_it_and_moves_when_it_dies(
    cluster: Cluster,
) -> None:
    for name in ("a", "b", "c"):
        cluster.start(name)
    wait_known(cluster, ["a", "b", "c"])  # placement decides on each node's snapshot
    deploy(cluster["a"].url, "echo", ECHO)

    def invoke(via: str) -> str:
        return ran_on(api.post(f"{cluster[via].url}/functions/echo/invoke", json=via,
                               timeout=30))

    where = {invoke(via) for via in ("a", "b", "c") for _ in range(3)}
    assert len(where) == 1, where  # affinity: one node serves the version
    (home,) = where

    # A forwarded request from a plain API key is not trusted as a node's.
    spoofed = api.post(f"{cluster['a'].url}/functions/echo/invoke", json="x",
                       headers={"X-Ember-Forwarded-By": "b"}, timeout=30)
    assert ran_on(spoofed) == home

    cluster.kill(home)
    rest = [n for n in ("a", "b", "c") if n != home]
    # Before the others see it dead, a call to it fails to connect and runs where it came
    # in; after, the version has a new home. Either way every invocation answers.
    for via in rest * 3:
        assert invoke(via) in rest
    for name in rest:
        wait_until(lambda name=name: any(  # type: ignore[misc]
            n["id"] == home and n["state"] == "dead"
            for n in api.get(f"{cluster[name].url}/nodes").json()["nodes"]),
            timeout=30, interval=0.1, message=f"{home} dead on {name}")
    # The nodes that ran it while the home was unreachable keep their warm instances (warm
    # here comes first); a version new to all of them gets one home among the living.
    deploy(cluster[rest[0]].url, "echo2", ECHO)
    where = {ran_on(api.post(f"{cluster[via].url}/functions/echo2/invoke", json=via,
                             timeout=30)) for via in rest * 3}
    assert len(where) == 1 and where <= set(rest), where
