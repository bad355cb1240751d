"""The executor's state machine, driven by a small in-memory shell: canned functions answer
calls, a fake clock fires timers, events are delivered by hand."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ember.workflows import errors as wf_errors
from ember.workflows.machine import (
    Action,
    CallFunction,
    CallResult,
    CancelCall,
    CancelRequested,
    CancelTimer,
    Completion,
    Emit,
    EventArrived,
    ExecutionState,
    Finished,
    Listen,
    StartTimer,
    StartWorkflow,
    StopListening,
    TimerFired,
    WorkflowFinished,
    action_from_dict,
    action_to_dict,
    outstanding,
    start,
    step,
)
from ember.workflows.machine_tasks import retry_delay
from ember.workflows.model import Backoff, Duration, RetryPolicy, Workflow
from ember.workflows.parser import parse_workflow

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
HEAD = "document: {dsl: 1.0.0, namespace: test, name: flow, version: 1.0.0}\n"


class Fail(Exception):
    """Raised by a canned function: the call answers with this problem."""

    def __init__(self, **problem: Any) -> None:
        super().__init__(problem)
        self.problem = problem


def parse(body: str) -> Workflow:
    return parse_workflow(HEAD + textwrap.dedent(body))


class Shell:
    """Plays the durable shell: performs actions, answers calls, fires timers."""

    def __init__(
        self,
        body: str | Workflow,
        functions: dict[str, Callable[[Any], Any]] | None = None,
        *,
        execution_id: str = "exec-1",
        roundtrip: bool = False,
        in_place: bool = False,
    ) -> None:
        self.workflow = parse(body) if isinstance(body, str) else body
        self.functions = functions or {}
        self.execution_id = execution_id
        self.roundtrip = roundtrip
        self.in_place = in_place
        self.now = T0
        self.state: ExecutionState | None = None
        self.calls: dict[str, CallFunction] = {}
        self.timers: dict[str, datetime] = {}
        self.listens: dict[str, Listen] = {}
        self.actions: list[Action] = []
        self.emitted: list[dict[str, Any]] = []
        self.finished: Finished | None = None
        self.peak = 0
        self.fired: list[tuple[str, datetime]] = []

    def start(self, data: Any = None) -> Shell:
        state, actions = start(self.workflow, data, execution_id=self.execution_id, now=self.now)
        self.keep(state)
        self.perform(actions)
        return self

    def keep(self, state: ExecutionState) -> None:
        if self.roundtrip:
            state = ExecutionState.from_dict(json.loads(json.dumps(state.to_dict())))
        self.state = state

    def deliver(self, completion: Completion) -> list[Action]:
        assert self.state is not None
        state, actions = step(
            self.workflow, self.state, completion, now=self.now, in_place=self.in_place
        )
        self.keep(state)
        self.perform(actions)
        return actions

    def perform(self, actions: list[Action]) -> None:
        self.actions.extend(actions)
        for action in actions:
            if isinstance(action, CallFunction):
                self.calls[action.action_id] = action
            elif isinstance(action, CancelCall):
                del self.calls[action.action_id]
            elif isinstance(action, StartTimer):
                self.timers[action.action_id] = action.fire_at
            elif isinstance(action, CancelTimer):
                del self.timers[action.action_id]
            elif isinstance(action, Listen):
                self.listens[action.action_id] = action
            elif isinstance(action, StopListening):
                del self.listens[action.action_id]
            elif isinstance(action, Emit):
                self.emitted.append(action.event)
            elif isinstance(action, Finished):
                assert self.finished is None, "finished twice"
                self.finished = action
        self.peak = max(self.peak, len(self.calls))

    def answer(self, action_id: str) -> None:
        call = self.calls.pop(action_id)
        try:
            output = self.functions[call.function](call.payload)
        except Fail as failure:
            self.deliver(CallResult(action_id, error=failure.problem))
        else:
            self.deliver(CallResult(action_id, output=output))

    def fire_next(self) -> None:
        action_id = min(self.timers, key=lambda a: self.timers[a])
        self.now = max(self.now, self.timers.pop(action_id))
        self.fired.append((action_id, self.now))
        self.deliver(TimerFired(action_id))

    def run(self, *, newest_first: bool = False, timers: bool = True) -> Shell:
        """Answer calls (oldest first, or newest first) and fire timers until idle."""
        while self.finished is None:
            if self.calls:
                ids = list(self.calls)
                self.answer(ids[-1] if newest_first else ids[0])
            elif timers and self.timers:
                self.fire_next()
            else:
                break
        return self

    def send(self, event: dict[str, Any]) -> list[Action]:
        return self.deliver(EventArrived(event))

    @property
    def output(self) -> Any:
        assert self.finished is not None and self.finished.status == "succeeded", self.finished
        return self.finished.output

    @property
    def error(self) -> dict[str, Any]:
        assert self.finished is not None and self.finished.status == "failed", self.finished
        assert self.finished.error is not None
        return self.finished.error

    def of(self, kind: type[Any]) -> list[Any]:
        return [action for action in self.actions if isinstance(action, kind)]


def echo(payload: Any) -> Any:
    return payload


# -- sequences and flow -----------------------------------------------------------------------


SEQUENCE = """
do:
  - validate:
      call: validate
      with: { order: '${ .order }' }
      export: { as: '$context + {validated: .}' }
  - price:
      call: price:live
      output: { as: '.total' }
  - report:
      set:
        total: '${ . }'
        validated: '${ $context.validated.ok }'
