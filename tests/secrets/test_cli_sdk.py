"""``ember secret`` and the SDK's secret methods against the real app in process."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ember.api import create_app
from ember.bootstrap import build
from ember.cli import common
from ember.cli.app import app as cli_app
from ember.client import AsyncClient, Client
from ember.errors import Conflict, InvalidSpec, SecretNotFound
from ember.settings import Settings
from tests.conftest import AUTH, make_zip

USES = "import os\n\ndef handler(event, context):\n    return {'token': os.environ['CLI_TOKEN']}\n"


@pytest.fixture
def http(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The CLI's client talks to a real app (with its lifespan) in this process."""
    with TestClient(create_app(build(settings)), base_url="http://ember", headers=AUTH) as client:
        monkeypatch.setattr(common, "connect", lambda url: Client(http=client))
        yield client


def ember(*args: str | Path, input: str | None = None, code: int = 0) -> tuple[str, str]:
    result = CliRunner().invoke(cli_app, [str(a) for a in args], input=input)
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout, result.stderr


def test_cli_sets_from_stdin_and_file_lists_and_deletes(
    http: TestClient, tmp_path: Path
) -> None:
    out, err = ember("secret", "set", "CLI_TOKEN", input="from-stdin-123\n")
    assert "set secret CLI_TOKEN" in out + err and "from-stdin-123" not in out + err
    value_file = tmp_path / "value.txt"
    value_file.write_text("line one\nline two\n")
    ember("secret", "set", "MULTI", "--file", value_file)

    project = tmp_path / "fn"
    project.mkdir()
    (project / "main.py").write_text(USES)
    (project / "ember.yaml").write_text("name: uses\nconfig:\n  secrets: [CLI_TOKEN]\n")
    ember("deploy", project)
    invoked = http.post("/functions/uses/invoke", json={})
    assert invoked.json() == {"token": "from-stdin-123"}  # the newline of echo is not kept

    listed, _ = ember("secret", "list")
    rows = [line.split()[0] for line in listed.splitlines()[1:] if line.strip()]
    assert {"CLI_TOKEN", "MULTI"} <= set(rows)
    assert "from-stdin" not in listed and "line one" not in listed
    as_json = json.loads(ember("secret", "list", "--json")[0])
    assert [s["name"] for s in as_json["secrets"]] == ["CLI_TOKEN", "MULTI"]
    assert all("value" not in s for s in as_json["secrets"])

    _, refused = ember("secret", "delete", "CLI_TOKEN", code=1)
    assert "Conflict" in refused and "uses:latest" in refused
    ember("secret", "delete", "CLI_TOKEN", "--force")
    ember("secret", "delete", "MULTI")
    assert json.loads(ember("secret", "list", "--json")[0]) == {"secrets": []}


def test_cli_refuses_an_empty_value_or_a_missing_file(http: TestClient, tmp_path: Path) -> None:
    _, err = ember("secret", "set", "EMPTY", input="", code=1)
    assert "empty" in err
    _, err = ember("secret", "set", "GONE", "--file", tmp_path / "missing.txt", code=1)
    assert "missing.txt" in err
    # A value is never an argument: there is no place for one.
    ember("secret", "set", "ARG", "the-value", code=2)
    assert http.get("/secrets").json() == {"secrets": []}


def test_sdk_round_trip(settings: Settings) -> None:
    app = create_app(build(settings))
    with (TestClient(app, base_url="http://ember", headers=AUTH) as http,
          Client(http=http) as client):
        made = client.set_secret("SDK_SECRET", "sdk-value-42")
        assert made.name == "SDK_SECRET" and made.created_at == made.updated_at
        assert [s.name for s in client.list_secrets()] == ["SDK_SECRET"]
        assert client.get_secret("SDK_SECRET").created_at == made.created_at
        client.create_function("fn", make_zip({"main.py": USES.replace("CLI_TOKEN",
                                                                       "SDK_SECRET")}),
                               {"secrets": ["SDK_SECRET"]})
        assert client.invoke("fn").json() == {"token": "sdk-value-42"}
        with pytest.raises(Conflict) as refused:
            client.delete_secret("SDK_SECRET")
        assert refused.value.details["functions"] == ["fn"]
        with pytest.raises(InvalidSpec) as invalid:
            client.set_secret("bad-name", "v")
        assert invalid.value.details["errors"][0]["field"] == "name"
        with pytest.raises(InvalidSpec) as invalid:
            client.update_function("fn", {"secrets": ["SDK_SECRET", "GHOST"]})
        assert invalid.value.details["errors"][0]["field"] == "config.secrets[1]"
        assert client.delete_secret("SDK_SECRET", force=True).name == "SDK_SECRET"
        with pytest.raises(SecretNotFound):
            client.get_secret("SDK_SECRET")


def test_async_sdk(settings: Settings) -> None:
    app = create_app(build(settings))

    async def scenario() -> None:
        async with (
            app.router.lifespan_context(app),
            AsyncClient("http://ember", transport=httpx.ASGITransport(app=app)) as client,
        ):
            await client.set_secret("A_SECRET", "x")
            assert [s.name for s in await client.list_secrets()] == ["A_SECRET"]
            assert (await client.get_secret("A_SECRET")).name == "A_SECRET"
            assert (await client.delete_secret("A_SECRET")).name == "A_SECRET"
            with pytest.raises(SecretNotFound):
                await client.delete_secret("A_SECRET")

    asyncio.run(scenario())
