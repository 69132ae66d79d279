"""Is the item under a ratingKey the one that was played?

A ratingKey names an item on one Plex server, at one time. Plex webhooks also report plays on
friends' servers (the server fires the webhooks of shared users too: reference/plex/README.md),
whose ratingKeys name unrelated items on the configured server; and a history row's
ratingKey may have been given to another item since the play (a library rebuilt). So what a
server keeps under a ratingKey is used only once :func:`other_item` finds nothing against it:
by the Plex and Tautulli steps of the resolver and by the Tautulli history import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn, Protocol

import structlog

from crosswatchd.errors import UnresolvedError
from crosswatchd.models import Item, MediaKind
from crosswatchd.resolve.keys import norm_title
from crosswatchd.sources.guids import guid_base

if TYPE_CHECKING:
    from crosswatchd.resolve.chain import Work

__all__ = ["ServerItem", "other_item", "refuse_kind", "skip_other_item"]

log = structlog.get_logger(__name__)


class ServerItem(Protocol):
    """What a server says about the item under a ratingKey:
    :class:`~crosswatchd.sources.plex_server.PlexMetadata`,
    :class:`~crosswatchd.resolve.tautulli.TautulliMetadata`."""

    @property
    def kind(self) -> str:
        """``"movie"``, ``"episode"``, ``"show"``, ``"clip"`` …; ``""`` when unknown."""
        ...

    @property
    def guid(self) -> str | None:
        """The item's GUID as the server has it."""
        ...

    @property
    def title(self) -> str:
        """The item's title; ``""`` when unknown."""
        ...

    @property
    def position(self) -> tuple[int | None, int | None]:
        """An episode's season and number, in the numbering that goes with its show ids."""
        ...


def _a(kind: str) -> str:
    """``"a movie"``, ``"an episode"``, ``"an item of unknown type"`` for an empty *kind*."""
    kind = kind or "item of unknown type"
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _position(season: int | None, number: int | None) -> str:
    s = "??" if season is None else f"{season:02d}"
    e = "??" if number is None else f"{number:02d}"
    return f"S{s}E{e}"


def other_item(
    item: Item, found: ServerItem, *, show: bool = False, same_kind: bool = False
) -> str | None:
    """Why *found*, the server's item under the play's ratingKey, is not the played *item*,
    or ``None`` when nothing says so. With *show*, *found* is compared with *item*'s show
    instead (``show_title``; a show has no GUID or position in a play).

    With a known ``item.guid`` the server's GUID must equal it (query such as ``?lang=en``
    ignored); without one, the titles must agree when both are known, and the types too
    unless the titles agree (then a wrong type is the same library entry's extra: a caller
    that refuses extras itself, as the resolver does, checks the type after this; others
    pass *same_kind* to have it checked here). For an episode a known season and number must
    agree as well. The reason reads ``"<what the server has>, the play <what was played>"``.
    """
    kind, title = found.kind, found.title
    want_kind = "show" if show else item.kind.value
    want_title = (item.show_title or "") if show else item.title
    played = "the play's show" if show else "the play"
    want = "" if show else guid_base(item.guid)
    if want:
        have = guid_base(found.guid)
        if have != want:
            return f"guid {have or 'unknown'}, {played}'s {want}"
    else:
        titled = bool(want_title.strip() and title.strip())
        if titled and norm_title(want_title) != norm_title(title):
            return f"titled {title!r}, {played} {want_title!r}"
        if not titled and kind != want_kind:
            return f"{_a(kind)}, {played} {_a(want_kind)}"
    season, number = found.position
    moved = (item.season is not None and season is not None and season != item.season) or (
        item.number is not None and number is not None and number != item.number
    )
    if moved and not show and item.kind is MediaKind.EPISODE and kind == "episode":
        return f"{_position(season, number)}, {played} {_position(item.season, item.number)}"
    if same_kind and kind != want_kind:
        return f"{_a(kind)}, {played} {_a(want_kind)}"
    return None


def skip_other_item(work: Work, step: str, rating_key: str, why: str) -> None:
    """The configured server's *rating_key* is another item: skip *step*, say *why*.

    Nothing more is asked: the server's answer stays cached (so the check costs no request
    next time) and the chain goes on with the searches.
    """
    log.info(
        "resolve.plex_other_server",
        step=step,
        item=work.item.label(),
        rating_key=rating_key,
        why=why,
    )
    work.fail(
        step,
        f"{step}: ratingKey {rating_key} is another item on the configured server ({why}); "
        "the play was probably on another Plex server",
    )


def refuse_kind(step: str, rating_key: str, found: str, subtype: str | None, want: str) -> NoReturn:
    """The item under *rating_key* is the played one but of another type (an extra such as a
    trailer, *subtype*): raise :class:`UnresolvedError` for *step*; it never resolves."""
    what = f"{found} ({subtype})" if subtype else (found or "item of unknown type")
    raise UnresolvedError(f"{step}: ratingKey {rating_key} is a {what}, not a {want}", step)
