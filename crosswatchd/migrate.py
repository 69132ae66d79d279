"""``crosswatchd migrate --to postgresql://…``: copy a SQLite data dir into PostgreSQL.

What is copied, store by store (each store migrated first on both sides):

==================  ===============================  =============================================
store               from ``data_dir``                into (how a second run skips it)
==================  ===============================  =============================================
outbox              ``outbox.sqlite3``: events,      the same tables, **ids kept**: a row whose id
                    deliveries, delivery_keys,       is there already is skipped (and must be the
                    seen_accounts, meta              same event or delivery, else nothing is
                                                     copied: see below); delivery_keys by their
                                                     whole row; seen_accounts and the retry
                                                     counter keep the larger value
tokens              ``tokens/[profile/]*.json``      ``tokens``, unless the account has one there
id cache            ``cache.sqlite3`` (unexpired)    ``id_cache``, by key
webhook secret,     ``webhook_secret``,              ``instance_values``, by name (a different
Plex client id      ``plex_client_id``               value already there is kept, and said)
watchlist state     ``watchlist.sqlite3``            ``watchlist_*``, ``discover_*``, by key
reconcile state     ``reconcile.sqlite3``            ``reconcile_*``: an account's copy only when
                                                     its ``reconcile_copies`` row is new
==================  ===============================  =============================================

The outbox is copied in one transaction that turns its two triggers off for the copy (the
fan-out and the keys of a delivery are copied as they are, not computed again), then moves
the id sequences past the largest id, so the replicas number new rows after the copied ones.
Leased deliveries arrive pending (no daemon holds them: the data dir's lock is held by this
command), with ``sent_at`` kept, so a play that was in flight is looked up before it is sent
again. Turning triggers off needs the owner of the tables: the same user the replicas run as,
who created them.

The copy refuses (nothing of the outbox written) when the database already holds *another*
event or delivery under an id of the data dir: replicas ran on it before the move. Moving a
data dir into a database in use is not a merge this command makes.

Every other store is copied in its own transaction. A store the data dir does not have is
skipped. The roster (``profiles.sqlite3``: profiles added at run time) is copied by name.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiosqlite
import orjson

from crosswatchd import instance, postgres
from crosswatchd.db import Database, PostgresDatabase, Row, storage_errors
from crosswatchd.errors import StorageError
from crosswatchd.instance import DatabaseValues, FileValues
from crosswatchd.outbox.queries import MIGRATIONS as OUTBOX_MIGRATIONS
from crosswatchd.reconcile.state import FILE_NAME as RECONCILE_FILE
from crosswatchd.reconcile.state import MIGRATIONS as RECONCILE_MIGRATIONS
from crosswatchd.resolve.cache import MIGRATIONS as CACHE_MIGRATIONS
from crosswatchd.roster.store import FILE as ROSTER_FILE
from crosswatchd.roster.store import MIGRATIONS as ROSTER_MIGRATIONS
from crosswatchd.sqlite import connect
from crosswatchd.storage import CACHE_FILE, OUTBOX_FILE, PG_STORES
from crosswatchd.tokens import Token
from crosswatchd.tokens.shared import Q as TOKEN_QUERIES
from crosswatchd.watchlist.state import MIGRATIONS as WATCHLIST_MIGRATIONS
from crosswatchd.watchlist.state import STATE_FILE as WATCHLIST_FILE

__all__ = ["Report", "migrate_to"]

#: Rows per INSERT statement (one JSON array parameter each).
_CHUNK: Final = 1000
#: The outbox's triggers, off while its rows are copied as they are.
_TRIGGERS: Final = (("events", "events_fan_out"), ("deliveries", "delivery_keys_of_delivery"))


@dataclass
class Report:
    """What a run copied: ``copied[store][what]`` rows new in the database, ``kept[store][what]``
    rows it had already (skipped), the states of the deliveries copied (``delivery_states``:
    ``{"pending": 2, "delivered": 3}``), the stores the data dir does not have (``missing``)
    and ``notes`` for people (a differing secret …)."""

    source: str
    target: str
    copied: dict[str, dict[str, int]] = field(default_factory=dict)
    kept: dict[str, dict[str, int]] = field(default_factory=dict)
    delivery_states: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def count(self, store: str, what: str, copied: int, seen: int) -> None:
        """Add *copied* new rows of *seen* read."""
        self.copied.setdefault(store, {}).setdefault(what, 0)
        self.kept.setdefault(store, {}).setdefault(what, 0)
        self.copied[store][what] += copied
        self.kept[store][what] += seen - copied

    @property
    def total_copied(self) -> int:
        return sum(n for counts in self.copied.values() for n in counts.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "copied": self.copied,
            "already_there": self.kept,
            "delivery_states": self.delivery_states,
            "not_in_data_dir": self.missing,
            "notes": self.notes,
        }


# -- reading the data dir ----------------------------------------------------------------------


async def _open_source(path: Path, migrations: Sequence[str], what: str) -> aiosqlite.Connection:
    conn = await connect(path, migrations=migrations, what=what)
    conn.row_factory = sqlite3.Row
    return conn


async def _rows(
    conn: aiosqlite.Connection, sql: str, params: Mapping[str, Any] | None = None
) -> AsyncIterator[list[dict[str, Any]]]:
    """The rows of *sql* in chunks of :data:`_CHUNK`, as dicts."""
    async with conn.execute(sql, params or {}) as cur:
        while chunk := await cur.fetchmany(_CHUNK):
            yield [dict(row) for row in chunk]


# -- writing the database ----------------------------------------------------------------------


class _Target:
    """Inserts into tables of the database, typed by the database's own column types."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._types: dict[str, dict[str, str]] = {}

    async def types(self, table: str) -> dict[str, str]:
        if table not in self._types:
            rows = await self.db.fetch(
                "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type"
                " FROM pg_attribute AS a"
                " WHERE a.attrelid = :table::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                {"table": table},
            )
            self._types[table] = {str(r["name"]): str(r["type"]) for r in rows}
        return self._types[table]

    async def insert(
        self, table: str, rows: list[dict[str, Any]], *, conflict: str, returning: str = ""
    ) -> list[Any]:
        """Insert *rows* (dicts with the same keys) in one statement; *conflict* is its
        ``ON CONFLICT …`` clause. Returns the ``RETURNING`` rows (one per row inserted or
        updated; ``returning`` defaults to a constant)."""
        if not rows:
            return []
        types = await self.types(table)
        columns = list(rows[0])
        names = ", ".join(f'"{c}"' for c in columns)
        spec = ", ".join(f'"{c}" {types[c]}' for c in columns)
        sql = (
            f"INSERT INTO {table} ({names}) SELECT {names}"
            f" FROM jsonb_to_recordset(:rows::text::jsonb) AS r ({spec})"
            f" {conflict} RETURNING {returning or '1 AS one'}"
        )
        return await self.db.fetch(sql, {"rows": orjson.dumps(rows).decode()})


