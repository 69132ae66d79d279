"""Trakt ratings and watchlist changes, pure: the request bodies and their replies mapped back
to changes. No HTTP here; :mod:`.provider` sends.

Shapes (Trakt API Blueprint, ``shared/reference/trakt/trakt.apib``):

- "Sync / Add Ratings" (``POST /sync/ratings``): ``movies[]``, ``shows[]``, ``seasons[]`` and
  ``episodes[]`` of ``{ids, rating, rated_at}``; a season or an episode without ids of its
  own goes under its show: ``shows[{ids, seasons[{number, rating, rated_at}]}]`` or
  ``shows[{ids, seasons[{number, episodes[{number, rating, rated_at}]}]}]``. The reply is
  ``{"added": {...}, "not_found": {movies, shows, seasons, episodes}}``, ``not_found``
  entries echoing what was sent. "Sync / Remove Ratings" (``POST /sync/ratings/remove``)
  takes the same objects without ``rating``.
- "Sync / Add to Watchlist" / "Remove from Watchlist" (``POST /sync/watchlist[/remove]``):
  the same objects with ``listed_at``-free bodies; the reply adds ``existing`` counts, and a
  full watchlist is HTTP 420 with ``X-Account-Limit`` (nothing added).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crosswatchd.http import Lenient, LenientList, OptInt, WireModel
from crosswatchd.models import Item, MediaKind, format_utc
from crosswatchd.providers.base import Change, ChangeOutcome, ChangeResult
from crosswatchd.providers.trakt.history import (
    EPISODE_ID_KEYS,
    MOVIE_ID_KEYS,
    SHOW_ID_KEYS,
    api_ids,
    id_pairs,
)

__all__ = ["SEASON_ID_KEYS", "ChangeReply", "Placed", "change_body", "change_results"]

#: Id keys Trakt takes for a season of its own ("Sync / Add Ratings": seasons[].ids).
SEASON_ID_KEYS = ("trakt", "tvdb", "tmdb")


@dataclass(frozen=True, slots=True)
class Placed:
    """Where one change went in a body: ``form`` is the top-level list (``movies``,
    ``shows``, ``seasons``, ``episodes``); ``ids`` the ids sent there (the show's when the
    change went under its show, ``under_show`` True)."""

    change: Change
    form: str
    ids: dict[str, str | int]
    under_show: bool = False


def change_body(
    changes: Sequence[Change], *, with_rating: bool
) -> tuple[dict[str, Any], list[Placed]]:
    """The body naming *changes* and where each went.

    With ``with_rating`` each object carries ``rating`` and ``rated_at`` (UTC); otherwise
    bare ids (removals, watchlist). Items must pass ``TraktProvider.missing_ids``.
    """
    lists: dict[str, list[dict[str, Any]]] = {"movies": [], "seasons": [], "episodes": []}
    own_shows: list[dict[str, Any]] = []
    shows: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    placed: list[Placed] = []

    def extra(change: Change) -> dict[str, Any]:
        if not with_rating:
            return {}
        return {"rating": change.rating, "rated_at": format_utc(change.at)}

    def under(item: Item) -> dict[str, Any]:
        show_ids = api_ids(item.show_ids, SHOW_ID_KEYS)
        key = tuple(sorted(id_pairs(show_ids)))
        return shows.setdefault(key, {"ids": show_ids, "seasons": []})

    for change in changes:
        item = change.item
        if item.kind is MediaKind.MOVIE:
            ids = api_ids(item.ids, MOVIE_ID_KEYS)
            lists["movies"].append({"ids": ids, **extra(change)})
            placed.append(Placed(change, "movies", ids))
        elif item.kind is MediaKind.SHOW:
            ids = api_ids(item.ids.merged(item.show_ids), SHOW_ID_KEYS)
            # A show object of its own, never merged with seasons of the same show: a show
            # object with `seasons` would rate those seasons instead of the show.
            own_shows.append({"ids": ids, **extra(change)})
            placed.append(Placed(change, "shows", ids))
        elif item.kind is MediaKind.SEASON:
            if own := api_ids(item.ids, SEASON_ID_KEYS):
                lists["seasons"].append({"ids": own, **extra(change)})
                placed.append(Placed(change, "seasons", own))
            else:
                show = under(item)
                show["seasons"].append({"number": item.season, **extra(change)})
                placed.append(Placed(change, "shows", show["ids"], under_show=True))
        elif own := api_ids(item.ids, EPISODE_ID_KEYS):
            lists["episodes"].append({"ids": own, **extra(change)})
            placed.append(Placed(change, "episodes", own))
        else:
            show = under(item)
            season = next(
                (s for s in show["seasons"] if s["number"] == item.season and "episodes" in s),
                None,
            )
            if season is None:
                season = {"number": item.season, "episodes": []}
                show["seasons"].append(season)
            season["episodes"].append({"number": item.number, **extra(change)})
            placed.append(Placed(change, "shows", show["ids"], under_show=True))
    body: dict[str, Any] = {k: v for k, v in lists.items() if v}
    if own_shows or shows:
        body["shows"] = own_shows + list(shows.values())
    return body, placed


class _NotFoundEpisode(WireModel):
    number: OptInt = None


class _NotFoundSeason(WireModel):
    number: OptInt = None
    episodes: LenientList[_NotFoundEpisode] = []


class _NotFoundEntry(WireModel):
    ids: Lenient[dict[str, Any]] = None
    seasons: LenientList[_NotFoundSeason] = []


class _NotFound(WireModel):
    movies: LenientList[_NotFoundEntry] = []
    shows: LenientList[_NotFoundEntry] = []
    seasons: LenientList[_NotFoundEntry] = []
    episodes: LenientList[_NotFoundEntry] = []


class ChangeReply(WireModel):
    """A 2xx reply to a ratings or watchlist change; only ``not_found`` is read (every
    other change is applied: the calls are idempotent, and ``added``/``existing``/``deleted``
    counts do not say which item they count)."""

    not_found: Lenient[_NotFound] = None


def change_results(reply: ChangeReply, placed: Sequence[Placed]) -> dict[int, ChangeResult]:
    """A result per change key: ``NOT_FOUND`` for those the reply's ``not_found`` names,
    ``APPLIED`` for the rest."""
    missing: set[int] = set()
    not_found = reply.not_found
    if not_found is not None:
        for form in ("movies", "shows", "seasons", "episodes"):
            for entry in getattr(not_found, form):
                pairs = id_pairs(entry.ids)
                for p in placed:
                    if p.form == form and pairs & id_pairs(p.ids) and _covers(entry, p):
                        missing.add(p.change.key)
    return {
        p.change.key: ChangeResult(
            ChangeOutcome.NOT_FOUND if p.change.key in missing else ChangeOutcome.APPLIED
        )
        for p in placed
    }


def _covers(entry: _NotFoundEntry, placed: Placed) -> bool:
    """True if a not-found entry names *placed*: a show entry without ``seasons`` names the
    show (and all under it); with ``seasons`` only those seasons or listed episodes."""
    if not placed.under_show:
        return placed.form != "shows" or not entry.seasons
    if not entry.seasons:
        return True
    item = placed.change.item
    for season in entry.seasons:
        if season.number != item.season:
            continue
        if item.kind is MediaKind.SEASON:
            return not season.episodes
        if not season.episodes or any(e.number == item.number for e in season.episodes):
            return True
    return False
