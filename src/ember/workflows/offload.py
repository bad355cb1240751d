"""Blocking store calls of the workflow engine, run in a thread pool of its own.

``asyncio.to_thread`` lets a cancelled caller go while its thread keeps running: a query
still running when the server closes its database would then finish on a closed pool and
leave its connection open. The engine's calls go through :class:`Offload`, whose
``close`` waits for the ones already running (they are short) before the store closes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class Offload:
    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ember-workflows")

    async def __call__(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.wrap_future(
            self._pool.submit(functools.partial(function, *args, **kwargs)))

    async def close(self) -> None:
        """Wait for the calls already running; later ones are refused (RuntimeError)."""
        await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(self._pool.shutdown, wait=True, cancel_futures=True))
