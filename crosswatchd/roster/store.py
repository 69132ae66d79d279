"""The roster's table: profiles added at run time (``crosswatchd profile add``), on SQLite
(``data_dir/profiles.sqlite3``) or in the shared PostgreSQL database (store ``profiles``).
Every statement is a named query of ``queries.sql`` / ``queries.pg.sql``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from crosswatchd import sqlfiles
from crosswatchd.db import Database, SqliteDatabase
from crosswatchd.profiles import StoredProfile
from crosswatchd.sqlite import connect

__all__ = ["FILE", "MIGRATIONS", "PG_MIGRATIONS", "ProfileStore"]

#: The SQLite file of the roster, in ``data_dir``.
FILE: Final = "profiles.sqlite3"


@dataclass(frozen=True, slots=True)
class _Queries:
    profiles: str
    add: str
    remove: str
    bump_revision: str
    revision: str


_PACKAGE = "crosswatchd.roster"
_QUERIES: Final = sqlfiles.queries(_PACKAGE, "queries.sql", _Queries)
_PG_QUERIES: Final = sqlfiles.queries(_PACKAGE, "queries.pg.sql", _Queries)
#: Migrations of the SQLite file and of the PostgreSQL store ``profiles``.
MIGRATIONS: Final = sqlfiles.migrations(_PACKAGE, "schema.sql")
PG_MIGRATIONS: Final = sqlfiles.migrations(_PACKAGE, "schema.pg.sql")


def _names(raw: Any) -> tuple[str, ...]:
    try:
        value = orjson.loads(raw) if raw else []
    except orjson.JSONDecodeError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


class ProfileStore:
    """The profiles of the roster in *db*; ``unix_s`` is the wall clock (unix seconds)."""

    def __init__(
        self, db: Database, *, owns_db: bool, unix_s: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._q = _PG_QUERIES if db.dialect == "postgresql" else _QUERIES
        self._owns_db = owns_db
        self._unix_s = unix_s

    @classmethod
    async def open(cls, path: Path) -> ProfileStore:
        """The roster of the SQLite file at *path* (created and migrated when needed). Raises
        :class:`~crosswatchd.errors.StorageError` when it cannot be used."""
        conn = await connect(path, migrations=MIGRATIONS, what="profiles file")
        return cls(SqliteDatabase(conn), owns_db=True)

    @classmethod
    def on(cls, db: Database) -> ProfileStore:
        """The roster in *db*, migrated by its owner; :meth:`close` leaves *db* open."""
        return cls(db, owns_db=False)

    async def close(self) -> None:
        if self._owns_db:
            await self._db.close()

    async def profiles(self) -> list[StoredProfile]:
        """Every stored profile, by name."""
        return [
            StoredProfile(
                name=r["name"],
                plex_accounts=_names(r["plex_accounts"]),
                tautulli_users=_names(r["tautulli_users"]),
                targets=None if r["targets"] is None else _names(r["targets"]),
                webhook_token=r["webhook_token"],
                created_at=float(r["created_at"]),
            )
            for r in await self._db.fetch(self._q.profiles)
        ]

    async def add(self, profile: StoredProfile) -> bool:
        """Store *profile*; False (nothing changed) when its name is taken."""
        async with self._db.transaction() as tx:
            row = await tx.fetch_one(
                self._q.add,
                {
                    "name": profile.name,
                    "plex_accounts": orjson.dumps(list(profile.plex_accounts)).decode(),
                    "tautulli_users": orjson.dumps(list(profile.tautulli_users)).decode(),
                    "targets": (
                        None
                        if profile.targets is None
                        else orjson.dumps(list(profile.targets)).decode()
                    ),
                    "webhook_token": profile.webhook_token,
                    "now": profile.created_at or self._unix_s(),
                },
            )
            if row is None:
                return False
            await tx.execute(self._q.bump_revision)
        return True

    async def remove(self, name: str) -> bool:
        """Delete profile *name*; False when the roster has none of that name."""
        async with self._db.transaction() as tx:
            if await tx.fetch_one(self._q.remove, {"name": name}) is None:
                return False
            await tx.execute(self._q.bump_revision)
        return True

    async def revision(self) -> int:
        """A number that changes with every change of the roster."""
        row = await self._db.fetch_one(self._q.revision)
        return 0 if row is None else int(row["value"])
