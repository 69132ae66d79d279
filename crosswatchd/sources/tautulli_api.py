"""Client for the Tautulli API v2 (``GET /api/v2?apikey=…&cmd=…``).

Used by the history importer (``get_history``, ``get_users``, ``get_server_identity``) and by
the id resolver (``get_metadata``). Every response is wrapped as
``{"response": {"result": "success"|"error", "message": null|str, "data": …}}``
(api_v2_reference.md, "General structure"); this client unwraps it and returns ``data``.

This module is Tautulli's one HTTP layer, built on :mod:`crosswatchd.http`. Every failure is a
:class:`~crosswatchd.errors.SourceUnavailableError` whose message is one line a user can act
on: wrong API key, server unreachable or too slow, an HTML page where JSON was expected
(typically a reverse-proxy login page), an HTTP error. Transient failures (a timeout, a
connection error, a 5xx) are first retried in-process a few times with short jittered waits
(:class:`~crosswatchd.http.GetRetry`). The API key is never part of a message or a log line:
requests carry it as a query parameter, and only the base URL is ever shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import aiohttp
import orjson
import structlog
from pydantic import Field, InstanceOf, ValidationError

from crosswatchd.errors import SourceUnavailableError
from crosswatchd.http import Answer, Entries, GetRetry, HttpClient, OptInt, OptStr, WireModel

__all__ = ["HistoryPage", "TautulliClient", "api_int", "api_rating_key"]

log = structlog.get_logger(__name__)

_API_PATH: Final = "/api/v2"


def api_int(value: Any) -> int | None:
    """An int from one of Tautulli's loosely typed fields: ``17``, ``"17"``, ``17.0`` and
    ``"17.0"`` are 17 (a fraction is cut off); ``null``, booleans, ``""``, infinities and
    anything else are ``None``. Never raises."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def api_rating_key(value: Any) -> str | None:
    """A ratingKey (``1219`` or ``"1219"``) as decimal text; ``None`` for ``""``, ``0``,
    ``null`` or anything that is not a number. Never raises."""
    number = api_int(value)
    return str(number) if number else None


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


class _Transient(SourceUnavailableError):
    """A failure worth retrying in-process: a timeout, a connection error, a 5xx."""


class _Wrapper(WireModel):
    """``response`` of every answer: ``{"result": "success"|"error", "message", "data"}``
    (api_v2_reference.md, "General structure")."""

    result: Any = None
    message: Any = None
    data: Any = None


class _Envelope(WireModel):
    response: _Wrapper


class _History(WireModel):
    """``get_history``'s ``data``; rows that are not objects are skipped, the others are
    kept as they are (not copied: a page holds thousands)."""

    data: Entries[InstanceOf[dict[str, Any]]]
    records_filtered: OptInt = Field(None, alias="recordsFiltered")
    records_total: OptInt = Field(None, alias="recordsTotal")


class _ServerIdentity(WireModel):
    machine_identifier: OptStr = None


class _User(WireModel):
    username: Any = None


class _Users(WireModel):
    users: Entries[_User]


