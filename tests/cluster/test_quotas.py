"""``max_instances`` holds across the nodes: each instance takes one of the version's slots
in Redis first, so three nodes under load together never run more than the limit, and a
node whose share is taken sends its invocations to the nodes that hold the slots."""

from __future__ import annotations

import base64
from collections import Counter

from tests import apicalls as api
from tests.cluster.harness import Cluster, wait_known
from tests.conftest import make_zip
from tests.threads import at_once

# Each run marks itself running in a directory of the test's, notes how many runs were
# going on then and which process ran it, and takes a moment.
WATCHED = """
import os, time, uuid

def handler(event, context):
    folder = os.environ["DIR"]
    mine = os.path.join(folder, "run-" + uuid.uuid4().hex)
    open(mine, "w").close()
    try:
        running = sum(1 for f in os.listdir(folder) if f.startswith("run-"))
        with open(os.path.join(folder, "seen.txt"), "a") as out:
            out.write(f"{running} {os.getpid()}\\n")
        time.sleep(0.1)
    finally:
        os.remove(mine)
    return os.getpid()
"""
NODE = {"sandbox": "process", "queue_wait_s": "120"}


def test_max_instances_holds_across_three_nodes_under_load(cluster: Cluster) -> None:
    folder = cluster.root / "runs"
    folder.mkdir()
    for name in ("a", "b", "c"):
        cluster.start(name, **NODE)
    wait_known(cluster, ["a", "b", "c"])
    code = {"zip": base64.b64encode(make_zip({"main.py": WATCHED})).decode()}
    created = api.post(f"{cluster['a'].url}/functions", json={
        "name": "watched", "code": code,
        "config": {"environment": {"DIR": str(folder)}, "max_instances": 2}}, timeout=30)
    assert created.status_code == 201, created.text

    # One instance up on A and one on B take both slots: C may start none.
    for name in ("a", "b"):
        warmed = api.post(f"{cluster[name].url}/functions/watched/warm",
                          json={"instances": 1}, timeout=60)
        assert warmed.status_code == 200 and warmed.json()["started"] == 1, warmed.text
    refused = api.post(f"{cluster['c'].url}/functions/watched/warm", json={"instances": 1},
                       timeout=60)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "TooManyRequests"
    assert "max_instances 2" in refused.json()["error"]["message"]

    def invoke(via: str) -> tuple[int, str]:
        answer = api.post(f"{cluster[via].url}/functions/watched/invoke", json={},
                          timeout=180)
        return answer.status_code, answer.headers.get("x-ember-node", "")

    answers = at_once([lambda via=via: invoke(via)  # type: ignore[misc]
                       for via in ("a", "b", "c") for _ in range(8)])
    assert Counter(status for status, _ in answers) == Counter({200: 24}), answers
    assert {node for _, node in answers} <= {"a", "b"}, answers
    seen = [line.split() for line in (folder / "seen.txt").read_text().splitlines()]
    assert len(seen) == 24
    assert max(int(running) for running, _ in seen) <= 2, seen
    assert len({pid for _, pid in seen}) <= 2, seen
