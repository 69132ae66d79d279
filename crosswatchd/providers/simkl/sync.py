"""Reading a SIMKL account's watched items and ratings, for the reconcile pass.

Facts (``shared/reference/simkl``; "Apiary" = the SIMKL API blueprint):

- "Get All Items" ``GET /sync/all-items/`` (no type: movies, shows and anime in one answer;
  ``null`` when there is nothing): one row per item, a movie with its ``last_watched_at`` (null
  when it is only planned), a show with ``extended=full`` listing its watched episodes
  (``seasons[].episodes[]``) and, with ``episode_watched_at=yes``, when each was watched.
  ``date_from`` returns only the items *updated* since then; a whole row is sent for each, so
  a show's episode list replaces the one known before. SIMKL keeps one watched state per
  movie and per episode, not one row per play.
- "How to use Sync": call ``/sync/activities`` first and read ``all-items`` only when it
  moved, with ``date_from`` (a client that re-downloads the library gets its client id
  suspended); a full read (no ``date_from``) only the first time and after
  ``removed_from_list`` moved (removals are not in a ``date_from`` answer).
- "Get Ratings" ``GET /sync/ratings/`` (no type: every kind; ``null`` when none): rows with
  ``user_rating`` and the item; with ``date_from``, the ratings changed since then, a removed
  one with ``user_rating: null``. SIMKL rates movies and shows only.

Requests go through the provider's own client (its limiter, token and status → error
translation), retried in-process on transient failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from crosswatchd.http import HttpClient, Lenient, LenientList, OptInt, OptStr, WireModel
from crosswatchd.models import Ids, Item, MediaKind, item_keys, parse_utc
from crosswatchd.providers.base import TargetRating, TargetWatch
from crosswatchd.providers.simkl.auth import SimklAuth
from crosswatchd.providers.simkl.history import AllItems, simkl_time
from crosswatchd.providers.simkl.http import json_data

__all__ = ["SimklRatings", "SimklSync", "SimklWatched", "item_ident"]


def item_ident(kind: str, ids: Ids) -> str:
    """How reconcile names a SIMKL movie (*kind* ``m``) or show (``s``): by its simkl id,
    else by the first other id SIMKL sent."""
    for name, value in (("simkl", ids.simkl), *ids.as_dict().items()):
        if value:
            return f"{kind}:{name}:{value}"
    return f"{kind}:?"


def _unix(raw: str | None) -> float:
    if not raw:
        return 0.0
    try:
        return parse_utc(raw).timestamp()
    except ValueError:
        return 0.0


@dataclass(frozen=True, slots=True)
class SimklWatched:
    """What an all-items answer says is watched: each movie (``movies``), and each show's
    watched episodes by the show's ident (``shows``; a show with none maps to ``[]``, so its
    episodes known before are gone)."""

    movies: list[TargetWatch] = field(default_factory=list)
    shows: dict[str, list[TargetWatch]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SimklRatings:
    """A ratings answer: the ratings, and the idents of items whose rating was removed
    (``date_from`` answers only)."""

    rated: list[TargetRating] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class _Media(WireModel):
    title: OptStr = None
    year: OptInt = None
    ids: Lenient[dict[str, Any]] = None


class _RatedRow(WireModel):
    user_rating: OptInt = None
    movie: Lenient[_Media] = None
    show: Lenient[_Media] = None


class _Ratings(WireModel):
    movies: LenientList[_RatedRow] = []
    shows: LenientList[_RatedRow] = []
    anime: LenientList[_RatedRow] = []


class SimklSync:
    """Whole-account reads of one SIMKL account through its provider's *http* client and
    *auth* (see the module docstring). Raises like the provider: ``RetryableError``,
    ``AuthError``, ``PermanentError``."""

    def __init__(self, *, http: HttpClient, auth: SimklAuth) -> None:
        self._http = http
        self._auth = auth

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        token = self._auth.token()

        async def attempt() -> Any:
            answer = await self._http.send("GET", path, params=params, bearer=token)
            if not answer.ok:
                raise self._auth.error_for(answer, token)
            return json_data(answer)

        return await self._http.retry_get(attempt, path=path)

    async def watched(self, date_from: datetime | None = None) -> SimklWatched:
        """The watched movies and episodes (all, or the items updated since *date_from*)."""
        params = {"extended": "full", "episode_watched_at": "yes"}
        if date_from is not None:
            params["date_from"] = simkl_time(date_from)
        try:
            items = AllItems.model_validate(await self._get("/sync/all-items/", params))
        except ValidationError:  # `null`: nothing (changed)
            items = AllItems()
        out = SimklWatched()
        for movie in items.movies:
            if movie.movie is None or not movie.last_watched_at:
                continue
            ids = Ids.from_dict(movie.movie.ids)
            keys = tuple(item_keys(Item(MediaKind.MOVIE, ids=ids)))
            if keys:
                out.movies.append(
                    TargetWatch(item_ident("m", ids), keys, _unix(movie.last_watched_at))
                )
        for show in (*items.shows, *items.anime):
            if show.show is None:
                continue
            show_ids = Ids.from_dict(show.show.ids)
            ident = item_ident("s", show_ids)
            episodes = out.shows.setdefault(ident, [])
            for season in show.seasons:
                for episode in season.episodes:
                    item = Item(
                        MediaKind.EPISODE,
                        show_ids=show_ids,
                        season=season.number,
                        number=episode.number,
                    )
                    keys = tuple(item_keys(item))
                    if keys and season.number is not None and episode.number is not None:
                        episodes.append(
                            TargetWatch(
                                f"e:{ident}:{season.number}:{episode.number}",
                                keys,
                                _unix(episode.watched_at),
                            )
                        )
        return out

    async def ratings(self, date_from: datetime | None = None) -> SimklRatings:
        """The ratings (all, or those changed since *date_from*, removals included)."""
        params = {} if date_from is None else {"date_from": simkl_time(date_from)}
        try:
            rows = _Ratings.model_validate(await self._get("/sync/ratings/", params))
        except ValidationError:  # `null`: none
            rows = _Ratings()
        out = SimklRatings()
        for form, entries in (("m", rows.movies), ("s", [*rows.shows, *rows.anime])):
            for row in entries:
                media = row.movie if form == "m" else row.show
                if media is None:
                    continue
                kind = MediaKind.MOVIE if form == "m" else MediaKind.SHOW
                ids = Ids.from_dict(media.ids)
                ident = item_ident(form, ids)
                if row.user_rating is None or not 1 <= row.user_rating <= 10:
                    out.removed.append(ident)
                    continue
                item = Item(kind, media.title or "", media.year, ids=ids)
                keys = tuple(item_keys(item))
                if keys:
                    out.rated.append(
                        TargetRating(keys, kind, row.user_rating, ident=ident, label=item.label())
                    )
        return out
