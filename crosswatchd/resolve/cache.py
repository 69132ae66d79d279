"""The resolver's persistent id cache: key → answer, behind the storage seam.

One table, ``id_cache`` (``key`` text primary key, ``found`` 0 | 1, ``value`` JSON text,
``step``, ``stored_at`` and ``expires_at`` in Unix seconds): in its own SQLite file
(``data_dir/cache.sqlite3``, WAL, migrated by ``PRAGMA user_version``) or in the shared
PostgreSQL database (store ``cache``), so every replica learns what one resolved. The
statements are named queries, one file per dialect (``cache_queries.sql``,
``cache_queries.pg.sql``), the schema ``cache_schema.sql`` / ``cache_schema.pg.sql``. An
in-memory LRU sits in front in each process, so a warm lookup never touches the database. Keys
are opaque here; :mod:`crosswatchd.resolve.keys` says what they are.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from crosswatchd import sqlfiles
from crosswatchd.db import Database, SqliteDatabase
from crosswatchd.sqlite import connect

__all__ = ["MIGRATIONS", "PG_MIGRATIONS", "CacheEntry", "CacheQueries", "CacheStats", "IdCache"]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class CacheQueries:
    """The id cache's named statements (``cache_queries.sql`` says what each does)."""

    get: str
    get_many: str
    put: str
    forget_negative: str
    purge_expired: str


_PACKAGE: Final = "crosswatchd.resolve"
_QUERIES: Final = {
    "sqlite": sqlfiles.queries(_PACKAGE, "cache_queries.sql", CacheQueries),
    "postgresql": sqlfiles.queries(_PACKAGE, "cache_queries.pg.sql", CacheQueries),
}
#: The migrations of the SQLite file and of the PostgreSQL store ``cache``.
MIGRATIONS: Final = sqlfiles.migrations(_PACKAGE, "cache_schema.sql")
PG_MIGRATIONS: Final = sqlfiles.migrations(_PACKAGE, "cache_schema.pg.sql")


def cache_queries(dialect: str) -> CacheQueries:
    """The id cache's statements in *dialect* (``"sqlite"`` or ``"postgresql"``)."""
    return _QUERIES[dialect]


#: Keys asked for in one query by :meth:`IdCache.prefetch`.
_PREFETCH_BATCH: Final = 500


@dataclass(slots=True)
class CacheEntry:
    """One cached answer.

    ``value`` is the stored JSON object for a positive answer and ``None`` for a negative one
    (then ``reason`` says what was not found). ``step`` is the resolver step that produced it;
    ``expires_at`` is in the cache clock's seconds (Unix time by default). ``memo`` is a
    scratch slot where the reader may keep its decoded form of ``value`` while the entry sits
    in memory (never stored); treat the other fields as read-only.
    """

    value: dict[str, Any] | None
    step: str
    expires_at: float
    reason: str = ""
    memo: Any = field(default=None, compare=False, repr=False)

    @property
    def found(self) -> bool:
        """True for a positive answer."""
        return self.value is not None


