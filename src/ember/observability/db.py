"""A local SQLite file for high-volume observability rows, written in batches by one thread.

Logs and invocation records are node-local and far more frequent than metadata changes, so
they stay out of the metadata store and never block the event loop: producers enqueue rows,
a writer thread flushes them with ``executemany`` every few milliseconds.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_STOP = object()
_MAX_BATCH = 5000


class BatchWriter:
    """Owns one SQLite connection for writes and one thread that applies queued rows."""

    def __init__(
        self, path: Path, schema: str, flush_interval_s: float = 0.05,
        migrate: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self._path = path
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._interval = flush_interval_s
        self._maintenance: list[Callable[[sqlite3.Connection], None]] = []
        conn = self.connect()
        conn.executescript(schema)
        if migrate is not None:  # files made by an older Ember: bring them up to ``schema``
            migrate(conn)
        conn.close()
        self._flushed = threading.Condition()
        self._pending = 0
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
        with self._flushed:
            self._pending += 1
        self._queue.put((sql, row))

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every row queued so far is written (tests and shutdown)."""
        with self._flushed:
            self._flushed.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        conn = self.connect()
        stopping = False
        while not stopping:
            batch: dict[str, list[Sequence[Any]]] = {}
            count = 0
            item = self._queue.get()
            deadline = time.monotonic() + self._interval
            while True:
                if item is _STOP:
                    stopping = True
                    break
                sql, row = item
                batch.setdefault(sql, []).append(row)
                count += 1
                remaining = deadline - time.monotonic()
                if count >= _MAX_BATCH or remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if count:
                self._write(conn, batch, count)
        conn.close()

    def _write(
        self, conn: sqlite3.Connection, batch: dict[str, list[Sequence[Any]]], count: int
    ) -> None:
        try:
            with conn:
                for sql, rows in batch.items():
                    conn.executemany(sql, rows)
            for task in self._maintenance:
                task(conn)
        except sqlite3.Error:
            log.exception("could not write %d observability rows to %s", count, self._path)
        with self._flushed:
            self._pending -= count
            self._flushed.notify_all()
