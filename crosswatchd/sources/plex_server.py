"""Read-only client for a Plex Media Server's metadata API, used by the id resolver.

One call: ``GET {url}/library/metadata/{ratingKey}?includeGuids=1`` with
``Accept: application/json`` (without it PMS answers XML) and the ``X-Plex-Token`` header. The
answer is ``{"MediaContainer": {"Metadata": [{…}]}}``; the first entry is the item. New-agent
items list their external ids in ``Guid: [{"id": "imdb://tt…"}, …]`` (only with
``includeGuids=1``); legacy-agent items carry them in ``guid`` (reference/plex/README.md,
"Observations useful for a parser"). For an episode ``Guid[]`` holds the **episode's** ids; the
show's ids need a second call for ``grandparentRatingKey``.

Errors: a connection error, a timeout or a 5xx is :class:`~crosswatchd.errors.RetryableError`
(provider ``"plex"``); 401/403 (bad ``plex.token``), another 4xx or a body that is not the
expected JSON is :class:`~crosswatchd.errors.SourceUnavailableError`. The token never appears in
a message or a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson
import structlog

from crosswatchd.errors import RetryableError, SourceUnavailableError
from crosswatchd.models import Ids
from crosswatchd.sources.guids import ids_from_guid_list, parse_guid

__all__ = ["PlexMetadata", "PlexServer"]

log = structlog.get_logger(__name__)

_PROVIDER: Final = "plex"


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _opt_str(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


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

    @classmethod
    def from_json(cls, rating_key: str, meta: dict[str, Any]) -> PlexMetadata:
        """Build from one ``MediaContainer.Metadata[]`` entry (lenient about types)."""
        raw_guids = meta.get("Guid")
        entries = (
            [e.get("id") for e in raw_guids if isinstance(e, dict)]
            if isinstance(raw_guids, list)
            else []
        )
        ids = ids_from_guid_list(e for e in entries if isinstance(e, str))
        guid = _opt_str(meta.get("guid"))
        show_ids = Ids()
        g_season: int | None = None
        g_number: int | None = None
        if guid:
            parsed = parse_guid(guid)
            if parsed.scope == "item":
                ids = ids.merged(parsed.ids)
            elif parsed.scope == "show":
                show_ids = parsed.ids
                g_season, g_number = parsed.season, parsed.number
        kind = (_opt_str(meta.get("type")) or "").lower()
        episode = kind == "episode"
        return cls(
            rating_key=_opt_str(meta.get("ratingKey")) or rating_key,
            kind=kind,
            title=_opt_str(meta.get("title")) or "",
            year=_opt_int(meta.get("year")),
            guid=guid,
            ids=ids,
            guid_show_ids=show_ids,
            guid_season=g_season,
            guid_number=g_number,
            season=_opt_int(meta.get("parentIndex")) if episode else None,
            number=_opt_int(meta.get("index")) if episode else None,
            grandparent_rating_key=_opt_str(meta.get("grandparentRatingKey")),
            grandparent_title=_opt_str(meta.get("grandparentTitle")),
            subtype=_opt_str(meta.get("subtype")),
        )


class PlexServer:
    """Metadata lookups on one Plex Media Server.

    ``url`` is the server's base URL (``http://127.0.0.1:32400``), ``token`` an ``X-Plex-Token``
    with access to its libraries, ``timeout_s`` the total time per request. The session is
    injected and not closed here. No rate limiter: the server is the user's own.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        token: str,
        timeout_s: float = 30.0,
    ) -> None:
        self._session = session
        self._base = url.strip().rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    @property
    def base_url(self) -> str:
        """The configured base URL (never contains the token)."""
        return self._base

    async def metadata(self, rating_key: str) -> PlexMetadata | None:
        """The item with *rating_key*, or ``None`` when the server does not have it (404).

        ``GET /library/metadata/{ratingKey}?includeGuids=1`` with ``Accept: application/json``
        and ``X-Plex-Token``; reads ``MediaContainer.Metadata[0]``.

        Raises :class:`RetryableError` (provider ``"plex"``) on a connection error, timeout or
        5xx, and :class:`SourceUnavailableError` on 401/403, another 4xx or a non-JSON body.
        """
        where = f"plex at {self._base}"
        rk = str(rating_key).strip()
        if not rk.isdigit():
            # Plex ratingKeys are decimal; anything else would only produce a 404 or worse.
            return None
        url = f"{self._base}/library/metadata/{rk}"
        headers = {"Accept": "application/json", "X-Plex-Token": self._token}
        try:
            async with self._session.get(
                url, params={"includeGuids": "1"}, headers=headers, timeout=self._timeout
            ) as resp:
                status = resp.status
                body = await resp.read()
        except TimeoutError:
            raise RetryableError(_PROVIDER, f"{where}: no answer within the timeout") from None
        except aiohttp.ClientError as exc:
            raise RetryableError(
                _PROVIDER, f"{where} is unreachable ({type(exc).__name__})"
            ) from None
        if status == 404:
            return None
        if status in (401, 403):
            raise SourceUnavailableError(
                f"{where} refused the token (HTTP {status}); check plex.token"
            )
        if status >= 500:
            raise RetryableError(_PROVIDER, f"{where}: HTTP {status}")
        if status >= 400:
            raise SourceUnavailableError(f"{where}: metadata lookup failed with HTTP {status}")
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise SourceUnavailableError(f"{where}: answer is not JSON") from None
        container = data.get("MediaContainer") if isinstance(data, dict) else None
        entries = container.get("Metadata") if isinstance(container, dict) else None
        if not isinstance(container, dict):
            raise SourceUnavailableError(f"{where}: answer has no MediaContainer")
        if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
            return None
        meta = PlexMetadata.from_json(rk, entries[0])
        log.debug("plex.metadata", rating_key=rk, kind=meta.kind, ids=meta.ids.as_dict())
        return meta
