"""A throw-away copy of an outbox, for dry runs (``import --dry-run``, ``reconcile
--dry-run``): they enqueue for real into the copy, so what they report is exactly what a real
run would enqueue (the dedupe against the outbox and among the new plays alike), and the real
outbox is only read. The copy is :meth:`Outbox.scratch` (SQLite: a file copy; PostgreSQL: one
transaction, rolled back)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from crosswatchd.outbox.store import Outbox

__all__ = ["scratch_copy"]


@contextlib.asynccontextmanager
async def scratch_copy(outbox: Outbox | None) -> AsyncIterator[Outbox]:
    """A copy of *outbox* (same targets and dedupe window; an empty outbox with one target,
    ``dry-run``, in a temporary directory when None), gone on exit."""
    if outbox is not None:
        async with outbox.scratch() as scratch:
            yield scratch
        return
    with tempfile.TemporaryDirectory(prefix="crosswatchd-dry-run-") as tmp:
        empty = await Outbox.open(
            Path(tmp) / "outbox.sqlite3", targets={"default": ["dry-run"]}, dedupe_window_s=4 * 3600
        )
        try:
            yield empty
        finally:
            await empty.close()
