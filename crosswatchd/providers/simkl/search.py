"""SIMKL id lookups and title searches for the resolver (no token needed).

``GET /search/id?{imdb|tmdb|tvdb|anidb}={id}&type=movie|show`` (Apiary "Search / ID Lookup",
``shared/reference/simkl``) answers a list of ``{type, title, year, ids}`` (``type`` ``movie``,
``tv``/``show`` or ``anime``), a single object, or ``null`` when nothing matches.
``GET /search/{movie|tv}?q=…&page=1&limit=50`` (Apiary "Search / Text") answers a page of
``{title, year, endpoint_type, ids: {simkl_id, slug, tmdb?}}`` sorted by relevance, not only
exact titles. Requests go through :func:`~.http.simkl_client`: its identification, the
limiter and its status → error table, with a few in-process retries of transient failures.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import aiohttp
from pydantic import ConfigDict, RootModel

from crosswatchd.http import GetRetry, Lenient, LenientList, OptInt, OptStr, WireModel
from crosswatchd.models import Ids
from crosswatchd.providers.base import SearchHit, search_data
from crosswatchd.providers.simkl.http import NAME, error_for, simkl_client
from crosswatchd.ratelimit import Limiter

__all__ = ["SimklSearch"]

#: SIMKL types that are shows.
_SHOW_TYPES: Final = frozenset({"tv", "show", "anime"})
#: Results asked for per text search: the most a page holds (Apiary "Search / Text": "max
#: items per page is 50").
TEXT_SEARCH_LIMIT: Final = 50


class _Result(WireModel):
    type: OptStr = None
    title: OptStr = None
    year: OptInt = None
    ids: Lenient[dict[str, Any]] = None


class _Results(RootModel[LenientList[_Result]]):
    """A search answer: a list of results (anything else reads as no results)."""

    model_config = ConfigDict(defer_build=True)


class _TextResult(WireModel):
    title: OptStr = None
    year: OptInt = None
    endpoint_type: OptStr = None
    ids: Lenient[dict[str, Any]] = None


class _TextResults(RootModel[LenientList[_TextResult]]):
    """A text search answer: a list of results (anything else reads as no results)."""

    model_config = ConfigDict(defer_build=True)


def _text_ids(ids: dict[str, Any] | None) -> Ids:
    """A text search result's ids: SIMKL names its own id ``simkl_id`` there."""
    if not ids:
        return Ids()
    return Ids.from_dict({**ids, "simkl": ids.get("simkl") or ids.get("simkl_id")})


class SimklSearch:
    """SIMKL ``GET /search/id`` lookups.

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
        self._http = simkl_client(
            session=session,
            client_id=client_id,
            api_url=api_url,
            timeout_s=timeout_s,
            limiter=limiter,
            get_retry=get_retry,
        )

    async def by_id(
        self, id_type: str, value: str, kind: Literal["movie", "show"]
    ) -> list[SearchHit]:
        """``GET /search/id?{id_type}={value}&type={kind}``: hits of that kind (SIMKL types
        shows ``tv`` or ``anime``). ``[]`` for ``null``, an empty body or a 404.

        Raises :class:`~crosswatchd.errors.RetryableError` (429, 5xx, timeouts, after the
        in-process retries), :class:`~crosswatchd.errors.PermanentError` for a 2xx body that
        is not JSON, or another :class:`~crosswatchd.errors.ProviderError` (refused).
        """
        path = "/search/id"

        async def attempt() -> list[_Result]:
            answer = await self._http.send("GET", path, params={id_type: value, "type": kind})
            if answer.status == 404:
                return []
            if not answer.ok:
                raise error_for(answer)
            data = search_data(NAME, answer)
            return _Results.model_validate([data] if isinstance(data, dict) else data).root

        hits: list[SearchHit] = []
        for result in await self._http.retry_get(attempt, path=path):
            etype = result.type or ""
            if (kind == "movie") != (etype == "movie") or (
                kind == "show" and etype not in _SHOW_TYPES
            ):
                continue
            hits.append(
                SearchHit(
                    kind=kind,
                    title=result.title or "",
                    year=result.year,
                    ids=Ids.from_dict(result.ids),
                )
            )
        return hits

    async def by_title(
        self, kind: Literal["movie", "show"], title: str, year: int
    ) -> list[SearchHit]:
        """``GET /search/{movie|tv}?q={title}&page=1&limit=50`` ("Search / Text"): the first
        page of hits, nearest first, with their year. SIMKL takes no year parameter there, so
        *year* is not sent; exactness (title and year) is checked by the caller. A hit's ids
        are its ``simkl`` id (SIMKL's ``simkl_id``) and, when SIMKL gives it, ``tmdb``.
        ``[]`` for ``null``, an empty body or a 404. Raises like :meth:`by_id`.
        """
        path = f"/search/{'movie' if kind == 'movie' else 'tv'}"
        params = {"q": title, "page": "1", "limit": str(TEXT_SEARCH_LIMIT)}

        async def attempt() -> list[_TextResult]:
            answer = await self._http.send("GET", path, params=params)
            if answer.status == 404:
                return []
            if not answer.ok:
                raise error_for(answer)
            data = search_data(NAME, answer)
            return _TextResults.model_validate([data] if isinstance(data, dict) else data).root

        return [
            SearchHit(kind=kind, title=r.title or "", year=r.year, ids=_text_ids(r.ids))
            for r in await self._http.retry_get(attempt, path=path)
        ]
