"""SIMKL authorization: the PIN flow, and the stored token of the daemon.

Tokens never expire and there is no refresh flow (Apiary "Authentication - PIN"): a 401 means
the user revoked the app, so the token is revoked in the
:class:`~crosswatchd.tokens.TokenStore` (``simkl.json.revoked``) and the only cure is
``crosswatchd auth simkl``. A 412 (bad client id) is config and keeps the token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import structlog
from pydantic import ConfigDict

from crosswatchd.errors import AuthError, ProviderError, RetryableError
from crosswatchd.http import Answer, Lenient, OptStr, WireModel
from crosswatchd.providers.simkl.http import (
    NAME,
    REAUTH_HINT,
    envelope,
    error_for,
    json_data,
    simkl_client,
)
from crosswatchd.tokens import Token, TokenStore

__all__ = ["SimklAuth", "pin_auth"]

log = structlog.get_logger(__name__)

#: Extra wait after a PIN "Slow down" reply (as RFC 8628 prescribes for ``slow_down``).
SLOW_DOWN_STEP_S: Final = 5.0


class SimklAuth:
    """The stored SIMKL token, re-read on every use (so ``crosswatchd auth simkl`` takes
    effect without a restart)."""

    def __init__(self, tokens: TokenStore) -> None:
        self._tokens = tokens

    def is_authorized(self) -> bool:
        """True when a token is stored (SIMKL tokens do not expire)."""
        return self._tokens.load() is not None

    def token(self) -> str:
        """The access token; :class:`AuthError` when there is none."""
        token = self._tokens.load()
        if token is None:
            raise AuthError(NAME, f"not authorized; {REAUTH_HINT}")
        return token.access_token

    async def error_for(self, answer: Answer, token: str) -> ProviderError:
        """The error for a non-2xx answer (:func:`~.http.error_for`); a 401 also revokes
        *token* if it is still the stored one (``crosswatchd auth simkl`` may have replaced
        it meanwhile)."""
        if answer.status == 401:
            current = await self._tokens.current()
            if (
                current is not None
                and current.access_token == token
                and await self._tokens.revoke(current)
            ):
                log.warning("simkl.token.revoked", hint=REAUTH_HINT)
        return error_for(answer)


class _Pin(WireModel):
    """``GET /oauth/pin`` and ``GET /oauth/pin/{user_code}`` answers (Apiary "Authentication
    - PIN"): ``result`` ``"OK"``/``"KO"``; a new PIN has ``user_code``, ``verification_url``,
    ``expires_in``, ``interval`` and ``device_code``; an approved one ``access_token``."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    result: OptStr = None
    user_code: OptStr = None
    device_code: Any = None
    verification_url: OptStr = None
    verification_uri: OptStr = None
    interval: Lenient[float] = None
    expires_in: Lenient[float] = None
    access_token: OptStr = None
    message: Any = None


def _pin(answer: Answer) -> tuple[_Pin, dict[str, Any]]:
    """The PIN answer (every field lenient) and its raw object (``{}`` when the body is not
    an object, the token answer as it is stored otherwise).

    Raises :class:`RetryableError` for a 2xx body that is not JSON.
    """
    data = json_data(answer)
    raw = data if isinstance(data, dict) else {}
    return _Pin.model_validate(raw), raw


async def pin_auth(
    *,
    session: aiohttp.ClientSession,
    tokens: TokenStore,
    client_id: str,
    api_url: str,
    out: Callable[[str], None] = print,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    timeout_s: float = 30.0,
) -> Token:
    """Authorize crosswatchd for a SIMKL account with the PIN flow; store the token (0600).

    ``GET /oauth/pin`` → ``{user_code, verification_url, expires_in, interval}``; *out* shows
    the URL and code; then ``GET /oauth/pin/{user_code}`` every ``interval`` seconds (5 more
    after each "Slow down") until ``{"result": "OK", "access_token"}`` (Apiary "Authentication
    - PIN"). Waiting is done with *sleep*; time spent is the larger of the slept total and the
    loop clock, so an injected sleep makes expiry testable. The polling loop is its own retry:
    polls are single attempts.

    Returns the stored :class:`Token`. Raises :class:`AuthError` when the code expires
    (``expires_in``, 900 s on SIMKL), disappears (a poll answered with a fresh ``device_code``)
    or SIMKL refuses the app (e.g. 412 bad client id), and when the first request cannot
    reach SIMKL ("could not reach SIMKL: …"). Transient failures while polling are ridden out.
    """
    http = simkl_client(session=session, client_id=client_id, api_url=api_url, timeout_s=timeout_s)
    try:
        answer = await http.send("GET", "/oauth/pin")
    except RetryableError as exc:
        raise AuthError(NAME, f"could not reach SIMKL: {exc.message}") from None
    pin, _ = _pin(answer)
    if not answer.ok or pin.result != "OK" or not pin.user_code:
        raise _pin_error(answer, "requesting a PIN")
    url = pin.verification_url or pin.verification_uri or "https://simkl.com/pin"
    interval = pin.interval or 5.0
    expires_in = pin.expires_in or 900.0
    user_code = pin.user_code
    out(f"Open {url} and enter the code {user_code} (valid for {expires_in / 60:.0f} minutes).")
    loop = asyncio.get_running_loop()
    started, slept = loop.time(), 0.0
    poll_path = f"/oauth/pin/{quote(user_code, safe='')}"
    while True:
        await sleep(interval)
        slept += interval
        if max(slept, loop.time() - started) >= expires_in:
            raise AuthError(NAME, f"the code expired before it was entered; {REAUTH_HINT} again")
        try:
            answer = await http.send("GET", poll_path)
            pin, raw = _pin(answer)
        except RetryableError as exc:
            log.warning("simkl.pin.poll_failed", error=str(exc))
            continue
        if answer.status == 429 or answer.status >= 500:
            log.warning("simkl.pin.poll_failed", status=answer.status)
            continue
        if not answer.ok:
            raise _pin_error(answer, "checking the PIN")
        if pin.result == "OK" and pin.access_token:
            token = await tokens.save({k: v for k, v in raw.items() if k != "result"})
            log.info("simkl.pin.authorized")
            out("SIMKL authorized.")
            return token
        if "device_code" in pin.model_fields_set:  # the code is gone; SIMKL sent a fresh one
            raise AuthError(NAME, f"the code is no longer valid; {REAUTH_HINT} again")
        if "slow" in str(pin.message or "").lower():
            interval += SLOW_DOWN_STEP_S
            log.info("simkl.pin.slow_down", interval_s=interval)
            continue
        log.debug("simkl.pin.pending")


def _pin_error(answer: Answer, what: str) -> AuthError:
    error_id, message = envelope(answer)
    detail = ": ".join(part for part in (error_id, message) if part) or "unexpected answer"
    return AuthError(NAME, f"{what} failed: HTTP {answer.status} {detail}")
