"""The plex.tv account of a profile's watchlist: its token, the headers Plex clients send, and
the PIN sign-in of ``crosswatchd auth plex``.

Facts (``shared/reference/plex/discover-watchlist.md`` §2, python-plexapi ``myplex.py``):

- The watchlist belongs to the **plex.tv account**, so it needs that account's token
  (``X-Plex-Token``); a managed or shared user needs their own. A bad token is 401.
- Clients identify themselves with ``X-Plex-Client-Identifier`` (a stable id of the
  installation), ``X-Plex-Product``, ``X-Plex-Version`` and ``X-Plex-Platform``
  (python-plexapi ``BASE_HEADERS``).
- PIN sign-in, as python-plexapi's ``MyPlexPinLogin`` does it: ``POST /api/v2/pins`` →
  ``{id, code, expiresIn, authToken: null}``; the person opens https://plex.tv/link and enters
  the 4-character code; ``GET /api/v2/pins/{id}`` (same client identifier) answers the same
  with ``authToken`` once they did, 404 once the PIN expired. ``GET /api/v2/user`` with the
  token names the account.

Which token a profile uses (:class:`PlexAuth`): the one ``crosswatchd auth plex [--profile
NAME]`` stored (``tokens/plex.json``, ``tokens/<profile>/plex.json``, 0600), re-read on every
use; else the configured one (``plex.token`` for the implicit profile, ``plex_token`` for a
``[[profiles]]`` member). A stored token Plex refuses (401) is set aside
(``plex.json.revoked``), as SIMKL's are: Plex tokens do not expire, so a 401 means the person
signed the device out.
"""

from __future__ import annotations

import asyncio
import os
import platform
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, TypeVar

import aiohttp
import orjson
import structlog
from pydantic import ConfigDict, Field

from crosswatchd import __version__
from crosswatchd.errors import AuthError, RetryableError
from crosswatchd.http import Answer, HttpClient, Lenient, OptStr, WireModel
from crosswatchd.tokens import Token, TokenStore

__all__ = ["NAME", "PlexAuth", "client_identifier", "pin_login", "plex_headers"]

log = structlog.get_logger(__name__)

#: The provider name of the Plex watchlist in errors, logs and the outbox.
NAME: Final = "plex"
#: The file holding this installation's ``X-Plex-Client-Identifier``.
_CLIENT_ID_FILE: Final = "plex_client_id"
#: How often a pending PIN is looked at (python-plexapi polls every second).
_PIN_POLL_S: Final = 1.0


def plex_headers(client_id: str) -> dict[str, str]:
    """The headers every Plex client sends (python-plexapi ``BASE_HEADERS``), without a token."""
    return {
        "X-Plex-Client-Identifier": client_id,
        "X-Plex-Product": "crosswatchd",
        "X-Plex-Version": __version__,
        "X-Plex-Platform": platform.system() or "Linux",
        "X-Plex-Device-Name": "crosswatchd",
    }


def client_identifier(data_dir: Path) -> str:
    """This installation's stable ``X-Plex-Client-Identifier``: ``data_dir/plex_client_id``
    (0600), created on first use. A PIN is only visible to the identifier that asked for it,
    and plex.tv lists devices by it, so it must not change between runs."""
    path = Path(data_dir) / _CLIENT_ID_FILE
    try:
        text = path.read_text("utf-8").strip()
    except FileNotFoundError:
        text = ""
    if text:
        return text
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = uuid.uuid4().hex
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    return text


def reauth_hint(profile: str | None) -> str:
    """``run `crosswatchd auth plex [--profile NAME]```."""
    who = f" --profile {profile}" if profile else ""
    return f"run `crosswatchd auth plex{who}`"


class PlexAuth:
    """The plex.tv token of one profile's watchlist (the module docstring says which).

    *tokens* is the profile's store; *configured* the token from the config file (may be
    empty); *profile* names the member in hints (None: the implicit profile).
    """

    def __init__(self, tokens: TokenStore, configured: str = "", profile: str | None = None):
        self._tokens = tokens
        self._configured = configured.strip()
        self.hint = reauth_hint(profile)

    def _stored(self) -> Token | None:
        return self._tokens.load()

    def is_authorized(self) -> bool:
        """True when a token is stored or configured."""
        return self._stored() is not None or bool(self._configured)

    def source(self) -> str:
        """``"stored"``, ``"config"`` or ``""`` (no token): where :meth:`token` comes from."""
        if self._stored() is not None:
            return "stored"
        return "config" if self._configured else ""

    def token(self) -> str:
        """The token to send; :class:`AuthError` when there is none."""
        stored = self._stored()
        if stored is not None:
            return stored.access_token
        if self._configured:
            return self._configured
        raise AuthError(NAME, f"no Plex token; {self.hint} or set it in the config")

    def refused(self, token: str) -> AuthError:
        """The error for a 401 on *token*; the stored token is set aside when it is the one
        refused (``auth plex`` may have replaced it meanwhile)."""
        stored = self._stored()
        if stored is not None and stored.access_token == token:
            self._tokens.revoke()
            log.warning("plex.token.revoked", hint=self.hint)
            return AuthError(NAME, f"Plex refused the stored token (401); {self.hint}")
        return AuthError(NAME, f"Plex refused the configured token (401); {self.hint}")


