"""The watchlist pass's state: each side's list as last read, the last pass of each profile,
and the Discover caches. SQLite mode: its own file, ``data_dir/watchlist.sqlite3`` (0600, WAL,
migrations by ``PRAGMA user_version`` through :mod:`crosswatchd.sqlite`); PostgreSQL mode:
tables of the shared database (store ``watchlist``), so a pass on any replica compares with
the last pass of any other. The schema is ``schema.sql`` / ``schema.pg.sql``, every statement
a named query of ``queries.sql`` / ``queries.pg.sql`` (the same names).

Why a file of its own and not tables in the outbox: nothing here is needed to deliver a play,
the outbox keeps the changes themselves (durable, visible), and this state is rewritten
wholesale by every pass that reads a list (a few hundred KB for lists of thousands), which
would only add write traffic to the file every webhook waits on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from crosswatchd import sqlfiles
from crosswatchd.db import Database, SqliteDatabase
from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.providers.base import Activities
from crosswatchd.sqlite import connect

__all__ = [
    "MIGRATIONS",
    "PG_MIGRATIONS",
    "STATE_FILE",
    "PassRecord",
    "StoredSide",
    "WatchlistState",
]

#: The file's name in the data dir.
STATE_FILE: Final = "watchlist.sqlite3"
#: A Discover item without external ids is asked again after this long (Plex may add them).
NO_IDS_TTL_S: Final = 86_400.0
#: A ``matches`` answer is trusted this long (a day when it found nothing).
MATCH_TTL_S: Final = 30 * 86_400.0
NO_MATCH_TTL_S: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class _Queries:
    load_sides: str
    save_side: str
    save_pass: str
    load_passes: str
    load_ids: str
    save_ids: str
    load_match: str
    save_match: str


_PACKAGE: Final = "crosswatchd.watchlist"
_QUERIES: Final = {
    "sqlite": sqlfiles.queries(_PACKAGE, "queries.sql", _Queries),
    "postgresql": sqlfiles.queries(_PACKAGE, "queries.pg.sql", _Queries),
}
#: The migrations of the SQLite file and of the PostgreSQL store ``watchlist``.
MIGRATIONS: Final = sqlfiles.migrations(_PACKAGE, "schema.sql")
PG_MIGRATIONS: Final = sqlfiles.migrations(_PACKAGE, "schema.pg.sql")


def _pack(item: Item) -> list[Any]:
    return [item.kind.value, item.title, item.year, item.ids.as_dict(), item.guid]


def _unpack(row: list[Any]) -> Item:
    kind, title, year, ids, guid = row
    return Item(MediaKind(kind), title, year, ids=Ids.from_dict(ids), guid=guid)


@dataclass(frozen=True, slots=True)
class StoredSide:
    """A side's list as last read: its ``items``, the target's activity ``stamps`` at that
    read (None for Plex), and ``read_at`` (unix s) when the read started."""

    items: list[Item]
    stamps: Activities | None
    read_at: float


@dataclass(frozen=True, slots=True)
class PassRecord:
    """A profile's last pass: ``mode``, when it was tried and last finished (unix s; None:
    never), the sides it could not read with why, and the last planned pass's summary."""

    mode: str
    tried_at: float
    finished_at: float | None = None
    errors: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] | None = None


