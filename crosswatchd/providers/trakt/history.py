"""Trakt history, pure: the ``POST /sync/history`` body, its reply mapped back to plays, and
history entries matched to plays. No HTTP here; :mod:`.provider` sends and fetches.

Shapes (Trakt API Blueprint, ``shared/reference/trakt/trakt.apib``):

- "Sync / Add to History": the body has ``movies[{ids, watched_at}]``,
  ``episodes[{ids, watched_at}]`` and ``shows[{ids, seasons[{number, episodes[{number,
  watched_at}]}]}]``; the reply (201) is ``{"added": {"movies": n, "episodes": n},
  "not_found": {"movies": [...], "shows": [...], "seasons": [...], "episodes": [...]}}``,
  ``not_found`` entries echoing what was sent. Trakt does not de-duplicate.
- "Sync / Get History": entries ``{id, watched_at, action, type, movie{ids} |
  episode{season, number, ids} + show{ids}}``, newest first, paginated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from pydantic import ConfigDict, RootModel

from crosswatchd.http import Entries, Lenient, LenientList, OptInt, OptStr, WireModel
from crosswatchd.models import Ids, Item, MediaKind, format_utc, parse_utc
from crosswatchd.providers.base import AddedCounts, Play, PlayOutcome

__all__ = [
    "EPISODE_ID_KEYS",
    "MOVIE_ID_KEYS",
    "RANGE_GAP",
    "SHOW_ID_KEYS",
    "HistoryEntry",
    "HistoryPage",
    "HistoryReply",
    "Sent",
    "api_ids",
    "clusters",
    "history_body",
    "id_pairs",
    "matches",
    "not_found_keys",
    "outcomes_of",
]

#: Id keys Trakt takes for a movie, an episode and a show ("Sync / Add to History").
MOVIE_ID_KEYS: Final = ("trakt", "imdb", "tmdb")
EPISODE_ID_KEYS: Final = ("trakt", "tvdb", "imdb", "tmdb")
SHOW_ID_KEYS: Final = ("trakt", "tvdb", "imdb", "tmdb")
#: Plays whose look-up windows (watched_at ± tolerance) are further apart than this are looked
#: up with separate ranged history queries; closer ones share one.
RANGE_GAP: Final = timedelta(hours=12)


def api_ids(ids: Ids, keys: Sequence[str]) -> dict[str, str | int]:
    """Ids in Trakt's shape (numbers as ints, imdb as string), only the *keys* Trakt knows."""
    return {k: v for k, v in ids.as_api_ids().items() if k in keys}


def id_pairs(ids: Mapping[str, Any] | None) -> set[tuple[str, str]]:
    """``{("imdb", "tt1"), ("tmdb", "6978")}``: comparable ids, empty and zero values left out."""
    if not ids:
        return set()
    return {(k, str(v)) for k, v in ids.items() if v not in (None, "", 0)}


# --------------------------------------------------------------------------------------------
# Wire models (lenient: unknown fields ignored, a field of the wrong type read as missing)
# --------------------------------------------------------------------------------------------

_IdMap = Lenient[dict[str, Any]]


class _NotFoundEpisode(WireModel):
    number: OptInt = None


class _NotFoundSeason(WireModel):
    number: OptInt = None
    episodes: LenientList[_NotFoundEpisode] = []


class _NotFoundEntry(WireModel):
    """One ``not_found`` entry: the ids sent, or for an episode sent under its show the bare
    episode object (``number``, maybe ``season`` and ``watched_at``), or a show entry with
    only the ``seasons[].episodes[]`` that were not found."""

    ids: _IdMap = None
    number: OptInt = None
    season: OptInt = None
    watched_at: OptStr = None
    seasons: LenientList[_NotFoundSeason] = []


class _NotFound(WireModel):
    movies: LenientList[_NotFoundEntry] = []
    episodes: LenientList[_NotFoundEntry] = []
    shows: LenientList[_NotFoundEntry] = []


class HistoryReply(WireModel):
    """The reply to ``POST /sync/history`` (a JSON object; missing parts read as empty)."""

    added: Lenient[AddedCounts] = None
    not_found: Lenient[_NotFound] = None


class _Media(WireModel):
    ids: _IdMap = None
    season: OptInt = None
    number: OptInt = None


