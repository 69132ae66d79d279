"""The replicas store: who is running (``replicas``) and who holds each target account
(``account_leases``), on SQLite (``data_dir/replicas.sqlite3``) or in the shared PostgreSQL
database (store ``replicas``). Every statement is a named query of ``queries.sql`` /
``queries.pg.sql``; the tables are ``schema.sql`` / ``schema.pg.sql``.

A lease row says which replica may send for a target account, and until when (``expires_at``,
unix seconds, renewed by the holder's heartbeat). Another replica takes it only once it is
free (released, or never held) or expired; the statement that takes it re-checks that under
the row's lock, so two replicas racing for one account never both get it. The limiter state
the last holder saved travels in the row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from crosswatchd import sqlfiles
from crosswatchd.db import Database, SqliteDatabase
from crosswatchd.profiles import TargetAccount
from crosswatchd.sqlite import connect

__all__ = [
    "FILE",
    "MIGRATIONS",
    "PG_MIGRATIONS",
    "Acquired",
    "LeaseRow",
    "ReplicaRow",
    "ReplicaStore",
]

#: The SQLite file of the store, in ``data_dir``.
FILE: Final = "replicas.sqlite3"


@dataclass(frozen=True, slots=True)
class _Queries:
    register: str
    beat: str
    renew: str
    replicas: str
    leases: str
    held_by: str
    ensure_accounts: str
    acquire: str
    release: str
    save_state: str
    holds: str
    deregister: str
    prune: str
    reset_leases: str
    reset_replicas: str


_PACKAGE = "crosswatchd.replicas"
_QUERIES: Final = sqlfiles.queries(_PACKAGE, "queries.sql", _Queries)
_PG_QUERIES: Final = sqlfiles.queries(_PACKAGE, "queries.pg.sql", _Queries)
#: Migrations of the SQLite file and of the PostgreSQL store ``replicas``.
MIGRATIONS: Final = sqlfiles.migrations(_PACKAGE, "schema.sql")
PG_MIGRATIONS: Final = sqlfiles.migrations(_PACKAGE, "schema.pg.sql")


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    """One registered replica: ``heartbeat_at``/``started_at`` unix seconds; ``accounts`` how
    many leases it holds now."""

    id: str
    host: str
    pid: int
    started_at: float
    heartbeat_at: float
    accounts: int = 0


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """One account's lease: ``holder`` None when free; ``expires_at`` unix seconds."""

    account: TargetAccount
    holder: str | None
    expires_at: float

    def held_at(self, now_s: float) -> bool:
        """True when someone holds it at *now_s* (unix seconds)."""
        return self.holder is not None and self.expires_at > now_s


@dataclass(frozen=True, slots=True)
class Acquired:
    """A lease just taken: the limiter state the last holder saved (None: none), when it
    saved it, and who held the lease before (None: it was free or released; another id: a
    holder whose lease expired, a replica that died or lost the database)."""

    account: TargetAccount
    limiter_state: dict[str, Any] | None
    state_saved_at: float | None
    previous_holder: str | None


def _pairs(accounts: Iterable[TargetAccount]) -> str:
    return orjson.dumps([[a.profile, a.provider] for a in accounts]).decode()


def _states_param(
    replica_id: str, states: Mapping[TargetAccount, Mapping[str, Any] | None], now: float
) -> dict[str, Any]:
    """The parameters of ``release`` and ``save_state``: ``:states``, a JSON array of
    ``[profile, provider, state as JSON text or null]``."""
    rows = [
        [a.profile, a.provider, None if state is None else orjson.dumps(state).decode()]
        for a, state in states.items()
    ]
    return {"id": replica_id, "states": orjson.dumps(rows).decode(), "now": now}


