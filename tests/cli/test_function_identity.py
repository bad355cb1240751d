"""A function with a ``role`` calls Ember from its code with ``ember.client.Client()`` and no
configuration: its instances get a token (``EMBER_TOKEN``, ``EMBER_URL``) that can do what
the role grants and nothing else, and that dies with the instance."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli, project

CALLER = """
from ember.client import Client
from ember.errors import EmberError


def handler(event, context):
    with Client() as ember:
        try:
            answer = ember.invoke(event["target"], {"from": "caller"}).json()
            return {"ok": answer}
        except EmberError as err:
            return {"refused": err.code}
"""

TARGET = "def handler(event, context):\n    return {'target saw': event}\n"

LOGS_ITS_TOKEN = """
import os

def handler(event, context):
    print("my token is", os.environ["EMBER_TOKEN"])
    return os.environ["EMBER_URL"].startswith("http://127.0.0.1:")
"""


def test_a_function_calls_what_its_role_grants_and_nothing_else(
    cli: Cli, tmp_path: Path
) -> None:
    cli.ok("deploy", project(tmp_path / "target", "id-target", source=TARGET))
    cli.ok("deploy", project(tmp_path / "other", "id-other", source=TARGET))
    cli.ok("deploy", project(tmp_path / "caller", "id-caller", source=CALLER,
                             config="  role:\n    invoke: [id-target]\n"))
    cli.ok("deploy", project(tmp_path / "plain", "id-plain", source=CALLER))

    allowed = cli.ok("invoke", "id-caller", "--data", '{"target": "id-target"}')
    assert json.loads(allowed.stdout) == {"ok": {"target saw": {"from": "caller"}}}
    refused = cli.ok("invoke", "id-caller", "--data", '{"target": "id-other"}')
    assert json.loads(refused.stdout) == {"refused": "Forbidden"}
    # A function without a role has no identity: no token, not even the server's address.
    nobody = cli.ok("invoke", "id-plain", "--data", '{"target": "id-target"}')
    assert json.loads(nobody.stdout) == {"refused": "ServiceUnavailable"}


def test_the_token_is_masked_in_logs(cli: Cli, tmp_path: Path) -> None:
    cli.ok("deploy", project(tmp_path / "logger", "id-logger", source=LOGS_ITS_TOKEN,
                             config="  role:\n    events: true\n"))
    answer = cli.ok("invoke", "id-logger", "--log-tail")
    assert "true" in answer.stdout
    logs = cli.ok("logs", "id-logger").stdout
    assert "my token is ***" in logs and "et_" not in logs
