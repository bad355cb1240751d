"""Workflow engine tests run on both queue backends (embedded, Redis) and, through the suite's
two passes, on both stores (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.queue.conftest import REDIS_URL, _drop_redis_keys

Run = Callable[..., None]


@pytest.fixture(params=["embedded", "redis"])
def queue_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    overrides: dict[str, Any] = {"async_retry_delay_s": 0.05, "async_system_delay_s": 0.05}
    if request.param == "redis":
        prefix = f"ember-test-{uuid.uuid4().hex[:12]}"
        overrides |= {"queue_url": REDIS_URL, "queue_prefix": prefix}
        yield overrides
        asyncio.run(_drop_redis_keys(prefix))
    else:
        yield overrides


@pytest.fixture
def run_wf(run: Run, queue_settings: dict[str, Any]) -> Run:
    """Run a scenario against an in-process server on each queue backend."""

    def runner(scenario: Any, **overrides: Any) -> None:
        run(scenario, **(queue_settings | overrides))

    return runner
