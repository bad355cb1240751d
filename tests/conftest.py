"""Shared fixtures. Set EMBER_DATABASE_URL=postgresql://… to run the suite on PostgreSQL:
a fresh database is created for the run and emptied before each test."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ember.clock import Clock
from ember.settings import Settings

_BASE_URL = os.environ.get("EMBER_DATABASE_URL", "")
# In-process tests address the app as http://ember or http://testserver (Starlette's
# TestClient); a server serves only the host names it is told to.
os.environ.setdefault("EMBER_ALLOWED_HOSTS", "localhost,127.0.0.1,::1,ember,testserver")
# Every server the tests start (in this process or not) takes this admin key, and every
# client (the CLI, the SDK) sends it; tests of keys and roles make their own.
ADMIN_KEY = "ember-test-admin-key-8f3c2a7d41e9b605"
os.environ["EMBER_ADMIN_KEY"] = ADMIN_KEY
os.environ["EMBER_API_KEY"] = ADMIN_KEY
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


# pytest-timeout prints the threads of a test that runs too long; in an asyncio test they
# show an idle loop. Shortly before the timeout, the stacks of every asyncio task are
# printed too (the test's captured stderr, shown with its failure): what each one awaits.
_TASKS_DUMPED_AT = 0.85  # of the test's timeout


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    marker = item.get_closest_marker("timeout")
    timeout = float(marker.args[0]) if marker and marker.args else float(
        item.config.getini("timeout") or 0)
    if timeout <= 0:
        yield
        return
    timer = threading.Timer(timeout * _TASKS_DUMPED_AT, _dump_asyncio_tasks)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _dump_asyncio_tasks() -> None:
    """From the timer's thread: have every running loop print its tasks' stacks."""
    for loop in [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]:
        if loop.is_running():
            loop.call_soon_threadsafe(_print_tasks)


def _print_tasks() -> None:
    out = io.StringIO()
    out.write("~~~ asyncio tasks of a test near its timeout ~~~\n")
    for task in asyncio.all_tasks():
        out.write(f"--- {task!r}\n")
        task.print_stack(file=out)
    print(out.getvalue(), file=sys.stderr, flush=True)


def _admin_url(url: str) -> str:
    return Settings(database_url=url).resolved_database_url()


@pytest.fixture(scope="session", autouse=True)
def _database() -> Iterator[None]:
    """A database of this run's own on the configured PostgreSQL server."""
    if not _BASE_URL:
        yield
        return
    admin = sa.create_engine(_admin_url(_BASE_URL), isolation_level="AUTOCOMMIT")
    name = f"ember_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(_admin_url(_BASE_URL)).set(database=name)
    os.environ["EMBER_DATABASE_URL"] = url.render_as_string(hide_password=False)
    try:
        yield
    finally:
        os.environ["EMBER_DATABASE_URL"] = _BASE_URL
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(autouse=True)
def _empty_database(_database: None) -> None:
    if not _BASE_URL:
        return
    engine = sa.create_engine(Settings().resolved_database_url())
    try:
        with engine.begin() as conn:
            tables = [
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'alembic_version'"
                )
            ]
            if tables:
                conn.exec_driver_sql(
                    "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"
                )
    finally:
        engine.dispose()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings(home=home)


def make_zip(files: dict[str, str | bytes]) -> bytes:
    """A zip archive holding ``files`` (name → content); the same files give the same bytes
    (fixed timestamps), as content-addressed artifacts expect."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, content)
    return buf.getvalue()


HELLO = {"main.py": "def handler(event, context):\n    return {'hello': event}\n"}


# For scenarios whose functions read or write the test's own files (a gate to wait on, a
# file that counts runs): the sandbox shows instances none of the host's files, so these
# run without it. ``run(scenario, **HOST_FILES)``; tests/sandbox tests the sandbox itself.
HOST_FILES = {"sandbox": "process"}


@pytest.fixture
def run(settings: Settings) -> Callable[..., None]:
    """Run an async scenario against a fresh in-process server (see tests/inprocess.py);
    keyword arguments override settings."""
    from tests.inprocess import Scenario, running

    def runner(scenario: Scenario, clock: Clock | None = None, **overrides: Any) -> None:
        async def main() -> None:
            async with running(settings.model_copy(update=overrides), clock) as ember:
                await scenario(ember)

        asyncio.run(main())

    return runner
