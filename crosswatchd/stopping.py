"""Work that ends when the daemon stops: the periodic passes (watchlist, reconcile) run each
pass through :func:`until_stopped`, so a SIGTERM cancels a pass under way at once instead of
waiting for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

__all__ = ["until_stopped"]


async def until_stopped(work: Awaitable[object], stop: asyncio.Event) -> None:
    """Run *work* unless *stop* is set first, then cancel it. Re-raises what *work* raised;
    returns quietly when it was cancelled because of *stop*."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.done() and not task.cancelled():
        task.result()  # re-raise what the pass raised
