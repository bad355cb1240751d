"""The storage source on real files with the real watcher: kinds of change, the pattern and
events filters, nested and moved-in directories, a missing or removed directory, pause, and
a failing queue."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ember.clock import SystemClock
from ember.model.trigger import StorageSource, Trigger
from ember.triggers.base import SourceContext, make_source
from ember.triggers.storage import StorageTriggerSource, _sequence
from tests.triggers import helpers
from tests.triggers.helpers import Submits, eventually

Event = dict[str, Any]


async def _no_invoke(trigger: Trigger, body: bytes) -> Any:
    raise AssertionError("the storage source submits; it never invokes synchronously")


def storage(path: Path, submitted: Submits, **fields: Any) -> SourceContext:
    source = StorageSource(kind="storage", path=str(path), **fields)
    trigger = Trigger(name="files", function="fn", qualifier="latest", source=source,
                      state="enabled", description="", created_at=0.0, updated_at=0.0)
    return SourceContext(trigger, SystemClock(), submitted, _no_invoke)


@asynccontextmanager
async def watching(context: SourceContext, *, wait: bool = True,
                   ) -> AsyncIterator[StorageTriggerSource]:
    """The context's source running for the block; with ``wait``, once its watch is set up
    (changes made before that are not seen)."""
    source = make_source(context.trigger, context)
    assert isinstance(source, StorageTriggerSource)
    source.retry_initial_s = 0.05  # a missing directory is looked for again soon
    async with helpers.started(source):
        if wait:
            await until_watching(context)
        yield source


async def until_watching(context: SourceContext, watching: bool = True) -> None:
    await eventually(lambda: context.status.details.get("watching") is watching,
                     what=f"watching={watching}")


def seen(submitted: Submits) -> list[tuple[str, str]]:
    """(kind, relative path) of each event delivered."""
    return [(e["data"]["kind"], e["subject"]) for e in submitted.events]


async def until_seen(submitted: Submits, kind: str, rel: str) -> Event:
    await eventually(lambda: (kind, rel) in seen(submitted), what=f"{kind} {rel}")
    return next(e for e in submitted.events if (e["data"]["kind"], e["subject"]) == (kind, rel))


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_created_modified_and_deleted_files_are_delivered(tmp_path: Path) -> None:
    async def scenario() -> None:
        submitted = Submits()
        context = storage(tmp_path, submitted)
        async with watching(context):
            file = tmp_path / "a.txt"
            file.write_text("hello")
            created = await until_seen(submitted, "created", "a.txt")
            file.write_text("hello, world")
            modified = await until_seen(submitted, "modified", "a.txt")
            file.unlink()
            deleted = await until_seen(submitted, "deleted", "a.txt")
            assert context.status.connected
        assert not context.status.connected  # stopped
        assert seen(submitted) == [("created", "a.txt"), ("modified", "a.txt"),
                                   ("deleted", "a.txt")]
        assert created["type"] == "dev.ember.storage.created"
        assert created["emberpath"] == "a.txt"
        assert created["data"]["path"] == str(file)
        assert created["data"]["relative_path"] == "a.txt"
        assert created["data"]["size"] == 5
        assert modified["data"]["size"] == 12
        assert isinstance(modified["data"]["mtime"], float)
        assert deleted["data"]["size"] is None and deleted["data"]["mtime"] is None
        [created_key, modified_key, deleted_key] = [k for _, k in submitted.accepted]
        assert created_key is not None and created_key.startswith("storage:files:created:")
        assert created_key.endswith(":a.txt")
        assert modified_key is not None and modified_key.startswith("storage:files:modified:")
        assert deleted_key is None
        assert context.status.events == 3
        assert context.status.failures == 0

    run(scenario)


def test_only_files_matching_the_pattern(tmp_path: Path) -> None:
    async def scenario() -> None:
        (tmp_path / "sub" / "deep").mkdir(parents=True)
        submitted = Submits()
        async with watching(storage(tmp_path, submitted, pattern="*.csv")):
            (tmp_path / "a.txt").write_text("no")
            (tmp_path / "sub" / "deep" / "b.CSV").write_text("no: case matters")
            (tmp_path / "sub" / "deep" / "c.csv").write_text("yes")
            (tmp_path / "d.csv").write_text("yes")
            await until_seen(submitted, "created", "d.csv")
            await until_seen(submitted, "created", "sub/deep/c.csv")
        assert sorted(seen(submitted)) == [("created", "d.csv"), ("created", "sub/deep/c.csv")]

    run(scenario)


def test_a_pattern_with_a_slash_matches_the_relative_path(tmp_path: Path) -> None:
    async def scenario() -> None:
        for name in ("incoming", "other"):
            (tmp_path / name).mkdir()
        submitted = Submits()
        async with watching(storage(tmp_path, submitted, pattern="incoming/*.csv")):
            (tmp_path / "other" / "a.csv").write_text("no")
            (tmp_path / "a.csv").write_text("no")
            (tmp_path / "incoming" / "a.csv").write_text("yes")
            await until_seen(submitted, "created", "incoming/a.csv")
        assert seen(submitted) == [("created", "incoming/a.csv")]

    run(scenario)


def test_only_the_kinds_in_events(tmp_path: Path) -> None:
    async def scenario() -> None:
        submitted = Submits()
        async with watching(storage(tmp_path, submitted, events=["deleted"])):
            file = tmp_path / "a.txt"
            file.write_text("1")
            await asyncio.sleep(0.15)
            file.write_text("2")
            await asyncio.sleep(0.15)
            file.unlink()
            await until_seen(submitted, "deleted", "a.txt")
        assert seen(submitted) == [("deleted", "a.txt")]

    run(scenario)


def test_new_and_moved_in_directories(tmp_path: Path) -> None:
    async def scenario() -> None:
        watched = tmp_path / "watched"
        watched.mkdir()
        outside = tmp_path / "batch"
        (outside / "inner").mkdir(parents=True)
        (outside / "one.txt").write_text("1")
        (outside / "inner" / "two.txt").write_text("2")
        submitted = Submits()
        async with watching(storage(watched, submitted)):
            # A file written at once into a new directory, before its watch may exist.
            (watched / "new").mkdir()
            (watched / "new" / "a.txt").write_text("a")
            await until_seen(submitted, "created", "new/a.txt")
            # A tree moved in raises one notification, for its top directory.
            os.rename(outside, watched / "batch")
            await until_seen(submitted, "created", "batch/one.txt")
            await until_seen(submitted, "created", "batch/inner/two.txt")
            shutil.rmtree(watched / "batch")
            await until_seen(submitted, "deleted", "batch/one.txt")
            await until_seen(submitted, "deleted", "batch/inner/two.txt")
            await asyncio.sleep(0.2)
        # Directories are never events of their own.
        assert sorted(set(seen(submitted))) == [
            ("created", "batch/inner/two.txt"), ("created", "batch/one.txt"),
            ("created", "new/a.txt"),
            ("deleted", "batch/inner/two.txt"), ("deleted", "batch/one.txt"),
        ]

    run(scenario)


def test_a_missing_directory_is_a_failure_until_it_appears(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "later"
        submitted = Submits()
        context = storage(path, submitted)
        async with watching(context, wait=False):
            await eventually(lambda: context.status.failures >= 1, what="a failure")
            assert not context.status.connected
            assert str(path) in (context.status.last_error or "")
            path.mkdir()
            await until_watching(context)
            assert context.status.connected
            (path / "a.txt").write_text("here")
            await until_seen(submitted, "created", "a.txt")

    run(scenario)


def test_a_removed_directory_is_a_failure_until_it_is_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "watched"
        path.mkdir()
        (path / "old.txt").write_text("old")
        submitted = Submits()
        context = storage(path, submitted)
        async with watching(context):
            shutil.rmtree(path)
            await until_seen(submitted, "deleted", "old.txt")
            await eventually(lambda: context.status.failures >= 1, what="a failure")
            assert "removed" in (context.status.last_error or "")
            assert not context.status.connected
            path.mkdir()
            await until_watching(context)
            (path / "new.txt").write_text("new")
            await until_seen(submitted, "created", "new.txt")

    run(scenario)


def test_changes_while_paused_are_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        submitted = Submits()
        context = storage(tmp_path, submitted)
        async with watching(context) as source:
            await source.pause()
            (tmp_path / "during.txt").write_text("while paused")
            await until_watching(context, False)
            await asyncio.sleep(0.15)
            await source.resume()
            await until_watching(context)
            (tmp_path / "after.txt").write_text("after resume")
            await until_seen(submitted, "created", "after.txt")
            await asyncio.sleep(0.15)
        assert seen(submitted) == [("created", "after.txt")]

    run(scenario)


def test_a_failing_queue_loses_that_event_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        submitted = Submits(fail=1)
        context = storage(tmp_path, submitted)
        async with watching(context):
            (tmp_path / "a.txt").write_text("lost")
            await eventually(lambda: context.status.failures == 1, what="a failure")
            (tmp_path / "b.txt").write_text("kept")
            await until_seen(submitted, "created", "b.txt")
        assert seen(submitted) == [("created", "b.txt")]
        assert context.status.events == 2

    run(scenario)


def test_a_long_path_makes_a_hashed_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        submitted = Submits()
        async with watching(storage(tmp_path, submitted)):
            name = "x" * 250
            (tmp_path / name).write_text("long")
            await until_seen(submitted, "created", name)
        [(_, key)] = submitted.accepted
        assert key is not None and len(key) <= 256 and name not in key

    run(scenario)


@pytest.mark.parametrize(("kinds", "exists", "order"), [
    ({"created"}, True, ["created"]),
    ({"created", "modified"}, True, ["created"]),
    ({"modified"}, True, ["modified"]),
    ({"created", "deleted"}, False, ["created", "deleted"]),
    ({"modified", "deleted"}, False, ["modified", "deleted"]),
    ({"deleted"}, False, ["deleted"]),
    ({"created", "deleted"}, True, ["deleted", "created"]),
    ({"deleted", "modified"}, True, ["deleted", "created"]),
])
def test_the_order_of_one_paths_changes_in_a_batch(
    kinds: set[Any], exists: bool, order: list[str],
) -> None:
    assert _sequence(kinds, exists=exists) == order
