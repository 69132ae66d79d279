"""Where a process keeps its state: SQLite files in ``data_dir`` (one household, the default),
or one PostgreSQL database shared by every replica of a relay (``database_url``).

A process opens its :class:`Storage` once and takes each store from it: the outbox, and (as
they move behind the seam) the id cache, tokens, the webhook secret, profiles, replica leases,
reconcile and watchlist state. With PostgreSQL every store lives in the one database, in its
own tables, migrated per store (:data:`PG_STORES`, :func:`crosswatchd.postgres.migrate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from crosswatchd import postgres
from crosswatchd.config import Settings
from crosswatchd.db import PostgresDatabase
from crosswatchd.outbox import Outbox
from crosswatchd.outbox.queries import PG_MIGRATIONS as OUTBOX_PG_MIGRATIONS
from crosswatchd.profiles import Household, StoredProfile
from crosswatchd.replicas.store import FILE as REPLICAS_FILE
from crosswatchd.replicas.store import PG_MIGRATIONS as REPLICAS_PG_MIGRATIONS
from crosswatchd.replicas.store import ReplicaStore
from crosswatchd.roster.store import FILE as ROSTER_FILE
from crosswatchd.roster.store import PG_MIGRATIONS as ROSTER_PG_MIGRATIONS
from crosswatchd.roster.store import ProfileStore

__all__ = ["PG_STORES", "Storage"]

#: Every store kept in PostgreSQL, by name, with its migrations (``schema_versions.store``).
PG_STORES: Final[dict[str, Sequence[str]]] = {
    "outbox": OUTBOX_PG_MIGRATIONS,
    "replicas": REPLICAS_PG_MIGRATIONS,
    "profiles": ROSTER_PG_MIGRATIONS,
}


class Storage:
    """The state of one process. Open with :meth:`open`; close with :meth:`close`.

    ``db`` is the PostgreSQL database when ``database_url`` is set (``None`` with SQLite
    files). Raises what :meth:`open` documents; stores raise what their backend raises.
    """

    def __init__(self, settings: Settings, db: PostgresDatabase | None) -> None:
        self.settings = settings
        self.db = db

    @classmethod
    async def open(cls, settings: Settings) -> Storage:
        """Open *settings*' storage: nothing to open for SQLite files (each store opens its
        own file); with ``database_url`` one pool, every store of :data:`PG_STORES` migrated.
        Raises :class:`~crosswatchd.errors.StorageError` (the URL's password masked) when the
        database cannot be reached or is newer than this crosswatchd."""
        if not settings.database_url:
            return cls(settings, None)
        db = await postgres.connect(settings.database_url, stores=PG_STORES)
        return cls(settings, db)

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

    async def outbox(self, household: Household | None = None) -> Outbox:
        """The outbox, its events fanning out to the target accounts of *household* (the
        settings' by default). Closing it leaves the storage open."""
        household = household or Household.from_settings(self.settings)
        targets = {profile.name: list(profile.targets) for profile in household.profiles}
        delivery = self.settings.delivery
        if self.db is not None:
            return Outbox.on(self.db, targets=targets, dedupe_window_s=delivery.dedupe_window_s)
        return await Outbox.open(
            self.settings.data_dir / "outbox.sqlite3",
            targets=targets,
            dedupe_window_s=delivery.dedupe_window_s,
            synchronous=delivery.sqlite_synchronous,
        )

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
        if self.db is not None:
            await self.db.close()
