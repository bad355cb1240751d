"""``ember scale`` and ember.yaml's ``provisioned:`` against a real server: set a target,
add and remove scheduled actions and target tracking, show, list, remove; errors that name
the field; a deploy that applies the declared policies and prunes the others."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.cli.conftest import Cli, project


def held(cli: Cli, name: str, qualifier: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(
        cli.ok("scale", "get", name, "-q", qualifier, "--json").stdout)
    return answer


def test_scale_set_policies_get_list_and_remove(cli: Cli, tmp_path: Path) -> None:
    cli.ok("deploy", project(tmp_path / "s", "scaled"), "--alias", "live")
    said = cli.ok("scale", "set", "scaled", "-q", "live", "--target", "1",
                  "--idle-freeze", "5m").stdout
    assert "provisioned capacity of scaled:live: target 1, idle freeze after 300 s idle" in said
    added = cli.ok("scale", "policy", "add", "scaled", "-q", "live", "--cron", "0 8 * * 1-5",
                   "--timezone", "Europe/Paris", "--target", "2",
                   "--start", "2030-01-01T00:00").stdout  # in the schedule's zone
    assert ("added schedules[0] to scaled:live: 0 8 * * 1-5 Europe/Paris → 2 from "
            "2029-12-31T23:00:00Z") in added
    tracked = cli.ok("scale", "policy", "add", "scaled", "-q", "live",
                     "--track", "concurrency_utilization", "--target-value", "0.7",
                     "--min", "0", "--max", "3", "--scale-in-window", "10m").stdout
    assert ("set the target tracking of scaled:live: concurrency_utilization 0.7, 0-3 "
            "instances (out over 10 s, in after 600 s)") in tracked

    # Setting the target keeps the scheduled actions and target tracking.
    cli.ok("scale", "set", "scaled", "-q", "live", "--target", "0")
    config = held(cli, "scaled", "live")["config"]
    [schedule] = config.pop("schedules")
    assert datetime.fromisoformat(schedule.pop("start")) == datetime(2029, 12, 31, 23,
                                                                     tzinfo=UTC)
    assert schedule == {"cron": "0 8 * * 1-5", "timezone": "Europe/Paris", "target": 2,
                        "end": None}
    assert config == {
        "target": 0, "idle_freeze_s": 300,
        "target_tracking": {"metric": "concurrency_utilization", "target": 0.7, "min": 0,
                            "max": 3, "scale_out_window_s": 10, "scale_in_window_s": 600},
    }
    shown = held(cli, "scaled", "live")["state"]
    # From 2030 on (a Tuesday), at 08:00 in Paris.
    assert shown["target"] == 0 and shown["next_action_at"] == "2030-01-01T07:00:00Z"

    panel = cli.ok("scale", "get", "scaled", "-q", "live").stdout
    for row in ("provisioned scaled:live", "idle freeze", "after 300 s idle",
                "schedules[0]", "0 8 * * 1-5 Europe/Paris → 2 from 2029-12-31T23:00:00Z",
                "target tracking", "concurrency_utilization 0.7, 0-3 instances", "desired",
                "instances"):
        assert row in panel, (row, panel)
    table = cli.ok("scale", "list", "scaled").stdout.splitlines()
    assert table[0].split() == ["QUALIFIER", "TARGET", "DESIRED", "UP", "FROZEN", "SCHEDULES",
                                "TRACKING", "REASON"]
    assert table[1].split()[:2] == ["live", "0"] and "0.7 (0-3)" in table[1]
    listed = json.loads(cli.ok("scale", "list", "scaled", "--json").stdout)
    assert [p["qualifier"] for p in listed["provisioned"]] == ["live"]

    removed = cli.ok("scale", "policy", "remove", "scaled", "-q", "live", "--schedule", "0")
    assert "removed schedules[0] (0 8 * * 1-5 Europe/Paris → 2" in removed.stdout
    assert held(cli, "scaled", "live")["config"]["schedules"] == []
    again = cli.fails("scale", "policy", "remove", "scaled", "-q", "live", "--schedule", "0")
    assert again.stderr.startswith("Error [Usage]: scaled:live has no schedules[0] (it has "
                                   "none;")
    cli.ok("scale", "policy", "remove", "scaled", "-q", "live", "--tracking")
    after = held(cli, "scaled", "live")["config"]
    assert after["target_tracking"] is None and after["idle_freeze_s"] == 300
    assert "has no target tracking" in cli.fails(
        "scale", "policy", "remove", "scaled", "-q", "live", "--tracking").stderr
    cli.ok("scale", "set", "scaled", "-q", "live", "--idle-freeze", "never")
    assert held(cli, "scaled", "live")["config"]["idle_freeze_s"] is None

    gone = cli.ok("scale", "remove", "scaled", "-q", "live").stdout
    assert "removed the provisioned capacity of scaled:live" in gone
    assert cli.fails("scale", "get", "scaled", "-q", "live").stderr.startswith(
        "Error [ProvisionedNotFound]")
    assert json.loads(cli.ok("scale", "list", "scaled", "--json").stdout) == {"provisioned": []}
    cli.ok("fn", "delete", "scaled", "--yes")


def test_scale_errors_name_the_field(cli: Cli, tmp_path: Path) -> None:
    cli.ok("deploy", project(tmp_path / "b", "scalebad"))

    def refused(*args: str) -> str:
        stderr = str(cli.fails("scale", "policy", "add", "scalebad", *args).stderr)
        assert stderr.startswith("Error [InvalidPolicy]: "), stderr
        return stderr

    assert "  - schedules[0].cron: '61 * * * *' is not a cron expression" in refused(
        "--cron", "61 * * * *", "--target", "1")
    assert "  - schedules[0].timezone: unknown time zone 'Mars/Base'" in refused(
        "--cron", "0 8 * * *", "--timezone", "Mars/Base", "--target", "1")
    assert "  - target_tracking.max: max (2) is below min (4)" in refused(
        "--track", "concurrency_utilization", "--min", "4", "--max", "2")
    assert "  - target_tracking.metric: " in refused("--track", "cpu", "--max", "2")
    assert "  - qualifier: " in refused("-q", "nope", "--cron", "0 8 * * *", "--target", "1")
    # Nothing was stored by the refused ones.
    assert json.loads(cli.ok("scale", "list", "scalebad", "--json").stdout) == {
        "provisioned": []}
    assert "Error [FunctionNotFound]" in cli.fails("scale", "set", "ghost", "--target",
                                                   "1").stderr

    def usage(*args: str) -> str:
        return str(cli.fails("scale", *args, code=2).stderr)

    assert "give --cron" in usage("policy", "add", "scalebad", "--cron", "0 8 * * *",
                                  "--track", "concurrency_utilization")
    assert "needs --target" in usage("policy", "add", "scalebad", "--cron", "0 8 * * *")
    assert "needs --max" in usage("policy", "add", "scalebad", "--track",
                                  "concurrency_utilization")
    assert "--target-value" in usage("policy", "add", "scalebad", "--track",
                                     "concurrency_utilization", "--max", "2", "--target", "1")
    assert "cannot go with --cron" in usage("policy", "add", "scalebad", "--cron",
                                            "0 8 * * *", "--target", "1", "--max", "2")
    assert "not an ISO time" in usage("policy", "add", "scalebad", "--cron", "0 8 * * *",
                                      "--target", "1", "--start", "tomorrow")
    assert "nothing to set" in usage("set", "scalebad")
    assert "give --schedule INDEX or --tracking" in usage("policy", "remove", "scalebad")
    cli.ok("fn", "delete", "scalebad", "--yes")


MANIFEST = """\
name: {name}
provisioned:
  live:
    target: 0
    idle_freeze_s: 300
    schedules:
      - {{cron: "0 8 * * 1-5", timezone: Europe/Paris, target: 1, start: 2030-01-01T00:00:00Z}}
    target_tracking: {{target: 0.7, min: 0, max: 2}}
  latest: {{target: 0}}
