"""Step ``anime``: items a HAMA GUID names by AniDB id, mapped through the Anime-Lists file.

Plex libraries matched by the HAMA agent name AniDB entries and use AniDB numbering
(``com.plexapp.agents.hama://anidb-14444/1/3?lang=en``); Trakt has no AniDB ids and numbers
anime by TVDB. The list (:mod:`crosswatchd.animelists`, kept fresh by
:class:`~crosswatchd.animelists_store.AnimeListStore`) says what each AniDB entry is on TVDB
(a series, season and episode) or, for a film, on TMDB / IMDb. This step turns the item into
exactly that, for every target alike:

==========================================  ================================================
the GUID and the item                       result
==========================================  ================================================
``anidb-N/S/E``, an episode                 the TVDB series, season and episode the list
                                            gives (pairs, ranges, defaulttvdbseason +
                                            episodeoffset: :meth:`AnimeMapping.episode`)
``anidb2-N/S/E``                            the row's TVDB series; S/E are TVDB's already
``anidb-N``, a movie                        the film's TMDB / IMDb ids (the first of each
                                            list); a film row without them that the list
                                            places in a TVDB series: that episode
``anidb-N``, a show; ``anidb-N/S``, a       the row's TVDB series (and the TVDB season of
season (ratings, watchlist)                 AniDB episode 1, or season 0 for specials)
the list numbers the episode absolutely     Trakt's episode list gives its season and
(``defaulttvdbseason="a"``)                 number (``number_abs``), see below
==========================================  ================================================

What the step sends and never sends: the show's ids become the mapping's (its TVDB id; no
AniDB id, since SIMKL reads an AniDB id with AniDB numbering, ``shared/reference/anime``
§3); the season and number become TVDB's. Nothing else in the chain runs for such an item:
no other step knows AniDB numbering, and a search or a cached answer would pair AniDB's
season and number with a TVDB show. So the item either maps, or

- waits: no list is loaded yet (first start, the URL down) — :class:`RetryableError`, the
  play stays pending and is tried again just after the store's next attempt;
- parks: the list has no row, no TVDB/TMDB/IMDb id, or maps the episode to nothing —
  :class:`UnresolvedError` with the list's reason (``AniDB 17290 is not in the Anime-Lists
  mapping``); HAMA's ``anidb3``/``anidb4`` modes, whose seasons are re-ordered, park too.

**Absolute numbering.** A row with ``defaulttvdbseason="a"`` numbers the episodes no range
covers by TVDB's absolute order. Trakt and SIMKL take no absolute number in a history body,
so the step asks Trakt once per show: ``GET /search/tvdb/{id}?type=show`` for the Trakt id,
then ``GET /shows/{id}/seasons?extended=full,episodes`` for every episode's ``number_abs``;
both answers are cached (``trakt:show:tvdb:<id>``, ``anime:abs:trakt:<id>``). A number past
the cached list (an ongoing show's new episode) asks once more under its own question.
Trakt numbers these shows itself; the season and number it gives go to SIMKL too, with the
TVDB id. Without Trakt search (no Trakt client id, or ``resolver.use_search`` off) such an
episode parks with a reason saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

import structlog

from crosswatchd.animelists import (
    REASON_MARK,
    MappedEpisode,
    MappedFilm,
    Numbering,
    Unmapped,
    UnmappedKind,
)
from crosswatchd.animelists_store import AnimeListStore, ListUnavailable
from crosswatchd.errors import ProviderError, RetryableError, UnresolvedError
from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.resolve.keys import id_query, int_or_none
from crosswatchd.sources.guids import AnidbGuid, ParsedGuid, anidb_guid

if TYPE_CHECKING:
    from crosswatchd.providers.trakt import TraktSearch
    from crosswatchd.resolve.chain import Answers, Work

__all__ = ["RETRY_SLACK_S", "AbsoluteEpisode", "AnimeStep", "claims", "map_item"]

log = structlog.get_logger(__name__)

#: A play waiting for the list is tried again this long after the store's next attempt (the
#: download and parse take a moment).
RETRY_SLACK_S: Final = 2.0
#: HAMA modes whose Plex seasons follow TVDB's (ref §1: ``anidb2`` maps AniDB entries onto
#: one TVDB series).
_TVDB_NUMBERED: Final = frozenset({"anidb2"})


def claims(parsed: ParsedGuid | None) -> bool:
    """True when the GUID parse *parsed* names an AniDB entry (a HAMA ``anidb*-N`` GUID): the
    item is the anime step's alone."""
    return parsed is not None and parsed.agent == "hama" and parsed.ids.anidb is not None


