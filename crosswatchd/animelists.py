"""AniDB → TVDB/TMDB/IMDb through the Anime-Lists mapping (``anime-list-master.xml``).

Plex libraries matched by the HAMA agent name AniDB ids and AniDB numbering
(``com.plexapp.agents.hama://anidb-9541/0/7?lang=en``); Trakt has no AniDB ids and numbers
anime by TVDB seasons. HAMA itself maps AniDB to TVDB through the community Anime-Lists file;
this module reads the same file into a compact lookup. Fetching and storing the file is
:mod:`crosswatchd.animelists_store`'s job.

Every rule below cites ``shared/reference/anime/README.md`` ("ref §…"): §1 HAMA guids,
§2 "Schema" (the attribute table), §2 "How HAMA applies a row", §2 "Worked examples" (WE1…WE9),
§3 SIMKL and anime.

Shapes::

    parse_anime_list(xml bytes) -> AnimeMapping            raises AnimeListError (a ValueError)
    AnimeMapping.episode("9541", 0, 7) -> MappedEpisode | Unmapped
    AnimeMapping.film("11829")         -> MappedFilm | MappedEpisode | Unmapped

    MappedEpisode(anidb_id="9541", show_ids=Ids(tvdb="267440"), season=0, episodes=(8,),
                  numbering=Numbering.SEASON, rule=MappingRule.PAIR)
    MappedEpisode(anidb_id="8550", show_ids=Ids(tvdb="252322"), season=None, episodes=(200,),
                  numbering=Numbering.ABSOLUTE, rule=MappingRule.ABSOLUTE)
    MappedFilm(anidb_id="11829", ids=Ids(imdb="tt5311514", tmdb="372058"), ...)
    Unmapped(anidb_id="17290", kind=UnmappedKind.NOT_IN_LIST,
             reason="AniDB 17290 is not in the Anime-Lists mapping")

**Absolute numbering.** A row with ``defaulttvdbseason="a"`` says TVDB's *absolute* episode
numbering "is defined and matches AniDB" (ref §2 Schema); HAMA then reads AniDB episode N as
the TVDB episode whose ``absoluteNumber`` is N (Hama.bundle ``TheTVDBv2.py``:
``if defaulttvdbseason_a: season, episode = '1', str(abs_number)``), with the row's
``mapping-list`` ranges giving real seasons where they exist (ref §2 "How HAMA applies a row",
WE5). HAMA's "season 1" is its own Plex presentation, not a TVDB season, so an episode no
range covers is returned as ``Numbering.ABSOLUTE``: ``season=None`` and ``episodes`` holding
the TVDB absolute number (AniDB number + ``episodeoffset``). Trakt and SIMKL take no absolute
number in a history body; the caller turns it into a season and episode through the show's
episode list (Trakt ``/shows/{id}/seasons?extended=episodes`` gives ``number_abs``) or keeps
the play pending until it can.

**Show ids.** ``show_ids`` carries the TVDB series id only. The row's ``tmdbid``/``imdbid`` name
standalone entries, never the series ("Only used for standalone entries like movies … Do NOT
use tmdbid for series", ref §2 Schema), and ``tmdbtv`` numbers episodes differently (WE7:
"Use the numbering of the id you send"); SIMKL reads a show as either the AniDB form or the
TVDB form, never both (ref §3), so the AniDB id is not in ``show_ids`` either.
"""

from __future__ import annotations

import enum
import io
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple, TypeAlias

from crosswatchd.errors import CrosswatchError
from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.sources.guids import anidb_guid, normalize_id

__all__ = [
    "DEFAULT_MAPPING_URL",
    "REASON_MARK",
    "AnimeListError",
    "AnimeMapping",
    "MappedEpisode",
    "MappedFilm",
    "MappingRule",
    "Numbering",
    "Unmapped",
    "UnmappedKind",
    "mapping_note",
    "parse_anime_list",
]

#: Where HAMA and the other users fetch the list (ref §2, ``SCUDLEE_MASTER``).
DEFAULT_MAPPING_URL: Final = (
    "https://raw.githubusercontent.com/Anime-Lists/anime-lists/master/anime-list-master.xml"
)

#: Every reason a mapping gives (an :class:`Unmapped` reason, :func:`mapping_note`) names the
#: list with these words, so the plays it parked can be found again when a new list arrives.
REASON_MARK: Final = "Anime-Lists"