"""


def test_a_sequence_passes_each_output_on_as_the_next_input() -> None:
    shell = Shell(
        SEQUENCE,
        {
            "validate": lambda p: {"ok": True, "items": p["order"]["items"]},
            "price": lambda p: {"total": 10 * len(p["items"])},
        },
    ).start({"order": {"items": [1, 2, 3]}})
    assert shell.state is not None and shell.state.status == "running"
    shell.run()
    assert shell.output == {"total": 30, "validated": True}
    calls = shell.of(CallFunction)
    assert [(c.function, c.qualifier) for c in calls] == [("validate", "latest"), ("price", "live")]
    assert calls[0].payload == {"order": {"items": [1, 2, 3]}}
    assert calls[1].payload == {"ok": True, "items": [1, 2, 3]}
    assert calls[0].idempotency_key == "exec-1:/do/0/validate:1"
    assert shell.state is not None
    assert shell.state.status == "succeeded"
    report = shell.state.tasks["/do/2/report"]
    assert (report["status"], report["attempts"]) == ("succeeded", 1)
    assert shell.state.task_input("/do/2/report") == 30
    assert shell.state.raw_input("/do/1/price") == {"ok": True, "items": [1, 2, 3]}
    assert report["raw_from"] == ["output", "/do/1/price"]  # not a copy


def test_then_jumps_to_a_task_exits_a_list_and_ends_the_workflow() -> None:
    shell = Shell(
        """
        do:
          - first:
              set: { trail: [first] }
              then: third
          - second:
              set: { trail: [never] }
          - third:
              do:
                - inner:
                    set: '${ .trail += ["inner"] }'
                    then: exit
                - skipped:
                    set: { trail: [never] }
          - fourth:
              set: '${ .trail += ["fourth"] }'
              then: end
          - fifth:
              set: { trail: [never] }
        """
    ).start()
    assert shell.output == {"trail": ["first", "inner", "fourth"]}
    assert shell.state is not None
    assert "/do/1/second" not in shell.state.tasks
    assert "/do/4/fifth" not in shell.state.tasks


def test_if_skips_a_task_and_passes_its_input_on() -> None:
    shell = Shell(
        """
        do:
          - maybe:
              if: .run
              set: { ran: true }
          - after:
              set: { seen: '${ . }' }
        """
    ).start({"run": False})
    assert shell.output == {"seen": {"run": False}}
    assert shell.state is not None
    assert shell.state.tasks["/do/0/maybe"]["status"] == "skipped"


SWITCH = """
do:
  - route:
      switch:
        - big:
            when: .amount > 100
            then: review
        - small:
            when: .amount > 0
            then: accept
        - otherwise:
            then: reject
  - review:
      set: { decision: review }
      then: end
  - accept:
      set: { decision: accept }
      then: end
  - reject:
      set: { decision: reject }
"""


@pytest.mark.parametrize(
    ("amount", "decision"), [(500, "review"), (5, "accept"), (0, "reject"), (101, "review")]
)
def test_switch_takes_the_first_matching_case_or_the_default(amount: int, decision: str) -> None:
    assert Shell(SWITCH).start({"amount": amount}).output == {"decision": decision}


# -- fork -------------------------------------------------------------------------------------


FORK = """
do:
  - pay:
      fork:
        compete: {compete}
        branches:
          - charge:
              call: charge
          - reserve:
              call: reserve
          - note:
              set: '${ "noted" }'
"""


def test_fork_outputs_every_branch_in_branch_order() -> None:
    shell = Shell(
        FORK.replace("{compete}", "false"),
        {"charge": lambda p: "charged", "reserve": lambda p: "reserved"},
    ).start({"id": 1})
    assert shell.peak == 2  # both calls out at once
    shell.run(newest_first=True)  # reserve answers before charge
    assert shell.output == ["charged", "reserved", "noted"]


def test_a_failing_branch_fails_the_fork_and_cancels_the_others() -> None:
    def broken(payload: Any) -> Any:
        raise Fail(type=wf_errors.COMMUNICATION, status=503, detail="down")

    shell = Shell(FORK.replace("{compete}", "false"), {"charge": broken, "reserve": echo}).start()
    shell.answer(next(iter(shell.calls)))  # charge fails
    assert shell.error["type"] == wf_errors.COMMUNICATION
    assert shell.error["instance"] == "/do/0/pay/fork/branches/0/charge"
    assert [c.action_id for c in shell.of(CancelCall)] == [
        "call:/do/0/pay/fork/branches/1/reserve#1"
    ]


def test_compete_takes_the_first_branch_to_finish_and_cancels_the_rest() -> None:
    workflow = parse(
        """
        do:
          - race:
              fork:
                compete: true
                branches:
                  - slow:
                      call: slow
                  - fast:
                      call: fast
        """
    )
    shell = Shell(workflow, {"slow": lambda p: "slow", "fast": lambda p: "fast"}).start()
    slow_id, fast_id = list(shell.calls)
    shell.answer(fast_id)
    assert shell.output == "fast"
    assert [c.action_id for c in shell.of(CancelCall)] == [slow_id]
    # The loser's late result is ignored: the state does not change.
    assert shell.state is not None
    before = shell.state
    assert shell.deliver(CallResult(slow_id, output="slow")) == []
    assert shell.state is before
    assert shell.state.tasks["/do/0/race/fork/branches/0/slow"]["status"] == "cancelled"


# -- for --------------------------------------------------------------------------------------


FOR = """
do:
  - resizeAll:
      for:
        each: image
        in: .images
        concurrency: 3
      do:
        - resize:
            call: resize
            with: { url: '${ $image }', position: '${ $index }', size: '${ .size }' }
