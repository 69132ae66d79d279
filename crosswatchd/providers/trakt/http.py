"""Trakt's one HTTP layer: headers, limiter, status → error translation, GET retries.

Facts from Trakt's API Blueprint (``shared/reference/trakt/trakt.apib``), by section:

- "Required Headers": ``Content-Type: application/json``, ``User-Agent``, ``trakt-api-key``
  (the client id), ``trakt-api-version: 2``; ``Authorization: Bearer`` for OAuth methods.
- "Rate Limiting": 1 POST/PUT/DELETE per second, 1000 GETs per 5 minutes; a 429 carries
  ``Retry-After`` and ``X-Ratelimit``. Every attempt goes through the injected
  :class:`~crosswatchd.ratelimit.Limiter` when there is one.
- "Status Codes", "Locked User Account", "VIP Methods": :func:`raise_for_status`.

GETs are retried in-process a few times (:meth:`~crosswatchd.http.HttpClient.retry_get`);
POSTs never are: "Sync / Add to History" does not de-duplicate, so a timed-out
``POST /sync/history`` may have landed.
"""

from __future__ import annotations

from typing import Final, TypeVar

import aiohttp
import orjson
import structlog
from pydantic import BaseModel, ValidationError

from crosswatchd.errors import AuthError, ErrorScope, PermanentError, RetryableError
from crosswatchd.http import Answer, GetRetry, HttpClient
from crosswatchd.ratelimit import Limiter

__all__ = ["AUTH_HINT", "NAME", "raise_for_status", "read_json", "trakt_client"]

log = structlog.get_logger(__name__)

M = TypeVar("M", bound=BaseModel)

#: The provider name in errors, logs and the outbox.
NAME: Final = "trakt"
AUTH_HINT: Final = "run `crosswatchd auth trakt`"


def _describe(exc: TimeoutError | aiohttp.ClientError, timeout_s: float) -> str:
    """A one-line reason for a transport failure (Trakt URLs carry no secret)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g}s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def trakt_client(
    *,
    session: aiohttp.ClientSession,
    client_id: str,
    api_url: str,
    timeout_s: float = 30.0,
    limiter: Limiter | None = None,
    get_retry: GetRetry | None = None,
) -> HttpClient:
    """The client of the Trakt API at *api_url* (``https://api.trakt.tv`` or a fake), with
    the "Required Headers" on every request.

    *session* is the caller's; *limiter* (optional: the device flow has none) is awaited
    before every attempt and told about every answer; *timeout_s* is per request;
    *get_retry* is the in-process retry policy of GETs, which retries
    :class:`RetryableError`. A transport failure is :class:`RetryableError` (the request may
    have landed). OAuth requests pass their token as ``bearer``.
    """

    def transport_error(what: str, exc: TimeoutError | aiohttp.ClientError) -> Exception:
        reason = _describe(exc, timeout_s)
        log.warning("trakt.request.failed", request=what, reason=reason)
        return RetryableError(NAME, f"{what}: {reason}")

    return HttpClient(
        service=NAME,
        session=session,
        base_url=api_url,
        timeout_s=timeout_s,
        on_transport_error=transport_error,
        headers={
            "Content-Type": "application/json",
            "trakt-api-key": client_id,
            "trakt-api-version": "2",
        },
        limiter=limiter,
        get_retry=get_retry,
    )


def raise_for_status(answer: Answer) -> None:
    """Translate a non-2xx status into an error ("Status Codes", "Rate Limiting",
    "Locked User Account", "VIP Methods"). Returns for 2xx.

    ===========================  ==========================================================
    429, 5xx (and 52x)           :class:`RetryableError` with the answer's ``retry_after_s``
    401                          :class:`AuthError` (the caller refreshes first)
    403 (the app is refused)     :class:`AuthError`: config, plays wait
    420, 423, 426                :class:`PermanentError`, ``ErrorScope.ACCOUNT``
    other 4xx (400, 404, 409,    :class:`PermanentError`, ``ErrorScope.REQUEST``
    412, 422, …)
    ===========================  ==========================================================
    """
    status, what = answer.status, answer.what
    if answer.ok:
        return
    if status == 429:
        raise RetryableError(NAME, f"{what}: rate limited (429)", answer.retry_after_s)
    if status >= 500:
        raise RetryableError(NAME, f"{what}: server error {status}", answer.retry_after_s)
    if status == 401:
        raise AuthError(NAME, f"{what}: unauthorized (401); {AUTH_HINT}")
    if status == 420:
        limit = answer.headers.get("X-Account-Limit", "?")
        vip = answer.headers.get("X-VIP-User", "?")
        raise PermanentError(
            NAME,
            f"{what}: account limit exceeded (420, X-Account-Limit={limit}, VIP={vip}); "
            "Trakt VIP raises the limit",
            scope=ErrorScope.ACCOUNT,
            status=420,
        )
    if status == 423:
        locked = answer.headers.get("X-Account-Locked", "?")
        deactivated = answer.headers.get("X-Account-Deactivated", "?")
        raise PermanentError(
            NAME,
            f"{what}: account locked (423, locked={locked}, deactivated={deactivated}); "
            "contact Trakt support",
            scope=ErrorScope.ACCOUNT,
        )
    if status == 426:
        raise PermanentError(NAME, f"{what}: Trakt VIP only (426)", scope=ErrorScope.ACCOUNT)
    if status == 403:
        # The app itself is refused (wrong or revoked client id): a configuration problem,
        # not the play's. Plays wait for it to be fixed instead of dying.
        raise AuthError(
            NAME, f"{what}: Trakt refused the app (403): check trakt.client_id; plays wait"
        )
    if status == 412:
        raise PermanentError(NAME, f"{what}: content type rejected (412)")
    raise PermanentError(NAME, f"{what}: rejected with HTTP {status}")


def read_json(answer: Answer, model: type[M], problem: str) -> M:
    """A 2xx answer's body parsed as *model*.

    A body that is not JSON, or JSON of another shape (*problem* says which, e.g.
    ``"expected a list"``), is a transient server problem: :class:`RetryableError`.
    """
    try:
        data = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        raise RetryableError(
            NAME, f"{answer.what}: HTTP {answer.status} with a non-JSON body"
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError:
        raise RetryableError(NAME, f"{answer.what}: {problem}") from None
