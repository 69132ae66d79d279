"""Trakt OAuth: the device flow, token refresh with rotating refresh tokens, revocation.

Facts from Trakt's API Blueprint (``shared/reference/trakt/trakt.apib``):

- "Authentication - Devices": ``POST /oauth/device/code`` → ``{device_code, user_code,
  verification_url, expires_in, interval}``; poll ``POST /oauth/device/token`` until 200.
- "Authentication - OAuth / Refresh Token": access tokens live 24 h; refresh tokens rotate,
  so the new one is saved (durably: a 0600 file, or committed to the shared database;
  :class:`~crosswatchd.tokens.TokenStore`) before the new access token is used. The save is
  conditional: it only replaces the token the refresh started from, so a refresher that lost a
  race (another replica, or ``auth`` run meanwhile, stored a newer token) never clobbers it
  and uses the stored one instead.
- A refresh token Trakt refuses (``invalid_grant``), or an access token still refused right
  after a refresh, is revoked in the token store (the file becomes ``trakt.json.revoked``)
  if it is still the stored one: the daemon stops using it and ``crosswatchd auth trakt``
  starts anew. A refused *app* (403 wrong client id, ``invalid_client``) never revokes: that
  is config.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
import structlog
from pydantic import ConfigDict, ValidationError

from crosswatchd.errors import AuthError, RetryableError, StaleTokenError
from crosswatchd.http import Answer, HttpClient, OptStr, WireModel
from crosswatchd.providers.trakt.http import (
    AUTH_HINT,
    NAME,
    raise_for_status,
    read_json,
    trakt_client,
)
from crosswatchd.tokens import Token, TokenStore

__all__ = ["TraktAuth", "device_auth"]

log = structlog.get_logger(__name__)

#: Refresh when the access token expires within this many seconds.
REFRESH_MARGIN_S: Final = 3600.0
#: After a refused grant, how long to wait before looking at the stored token again: a
#: refresher that lost a race to another process (the refresh token was used a moment ago)
#: finds the winner's token stored by then and uses it instead of revoking.
REFUSAL_SETTLE_S: Final = 2.0
_OOB_REDIRECT: Final = "urn:ietf:wg:oauth:2.0:oob"

Sleep = Callable[[float], Awaitable[None]]


class _TokenAnswer(WireModel):
    """A token answer ("Authentication - OAuth"): the whole object is stored, this checks it
    carries an access token."""

    access_token: str


class _OAuthError(WireModel):
    error: OptStr = None


class _DeviceCode(WireModel):
    """``POST /oauth/device/code`` → 200 ("Authentication - Devices")."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    device_code: str
    user_code: str
    verification_url: str
    interval: float = 5.0
    expires_in: float = 600.0


def _oauth_error(answer: Answer) -> str:
    """The ``error`` field of an OAuth error answer (e.g. ``invalid_grant``), or ``""``."""
    try:
        return _OAuthError.model_validate_json(answer.body).error or ""
    except ValidationError:
        return ""


