"""The durable outbox: every SQL statement about events and deliveries lives here.

An accepted event is committed (WAL) before the webhook is answered, and
fans out into one *delivery* per configured target (see the trigger in ``schema.sql``). A
delivery moves through::

    pending ──claim──▶ leased ──settle──▶ delivered | parked(reason) | dead(reason) | dropped
       ▲                  │
       └──── retry ───────┘   (settle back to pending with a later next_attempt_at)

Claim and settle are single statements. A claim stamps a fresh ``lease_token``; a settle only
applies ``WHERE lease_token = ?``, so a worker whose lease expired and was reclaimed cannot
overwrite the newer claim. ``sent_at`` marks a send that may have reached the target; a delivery
claimed with ``sent_at`` set is checked against the target's history before being sent again.

Concurrency: one :class:`Outbox` owns one aiosqlite connection, whose thread runs calls one at
a time. Every write is a single statement (atomic on its own), so there are no multi-statement
transactions to interleave. Other processes (``crosswatchd status``, ``import``) use their own
connections; WAL lets readers in, and ``busy_timeout`` queues writers.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from crosswatchd.models import Action, Item, PlayEvent, Source, item_keys

__all__ = [
    "Claimed",
    "EnqueueResult",
    "Outbox",
    "ParkedRow",
    "ProviderCounts",
]

SCHEMA_VERSION = 1

#: Group commit: at most this many webhook events share one transaction...
_GROUP_MAX = 256
#: ...gathered for this long after the first one arrives.
_GROUP_WAIT_S = 0.002

# A whole batch of events is ONE statement: rows come as a JSON array (one array per event) and
# the fan-out trigger runs per row. A single statement is atomic in autocommit mode, so the
# batch needs one round trip to the database thread instead of a BEGIN/INSERT/COMMIT dance
# (each aiosqlite call costs ~0.1 ms of CPU, more than SQLite's own work: bench/ingest.py).
# Rows are inserted in array order, so the RETURNING ids, sorted, are in input order.
_EVENT_INSERT_BATCH = """
INSERT INTO events (source, action, account, item, label, occurred_at, received_at,
                    progress_pct, view_offset_ms, duration_ms, session, keys, providers,
                    dedupe_window_s)
SELECT json_extract(e.value, '$[0]'), json_extract(e.value, '$[1]'),
       json_extract(e.value, '$[2]'), json_extract(e.value, '$[3]'),
       json_extract(e.value, '$[4]'), json_extract(e.value, '$[5]'),
       json_extract(e.value, '$[6]'), json_extract(e.value, '$[7]'),
       json_extract(e.value, '$[8]'), json_extract(e.value, '$[9]'),
       json_extract(e.value, '$[10]'), json_extract(e.value, '$[11]'),
       :providers, :window
