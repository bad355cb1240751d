"""One view of three nodes: logs, invocation records, statistics and instances asked of any
node cover every node (each line, record and instance naming its node), with the limit
applied after merging and cursors that go on across nodes; a node that is down is named
unreachable and the others still answer. ``/metrics`` stays per node, every series
labelled with it."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from ember.cluster.peers import NODE_HEADER, derive_credential
from tests import apicalls as api
from tests.cluster.harness import Cluster, wait_alive
from tests.cluster.test_cluster import deploy
from tests.waiting import wait_until

NODES = ["a", "b", "c"]
SHOUT = "def handler(event, context):\n    print('ran', event['n'])\n    return event['n']\n"


def run_on(cluster: Cluster, node: str, n: int) -> str:
    """Invoke ``shout`` on ``node`` itself: sent as another node forwarding it there (the
    node credential and the forwarding header), so placement does not send it elsewhere.
    Returns its request id."""
    headers = {
        "Authorization": f"Bearer {derive_credential(base64.b64decode(cluster.master_key))}",
        NODE_HEADER: "tester", "X-Ember-Forwarded-By": "tester",
    }
    answer = httpx.post(f"{cluster[node].url}/functions/shout/invoke",
                        params={"qualifier": "latest"}, json={"n": n}, headers=headers,
                        timeout=30)
    assert answer.status_code == 200, answer.text + cluster.logs()
    assert answer.headers.get("X-Ember-Node", node) == node  # where it ran
    return answer.headers["X-Ember-Request-Id"]


def get(cluster: Cluster, node: str, path: str, **params: Any) -> dict[str, Any]:
    answer = api.get(f"{cluster[node].url}{path}", params=params, timeout=30)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_logs_stats_and_instances_asked_of_any_node_cover_every_node(
        cluster: Cluster) -> None:
    for name in NODES:
        cluster.start(name)
    for name in NODES:
        wait_alive(cluster, NODES, on=name)
    deploy(cluster["a"].url, "shout", SHOUT)
    ran = {node: run_on(cluster, node, n) for n, node in enumerate(NODES)}

    for asked in NODES:
        logs = get(cluster, asked, "/functions/shout/logs")
        assert sorted(logs["nodes"]) == NODES and logs["unreachable"] == []
        lines = [line for line in logs["logs"] if line["line"].startswith("ran")]
        assert {line["request_id"]: line["node"] for line in lines} == {
            request: node for node, request in ran.items()}
        times = [line["ts"] for line in logs["logs"]]
        assert times == sorted(times)

        stats = get(cluster, asked, "/functions/shout/stats")
        assert sorted(stats["nodes"]) == NODES and stats["unreachable"] == []
        assert stats["invocations"] == 3 and stats["cold_starts"] == 3
        assert sum(point["invocations"] for point in stats["series"]) == 3
        overview = get(cluster, asked, "/stats")
        assert overview["invocations"] == 3 and overview["functions"]["shout"][
            "invocations"] == 3

        records = get(cluster, asked, "/functions/shout/invocations")
        assert [(r["request_id"], r["node"]) for r in records["invocations"]] == [
            (ran[node], node) for node in reversed(NODES)]

        instances = get(cluster, asked, "/functions/shout/instances")
        assert sorted(instances["nodes"]) == NODES
        assert sorted(i["node"] for i in instances["instances"]) == NODES
        assert sorted(p["node"] for p in instances["pools"]) == NODES

    # The limit is applied to the merged lines: the newest two are b's and c's; the cursor
    # goes on after a's line too (cut, and older), so polling shows only what is new.
    newest = get(cluster, "c", "/functions/shout/logs", limit=2, grep="ran")
    assert [line["node"] for line in newest["logs"]] == ["b", "c"]
    again = run_on(cluster, "a", 3)
    polled = get(cluster, "b", "/functions/shout/logs", grep="ran",
                 cursor=newest["next_cursor"])
    assert [(line["request_id"], line["node"]) for line in polled["logs"]] == [(again, "a")]
    # Page by page from the start, one line at a time, every line once, in time order.
    cursor, seen = "@0", []
    while True:
        page = get(cluster, "a", "/functions/shout/logs", grep="ran", limit=1, cursor=cursor)
        if not page["logs"]:
            break
        seen += [line["line"] for line in page["logs"]]
        cursor = page["next_cursor"]
    assert seen == ["ran 0", "ran 1", "ran 2", "ran 3"]
    older, records = None, []
    while True:
        params = {"limit": 1, **({"cursor": older} if older else {})}
        page = get(cluster, "b", "/functions/shout/invocations", **params)
        records += [r["request_id"] for r in page["invocations"]]
        older = page["next_cursor"]
        if older is None:
            break
    assert records == [again, ran["c"], ran["b"], ran["a"]]

    for node in NODES:
        metrics = api.get(f"{cluster[node].url}/metrics", timeout=30).text
        series = [line for line in metrics.splitlines() if line and not line.startswith("#")]
        assert series and all(f'node="{node}"' in line for line in series)
        assert f'ember_invocations_total{{function="shout",node="{node}"' in metrics

    # A node down: the others still answer, and name it.
    cluster.kill("c")
    logs = get(cluster, "a", "/functions/shout/logs", grep="ran")
    assert sorted(logs["nodes"]) == ["a", "b"] and logs["unreachable"] == ["c"]
    assert [line["line"] for line in logs["logs"]] == ["ran 0", "ran 1", "ran 3"]
    stats = get(cluster, "b", "/functions/shout/stats")
    assert stats["invocations"] == 3 and stats["unreachable"] == ["c"]
    overview = get(cluster, "a", "/stats")
    assert overview["invocations"] == 3 and overview["unreachable"] == ["c"]
    # Once it is seen dead, it is still named: its lines are missing.
    wait_until(lambda: any(n["id"] == "c" and n["state"] == "dead"
                           for n in get(cluster, "b", "/nodes")["nodes"]),
               timeout=30, interval=0.1, message="c seen dead")
    records = get(cluster, "b", "/functions/shout/invocations")
    assert records["unreachable"] == ["c"] and len(records["invocations"]) == 3
