"""What the resolver knows an item by, and what it remembers about it.

Two kinds of key share the :class:`~crosswatchd.resolve.cache.IdCache`:

- **item keys** (:meth:`Keys.of`), the handles of a final identity, most specific first::

      item:guid:<guid without query>          plex://movie/…, com.plexapp.agents.thetvdb://…
      item:<server>:rk:<ratingKey>            per Plex server (only once it is confirmed)
      item:<kind>:<id name>:<id>              item:movie:imdb:tt0072684, item:episode:tvdb:…
      item:<server>:grk:<ratingKey>:<S>:<E>   the show's ratingKey and the position
      item:show:<id name>:<id>:<S>:<E>        item:show:tvdb:73871:2:15
      item:title:movie:<year>:<title>         with the title fallback, when nothing else
      item:title:show:<year>:<title>:<S>:<E>

  The value under them is an *identity* (:func:`identity_value`): ``{"kind", "ids",
  "show_ids", "season", "number"}``, merged into a later item by :func:`with_identity`.
- **question keys** (``<step>:<query>``, see :meth:`Keys.meta` and :func:`id_query`), under
  which a step's answer from an outside service is kept, positive or negative.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.sources.guids import ParsedGuid, parse_guid

if TYPE_CHECKING:
    from crosswatchd.resolve.cache import CacheEntry

__all__ = [
    "NOT_CATALOGUED",
    "Keys",
    "has_ids",
    "id_query",
    "identity_value",
    "int_or_none",
    "norm_title",
    "parsed_guid",
    "with_identity",
]

#: GUID agents of personal media and extras: never an external id, never searched by title.
NOT_CATALOGUED: Final = frozenset({"local", "none", "iva"})
_ID_FIELDS: Final = ("imdb", "tmdb", "tvdb", "trakt", "simkl", "anidb")
#: What parse_guid answers for any ``plex://`` GUID (checked by a test), without the regex.
_PLEX_GUID: Final = ParsedGuid(agent="plex")


def parsed_guid(item: Item) -> ParsedGuid | None:
    """``parse_guid(item.guid)``, ``None`` without a GUID; ``plex://`` GUIDs (new agents,
    which carry no external id) are answered without parsing."""
    guid = item.guid
    if not guid:
        return None
    if guid.startswith("plex://"):
        return _PLEX_GUID
    return parse_guid(guid)


def has_ids(ids: Ids) -> bool:
    """``bool(ids)`` without the generator (hot path)."""
    return bool(ids.imdb or ids.tmdb or ids.tvdb or ids.trakt or ids.simkl or ids.anidb)


def int_or_none(value: Any) -> int | None:
    """An int from a stored answer: an int (not a bool) or a string of digits; else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def norm_title(title: str) -> str:
    """*title* in Unicode NFC, case-folded, with runs of white space made one space (for
    exact matching: a decomposed ``Bande à part`` equals the composed one, ``DUNE`` equals
    ``Dune``)."""
    if title.isascii():
        return " ".join(title.casefold().split())
    return " ".join(
        unicodedata.normalize("NFC", unicodedata.normalize("NFC", title).casefold()).split()
    )


def id_query(kind: str, id_type: str, value: str) -> str:
    """The question "which item has this id": ``<kind>:<id name>:<id>``."""
    return f"{kind}:{id_type}:{value}"


