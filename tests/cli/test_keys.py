"""``ember key create|list|revoke`` and ``ember audit`` against a real server; a key made
there used by the CLI through EMBER_API_KEY."""

from __future__ import annotations

import json
from pathlib import Path

from ember.cli.app import app
from tests.cli.conftest import Cli, project


def test_keys_from_the_cli(cli: Cli, tmp_path: Path) -> None:
    made = cli.ok("key", "create", "reader", "--role", "viewer", "--expires", "1d")
    token = next(line for line in made.stdout.splitlines() if line.startswith("ek_"))
    assert "only time" in made.stderr + made.stdout
    listed = cli.ok("key", "list").stdout
    assert "reader" in listed and "viewer" in listed and token not in listed
    as_json = json.loads(cli.ok("key", "list", "--json").stdout)
    assert {k["name"] for k in as_json["keys"]} >= {"reader"}

    def as_reader(*args: str | Path) -> tuple[int, str]:
        result = cli.runner.invoke(app, [str(a) for a in args],
                                   env={"EMBER_URL": cli.url, "EMBER_API_KEY": token})
        return result.exit_code, result.stdout + result.stderr

    code, out = as_reader("fn", "list")
    assert code == 0, out
    code, out = as_reader("deploy", project(tmp_path / "f", "by-reader"))
    assert code == 1 and "Forbidden" in out
    cli.ok("key", "revoke", "reader")
    code, out = as_reader("fn", "list")
    assert code == 1 and "Unauthorized" in out

    audit = cli.ok("audit", "--limit", "20").stdout
    assert "reader" in audit and "DELETE" in audit and "/keys/reader" in audit
    bad = cli.fails("key", "create", "x", "--role", "viewer", "--expires", "soon")
    assert "30d" in bad.stderr + bad.stdout