class TautulliClient:
    """Thin async client for the Tautulli API v2.

    ``url`` is the Tautulli base URL including any HTTP root (``http://host:8181`` or
    ``https://host/tautulli``); ``/api/v2`` is appended unless already present. ``timeout_s`` is
    the total time allowed per request, ``get_retry`` the in-process retry policy. The session
    is injected and not closed here.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        url: str,
        api_key: str,
        timeout_s: float = 30.0,
        get_retry: GetRetry | None = None,
    ) -> None:
        base = url.strip().rstrip("/")
        if base.endswith(_API_PATH):
            base = base[: -len(_API_PATH)]
        self._where = f"tautulli at {base}"
        self._api_key = api_key
        self._http = HttpClient(
            service="tautulli",
            session=session,
            base_url=base,
            timeout_s=timeout_s,
            on_transport_error=self._transport_error,
            params={"apikey": api_key},
            get_retry=get_retry,
            retry_on=_Transient,
        )

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
        try:
            history = _History.model_validate(data)
        except ValidationError:
            raise SourceUnavailableError(
                f"{self._where}: get_history answered without a data list"
            ) from None
        rows = history.data
        return HistoryPage(
            rows=rows,
            records_filtered=_or(history.records_filtered, len(rows)),
            records_total=_or(history.records_total, len(rows)),
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
        return data if isinstance(data, dict) and data else None

    async def get_server_identity(self) -> str | None:
        """The machineIdentifier of the Plex server Tautulli watches (the ``Server.uuid`` of
        its Plex webhooks), ``None`` when the answer names none.

        ``get_server_identity`` answers ``{"machine_identifier": …, "version": …}``: the
        reference draws it as a one-element list, Tautulli's code
        (``pmsconnect.get_server_identity``) returns the dict; both are read.

        Raises :class:`SourceUnavailableError`. Reference: api_v2_reference.md,
        "get_server_identity".
        """
        data = await self._call("get_server_identity", {})
        if isinstance(data, list):
            data = data[0] if data else None
        try:
            identity = _ServerIdentity.model_validate(data)
        except ValidationError:
            return None
        return (identity.machine_identifier or "").strip() or None

    async def get_users(self) -> list[str]:
        """Usernames of everyone Tautulli knows (``get_users`` → ``[{"username": …}, …]``).

        Raises :class:`SourceUnavailableError`. Reference: api_v2_reference.md, "get_users".
        """
        data = await self._call("get_users", {})
        try:
            users = _Users.model_validate({"users": data}).users
        except ValidationError:
            raise SourceUnavailableError(
                f"{self._where}: get_users answered without a user list"
            ) from None
        return [str(u.username) for u in users if u.username]

    async def _call(self, cmd: str, params: dict[str, str]) -> Any:
        """Run one command, retrying transient failures in-process; return the unwrapped
        ``data``. Raises SourceUnavailableError."""
        return await self._http.retry_get(lambda: self._call_once(cmd, params), cmd=cmd)

    async def _call_once(self, cmd: str, params: dict[str, str]) -> Any:
        """One attempt of :meth:`_call`; failures with a 5xx status are :class:`_Transient`."""
        answer = await self._http.send("GET", _API_PATH, params={"cmd": cmd, **params}, label=cmd)
        try:
            wrapper: _Wrapper | None = _Envelope.model_validate(answer.json()).response
        except (orjson.JSONDecodeError, ValidationError):
            wrapper = None
        message = self._failure(answer, cmd, wrapper)
        if message is None:
            assert wrapper is not None
            return wrapper.data
        raise (_Transient if answer.status >= 500 else SourceUnavailableError)(message)

    def _failure(self, answer: Answer, cmd: str, wrapper: _Wrapper | None) -> str | None:
        """The one-line message for a failed command, ``None`` when it succeeded."""
        where, status = self._where, answer.status
        if wrapper is None:
            if answer.content_type == "text/html" or answer.body.lstrip()[:1] == b"<":
                return (
                    f"{where}: got an HTML page (HTTP {status}) instead of API JSON; "
                    "check tautulli.url (a reverse-proxy login page?)"
                )
            if status >= 400:
                return f"{where}: {cmd} failed with HTTP {status}"
            return f"{where}: {cmd} answered with something that is not API JSON"
        message = self._redact(" ".join(str(wrapper.message or "").split()))
        if wrapper.result != "success":
            log.warning("tautulli.error", cmd=cmd, status=status, message=message)
            if message.lower() == "invalid apikey":
                return f"{where} rejected the API key (Invalid apikey); check tautulli.api_key"
            if message:
                return f"{where}: {cmd} failed: {message[:200]}"
            return f"{where}: {cmd} failed with HTTP {status}"
        if status >= 400:
            return f"{where}: {cmd} failed with HTTP {status}"
        return None

    def _transport_error(self, cmd: str, exc: TimeoutError | aiohttp.ClientError) -> Exception:
        where = self._where
        if isinstance(exc, TimeoutError):
            return _Transient(f"{where}: no answer to {cmd} within the timeout")
        if isinstance(exc, aiohttp.ClientConnectorError):
            reason = self._redact(str(exc.os_error) or type(exc).__name__)
            return _Transient(f"{where} is unreachable: {reason}")
        # str(exc) of response errors embeds the request URL, which carries the key.
        return _Transient(f"{where}: {cmd} failed ({type(exc).__name__})")

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
