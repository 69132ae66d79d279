"""Steps 5 and 6, ``trakt`` and ``simkl``: the targets' own id search.

- ``trakt``: ``GET /search/{imdb|tmdb|tvdb}/{id}?type=movie|episode``
  (:meth:`~crosswatchd.providers.trakt.TraktSearch.by_id`) with the item's own id (for an
  episode its own, so the answer names its show and position).
- ``simkl``: ``GET /search/id?imdb=|tmdb=|tvdb=|anidb=&type=movie|show``
  (:meth:`~crosswatchd.providers.simkl.SimklSearch.by_id`) with a movie's id or an episode's
  show id.

Each answer (the first hit's ids, or "nothing found") is cached under
``<step>:<kind>:<id name>:<id>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

from crosswatchd.models import Ids, MediaKind
from crosswatchd.providers.simkl import SimklSearch
from crosswatchd.providers.trakt import TraktSearch
from crosswatchd.resolve.keys import id_query, int_or_none

if TYPE_CHECKING:
    from crosswatchd.resolve.chain import Answers, Work

__all__ = ["SimklStep", "TraktStep", "add_found"]

SearchKind = Literal["movie", "show", "episode"]

#: Trakt search id preference per looked-up kind.
_ID_ORDER: Final[dict[SearchKind, tuple[str, ...]]] = {
    "movie": ("imdb", "tmdb", "tvdb"),
    "show": ("tvdb", "imdb", "tmdb"),
    "episode": ("tvdb", "imdb", "tmdb"),
}
_SIMKL_ID_ORDER: Final = ("imdb", "tmdb", "tvdb", "anidb")


def add_found(work: Work, step: str, kind: Literal["movie", "show"], ids: Ids) -> None:
    """Add the *ids* *step* found for a movie, or for an episode's show (*kind*); an episode
    without a season or number still falls short of the goal, and that is the reason."""
    if kind == "movie":
        work.add(step, ids=ids)
        return
    work.add(step, show_ids=ids)
    if work.item.season is None or work.item.number is None:
        work.fail(step, f"{step}: season or episode number unknown")


class TraktStep:
    """The ``trakt`` step (see the module docstring): *trakt* asked through *answers*."""

    name = "trakt"

    def __init__(self, trakt: TraktSearch, answers: Answers) -> None:
        self._trakt = trakt
        self._answers = answers

    async def run(self, work: Work) -> None:
        """Add what Trakt knows of the item's id; raises what the search raises."""
        trakt = self._trakt
        item = work.item
        kind: SearchKind = "movie" if item.kind is MediaKind.MOVIE else "episode"
        pick = next(((n, v) for n in _ID_ORDER[kind] if (v := getattr(item.ids, n))), None)
        if pick is None:
            work.skip("trakt", f"trakt: no imdb, tmdb or tvdb id of the {kind} to look up")
            return
        id_type, value = pick

        async def fetch() -> dict[str, Any] | None:
            hits = await trakt.by_id(id_type, value, kind)
            if not hits:
                return None
            hit = hits[0]
            return {
                "ids": hit.ids.as_dict(),
                "show_ids": hit.show_ids.as_dict(),
                "season": hit.season,
                "number": hit.number,
            }

        found = await self._answers.ask(work, "trakt", id_query(kind, id_type, value), fetch)
        if found is None:
            work.fail("trakt", f"trakt: no match for {kind} {id_type} {value}")
            return
        work.add(
            "trakt",
            ids=Ids.from_dict(found.get("ids")),
            show_ids=Ids.from_dict(found.get("show_ids")),
            season=int_or_none(found.get("season")),
            number=int_or_none(found.get("number")),
        )


class SimklStep:
    """The ``simkl`` step (see the module docstring): *simkl* asked through *answers*."""

    name = "simkl"

    def __init__(self, simkl: SimklSearch, answers: Answers) -> None:
        self._simkl = simkl
        self._answers = answers

    async def run(self, work: Work) -> None:
        """Add what SIMKL knows of the movie's or the show's id; raises what the search
        raises."""
        simkl = self._simkl
        item = work.item
        kind: Literal["movie", "show"]
        if item.kind is MediaKind.MOVIE:
            kind, ids = "movie", item.ids
        else:
            kind, ids = "show", item.show_ids
            if not ids:
                work.skip("simkl", "simkl: cannot look up an episode without its show's ids")
                return
        pick = next(((n, v) for n in _SIMKL_ID_ORDER if (v := getattr(ids, n))), None)
        if pick is None:
            work.skip("simkl", f"simkl: no imdb, tmdb, tvdb or anidb id of the {kind} to look up")
            return
        id_type, value = pick

        async def fetch() -> dict[str, Any] | None:
            hits = await simkl.by_id(id_type, value, kind)
            return {"ids": hits[0].ids.as_dict()} if hits else None

        found = await self._answers.ask(work, "simkl", id_query(kind, id_type, value), fetch)
        if found is None:
            work.fail("simkl", f"simkl: no match for {kind} {id_type} {value}")
            return
        # SIMKL echoes only some ids; the queried one is known to be right.
        add_found(
            work, "simkl", kind, Ids.from_dict(found.get("ids")).merged(Ids(**{id_type: value}))
        )
