"""The source side of a reconcile pass: what Tautulli and the Plex server say each profile
watched (and the server owner rated), with the ids the targets know items by.

- **Tautulli** ``get_history`` (every page, newest first, through
  :class:`~crosswatchd.sources.tautulli_history.HistoryPager`): completed plays, routed to a
  profile by username (``tautulli_users``).
- **Plex server** ``/status/sessions/history/all`` (:class:`~crosswatchd.sources.plex_library.
  PlexLibrary`): plays of every account, routed by ``accountID`` → the account's name
  (``/accounts``) as ``plex_accounts`` lists it (the implicit profile without
  ``plex.accounts``: the server owner, account 1).
- **Marked watched** (``reconcile.include_marked_watched``): the owner's library items Plex
  counts as watched with a ``lastViewedAt``, as plays at that time; the owner only (the
  server token sees the owner's view state), add-only (an unmarked item removes nothing).
- **Ratings** (``reconcile.ratings``): the owner's ``userRating`` of movies, shows, seasons and
  episodes, as the 1-10 value a ``media.rate`` webhook of it would give; reading the library
  can fail on its own without failing the plays.

Both histories configured: a viewing both report is one play once the diff merges plays of one
item within the window (and the outbox dedupes it anyway). Items become comparable with the
targets' by the daemon's own resolver (:func:`resolve_items`, the drainer's chain and cache):
an item it cannot identify is *unresolved*, counted and listed, and never enqueued (it could
not be compared, so enqueueing it might duplicate a play the target has).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Final

import structlog

from crosswatchd.drain import ResolveFn
from crosswatchd.errors import CrosswatchError, UnresolvedError
from crosswatchd.models import Item, MediaKind
from crosswatchd.profiles import Household, Profile
from crosswatchd.sources.guids import parse_guid
from crosswatchd.sources.plex import plex_rating
from crosswatchd.sources.plex_library import OWNER_ACCOUNT_ID, PlexLibrary
from crosswatchd.sources.tautulli_api import TautulliClient
from crosswatchd.sources.tautulli_history import HistoryPager, play_of_row

__all__ = [
    "SourcePlay",
    "SourceRating",
    "SourceSnapshot",
    "Unresolved",
    "day_start",
    "read_sources",
    "resolve_items",
]

log = structlog.get_logger(__name__)

#: Distinct items resolved at once (the Plex and Tautulli steps ask the user's own servers).
RESOLVE_CONCURRENCY: Final = 8


@dataclass(frozen=True, slots=True)
class SourcePlay:
    """A completed play: *account* (the source's name for it) watched *item* at *at* (unix
    seconds)."""

    item: Item
    account: str
    at: float


@dataclass(frozen=True, slots=True)
class SourceRating:
    """The Plex owner's rating of *item*: 1-10, given at *at* (unix seconds)."""

    item: Item
    rating: int
    account: str
    at: float


@dataclass(frozen=True, slots=True)
class Unresolved:
    """An item no id could be found for, with the reason a user can act on."""

    label: str
    reason: str


@dataclass(slots=True)
class SourceSnapshot:
    """What the sources said, per profile name: ``plays``; the owner's ``ratings`` (None:
    not read, with ``ratings_error`` saying why when it failed); ``read`` names the sources
    read (``tautulli``, ``plex``, ``plex library``)."""

    plays: dict[str, list[SourcePlay]] = field(default_factory=dict)
    ratings: dict[str, list[SourceRating]] | None = None
    ratings_error: str | None = None
    read: list[str] = field(default_factory=list)


def day_start(day: date | None) -> int | None:
    """The start of *day* (UTC midnight) in unix seconds; None for None."""
    if day is None:
        return None
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


async def _tautulli_plays(
    client: TautulliClient,
    household: Household,
    wanted: set[str],
    since: date | None,
    page_size: int,
    out: dict[str, list[SourcePlay]],
    same: dict[Item, Item],
) -> None:
    parse = functools.lru_cache(maxsize=65_536)(parse_guid)
    server = await client.get_server_identity()  # scopes the rows' ratingKeys, as webhooks'
    pager = HistoryPager(client, since=since, page_size=page_size)
    async for rows in pager.rows():
        for row in rows:
            play = play_of_row(row, parse, server)
            if isinstance(play, str):
                continue
            profile = household.for_tautulli(play.account)
            if profile is not None and profile.name in wanted:
                item = same.setdefault(play.item, play.item)
                out[profile.name].append(
                    SourcePlay(item, play.account, play.watched_at.timestamp())
                )
    if pager.safety_stop:
        log.warning("reconcile.tautulli.safety_stop", reason=pager.safety_stop)


