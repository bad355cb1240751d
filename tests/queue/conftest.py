"""One contract suite for every Queue backend: each test in test_contract.py runs against the
embedded SQLite queue and against the real Redis on 127.0.0.1:6379 (EMBER_TEST_REDIS_URL)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ember.queue.base import Queue

REDIS_URL = os.environ.get("EMBER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@asynccontextmanager
async def embedded(tmp_path: Path, token: str) -> AsyncIterator[Queue]:
    from ember.queue.embedded import EmbeddedQueue

    queue = EmbeddedQueue(tmp_path / "queue.db")
    await queue.start()
    try:
        yield queue
    finally:
        await queue.close()


@asynccontextmanager
async def redis(tmp_path: Path, token: str) -> AsyncIterator[Queue]:
    from ember.queue.redis import RedisQueue

    queue = RedisQueue(REDIS_URL, prefix=f"ember-test-{token}")
    await queue.start()
    try:
        yield queue
    finally:
        await queue.close()


async def _drop_redis_keys(prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


BACKENDS: dict[str, Callable[[Path, str], Any]] = {"embedded": embedded, "redis": redis}

Scenario = Callable[[Queue], Awaitable[None]]


@pytest.fixture(params=sorted(BACKENDS))
def with_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., None]]:
    """Run an async scenario against a queue of the parametrized backend. Calling it twice
    in one test reopens the same queue (a server restart): same directory, same Redis keys."""
    factory = BACKENDS[request.param]
    token = uuid.uuid4().hex[:12]

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            async with factory(tmp_path, token) as queue:
                await scenario(queue)

        asyncio.run(main())

    yield run
    if request.param == "redis":
        asyncio.run(_drop_redis_keys(f"ember-test-{token}"))


@pytest.fixture(params=["embedded", "redis"])
def queue_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Server settings for each queue backend (Redis under a fresh prefix), with short
    retry delays."""
    overrides: dict[str, Any] = {"async_retry_delay_s": 0.05, "async_system_delay_s": 0.05}
    if request.param == "redis":
        prefix = f"ember-test-{uuid.uuid4().hex[:12]}"
        overrides |= {"queue_url": REDIS_URL, "queue_prefix": prefix}
        yield overrides
        asyncio.run(_drop_redis_keys(prefix))
    else:
        yield overrides


@pytest.fixture
def run_on_queue(run: Callable[..., None], queue_settings: dict[str, Any]
                 ) -> Callable[..., None]:
    """Run a scenario against an in-process server on each queue backend."""

    def runner(scenario: Any, **overrides: Any) -> None:
        run(scenario, **(queue_settings | overrides))

    return runner
