"""The Redis streams trigger against the real Redis on 127.0.0.1:6379 (EMBER_TEST_REDIS_URL):
order per stream, batching, failures (stop, dead letter), crash and restart, pause. The
function is a fake ``invoke`` that records the batches it completed."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from ember.clock import SystemClock
from ember.errors import EmberError, FunctionError, FunctionNotFound, TooManyRequests
from ember.model.trigger import RedisStreamSource, Trigger
from ember.triggers.base import SourceContext, make_source
from ember.triggers.redis_stream import RedisStreamTriggerSource

REDIS_URL = os.environ.get("EMBER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
Event = dict[str, Any]


class Function:
    """A fake function: records every attempt and every completed batch; ``fail`` picks the
    error an event gets (None: it succeeds), ``hang`` the events that never return."""

    def __init__(self) -> None:
        self.attempts: list[Event] = []
        self.batches: list[Event] = []
        self.fail: Callable[[Event], EmberError | None] = lambda event: None
        self.hang: Callable[[Event], bool] = lambda event: False
        self.hanging = 0
        self.active = 0
        self.most_active = 0

    async def invoke(self, trigger: Trigger, body: bytes) -> dict[str, Any]:
        event: Event = orjson.loads(body)
        self.attempts.append(event)
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await asyncio.sleep(0.001)  # let the shards interleave
            error = self.fail(event)
            if error is not None:
                raise error
            if self.hang(event):
                self.hanging += 1
                await asyncio.Event().wait()
            self.batches.append(event)
            return {"ok": True}
        finally:
            self.active -= 1

    def ids(self, stream: str) -> list[str]:
        """The ids of the completed batches of ``stream``, in delivery order."""
        return [r["id"] for e in self.of(stream) for r in e["data"]["records"]]

    def of(self, stream: str) -> list[Event]:
        return [e for e in self.batches if e["subject"] == stream]


def poison(event: Event) -> EmberError | None:
    """A FunctionError for a batch holding a record with the field ``poison``."""
    if any("poison" in r["fields"] for r in event["data"]["records"]):
        return FunctionError("ValueError: poison record")
    return None


async def _no_submit(trigger: Trigger, body: bytes, key: str | None) -> str:
    raise AssertionError("the redis_stream trigger invokes synchronously, it never submits")


def context_for(function: Function, streams: list[str], name: str | None = None,
                **options: Any) -> SourceContext:
    source = RedisStreamSource(kind="redis_stream", url=REDIS_URL, streams=streams, **options)
    trigger = Trigger(name=name or f"t{uuid.uuid4().hex[:8]}", function="fn",
                      qualifier="latest", source=source, state="enabled", description="",
                      created_at=0.0, updated_at=0.0)
    return SourceContext(trigger, SystemClock(), _no_submit, function.invoke)


@asynccontextmanager
async def running(context: SourceContext) -> AsyncIterator[RedisStreamTriggerSource]:
    source = make_source(context.trigger, context)
    assert isinstance(source, RedisStreamTriggerSource)
    await source.start()
    try:
        yield source
    finally:
        await source.stop()


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.005)


async def add(client: aioredis.Redis, stream: str, records: list[dict[Any, Any]]) -> list[str]:
    async with client.pipeline(transaction=False) as pipe:
        for fields in records:
            pipe.xadd(stream, fields)
        ids: list[bytes] = await pipe.execute()
    return [i.decode() for i in ids]


async def all_ids(client: aioredis.Redis, stream: str) -> list[str]:
    entries: Any = await client.xrange(stream)
    return [i.decode() for i, _ in entries]


async def pending(client: aioredis.Redis, stream: str) -> int:
    summary = await client.xpending(stream, "ember")
    return int(summary["pending"])


Scenario = Callable[[aioredis.Redis, list[str]], Awaitable[None]]


@pytest.fixture
def run() -> Iterator[Callable[[int, Scenario], None]]:
    """Run a scenario with a client and ``n`` fresh stream names; their keys (and dead-letter
    streams) are deleted afterwards."""
    names: list[str] = []

    def go(n: int, scenario: Scenario) -> None:
        names.extend(f"ember-test-rs-{uuid.uuid4().hex[:10]}" for _ in range(n))

        async def main() -> None:
            client = aioredis.from_url(REDIS_URL)
            try:
                await scenario(client, names)
            finally:
                await client.aclose()

        asyncio.run(main())

    yield go

    async def drop() -> None:
        client = aioredis.from_url(REDIS_URL)
        await client.delete(*names, *(f"{n}:dead" for n in names))
        await client.aclose()

    if names:
        asyncio.run(drop())


def test_each_stream_in_order_in_bounded_batches(run: Callable[[int, Scenario], None]) -> None:
    async def scenario(client: aioredis.Redis, streams: list[str]) -> None:
        function = Function()
        context = context_for(function, streams, batch_size=16, batch_window_ms=10)
        for s in streams:  # half before the start: the group begins at 0
            await add(client, s, [{"n": str(i)} for i in range(125)])
        await add(client, streams[0], [{"bin": b"\xff\x00", b"\xfe": "x"}])
        async with running(context) as source:
            for s in streams:
                await add(client, s, [{"n": str(i)} for i in range(125, 250)])
            await until(lambda: sum(len(function.ids(s)) for s in streams) == 1001)
            for s in streams:
                assert function.ids(s) == await all_ids(client, s)
                assert all(len(e["data"]["records"]) <= 16 for e in function.of(s))
                assert await pending(client, s) == 0
            last = (await all_ids(client, streams[1]))[-1]
            await until(lambda: context.status.details[streams[1]]["checkpoint"] == last)
            assert source.consumer == f"ember-{context.trigger.name}"
        assert function.most_active > 1  # the shards ran side by side
        assert context.status.events == 1001
        event = function.of(streams[0])[0]
        records = event["data"]["records"]
        assert event["type"] == "dev.ember.redis_stream.batch"
        assert event["subject"] == event["emberstream"] == event["data"]["stream"] == streams[0]
        assert event["emberfirstid"] == records[0]["id"]
        assert event["emberlastid"] == records[-1]["id"]
        assert event["id"] == f"{streams[0]}/{records[0]['id']}/{records[-1]['id']}"
        assert event["embertrigger"] == context.trigger.name
        assert records[0]["fields"] == {"n": "0"}
        (binary,) = [r for e in function.of(streams[0]) for r in e["data"]["records"]
                     if "bin" in r["fields"]]
        assert binary["fields"] == {"bin": {"base64": "/wA="}, "base64:/g==": "x"}

    run(4, scenario)


def test_batch_window(run: Callable[[int, Scenario], None]) -> None:
    async def scenario(client: aioredis.Redis, streams: list[str]) -> None:
        function = Function()
        context = context_for(function, streams[:1], batch_size=100, batch_window_ms=300)
        quick = context_for(function, streams[1:], batch_size=100, batch_window_ms=0)
        async with running(context), running(quick):
            await until(lambda: all(c.status.details[s]["state"] == "running"
                                    for c in (context, quick) for s in c.status.details))
            started = time.monotonic()
            await add(client, streams[0], [{"n": "1"}])
            await until(lambda: len(function.batches) == 1)
            assert 0.25 <= time.monotonic() - started < 1.0  # waited for the window, no more
            await add(client, streams[0], [{"n": "2"}, {"n": "3"}, {"n": "4"}])
            await until(lambda: len(function.batches) == 2)
            assert [len(e["data"]["records"]) for e in function.batches] == [1, 3]
            started = time.monotonic()
            await add(client, streams[1], [{"n": "1"}])
            await until(lambda: len(function.batches) == 3)
            assert time.monotonic() - started < 0.2  # no window: at once

    run(2, scenario)


def test_a_poison_batch_stops_its_shard_until_resumed(
    run: Callable[[int, Scenario], None],
) -> None:
    async def scenario(client: aioredis.Redis, streams: list[str]) -> None:
        bad, good = streams
        function = Function()
        function.fail = poison
        records = [{"n": str(i)} for i in range(10)]
        bad_ids = await add(client, bad, [*records[:4], {"poison": "1"}, *records[5:]])
        good_ids = await add(client, good, records)
        context = context_for(function, streams, batch_size=3, max_retries=2, on_failure="stop")
        async with running(context) as source:
            detail = context.status.details[bad]
            await until(lambda: detail["state"] == "stopped" and len(function.ids(good)) == 10)
            assert function.ids(good) == good_ids
            assert function.ids(bad) == bad_ids[:3]
            assert detail["at"] == bad_ids[3]
            assert "poison record" in detail["error"]
            assert detail["checkpoint"] == bad_ids[2]
            assert detail["pending"] == 3
            failed = [e for e in function.attempts if e["id"] == f"{bad}/{bad_ids[3]}/{bad_ids[5]}"]
            assert len(failed) == 3  # the first try and max_retries more
            assert context.status.failures == 3
            await asyncio.sleep(0.2)
            assert function.ids(bad) == bad_ids[:3]  # stays stopped
            assert await pending(client, bad) == 3

            function.fail = lambda event: None  # the function is fixed
            bad_ids += await add(client, bad, [{"n": "10"}])
            await source.pause()
            await source.resume()
            await until(lambda: len(function.ids(bad)) == 11)
            assert function.ids(bad) == bad_ids == await all_ids(client, bad)
            assert function.of(bad)[1]["emberfirstid"] == bad_ids[3]  # the same batch again
            await until(lambda: detail["state"] == "running" and detail["error"] is None)

    run(2, scenario)


def test_a_poison_batch_is_dead_lettered_and_the_shard_goes_on(
    run: Callable[[int, Scenario], None],
) -> None:
    async def scenario(client: aioredis.Redis, streams: list[str]) -> None:
        (stream,) = streams
        function = Function()
        function.fail = poison
        records: list[dict[Any, Any]] = [{"n": str(i)} for i in range(10)]
        records[4] = {"poison": b"\xff"}
        ids = await add(client, stream, records)
        context = context_for(function, streams, batch_size=3, max_retries=1,
                              on_failure="dead_letter")
        async with running(context):
            await until(lambda: len(function.ids(stream)) == 7)
            assert function.ids(stream) == ids[:3] + ids[6:]
            dead: Any = await client.xrange(f"{stream}:dead")
            assert [f[b"id"].decode() for _, f in dead] == ids[3:6]
            assert [orjson.loads(f[b"fields"]) for _, f in dead] == [
                {"n": "3"}, {"poison": {"base64": "/w=="}}, {"n": "5"}]
            assert all(f[b"code"] == b"FunctionError" and b"poison record" in f[b"error"]
                       and f[b"stream"].decode() == stream for _, f in dead)
            assert len([e for e in function.attempts if e["emberfirstid"] == ids[3]]) == 2
            assert await pending(client, stream) == 0

    run(1, scenario)


def test_busy_platform_waits_and_missing_function_stops(
    run: Callable[[int, Scenario], None],
) -> None:
    async def scenario(client: aioredis.Redis, streams: list[str]) -> None:
        busy, missing = streams
        function = Function()
        throttled = 0

        def fail(event: Event) -> EmberError | None:
            nonlocal throttled
            if event["subject"] == missing:
                return FunctionNotFound("function fn does not exist")
            if throttled < 3:
                throttled += 1
                return TooManyRequests("concurrency limit reached")
            return None

        function.fail = fail
        await add(client, busy, [{"n": "1"}])
        await add(client, missing, [{"n": "1"}])
        # max_retries 0 and dead_letter: neither error may dead-letter the records.
        context = context_for(function, streams, max_retries=0, on_failure="dead_letter")
        async with running(context):
            await until(lambda: len(function.ids(busy)) == 1
                        and context.status.details[missing]["state"] == "stopped")
            assert throttled == 3
            assert await client.exists(f"{busy}:dead", f"{missing}:dead") == 0
            assert await pending(client, missing) == 1

    run(2, scenario)


def test_restart_resumes_from_the_checkpoint(run: Callable[[int, Scenario], None]) -> None:
    async def scenario(client: aioredis.Redis, streams: list[str]) -> None:
        name = f"t{uuid.uuid4().hex[:8]}"
        for s in streams:
            await add(client, s, [{"n": str(i)} for i in range(20)])
        first = Function()
        first.hang = lambda event: len(first.of(event["subject"])) == 2  # the third batch
        context = context_for(first, streams, name=name, batch_size=4)
        async with running(context):
            await until(lambda: first.hanging == 2)
        # Stopped with a batch in flight on each stream: 8 acknowledged, 4 pending.
        in_flight = {s: [e for e in first.attempts if e["subject"] == s][-1] for s in streams}
        for s in streams:
            assert await pending(client, s) == 4
            await add(client, s, [{"n": str(i)} for i in range(20, 24)])

        second = Function()
        async with running(context_for(second, streams, name=name, batch_size=4)):
            await until(lambda: all(len(second.ids(s)) == 16 for s in streams))
            for s in streams:
                ids = await all_ids(client, s)
                assert first.ids(s) == ids[:8]
                assert second.ids(s) == ids[8:]  # nothing lost, nothing acknowledged again
                assert second.of(s)[0]["id"] == in_flight[s]["id"]  # the pending batch first
                assert await pending(client, s) == 0

    run(2, scenario)


def test_a_pending_record_deleted_meanwhile_is_acknowledged_unseen(
    run: Callable[[int, Scenario], None],
) -> None:
    async def scenario(client: aioredis.Redis, streams: list[str]) -> None:
        (stream,) = streams
        ids = await add(client, stream, [{"n": "0"}, {"n": "1"}, {"n": "2"}])
        function = Function()
        context = context_for(function, streams)
        # An earlier run read the records and crashed; one was deleted since (XDEL, trim).
        await client.xgroup_create(stream, "ember", id="0")
        await client.xreadgroup("ember", f"ember-{context.trigger.name}", {stream: ">"})
        await client.xdel(stream, ids[1])
        async with running(context):
            await until(lambda: len(function.batches) == 1)
            assert function.ids(stream) == [ids[0], ids[2]]
            await until(lambda: context.status.details[stream]["checkpoint"] == ids[2])
            assert await pending(client, stream) == 0

    run(1, scenario)


def test_pause_holds_records_until_resume(run: Callable[[int, Scenario], None]) -> None:
    async def scenario(client: aioredis.Redis, streams: list[str]) -> None:
        (stream,) = streams
        function = Function()
        context = context_for(function, streams, batch_size=10, batch_window_ms=0)
        async with running(context) as source:
            await add(client, stream, [{"n": str(i)} for i in range(5)])
            await until(lambda: len(function.ids(stream)) == 5)
            await source.pause()
            await add(client, stream, [{"n": str(i)} for i in range(5, 10)])
            await asyncio.sleep(0.3)
            assert len(function.ids(stream)) == 5
            assert context.status.details[stream]["state"] == "paused"
            await source.resume()
            await until(lambda: len(function.ids(stream)) == 10)
            assert function.ids(stream) == await all_ids(client, stream)

    run(1, scenario)


def test_abrupt_stops_lose_nothing_and_keep_order(run: Callable[[int, Scenario], None]) -> None:
    """Many starts and stops at arbitrary moments (mid-read, mid-invoke, mid-XACK): each
    stop returns promptly, every record is delivered at least once, and within each run a
    stream's records arrive in order."""

    async def scenario(client: aioredis.Redis, streams: list[str]) -> None:
        rng = random.Random(7)
        name = f"t{uuid.uuid4().hex[:8]}"
        for s in streams:
            await add(client, s, [{"n": str(i)} for i in range(300)])
        delivered: dict[str, set[str]] = {s: set() for s in streams}
        for _ in range(15):
            function = Function()
            context = context_for(function, streams, name=name, batch_size=7,
                                  batch_window_ms=5)
            source = make_source(context.trigger, context)
            await source.start()
            await asyncio.sleep(rng.uniform(0.0, 0.03))
            await asyncio.wait_for(source.stop(), 3.0)
            for s in streams:
                ids = function.ids(s)
                assert ids == sorted(ids, key=_order)  # in order within the run
                delivered[s].update(ids)
        function = Function()
        async with running(context_for(function, streams, name=name, batch_size=50)):
            await until(lambda: all(len(delivered[s] | set(function.ids(s))) == 300
                                    for s in streams))
        for s in streams:
            assert delivered[s] | set(function.ids(s)) == set(await all_ids(client, s))
            assert await pending(client, s) == 0

    run(3, scenario)


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)
