"""Plex Discover: the plex.tv account watchlist. Plex's one HTTP layer for it.

Plex does not document Discover; the facts come from ``shared/reference/plex/
discover-watchlist.md`` (§ numbers below), which names the open-source clients each is from.

- §1 Every call, ``library/metadata/matches`` included, goes to one base URL
  (``plex.discover_url``, https://discover.provider.plex.tv since August 2025).
- §2 ``X-Plex-Token`` (the profile's account token, :class:`~.plextv.PlexAuth`) and the
  client headers (:func:`~.plextv.plex_headers`) on every request; ``Accept:
  application/json`` on reads (without it Discover answers XML). PUTs carry no JSON
  ``Accept``/``Content-Type`` (Seerr saw a 500 with them).
- §3 ``GET /library/sections/watchlist/all`` paged by ``X-Plex-Container-Start`` /
  ``X-Plex-Container-Size`` (100 a page, as python-plexapi and CrossWatch), walked until
  ``offset + size >= totalSize``. Rows carry no external ids: one ``GET
  /library/metadata/{ratingKey}`` per item reads ``Guid[]`` (the caller caches it).
- §4 ``PUT /actions/addToWatchlist?ratingKey=`` / ``removeFromWatchlist`` with the Discover
  ratingKey (the last part of the ``plex://movie|show/…`` guid).
- §5 ``GET /library/metadata/matches?type=1|2&guid=<scheme>://<id>``, tmdb then imdb then
  tvdb, a candidate used only once its own metadata carries the id asked for (no title
  matching, ever).
- §6 A failed or partial read is never an empty list: a walk whose ``totalSize`` moves while
  it runs is walked again (twice at most), then fails.

Status translation (:meth:`DiscoverClient._error`): 401 → :class:`AuthError` (a stored token
is set aside); 429, 5xx, a timeout, a connection error or a 2xx that is not JSON →
:class:`RetryableError`; other 4xx → :class:`PermanentError`. GETs are retried in-process a
few times; PUTs never are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final

import aiohttp
import orjson
import structlog
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError

from crosswatchd.errors import PermanentError, ProviderError, RetryableError
from crosswatchd.http import Answer, GetRetry, HttpClient, Lenient, LenientList, OptInt, WireModel
from crosswatchd.models import Ids, MediaKind
from crosswatchd.ratelimit import Limiter
from crosswatchd.sources.guids import ids_from_guid_list
from crosswatchd.sources.plextv import NAME, PlexAuth, plex_headers

__all__ = ["PAGE_SIZE", "DiscoverClient", "DiscoverRow", "discover_key"]

log = structlog.get_logger(__name__)

#: Rows per watchlist page (python-plexapi ``X_PLEX_CONTAINER_SIZE``, CrossWatch).
PAGE_SIZE: Final = 100
#: Walks of the watchlist before a list that keeps changing is given up on (§6).
_WALKS: Final = 3
#: The id schemes ``matches`` is asked for, in order (§5, CrossWatch's order).
_MATCH_SCHEMES: Final = ("tmdb", "imdb", "tvdb")
_TYPE_NUMBER: Final = {MediaKind.MOVIE: "1", MediaKind.SHOW: "2"}


def discover_key(guid: str | None) -> str | None:
    """The Discover ratingKey of a ``plex://movie/<key>`` or ``plex://show/<key>`` guid (§4),
    or None for anything else."""
    if not guid or not guid.startswith(("plex://movie/", "plex://show/")):
        return None
    key = guid.rsplit("/", 1)[-1].strip()
    return key or None


@dataclass(frozen=True, slots=True)
class DiscoverRow:
    """One watchlist row: the Discover ``rating_key``, ``kind`` (movie or show), ``title``,
    ``year`` and ``guid`` (``plex://movie/…``). No external ids (§3)."""

    rating_key: str
    kind: MediaKind
    title: str
    year: int | None
    guid: str


def _text(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        return str(value).strip() or None
    return value


_Text = Lenient[Annotated[str, BeforeValidator(_text)]]


class _GuidEntry(WireModel):
    id: _Text = None


class _Row(WireModel):
    model_config = ConfigDict(populate_by_name=True)

    rating_key: _Text = Field(None, alias="ratingKey")
    type: _Text = None
    title: _Text = None
    year: OptInt = None
    guid: _Text = None
    guids: LenientList[_GuidEntry] = Field([], alias="Guid")


class _Container(WireModel):
    model_config = ConfigDict(populate_by_name=True)

    offset: OptInt = None
    size: OptInt = None
    total_size: OptInt = Field(None, alias="totalSize")
    metadata: LenientList[_Row] = Field([], alias="Metadata")


class _Envelope(WireModel):
    model_config = ConfigDict(populate_by_name=True)

    container: Lenient[_Container] = Field(None, alias="MediaContainer")


def _kind(value: str | None) -> MediaKind | None:
    if value == "movie":
        return MediaKind.MOVIE
    if value == "show":
        return MediaKind.SHOW
    return None


class DiscoverClient:
    """Discover for one profile's account.

    *session* is the caller's; *url* ``plex.discover_url``; *auth* the profile's
    :class:`~.plextv.PlexAuth`; *client_id* this installation's identifier; *limiter* paces
    every attempt (Plex publishes no limit); *get_retry* the in-process retries of GETs.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        auth: PlexAuth,
        client_id: str,
        limiter: Limiter | None = None,
        timeout_s: float = 30.0,
        get_retry: GetRetry | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._auth = auth
        self._page_size = page_size
        self._http = HttpClient(
            service=NAME,
            session=session,
            base_url=url,
            timeout_s=timeout_s,
            on_transport_error=self._transport_error,
            headers=plex_headers(client_id),
            limiter=limiter,
            get_retry=get_retry,
        )

    @property
    def auth(self) -> PlexAuth:
        """The token source (the provider asks it whether a token is there)."""
        return self._auth

    @staticmethod
    def _transport_error(what: str, exc: TimeoutError | aiohttp.ClientError) -> Exception:
        if isinstance(exc, TimeoutError):
            return RetryableError(NAME, f"{what}: no answer within the timeout")
        return RetryableError(NAME, f"{what}: {type(exc).__name__}")

    def _error(self, answer: Answer, token: str) -> ProviderError:
        """The error of a non-2xx answer (the module docstring's table)."""
        if answer.status == 401:
            return self._auth.refused(token)
        if answer.status == 429:
            return RetryableError(NAME, f"{answer.what}: rate limited (429)", answer.retry_after_s)
        if answer.status >= 500:
            return RetryableError(
                NAME, f"{answer.what}: HTTP {answer.status}", answer.retry_after_s
            )
        return PermanentError(NAME, f"{answer.what}: HTTP {answer.status}")

    async def _get(self, path: str, params: dict[str, str]) -> _Container | None:
        """One GET of a ``MediaContainer`` (retried in-process); None for a 404."""
        token = self._auth.token()

        async def attempt() -> _Container | None:
            answer = await self._http.send(
                "GET",
                path,
                params=params,
                headers={"X-Plex-Token": token, "Accept": "application/json"},
            )
            if answer.status == 404:
                return None
            if not answer.ok:
                raise self._error(answer, token)
            try:
                envelope = _Envelope.model_validate(orjson.loads(answer.body))
            except (orjson.JSONDecodeError, ValidationError):
                raise RetryableError(
                    NAME, f"{answer.what}: HTTP {answer.status}, not JSON"
                ) from None
            if envelope.container is None:
                raise RetryableError(NAME, f"{answer.what}: no MediaContainer in the answer")
            return envelope.container

        return await self._http.retry_get(attempt, path=path)

    # -- §3 the watchlist ---------------------------------------------------------------------

    async def watchlist(self) -> list[DiscoverRow]:
        """Every movie and show on the watchlist, newest first (§3), read completely or not at
        all: raises :class:`RetryableError` when a page is missing or the list keeps changing
        while it is read (§6), and what :meth:`_error` says for a refused request."""
        for walk in range(1, _WALKS + 1):
            rows = await self._walk()
            if rows is not None:
                return rows
            log.info("plex.watchlist.changed_while_read", walk=walk)
        raise RetryableError(NAME, "the Plex watchlist kept changing while it was read")

    async def _page(self, start: int) -> _Container:
        path = "/library/sections/watchlist/all"
        params = {
            "sort": "watchlistedAt:desc",
            "X-Plex-Container-Start": str(start),
            "X-Plex-Container-Size": str(self._page_size),
        }
        page = await self._get(path, params)
        if page is None:
            raise RetryableError(NAME, f"GET {path}: Discover has no watchlist section (404)")
        if page.total_size is None:
            # Without totalSize only a first page that is short and says so is the whole list.
            whole = start == 0 and page.size == len(page.metadata) < self._page_size
            if not whole:
                raise RetryableError(NAME, f"GET {path}: the answer has no totalSize")
            return page.model_copy(update={"total_size": len(page.metadata)})
        return page

    async def _walk(self) -> list[DiscoverRow] | None:
        """One walk of the pages; None when ``totalSize`` moved meanwhile (walk again)."""
        first = await self._page(0)
        total = first.total_size or 0
        starts = range(self._page_size, total, self._page_size)
        pages = [first, *await asyncio.gather(*(self._page(s) for s in starts))]
        if any(p.total_size != total for p in pages):
            return None
        rows: dict[str, DiscoverRow] = {}
        seen: set[str] = set()
        for page in pages:
            for row in page.metadata:
                key = row.rating_key or discover_key(row.guid)
                if key is None:
                    continue
                seen.add(key)
                kind = _kind(row.type)
                if kind is None:
                    continue  # only movies and shows go on a watchlist (§4)
                guid = row.guid or f"plex://{kind.value}/{key}"
                rows.setdefault(key, DiscoverRow(key, kind, row.title or "", row.year, guid))
        if len(seen) != total:
            return None  # rows shifted between pages: some were read twice, others not at all
        return list(rows.values())

    async def ids(self, rating_key: str) -> Ids | None:
        """The external ids (imdb/tmdb/tvdb…) of a Discover item from ``GET
        /library/metadata/{ratingKey}``'s ``Guid[]`` (§3); an empty :class:`Ids` for an item
        without any, None when Discover does not know the key (404)."""
        container = await self._get(f"/library/metadata/{rating_key}", {"includeGuids": "1"})
        if container is None:
            return None
        if not container.metadata:
            return Ids()
        return ids_from_guid_list(g.id for g in container.metadata[0].guids if g.id)

    # -- §5 finding an item by its ids -------------------------------------------------------

    async def find(
        self,
        kind: MediaKind,
        ids: Ids,
        ids_of: Callable[[str], Awaitable[Ids | None]] | None = None,
    ) -> str | None:
        """The Discover ratingKey of the *kind* item carrying one of *ids* (tmdb, imdb, tvdb
        in that order), or None when Discover has none. A candidate of ``matches`` counts
        only when its metadata (*ids_of*, default :meth:`ids`: a cache may stand in) carries
        the id asked for."""
        lookup = ids_of or self.ids
        for scheme in _MATCH_SCHEMES:
            value = getattr(ids, scheme)
            if not value:
                continue
            params = {"type": _TYPE_NUMBER[kind], "guid": f"{scheme}://{value}"}
            container = await self._get("/library/metadata/matches", params)
            for row in container.metadata if container is not None else ():
                key = row.rating_key or discover_key(row.guid)
                if key is None or _kind(row.type) not in (None, kind):
                    continue
                found = await lookup(key)
                if found is not None and getattr(found, scheme) == value:
                    return key
        return None

    # -- §4 adding and removing --------------------------------------------------------------

    async def change(self, action: str, rating_key: str) -> bool:
        """``PUT /actions/{addToWatchlist|removeFromWatchlist}?ratingKey=`` once (never
        retried in-process); True when Discover answered 2xx or 409, False for a 404 (the key
        is unknown, or the item is absent: the caller knows which it asked). Raises like
        :meth:`watchlist` for the rest."""
        if action not in ("addToWatchlist", "removeFromWatchlist"):
            raise ValueError(f"unknown watchlist action {action!r}")
        token = self._auth.token()
        answer = await self._http.send(
            "PUT",
            f"/actions/{action}",
            params={"ratingKey": rating_key},
            headers={"X-Plex-Token": token},
        )
        if answer.ok or answer.status == 409:
            return True
        if answer.status == 404:
            return False
        raise self._error(answer, token)
