"""Read-only client for a Plex Media Server: item metadata for the id resolver, and any other
``MediaContainer`` read (:meth:`PlexServer.container`; history, accounts and libraries are read
through it by :mod:`crosswatchd.sources.plex_library`).

The resolver's call: ``GET {url}/library/metadata/{ratingKey}?includeGuids=1`` with
``Accept: application/json`` (without it PMS answers XML) and the ``X-Plex-Token`` header. The
answer is ``{"MediaContainer": {"Metadata": [{…}]}}``; the first entry is the item. New-agent
items list their external ids in ``Guid: [{"id": "imdb://tt…"}, …]`` (only with
``includeGuids=1``); legacy-agent items carry them in ``guid`` (reference/plex/README.md,
"Observations useful for a parser"). For an episode ``Guid[]`` holds the **episode's** ids; the
show's ids need a second call for ``grandparentRatingKey``.

This module is the Plex server's one HTTP layer, built on :mod:`crosswatchd.http`: headers,
status → error translation and in-process retries of the GET. A connection error, a timeout or
a 5xx is retried a few times with short jittered waits (none when the server asks for a longer
wait than :class:`~crosswatchd.http.GetRetry` allows), then is
:class:`~crosswatchd.errors.RetryableError` (provider ``"plex"``); 401/403 (bad ``plex.token``),
another 4xx or a body that is not the expected JSON is
:class:`~crosswatchd.errors.SourceUnavailableError`. The token never appears in a message or a
log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import aiohttp
import orjson
import structlog
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError

from crosswatchd.errors import RetryableError, SourceUnavailableError
from crosswatchd.http import Answer, GetRetry, HttpClient, Lenient, LenientList, OptInt, WireModel
from crosswatchd.models import Ids
from crosswatchd.sources.guids import guid_position, ids_from_guid_list, parse_guid

__all__ = ["PlexMetadata", "PlexServer"]

log = structlog.get_logger(__name__)

_PROVIDER: Final = "plex"


def _text(value: Any) -> Any:
    """Names and keys as text: numbers become strings, blanks and booleans ``None``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float | str):
        return str(value).strip() or None
    return value


_Text = Lenient[Annotated[str, BeforeValidator(_text)]]


class _Guid(WireModel):
    id: _Text = None


class _Item(WireModel):
    """One ``MediaContainer.Metadata[]`` entry (reference/plex/README.md)."""

    model_config = ConfigDict(populate_by_name=True)

    rating_key: _Text = Field(None, alias="ratingKey")
    type: _Text = None
    title: _Text = None
    year: OptInt = None
    guid: _Text = None
    guids: LenientList[_Guid] = Field([], alias="Guid")
    parent_index: OptInt = Field(None, alias="parentIndex")
    index: OptInt = None
    grandparent_rating_key: _Text = Field(None, alias="grandparentRatingKey")
    grandparent_title: _Text = Field(None, alias="grandparentTitle")
    subtype: _Text = None


class _Container(WireModel):
    #: Every entry keeps its place (one that is not an object reads as ``None``): the first
    #: entry is the item.
    metadata: LenientList[Lenient[_Item]] = Field([], alias="Metadata")


class _Answer(WireModel):
    media_container: Lenient[_Container] = Field(None, alias="MediaContainer")


@dataclass(frozen=True, slots=True)
class PlexMetadata:
    """One PMS library item, reduced to what id resolution needs.

    ``kind`` is Plex's ``type`` (``"movie"``, ``"episode"``, ``"show"``, ``"season"``,
    ``"clip"``…). ``ids`` are the item's own external ids from ``Guid[]`` plus, when the legacy
    ``guid`` names the item itself, that id. ``guid_show_ids``/``guid_season``/``guid_number``
    come from a legacy TV guid (``com.plexapp.agents.thetvdb://SHOW/S/E``). ``season`` and
    ``number`` are ``parentIndex``/``index`` (episodes only). ``subtype`` is set for extras
    (``"trailer"``…).
    """

    rating_key: str
    kind: str
    title: str = ""
    year: int | None = None
    guid: str | None = None
    ids: Ids = field(default_factory=Ids)
    guid_show_ids: Ids = field(default_factory=Ids)
    guid_season: int | None = None
    guid_number: int | None = None
    season: int | None = None
    number: int | None = None
    grandparent_rating_key: str | None = None
    grandparent_title: str | None = None
    subtype: str | None = None

    @property
    def position(self) -> tuple[int | None, int | None]:
        """``(season, episode number)`` to send with the show ids of the legacy TV guid: the
        guid's own numbers win over ``parentIndex``/``index``, which only fill what it lacks
        (:func:`~crosswatchd.sources.guids.guid_position`)."""
        return guid_position(parse_guid(self.guid or ""), self.season, self.number)


