"""Trakt as a delivery target: history, live scrobbles, OAuth device flow and token refresh.

Facts used here come from Trakt's API Blueprint (``shared/reference/trakt/trakt.apib``),
sections named in each docstring:

- "Required Headers": ``Content-Type: application/json``, ``User-Agent``, ``trakt-api-key``
  (client id), ``trakt-api-version: 2``; ``Authorization: Bearer`` for OAuth methods.
- "Rate Limiting": 1 POST/PUT/DELETE per second, 1000 GETs per 5 minutes; 429 carries
  ``Retry-After`` and ``X-Ratelimit``. Every HTTP attempt goes through the injected
  :class:`~crosswatchd.ratelimit.Limiter`.
- "Status Codes", "Locked User Account", "VIP Methods": how statuses are translated into
  :mod:`crosswatchd.errors`.
- "Authentication - OAuth / Refresh Token": access tokens live 24 h; refresh tokens rotate,
  so the new one is saved (atomically, 0600) before the new access token is used.
- "Sync / Add to History" has no de-duplication: a ``POST /sync/history`` that timed out may
  have landed, so it is never retried in-process; the drainer asks :meth:`find_in_history`.
- A refresh token Trakt refuses (``invalid_grant``), or an access token still refused right
  after a refresh, is revoked in the :class:`~crosswatchd.tokens.TokenStore` (the file becomes
  ``trakt.json.revoked``): the daemon stops using it and ``crosswatchd auth trakt`` starts anew.
  A refused *app* (403 wrong client id, ``invalid_client``) never revokes: that is config.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import backoff
import orjson
import structlog

from crosswatchd import __version__
from crosswatchd.errors import AuthError, ErrorScope, PermanentError, RetryableError
from crosswatchd.models import Action, Ids, Item, MediaKind, format_utc, parse_utc
from crosswatchd.providers.base import LiveOutcome, Play, PlayOutcome, split_sendable
from crosswatchd.ratelimit import Limiter
from crosswatchd.tokens import Token, TokenStore

__all__ = ["DEFAULT_USER_AGENT", "TraktProvider", "device_auth"]

log = structlog.get_logger(__name__)

DEFAULT_USER_AGENT = f"crosswatchd/{__version__}"

_PROVIDER = "trakt"
_AUTH_HINT = "run `crosswatchd auth trakt`"
#: Refresh when the access token expires within this many seconds.
_REFRESH_MARGIN_S = 3600.0
#: Default tolerance of :meth:`TraktProvider.find_in_history`: a history entry within this many
#: seconds of a play's watched_at is that play.
_MATCH_TOLERANCE_S = 5.0
#: Scrobble progress is kept below Trakt's 80 % scrobble mark ("Scrobble / Stop").
_SCROBBLE_MIN_PCT = 1.0
_SCROBBLE_MAX_PCT = 79.9
_HISTORY_PAGE_LIMIT = 100
_HISTORY_MAX_PAGES = 200
#: Plays whose look-up windows (watched_at ± tolerance) are further apart than this are looked
#: up with separate ranged history queries; closer ones share one.
_RANGE_GAP = timedelta(hours=12)
#: GETs are retried in-process only for server waits up to this long.
_MAX_INPROCESS_WAIT_S = 5.0
_OOB_REDIRECT = "urn:ietf:wg:oauth:2.0:oob"

_MOVIE_ID_KEYS = ("trakt", "imdb", "tmdb")
_EPISODE_ID_KEYS = ("trakt", "tvdb", "imdb", "tmdb")
_SHOW_ID_KEYS = ("trakt", "tvdb", "imdb", "tmdb")

Sleep = Callable[[float], Awaitable[None]]


def _api_ids(ids: Ids, keys: Sequence[str]) -> dict[str, str | int]:
    """Ids in Trakt's shape (numbers as ints, imdb as string), only the *keys* Trakt knows."""
    return {k: v for k, v in ids.as_api_ids().items() if k in keys}


def _id_pairs(ids: Mapping[str, Any] | None) -> set[tuple[str, str]]:
    if not ids:
        return set()
    return {(k, str(v)) for k, v in ids.items() if v not in (None, "", 0)}