#: ``defaulttvdbseason="a"`` in :attr:`_Row.season`.
_ABSOLUTE: Final = -1
#: Largest id / season / episode / offset magnitude read from the file (AniDB ids are ~20,000).
_MAX_NUMBER: Final = 99_999_999


class AnimeListError(CrosswatchError, ValueError):
    """The bytes are not an Anime-Lists file: not well-formed XML, a DOCTYPE (entities are
    refused), a root other than ``<anime-list>``, or no ``<anime>`` row at all."""


class Numbering(enum.StrEnum):
    """How :attr:`MappedEpisode.episodes` count.

    ``SEASON``: TVDB aired order, ``season`` + episode numbers in it (specials are season 0).
    ``ABSOLUTE``: TVDB absolute numbers; ``season`` is ``None`` (see the module docstring).
    """

    SEASON = "season"
    ABSOLUTE = "absolute"


class MappingRule(enum.StrEnum):
    """Which rule of the row decided a :class:`MappedEpisode` (for logs and tests)."""

    PAIR = "pair"  # an individual ``;a-b;`` pair of the mapping-list
    RANGE = "range"  # a mapping's start/end/offset
    DEFAULT = "default"  # defaulttvdbseason + episodeoffset
    ABSOLUTE = "absolute"  # defaulttvdbseason="a" with no range covering the episode
    TVDB_NUMBERED = "tvdb-numbered"  # the guid already uses TVDB numbering
    FILM_EPISODE = "film-episode"  # a film row without film ids, placed in a TVDB series


class UnmappedKind(enum.StrEnum):
    """Why a lookup gave no ids. Every kind is definite for the list that answered: a newer
    list may answer differently (the store's ``generation`` says when one is loaded)."""

    NOT_IN_LIST = "not-in-list"  # no <anime anidbid="N"> row
    NO_IDS = "no-ids"  # the row has no TVDB series (episode) / no TMDB, IMDb or TVDB id (film)
    NO_EPISODE = "no-episode"  # the row maps this episode to nothing
    OFF = "off"  # the mapping is switched off (``mapping_url = ""``); set by the store


@dataclass(frozen=True, slots=True)
class MappedEpisode:
    """An AniDB episode as the TVDB episode(s) it is.

    ``show_ids`` holds the TVDB series id (module docstring, "Show ids"). ``season`` is the TVDB
    season (0 = specials), ``None`` for ``Numbering.ABSOLUTE``. ``episodes`` holds one TVDB
    episode number, or several when one AniDB episode is several TVDB episodes (``;1-15+16;``,
    ref §2 Schema, WE8); all are ≥ 1.
    """

    anidb_id: str
    show_ids: Ids
    season: int | None
    episodes: tuple[int, ...]
    numbering: Numbering
    rule: MappingRule

    @property
    def episode(self) -> int:
        """The first (usually only) TVDB episode number."""
        return self.episodes[0]


@dataclass(frozen=True, slots=True)
class MappedFilm:
    """An AniDB film as its TMDB / IMDb film.

    ``ids`` has the first id of each of the row's comma lists (ref §2 Schema ``tmdbid``/``imdbid``;
    WE6 "take the first or try each"); ``tmdb_ids``/``imdb_ids`` list all of them in file order.
    """

    anidb_id: str
    ids: Ids
    tmdb_ids: tuple[str, ...]
    imdb_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unmapped:
    """A definite "no" for this list: ``reason`` is one line naming AniDB and the id, e.g.
    ``AniDB 17290 is not in the Anime-Lists mapping``."""

    anidb_id: str
    kind: UnmappedKind
    reason: str


class _Range(NamedTuple):
    """One ``<mapping start= end= offset=>``: AniDB ``start..end`` → TVDB ``ep + offset``.
    ``end`` is ``None`` when open (ref §2 Schema: start/end are "the first/last AniDB.net
    episode the offset applies to"; a missing one sets no bound)."""

    anidb_season: int
    start: int
    end: int | None
    offset: int
    tvdb_season: int


#: Pair key: AniDB regular episode ``e`` is ``e``, special ``e`` is ``-e``.
#: Pair value: (TVDB season, TVDB episodes); ``()`` = maps to nothing (a ``-0`` pair).
_Pairs: TypeAlias = Mapping[int, tuple[int, tuple[int, ...]]]


