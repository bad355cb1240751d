"""The trigger Source contract: each test runs on every kind it applies to (see kits.py),
against the real brokers, as tests/queue/test_contract.py does for queues; and, where the
delivery matters, with each target: a function, the event bus (``publish``) or a workflow
(``run_workflow``), which must keep the same guarantees.

- start, pause, resume and stop can each be called again, and stop before start;
- an event published reaches the function once, as a CloudEvent with the kind's type, the
  trigger as source and ``embertrigger``, and the kind's extension attributes;
- the status follows: connected, events, invocations, failures, last event and last error;
- a stopped source delivers nothing (what durable brokers keep goes to the next source);
- an unreachable broker (or a missing directory) shows in ``last_error`` while the source
  keeps trying, and does not stop the supervisor from serving other triggers;
- a message that fails for good is given up after bounded tries (redelivering kinds)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ember.errors import PayloadTooLarge, ServiceUnavailable
from ember.triggers.base import SUBMIT_TRIES, BackgroundSource
from tests.inprocess import Ember
from tests.triggers.helpers import eventually, retrying, started
from tests.triggers.kits import (
    ALL,
    BROKERS,
    PUBLISHING,
    REDELIVERING,
    TARGETS,
    Event,
    Function,
    Kit,
    kit,
)

WithKit = Callable[[Callable[[Kit], Awaitable[None]]], None]


def _with_kit(kind: str, tmp_path: Path, target: str = "function") -> WithKit:
    def runner(scenario: Callable[[Kit], Awaitable[None]]) -> None:
        async def main() -> None:
            async with kit(kind, tmp_path, target) as made:
                await scenario(made)

        asyncio.run(main())

    return runner


def _each_target(kinds: tuple[str, ...]) -> list[Any]:
    return [pytest.param((k, t), id=f"{k}-{t}") for k in kinds for t in TARGETS]


@pytest.fixture(params=_each_target(ALL))
def any_kind(request: pytest.FixtureRequest, tmp_path: Path) -> WithKit:
    kind, target = request.param
    return _with_kit(kind, tmp_path, target)


@pytest.fixture(params=_each_target(PUBLISHING))
def publishing(request: pytest.FixtureRequest, tmp_path: Path) -> WithKit:
    kind, target = request.param
    return _with_kit(kind, tmp_path, target)


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> WithKit:
    return _with_kit(request.param, tmp_path)


@pytest.fixture(params=_each_target(REDELIVERING))
def redelivering(request: pytest.FixtureRequest, tmp_path: Path) -> WithKit:
    kind, target = request.param
    return _with_kit(kind, tmp_path, target)


def values(made: Kit, events: list[Event]) -> list[Any]:
    return [value for event in events for value in made.values(event)]


def test_start_pause_resume_and_stop_can_be_called_again(any_kind: WithKit) -> None:
    async def scenario(made: Kit) -> None:
        function = Function()
        source, context = made.source(function)
        await source.stop()  # never started: nothing to stop
        await source.start()
        await source.start()
        await made.live(context)
        if made.publishes:
            await made.publish(1)
            await made.publish(2)
            await eventually(lambda: values(made, function.events) == [1, 2], what="1, 2")
        await source.pause()
        await source.pause()
        await made.idle(context)
        await source.resume()
        await source.resume()
        await made.live(context)
        if made.publishes:
            await made.publish(3)
            await eventually(lambda: values(made, function.events) == [1, 2, 3], what="3")
            # One consumer, however many starts: nothing came twice.
            assert values(made, function.attempts) == [1, 2, 3]
        await source.stop()
        await source.stop()
        assert not context.status.connected

    any_kind(scenario)


def test_an_event_reaches_the_function_as_a_cloud_event(publishing: WithKit) -> None:
    async def scenario(made: Kit) -> None:
        function = Function()
        source, context = made.source(function)
        async with started(source, context, connected=False):
            await made.live(context)
            await made.publish({"n": 1})
            await eventually(lambda: bool(function.events), what="the event")
            (event,) = function.events
            assert made.values(event) == [{"n": 1}]
            assert event["specversion"] == "1.0"
            assert event["type"] == f"dev.ember.{made.type}"
            assert event["source"] == f"ember/triggers/{made.name}"
            assert event["embertrigger"] == made.name
            assert made.extensions <= event.keys(), made.extensions - event.keys()
            assert isinstance(event["id"], str) and event["id"]
            assert event["time"] and event["datacontenttype"]
            status = context.status
            assert status.connected
            assert status.events >= 1 and status.invocations == 1
            assert (status.failures, status.dropped, status.last_error) == (0, 0, None)
            assert status.last_event_at is not None

    publishing(scenario)


def test_a_failure_shows_in_the_status(publishing: WithKit) -> None:
    """The queue unavailable once: counted, shown as the last error; a kind that keeps what
    it could not deliver delivers it later, one that cannot counts it as dropped."""

    async def scenario(made: Kit) -> None:
        function = Function()
        refused: list[Event] = []

        def once(event: Event) -> ServiceUnavailable | None:
            if refused:
                return None
            refused.append(event)
            return ServiceUnavailable("the queue is down (test)")

        function.refuse = once
        source, context = made.source(function)
        async with started(source, context, connected=False):
            await made.live(context)
            await made.publish(1)
            await eventually(lambda: context.status.failures == 1, what="the failure")
            assert "the queue is down (test)" in (context.status.last_error or "")
            assert context.status.last_error_at is not None
            if made.redelivers:
                await eventually(lambda: values(made, function.events) == [1], what="again")
                assert context.status.dropped == 0
            else:
                await eventually(lambda: context.status.dropped == 1, what="dropped")
                await made.live(context)
                await made.publish(2)
                await eventually(lambda: values(made, function.events) == [2], what="next")
            # Queued events count once; a synchronous invoke counts each attempt.
            assert context.status.invocations >= 1

    publishing(scenario)


def test_a_stopped_source_delivers_nothing(publishing: WithKit) -> None:
    async def scenario(made: Kit) -> None:
        first = Function()
        source, context = made.source(first)
        async with started(source, context, connected=False):
            await made.live(context)
            await made.publish(1)
            await eventually(lambda: values(made, first.events) == [1], what="1")
        assert not context.status.connected
        await made.publish(2)  # while no source runs

        second = Function()
        source, context = made.source(second)
        async with started(source, context, connected=False):
            await made.live(context)
            await made.publish(3)
            expected = [2, 3] if made.durable else [3]
            await eventually(lambda: sorted(values(made, second.events)) == expected,
                             what=f"{expected}")
        assert values(made, first.attempts) == [1]

    publishing(scenario)


def test_an_unreachable_broker_shows_in_the_last_error(broker: WithKit) -> None:
    async def scenario(made: Kit) -> None:
        function = Function()
        model = made.unreachable()
        source, context = made.source(function, model)
        assert isinstance(source, BackgroundSource)
        source.retry_initial_s = source.retry_max_s = 0.05
        await source.start()
        try:
            await eventually(lambda: context.status.failures >= 2, what="two failed tries")
            error = context.status.last_error or ""
            where = "missing" if made.kind == "storage" else "127.0.0.1:1"
            assert where in error, error
            assert "guest:guest" not in error  # no password in the status
            assert not context.status.connected
            assert retrying(source)
        finally:
            await source.stop()
        assert not retrying(source)

    broker(scenario)


@pytest.mark.parametrize("kind", BROKERS)
def test_an_unreachable_broker_leaves_the_supervisor_serving(
    kind: str, run: Callable[..., None], tmp_path: Path,
) -> None:
    async def scenario(ember: Ember) -> None:
        async with kit(kind, tmp_path) as made:
            await ember.deploy("fn", "def handler(e, c):\n    return 'up'\n")
            source = made.unreachable().model_dump(mode="json")
            created = await ember.http.post(
                "/triggers", json={"name": made.name, "function": "fn", "source": source})
            assert created.status_code == 201, created.text
            answer = await ember.http.post("/triggers", json={
                "name": "web", "function": "fn", "source": {"kind": "http", "path": "/up"}})
            assert answer.status_code == 201, answer.text
            await eventually(lambda: ember.services.supervisor.status(made.name).last_error
                             is not None, what="the last error")
            status = (await ember.http.get(f"/triggers/{made.name}")).json()["status"]
            assert status["connected"] is False and status["last_error"]
            assert (await ember.http.get("/http/up")).text == "up"
            assert (await ember.http.delete(f"/triggers/{made.name}")).status_code == 200
            assert ember.services.supervisor.running() == ["web"]

    run(scenario)


def test_a_message_that_fails_for_good_is_given_up_after_bounded_tries(
    redelivering: WithKit,
) -> None:
    """Too large for the queue (or invalid, or its function missing): tried SUBMIT_TRIES
    times, then settled with the broker so that it never comes again, counted in the status;
    the messages after it go on."""

    async def scenario(made: Kit) -> None:
        function = Function()
        function.refuse = lambda event: (
            PayloadTooLarge("async payload over the limit (test)")
            if made.values(event) == ["big"] else None)
        source, context = made.source(function)
        async with started(source, context):
            await made.publish("big")
            await made.publish("after")
            await eventually(lambda: values(made, function.events) == ["after"],
                             what="the message after the poison one")
            tries = [e for e in function.attempts if made.values(e) == ["big"]]
            assert len(tries) == SUBMIT_TRIES
            assert context.status.dropped == 1
            assert context.status.failures == SUBMIT_TRIES
            assert "PayloadTooLarge" in (context.status.last_error or "")
            assert context.status.connected

        # A new source on the same subscription gets what comes next, and not the given-up
        # message again.
        again = Function()
        source, context = made.source(again)
        async with started(source, context):
            await made.publish("marker")
            await eventually(lambda: values(made, again.events) == ["marker"],
                             what="the marker")
        assert [made.values(e) for e in again.attempts] == [["marker"]]

    redelivering(scenario)
