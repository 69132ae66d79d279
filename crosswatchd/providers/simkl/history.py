"""SIMKL history, pure: the ``POST /sync/history`` body, its reply mapped back to plays, the
``date_from`` of a look-up and ``/sync/all-items`` entries matched to plays. No HTTP here;
:mod:`.provider` sends and fetches.

Shapes (``shared/reference/simkl``; "Apiary" = the SIMKL API blueprint):

- "Add Items to the history" (Apiary): ``{"movies": [{title, year, ids, watched_at}],
  "shows": [{title, year, ids, seasons: [{number, episodes: [{number, watched_at}]}]}]}``; an
  episode goes under its **show's** ids. The reply (200 or 201) is ``{"added": {"movies",
  "shows", "episodes", "statuses"}, "not_found": {"movies", "shows", "episodes"}}``: counts
  only, so a play is confirmed only when the counts account for exactly the plays sent.
- "Get All Items" (Apiary): ``{"movies": [{movie: {ids}, last_watched_at}], "shows": [{show:
  {ids}, seasons: [{number, episodes: [{number, watched_at}]}]}]}`` (``null`` when empty), one
  ``last_watched_at`` per movie and one ``watched_at`` per episode, at second precision.
  ``date_from`` selects items *updated* since then; dates are still handled in New York time,
  GMT−05:00 (Apiary "Dates").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from crosswatchd.http import Lenient, LenientList, OptInt, OptStr, WireModel
from crosswatchd.models import Ids, MediaKind, format_utc, parse_utc
from crosswatchd.providers.base import AddedCounts, Play, PlayOutcome

__all__ = [
    "DATE_FROM_MARGIN",
    "MATCH_TOLERANCE_S",
    "MOVIE_ID_KEYS",
    "SHOW_ID_KEYS",
    "AllItems",
    "Batch",
    "HistoryReply",
    "api_ids",
    "build_batch",
    "date_from",
    "found_in",
    "id_pairs",
    "outcomes_of",
    "show_api_ids",
    "simkl_time",
    "titled",
]

#: Default tolerance of a history look-up: how far a stored ``watched_at`` may be from ours
#: and still be the same play (SIMKL keeps seconds only; we send milliseconds).
MATCH_TOLERANCE_S: Final = 5.0
#: Slack subtracted from every ``date_from``: covers clock skew between us and SIMKL and its
#: note that dates are still handled in New York time, GMT−05:00 (Apiary "Dates"), with room
#: to spare.
DATE_FROM_MARGIN: Final = timedelta(days=1)
#: Ids that identify a movie, and a show, for SIMKL.
MOVIE_ID_KEYS: Final = frozenset({"imdb", "tmdb", "simkl"})
SHOW_ID_KEYS: Final = frozenset({"imdb", "tmdb", "tvdb", "simkl"})
#: Ids sent and compared (SIMKL has no ``trakt`` id key).
_SENT_ID_KEYS: Final = ("simkl", "imdb", "tmdb", "tvdb", "anidb")
#: Ids of a show whose episodes are sent by season and number (TVDB numbering, specials as
#: season 0): never ``anidb``. SIMKL's anime form reads an AniDB id with AniDB's numbering,
#: and it documents no rule for which id wins when a show object carries both an AniDB and
#: a TVDB id (``shared/reference/anime/README.md`` §3).
_NUMBERED_SHOW_ID_KEYS: Final = ("simkl", "imdb", "tmdb", "tvdb")


def api_ids(ids: Ids) -> dict[str, str | int]:
    """The ids SIMKL takes, in its shape (numbers as ints, imdb as a string)."""
    api = ids.as_api_ids()
    return {key: api[key] for key in _SENT_ID_KEYS if key in api}


def show_api_ids(ids: Ids) -> dict[str, str | int]:
    """:func:`api_ids` of a show whose episodes go with it by season and number (history,
    scrobble): without an ``anidb`` id (see :data:`_NUMBERED_SHOW_ID_KEYS`)."""
    api = ids.as_api_ids()
    return {key: api[key] for key in _NUMBERED_SHOW_ID_KEYS if key in api}


def id_pairs(raw: Mapping[str, Any] | None) -> set[tuple[str, str]]:
    """Comparable ``(key, value)`` pairs of the ids SIMKL uses; empty and zero values left out."""
    if not raw:
        return set()
    return {
        (str(key), str(value))
        for key, value in raw.items()
        if key in _SENT_ID_KEYS and value not in (None, "", 0, "0")
    }


def titled(ids: dict[str, str | int], title: str | None, year: int | None) -> dict[str, Any]:
    """A movie or show object as SIMKL takes it: ``{title?, year?, ids}``."""
    obj: dict[str, Any] = {}
    if title:
        obj["title"] = title
    if year:
        obj["year"] = year
    obj["ids"] = ids
    return obj


def simkl_time(moment: datetime) -> str:
    """``2024-01-15T10:30:00Z``: UTC, second precision, as ``date_from`` takes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def date_from(plays: Sequence[Play], tolerance_s: float) -> datetime:
    """The ``date_from`` of a history look-up for *plays* (non-empty).

    Per play, the earliest time its item can have been updated on SIMKL by what we look for:
    ``sent_at`` for a play we sent (our POST updated the item then), else ``watched_at −
    tolerance`` (whoever recorded a watch at about that time did so afterwards). The minimum
    over the plays, less :data:`DATE_FROM_MARGIN`.
    """
    tolerance = timedelta(seconds=tolerance_s)
    earliest = min(p.sent_at if p.sent_at is not None else p.watched_at - tolerance for p in plays)
    return earliest - DATE_FROM_MARGIN