class _Row(NamedTuple):
    """What the lookup keeps of one ``<anime>`` row (everything else is dropped)."""

    tvdb: str | None  # the series id, or None when ``tvdbid`` is not a number
    tvdb_raw: str  # ``tvdbid`` as written when it is not a number ("movie", "", …), for reasons
    season: int | None  # defaulttvdbseason: a number, _ABSOLUTE ("a"), or None (absent/bad)
    offset: int  # episodeoffset ("" = 0)
    tmdb: tuple[str, ...]  # film ids, file order
    imdb: tuple[str, ...]
    pairs: _Pairs | None
    ranges: tuple[_Range, ...]


def _pair_key(anidb_season: int, episode: int) -> int:
    return episode if anidb_season == 1 else -episode


def _int(text: str | None, *, signed: bool = False) -> int | None:
    """A small decimal integer from an attribute, or ``None`` (absent, empty or malformed)."""
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):  # the fast path takes clean attributes
        text = text.strip()
        body = text[1:] if signed and text[:1] in "+-" else text
        if not (body.isascii() and body.isdigit()):
            return None
    if len(text) > 9:
        return None
    value = int(text)
    return value if abs(value) <= _MAX_NUMBER else None


def _ids(name: str, text: str) -> tuple[str, ...]:
    """Valid ids of a comma list (``tmdbid="12345,67890"``, ref §2 Schema), file order."""
    if not text:
        return ()
    out = [v for part in text.split(",") if (v := normalize_id(name, part))]
    return tuple(dict.fromkeys(out))


class _Builder:
    """Turns ``<anime>`` elements into :class:`_Row` tuples, sharing equal pieces."""

    def __init__(self) -> None:
        self.rows: dict[int, _Row] = {}
        self.skipped = 0
        self._strings: dict[str, str] = {}
        self._targets: dict[tuple[int, tuple[int, ...]], tuple[int, tuple[int, ...]]] = {}
        self._bare: dict[tuple[str | None, str, int | None, int], _Row] = {}

    def _intern(self, text: str) -> str:
        return self._strings.setdefault(text, text)

    def add(self, elem: ET.Element) -> None:
        get = elem.attrib.get
        anidb = _int(get("anidbid"))
        if anidb is None or anidb <= 0 or anidb in self.rows:
            self.skipped += 1  # malformed id, or a duplicate row (the first one wins)
            return
        raw_tvdb = (get("tvdbid") or "").strip()
        number = _int(raw_tvdb)
        tvdb = str(number) if number else None
        raw_season = (get("defaulttvdbseason") or "").strip()
        season = _ABSOLUTE if raw_season == "a" else _int(raw_season)
        raw_offset = get("episodeoffset")
        offset = _int(raw_offset, signed=True) if raw_offset else 0
        if offset is None:  # an unreadable offset: no default rule rather than a wrong one
            season, offset = None, 0
        tmdb = _ids("tmdb", get("tmdbid") or "")
        imdb = _ids("imdb", get("imdbid") or "")
        pairs, ranges = self._mappings(elem) if tvdb else (None, ())
        note = self._intern("" if tvdb else raw_tvdb)
        tvdb = self._intern(tvdb) if tvdb else None
        if pairs is None and not ranges and not tmdb and not imdb:
            # ~95 % of rows: one shared tuple per distinct (tvdb, note, season, offset).
            key = (tvdb, note, season, offset)
            row = self._bare.get(key)
            if row is None:
                row = self._bare[key] = _Row(tvdb, note, season, offset, (), (), None, ())
        else:
            row = _Row(tvdb, note, season, offset, tmdb, imdb, pairs, ranges)
        self.rows[anidb] = row

    def _mappings(self, elem: ET.Element) -> tuple[_Pairs | None, tuple[_Range, ...]]:
        """Read ``mapping-list/mapping`` (ref §2 Schema, ``mapping-list/mapping``).

        Only mappings with a ``tvdbseason`` count (some carry only ``tmdbseason``, e.g. One
        Piece, anidb 69). Pairs ``;a-b+c;`` collect per AniDB episode in file order; a
        non-zero target wins over ``-0`` ("mapped to 0 only on a conflict": anidb 25 maps
        special 1 to ``0`` in TVDB season 0 and to 26 in season 1); several pairs of one
        episode into the same TVDB season add episodes (anidb 10860 ``;1-1;1-2;``).
        """
        found: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
        ranges: list[_Range] = []
        mapping_list = elem.find("mapping-list")
        if mapping_list is None:
            return None, ()
        for mapping in mapping_list.iter("mapping"):
            get = mapping.attrib.get
            anidb_season = _int(get("anidbseason"))
            tvdb_season = _int(get("tvdbseason"))
            if anidb_season not in (0, 1) or tvdb_season is None:
                continue
            for pair in (mapping.text or "").split(";"):
                left, dash, right = pair.strip().partition("-")
                episode = _int(left)
                if not dash or episode is None or episode <= 0:
                    continue  # "" between ';;', or malformed ("1+2-1" is not valid, ref §2)
                targets = [_int(t) for t in right.split("+")]
                if any(t is None for t in targets):
                    continue
                nonzero = tuple(t for t in targets if t)
                key = episode if anidb_season == 1 else -episode  # _pair_key, inlined
                found.setdefault(key, []).append((tvdb_season, nonzero))
            start, end = _int(get("start")), _int(get("end"))
            offset = _int(get("offset"), signed=True)
            if start is not None or end is not None or offset is not None:
                ranges.append(_Range(anidb_season, start or 1, end, offset or 0, tvdb_season))
        pairs: dict[int, tuple[int, tuple[int, ...]]] = {}
        for key, entries in found.items():
            chosen = next((e for e in entries if e[1]), entries[0])
            episodes = tuple(dict.fromkeys(n for s, eps in entries if s == chosen[0] for n in eps))
            value = (chosen[0], episodes)
            pairs[key] = self._targets.setdefault(value, value)
        return (pairs or None), tuple(ranges)


