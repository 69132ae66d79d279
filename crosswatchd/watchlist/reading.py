"""Reading each side of a watchlist pass into a list of items, as cheaply as the services
allow, and finding a target's item on Plex.

- Plex: the Discover listing, every page, every pass (Discover reports no activity times);
  each row's external ids from the cache, else one metadata call (cached: a pass with no
  change makes none). Rows with no imdb/tmdb/tvdb id are *unidentified*.
- A target (Trakt, SIMKL): ``last_activities()`` first, one GET; the list is read only when
  the fields of its watchlist moved since the stored read (or when our own changes landed
  there since, when there is no stored read, or once a day); otherwise the stored list
  stands. The daily read bounds what second-precision activity times can hide: a change in
  the same second as the one before it, right after a read, leaves the times as they were.

A read either completes or raises (:class:`~crosswatchd.errors.ProviderError`): nothing
partial is ever returned.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol, runtime_checkable

from crosswatchd.models import Ids, Item
from crosswatchd.providers.base import Activities
from crosswatchd.sources.discover import DiscoverClient, DiscoverRow
from crosswatchd.watchlist.items import identity_keys
from crosswatchd.watchlist.state import StoredSide, WatchlistState

__all__ = [
    "FULL_READ_S",
    "ListTarget",
    "SideRead",
    "find_on_plex",
    "plex_account",
    "read_plex",
    "read_target",
]

#: Metadata calls in flight at once (the Discover limiter paces them anyway).
_METADATA_CONCURRENCY: Final = 8
#: A target's list is read at least this often, whatever its activity times say.
FULL_READ_S: Final = 86_400.0


@runtime_checkable
class ListTarget(Protocol):
    """A target whose watchlist a pass reads (Trakt's watchlist, SIMKL's Plan to Watch)."""

    name: str
    #: ``(group, field)`` pairs of :class:`Activities` that move when the list changes.
    watchlist_activity: tuple[tuple[str, str], ...]

    def is_authorized(self) -> bool: ...

    async def last_activities(self) -> Activities: ...

    async def read_watchlist(self) -> list[Item]: ...


@dataclass(frozen=True, slots=True)
class SideRead:
    """One side as a pass sees it: ``items`` (movies and shows; Plex's identified ones only),
    ``size`` (the list's length as read), ``fresh`` (read now; False: unchanged since the
    stored read, whose items these are), the target's activity ``stamps``, ``read_at`` (unix
    s, when this read started) and, for Plex, the ``unidentified`` rows."""

    name: str
    items: list[Item]
    size: int
    fresh: bool
    stamps: Activities | None
    read_at: float
    unidentified: list[Item] = field(default_factory=list)

    def stored(self) -> StoredSide:
        """What the state file keeps of this read."""
        return StoredSide(self.items, self.stamps, self.read_at)


def _item(row: DiscoverRow, ids: Ids) -> Item:
    return Item(row.kind, row.title, row.year, ids=ids, guid=row.guid)


def plex_account(token: str) -> Activities:
    """What the stored Plex read remembers of the token it was made with: a short digest, so
    a pass can tell that the watchlist now read belongs to another token (perhaps another
    account) and must not be compared with the old one (its items would all look removed)."""
    return Activities({"plex": {"account": hashlib.sha256(token.encode()).hexdigest()[:16]}})


async def read_plex(
    discover: DiscoverClient, state: WatchlistState, *, unix_s: Callable[[], float]
) -> SideRead:
    """The Plex watchlist with each row's ids (cached, else one metadata call per row); its
    ``stamps`` are :func:`plex_account` of the token used."""
    read_at = unix_s()
    account = plex_account(discover.auth.token())
    rows = await discover.watchlist()
    known = await state.known_ids(r.rating_key for r in rows)
    missing = [r.rating_key for r in rows if r.rating_key not in known]
    if missing:
        gate = asyncio.Semaphore(_METADATA_CONCURRENCY)

        async def fetch(key: str) -> tuple[str, Ids]:
            async with gate:
                return key, (await discover.ids(key)) or Ids()

        found = dict(await asyncio.gather(*(fetch(key) for key in missing)))
        await state.remember_ids(found)
        known.update(found)
    items = [_item(r, known[r.rating_key]) for r in rows]
    return SideRead(
        name="plex",
        items=[i for i in items if identity_keys(i)],
        size=len(items),
        fresh=True,
        stamps=account,
        read_at=read_at,
        unidentified=[i for i in items if not identity_keys(i)],
    )


async def read_target(
    target: ListTarget,
    stored: StoredSide | None,
    *,
    force: bool,
    unix_s: Callable[[], float],
) -> SideRead:
    """A target's watchlist: read when its activities moved since *stored* (or *force*, or
    nothing is stored, or *stored* is a day old), else *stored*'s list. One GET when nothing
    changed."""
    read_at = unix_s()
    stamps = await target.last_activities()
    since = None if stored is None else stored.stamps
    if (
        stored is not None
        and not force
        and read_at - stored.read_at < FULL_READ_S
        and not stamps.moved(since, *target.watchlist_activity)
    ):
        return SideRead(target.name, stored.items, len(stored.items), False, since, stored.read_at)
    items = await target.read_watchlist()
    return SideRead(target.name, items, len(items), True, stamps, read_at)


async def find_on_plex(discover: DiscoverClient, state: WatchlistState, item: Item) -> str | None:
    """The Discover ratingKey of a target's *item* (by its ids, ``matches``), cached per
    identity key; None when Discover has no item carrying them."""
    keys = sorted(identity_keys(item))
    for key in keys:
        cached, rating_key = await state.known_match(key)
        if cached:
            return rating_key

    async def ids_of(rating_key: str) -> Ids | None:
        known = await state.known_ids([rating_key])
        if rating_key in known:
            return known[rating_key]
        ids = await discover.ids(rating_key)
        await state.remember_ids({rating_key: ids or Ids()})
        return ids

    rating_key = await discover.find(item.kind, item.ids, ids_of)
    await state.remember_match(keys, rating_key)
    return rating_key