@dataclass(frozen=True, slots=True)
class Keys:
    """The key scheme of one resolver.

    ``server_id`` namespaces Plex ratingKeys (they identify an item on one server only);
    ``title_fallback`` adds the exact title + year handle to items that have nothing else.
    """

    server_id: str = "plex"
    title_fallback: bool = False

    def meta(self, rating_key: str) -> str:
        """The question "what does the configured server keep under *rating_key*".

        ``:meta:`` (not the former ``:rk:``): answers cached before the GUID was kept are
        ignored.
        """
        return f"{self.server_id}:meta:{rating_key}"

    def of(
        self, item: Item, parsed: ParsedGuid | None, *, own_server: bool = False
    ) -> Iterator[str]:
        """Item keys of *item*'s stable handles, most specific first: its GUID (*parsed* is
        its parse, ``None`` to leave it out), its ratingKey (per server), its typed external
        ids, grandparent ratingKey or show ids with season/number (the handles of
        :func:`~crosswatchd.models.item_keys`); with title fallback on, an exact title + year
        when it has nothing else.

        RatingKeys only name an item on one server, and Plex webhooks also report plays on
        friends' servers, whose ratingKeys mean something else here. So an item with a GUID
        (every Plex webhook item) neither reads nor writes the per-server handles, unless
        *own_server* says the configured server confirmed the ratingKey is this item's; items
        without a GUID come only from this server's own sources (Tautulli).
        """
        guid = item.guid
        if guid and parsed is not None and parsed.agent and parsed.agent not in NOT_CATALOGUED:
            base = guid.split("?", 1)[0]
            if item.kind is MediaKind.MOVIE:
                ok = parsed.scope != "show" and (
                    not base.startswith("plex://") or base.startswith("plex://movie/")
                )
            else:
                ok = base.startswith("plex://episode/") or (
                    parsed.scope == "show" and parsed.number is not None
                )
            if ok:
                yield "item:guid:" + base
        # The same typed handles as models.item_keys, generated lazily: the warm path usually
        # stops at the first one.
        handles = 0
        per_server = own_server or not guid
        if per_server and item.rating_key:
            handles += 1
            yield f"item:{self.server_id}:rk:{item.rating_key}"
        kind = item.kind.value
        ids = item.ids
        for name in _ID_FIELDS:
            if value := getattr(ids, name):
                handles += 1
                yield f"item:{kind}:{name}:{value}"
        if item.kind is MediaKind.EPISODE and item.season is not None and item.number is not None:
            se = f"{item.season}:{item.number}"
            if per_server and item.grandparent_rating_key:
                handles += 1
                yield f"item:{self.server_id}:grk:{item.grandparent_rating_key}:{se}"
            show_ids = item.show_ids
            for name in _ID_FIELDS:
                if value := getattr(show_ids, name):
                    handles += 1
                    yield f"item:show:{name}:{value}:{se}"
        if not handles and not guid and self.title_fallback:
            # Nothing but a title: the title step's own (exact, unique) answer, remembered.
            if item.kind is MediaKind.MOVIE and item.title and item.year is not None:
                yield f"item:title:movie:{item.year}:{norm_title(item.title)}"
            elif (
                item.kind is MediaKind.EPISODE
                and item.show_title
                and item.show_year is not None
                and item.number is not None
            ):
                yield (
                    f"item:title:show:{item.show_year}:{norm_title(item.show_title)}:"
                    f"{item.season}:{item.number}"
                )


# -- the identity stored under item keys ----------------------------------------------------


def identity_value(item: Item) -> dict[str, Any]:
    """The final identity of *item* as stored: ``{"kind", "ids", "show_ids", "season",
    "number"}`` (ids as dicts of known ids)."""
    return {
        "kind": item.kind.value,
        "ids": item.ids.as_dict(),
        "show_ids": item.show_ids.as_dict(),
        "season": item.season,
        "number": item.number,
    }


@dataclass(slots=True)
class _Identity:
    """A cached final identity, decoded once per in-memory cache entry.

    ``last_in``/``last_out`` remember the latest merge: a source reports the same item several
    times in a row (play, pause, resume, stop), and an equal input gives an equal output.
    """

    ids: Ids
    show_ids: Ids
    season: int | None
    number: int | None
    last_in: Item | None = None
    last_out: Item | None = None


def with_identity(item: Item, entry: CacheEntry) -> Item:
    """*item* with the identity of a positive cache *entry* merged in (the warm path: keep it
    cheap). The item's own ids, season and number win; everything else it has is kept."""
    memo: _Identity | None = entry.memo
    if memo is None:
        value = entry.value or {}
        memo = entry.memo = _Identity(
            Ids.from_dict(value.get("ids")),
            Ids.from_dict(value.get("show_ids")),
            int_or_none(value.get("season")),
            int_or_none(value.get("number")),
        )
    elif memo.last_in == item and memo.last_out is not None:
        return memo.last_out
    ids = item.ids.merged(memo.ids) if has_ids(item.ids) else memo.ids
    show_ids = item.show_ids.merged(memo.show_ids) if has_ids(item.show_ids) else memo.show_ids
    season, number = item.season, item.number
    if item.kind is MediaKind.EPISODE:
        season = season if season is not None else memo.season
        number = number if number is not None else memo.number
    out = Item(  # every field, in order (a test checks none is lost): replace() is slower
        item.kind,
        item.title,
        item.year,
        ids,
        item.show_title,
        item.show_year,
        show_ids,
        season,
        number,
        item.rating_key,
        item.grandparent_rating_key,
        item.guid,
        item.server,
    )
    memo.last_in, memo.last_out = item, out
    return out
