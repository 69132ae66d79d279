"""Client for the Tautulli API v2 (``GET /api/v2?apikey=…&cmd=…``).

Used by the history importer (``get_history``, ``get_users``) and by the id resolver
(``get_metadata``). Every response is wrapped as
``{"response": {"result": "success"|"error", "message": null|str, "data": …}}``
(api_v2_reference.md, "General structure"); this client unwraps it and returns ``data``.

Every failure is a :class:`~crosswatchd.errors.SourceUnavailableError` whose message is one line
a user can act on: wrong API key, server unreachable or too slow, an HTML page where JSON was
expected (typically a reverse-proxy login page), an HTTP error. The API key is never part of a
message or a log line: requests carry it as a query parameter, and only the base URL is ever
shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import aiohttp
import orjson
import structlog

from crosswatchd.errors import SourceUnavailableError

__all__ = ["HistoryPage", "TautulliClient"]

log = structlog.get_logger(__name__)

_API_PATH = "/api/v2"


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of ``get_history``.

    ``rows`` are the raw history rows (dicts as Tautulli sends them: ``date``, ``started``,
    ``stopped`` in Unix seconds, ``watched_status`` 1 | 0.5 | 0, ``rating_key``,
    ``grandparent_rating_key``, ``media_type``, ``guid``, ``user``…). ``records_filtered`` is the
    number of rows matching the filters (the paging total), ``records_total`` all rows on the
    server (api_v2_reference.md, "get_history").
    """

    rows: list[dict[str, Any]]
    records_filtered: int
    records_total: int


class TautulliClient:
    """Thin async client for the Tautulli API v2.

    ``url`` is the Tautulli base URL including any HTTP root (``http://host:8181`` or
    ``https://host/tautulli``); ``/api/v2`` is appended unless already present. ``timeout_s`` is
    the total time allowed per request. The session is injected and not closed here.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        api_key: str,
        timeout_s: float = 30.0,
    ) -> None:
        base = url.strip().rstrip("/")
        if base.endswith(_API_PATH):
            base = base[: -len(_API_PATH)]
        self._session = session
        self._base = base
        self._endpoint = base + _API_PATH
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    @property
    def base_url(self) -> str:
        """The configured base URL (never contains the API key)."""
        return self._base

    async def get_history(
        self,
        *,
        start: int,
        length: int,
        after: date | None = None,
        user: str | None = None,
    ) -> HistoryPage:
        """One page of play history, newest first (``order_column=date``, ``order_dir=desc``).

        ``start`` is the 0-based row offset, ``length`` the page size. ``after`` keeps rows on or
        after that date (Tautulli's ``after``, ``YYYY-MM-DD``, judged by the server);
        ``user`` keeps one username's rows. Rows are grouped (``grouping=1``): a play resumed
        across sessions is one row, as Tautulli shows it in its History page.

        Raises :class:`SourceUnavailableError`. Reference: api_v2_reference.md, "get_history".
        """
        params: dict[str, str] = {
            "order_column": "date",
            "order_dir": "desc",
            "grouping": "1",
            "start": str(start),
            "length": str(length),
        }
        if after is not None:
            params["after"] = after.isoformat()
        if user:
            params["user"] = user
        data = await self._call("get_history", params)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise SourceUnavailableError(
                f"tautulli at {self._base}: get_history answered without a data list"
            )
        rows = [row for row in data["data"] if isinstance(row, dict)]
        return HistoryPage(
            rows=rows,
            records_filtered=_as_int(data.get("recordsFiltered"), default=len(rows)),
            records_total=_as_int(data.get("recordsTotal"), default=len(rows)),
        )

    async def get_metadata(self, rating_key: str) -> dict[str, Any] | None:
        """Plex metadata of one item: the ``data`` dict, or ``None`` when the item is gone.

        Useful keys: ``guids`` (``["imdb://tt…", "tmdb://…", "tvdb://…"]``, the item's own
        external ids; for an episode the **episode's**), ``grandparent_guids`` (an episode's
        show ids, recent Tautulli only), ``grandparent_rating_key``, ``media_type``, ``guid``.
        Tautulli answers ``{}`` for a rating key Plex no longer has.

        Raises :class:`SourceUnavailableError`. Reference: api_v2_reference.md, "get_metadata".
        """
        data = await self._call("get_metadata", {"rating_key": str(rating_key)})
        if isinstance(data, dict) and data:
            return data
        return None

    async def get_users(self) -> list[str]:
        """Usernames of everyone Tautulli knows (``get_users`` → ``[{"username": …}, …]``).

        Raises :class:`SourceUnavailableError`. Reference: api_v2_reference.md, "get_users".
        """
        data = await self._call("get_users", {})
        if not isinstance(data, list):
            raise SourceUnavailableError(
                f"tautulli at {self._base}: get_users answered without a user list"
            )
        names: list[str] = []
        for entry in data:
            if isinstance(entry, dict) and (name := entry.get("username")):
                names.append(str(name))
        return names

    async def _call(self, cmd: str, params: dict[str, str]) -> Any:
        """Run one command; return the unwrapped ``data``. Raises SourceUnavailableError."""
        query = {"apikey": self._api_key, "cmd": cmd, **params}
        where = f"tautulli at {self._base}"
        try:
            async with self._session.get(
                self._endpoint, params=query, timeout=self._timeout, allow_redirects=True
            ) as resp:
                status = resp.status
                content_type = resp.content_type
                body = await resp.read()
        except TimeoutError:
            raise SourceUnavailableError(
                f"{where}: no answer to {cmd} within the timeout"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            reason = self._redact(str(exc.os_error) or type(exc).__name__)
            raise SourceUnavailableError(f"{where} is unreachable: {reason}") from None
        except aiohttp.ClientError as exc:
            # str(exc) of response errors embeds the request URL, which carries the key.
            reason = type(exc).__name__
            raise SourceUnavailableError(f"{where}: {cmd} failed ({reason})") from None

        wrapper = _parse_wrapper(body)
        if wrapper is None:
            if content_type == "text/html" or body.lstrip()[:1] == b"<":
                raise SourceUnavailableError(
                    f"{where}: got an HTML page (HTTP {status}) instead of API JSON; "
                    "check tautulli.url (a reverse-proxy login page?)"
                )
            if status >= 400:
                raise SourceUnavailableError(f"{where}: {cmd} failed with HTTP {status}")
            raise SourceUnavailableError(
                f"{where}: {cmd} answered with something that is not API JSON"
            )

        result = wrapper.get("result")
        message = self._redact(" ".join(str(wrapper.get("message") or "").split()))
        if result != "success":
            log.warning("tautulli.error", cmd=cmd, status=status, message=message)
            if message.lower() == "invalid apikey":
                raise SourceUnavailableError(
                    f"{where} rejected the API key (Invalid apikey); check tautulli.api_key"
                )
            if message:
                raise SourceUnavailableError(f"{where}: {cmd} failed: {message[:200]}")
            raise SourceUnavailableError(f"{where}: {cmd} failed with HTTP {status}")
        if status >= 400:
            raise SourceUnavailableError(f"{where}: {cmd} failed with HTTP {status}")
        return wrapper.get("data")

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def _parse_wrapper(body: bytes) -> dict[str, Any] | None:
    """The ``response`` object of an API answer, or ``None`` when *body* is not one."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(decoded, dict):
        return None
    wrapper = decoded.get("response")
    return wrapper if isinstance(wrapper, dict) else None


def _as_int(value: Any, *, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