@dataclass(frozen=True, slots=True)
class AbsoluteEpisode:
    """An episode the list numbers absolutely: ``item`` has the TVDB series (``show_ids``)
    but no season or number yet; ``number_abs`` is TVDB's absolute number; ``what`` names the
    AniDB episode for reasons (``AniDB 14086 episode 3``)."""

    item: Item
    number_abs: int
    what: str


#: What :func:`map_item` answers.
MapResult = Item | AbsoluteEpisode | Unmapped | ListUnavailable


def _what(guid: AnidbGuid, season: int, episode: int) -> str:
    if guid.mode != "anidb" or season not in (0, 1):
        return f"AniDB {guid.anidb_id} season {season} episode {episode}"
    return f"AniDB {guid.anidb_id} {'special' if season == 0 else 'episode'} {episode}"


def _without_anidb(ids: Ids) -> Ids:
    return replace(ids, anidb=None) if ids.anidb else ids


def _as_episode(item: Item, mapped: MappedEpisode, what: str) -> Item | AbsoluteEpisode:
    """*item* (an episode, or a film the list places in a series) as *mapped* says."""
    base = item
    if item.kind is not MediaKind.EPISODE:  # a film row placed in a TVDB series
        base = replace(
            item,
            kind=MediaKind.EPISODE,
            ids=Ids(),
            show_title=item.show_title or item.title or None,
            show_year=item.show_year or item.year,
        )
    if mapped.numbering is Numbering.ABSOLUTE:
        placed = replace(base, ids=_without_anidb(base.ids), show_ids=mapped.show_ids)
        return AbsoluteEpisode(replace(placed, season=None, number=None), mapped.episode, what)
    return replace(
        base,
        ids=_without_anidb(base.ids),
        show_ids=mapped.show_ids,
        season=mapped.season,
        number=mapped.episode,
    )


def map_item(item: Item, guid: AnidbGuid, lists: AnimeListStore) -> MapResult:
    """*item*, named by the HAMA GUID *guid*, as the list *lists* maps it (the table of the
    module docstring), or why not. No I/O: an absolutely numbered episode comes back as an
    :class:`AbsoluteEpisode` for the caller to place. The history import uses it to tell
    which AniDB plays the list cannot map."""
    anidb_id = guid.anidb_id
    if guid.mode in ("anidb3", "anidb4"):
        return Unmapped(
            anidb_id,
            UnmappedKind.NO_EPISODE,
            f"AniDB {anidb_id}: HAMA's {guid.mode} numbering moves TVDB specials into seasons,"
            f" so its seasons are not TVDB's; not mapped by the {REASON_MARK} mapping",
        )
    if item.kind is MediaKind.MOVIE:
        film = lists.film(anidb_id)
        if isinstance(film, MappedFilm):
            ids = Ids(tmdb=film.ids.tmdb, imdb=film.ids.imdb)
            return replace(item, ids=_without_anidb(item.ids).merged(ids))
        if isinstance(film, MappedEpisode):
            return _as_episode(item, film, f"AniDB {anidb_id}")
        return film
    if item.kind is MediaKind.SHOW:
        series = lists.series(anidb_id)
        if not isinstance(series, Ids):
            return series
        return replace(item, ids=series, show_ids=Ids())
    season = guid.season if guid.season is not None else item.season
    if item.kind is MediaKind.SEASON:
        return _season(item, guid, season, lists)
    number = guid.episode if guid.episode is not None else item.number
    if season is None or number is None:
        return Unmapped(
            anidb_id,
            UnmappedKind.NO_EPISODE,
            f"AniDB {anidb_id}: the play names no season and episode to look up in the"
            f" {REASON_MARK} mapping",
        )
    episode = lists.episode(anidb_id, season, number, tvdb_numbered=guid.mode in _TVDB_NUMBERED)
    if isinstance(episode, MappedEpisode):
        return _as_episode(item, episode, _what(guid, season, number))
    return episode


def _season(item: Item, guid: AnidbGuid, season: int | None, lists: AnimeListStore) -> MapResult:
    """A season (``hama://anidb-N/S``): the row's TVDB series and the TVDB season of AniDB
    episode 1 (specials: season 0; ``anidb2`` or a season above 1: as given)."""
    anidb_id = guid.anidb_id
    series = lists.series(anidb_id)
    if not isinstance(series, Ids):
        return series
    if season is None:
        tvdb_season: int | None = None
    elif guid.mode in _TVDB_NUMBERED or season not in (0, 1):
        tvdb_season = season
    elif season == 0:
        tvdb_season = 0
    else:
        first = lists.episode(anidb_id, 1, 1)
        if not isinstance(first, MappedEpisode):
            return first
        tvdb_season = first.season  # None when the row numbers absolutely
    if tvdb_season is None:
        return Unmapped(
            anidb_id,
            UnmappedKind.NO_EPISODE,
            f"AniDB {anidb_id}: the {REASON_MARK} mapping gives no TVDB season for this season",
        )
    return replace(item, ids=_without_anidb(item.ids), show_ids=series, season=tvdb_season)


