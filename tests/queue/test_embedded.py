"""What only the embedded SQLite queue promises: group commit, WAL, durability on return."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest

from ember.errors import Conflict, EmberError, ServiceUnavailable
from ember.model.invocation import Event
from ember.queue._sqlite import SqliteThreads
from ember.queue.embedded import EmbeddedQueue

T0 = 1_000_000.0


def event(function: str = "fn", at: float = T0, id_: str | None = None) -> Event:
    return Event(id=id_ or uuid.uuid4().hex, function=function, qualifier="latest",
                 payload=b"{}", content_type="application/json", enqueued_at=at)


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[EmbeddedQueue]:
    queue = EmbeddedQueue(path)
    await queue.start()
    try:
        yield queue
    finally:
        await queue.close()


def run(path: Path, scenario: Callable[[EmbeddedQueue], Awaitable[None]]) -> None:
    async def main() -> None:
        async with opened(path) as queue:
            await scenario(queue)

    asyncio.run(main())


def test_concurrent_submits_share_commits(tmp_path: Path) -> None:
    async def scenario(queue: EmbeddedQueue) -> None:
        before = queue.commits
        results = await asyncio.gather(*(
            queue.submit(event(), idempotency_key=None, dedup_window_s=60, now=T0)
            for _ in range(500)
        ))
        assert len(results) == 500
        # One transaction per batch that queued up behind the previous commit.
        assert queue.commits - before <= 50
        assert (await queue.figures(now=T0)).depth == 500

    run(tmp_path / "queue.db", scenario)


def test_the_file_is_in_wal_mode_and_writes_are_synchronous(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"

    async def scenario(queue: EmbeddedQueue) -> None:
        await queue.submit(event(), idempotency_key=None, dedup_window_s=60, now=T0)

    run(path, scenario)
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with closing(SqliteThreads(path, name="test").connect()) as conn:
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL


def test_a_submit_is_visible_to_a_new_connection_when_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"

    async def scenario(queue: EmbeddedQueue) -> None:
        ev = event()
        await queue.submit(ev, idempotency_key=None, dedup_window_s=60, now=T0)
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("SELECT id FROM events").fetchall() == [(ev.id,)]
            assert conn.execute("SELECT status FROM tasks").fetchall() == [("queued",)]

    run(path, scenario)


def test_a_failed_write_does_not_undo_the_rest_of_its_batch(tmp_path: Path) -> None:
    async def scenario(queue: EmbeddedQueue) -> None:
        taken = event(id_="taken")
        await queue.submit(taken, idempotency_key=None, dedup_window_s=60, now=T0)
        others = [event() for _ in range(20)]
        results = await asyncio.gather(
            *(queue.submit(ev, idempotency_key=None, dedup_window_s=60, now=T0)
              for ev in [*others[:10], event(id_="taken"), *others[10:]]),
            return_exceptions=True,
        )
        assert [type(r) for r in results].count(Conflict) == 1
        for ev in others:
            assert (await queue.get_task(ev.id)).status == "queued"
        assert (await queue.figures(now=T0)).depth == 21

    run(tmp_path / "queue.db", scenario)


def test_a_cancelled_submit_is_still_stored(tmp_path: Path) -> None:
    async def scenario(queue: EmbeddedQueue) -> None:
        ev = event()
        pending = asyncio.create_task(
            queue.submit(ev, idempotency_key=None, dedup_window_s=60, now=T0))
        await asyncio.sleep(0)  # the write is handed to the writer thread
        pending.cancel()
        # Writes are applied in order: once a later one returns, the first is committed.
        await queue.submit(event(), idempotency_key=None, dedup_window_s=60, now=T0)
        assert (await queue.get_task(ev.id)).status == "queued"
        with pytest.raises(asyncio.CancelledError):
            await pending

    run(tmp_path / "queue.db", scenario)


def test_claim_interleaves_functions_by_rank(tmp_path: Path) -> None:
    async def scenario(queue: EmbeddedQueue) -> None:
        a = [event("a", at=T0 + i) for i in range(3)]
        b = [event("b", at=T0 + 10 + i) for i in range(3)]
        c = [event("c", at=T0 + 20)]
        for ev in [*a, *b, *c]:
            await queue.submit(ev, idempotency_key=None, dedup_window_s=60, now=ev.enqueued_at)
        got = await queue.claim(5, 30, now=T0 + 30)
        # Each function's oldest first (oldest of those first), then each one's second.
        assert [d.event.id for d in got] == [a[0].id, b[0].id, c[0].id, a[1].id, b[1].id]

    run(tmp_path / "queue.db", scenario)


def test_close_joins_the_threads_and_refuses_more_work(tmp_path: Path) -> None:
    async def main() -> None:
        queue = EmbeddedQueue(tmp_path / "queue.db")
        await queue.start()
        await queue.figures(now=T0)
        await queue.close()
        names = {t.name for t in threading.enumerate()}
        assert not any(name.startswith("ember-queue") for name in names)
        with pytest.raises(ServiceUnavailable):
            await queue.submit(event(), idempotency_key=None, dedup_window_s=60, now=T0)
        with pytest.raises(ServiceUnavailable):
            await queue.get_task("x")
        await queue.close()  # twice is harmless

    asyncio.run(main())


def test_a_storage_error_is_reported_and_the_writer_goes_on(tmp_path: Path) -> None:
    def setup(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE t (x INTEGER)")

    async def main() -> None:
        db = SqliteThreads(tmp_path / "t.db", name="test")
        await db.start(setup)
        try:
            with pytest.raises(EmberError, match=r"t\.db"):
                await db.write(lambda conn: conn.execute("INSERT INTO missing VALUES (1)"))
            await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
            rows = await db.read(lambda conn: conn.execute("SELECT x FROM t").fetchall())
            assert rows == [(1,)]
            with pytest.raises(EmberError):
                await db.read(lambda conn: conn.execute("SELECT nope FROM t").fetchall())
        finally:
            await db.close()

    asyncio.run(main())


def test_a_failing_write_in_a_batch_is_undone_alone(tmp_path: Path) -> None:
    def setup(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE t (x INTEGER UNIQUE)")

    async def main() -> None:
        db = SqliteThreads(tmp_path / "t.db", name="test")
        await db.start(setup)

        def insert(x: int) -> Callable[[sqlite3.Connection], None]:
            def fn(conn: sqlite3.Connection) -> None:
                conn.execute("INSERT INTO t VALUES (?)", (x,))
                if x == 3:  # its own insert went in first: it must be undone with it
                    conn.execute("INSERT INTO t VALUES (1)")
            return fn

        taken, gate = threading.Event(), threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            taken.set()
            gate.wait(30)

        try:
            # Queued while the writer is busy, so that they form one batch: one fails, the
            # rest commit, and only the failing one's caller hears of it.
            held = asyncio.ensure_future(db.write(hold))
            await asyncio.to_thread(taken.wait, 30)
            writes = [asyncio.ensure_future(db.write(insert(x))) for x in range(1, 7)]
            await asyncio.sleep(0)
            gate.set()
            await held
            outcomes = await asyncio.gather(*writes, return_exceptions=True)
            assert db.commits == 3  # the tables, the held write, the batch
            assert [isinstance(o, EmberError) for o in outcomes] == [
                False, False, True, False, False, False]
            rows = await db.read(lambda conn: conn.execute("SELECT x FROM t ORDER BY x")
                                 .fetchall())
            assert rows == [(1,), (2,), (4,), (5,), (6,)]
        finally:
            await db.close()

    asyncio.run(main())


def test_only_a_batch_of_settling_writes_commits_without_waiting_for_the_disk(
        tmp_path: Path) -> None:
    def setup(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE t (x INTEGER)")

    def mode(conn: sqlite3.Connection) -> int:
        (level,) = conn.execute("PRAGMA synchronous").fetchone()
        return int(level)

    async def main() -> None:
        db = SqliteThreads(tmp_path / "t.db", name="test")
        await db.start(setup)
        try:
            full, normal = 2, 1
            assert await db.write(mode) == full
            assert await db.write(mode, durable=False) == normal
            assert await db.write(mode) == full
            # One durable write in a batch makes the whole commit durable.
            assert await asyncio.gather(db.write(mode, durable=False), db.write(mode)) in (
                [full, full], [normal, full])
        finally:
            await db.close()

    asyncio.run(main())


def test_figures_read_indexes_only_never_the_rows_that_hold_payloads(tmp_path: Path) -> None:
    # A deep queue's stats are polled (the console, Prometheus): a count that read the
    # rows would read every payload each time.
    async def scenario(queue: EmbeddedQueue) -> None:
        for _ in range(3):
            await queue.submit(event(), idempotency_key=None, dedup_window_s=0, now=T0)
        statements: list[str] = []
        real_read = queue._db.read

        async def traced(fn: Callable[[sqlite3.Connection], object]) -> object:
            def wrapped(conn: sqlite3.Connection) -> object:
                conn.set_trace_callback(statements.append)
                try:
                    return fn(conn)
                finally:
                    conn.set_trace_callback(None)

            return await real_read(wrapped)

        queue._db.read = traced  # type: ignore[method-assign,assignment]
        assert (await queue.figures("fn", now=T0)).depth == 3
        assert (await queue.figures(now=T0)).depth == 3
        selects = [s for s in statements if s.startswith("SELECT")]
        assert selects
        with closing(sqlite3.connect(queue.path)) as conn:
            for sql in selects:
                plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
                assert all("COVERING INDEX" in step for step in plan), (sql, plan)

    run(tmp_path / "queue.db", scenario)