"""


def test_deploy_applies_declared_provisioned_capacity_and_prunes(cli: Cli,
                                                                 tmp_path: Path) -> None:
    src = project(tmp_path / "dep", "depscale")
    manifest = src / "ember.yaml"
    manifest.write_text(MANIFEST.format(name="depscale"))
    first = cli.ok("deploy", src, "--alias", "live").stdout  # the alias exists by then
    assert ("provisioned capacity of depscale:live: target 0, idle freeze after 300 s idle, "
            "1 schedule, target tracking concurrency_utilization 0.7 (0-2)") in first
    assert "provisioned capacity of depscale:latest: target 0, idle freeze never" in first
    live = held(cli, "depscale", "live")["config"]
    assert live["schedules"][0]["cron"] == "0 8 * * 1-5"
    assert live["target_tracking"]["max"] == 2

    again = cli.ok("deploy", src).stdout
    assert "provisioned capacity of depscale:live unchanged" in again
    assert "provisioned capacity of depscale:latest unchanged" in again

    changed = MANIFEST.format(name="depscale").replace("max: 2}", "max: 3}")
    manifest.write_text(changed.replace("  latest: {target: 0}\n", ""))
    second = cli.ok("deploy", src, "--json")
    done = json.loads(second.stdout)
    assert {p["qualifier"]: (p["action"], p["changed"]) for p in done["provisioned"]} == {
        "live": ("set", ["target_tracking"]), "latest": ("kept", []),
    }
    assert done["provisioned"][0]["provisioned"]["config"]["target_tracking"]["max"] == 3
    assert "provisioned capacity of depscale:latest is not in" in second.stderr
    assert "kept (--prune removes it)" in second.stderr

    pruned = cli.ok("deploy", src, "--prune").stdout
    assert "provisioned capacity of depscale:live unchanged" in pruned
    assert "removed the provisioned capacity of depscale:latest (not in" in pruned
    listed = json.loads(cli.ok("scale", "list", "depscale", "--json").stdout)
    assert [p["qualifier"] for p in listed["provisioned"]] == ["live"]

    manifest.write_text("name: depscale\n")  # no `provisioned:`: left alone
    assert "provisioned" not in cli.ok("deploy", src).stdout
    assert held(cli, "depscale", "live")["config"]["target_tracking"]["max"] == 3
    done = json.loads(cli.ok("deploy", src, "--prune-triggers", "--json").stdout)
    assert [(p["qualifier"], p["action"]) for p in done["provisioned"]] == [("live", "deleted")]
    assert json.loads(cli.ok("scale", "list", "depscale", "--json").stdout) == {
        "provisioned": []}
    cli.ok("fn", "delete", "depscale", "--yes")


def test_deploy_provisioned_errors_name_the_file_and_field(cli: Cli, tmp_path: Path) -> None:
    src = project(tmp_path / "bad", "depscalebad")
    manifest = src / "ember.yaml"

    def fails(provisioned: str) -> str:
        manifest.write_text(f"name: depscalebad\nprovisioned:\n{provisioned}")
        return str(cli.fails("deploy", src).stderr)

    assert f"{manifest}: field `provisioned` must map qualifiers" in fails("  - 1\n")
    assert f"{manifest}: provisioned.live must be a mapping" in fails("  live: 3\n")
    assert f"{manifest}: provisioned.a b: 'a b' is not latest" in fails("  a b: {}\n")
    bad_cron = fails("  live: {schedules: [{cron: '0 8 * * * *', target: 1}]}\n")
    assert (f"{manifest}: invalid spec: provisioned.live.schedules[0].cron: '0 8 * * * *' "
            "is not a cron expression") in bad_cron
    assert f"{manifest}: invalid spec: provisioned.live.targte: unknown field" in fails(
        "  live: {targte: 1}\n")
    assert "provisioned.latest.target_tracking.max: max (1) is below min (2)" in fails(
        "  latest: {target_tracking: {min: 2, max: 1}}\n")
    # Nothing was deployed: the manifest is read whole first.
    assert "FunctionNotFound" in cli.fails("fn", "get", "depscalebad").stderr

    # What only the server knows (the alias does not exist) names the qualifier too.
    refused = fails("  live: {target: 1}\n")
    assert refused.startswith(
        f"Error [InvalidPolicy]: {manifest}: provisioned.live: qualifier 'live': ")
    assert "  - provisioned.live.qualifier: " in refused
    cli.ok("fn", "delete", "depscalebad", "--yes")
