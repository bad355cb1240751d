"""The engine through the service: executions that call functions, fork, map, wait for
events and timers, fail, are cancelled — on both queues (and both stores)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from ember.errors import InvalidSpec
from ember.store.schema import execution_journal, executions, workflow_blobs
from tests.conftest import HOST_FILES
from tests.inprocess import Ember
from tests.workflows.conftest import Run

DOUBLE = "def handler(event, context):\n    return {'n': event['n'] * 2}\n"


def doc(name: str, do: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"document": {"dsl": "1.0.0", "namespace": "test", "name": name,
                         "version": "1.0.0"}, "do": do, **extra}


async def run_to_end(ember: Ember, name: str, input: Any = None) -> Any:
    service = ember.services.workflows
    execution, created = await service.run(name, input, wait_s=60)
    assert created
    return execution


def test_sequence_passes_state(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("double", DOUBLE)
        ember.services.workflows.deploy_data("seq", doc("seq", [
            {"first": {"call": "double"}},
            {"second": {"call": "double"}},
            {"third": {"set": {"result": "${ .n + 1 }"}}},
        ]))
        execution = await run_to_end(ember, "seq", {"n": 3})
        assert execution.status == "succeeded", execution.error
        assert execution.output == {"result": 13}
        steps = ember.services.workflows.steps(execution)
        assert [s.path for s in steps] == ["/do/0/first", "/do/1/second", "/do/2/third"]
        assert steps[0].function == "double" and steps[0].request_id and steps[0].version

    run_wf(scenario)


FLAKY = """
import os, pathlib
def handler(event, context):
    counter = pathlib.Path(event["counter"])
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if n <= event["fail"]:
        raise RuntimeError(f"call {n} fails")
    return {"calls": n}
