"""Operator views of the outbox: what ``crosswatchd status`` and ``unresolved list`` show, and
when a drainer should look again. Read-only; every query is in ``queries.sql``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from crosswatchd.db import Database
from crosswatchd.models import DEFAULT_PROFILE, Action, Item
from crosswatchd.outbox.queries import Queries, json_list
from crosswatchd.outbox.states import DeliveryKind, DeliveryState, ReasonKind

__all__ = [
    "HeldPlay",
    "HeldRating",
    "OperatorViews",
    "ParkedRow",
    "ProviderCounts",
    "RatingMark",
    "WatchlistChange",
    "WatchlistCounts",
    "utc_from_unix",
]


def utc_from_unix(seconds: float | None) -> datetime | None:
    """A stored time (unix seconds, or NULL) as an aware UTC datetime (or ``None``)."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class ProviderCounts:
    """Delivery counts of one target, as ``crosswatchd status`` shows them: plays (the first
    five), live state, and ratings and watchlist changes apart (a parked change counts in
    ``*_parked`` whatever its reason; a superseded one in nothing)."""

    pending: int = 0
    delivered: int = 0
    dead: int = 0
    unresolved: int = 0
    parked: int = 0
    live_pending: int = 0
    dropped: int = 0
    ratings_pending: int = 0
    ratings_delivered: int = 0
    ratings_parked: int = 0
    watchlist_pending: int = 0
    watchlist_delivered: int = 0
    watchlist_parked: int = 0


@dataclass(frozen=True, slots=True)
class ParkedRow:
    """A parked or dead delivery, for ``unresolved list`` and ``status``.

    ``reason`` is ``""`` when none was stored; ``watched_at`` is UTC; ``profile`` is the
    household member whose play it is.
    """

    id: int
    provider: str
    state: DeliveryState
    label: str
    reason: str
    reason_kind: ReasonKind | None
    attempts: int
    watched_at: datetime | None
    profile: str = DEFAULT_PROFILE
    kind: DeliveryKind = DeliveryKind.PLAY
    action: Action = Action.WATCHED
    rating: int | None = None
    occurred_at: datetime | None = None

    @property
    def change(self) -> str:
        """What the delivery carries, for a person: ``play``, ``rating 8``, ``rating
        removed``, ``watchlist add`` or ``watchlist remove``."""
        if self.kind is DeliveryKind.RATING:
            return f"rating {self.rating}" if self.rating else "rating removed"
        if self.kind is DeliveryKind.WATCHLIST:
            return "watchlist add" if self.action is Action.WATCHLIST_ADD else "watchlist remove"
        return "play"


@dataclass(frozen=True, slots=True)
class WatchlistChange:
    """The latest watchlist change of an item for one target account, as a watchlist pass
    reads it (:meth:`OperatorViews.watchlist_changes`): ``action`` WATCHLIST_ADD or
    WATCHLIST_REMOVE, its ``state`` and ``reason_kind`` (``KEPT``: the target deliberately
    left it unapplied), ``settled_at``/``occurred_at`` in unix seconds, the ``item`` sent."""

    id: int
    provider: str
    action: Action
    state: DeliveryState
    reason_kind: ReasonKind | None
    reason: str | None
    settled_at: float | None
    occurred_at: float
    item: Item

    @property
    def waiting(self) -> bool:
        """True while it may still be sent (pending, or being sent)."""
        return self.state in (DeliveryState.PENDING, DeliveryState.LEASED)

    @property
    def held_back(self) -> bool:
        """True when it was parked or given up (it never landed)."""
        return self.state in (DeliveryState.PARKED, DeliveryState.DEAD)

    @property
    def kept(self) -> bool:
        """True when the target answered but deliberately left its list as it was."""
        return self.state is DeliveryState.DELIVERED and self.reason_kind is ReasonKind.KEPT


@dataclass(frozen=True, slots=True)
class WatchlistCounts:
    """Watchlist changes of one target account (``plex`` included) waiting to be sent, and
    held back (parked or dead) with the newest such reason: the watchlist part of ``status``."""

    pending: int = 0
    parked: int = 0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class HeldPlay:
    """A movie play the outbox holds (:meth:`OperatorViews.movie_plays`): its event, the
    movie (with the ids a delivery resolved, when one did) and when it was watched (UTC)."""

    event_id: int
    item: Item
    watched_at: datetime


