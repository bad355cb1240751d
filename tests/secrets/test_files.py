"""Secrets given as files (``secret_files``): written for the instance only, in the
bubblewrap sandbox and in the process sandbox."""

from __future__ import annotations

import shutil
from collections.abc import Callable

import pytest

from tests.inprocess import Ember
from tests.secrets.test_api import PASSWORD, fields, put

Run = Callable[..., None]

READS_FILE = """
import os

def handler(event, context):
    directory = os.environ["EMBER_SECRETS_DIR"]
    path = os.path.join(directory, "DB_PASSWORD")
    value = open(path).read()
    print("the file holds", value)
    return {"value": value, "mode": oct(os.stat(path).st_mode & 0o777),
            "in_environment": "DB_PASSWORD" in os.environ,
            "files": sorted(os.listdir(directory)), "directory": directory}
"""

SANDBOXES = ["process", pytest.param("bubblewrap", marks=pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed"))]


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_secret_file_holds_the_value_readable_by_the_instance_only(
        run: Run, sandbox: str) -> None:
    async def scenario(ember: Ember) -> None:
        await put(ember, "DB_PASSWORD", PASSWORD)
        await put(ember, "UNUSED", "not-given")
        await ember.deploy("reader", READS_FILE, secret_files=["DB_PASSWORD"])
        answer = await ember.invoke("reader", {}, log_tail="true")
        assert answer.status_code == 200, answer.text
        found = answer.json()
        assert found["value"] == PASSWORD and found["mode"] == "0o400"
        assert found["in_environment"] is False and found["files"] == ["DB_PASSWORD"]
        if sandbox == "bubblewrap":
            assert found["directory"] == "/run/secrets"
        # Printed, the value is masked in the logs like a variable's.
        logs = (await ember.http.get("/functions/reader/logs")).text
        assert "the file holds ***" in logs and PASSWORD not in logs

        # A value set again reaches the next instance, in a new file.
        await put(ember, "DB_PASSWORD", "second-value", status=200)
        await ember.http.patch("/functions/reader", json={"config": {"memory_mb": 320}})
        await ember.settle()
        assert (await ember.invoke("reader", {})).json()["value"] == "second-value"

    run(scenario, sandbox=sandbox)


def test_secret_files_must_exist_and_not_be_variables_too(run: Run) -> None:
    async def scenario(ember: Ember) -> None:
        await put(ember, "EXISTS", "v")
        await ember.deploy("f", "def handler(e, c):\n    return 1\n")
        patched = await ember.http.patch(
            "/functions/f", json={"config": {"secret_files": ["EXISTS", "NOPE"]}})
        assert patched.status_code == 400, patched.text
        assert list(fields(patched)) == ["config.secret_files[1]"]
        both = await ember.http.patch("/functions/f", json={
            "config": {"secrets": ["EXISTS"], "secret_files": ["EXISTS"]}})
        assert both.status_code == 400 and "config.secret_files" in fields(both), both.text
        used = await ember.http.patch("/functions/f",
                                      json={"config": {"secret_files": ["EXISTS"]}})
        assert used.status_code == 200, used.text
        refused = await ember.http.delete("/secrets/EXISTS")
        assert refused.status_code == 409 and "f:latest" in refused.text, refused.text

    run(scenario)
