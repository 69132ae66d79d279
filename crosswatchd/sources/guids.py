"""Plex GUID parsing, shared by the webhook sources and the id resolver.

Plex names every library item with a GUID. Two generations exist (reference: Plex support
article "Webhooks" and ``reference/plex/README.md``, "Observations useful for a parser"):

- **New agents** (Plex Movie / Plex TV Series): ``Metadata.guid`` is ``plex://movie/<24 hex>``
  (or ``episode``/``season``/``show``) and carries no external id; the external ids come in a
  separate ``Metadata.Guid`` array of ``{"id": "imdb://tt…" | "tmdb://N" | "tvdb://N"}`` —
  for an episode those are the **episode's own** ids. :func:`ids_from_guid_list` reads that array.
- **Legacy agents** put everything in ``Metadata.guid``:
  ``com.plexapp.agents.imdb://tt0072684?lang=en`` (movie),
  ``com.plexapp.agents.themoviedb://6978?lang=en`` (movie) or ``…themoviedb://SHOW/S/E`` (TV),
  ``com.plexapp.agents.thetvdb://73871/2/15?lang=en`` (show tvdb id / season / episode),
  HAMA ``com.plexapp.agents.hama://tvdb-12345/1/2`` or ``…hama://anidb-123/1/5``.
  :func:`parse_guid` reads one of these.

Nothing in this module raises on bad input: garbage yields a :class:`ParsedGuid` with no ids.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from crosswatchd.models import Ids

__all__ = [
    "AnidbGuid",
    "GuidScope",
    "ParsedGuid",
    "anidb_guid",
    "guid_base",
    "guid_position",
    "ids_from_guid_list",
    "normalize_id",
    "parse_guid",
]

#: Whose ids a GUID carries. ``"item"``: the thing the GUID names (a movie, or whatever the bare
#: id names). ``"show"``: a show; ``season``/``number`` (when present) locate the season or
#: episode inside it. ``"none"``: no external ids (``plex://``, ``local://``, ``none://``, garbage).
GuidScope = Literal["item", "show", "none"]

_LEGACY_PREFIX: Final = "com.plexapp.agents."
_IMDB_RE: Final = re.compile(r"tt\d{5,}", re.IGNORECASE)
_NUMERIC_RE: Final = re.compile(r"\d{1,12}")
_SCHEME_RE: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$", re.DOTALL)
#: HAMA id prefixes (``tvdb2-`` … ``tvdb6-`` are HAMA's alternative numbering modes of a tvdb id:
#: absolute or arc numbering, so their season/episode path is not TVDB's).
_HAMA_RE: Final = re.compile(r"^(anidb|anidb\d|tvdb\d?|tmdb|tsdb|imdb)-(.+)$", re.IGNORECASE)

# Legacy agents whose bare id (no /S/E path) names a show, never a movie.
_TV_ONLY_AGENTS: Final = frozenset({"thetvdb", "tvdb", "xbmcnfotv"})


@dataclass(frozen=True, slots=True)
class ParsedGuid:
    """The ids one GUID carries.

    ``ids`` are external ids (see :data:`GuidScope` for whose). ``season``/``number`` come from
    a legacy TV path ``SHOW/SEASON/EPISODE`` (``number`` is the episode number). ``agent`` is
    the scheme without the ``com.plexapp.agents.`` prefix, lower-cased: ``"imdb"``,
    ``"themoviedb"``, ``"thetvdb"``, ``"hama"``, ``"plex"``, ``"local"``, ``"none"``,
    ``"tmdb"`` …; ``""`` when the text is not a GUID at all.
    """

    ids: Ids = field(default_factory=Ids)
    season: int | None = None
    number: int | None = None
    scope: GuidScope = "none"
    agent: str = ""


_NOTHING: Final = ParsedGuid()
_NO_IDS: Final = Ids()


def normalize_id(name: str, value: object) -> str | None:
    """Validate one external id; return its canonical text or ``None``.

    *name* is an :class:`~crosswatchd.models.Ids` field (``imdb``, ``tmdb``, ``tvdb``,
    ``trakt``, ``simkl``, ``anidb``). ``imdb`` must look like ``tt`` + digits (returned
    lower-case ``tt``); the others must be positive decimal integers (leading zeros dropped).
    Ints are accepted; ``""``, ``"0"``, bools and anything else give ``None``.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value) if value > 0 and name != "imdb" else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if name == "imdb":
        return text.lower() if _IMDB_RE.fullmatch(text) else None
    if name in {"tmdb", "tvdb", "trakt", "simkl", "anidb"} and _NUMERIC_RE.fullmatch(text):
        number = int(text)
        return str(number) if number > 0 else None
    return None


def _ids(name: str, value: str) -> Ids:
    canonical = normalize_id(name, value)
    return Ids(**{name: canonical}) if canonical else Ids()


def _small_int(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) <= 6 else None


def _split_path(rest: str) -> list[str]:
    """``73871/2/15?lang=en#x`` -> ``["73871", "2", "15"]``."""
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    return rest.strip().strip("/").split("/")


