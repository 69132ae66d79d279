"""Reading a Trakt account's whole history and ratings, for the reconcile pass.

Facts (Trakt API Blueprint, ``shared/reference/trakt/trakt.apib``, by section):

- "Sync / Get History" ``GET /sync/history[/{type}]``: plays newest first, each with its own
  history ``id``; "Pagination": ``page``/``limit`` and the ``X-Pagination-Page``, ``-Limit``,
  ``-Page-Count`` and ``-Item-Count`` headers. The default page is 10; the largest page Trakt
  serves is 250 ("The current target maximum page size is 250 when you request a limit",
  trakt/trakt-api discussion #775, quoted in Taxel/PlexTraktSync PR #2485; the fake clamps to
  it and says so in ``X-Pagination-Limit``, which this reader trusts over what it asked for).
- "Sync / Get Ratings" ``GET /sync/ratings/all``: ``{rated_at, rating, type, movie | show |
  season + show | episode + show}``; "Pagination Optional", read with ``page``/``limit`` so a
  server that paginates by default is followed too.

Every page is one GET through the provider's own client (its limiter, token refresh and
status → error translation), retried in-process on transient failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import ConfigDict, RootModel

from crosswatchd.http import Answer, Entries, HttpClient, Lenient, OptInt, OptStr, WireModel
from crosswatchd.models import Ids, Item, MediaKind, item_keys, parse_utc
from crosswatchd.providers.base import TargetRating, TargetWatch
from crosswatchd.providers.trakt.auth import TraktAuth
from crosswatchd.providers.trakt.history import HistoryEntry, HistoryPage
from crosswatchd.providers.trakt.http import raise_for_status, read_json

__all__ = ["PAGE_LIMIT", "TraktSync", "WatchPage", "entry_watch"]

#: Items asked for per page ("target maximum page size is 250").
PAGE_LIMIT: Final = 250
#: Pages of ratings read at most (250,000 ratings: far above any account's limit).
_RATINGS_PAGE_CAP: Final = 1000


@dataclass(frozen=True, slots=True)
class WatchPage:
    """One page of ``GET /sync/history``: its plays, how many entries could not be read
    (``skipped``: no time or no item), and the pagination headers (``page``, ``page_count``,
    ``item_count``: every play of the listing; ``None`` when not sent)."""

    watches: list[TargetWatch]
    page: int
    page_count: int
    item_count: int | None
    skipped: int = 0


def _header_int(answer: Answer, name: str) -> int | None:
    try:
        return int(answer.headers.get(name, ""))
    except ValueError:
        return None


def _ids(raw: Any) -> Ids:
    return Ids.from_dict(raw if isinstance(raw, dict) else None)


def entry_watch(entry: HistoryEntry) -> TargetWatch | None:
    """The :class:`TargetWatch` of one history entry (``None`` without a readable
    ``watched_at`` or item)."""
    try:
        watched_at = parse_utc(str(entry.watched_at)).timestamp()
    except ValueError:
        return None
    if entry.movie is not None:
        item = Item(MediaKind.MOVIE, ids=_ids(entry.movie.ids))
    elif entry.episode is not None:
        item = Item(
            MediaKind.EPISODE,
            ids=_ids(entry.episode.ids),
            show_ids=_ids(entry.show.ids if entry.show else None),
            season=entry.episode.season,
            number=entry.episode.number,
        )
    else:
        return None
    keys = tuple(item_keys(item))
    if not keys:
        return None
    return TargetWatch(None if entry.id is None else str(entry.id), keys, watched_at)


class _Named(WireModel):
    title: OptStr = None
    ids: Lenient[dict[str, Any]] = None
    number: OptInt = None
    season: OptInt = None


class _Rated(WireModel):
    rating: OptInt = None
    type: OptStr = None
    movie: Lenient[_Named] = None
    show: Lenient[_Named] = None
    season: Lenient[_Named] = None
    episode: Lenient[_Named] = None


class _RatedPage(RootModel[Entries[_Rated]]):
    model_config = ConfigDict(defer_build=True)


def _rated_item(entry: _Rated) -> Item | None:
    show_ids = _ids(entry.show.ids if entry.show else None)
    show_title = entry.show.title if entry.show else None
    if entry.type == "movie" and entry.movie is not None:
        return Item(MediaKind.MOVIE, entry.movie.title or "", ids=_ids(entry.movie.ids))
    if entry.type == "show" and entry.show is not None:
        return Item(MediaKind.SHOW, show_title or "", ids=show_ids)
    if entry.type == "season" and entry.season is not None:
        return Item(
            MediaKind.SEASON,
            ids=_ids(entry.season.ids),
            show_title=show_title,
            show_ids=show_ids,
            season=entry.season.number,
        )
    if entry.type == "episode" and entry.episode is not None:
        return Item(
            MediaKind.EPISODE,
            entry.episode.title or "",
            ids=_ids(entry.episode.ids),
            show_title=show_title,
            show_ids=show_ids,
            season=entry.episode.season,
            number=entry.episode.number,
        )
    return None


class TraktSync:
    """Whole-account reads of one Trakt account, through its provider's *http* client and
    *auth* (see the module docstring). Raises like the provider: ``RetryableError``,
    ``AuthError``, ``PermanentError``."""

    def __init__(self, *, http: HttpClient, auth: TraktAuth) -> None:
        self._http = http
        self._auth = auth

    async def history_page(
        self, kind: str | None, page: int, *, limit: int = PAGE_LIMIT
    ) -> WatchPage:
        """Page *page* (1-based) of ``GET /sync/history`` (*kind* ``None``: movies and
        episodes together) or ``/sync/history/{kind}`` (``movies``, ``episodes``), newest
        first."""
        path = "/sync/history" if kind is None else f"/sync/history/{kind}"
        params = {"page": str(page), "limit": str(limit)}

        async def attempt() -> WatchPage:
            answer = await self._auth.call("GET", path, params=params)
            raise_for_status(answer)
            entries = read_json(answer, HistoryPage, "expected a list").root
            watches = [w for e in entries if (w := entry_watch(e)) is not None]
            return WatchPage(
                watches,
                page=_header_int(answer, "X-Pagination-Page") or page,
                page_count=_header_int(answer, "X-Pagination-Page-Count") or 1,
                item_count=_header_int(answer, "X-Pagination-Item-Count"),
                skipped=len(entries) - len(watches),
            )

        return await self._http.retry_get(attempt, path=path, page=page)

    async def ratings(self) -> list[TargetRating]:
        """Every rating of the account (``GET /sync/ratings/all``, every page)."""
        path = "/sync/ratings/all"
        out: list[TargetRating] = []
        for page in range(1, _RATINGS_PAGE_CAP + 1):
            params = {"page": str(page), "limit": str(PAGE_LIMIT)}

            async def attempt(params: dict[str, str] = params) -> tuple[list[_Rated], int]:
                answer = await self._auth.call("GET", path, params=params)
                raise_for_status(answer)
                rated = read_json(answer, _RatedPage, "expected a list").root
                return rated, _header_int(answer, "X-Pagination-Page-Count") or 1

            rated, pages = await self._http.retry_get(attempt, path=path, page=page)
            for entry in rated:
                item = _rated_item(entry)
                if item is None or entry.rating is None or not 1 <= entry.rating <= 10:
                    continue
                keys = tuple(item_keys(item))
                if keys:
                    out.append(TargetRating(keys, item.kind, entry.rating, label=item.label()))
            if page >= pages:
                break
        return out