class AnimeMapping:
    """The parsed list: ``anidb id → row`` with only what mapping needs. Immutable; lookups
    never raise and take microseconds. ``len()`` is the number of rows kept;
    ``skipped_rows`` counts rows dropped for a malformed or duplicate ``anidbid``."""

    __slots__ = ("_rows", "skipped_rows")

    def __init__(self, rows: dict[int, _Row], skipped_rows: int = 0) -> None:
        self._rows = rows
        self.skipped_rows = skipped_rows

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, anidb_id: object) -> bool:
        return _key(anidb_id) in self._rows

    def __iter__(self) -> Iterator[str]:
        return (str(k) for k in self._rows)

    def __repr__(self) -> str:
        return f"<AnimeMapping rows={len(self._rows)}>"

    def _row(self, anidb_id: str) -> tuple[str, _Row | None]:
        key = _key(anidb_id)
        return (str(key) if key else str(anidb_id)), self._rows.get(key) if key else None

    def episode(
        self, anidb_id: str, season: int, episode: int, *, tvdb_numbered: bool = False
    ) -> MappedEpisode | Unmapped:
        """Map ``…hama://anidb-{anidb_id}/{season}/{episode}`` to a TVDB episode.

        *season* is HAMA's: 1 regular, 0 specials in AniDB numbering, with AniDB's special
        types shifted (C +100, T +200, P +300, O +400; ref §1). Rules, first that applies
        (ref §2 Schema ``mapping-list/mapping``, "How HAMA applies a row"):

        1. *season* not 0 or 1, or ``tvdb_numbered=True`` (the caller knows the Plex show has
           more than one season): HAMA already shows TVDB numbering (ref §1, "An anidb-N show
           whose Plex library has more than one season is already TVDB-numbered"), so this is
           the row's TVDB series as given (``TVDB_NUMBERED``).
        2. An individual ``;a-b;`` pair for this episode of that AniDB season (any mapping):
           TVDB season = the mapping's ``tvdbseason``, episodes ``b`` (``b+c`` = several, WE8);
           a pair with a real target wins over a ``-0`` one, and only ``-0`` pairs = maps to
           nothing (WE3: 9541 S0E11; see ``_Builder._mappings``). Pairs beat ranges and the
           default ("The offset and/or episodeoffset will be ignored in favour of an
           individual mapping").
        3. The first mapping of that AniDB season whose ``start..end`` holds the episode:
           episode + ``offset`` in its ``tvdbseason`` (WE4 Cowboy Bebop, WE5 Hunter x Hunter).
           A missing ``offset`` is 0; a missing ``start``/``end`` leaves that side open
           (One Piece ``start="1156" offset="-1155"``, Utawarerumono ``offset="5"``;
           HAMA skips such ranges; its ``range(start, end)`` needs both).
        4. A special (season 0) that no pair or range names: no TVDB episode (WE3 "park it,
           do not guess").
        5. ``defaulttvdbseason`` N: TVDB SNN, episode + ``episodeoffset`` (WE1, WE2);
           ``a``: TVDB absolute number episode + ``episodeoffset`` (WE5; module docstring).

        A row without a numeric ``tvdbid`` gives ``NO_IDS``; a result below episode 1
        gives ``NO_EPISODE``; an id not in the list gives ``NOT_IN_LIST`` (WE9).
        """
        name, row = self._row(anidb_id)
        if row is None:
            return _not_in_list(name)
        if row.tvdb is None:
            return _no_series(name, row)
        show = Ids(tvdb=row.tvdb)
        if tvdb_numbered or season not in (0, 1):
            if season < 0 or episode <= 0:
                return _no_episode(name, season, episode, "is not a TVDB episode")
            return MappedEpisode(
                name, show, season, (episode,), Numbering.SEASON, MappingRule.TVDB_NUMBERED
            )
        if episode <= 0:
            return _no_episode(name, season, episode, "is not an AniDB episode")
        if row.pairs is not None:
            pair = row.pairs.get(_pair_key(season, episode))
            if pair is not None:
                if not pair[1]:
                    return _no_episode(name, season, episode, "maps to no TVDB episode")
                return MappedEpisode(
                    name, show, pair[0], pair[1], Numbering.SEASON, MappingRule.PAIR
                )
        for rng in row.ranges:
            if (
                rng.anidb_season == season
                and rng.start <= episode
                and (rng.end is None or episode <= rng.end)
            ):
                return _mapped(name, show, rng.tvdb_season, episode + rng.offset, MappingRule.RANGE)
        if season == 0:
            return _no_episode(name, season, episode, "is not mapped to a TVDB episode")
        if row.season is None:
            return _no_episode(name, season, episode, "has no defaulttvdbseason")
        if row.season == _ABSOLUTE:
            return _mapped(name, show, None, episode + row.offset, MappingRule.ABSOLUTE)
        return _mapped(name, show, row.season, episode + row.offset, MappingRule.DEFAULT)

    def series(self, anidb_id: str) -> Ids | Unmapped:
        """The TVDB series of the row (``Ids(tvdb=…)``): what a HAMA show (``hama://anidb-N``
        of a show item) is on TVDB, or why the list does not say (``NO_IDS``,
        ``NOT_IN_LIST``)."""
        name, row = self._row(anidb_id)
        if row is None:
            return _not_in_list(name)
        if row.tvdb is None:
            return _no_series(name, row)
        return Ids(tvdb=row.tvdb)

    def film(self, anidb_id: str) -> MappedFilm | MappedEpisode | Unmapped:
        """Map the film form ``…hama://anidb-{anidb_id}`` (a HamaMovies item).

        The row's ``tmdbid``/``imdbid`` (ref §2 Schema, WE6) give a :class:`MappedFilm`.
        A row without them whose ``tvdbid`` is a series places the film in it ("For one-off
        titles it will be `1` unless associated to a multi-episode series, in which case it
        will be `0`", Anime-Lists README): its one AniDB episode mapped by :meth:`episode`, as
        a :class:`MappedEpisode` with rule ``FILM_EPISODE``; the caller decides whether a
        movie may be sent as that episode. Otherwise ``NO_IDS`` / ``NOT_IN_LIST``.
        """
        name, row = self._row(anidb_id)
        if row is None:
            return _not_in_list(name)
        if row.tmdb or row.imdb:
            ids = Ids(
                tmdb=row.tmdb[0] if row.tmdb else None, imdb=row.imdb[0] if row.imdb else None
            )
            return MappedFilm(name, ids, row.tmdb, row.imdb)
        if row.tvdb is not None:
            placed = self.episode(name, 1, 1)
            if isinstance(placed, MappedEpisode):
                return MappedEpisode(
                    name,
                    placed.show_ids,
                    placed.season,
                    placed.episodes,
                    placed.numbering,
                    MappingRule.FILM_EPISODE,
                )
            return placed
        shown = f'tvdbid="{row.tvdb_raw}"'
        return Unmapped(
            name,
            UnmappedKind.NO_IDS,
            f"AniDB {name} has no TMDB, IMDb or TVDB id in the Anime-Lists mapping ({shown})",
        )