def _with_episode(ids: Ids, agent: str, parts: list[str], *, bare_scope: GuidScope) -> ParsedGuid:
    """Ids of a show-or-item GUID whose path may continue with ``/SEASON/EPISODE``."""
    if not ids:
        return ParsedGuid(agent=agent)
    if len(parts) == 1:
        return ParsedGuid(ids=ids, scope=bare_scope, agent=agent)
    season = _small_int(parts[1])
    number = _small_int(parts[2]) if len(parts) > 2 else None
    if season is None or (len(parts) > 2 and number is None):
        # A path we do not understand: the show id is still right, the position is not known.
        return ParsedGuid(ids=ids, scope="show", agent=agent)
    return ParsedGuid(ids=ids, season=season, number=number, scope="show", agent=agent)


def _parse_hama(parts: list[str]) -> ParsedGuid:
    match = _HAMA_RE.match(parts[0])
    if match is None:
        return ParsedGuid(agent="hama")
    kind, value = match.group(1).lower(), match.group(2)
    if kind.startswith("anidb"):
        ids = _ids("anidb", value)
    elif kind.startswith("tvdb"):
        ids = _ids("tvdb", value)
        if kind != "tvdb" and ids and len(parts) > 1:
            # tvdb2-…tvdb6-: the path numbers episodes absolutely or by arc, not as TVDB's
            # season/episode. The show is still right; its position is left for another step.
            return ParsedGuid(ids=ids, scope="show", agent="hama")
    elif kind in {"tmdb", "tsdb"}:
        ids = _ids("tmdb", value)
    else:
        ids = _ids("imdb", value)
    return _with_episode(ids, "hama", parts, bare_scope="item")


def _parse_legacy(agent: str, parts: list[str]) -> ParsedGuid:
    head = parts[0]
    if agent == "imdb":
        ids = _ids("imdb", head)
        return ParsedGuid(ids=ids, scope="item", agent=agent) if ids else ParsedGuid(agent=agent)
    if agent == "themoviedb":
        return _with_episode(_ids("tmdb", head), agent, parts, bare_scope="item")
    if agent in _TV_ONLY_AGENTS:
        return _with_episode(_ids("tvdb", head), agent, parts, bare_scope="show")
    if agent == "hama":
        return _parse_hama(parts)
    if agent == "xbmcnfo":
        # XBMCnfoMoviesImporter: an imdb id, or a tmdb id when the .nfo had no imdb id.
        ids = _ids("imdb", head) or _ids("tmdb", head)
        return ParsedGuid(ids=ids, scope="item", agent=agent) if ids else ParsedGuid(agent=agent)
    return ParsedGuid(agent=agent)


def _parse_guid(guid: str) -> ParsedGuid:
    """Parse one Plex GUID into external ids (never raises).

    =================================================  =======================================
    GUID                                               result
    =================================================  =======================================
    ``imdb://tt0090728`` / ``tmdb://6978`` /           that id, scope ``item``
    ``tvdb://1876``
    ``com.plexapp.agents.imdb://tt0072684?lang=en``    imdb id, scope ``item``
    ``com.plexapp.agents.themoviedb://6978?lang=en``   tmdb id, scope ``item``
    ``com.plexapp.agents.themoviedb://1399/1/2``       show tmdb id, season 1, number 2, ``show``
    ``com.plexapp.agents.thetvdb://73871/2/15``        show tvdb id, season 2, number 15, ``show``
    (also ``…tvdb://``, ``…xbmcnfotv://``)             (bare ``…thetvdb://73871``: ``show``)
    ``com.plexapp.agents.hama://tvdb-12345/1/2``       show tvdb id, S/E, ``show``
    ``com.plexapp.agents.hama://tvdb2-12345/1/57``     show tvdb id, ``show``, no S/E (``tvdb2-``
                                                       … ``tvdb6-`` number absolutely or by arc)
    ``com.plexapp.agents.hama://anidb-123/1/5``        anidb id, S/E, ``show`` (bare: ``item``)
    ``plex://movie/<hex>``, ``local://123``,           no ids, scope ``none``
    ``com.plexapp.agents.none://…``, garbage
    =================================================  =======================================

    A query string (``?lang=en``) and fragment are ignored. Ids are validated with
    :func:`normalize_id`; an invalid id yields no ids rather than a wrong one.
    """
    if not isinstance(guid, str):  # untyped JSON can hand us null or a number
        return _NOTHING  # type: ignore[unreachable]  # reachable from untyped callers
    match = _SCHEME_RE.match(guid.strip())
    if match is None:
        return _NOTHING
    scheme, rest = match.group(1).lower(), match.group(2)
    parts = _split_path(rest)
    if not parts or not parts[0]:
        return ParsedGuid(agent=scheme.removeprefix(_LEGACY_PREFIX))
    if scheme in {"imdb", "tmdb", "tvdb"}:
        ids = _ids(scheme, parts[0])
        return ParsedGuid(ids=ids, scope="item", agent=scheme) if ids else ParsedGuid(agent=scheme)
    if scheme.startswith(_LEGACY_PREFIX):
        return _parse_legacy(scheme.removeprefix(_LEGACY_PREFIX), parts)
    # plex://, local://, tv.plex.agents.*, anything else: no external ids.
    return ParsedGuid(agent=scheme)


