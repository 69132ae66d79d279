"""A household's media for the reconcile tests: the same movies and episodes in the fake Plex
server's library (by ratingKey, with their Guid ids) and in the catalogue the fake Trakt and
SIMKL know, and plays of them on any side."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.catalog import Catalog
from tests.fakes.plex_server import FakePlexServer

#: When the first play of a test history happened.
T0 = datetime(2025, 3, 1, 20, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Media:
    """One movie or episode: its Plex ratingKey and its catalogue entry."""

    rating_key: str
    entry: dict[str, Any]

    @property
    def is_episode(self) -> bool:
        return "show" in self.entry

    @property
    def imdb_or_tvdb(self) -> str:
        ids = self.entry["ids"]
        return str(ids.get("imdb") or ids.get("tvdb"))


def add_media(
    catalog: Catalog, plex: FakePlexServer, *, movies: int, shows: int, episodes: int
) -> list[Media]:
    """*movies* movies and *shows* shows of *episodes* episodes each (season 1), in both the
    catalogue and the Plex library; movies first."""
    out: list[Media] = []
    for n in range(movies):
        imdb, tmdb = f"tt{8_100_000 + n}", 710_000 + n
        entry = catalog.add_movie(f"Reconcile Movie {n}", 1990 + n % 30, imdb=imdb, tmdb=tmdb)
        plex.add_movie(
            str(10_000 + n), entry["title"], entry["year"], [f"imdb://{imdb}", f"tmdb://{tmdb}"]
        )
        out.append(Media(str(10_000 + n), entry))
    for s in range(shows):
        tvdb = 600_000 + s
        show = catalog.add_show(f"Reconcile Show {s}", 2000 + s, tvdb=tvdb)
        show_key = str(20_000 + s * 100)
        plex.add_show(show_key, show["title"], show["year"], [f"tvdb://{tvdb}"])
        for e in range(1, episodes + 1):
            own = 9_000_000 + s * 1000 + e
            entry = catalog.add_episode(show, 1, e, f"Episode {e}", tvdb=own)
            rating_key = str(int(show_key) + e)
            plex.add_episode(rating_key, show_key, 1, e, [f"tvdb://{own}"], title=f"Episode {e}")
            out.append(Media(rating_key, entry))
    return out


def play_times(
    count: int, *, start: datetime = T0, gap: timedelta = timedelta(hours=9)
) -> list[datetime]:
    """*count* play times, *gap* apart (further apart than the dedupe window)."""
    return [start + gap * i for i in range(count)]