"""


def test_fork_joins_every_branch(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("double", DOUBLE)
        ember.services.workflows.deploy_data("fork", doc("fork", [
            {"both": {"fork": {"branches": [
                {"a": {"call": "double", "with": {"n": "${ .x }"}}},
                {"b": {"call": "double", "with": {"n": "${ .y }"}}},
            ]}}},
        ]))
        execution = await run_to_end(ember, "fork", {"x": 1, "y": 10})
        assert execution.status == "succeeded", execution.error
        assert execution.output == [{"n": 2}, {"n": 20}]
        # The branches' results (kept as the bytes returned) read together by jq, and
        # sent on together to a function.
        ember.services.workflows.deploy_data("sum", doc("sum", [
            {"both": {"fork": {"branches": [
                {"a": {"call": "double", "with": {"n": "${ .x }"}}},
                {"b": {"call": "double", "with": {"n": "${ .y }"}}},
            ]}}},
            {"pair": {"call": "double", "with": {"n": "${ .[0].n + .[1].n }"}}},
        ]))
        summed = await run_to_end(ember, "sum", {"x": 1, "y": 10})
        assert summed.status == "succeeded", summed.error
        assert summed.output == {"n": 44}

    run_wf(scenario)


def test_compete_takes_the_first_and_cancels_the_others(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("double", DOUBLE)
        ember.services.workflows.deploy_data("race", doc("race", [
            {"race": {"fork": {"compete": True, "branches": [
                {"slow": {"wait": "PT1H"}},
                {"fast": {"call": "double", "with": {"n": 4}}},
            ]}}},
        ]))
        execution = await run_to_end(ember, "race")
        assert execution.status == "succeeded", execution.error
        assert execution.output == {"n": 8}
        statuses = {s.path: s.status for s in ember.services.workflows.steps(execution)}
        assert statuses["/do/0/race/fork/branches/0/slow"] == "cancelled"

    run_wf(scenario)


def test_switch_branches_on_the_result(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("double", DOUBLE)
        ember.services.workflows.deploy_data("choose", doc("choose", [
            {"size": {"call": "double"}},
            {"route": {"switch": [
                {"big": {"when": ".n > 10", "then": "large"}},
                {"other": {"then": "small"}},
            ]}},
            {"small": {"set": {"size": "small"}, "then": "end"}},
            {"large": {"set": {"size": "large"}}},
        ]))
        small = await run_to_end(ember, "choose", {"n": 2})
        large = await run_to_end(ember, "choose", {"n": 50})
        assert small.output == {"size": "small"}
        assert large.output == {"size": "large"}

    run_wf(scenario)


def test_try_retries_a_failing_step_then_catches(run_wf: Run, tmp_path: Any) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("flaky", FLAKY)
        retry = {"delay": "PT0.01S", "backoff": {"exponential": {}},
                 "limit": {"attempt": {"count": 3}}}
        ember.services.workflows.deploy_data("retrying", doc("retrying", [
            {"guarded": {
                "try": [{"call_it": {"call": "flaky"}}],
                "catch": {"errors": {"with": {"title": "FunctionError"}}, "as": "err",
                          "retry": retry,
                          "do": [{"fallback": {"set": {"gave_up": "${ $err.detail }"}}}]},
            }},
        ]))
        ok = await run_to_end(ember, "retrying", {"counter": str(tmp_path / "a"), "fail": 2})
        assert ok.status == "succeeded", ok.error
        assert ok.output == {"calls": 3}
        attempts = {s.path: s.attempts for s in ember.services.workflows.steps(ok)}
        assert attempts["/do/0/guarded/try/0/call_it"] == 3
        caught = await run_to_end(ember, "retrying", {"counter": str(tmp_path / "b"),
                                                      "fail": 5})
        assert caught.status == "succeeded", caught.error
        assert "call 3 fails" in caught.output["gave_up"]

    run_wf(scenario, **HOST_FILES)


def test_a_failing_step_fails_the_execution_with_its_path(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("boom", "def handler(event, context):\n    raise ValueError('no')\n")
        ember.services.workflows.deploy_data("fails", doc("fails", [
            {"ok": {"set": {"a": 1}}},
            {"explode": {"call": "boom"}},
            {"never": {"set": {"b": 2}}},
        ]))
        execution = await run_to_end(ember, "fails")
        assert execution.status == "failed"
        assert execution.error is not None
        assert execution.error["instance"] == "/do/1/explode"
        assert execution.error["title"] == "FunctionError"
        assert "no" in execution.error["detail"]

    run_wf(scenario)


def test_missing_function_and_oversized_input_fail_at_their_task(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("double", DOUBLE)
        ember.services.workflows.deploy_data("missing", doc("missing", [
            {"ghost": {"call": "nobody"}},
        ]))
        missing = await run_to_end(ember, "missing")
        assert missing.status == "failed"
        assert missing.error is not None
        assert missing.error["instance"] == "/do/0/ghost"
        assert missing.error["title"] == "FunctionNotFound"
        ember.services.workflows.deploy_data("huge", doc("huge", [
            {"big": {"call": "double", "with": {"blob": "${ .blob }"}}},
        ]))
        huge = await run_to_end(ember, "huge", {"blob": "x" * 300_000})
        assert huge.status == "failed"
        assert huge.error is not None
        assert huge.error["instance"] == "/do/0/big"
        assert huge.error["title"] == "PayloadTooLarge"

    run_wf(scenario)


def test_an_expression_failing_at_run_time_names_its_place(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        ember.services.workflows.deploy_data("badexpr", doc("badexpr", [
            {"compute": {"set": {"x": "${ .a + 1 }"}}},
        ]))
        execution = await run_to_end(ember, "badexpr", {"a": "text"})
        assert execution.status == "failed"
        assert execution.error is not None
        assert execution.error["type"].endswith("/expression")
        assert execution.error["instance"].startswith("/do/0/compute")

    run_wf(scenario)


BIG = """
def handler(event, context):
    return {'rows': [{'i': i, 'name': 'x' * 20} for i in range(100)]}