def _key(anidb_id: object) -> int | None:
    if isinstance(anidb_id, int) and not isinstance(anidb_id, bool):
        return anidb_id if anidb_id > 0 else None
    if isinstance(anidb_id, str):
        return _int(anidb_id)
    return None


def _not_in_list(name: str) -> Unmapped:
    return Unmapped(
        name, UnmappedKind.NOT_IN_LIST, f"AniDB {name} is not in the Anime-Lists mapping"
    )


def _no_series(name: str, row: _Row) -> Unmapped:
    shown = f'tvdbid="{row.tvdb_raw}"'
    return Unmapped(
        name,
        UnmappedKind.NO_IDS,
        f"AniDB {name} has no TVDB series in the Anime-Lists mapping ({shown})",
    )


def _no_episode(name: str, season: int, episode: int, what: str) -> Unmapped:
    if season == 0:
        label = f"special {episode}"
    elif season == 1:
        label = f"episode {episode}"
    else:
        label = f"season {season} episode {episode}"
    return Unmapped(
        name, UnmappedKind.NO_EPISODE, f"AniDB {name} {label} {what} in the Anime-Lists mapping"
    )


def mapping_note(item: Item) -> str | None:
    """What the mapping made of *item*, for a reason a user reads (a target's ``not_found``),
    or ``None`` when *item* does not come from a HAMA AniDB GUID or has no mapped ids yet.

    ``AniDB 14444 episode 3 is TVDB 267440 S03E15 in the Anime-Lists mapping``,
    ``AniDB 11829 is TMDB 372058 / IMDb tt5311514 in the Anime-Lists mapping``.
    """
    guid = anidb_guid(item.guid)
    if guid is None:
        return None
    source = f"AniDB {guid.anidb_id}"
    if guid.season is not None and guid.episode is not None:
        if guid.mode != "anidb" or guid.season not in (0, 1):
            source += f" season {guid.season} episode {guid.episode}"
        else:
            source += f" {'special' if guid.season == 0 else 'episode'} {guid.episode}"
    if item.kind is MediaKind.MOVIE:
        films = [f"TMDB {item.ids.tmdb}"] if item.ids.tmdb else []
        films += [f"IMDb {item.ids.imdb}"] if item.ids.imdb else []
        target = " / ".join(films)
    elif item.kind is MediaKind.EPISODE and item.show_ids.tvdb and item.season is not None:
        number = item.number if item.number is not None else 0
        target = f"TVDB {item.show_ids.tvdb} S{item.season:02d}E{number:02d}"
    elif item.show_ids.tvdb or item.ids.tvdb:
        target = f"TVDB {item.show_ids.tvdb or item.ids.tvdb}"
        if item.kind is MediaKind.SEASON and item.season is not None:
            target += f" season {item.season}"
    else:
        target = ""
    if not target:
        return None
    return f"{source} is {target} in the {REASON_MARK} mapping"


