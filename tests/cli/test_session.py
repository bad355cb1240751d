"""The acceptance session: the ``ember`` CLI against a real ``ember server`` process."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli, project


def test_deploy_update_publish_split_and_clean_up(cli: Cli, tmp_path: Path) -> None:
    src = project(
        tmp_path / "shop", "shop", "  memory_mb: 512\n  environment: {GREETING: hi}\n",
        extra=['exclude: ["*.md"]'],
    )
    (src / "README.md").write_text("not code")

    created = cli.ok("deploy", src)
    assert "created function shop" in created.stdout
    shown = json.loads(cli.ok("fn", "get", "shop", "--json").stdout)
    assert shown["config"]["memory_mb"] == 512
    assert shown["config"]["environment"] == {"GREETING": "hi"}

    first = cli.ok("version", "publish", "shop", "-d", "first")
    assert "published shop version 1" in first.stdout

    (src / "main.py").write_text((src / "main.py").read_text() + "\nVERSION = 2\n")
    updated = cli.ok("fn", "update", "shop", "--code", src)
    assert "updated code of shop" in updated.stdout
    assert json.loads(cli.ok("fn", "get", "shop", "--json").stdout)["code"] != shown["code"]

    second = cli.ok("version", "publish", "shop", "-d", "second")
    assert "published shop version 2" in second.stdout
    again = cli.ok("version", "publish", "shop")
    assert "unchanged since version 2" in again.stdout
    again_json = json.loads(cli.ok("version", "publish", "shop", "--json").stdout)
    assert again_json["version"] == 2 and again_json["created"] is False

    split = cli.ok("alias", "set", "shop", "live", "1", "--additional-version", "2",
                   "--weight", "0.1", "-d", "canary")
    assert "1 (90%) + 2 (10%)" in split.stdout

    # tables for people
    listed = cli.ok("fn", "list").stdout
    assert "NAME" in listed and "shop" in listed and "512 MiB" in listed
    got = cli.ok("fn", "get", "shop").stdout
    assert "function shop" in got and "GREETING=hi" in got and "main.handler" in got
    versions = cli.ok("version", "list", "shop").stdout
    assert "first" in versions and "second" in versions
    assert "second" in cli.ok("version", "get", "shop", "2").stdout
    aliases = cli.ok("alias", "list", "shop").stdout
    assert "live" in aliases and "1 (90%) + 2 (10%)" in aliases
    assert "canary" in cli.ok("alias", "get", "shop", "live").stdout

    # JSON for machines: the answers as the API sent them, nothing else on stdout
    functions = json.loads(cli.ok("fn", "list", "--prefix", "shop", "--json").stdout)
    assert [f["name"] for f in functions["functions"]] == ["shop"]
    assert functions["next_cursor"] is None
    listed_versions = json.loads(cli.ok("version", "list", "shop", "--json").stdout)
    assert [v["version"] for v in listed_versions["versions"]] == [1, 2]
    assert json.loads(cli.ok("version", "get", "shop", "1", "--json").stdout)["description"] == (
        "first"
    )
    alias = json.loads(cli.ok("alias", "get", "shop", "live", "--json").stdout)
    assert (alias["version"], alias["additional_version"], alias["weight"]) == (1, 2, 0.1)
    assert len(json.loads(cli.ok("--json", "alias", "list", "shop").stdout)["aliases"]) == 1

    # the alias answers, from one of its two versions
    invoked = cli.ok("invoke", "shop", "-q", "live", "--data", '{"n": 1}')
    answer = json.loads(invoked.stdout)
    assert answer["echo"] == {"n": 1} and answer["version"] in ("1", "2")
    assert "request " in invoked.stderr and "version " in invoked.stderr

    refused = cli.fails("version", "delete", "shop", "2")
    assert refused.stdout == ""
    assert refused.stderr.startswith("Error [Conflict]: ")
    assert "live" in refused.stderr

    deleted = cli.ok("fn", "delete", "shop", "--yes")
    assert "deleted function shop" in deleted.stdout
    gone = cli.fails("fn", "get", "shop")
    assert gone.stderr.startswith("Error [FunctionNotFound]: ")
