"""CLI parts that need no server: parsing of flags and files, following logs against a tiny
fake app, confirmation, and the server command's flag checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ember.cli import common, functions
from ember.cli import logs as logs_command
from ember.cli.app import app
from ember.cli.common import (
    UsageError,
    apply_assignments,
    load_mapping,
    parse_assignment,
    parse_duration,
    parse_time,
)
from ember.cli.invoke import read_data
from ember.client import Client
from tests.conftest import AUTH


def test_assignments_are_yaml_scalars() -> None:
    assert parse_assignment("memory_mb=512") == (["memory_mb"], 512)
    assert parse_assignment("timeout_s=2.5") == (["timeout_s"], 2.5)
    assert parse_assignment("environment={A: b, C: '1'}") == (["environment"], {"A": "b", "C": "1"})
    assert parse_assignment("initializer=") == (["initializer"], None)
    assert parse_assignment("handler=app.main:run") == (["handler"], "app.main:run")
    assert parse_assignment("layers=[a, 'b:2']") == (["layers"], ["a", "b:2"])
    assert parse_assignment("async.max_retries=0") == (["async", "max_retries"], 0)
    assert parse_assignment("environment.PORT=8080") == (["environment", "PORT"], "8080")
    assert parse_assignment("tags.on=yes") == (["tags", "on"], "yes")
    for bad in ("novalue", "=1", "a..b=1", "x=[unclosed"):
        with pytest.raises(typer.BadParameter):
            parse_assignment(bad)


def test_dotted_assignments_start_from_the_current_value() -> None:
    current = {"environment": {"A": "1"}, "async": {"max_retries": 3, "max_event_age_s": 60}}
    patch = apply_assignments({}, ["environment.B=2", "async.max_retries=1"], current)
    assert patch == {
        "environment": {"A": "1", "B": "2"},
        "async": {"max_retries": 1, "max_event_age_s": 60},
    }
    assert current["environment"] == {"A": "1"}  # not changed in place
    assert apply_assignments({"memory_mb": 1}, ["a.b.c=1", "memory_mb=2"]) == {
        "memory_mb": 2, "a": {"b": {"c": 1}},
    }


def test_durations_and_times() -> None:
    assert parse_duration("90", "--x") == 90
    assert parse_duration("15m", "--x") == 900
    assert parse_duration("1.5h", "--x") == 5400
    assert parse_duration("2d", "--x") == 172800
    assert parse_duration("250ms", "--x") == 0.25
    with pytest.raises(typer.BadParameter):
        parse_duration("soon", "--x")
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_time("10m", "--since", now) == now - timedelta(minutes=10)
    assert parse_time("2024-05-01T10:00", "--since", now) == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_time("2024-05-01T10:00+02:00", "--since", now).hour == 10
    with pytest.raises(typer.BadParameter):
        parse_time("yesterday", "--since", now)


def test_mappings_from_files(tmp_path: Path) -> None:
    good = tmp_path / "c.json"
    good.write_text('{"memory_mb": 512}')
    assert load_mapping(good) == {"memory_mb": 512}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_mapping(empty) == {}
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n")
    with pytest.raises(UsageError, match="must hold a mapping"):
        load_mapping(listed)
    with pytest.raises(UsageError, match="No such file"):
        load_mapping(tmp_path / "missing.yaml")


def test_invoke_data(tmp_path: Path) -> None:
    assert read_data(None, None) is None
    assert read_data('{"a": 1}', None) == {"a": 1}
    assert read_data("3", None) == 3
    with pytest.raises(typer.BadParameter):
        read_data("not json", None)
    assert read_data("not json", "text/plain") == b"not json"
    json_file = tmp_path / "e.json"
    json_file.write_text('["x"]')
    assert read_data(f"@{json_file}", None) == ["x"]
    blob = tmp_path / "e.bin"
    blob.write_bytes(b"\xff\x00")
    assert read_data(f"@{blob}", None) == b"\xff\x00"
    with pytest.raises(UsageError):
        read_data(f"@{tmp_path / 'missing'}", None)


# a fake server -------------------------------------------------------------------------------


def _line(n: int) -> dict[str, Any]:
    return {"ts": 1714560000.0 + n, "request_id": f"req-{n}", "level": "info",
            "line": f"line {n}", "version": "latest", "instance": "i"}


def fake_app(pages: dict[str | None, dict[str, Any]]) -> FastAPI:
    fake = FastAPI()
    fake.state.requests = []

    @fake.get("/functions/{name}/logs")
    def logs(name: str, cursor: str | None = None, since: float | None = None) -> dict[str, Any]:
        fake.state.requests.append({"cursor": cursor, "since": since})
        return pages.get(cursor, {"logs": [], "next_cursor": cursor})

    @fake.get("/functions/{name}/stats")
    def stats(name: str, window_s: float = 900) -> dict[str, Any]:
        return {
            "function": name, "window_s": window_s, "invocations": 4,
            "duration_ms": {"p50": 1.5}, "queue": {"depth": 2, "leased": 1, "delayed": 0,
                                                  "oldest_age_s": 3.25, "dead_letters": 1},
            "series": [{"minute": 1_795_600_000, "invocations": 4, "errors": 0,
                        "throttles": 0, "cold_starts": 1, "p50_ms": 1.5, "p99_ms": 2.0}],
        }

    return fake


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Point the CLI at a fake app given by ``served["app"]``."""
    holder: dict[str, Any] = {}

    def connect(url: str | None) -> Client:
        http = TestClient(holder["app"], base_url="http://fake", headers=AUTH)
        holder.setdefault("http", []).append(http)
        return Client(http=http)

    monkeypatch.setattr(common, "connect", connect)
    yield holder
    for http in holder.get("http", []):
        http.close()


