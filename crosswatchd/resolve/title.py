"""Step 7, ``title``: an exact title + year search on the targets' own search
(``resolver.title_fallback``, off by default; always on for imported files).

Trakt first, ``GET /search/movie|show?query=…&years=…&fields=title``
(:meth:`~crosswatchd.providers.trakt.TraktSearch.by_title`), then, when Trakt is not configured
or has no exact match, SIMKL's ``GET /search/movie|tv?q=…``
(:meth:`~crosswatchd.providers.simkl.SimklSearch.by_title`): a movie by its title and year, an
episode's show by the show's title and year (an episode's own year is never taken for its
show's). Only an exact match counts: the hit's title equals the item's after Unicode NFC and
case folding (runs of white space made one space, :func:`~crosswatchd.resolve.keys.norm_title`),
its year is the same, and no other hit that does so has other ids — so Dune (1984) is never
Dune (2021), and a series logged as a film matches no movie. Each answer is cached:
``title:<kind>:<year>:<title>`` (Trakt's), ``title:simkl:<kind>:<year>:<title>`` (SIMKL's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from crosswatchd.errors import RetryableError
from crosswatchd.models import Ids, MediaKind
from crosswatchd.providers.base import SearchHit
from crosswatchd.providers.simkl import SimklSearch
from crosswatchd.providers.trakt import TraktSearch
from crosswatchd.resolve.keys import norm_title
from crosswatchd.resolve.search import add_found

if TYPE_CHECKING:
    from crosswatchd.resolve.chain import Answers, Work

__all__ = ["TitleStep", "exact_hit"]


def exact_hit(hits: Sequence[SearchHit], title: str, year: int) -> SearchHit | None:
    """The one hit whose title equals *title* (NFC, case-folded, white space collapsed) and
    whose year is *year*; ``None`` when no hit is, or when hits that are name other ids."""
    wanted = norm_title(title)
    exact = [h for h in hits if h.year == year and norm_title(h.title) == wanted]
    if len({h.ids for h in exact}) != 1:
        return None
    return exact[0]


class TitleStep:
    """The ``title`` step (see the module docstring): *trakt*, then *simkl* (either may be
    ``None``), asked through *answers*."""

    name = "title"

    def __init__(
        self, trakt: TraktSearch | None, answers: Answers, simkl: SimklSearch | None = None
    ) -> None:
        self._trakt = trakt
        self._simkl = simkl
        self._answers = answers

    async def run(self, work: Work) -> None:
        """Add the ids of the single exact title + year match; raises what the last search
        asked raises when no search found one."""
        item = work.item
        kind: Literal["movie", "show"]
        if item.kind is MediaKind.MOVIE:
            kind, title, year = "movie", item.title, item.year
        else:
            # An episode's own year is never its show's year.
            kind, title, year = "show", item.show_title or "", item.show_year
        if not title.strip() or year is None:
            work.fail(
                "title",
                f"title: the {kind}'s {'title' if not title.strip() else 'year'} is unknown; "
                "exact title + year search needs both",
            )
            return
        query = f"{kind}:{year}:{norm_title(title)}"
        searches: list[tuple[str, TraktSearch | SimklSearch]] = []
        if self._trakt is not None:
            searches.append((query, self._trakt))
        if self._simkl is not None:
            searches.append((f"simkl:{query}", self._simkl))
        transient: RetryableError | None = None
        for cache_query, search in searches:

            async def fetch(search: TraktSearch | SimklSearch = search) -> dict[str, Any] | None:
                hit = exact_hit(await search.by_title(kind, title, year), title, year)
                return None if hit is None else {"ids": hit.ids.as_dict()}

            try:
                found = await self._answers.ask(work, "title", cache_query, fetch)
            except RetryableError as exc:
                transient = exc  # another search may still know it
                continue
            if found is not None:
                add_found(work, "title", kind, Ids.from_dict(found.get("ids")))
                return
        if transient is not None:
            raise transient
        where = " or ".join(
            "Trakt" if isinstance(search, TraktSearch) else "SIMKL" for _, search in searches
        )
        work.fail("title", f"title: no single exact match for {kind} {title!r} ({year}) on {where}")
