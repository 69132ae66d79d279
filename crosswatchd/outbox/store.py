"""The :class:`Outbox`: intake (group commit), targets configured later, claim and settle.

Every statement it runs is a named query of ``queries.sql`` (SQLite) or ``queries.pg.sql``
(PostgreSQL), through the storage seam :class:`crosswatchd.db.Database`; the schema, with the
dedupe rule and the fan-out, is ``schema.sql`` / ``schema.pg.sql``. See the package docstring
for the life of a delivery.

Concurrency, SQLite: one :class:`Outbox` owns one aiosqlite connection, whose thread runs
calls one at a time. Every write is a single statement (atomic on its own), so there are no
multi-statement transactions to interleave. Other processes (``crosswatchd status``,
``import``) use their own connections; WAL lets readers in, and ``busy_timeout`` queues
writers. PostgreSQL: a pool shared by every store of the process; an intake batch is one
transaction that first locks its identity keys (``lock_keys``), so the same play reaching
several replicas at once is one play; claims skip rows another replica is claiming
(``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiosqlite
import orjson

from crosswatchd.db import Database, Row, SqliteDatabase
from crosswatchd.models import (
    DEFAULT_PROFILE,
    Action,
    Item,
    MediaKind,
    PlayEvent,
    Source,
    item_keys,
)
from crosswatchd.outbox.queries import MIGRATIONS, QUERIES, json_list, queries_for
from crosswatchd.outbox.states import DeliveryKind, ReasonKind, Settlement
from crosswatchd.outbox.views import OperatorViews, utc_from_unix
from crosswatchd.outbox.wakeups import DueRow, Wakeups
from crosswatchd.sqlite import connect

__all__ = ["SCHEMA_VERSION", "Claimed", "EnqueueResult", "Outbox"]

#: The ``PRAGMA user_version`` of a current outbox file (the number of migrations).
SCHEMA_VERSION: Final = len(MIGRATIONS)

#: Group commit: at most this many webhook events share one statement...
_GROUP_MAX: Final = 256
#: ...gathered for this long after the first one arrives.
_GROUP_WAIT_S: Final = 0.002


class _Rollback(Exception):
    """Ends :meth:`Outbox.scratch`'s transaction by rolling it back."""


def _returning_sees_earlier_rows() -> bool:
    """True if this SQLite evaluates a row's RETURNING after the earlier rows' AFTER triggers
    and before its own, with the row itself visible (observed in SQLite 3.35-3.4x; not
    documented), so ``insert_events`` reports each event's deliveries itself."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        db.executescript(QUERIES.probe_returning_schema)
        rows = db.execute(QUERIES.probe_returning).fetchall()
        return sorted(rows) == [(1, 0), (2, 1), (3, 0)]
    except sqlite3.Error:
        return False
    finally:
        db.close()


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """Outcome of enqueueing one event.

    ``new_deliveries`` is how many deliveries were created (one per target, fewer when a
    target already had this play); ``duplicate`` is True for a play that every target already
    had within the dedupe window.
    """

    event_id: int | None
    new_deliveries: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery owned by a worker until it settles it with ``lease_token``.

    ``item`` is the resolved item if resolution already ran, else the source's item.
    ``sent_at`` (unix seconds) is not None when an earlier attempt may have reached the target.
    ``attempts`` counts this one; ``unconfirmed`` the sends the target neither confirmed nor
    showed. ``occurred_at``/``watched_at`` are UTC (``watched_at`` is None for live state).
    ``rating`` is a rating delivery's 1-10 value (``None``: the rating is removed).
    """

    id: int
    event_id: int
    provider: str
    kind: DeliveryKind
    lease_token: str
    attempts: int
    action: Action
    source: Source
    account: str
    item: Item
    resolved: bool
    label: str
    occurred_at: datetime
    watched_at: datetime | None
    progress_pct: float | None
    sent_at: float | None
    unconfirmed: int = 0
    profile: str = DEFAULT_PROFILE
    rating: int | None = None


