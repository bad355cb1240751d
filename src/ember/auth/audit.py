"""The audit of control-plane changes: recorded off the event loop, kept for a while."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from ember.clock import Clock, utcnow
from ember.store.keys import SqlKeyStore

log = logging.getLogger(__name__)


class AuditTrail:
    def __init__(self, store: SqlKeyStore, clock: Clock, *, retention_s: float,
                 purge_interval_s: float = 3600.0) -> None:
        self._store = store
        self._clock = clock
        self._retention_s = retention_s
        self._interval_s = purge_interval_s
        self._task: asyncio.Task[None] | None = None

    async def record(self, key: str, method: str, path: str, status: int) -> None:
        await asyncio.to_thread(self._store.audit, utcnow(self._clock), key, method, path,
                                status)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._purge())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _purge(self) -> None:
        while True:
            before = utcnow(self._clock) - timedelta(seconds=self._retention_s)
            try:
                await asyncio.to_thread(self._store.purge_audit, before)
            except Exception:
                log.exception("purging the audit failed; trying again later")
            await self._clock.sleep(self._interval_s)