class TraktAuth:
    """The Trakt account's token: read from *tokens* on every use, refreshed when it expires
    within an hour (by *unix_s*, unix seconds) or is refused, revoked when Trakt refuses the
    grant.

    :meth:`call` sends an OAuth request through *http*. Errors: :class:`AuthError` (no token;
    refresh refused or 401 after a refresh, both of which revoke the token; the app refused,
    which does not), :class:`RetryableError` (transient refresh failures). *settle_s* is
    :data:`REFUSAL_SETTLE_S`; *sleep* waits it.
    """

    def __init__(
        self,
        *,
        http: HttpClient,
        tokens: TokenStore,
        client_id: str,
        client_secret: str,
        unix_s: Callable[[], float] = time.time,
        settle_s: float = REFUSAL_SETTLE_S,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._client_id = client_id
        self._client_secret = client_secret
        self._unix_s = unix_s
        self._settle_s = settle_s
        self._sleep = sleep
        self._refresh_lock = asyncio.Lock()

    def is_authorized(self) -> bool:
        """True when a token is stored (it may still need a refresh on first use)."""
        return self._tokens.load() is not None

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
    ) -> Answer:
        """An OAuth request; on 401 the token is refreshed once and the request sent once more.

        A second 401 with the fresh token means the grant is gone: the token is revoked
        (:meth:`TokenStore.revoke`) and :class:`AuthError` raised. Other statuses are
        returned for the caller to translate.
        """
        token = await self._token()
        answer = await self._http.send(
            method, path, json_body=json_body, params=params, bearer=token.access_token
        )
        if answer.status != 401:
            return answer
        log.info("trakt.unauthorized", method=method, path=path)
        token = await self._refresh(token)
        answer = await self._http.send(
            method, path, json_body=json_body, params=params, bearer=token.access_token
        )
        if answer.status == 401:
            log.warning("trakt.token.revoked", reason="401 after refresh", path=path)
            await self._revoke(token)
            raise AuthError(NAME, f"{answer.what}: token rejected after refresh; {AUTH_HINT}")
        return answer

    async def _revoke(self, used: Token) -> None:
        """Revoke the stored token if it is still *used* (``auth`` may have replaced it)."""
        if await self._tokens.revoke(used):
            log.warning("trakt.token.revoked", hint=AUTH_HINT)

    async def _token(self) -> Token:
        """The stored token, refreshed first when it expires within an hour."""
        token = self._tokens.load()
        if token is None:
            raise AuthError(NAME, f"not authorized; {AUTH_HINT}")
        if token.expires_within(REFRESH_MARGIN_S, now=self._unix_s()):
            log.info("trakt.token.expiring", expires_at=token.expires_at)
            token = await self._refresh(token)
        return token

    async def _refresh(self, stale: Token) -> Token:
        """Exchange the refresh token ("Authentication - OAuth / Refresh Token").

        One refresh at a time: a caller that waited for another's refresh uses its result.
        The stored token is read afresh first (another process may have refreshed it), and the
        rotated token is saved, replacing only that one, before it is returned; when the store
        holds a newer token by then, that one is returned and ours dropped. Refused grant
        (400, 401, ``invalid_grant``): if, :data:`REFUSAL_SETTLE_S` later, another process has
        stored a newer token (it used the refresh token first), that one is returned;
        otherwise the token is revoked (if still stored) and :class:`AuthError` raised. The
        app refused (403, ``invalid_client``) → :class:`AuthError`, the token is kept.
        """
        async with self._refresh_lock:
            current = await self._tokens.current()
            if current is None:
                raise AuthError(NAME, f"not authorized; {AUTH_HINT}")
            fresh = not current.expires_within(REFRESH_MARGIN_S, now=self._unix_s())
            if current.access_token != stale.access_token and fresh:
                return current
            if not current.refresh_token:
                raise AuthError(NAME, f"token expired and no refresh token; {AUTH_HINT}")
            body = {
                "refresh_token": current.refresh_token,
                "client_id": self._client_id,
                "client_secret": self._client_secret,
                "redirect_uri": _OOB_REDIRECT,
                "grant_type": "refresh_token",
            }
            answer = await self._http.send("POST", "/oauth/token", json_body=body)
            if answer.status == 429 or answer.status >= 500:
                raise_for_status(answer)
            if answer.status != 200:
                superseded = await self._superseded(answer, current)
                if superseded is not None:
                    return superseded
                raise await self._refused(answer, current)
            read_json(answer, _TokenAnswer, "answer without an access token")
            try:
                token = await self._tokens.save(answer.json(), replacing=current)
            except StaleTokenError as exc:
                stored = exc.current if isinstance(exc.current, Token) else None
                log.warning("trakt.refresh.superseded", stored=stored is not None)
                if stored is None:
                    raise AuthError(NAME, f"not authorized; {AUTH_HINT}") from None
                return stored
            log.info("trakt.refresh", expires_at=token.expires_at)
            return token

    async def _superseded(self, answer: Answer, current: Token) -> Token | None:
        """For a refused grant: the token another process stored meanwhile (it refreshed
        with the same refresh token first, or ``auth`` ran), looked for once now and once
        after the settle time; ``None`` when *current* is still the stored one."""
        if answer.status not in (400, 401) or _oauth_error(answer) == "invalid_client":
            return None
        for wait_s in (0.0, self._settle_s):
            if wait_s:
                await self._sleep(wait_s)
            stored = await self._tokens.current()
            if stored is not None and not stored.same_grant(current):
                log.warning("trakt.refresh.superseded", status=answer.status)
                return stored
        return None

    async def _refused(self, answer: Answer, current: Token) -> AuthError:
        """The error for a refused refresh; revokes *current* when the grant is refused."""
        error = _oauth_error(answer)
        log.warning("trakt.refresh.refused", status=answer.status, error=error)
        if answer.status == 403 or error == "invalid_client":
            # The app is refused, not the grant: the token may be fine. Config problem.
            return AuthError(
                NAME,
                f"Trakt refused the app while refreshing (HTTP {answer.status}): "
                "check trakt.client_id and trakt.client_secret; plays wait",
            )
        if answer.status in (400, 401) or error == "invalid_grant":
            await self._revoke(current)
            return AuthError(
                NAME,
                f"refresh token refused (HTTP {answer.status}); the token was revoked; {AUTH_HINT}",
            )
        return AuthError(NAME, f"refresh token refused (HTTP {answer.status}); {AUTH_HINT}")


