"""What reconcile remembers between passes, in its own SQLite file ``data_dir/reconcile.sqlite3``
(WAL, 0600, migrations through :mod:`crosswatchd.sqlite`):

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiosqlite
import orjson

from crosswatchd.models import MediaKind
from crosswatchd.providers.base import Activities, TargetRating, TargetWatch
from crosswatchd.sqlite import connect

__all__ = ["FILE_NAME", "Copy", "ReconcileState", "last_passes"]

#: The state file in the data dir.
FILE_NAME: Final = "reconcile.sqlite3"
#: Separates a row's identity keys in one column (no key contains it).
_SEP: Final = "\x1f"

_MIGRATIONS: Final = (
    """
    CREATE TABLE copies (
        profile    TEXT NOT NULL,
        provider   TEXT NOT NULL,
        part       TEXT NOT NULL,      -- plays | ratings
        activities TEXT,               -- JSON: Activities.stamps when read
        read_at    REAL NOT NULL,      -- unix s: when the read started
        total      INTEGER,            -- Trakt: X-Pagination-Item-Count of /sync/history
        PRIMARY KEY (profile, provider, part)
    ) WITHOUT ROWID;
    CREATE TABLE watches (
        profile  TEXT NOT NULL,
        provider TEXT NOT NULL,
        ident    TEXT,                 -- history id / SIMKL entry; NULL: folded, ours
        at       REAL NOT NULL,        -- watched_at, unix s
        keys     TEXT NOT NULL         -- identity keys joined by \\x1f
    );
    CREATE INDEX watches_of ON watches (profile, provider);
    CREATE TABLE ratings (
        profile  TEXT NOT NULL,
        provider TEXT NOT NULL,
        ident    TEXT NOT NULL,
        kind     TEXT NOT NULL,
        rating   INTEGER NOT NULL,
        label    TEXT NOT NULL,
        keys     TEXT NOT NULL
    );
    CREATE INDEX ratings_of ON ratings (profile, provider);
    CREATE TABLE passes (
        profile  TEXT NOT NULL,
        provider TEXT NOT NULL,
        result   TEXT NOT NULL,        -- JSON: the pass's figures for this target account
        PRIMARY KEY (profile, provider)
    ) WITHOUT ROWID;
    """,
)


@dataclass(slots=True)
class Copy:
    """A target account's plays or ratings as last read (see the module docstring)."""

    activities: Activities | None
    read_at: float
    total: int | None = None
    watches: list[TargetWatch] = field(default_factory=list)
    ratings: list[TargetRating] = field(default_factory=list)


class ReconcileState:
    """The state file (see the module docstring). Open with :meth:`open`."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, data_dir: Path) -> ReconcileState:
        """Open (creating, 0600, and migrating) ``data_dir/reconcile.sqlite3``."""
        path = data_dir / FILE_NAME
        conn = await connect(path, migrations=_MIGRATIONS, what="reconcile state")
        os.chmod(path, 0o600)
        return cls(conn)

    async def close(self) -> None:
        await self._conn.close()

    async def copy(self, profile: str, provider: str, part: str) -> Copy | None:
        """The stored copy of *part* (``plays``, ``ratings``) of a target account, or None."""
        account = (profile, provider, part)
        rows = await self._conn.execute_fetchall(
            "SELECT activities, read_at, total FROM copies"
            " WHERE profile = ? AND provider = ? AND part = ?",
            account,
        )
        if not rows:
            return None
        raw, read_at, total = next(iter(rows))
        activities = Activities(orjson.loads(raw)) if raw else None
        copy = Copy(activities, float(read_at), None if total is None else int(total))
        if part == "plays":
            found = await self._conn.execute_fetchall(
                "SELECT ident, at, keys FROM watches WHERE profile = ? AND provider = ?",
                account[:2],
            )
            copy.watches = [TargetWatch(i, tuple(k.split(_SEP)), float(a)) for i, a, k in found]
        else:
            found = await self._conn.execute_fetchall(
                "SELECT ident, kind, rating, label, keys FROM ratings"
                " WHERE profile = ? AND provider = ?",
                account[:2],
            )
            copy.ratings = [
                TargetRating(tuple(k.split(_SEP)), MediaKind(kind), int(r), ident, label)
                for ident, kind, r, label, k in found
            ]
        return copy

    async def save_copy(self, profile: str, provider: str, part: str, copy: Copy) -> None:
        """Replace the stored copy of *part* with *copy*, in one transaction."""
        account = (profile, provider)
        stamps = None if copy.activities is None else orjson.dumps(copy.activities.stamps)
        await self._conn.execute("BEGIN IMMEDIATE")
        try:
            await self._conn.execute(
                "INSERT OR REPLACE INTO copies VALUES (?, ?, ?, ?, ?, ?)",
                (*account, part, stamps and stamps.decode(), copy.read_at, copy.total),
            )
            if part == "plays":
                await self._conn.execute(
                    "DELETE FROM watches WHERE profile = ? AND provider = ?", account
                )
                await self._conn.executemany(
                    "INSERT INTO watches VALUES (?, ?, ?, ?, ?)",
                    ((*account, w.ident, w.at, _SEP.join(w.keys)) for w in copy.watches),
                )
            else:
                await self._conn.execute(
                    "DELETE FROM ratings WHERE profile = ? AND provider = ?", account
                )
                await self._conn.executemany(
                    "INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        (*account, r.ident, str(r.kind), r.rating, r.label, _SEP.join(r.keys))
                        for r in copy.ratings
                    ),
                )
            await self._conn.execute("COMMIT")
        except BaseException:
            await self._conn.execute("ROLLBACK")
            raise

    async def save_pass(self, profile: str, provider: str, result: dict[str, Any]) -> None:
        """Record the last pass's figures for a target account."""
        await self._conn.execute(
            "INSERT OR REPLACE INTO passes VALUES (?, ?, ?)",
            (profile, provider, orjson.dumps(result).decode()),
        )

    async def passes(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The last pass's figures, ``{profile: {provider: {...}}}``."""
        rows = await self._conn.execute_fetchall("SELECT profile, provider, result FROM passes")
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for profile, provider, raw in rows:
            out.setdefault(profile, {})[provider] = orjson.loads(raw)
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