@dataclass(frozen=True, slots=True)
class HeldRating:
    """A movie rating event (:meth:`OperatorViews.movie_ratings`): 1-10, or ``None`` when the
    rating was cleared, made at ``rated_at`` (UTC)."""

    event_id: int
    item: Item
    rating: int | None
    rated_at: datetime


@dataclass(frozen=True, slots=True)
class RatingMark:
    """The latest rating a target account holds under one identity key
    (:meth:`OperatorViews.rating_marks`): when it was made (unix seconds), by which delivery
    (the tie-break of equal times), its value (``None``: cleared)."""

    at: float
    delivery_id: int
    rating: int | None


def _held_item(row: Any) -> Item:
    raw = row["resolved_item"] or row["item"]
    return Item.from_dict(orjson.loads(raw))


def _bucket(kind: DeliveryKind, state: DeliveryState, reason: ReasonKind | None) -> str | None:
    """The :class:`ProviderCounts` field a group of deliveries counts in, if any."""
    waiting = state in (DeliveryState.PENDING, DeliveryState.LEASED)
    if kind is DeliveryKind.LIVE:
        if waiting:
            return "live_pending"
        return "dropped" if state is DeliveryState.DROPPED else None
    if kind in (DeliveryKind.RATING, DeliveryKind.WATCHLIST):
        prefix = "ratings" if kind is DeliveryKind.RATING else "watchlist"
        if waiting:
            return f"{prefix}_pending"
        if state in (DeliveryState.PARKED, DeliveryState.DEAD):
            return f"{prefix}_parked"
        return f"{prefix}_delivered" if state is DeliveryState.DELIVERED else None
    if waiting:
        return "pending"
    if state is DeliveryState.PARKED:
        return "unresolved" if reason is ReasonKind.UNRESOLVED else "parked"
    return str(state) if state in (DeliveryState.DELIVERED, DeliveryState.DEAD) else None


