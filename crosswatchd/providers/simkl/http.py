"""SIMKL's one HTTP layer: identification, limiter, status → error translation, GET retries.

Facts (``shared/reference/simkl``; "Apiary" = the SIMKL API blueprint, "docs" =
api.simkl.org):

- Identification on every request: ``client_id`` (query; we also send the ``simkl-api-key``
  header), ``app-name`` and ``app-version`` query parameters and a ``User-Agent``; user endpoints
  (``/sync/*``, ``/scrobble/*``) take ``Authorization: Bearer <token>`` (docs "Headers").
- Errors come as ``{"error": <id>, "code": <status>, "message": <text>}`` (docs "Errors").
  Scrobbles hold a 20-second per-user lock; a collision is **400** ``RATE_LIMIT``, not 429
  (docs "Rate limits"). 412 means a bad ``client_id``.
- Limits: 10 GET/s and 1 POST/s per token (docs "Rate limits"), paced by the injected
  :class:`~crosswatchd.ratelimit.Limiter` when there is one.

Translation of statuses (:func:`error_for`; the drainer never reads a status code):

===========================  =========================================================
2xx                          success (``null`` bodies mean "empty")
400 ``RATE_LIMIT``           :class:`RetryableError` with ``retry_after_s=20`` (never park)
401                          :class:`AuthError` ("run ``crosswatchd auth simkl``")
429, 5xx, timeout, refused   :class:`RetryableError` (``Retry-After`` when given)
412 (bad client_id)          :class:`AuthError`: plays wait for the config to be fixed
other 4xx                    :class:`PermanentError` (``scope=REQUEST``), SIMKL's message
===========================  =========================================================

GETs are retried in-process a few times (:meth:`SimklHttp.retry_get`); a POST never is: after
a timeout the play may have landed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import aiohttp
import orjson
import structlog
from pydantic import ValidationError

from crosswatchd import __version__
from crosswatchd.errors import AuthError, PermanentError, ProviderError, RetryableError
from crosswatchd.http import Answer, GetRetry, HttpClient, WireModel, retry_get
from crosswatchd.ratelimit import Limiter

__all__ = [
    "NAME",
    "REAUTH_HINT",
    "SCROBBLE_LOCK_S",
    "SimklHttp",
    "envelope",
    "error_for",
    "json_data",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: The provider name in errors, logs and the outbox.
NAME: Final = "simkl"
REAUTH_HINT: Final = "run `crosswatchd auth simkl`"
#: The per-user scrobble lock (docs "Rate limits", scrobble-checkin).
SCROBBLE_LOCK_S: Final = 20.0
#: ``app-name`` and ``app-version`` of every request (docs "Headers").
_APP: Final = {"app-name": "crosswatchd", "app-version": __version__}


class SimklHttp:
    """Requests to the SIMKL API at *api_url* (``https://api.simkl.com`` or a fake).

    *session* is the caller's; *limiter* (optional: the PIN flow has none) is awaited before
    every attempt and told about every answer; *timeout_s* is per request; *get_retry* is the
    policy of :meth:`retry_get`. Messages name the path only: the URL carries the client id.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        client_id: str,
        api_url: str,
        timeout_s: float = 30.0,
        limiter: Limiter | None = None,
        get_retry: GetRetry | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self._get_retry = get_retry or GetRetry()
        self._client = HttpClient(
            session=session,
            base_url=api_url,
            timeout_s=timeout_s,
            on_transport_error=self._transport_error,
            headers={"simkl-api-key": client_id},
            params={"client_id": client_id, **_APP},
            limiter=limiter,
        )

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        token: str | None = None,
    ) -> Answer:
        """One attempt; the answer whatever its status. Transport failures raise
        :class:`RetryableError` (the request may have landed)."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else None
        answer = await self._client.send(
            method, path, params=params, headers=headers, json_body=json_body
        )
        log.debug("simkl.http", method=method, path=path, status=answer.status)
        return answer

    async def retry_get(self, attempt: Callable[[], Awaitable[T]], *, path: str) -> T:
        """Run *attempt* (a GET of *path* and the reading of its answer) with a few short,
        jittered in-process retries of :class:`RetryableError`; none when SIMKL asks for a
        longer wait than the policy's ``max_wait_s`` (such as the 20 s scrobble lock)."""
        return await retry_get(
            attempt,
            policy=self._get_retry,
            transient=RetryableError,
            event="simkl.get.retry",
            path=path,
        )

    def _transport_error(self, what: str, exc: TimeoutError | aiohttp.ClientError) -> Exception:
        if isinstance(exc, TimeoutError):
            return RetryableError(NAME, f"{what}: no answer within {self.timeout_s}s")
        return RetryableError(NAME, f"{what}: {type(exc).__name__}")


def json_data(answer: Answer) -> Any:
    """The decoded body; ``None`` for an empty body, JSON ``null`` or a non-JSON error body.

    Raises :class:`RetryableError` for a 2xx whose body is not JSON (a proxy page).
    """
    if not answer.body.strip():
        return None
    try:
        return answer.json()
    except orjson.JSONDecodeError:
        if answer.ok:
            raise RetryableError(
                NAME, f"{answer.what}: HTTP {answer.status} with a non-JSON body"
            ) from None
        return None


class _Envelope(WireModel):
    """SIMKL's error body ``{"error", "code", "message"}`` (docs "Errors")."""

    error: Any = None
    message: Any = None


def envelope(answer: Answer) -> tuple[str, str]:
    """SIMKL's ``(error, message)``; empty strings when the body has none."""
    try:
        body = _Envelope.model_validate(json_data(answer))
    except ValidationError:
        return "", ""
    return str(body.error or ""), str(body.message or "")


def error_for(answer: Answer) -> ProviderError:
    """The exception for a non-2xx answer (the module docstring's table)."""
    what = answer.what
    error_id, message = envelope(answer)
    detail = ": ".join(part for part in (error_id, message) if part)
    if answer.status == 400 and error_id.upper() == "RATE_LIMIT":
        return RetryableError(NAME, f"{what}: scrobble lock held (400 RATE_LIMIT)", SCROBBLE_LOCK_S)
    if answer.status == 401:
        return AuthError(NAME, f"{what}: SIMKL rejected the access token (401); {REAUTH_HINT}")
    if answer.status == 412:
        # SIMKL refuses the app (bad client_id): a configuration problem, not the play's.
        # Plays wait for it to be fixed instead of dying.
        return AuthError(
            NAME,
            f"{what}: SIMKL refused the app (412 {detail}): check simkl.client_id; plays wait",
        )
    if answer.status == 429:
        return RetryableError(NAME, f"{what}: rate limited (429)", answer.retry_after_s)
    if answer.status >= 500:
        return RetryableError(NAME, f"{what}: HTTP {answer.status}", answer.retry_after_s)
    return PermanentError(NAME, f"{what}: HTTP {answer.status}" + (f" {detail}" if detail else ""))