class WatchlistState:
    """The state in a :class:`~crosswatchd.db.Database`. Create with :meth:`open` (the file)
    or :meth:`on` (a migrated database), close with :meth:`close`; :meth:`save` is one
    transaction."""

    def __init__(
        self, db: Database, unix_s: Callable[[], float] = time.time, *, owns_db: bool = True
    ) -> None:
        self._db = db
        self._q = _QUERIES[db.dialect]
        self._unix_s = unix_s
        self._owns_db = owns_db

    @classmethod
    async def open(
        cls, data_dir: Path, *, unix_s: Callable[[], float] = time.time
    ) -> WatchlistState:
        """Open (creating and migrating) ``data_dir/watchlist.sqlite3``, mode 0600. Raises
        :class:`~crosswatchd.errors.StorageError` like the outbox for an unusable file."""
        path = Path(data_dir) / STATE_FILE
        conn = await connect(path, migrations=MIGRATIONS, what="watchlist state")
        os.chmod(path, 0o600)
        return cls(SqliteDatabase(conn), unix_s)

    @classmethod
    def on(cls, db: Database, *, unix_s: Callable[[], float] = time.time) -> WatchlistState:
        """The state in *db* (PostgreSQL: store ``watchlist`` migrated); closing it leaves
        *db* open."""
        return cls(db, unix_s, owns_db=False)

    async def close(self) -> None:
        if self._owns_db:
            await self._db.close()

    # -- sides and passes --------------------------------------------------------------------

    async def sides(self, profile: str) -> dict[str, StoredSide]:
        """Every side of *profile* read at least once, by name."""
        rows = await self._db.fetch(self._q.load_sides, {"profile": profile})
        return {
            str(r["side"]): StoredSide(
                [_unpack(row) for row in orjson.loads(r["items"])],
                None if r["stamps"] is None else Activities(orjson.loads(r["stamps"])),
                float(r["read_at"]),
            )
            for r in rows
        }

    async def save(self, profile: str, sides: Mapping[str, StoredSide], record: PassRecord) -> None:
        """Store the sides read by a pass that planned, and its record, in one transaction."""
        async with self._db.transaction() as tx:
            for name, side in sides.items():
                await tx.execute(
                    self._q.save_side,
                    {
                        "profile": profile,
                        "side": name,
                        "items": orjson.dumps([_pack(i) for i in side.items]).decode(),
                        "stamps": None
                        if side.stamps is None
                        else orjson.dumps(side.stamps.stamps).decode(),
                        "read_at": side.read_at,
                    },
                )
            await self._record(profile, record, tx)

    async def record(self, profile: str, record: PassRecord) -> None:
        """Store a pass that did not plan (a side could not be read): its errors; the last
        finished time and summary are kept."""
        await self._record(profile, record, self._db)

    async def _record(self, profile: str, record: PassRecord, db: Database) -> None:
        await db.execute(
            self._q.save_pass,
            {
                "profile": profile,
                "mode": record.mode,
                "tried_at": record.tried_at,
                "finished_at": record.finished_at,
                "errors": orjson.dumps(record.errors).decode(),
                "summary": None
                if record.summary is None
                else orjson.dumps(record.summary).decode(),
            },
        )

    async def passes(self) -> dict[str, PassRecord]:
        """The last pass of every profile that had one."""
        rows = await self._db.fetch(self._q.load_passes)
        return {
            str(r["profile"]): PassRecord(
                mode=str(r["mode"]),
                tried_at=float(r["tried_at"]),
                finished_at=r["finished_at"],
                errors=orjson.loads(r["errors"]),
                summary=None if r["summary"] is None else orjson.loads(r["summary"]),
            )
            for r in rows
        }

    # -- Discover caches -----------------------------------------------------------------------

    async def known_ids(self, rating_keys: Iterable[str]) -> dict[str, Ids]:
        """Cached ids of these Discover ratingKeys (an item without ids only for a day)."""
        params = {
            "keys": orjson.dumps(list(rating_keys)).decode(),
            "fresh_after": self._unix_s() - NO_IDS_TTL_S,
        }
        rows = await self._db.fetch(self._q.load_ids, params)
        return {str(r["rating_key"]): Ids.from_dict(orjson.loads(r["ids"])) for r in rows}

    async def remember_ids(self, found: Mapping[str, Ids]) -> None:
        """Cache the ids read for these ratingKeys (empty :class:`Ids`: it has none)."""
        now = self._unix_s()
        await self._db.execute_many(
            self._q.save_ids,
            [
                {"rating_key": key, "ids": orjson.dumps(ids.as_dict()).decode(), "now": now}
                for key, ids in found.items()
            ],
        )

    async def known_match(self, key: str) -> tuple[bool, str | None]:
        """``(cached, ratingKey)`` of a ``matches`` lookup by identity *key*: ``(False,
        None)`` when not cached or expired, ``(True, None)`` when Discover had none."""
        row = await self._db.fetch_one(self._q.load_match, {"key": key})
        if row is None:
            return False, None
        rating_key, checked_at = row["rating_key"], float(row["checked_at"])
        ttl = MATCH_TTL_S if rating_key else NO_MATCH_TTL_S
        if self._unix_s() - checked_at > ttl:
            return False, None
        return True, rating_key

    async def remember_match(self, keys: Iterable[str], rating_key: str | None) -> None:
        """Cache a ``matches`` answer under every identity key of the item asked for."""
        now = self._unix_s()
        await self._db.execute_many(
            self._q.save_match, [{"key": k, "rating_key": rating_key, "now": now} for k in keys]
        )
