"""Storage backends for tests that must hold on both: SQLite files and PostgreSQL.

A fixture parametrized with :data:`BACKENDS` asks :func:`outbox_for` for the outbox of its
backend; the PostgreSQL one lives in a fresh database of the session's throwaway cluster
(``pg_url`` in conftest.py), which is only started when a PostgreSQL test runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crosswatchd import postgres
from crosswatchd.outbox import Outbox
from crosswatchd.outbox.queries import PG_MIGRATIONS

__all__ = ["BACKENDS", "outbox_for"]

#: The parameter list of a fixture that runs its tests on both backends.
BACKENDS = ["sqlite", "postgresql"]


@contextlib.asynccontextmanager
async def outbox_for(
    request: pytest.FixtureRequest, tmp_path: Path, **kwargs: Any
) -> AsyncIterator[Outbox]:
    """An empty outbox of ``request.param``'s backend, closed after the block."""
    if request.param == "sqlite":
        box = await Outbox.open(tmp_path / "outbox.db", **kwargs)
        try:
            yield box
        finally:
            await box.close()
        return
    url: str = request.getfixturevalue("pg_url")
    db = await postgres.connect(url, stores={"outbox": PG_MIGRATIONS})
    box = Outbox.on(db, **kwargs)
    try:
        yield box
    finally:
        await box.close()
        await db.close()