class AnimeStep:
    """The ``anime`` step (see the module docstring): the list *lists*; Trakt search *trakt*
    (``None``: absolutely numbered episodes park) asked through *answers*."""

    name = "anime"

    def __init__(
        self, lists: AnimeListStore, answers: Answers, trakt: TraktSearch | None = None
    ) -> None:
        self.lists = lists
        self._answers = answers
        self._trakt = trakt

    async def run(self, work: Work) -> None:
        """Map *work*'s item. Raises :class:`RetryableError` while no list is loaded (or
        Trakt fails to answer about an absolute number), :class:`UnresolvedError` when the
        list (or Trakt) says the item cannot be mapped."""
        guid = anidb_guid(work.item.guid)
        if guid is None:  # claims() said otherwise (cannot happen: the same parse)
            raise UnresolvedError(f"{work.item.guid} names no AniDB entry", "anime")
        result = map_item(work.item, guid, self.lists)
        if isinstance(result, ListUnavailable):
            raise RetryableError(
                "anime", result.reason, retry_after_s=result.retry_in_s + RETRY_SLACK_S
            )
        if isinstance(result, Unmapped):
            raise UnresolvedError(result.reason, "anime")
        if isinstance(result, AbsoluteEpisode):
            wanted = result
            try:
                result = await self._place(work, wanted)
            except RetryableError:
                raise
            except ProviderError as exc:  # Trakt refused (a 4xx): nothing else may guess
                raise UnresolvedError(
                    f"{wanted.what} is numbered absolutely in the {REASON_MARK} mapping, and"
                    f" Trakt refused its episode list: {exc}",
                    "anime",
                ) from None
        work.item = result
        work.step = "anime"
        log.debug(
            "resolve.anime",
            anidb=guid.anidb_id,
            item=result.label(),
            show_ids=result.show_ids.as_dict(),
            season=result.season,
            number=result.number,
        )

    async def _place(self, work: Work, wanted: AbsoluteEpisode) -> Item:
        """The absolutely numbered episode *wanted* with Trakt's season and number."""
        tvdb = wanted.item.show_ids.tvdb or ""
        said = (
            f"{wanted.what} is TVDB {tvdb} absolute episode {wanted.number_abs} in the"
            f" {REASON_MARK} mapping"
        )
        trakt = self._trakt
        if trakt is None:
            raise UnresolvedError(
                f"{said}; its season and episode come from Trakt's episode list, and Trakt"
                " search is off (set trakt.client_id and resolver.use_search)",
                "anime",
            )

        async def show() -> dict[str, Any] | None:
            hits = await trakt.by_id("tvdb", tvdb, "show")
            return {"ids": hits[0].ids.as_dict()} if hits else None

        found = await self._answers.ask(work, "trakt", id_query("show", "tvdb", tvdb), show)
        trakt_id = Ids.from_dict(found.get("ids")).trakt if found else None
        if not trakt_id:
            raise UnresolvedError(f"{said}; Trakt has no show with TVDB id {tvdb}", "anime")

        async def numbers() -> dict[str, Any] | None:
            listing = await trakt.absolute_numbers(trakt_id)
            if not listing:
                return None
            return {
                "abs": {str(n): [s, e] for n, (s, e) in listing.items()},
                "max": max(listing),
            }

        question = f"abs:trakt:{trakt_id}"
        listing = await self._answers.ask(work, "anime", question, numbers)
        position = _position(listing, wanted.number_abs)
        if position is None and (listing is None or wanted.number_abs > int(listing["max"])):
            # Past the list Trakt gave (a new episode of an ongoing show): ask again, once.
            fresh = await self._answers.ask(
                work, "anime", f"{question}:{wanted.number_abs}", numbers
            )
            position = _position(fresh, wanted.number_abs)
        if position is None:
            raise UnresolvedError(
                f"{said}; Trakt lists no episode with absolute number {wanted.number_abs}"
                f" for that show (trakt {trakt_id})",
                "anime",
            )
        season, number = position
        item = wanted.item
        return replace(
            item,
            show_ids=item.show_ids.merged(Ids(trakt=trakt_id)),
            season=season,
            number=number,
        )


def _position(listing: dict[str, Any] | None, number_abs: int) -> tuple[int, int] | None:
    """``(season, number)`` of *number_abs* in a cached listing, or ``None``."""
    if not listing:
        return None
    numbers = listing.get("abs")
    entry = numbers.get(str(number_abs)) if isinstance(numbers, dict) else None
    if not isinstance(entry, list) or len(entry) != 2:
        return None
    season, number = int_or_none(entry[0]), int_or_none(entry[1])
    if season is None or number is None:
        return None
    return season, number
