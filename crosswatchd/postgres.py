"""Opening crosswatchd's PostgreSQL database: the URL, the pool, and migrations per store.

One database holds every store of every replica (the outbox, the id cache, tokens …). Each
store has its own numbered migrations (``schema.pg.sql`` files); ``schema_versions`` records,
per store, how many are applied. :func:`connect` applies the missing ones in ONE transaction
that first takes an advisory lock, so replicas and CLI commands starting at the same moment
on an empty database migrate it once, and refuses a database a newer crosswatchd wrote
(:class:`SchemaTooNewError`) without touching it::

    db = await connect(url, stores={"outbox": OUTBOX_MIGRATIONS, "cache": CACHE_MIGRATIONS})

The password of a URL never reaches any output: :func:`masked` is the form logs and errors
use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from crosswatchd.db import PostgresDatabase
from crosswatchd.errors import ConfigError, StorageError
from crosswatchd.sqlite import SchemaTooNewError

__all__ = [
    "SCHEMES",
    "connect",
    "describe",
    "is_postgres_url",
    "masked",
    "migrate",
    "password_of",
    "validate_url",
]

#: URL schemes of ``database_url`` that mean PostgreSQL.
SCHEMES: Final = ("postgresql", "postgres")
#: The advisory lock held while migrating (any fixed number: crosswatchd's alone).
_MIGRATION_LOCK: Final = 0x63_77_64_6D  # "cwdm"
#: Connections per process: webhooks, drainers and views share them.
_POOL_MAX: Final = 10


def is_postgres_url(url: str) -> bool:
    """True for a ``postgresql://`` or ``postgres://`` URL."""
    return urlsplit(url).scheme in SCHEMES


def password_of(url: str) -> str:
    """The password of *url* (``""`` when it has none, or for an empty URL): a secret the logs
    redact wherever it shows."""
    if not url:
        return ""
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def masked(url: str) -> str:
    """*url* with its password replaced by ``***`` (for logs and error lines)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def validate_url(url: str) -> None:
    """Raise :class:`ConfigError` (key ``database_url``) unless *url* is a usable PostgreSQL
    URL: scheme ``postgresql://`` (or ``postgres://``), a host or a socket, a database name."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError as exc:
        raise ConfigError("database_url", f"not a valid URL ({exc})") from None
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            "database_url",
            f"{masked(url)!r} is not a PostgreSQL URL (postgresql://user:password@host/db);"
            " leave it empty for SQLite files in data_dir",
        )
    if not parts.path.strip("/"):
        raise ConfigError("database_url", f"{masked(url)} names no database (…/dbname)")


async def connect(
    url: str,
    *,
    stores: Mapping[str, Sequence[str]],
    min_size: int = 1,
    max_size: int = _POOL_MAX,
    timeout_s: float = 10.0,
) -> PostgresDatabase:
    """A pool on *url*, with every store of *stores* (``{name: migrations}``) migrated.

    Raises :class:`ConfigError` for a bad URL, :class:`StorageError` (the URL masked) when the
    server cannot be reached or refuses the login, and :class:`SchemaTooNewError` when a
    store's schema is newer than this crosswatchd.
    """
    import asyncpg  # the PostgreSQL backend's driver; SQLite users never import it

    validate_url(url)
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, timeout=timeout_s, command_timeout=60
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, ValueError) as exc:
        raise StorageError(masked(url), f"cannot reach PostgreSQL: {describe(exc)}") from None
    db = PostgresDatabase(pool)
    try:
        await migrate(db, stores, where=masked(url))
    except BaseException:
        await pool.close()
        raise
    return db


def describe(exc: BaseException) -> str:
    """One line for a driver error (its message with the whitespace folded)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


async def migrate(db: PostgresDatabase, stores: Mapping[str, Sequence[str]], *, where: str) -> None:
    """Bring every store of *stores* to its latest version (see the module docstring)."""
    async with db.transaction() as tx:
        await tx.execute("SELECT pg_advisory_xact_lock(:lock::bigint)", {"lock": _MIGRATION_LOCK})
        await tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions"
            " (store text PRIMARY KEY, version integer NOT NULL)"
        )
        rows = await tx.fetch("SELECT store, version FROM schema_versions")
        versions: dict[str, int] = {str(r["store"]): int(r["version"]) for r in rows}
        for store, migrations in stores.items():
            version, known = versions.get(store, 0), len(migrations)
            if version > known:
                raise SchemaTooNewError(f"the {store}", where, version, known)
            if version == known:
                continue
            for script in migrations[version:]:
                await _run_script(tx, script)
            await tx.execute(
                "INSERT INTO schema_versions (store, version) VALUES (:store, :version::int)"
                " ON CONFLICT (store) DO UPDATE SET version = excluded.version",
                {"store": store, "version": known},
            )


async def _run_script(tx: PostgresDatabase | Any, script: str) -> None:
    """Run a whole migration script: without parameters asyncpg sends it as one simple query,
    which may hold many statements (and ``$$`` function bodies)."""
    await tx.execute(script)