def _headers(client_id: str, user_agent: str, access_token: str | None = None) -> dict[str, str]:
    """The headers every request carries ("Required Headers")."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "trakt-api-key": client_id,
        "trakt-api-version": "2",
    }
    if access_token:
        headers["Authorization"] = f"Bearer {access_token}"
    return headers


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g}s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass(frozen=True, slots=True)
class _Response:
    """One HTTP answer. ``wait_s`` is what the limiter learned from it (Retry-After etc.)."""

    method: str
    path: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    wait_s: float | None

    @property
    def what(self) -> str:
        return f"{self.method} {self.path}"

    def json(self) -> Any:
        """The parsed body; a 2xx answer without JSON is a transient server problem."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise RetryableError(
                _PROVIDER, f"{self.what}: HTTP {self.status} with a non-JSON body"
            ) from None


def _raise_for_status(resp: _Response) -> None:
    """Translate a non-2xx status into an error ("Status Codes", "Rate Limiting",
    "Locked User Account", "VIP Methods"). Returns for 2xx.

    420, 423 and 426 are :class:`PermanentError` with ``scope="account"``; other refused
    requests (400, 404, 409, 412, 422, ...) ``scope="request"``.
    """
    status, what = resp.status, resp.what
    if 200 <= status < 300:
        return
    if status == 429:
        raise RetryableError(_PROVIDER, f"{what}: rate limited (429)", retry_after_s=resp.wait_s)
    if status >= 500:
        raise RetryableError(_PROVIDER, f"{what}: server error {status}", retry_after_s=resp.wait_s)
    if status == 401:
        raise AuthError(_PROVIDER, f"{what}: unauthorized (401); {_AUTH_HINT}")
    if status == 420:
        limit = resp.headers.get("X-Account-Limit", "?")
        vip = resp.headers.get("X-VIP-User", "?")
        raise PermanentError(
            _PROVIDER,
            f"{what}: account limit exceeded (420, X-Account-Limit={limit}, VIP={vip}); "
            "Trakt VIP raises the limit",
            scope=ErrorScope.ACCOUNT,
        )
    if status == 423:
        locked = resp.headers.get("X-Account-Locked", "?")
        deactivated = resp.headers.get("X-Account-Deactivated", "?")
        raise PermanentError(
            _PROVIDER,
            f"{what}: account locked (423, locked={locked}, deactivated={deactivated}); "
            "contact Trakt support",
            scope=ErrorScope.ACCOUNT,
        )
    if status == 426:
        raise PermanentError(_PROVIDER, f"{what}: Trakt VIP only (426)", scope=ErrorScope.ACCOUNT)
    if status == 403:
        # The app itself is refused (wrong or revoked client id): a configuration problem,
        # not the play's. Plays wait for it to be fixed instead of dying.
        raise AuthError(
            _PROVIDER, f"{what}: Trakt refused the app (403): check trakt.client_id; plays wait"
        )
    if status == 412:
        raise PermanentError(_PROVIDER, f"{what}: content type rejected (412)")
    raise PermanentError(_PROVIDER, f"{what}: rejected with HTTP {status}")


