"""What reconcile remembers between passes: in SQLite mode its own file
``data_dir/reconcile.sqlite3`` (WAL, 0600, migrations through :mod:`crosswatchd.sqlite`), in
PostgreSQL mode tables of the shared database (store ``reconcile``), so a pass on any replica
starts from what the last one read. The schema is ``schema.sql`` / ``schema.pg.sql``, every
statement a named query of ``queries.sql`` / ``queries.pg.sql`` (the same names):

- per target account, its *copy*: the plays (or watched items) and the ratings the target held
  when last read, with the target's activity timestamps at that moment, when the read started
  (``read_at``: plays the daemon adds later are folded in) and, for Trakt, how many plays its
  history counted (``total``). A pass whose activities have not moved reuses the copy; one that
  moved reads only what changed when it can, and the copy is replaced only once a read is
  complete, so a crash or an outage mid-read leaves the previous copy whole;
- per target account, the last pass's figures (what ``status`` shows).

Nothing here is needed to deliver a play: deleting the file costs one full read of each
target on the next pass. It is kept apart from the outbox because it is a cache of the
targets, rewritten in bulk after a full read (100,000 rows), and the outbox's single
connection serves the webhooks and the drainers: a bulk write there would hold them up.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from crosswatchd import sqlfiles
from crosswatchd.db import Database, SqliteDatabase
from crosswatchd.models import MediaKind
from crosswatchd.providers.base import Activities, TargetRating, TargetWatch
from crosswatchd.sqlite import connect

__all__ = ["FILE_NAME", "MIGRATIONS", "PG_MIGRATIONS", "Copy", "ReconcileState", "last_passes"]

#: The state file in the data dir.
FILE_NAME: Final = "reconcile.sqlite3"
#: Separates a row's identity keys in one column (no key contains it).
_SEP: Final = "\x1f"
#: Rows per bulk insert statement.
_CHUNK: Final = 5000


@dataclass(frozen=True, slots=True)
class _Queries:
    load_copy: str
    load_watches: str
    load_ratings: str
    save_copy: str
    delete_watches: str
    insert_watches: str
    delete_ratings: str
    insert_ratings: str
    save_pass: str
    load_passes: str


_PACKAGE: Final = "crosswatchd.reconcile"
_QUERIES: Final = {
    "sqlite": sqlfiles.queries(_PACKAGE, "queries.sql", _Queries),
    "postgresql": sqlfiles.queries(_PACKAGE, "queries.pg.sql", _Queries),
}
#: The migrations of the SQLite file and of the PostgreSQL store ``reconcile``.
MIGRATIONS: Final = sqlfiles.migrations(_PACKAGE, "schema.sql")
PG_MIGRATIONS: Final = sqlfiles.migrations(_PACKAGE, "schema.pg.sql")


def _chunks(rows: Iterable[list[Any]]) -> Iterable[str]:
    """*rows* as JSON arrays of at most :data:`_CHUNK` rows (one bulk statement each)."""
    chunk: list[list[Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _CHUNK:
            yield orjson.dumps(chunk).decode()
            chunk = []
    if chunk:
        yield orjson.dumps(chunk).decode()


@dataclass(slots=True)
class Copy:
    """A target account's plays or ratings as last read (see the module docstring)."""

    activities: Activities | None
    read_at: float
    total: int | None = None
    watches: list[TargetWatch] = field(default_factory=list)
    ratings: list[TargetRating] = field(default_factory=list)


class ReconcileState:
    """The state in a :class:`~crosswatchd.db.Database` (see the module docstring). Open with
    :meth:`open` (the file) or :meth:`on` (a migrated database)."""

    def __init__(self, db: Database, *, owns_db: bool = True) -> None:
        self._db = db
        self._q = _QUERIES[db.dialect]
        self._owns_db = owns_db

    @classmethod
    async def open(cls, data_dir: Path) -> ReconcileState:
        """Open (creating, 0600, and migrating) ``data_dir/reconcile.sqlite3``."""
        path = data_dir / FILE_NAME
        conn = await connect(path, migrations=MIGRATIONS, what="reconcile state")
        os.chmod(path, 0o600)
        return cls(SqliteDatabase(conn))

    @classmethod
    def on(cls, db: Database) -> ReconcileState:
        """The state in *db* (PostgreSQL: store ``reconcile`` migrated); closing it leaves
        *db* open."""
        return cls(db, owns_db=False)

    async def close(self) -> None:
        if self._owns_db:
            await self._db.close()

    async def copy(self, profile: str, provider: str, part: str) -> Copy | None:
        """The stored copy of *part* (``plays``, ``ratings``) of a target account, or None."""
        account = {"profile": profile, "provider": provider}
        row = await self._db.fetch_one(self._q.load_copy, {**account, "part": part})
        if row is None:
            return None
        raw, read_at, total = row["activities"], row["read_at"], row["total"]
        activities = Activities(orjson.loads(raw)) if raw else None
        copy = Copy(activities, float(read_at), None if total is None else int(total))
        if part == "plays":
            found = await self._db.fetch(self._q.load_watches, account)
            copy.watches = [
                TargetWatch(
                    None if r["ident"] is None else str(r["ident"]),
                    tuple(str(r["keys"]).split(_SEP)),
                    float(r["at"]),
                )
                for r in found
            ]
        else:
            found = await self._db.fetch(self._q.load_ratings, account)
            copy.ratings = [
                TargetRating(
                    tuple(str(r["keys"]).split(_SEP)),
                    MediaKind(r["kind"]),
                    int(r["rating"]),
                    str(r["ident"]),
                    str(r["label"]),
                )
                for r in found
            ]
        return copy

    async def save_copy(self, profile: str, provider: str, part: str, copy: Copy) -> None:
        """Replace the stored copy of *part* with *copy*, in one transaction."""
        account = {"profile": profile, "provider": provider}
        stamps = None if copy.activities is None else orjson.dumps(copy.activities.stamps)
        async with self._db.transaction() as tx:
            await tx.execute(
                self._q.save_copy,
                {
                    **account,
                    "part": part,
                    "activities": stamps and stamps.decode(),
                    "read_at": copy.read_at,
                    "total": copy.total,
                },
            )
            if part == "plays":
                await tx.execute(self._q.delete_watches, account)
                rows = ([w.ident, w.at, _SEP.join(w.keys)] for w in copy.watches)
                for chunk in _chunks(rows):
                    await tx.execute(self._q.insert_watches, {**account, "rows": chunk})
            else:
                await tx.execute(self._q.delete_ratings, account)
                ratings = (
                    [r.ident, str(r.kind), r.rating, r.label, _SEP.join(r.keys)]
                    for r in copy.ratings
                )
                for chunk in _chunks(ratings):
                    await tx.execute(self._q.insert_ratings, {**account, "rows": chunk})

    async def save_pass(self, profile: str, provider: str, result: dict[str, Any]) -> None:
        """Record the last pass's figures for a target account."""
        await self._db.execute(
            self._q.save_pass,
            {"profile": profile, "provider": provider, "result": orjson.dumps(result).decode()},
        )

    async def passes(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The last pass's figures, ``{profile: {provider: {...}}}``."""
        rows = await self._db.fetch(self._q.load_passes)
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for row in rows:
            out.setdefault(str(row["profile"]), {})[str(row["provider"])] = orjson.loads(
                row["result"]
            )
        return out


async def last_passes(data_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The last pass's figures per profile and target (``{}`` before the first pass, without
    creating the file)."""
    if not (data_dir / FILE_NAME).exists():
        return {}
    state = await ReconcileState.open(data_dir)
    try:
        return await state.passes()
    finally:
        await state.close()
