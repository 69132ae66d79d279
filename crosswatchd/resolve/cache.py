"""The resolver's persistent id cache: key → answer, in its own SQLite file.

One table, ``id_cache`` (``key`` TEXT primary key, ``found`` 0 | 1, ``value`` JSON text,
``step``, ``stored_at`` and ``expires_at`` in Unix seconds), in WAL mode and migrated by
``PRAGMA user_version`` (:func:`crosswatchd.sqlite.connect`). An in-memory LRU sits in front,
so a warm lookup never touches SQLite. Keys are opaque here; :mod:`crosswatchd.resolve.keys`
says what they are.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiosqlite
import orjson

from crosswatchd.sqlite import connect

__all__ = ["CacheEntry", "CacheStats", "IdCache"]

Clock = Callable[[], float]

#: Keys asked for in one query by :meth:`IdCache.prefetch`.
_PREFETCH_BATCH: Final = 500

_MIGRATIONS: Final = (
    """
    CREATE TABLE id_cache (
        key        TEXT PRIMARY KEY,
        found      INTEGER NOT NULL CHECK (found IN (0, 1)),
        value      TEXT NOT NULL,
        step       TEXT NOT NULL,
        stored_at  REAL NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX id_cache_expires ON id_cache (expires_at);
    """,
)


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
    """Key → answer cache in its own SQLite file (WAL), with an in-memory LRU in front.

    Keys are opaque strings chosen by the resolver (``item:movie:imdb:tt…``,
    ``plex:plex:meta:123`` …). Positive answers live ``positive_ttl_s``, negative ones
    ``negative_ttl_s`` seconds, measured by ``unix_s`` (Unix seconds). Expired rows are ignored on
    read and deleted by :meth:`purge_expired` (also run on open). The schema is migrated by
    ``PRAGMA user_version``. Rows are read by column name (``row_factory = sqlite3.Row``). Use
    :meth:`open`; one instance per file and process.
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        *,
        positive_ttl_s: float,
        negative_ttl_s: float,
        unix_s: Clock = time.time,
        memory_size: int = 200_000,
    ) -> None:
        self._db = db
        self._db.row_factory = sqlite3.Row
        self.positive_ttl_s = float(positive_ttl_s)
        self.negative_ttl_s = float(negative_ttl_s)
        self._unix_s = unix_s
        self._memory: OrderedDict[str, CacheEntry] = OrderedDict()
        self._memory_size = max(1, memory_size)
        # Keys known to be absent from the file (until the given clock time), so repeated
        # misses do not each cost a query. Every write through this instance clears them.
        self._absent: dict[str, float] = {}
        self._write_lock = asyncio.Lock()
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
        db = await connect(path, migrations=_MIGRATIONS, what="id cache", autocommit=False)
        cache = cls(
            db,
            positive_ttl_s=positive_ttl_s,
            negative_ttl_s=negative_ttl_s,
            unix_s=unix_s,
            memory_size=memory_size,
        )
        await cache.purge_expired()
        return cache

    async def close(self) -> None:
        """Close the database (pending writes are committed already)."""
        await self._db.close()

    # -- reads ------------------------------------------------------------------------------

    def peek(self, key: str) -> CacheEntry | None:
        """The unexpired in-memory entry for *key*, without touching SQLite."""
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
        """The unexpired entry for *key* (memory first, then SQLite), or ``None``."""
        entry = self.peek(key)
        if entry is not None:
            return entry
        now = self._unix_s()
        if self._absent.get(key, 0.0) > now:
            self.stats.misses += 1
            return None
        async with self._db.execute(
            "SELECT found, value, step, expires_at FROM id_cache WHERE key = ? AND expires_at > ?",
            (key, now),
        ) as cur:
            row = await cur.fetchone()
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
        the keys the file does not hold as absent, as :meth:`get` does for a miss: a bulk
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
            async with self._db.execute(
                "SELECT key, found, value, step, expires_at FROM id_cache"
                " WHERE key IN (SELECT value FROM json_each(?)) AND expires_at > ?",
                (orjson.dumps(batch).decode(), now),
            ) as cur:
                rows = await cur.fetchall()
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
        rows = [(k, int(entry.found), raw, entry.step, now, entry.expires_at) for k in keys]
        async with self._write_lock:
            await self._db.executemany(
                "INSERT INTO id_cache (key, found, value, step, stored_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET found = excluded.found, value = excluded.value,"
                " step = excluded.step, stored_at = excluded.stored_at,"
                " expires_at = excluded.expires_at",
                rows,
            )
            await self._db.commit()

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
        async with self._write_lock:
            if step is None:
                cur = await self._db.execute("DELETE FROM id_cache WHERE found = 0")
            else:
                cur = await self._db.execute(
                    "DELETE FROM id_cache WHERE found = 0 AND step = ?", (step,)
                )
            await self._db.commit()
        return cur.rowcount

    async def purge_expired(self) -> int:
        """Delete expired rows; returns how many."""
        async with self._write_lock:
            cur = await self._db.execute(
                "DELETE FROM id_cache WHERE expires_at <= ?", (self._unix_s(),)
            )
            await self._db.commit()
        return cur.rowcount
