"""The README as a new user follows it: the "Use it" commands pasted in order on a real
server, and the example function greeting whoever an HTTP trigger's request names."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests import apicalls as api
from tests.cli.conftest import Cli

ROOT = Path(__file__).parents[2]


def _use_it_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Use it\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "no command block under ## Use it"
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    return [c for c in commands if c and c[0] == "ember" and c[1] != "server"]


def test_the_use_it_steps_work_in_order(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the steps name examples/hello from the repository's root
    commands = _use_it_commands()
    assert len(commands) >= 8
    answers = [cli.ok(*command[1:]) for command in commands]
    versions = json.loads(cli.ok("version", "list", "hello", "--json").stdout)
    assert [v["version"] for v in versions["versions"]] == [1, 2]
    alias = json.loads(cli.ok("alias", "get", "hello", "live", "--json").stdout)
    assert (alias["version"], alias["additional_version"]) == (2, 1)
    greeted = [json.loads(a.stdout)["message"] for c, a in zip(commands, answers, strict=True)
               if c[1] == "invoke"]
    assert greeted[0] == "Hello, Ada!"
    assert greeted[-1] in {"Bonjour, Ada!", "Hello, Ada!"}

    # The Triggers section: an HTTP trigger on hello:live, called with a JSON body.
    cli.ok("trigger", "create", "hello-web", "-f", "hello", "-q", "live", "--http", "/hello")
    try:
        posted = api.post(f"{cli.url}/http/hello", content=b'{"name": "Ada"}', timeout=30)
        assert posted.status_code == 200, posted.text
        assert posted.json()["message"] in {"Bonjour, Ada!", "Hello, Ada!"}
        queried = api.get(f"{cli.url}/http/hello", params={"name": "Grace"}, timeout=30)
        assert queried.json()["message"] in {"Bonjour, Grace!", "Hello, Grace!"}
        nobody = api.post(f"{cli.url}/http/hello", content=b"not json", timeout=30)
        assert nobody.json()["message"] in {"Bonjour, world!", "Hello, world!"}
    finally:
        cli.ok("trigger", "delete", "hello-web", "--yes")
    # A CloudEvent of another source names someone in its data.
    event = {"specversion": "1.0", "type": "dev.ember.mqtt.message", "data": {"name": "Linus"}}
    relayed = cli.ok("invoke", "hello", "--data", json.dumps(event))
    assert json.loads(relayed.stdout)["message"] == "Bonjour, Linus!"
    cli.ok("fn", "delete", "hello", "--yes")