def _mapped(
    name: str, show: Ids, season: int | None, number: int, rule: MappingRule
) -> MappedEpisode | Unmapped:
    if number <= 0:
        return Unmapped(
            name,
            UnmappedKind.NO_EPISODE,
            f"AniDB {name}: the Anime-Lists offset gives TVDB episode {number}",
        )
    numbering = Numbering.ABSOLUTE if season is None else Numbering.SEASON
    return MappedEpisode(name, show, season, (number,), numbering, rule)


def parse_anime_list(data: bytes) -> AnimeMapping:
    """Parse ``anime-list-master.xml`` (ref §2 Schema) into an :class:`AnimeMapping`.

    Streams with :func:`xml.etree.ElementTree.iterparse`, clearing each ``<anime>`` once read,
    so the document tree is never held whole. Rows with a malformed or repeated ``anidbid``
    are skipped (counted in ``skipped_rows``). Raises :class:`AnimeListError` for malformed
    XML, a DOCTYPE / entity declaration, another root element, or a list without rows.
    CPU-bound (~0.2 s for the full file): run it in a thread from async code.
    """
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise AnimeListError("the Anime-Lists file declares a DOCTYPE or entities; refused")
    builder = _Builder()
    root: ET.Element | None = None
    try:
        for event, elem in ET.iterparse(io.BytesIO(data), events=("start", "end")):
            if root is None:
                root = elem
                if elem.tag != "anime-list":
                    raise AnimeListError(
                        f"not an Anime-Lists file: root element <{elem.tag}>, expected <anime-list>"
                    )
            elif event == "end" and elem.tag == "anime":
                builder.add(elem)
                root.clear()  # drop the row just read (and any earlier siblings)
    except ET.ParseError as exc:
        raise AnimeListError(f"the Anime-Lists file is not well-formed XML: {exc}") from None
    if root is None:
        raise AnimeListError("the Anime-Lists file is empty")
    if not builder.rows:
        raise AnimeListError("the Anime-Lists file has no <anime> rows")
    return AnimeMapping(builder.rows, builder.skipped)