def _stop_after(monkeypatch: pytest.MonkeyPatch, polls: int) -> list[float]:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) >= polls:
            raise KeyboardInterrupt

    monkeypatch.setattr(logs_command.time, "sleep", sleep)
    return slept


def test_follow_polls_with_the_cursor(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    served["app"] = fake_app({
        None: {"logs": [_line(1), _line(2)], "next_cursor": "2"},
        "2": {"logs": [_line(3)], "next_cursor": "3"},
    })
    slept = _stop_after(monkeypatch, 2)
    result = CliRunner().invoke(app, ["logs", "fn", "-f"])
    assert result.exit_code == 0, result.output
    assert [line.split()[-1] for line in result.stdout.splitlines()] == ["1", "2", "3"]
    assert "req-1" in result.stdout
    cursors = [r["cursor"] for r in served["app"].state.requests]
    assert cursors[:3] == [None, "2", "3"]
    assert slept == [1.0, 1.0]


def test_follow_without_cursor_goes_on_from_the_newest_time(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    served["app"] = fake_app({None: {"logs": [_line(1), _line(2)], "next_cursor": None}})
    _stop_after(monkeypatch, 3)
    result = CliRunner().invoke(app, ["logs", "fn", "--follow", "--json"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2  # the repeats are dropped
    assert '"line": "line 2"' in lines[1]
    sinces = [r["since"] for r in served["app"].state.requests]
    assert sinces[1] == _line(2)["ts"]


def test_stats_shows_summary_queue_and_minutes(served: dict[str, Any]) -> None:
    served["app"] = fake_app({})
    result = CliRunner().invoke(app, ["stats", "fn", "--window", "1h"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "last 3600 s" in result.stdout
    assert "duration p50 / p90 / p99" in result.stdout and "1.50 ms" in result.stdout
    assert "queue depth (running, delayed)" in result.stdout and "2 (1, 0)" in result.stdout
    assert "oldest queued event" in result.stdout and "3.2 s" in result.stdout
    assert "MINUTE" in result.stdout and "2026-11-25T09:46:40Z" in result.stdout


def test_delete_asks_on_a_terminal(served: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    deleted: list[str] = []
    fake = FastAPI()

    @fake.delete("/functions/{name}")
    def delete(name: str) -> dict[str, Any]:  # must not be reached: the answer is no
        deleted.append(name)
        return {}

    served["app"] = fake
    monkeypatch.setattr(functions, "can_ask", lambda: True)
    refused = CliRunner().invoke(app, ["fn", "delete", "f"], input="n\n")
    assert refused.exit_code == 1 and deleted == []
    assert "Delete function 'f'" in refused.stderr


def test_server_flags_are_validated(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["server", "--port", "70000", "--home", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error [InvalidSpec]")
    assert "  - port: " in result.stderr