# -- the outbox --------------------------------------------------------------------------------

#: What must match for an id already in the database to be the same row.
_SAME: Final = {
    "events": ("source", "action", "account", "keys", "profile", "occurred_at", "received_at"),
    "deliveries": ("event_id", "profile", "provider", "kind", "created_at"),
}


def _same(mine: Mapping[str, Any], theirs: Row, columns: Sequence[str]) -> bool:
    for column in columns:
        a, b = mine[column], theirs[column]
        if isinstance(a, float) or isinstance(b, float):
            if a is None or b is None or abs(float(a) - float(b)) > 1e-6:
                return False
        elif a != b:
            return False
    return True


async def _copy_by_id(
    target: _Target, table: str, rows: list[dict[str, Any]], report: Report, where: str
) -> list[dict[str, Any]]:
    """Insert the rows of *table* whose id the database lacks; the others must be the same
    rows (else :class:`StorageError`). Returns the rows inserted."""
    columns = _SAME[table]
    ids = orjson.dumps([r["id"] for r in rows]).decode()
    there = await target.db.fetch(
        f"SELECT id, {', '.join(columns)} FROM {table}"
        " WHERE id IN (SELECT value::bigint FROM jsonb_array_elements_text(:ids::text::jsonb))",
        {"ids": ids},
    )
    known = {int(r["id"]): r for r in there}
    for row in rows:
        other = known.get(int(row["id"]))
        if other is not None and not _same(row, other, columns):
            raise StorageError(
                where,
                f"the database already holds another {table[:-1]} #{row['id']}: replicas ran on"
                " it before the move; migrate into an empty database (nothing of the outbox"
                " was copied)",
            )
    new = [row for row in rows if int(row["id"]) not in known]
    inserted = await target.insert(table, new, conflict="ON CONFLICT (id) DO NOTHING")
    assert len(inserted) == len(new)
    report.count("outbox", table, len(new), len(rows))
    return new


