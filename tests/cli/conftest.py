from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ember.cli.app import app
from tests.servers import ember_server

HANDLER = """
def handler(event, context):
    print("got", event)
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"echo": event, "version": context.function_version}
"""


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``ember server`` process; yields its URL."""
    # Async retries after a few hundredths of a second, so that tests of failing async
    # invocations (tests/cli/test_tasks.py) take well under a second each.
    with ember_server(tmp_path_factory.mktemp("server-home"), async_retry_delay_s="0.05",
                      async_system_delay_s="0.05") as url:
        yield url


@dataclass
class Cli:
    """Runs ``ember ...`` in process against one server."""

    url: str
    runner: CliRunner

    def __call__(self, *args: str | Path, input: str | None = None) -> Result:
        return self.runner.invoke(
            app, [str(a) for a in args], env={"EMBER_URL": self.url}, input=input
        )

    def ok(self, *args: str | Path, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        assert "Traceback" not in result.stderr
        return result

    def fails(self, *args: str | Path, code: int = 1) -> Result:
        result = self(*args)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        assert "Traceback" not in result.stderr + result.stdout
        return result


@pytest.fixture
def cli(server: str) -> Cli:
    return Cli(server, CliRunner())


def project(root: Path, name: str, config: str = "", *, source: str = HANDLER,
            extra: Sequence[str] = ()) -> Path:
    """A directory to deploy: main.py and an ember.yaml naming ``name``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "main.py").write_text(source)
    manifest = f"name: {name}\n" + (f"config:\n{config}" if config else "")
    manifest += "".join(f"{line}\n" for line in extra)
    (root / "ember.yaml").write_text(manifest)
    return root
