"""The storage source: files created, modified or deleted under a directory invoke the
trigger's function asynchronously.

The directory (``source.path``; a relative path is taken from the server's working
directory) is watched recursively with watchfiles (inotify, FSEvents or
ReadDirectoryChangesW; no polling). Changes are grouped over ``debounce_ms``; a change is
delivered when its kind is one of ``source.events`` and its path matches ``source.pattern``
(fnmatch, case-sensitive): a pattern without ``/`` matches the file name at any depth
(``*.csv``, ``report-*.json``), one with ``/`` matches the path relative to the directory
(``incoming/*.csv``). Directories themselves are never delivered; the files of a directory
that appears (``mv batch/ watched/``) are delivered as created. Subdirectories the server
may not read are left out rather than failing the whole watch.

Within one group, a path's changes are ordered from what is on disk now (the group is a set):
a file that exists was deleted before it was created again, one that does not was deleted
last; a modification in the group of a file's creation is part of creating it.

Guarantee: at most once, and only while watching. Changes made while the server is down,
while the trigger is paused, or while the directory is missing are not seen, and nothing is
replayed afterwards. An event that could not be queued is recorded as a failure and dropped.

Each created or modified event is submitted with the idempotency key
``storage:{trigger}:{kind}:{ctime_ns}:{relative path}`` (the relative path replaced by its
SHA-256 when the key would pass 256 characters): the same state of a file reported twice —
by two notifications of one write, a directory scan racing the watcher, or two servers
watching one shared directory — makes one invocation, while a new write (a new ctime, which
unlike mtime cannot be set back by ``cp -p``) makes another. Deletions carry no key.

A missing directory, or one removed or replaced while watched, is a failure: the status shows
it (``connected`` false, ``last_error``) and the watch is tried again with backoff, so the
trigger recovers on its own once the directory exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
from contextlib import aclosing
from fnmatch import fnmatchcase
from typing import Any

import watchfiles

from ember.model.trigger import StorageEvent, StorageSource
from ember.triggers.base import MAX_KEY, BackgroundSource, SourceContext

log = logging.getLogger(__name__)

_KINDS: dict[watchfiles.Change, StorageEvent] = {
    watchfiles.Change.added: "created",
    watchfiles.Change.modified: "modified",
    watchfiles.Change.deleted: "deleted",
}


class StorageTriggerSource(BackgroundSource):
    """Submits an event for each matching change of a StorageSource's directory."""

    debounce_ms = 50
    """Changes are grouped over this long before they are delivered."""

    check_ms = 1_000
    """While no changes come, how often the source checks that its directory is still there
    (a watch on a removed directory sees nothing more)."""

    def __init__(self, context: SourceContext) -> None:
        super().__init__(context)
        source = context.trigger.source
        if not isinstance(source, StorageSource):
            raise TypeError(f"trigger {context.trigger.name!r} has no storage source")
        self.source = source
        # abspath, not resolve(): watchfiles reports paths under the path it was given.
        self.root = os.path.abspath(os.path.expanduser(source.path))
        self._halt: asyncio.Event | None = None
        self._dirs: set[str] = set()

    async def pause(self) -> None:
        await super().pause()
        if self._halt is not None:
            self._halt.set()

    async def stop(self) -> None:
        # The watcher thread checks its stop event between steps; a plain cancel would wait
        # for its timeout (check_ms) before the task can end.
        if self._halt is not None:
            self._halt.set()
        await super().stop()

    async def run(self) -> None:
        while True:
            await self.running.wait()
            # One stop event per watch: a resume right after a pause must not revive the old
            # watch, whose batch may hold changes made while paused.
            halt = asyncio.Event()
            self._halt = halt
            await self._watch(halt)

    async def _watch(self, halt: asyncio.Event) -> None:
        """Watch until ``halt`` is set; raises OSError when the directory is missing, or
        once it is removed or replaced."""
        identity = self._identity()
        self._dirs = {top for top, _, _ in os.walk(self.root)}
        status = self.context.status
        status.connected = True
        status.details["path"] = self.root
        # "watching" is false while paused: changes made then are not seen.
        status.details["watching"] = True
        watch = watchfiles.awatch(
            self.root, watch_filter=None, debounce=self.debounce_ms, stop_event=halt,
            rust_timeout=self.check_ms, yield_on_timeout=True, force_polling=False,
            recursive=True, ignore_permission_denied=True,
        )
        try:
            # aclosing: leaving the loop early closes the watcher now, not when collected.
            async with aclosing(watch):
                async for changes in watch:
                    if halt.is_set():
                        return  # paused or stopping: this batch is dropped
                    await self._deliver(changes)
                    if self._identity(missing_ok=True) != identity:
                        raise FileNotFoundError(
                            f"the watched directory {self.root} was removed")
        finally:
            status.details["watching"] = False

    def _identity(self, missing_ok: bool = False) -> tuple[int, int] | None:
        """The directory's (device, inode); raises OSError when it is missing or unreadable
        (unless ``missing_ok``: then None)."""
        try:
            info = os.stat(self.root)
            if not stat.S_ISDIR(info.st_mode):
                raise NotADirectoryError(f"{self.root} is not a directory")
            with os.scandir(self.root):  # unreadable: fail now rather than watch nothing
                pass
        except FileNotFoundError as exc:
            if missing_ok:
                return None
            raise FileNotFoundError(f"the directory {self.root} does not exist") from exc
        except OSError:
            if missing_ok:
                return None
            raise
        return info.st_dev, info.st_ino

    async def _deliver(self, changes: set[tuple[watchfiles.Change, str]]) -> None:
        by_path: dict[str, set[StorageEvent]] = {}
        for change, path in changes:
            by_path.setdefault(path, set()).add(_KINDS[change])
        for path, kinds in list(by_path.items()):
            if "created" in kinds and os.path.isdir(path):
                self._add_tree(path, by_path)
        for path in sorted(by_path):
            if self.paused.is_set():
                return  # paused while delivering: the rest of the batch is dropped
            await self._deliver_path(path, by_path[path])

    def _add_tree(self, top: str, by_path: dict[str, set[StorageEvent]]) -> None:
        """Count the files under a new directory as created: their own notifications may be
        lost, sent before the watch of the new directory began (or never, for a move)."""
        for dirpath, _, files in os.walk(top):
            self._dirs.add(dirpath)  # its deletion is then known to be a directory's
            for name in files:
                by_path.setdefault(os.path.join(dirpath, name), set()).add("created")

    async def _deliver_path(self, path: str, kinds: set[StorageEvent]) -> None:
        rel = os.path.relpath(path, self.root).replace(os.sep, "/")
        if rel == "." or rel.startswith("../"):
            return
        try:
            info: os.stat_result | None = os.stat(path)
        except OSError:
            info = None
        if info is not None and stat.S_ISDIR(info.st_mode):
            self._dirs.add(path)
            return
        if info is None and path in self._dirs:
            self._dirs.discard(path)
            return
        if not self._matches(rel):
            return
        for kind in _sequence(kinds, exists=info is not None):
            if kind in self.source.events:
                await self._submit(kind, path, rel, None if kind == "deleted" else info)

    def _matches(self, rel: str) -> bool:
        pattern = self.source.pattern
        if "/" not in pattern and fnmatchcase(rel.rpartition("/")[2], pattern):
            return True
        return fnmatchcase(rel, pattern)

    async def _submit(self, kind: StorageEvent, path: str, rel: str,
                      info: os.stat_result | None) -> None:
        context = self.context
        data: dict[str, Any] = {
            "path": path, "relative_path": rel, "kind": kind,
            "size": info.st_size if info is not None else None,
            "mtime": info.st_mtime if info is not None else None,
        }
        event = context.event(type=f"storage.{kind}", subject=rel, data=data,
                              extensions={"emberpath": rel})
        key = None
        if info is not None:
            key = f"storage:{context.trigger.name}:{kind}:{info.st_ctime_ns}:{rel}"
            if len(key) > MAX_KEY:
                digest = hashlib.sha256(rel.encode()).hexdigest()
                key = f"storage:{context.trigger.name}:{kind}:{info.st_ctime_ns}:{digest}"
        context.received()
        try:
            await context.submit(event, idempotency_key=key)
        except Exception as exc:  # at most once: record it and go on watching
            context.failed(exc)
            context.status.dropped += 1
            log.warning("storage trigger %s: %s %s not submitted: %s", context.trigger.name,
                        kind, rel, exc)


def _sequence(kinds: set[StorageEvent], *, exists: bool) -> list[StorageEvent]:
    """One path's changes from one batch, in the order they must have happened."""
    if "deleted" in kinds and exists:
        return ["deleted", "created"]  # it is there again, so it came back after
    order: list[StorageEvent] = []
    if "created" in kinds:
        order.append("created")
    elif "modified" in kinds:
        order.append("modified")
    if "deleted" in kinds:
        order.append("deleted")
    return order
