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

:data:`REAL_ROWS` are real rows of ``anime-list-master.xml`` (Anime-Lists @ 20ca4d8, the
reference's worked examples and a few more edge cases), verbatim; :data:`CONSTRUCTED_ROWS`
are made-up rows in the same schema, each saying what it stands for.

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

__all__ = [
    "CONSTRUCTED_ROWS",
    "REAL_ROWS",
    "AnimeRow",
    "FakeAnimeLists",
    "MappingSpec",
    "anime_list_xml",
]

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


# Real rows, verbatim (Anime-Lists @ 20ca4d8).
REAL_ROWS = [
    # WE1: plain season.
    """  <anime anidbid="15207" tvdbid="354198" defaulttvdbseason="2" episodeoffset="" tmdbtv="83121" tmdbseason="2" tmdboffset="" tmdbid="" imdbid="">
    <name>Kaguya-sama wa Kokurasetai? Tensai-tachi no Ren'ai Zunousen</name>
  </anime>""",  # noqa: E501
    # WE2: episodeoffset.
    """  <anime anidbid="14444" tvdbid="267440" defaulttvdbseason="3" episodeoffset="12" tmdbtv="1429" tmdbseason="3" tmdboffset="12" tmdbid="" imdbid="">
    <name>Shingeki no Kyojin Season 3 (2019)</name>
  </anime>""",  # noqa: E501
    # WE3: specials through individual pairs, -0 pairs.
    """  <anime anidbid="9541" tvdbid="267440" defaulttvdbseason="1" episodeoffset="" tmdbtv="1429" tmdbseason="1" tmdboffset="" tmdbid="" imdbid="">
    <name>Shingeki no Kyojin</name>
    <mapping-list>
      <mapping anidbseason="0" tvdbseason="0">;1-1;2-2;3-3;4-4;5-5;6-6;7-8;8-9;9-10;10-11;11-0;12-0;13-0;14-0;15-0;</mapping>
    </mapping-list>
  </anime>""",  # noqa: E501
    # WE4: specials through a range, and a -0 pair.
    """  <anime anidbid="23" tvdbid="76885" defaulttvdbseason="1" episodeoffset="" tmdbtv="30991" tmdbseason="1" tmdboffset="" tmdbid="" imdbid="">
    <name>Cowboy Bebop</name>
    <mapping-list>
      <mapping anidbseason="0" tvdbseason="0" start="1" end="3" offset="1">;4-0;</mapping>
    </mapping-list>
    <supplemental-info>
      <studio>Sunrise</studio>
    </supplemental-info>
  </anime>""",  # noqa: E501
    # WE5: absolute numbering with ranges.
    """  <anime anidbid="8550" tvdbid="252322" defaulttvdbseason="a" episodeoffset="" tmdbtv="46298" tmdbseason="a" tmdboffset="" tmdbid="" imdbid="">
    <name>Hunter x Hunter (2011)</name>
    <mapping-list>
      <mapping anidbseason="1" tvdbseason="1" start="1" end="58"/>
      <mapping anidbseason="1" tvdbseason="2" start="59" end="136" offset="-58"/>
      <mapping anidbseason="1" tvdbseason="3" start="137" end="148" offset="-136"/>
    </mapping-list>
  </anime>""",  # noqa: E501
    # WE6: a film.
    """  <anime anidbid="11829" tvdbid="movie" defaulttvdbseason="" episodeoffset="" tmdbtv="" tmdbseason="" tmdboffset="" tmdbid="372058" imdbid="tt5311514">
    <name>Kimi no Na wa.</name>
  </anime>""",  # noqa: E501
    # WE6: a film with a comma list of IMDb ids (placed in a TVDB series' specials as well).
    """  <anime anidbid="8311" tvdbid="245451" defaulttvdbseason="0" episodeoffset="3" tmdbtv="45348" tmdbseason="0" tmdboffset="3" tmdbid="" imdbid="tt4232272,tt6302292">
    <name>Gekijou Remix Ban Appleseed XIII</name>
  </anime>""",  # noqa: E501
    # WE7: TVDB and TMDB disagree.
    """  <anime anidbid="15593" tvdbid="305089" defaulttvdbseason="2" episodeoffset="13" tmdbtv="65942" tmdbseason="1" tmdboffset="38" tmdbid="" imdbid="">
    <name>Re:Zero kara Hajimeru Isekai Seikatsu (2021)</name>
    <mapping-list>
      <mapping anidbseason="0" tvdbseason="0" start="1" end="12" offset="42"/>
    </mapping-list>
  </anime>""",  # noqa: E501
    # WE8: one AniDB episode = two TVDB episodes; "other" episodes (401+).
    """  <anime anidbid="19402" tvdbid="354198" defaulttvdbseason="0" episodeoffset="14" tmdbtv="83121" tmdbseason="0" tmdboffset="4" tmdbid="" imdbid="">
    <name>Kaguya-sama wa Kokurasetai: Otona e no Kaidan</name>
    <mapping-list>
      <mapping anidbseason="0" tvdbseason="0">;1-15+16;401-15;402-16;</mapping>
    </mapping-list>
  </anime>""",  # noqa: E501
    # A -0 pair beside a real target in another TVDB season ("mapped to 0 on a conflict").
    """  <anime anidbid="25" tvdbid="72462" defaulttvdbseason="1" episodeoffset="" tmdbtv="9519" tmdbseason="1" tmdboffset="" tmdbid="" imdbid="">
    <name>Heppoko Jikken Animation Excel Saga</name>
    <mapping-list>
      <mapping anidbseason="0" tvdbseason="0">;1-0;2-0;</mapping>
      <mapping anidbseason="0" tvdbseason="1">;1-26;</mapping>
    </mapping-list>
    <before>;1-26;</before>
  </anime>""",  # noqa: E501
    # One AniDB episode written as two pairs into the same TVDB season.
    """  <anime anidbid="10860" tvdbid="73501" defaulttvdbseason="0" episodeoffset="" tmdbtv="42694" tmdbseason="0" tmdboffset="" tmdbid="" imdbid="">
    <name>Di Gi Charat Summer Special 2000</name>
    <mapping-list>
      <mapping anidbseason="1" tvdbseason="0">;1-1;1-2;2-3;2-4;</mapping>
    </mapping-list>
  </anime>""",  # noqa: E501
    # A mapping with an offset but no start/end, plus pairs.
    """  <anime anidbid="3427" tvdbid="79880" defaulttvdbseason="1" episodeoffset="" tmdbtv="46412" tmdbseason="1" tmdboffset="" tmdbid="" imdbid="">
    <name>Utawarerumono</name>
    <mapping-list>
      <mapping anidbseason="0" tvdbseason="0" offset="5">;1-30;6-34;7-35;8-31;</mapping>
    </mapping-list>
  </anime>""",  # noqa: E501
    # Absolute numbering; the last range has no end.
    """  <anime anidbid="14086" tvdbid="347734" defaulttvdbseason="a" episodeoffset="" tmdbtv="80020" tmdbseason="a" tmdboffset="" tmdbid="" imdbid="">
    <name>Super Dragon Ball Heroes</name>
    <mapping-list>
      <mapping anidbseason="1" tvdbseason="2" start="7" end="19" offset="-6"/>
      <mapping anidbseason="1" tvdbseason="3" start="20" end="30" offset="-19"/>
      <mapping anidbseason="1" tvdbseason="4" start="31" end="38" offset="-30"/>
      <mapping anidbseason="1" tvdbseason="5" start="39" end="48" offset="-38"/>
      <mapping anidbseason="1" tvdbseason="6" start="49" offset="-48"/>
    </mapping-list>
  </anime>""",  # noqa: E501
    # Absolute numbering with an episodeoffset.
    """  <anime anidbid="9980" tvdbid="114801" defaulttvdbseason="a" episodeoffset="175" tmdbtv="46261" tmdbseason="a" tmdboffset="" tmdbid="" imdbid="">
    <name>Fairy Tail (2014)</name>
    <mapping-list>
      <mapping anidbseason="1" tvdbseason="5" start="1" end="51" offset="0"/>
      <mapping anidbseason="1" tvdbseason="6" start="52" end="90" offset="-51"/>
      <mapping anidbseason="1" tvdbseason="7" start="91" end="102" offset="-90"/>
    </mapping-list>
  </anime>""",  # noqa: E501
]

CONSTRUCTED_ROWS = [
    # WE9 (constructed in the reference): no TVDB, TMDB or IMDb id.
    AnimeRow(99999, name="Constructed: no ids"),
    AnimeRow(5501, tvdbid="hentai", defaulttvdbseason="1", name="Constructed: hentai"),
    # Constructed: One Piece's shape (anidb 69): ranges for TMDB only, so none for TVDB.
    AnimeRow(
        69,
        tvdbid="81797",
        defaulttvdbseason="a",
        tmdbtv="37854",
        tmdbseason="a",
        name="One Piece (constructed excerpt)",
        mappings=(
            MappingSpec(0, tvdbseason=0, pairs=";1-27;6-0;"),
            MappingSpec(1, tmdbseason=2, start=62, end=77, offset=-61),
        ),
    ),
    # Constructed: a pair beats the range that covers the same episode.
    AnimeRow(
        70001,
        tvdbid="70001",
        defaulttvdbseason="1",
        mappings=(MappingSpec(1, tvdbseason=2, start=1, end=12, offset=0, pairs=";5-0;6-7+8;"),),
    ),
    # Constructed: a negative episodeoffset larger than the episode.
    AnimeRow(70002, tvdbid="70002", defaulttvdbseason="2", episodeoffset="-12"),
    # Constructed: a film without film ids that TVDB lists among a series' specials.
    AnimeRow(70003, tvdbid="267440", defaulttvdbseason="0", episodeoffset="3", name="OVA"),
    # Constructed: comma lists of TMDB and IMDb ids, with an invalid entry.
    AnimeRow(70004, tvdbid="movie", tmdbid="12345,67890", imdbid="bogus,tt0000002"),
]