# --- device authorization -------------------------------------------------------------------

_DEVICE_ERRORS: Final = {
    404: "invalid device code; run `crosswatchd auth trakt` again",
    409: "this code was already used; run `crosswatchd auth trakt` again",
    410: "the code expired before it was approved; run `crosswatchd auth trakt` again",
    418: "authorization was denied on trakt.tv",
    401: "client id or secret rejected; check trakt.client_id and trakt.client_secret",
}


async def device_auth(
    *,
    session: aiohttp.ClientSession,
    tokens: TokenStore,
    client_id: str,
    client_secret: str,
    api_url: str,
    out: Callable[[str], None] = print,
    sleep: Sleep = asyncio.sleep,
    monotonic_s: Callable[[], float] = time.monotonic,
    timeout_s: float = 30.0,
) -> Token:
    """Authorize crosswatchd with Trakt's device flow ("Authentication - Devices").

    ``POST /oauth/device/code`` → show ``verification_url`` and ``user_code`` via *out*; then
    poll ``POST /oauth/device/token`` every ``interval`` seconds (waiting with *sleep*):
    400 pending → keep polling; 429 slow down → poll less often (at least ``Retry-After``);
    404 invalid code, 409 already used, 410 expired, 418 denied → :class:`AuthError`;
    transient failures → keep polling. Gives up with :class:`AuthError` once ``expires_in``
    seconds (by *monotonic_s*) have passed. On 200 the token is saved (0600) in *tokens*
    and returned.
    """
    http = trakt_client(session=session, client_id=client_id, api_url=api_url, timeout_s=timeout_s)
    try:
        answer = await http.send("POST", "/oauth/device/code", json_body={"client_id": client_id})
    except RetryableError as exc:
        raise AuthError(NAME, f"could not reach Trakt: {exc.message}") from None
    if answer.status != 200:
        hint = " (check trakt.client_id)" if answer.status in (401, 403) else ""
        raise AuthError(NAME, f"device code request refused: HTTP {answer.status}{hint}")
    try:
        codes = _DeviceCode.model_validate_json(answer.body)
    except ValidationError:
        raise AuthError(NAME, "device code answer was not understood") from None
    interval_s = codes.interval
    out(f"Open {codes.verification_url} and enter the code {codes.user_code}")
    log.info("trakt.device.started", expires_in_s=codes.expires_in, interval_s=interval_s)
    deadline = monotonic_s() + codes.expires_in
    poll_body = {"code": codes.device_code, "client_id": client_id, "client_secret": client_secret}
    while True:
        await sleep(interval_s)
        if monotonic_s() >= deadline:
            raise AuthError(
                NAME, "the code expired before it was approved; run `crosswatchd auth trakt` again"
            )
        try:
            answer = await http.send("POST", "/oauth/device/token", json_body=poll_body)
        except RetryableError as exc:
            log.warning("trakt.device.poll_failed", reason=exc.message)
            continue
        if answer.status == 200:
            try:
                read_json(answer, _TokenAnswer, "no access token")
            except RetryableError:
                raise AuthError(NAME, "token answer was not understood; try again") from None
            token = await tokens.save(answer.json())
            log.info("trakt.device.authorized", expires_at=token.expires_at)
            return token
        if answer.status == 400:
            continue
        if answer.status == 429:
            interval_s = max(interval_s * 2, answer.retry_after_s or 0.0)
            log.info("trakt.device.slow_down", interval_s=interval_s)
            continue
        if answer.status >= 500:
            log.warning("trakt.device.poll_failed", status=answer.status)
            continue
        raise AuthError(
            NAME,
            _DEVICE_ERRORS.get(answer.status, f"device authorization failed: HTTP {answer.status}"),
        )
