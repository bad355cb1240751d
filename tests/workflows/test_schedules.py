"""``schedule``: every, cron (on the injected clock), after; ``on`` is in test_events.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from ember.clock import ManualClock
from ember.model.workflow import WorkflowRevision
from ember.workflows.parser import load_workflow
from ember.workflows.schedules import Schedules
from tests.inprocess import Ember
from tests.waiting import until, until_true
from tests.workflows.conftest import Run
from tests.workflows.test_engine import doc


def _revision(document: dict[str, Any]) -> WorkflowRevision:
    return WorkflowRevision("ticker", 1, "test", "1.0.0", document, "x" * 64,
                            datetime.now(UTC))


def test_cron_and_every_start_one_execution_per_tick_on_the_clock() -> None:
    async def scenario() -> None:
        start = datetime(2026, 11, 27, 10, 0, 30, tzinfo=UTC).timestamp()
        clock = ManualClock(start)
        started: list[tuple[str, str]] = []

        async def begin(revision: WorkflowRevision, input: Any, key: str) -> None:
            started.append((revision.workflow, key))

        schedules = Schedules(None, clock, begin)  # type: ignore[arg-type]
        cron = doc("ticker", [{"a": {"set": {}}}], schedule={"cron": "*/5 * * * *"})
        schedules.install(_revision(cron), load_workflow(cron))
        await until(lambda: clock.sleeping() == 1, message="the schedule asleep")
        clock.advance(4 * 60)  # 10:04:30: not yet
        await asyncio.sleep(0)
        assert started == []
        clock.advance(30)  # 10:05:00
        await until(lambda: len(started) == 1, message="the 10:05 tick")
        tick = datetime(2026, 11, 27, 10, 5, tzinfo=UTC).timestamp()
        assert started == [("ticker", f"schedule:{tick:.3f}")]
        await until(lambda: clock.sleeping() == 1, message="asleep until the next tick")
        clock.advance(5 * 60)
        await until(lambda: len(started) == 2, message="the 10:10 tick")

        every = doc("ticker", [{"a": {"set": {}}}], schedule={"every": "PT10S"})
        schedules.install(_revision(every), load_workflow(every))  # replaces the cron
        await asyncio.sleep(0)  # the cron's task ends, the new one starts: both in one step
        await until(lambda: clock.sleeping() == 1, message="the new schedule asleep")
        clock.advance(10)
        await until(lambda: len(started) == 3, message="10 s later")
        schedules.remove("ticker")
        clock.advance(60)
        await asyncio.sleep(0)
        assert len(started) == 3
        await schedules.close()

    asyncio.run(scenario())


def test_every_runs_the_workflow_by_itself(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        service.deploy_data("tick", doc("tick", [{"a": {"set": {"ok": True}}}],
                                        schedule={"every": "PT0.05S"}))

        async def two() -> bool:
            page = service.list_executions(workflow="tick", status=["succeeded"])
            return len(page.items) >= 2

        await until_true(two, message="two scheduled executions")
        await service.delete("tick", force=True)

    run_wf(scenario)


def test_after_starts_the_next_execution_once_one_ended(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        service.deploy_data("again", doc("again", [{"a": {"set": {"ok": True}}}],
                                         schedule={"after": "PT0.05S"}))
        first, _ = await service.run("again", None, wait_s=30)
        assert first.status == "succeeded"

        async def next_one() -> bool:
            page = service.list_executions(workflow="again", status=["succeeded"])
            return len(page.items) >= 3

        await until_true(next_one, message="two executions after the first")
        await service.delete("again", force=True)

    run_wf(scenario)
