"""The trigger Source contract: each test runs on every kind it applies to (see kits.py),
against the real brokers, as tests/queue/test_contract.py does for queues."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ember.errors import PayloadTooLarge
from ember.triggers.base import SUBMIT_TRIES
from tests.triggers.helpers import eventually, started
from tests.triggers.kits import REDELIVERING, Event, Function, Kit, kit

WithKit = Callable[[Callable[[Kit], Awaitable[None]]], None]


def _with_kit(kind: str, tmp_path: Path) -> WithKit:
    def runner(scenario: Callable[[Kit], Awaitable[None]]) -> None:
        async def main() -> None:
            async with kit(kind, tmp_path) as made:
                await scenario(made)

        asyncio.run(main())

    return runner


@pytest.fixture(params=REDELIVERING)
def redelivering(request: pytest.FixtureRequest, tmp_path: Path) -> WithKit:
    return _with_kit(request.param, tmp_path)


def values(made: Kit, events: list[Event]) -> list[Any]:
    return [value for event in events for value in made.values(event)]


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
