"""The Plex watchlist as a delivery target: the two-way watchlist pass queues additions and
removals for the target account ``(profile, "plex")``, and the same :class:`~crosswatchd.drain.
Drainer` as Trakt's and SIMKL's sends them (durable, retried, parked with a reason when
refused), through its watchlist loop only.

Discover has no batch call: each change is one ``PUT /actions/addToWatchlist`` or
``removeFromWatchlist`` with the item's Discover ratingKey
(``shared/reference/plex/discover-watchlist.md`` §4). The watchlist pass puts that key in the
item's ``guid`` (``plex://movie/<key>``: a Plex row's own, or the one ``matches`` found for a
Trakt or SIMKL item, §5); an item without one is looked up by its ids here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import structlog

from crosswatchd.models import Action, Item, MediaKind
from crosswatchd.providers.base import (
    Activities,
    Change,
    ChangeOutcome,
    ChangeResult,
    LiveOutcome,
    Play,
    PlayOutcome,
)
from crosswatchd.sources.discover import DiscoverClient, discover_key
from crosswatchd.sources.plextv import NAME

__all__ = ["PlexWatchlistProvider"]

log = structlog.get_logger(__name__)

_ONLY_WATCHLIST: Final = "the Plex watchlist target takes watchlist changes only"


class PlexWatchlistProvider:
    """One profile's Plex watchlist behind :class:`~crosswatchd.providers.base.Provider`.

    Only :meth:`apply_changes` of watchlist changes does anything; the play and live methods
    raise ``ValueError`` (a caller bug: nothing queues plays for ``plex``). Errors are
    :class:`~crosswatchd.sources.discover.DiscoverClient`'s: :class:`AuthError` (no token, or
    Plex refused it), :class:`RetryableError` (429, 5xx, network), :class:`PermanentError`
    (another 4xx, request-scoped: the drainer re-sends the batch change by change).
    """

    name = NAME
    max_batch = 1
    #: Changes per claim; each is one PUT (one a second), so a batch takes about this long.
    max_changes = 20
    keeps_every_play = False

    def __init__(self, discover: DiscoverClient) -> None:
        self._discover = discover

    def is_authorized(self) -> bool:
        """True when the profile has a Plex token (stored or configured)."""
        return self._discover.auth.is_authorized()

    def missing_ids(self, item: Item) -> str | None:
        """Why *item* cannot go on a Plex watchlist: only movies and shows can (§4), found by
        their Discover ratingKey or an imdb, tmdb or tvdb id."""
        if item.kind not in (MediaKind.MOVIE, MediaKind.SHOW):
            return f"a Plex watchlist holds movies and shows, not a {item.kind}"
        if discover_key(item.guid) or item.ids.imdb or item.ids.tmdb or item.ids.tvdb:
            return None
        return "no Discover ratingKey, imdb, tmdb or tvdb id to find it on Plex"

    async def apply_changes(self, changes: Sequence[Change]) -> dict[int, ChangeResult]:
        """Add or remove each change's item, one PUT each, in order. An addition Discover
        does not know (404, or no item carries its ids) is ``NOT_FOUND``; a removal of an
        item that is not there (404) is ``APPLIED``. Raises on the first error (the calls
        are idempotent: the drainer sends the whole batch again, or change by change)."""
        if len(changes) > self.max_changes:
            raise ValueError(f"at most {self.max_changes} changes per call, got {len(changes)}")
        results: dict[int, ChangeResult] = {}
        for change in changes:
            if change.action not in (Action.WATCHLIST_ADD, Action.WATCHLIST_REMOVE):
                raise ValueError(_ONLY_WATCHLIST)
            add = change.action is Action.WATCHLIST_ADD
            item = change.item
            key = discover_key(item.guid) or await self._discover.find(item.kind, item.ids)
            if key is None:
                outcome = ChangeOutcome.NOT_FOUND if add else ChangeOutcome.APPLIED
                results[change.key] = ChangeResult(outcome, "no Plex item carries its ids")
                continue
            done = await self._discover.change(
                "addToWatchlist" if add else "removeFromWatchlist", key
            )
            if add and not done:
                results[change.key] = ChangeResult(ChangeOutcome.NOT_FOUND)
            else:
                results[change.key] = ChangeResult(ChangeOutcome.APPLIED)
        log.info(
            "plex.watchlist.sent",
            changes=len(changes),
            not_found=sum(1 for r in results.values() if r.outcome is ChangeOutcome.NOT_FOUND),
        )
        return results

    async def last_activities(self) -> Activities:
        """Discover reports no activity times: always empty (a pass reads the list)."""
        return Activities({})

    async def add_history(self, plays: Sequence[Play]) -> dict[int, PlayOutcome]:
        raise ValueError(_ONLY_WATCHLIST)

    async def find_in_history(self, plays: Sequence[Play], *, tolerance_s: float = 5.0) -> set[int]:
        raise ValueError(_ONLY_WATCHLIST)

    async def scrobble(self, action: Action, item: Item, progress_pct: float) -> LiveOutcome:
        raise ValueError(_ONLY_WATCHLIST)

    async def close(self) -> None:
        """Nothing to release: the session belongs to the caller."""
