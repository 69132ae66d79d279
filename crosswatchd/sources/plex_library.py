"""What a Plex Media Server says was watched and rated: its play history, its accounts, and the
view state of its library items. Read by the reconcile pass's source snapshot through
:meth:`PlexServer.container <crosswatchd.sources.plex_server.PlexServer.container>` (one HTTP
layer and one status → error translation per service).

Plex publishes no API reference; the shapes are those of ``shared/reference/plex/README.md``
(``Metadata`` items: string ratingKeys, ``index``/``parentIndex``, ``lastViewedAt`` in unix
seconds, absent when never played) and of what PMS is known to return (the community
OpenAPI description, python-plexapi's readers), as the fake in ``tests/fakes/plex_server.py``
serves them:

- ``GET /status/sessions/history/all``: one row per play (``ratingKey``, ``type``, ``title``,
  ``viewedAt``, ``accountID``; an episode's ``grandparentKey``, ``grandparentTitle``,
  ``parentIndex``, ``index``), filtered with ``viewedAt>`` and sorted ``viewedAt`` oldest first
  (new plays do not shift the pages already read); the owner's token sees every account.
- ``GET /accounts``: ``Account[]`` ``{id, name}``; the server owner is account 1.
- ``GET /library/sections`` and ``/library/sections/{key}/all?type=N&includeGuids=1``: the
  items with the token account's ``viewCount``, ``lastViewedAt``, ``userRating`` (0-10, half
  stars x 2) and ``lastRatedAt``.
- Paging: ``X-Plex-Container-Start``/``X-Plex-Container-Size`` (sent as query parameters, which
  PMS also accepts); a paged ``MediaContainer`` has ``size``, ``offset`` and ``totalSize``.
- ``GET /identity``: the server's ``machineIdentifier`` (it scopes ratingKeys).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import structlog
from pydantic import Field, ValidationError

from crosswatchd.models import Item, MediaKind
from crosswatchd.sources.plex import RATED_KINDS, OptInt, PlexMetadata, metadata_item
from crosswatchd.sources.plex_server import PlexServer

__all__ = ["OWNER_ACCOUNT_ID", "LibraryEntry", "PlexLibrary", "PlexPlay"]

log = structlog.get_logger(__name__)

#: The account id of the server owner (Plex webhook README: "the owner's account id is 1").
OWNER_ACCOUNT_ID: Final = 1
#: ``type`` filter values of a section listing (python-plexapi ``utils.SEARCHTYPES``).
_TYPE_CODES: Final = {"movie": "1", "show": "2", "season": "3", "episode": "4"}
#: What each section type lists for reconcile: movies; shows, seasons and episodes.
_SECTION_KINDS: Final = {"movie": ("movie",), "show": ("show", "season", "episode")}
#: Pages read at most from one listing (a safety stop against a server that ignores paging).
_PAGE_CAP: Final = 10_000


class _Entry(PlexMetadata):
    """A history row or a library item: ``Metadata`` plus view state and the play's
    account."""

    grandparent_key: str | None = Field(default=None, alias="grandparentKey")
    viewed_at: OptInt = Field(default=None, alias="viewedAt")
    account_id: OptInt = Field(default=None, alias="accountID")
    view_count: OptInt = Field(default=None, alias="viewCount")
    last_viewed_at: OptInt = Field(default=None, alias="lastViewedAt")
    last_rated_at: OptInt = Field(default=None, alias="lastRatedAt")
    user_rating: float | None = Field(default=None, alias="userRating")


@dataclass(frozen=True, slots=True)
class PlexPlay:
    """One row of the server's play history: *account_id* watched *item* at *viewed_at*
    (unix seconds)."""

    account_id: int
    item: Item
    viewed_at: int


@dataclass(frozen=True, slots=True)
class LibraryEntry:
    """A library item and the token account's view state of it: ``view_count`` plays or
    marks, the last at ``last_viewed_at``; ``user_rating`` (0-10) given at ``last_rated_at``
    (unix seconds; None when never)."""

    item: Item
    view_count: int
    last_viewed_at: int | None
    user_rating: float | None
    last_rated_at: int | None


def _parse(raw: Any) -> _Entry | None:
    if not isinstance(raw, dict):
        return None
    try:
        return _Entry.model_validate(raw)
    except ValidationError:
        return None


def _show_key(entry: _Entry) -> str | None:
    """An episode's show ratingKey: ``grandparentRatingKey``, or the last path segment of a
    history row's ``grandparentKey`` (``/library/metadata/59800``)."""
    if entry.grandparent_rating_key:
        return entry.grandparent_rating_key
    if entry.grandparent_key:
        tail = entry.grandparent_key.rstrip("/").rsplit("/", 1)[-1]
        return tail if tail.isdigit() else None
    return None


