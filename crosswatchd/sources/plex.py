"""Plex webhook payloads -> :class:`~crosswatchd.models.PlayEvent`.

Plex POSTs ``multipart/form-data`` with the JSON in the form part ``payload`` (Plex support
article "Webhooks"); the HTTP layer extracts that part and hands its text here.
:func:`parse_plex_payload` validates the JSON (pydantic, lenient about extra fields and numbers
sent as strings) and :func:`plex_event` turns it into a ``PlayEvent`` or an :class:`Ignored`
with a reason.

Payload shape used (reference/plex/README.md)::

    {"event": "media.stop", "user": true, "owner": true,
     "Account": {"id": 1, "title": "<plex username>"},
     "Player": {"uuid": "…", "title": "…", "local": true},
     "Metadata": {"type": "movie"|"episode"|…, "title", "year", "guid", "Guid": [{"id": …}],
                  "ratingKey": "…", "grandparentRatingKey": "…", "grandparentTitle": "…",
                  "parentIndex": 2, "index": 15, "viewOffset": ms, "duration": ms}}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from crosswatchd.errors import PayloadError
from crosswatchd.models import (
    COMPLETED_PCT,
    Action,
    Ids,
    Item,
    MediaKind,
    PlayEvent,
    Source,
)
from crosswatchd.profiles import Household, Profile
from crosswatchd.sources._edge import (
    MEDIA_KINDS,
    Ignored,
    lenient_int,
    load_json_object,
    progress_percent,
    validation_reason,
)
from crosswatchd.sources.guids import guid_position, ids_from_guid_list, parse_guid

__all__ = [
    "RATED_KINDS",
    "Ignored",
    "PlexAccount",
    "PlexMetadata",
    "PlexPayload",
    "PlexPlayer",
    "metadata_item",
    "parse_plex_payload",
    "plex_event",
    "plex_rating",
]


# Plex event name -> action; media.stop is promoted to WATCHED at >= COMPLETED_PCT.
_EVENT_ACTIONS: Final[Mapping[str, Action]] = {
    "media.play": Action.START,
    "media.resume": Action.START,
    "media.pause": Action.PAUSE,
    "media.stop": Action.STOP,
    "media.scrobble": Action.WATCHED,
    "media.rate": Action.RATE,
}
#: What can be rated: a movie, a show, a season or an episode.
RATED_KINDS: Final[Mapping[str, MediaKind]] = {
    **MEDIA_KINDS,
    "show": MediaKind.SHOW,
    "season": MediaKind.SEASON,
}


def _guid_entries(value: Any) -> Any:
    """``Guid`` is a list of ``{"id": "imdb://…"}``; tolerate bare strings and ``null``."""
    if value is None:
        return []
    if isinstance(value, list):
        return [{"id": entry} if isinstance(entry, str) else entry for entry in value]
    return value


OptInt = Annotated[int | None, BeforeValidator(lenient_int)]


class _Edge(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        coerce_numbers_to_str=True,
        allow_inf_nan=False,
        frozen=True,
    )


class PlexAccount(_Edge):
    """``Account``: the Plex user the event is about; ``title`` is the Plex username."""

    id: OptInt = None
    title: str | None = None


class PlexPlayer(_Edge):
    """``Player``: the client. ``uuid`` identifies one playback device/session."""

    uuid: str | None = None
    title: str | None = None
    local: bool | None = None


class PlexGuidEntry(_Edge):
    """One entry of the new-agent ``Guid`` array, e.g. ``{"id": "tmdb://6978"}``."""

    id: str


class PlexMetadata(_Edge):
    """``Metadata``: the library item. Times in ms (``viewOffset``, ``duration``)."""

    type: str | None = None
    subtype: str | None = None
    extra_type: str | None = Field(default=None, alias="extraType")
    title: str | None = None
    year: OptInt = None
    guid: str | None = None
    guids: Annotated[list[PlexGuidEntry], BeforeValidator(_guid_entries)] = Field(
        default_factory=list, alias="Guid"
    )
    rating_key: str | None = Field(default=None, alias="ratingKey")
    key: str | None = None
    grandparent_rating_key: str | None = Field(default=None, alias="grandparentRatingKey")
    grandparent_title: str | None = Field(default=None, alias="grandparentTitle")
    parent_rating_key: str | None = Field(default=None, alias="parentRatingKey")
    parent_title: str | None = Field(default=None, alias="parentTitle")
    parent_year: OptInt = Field(default=None, alias="parentYear")
    parent_index: OptInt = Field(default=None, alias="parentIndex")
    index: OptInt = None
    view_offset_ms: OptInt = Field(default=None, alias="viewOffset")
    duration_ms: OptInt = Field(default=None, alias="duration")


class PlexServerInfo(_Edge):
    """``Server``: the media server the event happened on; ``uuid`` is its machineIdentifier
    (ratingKeys are only unique per server)."""

    title: str | None = None
    uuid: str | None = None


class PlexPayload(_Edge):
    """The JSON of a Plex webhook's ``payload`` form part (Plex support article "Webhooks").

    ``user`` is true when the webhook's own account triggered the event, ``owner`` when it was
    sent because the server owner configured the webhook. ``rating`` is present on
    ``media.rate`` only, on Plex's 0-10 scale (half stars x 2); absent or ``null`` when the
    rating was cleared.
    """

    event: str = Field(strict=True)
    user: bool = False
    owner: bool = False
    account: PlexAccount | None = Field(default=None, alias="Account")
    player: PlexPlayer | None = Field(default=None, alias="Player")
    server: PlexServerInfo | None = Field(default=None, alias="Server")
    metadata: PlexMetadata | None = Field(default=None, alias="Metadata")
    rating: float | None = None


def parse_plex_payload(raw: bytes | str | Mapping[str, Any]) -> PlexPayload:
    """Validate the JSON of a Plex webhook ``payload`` part.

    *raw* is the JSON text (``bytes`` as UTF-8 or ``str``) or an already-decoded mapping.
    Unknown fields are ignored; numbers sent as strings are accepted. Raises
    :class:`PayloadError` with a one-line reason on invalid JSON, a missing/non-string
    ``event``, wrongly typed fields, or a ``media.*`` event without ``Metadata``.
    """
    data = load_json_object(raw, "Plex")
    try:
        payload = PlexPayload.model_validate(data)
    except ValidationError as err:
        raise PayloadError(validation_reason("Plex", err)) from None
    if payload.event.startswith("media.") and payload.metadata is None:
        raise PayloadError(f"invalid Plex payload: {payload.event} without Metadata")
    return payload


def _route(payload: PlexPayload, household: Household) -> Profile | Ignored:
    account = payload.account
    title = account.title if account else None
    account_id = str(account.id) if account and account.id is not None else None
    profile, reason = household.route_plex(title, account_id, user=payload.user)
    if profile is None:
        return Ignored(reason, account=title, account_filtered=True)
    return profile


def plex_rating(value: float | None) -> int | None:
    """The 1-10 rating of a ``media.rate`` ``rating`` (Plex's 0-10 scale, half stars x 2):
    rounded half up and clamped to 1-10; ``None`` (the rating was cleared) when absent,
    ``null``, 0 or negative. Raises :class:`PayloadError` for a value that is not finite."""
    if value is None or value <= 0:
        return None
    if not math.isfinite(value):
        raise PayloadError("invalid Plex payload: rating: must be a finite number")
    return min(10, max(1, math.floor(value + 0.5)))


def metadata_item(meta: PlexMetadata, kind: MediaKind, server: str | None) -> Item:
    """The item a ``Metadata`` object describes (a webhook's, or a library listing's, which
    has the same shape): a movie or an episode as for plays; a show with its own ids; a
    season with its own ids, its show's (legacy TV agents) and its number. *server* is the
    Plex machineIdentifier, when known (it scopes the ratingKeys)."""
    if kind in (MediaKind.MOVIE, MediaKind.EPISODE):
        return _item(meta, kind, server)
    ids = ids_from_guid_list(entry.id for entry in meta.guids)
    parsed = parse_guid(meta.guid or "")
    if kind is MediaKind.SHOW:
        if parsed.scope in ("item", "show"):
            ids = ids.merged(parsed.ids)
        return Item(
            kind=kind,
            title=meta.title or "",
            year=meta.year,
            ids=ids,
            rating_key=meta.rating_key,
            guid=meta.guid,
            server=server,
        )
    show_ids = parsed.ids if parsed.scope == "show" else Ids()
    season = parsed.season if parsed.season is not None else meta.index
    return Item(
        kind=kind,
        title=meta.title or "",
        ids=ids,
        show_title=meta.parent_title,
        show_year=meta.parent_year,
        show_ids=show_ids,
        season=season,
        rating_key=meta.rating_key,
        grandparent_rating_key=meta.parent_rating_key,
        guid=meta.guid,
        server=server,
    )


def _item(meta: PlexMetadata, kind: MediaKind, server: str | None) -> Item:
    ids = ids_from_guid_list(entry.id for entry in meta.guids)
    show_ids = Ids()
    season = meta.parent_index if kind is MediaKind.EPISODE else None
    number = meta.index if kind is MediaKind.EPISODE else None
    parsed = parse_guid(meta.guid or "")
    if parsed.scope == "item":
        ids = ids.merged(parsed.ids)
    elif parsed.scope == "show" and kind is MediaKind.EPISODE:
        show_ids = parsed.ids
        season, number = guid_position(parsed, season, number)
    episode = kind is MediaKind.EPISODE
    return Item(
        kind=kind,
        title=meta.title or "",
        year=meta.year,  # an episode's own year; the show's year is not in the payload
        ids=ids,
        show_title=meta.grandparent_title if episode else None,
        show_ids=show_ids,
        season=season,
        number=number,
        rating_key=meta.rating_key,
        grandparent_rating_key=meta.grandparent_rating_key if episode else None,
        guid=meta.guid,
        server=server,
    )


def plex_event(
    payload: PlexPayload, *, received_at: datetime, household: Household
) -> PlayEvent | Ignored:
    """Turn a validated Plex payload into a :class:`PlayEvent`, or say why it is ignored.

    - ``media.play``/``media.resume`` -> ``START``, ``media.pause`` -> ``PAUSE``,
      ``media.stop`` -> ``STOP`` (``WATCHED`` when progress >= :data:`COMPLETED_PCT`),
      ``media.scrobble`` -> ``WATCHED`` (Plex fires it past 90 %), ``media.rate`` -> ``RATE``
      of a movie, show, season or episode with ``rating`` (:func:`plex_rating`: 1-10, or
      ``None`` when cleared). Any other event (``library.new``, ``admin.*`` …) ->
      :class:`Ignored`.
    - *household* routes the event to the profile (household member) whose Plex account it
      is, by ``Account.title`` (case-insensitive) or ``Account.id``; with the implicit profile
      and an empty ``plex.accounts`` only ``"user": true`` events are accepted. An account in
      no profile -> :class:`Ignored` (``account_filtered``).
    - Only ``Metadata.type`` ``movie``/``episode`` count; tracks, clips and extras (any
      ``subtype`` or ``extraType``, e.g. trailers) are ignored.
    - Ids: ``Guid[]`` -> ``item.ids`` (an episode's own ids); a legacy ``guid`` adds item ids
      or, for TV agents, ``show_ids`` plus season/number fallbacks.
    - ``occurred_at`` is *received_at* in UTC (Plex sends no event time); ``session`` is
      ``Player.uuid``; ``progress_pct`` is ``viewOffset/duration`` or ``None`` when
      ``viewOffset`` is absent — also on ``media.scrobble``, whose ``WATCHED`` already says the
      play completed (no progress value is invented).

    Raises :class:`PayloadError` for a ``media.*`` event without ``Metadata`` and
    ``ValueError`` for a naive *received_at* (a caller bug).
    """
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    account = payload.account.title if payload.account else None
    action = _EVENT_ACTIONS.get(payload.event)
    if action is None:
        return Ignored(f"plex event {payload.event} is not a playback event", account=account)
    meta = payload.metadata
    if meta is None:
        raise PayloadError(f"invalid Plex payload: {payload.event} without Metadata")
    routed = _route(payload, household)
    if isinstance(routed, Ignored):
        return routed
    if not meta.type:
        return Ignored("plex Metadata.type is missing: not a movie or episode", account=account)
    rating = action is Action.RATE
    kind = (RATED_KINDS if rating else MEDIA_KINDS).get(meta.type.lower())
    if kind is None:
        what = "a movie, show, season or episode" if rating else "a movie or episode"
        return Ignored(f"plex item type {meta.type!r} is not {what}", account=account)
    if meta.subtype or meta.extra_type:
        if parse_guid(meta.guid or "").agent in ("none", "local"):
            return Ignored(
                f"plex item is a personal video ({meta.subtype or meta.extra_type}, no agent),"
                " not a catalogued movie or episode",
                account=account,
            )
        extra = meta.subtype or f"extraType {meta.extra_type}"
        return Ignored(f"plex item is an extra ({extra}), not a movie or episode", account=account)
    if not (meta.guid or meta.guids or meta.rating_key or meta.key or meta.title or meta.year):
        raise PayloadError(
            "invalid Plex payload: Metadata has no guid, Guid, ratingKey, key, title or year:"
            " nothing identifies the item"
        )
    server = payload.server.uuid if payload.server else None
    if rating:
        return PlayEvent(
            source=Source.PLEX,
            action=action,
            account=account or "",
            item=metadata_item(meta, kind, server),
            occurred_at=received_at.astimezone(UTC),
            profile=routed.name,
            rating=plex_rating(payload.rating),
        )
    progress = progress_percent(meta.view_offset_ms, meta.duration_ms)
    if action is Action.STOP and progress is not None and progress >= COMPLETED_PCT:
        action = Action.WATCHED
    return PlayEvent(
        source=Source.PLEX,
        action=action,
        account=account or "",
        item=_item(meta, kind, server),
        occurred_at=received_at.astimezone(UTC),
        progress_pct=progress,
        view_offset_ms=meta.view_offset_ms,
        duration_ms=meta.duration_ms,
        session=payload.player.uuid if payload.player else None,
        profile=routed.name,
    )