# --------------------------------------------------------------------------------------------
# POST /sync/history
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SentEpisode:
    key: int
    season: int
    number: int
    watched_at: str


@dataclass(slots=True)
class _SentShow:
    obj: dict[str, Any]
    episodes: list[_SentEpisode] = field(default_factory=list)


@dataclass(slots=True)
class Batch:
    """The ``POST /sync/history`` body and what each part of it stands for: ``movies`` pairs
    play keys with the movie objects sent; ``shows`` the show objects with their episodes."""

    movies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    shows: list[_SentShow] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        """The JSON body: ``movies`` and ``shows``, each only when not empty."""
        out: dict[str, Any] = {}
        if self.movies:
            out["movies"] = [obj for _, obj in self.movies]
        if self.shows:
            out["shows"] = [show.obj for show in self.shows]
        return out


def build_batch(plays: Iterable[Play]) -> Batch:
    """Movies one object each; episodes grouped under their show's ids, then by season.

    Each with ``watched_at`` (UTC, milliseconds). Plays must pass
    ``SimklProvider.missing_ids`` (an episode has show ids, season and number).
    """
    batch = Batch()
    by_show: dict[frozenset[tuple[str, str | int]], _SentShow] = {}
    for play in plays:
        item, watched_at = play.item, format_utc(play.watched_at)
        if item.kind is MediaKind.MOVIE:
            obj = titled(api_ids(item.ids), item.title, item.year)
            obj["watched_at"] = watched_at
            batch.movies.append((play.key, obj))
            continue
        assert item.season is not None and item.number is not None  # checked by missing_ids
        show_ids = show_api_ids(item.show_ids)
        group = by_show.get(frozenset(show_ids.items()))
        if group is None:
            group = _SentShow(titled(show_ids, item.show_title, item.show_year))
            group.obj["seasons"] = []
            by_show[frozenset(show_ids.items())] = group
            batch.shows.append(group)
        seasons: list[dict[str, Any]] = group.obj["seasons"]
        season = next((s for s in seasons if s["number"] == item.season), None)
        if season is None:
            season = {"number": item.season, "episodes": []}
            seasons.append(season)
        season["episodes"].append({"number": item.number, "watched_at": watched_at})
        group.episodes.append(_SentEpisode(play.key, item.season, item.number, watched_at))
    return batch


class _NotFoundEntry(WireModel):
    ids: Lenient[dict[str, Any]] = None
    season: OptInt = None
    number: OptInt = None
    watched_at: OptStr = None


#: A ``not_found`` list keeps every entry (one that is not an object reads as ``None``): an
#: entry that cannot be traced to plays must still make the others unconfirmed.
_NotFoundList = LenientList[Lenient[_NotFoundEntry]]


class _NotFound(WireModel):
    movies: _NotFoundList = []
    shows: _NotFoundList = []
    episodes: _NotFoundList = []


class HistoryReply(WireModel):
    """The reply to ``POST /sync/history``; missing parts read as empty."""

    added: Lenient[AddedCounts] = None
    not_found: Lenient[_NotFound] = None


def _settle(
    keys: Sequence[int], not_found: set[int], unmatched: int, added: int | None
) -> dict[int, PlayOutcome]:
    """Outcomes of one category (movies or episodes).

    A play is ADDED only when every ``not_found`` entry was traced to its plays and ``added``
    equals the number of the others; anything less certain is UNCONFIRMED.
    """
    rest = [k for k in keys if k not in not_found]
    confirmed = unmatched == 0 and added is not None and added == len(rest)
    out = {k: PlayOutcome.NOT_FOUND for k in keys if k in not_found}
    out.update({k: PlayOutcome.ADDED if confirmed else PlayOutcome.UNCONFIRMED for k in rest})
    return out


