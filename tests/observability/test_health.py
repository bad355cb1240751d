"""``/healthz`` says when invocations cannot run, and why."""

from __future__ import annotations

import sys
from collections.abc import Callable

from ember.pool.launcher import FAILED_STARTS_UNHEALTHY
from tests.conftest import HELLO
from tests.inprocess import Ember


def test_healthz_fails_while_instance_starts_keep_failing(run: Callable[..., None]) -> None:
    async def scenario(ember: Ember) -> None:
        assert (await ember.http.get("/healthz")).status_code == 200
        await ember.deploy_files("hello", HELLO)
        launcher = ember.services.launcher
        # An interpreter that exits at once: every start fails before any function code.
        launcher.python = "/bin/false"
        for _ in range(FAILED_STARTS_UNHEALTHY):
            failed = await ember.invoke("hello", {})
            assert failed.status_code == 502, failed.text
        answer = await ember.http.get("/healthz")
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["code"] == "ServiceUnavailable"
        assert "instance starts failed" in error["message"], error
        assert "failed to start" in error["message"], error
        # One start that works makes the server healthy again.
        launcher.python = sys.executable
        assert (await ember.invoke("hello", {"a": 1})).status_code == 200
        assert (await ember.http.get("/healthz")).status_code == 200

    run(scenario, zygote=False, spare_instances=0)
