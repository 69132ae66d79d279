"""Tautulli webhook bodies -> :class:`~crosswatchd.models.PlayEvent`.

Tautulli's Webhook agent sends the JSON body template of ``config/tautulli-webhook.json`` with
every ``{param}`` substituted (reference/tautulli/notification_parameters.md, "Webhook agent"):
all values arrive as JSON **strings**; a known-but-missing value is ``""``, an unknown name
stays the literal ``"{param}"``. For **episodes** ``imdb_id``/``themoviedb_id``/``thetvdb_id``
are the **show's** ids (taken from ``grandparent_guids``); ``{action}`` is the trigger name
without ``on_`` (``play``, ``pause``, ``resume``, ``stop``, ``watched``, ``created`` …).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from crosswatchd.errors import PayloadError
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.profiles import Household
from crosswatchd.sources._edge import (
    MEDIA_KINDS,
    Ignored,
    bounded,
    load_json_object,
    percent,
    progress_percent,
    validation_reason,
)
from crosswatchd.sources.guids import guid_position, normalize_id, parse_guid

__all__ = [
    "Ignored",
    "TautulliWebhook",
    "parse_tautulli_body",
    "tautulli_event",
]

_PLACEHOLDER_RE: Final = re.compile(r"^\{[^{}]*\}$")
_LEADING_INT_RE: Final = re.compile(r"^\s*(\d+)(?:\.0*)?\s*(?:-\s*\d+\s*)?$")
_ACTIONS: Final[Mapping[str, Action]] = {
    "play": Action.START,
    "resume": Action.START,
    "pause": Action.PAUSE,
    # A stop is live state only: Tautulli sends its own `watched` action at its threshold.
    "stop": Action.STOP,
    "watched": Action.WATCHED,
}


def _text(value: Any) -> Any:
    """Strings stripped; ``""``/``"{param}"``/``null`` -> None; ints and floats -> text."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value  # rejected by the str field: a JSON literal is never substituted
    if isinstance(value, int | float):
        value = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if isinstance(value, str):
        text = value.strip()
        return None if not text or _PLACEHOLDER_RE.match(text) else text
    return value


def _int(value: Any) -> Any:
    """Like :func:`_text`, then an integer. A range such as ``"6-10"`` (Tautulli's form for a
    multi-episode file) gives its first number, 6."""
    text = _text(value)
    if not isinstance(text, str):
        return text
    match = _LEADING_INT_RE.match(text)
    if not match:
        return text  # pydantic reports the bad value
    return bounded(int(match.group(1)))


def _float(value: Any) -> Any:
    return _text(value)


OptStr = Annotated[str | None, BeforeValidator(_text)]
OptInt = Annotated[int | None, BeforeValidator(_int)]
OptFloat = Annotated[float | None, BeforeValidator(_float)]