def _claimed(row: Row) -> Claimed:
    occurred_at = utc_from_unix(row["occurred_at"])
    assert occurred_at is not None  # NOT NULL column
    return Claimed(
        id=row["id"],
        event_id=row["event_id"],
        provider=row["provider"],
        kind=DeliveryKind(row["kind"]),
        lease_token=row["lease_token"],
        attempts=row["attempts"],
        action=Action(row["action"]),
        source=Source(row["source"]),
        account=row["account"],
        item=Item.from_dict(orjson.loads(row["item"])),
        resolved=bool(row["resolved"]),
        label=row["label"],
        occurred_at=occurred_at,
        watched_at=utc_from_unix(row["watched_at"]),
        progress_pct=row["progress_pct"],
        sent_at=row["sent_at"],
        unconfirmed=row["unconfirmed"],
        profile=row["profile"],
        rating=row["rating"],
    )


class Outbox(OperatorViews):
    """The outbox of one SQLite file (:meth:`open`) or of a PostgreSQL database shared by
    replicas (:meth:`on`). Close with :meth:`close`.

    The constructor takes a migrated :class:`~crosswatchd.db.Database`. The operator views
    (``counts``, ``parked``, ``backlog``…) come from
    :class:`~crosswatchd.outbox.views.OperatorViews`.
    """

    def __init__(
        self,
        db: Database,
        *,
        targets: Mapping[str, Sequence[str]],
        dedupe_window_s: float,
        unix_s: Callable[[], float],
        owns_db: bool = True,
    ) -> None:
        self._db = db
        self._q = queries_for(db.dialect)
        self._owns_db = owns_db
        self.targets: dict[str, list[str]] = {}
        self.providers: list[str] = []
        self.set_targets(targets)
        self.dedupe_window_s = float(dedupe_window_s)
        self._unix_s = unix_s
        self._pending: list[tuple[PlayEvent, asyncio.Future[EnqueueResult]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.wakeups = Wakeups(self.due_accounts, unix_s=unix_s)
        self._counted_insert = db.dialect == "sqlite" and _returning_sees_earlier_rows()

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        providers: Sequence[str] = (),
        targets: Mapping[str, Sequence[str]] | None = None,
        dedupe_window_s: float = 4 * 3600,
        unix_s: Callable[[], float] = time.time,
        synchronous: str = "normal",
    ) -> Outbox:
        """Open (creating and migrating if needed) the outbox at *path*.

        ``targets`` maps each profile (household member) to the providers its events fan out
        to (``{"alex": ["trakt", "simkl"], "sam": ["simkl"]}``); ``providers`` alone is the
        implicit profile's (``{"default": providers}``).
        ``unix_s`` returns unix seconds. ``synchronous`` is SQLite's ``PRAGMA synchronous``:
        ``"normal"`` (WAL: a commit survives the process being killed, not a power cut) or
        ``"full"`` (fsync on every commit: survives a power cut; costs intake throughput,
        see bench/ingest.py). Raises ``sqlite3.DatabaseError`` for a file that is not an
        SQLite database, ``ValueError`` for another ``synchronous``,
        :class:`~crosswatchd.sqlite.SchemaTooNewError` for a file a newer crosswatchd wrote.
        """
        conn = await connect(
            path,
            migrations=MIGRATIONS,
            what="outbox",
            synchronous=synchronous,
            # 32 MiB page cache: large import transactions stay in memory until commit.
            pragmas=("foreign_keys=ON", "cache_size=-32768"),
        )
        chosen = {DEFAULT_PROFILE: list(providers)} if targets is None else targets
        return cls(
            SqliteDatabase(conn), targets=chosen, dedupe_window_s=dedupe_window_s, unix_s=unix_s
        )

    @classmethod
    def on(
        cls,
        db: Database,
        *,
        providers: Sequence[str] = (),
        targets: Mapping[str, Sequence[str]] | None = None,
        dedupe_window_s: float = 4 * 3600,
        unix_s: Callable[[], float] = time.time,
        owns_db: bool = False,
    ) -> Outbox:
        """The outbox in *db*, a database opened and migrated by its owner (PostgreSQL:
        :func:`crosswatchd.postgres.connect` with the ``outbox`` store's
        :data:`~crosswatchd.outbox.queries.PG_MIGRATIONS`). :meth:`close` leaves *db* open
        unless *owns_db*. Other arguments as :meth:`open`."""
        chosen = {DEFAULT_PROFILE: list(providers)} if targets is None else targets
        return cls(
            db, targets=chosen, dedupe_window_s=dedupe_window_s, unix_s=unix_s, owns_db=owns_db
        )

    @property
    def db(self) -> Database:
        """The database the outbox lives in."""
        return self._db

    def set_targets(self, targets: Mapping[str, Sequence[str]]) -> None:
        """Fan new events out to *targets* (``{profile: [provider, …]}``) from now on: the
        household changed while the daemon runs (``crosswatchd profile add|remove``). Events
        already stored keep their deliveries; a profile added gets the plays it missed when its
        accounts are taken up (:meth:`adopt_targets`)."""
        self.targets = {profile: list(providers) for profile, providers in targets.items()}
        self.providers = list(
            dict.fromkeys(p for providers in self.targets.values() for p in providers)
        )

    async def close(self) -> None:
        """Flush queued webhook events, then close the connection (if the outbox owns it)."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self.wakeups.close()
        if self._owns_db:
            await self._db.close()

    def watch(
        self, profile: str, provider: str, kind: DeliveryKind, *, poll_s: float
    ) -> asyncio.Event:
        """An event set whenever the account's (*profile*, *provider*) deliveries of *kind*
        may be due: new events, re-queued parked ones, a retry's time come, at most *poll_s*
        seconds late (:class:`~crosswatchd.outbox.wakeups.Wakeups`). A drainer loop takes its
        own, clears it before claiming, and waits on it when idle."""
        return self.wakeups.watch(profile, provider, str(kind), poll_s=poll_s)

    def unwatch(self, event: asyncio.Event) -> None:
        """Stop setting *event* (a drainer loop that ended)."""
        self.wakeups.unwatch(event)

    async def due_accounts(self, profiles: Sequence[str] | None) -> list[DueRow]:
        """The earliest due time (unix s) per account and kind with work (pending, or leased
        until then), of *profiles* (all: None)."""
        params = {"profiles": None if profiles is None else json_list(profiles)}
        return [
            (r["profile"], r["provider"], r["kind"], float(r["due"]))
            for r in await self._db.fetch(self._q.due_accounts, params)
        ]

    # -- intake ------------------------------------------------------------------------------

    def _event_row(
        self, event: PlayEvent, received_at: float, targets: Sequence[str] | None
    ) -> list[Any]:
        """One element of ``insert_events``' ``:batch`` (the order its ``$[n]`` paths read):
        the event, its profile and the providers it goes to (*targets*, or else its profile's
        targets: none for an unknown profile, the play is kept and adopted once the profile
        has targets)."""
        item = event.item
        return [
            event.source.value,
            event.action.value,
            event.account,
            item.to_dict(),  # stored as JSON text by json_extract
            item.label(),
            event.occurred_at.timestamp(),
            received_at,
            event.progress_pct,
            event.view_offset_ms,
            event.duration_ms,
            event.session,
            item_keys(item),
            event.profile,
            self.targets_of(event) if targets is None else list(targets),
            event.rating,
            1 if event.source.is_backfill else 0,
            event.import_key,
        ]

    def targets_of(self, event: PlayEvent) -> list[str]:
        """The providers *event* fans out to: its profile's targets (none for a profile
        without targets: the play is kept and adopted once it has some). A season or episode
        rating never goes to SIMKL, which rates movies and shows only (simkl_apiary "Add
        Ratings")."""
        targets = self.targets.get(event.profile, [])
        if event.action is Action.RATE and event.item.kind in (MediaKind.SEASON, MediaKind.EPISODE):
            return [t for t in targets if t != "simkl"]
        return targets

    async def enqueue_many(
        self,
        events: Sequence[PlayEvent],
        *,
        keep_duplicates: bool = True,
        targets: Sequence[str] | None = None,
    ) -> list[EnqueueResult]:
        """Commit *events* atomically (one statement), fanning out deliveries with dedupe.

        Returns one :class:`EnqueueResult` per event, in order. The events are durable when
        this returns. ``keep_duplicates=False`` does not keep the event row of a play every
        target already had (a re-run import then writes nothing); its result has
        ``event_id=None``. *targets* sends every event of the batch to these providers of its
        profile instead of all of them (the watchlist pass decides per target account, and
        ``"plex"``, the Plex watchlist, is a target of watchlist changes only).
        """
        if not events:
            return []
        now = self._unix_s()
        rows_in = [self._event_row(e, now, targets) for e in events]
        batch = orjson.dumps(rows_in).decode()
        q = self._q
        async with self._intake() as db:
            if db.dialect != "sqlite":
                keys = sorted({f"{row[12]} {key}" for row in rows_in for key in row[11]})
                await db.fetch(q.lock_keys, {"keys": orjson.dumps(keys).decode()})
            rows = await db.fetch(q.insert_events, {"batch": batch, "window": self.dedupe_window_s})
            counts = {int(row["id"]): int(row["fanned_out"] or 0) for row in rows}
            ids = sorted(counts)
            if len(ids) != len(events):  # pragma: no cover - would be a database bug
                raise RuntimeError(f"inserted {len(ids)} events for {len(events)}")
            fanned = {
                i: len(self.targets_of(e)) if targets is None else len(targets)
                for i, e in zip(ids, events, strict=True)
            }
            if not self._counted_insert:
                counts = dict(fanned)
                if any(fanned.values()) and any(e.action.is_play for e in events):
                    # Plays may have been deduplicated: count what the trigger created.
                    # Nothing else creates deliveries for these new events, so reading
                    # after the insert is exact.
                    counts = dict.fromkeys(ids, 0)
                    for row in await db.fetch(
                        q.count_deliveries_of_events, {"first": ids[0], "last": ids[-1]}
                    ):
                        counts[int(row["event_id"])] = int(row["deliveries"])
        results = []
        dropped: list[int] = []
        for event_id, event in zip(ids, events, strict=True):
            n = counts[event_id]
            duplicate = event.action.is_play and n == 0 and fanned[event_id] > 0
            if duplicate and not keep_duplicates:
                dropped.append(event_id)
            results.append(
                EnqueueResult(
                    event_id=None if duplicate and not keep_duplicates else event_id,
                    new_deliveries=n,
                    duplicate=duplicate,
                )
            )
        if dropped:
            await self._db.execute(q.delete_events, {"ids": json_list(dropped)})
        self.wakeups.notify(  # the accounts given deliveries: each row's profile and targets
            (row[12], provider)
            for row, result in zip(rows_in, results, strict=True)
            if result.new_deliveries
            for provider in row[13]
        )
        return results

    def _intake(self) -> contextlib.AbstractAsyncContextManager[Database]:
        """Where a batch of events is written: SQLite's single statement is atomic on its own
        (no transaction: a webhook never waits behind another's); PostgreSQL's lock, insert
        and count are one transaction."""
        if self._db.dialect == "sqlite":
            return contextlib.nullcontext(self._db)
        return self._db.transaction()

    async def enqueue(self, event: PlayEvent) -> EnqueueResult:
        """Commit one event; concurrent calls share a statement (group commit).

        Returns when the event is durable. Raises what the database raised, if anything.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[EnqueueResult] = loop.create_future()
        self._pending.append((event, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            # Let requests already being handled in this loop iteration join the batch.
            await asyncio.sleep(_GROUP_WAIT_S)
            batch = self._pending[:_GROUP_MAX]
            del self._pending[:_GROUP_MAX]
            try:
                results = await self.enqueue_many([event for event, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    if not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                    continue
                # One bad event must not fail the others: commit them one by one.
                for event, future in batch:
                    try:
                        (result,) = await self.enqueue_many([event])
                    except Exception as single:
                        if not future.done():
                            future.set_exception(single)
                    else:
                        if not future.done():
                            future.set_result(result)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def adopt_targets(self, accounts: Iterable[tuple[str, str]] | None = None) -> int:
        """Give targets configured after events arrived the plays they missed (every target,
        or only the ``(profile, provider)`` *accounts* given: the ones a replica just took
        up, so two replicas never adopt for one account at once).

        Each event records the targets it fanned out to. For every configured target an event
        lacks, a play gets that target's delivery (with the same dedupe test as the fan-out
        trigger, one event after another so the missed plays dedupe among themselves too);
        live state gets none (it is stale by now). Safe to repeat, and after a crash between
        its statements: an existing delivery is never created twice. Returns how many
        deliveries were created.
        """
        created = 0
        now = self._unix_s()
        if accounts is None:
            accounts = [(name, p) for name, providers in self.targets.items() for p in providers]
        accounts = list(accounts)
        if not accounts:
            return 0
        # One look for the whole batch (a replica takes thousands of accounts up at start);
        # only an account with orphan plays costs more.
        lacking = await self._db.fetch(
            self._q.accounts_to_adopt, {"accounts": orjson.dumps(accounts).decode()}
        )
        for profile, provider in sorted((r["profile"], r["provider"]) for r in lacking):
            account = {"profile": profile, "provider": provider}
            orphans = await self._db.fetch(self._q.orphan_plays, account)
            if orphans:
                # Summed over rows; the trigger's rows are not counted.
                created += await self._db.execute_many(
                    self._q.adopt_play,
                    [{"event_id": r["id"], "now": now, **account} for r in orphans],
                )
            await self._db.execute(self._q.add_target, account)
        if created:
            self.wakeups.notify(accounts)
        return created

    @contextlib.asynccontextmanager
    async def scratch(self) -> AsyncIterator[Outbox]:
        """A throw-away outbox holding what this one holds, for ``import --dry-run``: the
        import runs for real into it, to report exactly what a real run would enqueue, and
        everything it wrote is gone when the block ends. SQLite: a copy of the file (online
        backup) in a temporary directory; PostgreSQL: one transaction, rolled back."""
        if isinstance(self._db, SqliteDatabase):
            with tempfile.TemporaryDirectory(prefix="crosswatchd-dry-run-") as tmp:
                path = Path(tmp) / "outbox.sqlite3"
                target = await aiosqlite.connect(path)
                try:
                    await self._db.conn.backup(target)
                finally:
                    await target.close()
                copy = await Outbox.open(
                    path,
                    targets=self.targets,
                    dedupe_window_s=self.dedupe_window_s,
                    unix_s=self._unix_s,
                )
                try:
                    yield copy
                finally:
                    await copy.close()
            return
        rollback = _Rollback()
        try:
            async with self._db.transaction() as tx:
                copy = Outbox(
                    tx,
                    targets=self.targets,
                    dedupe_window_s=self.dedupe_window_s,
                    unix_s=self._unix_s,
                    owns_db=False,
                )
                yield copy
                raise rollback
        except _Rollback:
            pass

    async def note_account(self, source: str, account: str) -> None:
        """Remember an account a source reported but the filter did not accept."""
        await self._db.execute(
            self._q.note_account, {"source": source, "account": account, "now": self._unix_s()}
        )

    # -- claim / settle ----------------------------------------------------------------------

    async def release_all_leases(self) -> int:
        """Return every leased delivery to pending (daemon start: the old owner is gone).

        Only safe while no other daemon uses this file (the CLI holds a lock file for that).
        ``sent_at`` is kept, so a delivery that was in flight is checked before resending.
        """
        return await self._db.execute(self._q.release_all_leases, {"now": self._unix_s()})

    async def release_accounts(self, accounts: Iterable[tuple[str, str]]) -> int:
        """Make the deliveries still leased of the ``(profile, provider)`` target *accounts*
        due at once (``sent_at`` kept): the replica handing them over has stopped their
        drainers. Returns how many."""
        pairs = [[profile, provider] for profile, provider in accounts]
        if not pairs:
            return 0
        return await self._db.execute(
            self._q.release_accounts,
            {"accounts": orjson.dumps(pairs).decode(), "now": self._unix_s()},
        )

    async def queued_accounts(self) -> set[tuple[str, str]]:
        """The ``(profile, provider)`` target accounts with deliveries waiting or being sent."""
        rows = await self._db.fetch(self._q.queued_accounts)
        return {(str(r["profile"]), str(r["provider"])) for r in rows}

    async def discard_profile(self, profile: str) -> int:
        """Drop every delivery of *profile* not delivered yet (waiting, being sent, parked or
        dead): ``crosswatchd profile remove NAME --discard-queued``. Returns how many."""
        return await self._db.execute(
            self._q.discard_profile, {"profile": profile, "now": self._unix_s()}
        )

    async def claim(
        self,
        provider: str,
        kind: DeliveryKind,
        *,
        limit: int,
        lease_s: float,
        profile: str = "default",
    ) -> list[Claimed]:
        """Lease up to *limit* due deliveries of the target account (*profile*, *provider*)
        and *kind*.

        Due means pending with ``next_attempt_at <= now``, or leased with an expired lease.
        One ``UPDATE … RETURNING`` statement; oldest first.
        """
        now = self._unix_s()
        token = uuid.uuid4().hex
        leased = await self._db.fetch(
            self._q.claim,
            {
                "token": token,
                "expires": now + lease_s,
                "now": now,
                "profile": profile,
                "provider": provider,
                "kind": str(kind),
                "limit": limit,
            },
        )
        if not leased:
            return []
        rows = await self._db.fetch(
            self._q.claimed_rows,
            {"ids": json_list(int(r["id"]) for r in leased), "token": token},
        )
        return [_claimed(r) for r in rows]

    async def mark_sent(self, claimed: Iterable[Claimed]) -> None:
        """Record, durably, that a send of these deliveries is about to start."""
        now = self._unix_s()
        await self._db.execute_many(
            self._q.mark_sent,
            [{"now": now, "id": c.id, "token": c.lease_token} for c in claimed],
        )

    async def save_resolution(self, claimed: Claimed, item: Item, step: str) -> None:
        """Store the resolved item of a delivery (so a retry does not resolve again)."""
        await self._db.execute(
            self._q.save_resolution,
            {
                "item": orjson.dumps(item.to_dict()).decode(),
                "step": step,
                "id": claimed.id,
                "token": claimed.lease_token,
            },
        )

    async def settle(self, claimed: Claimed, settlement: Settlement) -> bool:
        """Apply *settlement* to a delivery this worker still holds the lease of.

        Returns False, changing nothing, when the lease was lost (it expired and another
        claim took the row, or the daemon restarted): the newer owner's work stands.
        """
        now = self._unix_s()
        changed = await self._db.execute(
            self._q.settle,
            {
                "state": str(settlement.state),
                "next_attempt_at": (
                    None if settlement.delay_s is None else now + settlement.delay_s
                ),
                "error": settlement.error,
                "reason": settlement.reason,
                "reason_kind": (
                    None if settlement.reason_kind is None else str(settlement.reason_kind)
                ),
                "keep_sent": settlement.keep_sent,
                "refund": int(settlement.refund_attempt),
                "unconfirmed": int(settlement.count_unconfirmed),
                "settled_at": now if settlement.state.is_final else None,
                "now": now,
                "id": claimed.id,
                "token": claimed.lease_token,
            },
        )
        return changed == 1

    async def retry_parked(
        self,
        delivery_id: int | None = None,
        *,
        kinds: Sequence[ReasonKind] = (ReasonKind.UNRESOLVED,),
        profile: str | None = None,
        reason_contains: str | None = None,
        announce: bool = True,
    ) -> int:
        """Put parked deliveries (one by id, parked or dead; or all parked of *kinds*, only
        those whose reason contains *reason_contains* when given) of one *profile* (any if
        None) back to pending, resolving afresh. *announce* (a user's retry) bumps the retry
        generation, so running drainers forget their cached "not found" answers.

        Returns how many were re-queued.
        """
        count = await self._db.execute(
            self._q.retry_parked,
            {
                "id": delivery_id,
                "kinds": json_list(kinds),
                "profile": profile,
                "reason": reason_contains,
                "now": self._unix_s(),
            },
        )
        # After the re-queue, so a daemon that sees the new generation also sees the rows.
        if announce:
            await self._db.execute(self._q.bump_retry_generation)
        if count:
            self.wakeups.notify()
        return int(count)

    async def dismiss_parked(
        self,
        delivery_id: int | None = None,
        *,
        kinds: Sequence[ReasonKind] = (ReasonKind.UNRESOLVED,),
        profile: str | None = None,
    ) -> int:
        """Give up on parked plays (one by id, parked or dead; or all parked of *kinds*) of one
        *profile* (any if None): they are dropped (``dismissed``), never sent or retried.

        Returns how many were dismissed.
        """
        return await self._db.execute(
            self._q.dismiss_parked,
            {
                "id": delivery_id,
                "kinds": json_list(kinds),
                "profile": profile,
                "now": self._unix_s(),
            },
        )

    async def probe_write(self) -> None:
        """A tiny write (``/readyz``); raises what the database raises when it cannot."""
        await self._db.execute(self._q.probe_write)

    async def fetch_all(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Run a query written for both dialects (tests, benchmarks, diagnostics); rows as
        tuples. Parameters are ``:name`` with a mapping, or ``?`` with a sequence."""
        if not isinstance(params, Mapping):
            names = [f"p{n}" for n in range(len(params))]
            for name in names:
                sql = sql.replace("?", f":{name}", 1)
            params = dict(zip(names, params, strict=True))
        return [
            tuple(r[n] for n in range(len(list(r.keys()))))
            for r in await self._db.fetch(sql, params)
        ]