class ReplicaStore:
    """The replicas and account leases in *db* (see the module docstring). ``unix_s`` is the
    wall clock (unix seconds) every ``now`` of the store is read from."""

    def __init__(
        self, db: Database, *, owns_db: bool, unix_s: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._q = _PG_QUERIES if db.dialect == "postgresql" else _QUERIES
        self._owns_db = owns_db
        self._unix_s = unix_s

    @classmethod
    async def open(cls, path: Path, *, unix_s: Callable[[], float] = time.time) -> ReplicaStore:
        """The store of the SQLite file at *path* (created and migrated when needed). Raises
        :class:`~crosswatchd.errors.StorageError` when it cannot be used."""
        conn = await connect(path, migrations=MIGRATIONS, what="replicas store")
        return cls(SqliteDatabase(conn), owns_db=True, unix_s=unix_s)

    @classmethod
    def on(cls, db: Database, *, unix_s: Callable[[], float] = time.time) -> ReplicaStore:
        """The store in *db*, migrated by its owner (PostgreSQL: store ``replicas`` of
        :data:`crosswatchd.storage.PG_STORES`); :meth:`close` leaves *db* open."""
        return cls(db, owns_db=False, unix_s=unix_s)

    @property
    def db(self) -> Database:
        return self._db

    async def close(self) -> None:
        if self._owns_db:
            await self._db.close()

    # -- replicas ----------------------------------------------------------------------------

    async def register(self, replica_id: str, *, host: str, pid: int, started_at: float) -> None:
        """Announce a replica (or refresh its heartbeat if it is known)."""
        await self._db.execute(
            self._q.register,
            {
                "id": replica_id,
                "host": host,
                "pid": pid,
                "started_at": started_at,
                "now": self._unix_s(),
            },
        )

    async def heartbeat(
        self, replica_id: str, *, lease_s: float, host: str, pid: int, started_at: float
    ) -> set[TargetAccount]:
        """Beat (registering again if the row was pruned) and renew every lease *replica_id*
        still holds to *lease_s* from now, in one transaction. Returns the accounts renewed:
        a lease held before and missing here was lost (it expired)."""
        now = self._unix_s()
        async with self._db.transaction() as tx:
            if not await tx.execute(self._q.beat, {"id": replica_id, "now": now}):
                await tx.execute(
                    self._q.register,
                    {
                        "id": replica_id,
                        "host": host,
                        "pid": pid,
                        "started_at": started_at,
                        "now": now,
                    },
                )
            rows = await tx.fetch(
                self._q.renew, {"id": replica_id, "expires": now + lease_s, "now": now}
            )
        return {TargetAccount(r["profile"], r["provider"]) for r in rows}

    async def replicas(self) -> list[ReplicaRow]:
        """Every registered replica, by id, with how many leases each holds now."""
        rows = await self._db.fetch(self._q.replicas, {"now": self._unix_s()})
        return [
            ReplicaRow(
                id=r["id"],
                host=r["host"],
                pid=int(r["pid"]),
                started_at=float(r["started_at"]),
                heartbeat_at=float(r["heartbeat_at"]),
                accounts=int(r["accounts"]),
            )
            for r in rows
        ]

    async def deregister(self, replica_id: str) -> None:
        """Remove a replica that stops (after it released its leases)."""
        await self._db.execute(self._q.deregister, {"id": replica_id})

    async def prune(self, silent_s: float) -> int:
        """Forget replicas whose last heartbeat is older than *silent_s* and that hold no
        lease (killed ones, for ``status``). Returns how many."""
        now = self._unix_s()
        return await self._db.execute(self._q.prune, {"before": now - silent_s, "now": now})

    async def reset(self) -> None:
        """Free every lease and forget every replica (SQLite: the one daemon of a data dir
        starts, so whatever an earlier process held is free now; saved limiter states stay)."""
        async with self._db.transaction() as tx:
            await tx.execute(self._q.reset_leases)
            await tx.execute(self._q.reset_replicas)

    # -- leases ------------------------------------------------------------------------------

    async def leases(self) -> dict[TargetAccount, LeaseRow]:
        """Every account's lease row."""
        rows = await self._db.fetch(self._q.leases)
        leases: dict[TargetAccount, LeaseRow] = {}
        for r in rows:
            account = TargetAccount(r["profile"], r["provider"])
            leases[account] = LeaseRow(account, r["holder"], float(r["expires_at"]))
        return leases

    async def held_by(self, replica_id: str) -> list[TargetAccount]:
        """The accounts *replica_id* holds now (``status``)."""
        rows = await self._db.fetch(self._q.held_by, {"id": replica_id, "now": self._unix_s()})
        return [TargetAccount(r["profile"], r["provider"]) for r in rows]

    async def ensure(self, accounts: Iterable[TargetAccount]) -> None:
        """A lease row (free) for each of *accounts* that has none yet."""
        chosen = list(accounts)
        if chosen:
            await self._db.execute(self._q.ensure_accounts, {"accounts": _pairs(chosen)})

    async def acquire(
        self, replica_id: str, account: TargetAccount, *, lease_s: float
    ) -> Acquired | None:
        """Take *account*'s lease for *lease_s* if it is free, expired or already ours;
        None when another replica holds it."""
        got = await self.acquire_many(replica_id, [account], lease_s=lease_s)
        return got[0] if got else None

    async def acquire_many(
        self, replica_id: str, accounts: Iterable[TargetAccount], *, lease_s: float
    ) -> list[Acquired]:
        """Take the leases of *accounts* that are free, expired or already ours, for
        *lease_s*, in one statement (a relay replica takes thousands at start). Returns what
        was taken, sorted; with PostgreSQL a lease another replica is taking at this moment
        is skipped, not waited for."""
        chosen = list(accounts)
        if not chosen:
            return []
        now = self._unix_s()
        rows = await self._db.fetch(
            self._q.acquire,
            {"id": replica_id, "accounts": _pairs(chosen), "expires": now + lease_s, "now": now},
        )
        got = []
        for row in rows:
            state: dict[str, Any] | None = None
            if row["limiter_state"]:
                try:
                    loaded = orjson.loads(row["limiter_state"])
                except orjson.JSONDecodeError:
                    loaded = None
                state = loaded if isinstance(loaded, dict) else None
            saved_at = row["state_saved_at"]
            got.append(
                Acquired(
                    account=TargetAccount(row["profile"], row["provider"]),
                    limiter_state=state,
                    state_saved_at=None if saved_at is None else float(saved_at),
                    previous_holder=row["previous_holder"],
                )
            )
        return sorted(got, key=lambda a: str(a.account))

    async def release(
        self,
        replica_id: str,
        account: TargetAccount,
        limiter_state: Mapping[str, Any] | None = None,
    ) -> bool:
        """Hand *account*'s lease back (free for anyone at once), saving *limiter_state* for
        the next holder. False when *replica_id* did not hold it."""
        return await self.release_many(replica_id, {account: limiter_state}) == 1

    async def release_many(
        self, replica_id: str, leases: Mapping[TargetAccount, Mapping[str, Any] | None]
    ) -> int:
        """:meth:`release` for every account of *leases* (with its limiter state, or None),
        in one statement. Returns how many *replica_id* held."""
        if not leases:
            return 0
        return await self._db.execute(
            self._q.release, _states_param(replica_id, leases, self._unix_s())
        )

    async def save_states(
        self, replica_id: str, states: Mapping[TargetAccount, Mapping[str, Any]]
    ) -> None:
        """Save the limiter state of accounts *replica_id* holds (one statement)."""
        if states:
            await self._db.execute(
                self._q.save_state, _states_param(replica_id, states, self._unix_s())
            )

    async def holds(self, replica_id: str, account: TargetAccount, *, for_s: float) -> bool:
        """True when *replica_id* holds *account*'s lease for at least *for_s* more seconds
        (the check right before a send)."""
        row = await self._db.fetch_one(
            self._q.holds,
            {
                "id": replica_id,
                "profile": account.profile,
                "provider": account.provider,
                "until": self._unix_s() + for_s,
            },
        )
        return row is not None and int(row["held"]) > 0
