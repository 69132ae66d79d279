"""A small media catalogue shared by the fake Trakt and the fake SIMKL.

The fakes answer searches and recognise ids in ``/sync/history`` bodies only for items in
their catalogue (anything else is ``not_found``, as on the real services). Each entry gets a
``trakt`` and a ``simkl`` id automatically.

Shapes (all ids as in the services' JSON: imdb a string, the others ints)::

    movie   {"title", "year", "ids": {"trakt", "slug", "imdb", "tmdb", "simkl"}}
    show    {"title", "year", "anime", "ids": {"trakt", "slug", "imdb", "tmdb", "tvdb", "simkl"}}
    episode {"season", "number", "number_abs", "title", "ids": {"trakt", "imdb", "tmdb", "tvdb"},
             "show": show}

Seasons are not entries of their own: a season exists when the catalogue has an episode in it,
and its ids are derived from the show's (:meth:`Catalog.season_ids`), so the fakes can rate,
watchlist and look up seasons by id as Trakt does ("Standard Media Objects / season").
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Catalog", "default_catalog"]

_ID_KEYS = ("trakt", "imdb", "tmdb", "tvdb", "simkl", "slug")
#: Season trakt ids are ``_SEASON_BASE + show trakt id * 100 + number`` (no clash with items).
_SEASON_BASE = 90_000_000


def _norm(ids: dict[str, Any]) -> set[tuple[str, str]]:
    return {(k, str(v)) for k, v in ids.items() if k in _ID_KEYS and v not in (None, "", 0)}


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


@dataclass
class Catalog:
    """Known movies, shows and episodes; lookups by any id."""

    movies: list[dict[str, Any]] = field(default_factory=list)
    shows: list[dict[str, Any]] = field(default_factory=list)
    episodes: list[dict[str, Any]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    #: Per entry list: (entries indexed so far, {(id key, value): first position}). Lists only
    #: grow, so a lookup indexes what was added since (thousands of items stay fast).
    _indexes: dict[int, tuple[int, dict[tuple[str, str], int]]] = field(
        default_factory=dict, repr=False, compare=False
    )
    #: (episodes indexed so far, {id(show): its episodes in catalogue order}).
    _by_show: tuple[int, dict[int, list[dict[str, Any]]]] = field(
        default_factory=lambda: (0, {}), repr=False, compare=False
    )

    def add_movie(self, title: str, year: int, **ids: Any) -> dict[str, Any]:
        """Add a movie; *ids* like ``imdb="tt0090728", tmdb=6978``. Returns the movie dict."""
        n = next(self._seq)
        movie = {
            "title": title,
            "year": year,
            "ids": {"trakt": n, "slug": _slug(title), "simkl": n + 500_000, **ids},
        }
        self.movies.append(movie)
        return movie

    def add_show(self, title: str, year: int, *, anime: bool = False, **ids: Any) -> dict[str, Any]:
        """Add a show; *ids* like ``tvdb=73871, imdb="tt0149460"``. Returns the show dict.

        *anime* marks a show SIMKL files under ``anime`` rather than ``shows``.
        """
        n = next(self._seq)
        show = {
            "title": title,
            "year": year,
            "anime": anime,
            "ids": {"trakt": n, "slug": _slug(title), "simkl": n + 500_000, **ids},
        }
        self.shows.append(show)
        return show

    def add_episode(
        self,
        show: dict[str, Any],
        season: int,
        number: int,
        title: str = "",
        *,
        number_abs: int | None = None,
        **ids: Any,
    ) -> dict[str, Any]:
        """Add an episode of *show* (from :meth:`add_show`); *ids* are the episode's own.

        *number_abs* is its absolute number (anime), as Trakt's full episode object has it.
        """
        n = next(self._seq)
        episode = {
            "season": season,
            "number": number,
            "number_abs": number_abs,
            "title": title or f"Episode {number}",
            "ids": {"trakt": n, **ids},
            "show": show,
        }
        self.episodes.append(episode)
        return episode

    def _match(self, entries: list[dict[str, Any]], ids: dict[str, Any]) -> dict[str, Any] | None:
        """The first entry of *entries* sharing any of *ids*, or None."""
        wanted = _norm(ids)
        if not wanted:
            return None
        done, index = self._indexes.get(id(entries), (0, {}))
        for position in range(done, len(entries)):
            for pair in _norm(entries[position]["ids"]):
                index.setdefault(pair, position)
        self._indexes[id(entries)] = (len(entries), index)
        found = [index[pair] for pair in wanted if pair in index]
        return entries[min(found)] if found else None

    def movie(self, ids: dict[str, Any]) -> dict[str, Any] | None:
        """The movie with any of *ids*, or None."""
        return self._match(self.movies, ids)

    def show(self, ids: dict[str, Any]) -> dict[str, Any] | None:
        """The show with any of *ids*, or None."""
        return self._match(self.shows, ids)

    def episode(self, ids: dict[str, Any]) -> dict[str, Any] | None:
        """The episode with any of its own *ids*, or None."""
        return self._match(self.episodes, ids)

    def episode_of(self, show: dict[str, Any], season: int, number: int) -> dict[str, Any] | None:
        """Episode *season*x*number* of *show*, or None."""
        for ep in self.episodes:
            if ep["show"] is show and ep["season"] == season and ep["number"] == number:
                return ep
        return None

    def episode_abs(self, show: dict[str, Any], number_abs: int) -> dict[str, Any] | None:
        """The episode of *show* with absolute number *number_abs*, or None."""
        for ep in self.episodes:
            if ep["show"] is show and ep.get("number_abs") == number_abs:
                return ep
        return None

    def episodes_of(self, show: dict[str, Any], season: int | None = None) -> list[dict[str, Any]]:
        """Episodes of *show* (of *season* only, if given), by season and number."""
        done, by_show = self._by_show
        for ep in self.episodes[done:]:
            by_show.setdefault(id(ep["show"]), []).append(ep)
        self._by_show = (len(self.episodes), by_show)
        found = [
            ep
            for ep in by_show.get(id(show), [])
            if ep["show"] is show and (season is None or ep["season"] == season)
        ]
        return sorted(found, key=lambda ep: (ep["season"], ep["number"]))

    def seasons_of(self, show: dict[str, Any]) -> list[int]:
        """Season numbers of *show* that have at least one episode, ascending."""
        return sorted({ep["season"] for ep in self.episodes if ep["show"] is show})

    @staticmethod
    def season_ids(show: dict[str, Any], number: int) -> dict[str, Any]:
        """The (derived) ids of season *number* of *show*: a trakt id, no tvdb/tmdb."""
        return {
            "trakt": _SEASON_BASE + int(show["ids"]["trakt"]) * 100 + number,
            "tvdb": None,
            "tmdb": None,
        }

    def season(self, ids: dict[str, Any]) -> tuple[dict[str, Any], int] | None:
        """``(show, number)`` of the season whose trakt id is in *ids*, or None."""
        try:
            trakt = int(ids.get("trakt") or 0)
        except (TypeError, ValueError):
            return None
        if trakt <= _SEASON_BASE:
            return None
        show_trakt, number = divmod(trakt - _SEASON_BASE, 100)
        show = self._match(self.shows, {"trakt": show_trakt})
        if show is None or number not in self.seasons_of(show):
            return None
        return show, number


def default_catalog() -> Catalog:
    """The items of the real Plex payloads in ``shared/reference/plex/payloads``."""
    cat = Catalog()
    cat.add_movie("Big Trouble in Little China", 1986, imdb="tt0090728", tmdb=6978)
    cat.add_movie("Barry Lyndon", 1975, imdb="tt0072684", tmdb=3175)
    futurama = cat.add_show("Futurama", 1999, tvdb=73871, imdb="tt0149460", tmdb=615)
    cat.add_episode(futurama, 2, 15, "A Clone of My Own", tvdb=163303)
    bobs = cat.add_show("Bob's Burgers", 2011, tvdb=194031, imdb="tt1561755", tmdb=32726)
    cat.add_episode(
        bobs, 9, 15, "The Fresh Princ-ipal", imdb="tt9413736", tmdb=1707381, tvdb=7047159
    )
    solar = cat.add_show("Solar Opposites", 2020, tvdb=375892, imdb="tt8910922", tmdb=97645)
    cat.add_episode(solar, 1, 3, "The Quantum Ring")
    bluey = cat.add_show("Bluey", 2018, tvdb=353953, imdb="tt7678620", tmdb=82728)
    cat.add_episode(bluey, 2, 50, "Baby Race", imdb="tt13429908", tmdb=2499236, tvdb=8031280)
    return cat
