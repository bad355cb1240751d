"""``ember fn instances``: a function's pools and instances, as tables or JSON."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli, project


def test_fn_instances_shows_pools_and_instances(cli: Cli, tmp_path: Path) -> None:
    cli.ok("deploy", project(tmp_path / "p", "inspected"))
    cli.ok("invoke", "inspected", "--data", '{"n": 1}')

    shown = cli.ok("fn", "instances", "inspected", "--json")
    now = json.loads(shown.stdout)
    assert now["function"] == "inspected"
    assert [(p["version"], p["qualifiers"], p["current"], p["desired"], p["reason"])
            for p in now["pools"]] == [("latest", ["latest"], 1, 1, "on demand")]
    [instance] = now["instances"]
    assert instance["state"] == "idle" and instance["memory_mb"] > 0

    table = cli.ok("fn", "instances", "inspected").stdout.splitlines()
    assert table[0].strip() == "pools"
    assert table[1].split() == ["VERSION", "QUALIFIERS", "CURRENT", "STARTING", "DESIRED",
                                "REASON", "KEEP-ALIVE"]
    assert table[2].split() == ["latest", "latest", "1", "0", "1", "on", "demand", "fixed",
                                "120", "s"]
    at = [line.strip() for line in table].index("instances")
    assert table[at + 1].split() == ["INSTANCE", "VERSION", "STATE", "IN", "FLIGHT",
                                     "STARTED", "LAST", "USED", "MEMORY"]
    row = table[at + 2].split()
    assert row[:4] == [instance["id"], "latest", "idle", "0"] and row[-1] == "MB"


def test_fn_instances_of_an_unknown_function_fails(cli: Cli) -> None:
    failed = cli.fails("fn", "instances", "no-such-function")
    assert "FunctionNotFound" in failed.stderr or "no-such-function" in failed.stderr


def test_fn_warm_starts_instances(cli: Cli, tmp_path: Path) -> None:
    cli.ok("deploy", project(tmp_path / "w", "warmed"))
    said = cli.ok("fn", "warm", "warmed", "-q", "latest", "--instances", "2")
    assert "started 2 of 2 instances of warmed (latest)" in said.stdout
    now = json.loads(cli.ok("fn", "instances", "warmed", "--json").stdout)
    assert [i["state"] for i in now["instances"]] == ["idle", "idle"]
    assert json.loads(cli.ok("fn", "warm", "warmed", "--json").stdout) == {"started": 1}
    cli.fails("fn", "warm", "warmed", "--instances", "0", code=2)
