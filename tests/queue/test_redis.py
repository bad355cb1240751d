"""What the Redis queue adds to the contract (test_contract.py): its keys and streams on the
real server, time taken from the caller rather than the server, several nodes sharing one
prefix, and clear errors when the server is not there. Real Redis, no sleeping."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace

import msgpack  # type: ignore[import-untyped, unused-ignore]
import pytest
import redis.asyncio as aioredis

from ember.errors import InvalidRequest, NotFound, ServiceUnavailable, TaskNotFound
from ember.model.invocation import Event, Task
from ember.queue.redis import RedisQueue, _redact
from tests.queue.conftest import REDIS_URL, _drop_redis_keys

T0 = 1_700_000_000.123456  # a realistic clock: microseconds must survive the round trip
Scenario = Callable[[str], Awaitable[None]]


@pytest.fixture
def run() -> Iterator[Callable[[Scenario], None]]:
    """Run an async scenario with a fresh key prefix, dropped afterwards."""
    prefix = f"ember-test-{uuid.uuid4().hex[:12]}"

    def go(scenario: Scenario) -> None:
        asyncio.run(scenario(prefix))

    yield go
    asyncio.run(_drop_redis_keys(prefix))


@asynccontextmanager
async def opened(prefix: str, **kwargs: str) -> AsyncIterator[RedisQueue]:
    queue = RedisQueue(REDIS_URL, prefix=prefix, **kwargs)
    await queue.start()
    try:
        yield queue
    finally:
        await queue.close()


@asynccontextmanager
async def raw() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


def event(function: str = "fn", at: float = T0, payload: bytes = b"\x00\xff") -> Event:
    return Event(id=uuid.uuid4().hex, function=function, qualifier="latest", payload=payload,
                 content_type="application/octet-stream", enqueued_at=at)


async def submit(queue: RedisQueue, ev: Event, key: str | None = None,
                 window: float = 60.0, now: float | None = None) -> bool:
    _, created = await queue.submit(ev, idempotency_key=key, dedup_window_s=window,
                                    now=ev.enqueued_at if now is None else now)
    return created


async def keys(prefix: str) -> set[str]:
    async with raw() as client:
        return {k.decode() async for k in client.scan_iter(f"{prefix}:*")}


def test_events_live_in_a_stream_read_through_a_consumer_group(
        run: Callable[[Scenario], None]) -> None:
    async def scenario(prefix: str) -> None:
        async with opened(prefix, consumer="node-1") as queue:
            ev = event(payload=bytes(range(256)))
            await submit(queue, ev)
            stream = f"{prefix}:stream:fn"
            async with raw() as client:
                ((_, fields),) = await client.xrange(stream)
                assert fields[b"id"] == ev.id.encode()
                assert msgpack.unpackb(fields[b"event"])["payload"] == ev.payload
                (group,) = await client.xinfo_groups(stream)
                assert group["name"] == b"ember"

                (first,) = await queue.claim(1, 30, now=T0)
                pending = await client.xpending_range(stream, "ember", "-", "+", 10)
                assert [(p["consumer"], p["times_delivered"]) for p in pending] == [
                    (b"node-1", 1)]

            # Another node takes the expired lease over: Redis shows it holds the entry now.
            async with opened(prefix, consumer="node-2") as other:
                (second,) = await other.claim(1, 30, now=T0 + 31)
                # Its delivery count says the first attempt was cut short.
                assert second.event == replace(first.event, attempt=1)
                async with raw() as client:
                    pending = await client.xpending_range(stream, "ember", "-", "+", 10)
                    assert [(p["consumer"], p["times_delivered"]) for p in pending] == [
                        (b"node-2", 2)]
                    await other.ack(second, await other.get_task(ev.id))
                    assert await client.xpending_range(stream, "ember", "-", "+", 10) == []
                    assert await client.xlen(stream) == 0

    run(scenario)


def test_deadlines_follow_the_callers_clock_to_the_microsecond(
        run: Callable[[Scenario], None]) -> None:
    async def scenario(prefix: str) -> None:
        async with opened(prefix) as queue:
            await submit(queue, event())
            (delivery,) = await queue.claim(1, 10, now=T0)
            assert await queue.claim(1, 10, now=T0 + 10) == []  # lease_until is not past
            assert len(await queue.claim(1, 10, now=T0 + 10.00001)) == 1

            await queue.postpone((await queue.claim(1, 10, now=T0 + 100))[0], delay_s=5,
                                 now=T0 + 100)
            assert await queue.claim(1, 10, now=T0 + 104.99999) == []
            assert len(await queue.claim(1, 10, now=T0 + 105)) == 1

            # A dedup window ends by ``now``: the server's clock has nothing to say.
            keyed = event()
            assert await submit(queue, keyed, key="k", window=0.5)
            assert not await submit(queue, event(at=T0 + 0.49999), key="k", window=0.5)
            assert await submit(queue, event(at=T0 + 0.5), key="k", window=0.5)
            assert delivery.token

    run(scenario)


def test_a_second_node_on_the_same_prefix_shares_everything(
        run: Callable[[Scenario], None]) -> None:
    async def scenario(prefix: str) -> None:
        async with opened(prefix) as one, opened(prefix) as two:
            for i in range(60):
                await submit(one if i % 2 else two, event(f"f{i % 3}", at=T0 + i))
            batches = await asyncio.gather(*(
                queue.claim(7, 30, now=T0 + 100) for queue in (one, two) * 6))
            claimed = [d for batch in batches for d in batch]
            assert len({d.event.id for d in claimed}) == len(claimed) == 60
            # A token is the queue's, not the connection's: either node can finish it.
            for i, delivery in enumerate(claimed):
                queue = two if i % 2 else one
                task = await queue.get_task(delivery.event.id)
                task.status = "succeeded"
                await queue.ack(delivery, task)
            assert (await one.figures(now=T0 + 100)).depth == 0
            assert len((await two.list_tasks("f0", status="succeeded")).items) == 20

    run(scenario)


def test_delete_function_leaves_no_key_of_it(run: Callable[[Scenario], None]) -> None:
    async def scenario(prefix: str) -> None:
        async with opened(prefix) as queue:
            before = await keys(prefix)
            kept = event("other")
            await submit(queue, kept, key="k")
            with_other = await keys(prefix)
            for i in range(4):
                await submit(queue, event("gone", at=T0 + i), key=f"k{i}")
            leased, dead, delayed = await queue.claim(3, 30, now=T0 + 10,
                                                      paused=frozenset({"other"}))
            task = await queue.get_task(dead.event.id)
            await queue.dead_letter(dead, task, {"code": "X"}, now=T0 + 10)
            await queue.retry(delayed, await queue.get_task(delayed.event.id), delay_s=60,
                              now=T0 + 10)
            await queue.delete_function("gone")
            assert await keys(prefix) - with_other <= {f"{prefix}:seq"}
            assert before <= with_other
            with pytest.raises(TaskNotFound):
                await queue.get_task(leased.event.id)
            # The deleted function's stale delivery and task changes bring nothing back.
            await queue.ack(leased, task)
            await queue.save_task(task)
            with pytest.raises(TaskNotFound):
                await queue.get_task(task.id)
            assert (await queue.list_dead_letters()).items == []
            assert [d.event.id for d in await queue.claim(10, 30, now=T0 + 100)] == [kept.id]
            # The function can be used again, its idempotency keys forgotten.
            assert await submit(queue, event("gone", at=T0 + 11), key="k0")

    run(scenario)


def test_retry_without_delay_goes_straight_back_to_the_stream(
        run: Callable[[Scenario], None]) -> None:
    async def scenario(prefix: str) -> None:
        async with opened(prefix) as queue:
            ev = event()
            await submit(queue, ev)
            (delivery,) = await queue.claim(1, 30, now=T0)
            await queue.retry(delivery, await queue.get_task(ev.id), delay_s=0, now=T0 + 1)
            figures = await queue.figures(now=T0 + 1)
            assert (figures.depth, figures.delayed, figures.leased) == (1, 0, 0)
            (again,) = await queue.claim(1, 30, now=T0 + 1)
            assert again.event.attempt == 1
            assert again.event.enqueued_at == T0  # its age counts from the first submit

    run(scenario)


def test_claim_takes_the_oldest_head_first_in_each_round(
        run: Callable[[Scenario], None]) -> None:
    async def scenario(prefix: str) -> None:
        async with opened(prefix) as queue:
            order = [event(name, at=T0 + i) for i, name in enumerate("bcabca")]
            for ev in order:
                await submit(queue, ev)
            got = await queue.claim(6, 30, now=T0 + 10)
            assert [d.event.id for d in got] == [ev.id for ev in order]
            assert await queue.claim(6, 30, now=T0 + 10, limits={"a": 5}) == []

    run(scenario)


def test_redrive_rebuilds_a_lost_task(run: Callable[[Scenario], None]) -> None:
    async def scenario(prefix: str) -> None:
        async with opened(prefix) as queue:
            ev = event()
            await submit(queue, ev)
            (delivery,) = await queue.claim(1, 30, now=T0)
            await queue.dead_letter(delivery, await queue.get_task(ev.id), {"code": "X"},
                                    now=T0 + 1)
            async with raw() as client:
                await client.delete(f"{prefix}:task:{ev.id}")
            task = await queue.redrive(ev.id, now=T0 + 2)
            assert (task.id, task.status, task.function) == (ev.id, "queued", "fn")
            assert await queue.get_task(ev.id) == task
            with pytest.raises(NotFound):
                await queue.redrive(ev.id, now=T0 + 3)

    run(scenario)


def test_listings_reject_a_limit_below_one(run: Callable[[Scenario], None]) -> None:
    async def scenario(prefix: str) -> None:
        async with opened(prefix) as queue:
            with pytest.raises(InvalidRequest, match="limit"):
                await queue.list_tasks("fn", limit=0)
            with pytest.raises(InvalidRequest, match="limit"):
                await queue.list_dead_letters(limit=0)
            assert await queue.claim(0, 30, now=T0) == []

    run(scenario)


def test_a_server_that_is_not_there_is_service_unavailable() -> None:
    async def scenario() -> None:
        queue = RedisQueue("redis://user:s3cret@127.0.0.1:1/0", prefix="nowhere")
        try:
            with pytest.raises(ServiceUnavailable) as caught:
                await queue.start()
            message = str(caught.value)
            assert "redis://user:***@127.0.0.1:1/0" in message
            assert "s3cret" not in message and "start it" in message
            assert caught.value.details == {"url": "redis://user:***@127.0.0.1:1/0"}
            with pytest.raises(ServiceUnavailable):
                await queue.submit(event(), idempotency_key=None, dedup_window_s=1, now=T0)
            with pytest.raises(ServiceUnavailable):
                await queue.get_task("t")
        finally:
            await queue.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://:pw@host:6380", "redis://:***@host:6380"),
    ("rediss://me:pw@host/2", "rediss://me:***@host/2"),
])
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert _redact(url) == shown


def test_stop_reads_again_when_the_task_changed_meanwhile(
        run: Callable[[Scenario], None], monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(prefix: str) -> None:
        async with opened(prefix) as queue:
            ev = event()
            await submit(queue, ev)
            read = queue._read_task
            reads = 0

            async def racing(task_id: str) -> tuple[Task, str] | None:
                nonlocal reads
                found = await read(task_id)
                reads += 1
                if reads == 1 and found is not None:  # a save lands between read and stop
                    await queue.save_task(replace(found[0], stop_requested=True))
                return found

            monkeypatch.setattr(queue, "_read_task", racing)
            stopped = await queue.stop_queued(ev.id, now=T0 + 1)
            assert stopped is not None and stopped.status == "stopped"
            assert stopped.stop_requested  # the change was not lost
            assert reads == 2
            assert await queue.get_task(ev.id) == stopped

    run(scenario)


def test_an_ended_window_is_ended_before_its_key_is_pruned(
        run: Callable[[Scenario], None]) -> None:
    async def scenario(prefix: str) -> None:
        async with opened(prefix) as queue:
            # Ended windows are pruned 100 per submit; the 101st must not count meanwhile.
            for i in range(101):
                assert await submit(queue, event(), key=f"k{i:03d}", window=1)
            assert await submit(queue, event(at=T0 + 2), key="k100", window=1)
            assert not await submit(queue, event(at=T0 + 2), key="k100", window=1)

    run(scenario)


def test_calls_made_together_share_a_pipeline_and_survive_lost_scripts(
        run: Callable[[Scenario], None]) -> None:
    async def scenario(prefix: str) -> None:
        async with opened(prefix) as queue:
            events = [event(at=T0 + i) for i in range(40)]
            # One turn of the event loop: every submit goes out in one pipeline, each
            # applied on its own (one of them a duplicate key, answered with the first).
            created = await asyncio.gather(*(submit(queue, ev) for ev in events),
                                           submit(queue, event(), key="k"),
                                           submit(queue, event(), key="k"))
            assert sorted(created) == [False] + [True] * 41
            async with raw() as client:
                await client.script_flush()  # as after a restart of Redis
            deliveries = await queue.claim(100, 30, now=T0 + 50)
            assert len(deliveries) == 41
            tasks = [replace(d.task, status="succeeded") for d in deliveries if d.task]
            await asyncio.gather(*(queue.ack(d, t) for d, t in zip(deliveries, tasks,
                                                                   strict=True)))
            figures = await queue.figures(now=T0 + 51)
            assert (figures.depth, figures.leased) == (0, 0)
            with pytest.raises(TaskNotFound):
                await asyncio.gather(queue.get_task(events[0].id), queue.get_task("none"))

    run(scenario)