class HistoryEntry(WireModel):
    """One ``GET /sync/history`` entry; ``id`` is the history id (one per recorded play)."""

    id: Lenient[int | str] = None
    watched_at: OptStr = None
    movie: Lenient[_Media] = None
    episode: Lenient[_Media] = None
    show: Lenient[_Media] = None


class HistoryPage(RootModel[Entries[HistoryEntry]]):
    """A ``GET /sync/history`` page: a JSON list; entries that are not objects are skipped."""

    model_config = ConfigDict(defer_build=True)


# --------------------------------------------------------------------------------------------
# POST /sync/history
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """Where one play went in the ``POST /sync/history`` body: ``form`` is ``"movies"``,
    ``"episodes"`` (by its own ids) or ``"shows"`` (under its show); ``ids`` are the ids sent
    (the show's for the shows form)."""

    play: Play
    form: str
    ids: dict[str, str | int]


def history_body(plays: Sequence[Play]) -> tuple[dict[str, Any], list[Sent]]:
    """The ``POST /sync/history`` body for *plays* and where each play went.

    Movies go in ``movies[]``, episodes with their own ids in ``episodes[]``, other episodes
    under ``shows[].seasons[].episodes[]`` (one show object per distinct show ids); each
    with ``watched_at`` (UTC, milliseconds). Plays must pass ``TraktProvider.missing_ids``.
    """
    movies: list[dict[str, Any]] = []
    episodes: list[dict[str, Any]] = []
    shows: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    sent: list[Sent] = []
    for play in plays:
        item, watched_at = play.item, format_utc(play.watched_at)
        if item.kind is MediaKind.MOVIE:
            ids = api_ids(item.ids, MOVIE_ID_KEYS)
            movies.append({"ids": ids, "watched_at": watched_at})
            sent.append(Sent(play, "movies", ids))
        elif own := api_ids(item.ids, EPISODE_ID_KEYS):
            episodes.append({"ids": own, "watched_at": watched_at})
            sent.append(Sent(play, "episodes", own))
        else:
            show_ids = api_ids(item.show_ids, SHOW_ID_KEYS)
            show = shows.setdefault(
                tuple(sorted(id_pairs(show_ids))), {"ids": show_ids, "seasons": []}
            )
            season = next((s for s in show["seasons"] if s["number"] == item.season), None)
            if season is None:
                season = {"number": item.season, "episodes": []}
                show["seasons"].append(season)
            season["episodes"].append({"number": item.number, "watched_at": watched_at})
            sent.append(Sent(play, "shows", show_ids))
    body: dict[str, Any] = {}
    if movies:
        body["movies"] = movies
    if shows:
        body["shows"] = list(shows.values())
    if episodes:
        body["episodes"] = episodes
    return body, sent


def outcomes_of(reply: HistoryReply, sent: Sequence[Sent]) -> dict[int, PlayOutcome]:
    """An outcome per sent play key.

    ``not_found`` entries (:func:`not_found_keys`) are ``NOT_FOUND``. Per type (movies;
    episodes, in either form), when ``added`` counts exactly the rest they are ``ADDED``,
    otherwise ``UNCONFIRMED``: never assume what the reply does not say.
    """
    missing = not_found_keys(reply, sent)
    added = reply.added or AddedCounts()
    outcomes: dict[int, PlayOutcome] = {}
    for count, movies in ((added.movies, True), (added.episodes, False)):
        rest = [
            s.play.key for s in sent if (s.form == "movies") == movies and s.play.key not in missing
        ]
        confirmed = count == len(rest)
        for key in rest:
            outcomes[key] = PlayOutcome.ADDED if confirmed else PlayOutcome.UNCONFIRMED
    for key in missing:
        outcomes[key] = PlayOutcome.NOT_FOUND
    return outcomes


