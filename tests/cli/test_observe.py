"""What the CLI shows of a function's runs: its invocations, its logs' paging, and tables
and times readable when the output is not a terminal."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.conftest import Cli, project


def test_fn_invocations_lists_each_run(cli: Cli, tmp_path: Path) -> None:
    cli.ok("deploy", project(tmp_path / "r", "runs"))
    cli.ok("invoke", "runs", "--data", '{"n": 1}')
    failed = cli("invoke", "runs", "--data", '{"fail": true}')
    assert failed.exit_code == 1
    failed_id = failed.stderr.split("request ", 1)[1].split(" ", 1)[0]

    table = cli.ok("fn", "invocations", "runs")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["STARTED", "REQUEST", "ID", "VERSION", "MODE", "STATUS",
                                "COLD", "INIT", "DURATION", "ERROR"]
    newest, oldest = lines[1], lines[2]
    assert failed_id in newest and " error " in newest
    assert "FunctionError: RuntimeError: asked to fail" in newest
    assert " success " in oldest and " yes " in oldest  # the cold start
    assert len(lines) == 3

    errors = cli.ok("fn", "invocations", "runs", "--status", "error", "--json")
    page = json.loads(errors.stdout)
    assert [i["request_id"] for i in page["invocations"]] == [failed_id]
    assert page["invocations"][0]["error_code"] == "FunctionError"

    first = cli.ok("fn", "invocations", "runs", "--limit", "1")
    assert failed_id in first.stdout
    hint = first.stderr.strip()
    assert hint.startswith("older invocations: add --cursor ")
    older = cli.ok("fn", "invocations", "runs", "--limit", "1", "--cursor", hint.split()[-1])
    assert " success " in older.stdout and older.stderr == ""

    bad = cli.fails("fn", "invocations", "runs", "--status", "fine")
    assert "Error [InvalidSpec]" in bad.stderr
    assert "Error [FunctionNotFound]" in cli.fails("fn", "invocations", "nobody").stderr


def test_logs_hint_at_more_lines_only_when_there_are_more(cli: Cli, tmp_path: Path) -> None:
    cli.ok("deploy", project(tmp_path / "l", "paged"))
    for n in range(3):
        cli.ok("invoke", "paged", "--data", str(n))
    everything = cli.ok("logs", "paged")
    assert [line.split()[-1] for line in everything.stdout.splitlines()] == ["0", "1", "2"]
    assert everything.stderr == ""  # nothing more to see: no hint

    newest = cli.ok("logs", "paged", "--limit", "2")
    assert [line.split()[-1] for line in newest.stdout.splitlines()] == ["1", "2"]
    assert "older lines not shown: raise --limit (now 2)" in newest.stderr
    assert "--cursor" not in newest.stderr

    ids = [entry["id"] for entry in json.loads(cli.ok("logs", "paged", "--json").stdout)["logs"]]
    after_first = cli.ok("logs", "paged", "--cursor", str(ids[0]), "--limit", "1")
    assert after_first.stdout.split()[-1] == "1"
    assert after_first.stderr.strip() == f"more lines: add --cursor {ids[1]}"
    last = cli.ok("logs", "paged", "--cursor", str(ids[1]), "--limit", "1")
    assert last.stdout.split()[-1] == "2" and last.stderr == ""
    exact = cli.ok("logs", "paged", "--limit", "3")
    assert len(exact.stdout.splitlines()) == 3 and exact.stderr == ""


def test_tables_keep_words_whole_and_show_iso_times_when_not_a_terminal(
    cli: Cli, tmp_path: Path
) -> None:
    name = "a-function-with-a-name-long-enough-to-fold-a-table"
    cli.ok("deploy", project(tmp_path / "w", name))
    cli.ok("invoke", name)
    # The CLI's output is not a terminal here (as in a pipe): no 80-column folding.
    listed = cli.ok("fn", "list", "--prefix", "a-function-with").stdout.splitlines()
    assert len(listed) == 2, listed
    row = listed[1].split()
    assert row[0] == name and row[2] == "main.handler"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[-1]), row
    runs = cli.ok("fn", "invocations", name).stdout.splitlines()[1].split()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", runs[0]), runs
    assert len(runs[1]) == 36  # the whole request id
    log = cli.ok("logs", name).stdout.split()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", log[0]), log

    cli.ok("trigger", "create", "wide-tick", "-f", name, "--timer", "cron(0 3 * * *)")
    shown = cli.ok("trigger", "get", "wide-tick").stdout
    fire = re.search(r"next_fire=(\S+)", shown)
    assert fire and re.fullmatch(r"\d{4}-\d\d-\d\dT03:00:00Z", fire.group(1)), shown
    listed_triggers = cli.ok("trigger", "list").stdout
    assert f"{name}:latest" in listed_triggers
    cli.ok("trigger", "delete", "wide-tick", "--yes")
