"""Step 1, ``payload``: the ids the item's own GUID carries.

Forms understood: :func:`~crosswatchd.sources.guids.parse_guid`. A movie takes the ids of a
GUID that names it; an episode takes a legacy TV GUID's show ids
(``com.plexapp.agents.thetvdb://73871/2/15``: show tvdb 73871) with the GUID's season and
episode number, which win over the source's (``parentIndex``/``index`` may follow another
episode order than the database the show id belongs to:
:func:`~crosswatchd.sources.guids.guid_position`), or a ``Guid[]``-style ``imdb://`` /
``tmdb://`` / ``tvdb://`` GUID as its own ids. No request is made.

Personal media and extras (``local://``, ``com.plexapp.agents.none://``, ``iva://``) never
resolve: :class:`~crosswatchd.errors.UnresolvedError` unless the item already has ids a
target can use.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from crosswatchd.errors import UnresolvedError
from crosswatchd.models import Item, MediaKind
from crosswatchd.resolve.keys import NOT_CATALOGUED, has_ids
from crosswatchd.sources.guids import ParsedGuid, guid_position

if TYPE_CHECKING:
    from crosswatchd.resolve.chain import Work

__all__ = ["PayloadStep", "with_guid"]


def with_guid(item: Item, parsed: ParsedGuid | None) -> Item:
    """*item* with the ids (and, for an episode, the position) of its GUID's parse *parsed*
    folded in (``None``: no GUID); the item's ids win on conflicts. Applying it twice changes
    nothing more."""
    if parsed is None or not has_ids(parsed.ids):
        return item
    if item.kind is MediaKind.MOVIE:
        return item.with_ids(ids=parsed.ids) if parsed.scope == "item" else item
    if parsed.scope == "show":
        out = item.with_ids(show_ids=parsed.ids)
        season, number = guid_position(parsed, item.season, item.number)
        if season != item.season or number != item.number:
            out = replace(out, season=season, number=number)
        return out
    if parsed.agent in ("imdb", "tmdb", "tvdb"):  # a Guid[]-style entry names the episode
        return item.with_ids(ids=parsed.ids)
    return item


class PayloadStep:
    """The ``payload`` step (see the module docstring)."""

    name = "payload"

    async def run(self, work: Work) -> None:
        """Fold the GUID's ids into *work*; raise :class:`UnresolvedError` for personal media
        and extras that have nothing usable."""
        parsed = work.parsed
        if parsed is None:
            return
        work.item = with_guid(work.item, parsed)
        if parsed.agent in NOT_CATALOGUED and not work.usable():
            item = work.item
            raise UnresolvedError(
                f"payload: {item.guid} is personal media or an extra, not a catalogued "
                f"{item.kind.value}; it has no external ids",
                "payload",
            )
