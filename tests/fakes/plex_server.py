"""A fake Plex Media Server: metadata, play history, accounts and library sections.

Plex publishes no API reference; field names follow ``shared/reference/plex/README.md`` (the
webhook ``Metadata`` items: string ratingKeys, numeric ``index``/``parentIndex``/``viewOffset``/
``lastViewedAt``, ``Guid[]``; the owner's account id is 1). Where that reference is silent, the
fake follows what PMS is known to return (the community OpenAPI description of PMS,
LukeHagar/plex-api-spec, and python-plexapi's readers); each such place says so.

As strict as PMS where it matters to a client:

- ``X-Plex-Token`` (header, or query parameter as PMS also accepts) must be a known account's
  token, else 401 (``/identity`` is the one unauthenticated path);
- JSON only with ``Accept: application/json``; otherwise XML (a ``MediaContainer``);
- ``Guid[]`` only with ``includeGuids=1``;
- per-account view state: ``viewCount``, ``lastViewedAt``, ``viewOffset``, ``userRating``,
  ``lastRatedAt`` are those of the token's account (absent when never played/rated, as in the
  webhook payloads);
- paging by ``X-Plex-Container-Start``/``X-Plex-Container-Size`` (headers or query); a paged
  reply's ``MediaContainer`` carries ``offset`` and ``totalSize`` besides ``size``;
- 404 for an unknown ratingKey or section.

Endpoints:

- ``GET /library/metadata/{ratingKey}`` — one ``Metadata`` item;
- ``GET /status/sessions/history/all`` — plays, oldest first unless ``sort=viewedAt:desc``;
  filters ``accountID``, ``librarySectionID``, ``metadataItemID``, ``viewedAt>`` (≥),
  ``viewedAt<`` (≤), ``viewedAt>>`` / ``viewedAt<<`` (strict) — PMS's filter syntax as
  python-plexapi's ``PlexServer.history()`` sends it. The owner's token sees every account's
  plays; another account's token only its own (assumed: PMS does not document it). Rows have the
  shape of the plex-api-spec example: ``historyKey``, ``key``, ``ratingKey``,
  ``librarySectionID``, ``title``, ``type``, ``viewedAt``, ``accountID``, ``deviceID``, and for
  episodes ``grandparentKey``/``parentKey`` (``/library/metadata/<ratingKey>``; PMS history rows
  carry no ``grandparentRatingKey``: take the key's last path segment), ``grandparentTitle``,
  ``index``, ``parentIndex``;
- ``GET /accounts`` — ``Account[]`` ``{id, key, name, …}`` (``id`` ↔ ``name``; account 0, the
  nameless system account, is listed too unless ``list_system_account`` is off);
- ``GET /library/sections`` — ``Directory[]`` ``{key, type, title, agent, scanner, uuid, …}``;
- ``GET /library/sections/{id}/all`` — the section's items (``type=4`` for a show section's
  episodes), with the account's ``viewCount``/``lastViewedAt``/``userRating`` and, for shows,
  ``leafCount``/``viewedLeafCount``; ``Guid[]`` with ``includeGuids=1``;
- ``GET /identity`` — ``machineIdentifier`` and ``version``.

Recorded state: ``requests`` (every request as ``(path, query)``), ``calls`` (a Counter of
answered metadata requests per ratingKey), ``history`` (the play rows), ``accounts``.
Knobs: ``fail_next(status, n, path=)``, ``down = True`` (every request 503), ``delay_s`` (each
answer held back that long), ``add_account()``, ``add_play()``, ``mark_watched()``
(``viewCount`` and ``lastViewedAt`` without a history row, as "mark as played" does),
``rate()``, ``add_section()``.

Usage::

    async with FakePlexServer(token="t") as plex:
        plex.add_movie("100", "Barry Lyndon", 1975, ["imdb://tt0072684", "tmdb://3175"])
        sam = plex.add_account(238960586, "sam")        # sam's token
        plex.add_play("100", account_id=238960586, viewed_at=1_700_000_000)
        PlexServer(session=s, url=plex.url, token="t")
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.sax.saxutils import quoteattr

from aiohttp import web

__all__ = ["FakePlexServer"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: ``type`` query values of PMS library filters (python-plexapi ``utils.SEARCHTYPES``).
_SEARCH_TYPES = {"1": "movie", "2": "show", "3": "season", "4": "episode"}
#: XML element name per item type (PMS: videos are ``Video``, containers ``Directory``).
_XML_TAGS = {"movie": "Video", "episode": "Video", "clip": "Video", "show": "Directory"}


@dataclass
class _ViewState:
    view_count: int = 0
    last_viewed_at: int | None = None
    user_rating: float | None = None
    last_rated_at: int | None = None


def _unix(moment: int | float | datetime) -> int:
    return int(moment.timestamp()) if isinstance(moment, datetime) else int(moment)


def _xml_attrs(item: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={quoteattr(str(v))}"
        for k, v in item.items()
        if not isinstance(v, list | dict) and v is not None
    )


class FakePlexServer:
    """A real aiohttp app on 127.0.0.1 with an in-memory library (see the module docstring)."""

    def __init__(
        self,
        *,
        token: str = "plex-token",
        owner: str = "owner",
        machine_identifier: str | None = None,
    ) -> None:
        self.token = token
        self.machine_identifier = (
            machine_identifier or hashlib.sha1(token.encode()).hexdigest()[:40]
        )
        self.items: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.calls: Counter[str] = Counter()
        self.history: list[dict[str, Any]] = []
        #: account id → ``{"id", "name", "token"}``; 1 is the owner (Plex webhook README).
        self.accounts: dict[int, dict[str, Any]] = {1: {"id": 1, "name": owner, "token": token}}
        self.sections: dict[str, dict[str, Any]] = {}
        self.list_system_account = True
        self.down = False
        self.delay_s = 0.0
        self._fail: list[tuple[int, str | None]] = []
        self._hex = itertools.count(0x5D7768313C3C2A001FBC0000)
        self._history_ids = itertools.count(1)
        self._state: dict[tuple[int, str], _ViewState] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.add_section("1", "Movies", "movie")
        self.add_section("2", "TV Shows", "show")

    # -- library --------------------------------------------------------------------------

    def _plex_guid(self, kind: str) -> str:
        return f"plex://{kind}/{next(self._hex):024x}"

    def add_section(self, key: str, title: str, kind: str) -> dict[str, Any]:
        """A library section (*kind* ``movie`` or ``show``) under *key* (a string, as PMS)."""
        agent, scanner = (
            ("tv.plex.agents.movie", "Plex Movie")
            if kind == "movie"
            else ("tv.plex.agents.series", "Plex TV Series")
        )
        section = {
            "allowSync": True,
            "key": key,
            "type": kind,
            "title": title,
            "agent": agent,
            "scanner": scanner,
            "language": "en-US",
            "uuid": hashlib.md5(f"{self.machine_identifier}/{key}".encode()).hexdigest(),
            "updatedAt": 1_700_000_000,
            "createdAt": 1_600_000_000,
            "scannedAt": 1_700_000_000,
            "content": True,
            "directory": True,
            "hidden": 0,
            "Location": [{"id": int(key) if key.isdigit() else 1, "path": f"/data/{title}"}],
        }
        self.sections[key] = section
        return section

    def add(self, rating_key: str, meta: dict[str, Any]) -> dict[str, Any]:
        """Store a raw ``Metadata`` entry (``ratingKey`` is filled in). Returns it."""
        entry = {"ratingKey": rating_key, "key": f"/library/metadata/{rating_key}", **meta}
        self.items[rating_key] = entry
        return entry

    def add_movie(
        self,
        rating_key: str,
        title: str,
        year: int,
        guids: list[str],
        *,
        guid: str | None = None,
        section_id: int = 1,
    ) -> dict[str, Any]:
        """A movie; *guids* like ``["imdb://tt0090728", "tmdb://6978"]`` (new agent)."""
        return self.add(
            rating_key,
            {
                "type": "movie",
                "title": title,
                "year": year,
                "guid": guid or self._plex_guid("movie"),
                "librarySectionID": section_id,
                "Guid": [{"id": g} for g in guids],
            },
        )

    def add_show(
        self,
        rating_key: str,
        title: str,
        year: int,
        guids: list[str],
        *,
        guid: str | None = None,
        section_id: int = 2,
    ) -> dict[str, Any]:
        """A show; *guids* are the show's ids."""
        return self.add(
            rating_key,
            {
                "type": "show",
                "title": title,
                "year": year,
                "guid": guid or self._plex_guid("show"),
                "librarySectionID": section_id,
                "Guid": [{"id": g} for g in guids],
            },
        )

    def add_episode(
        self,
        rating_key: str,
        show_rating_key: str,
        season: int,
        number: int,
        guids: list[str],
        *,
        title: str = "",
        year: int | None = None,
        guid: str | None = None,
    ) -> dict[str, Any]:
        """An episode of the show stored under *show_rating_key*; *guids* are its own ids."""
        show = self.items.get(show_rating_key, {})
        meta: dict[str, Any] = {
            "type": "episode",
            "title": title or f"Episode {number}",
            "guid": guid or self._plex_guid("episode"),
            "index": number,
            "parentIndex": season,
            "grandparentRatingKey": show_rating_key,
            "grandparentTitle": show.get("title", ""),
            "grandparentGuid": show.get("guid", ""),
            "Guid": [{"id": g} for g in guids],
        }
        if "librarySectionID" in show:
            meta["librarySectionID"] = show["librarySectionID"]
        if year is not None:
            meta["year"] = year
        return self.add(rating_key, meta)

    def add_clip(
        self, rating_key: str, title: str, guids: list[str], *, subtype: str = "trailer"
    ) -> dict[str, Any]:
        """An extra (trailer, clip); PMS types these ``clip``."""
        return self.add(
            rating_key,
            {
                "type": "clip",
                "subtype": subtype,
                "title": title,
                "guid": f"iva://api.internetvideoarchive.com/2.0/DataService/VideoAssets({rating_key})",
                "Guid": [{"id": g} for g in guids],
            },
        )

    # -- accounts and what they did ------------------------------------------------------------

    def add_account(self, account_id: int, name: str, token: str | None = None) -> str:
        """An account (a home or shared user) that can use this server; returns its token."""
        token = token or secrets.token_urlsafe(15)
        self.accounts[account_id] = {"id": account_id, "name": name, "token": token}
        return token

    def _view(self, account_id: int, rating_key: str) -> _ViewState:
        if rating_key not in self.items:
            raise KeyError(f"unknown ratingKey {rating_key}")
        return self._state.setdefault((account_id, rating_key), _ViewState())

    def add_play(
        self,
        rating_key: str,
        *,
        account_id: int = 1,
        viewed_at: int | float | datetime,
        device_id: int = 1,
    ) -> dict[str, Any]:
        """A finished play: a history row, and the account's ``viewCount``/``lastViewedAt``."""
        when = _unix(viewed_at)
        self.mark_watched(rating_key, account_id=account_id, viewed_at=when)
        item = self.items[rating_key]
        history_id = next(self._history_ids)
        row: dict[str, Any] = {
            "historyKey": f"/status/sessions/history/{history_id}",
            "key": item["key"],
            "ratingKey": rating_key,
            "librarySectionID": str(item.get("librarySectionID", "")),
            "title": item["title"],
            "type": item["type"],
            "thumb": f"{item['key']}/thumb/{when}",
            "viewedAt": when,
            "accountID": account_id,
            "deviceID": device_id,
        }
        if item["type"] == "episode":
            show_key = str(item.get("grandparentRatingKey", ""))
            row.update(
                parentKey=f"/library/metadata/{show_key}-s{item.get('parentIndex')}",
                grandparentKey=f"/library/metadata/{show_key}",
                grandparentTitle=item.get("grandparentTitle", ""),
                index=item.get("index"),
                parentIndex=item.get("parentIndex"),
            )
        elif "year" in item:
            row["year"] = item["year"]
        self.history.append(row)
        return row

    def mark_watched(
        self,
        rating_key: str,
        *,
        account_id: int = 1,
        viewed_at: int | float | datetime | None = None,
    ) -> None:
        """Mark an item watched by hand: ``viewCount`` + 1 and ``lastViewedAt``, no history row."""
        state = self._view(account_id, rating_key)
        when = _unix(viewed_at) if viewed_at is not None else int(datetime.now().timestamp())
        state.view_count += 1
        state.last_viewed_at = max(state.last_viewed_at or when, when)

    def rate(
        self,
        rating_key: str,
        rating: float | None,
        *,
        account_id: int = 1,
        rated_at: int | float | datetime | None = None,
    ) -> None:
        """The account's ``userRating`` (0–10, Plex's half stars ×2; None clears it)."""
        state = self._view(account_id, rating_key)
        state.user_rating = None if rating is None else float(rating)
        when = _unix(rated_at) if rated_at is not None else int(datetime.now().timestamp())
        state.last_rated_at = None if rating is None else when

    # -- knobs ------------------------------------------------------------------------------

    def fail_next(self, status: int, n: int = 1, *, path: str | None = None) -> None:
        """Answer the next *n* requests (whose path starts with *path*, if given) with
        *status*."""
        self._fail.extend([(status, path)] * n)

    # -- server plumbing ----------------------------------------------------------------------

    def _account_of(self, request: web.Request) -> int | None:
        token = request.headers.get("X-Plex-Token") or request.query.get("X-Plex-Token")
        if token and token == self.token:
            return 1
        for account in self.accounts.values():
            if token and account["token"] == token:
                return int(account["id"])
        return None

    @staticmethod
    def _paging(request: web.Request) -> tuple[int, int | None, bool]:
        """``X-Plex-Container-Start``/``-Size`` from the headers or the query."""

        def value(name: str) -> str | None:
            return request.headers.get(name) or request.query.get(name)

        start, size = value("X-Plex-Container-Start"), value("X-Plex-Container-Size")
        try:
            first = max(0, int(start)) if start is not None else 0
            count = max(0, int(size)) if size is not None else None
        except ValueError:
            raise web.HTTPBadRequest(text="bad container paging") from None
        return first, count, start is not None or size is not None

    def _container(
        self,
        request: web.Request,
        items: list[dict[str, Any]],
        *,
        key: str = "Metadata",
        paged: bool = True,
        **attrs: Any,
    ) -> web.Response:
        total = len(items)
        asked = False
        if paged:
            first, count, asked = self._paging(request)
            items = items[first : None if count is None else first + count]
        container: dict[str, Any] = {"size": len(items), **attrs}
        if asked:  # PMS reports the whole count and the offset on paged requests
            container.update(totalSize=total, offset=first)
        container[key] = items
        if "application/json" in request.headers.get("Accept", ""):
            return web.json_response({"MediaContainer": container})
        children = "".join(f"<{self._xml_tag(key, item)} {_xml_attrs(item)}/>" for item in items)
        head = _xml_attrs({k: v for k, v in container.items() if k != key})
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<MediaContainer {head}>{children}</MediaContainer>"
        )
        return web.Response(text=xml, content_type="text/xml")

    @staticmethod
    def _xml_tag(key: str, item: dict[str, Any]) -> str:
        if key != "Metadata":
            return key
        return _XML_TAGS.get(str(item.get("type")), "Video")

    def _with_state(
        self, entry: dict[str, Any], account_id: int, include_guids: bool
    ) -> dict[str, Any]:
        """A copy of *entry* with *account_id*'s view state (absent when never played)."""
        meta = dict(entry)
        if not include_guids:
            meta.pop("Guid", None)
        state = self._state.get((account_id, str(entry["ratingKey"])))
        if state is not None:
            if state.view_count:
                meta.update(viewCount=state.view_count, lastViewedAt=state.last_viewed_at)
            if state.user_rating is not None:
                meta.update(userRating=state.user_rating, lastRatedAt=state.last_rated_at)
        if entry.get("type") == "show":
            episodes = self._episodes_of(str(entry["ratingKey"]))
            viewed = sum(
                1
                for ep in episodes
                if self._state.get((account_id, str(ep["ratingKey"])), _ViewState()).view_count
            )
            meta.update(leafCount=len(episodes), viewedLeafCount=viewed)
            meta["childCount"] = len({ep.get("parentIndex") for ep in episodes})
        return meta

    def _episodes_of(self, show_key: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.items.values()
            if e.get("type") == "episode" and str(e.get("grandparentRatingKey")) == show_key
        ]

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.query)))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.down:
            return web.Response(status=503, text="Service Unavailable")
        if request.path != "/identity" and self._account_of(request) is None:
            return web.Response(
                status=401, text="<html><h1>401 Unauthorized</h1></html>", content_type="text/html"
            )
        for index, (status, path) in enumerate(self._fail):
            if path is None or request.path.startswith(path):
                del self._fail[index]
                return web.Response(status=status, text="failure")
        return await handler(request)

    # -- endpoints ------------------------------------------------------------------------------

    async def _metadata(self, request: web.Request) -> web.StreamResponse:
        rk = request.match_info["rk"]
        self.calls[rk] += 1
        entry = self.items.get(rk)
        if entry is None:
            return web.Response(status=404, text="Not Found")
        account = self._account_of(request) or 1
        meta = self._with_state(entry, account, request.query.get("includeGuids") == "1")
        return self._container(request, [meta], paged=False)

    async def _history(self, request: web.Request) -> web.StreamResponse:
        account = self._account_of(request) or 1
        rows: Iterable[dict[str, Any]] = (
            self.history if account == 1 else [r for r in self.history if r["accountID"] == account]
        )
        query = request.query
        try:
            if "accountID" in query:
                rows = [r for r in rows if r["accountID"] == int(query["accountID"])]
            if "librarySectionID" in query:
                rows = [r for r in rows if r["librarySectionID"] == query["librarySectionID"]]
            if "metadataItemID" in query:
                rows = [r for r in rows if r["ratingKey"] == query["metadataItemID"]]
            bounds: dict[str, Callable[[int, int], bool]] = {
                "viewedAt>": lambda v, b: v >= b,
                "viewedAt>>": lambda v, b: v > b,
                "viewedAt<": lambda v, b: v <= b,
                "viewedAt<<": lambda v, b: v < b,
            }
            for name, keep in bounds.items():
                if name in query:
                    bound = int(query[name])
                    rows = [r for r in rows if keep(r["viewedAt"], bound)]
        except ValueError:
            return web.Response(status=400, text="Bad Request")
        ordered = list(rows)
        sort = query.get("sort", "")
        if sort.startswith("viewedAt"):
            ordered.sort(key=lambda r: (r["viewedAt"], r["historyKey"]))
            if sort.endswith(":desc"):
                ordered.reverse()
        return self._container(request, ordered)

    async def _accounts(self, request: web.Request) -> web.StreamResponse:
        listed = sorted(self.accounts.values(), key=lambda a: int(a["id"]))
        if self.list_system_account:
            listed.insert(0, {"id": 0, "name": ""})
        out = [
            {
                "id": a["id"],
                "key": f"/accounts/{a['id']}",
                "name": a["name"],
                "defaultAudioLanguage": "en",
                "autoSelectAudio": True,
                "defaultSubtitleLanguage": "en",
                "subtitleMode": 0,
                "thumb": "",
            }
            for a in listed
        ]
        return self._container(
            request, out, key="Account", paged=False, identifier="com.plexapp.system.accounts"
        )

    async def _sections(self, request: web.Request) -> web.StreamResponse:
        return self._container(
            request,
            list(self.sections.values()),
            key="Directory",
            paged=False,
            allowSync=False,
            title1="Plex Library",
        )

    async def _section_all(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        section = self.sections.get(key)
        if section is None:
            return web.Response(status=404, text="Not Found")
        wanted = _SEARCH_TYPES.get(request.query.get("type", ""), section["type"])
        account = self._account_of(request) or 1
        guids = request.query.get("includeGuids") == "1"
        items = [
            self._with_state(e, account, guids)
            for e in self.items.values()
            if str(e.get("librarySectionID")) == key and e.get("type") == wanted
        ]
        return self._container(
            request,
            items,
            identifier="com.plexapp.plugins.library",
            librarySectionID=int(key) if key.isdigit() else key,
            librarySectionTitle=section["title"],
            librarySectionUUID=section["uuid"],
            title1=section["title"],
            viewGroup=wanted,
        )

    async def _identity(self, request: web.Request) -> web.StreamResponse:
        return self._container(
            request,
            [],
            key="Metadata",
            paged=False,
            claimed=True,
            machineIdentifier=self.machine_identifier,
            version="1.41.0.8992-8463ad060",
        )

    async def __aenter__(self) -> FakePlexServer:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/library/metadata/{rk}", self._metadata)
        app.router.add_get("/status/sessions/history/all", self._history)
        app.router.add_get("/accounts", self._accounts)
        app.router.add_get("/library/sections", self._sections)
        app.router.add_get("/library/sections/{key}/all", self._section_all)
        app.router.add_get("/identity", self._identity)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
