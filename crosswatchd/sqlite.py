"""Opening crosswatchd's SQLite files: the pragmas, and migrations by ``PRAGMA user_version``.

Both databases (the outbox and the id cache) are opened here, so they share one way of
setting up a connection and one migration helper::

    conn = await connect(path, migrations=(V1, V2), what="outbox")

A file's ``user_version`` is the number of migration scripts applied to it. :func:`migrate`
applies the missing ones, in order, in ONE ``BEGIN IMMEDIATE`` transaction that re-reads the
version once it holds the write lock (so two processes opening a new file at once migrate it
once), and refuses a file a newer crosswatchd wrote (:class:`SchemaTooNewError`) without
touching it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import aiosqlite

from crosswatchd.errors import StorageError

__all__ = ["SYNCHRONOUS", "SchemaTooNewError", "connect", "migrate", "split_script"]

#: The accepted ``PRAGMA synchronous`` levels: ``normal`` (WAL: a commit survives the process
#: being killed, not a power cut) and ``full`` (fsync on every commit: survives a power cut).
SYNCHRONOUS: Final = ("normal", "full")

#: How long a writer waits for another process's write lock (milliseconds).
_BUSY_TIMEOUT_MS: Final = 5000
#: An empty database file younger than this is one being created, not one truncated.
_CREATING_S: Final = 10.0


class SchemaTooNewError(StorageError):
    """The file was written by a newer crosswatchd (its ``user_version`` is higher than the
    number of migrations this one knows). Nothing was changed."""

    def __init__(self, what: str, path: Path | str, found: int, known: int) -> None:
        super().__init__(
            path,
            f"{what} schema version {found} is newer than this crosswatchd ({known});"
            " upgrade crosswatchd or restore an older copy of the file",
        )
        self.found = found
        self.known = known


async def connect(
    path: Path,
    *,
    migrations: Sequence[str],
    what: str,
    synchronous: str = "normal",
    autocommit: bool = True,
    pragmas: Sequence[str] = (),
) -> aiosqlite.Connection:
    """Open (creating the file and its folder if needed) and migrate the database at *path*.

    The connection uses WAL, ``synchronous`` (one of :data:`SYNCHRONOUS`), a 5 s busy timeout,
    then each of *pragmas* (``"foreign_keys=ON"``…). ``autocommit=True`` opens it with
    ``isolation_level=None`` (every statement commits on its own); ``False`` keeps Python's
    implicit transactions (the caller commits). *migrations* are SQL scripts, version 1 first;
    *what* names the file in errors (``"outbox"``). Raises ``ValueError`` for another
    ``synchronous``, :class:`SchemaTooNewError`, or ``sqlite3.DatabaseError`` for a file that
    is not an SQLite database. The connection is closed again if anything fails.
    """
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be 'normal' or 'full', not {synchronous!r}")
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        existed = None
    else:
        existed = stat.st_size
        young = time.time() - stat.st_mtime < _CREATING_S
    if existed == 0 and not young:
        # SQLite would take an empty file for a new database and start afresh: a truncated
        # file (a bad restore, a full disk) must not silently become an empty outbox. (A
        # file only seconds old is one another process is creating right now.)
        raise StorageError(
            path,
            f"the {what} file is empty (0 bytes); restore it from a backup, or delete it"
            " to start with an empty one",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = (
            await aiosqlite.connect(path, isolation_level=None)
            if autocommit
            else await aiosqlite.connect(path)
        )
    except (sqlite3.Error, OSError) as exc:
        raise StorageError(path, f"cannot open the {what}: {_describe(exc)}") from None
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        await conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        for pragma in pragmas:
            await conn.execute(f"PRAGMA {pragma}")
        if existed:
            await _quick_check(conn, path, what)
        await migrate(conn, migrations, what=what, path=path)
    except sqlite3.Error as exc:
        await conn.close()
        raise StorageError(path, f"cannot use the {what}: {_describe(exc)}") from None
    except BaseException:
        await conn.close()
        raise
    return conn


def _describe(exc: BaseException) -> str:
    """One line for a database error, with what to do about the usual ones."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "not a database" in lowered or "malformed" in lowered:
        return (
            f"{text}: the file is damaged or not a crosswatchd database; restore it from a backup"
        )
    if "disk is full" in lowered or "no space" in lowered:
        return f"{text}: free some disk space and start again"
    if "readonly" in lowered or "permission" in lowered or "unable to open" in lowered:
        return f"{text}: check that the data_dir and its files are writable by this user"
    return text


async def _quick_check(conn: aiosqlite.Connection, path: Path, what: str) -> None:
    """``PRAGMA quick_check``: refuse a damaged file at start instead of failing later."""
    async with conn.execute("PRAGMA quick_check") as cur:
        rows = [str(row[0]) for row in await cur.fetchall()]
    if rows != ["ok"]:
        raise StorageError(
            path, f"the {what} is damaged ({'; '.join(rows[:3])}); restore it from a backup"
        )


async def _user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(
    conn: aiosqlite.Connection,
    migrations: Sequence[str],
    *,
    what: str,
    path: Path | str = "",
) -> int:
    """Apply the scripts of *migrations* the file lacks; return the file's version after.

    Migration ``n`` (1-based) is ``migrations[n - 1]``. The missing ones run statement by
    statement inside one ``BEGIN IMMEDIATE`` transaction with the new ``user_version``, so a
    crash leaves the file at its old version, whole. Raises :class:`SchemaTooNewError` when the
    file is newer than *migrations*; a failing script's error rolls everything back.
    """
    known = len(migrations)
    version = await _user_version(conn)
    if version == known:
        return version
    if version > known:
        raise SchemaTooNewError(what, path, version, known)
    await conn.execute("BEGIN IMMEDIATE")
    try:
        version = await _user_version(conn)  # another process may have migrated meanwhile
        if version > known:
            raise SchemaTooNewError(what, path, version, known)
        for script in migrations[version:]:
            for statement in split_script(script):
                await conn.execute(statement)
        # PRAGMA takes no parameters; `known` is an int.
        await conn.execute(f"PRAGMA user_version = {known:d}")
        await conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            await conn.execute("ROLLBACK")
        raise
    return known


def split_script(script: str) -> list[str]:
    """The statements of an SQL *script*, each ending with its ``;`` (comments kept).

    Split where SQLite itself sees a complete statement (``sqlite3.complete_statement``), so a
    ``;`` inside a string, a comment or a trigger body does not split. Raises ``ValueError``
    for text after the last complete statement that is not a comment.
    """
    statements: list[str] = []
    start = 0
    for end, char in enumerate(script, start=1):
        if char == ";" and sqlite3.complete_statement(script[start:end]):
            statements.append(script[start:end].strip())
            start = end
    tail = [line for line in script[start:].splitlines() if line.strip()]
    if any(not line.lstrip().startswith("--") for line in tail):
        raise ValueError(f"incomplete SQL statement at the end of a script: {tail[0]!r}")
    return statements
