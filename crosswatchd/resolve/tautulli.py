"""Step 4, ``tautulli``: Tautulli's ``get_metadata`` of the item's ratingKey.

Tautulli watches the configured Plex server, so this step is asked only about a ratingKey the
Plex step could not answer (not configured, unknown to the server, or failed). One call gives
the item's ``guids`` and, on recent Tautulli, its show's ``grandparent_guids``; an older one
needs a second call for the show (by the server's ``grandparent_rating_key``, shared by all the
show's episodes). As with Plex, the answer is used only when it is the played item
(:func:`~crosswatchd.resolve.same.other_item`).

:class:`TautulliMetadata` is the one reading of a ``get_metadata`` answer, shared with the
history import (:mod:`crosswatchd.importer`). Answers are cached per ratingKey under
``tautulli:<server>:meta:<ratingKey>`` in the shape of :meth:`TautulliMetadata.value`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from crosswatchd.models import Ids, MediaKind
from crosswatchd.resolve.keys import Keys
from crosswatchd.resolve.same import other_item, refuse_kind, skip_other_item
from crosswatchd.resolve.shows import SHOW_KINDS, show_rating_key, take_show
from crosswatchd.sources.guids import guid_position, ids_from_guid_list, parse_guid
from crosswatchd.sources.tautulli_api import api_int, api_rating_key

if TYPE_CHECKING:
    from crosswatchd.resolve.chain import Answers, Work

__all__ = ["MetadataSource", "TautulliMetadata", "TautulliStep"]


class MetadataSource(Protocol):
    """What the resolver needs from Tautulli: ``get_metadata``'s ``data`` dict or ``None``.

    Keys read: ``media_type``, ``guid``, ``guids``, ``grandparent_guids``, ``title``, ``year``,
    ``media_index``, ``parent_media_index``, ``grandparent_rating_key`` (Tautulli API v2,
    "get_metadata").
    """

    async def get_metadata(self, rating_key: str) -> dict[str, Any] | None:
        """Metadata of the item, ``None`` when unknown; raises SourceUnavailableError."""
        ...


def _guid_list(value: Any) -> Ids:
    return ids_from_guid_list(value if isinstance(value, list) else [])


@dataclass(frozen=True, slots=True)
class TautulliMetadata:
    """One item of the Plex server Tautulli watches, as ``get_metadata`` describes it
    (api_v2_reference.md, "get_metadata").

    Fields are Tautulli's, read leniently: ``kind`` is ``media_type`` lower-cased (``""`` when
    missing); ``guid`` the raw ``guid``; ``guids``/``grandparent_guids`` the ids of those
    lists (an episode's own ids, its show's ids; the latter on recent Tautulli only);
    ``parent_media_index``/``media_index`` Plex's ``parentIndex``/``index``;
    ``grandparent_rating_key`` the show's ratingKey (decimal text). What they mean for the
    item, a legacy GUID included, is in :attr:`ids`, :attr:`show_ids` and :attr:`position`.
    """

    kind: str = ""
    guid: str | None = None
    title: str = ""
    year: int | None = None
    guids: Ids = field(default_factory=Ids)
    grandparent_guids: Ids = field(default_factory=Ids)
    parent_media_index: int | None = None
    media_index: int | None = None
    grandparent_rating_key: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> TautulliMetadata:
        """Read the ``data`` of a ``get_metadata`` answer; never raises on odd values."""
        return cls(
            kind=str(data.get("media_type") or "").lower(),
            guid=str(data.get("guid") or "") or None,
            title=str(data.get("title") or ""),
            year=api_int(data.get("year")) or None,
            guids=_guid_list(data.get("guids")),
            grandparent_guids=_guid_list(data.get("grandparent_guids")),
            parent_media_index=api_int(data.get("parent_media_index")),
            media_index=api_int(data.get("media_index")),
            grandparent_rating_key=api_rating_key(data.get("grandparent_rating_key")),
        )

    def value(self) -> dict[str, Any]:
        """As cached: ``{"kind", "guid", "title", "year", "ids", "show_ids", "season",
        "number", "grk"}`` (``ids``/``show_ids`` are ``guids``/``grandparent_guids``)."""
        return {
            "kind": self.kind,
            "guid": self.guid,
            "title": self.title,
            "year": self.year,
            "ids": self.guids.as_dict(),
            "show_ids": self.grandparent_guids.as_dict(),
            "season": self.parent_media_index,
            "number": self.media_index,
            "grk": self.grandparent_rating_key,
        }

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> TautulliMetadata:
        """Inverse of :meth:`value` (answers cached before ``year`` was kept have none)."""
        return cls(
            kind=str(value.get("kind") or ""),
            guid=value.get("guid") or None,
            title=str(value.get("title") or ""),
            year=api_int(value.get("year")),
            guids=Ids.from_dict(value.get("ids")),
            grandparent_guids=Ids.from_dict(value.get("show_ids")),
            parent_media_index=api_int(value.get("season")),
            media_index=api_int(value.get("number")),
            grandparent_rating_key=api_rating_key(value.get("grk")),
        )

    @property
    def ids(self) -> Ids:
        """The item's own ids: ``guids``, and the ids of a legacy GUID that names the item."""
        parsed = parse_guid(self.guid or "")
        return self.guids.merged(parsed.ids) if parsed.scope == "item" else self.guids

    @property
    def show_ids(self) -> Ids:
        """An episode's show ids: ``grandparent_guids``, and a legacy TV GUID's show ids."""
        parsed = parse_guid(self.guid or "")
        if parsed.scope == "show":
            return self.grandparent_guids.merged(parsed.ids)
        return self.grandparent_guids

    @property
    def position(self) -> tuple[int | None, int | None]:
        """``(season, episode number)`` to send with :attr:`show_ids`: a legacy TV GUID's own
        numbers win over ``parent_media_index``/``media_index``, which fill what it lacks
        (:func:`~crosswatchd.sources.guids.guid_position`)."""
        return guid_position(parse_guid(self.guid or ""), self.parent_media_index, self.media_index)


