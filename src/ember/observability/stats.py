"""Invocation records and the statistics computed from them: counts, errors, cold starts,
duration percentiles, and per-minute time series."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    attempt INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS ix_invocations_function ON invocations (function, ts);
"""
_INSERT = (
    "INSERT INTO invocations (ts, function, version, request_id, mode, cold, init_ms, run_ms, "
    "total_ms, outcome, error_code, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

# Outcomes of an invocation; every error outcome but "throttled" ran (or tried to run) code.
SUCCESS = "success"
ERROR = "error"
TIMEOUT = "timeout"
THROTTLED = "throttled"


@dataclass(frozen=True)
class InvocationRecord:
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

    def __init__(self, path: Path, retention_s: float = 7 * 86400) -> None:
        self._writer = BatchWriter(path, _SCHEMA)
        self._read = self._writer.connect()
        self._read_lock = threading.Lock()
        self._retention_s = retention_s
        self._flushes = 0
        self._writer.add_maintenance(self._trim)

    def record(self, r: InvocationRecord) -> None:
        self._writer.put(
            _INSERT,
            (r.ts, r.function, r.version, r.request_id, r.mode, int(r.cold), r.init_ms,
             r.run_ms, r.total_ms, r.outcome, r.error_code, r.attempt),
        )

    def flush(self) -> None:
        self._writer.flush()

    def stats(self, function: str, *, now: float, window_s: float = 900) -> dict[str, Any]:
        """Totals over the window and one point per minute, oldest first."""
        since = now - window_s
        with self._read_lock:
            rows = self._read.execute(
                "SELECT ts, cold, total_ms, outcome, init_ms, attempt FROM invocations "
                "WHERE function = ? AND ts >= ? ORDER BY ts",
                (function, since),
            ).fetchall()
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
        return {
            "function": function,
            "window_s": window_s,
            "since": since,
            "until": now,
            **summarize(rows),
            "series": series,
        }

    def delete_function(self, function: str) -> None:
        self._writer.put("DELETE FROM invocations WHERE function = ?", (function,))

    def _trim(self, conn: sqlite3.Connection) -> None:
        self._flushes += 1
        if self._flushes % 50:
            return
        with conn:
            conn.execute(
                "DELETE FROM invocations WHERE ts < ?", (time.time() - self._retention_s,)
            )

    def close(self) -> None:
        self._writer.close()
        self._read.close()
