"""Event joins through the bus: AND (both orders), OR, correlation of two executions, listen
timeouts, events that come before their listen, and ``schedule.on``."""

from __future__ import annotations

from typing import Any

from ember.model.workflow import Execution
from tests.inprocess import Ember
from tests.waiting import until_true
from tests.workflows.conftest import Run
from tests.workflows.test_engine import doc


def event(type: str, data: Any = None, **attributes: Any) -> dict[str, Any]:
    return {"type": type, "source": "tests", "data": data, **attributes}


async def waiting(ember: Ember, name: str, input: Any = None) -> Execution:
    """Start an execution and return it once it waits (on its listen)."""
    service = ember.services.workflows
    execution, _ = await service.run(name, input)

    async def is_waiting() -> bool:
        found = await service.get_execution(execution.id)
        return found.status == "waiting"

    await until_true(is_waiting, message=f"execution {execution.id} waiting")
    return await service.get_execution(execution.id)


async def finished(ember: Ember, execution: Execution) -> Execution:
    return await ember.services.workflows.get_execution(execution.id, wait_s=60)


JOIN_ALL = [{"both": {"listen": {"read": "envelope", "to": {"all": [
    {"with": {"type": "com.shop.paid"}},
    {"with": {"type": "com.shop.packed"}},
]}}}}]


def test_and_join_completes_with_both_events_in_either_order(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        service.deploy_data("join", doc("join", JOIN_ALL))
        for order in (("com.shop.paid", "com.shop.packed"), ("com.shop.packed", "com.shop.paid")):
            execution = await waiting(ember, "join")
            first = await service.publish(event(order[0], {"n": 1}))
            assert first.executions == 1
            assert (await service.get_execution(execution.id)).status == "waiting"
            second = await service.publish(event(order[1], {"n": 2}))
            assert second.executions == 1
            done = await finished(ember, execution)
            assert done.status == "succeeded", done.error
            assert {e["type"] for e in done.output} == {"com.shop.paid", "com.shop.packed"}

    run_wf(scenario)


def test_or_join_takes_the_first_and_leaves_the_rest(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        service.deploy_data("either", doc("either", [{"one": {"listen": {"to": {"any": [
            {"with": {"type": "com.shop.shipped"}},
            {"with": {"type": "com.shop.cancelled"}},
        ]}}}}]))
        execution = await waiting(ember, "either")
        taken = await service.publish(event("com.shop.cancelled", {"why": "late"}))
        assert taken.executions == 1
        done = await finished(ember, execution)
        assert done.status == "succeeded", done.error
        assert done.output == [{"why": "late"}]
        later = await service.publish(event("com.shop.shipped"))
        assert later.executions == 0 and later.retained

    run_wf(scenario)


def test_correlation_keeps_two_executions_apart(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        service.deploy_data("shipping", doc("shipping", [{"shipped": {"listen": {"to": {"one": {
            "with": {"type": "com.shop.shipped"},
            "correlate": {"order": {"from": ".data.orderId", "expect": "${ .orderId }"}},
        }}}}}]))
        one = await waiting(ember, "shipping", {"orderId": "A-1"})
        two = await waiting(ember, "shipping", {"orderId": "B-2"})
        result = await service.publish(event("com.shop.shipped", {"orderId": "B-2"}))
        assert result.executions == 1
        assert (await finished(ember, two)).status == "succeeded"
        assert (await service.get_execution(one.id)).status == "waiting"
        await service.publish(event("com.shop.shipped", {"orderId": "A-1"}))
        done = await finished(ember, one)
        assert done.status == "succeeded"
        assert done.output == [{"orderId": "A-1"}]

    run_wf(scenario)


def test_a_listen_timeout_is_the_spec_timeout_error_and_catchable(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        listen = {"listen": {"to": {"one": {"with": {"type": "never"}}}},
                  "timeout": {"after": "PT0.05S"}}
        service.deploy_data("late", doc("late", [{"wait_it": listen}]))
        service.deploy_data("caught", doc("caught", [{"guard": {
            "try": [{"wait_it": listen}],
            "catch": {"errors": {"with": {"type":
                      "https://serverlessworkflow.io/spec/1.0.0/errors/timeout"}},
                      "do": [{"fallback": {"set": {"timed_out": True}}}]},
        }}]))
        late, _ = await service.run("late", None, wait_s=60)
        assert late.status == "failed"
        assert late.error is not None
        assert late.error["type"].endswith("/errors/timeout")
        assert late.error["instance"] == "/do/0/wait_it"
        caught, _ = await service.run("caught", None, wait_s=60)
        assert caught.status == "succeeded", caught.error
        assert caught.output == {"timed_out": True}

    run_wf(scenario)


def test_an_event_before_its_listen_is_kept(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        early = await service.publish(event("com.shop.paid", {"early": True}))
        assert early.retained and early.executions == 0
        again = await service.publish(event("com.shop.paid", {"early": True}, id=early.id))
        assert again.duplicate
        service.deploy_data("paid", doc("paid", [{"p": {"listen": {"to": {"one": {
            "with": {"type": "com.shop.paid"}}}}}}]))
        execution, _ = await service.run("paid", None, wait_s=60)
        assert execution.status == "succeeded", execution.error
        assert execution.output == [{"early": True}]
        # Taken once: the next execution waits for a new one, and the same event sent
        # again (a broker's redelivery) is known as a duplicate, not offered again.
        second = await waiting(ember, "paid")
        assert second.status == "waiting"
        redelivered = await service.publish(event("com.shop.paid", {"early": True}, id=early.id))
        assert redelivered.duplicate and redelivered.executions == 0
        assert (await service.get_execution(second.id)).status == "waiting"

    run_wf(scenario)


def test_schedule_on_all_starts_only_when_both_came(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        service.deploy_data("joined", doc("joined", [{"echo": {"set": {"got": "${ length }"}}}],
                                          schedule={"on": {"all": [
                                              {"with": {"type": "com.iot.temp"}},
                                              {"with": {"type": "com.iot.door"}},
                                          ]}}))
        first = await service.publish(event("com.iot.temp", {"c": 21}))
        assert first.schedules == 0
        assert service.list_executions(workflow="joined").items == []
        second = await service.publish(event("com.iot.door", {"open": True}))
        assert second.schedules == 1
        [execution] = service.list_executions(workflow="joined").items
        done = await finished(ember, execution)
        assert done.output == {"got": 2}
        assert [e["type"] for e in done.input] == ["com.iot.temp", "com.iot.door"]
        # The join starts over.
        third = await service.publish(event("com.iot.door", {"open": False}))
        assert third.schedules == 0

    run_wf(scenario)


def test_an_execution_whose_listen_shows_running_takes_the_event_sent_then(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        service.deploy_data("race", doc("race", [
            {"w": {"wait": "PT0.001S"}},
            {"l": {"listen": {"to": {"one": {
                "with": {"type": "com.race"},
                "correlate": {"k": {"from": ".data.k", "expect": "${ .k }"}}}}}}},
        ]))
        for k in range(30):
            execution, _ = await service.run("race", {"k": k})

            async def listening(execution_id: str = execution.id) -> bool:
                found = await service.get_execution(execution_id)
                return any(s.path == "/do/1/l" and s.status == "running"
                           for s in service.steps(found))

            # "waiting" also covers the wait's timer: wait for the listen itself.
            await until_true(listening, message="the listen started")
            result = await service.publish(event("com.race", {"k": k}))
            assert result.executions == 1, f"round {k}: the waiting execution missed it"
            assert (await finished(ember, execution)).status == "succeeded"

    run_wf(scenario)
