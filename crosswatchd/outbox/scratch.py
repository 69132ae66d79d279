"""A throw-away copy of an outbox, for dry runs (``import --dry-run``, ``reconcile
--dry-run``): they enqueue for real into the copy, so what they report is exactly what a real
run would enqueue (the dedupe against the outbox and among the new plays alike), and the real
outbox is only read."""

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
    ``dry-run``, when None) in a temporary directory, removed on exit."""
    with tempfile.TemporaryDirectory(prefix="crosswatchd-dry-run-") as tmp:
        path = Path(tmp) / "outbox.sqlite3"
        if outbox is not None:
            await outbox.copy_to(path)
        scratch = await Outbox.open(
            path,
            targets=outbox.targets if outbox is not None else {"default": ["dry-run"]},
            dedupe_window_s=outbox.dedupe_window_s if outbox is not None else 4 * 3600,
        )
        try:
            yield scratch
        finally:
            await scratch.close()
