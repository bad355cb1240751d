"""``ember trigger`` and the triggers of ember.yaml against the real server: an HTTP trigger
made by the CLI answers on /http/..., its counters show in list and get, and deploy creates,
updates, keeps and prunes declared triggers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests import apicalls as api
from tests.cli.conftest import Cli, project


def test_http_trigger_made_by_the_cli(cli: Cli, tmp_path: Path) -> None:
    cli.ok("deploy", project(tmp_path / "web", "trigweb"))
    created = cli.ok("trigger", "create", "cliweb", "--function", "trigweb", "--http", "cliweb")
    assert "created trigger cliweb: http /cliweb → trigweb:latest" in created.stdout
    assert f"{cli.url}/http/cliweb" in created.stdout  # the panel shows where it answers

    answer = api.post(f"{cli.url}/http/cliweb/orders", json={"qty": 2}, timeout=30)
    assert answer.status_code == 200, answer.text
    event = answer.json()["echo"]
    assert event["type"] == "dev.ember.http.request"
    assert event["data"]["method"] == "POST" and event["data"]["path"] == "/orders"
    assert json.loads(event["data"]["body"]) == {"qty": 2}

    shown = cli.ok("trigger", "get", "cliweb").stdout
    for row in ("events", "invocations", "failures", "last event", "connected"):
        assert row in shown
    status = json.loads(cli.ok("trigger", "get", "cliweb", "--json").stdout)["status"]
    assert (status["events"], status["invocations"], status["failures"]) == (1, 1, 0)
    assert status["connected"] is True and status["last_event_at"]

    table = cli.ok("trigger", "list", "--function", "trigweb").stdout
    assert "INVOKED" in table and "LAST ERROR" in table
    row = next(line for line in table.splitlines() if line.startswith("cliweb"))
    assert row.split()[:8] == ["cliweb", "trigweb:latest", "http", "enabled", "1", "1", "0", "yes"]
    listed = json.loads(cli.ok("trigger", "list", "--function", "trigweb", "--json").stdout)
    assert [t["name"] for t in listed["triggers"]] == ["cliweb"]

    assert "trigger cliweb is paused" in cli.ok("trigger", "pause", "cliweb").stdout
    assert api.get(f"{cli.url}/http/cliweb", timeout=30).status_code == 503
    assert "is enabled" in cli.ok("trigger", "resume", "cliweb").stdout
    assert api.get(f"{cli.url}/http/cliweb", timeout=30).status_code == 200
    disabled = json.loads(cli.ok("trigger", "disable", "cliweb", "--json").stdout)
    assert disabled["state"] == "disabled" and disabled["status"]["connected"] is False
    assert api.get(f"{cli.url}/http/cliweb", timeout=30).status_code == 404
    cli.ok("trigger", "enable", "cliweb")
    assert api.get(f"{cli.url}/http/cliweb", timeout=30).status_code == 200

    cli.ok("version", "publish", "trigweb")
    updated = cli.ok("trigger", "update", "cliweb", "-q", "1", "-d", "the shop",
                     "--http", "/cliweb2", "--method", "PUT", "--json")
    body = json.loads(updated.stdout)
    assert body["qualifier"] == "1" and body["description"] == "the shop"
    assert body["source"]["path"] == "/cliweb2" and body["source"]["methods"] == ["PUT"]
    put = api.put(f"{cli.url}/http/cliweb2", timeout=30)
    assert put.status_code == 200 and put.headers["x-ember-version"] == "1"

    refused = cli.fails("trigger", "delete", "cliweb")
    assert "not deleting trigger 'cliweb'" in refused.stderr and "--yes" in refused.stderr
    assert "deleted trigger cliweb" in cli.ok("trigger", "delete", "cliweb", "--yes").stdout
    missing = cli.fails("trigger", "get", "cliweb")
    assert missing.stderr.startswith("Error [TriggerNotFound]")


def test_a_trigger_to_the_event_bus_made_by_the_cli(cli: Cli) -> None:
    created = cli.ok("trigger", "create", "clibus", "--events", "--http", "clibus")
    assert "created trigger clibus: http /clibus → events" in created.stdout
    answer = api.post(f"{cli.url}/http/clibus", json={"n": 1}, timeout=30)
    assert answer.status_code == 202, answer.text
    assert answer.json()["retained"] is True
    table = cli.ok("trigger", "list").stdout
    assert "TARGET" in table
    row = next(line for line in table.splitlines() if line.startswith("clibus"))
    assert row.split()[:6] == ["clibus", "events", "http", "enabled", "1", "1"]
    both = cli.fails("trigger", "create", "clibus2", "--events", "-f", "x", "--http", "b",
                     code=2)
    assert "--events goes without --function" in both.stderr
    neither = cli.fails("trigger", "create", "clibus2", "--http", "b", code=2)
    assert "--events" in neither.stderr
    cli.ok("trigger", "delete", "clibus", "--yes")


def test_a_trigger_that_starts_a_workflow_made_by_the_cli(cli: Cli) -> None:
    def document(name: str) -> dict[str, Any]:
        return {"document": {"dsl": "1.0.0", "namespace": "test", "name": name,
                             "version": "1.0.0"},
                "do": [{"keep": {"set": {"data": "${ .data.body }"}}}]}

    deployed = api.put(f"{cli.url}/workflows/cliflow", json=document("cliflow"), timeout=30)
    assert deployed.status_code == 201, deployed.text
    created = cli.ok("trigger", "create", "cliflow", "--workflow", "cliflow",
                     "--source", '{"kind": "http", "path": "/cliflow"}')
    assert "created trigger cliflow: http /cliflow → workflow:cliflow" in created.stdout
    answer = api.post(f"{cli.url}/http/cliflow", content=b"hello", timeout=30)
    assert answer.status_code == 202, answer.text
    execution = answer.json()["execution"]
    done = api.get(f"{cli.url}/executions/{execution}", params={"wait_s": 60}, timeout=90)
    assert done.json()["output"] == {"data": "hello"}, done.text
    row = next(line for line in cli.ok("trigger", "list").stdout.splitlines()
               if line.startswith("cliflow"))
    assert row.split()[:6] == ["cliflow", "workflow:cliflow", "http", "enabled", "1", "1"]
    both = cli.fails("trigger", "create", "cliflow2", "--workflow", "w", "-f", "x",
                     "--http", "b", code=2)
    assert "--workflow goes without --function" in both.stderr
    refused = cli.fails("workflow", "delete", "cliflow")
    assert "cliflow" in refused.stderr + refused.stdout
    deployed = api.put(f"{cli.url}/workflows/cliflow2", json=document("cliflow2"),
                         timeout=30)
    assert deployed.status_code == 201, deployed.text
    moved = cli.ok("trigger", "update", "cliflow", "--workflow", "cliflow2").stdout
    assert "updated trigger cliflow: workflow" in moved
    cli.ok("workflow", "delete", "cliflow")  # no trigger starts it any more
    cli.ok("trigger", "delete", "cliflow", "--yes")
    cli.ok("workflow", "delete", "cliflow2")


def test_source_forms_and_errors(cli: Cli, tmp_path: Path) -> None:
    cli.ok("deploy", project(tmp_path / "src", "trigsrc"))
    as_json = json.loads(cli.ok(
        "trigger", "create", "src-json", "-f", "trigsrc", "--json",
        "--source", '{"kind": "timer", "schedule": "cron(0 0 1 1 *)", "payload": {"n": 1}}',
    ).stdout)
    assert as_json["source"]["payload"] == {"n": 1} and as_json["source"]["timezone"] == "UTC"
    as_yaml = json.loads(cli.ok(
        "trigger", "create", "src-yaml", "-f", "trigsrc", "--json",
        "--source", "{kind: http, path: /src-yaml, auth: api_key, api_key: 0123456789abcdef}",
    ).stdout)
    assert as_yaml["source"]["api_key"] == "***"
    (tmp_path / "source.yaml").write_text("kind: http\npath: /src-file\nmethods: [GET]\n")
    from_file = json.loads(cli.ok(
        "trigger", "create", "src-file", "-f", "trigsrc", "-d", "from a file", "--json",
        "--source", f"@{tmp_path / 'source.yaml'}",
    ).stdout)
    assert from_file["source"]["methods"] == ["GET"] and from_file["description"] == "from a file"
    timer = cli.ok("trigger", "create", "src-timer", "-f", "trigsrc", "--timer",
                   "cron(0 9 * * 1-5)", "--timezone", "Europe/Paris")
    assert "timer cron(0 9 * * 1-5) → trigsrc:latest" in timer.stdout

    invalid = cli.fails("trigger", "create", "bad", "-f", "trigsrc", "--source",
                        '{"kind": "mqtt", "qos": 5}')
    assert invalid.stderr.startswith("Error [InvalidSpec]")
    assert "  - source.topic: " in invalid.stderr and "  - source.qos: " in invalid.stderr
    assert "must be a mapping" in cli.fails(
        "trigger", "create", "bad", "-f", "trigsrc", "--source", "[1, 2]"
    ).stderr
    assert "source file" in cli.fails(
        "trigger", "create", "bad", "-f", "trigsrc", "--source", f"@{tmp_path / 'nope.yaml'}"
    ).stderr
    assert "give one source" in cli.fails(
        "trigger", "create", "bad", "-f", "trigsrc", "--http", "/a", "--timer", "rate(1 day)",
        code=2,
    ).stderr
    assert "give the source" in cli.fails("trigger", "create", "bad", "-f", "trigsrc",
                                           code=2).stderr
    assert "go with --http" in cli.fails(
        "trigger", "create", "bad", "-f", "trigsrc", "--timer", "rate(1 day)", "-m", "GET",
        code=2,
    ).stderr
    assert "nothing to update" in cli.fails("trigger", "update", "src-json", code=2).stderr
    taken = cli.fails("trigger", "create", "bad", "-f", "trigsrc", "--http", "/src-yaml")
    assert taken.stderr.startswith("Error [Conflict]")
    assert "Error [FunctionNotFound]" in cli.fails("trigger", "list", "-f", "ghost").stderr
    cli.ok("fn", "delete", "trigsrc", "--yes")  # its triggers go with it
    assert "src-json" not in cli.ok("trigger", "list").stdout


MANIFEST = """\
name: {name}
triggers:
  - name: {name}-web
    source: {{kind: http, path: /{name}}}
    qualifier: live
  - name: {name}-tick
    source:
      kind: timer
      schedule: cron(0 0 1 1 *)
    description: once a year