class OperatorViews:
    """Read-only views, mixed into :class:`~crosswatchd.outbox.Outbox` (which provides the
    database, its dialect's queries, the targets and the clock)."""

    _db: Database
    _q: Queries
    _unix_s: Callable[[], float]
    providers: list[str]
    targets: dict[str, list[str]]

    async def counts(self) -> dict[str, ProviderCounts]:
        """Delivery counts per provider, summed over profiles (every configured provider
        appears)."""
        totals: dict[str, dict[str, int]] = {p: {} for p in self.providers}
        for (_, provider), field, n in await self._count_rows():
            bucket = totals.setdefault(provider, {})
            bucket[field] = bucket.get(field, 0) + n
        return {p: ProviderCounts(**v) for p, v in totals.items()}

    async def account_counts(self) -> dict[tuple[str, str], ProviderCounts]:
        """Delivery counts per target account ``(profile, provider)`` (every configured
        target account appears)."""
        totals: dict[tuple[str, str], dict[str, int]] = {
            (profile, provider): {}
            for profile, providers in self.targets.items()
            for provider in providers
        }
        for account, field, n in await self._count_rows():
            bucket = totals.setdefault(account, {})
            bucket[field] = bucket.get(field, 0) + n
        return {a: ProviderCounts(**v) for a, v in totals.items()}

    async def _count_rows(self) -> list[tuple[tuple[str, str], str, int]]:
        """``((profile, provider), ProviderCounts field, deliveries)`` of every group."""
        out = []
        for row in await self._db.fetch(self._q.counts):
            reason = row["reason_kind"]
            field = _bucket(
                DeliveryKind(row["kind"]),
                DeliveryState(row["state"]),
                None if reason is None else ReasonKind(reason),
            )
            if field:
                out.append(((row["profile"], row["provider"]), field, int(row["deliveries"])))
        return out

    async def parked(
        self,
        *,
        kinds: Sequence[ReasonKind] | None = None,
        states: Sequence[DeliveryState] = (DeliveryState.PARKED,),
        profile: str | None = None,
    ) -> list[ParkedRow]:
        """Play, rating and watchlist deliveries in *states* (parked; dead too if asked), of
        reason *kinds* (any if none given), of one *profile* (any if none given), newest
        first."""
        params = {
            "states": json_list(states),
            "kinds": json_list(kinds) if kinds else None,
            "profile": profile,
        }
        rows = await self._db.fetch(self._q.parked, params)
        return [
            ParkedRow(
                id=r["id"],
                provider=r["provider"],
                state=DeliveryState(r["state"]),
                label=r["label"],
                reason=r["reason"],
                reason_kind=None if r["reason_kind"] is None else ReasonKind(r["reason_kind"]),
                attempts=r["attempts"],
                watched_at=utc_from_unix(r["watched_at"]),
                profile=r["profile"],
                kind=DeliveryKind(r["kind"]),
                action=Action(r["action"]),
                rating=r["rating"],
                occurred_at=utc_from_unix(r["occurred_at"]),
            )
            for r in rows
        ]

    async def retry_generation(self) -> int:
        """How many times parked plays were re-queued by a user (any process)."""
        row = await self._db.fetch_one(self._q.retry_generation)
        return int(row["value"]) if row else 0

    async def backlog(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Per target account ``(profile, provider)`` with pending plays:
        ``{"oldest_watched_at": datetime | None, "max_attempts": int,
        "last_error": str | None, "next_attempt_at": datetime | None}``.

        What ``status`` shows so a user can tell "Trakt is down since…" from "nothing to do".
        """
        rows = await self._db.fetch(self._q.backlog)
        return {
            (str(r["profile"]), str(r["provider"])): {
                "oldest_watched_at": utc_from_unix(r["oldest_watched_at"]),
                "max_attempts": int(r["max_attempts"]),
                "next_attempt_at": utc_from_unix(r["next_attempt_at"]),
                "last_error": r["last_error"],
            }
            for r in rows
        }

    async def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest settled deliveries (not live state), newest first: ``{"id", "profile",
        "provider", "kind", "state", "label", "reason", "watched_at", "settled_at"}`` with
        times as aware UTC datetimes."""
        rows = await self._db.fetch(self._q.recent, {"limit": limit})
        return [
            {
                **{k: r[k] for k in ("id", "profile", "provider", "kind", "state", "label")},
                "reason": r["reason"],
                "watched_at": utc_from_unix(r["watched_at"]),
                "settled_at": utc_from_unix(r["settled_at"]),
            }
            for r in rows
        ]

    async def waiting_plays(
        self, profile: str, provider: str
    ) -> list[tuple[tuple[str, ...], float]]:
        """Plays of the target account (*profile*, *provider*) still on their way (pending or
        being sent): ``(identity keys, watched_at unix seconds)``."""
        rows = await self._db.fetch(
            self._q.waiting_plays, {"profile": profile, "provider": provider}
        )
        return [(tuple(orjson.loads(r["keys"])), float(r["watched_at"])) for r in rows]

    async def seen_accounts(self, source: str) -> list[str]:
        """Accounts a source reported that the filter did not accept, most recent first."""
        rows = await self._db.fetch(self._q.seen_accounts, {"source": source})
        return [str(r["account"]) for r in rows]

    async def untargeted_plays(self) -> int:
        """Plays stored while no target was configured (delivered once one is)."""
        row = await self._db.fetch_one(self._q.untargeted_plays)
        return int(row["plays"]) if row else 0

    async def watchlist_changes(
        self, profile: str, providers: Sequence[str], *, since_s: float
    ) -> list[WatchlistChange]:
        """The latest watchlist change of each item for *profile* on *providers* that is not
        applied yet, was kept unapplied, or was applied since *since_s* (unix seconds)."""
        params = {"profile": profile, "providers": json_list(providers), "since": since_s}
        rows = await self._db.fetch(self._q.watchlist_changes, params)
        return [
            WatchlistChange(
                id=int(r["id"]),
                provider=str(r["provider"]),
                action=Action(r["action"]),
                state=DeliveryState(r["state"]),
                reason_kind=None if r["reason_kind"] is None else ReasonKind(r["reason_kind"]),
                reason=r["reason"],
                settled_at=r["settled_at"],
                occurred_at=float(r["occurred_at"]),
                item=Item.from_dict(orjson.loads(r["item"])),
            )
            for r in rows
        ]

    async def plays_since(self, profile: str, provider: str, *, since_s: float) -> list[Item]:
        """The items of *profile*'s plays on *provider* delivered since *since_s* (unix s), or
        sent and not confirmed yet (resolved items where resolution ran)."""
        return [
            item for item, _ in await self.timed_plays_since(profile, provider, since_s=since_s)
        ]

    async def timed_plays_since(
        self, profile: str, provider: str, *, since_s: float
    ) -> list[tuple[Item, float]]:
        """:meth:`plays_since`, each with its watched_at (unix seconds)."""
        params = {"profile": profile, "provider": provider, "since": since_s}
        rows = await self._db.fetch(self._q.plays_since, params)
        return [(Item.from_dict(orjson.loads(r["item"])), float(r["watched_at"])) for r in rows]

    async def watchlist_counts(self) -> dict[tuple[str, str], WatchlistCounts]:
        """Per target account ``(profile, provider)`` with watchlist changes waiting or held
        back: :class:`WatchlistCounts`."""
        rows = await self._db.fetch(self._q.watchlist_counts)
        return {
            (str(r["profile"]), str(r["provider"])): WatchlistCounts(
                int(r["pending"]), int(r["parked"]), r["reason"]
            )
            for r in rows
        }

    async def played_just_before(self, event_id: int, provider: str) -> bool:
        """True when *provider* holds a play of event *event_id*'s item from the event's
        dedupe window before it (up to a minute after): the play a live event follows."""
        row = await self._db.fetch_one(
            self._q.played_just_before, {"event_id": event_id, "provider": provider}
        )
        return bool(row and row["played"])

    async def next_due_in(
        self, provider: str, kind: DeliveryKind, *, profile: str = DEFAULT_PROFILE
    ) -> float | None:
        """Seconds until the next pending delivery of the target account (*profile*,
        *provider*) and *kind* is due (0 if one is due now), or None if there is none."""
        row = await self._db.fetch_one(
            self._q.next_due, {"profile": profile, "provider": provider, "kind": str(kind)}
        )
        if not row or row["next_attempt_at"] is None:
            return None
        return max(0.0, float(row["next_attempt_at"]) - self._unix_s())

    # -- imported files and exports -------------------------------------------------------------

    async def imported_keys(self, profile: str, keys: Iterable[str]) -> set[str]:
        """Those of the import row *keys* that *profile* already has an event of."""
        wanted = list(keys)
        if not wanted:
            return set()
        params = {"profile": profile, "keys": json_list(wanted)}
        rows = await self._db.fetch(self._q.imported_keys, params)
        return {str(r["import_key"]) for r in rows}

    async def rating_marks(self, profile: str) -> dict[str, RatingMark]:
        """Per identity key (:func:`~crosswatchd.models.item_keys`), the latest rating
        *profile*'s target accounts hold or are sending (by time, then delivery)."""
        params = {"profile": profile, "providers": json_list(self.targets.get(profile, []))}
        marks: dict[str, RatingMark] = {}
        for r in await self._db.fetch(self._q.rating_keys, params):
            mark = RatingMark(float(r["at"]), int(r["delivery_id"]), r["rating"])
            held = marks.get(r["key"])
            if held is None or (mark.at, mark.delivery_id) > (held.at, held.delivery_id):
                marks[r["key"]] = mark
        return marks

    async def movie_plays(self, profile: str) -> list[HeldPlay]:
        """Every movie play *profile* has in the outbox, delivered or not, oldest first;
        repeats of a play (events every target already had) and plays the user gave up on
        (``unresolved dismiss``) left out."""
        rows = await self._db.fetch(self._q.movie_plays, {"profile": profile})
        out = []
        for r in rows:
            at = utc_from_unix(r["at"])
            assert at is not None  # NOT NULL column
            out.append(HeldPlay(int(r["id"]), _held_item(r), at))
        return out

    async def movie_ratings(self, profile: str) -> list[HeldRating]:
        """Every movie rating event of *profile* (clearings included), oldest first."""
        rows = await self._db.fetch(self._q.movie_ratings, {"profile": profile})
        out = []
        for r in rows:
            at = utc_from_unix(r["at"])
            assert at is not None  # NOT NULL column
            out.append(HeldRating(int(r["id"]), _held_item(r), r["rating"], at))
        return out
