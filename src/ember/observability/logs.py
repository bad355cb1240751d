"""Per-invocation logs: every line an instance writes, tagged and kept per function."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ember.errors import InvalidSpec
from ember.observability.db import BatchWriter

LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    function TEXT NOT NULL,
    version TEXT NOT NULL,
    instance TEXT NOT NULL,
    request_id TEXT,
    ts REAL NOT NULL,
    level TEXT NOT NULL,
    levelno INTEGER NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_logs_function ON logs (function, id);
CREATE INDEX IF NOT EXISTS ix_logs_request ON logs (request_id);
"""

_INSERT = (
    "INSERT INTO logs (function, version, instance, request_id, ts, level, levelno, line) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
MAX_LINE = 16 * 1024


@dataclass(frozen=True)
class LogRecord:
    id: int
    ts: float
    function: str
    version: str
    instance: str
    request_id: str | None
    level: str
    line: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def level_number(level: str) -> int:
    try:
        return LEVELS[level.upper()]
    except KeyError:
        raise InvalidSpec(
            f"level {level!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
            {"field": "level"},
        ) from None


class LogStore:
    """Log lines in ``logs.db``; at most ``retention`` lines kept per function."""

    def __init__(self, path: Path, retention: int = 10_000) -> None:
        self._writer = BatchWriter(path, _SCHEMA)
        self._read = self._writer.connect()
        self._read_lock = threading.Lock()
        self._retention = retention
        self._since_trim = 0
        self._writer.add_maintenance(self._trim)

    def append(
        self, function: str, version: str, instance: str, request_id: str | None, level: str,
        ts: float, line: str,
    ) -> None:
        level = level.upper()
        self._since_trim += 1
        self._writer.put(
            _INSERT,
            (function, version, instance, request_id, ts, level, LEVELS.get(level, 20),
             line[:MAX_LINE]),
        )

    def flush(self) -> None:
        self._writer.flush()

    def query(
        self, function: str, *, request_id: str | None = None, level: str | None = None,
        since: float | None = None, until: float | None = None, grep: str | None = None,
        limit: int = 100, cursor: int | None = None,
    ) -> list[LogRecord]:
        """Matching lines in time order: the newest ``limit`` of them, or with ``cursor``
        (the id of a line already seen) the first ``limit`` lines after it."""
        where = ["function = ?"]
        args: list[Any] = [function]
        if request_id:
            where.append("request_id = ?")
            args.append(request_id)
        if level:
            where.append("levelno >= ?")
            args.append(level_number(level))
        if since is not None:
            where.append("ts >= ?")
            args.append(since)
        if until is not None:
            where.append("ts <= ?")
            args.append(until)
        if grep:
            where.append("instr(lower(line), lower(?)) > 0")
            args.append(grep)
        if cursor is not None:
            where.append("id > ?")
            args.append(cursor)
        order = "ASC" if cursor is not None else "DESC"
        sql = (
            "SELECT id, ts, function, version, instance, request_id, level, line FROM logs "
            f"WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?"
        )
        with self._read_lock:
            rows = self._read.execute(sql, [*args, limit]).fetchall()
        records = [LogRecord(*row) for row in rows]
        return records if cursor is not None else records[::-1]

    def delete_function(self, function: str) -> None:
        self._writer.put("DELETE FROM logs WHERE function = ?", (function,))

    def _trim(self, conn: sqlite3.Connection) -> None:
        # Trimming scans every function: do it once a tenth of the retention has come in.
        if self._since_trim < max(1, self._retention // 10):
            return
        self._since_trim = 0
        functions = [r[0] for r in conn.execute("SELECT DISTINCT function FROM logs")]
        with conn:
            for function in functions:
                conn.execute(
                    "DELETE FROM logs WHERE function = ? AND id <= (SELECT id FROM logs "
                    "WHERE function = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                    (function, function, self._retention),
                )

    def close(self) -> None:
        self._writer.close()
        self._read.close()


