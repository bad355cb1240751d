"""Workflow engine tests run on both queue backends (embedded, Redis) and, through the suite's
two passes, on both stores (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.queue.conftest import queue_settings, run_on_queue  # noqa: F401 - fixtures

Run = Callable[..., None]


@pytest.fixture
def run_wf(run_on_queue: Run) -> Run:  # noqa: F811 - the fixture above
    """Run a scenario against an in-process server on each queue backend."""
    return run_on_queue
