"""Shows and seasons (the items of a rating): their show's ids from the configured server.

A rating of a show or a season needs the show's ids (Trakt "Sync / Add Ratings": ``shows[]``
by ids, a season as ``shows[{ids, seasons[{number}]}]``; SIMKL rates shows only). The Plex and
Tautulli steps ask their server for the metadata of the show's ratingKey (a show's own, a
season's ``parentRatingKey``) and take its ids once :func:`~crosswatchd.resolve.same.
other_item` finds nothing against it. The id searches and the title step do not take shows
or seasons: a show rating without ids the server can give is parked with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.resolve.same import ServerItem, other_item, skip_other_item

if TYPE_CHECKING:
    from crosswatchd.resolve.chain import Work

__all__ = ["SHOW_KINDS", "show_goal", "show_rating_key", "take_show"]

#: Item kinds resolved through their show.
SHOW_KINDS: Final = frozenset({MediaKind.SHOW, MediaKind.SEASON})
_STRONG: Final = ("imdb", "tmdb", "tvdb", "trakt", "simkl")


def _strong(ids: Ids) -> bool:
    return any(getattr(ids, name) for name in _STRONG)


def show_goal(item: Item) -> bool:
    """A show has an imdb, tmdb, tvdb, trakt or simkl id (its own or as show ids); a season
    has such an id of its show and its number."""
    if item.kind is MediaKind.SHOW:
        return _strong(item.ids.merged(item.show_ids))
    return item.season is not None and _strong(item.show_ids)


def show_rating_key(item: Item) -> str | None:
    """The ratingKey of *item*'s show: a show's own, a season's ``parentRatingKey`` (kept in
    ``grandparent_rating_key``)."""
    return item.rating_key if item.kind is MediaKind.SHOW else item.grandparent_rating_key


def take_show(work: Work, step: str, rating_key: str, found: ServerItem, ids: Ids) -> None:
    """Add the ids of *found*, the server's item under the show's *rating_key*, to *work*
    (as the show's own ids of a show, as the show ids of a season), unless it is another
    item or not a show; say why otherwise."""
    item = work.item
    why = other_item(item, found, show=item.kind is MediaKind.SEASON, same_kind=True)
    if why is not None:
        skip_other_item(work, step, rating_key, why)
        return
    work.own_server = True
    if item.kind is MediaKind.SHOW:
        work.add(step, ids=ids)
    else:
        work.add(step, show_ids=ids)
    if not _strong(ids):
        work.fail(step, f"{step}: show ratingKey {rating_key} has no external ids")