FROM json_each(:batch) AS e
ORDER BY e.key
RETURNING id
"""

# The same insert, also returning how many deliveries the fan-out trigger creates for each
# row: the trigger's own condition, evaluated just before that row's trigger runs (after the
# earlier rows' triggers), so a batch needs no second query. SQLite does not document when a
# RETURNING subquery is evaluated relative to AFTER triggers, so Outbox.open() checks it
# (_returning_sees_earlier_rows) and falls back to counting afterwards if it ever changes.
_EVENT_INSERT_BATCH_COUNTED = _EVENT_INSERT_BATCH.replace(
    "RETURNING id",
    """RETURNING id, (
    SELECT count(*) FROM json_each(events.providers) AS p
    WHERE events.action <> 'watched'
       OR NOT EXISTS (
            SELECT 1 FROM play_keys AS k
            WHERE k.provider = p.value
              AND k.key IN (SELECT value FROM json_each(events.keys))
              AND k.watched_at BETWEEN events.occurred_at - events.dedupe_window_s
                                   AND events.occurred_at + events.dedupe_window_s))""",
)


def _returning_sees_earlier_rows() -> bool:
    """True if this SQLite evaluates a row's RETURNING after the earlier rows' AFTER triggers
    and before its own (observed in SQLite 3.35-3.4x; not documented)."""
    db = sqlite3.connect(":memory:", isolation_level=None)
    try:
        db.executescript(
            "CREATE TABLE r (id INTEGER PRIMARY KEY, k TEXT); CREATE TABLE s (k TEXT);"
            "CREATE TRIGGER r_after AFTER INSERT ON r BEGIN"
            " INSERT INTO s (k) VALUES (NEW.k); END;"
        )
        rows = db.execute(
            'INSERT INTO r (k) SELECT value FROM json_each(\'["a","a","b"]\')'
            " ORDER BY key RETURNING id, (SELECT count(*) FROM s WHERE s.k = r.k)"
        ).fetchall()
        return sorted(rows) == [(1, 0), (2, 1), (3, 0)]
    except sqlite3.Error:
        return False
    finally:
        db.close()


# One missed play for one target (Outbox.adopt_targets), deduped like the fan-out trigger.
_ADOPT_PLAY = """
INSERT INTO deliveries (event_id, provider, kind, next_attempt_at, watched_at,
                        created_at, updated_at)
SELECT e.id, :p, 'play', :now, e.occurred_at, :now, :now
FROM events AS e
WHERE e.id = :id
  AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.event_id = e.id AND d.provider = :p)
  AND NOT EXISTS (
        SELECT 1 FROM play_keys AS k
        WHERE k.provider = :p
          AND k.key IN (SELECT value FROM json_each(e.keys))
          AND k.watched_at BETWEEN e.occurred_at - e.dedupe_window_s
                               AND e.occurred_at + e.dedupe_window_s)
"""


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
    ``sent_at`` is not None when an earlier attempt may have reached the target.
    """

    id: int
    event_id: int
    provider: str
    kind: str
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


@dataclass(frozen=True, slots=True)
class ProviderCounts:
    """Delivery counts of one target, as ``crosswatchd status`` shows them."""

    pending: int = 0
    delivered: int = 0
    dead: int = 0
    unresolved: int = 0
    parked: int = 0
    live_pending: int = 0
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class ParkedRow:
    """A parked or dead delivery, for ``unresolved list`` and ``status``."""

    id: int
    provider: str
    state: str
    label: str
    reason: str
    reason_kind: str
    attempts: int
    watched_at: datetime | None


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


