from __future__ import annotations

import sqlite3
from pathlib import Path

from ember.observability.logs import LogStore
from ember.observability.stats import InvocationRecord, StatsStore, percentile


def test_logs_keep_the_newest_lines_per_function(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db", retention=100)
    try:
        for i in range(450):
            store.append("a", "latest", "i1", f"r{i}", "INFO", 1000.0 + i, f"line {i}")
        for i in range(20):
            store.append("b", "latest", "i2", None, "WARNING", 1000.0 + i, f"other {i}")
        store.flush()
        store.append("a", "latest", "i1", "last", "INFO", 2000.0, "last line")
        store.flush()
        lines = store.query("a", limit=1000)
        assert 100 <= len(lines) <= 111
        assert lines[-1].line == "last line"
        assert lines[0].line != "line 0"
        assert len(store.query("b", limit=1000)) == 20
    finally:
        store.close()


def test_log_query_filters(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db")
    try:
        store.append("f", "1", "i", "r1", "DEBUG", 10.0, "debug detail")
        store.append("f", "1", "i", "r1", "ERROR", 11.0, "Boom happened")
        store.append("f", "2", "i", "r2", "INFO", 12.0, "all good")
        store.flush()
        assert [r.line for r in store.query("f", level="ERROR")] == ["Boom happened"]
        assert [r.line for r in store.query("f", grep="boom")] == ["Boom happened"]
        assert [r.line for r in store.query("f", request_id="r2")] == ["all good"]
        assert [r.line for r in store.query("f", since=11.0, until=11.5)] == ["Boom happened"]
        newest_two = store.query("f", limit=2)
        assert [r.line for r in newest_two] == ["Boom happened", "all good"]
        after = store.query("f", cursor=newest_two[0].id)
        assert [r.line for r in after] == ["all good"]
        store.delete_function("f")
        store.flush()
        assert store.query("f") == []
    finally:
        store.close()


def test_stats_summary_and_series(tmp_path: Path) -> None:
    store = StatsStore(tmp_path / "stats.db")
    try:
        now = 6000.0
        for i in range(10):
            outcome = "error" if i == 9 else "success"
            store.record(InvocationRecord(now - 120 + i, "f", "1", f"r{i}", "sync", i == 0,
                                          5.0 if i == 0 else 0.0, float(i), float(i + 1),
                                          outcome, "FunctionError" if i == 9 else None))
        store.record(InvocationRecord(now - 10, "f", "1", "t", "sync", False, 0, 0, 0.1,
                                      "throttled", "TooManyRequests"))
        store.record(InvocationRecord(now - 5000, "f", "1", "old", "sync", False, 0, 0, 1,
                                      "success"))
        store.flush()
        stats = store.stats("f", now=now, window_s=600)
        assert stats["invocations"] == 10
        assert stats["errors"] == 1 and stats["throttles"] == 1 and stats["cold_starts"] == 1
        assert stats["retries"] == 0
        assert stats["duration_ms"]["p50"] == 5.0
        assert stats["duration_ms"]["max"] == 10.0
        assert [p["invocations"] for p in stats["series"]] == [10, 0]
        assert stats["series"][1]["throttles"] == 1
    finally:
        store.close()


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([1.0], 99) == 1.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0


def _record(
    i: int, outcome: str = "success", *, function: str = "f", error_code: str | None = None,
    error_message: str | None = None,
) -> InvocationRecord:
    return InvocationRecord(1000.0 + i, function, "1", f"r{i}", "sync", i == 0,
                            5.0 if i == 0 else 0.0, 1.0, 2.0, outcome, error_code,
                            error_message=error_message)


def test_invocations_newest_first_with_filter_and_cursor(tmp_path: Path) -> None:
    store = StatsStore(tmp_path / "stats.db")
    try:
        for i in range(5):
            store.record(_record(i))
        store.record(_record(5, "error", error_code="FunctionError",
                             error_message="ValueError: " + "x" * 5000))
        store.record(_record(6, function="other"))
        store.flush()
        first = store.invocations("f", limit=4)
        assert [r.request_id for r in first.items] == ["r5", "r4", "r3", "r2"]
        assert first.next_cursor is not None
        rest = store.invocations("f", limit=4, cursor=first.next_cursor)
        assert [r.request_id for r in rest.items] == ["r1", "r0"]
        assert rest.next_cursor is None
        assert rest.items[-1].cold and rest.items[-1].init_ms == 5.0
        errors = store.invocations("f", outcome="error").items
        assert [r.request_id for r in errors] == ["r5"]
        assert errors[0].error_code == "FunctionError"
        message = errors[0].error_message or ""
        assert message.startswith("ValueError: xxx") and len(message) == 1000
        assert store.invocations("f", outcome="timeout").items == []
    finally:
        store.close()


def test_stats_files_of_an_older_ember_gain_the_error_message(tmp_path: Path) -> None:
    path = tmp_path / "stats.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE invocations (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, "
        "function TEXT NOT NULL, version TEXT NOT NULL, request_id TEXT NOT NULL, "
        "mode TEXT NOT NULL, cold INTEGER NOT NULL, init_ms REAL NOT NULL, "
        "run_ms REAL NOT NULL, total_ms REAL NOT NULL, outcome TEXT NOT NULL, "
        "error_code TEXT, attempt INTEGER NOT NULL DEFAULT 1);"
        "INSERT INTO invocations (ts, function, version, request_id, mode, cold, init_ms, "
        "run_ms, total_ms, outcome, error_code) "
        "VALUES (1.0, 'f', '1', 'before', 'sync', 0, 0, 1, 1, 'error', 'FunctionError');"
    )
    old.close()
    store = StatsStore(path)
    try:
        store.record(_record(9, "error", error_code="FunctionTimeout", error_message="late"))
        store.flush()
        items = store.invocations("f").items
        assert [(r.request_id, r.error_message) for r in items] == [
            ("r9", "late"), ("before", None)
        ]
    finally:
        store.close()
    StatsStore(path).close()  # a second start finds the column there


def test_invocation_records_past_the_retention_are_deleted(tmp_path: Path) -> None:
    now = [1000.0]
    store = StatsStore(tmp_path / "stats.db", retention_s=100, now=lambda: now[0])

    def record(ts: float, count: int = 50) -> None:
        # One flush per row: the store trims once every 50 writes.
        for i in range(count):
            store.record(InvocationRecord(ts, "f", "1", f"r{ts}-{i}", "sync", False, 0.0,
                                          1.0, 1.0, "success"))
            store.flush()

    try:
        record(500.0, 1)  # left by an earlier run, past the retention already
        record(1000.0, 49)  # the first trim: the old row goes by its time
        assert {row[0] for row in store.samples(None, since=0)} == {1000.0}
        now[0] = 1050.0
        record(1050.0)  # nothing is due yet
        assert {row[0] for row in store.samples(None, since=0)} == {1000.0, 1050.0}
        now[0] = 1120.0
        record(1120.0)  # what was written by 1000 is due: it goes
        assert {row[0] for row in store.samples(None, since=0)} == {1050.0, 1120.0}
        assert len(store.samples("f", since=0)) == 100
    finally:
        store.close()