class TautulliStep:
    """The ``tautulli`` step (see the module docstring): *source* asked through *answers*."""

    name = "tautulli"

    def __init__(self, source: MetadataSource, answers: Answers, keys: Keys) -> None:
        self._source = source
        self._answers = answers
        self._keys = keys

    async def _meta(self, work: Work, rating_key: str) -> TautulliMetadata | None:
        source = self._source

        async def fetch() -> dict[str, Any] | None:
            data = await source.get_metadata(rating_key)
            return TautulliMetadata.from_data(data).value() if data else None

        value = await self._answers.ask(work, "tautulli", self._keys.meta(rating_key), fetch)
        return None if value is None else TautulliMetadata.from_value(value)

    async def _show(self, work: Work) -> None:
        """A show's or a season's: the ids of the server's show (:mod:`.shows`)."""
        rk = show_rating_key(work.item)
        if not rk:
            work.skip("tautulli", "tautulli: no ratingKey of the show")
            return
        meta = await self._meta(work, rk)
        if meta is None:
            work.fail("tautulli", f"tautulli: show ratingKey {rk} not found")
            return
        take_show(work, "tautulli", rk, meta, meta.ids.merged(meta.show_ids))

    async def run(self, work: Work) -> None:
        """Add Tautulli's ids of the item (and its show's); raises what ``get_metadata``
        raises, and :class:`~crosswatchd.errors.UnresolvedError` when the ratingKey is the
        played item under another type."""
        item = work.item
        if work.plex_answered:
            return
        if item.kind in SHOW_KINDS:
            await self._show(work)
            return
        rk = item.rating_key
        if not rk:
            return
        want = item.kind.value
        meta = await self._meta(work, rk)
        if meta is None:
            work.fail("tautulli", f"tautulli: ratingKey {rk} not found")
            return
        # Tautulli watches the configured server: a webhook from a friend's server names
        # another item here under the same ratingKey (see the plex step).
        why = other_item(item, meta)
        if why is not None:
            skip_other_item(work, "tautulli", rk, why)
            return
        if meta.kind != want:
            refuse_kind("tautulli", rk, meta.kind, None, want)
        work.own_server = True
        if item.kind is MediaKind.MOVIE:
            work.add("tautulli", ids=meta.ids)
            if not work.item.ids:
                work.fail("tautulli", f"tautulli: ratingKey {rk} has no external ids")
            return
        season, number = meta.position  # a legacy TV guid's numbering wins
        work.add("tautulli", ids=meta.guids, show_ids=meta.show_ids, season=season, number=number)
        grk = meta.grandparent_rating_key  # this server's show key, not the webhook's
        if work.goal_met():
            return
        if not grk:
            work.fail("tautulli", f"tautulli: episode ratingKey {rk} has no show ids")
            return
        show = await self._meta(work, grk)  # older Tautulli: no grandparent_guids
        if show is None:
            work.fail("tautulli", f"tautulli: show ratingKey {grk} not found")
            return
        if show.kind != "show":
            refuse_kind("tautulli", grk, show.kind, None, "show")
        work.add("tautulli", show_ids=show.guids)
        if not work.goal_met():
            work.fail("tautulli", f"tautulli: no show ids or episode number for ratingKey {rk}")
