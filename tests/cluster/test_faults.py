"""A node killed with SIGKILL loses nothing: 2,000 async events queued on a three-node
cluster, one node killed in the middle of the backlog — the other two finish it, every event
runs, the runs the kill cut short run again (counted and reported as duplicates)."""

from __future__ import annotations

import asyncio
import base64
from collections import Counter

import pytest

from tests import apicalls as api
from tests.cluster.harness import Cluster, wait_alive
from tests.conftest import make_zip
from tests.e2e.test_async_crash import EVENTS, RECORDER, _lines, _runs, _statuses, _submit_all
from tests.waiting import wait_until

# The functions write to a file of the test's: no sandbox (tests/sandbox checks it).
NODE = {"sandbox": "process", "async_lease_s": "2", "async_concurrency": "16"}


@pytest.mark.timeout(600)
def test_sigkill_of_a_node_mid_backlog_loses_no_event(cluster: Cluster) -> None:
    out = cluster.root / "runs.txt"
    for name in ("a", "b", "c"):
        cluster.start(name, **NODE)
    wait_alive(cluster, ["a", "b", "c"], on="a")
    url = cluster["a"].url
    code = {"zip": base64.b64encode(make_zip({"main.py": RECORDER})).decode()}
    created = api.post(f"{url}/functions", json={
        "name": "recorder", "code": code,
        "config": {"environment": {"OUT": str(out)}, "max_instances": 8}}, timeout=30)
    assert created.status_code == 201, created.text
    # Queue the whole backlog first (paused on every node), then let all three run it.
    for name in ("a", "b", "c"):
        api.post(f"{cluster[name].url}/functions/recorder/pause").raise_for_status()
    ids = asyncio.run(_submit_all(url))
    assert len(set(ids)) == EVENTS
    for name in ("a", "b", "c"):
        api.post(f"{cluster[name].url}/functions/recorder/resume").raise_for_status()
    wait_until(lambda: len(_lines(out)) >= EVENTS // 4, timeout=120,
               message="a quarter of the backlog ran")
    cluster.kill("b")
    ran_before = len(_lines(out))
    assert ran_before < EVENTS, "the backlog finished before the kill: nothing was tested"

    wait_until(lambda: len(set(_lines(out))) >= EVENTS, timeout=300, interval=0.1,
               message="every event ran on the nodes left")
    runs = Counter(_lines(out))
    missing = set(ids) - set(runs)
    duplicates = sum(n - 1 for n in runs.values())
    print(f"\n{EVENTS} events on 3 nodes: {ran_before} ran before node b's SIGKILL, "
          f"{len(runs)} ran in all, {duplicates} ran twice (at-least-once), "
          f"{len(missing)} lost")
    assert not missing, f"{len(missing)} events never ran"
    wait_until(lambda: _statuses(url) == Counter({"succeeded": EVENTS}), timeout=120,
               interval=0.2, message="every task succeeded")
    # A run again is a new attempt, never the same one twice.
    attempts: dict[str, list[int]] = {}
    for request_id, attempt in _runs(out):
        attempts.setdefault(request_id, []).append(attempt)
    for request_id, seen in attempts.items():
        assert seen == sorted(set(seen)), (request_id, seen)
    assert sum(len(seen) - 1 for seen in attempts.values()) == duplicates
