"""Storage backends for tests that must hold on both: SQLite files and PostgreSQL.

A fixture parametrized with :data:`BACKENDS` asks :func:`outbox_for` for the outbox of its
backend (:func:`cache_for` for the id cache, :func:`tokens_for` for a token store); the
PostgreSQL one lives in a fresh database of the session's throwaway cluster (``pg_url`` in
conftest.py), which is only started when a PostgreSQL test runs. :func:`save_token` seeds a
token into a PostgreSQL database as ``crosswatchd auth`` would.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crosswatchd import postgres
from crosswatchd.models import DEFAULT_PROFILE
from crosswatchd.outbox import Outbox
from crosswatchd.outbox.queries import PG_MIGRATIONS
from crosswatchd.resolve import IdCache
from crosswatchd.storage import PG_STORES
from crosswatchd.tokens import Token, TokenStore
from crosswatchd.tokens.files import TokenFile
from crosswatchd.tokens.shared import TokenTable

__all__ = ["BACKENDS", "cache_for", "outbox_for", "save_token", "tokens_for"]

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


@contextlib.asynccontextmanager
async def cache_for(
    request: pytest.FixtureRequest, tmp_path: Path, **kwargs: Any
) -> AsyncIterator[IdCache]:
    """An empty id cache of ``request.param``'s backend, closed after the block."""
    if request.param == "sqlite":
        cache = await IdCache.open(tmp_path / "cache.sqlite3", **kwargs)
        try:
            yield cache
        finally:
            await cache.close()
        return
    url: str = request.getfixturevalue("pg_url")
    db = await postgres.connect(url, stores=PG_STORES)
    cache = await IdCache.on(db, **kwargs)
    try:
        yield cache
    finally:
        await cache.close()
        await db.close()


@contextlib.asynccontextmanager
async def tokens_for(
    backend: str, where: Path | str, provider: str = "trakt", profile: str = DEFAULT_PROFILE
) -> AsyncIterator[TokenStore]:
    """A token store of *backend*: a file in the data dir *where*, or a row of the database
    at the URL *where* (its table followed while the block runs)."""
    if backend == "sqlite":
        yield TokenFile(Path(where), provider, profile)
        return
    db = await postgres.connect(str(where), stores=PG_STORES)
    table = TokenTable(db, resync_s=0.5, retry_s=0.1)
    await table.start()
    try:
        yield table.store(provider, profile)
    finally:
        await table.close()
        await db.close()


async def save_token(
    url: str, provider: str, answer: dict[str, Any], profile: str = DEFAULT_PROFILE
) -> Token:
    """Store *answer* as the token of *profile* on *provider* in the database at *url*."""
    async with tokens_for("postgresql", url, provider, profile) as store:
        return await store.save(answer)
