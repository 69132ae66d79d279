"""Trakt id lookups and title searches for the resolver (no OAuth needed).

"Search / ID Lookup": ``GET /search/{id_type}/{id}?type=movie|show|episode`` and "Search / Text
Query": ``GET /search/{type}?query=…`` (Trakt API Blueprint,
``shared/reference/trakt/trakt.apib``) answer ``[{"type", "score", "movie"|"show"|"episode"
(+ "show")}]``. "Seasons / Summary": ``GET /shows/{id}/seasons?extended=full,episodes``
answers ``[{"number", "ids", "episodes": [{"season", "number", "number_abs", …}]}]`` (the
absolute number is part of the full episode object, "Episodes / Summary" ``extended=full``).
Requests go through :func:`~.http.trakt_client`: its headers, the limiter and its status →
error table, with a few in-process retries of transient failures.
"""

from __future__ import annotations

from typing import Any, Literal

import aiohttp
from pydantic import ConfigDict, RootModel

from crosswatchd.http import GetRetry, Lenient, LenientList, OptInt, OptStr, WireModel
from crosswatchd.models import Ids
from crosswatchd.providers.base import SearchHit, search_data
from crosswatchd.providers.trakt.http import NAME, raise_for_status, trakt_client
from crosswatchd.ratelimit import Limiter

__all__ = ["TraktSearch"]


class _Media(WireModel):
    title: OptStr = None
    year: OptInt = None
    ids: Lenient[dict[str, Any]] = None
    season: OptInt = None
    number: OptInt = None


class _Result(WireModel):
    type: OptStr = None
    movie: Lenient[_Media] = None
    show: Lenient[_Media] = None
    episode: Lenient[_Media] = None


class _Episode(WireModel):
    season: OptInt = None
    number: OptInt = None
    number_abs: OptInt = None


class _Season(WireModel):
    number: OptInt = None
    episodes: LenientList[_Episode] = []


class _Seasons(RootModel[LenientList[_Season]]):
    """A seasons answer: a list of seasons (anything else reads as none)."""

    model_config = ConfigDict(defer_build=True)


class _Results(RootModel[LenientList[_Result]]):
    """A search answer: a list of results (anything else reads as no results)."""

    model_config = ConfigDict(defer_build=True)


def _hit(result: _Result) -> SearchHit | None:
    """The hit a search result describes, or ``None`` when it lacks its object."""
    if result.type == "movie":
        media = result.movie
    elif result.type == "show":
        media = result.show
    elif result.type == "episode":
        media = result.episode
    else:
        return None
    if media is None:
        return None
    ids = Ids.from_dict(media.ids)
    if result.type != "episode":
        return SearchHit(kind=result.type, title=media.title or "", year=media.year, ids=ids)
    return SearchHit(
        kind="episode",
        title=media.title or "",
        ids=ids,
        show_ids=Ids.from_dict(result.show.ids if result.show else None),
        season=media.season,
        number=media.number,
    )


class TraktSearch:
    """Trakt id lookups and title searches.

    *session* is the caller's; every request first awaits ``limiter.acquire("GET")`` and
    reports its answer to ``limiter.observe``. *get_retry* is the in-process retry policy.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        limiter: Limiter,
        client_id: str,
        api_url: str,
        timeout_s: float = 30.0,
        get_retry: GetRetry | None = None,
    ) -> None:
        self._http = trakt_client(
            session=session,
            client_id=client_id,
            api_url=api_url,
            timeout_s=timeout_s,
            limiter=limiter,
            get_retry=get_retry,
        )

    async def _search(self, path: str, params: dict[str, str], kind: str) -> list[SearchHit]:
        """The hits of *kind* one search finds; ``[]`` for a 404 or an empty body.

        Raises what :func:`~.http.raise_for_status` raises for other statuses, and
        :class:`~crosswatchd.errors.PermanentError` for a 2xx body that is not JSON.
        """

        async def attempt() -> list[_Result]:
            answer = await self._http.send("GET", path, params=params)
            if answer.status == 404:
                return []
            raise_for_status(answer)
            return _Results.model_validate(search_data(NAME, answer)).root

        hits = [_hit(r) for r in await self._http.retry_get(attempt, path=path)]
        return [h for h in hits if h is not None and h.kind == kind]

    async def by_id(
        self, id_type: str, value: str, kind: Literal["movie", "show", "episode"]
    ) -> list[SearchHit]:
        """``GET /search/{id_type}/{value}?type={kind}``: hits of that kind ("Search / ID
        Lookup"; an episode hit carries its show). ``[]`` when nothing matches.

        Raises :class:`~crosswatchd.errors.RetryableError` (429, 5xx, timeouts, after the
        in-process retries) or another :class:`~crosswatchd.errors.ProviderError` (refused).
        """
        return await self._search(f"/search/{id_type}/{value}", {"type": kind}, kind)

    async def by_title(
        self, kind: Literal["movie", "show"], title: str, year: int
    ) -> list[SearchHit]:
        """``GET /search/{kind}?query=…&years=…&fields=title`` ("Search / Text Query").
        Returns the raw hits; exactness is checked by the caller. Raises like :meth:`by_id`.
        """
        params = {"query": title, "years": str(year), "fields": "title"}
        return await self._search(f"/search/{kind}", params, kind)

    async def absolute_numbers(self, show: str) -> dict[int, tuple[int, int]]:
        """``GET /shows/{show}/seasons?extended=full,episodes`` ("Seasons / Summary"): each
        episode's absolute number (``number_abs``) → its ``(season, number)``. *show* is a
        Trakt id or slug. Specials (season 0) and episodes without an absolute number are
        left out; the first episode of a number wins. ``{}`` for a 404 or an empty body.

        Raises like :meth:`by_id`.
        """
        path = f"/shows/{show}/seasons"
        params = {"extended": "full,episodes"}

        async def attempt() -> list[_Season]:
            answer = await self._http.send("GET", path, params=params)
            if answer.status == 404:
                return []
            raise_for_status(answer)
            return _Seasons.model_validate(search_data(NAME, answer)).root

        out: dict[int, tuple[int, int]] = {}
        for season in await self._http.retry_get(attempt, path=path):
            for episode in season.episodes:
                number = season.number if episode.season is None else episode.season
                if (
                    number is None
                    or number <= 0
                    or episode.number is None
                    or episode.number <= 0
                    or episode.number_abs is None
                    or episode.number_abs <= 0
                ):
                    continue
                out.setdefault(episode.number_abs, (number, episode.number))
        return out