def _plex_profile(
    household: Household, accounts: dict[int, str], account_id: int
) -> Profile | None:
    name = accounts.get(account_id)
    return household.for_plex(name, str(account_id), user=account_id == OWNER_ACCOUNT_ID)


async def read_sources(
    household: Household,
    profiles: Sequence[Profile],
    *,
    tautulli: TautulliClient | None,
    plex: PlexLibrary | None,
    since: date | None = None,
    marked_watched: bool = False,
    ratings: bool = True,
    page_size: int = 1000,
    now: float,
) -> SourceSnapshot:
    """Read every configured source once for *profiles* (see the module docstring); *since*
    keeps plays on or after that day. Raises :class:`~crosswatchd.errors.CrosswatchError`
    (``SourceUnavailableError``, ``RetryableError``) naming the source when a history cannot
    be read; a library that cannot be read only sets ``ratings_error``."""
    wanted = {p.name for p in profiles}
    snapshot = SourceSnapshot(plays={p.name: [] for p in profiles})
    # Rewatches and episodes of one show repeat items: one object per distinct item.
    same: dict[Item, Item] = {}
    if tautulli is not None:
        await _tautulli_plays(tautulli, household, wanted, since, page_size, snapshot.plays, same)
        snapshot.read.append("tautulli")
    if plex is None:
        return snapshot
    await plex.identify()
    accounts = await plex.accounts()
    routed: dict[int, Profile | None] = {}
    async for page in plex.history(since=day_start(since)):
        for play in page:
            if play.account_id not in routed:
                routed[play.account_id] = _plex_profile(household, accounts, play.account_id)
            profile = routed[play.account_id]
            if profile is not None and profile.name in wanted:
                name = accounts.get(play.account_id, str(play.account_id))
                item = same.setdefault(play.item, play.item)
                snapshot.plays[profile.name].append(SourcePlay(item, name, play.viewed_at))
    snapshot.read.append("plex")
    owner = _plex_profile(household, accounts, OWNER_ACCOUNT_ID)
    if owner is None or owner.name not in wanted or not (ratings or marked_watched):
        return snapshot
    owner_name = accounts.get(OWNER_ACCOUNT_ID, str(OWNER_ACCOUNT_ID))
    floor = day_start(since) or 0
    rated: list[SourceRating] = []
    marked: list[SourcePlay] = []
    try:
        async for entries in plex.library():
            for entry in entries:
                seen_at = entry.last_viewed_at or 0
                played = entry.item.kind in (MediaKind.MOVIE, MediaKind.EPISODE)
                if marked_watched and played and entry.view_count and seen_at >= max(floor, 1):
                    marked.append(SourcePlay(entry.item, owner_name, seen_at))
                value = plex_rating(entry.user_rating) if entry.user_rating is not None else None
                if ratings and value is not None:
                    at = float(entry.last_rated_at or now)
                    rated.append(SourceRating(entry.item, value, owner_name, at))
    except CrosswatchError as exc:
        snapshot.ratings_error = f"plex library: {exc}"
        log.warning("reconcile.plex_library.failed", reason=str(exc))
        return snapshot
    snapshot.read.append("plex library")
    snapshot.plays[owner.name].extend(marked)
    if ratings:
        snapshot.ratings = {owner.name: rated}
    return snapshot


async def resolve_items(
    items: Iterable[Item], resolve: ResolveFn, *, concurrency: int = RESOLVE_CONCURRENCY
) -> dict[Item, Item | Unresolved]:
    """Each distinct item of *items* resolved (the resolver's chain and cache), or the
    :class:`Unresolved` reason; a transient failure of a step counts as unresolved for this
    pass (the next pass asks again)."""
    todo = iter(dict.fromkeys(items))
    out: dict[Item, Item | Unresolved] = {}

    async def worker() -> None:
        for item in todo:  # a shared iterator: each item goes to one worker
            try:
                resolved, _ = await resolve(item)
            except UnresolvedError as exc:
                out[item] = Unresolved(item.label(), str(exc))
            except CrosswatchError as exc:  # a step's transient failure
                out[item] = Unresolved(item.label(), f"{exc} (asked again next pass)")
            else:
                out[item] = resolved

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return out