"""


def test_for_runs_at_most_concurrency_iterations_at_once_and_keeps_input_order() -> None:
    images = [f"img{i}.png" for i in range(10)]
    shell = Shell(FOR, {"resize": lambda p: f"{p['url']}@{p['size']}#{p['position']}"}).start(
        {"images": images, "size": 64}
    )
    assert len(shell.calls) == 3
    shell.run(newest_first=True)
    assert shell.peak == 3
    assert shell.output == [f"img{i}.png@64#{i}" for i in range(10)]
    keys = [c.idempotency_key for c in shell.of(CallFunction)]
    assert len(set(keys)) == 10
    assert "exec-1:/do/0/resizeAll/do/0/resize@7:1" in keys


def test_for_without_concurrency_runs_one_iteration_at_a_time_and_stops_at_while() -> None:
    shell = Shell(
        """
        do:
          - sum:
              for:
                in: .
                at: position
              while: $item < 4
              do:
                - double:
                    call: double
                    with: '${ [$item, $position] }'
        """,
        {"double": lambda p: p[0] * 2 + p[1] * 100},
    ).start([1, 2, 3, 4, 5])
    shell.run()
    assert shell.peak == 1
    assert shell.output == [2, 104, 206]


def test_for_over_nothing_outputs_an_empty_list() -> None:
    assert Shell(FOR, {"resize": echo}).start({"images": []}).output == []


def test_a_failing_iteration_fails_the_for_and_cancels_the_running_ones() -> None:
    def resize(payload: Any) -> Any:
        if payload["position"] == 1:
            raise Fail(status=500, detail="corrupt image")
        return "ok"

    shell = Shell(FOR, {"resize": resize}).start({"images": ["a", "b", "c", "d"], "size": 1})
    shell.run()
    assert shell.error["instance"] == "/do/0/resizeAll/do/0/resize"
    assert shell.error["type"] == wf_errors.RUNTIME
    assert len(shell.of(CancelCall)) == 2  # "c" and "d" were still out


# -- try, catch, retry, raise -----------------------------------------------------------------


RETRY = """
do:
  - guarded:
      try:
        - charge:
            call: charge
      catch:
        errors:
          with: { type: https://serverlessworkflow.io/spec/1.0.0/errors/communication }
        as: failure
        retry:
          delay: PT1S
          backoff: { BACKOFF: {} }
          limit: { attempt: { count: 5 } }
        CATCH_DO
"""


def flaky(failures: int) -> Callable[[Any], Any]:
    seen: list[Any] = []

    def charge(payload: Any) -> Any:
        seen.append(payload)
        if len(seen) <= failures:
            raise Fail(type=wf_errors.COMMUNICATION, status=503, detail=f"try {len(seen)}")
        return {"charged": payload, "after": len(seen)}

    return charge


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        ("constant", [1, 1, 1]),
        ("linear", [1, 2, 3]),
        ("exponential", [1, 2, 4]),
    ],
)
def test_retry_waits_the_backoff_delay_and_runs_the_task_again(
    backoff: str, delays: list[int]
) -> None:
    body = RETRY.replace("BACKOFF", backoff).replace("CATCH_DO", "")
    shell = Shell(body, {"charge": flaky(3)}).start(7)
    shell.run()
    assert shell.output == {"charged": 7, "after": 4}
    moments = [T0]
    for seconds in delays:
        moments.append(moments[-1] + timedelta(seconds=seconds))
    assert [at for _, at in shell.fired] == moments[1:]
    keys = [c.idempotency_key for c in shell.of(CallFunction)]
    assert keys == [f"exec-1:/do/0/guarded/try/0/charge:{n}" for n in (1, 2, 3, 4)]
    assert shell.state is not None
    assert shell.state.tasks["/do/0/guarded/try/0/charge"]["attempts"] == 4


def test_retries_exhausted_run_the_catch_do_with_the_error() -> None:
    body = RETRY.replace("BACKOFF", "constant").replace(
        "CATCH_DO",
        "do:\n          - fallback:\n              set: { gaveUp: '${ $failure.detail }' }",
    )
    shell = Shell(body, {"charge": flaky(99)}).start(7)
    shell.run()
    assert shell.output == {"gaveUp": "try 5"}
    assert len(shell.of(CallFunction)) == 5


def test_retries_exhausted_without_catch_do_fail_with_the_last_error() -> None:
    body = RETRY.replace("BACKOFF", "constant").replace("CATCH_DO", "")
    shell = Shell(body, {"charge": flaky(99)}).start(7)
    shell.run()
    assert shell.error["detail"] == "try 5"
    assert shell.error["instance"] == "/do/0/guarded/try/0/charge"


def test_an_error_the_catch_does_not_name_goes_through() -> None:
    body = RETRY.replace("BACKOFF", "constant").replace("CATCH_DO", "")

    def charge(payload: Any) -> Any:
        raise Fail(type=wf_errors.VALIDATION, status=400, detail="bad card")

    shell = Shell(body, {"charge": charge}).start(7)
    shell.run()
    assert shell.error["type"] == wf_errors.VALIDATION
    assert shell.fired == []


def test_retry_delay_jitter_is_deterministic_from_its_seed() -> None:
    policy = RetryPolicy(
        delay=Duration(1000),
        backoff=Backoff("exponential"),
        jitter_from=Duration(100),
        jitter_to=Duration(500),
    )
    first = retry_delay(policy, 3, "exec-1|/do/0/t|3")
    assert first == retry_delay(policy, 3, "exec-1|/do/0/t|3")
    assert 4100 <= first < 4500
    others = {retry_delay(policy, 3, f"exec-{n}|/do/0/t|3") for n in range(20)}
    assert len(others) > 1


RAISE = """
do:
  - guarded:
      try:
        - check:
            raise:
              error:
                type: https://example.com/errors/out-of-stock
                status: 409
                detail: '${ "no " + .item }'
      catch:
        errors: { with: { status: 409 } }
        when: $error.detail != "ignore"
        do:
          - recover:
              set: { recovered: '${ $error.detail }', at: '${ $error.instance }' }
"""


def test_a_raised_error_is_caught_and_handled() -> None:
    shell = Shell(RAISE).start({"item": "socks"})
    assert shell.output == {"recovered": "no socks", "at": "/do/0/guarded/try/0/check"}


def test_an_uncaught_raise_fails_the_execution_at_the_task() -> None:
    shell = Shell(
        """
        do:
          - check:
              raise:
                error: { type: https://example.com/errors/nope, status: 422, title: Nope }
        """
    ).start()
    assert shell.error == {
        "type": "https://example.com/errors/nope",
        "status": 422,
        "title": "Nope",
        "instance": "/do/0/check",
    }
    assert shell.state is not None and shell.state.status == "failed"


def test_a_failing_expression_fails_the_execution_with_the_task_path() -> None:
    shell = Shell("do:\n  - bad:\n      set: '${ .a.b.c + 1 }'\n").start({"a": "text"})
    assert shell.error["type"] == wf_errors.EXPRESSION
    assert shell.error["instance"] == "/do/0/bad/set"


# -- listen, emit, wait, timeouts -------------------------------------------------------------


def event(kind: str, order: int, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{kind}-{order}",
        "source": "shop",
        "type": f"com.shop.{kind}",
        "data": {"orderId": order, **extra},
    }


LISTEN_ALL = """
do:
  - both:
      listen:
        to:
          all:
            - with: { type: com.shop.paid }
            - with: { type: com.shop.packed, data: { ready: true } }
"""


@pytest.mark.parametrize("order", [("paid", "packed"), ("packed", "paid")])
def test_listen_all_completes_when_every_filter_matched_in_any_order(
    order: tuple[str, str],
) -> None:
    shell = Shell(LISTEN_ALL).start()
    assert shell.state is not None and shell.state.status == "waiting"
    assert [f["with"]["type"] for f in shell.of(Listen)[0].filters] == [
        "com.shop.paid",
        "com.shop.packed",
    ]
    shell.send({**event("packed", 1, ready=False), "id": "early"})  # data does not match
    shell.send(event(order[0], 1, ready=True, step=order[0]))
    assert shell.finished is None
    shell.send(event(order[1], 1, ready=True, step=order[1]))
    assert shell.output == [  # in filter order
        {"orderId": 1, "ready": True, "step": "paid"},
        {"orderId": 1, "ready": True, "step": "packed"},
    ]
    assert len(shell.of(StopListening)) == 1


def test_listen_any_completes_on_the_first_and_consumes_no_more() -> None:
    shell = Shell(
        """
        do:
          - either:
              listen:
                to:
                  any:
                    - with: { type: com.shop.shipped }
                    - with: { type: com.shop.cancelled }
                read: envelope
        """
    ).start()
    shell.send(event("cancelled", 1))
    assert shell.output == [event("cancelled", 1)]
    assert shell.state is not None
    before = shell.state
    assert shell.send(event("shipped", 1)) == []
    assert shell.state is before


CORRELATED = """
do:
  - shipped:
      listen:
        to:
          one:
            with: { type: com.shop.shipped }
            correlate:
              order: { from: .data.orderId, expect: '${ .orderId }' }
"""


def test_correlation_keeps_two_executions_waiting_for_their_own_order() -> None:
    workflow = parse(CORRELATED)
    first = Shell(workflow, execution_id="exec-1").start({"orderId": 1})
    second = Shell(workflow, execution_id="exec-2").start({"orderId": 2})
    for shell in (first, second):  # the bus delivers every event to both
        shell.send(event("shipped", 2, carrier="ups"))
    assert first.finished is None
    assert second.output == [{"orderId": 2, "carrier": "ups"}]
    first.send(event("shipped", 1, carrier="dhl"))
    assert first.output == [{"orderId": 1, "carrier": "dhl"}]


def test_correlation_without_expect_is_set_by_the_first_event() -> None:
    shell = Shell(
        """
        do:
          - pair:
              listen:
                to:
                  all:
                    - with: { type: com.shop.paid }
                      correlate: { order: { from: .data.orderId } }
                    - with: { type: com.shop.packed }
                      correlate: { order: { from: .data.orderId } }
        """
    ).start()
    shell.send(event("paid", 1))
    shell.send(event("packed", 2))
    assert shell.finished is None
    shell.send(event("packed", 1))
    assert shell.output == [{"orderId": 1}, {"orderId": 1}]


LISTEN_TIMEOUT = """
do:
  - waitForShipping:
      try:
        - shipped:
            listen:
              to:
                one: { with: { type: com.shop.shipped } }
            timeout: { after: PT24H }
      catch:
        errors: { with: { type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout } }
        do:
          - late:
              set: { late: true, why: '${ $error.title }' }
"""


def test_a_listen_timeout_fails_the_task_and_try_catches_it() -> None:
    shell = Shell(LISTEN_TIMEOUT).start()
    assert [t.fire_at for t in shell.of(StartTimer)] == [T0 + timedelta(hours=24)]
    shell.run()
    assert shell.output == {"late": True, "why": "Timeout"}
    assert shell.of(StopListening)
    assert shell.send(event("shipped", 1)) == []


def test_an_event_before_the_timeout_cancels_the_timer() -> None:
    shell = Shell(LISTEN_TIMEOUT).start()
    shell.send(event("shipped", 1))
    assert shell.output == [{"orderId": 1}]
    assert len(shell.of(CancelTimer)) == 1 and shell.timers == {}


def test_wait_starts_a_timer_and_goes_on_when_it_fires() -> None:
    shell = Shell(
        "do:\n  - pause:\n      wait: PT5M\n  - after:\n      set: '${ \"done\" }'\n"
    ).start()
    assert shell.state is not None and shell.state.status == "waiting"
    assert shell.of(StartTimer)[0].fire_at == T0 + timedelta(minutes=5)
    shell.run()
    assert shell.output == "done"


def test_workflow_timeout_fails_the_execution_and_cancels_what_runs() -> None:
    shell = Shell("timeout: { after: PT1M }\ndo:\n  - slow:\n      call: slow\n").start()
    shell.fire_next()
    assert shell.error["type"] == wf_errors.TIMEOUT
    assert shell.error["instance"] == "/"
    assert len(shell.of(CancelCall)) == 1 and shell.calls == {}


def test_emit_publishes_a_cloud_event_and_passes_the_input_on() -> None:
    shell = Shell(
        """
        do:
          - announce:
              emit:
                event:
                  with:
                    source: shop
                    type: com.shop.placed
                    data: { orderId: '${ .id }' }
        """
    ).start({"id": 9})
    assert shell.output == {"id": 9}
    assert shell.emitted == [
        {
            "source": "shop",
            "type": "com.shop.placed",
            "data": {"orderId": 9},
            "id": "exec-1:/do/0/announce:1",
            "specversion": "1.0",
            "time": T0.isoformat(),
        }
    ]


def test_a_sub_workflow_is_started_and_awaited() -> None:
    shell = Shell(
        """
        do:
          - ship:
              run:
                workflow:
                  namespace: shop
                  name: ship-order
                  version: 1.0.0
                  input: { id: '${ .id }' }
        """
    ).start({"id": 3})
    started = shell.of(StartWorkflow)[0]
    assert (started.name, started.input, started.await_) == ("ship-order", {"id": 3}, True)
    shell.deliver(WorkflowFinished(started.action_id, output={"tracking": "X1"}))
    assert shell.output == {"tracking": "X1"}


def test_cancel_stops_calls_and_timers() -> None:
    shell = Shell(
        """
        do:
          - both:
              fork:
                branches:
                  - work: { call: work }
                  - pause: { wait: PT1H }
        """
    ).start()
    shell.deliver(CancelRequested())
    assert shell.finished == Finished("cancelled")
    assert shell.calls == {} and shell.timers == {}
    assert shell.state is not None and shell.state.status == "cancelled"


# -- durability contracts ---------------------------------------------------------------------


EVERYTHING = """
timeout: { after: PT1H }
do:
  - prepare:
      call: prepare
      export: { as: '{prepared: .}' }
  - fan:
      fork:
        branches:
          - items:
              for: { in: .items, concurrency: 2 }
              do:
                - guarded:
                    try:
                      - work:
                          call: work
                          with: '${ $item }'
                    catch:
                      errors: { with: { status: 503 } }
                      retry: { delay: PT2S, backoff: { exponential: {} } }
          - approval:
              listen:
                to:
                  one: { with: { type: com.shop.approved } }
  - done:
      set: { results: '${ .[0] }', approved: '${ .[1][0].ok }', prepared: '${ $context.prepared }' }
"""


def run_everything(roundtrip: bool, in_place: bool = False) -> Shell:
    tries: dict[int, int] = {}

    def work(item: int) -> Any:
        tries[item] = tries.get(item, 0) + 1
        if item % 2 and tries[item] < 3:
            raise Fail(status=503, detail="busy")
        return item * 10

    shell = Shell(
        EVERYTHING,
        {"prepare": lambda p: {"items": [1, 2, 3, 4, 5]}, "work": work},
        roundtrip=roundtrip,
        in_place=in_place,
    ).start({})
    shell.run(timers=False)
    shell.send({"id": "a1", "source": "boss", "type": "com.shop.approved", "data": {"ok": True}})
    shell.run()
    return shell


def test_state_through_json_after_every_transition_gives_the_same_result() -> None:
    direct, persisted = run_everything(False), run_everything(True)
    in_place = run_everything(False, in_place=True)
    assert in_place.actions == direct.actions
    assert direct.output == {
        "results": [10, 20, 30, 40, 50],
        "approved": True,
        "prepared": {"items": [1, 2, 3, 4, 5]},
    }
    assert persisted.output == direct.output
    assert persisted.actions == direct.actions
    assert direct.state is not None and persisted.state is not None
    assert persisted.state.to_dict() == direct.state.to_dict()
    assert direct.peak == 2


def test_a_duplicate_completion_is_ignored_and_a_step_is_deterministic() -> None:
    shell = Shell(SEQUENCE, {"validate": lambda p: {"ok": True, "items": []}}).start(
        {"order": {"items": []}}
    )
    assert shell.state is not None
    before = shell.state
    action_id = next(iter(shell.calls))
    completion = CallResult(action_id, output={"ok": True, "items": []})
    again, actions_again = step(shell.workflow, before, completion, now=T0)
    shell.deliver(completion)
    after = shell.state
    assert again.to_dict() == after.to_dict()  # the same step twice: the same state
    assert [type(a) for a in actions_again] == [CallFunction]
    assert before.tasks["/do/0/validate"]["status"] == "running"  # the input is not changed
    assert shell.deliver(completion) == []  # redelivered: ignored
    assert shell.state is after
    assert shell.deliver(TimerFired("timer:/nowhere#1")) == []
    assert shell.deliver(CallResult("call:/do/9/x#1", output=1)) == []


def test_an_event_delivered_twice_is_consumed_once() -> None:
    shell = Shell(
        """
        do:
          - three:
              listen:
                to:
                  any: [ { with: { type: com.shop.tick } } ]
                  until: length >= 2
        """
    ).start()
    shell.send(event("tick", 1))
    assert shell.send(event("tick", 1)) == []
    assert shell.finished is None
    shell.send(event("tick", 2))
    assert shell.output == [{"orderId": 1}, {"orderId": 2}]


def test_a_call_error_is_located_at_the_task() -> None:
    def broken(payload: Any) -> Any:
        raise Fail(title="Function crashed", detail="ZeroDivisionError")

    shell = Shell("do:\n  - a:\n      call: broken\n", {"broken": broken}).start().run()
    assert shell.error == {
        "type": wf_errors.RUNTIME,
        "status": 500,
        "title": "Function crashed",
        "detail": "ZeroDivisionError",
        "instance": "/do/0/a",
    }


def test_an_event_no_listen_takes_changes_nothing() -> None:
    shell = Shell(CORRELATED).start({"orderId": 1})
    assert shell.state is not None
    before = shell.state
    assert shell.send(event("shipped", 2)) == []
    assert shell.send(event("paid", 1)) == []
    assert shell.state is before and before.events == []
    shell.send(event("shipped", 1))
    assert shell.output == [{"orderId": 1}]


def test_a_completion_of_the_wrong_kind_is_ignored() -> None:
    shell = Shell("do:\n  - pause:\n      wait: PT5M\n").start()
    timer_id = next(iter(shell.timers))
    assert shell.deliver(CallResult(timer_id, output=1)) == []
    assert shell.deliver(WorkflowFinished(timer_id, output=1)) == []
    assert shell.finished is None


def test_listen_any_until_another_consumption_outputs_what_came_before() -> None:
    shell = Shell(
        """
        do:
          - collect:
              listen:
                to:
                  any: [ { with: { type: com.shop.tick } } ]
                  until:
                    one: { with: { type: com.shop.close } }
        """
    ).start()
    shell.send(event("tick", 1))
    shell.send(event("tick", 2))
    assert shell.finished is None
    shell.send(event("close", 3))
    assert shell.output == [{"orderId": 1}, {"orderId": 2}]


def test_a_failing_correlation_expression_fails_the_listen_at_its_field() -> None:
    shell = Shell(
        """
        do:
          - shipped:
              listen:
                to:
                  one:
                    with: { type: com.shop.shipped }
                    correlate: { order: { from: '.data.orderId + 1' } }
        """
    ).start()
    shell.send({"id": "x", "source": "s", "type": "com.shop.shipped", "data": {"orderId": "a"}})
    assert shell.error["type"] == wf_errors.EXPRESSION
    assert shell.error["instance"] == "/do/0/shipped/listen/to/correlate/order/from"


def test_call_http_renders_its_request_from_the_input() -> None:
    from ember.workflows.machine import CallHttp

    shell = Shell(
        """
        do:
          - fetch:
              call: http
              with:
                method: post
                endpoint: '${ "https://shop.example/orders/" + (.id | tostring) }'
                headers: { X-Order: '${ .id | tostring }' }
                body: { total: '${ .total }' }
        """
    ).start({"id": 4, "total": 9.5})
    request = shell.of(CallHttp)[0]
    assert (request.method, request.endpoint) == ("POST", "https://shop.example/orders/4")
    assert (request.headers, request.body, request.output) == (
        {"X-Order": "4"},
        {"total": 9.5},
        "content",
    )
    shell.deliver(CallResult(request.action_id, output={"created": True}))
    assert shell.output == {"created": True}


def test_a_task_timeout_cancels_the_call_and_is_a_timeout_error() -> None:
    shell = Shell("do:\n  - slow:\n      call: slow\n      timeout: { after: PT30S }\n").start()
    shell.fire_next()
    assert shell.error["type"] == wf_errors.TIMEOUT
    assert shell.error["instance"] == "/do/0/slow"
    assert shell.error["status"] == 408
    assert [c.action_id for c in shell.of(CancelCall)] == ["call:/do/0/slow#1"]


def test_a_timeout_on_a_for_cancels_its_running_iterations() -> None:
    shell = Shell(
        """
        do:
          - guarded:
              try:
                - all:
                    for: { in: ., concurrency: 2 }
                    do:
                      - slow: { call: slow }
                    timeout: { after: PT10S }
              catch:
                errors: { with: { status: 408 } }
                do:
                  - report:
                      set: { timedOut: '${ $error.instance }' }
        """,
        {"slow": echo},
    ).start([1, 2, 3])
    assert len(shell.calls) == 2
    shell.fire_next()
    assert shell.output == {"timedOut": "/do/0/guarded/try/0/all"}
    assert len(shell.of(CancelCall)) == 2 and shell.calls == {}
    assert shell.state is not None
    assert shell.state.tasks["/do/0/guarded/try/0/all/do/0/slow@0"]["status"] == "cancelled"


def test_a_compete_fork_fails_only_when_every_branch_failed() -> None:
    def broken(payload: Any) -> Any:
        raise Fail(status=502, detail=str(payload))

    shell = Shell(
        """
        do:
          - race:
              fork:
                compete: true
                branches:
                  - a: { call: broken, with: a }
                  - b: { call: broken, with: b }
        """,
        {"broken": broken},
    ).start()
    shell.answer(next(iter(shell.calls)))
    assert shell.finished is None
    shell.run()
    assert (shell.error["detail"], shell.error["instance"]) == (
        "b",
        "/do/0/race/fork/branches/1/b",
    )


def test_finished_lists_are_forgotten_and_tasks_remain_as_history() -> None:
    body = RETRY.replace("BACKOFF", "constant").replace("CATCH_DO", "")
    shell = Shell(body, {"charge": flaky(1)}).start(7).run()
    assert shell.output == {"charged": 7, "after": 2}
    assert shell.state is not None
    assert shell.state.lists == {} and shell.state.pending == {}
    assert {key: node["status"] for key, node in shell.state.tasks.items()} == {
        "/do/0/guarded": "succeeded",
        "/do/0/guarded/try/0/charge": "succeeded",
    }


def test_retry_stops_past_limit_duration() -> None:
    body = RETRY.replace("BACKOFF", "exponential").replace("CATCH_DO", "")
    body = body.replace("limit: { attempt: { count: 5 } }", "limit: { duration: PT5S }")
    shell = Shell(body, {"charge": flaky(99)}).start(7).run()
    # Retries at +1 s and +3 s; the next would be at +7 s, past the 5 s limit.
    assert [at - T0 for _, at in shell.fired] == [timedelta(seconds=1), timedelta(seconds=3)]
    assert shell.error["detail"] == "try 3"


def test_nested_for_variables_and_a_catch_variable_reach_inner_tasks() -> None:
    shell = Shell(
        """
        do:
          - rows:
              for: { each: row, in: .rows }
              do:
                - cells:
                    for: { each: cell, at: column, in: $row }
                    do:
                      - guarded:
                          try:
                            - check:
                                if: $cell < 0
                                raise:
                                  error: { type: https://example.com/negative, status: 400 }
                            - keep:
                                set: '${ [$cell, $column] }'
                          catch:
                            as: problem
                            do:
                              - fix:
                                  set: '${ [0, $column, $problem.status] }'
        """
    ).start({"rows": [[1, -2], [3]]})
    assert shell.output == [[[1, 0], [0, 1, 400]], [[3, 0]]]


def test_each_retry_has_its_own_timer_so_a_stale_one_is_ignored() -> None:
    body = RETRY.replace("BACKOFF", "constant").replace("CATCH_DO", "")
    shell = Shell(body, {"charge": flaky(2)}).start(7)
    shell.run(timers=False)
    first_timer = next(iter(shell.timers))
    shell.fire_next()
    shell.run(timers=False)  # the second attempt fails too: a second retry timer
    second_timer = next(iter(shell.timers))
    assert first_timer != second_timer
    assert shell.deliver(TimerFired(first_timer)) == []  # redelivered: no early retry
    shell.run()
    assert shell.output == {"charged": 7, "after": 3}


def test_outstanding_actions_are_what_the_shell_still_waits_for_at_every_transition() -> None:
    class Checked(Shell):
        def perform(self, actions: list[Action]) -> None:
            super().perform(actions)
            assert self.state is not None
            if self.finished is None:
                issued = {getattr(a, "action_id") for a in outstanding(self.state)}  # noqa: B009
                assert issued == {*self.calls, *self.timers, *self.listens}

    shell = Checked(EVERYTHING, {"prepare": lambda p: {"items": [1, 2]}, "work": echo}).start()
    shell.run(timers=False)
    shell.send({"id": "a1", "source": "boss", "type": "com.shop.approved", "data": {"ok": 1}})
    shell.run(timers=False)
    assert shell.output["results"] == [1, 2]


def test_a_shell_restarted_from_the_persisted_state_reissues_and_finishes() -> None:
    functions = {"prepare": lambda p: {"items": [1, 2, 3]}, "work": echo}
    shell = Shell(EVERYTHING, functions).start()
    shell.answer(next(iter(shell.calls)))  # prepare done; two iterations out, a listen
    assert shell.state is not None
    persisted = json.dumps(shell.state.to_dict())
    # The process dies; a new one loads the state and issues what was outstanding again.
    restarted = Shell(EVERYTHING, functions)
    restarted.state = ExecutionState.from_dict(json.loads(persisted))
    again = outstanding(restarted.state)
    assert [action_to_dict(a) for a in again] == [
        action_to_dict(a)
        for a in shell.actions
        if getattr(a, "action_id", None) in {*shell.calls, *shell.timers, *shell.listens}
    ]
    assert all(action_from_dict(action_to_dict(a)) == a for a in again)
    restarted.perform(again)
    restarted.run(timers=False)
    restarted.send({"id": "a1", "source": "boss", "type": "com.shop.approved", "data": {"ok": 1}})
    restarted.run(timers=False)
    assert restarted.output == {
        "results": [1, 2, 3],
        "approved": 1,
        "prepared": {"items": [1, 2, 3]},
    }


ATTEMPT_LIMITED = (
    RETRY.replace("BACKOFF", "constant")
    .replace("CATCH_DO", "")
    .replace(
        "with: { type: https://serverlessworkflow.io/spec/1.0.0/errors/communication }",
        "with: { status: 408 }",
    )
    .replace(
        "limit: { attempt: { count: 5 } }", "limit: { attempt: { count: COUNT, duration: PT10S } }"
    )
)


def test_an_attempt_past_limit_attempt_duration_is_stopped_and_retried() -> None:
    body = ATTEMPT_LIMITED.replace("COUNT", "3")
    shell = Shell(body, {"charge": echo}).start(7)
    first_call = next(iter(shell.calls))
    shell.fire_next()  # the attempt's 10 s are up: its call is cancelled, a retry is due
    assert [c.action_id for c in shell.of(CancelCall)] == [first_call]
    shell.fire_next()  # the retry after 1 s
    second_call = next(iter(shell.calls))
    shell.answer(second_call)
    assert shell.output == 7
    assert [at - T0 for _, at in shell.fired] == [timedelta(seconds=10), timedelta(seconds=11)]
    assert len(shell.of(CancelTimer)) == 1  # the second attempt's limit, once it succeeded
    assert shell.deliver(CallResult(first_call, output="late")) == []


def test_attempts_past_their_duration_exhaust_the_retries_with_a_timeout() -> None:
    body = ATTEMPT_LIMITED.replace("COUNT", "2")
    shell = Shell(body, {"charge": echo}).start(7)
    while shell.finished is None:
        shell.fire_next()
    assert shell.error["type"] == wf_errors.TIMEOUT
    assert shell.error["instance"] == "/do/0/guarded/try"
    assert len(shell.of(CallFunction)) == 2