"""
COUNT = "def handler(event, context):\n    return {'count': len(event['rows'])}\n"


def test_a_large_result_goes_to_the_next_step_as_the_bytes_returned(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("big", BIG)
        await ember.deploy("count", COUNT)
        queue = ember.services.invoker.queue
        sent: dict[str, bytes] = {}
        submit = queue.submit

        async def spy(event: Any, **kwargs: Any) -> Any:
            sent[event.function] = event.payload
            return await submit(event, **kwargs)

        queue.submit = spy  # type: ignore[method-assign]
        ember.services.workflows.deploy_data("pipe", doc("pipe", [
            {"make": {"call": "big"}}, {"measure": {"call": "count"}},
        ]))
        execution = await run_to_end(ember, "pipe")
        assert execution.status == "succeeded", execution.error
        assert execution.output == {"count": 100}
        make = next(s for s in ember.services.workflows.steps(execution) if s.function == "big")
        returned = (await queue.get_task(make.request_id or "")).result
        assert returned is not None and len(returned) > 1024
        # Not decoded and encoded again (which gives other bytes): the very bytes the first
        # instance returned.
        assert orjson.dumps(orjson.loads(returned)) != returned
        assert sent["count"] == returned

    run_wf(scenario)


def test_a_step_that_times_out_or_crashes_fails_with_its_kind(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("sleepy", "import time\ndef handler(event, context):\n"
                                     "    time.sleep(30)\n", timeout_s=0.2)
        await ember.deploy("crashy", "import os\ndef handler(event, context):\n"
                                     "    os._exit(3)\n")
        service = ember.services.workflows
        service.deploy_data("slowpoke", doc("slowpoke", [{"nap": {"call": "sleepy"}}]))
        service.deploy_data("crasher", doc("crasher", [{"die": {"call": "crashy"}}]))
        slow = await run_to_end(ember, "slowpoke")
        assert slow.status == "failed" and slow.error is not None
        assert slow.error["type"].endswith("/errors/timeout")
        assert slow.error["title"] == "FunctionTimeout"
        assert slow.error["instance"] == "/do/0/nap"
        crashed = await run_to_end(ember, "crasher")
        assert crashed.status == "failed" and crashed.error is not None
        assert crashed.error["type"].endswith("/errors/runtime")
        assert crashed.error["title"] == "InstanceCrashed"
        assert crashed.error["instance"] == "/do/0/die"

    run_wf(scenario)


ORDER_SCHEMA = {"format": "json", "document": {
    "type": "object", "required": ["orderId"],
    "properties": {"orderId": {"type": "string"}}}}


def test_schemas_are_checked_at_deploy_and_at_run_time(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        with pytest.raises(InvalidSpec) as bad:
            service.deploy_data("schemas", doc("schemas", [{"a": {"set": {}}}],
                                               input={"schema": {"document": {"type": 7}}}))
        assert bad.value.details["errors"][0]["field"] == "input.schema.document"
        service.deploy_data("schemas", doc("schemas", [
            {"shape": {"set": {"total": "${ .total }"},
                       "output": {"schema": {"document": {
                           "type": "object", "properties": {"total": {"type": "number"}}}}}}},
        ], input={"schema": ORDER_SCHEMA}))
        with pytest.raises(InvalidSpec) as refused:
            await service.run("schemas", {"total": 3})
        assert refused.value.details["errors"][0]["field"] == "input"
        assert "orderId" in refused.value.details["errors"][0]["message"]
        ok = await run_to_end(ember, "schemas", {"orderId": "A", "total": 3})
        assert ok.status == "succeeded", ok.error
        wrong = await run_to_end(ember, "schemas", {"orderId": "B", "total": "three"})
        assert wrong.status == "failed" and wrong.error is not None
        assert wrong.error["type"].endswith("/errors/validation")
        assert wrong.error["instance"] == "/do/0/shape/output"
        assert "total" in wrong.error["detail"]

    run_wf(scenario)


HUGE = """
def handler(event, context):
    return {'rows': [{'i': i, 'pad': 'x' * 90} for i in range(3000)]}
"""


def test_a_result_over_256_kib_is_stored_once_and_kept_by_reference(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("huge", HUGE)
        service = ember.services.workflows
        service.deploy_data("bulk", doc("bulk", [
            {"make": {"call": "huge"}},
            {"first": {"set": {"rows": "${ .rows | length }", "last": "${ .rows[-1].i }"}}},
        ]))
        execution = await run_to_end(ember, "bulk")
        assert execution.status == "succeeded", execution.error
        assert execution.output == {"rows": 3000, "last": 2999}
        engine = ember.services.store.engine
        with engine.connect() as conn:
            blobs = conn.execute(sa.select(workflow_blobs.c.data).where(
                workflow_blobs.c.execution == execution.id)).scalars().all()
            entries = conn.execute(sa.select(execution_journal.c.entry).where(
                execution_journal.c.execution == execution.id)).scalars().all()
            state = conn.execute(sa.select(executions.c.state).where(
                executions.c.id == execution.id)).scalar_one()
        assert len(blobs) == 1 and len(blobs[0]) > 256 * 1024
        assert orjson.loads(blobs[0])["rows"][0] == {"i": 0, "pad": "x" * 90}
        # The snapshot refers to it instead of holding it; read back, it is whole.
        assert len(orjson.dumps(state)) < 64 * 1024
        assert entries == []  # the final snapshot covers the journal
        again = await service.get_execution(execution.id)
        assert again.output == {"rows": 3000, "last": 2999}

    run_wf(scenario)