class Outbox:
    """The outbox of one SQLite file. Create with :meth:`open`; close with :meth:`close`."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        providers: Sequence[str],
        dedupe_window_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._conn = conn
        self.providers = list(providers)
        self._providers_json = orjson.dumps(self.providers).decode()
        self.dedupe_window_s = float(dedupe_window_s)
        self._clock = clock
        self._pending: list[tuple[PlayEvent, asyncio.Future[EnqueueResult]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._watchers: list[asyncio.Event] = []
        self._counted_insert = _returning_sees_earlier_rows()

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        providers: Sequence[str],
        dedupe_window_s: float = 4 * 3600,
        clock: Callable[[], float] = time.time,
        synchronous: str = "normal",
    ) -> Outbox:
        """Open (creating and migrating if needed) the outbox at *path*.

        ``providers`` are the targets new events fan out to (``["trakt", "simkl"]``).
        ``clock`` returns unix seconds. ``synchronous`` is SQLite's ``PRAGMA synchronous``:
        ``"normal"`` (WAL: a commit survives the process being killed, not a power cut) or
        ``"full"`` (fsync on every commit: survives a power cut; costs intake throughput,
        see bench/ingest.py). Raises ``sqlite3.DatabaseError`` for a file that is not an
        SQLite database, ``ValueError`` for another ``synchronous``.
        """
        if synchronous not in ("normal", "full"):
            raise ValueError(f"synchronous must be 'normal' or 'full', not {synchronous!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.execute("PRAGMA busy_timeout=5000")
            # 32 MiB page cache: large import transactions stay in memory until commit.
            await conn.execute("PRAGMA cache_size=-32768")
            await _migrate(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, providers=providers, dedupe_window_s=dedupe_window_s, clock=clock)

    async def close(self) -> None:
        """Flush queued webhook events, then close the connection."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self._conn.close()

    def watch(self) -> asyncio.Event:
        """An event set whenever deliveries become due (new events, re-queued parked ones).

        Each drainer takes its own, clears it before looking, and waits on it when idle.
        """
        event = asyncio.Event()
        self._watchers.append(event)
        return event

    def _notify(self) -> None:
        for event in self._watchers:
            event.set()

    # -- intake ------------------------------------------------------------------------------

    @staticmethod
    def _event_row(event: PlayEvent, received_at: float) -> list[Any]:
        item = event.item
        return [
            event.source.value,
            event.action.value,
            event.account,
            item.to_dict(),  # stored as JSON text by json_extract
            item.label(),
            _ts(event.occurred_at),
            received_at,
            event.progress_pct,
            event.view_offset_ms,
            event.duration_ms,
            event.session,
            item_keys(item),
        ]

    async def enqueue_many(
        self, events: Sequence[PlayEvent], *, keep_duplicates: bool = True
    ) -> list[EnqueueResult]:
        """Commit *events* atomically (one statement), fanning out deliveries with dedupe.

        Returns one :class:`EnqueueResult` per event, in order. The events are durable when
        this returns. ``keep_duplicates=False`` does not keep the event row of a play every
        target already had (a re-run import then writes nothing); its result has
        ``event_id=None``.
        """
        if not events:
            return []
        now = self._clock()
        batch = orjson.dumps([self._event_row(e, now) for e in events]).decode()
        rows = await self._conn.execute_fetchall(
            _EVENT_INSERT_BATCH_COUNTED if self._counted_insert else _EVENT_INSERT_BATCH,
            {"batch": batch, "providers": self._providers_json, "window": self.dedupe_window_s},
        )
        ids = sorted(int(row[0]) for row in rows)
        if len(ids) != len(events):  # pragma: no cover - would be an SQLite bug
            raise RuntimeError(f"inserted {len(ids)} events for {len(events)}")
        fanned = len(self.providers)
        counts = dict.fromkeys(ids, fanned)
        if self._counted_insert:
            counts = {int(row[0]): int(row[1]) for row in rows}
        elif fanned and any(e.action.is_play for e in events):
            # Plays may have been deduplicated: count what the trigger created. Nothing else
            # creates deliveries for these new events, so reading after the commit is exact.
            counts = dict.fromkeys(ids, 0)
            for event_id, n in await self._conn.execute_fetchall(
                "SELECT event_id, count(*) FROM deliveries"
                " WHERE event_id BETWEEN ? AND ? GROUP BY event_id",
                (ids[0], ids[-1]),
            ):
                counts[int(event_id)] = int(n)
        results = []
        dropped: list[int] = []
        for event_id, event in zip(ids, events, strict=True):
            n = counts[event_id]
            duplicate = event.action.is_play and n == 0 and fanned > 0
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
            await self._conn.execute(
                f"DELETE FROM events WHERE id IN ({','.join('?' * len(dropped))})", dropped
            )
        self._notify()
        return results

    async def enqueue(self, event: PlayEvent) -> EnqueueResult:
        """Commit one event; concurrent calls share a transaction (group commit).

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

    async def adopt_targets(self) -> int:
        """Give targets configured after events arrived the plays they missed.

        Each event records the targets it fanned out to. For every configured target an event
        lacks, a play gets that target's delivery (with the same dedupe test as the fan-out
        trigger, one event after another so the missed plays dedupe among themselves too);
        live state gets none (it is stale by now). Safe to repeat, and after a crash between
        its statements: an existing delivery is never created twice. Returns how many
        deliveries were created.
        """
        created = 0
        now = self._clock()
        for provider in self.providers:
            orphans = await self._conn.execute_fetchall(
                "SELECT id FROM events WHERE action = 'watched' AND NOT EXISTS"
                " (SELECT 1 FROM json_each(events.providers) WHERE value = ?) ORDER BY id",
                (provider,),
            )
            if orphans:
                await self._conn.executemany(
                    _ADOPT_PLAY, [{"id": r[0], "p": provider, "now": now} for r in orphans]
                )
                rows = list(
                    await self._conn.execute_fetchall(
                        "SELECT count(*) FROM deliveries WHERE provider = ? AND created_at = ?"
                        " AND event_id IN (SELECT value FROM json_each(?))",
                        (provider, now, orjson.dumps([r[0] for r in orphans]).decode()),
                    )
                )
                created += int(rows[0][0]) if rows else 0
            await self._conn.execute(
                "UPDATE events SET providers = json_insert(providers, '$[#]', ?)"
                " WHERE NOT EXISTS (SELECT 1 FROM json_each(events.providers) WHERE value = ?)",
                (provider, provider),
            )
        if created:
            self._notify()
        return created

    async def untargeted_plays(self) -> int:
        """Plays stored while no target was configured (delivered once one is)."""
        rows = list(
            await self._conn.execute_fetchall(
                "SELECT count(*) FROM events WHERE action = 'watched' AND providers = '[]'"
            )
        )
        return int(rows[0][0]) if rows else 0

    async def copy_to(self, path: Path) -> None:
        """Write a consistent copy of the whole outbox to *path* (SQLite online backup).

        Used by ``import --dry-run``, which imports into a scratch copy to report exactly
        what a real run would enqueue, then throws the copy away.
        """
        target = await aiosqlite.connect(path)
        try:
            await self._conn.backup(target)
        finally:
            await target.close()

    async def note_account(self, source: str, account: str) -> None:
        """Remember an account a source reported but the filter did not accept."""
        now = self._clock()
        await self._conn.execute(
            "INSERT INTO seen_accounts (source, account, last_seen) VALUES (?, ?, ?)"
            " ON CONFLICT (source, account) DO UPDATE"
            " SET last_seen = excluded.last_seen, events = events + 1",
            (source, account, now),
        )

    # -- claim / settle ----------------------------------------------------------------------

    async def release_all_leases(self) -> int:
        """Return every leased delivery to pending (daemon start: the old owner is gone).

        Only safe while no other daemon uses this file (the CLI holds a lock file for that).
        ``sent_at`` is kept, so a delivery that was in flight is checked before resending.
        """
        now = self._clock()
        cur = await self._conn.execute(
            "UPDATE deliveries SET state = 'pending', lease_token = NULL,"
            " next_attempt_at = ?, updated_at = ? WHERE state = 'leased'",
            (now, now),
        )
        return cur.rowcount

    async def claim(self, provider: str, kind: str, *, limit: int, lease_s: float) -> list[Claimed]:
        """Lease up to *limit* due deliveries of *provider* and *kind* (``play``/``live``).

        Due means pending with ``next_attempt_at <= now``, or leased with an expired lease.
        One ``UPDATE … RETURNING`` statement; oldest first.
        """
        now = self._clock()
        token = uuid.uuid4().hex
        leased = await self._conn.execute_fetchall(
            """
            UPDATE deliveries
            SET state = 'leased', lease_token = :token, next_attempt_at = :expires,
                attempts = attempts + 1, updated_at = :now
            WHERE id IN (
                SELECT id FROM deliveries
                WHERE provider = :provider AND kind = :kind
                  AND state IN ('pending', 'leased') AND next_attempt_at <= :now
                ORDER BY next_attempt_at, id
                LIMIT :limit)
            RETURNING id
            """,
            {
                "token": token,
                "expires": now + lease_s,
                "now": now,
                "provider": provider,
                "kind": kind,
                "limit": limit,
            },
        )
        ids = [int(row[0]) for row in leased]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = await self._conn.execute_fetchall(
            f"""
            SELECT d.id, d.event_id, d.provider, d.kind, d.lease_token, d.attempts, e.action,
                   e.source, e.account, coalesce(d.resolved_item, e.item),
                   d.resolved_item IS NOT NULL, e.label, e.occurred_at, d.watched_at,
                   e.progress_pct, d.sent_at, d.unconfirmed
            FROM deliveries AS d JOIN events AS e ON e.id = d.event_id
            WHERE d.id IN ({marks}) AND d.lease_token = ?
            ORDER BY d.id
            """,
            (*ids, token),
        )
        return [
            Claimed(
                id=r[0],
                event_id=r[1],
                provider=r[2],
                kind=r[3],
                lease_token=r[4],
                attempts=r[5],
                action=Action(r[6]),
                source=Source(r[7]),
                account=r[8],
                item=Item.from_dict(orjson.loads(r[9])),
                resolved=bool(r[10]),
                label=r[11],
                occurred_at=datetime.fromtimestamp(r[12], UTC),
                watched_at=_dt(r[13]),
                progress_pct=r[14],
                sent_at=r[15],
                unconfirmed=r[16],
            )
            for r in rows
        ]

    async def mark_sent(self, claimed: Iterable[Claimed]) -> None:
        """Record, durably, that a send of these deliveries is about to start."""
        now = self._clock()
        await self._conn.executemany(
            "UPDATE deliveries SET sent_at = ?, updated_at = ? WHERE id = ? AND lease_token = ?",
            [(now, now, c.id, c.lease_token) for c in claimed],
        )

    async def save_resolution(self, claimed: Claimed, item: Item, step: str) -> None:
        """Store the resolved item of a delivery (so a retry does not resolve again)."""
        await self._conn.execute(
            "UPDATE deliveries SET resolved_item = ?, resolved_by = ?"
            " WHERE id = ? AND lease_token = ?",
            (orjson.dumps(item.to_dict()).decode(), step, claimed.id, claimed.lease_token),
        )

    async def _settle(
        self,
        claimed: Claimed,
        *,
        state: str,
        next_attempt_at: float | None = None,
        error: str | None = None,
        reason: str | None = None,
        reason_kind: str | None = None,
        keep_sent: bool = False,
        refund_attempt: bool = False,
        unconfirmed: bool = False,
    ) -> bool:
        now = self._clock()
        cur = await self._conn.execute(
            """
            UPDATE deliveries
            SET state = :state, lease_token = NULL,
                next_attempt_at = coalesce(:next, next_attempt_at),
                last_error = coalesce(:error, last_error),
                reason = :reason, reason_kind = :reason_kind,
                sent_at = CASE WHEN :keep_sent THEN sent_at END,
                attempts = attempts - :refund,
                unconfirmed = unconfirmed + :unconfirmed,
                settled_at = CASE WHEN :state IN ('delivered', 'parked', 'dead', 'dropped')
                                  THEN :now END,
                updated_at = :now
            WHERE id = :id AND lease_token = :token
            """,
            {
                "state": state,
                "next": next_attempt_at,
                "error": error,
                "reason": reason,
                "reason_kind": reason_kind,
                "keep_sent": keep_sent,
                "refund": 1 if refund_attempt else 0,
                "unconfirmed": 1 if unconfirmed else 0,
                "now": now,
                "id": claimed.id,
                "token": claimed.lease_token,
            },
        )
        return cur.rowcount == 1

    async def settle_delivered(self, claimed: Claimed, note: str | None = None) -> bool:
        """Mark delivered. Returns False if the lease was lost (nothing changed)."""
        return await self._settle(claimed, state="delivered", reason=note)

    async def settle_retry(
        self,
        claimed: Claimed,
        *,
        delay_s: float,
        error: str,
        maybe_sent: bool,
        count_attempt: bool = True,
        unconfirmed: bool = False,
    ) -> bool:
        """Back to pending, due in *delay_s*. *maybe_sent* keeps the in-flight mark so the
        next attempt checks the target's history first. ``count_attempt=False`` refunds the
        attempt (waiting for authorization is not a failed attempt). ``unconfirmed`` counts a
        send the target neither confirmed nor showed (the drainer parks after a few)."""
        return await self._settle(
            claimed,
            state="pending",
            next_attempt_at=self._clock() + max(0.0, delay_s),
            error=error,
            keep_sent=maybe_sent,
            refund_attempt=not count_attempt,
            unconfirmed=unconfirmed,
        )

    async def settle_parked(self, claimed: Claimed, *, reason: str, reason_kind: str) -> bool:
        """Park with a reason (``reason_kind``: ``unresolved``, ``not_found``…); never retried
        until a user asks (``crosswatchd unresolved retry``)."""
        return await self._settle(claimed, state="parked", reason=reason, reason_kind=reason_kind)

    async def settle_dead(self, claimed: Claimed, *, reason: str) -> bool:
        """Give up for good (e.g. Trakt 420 account limit, 423 locked)."""
        return await self._settle(
            claimed, state="dead", reason=reason, reason_kind="permanent", error=reason
        )

    async def settle_dropped(self, claimed: Claimed, *, reason: str) -> bool:
        """Drop live state that is no longer worth sending (stale)."""
        return await self._settle(claimed, state="dropped", reason=reason, reason_kind="stale")

    # -- operator views ----------------------------------------------------------------------

    async def counts(self) -> dict[str, ProviderCounts]:
        """Delivery counts per provider (every configured provider appears)."""
        totals: dict[str, dict[str, int]] = {p: {} for p in self.providers}
        async with self._conn.execute(
            "SELECT provider, kind, state, coalesce(reason_kind, ''), count(*)"
            " FROM deliveries GROUP BY 1, 2, 3, 4"
        ) as cur:
            async for provider, kind, state, reason_kind, n in cur:
                bucket = totals.setdefault(provider, {})
                if kind == "live":
                    key = (
                        "live_pending"
                        if state in ("pending", "leased")
                        else ("dropped" if state == "dropped" else "")
                    )
                elif state in ("pending", "leased"):
                    key = "pending"
                elif state == "parked":
                    key = "unresolved" if reason_kind == "unresolved" else "parked"
                else:
                    key = state if state in ("delivered", "dead") else ""
                if key:
                    bucket[key] = bucket.get(key, 0) + int(n)
        return {p: ProviderCounts(**v) for p, v in totals.items()}

    async def parked(
        self, *, kinds: Sequence[str] | None = None, states: Sequence[str] = ("parked",)
    ) -> list[ParkedRow]:
        """Parked (and, if asked, dead) play deliveries, newest first."""
        state_marks = ",".join("?" * len(states))
        sql = (
            "SELECT d.id, d.provider, d.state, e.label, coalesce(d.reason, ''),"
            " coalesce(d.reason_kind, ''), d.attempts, d.watched_at"
            " FROM deliveries d JOIN events e ON e.id = d.event_id"
            f" WHERE d.kind = 'play' AND d.state IN ({state_marks})"
        )
        params: list[Any] = list(states)
        if kinds:
            sql += f" AND d.reason_kind IN ({','.join('?' * len(kinds))})"
            params.extend(kinds)
        sql += " ORDER BY d.id DESC"
        async with self._conn.execute(sql, params) as cur:
            rows = await cur.fetchall()
        return [ParkedRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], _dt(r[7])) for r in rows]

    async def retry_parked(
        self, delivery_id: int | None = None, *, kinds: Sequence[str] = ("unresolved",)
    ) -> int:
        """Put parked deliveries (one by id, parked or dead; or all parked of *kinds*) back
        to pending, resolving afresh.

        Returns how many were re-queued.
        """
        now = self._clock()
        sql = (
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, reason = NULL,"
            " reason_kind = NULL, resolved_item = NULL, resolved_by = NULL, attempts = 0,"
            " unconfirmed = 0, settled_at = NULL, updated_at = ?"
        )
        params: list[Any] = [now, now]
        if delivery_id is not None:  # one the user names: parked or dead alike
            sql += " WHERE state IN ('parked', 'dead') AND kind = 'play' AND id = ?"
            params.append(delivery_id)
        else:
            sql += f" WHERE state = 'parked' AND reason_kind IN ({','.join('?' * len(kinds))})"
            params.extend(kinds)
        cur = await self._conn.execute(sql, params)
        count = cur.rowcount
        # After the re-queue, so a daemon that sees the new generation also sees the rows.
        await self._conn.execute(
            "INSERT INTO meta (key, value) VALUES ('retry_generation', 1)"
            " ON CONFLICT (key) DO UPDATE SET value = value + 1"
        )
        if count:
            self._notify()
        return int(count)

    async def retry_generation(self) -> int:
        """How many times parked plays were re-queued by a user (any process)."""
        async with self._conn.execute(
            "SELECT value FROM meta WHERE key = 'retry_generation'"
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def backlog(self) -> dict[str, dict[str, Any]]:
        """Per provider with pending plays: ``{"oldest_watched_at": datetime | None,
        "max_attempts": int, "last_error": str | None, "next_attempt_at": datetime | None}``.

        What ``status`` shows so a user can tell "Trakt is down since…" from "nothing to do".
        """
        rows = await self._conn.execute_fetchall(
            """
            SELECT provider, min(watched_at), max(attempts), min(next_attempt_at),
                   (SELECT d2.last_error FROM deliveries d2
                     WHERE d2.provider = d.provider AND d2.kind = 'play'
                       AND d2.state IN ('pending', 'leased') AND d2.last_error IS NOT NULL
                     ORDER BY d2.updated_at DESC LIMIT 1)
            FROM deliveries d
            WHERE kind = 'play' AND state IN ('pending', 'leased')
            GROUP BY provider
            """
        )
        return {
            str(r[0]): {
                "oldest_watched_at": _dt(r[1]),
                "max_attempts": int(r[2]),
                "next_attempt_at": _dt(r[3]),
                "last_error": r[4],
            }
            for r in rows
        }

    async def seen_accounts(self, source: str) -> list[str]:
        """Accounts a source reported that the filter did not accept, most recent first."""
        async with self._conn.execute(
            "SELECT account FROM seen_accounts WHERE source = ? ORDER BY last_seen DESC",
            (source,),
        ) as cur:
            return [str(r[0]) async for r in cur]

    async def next_due_in(self, provider: str, kind: str) -> float | None:
        """Seconds until the next pending delivery of *provider*/*kind* is due (0 if one is
        due now), or None if there is none."""
        async with self._conn.execute(
            "SELECT min(next_attempt_at) FROM deliveries"
            " WHERE provider = ? AND kind = ? AND state IN ('pending', 'leased')",
            (provider, kind),
        ) as cur:
            row = await cur.fetchone()
        if not row or row[0] is None:
            return None
        return max(0.0, float(row[0]) - self._clock())

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query (tests, benchmarks, diagnostics)."""
        async with self._conn.execute(sql, params) as cur:
            return [tuple(r) for r in await cur.fetchall()]


async def _migrate(conn: aiosqlite.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` (``PRAGMA user_version``)."""
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"outbox schema version {version} is newer than this crosswatchd ({SCHEMA_VERSION})"
        )
    if version < 1:
        script = resources.files("crosswatchd").joinpath("schema.sql").read_text("utf-8")
        await conn.executescript(
            "BEGIN IMMEDIATE;\n" + script + f"\nPRAGMA user_version = {SCHEMA_VERSION};\nCOMMIT;"
        )
