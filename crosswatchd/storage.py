"""Where a process keeps its state: SQLite files in ``data_dir`` (one household, the default),
or one PostgreSQL database shared by every replica of a relay (``database_url``).

A process opens its :class:`Storage` once and takes each store from it:

=================  ==========================================  ==================================
store              SQLite mode (``data_dir``)                  PostgreSQL (store: tables)
=================  ==========================================  ==================================
outbox             ``outbox.sqlite3``                          ``outbox``: events, deliveries …
tokens             ``tokens/[profile/]provider.json`` (0600)   ``tokens``: tokens
id cache           ``cache.sqlite3``                           ``cache``: id_cache
instance values    ``webhook_secret``, ``plex_client_id``      ``instance``: instance_values
watchlist state    ``watchlist.sqlite3``                       ``watchlist``: watchlist_sides …
reconcile state    ``reconcile.sqlite3``                       ``reconcile``: reconcile_copies …
replicas, leases   ``replicas.sqlite3``                        ``replicas``: replicas, leases
profiles (roster)  ``profiles.sqlite3``                        ``profiles``: profiles
=================  ==========================================  ==================================

With PostgreSQL every store lives in the one database, in its own tables, migrated per store
(:data:`PG_STORES`, :func:`crosswatchd.postgres.migrate`) when the storage opens, and the
process holds one pool for all of them; nothing in ``data_dir`` is read or written (the daemon
still keeps its lock file there, and its copy of the Anime-Lists file: a download, not state).

:meth:`Storage.exclusive` is a lock across every process of the storage (a reconcile pass runs
on one of them at a time): ``flock`` on a file of the data dir, or a PostgreSQL advisory lock
held on a connection of its own (it dies with the process either way).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Final

from crosswatchd import instance, postgres
from crosswatchd.config import Settings
from crosswatchd.db import PostgresDatabase
from crosswatchd.instance import DatabaseValues, FileValues, InstanceValues
from crosswatchd.models import DEFAULT_PROFILE
from crosswatchd.outbox import Outbox
from crosswatchd.outbox.queries import PG_MIGRATIONS as OUTBOX_PG_MIGRATIONS
from crosswatchd.profiles import Household, StoredProfile
from crosswatchd.reconcile.state import FILE_NAME as RECONCILE_FILE
from crosswatchd.reconcile.state import PG_MIGRATIONS as RECONCILE_PG_MIGRATIONS
from crosswatchd.reconcile.state import ReconcileState
from crosswatchd.replicas.store import FILE as REPLICAS_FILE
from crosswatchd.replicas.store import PG_MIGRATIONS as REPLICAS_PG_MIGRATIONS
from crosswatchd.replicas.store import ReplicaStore
from crosswatchd.resolve.cache import PG_MIGRATIONS as CACHE_PG_MIGRATIONS
from crosswatchd.resolve.cache import IdCache
from crosswatchd.roster.store import FILE as ROSTER_FILE
from crosswatchd.roster.store import PG_MIGRATIONS as ROSTER_PG_MIGRATIONS
from crosswatchd.roster.store import ProfileStore
from crosswatchd.tokens import TokenStore
from crosswatchd.tokens.files import TokenFile
from crosswatchd.tokens.shared import PG_MIGRATIONS as TOKENS_PG_MIGRATIONS
from crosswatchd.tokens.shared import TokenTable
from crosswatchd.watchlist.state import PG_MIGRATIONS as WATCHLIST_PG_MIGRATIONS
from crosswatchd.watchlist.state import STATE_FILE as WATCHLIST_FILE
from crosswatchd.watchlist.state import WatchlistState

__all__ = ["CACHE_FILE", "OUTBOX_FILE", "PG_STORES", "Storage"]

#: The SQLite files of ``data_dir``.
OUTBOX_FILE: Final = "outbox.sqlite3"
CACHE_FILE: Final = "cache.sqlite3"

#: Every store kept in PostgreSQL, by name, with its migrations (``schema_versions.store``).
PG_STORES: Final[dict[str, Sequence[str]]] = {
    "outbox": OUTBOX_PG_MIGRATIONS,
    "tokens": TOKENS_PG_MIGRATIONS,
    "cache": CACHE_PG_MIGRATIONS,
    "instance": instance.PG_MIGRATIONS,
    "watchlist": WATCHLIST_PG_MIGRATIONS,
    "reconcile": RECONCILE_PG_MIGRATIONS,
    "replicas": REPLICAS_PG_MIGRATIONS,
    "profiles": ROSTER_PG_MIGRATIONS,
}
#: The advisory lock numbers of :meth:`Storage.exclusive` start here ("cwdx" and a CRC).
_EXCLUSIVE_BASE: Final = 0x63_77_64_78 << 32


class Storage:
    """The state of one process. Open with :meth:`open` (or :meth:`opened`); close with
    :meth:`close`.

    ``db`` is the PostgreSQL database when ``database_url`` is set (``None`` with SQLite
    files). Raises what :meth:`open` documents; stores raise what their backend raises.
    """

    def __init__(
        self,
        settings: Settings,
        db: PostgresDatabase | None,
        token_table: TokenTable | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self._token_table = token_table
        self.values: InstanceValues = (
            FileValues(settings.data_dir)
            if db is None
            else DatabaseValues(db, where=postgres.masked(settings.database_url))
        )

    @classmethod
    def files(cls, settings: Settings) -> Storage:
        """The SQLite-mode storage of *settings* (nothing to open: each store opens its own
        file). Only for settings without ``database_url``."""
        if settings.database_url:
            raise ValueError("Storage.files() for settings with a database_url")
        return cls(settings, None)

    @classmethod
    async def open(cls, settings: Settings) -> Storage:
        """Open *settings*' storage: nothing to open for SQLite files (each store opens its
        own file); with ``database_url`` one pool, every store of :data:`PG_STORES` migrated,
        and the tokens loaded (then followed while the storage is open). Raises
        :class:`~crosswatchd.errors.StorageError` (the URL's password masked) when the
        database cannot be reached or is newer than this crosswatchd."""
        if not settings.database_url:
            return cls(settings, None)
        db = await postgres.connect(settings.database_url, stores=PG_STORES)
        table = TokenTable(db)
        try:
            await table.start()
        except BaseException:
            await db.close()
            raise
        return cls(settings, db, table)

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, settings: Settings) -> AsyncIterator[Storage]:
        """:meth:`open` for the block, then :meth:`close`."""
        storage = await cls.open(settings)
        try:
            yield storage
        finally:
            await storage.close()

    @property
    def shared(self) -> bool:
        """True when replicas share this storage (PostgreSQL)."""
        return self.db is not None

    @property
    def where(self) -> str:
        """Where the state is, for people: the data dir, or the masked database URL."""
        if self.db is None:
            return str(self.settings.data_dir)
        return postgres.masked(self.settings.database_url)

    # -- stores ------------------------------------------------------------------------------

    async def outbox(self, household: Household | None = None) -> Outbox:
        """The outbox, its events fanning out to the target accounts of *household* (by
        default the config file's profiles and the roster's: :meth:`Household.load`).
        Closing it leaves the storage open."""
        household = household or await Household.load(self.settings, self)
        targets = household.targets()
        delivery = self.settings.delivery
        if self.db is not None:
            return Outbox.on(self.db, targets=targets, dedupe_window_s=delivery.dedupe_window_s)
        return await Outbox.open(
            self.settings.data_dir / OUTBOX_FILE,
            targets=targets,
            dedupe_window_s=delivery.dedupe_window_s,
            synchronous=delivery.sqlite_synchronous,
        )

    async def cache(self) -> IdCache:
        """The id resolver's cache (``resolver.positive_ttl_s`` / ``negative_ttl_s``).
        Closing it leaves the storage open."""
        resolver = self.settings.resolver
        if self.db is not None:
            return await IdCache.on(
                self.db,
                positive_ttl_s=resolver.positive_ttl_s,
                negative_ttl_s=resolver.negative_ttl_s,
            )
        return await IdCache.open(
            self.settings.data_dir / CACHE_FILE,
            positive_ttl_s=resolver.positive_ttl_s,
            negative_ttl_s=resolver.negative_ttl_s,
        )

    def tokens(self, provider: str, profile: str = DEFAULT_PROFILE) -> TokenStore:
        """The token store of *profile* on *provider* (``trakt``, ``simkl``, ``plex``)."""
        if self._token_table is not None:
            return self._token_table.store(provider, profile)
        return TokenFile(self.settings.data_dir, provider, profile)

    async def watchlist_state(self) -> WatchlistState:
        """The watchlist pass's state. Closing it leaves the storage open."""
        if self.db is not None:
            return WatchlistState.on(self.db)
        return await WatchlistState.open(self.settings.data_dir)

    def has_watchlist_state(self) -> bool:
        """False when no watchlist pass can have run yet (SQLite: no state file), so
        ``status`` need not create one."""
        return self.db is not None or (self.settings.data_dir / WATCHLIST_FILE).exists()

    async def reconcile_state(self) -> ReconcileState:
        """What reconcile remembers between passes. Closing it leaves the storage open."""
        if self.db is not None:
            return ReconcileState.on(self.db)
        return await ReconcileState.open(self.settings.data_dir)

    def has_reconcile_state(self) -> bool:
        """False when no reconcile pass can have run yet (SQLite: no state file)."""
        return self.db is not None or (self.settings.data_dir / RECONCILE_FILE).exists()

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[str | None]:
        """Try to hold the lock *name* across every process of this storage for the block,
        without waiting. Yields ``None`` when it is held, else who holds it (``"pid 123"``,
        or ``""`` when that cannot be told), and the block must then do nothing.

        SQLite: ``flock`` on ``data_dir/{name}.lock`` (0600, holding the PID). PostgreSQL: a
        session advisory lock on a pooled connection kept for the block."""
        if self.db is None:
            with self._file_lock(name) as holder:
                yield holder
            return
        key = _EXCLUSIVE_BASE | zlib.crc32(name.encode())
        async with self.db.pool.acquire() as conn:
            held = await conn.fetchval("SELECT pg_try_advisory_lock($1::bigint)", key)
            if not held:
                yield ""
                return
            try:
                yield None
            finally:
                if not conn.is_closed():
                    await conn.execute("SELECT pg_advisory_unlock($1::bigint)", key)

    @contextlib.contextmanager
    def _file_lock(self, name: str) -> Iterator[str | None]:
        path = self.settings.data_dir / f"{name}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = fh.read().strip()
                yield f"pid {holder}" if holder.isdigit() else ""
                return
            try:
                fh.seek(0)
                fh.truncate()
                fh.write(f"{os.getpid()}\n")
                fh.flush()
                yield None
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    async def webhook_secret(self) -> tuple[str, bool]:
        """The webhook secret: ``webhook.secret`` if set, else the stored one (generated on
        first use; every replica of a database reads the same). Returns ``(secret,
        created_now)``."""
        if self.settings.webhook.secret:
            return self.settings.webhook.secret, False
        return await self.values.ensure(instance.WEBHOOK_SECRET, lambda: secrets.token_urlsafe(24))

    async def plex_client_id(self) -> str:
        """This installation's ``X-Plex-Client-Identifier`` (generated on first use)."""
        value, _ = await self.values.ensure(instance.PLEX_CLIENT_ID, lambda: uuid.uuid4().hex)
        return value

    async def replicas(self) -> ReplicaStore:
        """The replicas and account leases (:mod:`crosswatchd.replicas`): the shared database's,
        or ``data_dir/replicas.sqlite3`` (created when missing). Close it after use."""
        if self.db is not None:
            return ReplicaStore.on(self.db)
        return await ReplicaStore.open(self.settings.data_dir / REPLICAS_FILE)

    async def roster(self, *, create: bool = True) -> ProfileStore | None:
        """The profiles added at run time (:mod:`crosswatchd.roster`): the shared database's,
        or ``data_dir/profiles.sqlite3``; None when that file does not exist and not
        *create* (a command that only reads makes no file). Close it after use."""
        if self.db is not None:
            return ProfileStore.on(self.db)
        path = self.settings.data_dir / ROSTER_FILE
        if not create and not path.exists():
            return None
        return await ProfileStore.open(path)

    async def stored_profiles(self) -> list[StoredProfile]:
        """The roster's profiles, by name (none without a roster)."""
        store = await self.roster(create=False)
        if store is None:
            return []
        try:
            return await store.profiles()
        finally:
            await store.close()

    async def close(self) -> None:
        """Close the database (the stores taken from it must be closed first)."""
        if self._token_table is not None:
            await self._token_table.close()
        if self.db is not None:
            await self.db.close()