def not_found_keys(reply: HistoryReply, sent: Sequence[Sent]) -> set[int]:
    """Play keys named by the reply's ``not_found`` ("Sync / Add to History").

    ``movies``/``episodes`` entries echo the ids we sent. An episode sent under its show
    (``shows[].seasons[].episodes[]``) that Trakt cannot place (a special such as S00E07,
    anime numbering) comes back as a ``shows`` entry with the show's ids and only the
    missing ``seasons[].episodes[]`` (no ``seasons``: the whole show); it is mapped back by
    show ids + season + number. An ``episodes`` entry without ids (the bare episode object
    echoed) is mapped to the one show-form play with that number (and season and
    ``watched_at`` when given), if exactly one fits.
    """
    not_found = reply.not_found
    if not_found is None:
        return set()
    keys: set[int] = set()
    for form, entries in (
        ("movies", not_found.movies),
        ("episodes", not_found.episodes),
        ("shows", not_found.shows),
    ):
        for entry in entries:
            pairs = id_pairs(entry.ids)
            if form == "episodes" and not pairs:
                keys |= _bare_episode_keys(entry, sent, keys)
                continue
            for s in sent:
                if s.form != form or not pairs & id_pairs(s.ids):
                    continue
                if form == "shows" and not _listed_episode(entry, s.play.item):
                    continue
                keys.add(s.play.key)
    return keys


def _bare_episode_keys(entry: _NotFoundEntry, sent: Sequence[Sent], taken: set[int]) -> set[int]:
    """The show-form play a not-found episode object without ids stands for, if unique."""
    if entry.number is None:
        return set()
    hits = {
        s.play.key
        for s in sent
        if s.form == "shows"
        and s.play.key not in taken
        and s.play.item.number == entry.number
        and entry.season in (None, s.play.item.season)
        and entry.watched_at in (None, format_utc(s.play.watched_at))
    }
    return hits if len(hits) == 1 else set()


def _listed_episode(show_entry: _NotFoundEntry, item: Item) -> bool:
    """True if a not-found show entry covers *item* (no ``seasons`` → the whole show)."""
    if not show_entry.seasons:
        return True
    for season in show_entry.seasons:
        if season.number != item.season:
            continue
        if not season.episodes or any(e.number == item.number for e in season.episodes):
            return True
    return False


# --------------------------------------------------------------------------------------------
# GET /sync/history
# --------------------------------------------------------------------------------------------


def clusters(plays: Sequence[Play], tolerance: timedelta) -> list[list[Play]]:
    """*plays* sorted by watched_at, split where the look-up windows of consecutive plays
    (watched_at ± *tolerance*) are more than :data:`RANGE_GAP` apart."""
    ordered = sorted(plays, key=lambda p: p.watched_at)
    out: list[list[Play]] = []
    for play in ordered:
        if out and play.watched_at - out[-1][-1].watched_at <= RANGE_GAP + 2 * tolerance:
            out[-1].append(play)
        else:
            out.append([play])
    return out


def matches(entries: Sequence[HistoryEntry], plays: Sequence[Play], tolerance_s: float) -> set[int]:
    """Keys of *plays* that history *entries* account for, one entry per play at most.

    Candidate pairs (same item, watched within *tolerance_s* seconds) are taken closest
    first; an entry or a play already paired is skipped. Entries are told apart by their
    history ``id`` (by position when they have none).
    """
    candidates: list[tuple[float, int, int]] = []
    for index, entry in enumerate(entries):
        try:
            watched_at = parse_utc(str(entry.watched_at))
        except ValueError:
            continue
        for play in plays:
            distance = abs((watched_at - play.watched_at).total_seconds())
            if distance <= tolerance_s and _same_item(entry, play.item):
                candidates.append((distance, index, play.key))
    candidates.sort()
    used: set[Any] = set()
    found: set[int] = set()
    for _, index, key in candidates:
        entry_id = entries[index].id
        ident = ("index", index) if entry_id is None else entry_id
        if ident in used or key in found:
            continue
        used.add(ident)
        found.add(key)
    return found


def _same_item(entry: HistoryEntry, item: Item) -> bool:
    """True if history *entry* is a play of *item* (any shared id; show ids + numbers)."""
    if item.kind is MediaKind.MOVIE:
        return entry.movie is not None and bool(
            id_pairs(entry.movie.ids) & id_pairs(api_ids(item.ids, MOVIE_ID_KEYS))
        )
    episode, show = entry.episode, entry.show
    if episode is None:
        return False
    if id_pairs(episode.ids) & id_pairs(api_ids(item.ids, EPISODE_ID_KEYS)):
        return True
    return (
        show is not None
        and episode.season == item.season
        and episode.number == item.number
        and bool(id_pairs(show.ids) & id_pairs(api_ids(item.show_ids, SHOW_ID_KEYS)))
    )
