"""Async invocation, tasks, dead letters and pause / resume through the ``ember`` CLI, against
the real server process (started with async retry delays of 0.05 s)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ember.cli.app import app
from tests.cli.conftest import HANDLER, Cli, project
from tests.waiting import wait_until

SLOW = """
import time

def handler(event, context):
    time.sleep(event)
    return event
"""


def deploy(cli: Cli, root: Path, name: str, config: str = "", source: str = HANDLER) -> None:
    cli.ok("deploy", project(root, name, config, source=source))


def task(cli: Cli, task_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(cli.ok("task", "get", task_id, "--json").stdout)
    return shown


def wait_for_status(cli: Cli, task_id: str, status: str) -> None:
    wait_until(lambda: task(cli, task_id)["status"] == status, interval=0.05,
               message=f"task {task_id} {status}")


def test_async_invoke_wait_and_idempotency(cli: Cli, tmp_path: Path) -> None:
    deploy(cli, tmp_path / "echo", "t-echo")
    queued = cli.ok("invoke", "t-echo", "--async", "-d", '{"a": 1}', "--idempotency-key", "k1")
    task_id = queued.stdout.strip()
    assert task_id and "queued" in queued.stderr
    again = cli.ok("invoke", "t-echo", "--async", "-d", '{"a": 2}', "--idempotency-key", "k1",
                   "--json")
    accepted = json.loads(again.stdout)
    assert accepted["request_id"] == task_id and accepted["deduplicated"] is True
    assert "deduplicated" in again.stderr

    waited = cli.ok("task", "wait", task_id)
    assert json.loads(waited.stdout)["echo"] == {"a": 1}
    assert f"task {task_id}" in waited.stderr and "succeeded" in waited.stderr
    done = json.loads(cli.ok("task", "wait", task_id, "--json").stdout)
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert done["result"]["value"]["echo"] == {"a": 1} and done["idempotency_key"] == "k1"
    shown = cli.ok("task", "get", task_id).stdout
    assert "succeeded" in shown and "attempt 1" in shown and "k1" in shown

    direct = cli.ok("invoke", "t-echo", "--async", "--wait", "-d", '"hi"')
    assert json.loads(direct.stdout)["echo"] == "hi"
    compact = cli.ok("invoke", "t-echo", "--async", "--wait", "--raw", "-d", "[1]").stdout
    assert compact.strip() == json.dumps(json.loads(compact))

    listed = cli.ok("task", "list", "t-echo", "--status", "succeeded").stdout
    assert task_id[:8] in listed and "STATUS" in listed
    page = json.loads(cli.ok("task", "list", "t-echo", "--limit", "1", "--json").stdout)
    assert len(page["tasks"]) == 1 and page["next_cursor"]
    assert "more tasks" in cli.ok("task", "list", "t-echo", "--limit", "1").stderr


def test_failures_dead_letters_and_redrive(cli: Cli, tmp_path: Path) -> None:
    deploy(cli, tmp_path / "fail", "t-fail", "  async: {max_retries: 1}\n")
    failed = cli("invoke", "t-fail", "--async", "--wait", "-d", '{"fail": true}')
    assert failed.exit_code == 1 and failed.stdout == ""
    assert "Error [FunctionError]" in failed.stderr and "asked to fail" in failed.stderr
    # The handler's traceback follows the error; the CLI's own never shows.
    assert 'raise RuntimeError("asked to fail")' in failed.stderr
    assert "Traceback" not in failed.stderr.split("Error [FunctionError]")[0]
    task_id = failed.stderr.split("request ", 1)[1].split()[0]

    shown = task(cli, task_id)
    assert shown["status"] == "failed" and shown["attempts"] == 2 and shown["dead_lettered"]
    rewaited = cli("task", "wait", task_id)
    assert rewaited.exit_code == 1 and "failed" in rewaited.stderr

    assert task_id[:8] in cli.ok("dlq", "list", "--function", "t-fail").stdout
    dead = json.loads(cli.ok("dlq", "list", "-f", "t-fail", "--json").stdout)["dead_letters"]
    assert [d["id"] for d in dead] == [task_id]
    human = cli.ok("dlq", "show", task_id).stdout
    assert "RetriesExhausted" in human and "asked to fail" in human and '"fail": true' in human
    detail = json.loads(cli.ok("dlq", "show", task_id, "--json").stdout)
    assert detail["reason"]["attempts"] == 2 and detail["payload"] == {"value": {"fail": True}}

    redriven = cli.ok("dlq", "redrive", task_id)
    assert f"task {task_id} is" in redriven.stdout
    again = cli("task", "wait", task_id, "--json")
    assert again.exit_code == 1 and json.loads(again.stdout)["status"] == "failed"
    dead = json.loads(cli.ok("dlq", "list", "-f", "t-fail", "--json").stdout)["dead_letters"]
    assert [d["id"] for d in dead] == [task_id]
    assert "Error [DeadLetterNotFound]" in cli.fails("dlq", "show", "no-such-task").stderr


def test_pause_keeps_events_queued_and_stop(cli: Cli, tmp_path: Path) -> None:
    deploy(cli, tmp_path / "paused", "t-paused")
    paused = cli.ok("fn", "pause", "t-paused")
    assert "async invocations of t-paused are paused" in paused.stdout
    assert "paused" in cli.ok("fn", "get", "t-paused").stdout
    kept = cli.ok("invoke", "t-paused", "--async", "-d", "1").stdout.strip()
    dropped = cli.ok("invoke", "t-paused", "--async", "-d", "2").stdout.strip()

    waited = cli.fails("task", "wait", kept, "--timeout", "0.3")
    assert "still queued after 0.3 s" in waited.stderr
    stopped = cli.ok("task", "stop", dropped)
    assert f"task {dropped} is stopped" in stopped.stdout
    assert task(cli, dropped)["status"] == "stopped"
    assert "stopped" in cli.fails("task", "wait", dropped).stderr

    resumed = json.loads(cli.ok("fn", "resume", "t-paused", "--json").stdout)
    assert resumed["async_state"] == "running"
    assert json.loads(cli.ok("task", "wait", kept).stdout)["echo"] == 1
    assert task(cli, dropped)["status"] == "stopped"
    assert "already ended: succeeded" in cli.ok("task", "stop", kept).stdout


def test_stop_a_running_task(cli: Cli, tmp_path: Path) -> None:
    # The handler would run for an hour (up to its 900 s timeout): a stop that waited for
    # it instead of ending it would outlast the test's own timeout.
    deploy(cli, tmp_path / "slow", "t-slow", "  timeout_s: 900\n", source=SLOW)
    task_id = cli.ok("invoke", "t-slow", "--async", "-d", "3600").stdout.strip()
    wait_for_status(cli, task_id, "running")
    stopped = json.loads(cli.ok("task", "stop", task_id, "--json").stdout)
    assert stopped["status"] == "stopped"
    assert stopped["history"][-1]["outcome"] == "stopped"


def test_task_errors(cli: Cli) -> None:
    assert "Error [TaskNotFound]" in cli.fails("task", "get", "no-such-task").stderr
    assert "Error [TaskNotFound]" in cli.fails("task", "stop", "no-such-task").stderr
    assert "Error [FunctionNotFound]" in cli.fails("task", "list", "missing").stderr
    assert "Error [FunctionNotFound]" in cli.fails("fn", "pause", "missing").stderr
    assert "Error [FunctionNotFound]" in cli.fails("invoke", "missing", "--async").stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--wait"], "--wait needs --async"),
        (["--idempotency-key", "k"], "--idempotency-key needs --async"),
        (["--async", "--log-tail"], "no log tail"),
    ],
)
def test_async_flags_are_checked_before_sending(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["invoke", "f", *args],
                                env={"EMBER_URL": "http://127.0.0.1:1"})
    assert result.exit_code == 2 and message in result.stderr
