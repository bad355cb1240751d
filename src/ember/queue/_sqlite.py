"""One SQLite file served to asyncio: a writer thread that group-commits, a reader thread.

Every write is a function of the writer's connection, run on one dedicated thread so that
writes are serialized without locks and the event loop never waits on the disk. Writes that
arrive while a commit is in progress are applied together in the next transaction — group
commit — so that ``synchronous=FULL`` costs one fsync per batch rather than one per write,
and each caller's future resolves only after the commit that holds its change. A batch of
only non-durable writes (``write(…, durable=False)``) commits with ``synchronous=NORMAL``:
it is in the WAL, so it survives the process being killed, but a power cut may undo it; the
next durable commit makes it durable too (the WAL is written in order). Reads run on
a second thread with its own connection; WAL lets them proceed while the writer commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ember.errors import EmberError, ServiceUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# A batch is bounded so that one burst cannot hold every caller behind one huge commit.
_MAX_BATCH = 1000
_STOP = object()


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    durable: bool


def _storage_error(exc: Exception, path: Path) -> EmberError:
    err = EmberError(f"the queue database {path} failed: {exc}", {"path": str(path)})
    err.__cause__ = exc
    return err


class SqliteThreads:
    """Owns the writer thread, the reader thread and their connections to ``path``.

    ``commits`` counts committed write transactions (one per batch), so tests and
    diagnostics can see how well writes are grouped.
    """

    def __init__(self, path: Path, *, name: str) -> None:
        self.path = path
        self.commits = 0
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._reader_conn: sqlite3.Connection | None = None
        self._closed = False
        self._synchronous = "FULL"  # the writer connection's setting (connect sets FULL)

    def connect(self) -> sqlite3.Connection:
        """A new connection with the settings every user of the file needs."""
        # isolation_level=None: transactions are opened explicitly (BEGIN IMMEDIATE), since
        # the sqlite3 module's implicit ones cannot express group commit.
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk (WAL fsynced) before anyone is told it happened.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    async def start(self, setup: Callable[[sqlite3.Connection], None]) -> None:
        """Start both threads and run ``setup`` (create tables) as the first write."""
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Opened here so that a file that cannot be opened fails start, not the thread.
            conn = await asyncio.to_thread(self.connect)
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path) from exc
        self._writer = threading.Thread(target=self._run_writer, args=(conn,),
                                        name=f"{self._name}-writer", daemon=True)
        self._writer.start()
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self._name}-reader")
        await self.write(setup)

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``fn`` in the next write transaction and return its result once committed:
        on disk, or with ``durable=False`` in the WAL only (kept if the process is killed,
        not necessarily after a power cut) unless the batch also holds a durable write.

        If ``fn`` raises, its own changes are undone, the error reaches this caller, and
        the rest of the batch still commits (the batch is then run again with a savepoint
        per write, so ``fn`` may run twice: it must act on the connection only). A caller cancelled
        while waiting does not undo the write.
        """
        if self._writer is None or self._closed:
            raise ServiceUnavailable("the queue is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(fn, loop, future, durable))
        return await future

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the reader's connection; it sees every write that has returned."""
        if self._reader is None or self._closed:
            raise ServiceUnavailable("the queue is not running")
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._read, fn)

    async def close(self) -> None:
        """Finish the writes already submitted, then close both connections and threads."""
        if self._closed or self._writer is None:
            self._closed = True
            return
        self._closed = True
        self._jobs.put(_STOP)
        writer, reader = self._writer, self._reader
        await asyncio.to_thread(writer.join)
        if reader is not None:
            await asyncio.get_running_loop().run_in_executor(reader, self._close_reader)
            await asyncio.to_thread(reader.shutdown, True)

    # The reader thread.

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader_conn is None:
            self._reader_conn = self.connect()
            self._reader_conn.execute("PRAGMA query_only=ON")
        conn = self._reader_conn
        try:
            # One read transaction, so that a read of several statements sees one snapshot.
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise _storage_error(exc, self.path) from exc

    def _close_reader(self) -> None:
        if self._reader_conn is not None:
            self._reader_conn.close()
            self._reader_conn = None

    # The writer thread.

    def _run_writer(self, conn: sqlite3.Connection) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._jobs.get()
                if first is _STOP:
                    break
                assert isinstance(first, _Job)
                batch = [first]
                # Everything that queued up while the previous commit was on disk goes into
                # this one transaction.
                while len(batch) < _MAX_BATCH:
                    try:
                        item = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    assert isinstance(item, _Job)
                    batch.append(item)
                self._apply(conn, batch)
        finally:
            conn.close()

    def _apply(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        try:
            wanted = "FULL" if any(job.durable for job in batch) else "NORMAL"
            if wanted != self._synchronous:  # applies to the transactions that follow
                conn.execute(f"PRAGMA synchronous={wanted}")
                self._synchronous = wanted
            outcomes = self._apply_unguarded(conn, batch)
            if outcomes is None:
                outcomes = self._apply_guarded(conn, batch)
        except Exception as exc:  # anything here undoes the batch; the thread must go on
            log.exception("a write to %s failed; %d writes undone", self.path, len(batch))
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("could not roll back a failed write to %s", self.path)
            error = _storage_error(exc, self.path)
            outcomes = [(job, None, error) for job in batch]
        self._settle(outcomes)

    def _apply_guarded(self, conn: sqlite3.Connection,
                       batch: list[_Job]) -> list[tuple[_Job, Any, BaseException | None]]:
        """The batch in one transaction, each write in a savepoint: a write that raises
        is undone alone and the others commit."""
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                result = job.fn(conn)
            except Exception as exc:
                if not conn.in_transaction:
                    raise  # SQLite gave up the whole transaction (disk full, I/O error)
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                if isinstance(exc, sqlite3.Error):
                    exc = _storage_error(exc, self.path)
                outcomes.append((job, None, exc))
            else:
                conn.execute("RELEASE job")
                outcomes.append((job, result, None))
        conn.execute("COMMIT")
        self.commits += 1
        return outcomes

    def _apply_unguarded(self, conn: sqlite3.Connection,
                         batch: list[_Job]) -> list[tuple[_Job, Any, BaseException | None]] | None:
        """The batch in one transaction without a savepoint per write — two statements
        fewer per write, which under load is a good part of the writer's time. When a write
        raises, the whole transaction is rolled back and None returned: ``_apply`` then runs
        the batch again with savepoints (every write is a function of the connection, so
        running it again after the rollback is running it once). A batch of one needs no
        second run: its error is its outcome."""
        conn.execute("BEGIN IMMEDIATE")
        results = []
        for job in batch:
            try:
                results.append(job.fn(conn))
            except Exception as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if len(batch) > 1:
                    return None
                if isinstance(exc, sqlite3.Error):
                    exc = _storage_error(exc, self.path)
                return [(job, None, exc)]
        conn.execute("COMMIT")
        self.commits += 1
        return [(job, result, None) for job, result in zip(batch, results, strict=True)]

    @staticmethod
    def _settle(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any, BaseException | None]]]
        by_loop = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, items in by_loop.items():
            # One wake-up of the event loop per batch, not one per caller. A closed loop
            # raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, result, error in items:
        if job.future.done():
            continue  # the caller was cancelled
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)
