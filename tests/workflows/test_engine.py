"""The engine through the service: executions that call functions, fork, map, wait for
events and timers, fail, are cancelled — on both queues (and both stores)."""

from __future__ import annotations

from typing import Any

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
