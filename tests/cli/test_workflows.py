"""``ember workflow``, ``ember execution`` and ``ember event`` against the real server:
deploys from files, runs with and without waiting, a batch over a JSONL file with a failing
item, following, cancelling and watching executions, and events resuming them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.cli.conftest import Cli, project


def write_doc(path: Path, name: str, do: list[dict[str, Any]], version: str = "1.0.0",
              ) -> Path:
    document = {"document": {"dsl": "1.0.0", "namespace": "cli", "name": name,
                             "version": version}, "do": do}
    path.write_text(json.dumps(document) if path.suffix == ".json"
                    else yaml.safe_dump(document, sort_keys=False))
    return path


WAIT_LONG = [{"pause": {"wait": "PT1H"}}]


def listen(type_: str) -> list[dict[str, Any]]:
    return [{"shipped": {"listen": {"to": {"one": {"with": {"type": type_}}}}}}]


def test_deploy_list_get_delete(cli: Cli, tmp_path: Path) -> None:
    tasks = [
        {"prepare": {"set": {"items": "${ .items }"}}},
        {"each": {"for": {"each": "item", "in": ".items", "concurrency": 4},
                  "do": [{"double": {"set": {"n": "${ $item * 2 }"}}}]}},
    ]
    file = write_doc(tmp_path / "wf-tree.yaml", "wf-tree", tasks)
    deployed = cli.ok("workflow", "deploy", file)
    assert "deployed workflow wf-tree revision 1 (cli/wf-tree 1.0.0)" in deployed.stdout
    again = cli.ok("workflow", "deploy", file)
    assert "workflow wf-tree unchanged: revision 1 has this document" in again.stdout
    as_json = write_doc(tmp_path / "wf-tree.json", "wf-tree", tasks, version="1.1.0")
    body = json.loads(cli.ok("workflow", "deploy", as_json, "--json").stdout)
    assert body["revision"] == 2 and body["changed"] is True and body["version"] == "1.1.0"

    shown = cli.ok("workflow", "get", "wf-tree").stdout
    assert "revision" in shown and "cli" in shown and "1.1.0" in shown
    # The task tree: each task under the one holding it, with its kind.
    lines = shown.splitlines()
    each = next(i for i, line in enumerate(lines) if "each" in line and "for each" in line)
    assert "double" in lines[each + 1] and "set" in lines[each + 1]
    assert "4 at once" in lines[each]
    row = next(line for line in cli.ok("workflow", "list", "--prefix", "wf-tr").stdout
               .splitlines() if line.startswith("wf-tree"))
    assert row.split()[:4] == ["wf-tree", "2", "cli", "1.1.0"]
    listed = json.loads(cli.ok("workflow", "list", "--json").stdout)
    assert "wf-tree" in [w["name"] for w in listed["workflows"]]

    cli.ok("workflow", "deploy", write_doc(tmp_path / "wf-pause.yaml", "wf-pause", WAIT_LONG))
    running = cli.ok("workflow", "run", "wf-pause").stdout.strip()
    refused = cli.fails("workflow", "delete", "wf-pause")
    assert refused.stderr.startswith("Error [Conflict]") and "--force" in refused.stderr
    assert "deleted workflow wf-pause" in cli.ok("workflow", "delete", "wf-pause",
                                                 "--force").stdout
    status = json.loads(cli.ok("execution", "get", running, "--json").stdout)["status"]
    assert status == "cancelled"
    cli.ok("workflow", "delete", "wf-tree")
    assert cli.fails("workflow", "get", "wf-tree").stderr.startswith("Error [WorkflowNotFound]")


def test_deploy_errors(cli: Cli, tmp_path: Path) -> None:
    bad = write_doc(tmp_path / "bad.yaml", "wf-bad", [{"x": {"call": "grpc"}}])
    invalid = cli.fails("workflow", "deploy", bad)
    assert invalid.stderr.startswith("Error [InvalidSpec]")
    assert "  - do[0].x.call: " in invalid.stderr
    good = write_doc(tmp_path / "good.yaml", "wf-good", WAIT_LONG)
    mismatch = cli.fails("workflow", "deploy", good, "--name", "wf-other")
    assert "  - document.name: " in mismatch.stderr
    (tmp_path / "nameless.yaml").write_text("do: []\n")
    assert "no document.name" in cli.fails("workflow", "deploy",
                                           tmp_path / "nameless.yaml").stderr
    assert "Error [Usage]" in cli.fails("workflow", "deploy", tmp_path / "missing.yaml").stderr


def test_run_wait_data_and_idempotency_key(cli: Cli, tmp_path: Path) -> None:
    cli.ok("deploy", project(tmp_path / "fn", "wf-echo"))
    cli.ok("workflow", "deploy", write_doc(tmp_path / "wf-call.yaml", "wf-call", [
        {"greet": {"call": "wf-echo", "with": {"name": "${ .name }"}}},
    ]))
    done = cli.ok("workflow", "run", "wf-call", "--data", '{"name": "Ada"}', "--wait")
    assert json.loads(done.stdout)["echo"] == {"name": "Ada"}
    assert "wf-call revision 1 · succeeded" in done.stderr

    (tmp_path / "input.json").write_text('{"name": "Grace"}')
    started = cli.ok("workflow", "run", "wf-call", "--data", f"@{tmp_path / 'input.json'}",
                     "--idempotency-key", "k-1")
    execution_id = started.stdout.strip()
    assert len(execution_id) == 32
    again = cli.ok("workflow", "run", "wf-call", "--data", '{"name": "x"}',
                   "--idempotency-key", "k-1").stdout.strip()
    assert again == execution_id

    got = cli.ok("execution", "get", execution_id)
    for part in ("wf-call revision 1", "TASK", "/do/0/greet", "wf-echo:"):
        assert part in got.stdout
    body = json.loads(cli.ok("execution", "get", execution_id, "--json").stdout)
    assert body["input"] == {"name": "Grace"}
    assert body["history"][0]["function"] == "wf-echo" and body["history"][0]["request_id"]

    assert "not JSON" in cli.fails("workflow", "run", "wf-call", "--data", "{", code=2).stderr
    assert "Error [WorkflowNotFound]" in cli.fails("workflow", "run", "wf-ghost").stderr


def test_failed_run_exits_1(cli: Cli, tmp_path: Path) -> None:
    cli.ok("workflow", "deploy", write_doc(tmp_path / "wf-raise.yaml", "wf-raise", [
        {"boom": {"raise": {"error": {"type": "https://example.com/boom", "status": 418,
                                      "title": "Boom"}}}},
    ]))
    failed = cli.fails("workflow", "run", "wf-raise", "--wait")
    assert failed.stdout == "" and "failed" in failed.stderr and "Boom (418)" in failed.stderr


def test_list_cancel_and_watch(cli: Cli, tmp_path: Path) -> None:
    cli.ok("workflow", "deploy", write_doc(tmp_path / "wf-hold.yaml", "wf-hold", WAIT_LONG))
    held = cli.ok("workflow", "run", "wf-hold").stdout.strip()
    listed = cli.ok("execution", "list", "--workflow", "wf-hold", "--status", "waiting")
    row = next(line for line in listed.stdout.splitlines() if line.startswith(held))
    assert row.split()[1:4] == ["wf-hold", "1", "waiting"]
    assert held not in cli.ok("execution", "list", "-w", "wf-hold", "-s", "succeeded").stdout
    bad = cli.fails("execution", "list", "--status", "done")
    assert bad.stderr.startswith("Error [InvalidSpec]")

    assert f"execution {held} is cancelled" in cli.ok("execution", "cancel", held).stdout
    assert "had already ended: cancelled" in cli.ok("execution", "cancel", held).stdout
    # Watching an execution that ended unsuccessfully shows its tree and exits 1.
    watched = cli.fails("execution", "watch", held)
    assert "wf-hold · execution" in watched.stdout and "pause" in watched.stdout

    cli.ok("workflow", "deploy", write_doc(tmp_path / "wf-short.yaml", "wf-short", [
        {"nap": {"wait": "PT0.2S"}}, {"done": {"set": {"ok": True}}},
    ]))
    short = cli.ok("workflow", "run", "wf-short").stdout.strip()
    tree = cli.ok("execution", "watch", short).stdout
    assert "nap  succeeded" in tree and "done  succeeded" in tree
    assert json.loads(cli.ok("execution", "watch", short, "--json").stdout)["output"] \
        == {"ok": True}


def test_event_send_resumes_a_listen(cli: Cli, tmp_path: Path) -> None:
    cli.ok("workflow", "deploy", write_doc(tmp_path / "wf-ship.yaml", "wf-ship",
                                           listen("com.cli.shipped")))
    waiting = cli.ok("workflow", "run", "wf-ship").stdout.strip()
    sent = cli.ok("event", "send", "--type", "com.cli.shipped", "--data", '{"order": 1}',
                  "--subject", "o1")
    assert "matched 1 execution(s) and 0 schedule(s)" in sent.stdout
    done = json.loads(cli.ok("workflow", "run", "wf-ship", "--idempotency-key", "none",
                             "--json").stdout)
    assert done["status"] == "waiting"  # a new execution: the event was taken
    got = json.loads(cli.ok("execution", "watch", waiting, "--json").stdout)
    assert got["output"] == [{"order": 1}]
    cli.ok("execution", "cancel", done["id"])

    kept = cli.ok("event", "send", "--type", "com.cli.nobody", "--id", "cli-e1")
    assert "matched 0 execution(s)" in kept.stdout and "kept for listens" in kept.stdout
    duplicate = cli.ok("event", "send", "--type", "com.cli.nobody", "--id", "cli-e1")
    assert "a duplicate" in duplicate.stdout
    body = json.loads(cli.ok("event", "send", "-t", "com.cli.nobody", "--json").stdout)
    assert body["retained"] is True and body["matched"] == {"executions": 0, "schedules": 0}


BATCH = [{"each": {
    "for": {"each": "item", "in": "${ . }", "concurrency": 2},
    "do": [{"guarded": {
        "try": [
            {"check": {"if": "${ $item.fail == true }", "raise": {"error": {
                "type": "https://example.com/bad-item", "status": 400, "title": "Bad item"}}}},
            {"double": {"set": {"n": "${ $item.n * 2 }"}}},
        ],
        "catch": {"errors": {"with": {"status": 400}},
                  "do": [{"mark": {"set": {"failed": "${ $item.n }"}}}]},
    }}],
}}]


def test_batch_run_over_a_jsonl_file(cli: Cli, tmp_path: Path) -> None:
    cli.ok("workflow", "deploy", write_doc(tmp_path / "wf-batch.yaml", "wf-batch", BATCH))
    items = tmp_path / "items.jsonl"
    items.write_text('{"n": 1}\n{"n": 2, "fail": true}\n\n{"n": 3}\n')
    failed = cli.fails("workflow", "run", "wf-batch", "--input-file", items)
    assert "3 items: 2 succeeded, 1 failed" in failed.stdout
    again = tmp_path / "items.failed.jsonl"
    assert f"ember workflow run wf-batch --input-file {again}" in failed.stdout
    results = [json.loads(line) for line in
               (tmp_path / "items.results.jsonl").read_text().splitlines()]
    assert results == [
        {"index": 0, "status": "succeeded", "output": {"n": 2}},
        {"index": 1, "status": "failed", "output": {"failed": 2}},
        {"index": 2, "status": "succeeded", "output": {"n": 6}},
    ]
    assert again.read_text() == '{"n": 2, "fail": true}\n'

    good = tmp_path / "good.jsonl"
    good.write_text('{"n": 5}\n{"n": 6}\n')
    out = tmp_path / "out" / "results.jsonl"
    out.parent.mkdir()
    done = cli.ok("workflow", "run", "wf-batch", "--input-file", good, "--output", out,
                  "--json")
    summary = json.loads(done.stdout)
    assert summary["status"] == "succeeded" and summary["items"] == {"succeeded": 2}
    assert summary["failed_items"] is None
    assert [json.loads(line)["output"] for line in out.read_text().splitlines()] \
        == [{"n": 10}, {"n": 12}]
    assert not (tmp_path / "good.failed.jsonl").exists()

    # Without a catch, the failing item fails the for and the execution: the items after
    # it never ran, and go to the file of items to run again too.
    cli.ok("workflow", "deploy", write_doc(tmp_path / "wf-strict.yaml", "wf-strict", [{"each": {
        "for": {"each": "item", "in": "${ . }"}, "do": BATCH[0]["each"]["do"][0]["guarded"]["try"],
    }}]))
    strict = cli.fails("workflow", "run", "wf-strict", "--input-file", items)
    assert "3 items: 1 succeeded, 1 failed, 1 not run" in strict.stdout
    assert "Bad item (400)" in strict.stderr
    assert [json.loads(line)["status"] for line in
            (tmp_path / "items.results.jsonl").read_text().splitlines()] \
        == ["succeeded", "failed", "not_run"]
    assert again.read_text() == '{"n": 2, "fail": true}\n{"n": 3}\n'

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"n": 1}\n{"n": \n')
    refused = cli.fails("workflow", "run", "wf-batch", "--input-file", broken)
    assert "line 2: not a JSON value" in refused.stderr
    assert "--data or --input-file" in cli.fails(
        "workflow", "run", "wf-batch", "--input-file", good, "--data", "1", code=2).stderr