class PlexLibrary:
    """The history, accounts and library view state of one server (see the module
    docstring), read through *server* with its token; *page_size* items per request."""

    def __init__(self, server: PlexServer, *, page_size: int = 1000) -> None:
        self._server = server
        self._page_size = page_size
        self.machine_identifier: str | None = None

    async def identify(self) -> str | None:
        """The server's ``machineIdentifier`` (``GET /identity``), remembered."""
        container = await self._server.container("/identity", what="identity")
        found = container.get("machineIdentifier")
        self.machine_identifier = str(found) if found else None
        return self.machine_identifier

    async def accounts(self) -> dict[int, str]:
        """Account id → name of every account that can use the server (``GET /accounts``;
        the nameless system account 0 left out)."""
        container = await self._server.container("/accounts", what="accounts")
        out: dict[int, str] = {}
        for raw in container.get("Account") or []:
            if not isinstance(raw, dict):
                continue
            try:
                account_id = int(str(raw.get("id")))
            except ValueError:
                continue
            name = str(raw.get("name") or "").strip()
            if account_id and name:
                out[account_id] = name
        return out

    async def history(self, *, since: int | None = None) -> AsyncIterator[list[PlexPlay]]:
        """The plays of every account, oldest first, a page at a time; *since* (unix
        seconds) keeps plays at or after it. Rows that are not a movie or an episode are
        skipped."""
        params = {"sort": "viewedAt"}
        if since is not None:
            params["viewedAt>"] = str(since)
        server = self.machine_identifier
        async for page in self._pages("/status/sessions/history/all", params, "history"):
            plays = []
            for raw in page:
                entry = _parse(raw)
                if entry is None:
                    continue
                account_id, viewed_at = entry.account_id, entry.viewed_at
                if account_id is None or viewed_at is None:
                    continue
                kind = RATED_KINDS.get((entry.type or "").lower())
                if kind not in (MediaKind.MOVIE, MediaKind.EPISODE):
                    continue
                if kind is MediaKind.EPISODE and entry.grandparent_rating_key is None:
                    entry = entry.model_copy(update={"grandparent_rating_key": _show_key(entry)})
                item = metadata_item(entry, kind, server)
                plays.append(PlexPlay(account_id, item, viewed_at))
            yield plays

    async def library(self) -> AsyncIterator[list[LibraryEntry]]:
        """Every movie, show, season and episode of the movie and show sections, with the
        token account's view state, a page at a time."""
        sections = await self._server.container("/library/sections", what="library sections")
        server = self.machine_identifier
        for raw in sections.get("Directory") or []:
            if not isinstance(raw, dict) or raw.get("key") is None:
                continue
            key = str(raw["key"])
            for kind_name in _SECTION_KINDS.get(str(raw.get("type")), ()):
                kind = RATED_KINDS[kind_name]
                params = {"type": _TYPE_CODES[kind_name], "includeGuids": "1"}
                path = f"/library/sections/{key}/all"
                async for page in self._pages(path, params, f"library section {key}"):
                    entries = []
                    for item_raw in page:
                        entry = _parse(item_raw)
                        if entry is None or (entry.type or "").lower() != kind_name:
                            continue
                        entries.append(
                            LibraryEntry(
                                item=metadata_item(entry, kind, server),
                                view_count=entry.view_count or 0,
                                last_viewed_at=entry.last_viewed_at,
                                user_rating=entry.user_rating,
                                last_rated_at=entry.last_rated_at,
                            )
                        )
                    yield entries

    async def _pages(
        self, path: str, params: dict[str, str], what: str
    ) -> AsyncIterator[list[Any]]:
        """The ``Metadata`` lists of a paged listing, until ``totalSize`` is reached or a
        page comes back short."""
        start = 0
        for _ in range(_PAGE_CAP):
            paged = {
                **params,
                "X-Plex-Container-Start": str(start),
                "X-Plex-Container-Size": str(self._page_size),
            }
            container = await self._server.container(path, paged, what=what)
            items = container.get("Metadata") or []
            if not isinstance(items, list) or not items:
                return
            yield items
            start += len(items)
            total = container.get("totalSize")
            if isinstance(total, int) and not isinstance(total, bool):
                if start >= total:
                    return
            elif len(items) < self._page_size:
                return
        log.warning("plex.listing.truncated", path=path, pages=_PAGE_CAP)
