"""Step 3, ``plex``: the configured Plex Media Server's metadata of the item's ratingKey.

``GET /library/metadata/{ratingKey}?includeGuids=1`` (:class:`~crosswatchd.sources.
plex_server.PlexServer`), then, for an episode still short of its show's ids, the same for the
server's own ``grandparentRatingKey`` (shared by all the show's episodes). The answer is used
only when it is the played item (:func:`~crosswatchd.resolve.same.other_item`); a play on a
friend's server names another item here and the step is skipped. Answers are cached per
ratingKey under ``plex:<server>:meta:<ratingKey>`` in the shape of :func:`_value`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crosswatchd.models import Ids, MediaKind
from crosswatchd.resolve.keys import Keys, int_or_none
from crosswatchd.resolve.same import other_item, refuse_kind, skip_other_item
from crosswatchd.resolve.shows import SHOW_KINDS, show_rating_key, take_show
from crosswatchd.sources.plex_server import PlexMetadata, PlexServer

if TYPE_CHECKING:
    from crosswatchd.resolve.chain import Answers, Work

__all__ = ["PlexStep"]


def _value(meta: PlexMetadata) -> dict[str, Any]:
    """*meta* as cached (JSON-able; ``grk`` is the show's ratingKey)."""
    return {
        "kind": meta.kind,
        "subtype": meta.subtype,
        "guid": meta.guid,
        "title": meta.title,
        "year": meta.year,
        "ids": meta.ids.as_dict(),
        "guid_show_ids": meta.guid_show_ids.as_dict(),
        "guid_season": meta.guid_season,
        "guid_number": meta.guid_number,
        "season": meta.season,
        "number": meta.number,
        "grk": meta.grandparent_rating_key,
    }


def _from_value(rating_key: str, value: dict[str, Any]) -> PlexMetadata:
    """Inverse of :func:`_value`."""
    return PlexMetadata(
        rating_key=rating_key,
        kind=str(value.get("kind") or ""),
        subtype=value.get("subtype"),
        guid=value.get("guid"),
        title=str(value.get("title") or ""),
        year=int_or_none(value.get("year")),
        ids=Ids.from_dict(value.get("ids")),
        guid_show_ids=Ids.from_dict(value.get("guid_show_ids")),
        guid_season=int_or_none(value.get("guid_season")),
        guid_number=int_or_none(value.get("guid_number")),
        season=int_or_none(value.get("season")),
        number=int_or_none(value.get("number")),
        grandparent_rating_key=value.get("grk"),
    )


class PlexStep:
    """The ``plex`` step (see the module docstring): *plex* asked through *answers*."""

    name = "plex"

    def __init__(self, plex: PlexServer, answers: Answers, keys: Keys) -> None:
        self._plex = plex
        self._answers = answers
        self._keys = keys

    async def _meta(self, work: Work, rating_key: str) -> PlexMetadata | None:
        plex = self._plex

        async def fetch() -> dict[str, Any] | None:
            meta = await plex.metadata(rating_key)
            return None if meta is None else _value(meta)

        value = await self._answers.ask(work, "plex", self._keys.meta(rating_key), fetch)
        return None if value is None else _from_value(rating_key, value)

    async def _show(self, work: Work) -> None:
        """A show's or a season's: the ids of the server's show (:mod:`.shows`)."""
        rk = show_rating_key(work.item)
        if not rk:
            work.skip("plex", "plex: no ratingKey of the show")
            return
        meta = await self._meta(work, rk)
        if meta is None:
            work.fail("plex", f"plex: show ratingKey {rk} not found")
            return
        work.plex_answered = True
        take_show(work, "plex", rk, meta, meta.ids.merged(meta.guid_show_ids))

    async def run(self, work: Work) -> None:
        """Add the server's ids of the item (and its show's); raises what
        :meth:`PlexServer.metadata` raises, and :class:`~crosswatchd.errors.UnresolvedError`
        when the ratingKey is the played item's extra."""
        item = work.item
        if item.kind in SHOW_KINDS:
            await self._show(work)
            return
        rk = item.rating_key
        if not rk:
            return
        # The webhook may come from a friend's server: what this server keeps under the same
        # ratingKey (and its show) is trusted only once it is shown to be the same item.
        meta = await self._meta(work, rk)
        if meta is None:
            work.fail("plex", f"plex: ratingKey {rk} not found")
            return
        work.plex_answered = True
        want = item.kind.value
        why = other_item(item, meta)
        if why is not None:
            skip_other_item(work, "plex", rk, why)
            return
        if meta.kind != want:
            refuse_kind("plex", rk, meta.kind, meta.subtype, want)
        work.own_server = True
        if item.kind is MediaKind.MOVIE:
            work.add("plex", ids=meta.ids)
            if not meta.ids:
                work.fail("plex", f"plex: ratingKey {rk} has no external ids")
            return

        season, number = meta.position  # a legacy TV guid's numbering wins
        work.add("plex", ids=meta.ids, show_ids=meta.guid_show_ids, season=season, number=number)
        # This server's show key, not the webhook's (another server's shows differ).
        grk = meta.grandparent_rating_key
        if work.goal_met():
            return
        if not grk:
            work.fail("plex", f"plex: episode ratingKey {rk} has no show ratingKey")
            return
        show = await self._meta(work, grk)
        if show is None:
            work.fail("plex", f"plex: show ratingKey {grk} not found")
            return
        if show.kind != "show":
            refuse_kind("plex", grk, show.kind, show.subtype, "show")
        work.add("plex", show_ids=show.ids.merged(show.guid_show_ids))
        if not (show.ids or show.guid_show_ids):
            work.fail("plex", f"plex: show ratingKey {grk} has no external ids")
        elif work.item.season is None or work.item.number is None:
            work.fail("plex", "plex: season or episode number unknown")