def outcomes_of(reply: HistoryReply | None, batch: Batch) -> dict[int, PlayOutcome]:
    """An outcome per play key of *batch*, from SIMKL's ``added``/``not_found`` reply
    (``None``: a ``null`` or unreadable reply, every play UNCONFIRMED).

    ``not_found.movies`` and ``not_found.shows`` entries are traced by ids (a show's entry
    stands for all its episodes in the batch); ``not_found.episodes`` echoes the episode
    object (``{number, watched_at}``, maybe ``season``) and is traced when exactly one sent
    episode fits. Then per category :func:`_settle`.
    """
    reply = reply or HistoryReply()
    not_found = reply.not_found or _NotFound()
    added = reply.added or AddedCounts()

    movie_nf: set[int] = set()
    movie_unmatched = 0
    for entry in not_found.movies:
        wanted = id_pairs(entry.ids if entry else None)
        hits = {k for k, obj in batch.movies if wanted & id_pairs(obj["ids"])}
        movie_nf |= hits
        movie_unmatched += not hits

    episode_nf: set[int] = set()
    episode_unmatched = 0
    for entry in not_found.shows:
        wanted = id_pairs(entry.ids if entry else None)
        hits = {e.key for s in batch.shows if wanted & id_pairs(s.obj["ids"]) for e in s.episodes}
        episode_nf |= hits
        episode_unmatched += not hits
    sent_episodes = [e for s in batch.shows for e in s.episodes]
    for entry in not_found.episodes:
        hits = set()
        if entry is not None:
            hits = {
                e.key
                for e in sent_episodes
                if e.key not in episode_nf
                and entry.number == e.number
                and entry.watched_at == e.watched_at
                and entry.season in (None, e.season)
            }
        if len(hits) == 1:
            episode_nf |= hits
        else:
            episode_unmatched += 1

    outcomes = _settle([k for k, _ in batch.movies], movie_nf, movie_unmatched, added.movies)
    outcomes.update(
        _settle([e.key for e in sent_episodes], episode_nf, episode_unmatched, added.episodes)
    )
    return outcomes


# --------------------------------------------------------------------------------------------
# GET /sync/all-items
# --------------------------------------------------------------------------------------------


class _Ids(WireModel):
    ids: Lenient[dict[str, Any]] = None


class _Episode(WireModel):
    number: OptInt = None
    watched_at: OptStr = None


class _Season(WireModel):
    number: OptInt = None
    episodes: LenientList[_Episode] = []


class _MovieItem(WireModel):
    movie: Lenient[_Ids] = None
    last_watched_at: OptStr = None


class _ShowItem(WireModel):
    show: Lenient[_Ids] = None
    seasons: LenientList[_Season] = []


class AllItems(WireModel):
    """A ``GET /sync/all-items[/{type}]`` answer: ``movies``, ``shows`` and ``anime`` (shows
    too), each missing when the type was not asked for or is empty."""

    movies: LenientList[_MovieItem] = []
    shows: LenientList[_ShowItem] = []
    anime: LenientList[_ShowItem] = []


def _close_to(raw: str | None, moment: datetime, tolerance_s: float) -> bool:
    """True when SIMKL's timestamp *raw* is within *tolerance_s* seconds of *moment*."""
    if raw is None:
        return False
    try:
        stored = parse_utc(raw)
    except ValueError:
        return False
    return abs((stored - moment).total_seconds()) <= tolerance_s


def _has_movie(entry: _MovieItem, play: Play, tolerance_s: float) -> bool:
    """True when an all-items movie *entry* is *play*'s movie, last watched at its time."""
    ids = entry.movie.ids if entry.movie else None
    return bool(id_pairs(api_ids(play.item.ids)) & id_pairs(ids)) and _close_to(
        entry.last_watched_at, play.watched_at, tolerance_s
    )


def _has_episode(entry: _ShowItem, play: Play, tolerance_s: float) -> bool:
    """True when an all-items show *entry* has *play*'s episode watched at its time."""
    sent = show_api_ids(play.item.show_ids)
    if not id_pairs(sent) & id_pairs(entry.show.ids if entry.show else None):
        return False
    return any(
        episode.number == play.item.number
        and _close_to(episode.watched_at, play.watched_at, tolerance_s)
        for season in entry.seasons
        if season.number == play.item.season
        for episode in season.episodes
    )


def found_in(items: AllItems, plays: Sequence[Play], tolerance_s: float) -> set[int]:
    """Keys of *plays* whose item *items* shows as (last) watched within ±*tolerance_s*
    seconds of the play's ``watched_at``: movies against ``movies``, episodes against
    ``shows``."""
    found: set[int] = set()
    for play in plays:
        if play.item.kind is MediaKind.MOVIE:
            hit = any(_has_movie(entry, play, tolerance_s) for entry in items.movies)
        else:
            hit = any(_has_episode(entry, play, tolerance_s) for entry in items.shows)
        if hit:
            found.add(play.key)
    return found
