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

GETs are retried in-process a few times (:meth:`~crosswatchd.http.HttpClient.retry_get`); a
POST never is: after a timeout the play may have landed.
"""

from __future__ import annotations

from typing import Any, Final

import aiohttp
import orjson
from pydantic import ValidationError

from crosswatchd import __version__
from crosswatchd.errors import AuthError, PermanentError, ProviderError, RetryableError
from crosswatchd.http import Answer, GetRetry, HttpClient, WireModel
from crosswatchd.ratelimit import Limiter

__all__ = [
    "NAME",
    "REAUTH_HINT",
    "SCROBBLE_LOCK_S",
    "envelope",
    "error_for",
    "json_data",
    "simkl_client",
]

#: The provider name in errors, logs and the outbox.
NAME: Final = "simkl"
REAUTH_HINT: Final = "run `crosswatchd auth simkl`"
#: The per-user scrobble lock (docs "Rate limits", scrobble-checkin).
SCROBBLE_LOCK_S: Final = 20.0
#: ``app-name`` and ``app-version`` of every request (docs "Headers").
_APP: Final = {"app-name": "crosswatchd", "app-version": __version__}


def simkl_client(
    *,
    session: aiohttp.ClientSession,
    client_id: str,
    api_url: str,
    timeout_s: float = 30.0,
    limiter: Limiter | None = None,
    get_retry: GetRetry | None = None,
) -> HttpClient:
    """The client of the SIMKL API at *api_url* (``https://api.simkl.com`` or a fake), with
    the identification on every request.

    *session* is the caller's; *limiter* (optional: the PIN flow has none) is awaited before
    every attempt and told about every answer; *timeout_s* is per request; *get_retry* is the
    in-process retry policy of GETs, which retries :class:`RetryableError` (and so never
    waits out the 20 s scrobble lock in-process). A transport failure is
    :class:`RetryableError` (the request may have landed); its message names the path only:
    the URL carries the client id. User requests pass their token as ``bearer``.
    """

    def transport_error(what: str, exc: TimeoutError | aiohttp.ClientError) -> Exception:
        if isinstance(exc, TimeoutError):
            return RetryableError(NAME, f"{what}: no answer within {timeout_s}s")
        return RetryableError(NAME, f"{what}: {type(exc).__name__}")

    return HttpClient(
        service=NAME,
        session=session,
        base_url=api_url,
        timeout_s=timeout_s,
        on_transport_error=transport_error,
        headers={"simkl-api-key": client_id},
        params={"client_id": client_id, **_APP},
        limiter=limiter,
        get_retry=get_retry,
    )


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
