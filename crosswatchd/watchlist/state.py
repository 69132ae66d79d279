"""The watchlist pass's own SQLite file, ``data_dir/watchlist.sqlite3`` (0600, WAL, migrations
by ``PRAGMA user_version`` through :mod:`crosswatchd.sqlite`): each side's list as last read,
the last pass of each profile, and the Discover caches. The schema is ``schema.sql``, every
statement a named query of ``queries.sql``.

Why a file of its own and not tables in the outbox: nothing here is needed to deliver a play,
the outbox keeps the changes themselves (durable, visible), and this state is rewritten
wholesale by every pass that reads a list (a few hundred KB for lists of thousands), which
would only add write traffic to the file every webhook waits on.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Final

import aiosqlite
import orjson

from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.outbox.queries import named_blocks
from crosswatchd.providers.base import Activities
from crosswatchd.sqlite import connect

__all__ = ["STATE_FILE", "PassRecord", "StoredSide", "WatchlistState"]

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


def _read(name: str) -> str:
    return resources.files("crosswatchd.watchlist").joinpath(name).read_text("utf-8")


def _load_queries() -> _Queries:
    blocks = named_blocks(_read("queries.sql"), "name")
    expected = {f.name for f in fields(_Queries)}
    if set(blocks) != expected:
        raise ValueError(
            f"watchlist queries.sql: expected {sorted(expected)}, got {sorted(blocks)}"
        )
    return _Queries(**blocks)


_Q: Final = _load_queries()
_MIGRATIONS: Final = tuple(named_blocks(_read("schema.sql"), "migration").values())


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
    """The state file. Create with :meth:`open`, close with :meth:`close`. One connection;
    :meth:`save` is one transaction."""

    def __init__(self, conn: aiosqlite.Connection, unix_s: Callable[[], float]) -> None:
        self._conn = conn
        self._conn.row_factory = sqlite3.Row
        self._unix_s = unix_s

    @classmethod
    async def open(
        cls, data_dir: Path, *, unix_s: Callable[[], float] = time.time
    ) -> WatchlistState:
        """Open (creating and migrating) ``data_dir/watchlist.sqlite3``, mode 0600. Raises
        :class:`~crosswatchd.errors.StorageError` like the outbox for an unusable file."""
        path = Path(data_dir) / STATE_FILE
        conn = await connect(path, migrations=_MIGRATIONS, what="watchlist state")
        os.chmod(path, 0o600)
        return cls(conn, unix_s)

    async def close(self) -> None:
        await self._conn.close()

    # -- sides and passes --------------------------------------------------------------------

    async def sides(self, profile: str) -> dict[str, StoredSide]:
        """Every side of *profile* read at least once, by name."""
        rows = await self._conn.execute_fetchall(_Q.load_sides, {"profile": profile})
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
        await self._conn.execute("BEGIN IMMEDIATE")
        try:
            await self._conn.executemany(
                _Q.save_side,
                [
                    {
                        "profile": profile,
                        "side": name,
                        "items": orjson.dumps([_pack(i) for i in side.items]).decode(),
                        "stamps": None
                        if side.stamps is None
                        else orjson.dumps(side.stamps.stamps).decode(),
                        "read_at": side.read_at,
                    }
                    for name, side in sides.items()
                ],
            )
            await self._record(profile, record)
            await self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                await self._conn.execute("ROLLBACK")
            raise

    async def record(self, profile: str, record: PassRecord) -> None:
        """Store a pass that did not plan (a side could not be read): its errors; the last
        finished time and summary are kept."""
        await self._record(profile, record)

    async def _record(self, profile: str, record: PassRecord) -> None:
        await self._conn.execute(
            _Q.save_pass,
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
        rows = await self._conn.execute_fetchall(_Q.load_passes)
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
        rows = await self._conn.execute_fetchall(_Q.load_ids, params)
        return {str(r["rating_key"]): Ids.from_dict(orjson.loads(r["ids"])) for r in rows}

    async def remember_ids(self, found: Mapping[str, Ids]) -> None:
        """Cache the ids read for these ratingKeys (empty :class:`Ids`: it has none)."""
        now = self._unix_s()
        await self._conn.executemany(
            _Q.save_ids,
            [
                {"rating_key": key, "ids": orjson.dumps(ids.as_dict()).decode(), "now": now}
                for key, ids in found.items()
            ],
        )

    async def known_match(self, key: str) -> tuple[bool, str | None]:
        """``(cached, ratingKey)`` of a ``matches`` lookup by identity *key*: ``(False,
        None)`` when not cached or expired, ``(True, None)`` when Discover had none."""
        rows = await self._conn.execute_fetchall(_Q.load_match, {"key": key})
        row = next(iter(rows), None)
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
        await self._conn.executemany(
            _Q.save_match, [{"key": k, "rating_key": rating_key, "now": now} for k in keys]
        )
