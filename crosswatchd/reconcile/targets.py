"""The target side of a reconcile pass: what one target account holds, read as cheaply as the
service allows, kept as a local copy (:class:`~crosswatchd.reconcile.state.Copy`).

Every pass starts with the account's activity timestamps (Trakt ``GET /sync/last_activities``,
SIMKL ``GET /sync/activities``, which SIMKL asks every client to read first); the parts whose
timestamps have not moved since the copy was read are taken from the copy, at no further cost.
The timestamps have whole seconds, so a change made in the second the copy was read may not
show: while the latest change is that recent (within a minute of the read, for clock skew),
the copy is brought up to date as if the timestamps had moved (one request).

**Trakt plays** (``movies.watched_at``, ``episodes.watched_at`` moved): Trakt's history is a
list of plays newest first by ``watched_at``, with no "added since" filter, so a play recorded
with an old date lands deep in it. An update therefore reads ``GET /sync/history`` (movies and
episodes together) newest first until it reaches plays the copy has, and accepts the result
only when the copy then counts exactly the plays Trakt counts (``X-Pagination-Item-Count``).
Plays the daemon itself added since the copy was read (the outbox knows them, with their ids
and times) are folded in first, so its own backdated deliveries keep the counts equal. Any
other difference (a play removed, or another app's backdated play) means a full read:
``/sync/history/movies`` and ``/sync/history/episodes``, every page of 250.

**SIMKL plays** (any list timestamp of ``movies``, ``tv_shows`` or ``anime`` moved): ``GET
/sync/all-items/`` with ``date_from`` (the copy's read time less a day: SIMKL's New York dates
and clock skew), each returned item replacing what the copy had of it; plays the daemon added
are folded in too, as SIMKL may not return an item whose new play is dated before
``date_from``. A full read the first time and when ``removed_from_list`` moved.

**Ratings** (Trakt ``*.rated_at``, SIMKL ``*.rated_at``): Trakt ``GET /sync/ratings/all``,
SIMKL ``GET /sync/ratings/`` (with ``date_from`` once there is a copy).

A copy is written only after its read completed; an error while reading raises (the pass
records it for this target and enqueues nothing for it) and leaves the stored copy as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import structlog

from crosswatchd.errors import ProviderError, RetryableError
from crosswatchd.models import item_keys, parse_utc
from crosswatchd.outbox import Outbox
from crosswatchd.providers.base import Activities, Provider, TargetRating, TargetWatch
from crosswatchd.providers.simkl import SimklProvider, SimklSync
from crosswatchd.providers.simkl.history import DATE_FROM_MARGIN
from crosswatchd.providers.trakt import TraktProvider, TraktSync
from crosswatchd.reconcile.diff import holds, time_index
from crosswatchd.reconcile.state import Copy, ReconcileState

__all__ = ["TargetReader", "TargetSnapshot"]

log = structlog.get_logger(__name__)

#: A play the daemon added and a history entry this close to it (seconds) are the same play.
_SAME_PLAY_S: Final = 5.0
#: Deliveries settled this long before a copy's read started are folded in too (ordering).
_FOLD_MARGIN_S: Final = 60.0
#: Newest-first history pages an update reads before a full read is cheaper.
_UPDATE_PAGES: Final = 20
#: Pages of one full history listing read at most (2,000 x 250 = 500,000 plays).
_FULL_PAGES: Final = 2000
#: A copy read this soon after the latest change it shows is not trusted unread (seconds).
_SETTLE_S: Final = 60.0

TRAKT_PLAYS: Final = (("movies", "watched_at"), ("episodes", "watched_at"))
TRAKT_RATINGS: Final = tuple((g, "rated_at") for g in ("movies", "shows", "seasons", "episodes"))
_SIMKL_GROUPS: Final = ("movies", "tv_shows", "anime")
_SIMKL_LISTS: Final = ("plantowatch", "watching", "completed", "hold", "dropped")
SIMKL_PLAYS: Final = tuple(
    (g, f) for g in _SIMKL_GROUPS for f in (*_SIMKL_LISTS, "removed_from_list")
)
SIMKL_REMOVALS: Final = tuple((g, "removed_from_list") for g in _SIMKL_GROUPS)
SIMKL_RATINGS: Final = tuple((g, "rated_at") for g in _SIMKL_GROUPS)


@dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """What a target account holds: its ``plays`` (Trakt: every play; SIMKL: every watched
    movie and episode) and ``ratings`` (None when not read, ``ratings_error`` saying why when
    the read failed); how each part was read (``unchanged``, ``updated``, ``full``)."""

    plays: list[TargetWatch]
    plays_read: str
    ratings: list[TargetRating] | None = None
    ratings_read: str = ""
    ratings_error: str | None = None


def _unchanged(
    activities: Activities, stored: Copy | None, fields: Sequence[tuple[str, str]]
) -> bool:
    """True when *stored* still shows the target: the *fields*' timestamps are the ones it
    was read with, and the latest of them is older than its read by :data:`_SETTLE_S`."""
    if stored is None or activities.moved(stored.activities, *fields):
        return False
    for group, name in fields:
        stamp = activities.get(group, name)
        if not stamp:
            continue
        try:
            changed_at = parse_utc(stamp).timestamp()
        except ValueError:
            continue
        if changed_at >= stored.read_at - _SETTLE_S:
            return False
    return True


def _without_matches(
    provisional: list[TargetWatch], real: Sequence[TargetWatch]
) -> list[TargetWatch]:
    """*provisional* plays (the daemon's, folded in) that no *real* entry is the same play of."""
    if not provisional or not real:
        return provisional
    index = time_index(real)
    return [w for w in provisional if not holds(index, w, _SAME_PLAY_S)]


class TargetReader:
    """Reads one target account (*profile* on *provider*) for a pass, through its stored
    copy in *state*; *outbox* lists the plays the daemon added (folded in). ``save=False``
    (a dry run) leaves the stored copies as they were."""

    def __init__(
        self,
        *,
        state: ReconcileState,
        outbox: Outbox,
        profile: str,
        provider: Provider,
        save: bool = True,
        unix_s: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._outbox = outbox
        self._profile = profile
        self._provider = provider
        self._save = save
        self._unix_s = unix_s

    async def read(self, *, ratings: bool) -> TargetSnapshot:
        """The account's plays, and its ratings when *ratings*. Raises what the provider
        raises when the activities or the plays cannot be read; a ratings failure is only
        reported (``ratings_error``)."""
        activities = await self._provider.last_activities()
        read_at = self._unix_s()
        if isinstance(self._provider, TraktProvider):
            plays, how = await self._trakt_plays(self._provider.sync(), activities, read_at)
        elif isinstance(self._provider, SimklProvider):
            plays, how = await self._simkl_plays(self._provider.sync(), activities, read_at)
        else:
            raise TypeError(f"reconcile cannot read {self._provider.name}")
        if not ratings:
            return TargetSnapshot(plays, how)
        try:
            rated, rated_how = await self._ratings(activities, read_at)
        except ProviderError as exc:
            log.warning(
                "reconcile.target_ratings.failed", provider=self._provider.name, reason=str(exc)
            )
            return TargetSnapshot(plays, how, ratings_error=f"{self._provider.name} ratings: {exc}")
        return TargetSnapshot(plays, how, rated, rated_how)

    async def _store(self, part: str, copy: Copy) -> None:
        if self._save:
            await self._state.save_copy(self._profile, self._provider.name, part, copy)

    async def _folded(self, stored: Copy) -> list[TargetWatch]:
        """The plays the daemon delivered to this account since *stored* was read, or sent
        without an answer yet (one that did not land, or was found there already, is counted
        twice: it only costs a full read)."""
        added = await self._outbox.timed_plays_since(
            self._profile, self._provider.name, since_s=stored.read_at - _FOLD_MARGIN_S
        )
        out = []
        for item, at in added:
            keys = tuple(item_keys(item))
            if keys:
                out.append(TargetWatch(None, keys, at))
        return out

    # -- Trakt -----------------------------------------------------------------------------

    async def _trakt_plays(
        self, sync: TraktSync, activities: Activities, read_at: float
    ) -> tuple[list[TargetWatch], str]:
        stored = await self._state.copy(self._profile, self._provider.name, "plays")
        if _unchanged(activities, stored, TRAKT_PLAYS):
            assert stored is not None
            return stored.watches, "unchanged"
        if stored is not None and stored.total is not None:
            updated = await self._trakt_update(sync, stored)
            if updated is not None:
                watches, total = updated
                await self._store("plays", Copy(activities, read_at, total, watches))
                return watches, "updated"
        watches, total = await self._trakt_full(sync)
        await self._store("plays", Copy(activities, read_at, total, watches))
        return watches, "full"

    async def _trakt_update(
        self, sync: TraktSync, stored: Copy
    ) -> tuple[list[TargetWatch], int] | None:
        """The copy brought up to date from the newest plays, or None when the counts do not
        add up (see the module docstring)."""
        watches = list(stored.watches)
        watches += _without_matches(await self._folded(stored), watches)
        known = {w.ident for w in watches if w.ident is not None}
        new: list[TargetWatch] = []
        total: int | None = None
        for page in range(1, _UPDATE_PAGES + 1):
            found = await sync.history_page(None, page)
            if page == 1:
                total = found.item_count
            reached = False
            for watch in found.watches:
                if watch.ident in known:
                    reached = True
                else:
                    new.append(watch)
            if reached or page >= found.page_count:
                break
        else:
            return None
        if new:
            provisional = [w for w in watches if w.ident is None]
            kept = set(map(id, _without_matches(provisional, new)))
            watches = [w for w in watches if w.ident is not None or id(w) in kept] + new
        if total is None or len(watches) != total:
            log.info(
                "reconcile.trakt.counts_differ",
                profile=self._profile,
                copy=len(watches),
                trakt=total,
            )
            return None
        return watches, total

    async def _trakt_full(self, sync: TraktSync) -> tuple[list[TargetWatch], int]:
        """Every play, both listings, every page; read twice at most when the listing changes
        under the reader. Raises :class:`RetryableError` when it keeps changing."""
        for _ in range(2):
            watches: list[TargetWatch] = []
            total = 0
            steady = True
            for kind in ("movies", "episodes"):
                seen: dict[str, TargetWatch] = {}
                skipped = 0
                count: int | None = None
                for page in range(1, _FULL_PAGES + 1):
                    found = await sync.history_page(kind, page)
                    skipped += found.skipped
                    count = found.item_count
                    for watch in found.watches:
                        seen.setdefault(watch.ident or f"#{len(seen)}", watch)
                    if page >= found.page_count:
                        break
                if count is not None and len(seen) + skipped != count:
                    steady = False
                total += len(seen) + skipped if count is None else count
                watches.extend(seen.values())
            if steady:
                return watches, total
        raise RetryableError("trakt", "the history changed while it was read; read again next pass")

    # -- SIMKL -----------------------------------------------------------------------------

    async def _simkl_plays(
        self, sync: SimklSync, activities: Activities, read_at: float
    ) -> tuple[list[TargetWatch], str]:
        stored = await self._state.copy(self._profile, self._provider.name, "plays")
        if _unchanged(activities, stored, SIMKL_PLAYS):
            assert stored is not None
            return stored.watches, "unchanged"
        if stored is not None and not activities.moved(stored.activities, *SIMKL_REMOVALS):
            since = datetime.fromtimestamp(stored.read_at, UTC) - DATE_FROM_MARGIN
            delta = await sync.watched(since)
            changed_movies = {w.ident for w in delta.movies}
            shows = tuple(f"e:{ident}:" for ident in delta.shows)
            watches = [
                w
                for w in stored.watches
                if w.ident is None
                or not (w.ident in changed_movies or (shows and w.ident.startswith(shows)))
            ]
            watches += delta.movies
            for episodes in delta.shows.values():
                watches += episodes
            real = [w for w in watches if w.ident is not None]
            provisional = [w for w in watches if w.ident is None]
            provisional += await self._folded(stored)
            watches = real + _keys_unknown(provisional, real)
            await self._store("plays", Copy(activities, read_at, None, watches))
            return watches, "updated"
        full = await sync.watched(None)
        watches = list(full.movies)
        for episodes in full.shows.values():
            watches += episodes
        await self._store("plays", Copy(activities, read_at, None, watches))
        return watches, "full"

    # -- ratings ---------------------------------------------------------------------------

    async def _ratings(
        self, activities: Activities, read_at: float
    ) -> tuple[list[TargetRating], str]:
        stored = await self._state.copy(self._profile, self._provider.name, "ratings")
        trakt = isinstance(self._provider, TraktProvider)
        fields = TRAKT_RATINGS if trakt else SIMKL_RATINGS
        if _unchanged(activities, stored, fields):
            assert stored is not None
            return stored.ratings, "unchanged"
        how = "full"
        if isinstance(self._provider, TraktProvider):
            rated = await self._provider.sync().ratings()
        elif isinstance(self._provider, SimklProvider):
            sync = self._provider.sync()
            if stored is None:
                rated = (await sync.ratings(None)).rated
            else:
                since = datetime.fromtimestamp(stored.read_at, UTC) - DATE_FROM_MARGIN
                delta = await sync.ratings(since)
                gone = set(delta.removed) | {r.ident for r in delta.rated}
                rated = [r for r in stored.ratings if r.ident not in gone] + delta.rated
                how = "updated"
        else:  # pragma: no cover - read() refuses other providers first
            raise TypeError(self._provider.name)
        await self._store("ratings", Copy(activities, read_at, ratings=rated))
        return rated, how


def _keys_unknown(
    provisional: Sequence[TargetWatch], real: Sequence[TargetWatch]
) -> list[TargetWatch]:
    """SIMKL keeps one state per item: a folded play is dropped once a real entry has its
    item (at whatever time), and folded plays of one item are kept once."""
    known = {key for watch in real for key in watch.keys}
    out = []
    for watch in provisional:
        if not known.intersection(watch.keys):
            out.append(watch)
            known.update(watch.keys)
    return out