@dataclass(slots=True)
class CacheStats:
    """Counters since open: hits served from memory, from SQLite, and misses."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0


class IdCache:
    """Key → answer cache in a :class:`~crosswatchd.db.Database` (its own SQLite file, or the
    shared PostgreSQL database), with an in-memory LRU in front.

    Keys are opaque strings chosen by the resolver (``item:movie:imdb:tt…``,
    ``plex:plex:meta:123`` …). Positive answers live ``positive_ttl_s``, negative ones
    ``negative_ttl_s`` seconds, measured by ``unix_s`` (Unix seconds). Expired rows are ignored on
    read and deleted by :meth:`purge_expired` (also run on open). Use :meth:`open` (a file) or
    :meth:`on` (a migrated database); one instance per process.
    """

    def __init__(
        self,
        db: Database,
        *,
        positive_ttl_s: float,
        negative_ttl_s: float,
        unix_s: Clock = time.time,
        memory_size: int = 200_000,
        owns_db: bool = True,
    ) -> None:
        self._db = db
        self._q = cache_queries(db.dialect)
        self._owns_db = owns_db
        self.positive_ttl_s = float(positive_ttl_s)
        self.negative_ttl_s = float(negative_ttl_s)
        self._unix_s = unix_s
        self._memory: OrderedDict[str, CacheEntry] = OrderedDict()
        self._memory_size = max(1, memory_size)
        # Keys known to be absent from the database (until the given clock time), so repeated
        # misses do not each cost a query. Every write through this instance clears them.
        self._absent: dict[str, float] = {}
        self.stats = CacheStats()

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        positive_ttl_s: float,
        negative_ttl_s: float,
        unix_s: Clock = time.time,
        memory_size: int = 200_000,
    ) -> IdCache:
        """Open (creating and migrating as needed) the cache file at *path*.

        ``memory_size`` is the number of entries kept in the in-memory LRU. Raises
        :class:`~crosswatchd.sqlite.SchemaTooNewError` for a file a newer crosswatchd wrote.
        """
        conn = await connect(path, migrations=MIGRATIONS, what="id cache")
        return await cls.on(
            SqliteDatabase(conn),
            positive_ttl_s=positive_ttl_s,
            negative_ttl_s=negative_ttl_s,
            unix_s=unix_s,
            memory_size=memory_size,
            owns_db=True,
        )

    @classmethod
    async def on(
        cls,
        db: Database,
        *,
        positive_ttl_s: float,
        negative_ttl_s: float,
        unix_s: Clock = time.time,
        memory_size: int = 200_000,
        owns_db: bool = False,
    ) -> IdCache:
        """The cache in *db* (migrated: for PostgreSQL, store ``cache`` of
        :data:`~crosswatchd.storage.PG_STORES`); expired rows are purged first. With
        *owns_db*, :meth:`close` closes *db*."""
        cache = cls(
            db,
            positive_ttl_s=positive_ttl_s,
            negative_ttl_s=negative_ttl_s,
            unix_s=unix_s,
            memory_size=memory_size,
            owns_db=owns_db,
        )
        try:
            await cache.purge_expired()
        except BaseException:
            if owns_db:
                await db.close()
            raise
        return cache

    async def close(self) -> None:
        """Close the database if the cache owns it (pending writes are committed already)."""
        if self._owns_db:
            await self._db.close()

    # -- reads ------------------------------------------------------------------------------

    def peek(self, key: str) -> CacheEntry | None:
        """The unexpired in-memory entry for *key*, without touching the database."""
        entry = self._memory.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._unix_s():
            del self._memory[key]
            return None
        self._memory.move_to_end(key)
        self.stats.memory_hits += 1
        return entry

    async def get(self, key: str) -> CacheEntry | None:
        """The unexpired entry for *key* (memory first, then the database), or ``None``."""
        entry = self.peek(key)
        if entry is not None:
            return entry
        now = self._unix_s()
        if self._absent.get(key, 0.0) > now:
            self.stats.misses += 1
            return None
        row = await self._db.fetch_one(self._q.get, {"key": key, "now": now})
        if row is None:
            self.stats.misses += 1
            if len(self._absent) >= self._memory_size:
                self._absent.clear()
            self._absent[key] = now + self.negative_ttl_s
            return None
        self.stats.disk_hits += 1
        data = orjson.loads(row["value"])
        step, expires_at = row["step"], row["expires_at"]
        if row["found"]:
            entry = CacheEntry(value=data, step=step, expires_at=expires_at)
        else:
            entry = CacheEntry(value=None, step=step, expires_at=expires_at, reason=data["reason"])
        self._remember(key, entry)
        return entry

    async def prefetch(self, keys: Iterable[str]) -> int:
        """Bring the entries of *keys* into memory in a few queries (500 keys each), and note
        the keys the database does not hold as absent, as :meth:`get` does for a miss: a bulk
        caller (a file import) then resolves item after item without a query each. Keys
        already in memory or known absent are not asked. Returns how many entries were
        loaded."""
        now = self._unix_s()
        wanted = [
            k
            for k in dict.fromkeys(keys)
            if k not in self._memory and self._absent.get(k, 0.0) <= now
        ]
        loaded = 0
        for start in range(0, len(wanted), _PREFETCH_BATCH):
            batch = wanted[start : start + _PREFETCH_BATCH]
            rows = await self._db.fetch(
                self._q.get_many, {"keys": orjson.dumps(batch).decode(), "now": now}
            )
            found = set()
            for row in rows:
                data = orjson.loads(row["value"])
                step, expires_at = row["step"], row["expires_at"]
                if row["found"]:
                    entry = CacheEntry(value=data, step=step, expires_at=expires_at)
                else:
                    entry = CacheEntry(
                        value=None, step=step, expires_at=expires_at, reason=data["reason"]
                    )
                self._remember(row["key"], entry)
                found.add(row["key"])
            loaded += len(found)
            for key in batch:
                if key not in found:
                    if len(self._absent) >= self._memory_size:
                        self._absent.clear()
                    self._absent[key] = now + self.negative_ttl_s
        return loaded

    def _remember(self, key: str, entry: CacheEntry) -> None:
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self._memory_size:
            self._memory.popitem(last=False)

    # -- writes -----------------------------------------------------------------------------

    async def put(self, keys: Iterable[str], value: dict[str, Any], *, step: str) -> None:
        """Store a positive answer (a JSON-able object) under every key in *keys*."""
        now = self._unix_s()
        entry = CacheEntry(value=value, step=step, expires_at=now + self.positive_ttl_s)
        await self._write(list(dict.fromkeys(keys)), entry, orjson.dumps(value).decode(), now)

    async def put_negative(self, key: str, reason: str, *, step: str) -> None:
        """Store "nothing found" for *key*, with a one-line *reason*."""
        now = self._unix_s()
        entry = CacheEntry(
            value=None, step=step, expires_at=now + self.negative_ttl_s, reason=reason
        )
        await self._write([key], entry, orjson.dumps({"reason": reason}).decode(), now)

    async def _write(self, keys: list[str], entry: CacheEntry, raw: str, now: float) -> None:
        for key in keys:  # memory first, so a concurrent reader sees it at once
            self._remember(key, entry)
            self._absent.pop(key, None)
        found = int(entry.found)
        await self._db.execute_many(
            self._q.put,
            [
                {
                    "key": key,
                    "found": found,
                    "value": raw,
                    "step": entry.step,
                    "now": now,
                    "expires_at": entry.expires_at,
                }
                for key in keys
            ],
        )

    async def forget_negative(self, step: str | None = None) -> int:
        """Drop negative answers (of one *step*, or all) so the next lookup asks again.

        Call before retrying parked items (``crosswatchd unresolved retry``). Returns the number
        of rows deleted.
        """
        for key in [
            k for k, e in self._memory.items() if not e.found and (step is None or e.step == step)
        ]:
            del self._memory[key]
        self._absent.clear()
        return await self._db.execute(self._q.forget_negative, {"step": step})

    async def purge_expired(self) -> int:
        """Delete expired rows; returns how many."""
        return await self._db.execute(self._q.purge_expired, {"now": self._unix_s()})
