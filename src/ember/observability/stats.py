"""Invocation records and the statistics computed from them: counts, errors, cold starts,
duration percentiles, and per-minute time series.

The figures are computed from the records themselves (a *sample*: ts, cold, total_ms,
outcome, init_ms, attempt, and for the overview the function), never from other figures:
the statistics of a cluster are those of every node's samples together
(``ember.observability.cluster``)."""

from __future__ import annotations

import collections
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ember.observability.db import BatchWriter

_SCHEMA = """
CREATE TABLE IF NOT EXISTS invocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    function TEXT NOT NULL,
    version TEXT NOT NULL,
    request_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    cold INTEGER NOT NULL,
    init_ms REAL NOT NULL,
    run_ms REAL NOT NULL,
    total_ms REAL NOT NULL,
    outcome TEXT NOT NULL,
    error_code TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    error_message TEXT
);
CREATE INDEX IF NOT EXISTS ix_invocations_function ON invocations (function, ts);
CREATE INDEX IF NOT EXISTS ix_invocations_recent ON invocations (function, id);
"""
# Columns added after the first release, with their SQL type: added to older files at start.
_ADDED_COLUMNS = {"error_message": "TEXT"}
_COLUMNS = (
    "ts, function, version, request_id, mode, cold, init_ms, run_ms, total_ms, outcome, "
    "error_code, attempt, error_message"
)
_INSERT = (
    f"INSERT INTO invocations ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# A sample of one invocation: what its statistics are computed from.
_SAMPLE = "ts, cold, total_ms, outcome, init_ms, attempt"
# Old rows are deleted every _TRIM_EVERY flushes that wrote rows, at most a 1/_MARKS of the
# retention after they are due (see StatsStore._marks).
_TRIM_EVERY = 50
_MARKS = 1000
# Error messages are kept for people reading a list, not as a log: the start of each.
MAX_ERROR_MESSAGE = 1000

# Outcomes of an invocation; every error outcome but "throttled" ran (or tried to run) code.
SUCCESS = "success"
ERROR = "error"
TIMEOUT = "timeout"
THROTTLED = "throttled"
OUTCOMES = (SUCCESS, ERROR, TIMEOUT, THROTTLED)


class InvocationRecord(NamedTuple):
    """One invocation as it is recorded: made on every one, so a tuple (a frozen
    dataclass spent 2 µs of a warm invocation setting its fields one by one)."""

    ts: float
    function: str
    version: str
    request_id: str
    mode: str
    cold: bool
    init_ms: float
    run_ms: float
    total_ms: float
    outcome: str
    error_code: str | None = None
    attempt: int = 1
    error_message: str | None = None


@dataclass(frozen=True)
class InvocationPage:
    """Invocation records, newest first; ``next_cursor`` lists the older ones."""

    items: list[InvocationRecord]
    next_cursor: str | None
    # The cursor after each item: where the list goes on when the page is cut after it.
    cursors: list[str] = field(default_factory=list)


def _migrate(conn: sqlite3.Connection) -> None:
    present = {row[1] for row in conn.execute("PRAGMA table_info(invocations)")}
    with conn:
        for column, kind in _ADDED_COLUMNS.items():
            if column not in present:
                conn.execute(f"ALTER TABLE invocations ADD COLUMN {column} {kind}")


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return round(sorted_values[rank - 1], 3)


def summarize(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Counts and percentiles over rows of (ts, cold, total_ms, outcome, init_ms, attempt)."""
    ran = [r for r in rows if r[3] != THROTTLED]
    durations = sorted(r[2] for r in ran)
    cold = [r for r in ran if r[1]]
    init = sorted(r[4] for r in cold)
    return {
        "invocations": len(ran),
        "errors": sum(1 for r in ran if r[3] != SUCCESS),
        "timeouts": sum(1 for r in ran if r[3] == TIMEOUT),
        "throttles": len(rows) - len(ran),
        "cold_starts": len(cold),
        "retries": sum(1 for r in ran if r[5] > 1),
        "duration_ms": {
            "p50": percentile(durations, 50),
            "p90": percentile(durations, 90),
            "p99": percentile(durations, 99),
            "max": durations[-1] if durations else None,
        },
        "init_ms": {"p50": percentile(init, 50), "p99": percentile(init, 99)},
    }


class StatsStore:
    """Invocation records in ``stats.db``, kept for ``retention_s``."""

    def __init__(self, path: Path, retention_s: float = 7 * 86400,
                 now: Callable[[], float] = time.time) -> None:
        self._writer = BatchWriter(path, _SCHEMA, migrate=_migrate)
        self._read = self._writer.connect()
        self._read_lock = threading.Lock()
        self._retention_s = retention_s
        self._now = now
        self._flushes = 0
        # (when, the highest id then), oldest first, at most _MARKS of them over the
        # retention: every row up to that id was written by then, so once ``when`` is out
        # of the retention those rows are too, and go by their primary key. (A delete by
        # ``ts`` scans the whole table, which at thousands of invocations a second grows
        # by millions of rows an hour: the writer would slow down as the file grows.)
        self._marks: collections.deque[tuple[float, int]] = collections.deque()
        self._swept = False
        self._writer.add_maintenance(self._trim)

    def record(self, r: InvocationRecord) -> None:
        # The record is the row, its fields in the columns' order (cold, a bool, is stored
        # as 0 or 1).
        if r.error_message is not None and len(r.error_message) > MAX_ERROR_MESSAGE:
            r = r._replace(error_message=r.error_message[:MAX_ERROR_MESSAGE])
        self._writer.put(_INSERT, r)

    def flush(self) -> None:
        self._writer.flush()

    def samples(self, function: str | None, *, since: float) -> list[tuple[Any, ...]]:
        """The samples since ``since``, oldest first: of ``function``, or of every function
        (then each ends with its function's name)."""
        with self._read_lock:
            if function is None:
                return self._read.execute(
                    f"SELECT {_SAMPLE}, function FROM invocations WHERE ts >= ? ORDER BY ts",
                    (since,),
                ).fetchall()
            return self._read.execute(
                f"SELECT {_SAMPLE} FROM invocations WHERE function = ? AND ts >= ? "
                "ORDER BY ts", (function, since),
            ).fetchall()

    def stats(self, function: str, *, now: float, window_s: float = 900) -> dict[str, Any]:
        """Totals over the window and one point per minute, oldest first."""
        since = now - window_s
        return function_stats(function, self.samples(function, since=since), since, now,
                              window_s)

    def overview(self, *, now: float, window_s: float = 3600,
                 include: Callable[[str], bool] = lambda _: True) -> dict[str, Any]:
        """The figures of :meth:`stats` over every function ``include`` takes, and each
        function's own counts (``functions``: name → invocations, errors, cold starts)."""
        since = now - window_s
        return overview(self.samples(None, since=since), since, now, window_s, include)

    def invocations(
        self, function: str, *, outcome: str | None = None, limit: int = 100,
        cursor: str | None = None,
    ) -> InvocationPage:
        """The function's invocation records, newest first: at most ``limit``, only those
        that ended in ``outcome`` when given, older than ``cursor`` (a ``next_cursor``).

        Raises:
            ValueError: ``cursor`` is not one this store made.
        """
        where, args = ["function = ?"], [function]
        if outcome is not None:
            where.append("outcome = ?")
            args.append(outcome)
        if cursor is not None:
            if not cursor.isdigit():
                raise ValueError(f"invalid cursor {cursor!r}")
            where.append("id < ?")
            args.append(cursor)
        sql = (f"SELECT id, {_COLUMNS} FROM invocations WHERE {' AND '.join(where)} "
               "ORDER BY id DESC LIMIT ?")
        with self._read_lock:
            rows = self._read.execute(sql, [*args, limit + 1]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        cursors = [str(row[0]) for row in rows]
        items = [
            InvocationRecord(
                ts=row[1], function=row[2], version=row[3], request_id=row[4], mode=row[5],
                cold=bool(row[6]), init_ms=row[7], run_ms=row[8], total_ms=row[9],
                outcome=row[10], error_code=row[11], attempt=row[12], error_message=row[13],
            )
            for row in rows
        ]
        return InvocationPage(items, cursors[-1] if more else None, cursors)

    def delete_function(self, function: str) -> None:
        self._writer.put("DELETE FROM invocations WHERE function = ?", (function,))

    def _trim(self, conn: sqlite3.Connection) -> None:
        self._flushes += 1
        if self._flushes % _TRIM_EVERY:
            return
        now = self._now()
        cutoff = now - self._retention_s
        with conn:
            if not self._swept:
                # Rows of earlier runs of the server: by time, once per start.
                conn.execute("DELETE FROM invocations WHERE ts < ?", (cutoff,))
                self._swept = True
            upto = None
            while self._marks and self._marks[0][0] <= cutoff:
                upto = self._marks.popleft()[1]
            if upto is not None:
                conn.execute("DELETE FROM invocations WHERE id <= ?", (upto,))
        top = conn.execute("SELECT max(id) FROM invocations").fetchone()[0]
        if top is not None and (not self._marks
                                or now - self._marks[-1][0] >= self._retention_s / _MARKS):
            self._marks.append((now, int(top)))

    def close(self) -> None:
        self._writer.close()
        self._read.close()


def function_stats(function: str, samples: list[tuple[Any, ...]], since: float, now: float,
                   window_s: float) -> dict[str, Any]:
    """What ``GET /functions/{name}/stats`` shows, from the function's samples."""
    return {"function": function, **_figures(samples, since, now, window_s)}


def overview(samples: list[tuple[Any, ...]], since: float, now: float, window_s: float,
             include: Callable[[str], bool] = lambda _: True) -> dict[str, Any]:
    """What ``GET /stats`` shows, from samples of every function (each ending with its
    function's name) — those ``include`` takes."""
    rows = [row for row in samples if include(row[6])]
    per_function: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = per_function.setdefault(
            row[6], {"invocations": 0, "errors": 0, "throttles": 0, "cold_starts": 0})
        if row[3] == THROTTLED:
            counts["throttles"] += 1
            continue
        counts["invocations"] += 1
        counts["errors"] += row[3] != SUCCESS
        counts["cold_starts"] += bool(row[1])
    return {**_figures(rows, since, now, window_s), "functions": per_function}


def _figures(rows: list[tuple[Any, ...]], since: float, now: float,
             window_s: float) -> dict[str, Any]:
    """Totals of rows of (ts, cold, total_ms, outcome, init_ms, attempt, …) and one point
    per minute, oldest first."""
    minutes: dict[int, list[tuple[Any, ...]]] = {}
    for row in rows:
        minutes.setdefault(int(row[0] // 60) * 60, []).append(row)
    series = []
    for minute in sorted(minutes):
        point = summarize(minutes[minute])
        series.append({
            "minute": minute,
            "invocations": point["invocations"],
            "errors": point["errors"],
            "throttles": point["throttles"],
            "cold_starts": point["cold_starts"],
            "retries": point["retries"],
            "p50_ms": point["duration_ms"]["p50"],
            "p99_ms": point["duration_ms"]["p99"],
        })
    return {"window_s": window_s, "since": since, "until": now, **summarize(rows),
            "series": series}