async def _copy_outbox(
    source: aiosqlite.Connection, db: PostgresDatabase, report: Report, now: float
) -> None:
    where = report.target
    async with db.transaction() as tx:
        target = _Target(tx)
        for table, trigger in _TRIGGERS:
            await tx.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        async for rows in _rows(source, "SELECT * FROM events ORDER BY id"):
            await _copy_by_id(target, "events", rows, report, where)
        states: dict[str, int] = {}
        async for rows in _rows(source, "SELECT * FROM deliveries ORDER BY id"):
            for row in rows:
                if row["state"] == "leased":  # nobody holds it: the data dir is locked
                    row.update(state="pending", lease_token=None, next_attempt_at=now)
            for row in await _copy_by_id(target, "deliveries", rows, report, where):
                states[row["state"]] = states.get(row["state"], 0) + 1
        report.delivery_states = dict(sorted(states.items()))
        async for rows in _rows(source, "SELECT * FROM delivery_keys"):
            done = await target.insert("delivery_keys", rows, conflict="ON CONFLICT DO NOTHING")
            report.count("outbox", "delivery_keys", len(done), len(rows))
        async for rows in _rows(source, "SELECT * FROM seen_accounts"):
            done = await target.insert(
                "seen_accounts",
                rows,
                conflict="ON CONFLICT (source, account) DO UPDATE"
                " SET last_seen = greatest(seen_accounts.last_seen, excluded.last_seen),"
                " events = greatest(seen_accounts.events, excluded.events)"
                " WHERE seen_accounts.last_seen < excluded.last_seen"
                " OR seen_accounts.events < excluded.events",
            )
            report.count("outbox", "seen_accounts", len(done), len(rows))
        async for rows in _rows(source, "SELECT * FROM meta WHERE key = 'retry_generation'"):
            done = await target.insert(
                "meta",
                rows,
                conflict="ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                " WHERE meta.value < excluded.value",
            )
            report.count("outbox", "meta", len(done), len(rows))
        for table, trigger in _TRIGGERS:
            await tx.execute(f"ALTER TABLE {table} ENABLE TRIGGER {trigger}")
            # New rows of the replicas are numbered after every copied one.
            await tx.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" coalesce(max(id), 0) + 1, false) FROM {table}"
            )


# -- the other stores --------------------------------------------------------------------------


async def _copy_table(
    source: aiosqlite.Connection,
    target: _Target,
    report: Report,
    store: str,
    sql: str,
    table: str,
    conflict: str = "ON CONFLICT DO NOTHING",
    params: Mapping[str, Any] | None = None,
    what: str | None = None,
) -> None:
    async for rows in _rows(source, sql, params):
        done = await target.insert(table, rows, conflict=conflict)
        report.count(store, what or table, len(done), len(rows))


async def _copy_cache(
    source: aiosqlite.Connection, db: PostgresDatabase, report: Report, now: float
) -> None:
    async with db.transaction() as tx:
        await _copy_table(
            source,
            _Target(tx),
            report,
            "id cache",
            "SELECT * FROM id_cache WHERE expires_at > :now",
            "id_cache",
            params={"now": now},
            what="answers",
        )


async def _copy_watchlist(
    source: aiosqlite.Connection, db: PostgresDatabase, report: Report, _now: float
) -> None:
    async with db.transaction() as tx:
        target = _Target(tx)
        for mine, theirs in (
            ("sides", "watchlist_sides"),
            ("passes", "watchlist_passes"),
            ("discover_ids", "discover_ids"),
            ("discover_matches", "discover_matches"),
        ):
            await _copy_table(
                source, target, report, "watchlist state", f"SELECT * FROM {mine}", theirs
            )


async def _copy_profiles(
    source: aiosqlite.Connection, db: PostgresDatabase, report: Report, _now: float
) -> None:
    """The roster (``profiles.sqlite3``): each profile by name; the revision is bumped when
    any was copied, so running replicas reload their household."""
    async with db.transaction() as tx:
        before = report.copied.get("profiles", {}).get("profiles", 0)
        await _copy_table(
            source, _Target(tx), report, "profiles", "SELECT * FROM profiles", "profiles"
        )
        if report.copied.get("profiles", {}).get("profiles", 0) > before:
            await tx.execute("UPDATE profiles_revision SET value = value + 1 WHERE id = 1")


async def _copy_reconcile(
    source: aiosqlite.Connection, db: PostgresDatabase, report: Report, _now: float
) -> None:
    """An account's watches and ratings go with its copies row, and only when that row is
    new (the tables have no key of their own to skip them by)."""
    async with db.transaction() as tx:
        target = _Target(tx)
        fresh: set[tuple[str, str, str]] = set()
        async for rows in _rows(source, "SELECT * FROM copies"):
            done = await target.insert(
                "reconcile_copies",
                rows,
                conflict="ON CONFLICT DO NOTHING",
                returning="profile, provider, part",
            )
            fresh.update((str(r["profile"]), str(r["provider"]), str(r["part"])) for r in done)
            report.count("reconcile state", "copies", len(done), len(rows))
        for profile, provider, part in sorted(fresh):
            table = "watches" if part == "plays" else "ratings"
            await _copy_table(
                source,
                target,
                report,
                "reconcile state",
                f"SELECT * FROM {table} WHERE profile = :profile AND provider = :provider",
                f"reconcile_{table}",
                params={"profile": profile, "provider": provider},
                what=table,
            )
        await _copy_table(
            source,
            target,
            report,
            "reconcile state",
            "SELECT * FROM passes",
            "reconcile_passes",
            what="passes",
        )


