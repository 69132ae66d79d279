"""What a watchlist holds, as the pass compares lists: an item's identity, and groups of items
that are one thing.

Identity (issue 17): imdb, tmdb and tvdb ids, typed by kind, so a movie and a show that share
a TMDB number (TMDB numbers movies and shows apart) are never one item:
``movie:imdb:tt0090728``, ``movie:tmdb:6978``, ``show:tvdb:73871``. Two items are the same
when they share any key; trakt and simkl ids identify an item on one service only and are not
used. An item with none of the three ids cannot be compared: a Plex row like that is reported
as *unidentified* and never sent (no title matching).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from crosswatchd.models import Ids, Item, MediaKind

__all__ = ["IDENTITY_SCHEMES", "Groups", "identity_keys", "merged"]

#: The ids that identify a watchlist item across services.
IDENTITY_SCHEMES: Final = ("imdb", "tmdb", "tvdb")


def identity_keys(item: Item) -> frozenset[str]:
    """The identity keys of a movie or show (episodes count as their show, seasons not at
    all): ``{"movie:imdb:tt0090728", "movie:tmdb:6978"}``; empty without imdb/tmdb/tvdb."""
    if item.kind is MediaKind.MOVIE:
        prefix, ids = "movie", item.ids
    elif item.kind is MediaKind.SHOW:
        prefix, ids = "show", item.ids.merged(item.show_ids)
    elif item.kind is MediaKind.EPISODE:
        prefix, ids = "show", item.show_ids
    else:
        return frozenset()
    return frozenset(
        f"{prefix}:{scheme}:{value}"
        for scheme in IDENTITY_SCHEMES
        if (value := getattr(ids, scheme))
    )


def merged(items: Iterable[Item]) -> Item:
    """The first of *items* with the ids of all of them filled in (the first wins a conflict):
    what is sent to a side that lacks the item, so each service finds the ids it takes."""
    first: Item | None = None
    ids = Ids()
    for item in items:
        first = first or item
        ids = ids.merged(
            item.ids.merged(item.show_ids) if item.kind is MediaKind.SHOW else item.ids
        )
    if first is None:
        raise ValueError("merged() of no items")
    return Item(first.kind, first.title, first.year, ids=ids, guid=first.guid)


class Groups:
    """Items that share identity keys, joined into groups (a union-find over keys): the same
    film listed by Plex with imdb + tmdb and by SIMKL with tmdb only is one group. Add every
    item first, then ask :meth:`group_of`."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def _root(self, key: str) -> str:
        parent = self._parent
        root = key
        while parent[root] != root:
            root = parent[root]
        while parent[key] != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    def add(self, keys: Iterable[str]) -> None:
        """Join *keys* into one group."""
        first: str | None = None
        for key in keys:
            self._parent.setdefault(key, key)
            if first is None:
                first = self._root(key)
            else:
                root = self._root(key)
                if root != first:
                    self._parent[root] = first
        return None

    def group_of(self, keys: Iterable[str]) -> str | None:
        """The group of an item with *keys* (one of the keys stands for it), or None."""
        for key in keys:
            if key in self._parent:
                return self._root(key)
        return None
