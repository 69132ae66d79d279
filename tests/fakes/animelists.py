"""A fake raw.githubusercontent.com serving ``anime-list-master.xml``, and a list builder.

:class:`FakeAnimeLists` is a real aiohttp app on 127.0.0.1. It answers ``GET`` of
:attr:`FakeAnimeLists.PATH` with the current body and validators (a weak ``ETag`` as GitHub's
raw host sends, and ``Last-Modified``), and 304 when the request's ``If-None-Match`` matches
(weak comparison, lists and ``*`` understood) or, without ``If-None-Match``, when
``If-Modified-Since`` is not older than the body (RFC 9110 §13.1.1, §13.1.3).

Knobs: :meth:`publish` (a new body → new validators), ``fail_status`` (e.g. 503 for every
request until reset), ``honour_validators`` (False: always a full 200, as a server without
conditional GET support), ``send_validators`` (False: no ETag / Last-Modified at all),
``delay_s``. Recorded: ``requests`` (each request's headers), ``full_responses``,
``not_modified``, ``failures``; ``request_seen`` (an event) is set by every request.

:func:`anime_list_xml` writes rows in the real schema (Anime-Lists ``README.md``, "Format";
``xmllint --format`` layout, two-space indent); :class:`AnimeRow` / :class:`MappingSpec` are one
``<anime>`` and one ``<mapping>``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

__all__ = ["AnimeRow", "FakeAnimeLists", "MappingSpec", "anime_list_xml"]

_FIRST_PUBLISHED = datetime(2026, 8, 16, 1, 0, tzinfo=UTC)  # a Sunday 01:00 UTC update


@dataclass(frozen=True)
class MappingSpec:
    """One ``<mapping>``: ``pairs`` is the text (``";1-1;2-0;"``); ``None`` leaves an
    attribute out."""

    anidbseason: int
    tvdbseason: int | None = None
    tmdbseason: int | None = None
    start: int | None = None
    end: int | None = None
    offset: int | None = None
    pairs: str = ""

    def xml(self) -> str:
        attrs = "".join(
            f" {name}={quoteattr(str(value))}"
            for name in ("anidbseason", "tvdbseason", "tmdbseason", "start", "end", "offset")
            if (value := getattr(self, name)) is not None
        )
        if not self.pairs:
            return f"<mapping{attrs}/>"
        return f"<mapping{attrs}>{escape(self.pairs)}</mapping>"


@dataclass(frozen=True)
class AnimeRow:
    """One ``<anime>`` row; attribute values are written as given (``""`` = empty)."""

    anidbid: int | str
    tvdbid: str = ""
    defaulttvdbseason: str = ""
    episodeoffset: str = ""
    tmdbtv: str = ""
    tmdbseason: str = ""
    tmdboffset: str = ""
    tmdbid: str = ""
    imdbid: str = ""
    name: str = ""
    mappings: Sequence[MappingSpec] = ()
    before: str = ""
    studio: str = ""

    def xml(self) -> str:
        attrs = "".join(
            f" {name}={quoteattr(str(getattr(self, name)))}"
            for name in (
                "anidbid",
                "tvdbid",
                "defaulttvdbseason",
                "episodeoffset",
                "tmdbtv",
                "tmdbseason",
                "tmdboffset",
                "tmdbid",
                "imdbid",
            )
        )
        lines = [f"  <anime{attrs}>", f"    <name>{escape(self.name or str(self.anidbid))}</name>"]
        if self.mappings:
            lines.append("    <mapping-list>")
            lines.extend(f"      {m.xml()}" for m in self.mappings)
            lines.append("    </mapping-list>")
        if self.before:
            lines.append(f"    <before>{escape(self.before)}</before>")
        if self.studio:
            lines.append("    <supplemental-info>")
            lines.append(f"      <studio>{escape(self.studio)}</studio>")
            lines.append("    </supplemental-info>")
        lines.append("  </anime>")
        return "\n".join(lines)


def anime_list_xml(rows: Iterable[AnimeRow | str]) -> bytes:
    """A whole ``anime-list-master.xml``; a ``str`` row is inserted verbatim (a real row)."""
    parts = ['<?xml version="1.0" encoding="utf-8"?>', "<anime-list>"]
    parts.extend(row if isinstance(row, str) else row.xml() for row in rows)
    parts.append("</anime-list>")
    return ("\n".join(parts) + "\n").encode()


def _etag_matches(header: str, etag: str) -> bool:
    """``If-None-Match`` weak comparison (RFC 9110 §13.1.2, §8.8.3.2)."""
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(","))


@dataclass
class _Version:
    body: bytes
    etag: str
    last_modified: datetime


class FakeAnimeLists:
    """The list host. ``url`` is set by :meth:`start` (or ``async with``)."""

    PATH = "/Anime-Lists/anime-lists/master/anime-list-master.xml"

    def __init__(self, body: bytes) -> None:
        self._versions: list[_Version] = []
        self.publish(body)
        self.fail_status: int | None = None
        self.honour_validators = True
        self.send_validators = True
        self.delay_s = 0.0
        self.requests: list[dict[str, str]] = []
        self.full_responses = 0
        self.not_modified = 0
        self.failures = 0
        self.request_seen = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def current(self) -> _Version:
        return self._versions[-1]

    def publish(self, body: bytes) -> str:
        """Serve *body* from now on, one day newer than the last one; returns its ETag."""
        digest = hashlib.sha1(body).hexdigest()
        modified = _FIRST_PUBLISHED + timedelta(days=len(self._versions))
        self._versions.append(_Version(body, f'W/"{digest}"', modified))
        return self._versions[-1].etag

    @property
    def requests_count(self) -> int:
        return len(self.requests)

    async def start(self) -> str:
        """Serve on 127.0.0.1 at a random port; returns (and sets) :attr:`url` (the list's)."""
        app = web.Application()
        app.router.add_get(self.PATH, self._serve)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=0.5)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{self.PATH}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAnimeLists:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _not_modified(self, request: web.Request, version: _Version) -> bool:
        if not self.honour_validators or not self.send_validators:
            return False
        inm = request.headers.get("If-None-Match")
        if inm is not None:
            return _etag_matches(inm, version.etag)
        ims = request.headers.get("If-Modified-Since")
        if ims is None:
            return False
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        return version.last_modified <= since

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        self.request_seen.set()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_status is not None:
            self.failures += 1
            return web.Response(status=self.fail_status, text="unavailable\n")
        version = self.current
        headers: dict[str, str] = {}
        if self.send_validators:
            headers["ETag"] = version.etag
            headers["Last-Modified"] = format_datetime(version.last_modified, usegmt=True)
        if self._not_modified(request, version):
            self.not_modified += 1
            return web.Response(status=304, headers=headers)
        self.full_responses += 1
        return web.Response(
            body=version.body, headers=headers, content_type="text/plain", charset="utf-8"
        )
