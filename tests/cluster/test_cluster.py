"""Three ``ember server`` processes on one PostgreSQL and one Redis are one Ember: what is
deployed through one node runs when invoked through any other, sync and async."""

from __future__ import annotations

import base64

from tests import apicalls as api
from tests.cluster.harness import Cluster, wait_alive
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
