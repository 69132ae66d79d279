"""Reading the Trakt watchlist, page by page. No writes here: additions and removals are
changes (:mod:`.changes`, sent by :meth:`TraktProvider.apply_changes`).

Facts: "Sync / Get Watchlist" (``shared/reference/trakt/trakt.apib``): ``GET
/sync/watchlist/{type}`` rows ``{rank, id, listed_at, notes, type, movie | show | season |
episode}``; lists are **paginated by default since 2026-04-15**, 100 a page by default and at
most 250 (``shared/reference/plex/discover-watchlist.md`` §7): ``?page=&limit=``, followed by
``X-Pagination-Page-Count``. A list that changes while it is read (``X-Pagination-Item-Count``
moves, or the rows do not add up) is read again, twice at most, then the read fails: a partial
list is never taken for the whole.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from pydantic import RootModel

from crosswatchd.errors import RetryableError
from crosswatchd.http import Answer, Entries, Lenient, OptInt, OptStr, WireModel
from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.providers.trakt.http import NAME, raise_for_status, read_json

__all__ = ["PAGE_LIMIT", "read_watchlist"]

#: Rows asked per page: Trakt's largest page (discover-watchlist.md §7).
PAGE_LIMIT: Final = 250
#: Walks before a list that keeps changing is given up on.
_WALKS: Final = 3
_PATH: Final = "/sync/watchlist/all"
_KINDS: Final = {"movie": MediaKind.MOVIE, "show": MediaKind.SHOW}


class _Media(WireModel):
    title: OptStr = None
    year: OptInt = None
    ids: Lenient[dict[str, Any]] = None


class _Row(WireModel):
    type: OptStr = None
    movie: Lenient[_Media] = None
    show: Lenient[_Media] = None


class _Page(RootModel[Entries[_Row]]):
    pass


def _header_int(answer: Answer, name: str) -> int | None:
    try:
        return int(answer.headers.get(name, ""))
    except ValueError:
        return None


def _item(row: _Row) -> Item | None:
    """A movie or show row as an :class:`Item` (seasons and episodes are left out: a Plex
    watchlist holds movies and shows only)."""
    kind = _KINDS.get(row.type or "")
    media = row.movie if kind is MediaKind.MOVIE else row.show
    if kind is None or media is None:
        return None
    return Item(kind, media.title or "", media.year, ids=Ids.from_dict(media.ids))


async def read_watchlist(
    call: Callable[..., Awaitable[Answer]],
    retry_get: Callable[..., Awaitable[Any]],
) -> list[Item]:
    """Every movie and show on the account's watchlist, in rank order.

    *call* sends an OAuth request (``TraktAuth.call``), *retry_get* retries one page's GET
    in-process. Raises :class:`RetryableError` when the list keeps changing while it is read
    or a page is not the expected JSON, and what ``raise_for_status`` raises for a refusal.
    """
    for _ in range(_WALKS):
        items = await _walk(call, retry_get)
        if items is not None:
            return items
    raise RetryableError(NAME, "the Trakt watchlist kept changing while it was read")


async def _walk(
    call: Callable[..., Awaitable[Answer]], retry_get: Callable[..., Awaitable[Any]]
) -> list[Item] | None:
    rows: list[_Row] = []
    counts: set[int | None] = set()
    page, pages = 1, 1
    while page <= pages:

        async def get(page: int = page) -> tuple[list[_Row], int, int | None]:
            params = {"page": str(page), "limit": str(PAGE_LIMIT)}
            answer = await call("GET", _PATH, params=params)
            raise_for_status(answer)
            batch = read_json(answer, _Page, "expected a list").root
            return (
                batch,
                _header_int(answer, "X-Pagination-Page-Count") or 1,
                _header_int(answer, "X-Pagination-Item-Count"),
            )

        batch, pages, count = await retry_get(get, path=_PATH)
        rows.extend(batch)
        counts.add(count)
        page += 1
    if len(counts) > 1 or (None not in counts and len(rows) != next(iter(counts))):
        return None
    return [item for item in map(_item, rows) if item is not None]
