"""A local SQLite file for high-volume observability rows, written in batches by one thread.

Logs and invocation records are node-local and far more frequent than metadata changes, so
they stay out of the metadata store and never block the event loop: producers append rows
to a deque, a writer thread flushes them every few milliseconds (INSERTs as multi-row
statements).

Adding a row must cost the producer (the event loop, once per invocation) next to nothing:
it appends and, only when the writer sleeps, wakes it once. The writer then waits out the
flush interval before it takes the rows, so one wake and one transaction serve every row of
that interval, never a thread switch per row.
"""

from __future__ import annotations

import collections
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_MAX_BATCH = 5000


class BatchWriter:
    """Owns one SQLite connection for writes and one thread that applies queued rows."""

    def __init__(
        self, path: Path, schema: str, flush_interval_s: float = 0.05,
        migrate: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self._path = path
        # (sql, row) pairs, or an Event that a flush() waits on: set once what is ahead of
        # it is written. deque.append and popleft are atomic: no lock on the producer side.
        self._items: collections.deque[tuple[str, Sequence[Any]] | threading.Event] = (
            collections.deque())
        self._wake = threading.Event()  # set: rows wait; the writer sleeps until then
        self._hurry = threading.Event()  # set: a flush() or close() waits; skip the interval
        self._stopping = False
        self._interval = flush_interval_s
        self._maintenance: list[Callable[[sqlite3.Connection], None]] = []
        conn = self.connect()
        conn.executescript(schema)
        if migrate is not None:  # files made by an older Ember: bring them up to ``schema``
            migrate(conn)
        conn.close()
        self._thread = threading.Thread(target=self._run, name=f"ember-writer-{path.stem}",
                                        daemon=True)
        self._thread.start()

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def add_maintenance(self, task: Callable[[sqlite3.Connection], None]) -> None:
        """Run ``task`` on the writer's connection after each flush that wrote rows."""
        self._maintenance.append(task)

    def put(self, sql: str, row: Sequence[Any]) -> None:
        self._items.append((sql, row))
        if not self._wake.is_set():
            self._wake.set()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every row queued so far is written (reads, tests and shutdown)."""
        done = threading.Event()
        self._items.append(done)
        self._hurry.set()
        self._wake.set()
        done.wait(timeout)

    def close(self) -> None:
        self._stopping = True
        self._hurry.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        conn = self.connect()
        while True:
            self._wake.wait()
            if not self._stopping:
                # Let the interval's rows gather: one transaction for all of them.
                self._hurry.wait(self._interval)
            # Cleared before taking: a row added after this finds the writer to wake.
            self._wake.clear()
            self._hurry.clear()
            self._drain(conn)
            if self._stopping and not self._items:
                break
        conn.close()

    def _drain(self, conn: sqlite3.Connection) -> None:
        while self._items:
            batch: dict[str, list[Sequence[Any]]] = {}
            waiting: list[threading.Event] = []
            count = 0
            while self._items and count < _MAX_BATCH:
                item = self._items.popleft()
                if isinstance(item, threading.Event):
                    waiting.append(item)
                    continue
                sql, row = item
                batch.setdefault(sql, []).append(row)
                count += 1
            if count:
                self._write(conn, batch, count)
            for done in waiting:
                done.set()

    def _write(
        self, conn: sqlite3.Connection, batch: dict[str, list[Sequence[Any]]], count: int
    ) -> None:
        try:
            with conn:
                for sql, rows in batch.items():
                    _execute(conn, sql, rows)
            for task in self._maintenance:
                task(conn)
        except sqlite3.Error:
            log.exception("could not write %d observability rows to %s", count, self._path)


# Rows per multi-row INSERT: SQLite takes at most 999 parameters per statement in older
# builds; 64 rows of up to 15 columns stay under that.
_ROWS_PER_INSERT = 64
_VALUES = re.compile(r"^(INSERT INTO .*\bVALUES\s*)(\([?,\s]*\))\s*$", re.DOTALL)


def _execute(conn: sqlite3.Connection, sql: str, rows: list[Sequence[Any]]) -> None:
    """``executemany``, with INSERTs sent as multi-row statements: executemany steps once
    per row, and the sqlite3 module lets go of the GIL and takes it back at every step —
    a handoff with the event loop's thread per row, which under load costs the loop more
    than the rows do. One statement of 64 rows is one step."""
    found = _VALUES.match(sql)
    if found is None or len(rows) < _ROWS_PER_INSERT or len(rows[0]) * _ROWS_PER_INSERT > 999:
        conn.executemany(sql, rows)
        return
    head, group = found.groups()
    many = head + ", ".join([group] * _ROWS_PER_INSERT)
    whole = len(rows) - len(rows) % _ROWS_PER_INSERT
    for start in range(0, whole, _ROWS_PER_INSERT):
        conn.execute(many, [value for row in rows[start:start + _ROWS_PER_INSERT]
                            for value in row])
    if whole < len(rows):
        conn.executemany(sql, rows[whole:])

