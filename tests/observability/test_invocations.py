"""The record of recent invocations, through the HTTP API: every sync call, async attempt
and failure, with its timings and error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ember.clock import ManualClock
from tests.inprocess import Ember

SOURCE = """
import time

def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail: " + event["fail"])
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return "ok"
"""


def test_invocations_list_every_outcome_newest_first(run: Callable[..., None]) -> None:
    async def scenario(ember: Ember) -> None:
        await ember.deploy("f", SOURCE, timeout_s=1)
        assert (await ember.invoke("f", {})).status_code == 200
        warm = await ember.invoke("f", {})
        failed = await ember.invoke("f", {"fail": "Ada"})
        assert failed.status_code == 502
        late = await ember.invoke("f", {"sleep": 30})
        assert late.status_code == 504
        accepted = await ember.invoke("f", {}, headers={"X-Ember-Invocation-Type": "async"})
        task_id = accepted.json()["request_id"]
        task = await ember.http.get(f"/tasks/{task_id}", params={"wait_s": 30})
        assert task.json()["status"] == "succeeded"

        answer = await ember.http.get("/functions/f/invocations")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["next_cursor"] is None
        items = body["invocations"]
        assert [(i["mode"], i["status"]) for i in items] == [
            ("async", "success"), ("sync", "timeout"), ("sync", "error"),
            ("sync", "success"), ("sync", "success"),
        ]
        first, second = items[-1], items[-2]
        assert first["cold"] and first["init_ms"] > 0
        assert second["request_id"] == warm.headers["X-Ember-Request-Id"]
        assert not second["cold"] and second["init_ms"] == 0 and second["error_code"] is None
        error = items[2]
        assert error["request_id"] == failed.headers["X-Ember-Request-Id"]
        assert error["error_code"] == "FunctionError"
        assert "asked to fail: Ada" in error["error_message"]
        assert items[1]["error_code"] == "FunctionTimeout" and items[1]["error_message"]
        assert items[0]["request_id"] == task_id and items[0]["attempt"] == 1
        assert all(i["version"] == "latest" and i["function"] == "f" for i in items)
        assert all(i["started_at"] > 0 and i["total_ms"] >= i["duration_ms"] for i in items)

        errors = await ember.http.get("/functions/f/invocations", params={"status": "error"})
        assert [i["request_id"] for i in errors.json()["invocations"]] == [error["request_id"]]

        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await ember.http.get("/functions/f/invocations", params=params)).json()
            seen += [i["request_id"] for i in page["invocations"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [i["request_id"] for i in items]

    run(scenario)


def test_invocations_refuse_unknown_functions_and_bad_filters(run: Callable[..., None]) -> None:
    async def scenario(ember: Ember) -> None:
        missing = await ember.http.get("/functions/nope/invocations")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "FunctionNotFound"
        await ember.deploy("f", SOURCE)
        for params in ({"status": "bogus"}, {"cursor": "abc"}, {"limit": 0}):
            bad = await ember.http.get("/functions/f/invocations", params=params)
            assert bad.status_code == 400, (params, bad.text)
            assert bad.json()["error"]["code"] == "InvalidSpec"

    run(scenario)


def test_invocation_records_are_kept_for_the_configured_retention(
        run: Callable[..., None]) -> None:
    clock = ManualClock()

    async def scenario(ember: Ember) -> None:
        await ember.deploy("f", SOURCE)

        async def invoke(n: int) -> list[str]:
            ids = []
            for _ in range(n):
                answer = await ember.invoke("f", {})
                assert answer.status_code == 200, answer.text
                ids.append(answer.headers["X-Ember-Request-Id"])
                # A write of its own for each: old records go every 50 writes.
                await asyncio.to_thread(ember.services.stats.flush)
            return ids

        await invoke(50)
        clock.advance(601)  # past the retention of the first ones
        recent = await invoke(50)
        answer = await ember.http.get("/functions/f/invocations", params={"limit": 100})
        listed = [i["request_id"] for i in answer.json()["invocations"]]
        assert listed == recent[::-1]

    run(scenario, clock=clock, stats_retention_s=600)