"""


def test_deploy_creates_and_updates_declared_triggers(cli: Cli, tmp_path: Path) -> None:
    src = project(tmp_path / "dep", "trigdep")
    (src / "ember.yaml").write_text(MANIFEST.format(name="trigdep"))
    first = cli.ok("deploy", src, "--alias", "live").stdout
    assert "created trigger trigdep-web: http /trigdep → trigdep:live" in first
    assert "created trigger trigdep-tick: timer cron(0 0 1 1 *) → trigdep:latest" in first
    answer = api.get(f"{cli.url}/http/trigdep", timeout=30)
    assert answer.status_code == 200 and answer.headers["x-ember-version"] == "1"

    again = cli.ok("deploy", src).stdout
    assert "trigger trigdep-web unchanged" in again and "trigger trigdep-tick unchanged" in again

    changed = MANIFEST.format(name="trigdep").replace("path: /trigdep}", "path: /trigdep2}")
    changed = changed.replace("    qualifier: live\n", "")
    (src / "ember.yaml").write_text(changed)
    cli.ok("trigger", "create", "trigdep-extra", "-f", "trigdep", "--http", "/trigdep-extra")
    second = cli.ok("deploy", src)
    assert "updated trigger trigdep-web: qualifier, source.path" in second.stdout
    assert "trigger trigdep-extra is not in" in second.stderr and "kept" in second.stderr
    assert api.get(f"{cli.url}/http/trigdep2", timeout=30).status_code == 200
    assert api.get(f"{cli.url}/http/trigdep", timeout=30).status_code == 404

    keyed = changed.replace("path: /trigdep2}", "path: /trigdep2, auth: api_key, "
                            "api_key: 0123456789abcdef}")
    (src / "ember.yaml").write_text(keyed)
    done = json.loads(cli.ok("deploy", src, "--prune-triggers", "--json").stdout)
    actions = {t["name"]: (t["action"], t["changed"]) for t in done["triggers"]}
    assert actions == {
        "trigdep-web": ("updated", ["source.api_key", "source.auth"]),
        "trigdep-tick": ("unchanged", []),
        "trigdep-extra": ("deleted", []),
    }
    assert done["triggers"][0]["trigger"]["source"]["api_key"] == "***"
    # A key cannot be read back, so it is sent again; the rest is compared.
    resent = cli.ok("deploy", src).stdout
    assert "updated trigger trigdep-web: source.api_key (sent again" in resent
    assert "trigger trigdep-tick unchanged" in resent
    names = [t["name"] for t in json.loads(
        cli.ok("trigger", "list", "-f", "trigdep", "--json").stdout)["triggers"]]
    assert names == ["trigdep-tick", "trigdep-web"]
    cli.ok("fn", "delete", "trigdep", "--yes")


def test_deploy_trigger_errors_name_the_file_and_trigger(cli: Cli, tmp_path: Path) -> None:
    src = project(tmp_path / "bad", "trigbad")
    manifest = src / "ember.yaml"

    def fails(triggers: str) -> str:
        manifest.write_text(f"name: trigbad\ntriggers:\n{triggers}")
        return str(cli.fails("deploy", src).stderr)

    assert f"{manifest}: field `triggers` must be a list" in fails("  web: 1\n")
    assert f"{manifest}: triggers[0]: field `name` is required" in fails("  - source: {}\n")
    assert f"{manifest}: triggers[0] (w): unknown field 'function'" in fails(
        "  - {name: w, function: other, source: {kind: http, path: /w}}\n"
    )
    assert "field `source` is required" in fails("  - {name: w}\n")
    assert f"{manifest}: triggers[1] (w): triggers[0] has the same name" in fails(
        "  - {name: w, source: {kind: http, path: /w}}\n"
        "  - {name: w, source: {kind: http, path: /v}}\n"
    )
    bad_source = fails("  - {name: w, source: {kind: http, path: /w}}\n"
                       "  - {name: m, source: {kind: mqtt}}\n")
    assert f"{manifest}: triggers[1] (m): invalid spec: source.topic: " in bad_source
    # Nothing was deployed: the manifest is read whole first.
    assert "FunctionNotFound" in cli.fails("fn", "get", "trigbad").stderr

    # What only the server knows (the alias does not exist) names the trigger too.
    refused = fails("  - {name: trigbad-w, qualifier: live, source: {kind: http, path: /tb}}\n")
    assert refused.startswith(f"Error [AliasNotFound]: {manifest}: triggers[0] (trigbad-w): ")
    cli.ok("fn", "delete", "trigbad", "--yes")