def _to_metadata(rating_key: str, item: _Item) -> PlexMetadata:
    """The :class:`PlexMetadata` of one parsed ``Metadata[]`` entry."""
    ids = ids_from_guid_list(g.id for g in item.guids if g.id is not None)
    show_ids = Ids()
    g_season: int | None = None
    g_number: int | None = None
    if item.guid:
        parsed = parse_guid(item.guid)
        if parsed.scope == "item":
            ids = ids.merged(parsed.ids)
        elif parsed.scope == "show":
            show_ids = parsed.ids
            g_season, g_number = parsed.season, parsed.number
    kind = (item.type or "").lower()
    episode = kind == "episode"
    return PlexMetadata(
        rating_key=item.rating_key or rating_key,
        kind=kind,
        title=item.title or "",
        year=item.year,
        guid=item.guid,
        ids=ids,
        guid_show_ids=show_ids,
        guid_season=g_season,
        guid_number=g_number,
        season=item.parent_index if episode else None,
        number=item.index if episode else None,
        grandparent_rating_key=item.grandparent_rating_key,
        grandparent_title=item.grandparent_title,
        subtype=item.subtype,
    )


class PlexServer:
    """Metadata lookups on one Plex Media Server.

    ``url`` is the server's base URL (``http://127.0.0.1:32400``), ``token`` an ``X-Plex-Token``
    with access to its libraries, ``timeout_s`` the total time per request, ``get_retry`` the
    in-process retry policy. The session is injected and not closed here. No rate limiter:
    the server is the user's own.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        token: str,
        timeout_s: float = 30.0,
        get_retry: GetRetry | None = None,
    ) -> None:
        self._where = f"plex at {url.strip().rstrip('/')}"
        self._http = HttpClient(
            service=_PROVIDER,
            session=session,
            base_url=url,
            timeout_s=timeout_s,
            on_transport_error=self._transport_error,
            headers={"Accept": "application/json", "X-Plex-Token": token},
            get_retry=get_retry,
        )

    async def metadata(self, rating_key: str) -> PlexMetadata | None:
        """The item with *rating_key*, or ``None`` when the server does not have it (404).

        ``GET /library/metadata/{ratingKey}?includeGuids=1`` with ``Accept: application/json``
        and ``X-Plex-Token``; reads ``MediaContainer.Metadata[0]``.

        Raises :class:`RetryableError` (provider ``"plex"``) on a connection error, timeout or
        5xx that persists through the in-process retries, and
        :class:`SourceUnavailableError` on 401/403, another 4xx or a non-JSON body.
        """
        rk = str(rating_key).strip()
        if not rk.isdigit():
            # Plex ratingKeys are decimal; anything else would only produce a 404 or worse.
            return None
        path = f"/library/metadata/{rk}"
        return await self._http.retry_get(lambda: self._lookup(rk, path), rating_key=rk)

    async def container(
        self, path: str, params: Mapping[str, str] | None = None, *, what: str = "request"
    ) -> dict[str, Any]:
        """The ``MediaContainer`` object of ``GET {path}`` (JSON), retried in-process on
        transient failures like :meth:`metadata`; raises like it (*what* names the request in
        messages), a 404 included (:class:`SourceUnavailableError`)."""

        async def attempt() -> dict[str, Any]:
            answer = await self._http.send("GET", path, params=params)
            data = self._json(answer, what)
            container = data.get("MediaContainer") if isinstance(data, dict) else None
            if not isinstance(container, dict):
                raise SourceUnavailableError(f"{self._where}: answer has no MediaContainer")
            return container

        return await self._http.retry_get(attempt, path=path)

    def _json(self, answer: Answer, what: str) -> Any:
        """The decoded body of a 2xx answer; the status → error translation otherwise (see
        the module docstring)."""
        where, status = self._where, answer.status
        if status in (401, 403):
            raise SourceUnavailableError(
                f"{where} refused the token (HTTP {status}); check plex.token"
            )
        if status >= 500:
            raise RetryableError(_PROVIDER, f"{where}: HTTP {status}", answer.retry_after_s)
        if status >= 400:
            raise SourceUnavailableError(f"{where}: {what} failed with HTTP {status}")
        try:
            return answer.json()
        except orjson.JSONDecodeError:
            raise SourceUnavailableError(f"{where}: answer is not JSON") from None

    async def _lookup(self, rk: str, path: str) -> PlexMetadata | None:
        """One attempt of :meth:`metadata`."""
        answer = await self._http.send("GET", path, params={"includeGuids": "1"})
        if answer.status == 404:
            return None
        data = self._json(answer, "metadata lookup")
        try:
            container = _Answer.model_validate(data).media_container
        except ValidationError:
            container = None
        if container is None:
            raise SourceUnavailableError(f"{self._where}: answer has no MediaContainer")
        if not container.metadata or container.metadata[0] is None:
            return None
        meta = _to_metadata(rk, container.metadata[0])
        log.debug("plex.metadata", rating_key=rk, kind=meta.kind, ids=meta.ids.as_dict())
        return meta

    def _transport_error(self, _: str, exc: TimeoutError | aiohttp.ClientError) -> Exception:
        if isinstance(exc, TimeoutError):
            return RetryableError(_PROVIDER, f"{self._where}: no answer within the timeout")
        return RetryableError(_PROVIDER, f"{self._where} is unreachable ({type(exc).__name__})")