class _Pin(WireModel):
    """``/api/v2/pins`` answers: ``{id, code, expiresIn, authToken}``."""

    model_config = ConfigDict(coerce_numbers_to_str=True, populate_by_name=True)

    id: OptStr = None
    code: OptStr = None
    expires_in: Lenient[float] = Field(None, alias="expiresIn")
    auth_token: OptStr = Field(None, alias="authToken")


class _User(WireModel):
    model_config = ConfigDict(coerce_numbers_to_str=True)

    id: OptStr = None
    username: OptStr = None
    title: OptStr = None


M = TypeVar("M", bound=WireModel)


def _parse(answer: Answer, model: type[M]) -> M:
    try:
        data = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        raise RetryableError(NAME, f"{answer.what}: HTTP {answer.status}, not JSON") from None
    return model.model_validate(data if isinstance(data, dict) else {})


async def pin_login(
    *,
    session: aiohttp.ClientSession,
    plextv_url: str,
    client_id: str,
    tokens: TokenStore,
    out: Callable[[str], None] = print,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    poll_s: float = _PIN_POLL_S,
    timeout_s: float = 30.0,
) -> Token:
    """Sign in a plex.tv account with a PIN and store its token (0600) in *tokens*.

    ``POST /api/v2/pins`` (JSON, this installation's *client_id*); *out* shows the code and
    https://plex.tv/link; ``GET /api/v2/pins/{id}`` every *poll_s* seconds until it carries an
    ``authToken``; ``GET /api/v2/user`` names the account. Returns the stored token, which
    holds ``access_token`` and the account's ``username``.

    Raises :class:`AuthError` when plex.tv cannot be reached at first ("could not reach
    plex.tv: …"), refuses the request, or the code expires (``expiresIn``, or a 404 for the
    PIN). Transient failures while polling are ridden out.
    """
    http = HttpClient(
        service=NAME,
        session=session,
        base_url=plextv_url,
        timeout_s=timeout_s,
        on_transport_error=lambda what, exc: RetryableError(NAME, f"{what}: {type(exc).__name__}"),
        headers={**plex_headers(client_id), "Accept": "application/json"},
    )
    try:
        answer = await http.send("POST", "/api/v2/pins")
    except RetryableError as exc:
        raise AuthError(NAME, f"could not reach plex.tv: {exc.message}") from None
    if not answer.ok:
        raise AuthError(NAME, f"plex.tv refused a PIN: HTTP {answer.status}")
    pin = _parse(answer, _Pin)
    if not pin.id or not pin.code:
        raise AuthError(NAME, "plex.tv sent a PIN without an id or a code")
    expires_in = pin.expires_in or 900.0
    out(
        f"Open https://plex.tv/link and enter the code {pin.code}"
        f" (valid for {expires_in / 60:.0f} minutes)."
    )
    loop = asyncio.get_running_loop()
    started, slept = loop.time(), 0.0
    token: str | None = None
    while token is None:
        await sleep(poll_s)
        slept += poll_s
        if max(slept, loop.time() - started) >= expires_in:
            raise AuthError(NAME, "the code expired before it was entered; try again")
        try:
            answer = await http.send("GET", f"/api/v2/pins/{pin.id}")
        except RetryableError as exc:
            log.warning("plex.pin.poll_failed", error=str(exc))
            continue
        if answer.status == 404:
            raise AuthError(NAME, "the code expired before it was entered; try again")
        if answer.status == 429 or answer.status >= 500:
            log.warning("plex.pin.poll_failed", status=answer.status)
            continue
        if not answer.ok:
            raise AuthError(NAME, f"checking the PIN failed: HTTP {answer.status}")
        token = _parse(answer, _Pin).auth_token
    answer = await http.send("GET", "/api/v2/user", headers={"X-Plex-Token": token})
    if not answer.ok:
        raise AuthError(NAME, f"plex.tv refused the new token: HTTP {answer.status}")
    user = _parse(answer, _User)
    stored = tokens.save(
        {"access_token": token, "username": user.username or user.title, "account_id": user.id}
    )
    log.info("plex.pin.authorized", account=user.username or user.title)
    out(f"Plex account {user.username or user.title or '?'} signed in.")
    return stored
