"""Step 7, ``title``: an exact title + year search on Trakt (``resolver.title_fallback``, off by
default).

``GET /search/movie|show?query=…&years=…&fields=title``
(:meth:`~crosswatchd.providers.trakt.TraktSearch.by_title`): a movie by its title and year, an
episode's show by the show's title and year (an episode's own year is never taken for its
show's). Only a single exact match counts (titles compared case-folded, white space
collapsed; the same year). The answer is cached under ``title:<kind>:<year>:<title>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from crosswatchd.models import Ids, MediaKind
from crosswatchd.providers.trakt import TraktSearch
from crosswatchd.resolve.keys import norm_title
from crosswatchd.resolve.search import add_found

if TYPE_CHECKING:
    from crosswatchd.resolve.chain import Answers, Work

__all__ = ["TitleStep"]


class TitleStep:
    """The ``title`` step (see the module docstring): *trakt* asked through *answers*."""

    name = "title"

    def __init__(self, trakt: TraktSearch, answers: Answers) -> None:
        self._trakt = trakt
        self._answers = answers

    async def run(self, work: Work) -> None:
        """Add the ids of the single exact title + year match; raises what the search raises."""
        trakt = self._trakt
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
        wanted = norm_title(title)

        async def fetch() -> dict[str, Any] | None:
            hits = await trakt.by_title(kind, title, year)
            exact = [h for h in hits if norm_title(h.title) == wanted and h.year == year]
            if len({h.ids for h in exact}) != 1:
                return None
            return {"ids": exact[0].ids.as_dict()}

        found = await self._answers.ask(work, "title", f"{kind}:{year}:{wanted}", fetch)
        if found is None:
            work.fail("title", f"title: no single exact match for {kind} {title!r} ({year})")
            return
        add_found(work, "title", kind, Ids.from_dict(found.get("ids")))
