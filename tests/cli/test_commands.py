"""Each command's other paths against the real server: deploy's cases, updates with --set,
invoke and its failures, logs, stats, downloads, and errors without tracebacks."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from tests.cli.conftest import Cli, project
from tests.servers import free_port


def test_deploy_again_changes_only_what_changed(cli: Cli, tmp_path: Path) -> None:
    src = project(tmp_path / "d", "redeploy", "  memory_mb: 256\n")
    cli.ok("deploy", src)
    assert "function redeploy unchanged" in cli.ok("deploy", src).stdout

    (src / "ember.yaml").write_text("name: redeploy\nconfig:\n  memory_mb: 1024\n  timeout_s: 5\n")
    config_only = cli.ok("deploy", src).stdout
    assert "updated function redeploy" in config_only
    assert "code" in config_only and "unchanged" in config_only
    assert "config memory_mb, timeout_s" in config_only

    (src / "extra.py").write_text("X = 1\n")
    done = json.loads(cli.ok("deploy", src, "--alias", "prod", "-d", "via deploy", "--json").stdout)
    assert done["action"] == "updated" and done["code_changed"] is True
    assert done["config_changed"] == []
    assert done["version"]["version"] == 1 and done["version"]["created"] is True
    assert done["version"]["description"] == "via deploy"
    assert done["alias"]["name"] == "prod" and done["alias"]["version"] == 1
    assert done["function"]["config"]["memory_mb"] == 1024

    republished = cli.ok("fn", "deploy", src, "--publish").stdout
    assert "unchanged since version 1" in republished
    cli.ok("fn", "delete", "redeploy", "--yes")


def test_deploy_manifest_errors_name_the_file_and_field(cli: Cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = cli.fails("deploy", empty)
    assert f"{empty / 'ember.yaml'} not found" in missing.stderr

    (empty / "ember.yaml").write_text("nmae: x\n")
    assert "unknown field 'nmae'" in cli.fails("deploy", empty).stderr
    (empty / "ember.yaml").write_text("config: {}\n")
    assert "field `name` is required" in cli.fails("deploy", empty).stderr
    (empty / "ember.yaml").write_text("name: x\nconfig: [1]\n")
    assert "field `config` must be a mapping" in cli.fails("deploy", empty).stderr
    (empty / "ember.yaml").write_text("name: x\nexclude: {a: 1}\n")
    assert "field `exclude`" in cli.fails("deploy", empty).stderr
    (empty / "ember.yaml").write_text("name: [unclosed\n")
    assert "is not valid YAML" in cli.fails("deploy", empty).stderr

    (empty / "ember.yaml").write_text("name: badcfg\nconfig:\n  memory_mb: 1\n")
    (empty / "main.py").write_text("def handler(e, c):\n    return 1\n")
    invalid = cli.fails("deploy", empty)
    assert invalid.stderr.startswith("Error [InvalidSpec]")
    assert "  - config.memory_mb: " in invalid.stderr


def test_create_with_config_file_and_sets(cli: Cli, tmp_path: Path) -> None:
    src = project(tmp_path / "c", "unused")
    config = tmp_path / "config.yaml"
    config.write_text("memory_mb: 128\nenvironment: {A: a}\n")
    created = cli.ok(
        "fn", "create", "made", src, "--config", config,
        "--set", "timeout_s=7.5", "--set", "environment.B=b", "--json",
    )
    body = json.loads(created.stdout)
    assert body["config"]["memory_mb"] == 128 and body["config"]["timeout_s"] == 7.5
    assert body["config"]["environment"] == {"A": "a", "B": "b"}

    updated = json.loads(cli.ok(
        "fn", "update", "made", "--set", "memory_mb=512", "--set", "environment.C=c",
        "--set", "tags={team: web}", "--json",
    ).stdout)
    assert updated["config"]["memory_mb"] == 512
    assert updated["config"]["environment"] == {"A": "a", "B": "b", "C": "c"}
    assert updated["config"]["tags"] == {"team": "web"}
    replaced = json.loads(
        cli.ok("fn", "update", "made", "--set", "environment={Z: z}", "--json").stdout
    )
    assert replaced["config"]["environment"] == {"Z": "z"}

    bad = cli.fails("fn", "create", "other", src, "--set", "memory_mb=1", "--set", "memroy=2")
    assert "Error [InvalidSpec]" in bad.stderr
    assert "  - config.memory_mb: " in bad.stderr
    assert "  - config.memroy: unknown field" in bad.stderr
    assert cli.fails("fn", "create", "9bad", src).stderr.startswith("Error [InvalidSpec]")
    assert "Error [Conflict]" in cli.fails("fn", "create", "made", src).stderr
    assert "not key=value" in cli.fails("fn", "update", "made", "--set", "oops", code=2).stderr
    assert "nothing to update" in cli.fails("fn", "update", "made", code=2).stderr
    missing = cli.fails("fn", "create", "other", tmp_path / "nowhere")
    assert missing.stderr.startswith("Error [InvalidCode]") and "nowhere" in missing.stderr

    disabled = cli.ok("fn", "disable", "made")
    assert "disabled" in disabled.stdout
    assert json.loads(cli.ok("fn", "enable", "made", "--json").stdout)["state"] == "enabled"

    refused = cli.fails("fn", "delete", "made")
    assert "--yes" in refused.stderr
    cli.ok("fn", "delete", "made", "--yes")


def test_list_pages_and_prefix(cli: Cli, tmp_path: Path) -> None:
    src = project(tmp_path / "l", "unused")
    for name in ("pg-a", "pg-b", "pg-c"):
        cli.ok("fn", "create", name, src, "--set", f"tags={{group: {name[-1]}}}")
    one = cli.ok("fn", "list", "--prefix", "pg-", "--limit", "2", "--json")
    page = json.loads(one.stdout)
    assert [f["name"] for f in page["functions"]] == ["pg-a", "pg-b"]
    rest = json.loads(cli.ok(
        "fn", "list", "--prefix", "pg-", "--limit", "2", "--cursor", page["next_cursor"], "--json"
    ).stdout)
    assert [f["name"] for f in rest["functions"]] == ["pg-c"]
    human = cli.ok("fn", "list", "--prefix", "pg-", "--limit", "1")
    assert "pg-a" in human.stdout and "--cursor" in human.stderr
    tagged = json.loads(cli.ok("fn", "list", "--tag", "group=b", "--json").stdout)
    assert [f["name"] for f in tagged["functions"]] == ["pg-b"]
    for name in ("pg-a", "pg-b", "pg-c"):
        cli.ok("fn", "delete", name, "-y")


def test_download_code(cli: Cli, tmp_path: Path) -> None:
    src = project(tmp_path / "z", "zipped")
    cli.ok("deploy", src)
    target = tmp_path / "out.zip"
    wrote = cli.ok("fn", "code", "zipped", "-o", target)
    assert str(target) in wrote.stdout
    with zipfile.ZipFile(io.BytesIO(target.read_bytes())) as archive:
        assert sorted(archive.namelist()) == ["main.py"]  # ember.yaml is not code
    cli.ok("version", "publish", "zipped")
    info = json.loads(cli.ok("fn", "code", "zipped", "-q", "1", "-o", target, "--json").stdout)
    assert info["size"] == target.stat().st_size
    assert "Error [VersionNotFound]" in cli.fails("fn", "code", "zipped", "-q", "7").stderr
    cli.ok("fn", "delete", "zipped", "--yes")


def test_invoke_failures_logs_and_stats(cli: Cli, tmp_path: Path) -> None:
    src = project(tmp_path / "i", "inv")
    cli.ok("deploy", src)
    payload = tmp_path / "event.json"
    payload.write_text('{"from": "file"}')
    from_file = cli.ok("invoke", "inv", "--data", f"@{payload}", "--log-tail")
    assert json.loads(from_file.stdout)["echo"] == {"from": "file"}
    assert "cold start" in from_file.stderr and "log tail" in from_file.stderr
    assert "got {'from': 'file'}" in from_file.stderr

    from_stdin = cli.ok("invoke", "inv", "--data", "-", "--raw", input='"piped"')
    assert json.loads(from_stdin.stdout) == {"echo": "piped", "version": "latest"}
    assert "warm" in from_stdin.stderr
    request_id = from_stdin.stderr.split("request ", 1)[1].split(" ", 1)[0]

    failed = cli("invoke", "inv", "--data", '{"fail": true}', "--log-tail")
    assert failed.exit_code == 1 and failed.stdout == ""
    assert "src/ember" not in failed.stderr  # the function's traceback, not the CLI's
    assert "Error [FunctionError]: RuntimeError: asked to fail" in failed.stderr
    assert "got {'fail': True}" in failed.stderr  # the log tail of the failed run
    assert 'raise RuntimeError("asked to fail")' in failed.stderr  # its traceback
    assert "Error [InvalidRequest]" not in failed.stderr
    machine = cli("invoke", "inv", "--data", '{"fail": true}', "--json")
    assert machine.exit_code == 1
    assert json.loads(machine.stdout)["error"]["code"] == "FunctionError"
    assert json.loads(cli.ok("invoke", "inv", "--json").stdout)["echo"] is None
    assert "not JSON" in cli.fails("invoke", "inv", "--data", "{oops", code=2).stderr
    assert "Error [FunctionNotFound]" in cli.fails("invoke", "nobody").stderr

    lines = cli.ok("logs", "inv", "--request-id", request_id)
    assert "got piped" in lines.stdout
    page = json.loads(cli.ok("logs", "inv", "--since", "10m", "--grep", "got", "--json").stdout)
    assert [entry["line"] for entry in page["logs"]] == [
        "got {'from': 'file'}", "got piped", "got {'fail': True}", "got {'fail': True}",
        "got None",
    ]
    assert page["next_cursor"]
    old = cli.ok("logs", "inv", "--since", "2000-01-01T00:00", "--until", "2000-01-02")
    assert old.stdout == ""
    assert "not a duration" in cli.fails("stats", "inv", "--window", "soon", code=2).stderr

    table = cli.ok("stats", "inv", "--window", "15m").stdout
    assert "STATISTIC" in table
    stats = json.loads(cli.ok("stats", "inv", "--json").stdout)
    assert isinstance(stats, dict) and stats
    cli.ok("fn", "delete", "inv", "--yes")


def test_unreachable_server_says_how_to_start_one(cli: Cli) -> None:
    down = cli.fails("fn", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert down.stderr.startswith("Error [ServiceUnavailable]: cannot reach the Ember server")
    assert "ember server" in down.stderr and "EMBER_URL" in down.stderr
    before = cli.fails("--url", f"http://127.0.0.1:{free_port()}", "fn", "list")
    assert "cannot reach" in before.stderr


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("version", "get", "x", "zero").exit_code == 2
    assert cli("alias", "set", "f", "a", "1", "--weight", "0.5").exit_code == 2
    assert cli("fn", "nope").exit_code == 2