_parse_guid_cached = functools.lru_cache(maxsize=8192)(_parse_guid)


def parse_guid(guid: str) -> ParsedGuid:
    """Parse one Plex GUID into external ids (never raises); see :func:`_parse_guid` for the
    forms understood. Memoised (results are immutable): Plex repeats the same GUIDs in every
    event of one playback (play, pause, resume, stop, scrobble)."""
    if not isinstance(guid, str):  # untyped JSON can hand us null or a number
        return _NOTHING  # type: ignore[unreachable]  # reachable from untyped callers
    return _parse_guid_cached(guid)


def ids_from_guid_list(guids: Iterable[str]) -> Ids:
    """Merge the ids of a Plex new-agent ``Guid`` array, e.g.
    ``["imdb://tt0090728", "tmdb://6978", "tvdb://1876"]`` ->
    ``Ids(imdb="tt0090728", tmdb="6978", tvdb="1876")``.

    Only entries whose ids name the item itself (scope ``item``) count; the first valid id of
    each kind wins. Non-strings and unparseable entries are skipped; never raises.
    """
    found: dict[str, str] = {}
    try:
        for entry in guids:
            parsed = parse_guid(entry)
            if parsed.scope == "item":
                for name, value in parsed.ids.as_dict().items():
                    found.setdefault(name, value)
    except TypeError:  # not iterable: nothing to read
        pass
    return Ids(**found) if found else _NO_IDS


def guid_base(guid: object) -> str:
    """*guid* without surrounding space, query or fragment, for comparing two GUIDs.

    Legacy agents append the metadata language (``com.plexapp.agents.thetvdb://73871/2/15
    ?lang=en``), which may differ between two reports of one item; ``plex://`` GUIDs are
    returned as they are. Anything but a non-empty string gives ``""``; never raises.
    """
    if not isinstance(guid, str):
        return ""
    return guid.strip().split("?", 1)[0].split("#", 1)[0]


@dataclass(frozen=True, slots=True)
class AnidbGuid:
    """A HAMA GUID that names an AniDB entry, as written:
    ``com.plexapp.agents.hama://anidb-9541/0/7?lang=en`` is
    ``AnidbGuid(anidb_id="9541", mode="anidb", season=0, episode=7)``.

    ``mode`` is HAMA's id type, lower-cased: ``anidb`` (Plex seasons 1 regular / 0 specials,
    AniDB episode numbers), ``anidb2`` (TVDB seasons and numbers, through the mapping),
    ``anidb3`` / ``anidb4`` (TVDB numbering with TVDB specials appended / inserted as
    seasons) — Absolute-Series-Scanner ``README.md``, "Forcing the movie/series ID"
    (``shared/reference/anime/README.md`` §1). ``season``/``episode`` are the GUID's path, or
    ``None`` when it has none (the bare show/film form ``hama://anidb-11829``) or one that is
    not two small numbers.
    """

    anidb_id: str
    mode: str
    season: int | None = None
    episode: int | None = None


_HAMA_SCHEME: Final = _LEGACY_PREFIX + "hama"


def anidb_guid(guid: object) -> AnidbGuid | None:
    """The AniDB entry a HAMA GUID names (see :class:`AnidbGuid`), or ``None`` for any other
    GUID (``hama://tvdb-…`` included) and for anything that is not a GUID. Never raises."""
    if not isinstance(guid, str):
        return None
    match = _SCHEME_RE.match(guid.strip())
    if match is None or match.group(1).lower() != _HAMA_SCHEME:
        return None
    parts = _split_path(match.group(2))
    hama = _HAMA_RE.match(parts[0])
    if hama is None or not hama.group(1).lower().startswith("anidb"):
        return None
    anidb_id = normalize_id("anidb", hama.group(2))
    if anidb_id is None:
        return None
    season = _small_int(parts[1]) if len(parts) > 1 else None
    episode = _small_int(parts[2]) if len(parts) > 2 else None
    if (
        len(parts) > 3
        or (len(parts) > 1 and season is None)
        or (len(parts) > 2 and episode is None)
    ):
        season = episode = None  # a path we do not understand: no position
    return AnidbGuid(anidb_id, hama.group(1).lower(), season, episode)


def guid_position(
    parsed: ParsedGuid, season: int | None, number: int | None
) -> tuple[int | None, int | None]:
    """The season and episode number to send with the show ids of a show-scoped GUID.

    A legacy TV GUID (``com.plexapp.agents.thetvdb://73871/2/15``) carries the position in
    the numbering of the database it names; the library's ``parentIndex``/``index`` may follow
    another episode order (DVD, absolute). With the GUID's show id, the GUID's numbers are the
    right ones; the source's *season*/*number* only fill what the GUID lacks.
    """
    if parsed.season is not None and parsed.number is not None:
        return parsed.season, parsed.number
    return (
        season if season is not None else parsed.season,
        number if number is not None else parsed.number,
    )
