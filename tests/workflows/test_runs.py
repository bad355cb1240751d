"""Maps with bounded parallelism, sub-workflows, cancelling, and deleting what runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import HOST_FILES
from tests.inprocess import Ember
from tests.waiting import until_true
from tests.workflows.conftest import Run
from tests.workflows.test_engine import DOUBLE, doc

# Each call notes when it started and ended; the first `peers` items also wait (up to a
# deadline) until that many have started, so that the bound is reached, not guessed.
GATHER = """
import json, pathlib, time
def handler(event, context):
    room = pathlib.Path(event["room"])
    started = time.time()
    (room / f"{event['item']}.started").write_text("")
    deadline = time.monotonic() + 20
    while (len(list(room.glob("*.started"))) < event["peers"]
           and time.monotonic() < deadline):
        time.sleep(0.005)
    (room / f"{event['item']}.span").write_text(json.dumps([started, time.time()]))
    return {"item": event["item"], "double": event["item"] * 2}
"""


def test_for_with_concurrency_maps_every_item_within_the_bound(
    run_wf: Run, tmp_path: Path
) -> None:
    room = tmp_path / "room"
    room.mkdir()

    async def scenario(ember: Ember) -> None:
        await ember.deploy("gather", GATHER)
        ember.services.workflows.deploy_data("mapper", doc("mapper", [
            {"each": {"for": {"each": "item", "in": "${ .items }", "concurrency": 3},
                      "do": [{"work": {"call": "gather", "with": {
                          "item": "${ $item }", "room": str(room),
                          "peers": "${ if $item < 3 then 3 else 1 end }"}}}]}},
        ]))
        execution, _ = await ember.services.workflows.run(
            "mapper", {"items": list(range(9))}, wait_s=120)
        assert execution.status == "succeeded", execution.error
        assert [r["double"] for r in execution.output] == [i * 2 for i in range(9)]
        spans = [json.loads(p.read_text()) for p in room.glob("*.span")]
        moments = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
        running = peak = 0
        for _, change in moments:
            running += change
            peak = max(peak, running)
        assert peak == 3
        [progress] = ember.services.workflows.progress(execution)
        assert progress["total"] == 9 and progress["done"] == 9 and progress["failed"] == 0

    run_wf(scenario, **HOST_FILES)


def test_a_sub_workflow_runs_and_returns_its_output(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("double", DOUBLE)
        service = ember.services.workflows
        service.deploy_data("child", doc("child", [{"twice": {"call": "double"}}]))
        service.deploy_data("parent", doc("parent", [
            {"sub": {"run": {"workflow": {"namespace": "test", "name": "child",
                                          "version": "1.0.0", "input": {"n": "${ .x }"}}}}},
            {"after": {"set": {"result": "${ .n }"}}},
        ]))
        execution, _ = await service.run("parent", {"x": 21}, wait_s=60)
        assert execution.status == "succeeded", execution.error
        assert execution.output == {"result": 42}
        [child] = service.list_executions(workflow="child").items
        assert child.parent == execution.id and child.status == "succeeded"

    run_wf(scenario)


SLOW = """
import time
def handler(event, context):
    time.sleep(60)
"""


def test_cancel_stops_running_steps_and_timers(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("slow", SLOW, timeout_s=120)
        service = ember.services.workflows
        service.deploy_data("stuck", doc("stuck", [{"both": {"fork": {"branches": [
            {"sleeping": {"call": "slow"}},
            {"waiting": {"wait": "PT1H"}},
        ]}}}]))
        execution, _ = await service.run("stuck", None)

        async def step_running() -> Any:
            found = await service.get_execution(execution.id)
            return [s for s in service.steps(found) if s.request_id]

        [step] = await until_true(step_running, message="the function step submitted")

        async def task_running() -> bool:
            task = await ember.services.invoker.queue.get_task(step.request_id or "")
            return task.status == "running"

        await until_true(task_running, message="the step's task running")
        cancelled = await service.cancel(execution.id)
        assert cancelled.status == "cancelled"

        async def task_stopped() -> bool:
            task = await ember.services.invoker.queue.get_task(step.request_id or "")
            return task.status == "stopped"

        await until_true(task_stopped, message="the step's task stopped")
        again = await service.cancel(execution.id)
        assert again.status == "cancelled"

    run_wf(scenario)


def test_deleting_a_function_a_waiting_step_calls_fails_the_step(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("slow", SLOW, timeout_s=120)
        await ember.deploy("double", DOUBLE)
        await ember.http.post("/functions/slow/pause")
        service = ember.services.workflows
        service.deploy_data("doomed", doc("doomed", [{"call_it": {"call": "slow"}}]))
        execution, _ = await service.run("doomed", None)

        async def submitted() -> Any:
            found = await service.get_execution(execution.id)
            return [s for s in service.steps(found) if s.request_id]

        await until_true(submitted, message="the step queued")
        answer = await ember.http.delete("/functions/slow")
        assert answer.status_code == 200, answer.text
        done = await service.get_execution(execution.id, wait_s=60)
        assert done.status == "failed"
        assert done.error is not None and done.error["instance"] == "/do/0/call_it"

    run_wf(scenario)
