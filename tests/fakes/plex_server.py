"""A fake Plex Media Server serving ``GET /library/metadata/{ratingKey}``.

As strict as PMS where it matters to the resolver:

- ``X-Plex-Token`` (header, or query parameter as PMS also accepts) must match, else 401;
- JSON only with ``Accept: application/json``; otherwise a minimal XML ``MediaContainer``;
- ``Guid[]`` only with ``includeGuids=1``;
- 404 for an unknown ratingKey.

Recorded state: ``requests`` (every request as ``(path, query)``), ``calls`` (a Counter of
answered metadata requests per ratingKey). Knobs: ``fail_next(status, n)``, ``down = True``
(every request 503), ``delay_s`` (each answer held back that long).

Usage::

    async with FakePlexServer(token="t") as plex:
        plex.add_movie("100", "Barry Lyndon", 1975, ["imdb://tt0072684", "tmdb://3175"])
        PlexServer(session=s, url=plex.url, token="t")
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any
from xml.sax.saxutils import quoteattr

from aiohttp import web

__all__ = ["FakePlexServer"]


class FakePlexServer:
    """A real aiohttp app on 127.0.0.1 with an in-memory library."""

    def __init__(self, *, token: str = "plex-token") -> None:
        self.token = token
        self.items: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.calls: Counter[str] = Counter()
        self.down = False
        self.delay_s = 0.0
        self._fail: list[int] = []
        self._hex = itertools.count(0x5D7768313C3C2A001FBC0000)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- library --------------------------------------------------------------------------

    def _plex_guid(self, kind: str) -> str:
        return f"plex://{kind}/{next(self._hex):024x}"

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
        self, rating_key: str, title: str, year: int, guids: list[str], *, guid: str | None = None
    ) -> dict[str, Any]:
        """A show; *guids* are the show's ids."""
        return self.add(
            rating_key,
            {
                "type": "show",
                "title": title,
                "year": year,
                "guid": guid or self._plex_guid("show"),
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

    # -- knobs ------------------------------------------------------------------------------

    def fail_next(self, status: int, n: int = 1) -> None:
        """Answer the next *n* metadata requests with *status*."""
        self._fail.extend([status] * n)

    # -- server -----------------------------------------------------------------------------

    async def _metadata(self, request: web.Request) -> web.StreamResponse:
        rk = request.match_info["rk"]
        self.requests.append((request.path, dict(request.query)))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.down:
            return web.Response(status=503, text="Service Unavailable")
        token = request.headers.get("X-Plex-Token") or request.query.get("X-Plex-Token")
        if token != self.token:
            return web.Response(
                status=401, text="<html><h1>401 Unauthorized</h1></html>", content_type="text/html"
            )
        if self._fail:
            return web.Response(status=self._fail.pop(0), text="failure")
        self.calls[rk] += 1
        entry = self.items.get(rk)
        if entry is None:
            return web.Response(status=404, text="Not Found")
        meta = dict(entry)
        if request.query.get("includeGuids") != "1":
            meta.pop("Guid", None)
        if "application/json" not in request.headers.get("Accept", ""):
            attrs = " ".join(
                f"{k}={quoteattr(str(v))}" for k, v in meta.items() if not isinstance(v, list)
            )
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f'<MediaContainer size="1"><Video {attrs}/></MediaContainer>'
            )
            return web.Response(text=xml, content_type="text/xml")
        return web.json_response({"MediaContainer": {"size": 1, "Metadata": [meta]}})

    async def __aenter__(self) -> FakePlexServer:
        app = web.Application()
        app.router.add_get("/library/metadata/{rk}", self._metadata)
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
