"""Small asyncio helpers shared by the server's parts."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again while it goes on.

    On Python 3.11 ``asyncio.wait_for`` (used by Ember's own queries and inside client
    libraries) can swallow a cancellation that lands as its inner call finishes: a loop
    task cancelled once then carries on, and one that sleeps on a manual clock next would
    never end. What the task raised, if anything, is not re-raised."""
    while task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), 1.0)
    if task is not None and not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()
