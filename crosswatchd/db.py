"""The storage seam: one small interface over SQLite (one file per store, in ``data_dir``) and
PostgreSQL (one database shared by every replica), as procrastinate's ``connector.py`` puts one
interface over its drivers.

A store (the outbox, the id cache, the token store …) holds a :class:`Database` and the named
queries of its dialect; it never imports a driver. Statements are written with ``:name``
parameters in both dialects: :class:`SqliteDatabase` hands them to sqlite3 as they are,
:class:`PostgresDatabase` rewrites them once to asyncpg's ``$1, $2 …`` (:func:`numbered`).
Rows are read by column name (``row["id"]``) from either.

- :class:`SqliteDatabase`: one aiosqlite connection (autocommit; a statement is its own
  transaction); :meth:`Database.transaction` holds it for a block of statements.
- :class:`PostgresDatabase`: an asyncpg pool (asyncpg: the asyncio-native driver, binary
  protocol, prepared statements cached per connection, ``LISTEN``/``NOTIFY`` through
  ``add_listener``); a statement outside a transaction takes any pooled connection.

Errors: a statement raises the driver's error (``sqlite3.Error``, ``asyncpg.PostgresError``,
``OSError`` for a lost connection); :func:`storage_errors` is the tuple to catch.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal, Protocol

import aiosqlite

__all__ = [
    "Database",
    "Dialect",
    "PostgresDatabase",
    "Row",
    "SqliteDatabase",
    "numbered",
    "storage_errors",
]

Dialect = Literal["sqlite", "postgresql"]
Params = Mapping[str, Any]


class Row(Protocol):
    """A result row: columns by name (``row["id"]``) or position (``row[0]``)."""

    def __getitem__(self, key: str | int, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]:
        """The values, in column order."""
        ...

    def keys(self) -> Iterable[str]:
        """The column names."""
        ...


class Database(Protocol):
    """What a store needs of a database. ``dialect`` picks the store's SQL."""

    dialect: Dialect

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run one statement and return its rows (``RETURNING`` rows of a write)."""
        ...

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        """The first row of :meth:`fetch`, or ``None``."""
        ...

    async def execute(self, sql: str, params: Params | None = None) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    async def execute_many(self, sql: str, params: Sequence[Params]) -> int:
        """Run one statement once per parameter set (one transaction); rows changed in all."""
        ...

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Database]:
        """A block whose statements (made through the yielded database) commit together, or
        not at all if the block raises."""
        ...

    async def close(self) -> None:
        """Release the connection(s)."""
        ...


def storage_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the database could not do it" in either backend (``OSError``
    includes ``TimeoutError``: a pool that cannot connect in time). asyncpg's
    ``InternalClientError`` is a connection caught mid-operation by the server going away
    ("cannot switch to state …; another operation is in progress")."""
    errors: list[type[BaseException]] = [sqlite3.Error, OSError]
    with contextlib.suppress(ImportError):
        import asyncpg

        errors.extend([asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError])
    return tuple(errors)


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------


class SqliteDatabase:
    """One aiosqlite connection in autocommit mode (see :func:`crosswatchd.sqlite.connect`).

    Rows are ``sqlite3.Row``. A :meth:`transaction` takes the connection for its block
    (``BEGIN IMMEDIATE`` … ``COMMIT``); statements from elsewhere wait until it ends, so they
    never land inside it.
    """

    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        conn.row_factory = sqlite3.Row
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        # Inside our own transaction (same task) the lock is already ours.
        if self._holder is not None and self._holder is asyncio.current_task():
            yield
            return
        async with self._lock:
            yield

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        async with self._turn():
            return list(await self.conn.execute_fetchall(sql, params or {}))

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Params | None = None) -> int:
        async with self._turn():
            cur = await self.conn.execute(sql, params or {})
            count = cur.rowcount
            await cur.close()
            return count

    async def execute_many(self, sql: str, params: Sequence[Params]) -> int:
        if not params:
            return 0
        async with self.transaction() as tx:
            assert isinstance(tx, SqliteDatabase)
            cur = await tx.conn.executemany(sql, params)
            count = cur.rowcount
            await cur.close()
            return count

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        async with self._turn():
            if self._holder is not None:  # nested: part of the enclosing transaction
                yield self
                return
            self._holder = asyncio.current_task()
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    if self.conn.in_transaction:
                        await self.conn.execute("ROLLBACK")
                    raise
                await self.conn.execute("COMMIT")
            finally:
                self._holder = None

    async def close(self) -> None:
        await self.conn.close()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

# A `:name` parameter: not part of a `::type` cast, not inside a quoted string or identifier
# (those are matched first and kept).
_TOKENS = re.compile(
    r"""'(?:[^']|'')*'            # a string literal
      | "(?:[^"]|"")*"            # a quoted identifier
      | --[^\n]*                  # a comment
      | ::                        # a cast
      | :([A-Za-z_][A-Za-z0-9_]*) # a parameter
    """,
    re.VERBOSE,
)


@lru_cache(maxsize=512)
def numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """*sql* with its ``:name`` parameters rewritten to PostgreSQL's ``$1, $2 …`` (a name
    used twice is one number), and the names in number order. Casts (``::jsonb``), strings,
    quoted identifiers and comments are left alone."""
    names: list[str] = []

    def swap(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return match.group(0)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _TOKENS.sub(swap, sql), tuple(names)


def _args(sql: str, params: Params | None) -> tuple[str, list[Any]]:
    text, names = numbered(sql)
    given = params or {}
    missing = [n for n in names if n not in given]
    if missing:
        raise KeyError(f"missing SQL parameters {missing}")
    return text, [given[n] for n in names]


class PostgresDatabase:
    """An asyncpg pool, or one of its connections inside a :meth:`transaction`.

    Rows are ``asyncpg.Record``. Build with :func:`crosswatchd.postgres.connect`, which also
    migrates the schema.
    """

    dialect: Dialect = "postgresql"

    def __init__(self, pool: Any, conn: Any = None) -> None:
        self.pool = pool
        self._conn = conn  # set inside a transaction

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        if self._conn is not None:
            yield self._conn
            return
        async with self.pool.acquire() as conn:
            yield conn

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        text, args = _args(sql, params)
        async with self._connection() as conn:
            return list(await conn.fetch(text, *args))

    async def fetch_one(self, sql: str, params: Params | None = None) -> Row | None:
        text, args = _args(sql, params)
        async with self._connection() as conn:
            row: Row | None = await conn.fetchrow(text, *args)
            return row

    async def execute(self, sql: str, params: Params | None = None) -> int:
        text, args = _args(sql, params)
        async with self._connection() as conn:
            status = await conn.execute(text, *args)
        return _rowcount(status)

    async def execute_many(self, sql: str, params: Sequence[Params]) -> int:
        if not params:
            return 0
        total = 0
        async with self.transaction() as tx:
            for one in params:
                total += await tx.execute(sql, one)
        return total

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Database]:
        if self._conn is not None:  # nested: a savepoint of the enclosing transaction
            async with self._conn.transaction():
                yield self
            return
        async with self.pool.acquire() as conn, conn.transaction():
            yield PostgresDatabase(self.pool, conn)

    async def close(self) -> None:
        if self._conn is None:
            await self.pool.close()


def _rowcount(status: str) -> int:
    """The row count of a command tag (``"UPDATE 3"``, ``"INSERT 0 1"``); 0 when it has none."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0