def _token_files(data_dir: Path) -> list[tuple[str, str, Path]]:
    """``(profile, provider, path)`` of every live token file (``*.json``) of *data_dir*."""
    from crosswatchd.models import DEFAULT_PROFILE

    root = data_dir / "tokens"
    found = [(DEFAULT_PROFILE, path.stem, path) for path in sorted(root.glob("*.json"))]
    for folder in sorted(p for p in root.glob("*") if p.is_dir()):
        found += [(folder.name, path.stem, path) for path in sorted(folder.glob("*.json"))]
    return found


async def _copy_tokens(data_dir: Path, db: PostgresDatabase, report: Report, now: float) -> bool:
    files = _token_files(data_dir)
    for profile, provider, path in files:
        try:
            data = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            report.notes.append(f"{path} is not a token file: not copied")
            continue
        if Token.parse(data) is None:
            report.notes.append(f"{path} holds no access token: not copied")
            continue
        done = await db.execute(
            TOKEN_QUERIES.copy,
            {
                "profile": profile,
                "provider": provider,
                "token": orjson.dumps(data).decode(),
                "now": now,
            },
        )
        report.count("tokens", f"{profile}/{provider}", done, 1)
        if not done:
            there = await db.fetch_one(
                "SELECT token FROM tokens WHERE profile = :profile AND provider = :provider",
                {"profile": profile, "provider": provider},
            )
            stored = None if there is None else Token.parse(orjson.loads(there["token"]))
            if not Token.parse(data).same_grant(stored):  # type: ignore[union-attr]
                report.notes.append(
                    f"tokens: the database holds another token for {profile}/{provider}: kept"
                )
    return bool(files)


def _constant(value: str) -> Callable[[], str]:
    return lambda: value


async def _copy_values(data_dir: Path, db: PostgresDatabase, report: Report) -> bool:
    files, database = FileValues(data_dir), DatabaseValues(db)
    any_found = False
    for name in (instance.WEBHOOK_SECRET, instance.PLEX_CLIENT_ID):
        value = await files.get(name)
        if value is None:
            continue
        any_found = True
        stored, created = await database.ensure(name, _constant(value))
        report.count("instance values", name, int(created), 1)
        if stored != value:
            label = name.replace("_", " ")
            report.notes.append(
                f"the database already has another {label}: it is kept"
                + (
                    "; give Plex and Tautulli the URLs of `crosswatchd webhook-url`"
                    if name == instance.WEBHOOK_SECRET
                    else ""
                )
            )
    return any_found


# -- the whole move ----------------------------------------------------------------------------


async def migrate_to(
    data_dir: Path, url: str, *, unix_s: Callable[[], float] = time.time
) -> Report:
    """Copy the SQLite data dir *data_dir* into the PostgreSQL database at *url* (every store
    migrated there first); see the module docstring. The caller holds the data dir's lock.

    Raises :class:`~crosswatchd.errors.ConfigError` for a bad URL and
    :class:`~crosswatchd.errors.StorageError` (the URL masked) when the database cannot be
    reached, is newer than this crosswatchd, refuses a statement, or already holds other
    outbox rows under the data dir's ids.
    """
    report = Report(str(data_dir), postgres.masked(url))
    db = await postgres.connect(url, stores=PG_STORES)
    now = unix_s()
    try:
        for name, migrations, what, copy in (
            (OUTBOX_FILE, OUTBOX_MIGRATIONS, "outbox", _copy_outbox),
            (CACHE_FILE, CACHE_MIGRATIONS, "id cache", _copy_cache),
            (WATCHLIST_FILE, WATCHLIST_MIGRATIONS, "watchlist state", _copy_watchlist),
            (RECONCILE_FILE, RECONCILE_MIGRATIONS, "reconcile state", _copy_reconcile),
            (ROSTER_FILE, ROSTER_MIGRATIONS, "profiles", _copy_profiles),
        ):
            path = data_dir / name
            if not path.exists():
                report.missing.append(what)
                continue
            source = await _open_source(path, migrations, what)
            try:
                await copy(source, db, report, now)
            finally:
                await source.close()
        if not await _copy_tokens(data_dir, db, report, now):
            report.missing.append("tokens")
        if not await _copy_values(data_dir, db, report):
            report.missing.append("instance values")
    except StorageError:
        raise
    except storage_errors() as exc:
        raise StorageError(report.target, f"the copy failed: {postgres.describe(exc)}") from None
    finally:
        await db.close()
    return report
