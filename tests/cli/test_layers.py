"""``ember layer`` against the real server: publish a directory, use it from a deployed
function, list, show versions and delete."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli, project

USES = """
import clilayer

def handler(event, context):
    return clilayer.WORD
"""


def test_layer_commands(cli: Cli, tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    (layer / "python").mkdir(parents=True)
    (layer / "python" / "clilayer.py").write_text("WORD = 'from the layer'\n")
    published = cli.ok("layer", "publish", "clilayer", layer, "-d", "first")
    assert "published layer clilayer version 1" in published.stderr + published.stdout
    again = cli.ok("layer", "publish", "clilayer", layer, "--json")
    assert json.loads(again.stdout)["created"] is False

    cli.ok("deploy", project(tmp_path / "fn", "layered", "  layers: [clilayer]\n", source=USES))
    invoked = cli.ok("invoke", "layered", "--json")
    assert "from the layer" in invoked.stdout

    listed = cli.ok("layer", "list").stdout
    row = next(line for line in listed.splitlines() if line.startswith("clilayer"))
    assert row.split()[:2] == ["clilayer", "1"]
    versions = json.loads(cli.ok("layer", "versions", "clilayer", "--json").stdout)
    assert [(v["version"], v["description"]) for v in versions["versions"]] == [(1, "first")]

    refused = cli.fails("layer", "delete", "clilayer", "1")
    assert "Conflict" in refused.stderr and "layered:latest" in refused.stderr
    cli.ok("fn", "delete", "layered", "--yes")
    deleted = cli.ok("layer", "delete", "clilayer", "1")
    assert "deleted layer clilayer version 1" in deleted.stderr + deleted.stdout
    missing = cli.fails("layer", "versions", "ghost")
    assert "LayerNotFound" in missing.stderr


def test_the_layer_example(cli: Cli) -> None:
    example = Path(__file__).parents[2] / "examples" / "with-layer"
    cli.ok("layer", "publish", "greetings", example / "layer")
    cli.ok("deploy", example / "function")
    invoked = cli.ok("invoke", "with-layer", "--data", '{"name": "Ada"}', "--json")
    assert "Hello from a layer, Ada!" in invoked.stdout
