"""The Queue contract: every test runs on every backend (see conftest.py's ``with_queue``).

Time is a fake line starting at ``T0``: each call gets an explicit ``now``, so leases and
delays run out by moving ``now``, never by sleeping.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest

from ember.errors import DeadLetterNotFound, InvalidRequest, TaskNotFound
from ember.model.invocation import Attempt, Event, Task
from ember.queue.base import Delivery, Queue, QueueFigures

T0 = 1_000_000.0
WINDOW = 300.0
WithQueue = Callable[..., None]


def event(function: str = "fn", at: float = T0, payload: bytes = b'{"n": 1}',
          content_type: str = "application/json") -> Event:
    return Event(id=uuid.uuid4().hex, function=function, qualifier="latest", payload=payload,
                 content_type=content_type, enqueued_at=at)


async def submit(queue: Queue, ev: Event, *, key: str | None = None,
                 now: float | None = None) -> Task:
    task, created = await queue.submit(ev, idempotency_key=key, dedup_window_s=WINDOW,
                                       now=ev.enqueued_at if now is None else now)
    assert created
    return task


async def claim_one(queue: Queue, *, now: float, lease_s: float = 30.0) -> Delivery:
    got = await queue.claim(1, lease_s, now=now)
    assert len(got) == 1
    return got[0]


def ids(deliveries: list[Delivery]) -> list[str]:
    return [d.event.id for d in deliveries]


# submit and get_task

def test_submit_stores_event_and_queued_task(with_queue: WithQueue) -> None:
    payload = bytes(range(256)) * 3  # not UTF-8: must come back byte for byte

    async def scenario(queue: Queue) -> None:
        ev = event(payload=payload, content_type="application/octet-stream")
        task, created = await queue.submit(ev, idempotency_key="k1", dedup_window_s=WINDOW,
                                           now=T0)
        assert created
        assert (task.id, task.function, task.qualifier) == (ev.id, "fn", "latest")
        assert (task.status, task.created_at, task.idempotency_key) == ("queued", T0, "k1")
        assert task.attempts == 0 and not task.final
        assert await queue.get_task(ev.id) == task

        (delivery,) = await queue.claim(10, 30, now=T0)
        assert delivery.event == ev
        assert delivery.token

    with_queue(scenario)


def test_get_task_unknown_raises(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        with pytest.raises(TaskNotFound):
            await queue.get_task("no-such-task")

    with_queue(scenario)


def test_save_task_stores_new_state(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        task = await submit(queue, event())
        task.status, task.started_at, task.stop_requested = "running", T0 + 1, True
        task.version, task.updated_at = "3", T0 + 1
        await queue.save_task(task)
        assert await queue.get_task(task.id) == task

    with_queue(scenario)


# deduplication

def test_same_key_within_window_returns_the_first_task(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        first = await submit(queue, event(), key="order-1")
        second = event(at=T0 + 10)
        task, created = await queue.submit(second, idempotency_key="order-1",
                                           dedup_window_s=WINDOW, now=T0 + 10)
        assert not created
        assert task == first
        assert (await queue.figures(now=T0 + 10)).depth == 1
        with pytest.raises(TaskNotFound):
            await queue.get_task(second.id)

    with_queue(scenario)


def test_same_key_of_another_function_is_a_new_task(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        await submit(queue, event("a"), key="k")
        other = await submit(queue, event("b"), key="k")
        assert other.function == "b"
        assert (await queue.figures(now=T0)).depth == 2

    with_queue(scenario)


def test_same_key_after_the_window_is_a_new_task(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        first = await submit(queue, event(), key="k")
        later = await submit(queue, event(at=T0 + WINDOW + 1), key="k")
        assert later.id != first.id
        assert (await queue.figures(now=T0 + WINDOW + 1)).depth == 2

    with_queue(scenario)


def test_concurrent_submits_with_one_key_give_one_task(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        results = await asyncio.gather(*(
            queue.submit(event(), idempotency_key="same", dedup_window_s=WINDOW, now=T0)
            for _ in range(10)
        ))
        assert sum(created for _, created in results) == 1
        assert len({task.id for task, _ in results}) == 1
        assert (await queue.figures(now=T0)).depth == 1

    with_queue(scenario)


# claim

def test_claim_is_oldest_first_and_respects_limit(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        events = [event(at=T0 + i) for i in range(5)]
        for ev in events:
            await submit(queue, ev)
        first = await queue.claim(3, 30, now=T0 + 10)
        assert ids(first) == [ev.id for ev in events[:3]]
        rest = await queue.claim(10, 30, now=T0 + 10)
        assert ids(rest) == [ev.id for ev in events[3:]]
        assert await queue.claim(10, 30, now=T0 + 10) == []

    with_queue(scenario)


def test_claim_of_an_empty_queue_is_empty(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        assert await queue.claim(10, 30, now=T0) == []

    with_queue(scenario)


def test_leased_event_is_claimed_again_only_after_its_lease(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        ev = event()
        await submit(queue, ev)
        first = await claim_one(queue, now=T0, lease_s=30)
        assert not first.redelivered
        assert await queue.claim(10, 30, now=T0 + 29) == []
        # At least once: the holder vanished, so the event comes back as a new attempt.
        again = await claim_one(queue, now=T0 + 31)
        assert again.event == replace(ev, attempt=1)
        assert again.redelivered
        assert again.token != first.token

    with_queue(scenario)


def test_a_claim_carries_each_event_s_task_as_stored(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        events = [event(at=T0 + i) for i in range(5)]
        for ev in events:
            await submit(queue, ev)
        stored = await queue.get_task(events[0].id)
        stored.history.append(Attempt(1, T0, T0 + 1, "error", "1", "FunctionError", "no"))
        stored.attempts = 1
        await queue.save_task(stored)
        deliveries = await queue.claim(10, 30, now=T0 + 10)
        assert ids(deliveries) == [ev.id for ev in events]
        for delivery in deliveries:
            assert delivery.task == await queue.get_task(delivery.event.id)
        # A redelivery reads the task again, with what the first holder stored.
        running = replace(deliveries[1].task, status="running", updated_at=T0 + 11)
        await queue.save_task(running)
        again = await queue.claim(10, 30, now=T0 + 41)
        assert [d.task for d in again if d.event.id == running.id] == [running]
        assert all(d.redelivered and d.task is not None for d in again)

    with_queue(scenario)


def test_every_redelivery_is_a_new_attempt(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        task = await submit(queue, event())
        first = await claim_one(queue, now=T0, lease_s=10)
        task.attempts = 1
        await queue.retry(first, task, delay_s=0, now=T0 + 1)  # attempt 1 ended: an error
        second = await claim_one(queue, now=T0 + 1, lease_s=10)
        assert (second.event.attempt, second.redelivered) == (1, False)
        third = await claim_one(queue, now=T0 + 12, lease_s=10)   # second's lease ran out
        assert (third.event.attempt, third.redelivered) == (2, True)
        fourth = await claim_one(queue, now=T0 + 23, lease_s=10)  # and third's
        assert (fourth.event.attempt, fourth.redelivered) == (3, True)
        # Put back, the event keeps what it counted; the next claim is no redelivery.
        await queue.postpone(fourth, delay_s=0, now=T0 + 24)
        fifth = await claim_one(queue, now=T0 + 24)
        assert (fifth.event.attempt, fifth.redelivered) == (3, False)
        await queue.retry(fifth, task, delay_s=0, now=T0 + 25)
        assert (await claim_one(queue, now=T0 + 25)).event.attempt == 4

    with_queue(scenario)


def test_claim_skips_paused_and_full_functions(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        a, b, c = event("a"), event("b"), event("c")
        for ev in (a, b, c):
            await submit(queue, ev)
        got = await queue.claim(10, 30, now=T0, paused=frozenset({"a"}), limits={"b": 0})
        assert ids(got) == [c.id]
        rest = await queue.claim(10, 30, now=T0)
        assert sorted(ids(rest)) == sorted([a.id, b.id])

    with_queue(scenario)


def test_claim_caps_the_events_of_a_function_leased_at_once(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        capped = [event("a", at=T0 + i) for i in range(5)]
        free = [event("b", at=T0 + 5 + i) for i in range(3)]
        for ev in capped + free:
            await submit(queue, ev)
        limits = {"a": 2}
        # One claim takes no more than the cap, however many it may take in all.
        first = await queue.claim(10, 30, now=T0 + 10, limits=limits)
        assert sorted(ids(first)) == sorted(ev.id for ev in capped[:2] + free)
        # The live leases count, whoever holds them.
        assert await queue.claim(10, 30, now=T0 + 10, limits=limits) == []
        done = first[0]
        await queue.ack(done, await queue.get_task(done.event.id))
        assert ids(await queue.claim(10, 30, now=T0 + 11, limits=limits)) == [capped[2].id]
        assert await queue.claim(10, 30, now=T0 + 11, limits=limits) == []
        # A retry releases its lease; a raised cap takes more at once.
        (held,) = [d for d in first if d.event.id == capped[1].id]
        await queue.retry(held, await queue.get_task(held.event.id), delay_s=0, now=T0 + 12)
        again = await queue.claim(10, 30, now=T0 + 12, limits={"a": 4})
        # Live leases: capped[2]; the cap of 4 leaves room for 3 of the 3 waiting.
        assert sorted(ids(again)) == sorted(ev.id for ev in (capped[1], capped[3], capped[4]))
        # Leases that ran out no longer count: their events are claimable again, capped.
        late = await queue.claim(10, 30, now=T0 + 100, limits=limits)
        assert sorted(d.event.function for d in late) == ["a", "a", "b", "b", "b"]
        assert all(d.redelivered for d in late)

    with_queue(scenario)


def test_claim_spreads_across_functions(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        for i in range(50):
            await submit(queue, event("a", at=T0 + i))
        b_events = [event("b", at=T0 + 50 + i) for i in range(2)]
        for ev in b_events:
            await submit(queue, ev)
        got = await queue.claim(4, 30, now=T0 + 100)
        assert len(got) == 4
        assert {ev.id for ev in b_events} <= set(ids(got))

    with_queue(scenario)


def test_concurrent_claims_never_share_an_event(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        submitted = {(await submit(queue, event(f"f{i % 3}", at=T0 + i))).id
                     for i in range(100)}
        batches = await asyncio.gather(*(queue.claim(10, 30, now=T0 + 200)
                                         for _ in range(20)))
        claimed = [d.event.id for batch in batches for d in batch]
        assert len(claimed) == len(set(claimed)) == 100
        assert set(claimed) == submitted

    with_queue(scenario)


def test_extend_keeps_the_lease(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        await submit(queue, event())
        delivery = await claim_one(queue, now=T0, lease_s=10)
        await queue.extend(delivery, 30, now=T0 + 5)  # leased until T0 + 35
        assert await queue.claim(10, 10, now=T0 + 20) == []
        assert (await queue.figures(now=T0 + 20)).leased == 1
        assert ids(await queue.claim(10, 10, now=T0 + 36)) == [delivery.event.id]

    with_queue(scenario)


# ending an attempt

def test_ack_removes_the_event_and_stores_the_final_task(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        task = await submit(queue, event())
        delivery = await claim_one(queue, now=T0)
        task.status, task.attempts, task.version = "succeeded", 1, "2"
        task.started_at, task.finished_at, task.updated_at = T0 + 1, T0 + 2, T0 + 2
        task.result, task.result_content_type = b"\x00result\xff", "application/octet-stream"
        task.history = [Attempt(0, T0 + 1, T0 + 2, "success", version="2")]
        await queue.ack(delivery, task)
        assert await queue.get_task(task.id) == task
        assert (await queue.figures(now=T0 + 2)).depth == 0
        assert await queue.claim(10, 30, now=T0 + 1000) == []

    with_queue(scenario)


def test_figures_count_each_function_apart_and_all_together(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        assert await queue.figures("a", now=T0) == QueueFigures(0, 0, 0, None, 0)
        for at in (T0 + 1, T0 + 2, T0 + 3):
            await submit(queue, event("a", at=at))
        await submit(queue, event("b", at=T0 + 4))
        leased = await claim_one(queue, now=T0 + 10)  # a's oldest, leased until T0 + 40
        assert leased.event.function == "a"
        delayed = await claim_one(queue, now=T0 + 10)
        task = await queue.get_task(delayed.event.id)
        await queue.retry(delayed, task, delay_s=100, now=T0 + 10)  # due at T0 + 110
        a = await queue.figures("a", now=T0 + 20)
        assert (a.depth, a.leased, a.delayed, a.dead_letters) == (3, 1, 1, 0)
        assert a.oldest_age_s == pytest.approx(19.0)
        b = await queue.figures("b", now=T0 + 20)
        assert (b.depth, b.leased, b.delayed, b.oldest_age_s) == (1, 0, 0, pytest.approx(16.0))
        every = await queue.figures(now=T0 + 20)
        assert (every.depth, every.leased, every.delayed) == (4, 1, 1)
        assert every.oldest_age_s == pytest.approx(19.0)
        # A lease that ran out no longer counts as leased; the event is still queued.
        later = await queue.figures("a", now=T0 + 50)
        assert (later.depth, later.leased, later.delayed) == (3, 0, 1)

    with_queue(scenario)


def test_retry_counts_the_attempt_and_waits_the_delay(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        ev = event()
        task = await submit(queue, ev)
        delivery = await claim_one(queue, now=T0)
        task.attempts, task.updated_at = 1, T0 + 1
        task.error = {"code": "FunctionError", "message": "boom"}
        task.history = [Attempt(0, T0, T0 + 1, "error", error_code="FunctionError",
                                message="boom")]
        await queue.retry(delivery, task, delay_s=10, now=T0 + 1)
        assert await queue.get_task(task.id) == task
        assert await queue.claim(10, 30, now=T0 + 5) == []
        figures = await queue.figures(now=T0 + 5)
        assert (figures.depth, figures.delayed, figures.leased) == (1, 1, 0)
        again = await claim_one(queue, now=T0 + 12)
        assert again.event.attempt == 1
        assert again.event.payload == ev.payload

    with_queue(scenario)


def test_postpone_keeps_the_attempt_and_the_task(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        task = await submit(queue, event())
        delivery = await claim_one(queue, now=T0)
        await queue.postpone(delivery, delay_s=5, now=T0 + 1)
        assert await queue.claim(10, 30, now=T0 + 3) == []
        again = await claim_one(queue, now=T0 + 7)
        assert again.event.attempt == 0
        assert await queue.get_task(task.id) == task

    with_queue(scenario)


def test_dead_letter_then_redrive(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        ev = event(payload=b"\xffpayload", content_type="text/plain")
        task = await submit(queue, ev)
        delivery = await claim_one(queue, now=T0)
        task.status, task.attempts, task.finished_at = "failed", 3, T0 + 2
        task.error = {"code": "FunctionError", "message": "boom"}
        reason: dict[str, object] = {"code": "FunctionError", "message": "boom", "attempts": 3}
        await queue.dead_letter(delivery, task, reason, now=T0 + 2)

        letter = await queue.get_dead_letter(ev.id)
        assert (letter.id, letter.function, letter.qualifier) == (ev.id, "fn", "latest")
        assert (letter.payload, letter.content_type) == (ev.payload, ev.content_type)
        assert (letter.enqueued_at, letter.dead_at, letter.reason) == (T0, T0 + 2, reason)
        assert (await queue.list_dead_letters()).items == [letter]
        assert (await queue.list_dead_letters("fn")).items == [letter]
        assert (await queue.list_dead_letters("other")).items == []
        stored = await queue.get_task(ev.id)
        assert stored.dead_lettered and stored.status == "failed"
        figures = await queue.figures(now=T0 + 2)
        assert (figures.depth, figures.dead_letters) == (0, 1)
        assert await queue.claim(10, 30, now=T0 + 1000) == []

        redriven = await queue.redrive(ev.id, now=T0 + 10)
        assert redriven.status == "queued"
        assert not redriven.dead_lettered and redriven.error is None
        assert await queue.get_task(ev.id) == redriven
        with pytest.raises(DeadLetterNotFound):
            await queue.get_dead_letter(ev.id)
        assert (await queue.figures(now=T0 + 10)).dead_letters == 0
        again = await claim_one(queue, now=T0 + 10)
        assert again.event.attempt == 0
        assert again.event.enqueued_at == T0 + 10
        assert (again.event.payload, again.event.content_type) == (ev.payload, ev.content_type)

    with_queue(scenario)


def test_unknown_dead_letters_raise_not_found(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        with pytest.raises(DeadLetterNotFound, match="missing-id"):
            await queue.get_dead_letter("missing-id")
        with pytest.raises(DeadLetterNotFound, match="missing-id"):
            await queue.redrive("missing-id", now=T0)

    with_queue(scenario)


def test_a_stale_delivery_does_not_clobber_the_newer_claim(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        task = await submit(queue, event())
        stale = await claim_one(queue, now=T0, lease_s=10)
        fresh = await claim_one(queue, now=T0 + 20, lease_s=30)  # leased until T0 + 50
        task.status, task.updated_at = "running", T0 + 20
        await queue.save_task(task)

        assert fresh.token != stale.token
        late = replace(task, status="succeeded", finished_at=T0 + 21)
        await queue.extend(stale, 1000, now=T0 + 21)
        await queue.retry(stale, late, delay_s=0, now=T0 + 21)
        await queue.postpone(stale, delay_s=0, now=T0 + 21)
        await queue.dead_letter(stale, late, {"code": "X"}, now=T0 + 21)
        await queue.ack(stale, late)

        assert await queue.get_task(task.id) == task
        figures = await queue.figures(now=T0 + 22)
        assert (figures.depth, figures.leased, figures.dead_letters) == (1, 1, 0)
        assert await queue.claim(10, 30, now=T0 + 22) == []
        # The stale extend did not stretch the lease, nor did the stale retry count: only
        # the two redeliveries did.
        again = await claim_one(queue, now=T0 + 51)
        assert again.event.attempt == 2

        await queue.ack(again, late)
        assert (await queue.get_task(task.id)).status == "succeeded"
        assert (await queue.figures(now=T0 + 52)).depth == 0

    with_queue(scenario)


# stopping

def test_stop_queued_removes_a_waiting_event(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        task = await submit(queue, event())
        stopped = await queue.stop_queued(task.id, now=T0 + 1)
        assert stopped is not None
        assert (stopped.status, stopped.finished_at) == ("stopped", T0 + 1)
        assert await queue.get_task(task.id) == stopped
        assert await queue.claim(10, 30, now=T0 + 2) == []
        assert (await queue.figures(now=T0 + 2)).depth == 0
        # Already final: returned unchanged.
        assert await queue.stop_queued(task.id, now=T0 + 5) == stopped

    with_queue(scenario)


def test_stop_queued_removes_an_event_waiting_for_a_retry(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        task = await submit(queue, event())
        delivery = await claim_one(queue, now=T0)
        task.attempts = 1
        await queue.retry(delivery, task, delay_s=60, now=T0 + 1)
        stopped = await queue.stop_queued(task.id, now=T0 + 2)
        assert stopped is not None and stopped.status == "stopped"
        assert await queue.claim(10, 30, now=T0 + 100) == []

    with_queue(scenario)


def test_stop_queued_leaves_a_leased_event(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        task = await submit(queue, event())
        await claim_one(queue, now=T0, lease_s=30)
        assert await queue.stop_queued(task.id, now=T0 + 1) is None
        assert (await queue.get_task(task.id)).status == "queued"
        assert (await queue.figures(now=T0 + 1)).leased == 1
        # Once the lease ran out nobody holds the event: it can be stopped.
        stopped = await queue.stop_queued(task.id, now=T0 + 100)
        assert stopped is not None and stopped.status == "stopped"

    with_queue(scenario)


def test_stop_queued_unknown_raises(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        with pytest.raises(TaskNotFound):
            await queue.stop_queued("no-such-task", now=T0)

    with_queue(scenario)


# listings

def test_list_tasks_newest_first_with_cursors(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        tasks = [await submit(queue, event(at=T0 + i)) for i in range(5)]
        await submit(queue, event("other", at=T0 + 10))
        newest_first = [t.id for t in reversed(tasks)]
        assert [t.id for t in (await queue.list_tasks("fn")).items] == newest_first

        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await queue.list_tasks("fn", limit=2, cursor=cursor)
            seen += [t.id for t in page.items]
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == newest_first
        assert pages == 3
        assert (await queue.list_tasks("nobody")).items == []

    with_queue(scenario)


def test_list_tasks_by_status(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        tasks = [await submit(queue, event(at=T0 + i)) for i in range(3)]
        delivery = await claim_one(queue, now=T0 + 5)
        done = await queue.get_task(delivery.event.id)
        done.status = "succeeded"
        await queue.ack(delivery, done)
        succeeded = await queue.list_tasks("fn", status="succeeded")
        assert [t.id for t in succeeded.items] == [done.id]
        queued = await queue.list_tasks("fn", status="queued")
        assert [t.id for t in queued.items] == [t.id for t in reversed(tasks) if t.id != done.id]
        page = await queue.list_tasks("fn", status="queued", limit=1)
        assert page.next_cursor is not None
        rest = await queue.list_tasks("fn", status="queued", limit=1, cursor=page.next_cursor)
        assert [t.id for t in page.items + rest.items] == [t.id for t in queued.items]
        assert rest.next_cursor is None

    with_queue(scenario)


def test_list_with_a_bad_cursor_is_an_invalid_request(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        with pytest.raises(InvalidRequest):
            await queue.list_tasks("fn", cursor="not a cursor!")

    with_queue(scenario)


def test_list_dead_letters_newest_first_with_cursors(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        dead: list[str] = []
        for i in range(3):
            task = await submit(queue, event("a" if i < 2 else "b", at=T0 + i))
            delivery = await claim_one(queue, now=T0 + 10 + i)
            task.status = "failed"
            await queue.dead_letter(delivery, task, {"code": "X"}, now=T0 + 10 + i)
            dead.append(task.id)
        first = await queue.list_dead_letters(limit=2)
        assert [d.id for d in first.items] == [dead[2], dead[1]]
        assert first.next_cursor is not None
        second = await queue.list_dead_letters(limit=2, cursor=first.next_cursor)
        assert [d.id for d in second.items] == [dead[0]]
        assert second.next_cursor is None
        assert [d.id for d in (await queue.list_dead_letters("a")).items] == [dead[1], dead[0]]

    with_queue(scenario)


# figures and deletion

def test_figures_per_function_and_overall(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        for i in range(3):
            await submit(queue, event("a", at=T0 + i))
        for i in range(2):
            await submit(queue, event("b", at=T0 + 3 + i))
        await claim_one(queue, now=T0 + 5, lease_s=30)           # a's first: leased
        second = await claim_one(queue, now=T0 + 5)               # a's second: delayed
        task = await queue.get_task(second.event.id)
        await queue.retry(second, task, delay_s=100, now=T0 + 5)
        (b_first,) = await queue.claim(1, 30, now=T0 + 5, paused=frozenset({"a"}))
        b_task = await queue.get_task(b_first.event.id)
        await queue.dead_letter(b_first, b_task, {"code": "X"}, now=T0 + 5)

        now = T0 + 10
        assert await queue.figures("a", now=now) == QueueFigures(
            depth=3, leased=1, delayed=1, oldest_age_s=10.0, dead_letters=0)
        assert await queue.figures("b", now=now) == QueueFigures(
            depth=1, leased=0, delayed=0, oldest_age_s=6.0, dead_letters=1)
        assert await queue.figures(now=now) == QueueFigures(
            depth=4, leased=1, delayed=1, oldest_age_s=10.0, dead_letters=1)
        assert await queue.figures("nobody", now=now) == QueueFigures(
            depth=0, leased=0, delayed=0, oldest_age_s=None, dead_letters=0)
        assert (await queue.figures("a", now=T0 + 50)).leased == 0  # the lease ran out

    with_queue(scenario)


def test_delete_function_drops_its_events_tasks_and_dead_letters(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        gone = [await submit(queue, event("a", at=T0 + i)) for i in range(2)]
        kept = [await submit(queue, event("b", at=T0 + 2 + i)) for i in range(2)]
        for name in ("a", "b"):
            (delivery,) = await queue.claim(1, 30, now=T0 + 5,
                                            paused=frozenset({"a", "b"} - {name}))
            task = await queue.get_task(delivery.event.id)
            await queue.dead_letter(delivery, task, {"code": "X"}, now=T0 + 5)

        await queue.delete_function("a")
        assert await queue.figures("a", now=T0 + 6) == QueueFigures(0, 0, 0, None, 0)
        for task in gone:
            with pytest.raises(TaskNotFound):
                await queue.get_task(task.id)
        assert (await queue.list_tasks("a")).items == []
        assert (await queue.list_dead_letters("a")).items == []
        figures = await queue.figures("b", now=T0 + 6)
        assert (figures.depth, figures.dead_letters) == (1, 1)
        assert {t.id for t in (await queue.list_tasks("b")).items} == {t.id for t in kept}

    with_queue(scenario)


def test_purge_deletes_what_ended_before_the_cut(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        async def finish(task: Task, status: str, at: float) -> None:
            delivery = await claim_one(queue, now=at)
            assert delivery.event.id == task.id
            task.status, task.finished_at, task.updated_at = status, at, at
            if status == "failed":
                await queue.dead_letter(delivery, task, {"code": "X"}, now=at)
            else:
                await queue.ack(delivery, task)

        old_done = await submit(queue, event("a", at=T0))
        await finish(old_done, "succeeded", T0 + 1)
        old_dead = await submit(queue, event("b", at=T0 + 2))
        await finish(old_dead, "failed", T0 + 3)
        stopped = await submit(queue, event("a", at=T0 + 4))
        assert await queue.stop_queued(stopped.id, now=T0 + 5) is not None
        recent = await submit(queue, event("a", at=T0 + 6))
        await finish(recent, "succeeded", T0 + 100)
        waiting = await submit(queue, event("a", at=T0 + 7))   # queued: never purged
        running = await submit(queue, event("b", at=T0 + 8))
        await claim_one(queue, now=T0 + 9)                     # leased: never purged
        # A final task whose event is still queued keeps both (a redelivered event needs it).
        kept_final = await submit(queue, event("c", at=T0 + 10))
        kept_final.status, kept_final.updated_at = "succeeded", T0 + 10
        await queue.save_task(kept_final)

        assert await queue.purge(T0 + 50) == 4  # old_done, old_dead's task and letter, stopped
        for gone in (old_done, old_dead, stopped):
            with pytest.raises(TaskNotFound):
                await queue.get_task(gone.id)
        with pytest.raises(DeadLetterNotFound):
            await queue.get_dead_letter(old_dead.id)
        assert (await queue.list_dead_letters()).items == []
        for kept in (recent, waiting, running, kept_final):
            assert (await queue.get_task(kept.id)).id == kept.id
        assert {t.id for t in (await queue.list_tasks("a")).items} == {recent.id, waiting.id}
        assert (await queue.list_tasks("a", status="succeeded")).items[0].id == recent.id
        assert (await queue.list_tasks("b", status="failed")).items == []
        assert (await queue.figures(now=T0 + 50)).depth == 3
        assert await queue.purge(T0 + 50) == 0
        # The cut is strict: a task finished exactly at ``before`` stays.
        assert await queue.purge(T0 + 100) == 0
        assert await queue.purge(T0 + 100.5) == 1

    with_queue(scenario)


def test_purge_deletes_in_batches(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        for i in range(1205):
            task = await submit(queue, event(f"f{i % 3}", at=T0 + i / 100))
            assert await queue.stop_queued(task.id, now=T0 + i / 100) is not None
        assert await queue.purge(T0 + 100) == 1205
        for name in ("f0", "f1", "f2"):
            assert (await queue.list_tasks(name)).items == []

    with_queue(scenario)


# restart and concurrency

def test_a_restart_keeps_everything_and_frees_expired_leases(with_queue: WithQueue) -> None:
    events = [event(at=T0 + i) for i in range(3)]

    async def before(queue: Queue) -> None:
        for ev in events:
            await submit(queue, ev)
        await claim_one(queue, now=T0 + 5, lease_s=30)  # events[0]: the server dies holding it
        delivery = await claim_one(queue, now=T0 + 5)   # events[1]: dead-lettered
        task = await queue.get_task(delivery.event.id)
        task.status = "failed"
        await queue.dead_letter(delivery, task, {"code": "X"}, now=T0 + 5)

    async def after(queue: Queue) -> None:
        for ev in events:
            assert (await queue.get_task(ev.id)).id == ev.id
        assert (await queue.get_dead_letter(events[1].id)).reason == {"code": "X"}
        figures = await queue.figures(now=T0 + 10)
        assert (figures.depth, figures.leased, figures.dead_letters) == (2, 1, 1)
        assert ids(await queue.claim(10, 30, now=T0 + 10)) == [events[2].id]
        again = await claim_one(queue, now=T0 + 36)
        assert again.event == replace(events[0], attempt=1)
        assert again.redelivered

    with_queue(before)
    with_queue(after)


def test_concurrent_submits_are_all_stored(with_queue: WithQueue) -> None:
    async def scenario(queue: Queue) -> None:
        events = [event(f"f{i % 4}", at=T0 + i / 1000) for i in range(200)]
        results = await asyncio.gather(*(
            queue.submit(ev, idempotency_key=None, dedup_window_s=WINDOW, now=ev.enqueued_at)
            for ev in events
        ))
        assert all(created for _, created in results)
        assert (await queue.figures(now=T0 + 1)).depth == 200
        tasks = await asyncio.gather(*(queue.get_task(ev.id) for ev in events))
        assert [t.id for t in tasks] == [ev.id for ev in events]

    with_queue(scenario)