class TautulliWebhook(BaseModel):
    """The body of ``config/tautulli-webhook.json`` after Tautulli's substitution.

    Every field is ``None`` when missing (``""`` or an unsubstituted ``"{param}"``). Units:
    ``unixtime`` seconds since the epoch (UTC); ``progress_percent`` 0-100;
    ``view_offset``/``duration_ms`` milliseconds. Unknown fields are ignored.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

    action: OptStr = None
    unixtime: OptFloat = None
    username: OptStr = None
    user_id: OptStr = None
    media_type: OptStr = None
    title: OptStr = None
    show_name: OptStr = None
    season_num: OptInt = None
    episode_num: OptInt = None
    year: OptInt = None
    rating_key: OptStr = None
    grandparent_rating_key: OptStr = None
    guid: OptStr = None
    imdb_id: OptStr = None
    themoviedb_id: OptStr = None
    thetvdb_id: OptStr = None
    progress_percent: OptFloat = None
    view_offset: OptInt = None
    duration_ms: OptInt = None
    session_key: OptStr = None
    user_rating: OptFloat = None
    server_machine_id: OptStr = None


def parse_tautulli_body(raw: bytes | str | Mapping[str, Any]) -> TautulliWebhook:
    """Validate a Tautulli webhook body (JSON text as ``bytes``/``str``, or a decoded mapping).

    Values may be strings (as Tautulli sends them) or numbers. Raises :class:`PayloadError`
    with a one-line reason for bad JSON, a non-object top level, or a value of the wrong
    type (e.g. ``"year": "abc"``, a list where text belongs).
    """
    data = load_json_object(raw, "Tautulli")
    try:
        return TautulliWebhook.model_validate(data)
    except ValidationError as err:
        raise PayloadError(validation_reason("Tautulli", err)) from None


def _occurred_at(unixtime: float | None, received_at: datetime) -> datetime:
    if unixtime is None or unixtime <= 0:
        return received_at.astimezone(UTC)
    try:
        return datetime.fromtimestamp(unixtime, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise PayloadError(
            f"invalid Tautulli payload: unixtime: {unixtime!r} is not a time"
        ) from None


def _ids(body: TautulliWebhook) -> Ids:
    return Ids(
        imdb=normalize_id("imdb", body.imdb_id),
        tmdb=normalize_id("tmdb", body.themoviedb_id),
        tvdb=normalize_id("tvdb", body.thetvdb_id),
    )


def _item(body: TautulliWebhook, kind: MediaKind, server: str | None) -> Item:
    parsed = parse_guid(body.guid or "")
    template_ids = _ids(body)
    title = body.title or ""
    if kind is MediaKind.MOVIE:
        ids = template_ids.merged(parsed.ids) if parsed.scope == "item" else template_ids
        return Item(
            kind=kind,
            title=title,
            year=body.year,
            ids=ids,
            rating_key=body.rating_key,
            guid=body.guid,
            server=server,
        )
    show_ids = template_ids
    season, number = body.season_num, body.episode_num
    ids = Ids()
    if parsed.scope == "show":
        show_ids = show_ids.merged(parsed.ids)
        season, number = guid_position(parsed, season, number)
    elif parsed.scope == "item":
        ids = parsed.ids
    # Tautulli's {title} is the full title, "Show - Episode", for episodes.
    if body.show_name and title.startswith(f"{body.show_name} - "):
        title = title.removeprefix(f"{body.show_name} - ")
    return Item(
        kind=kind,
        title=title,
        year=body.year,  # the episode's release year, not the show's
        ids=ids,
        show_title=body.show_name,
        show_ids=show_ids,
        season=season,
        number=number,
        rating_key=body.rating_key,
        grandparent_rating_key=body.grandparent_rating_key,
        guid=body.guid,
        server=server,
    )


def _progress(body: TautulliWebhook) -> float | None:
    if body.progress_percent is not None:
        return percent(body.progress_percent)
    return progress_percent(body.view_offset, body.duration_ms)


_TEMPLATE_HINT = (
    "the JSON Data template (config/tautulli-webhook.json) may not be pasted for this trigger"
    " (Tautulli: Settings, Notification Agents, Webhook, Data)"
)


def tautulli_event(
    body: TautulliWebhook,
    *,
    received_at: datetime,
    household: Household,
    default_server: str | None = None,
) -> PlayEvent | Ignored:
    """Turn a validated Tautulli body into a :class:`PlayEvent`, or say why it is ignored.

    - ``action``: ``play``/``resume`` -> ``START``, ``pause`` -> ``PAUSE``, ``stop`` -> ``STOP``
      (always: Tautulli sends a separate ``watched`` action at its own threshold),
      ``watched`` -> ``WATCHED``; anything else -> :class:`Ignored`.
    - *household* routes ``username`` (case-insensitive) to its profile; a username in no
      profile is :class:`Ignored` (the implicit profile's empty ``tautulli.users`` accepts
      nobody). ``media_type`` must be ``movie`` or ``episode``.
    - Movies: ``imdb_id``/``themoviedb_id``/``thetvdb_id`` -> ``item.ids``. Episodes: those
      are the show's ids -> ``item.show_ids``; ``season_num``/``episode_num`` -> season/number;
      ``show_name`` -> ``show_title``. ``guid`` is parsed with
      :func:`~crosswatchd.sources.guids.parse_guid` to fill gaps.
    - ``server_machine_id`` scopes the ratingKeys; a template without it (older copies)
      uses *default_server* (the daemon's best knowledge of the Tautulli server).
    - ``occurred_at`` = ``unixtime`` (UTC), else *received_at*. ``progress_pct`` from
      ``progress_percent``, else ``view_offset/duration_ms``. ``session`` = ``session_key``.

    Raises :class:`PayloadError` when a playback action has no ``username`` or ``unixtime`` is
    out of range, and ``ValueError`` for a naive *received_at* (a caller bug).
    """
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    action_name = (body.action or "").lower()
    action = _ACTIONS.get(action_name)
    if action is None:
        shown = action_name or "(missing)"
        return Ignored(f"tautulli action {shown} is not a playback action", account=body.username)
    username = body.username
    if username is None:
        raise PayloadError(f"invalid Tautulli payload: username is missing; {_TEMPLATE_HINT}")
    if not (
        body.imdb_id
        or body.themoviedb_id
        or body.thetvdb_id
        or body.guid
        or body.rating_key
        or body.title
        or body.show_name
    ):
        raise PayloadError(
            "invalid Tautulli payload: no ids, guid, rating_key, title or show_name (all empty"
            f" or unsubstituted {{placeholders}}); {_TEMPLATE_HINT}"
        )
    profile, refusal = household.route_tautulli(username)
    if profile is None:
        return Ignored(refusal, account=username, account_filtered=True)
    kind = MEDIA_KINDS.get((body.media_type or "").lower())
    if kind is None:
        return Ignored(
            f"tautulli media_type {body.media_type!r} is not a movie or episode", account=username
        )
    return PlayEvent(
        source=Source.TAUTULLI,
        action=action,
        account=username,
        item=_item(body, kind, body.server_machine_id or default_server),
        occurred_at=_occurred_at(body.unixtime, received_at),
        progress_pct=_progress(body),
        view_offset_ms=body.view_offset,
        duration_ms=body.duration_ms,
        session=body.session_key,
        profile=profile.name,
    )
