"""``ember build`` and ``ember deploy`` of a directory with a requirements.txt, against the
real server: pip's output shown as it comes, build logs and lists, and a broken requirements
file stopping the deploy before the function changes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli, project

CAMEL = """
import inflection

def handler(event, context):
    return inflection.camelize(event["name"])
"""

PLAIN = "def handler(event, context):\n    return 'plain'\n"


def requirements(tag: str) -> str:
    # The server outlives each test: a comment of each test's own makes a key nobody built.
    return f"inflection==0.5.1  # {tag}\n"


def test_deploy_builds_the_requirements_first(cli: Cli, tmp_path: Path) -> None:
    src = project(tmp_path / "d", "camel", source=CAMEL)
    (src / "requirements.txt").write_text(requirements("deploy"))
    deployed = cli.ok("deploy", src)
    assert "building the dependencies of" in deployed.stderr
    assert "Successfully installed inflection-0.5.1" in deployed.stderr
    assert "created function camel" in deployed.stdout
    invoked = cli.ok("invoke", "camel", "--data", '{"name": "cli_build"}', "--json")
    assert "CliBuild" in invoked.stdout

    listed = json.loads(cli.ok("build", "list", "camel", "--json").stdout)["builds"]
    [build] = listed
    assert (build["status"], build["cached"]) == ("succeeded", False)
    table = cli.ok("build", "list", "camel").stdout
    assert build["id"] in table and "succeeded" in table

    logs = cli.ok("build", "logs", build["id"])
    assert "Successfully installed inflection-0.5.1" in logs.stdout
    assert f"build {build['id']} succeeded" in logs.stderr
    followed = cli.ok("build", "logs", build["id"], "--follow")
    assert followed.stdout == logs.stdout

    # New code, the same requirements: the dependencies are found built.
    (src / "main.py").write_text(CAMEL.replace("camelize", "underscore"))
    again = cli.ok("deploy", src)
    assert "already built" in again.stdout and "Successfully installed" not in again.stderr
    assert [b["id"] for b in json.loads(cli.ok("build", "list", "camel", "--json").stdout)[
        "builds"]][1:] == [build["id"]]
    cli.ok("fn", "delete", "camel", "--yes")


def test_a_broken_requirements_file_stops_the_deploy(cli: Cli, tmp_path: Path) -> None:
    src = project(tmp_path / "d", "broken", source=PLAIN)
    (src / "requirements.txt").write_text("this is not a requirement !!\n")
    failed = cli.fails("deploy", src)
    assert "Error [BuildFailed]" in failed.stderr
    assert "Invalid requirement" in failed.stderr and "ember build logs" in failed.stderr
    assert "FunctionNotFound" in cli.fails("fn", "get", "broken").stderr
    as_json = cli.fails("deploy", src, "--json")
    assert "the end of build" in as_json.stderr and as_json.stdout == ""

    (src / "requirements.txt").unlink()
    cli.ok("deploy", src)
    (src / "requirements.txt").write_text("this is not a requirement !!\n")
    (src / "main.py").write_text(PLAIN.replace("plain", "changed"))
    cli.fails("deploy", src)
    assert cli.ok("invoke", "broken", "--json").stdout.strip() == "plain"
    cli.ok("fn", "delete", "broken", "--yes")


def test_build_start_and_logs(cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "deps"
    src.mkdir()
    (src / "requirements.txt").write_text(requirements("start"))
    started = cli.ok("build", "start", src, "--function", "later", "--json")
    build = json.loads(started.stdout)
    assert (build["status"], build["function"]) == ("succeeded", "later")
    assert "Successfully installed inflection-0.5.1" in build["log"]
    cached = cli.ok("build", "start", src)
    assert "already built" in cached.stdout
    missing = cli.fails("build", "logs", "ghost")
    assert "BuildNotFound" in missing.stderr
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    assert "holds no requirements.txt" in cli.fails("build", "start", nothing).stderr

    (src / "requirements.txt").write_text("this is not a requirement !!\n")
    failed = cli.fails("build", "start", src)
    assert "Invalid requirement" in failed.stderr and "Error [BuildFailed]" in failed.stderr