async def _send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    json_body: Any,
    params: Mapping[str, str] | None,
    timeout_s: float,
) -> tuple[int, Mapping[str, str], bytes]:
    data = orjson.dumps(json_body) if json_body is not None else None
    async with session.request(
        method,
        url,
        headers=dict(headers),
        data=data,
        params=dict(params) if params else None,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as resp:
        return resp.status, resp.headers, await resp.read()


@dataclass(frozen=True, slots=True)
class _Sent:
    """Where one play went in the ``POST /sync/history`` body."""

    play: Play
    form: str  # "movies" | "episodes" | "shows"
    ids: dict[str, str | int]  # the ids sent (the show's for the shows form)


class TraktProvider:
    """Trakt (https://trakt.tv) behind :class:`~crosswatchd.providers.base.Provider`.

    All collaborators are injected: the HTTP *session* (owned by the caller), the *limiter*
    (acquired before every HTTP attempt, fed every response), the *tokens* store, the
    credentials, *api_url* (``https://api.trakt.tv`` or a fake), per-request *timeout_s*
    and a wall *clock* (unix seconds) for token expiry.

    Errors: :class:`RetryableError` (429, 5xx/52x, timeouts, connection errors, non-JSON 2xx),
    :class:`PermanentError` (420, 423, 426 with ``scope="account"``; other 4xx with
    ``scope="request"``), :class:`AuthError` (no token; refresh refused or 401 after a
    refresh, both of which also revoke the token; 403 app refused, which does not).
    """

    name = "trakt"
    max_batch = 100
    #: Trakt history is a list of plays ("Sync / Add to History": no de-duplication).
    keeps_every_play = True

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        limiter: Limiter,
        tokens: TokenStore,
        client_id: str,
        client_secret: str,
        api_url: str,
        timeout_s: float = 30.0,
        user_agent: str = DEFAULT_USER_AGENT,
        clock: Callable[[], float] = time.time,
        get_tries: int = 3,
        get_backoff_s: float = 0.5,
    ) -> None:
        self._session = session
        self._limiter = limiter
        self._tokens = tokens
        self._client_id = client_id
        self._client_secret = client_secret
        self._api_url = api_url.rstrip("/")
        self._timeout_s = timeout_s
        self._user_agent = user_agent
        self._clock = clock
        self._get_tries = max(1, get_tries)
        self._get_backoff_s = get_backoff_s
        self._refresh_lock = asyncio.Lock()

    # --- Provider -------------------------------------------------------------------------
    def is_authorized(self) -> bool:
        """True when a token is stored (it may still need a refresh on first use)."""
        return self._tokens.load() is not None

    def missing_ids(self, item: Item) -> str | None:
        """Why Trakt cannot take *item*, or ``None``.

        A movie needs a trakt, imdb or tmdb id; an episode needs its own trakt/tvdb/imdb/tmdb
        id, or its show's plus season and number ("Sync / Add to History", "Scrobble").
        """
        if item.kind is MediaKind.MOVIE:
            if _api_ids(item.ids, _MOVIE_ID_KEYS):
                return None
            return "movie has no trakt, imdb or tmdb id"
        if _api_ids(item.ids, _EPISODE_ID_KEYS):
            return None
        if not _api_ids(item.show_ids, _SHOW_ID_KEYS):
            return "episode has no trakt/tvdb/imdb/tmdb id of its own or of its show"
        if item.season is None or item.number is None:
            return "episode has only show ids and no season/episode number"
        return None

    async def add_history(self, plays: Sequence[Play]) -> dict[int, PlayOutcome]:
        """Record *plays* with one ``POST /sync/history`` ("Sync / Add to History").

        Movies go in ``movies[]``, episodes with their own ids in ``episodes[]``, other
        episodes under ``shows[].seasons[].episodes[]``; each with ``watched_at``. The answer's
        ``not_found`` entries are mapped back to plays (``NOT_FOUND``); when ``added`` counts
        the rest of a type exactly, those are ``ADDED``, otherwise ``UNCONFIRMED``. Plays
        :meth:`missing_ids` rejects are ``NOT_FOUND`` without being sent.

        Never retried in-process: a timeout raises :class:`RetryableError` though the plays
        may have been recorded (Trakt does not de-duplicate).
        """
        if len(plays) > self.max_batch:
            raise ValueError(f"at most {self.max_batch} plays per call, got {len(plays)}")
        sendable, outcomes = split_sendable("trakt", plays, self.missing_ids)
        if not sendable:
            return outcomes
        body, sent = _history_body(sendable)
        resp = await self._call("POST", "/sync/history", json_body=body)
        _raise_for_status(resp)
        data = resp.json()
        if not isinstance(data, dict):
            raise RetryableError(_PROVIDER, f"{resp.what}: unexpected answer shape")
        missing = _not_found_keys(data.get("not_found"), sent)
        raw_added = data.get("added")
        added: dict[str, Any] = raw_added if isinstance(raw_added, dict) else {}
        for kind in ("movies", "episodes"):
            rest = [
                s.play.key
                for s in sent
                if (s.form == "movies") == (kind == "movies") and s.play.key not in missing
            ]
            confirmed = added.get(kind) == len(rest)
            for key in rest:
                outcomes[key] = PlayOutcome.ADDED if confirmed else PlayOutcome.UNCONFIRMED
        for key in missing:
            outcomes[key] = PlayOutcome.NOT_FOUND
        log.info(
            "trakt.history.sent",
            plays=len(sent),
            added=added,
            not_found=len(missing),
            unconfirmed=sum(1 for o in outcomes.values() if o is PlayOutcome.UNCONFIRMED),
        )
        return outcomes

    async def find_in_history(
        self, plays: Sequence[Play], *, tolerance_s: float = _MATCH_TOLERANCE_S
    ) -> set[int]:
        """Keys of *plays* already in the account's history: the same item, watched within
        ±*tolerance_s* seconds of the play's ``watched_at`` ("Sync / Get History").

        Plays are grouped per type (movies, episodes) into time ranges: plays whose windows
        (``watched_at`` ± tolerance) lie within 12 h of each other share one range. Each range
        is one ranged query, ``start_at`` = first play − tolerance, ``end_at`` = last play +
        tolerance, every page followed ("Pagination", 100 per page). A range of one item with
        a known trakt id uses ``GET /sync/history/{type}/{trakt_id}``, others
        ``GET /sync/history/{type}``; so a batch costs one GET per range and page, not one
        per play, whatever the tolerance (e.g. 14 400 s for the import dedupe window).

        Entries match by any movie id, the episode's own ids, or show ids + season + number.
        One history entry accounts for at most one play (the closest), so two plays of the
        same item near one recorded play are not both reported as found.

        GETs are retried in-process a few times (short jittered backoff). Raises
        ``ValueError`` for a negative tolerance; otherwise like :meth:`add_history`.
        """
        if tolerance_s < 0:
            raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
        tolerance = timedelta(seconds=tolerance_s)
        found: set[int] = set()
        queries = 0
        for kind in ("movies", "episodes"):
            group = [p for p in plays if (p.item.kind is MediaKind.MOVIE) == (kind == "movies")]
            for cluster in _clusters(group, tolerance):
                trakt_ids = {p.item.ids.trakt for p in cluster}
                only = next(iter(trakt_ids)) if len(trakt_ids) == 1 else None
                path = f"/sync/history/{kind}"
                if only and only.isdigit():
                    path += f"/{only}"
                items = await self._history(
                    path, cluster[0].watched_at - tolerance, cluster[-1].watched_at + tolerance
                )
                queries += 1
                found |= _matches(items, cluster, tolerance_s)
        log.info(
            "trakt.history.checked",
            plays=len(plays),
            found=len(found),
            ranges=queries,
            tolerance_s=tolerance_s,
        )
        return found

    async def scrobble(self, action: Action, item: Item, progress_pct: float) -> LiveOutcome:
        """Send live state: START → ``/scrobble/start``, PAUSE and STOP → ``/scrobble/pause``.

        Progress is clamped to [1, 79.9] so that a scrobble can never record a play ("Scrobble
        / Stop": 80 % and above is a play). 201 → ``SENT``; 409 (just scrobbled) →
        ``ALREADY``; 404 (unknown item) → ``NOT_FOUND``. An item :meth:`missing_ids` rejects
        is ``NOT_FOUND`` without a request. Raises ``ValueError`` for ``Action.WATCHED``.
        """
        if action is Action.WATCHED:
            raise ValueError("completed plays go through add_history, not scrobble")
        if self.missing_ids(item) is not None:
            return LiveOutcome.NOT_FOUND
        path = "/scrobble/start" if action is Action.START else "/scrobble/pause"
        progress = round(min(max(progress_pct, _SCROBBLE_MIN_PCT), _SCROBBLE_MAX_PCT), 2)
        body: dict[str, Any] = {"progress": progress}
        if item.kind is MediaKind.MOVIE:
            body["movie"] = {"ids": _api_ids(item.ids, _MOVIE_ID_KEYS)}
        elif own := _api_ids(item.ids, _EPISODE_ID_KEYS):
            body["episode"] = {"ids": own}
        else:
            body["show"] = {"ids": _api_ids(item.show_ids, _SHOW_ID_KEYS)}
            body["episode"] = {"season": item.season, "number": item.number}
        resp = await self._call("POST", path, json_body=body)
        if resp.status == 409:
            log.info("trakt.scrobble.already", path=path, item=item.label())
            return LiveOutcome.ALREADY
        if resp.status == 404:
            log.info("trakt.scrobble.not_found", path=path, item=item.label())
            return LiveOutcome.NOT_FOUND
        _raise_for_status(resp)
        resp.json()
        log.info("trakt.scrobble.sent", path=path, item=item.label(), progress=progress)
        return LiveOutcome.SENT

    async def close(self) -> None:
        """Nothing to release: the session belongs to the caller."""

    # --- HTTP -----------------------------------------------------------------------------
    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        access_token: str | None = None,
    ) -> _Response:
        """One HTTP attempt, paced by the limiter; transport failures → RetryableError."""
        await self._limiter.acquire(method)
        try:
            status, headers, raw = await _send(
                self._session,
                method,
                self._api_url + path,
                headers=_headers(self._client_id, self._user_agent, access_token),
                json_body=json_body,
                params=params,
                timeout_s=self._timeout_s,
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason = _describe(exc, self._timeout_s)
            log.warning("trakt.request.failed", method=method, path=path, reason=reason)
            raise RetryableError(_PROVIDER, f"{method} {path}: {reason}") from exc
        wait_s = self._limiter.observe(method, status, headers)
        log.debug("trakt.request", method=method, path=path, status=status)
        return _Response(method, path, status, headers, raw, wait_s)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> _Response:
        """An OAuth request; on 401 the token is refreshed once and the request retried once.

        A second 401 with the fresh token means the grant is gone: the token is revoked
        (:meth:`TokenStore.revoke`) and :class:`AuthError` raised.
        """
        token = await self._token()
        resp = await self._attempt(
            method, path, json_body=json_body, params=params, access_token=token.access_token
        )
        if resp.status != 401:
            return resp
        log.info("trakt.unauthorized", method=method, path=path)
        token = await self._refresh(token)
        resp = await self._attempt(
            method, path, json_body=json_body, params=params, access_token=token.access_token
        )
        if resp.status == 401:
            log.warning("trakt.token.revoked", reason="401 after refresh", path=path)
            self._revoke(token)
            raise AuthError(_PROVIDER, f"{resp.what}: token rejected after refresh; {_AUTH_HINT}")
        return resp

    async def _get_json(self, path: str, params: Mapping[str, str]) -> tuple[Any, _Response]:
        """GET with a few short, jittered in-process retries of transient failures."""

        async def once() -> tuple[Any, _Response]:
            resp = await self._call("GET", path, params=params)
            _raise_for_status(resp)
            return resp.json(), resp

        def give_up(exc: Exception) -> bool:
            wait = getattr(exc, "retry_after_s", None)
            return wait is not None and wait > _MAX_INPROCESS_WAIT_S

        def on_backoff(details: Mapping[str, Any]) -> None:
            log.info("trakt.get.retry", path=path, tries=details.get("tries"))

        retrying: Callable[[], Awaitable[tuple[Any, _Response]]] = backoff.on_exception(
            backoff.expo,
            RetryableError,
            max_tries=self._get_tries,
            factor=self._get_backoff_s,
            jitter=backoff.full_jitter,
            giveup=give_up,
            on_backoff=on_backoff,
            logger=None,
        )(once)
        return await retrying()

    async def _history(self, path: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """All history items at *path* watched between *start* and *end*, every page."""
        params = {
            "start_at": format_utc(start),
            "end_at": format_utc(end),
            "limit": str(_HISTORY_PAGE_LIMIT),
        }
        items: list[dict[str, Any]] = []
        for page in range(1, _HISTORY_MAX_PAGES + 1):
            data, resp = await self._get_json(path, {**params, "page": str(page)})
            if not isinstance(data, list):
                raise RetryableError(_PROVIDER, f"{resp.what}: expected a list")
            items.extend(entry for entry in data if isinstance(entry, dict))
            try:
                pages = int(resp.headers.get("X-Pagination-Page-Count", "1"))
            except ValueError:
                pages = 1
            if page >= pages or len(data) < _HISTORY_PAGE_LIMIT:
                break
        else:
            log.warning("trakt.history.truncated", path=path, pages=_HISTORY_MAX_PAGES)
        return items

    # --- tokens ---------------------------------------------------------------------------
    def _revoke(self, used: Token) -> None:
        """Revoke the stored token if it is still *used* (``auth`` may have replaced it)."""
        current = self._tokens.load()
        if current is not None and current.access_token == used.access_token:
            self._tokens.revoke()
            log.warning("trakt.token.revoked", hint=_AUTH_HINT)

    async def _token(self) -> Token:
        """The stored token, refreshed first when it expires within an hour."""
        token = self._tokens.load()
        if token is None:
            raise AuthError(_PROVIDER, f"not authorized; {_AUTH_HINT}")
        if token.expires_within(_REFRESH_MARGIN_S, now=self._clock()):
            log.info("trakt.token.expiring", expires_at=token.expires_at)
            token = await self._refresh(token)
        return token

    async def _refresh(self, stale: Token) -> Token:
        """Exchange the refresh token ("Authentication - OAuth / Refresh Token").

        One refresh at a time: a caller that waited for another's refresh uses its result.
        The rotated token is saved before it is returned. Refused grant (400, 401,
        ``invalid_grant``) → the token is revoked and :class:`AuthError` raised; the app
        refused (403, ``invalid_client``) → :class:`AuthError`, the token is kept.
        """
        async with self._refresh_lock:
            current = self._tokens.load()
            if current is None:
                raise AuthError(_PROVIDER, f"not authorized; {_AUTH_HINT}")
            fresh = not current.expires_within(_REFRESH_MARGIN_S, now=self._clock())
            if current.access_token != stale.access_token and fresh:
                return current
            if not current.refresh_token:
                raise AuthError(_PROVIDER, f"token expired and no refresh token; {_AUTH_HINT}")
            body = {
                "refresh_token": current.refresh_token,
                "client_id": self._client_id,
                "client_secret": self._client_secret,
                "redirect_uri": _OOB_REDIRECT,
                "grant_type": "refresh_token",
            }
            resp = await self._attempt("POST", "/oauth/token", json_body=body)
            if resp.status == 429 or resp.status >= 500:
                _raise_for_status(resp)
            if resp.status != 200:
                error = _oauth_error(resp)
                log.warning("trakt.refresh.refused", status=resp.status, error=error)
                if resp.status == 403 or error == "invalid_client":
                    # The app is refused, not the grant: the token may be fine. Config problem.
                    raise AuthError(
                        _PROVIDER,
                        f"Trakt refused the app while refreshing (HTTP {resp.status}): "
                        "check trakt.client_id and trakt.client_secret; plays wait",
                    )
                if resp.status in (400, 401) or error == "invalid_grant":
                    self._revoke(current)
                    raise AuthError(
                        _PROVIDER,
                        f"refresh token refused (HTTP {resp.status}); the token was revoked; "
                        f"{_AUTH_HINT}",
                    )
                raise AuthError(
                    _PROVIDER, f"refresh token refused (HTTP {resp.status}); {_AUTH_HINT}"
                )
            data = resp.json()
            if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
                raise RetryableError(_PROVIDER, f"{resp.what}: answer without an access token")
            token = self._tokens.save(data)
            log.info("trakt.refresh", expires_at=token.expires_at)
            return token


def _oauth_error(resp: _Response) -> str:
    """The ``error`` field of an OAuth error answer (e.g. ``invalid_grant``), or ``""``."""
    try:
        data = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, str) else ""


# --- add_history helpers ----------------------------------------------------------------------
def _history_body(plays: Sequence[Play]) -> tuple[dict[str, Any], list[_Sent]]:
    """The ``POST /sync/history`` body for *plays* and where each play went."""
    movies: list[dict[str, Any]] = []
    episodes: list[dict[str, Any]] = []
    shows: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    sent: list[_Sent] = []
    for play in plays:
        item, watched_at = play.item, format_utc(play.watched_at)
        if item.kind is MediaKind.MOVIE:
            ids = _api_ids(item.ids, _MOVIE_ID_KEYS)
            movies.append({"ids": ids, "watched_at": watched_at})
            sent.append(_Sent(play, "movies", ids))
        elif own := _api_ids(item.ids, _EPISODE_ID_KEYS):
            episodes.append({"ids": own, "watched_at": watched_at})
            sent.append(_Sent(play, "episodes", own))
        else:
            show_ids = _api_ids(item.show_ids, _SHOW_ID_KEYS)
            show = shows.setdefault(
                tuple(sorted(_id_pairs(show_ids))), {"ids": show_ids, "seasons": []}
            )
            season = next((s for s in show["seasons"] if s["number"] == item.season), None)
            if season is None:
                season = {"number": item.season, "episodes": []}
                show["seasons"].append(season)
            season["episodes"].append({"number": item.number, "watched_at": watched_at})
            sent.append(_Sent(play, "shows", show_ids))
    body: dict[str, Any] = {}
    if movies:
        body["movies"] = movies
    if shows:
        body["shows"] = list(shows.values())
    if episodes:
        body["episodes"] = episodes
    return body, sent


def _not_found_keys(not_found: Any, sent: Sequence[_Sent]) -> set[int]:
    """Play keys named by the answer's ``not_found`` ("Sync / Add to History").

    ``movies``/``episodes`` entries echo the ids we sent. An episode sent under its show
    (``shows[].seasons[].episodes[]``) that Trakt cannot place (a special such as S00E07,
    anime numbering) comes back as a ``shows`` entry with the show's ids and only the
    missing ``seasons[].episodes[]`` (no ``seasons``: the whole show); it is mapped back by
    show ids + season + number. An ``episodes`` entry without ids (the bare episode object
    echoed) is mapped to the one show-form play with that number (and season and
    ``watched_at`` when given), if exactly one fits.
    """
    if not isinstance(not_found, dict):
        return set()
    keys: set[int] = set()
    for form in ("movies", "episodes", "shows"):
        entries = not_found.get(form)
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            pairs = _id_pairs(entry.get("ids") if isinstance(entry.get("ids"), dict) else None)
            if form == "episodes" and not pairs:
                keys |= _bare_episode_keys(entry, sent, keys)
                continue
            for s in sent:
                if s.form != form or not pairs & _id_pairs(s.ids):
                    continue
                if form == "shows" and not _listed_episode(entry, s.play.item):
                    continue
                keys.add(s.play.key)
    return keys


def _bare_episode_keys(entry: dict[str, Any], sent: Sequence[_Sent], taken: set[int]) -> set[int]:
    """The show-form play a not-found episode object without ids stands for, if unique."""
    number = entry.get("number")
    if not isinstance(number, int):
        return set()
    hits = {
        s.play.key
        for s in sent
        if s.form == "shows"
        and s.play.key not in taken
        and s.play.item.number == number
        and entry.get("season", s.play.item.season) == s.play.item.season
        and entry.get("watched_at", format_utc(s.play.watched_at)) == format_utc(s.play.watched_at)
    }
    return hits if len(hits) == 1 else set()


def _listed_episode(show_entry: dict[str, Any], item: Item) -> bool:
    """True if a not-found show entry covers *item* (no ``seasons`` → the whole show)."""
    seasons = show_entry.get("seasons")
    if not isinstance(seasons, list) or not seasons:
        return True
    for season in seasons:
        if not isinstance(season, dict) or season.get("number") != item.season:
            continue
        episodes = season.get("episodes")
        if not isinstance(episodes, list) or not episodes:
            return True
        if any(isinstance(e, dict) and e.get("number") == item.number for e in episodes):
            return True
    return False


# --- find_in_history helpers --------------------------------------------------------------------
def _clusters(plays: Sequence[Play], tolerance: timedelta) -> list[list[Play]]:
    """*plays* sorted by watched_at, split where the look-up windows of consecutive plays
    (watched_at ± *tolerance*) are more than :data:`_RANGE_GAP` apart."""
    ordered = sorted(plays, key=lambda p: p.watched_at)
    clusters: list[list[Play]] = []
    for play in ordered:
        if clusters and play.watched_at - clusters[-1][-1].watched_at <= _RANGE_GAP + 2 * tolerance:
            clusters[-1].append(play)
        else:
            clusters.append([play])
    return clusters


def _matches(
    entries: Sequence[dict[str, Any]], plays: Sequence[Play], tolerance_s: float
) -> set[int]:
    """Keys of *plays* that history *entries* account for, one entry per play at most.

    Candidate pairs (same item, within *tolerance_s*) are taken closest first; an entry or a
    play already paired is skipped. Entries are told apart by their history ``id``.
    """
    candidates: list[tuple[float, int, int]] = []
    for index, entry in enumerate(entries):
        try:
            watched_at = parse_utc(str(entry.get("watched_at")))
        except ValueError:
            continue
        for play in plays:
            distance = abs((watched_at - play.watched_at).total_seconds())
            if distance <= tolerance_s and _same_item(entry, play.item):
                candidates.append((distance, index, play.key))
    candidates.sort()
    used: set[Any] = set()
    found: set[int] = set()
    for _, index, key in candidates:
        entry_id = entries[index].get("id", ("index", index))
        if entry_id in used or key in found:
            continue
        used.add(entry_id)
        found.add(key)
    return found


def _same_item(entry: dict[str, Any], item: Item) -> bool:
    """True if history *entry* is a play of *item* (any shared id; show ids + numbers)."""
    if item.kind is MediaKind.MOVIE:
        movie = entry.get("movie")
        return isinstance(movie, dict) and bool(
            _id_pairs(movie.get("ids")) & _id_pairs(_api_ids(item.ids, _MOVIE_ID_KEYS))
        )
    episode, show = entry.get("episode"), entry.get("show")
    if not isinstance(episode, dict):
        return False
    if _id_pairs(episode.get("ids")) & _id_pairs(_api_ids(item.ids, _EPISODE_ID_KEYS)):
        return True
    return (
        isinstance(show, dict)
        and episode.get("season") == item.season
        and episode.get("number") == item.number
        and bool(_id_pairs(show.get("ids")) & _id_pairs(_api_ids(item.show_ids, _SHOW_ID_KEYS)))
    )


# --- device authorization -------------------------------------------------------------------
async def device_auth(
    *,
    session: aiohttp.ClientSession,
    tokens: TokenStore,
    client_id: str,
    client_secret: str,
    api_url: str,
    out: Callable[[str], None] = print,
    sleep: Sleep = asyncio.sleep,
    user_agent: str = DEFAULT_USER_AGENT,
    clock: Callable[[], float] = time.monotonic,
    timeout_s: float = 30.0,
) -> Token:
    """Authorize crosswatchd with Trakt's device flow ("Authentication - Devices").

    ``POST /oauth/device/code`` → show ``verification_url`` and ``user_code`` via *out*; then
    poll ``POST /oauth/device/token`` every ``interval`` seconds (waiting with *sleep*):
    400 pending → keep polling; 429 slow down → poll less often; 404 invalid code, 409
    already used, 410 expired, 418 denied → :class:`AuthError`; transient failures → keep
    polling. Gives up with :class:`AuthError` once ``expires_in`` seconds (by *clock*,
    monotonic) have passed. On 200 the token is saved (0600) in *tokens* and returned.
    """
    base = api_url.rstrip("/")
    headers = _headers(client_id, user_agent)

    async def post(path: str, body: dict[str, str]) -> tuple[int, Mapping[str, str], bytes]:
        return await _send(
            session,
            "POST",
            base + path,
            headers=headers,
            json_body=body,
            params=None,
            timeout_s=timeout_s,
        )

    try:
        status, _, raw = await post("/oauth/device/code", {"client_id": client_id})
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise AuthError(_PROVIDER, f"could not reach Trakt: {_describe(exc, timeout_s)}") from exc
    if status != 200:
        hint = " (check trakt.client_id)" if status in (401, 403) else ""
        raise AuthError(_PROVIDER, f"device code request refused: HTTP {status}{hint}")
    try:
        codes = orjson.loads(raw)
        device_code = str(codes["device_code"])
        user_code = str(codes["user_code"])
        verification_url = str(codes["verification_url"])
        interval_s = float(codes.get("interval", 5))
        expires_in_s = float(codes.get("expires_in", 600))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise AuthError(_PROVIDER, "device code answer was not understood") from exc
    out(f"Open {verification_url} and enter the code {user_code}")
    log.info("trakt.device.started", expires_in_s=expires_in_s, interval_s=interval_s)
    deadline = clock() + expires_in_s
    poll_body = {"code": device_code, "client_id": client_id, "client_secret": client_secret}
    while True:
        await sleep(interval_s)
        if clock() >= deadline:
            raise AuthError(
                _PROVIDER,
                "the code expired before it was approved; run `crosswatchd auth trakt` again",
            )
        try:
            status, resp_headers, raw = await post("/oauth/device/token", poll_body)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("trakt.device.poll_failed", reason=_describe(exc, timeout_s))
            continue
        if status == 200:
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                data = None
            if not isinstance(data, dict) or not isinstance(data.get("access_token"), str):
                raise AuthError(_PROVIDER, "token answer was not understood; try again")
            token = tokens.save(data)
            log.info("trakt.device.authorized", expires_at=token.expires_at)
            return token
        if status == 400:
            continue
        if status == 429:
            retry_after = resp_headers.get("Retry-After", "")
            wait = float(retry_after) if retry_after.isdigit() else 0.0
            interval_s = max(interval_s * 2, wait)
            log.info("trakt.device.slow_down", interval_s=interval_s)
            continue
        if status >= 500:
            log.warning("trakt.device.poll_failed", status=status)
            continue
        raise AuthError(
            _PROVIDER, _DEVICE_ERRORS.get(status, f"device authorization failed: HTTP {status}")
        )


_DEVICE_ERRORS = {
    404: "invalid device code; run `crosswatchd auth trakt` again",
    409: "this code was already used; run `crosswatchd auth trakt` again",
    410: "the code expired before it was approved; run `crosswatchd auth trakt` again",
    418: "authorization was denied on trakt.tv",
    401: "client id or secret rejected; check trakt.client_id and trakt.client_secret",
}
