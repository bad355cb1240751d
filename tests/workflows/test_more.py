"""The rest of what executions do: a workflow timeout, emit reaching another execution,
``call: http`` against a real port, cancelling a parent with a sub-workflow running."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from ember.settings import Settings
from ember.store.schema import workflow_revisions, workflows
from tests.conftest import AUTH
from tests.inprocess import Ember, running
from tests.waiting import until_true
from tests.workflows.conftest import Run
from tests.workflows.test_engine import doc


def test_a_workflow_timeout_fails_the_execution_at_the_root(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        service.deploy_data("slow", doc("slow", [{"nap": {"wait": "PT1H"}}],
                                        timeout={"after": "PT0.05S"}))
        execution, _ = await service.run("slow", None, wait_s=30)
        assert execution.status == "failed" and execution.error is not None
        assert execution.error["type"].endswith("/errors/timeout")
        assert execution.error["instance"] == "/"
        statuses = {s.path: s.status for s in service.steps(execution)}
        assert statuses["/do/0/nap"] == "cancelled"

    run_wf(scenario)


def test_an_emitted_event_resumes_another_execution(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        service.deploy_data("waiter", doc("waiter", [{"hear": {"listen": {"to": {"one": {
            "with": {"type": "com.test.ping", "data": {"to": "${ .me }"}}}}}}}]))
        service.deploy_data("pinger", doc("pinger", [{"ping": {"emit": {"event": {"with": {
            "source": "tests/pinger", "type": "com.test.ping",
            "data": {"to": "${ .to }", "note": "hello"}}}}}}]))
        waiting, _ = await service.run("waiter", {"me": "w1"})

        async def listening() -> bool:
            found = await service.get_execution(waiting.id)
            return any(s.path == "/do/0/hear" and s.status == "running"
                       for s in service.steps(found))

        await until_true(listening, message="the listen started")
        pinged, _ = await service.run("pinger", {"to": "w1"}, wait_s=30)
        assert pinged.status == "succeeded", pinged.error
        heard = await service.get_execution(waiting.id, wait_s=30)
        assert heard.status == "succeeded", heard.error
        assert heard.output == [{"to": "w1", "note": "hello"}]

    run_wf(scenario)


def test_call_http_reads_a_real_endpoint_and_fails_on_an_error_status(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        async with ember.served() as http:
            base = str(http.base_url).rstrip("/")
            service.deploy_data("fetch", doc("fetch", [
                {"health": {"call": "http", "with": {"method": "get",
                                                     "endpoint": f"{base}/healthz"}}},
                {"full": {"call": "http", "with": {
                    "method": "get", "endpoint": f"{base}/healthz", "output": "response"}}},
            ]))
            fetched, _ = await service.run("fetch", None, wait_s=30)
            assert fetched.status == "succeeded", fetched.error
            assert fetched.output["statusCode"] == 200
            assert isinstance(fetched.output["content"], dict)
            service.deploy_data("missing", doc("missing", [
                {"nothing": {"call": "http", "with": {
                    "method": "get", "endpoint": f"{base}/functions/ghost",
                    "headers": AUTH}}},
            ]))
            missing, _ = await service.run("missing", None, wait_s=30)
            assert missing.status == "failed" and missing.error is not None
            assert missing.error["type"].endswith("/errors/communication")
            assert missing.error["status"] == 404
            assert missing.error["instance"] == "/do/0/nothing"

    run_wf(scenario)


def test_cancelling_a_parent_cancels_its_sub_workflow(run_wf: Run) -> None:
    async def scenario(ember: Ember) -> None:
        service = ember.services.workflows
        service.deploy_data("child", doc("child", [{"nap": {"wait": "PT1H"}}]))
        service.deploy_data("parent", doc("parent", [{"sub": {"run": {"workflow": {
            "namespace": "test", "name": "child", "version": "1.0.0"}}}}]))
        parent, _ = await service.run("parent", None)

        async def child_waiting() -> Any:
            page = service.list_executions(workflow="child", status=["waiting"])
            return page.items

        [child] = await until_true(child_waiting, message="the child waiting")
        assert child.parent == parent.id
        cancelled = await service.cancel(parent.id)
        assert cancelled.status == "cancelled"

        async def child_cancelled() -> bool:
            return (await service.get_execution(child.id)).status == "cancelled"

        await until_true(child_cancelled, message="the child cancelled too")

    run_wf(scenario)


def test_a_restart_resumes_a_waiting_execution_and_ends_one_whose_workflow_is_gone(
    settings: Settings, queue_settings: dict[str, Any],
) -> None:
    configured = settings.model_copy(update=queue_settings)

    async def first() -> tuple[str, str]:
        async with running(configured) as ember:
            service = ember.services.workflows
            service.deploy_data("kept", doc("kept", [{"nap": {"wait": "PT0.5S"}},
                                                     {"done": {"set": {"ok": True}}}]))
            service.deploy_data("gone", doc("gone", [{"nap": {"wait": "PT1H"}}]))
            kept, _ = await service.run("kept", None)
            gone, _ = await service.run("gone", None)
            return kept.id, gone.id

    kept_id, gone_id = asyncio.run(first())
    engine = sa.create_engine(configured.resolved_database_url())
    with engine.begin() as conn:  # the workflow deleted while no server ran
        conn.execute(workflow_revisions.delete().where(workflow_revisions.c.workflow == "gone"))
        conn.execute(workflows.delete().where(workflows.c.name == "gone"))
    engine.dispose()

    async def second() -> None:
        async with running(configured) as ember:
            service = ember.services.workflows
            kept = await service.get_execution(kept_id, wait_s=30)
            assert kept.status == "succeeded", kept.error
            assert kept.output == {"ok": True}
            gone = await service.get_execution(gone_id)
            assert gone.status == "failed" and gone.error is not None
            assert gone.error["title"] == "WorkflowNotFound"

    asyncio.run(second())
