"""A strict fake of the Trakt API, served by a real aiohttp app on 127.0.0.1.

It answers the endpoints crosswatchd uses, as strictly as the real service (Trakt API
Blueprint, ``shared/reference/trakt``):

- "Required Headers": every request needs ``trakt-api-key`` == client id (else 403),
  ``trakt-api-version: 2`` (else 400) and a ``User-Agent`` (else 403); a POST needs
  ``Content-Type: application/json`` (else 412, "Status Codes").
- OAuth: ``/sync/*`` and ``/scrobble/*`` need ``Authorization: Bearer <valid access token>``
  (else 401). "Authentication - Devices" (device code flow), "Refresh Token" (rotating refresh
  tokens: the old one is dead after use, 401 ``invalid_grant``).
- "Rate Limiting": more than one authed POST/PUT/DELETE per second → 429 with ``Retry-After``
  and ``X-Ratelimit``; more than 1000 GETs per 300 s → 429. Always on.
- "Sync / Add to History" (no de-duplication, like the real one; an episode it cannot place
  under a known show is listed in ``not_found.shows`` with only the missing episodes),
  "Sync / Get History"
  ("Pagination"), "Scrobble" (stop ≥ 80 % records a play; a repeat within the window → 409),
  "Search / ID Lookup" and "Search / Text Query" (exact title match only).

Recorded state (plain attributes, for assertions):

- ``history``: plays, oldest first, shaped like ``GET /sync/history`` items
  ``{id, watched_at, action, type, movie | episode + show}``.
- ``scrobbles``: every ``/scrobble/*`` call ``{path, status, action, progress, item}``.
- ``requests``: ``(method, path, query)`` of every request received.
- ``rate_limited``: how many 429s the fake's own limit enforcement sent (device polls that
  came too fast included; injected ``fail_next(429)`` not counted); ``rate_limit_log`` has them.

Knobs: ``fail_next()``, ``down``, ``delay_s``, ``access_token_ttl_s``, ``device_interval_s``,
``device_expires_in_s``, ``auto_approve_after``, ``approve_device()``, ``deny_device()``,
``issue_token()``, ``expire_access_tokens()``, ``revoke_all()``.

Usage::

    async with FakeTrakt(client_id="cid", client_secret="csecret") as fake:
        ...  # fake.url

or ``await fake.start()`` / ``await fake.stop()`` from a plain script.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes.catalog import Catalog, default_catalog

__all__ = ["DeviceCode", "FakeTrakt"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_POST_PERIOD_S = 1.0
_GET_LIMIT = 1000
_GET_PERIOD_S = 300.0
_HISTORY_TYPES = {"movies", "shows", "seasons", "episodes"}


def _fmt(moment: datetime) -> str:
    """Trakt's wire format, whole seconds: ``2014-03-31T09:28:53.000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(value)
    return parsed.astimezone(UTC)


def _movie_obj(movie: dict[str, Any]) -> dict[str, Any]:
    ids = movie["ids"]
    return {
        "title": movie["title"],
        "year": movie["year"],
        "ids": {k: ids.get(k) for k in ("trakt", "slug", "imdb", "tmdb")},
    }


def _show_obj(show: dict[str, Any]) -> dict[str, Any]:
    ids = show["ids"]
    return {
        "title": show["title"],
        "year": show["year"],
        "ids": {k: ids.get(k) for k in ("trakt", "slug", "tvdb", "imdb", "tmdb")},
    }


def _episode_obj(episode: dict[str, Any]) -> dict[str, Any]:
    ids = episode["ids"]
    return {
        "season": episode["season"],
        "number": episode["number"],
        "title": episode["title"],
        "ids": {k: ids.get(k) for k in ("trakt", "tvdb", "imdb", "tmdb")},
    }


def _error(status: int, error: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, **extra}, status=status)


@dataclass
class DeviceCode:
    """One device-flow code pair (``POST /oauth/device/code``) and its polling state."""

    device_code: str
    user_code: str
    expires_at: float  # fake clock seconds
    interval_s: float
    state: str = "pending"  # pending | approved | denied | used
    polls: int = 0
    last_poll: float | None = None


@dataclass
class _Failure:
    status: int
    remaining: int
    headers: dict[str, str]
    body: Any
    path: str | None


@dataclass(eq=False, repr=False)
class FakeTrakt:
    """A strict fake Trakt API (see the module docstring for behaviour and knobs).

    ``clock`` is wall-clock unix seconds (token ``created_at``/expiry, device-code expiry);
    ``monotonic`` drives rate limits and poll intervals.
    """

    client_id: str = "cid"
    client_secret: str = "csecret"
    catalog: Catalog = field(default_factory=default_catalog)
    access_token_ttl_s: int = 86400
    device_interval_s: float = 5.0
    device_expires_in_s: float = 600.0
    #: Device-flow polls answered "pending" before the code is approved by itself (None: never).
    auto_approve_after: int | None = None
    #: A finished scrobble of the same item within this window is refused with 409.
    scrobble_window_s: float = 3600.0
    #: Slack on the 1-POST-per-second check, for scheduling jitter on a loaded test machine.
    post_tolerance_s: float = 0.05
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    host: str = "127.0.0.1"

    # --- recorded state -------------------------------------------------------------------
    history: list[dict[str, Any]] = field(default_factory=list)
    scrobbles: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    rate_limited: int = 0
    rate_limit_log: list[dict[str, Any]] = field(default_factory=list)
    devices: dict[str, DeviceCode] = field(default_factory=dict)  # by user_code
    # --- failure knobs --------------------------------------------------------------------
    down: bool = False
    delay_s: float = 0.0

    url: str = ""

    def __post_init__(self) -> None:
        self._access: dict[str, float] = {}  # access token -> expires_at (clock)
        self._refresh: set[str] = set()
        self._failures: list[_Failure] = []
        self._history_ids = itertools.count(3_373_536_600)
        self._last_post: float | None = None
        self._gets: dict[str, deque[float]] = {}
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return (
            f"FakeTrakt(url={self.url!r}, history={len(self.history)}, "
            f"scrobbles={len(self.scrobbles)}, requests={len(self.requests)}, "
            f"rate_limited={self.rate_limited})"
        )

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> str:
        """Serve on ``host`` at a random port; returns (and sets) :attr:`url`."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/oauth/device/code", self._device_code)
        app.router.add_post("/oauth/device/token", self._device_token)
        app.router.add_post("/oauth/token", self._token)
        app.router.add_post("/oauth/revoke", self._revoke)
        app.router.add_post("/sync/history", self._add_history)
        app.router.add_get("/sync/history", self._get_history)
        app.router.add_get("/sync/history/{type}", self._get_history)
        app.router.add_get("/sync/history/{type}/{id}", self._get_history)
        app.router.add_post("/scrobble/{action}", self._scrobble)
        app.router.add_get("/search/{id_type}/{id}", self._search_id)
        app.router.add_get("/search/{type}", self._search_text)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, shutdown_timeout=0.5)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTrakt:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- knobs ----------------------------------------------------------------------------
    def fail_next(
        self,
        status: int,
        count: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
        *,
        path: str | None = None,
    ) -> None:
        """Answer the next *count* requests (whose path starts with *path*, if given) with
        *status*, *headers* and *body* (dict/list → JSON, str → text/html, None → a JSON error).
        """
        self._failures.append(_Failure(status, count, dict(headers or {}), body, path))

    def issue_token(self, expires_in: int | None = None) -> dict[str, Any]:
        """Mint a valid token pair without the device flow; returns the token response."""
        ttl = self.access_token_ttl_s if expires_in is None else expires_in
        created_at = int(self.clock())
        access, refresh = secrets.token_hex(32), secrets.token_hex(32)
        self._access[access] = created_at + ttl
        self._refresh.add(refresh)
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
            "scope": "public",
            "created_at": created_at,
        }

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (refresh tokens still do)."""
        self._access.clear()

    def revoke_all(self) -> None:
        """Every access and refresh token stops working (the user revoked the app)."""
        self._access.clear()
        self._refresh.clear()

    def approve_device(self, user_code: str) -> None:
        """The user entered *user_code* and approved the app."""
        self.devices[user_code].state = "approved"

    def deny_device(self, user_code: str) -> None:
        """The user entered *user_code* and denied the app."""
        self.devices[user_code].state = "denied"

    def plays(self, kind: str | None = None) -> list[dict[str, Any]]:
        """History items (``kind`` ``"movie"``/``"episode"`` to filter), oldest first."""
        return [h for h in self.history if kind is None or h["type"] == kind]

    # --- middleware: logging, failures, headers, OAuth, rate limits ------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        if self.down:
            return web.Response(status=503, text="<html>503 Service Unavailable</html>")
        if self.delay_s:
            await request.read()  # the body has arrived; only the answer is slow
            await asyncio.sleep(self.delay_s)
        failure = self._take_failure(request.path)
        if failure is not None:
            return failure
        if request.headers.get("trakt-api-key") != self.client_id:
            return _error(403, "forbidden", error_description="invalid API key")
        if request.headers.get("trakt-api-version") != "2":
            return _error(400, "bad_request", error_description="trakt-api-version must be 2")
        if not request.headers.get("User-Agent"):
            return _error(403, "forbidden", error_description="User-Agent required")
        writes = request.method in {"POST", "PUT", "DELETE"}
        if writes and request.content_type != "application/json":
            return _error(412, "precondition_failed", error_description="use application/json")
        user: str | None = None
        auth = request.headers.get("Authorization")
        needs_auth = request.path.startswith(("/sync/", "/scrobble/"))
        if auth is not None or needs_auth:
            token = auth[7:] if auth and auth.startswith("Bearer ") else ""
            expires_at = self._access.get(token)
            if expires_at is None or expires_at <= self.clock():
                return _error(401, "invalid_token", error_description="OAuth must be provided")
            user = "me"
        limited = self._rate_limit(request.method, user)
        if limited is not None:
            return limited
        return await handler(request)

    def _take_failure(self, path: str) -> web.Response | None:
        for failure in self._failures:
            if failure.path is None or path.startswith(failure.path):
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                if isinstance(failure.body, str):
                    return web.Response(
                        status=failure.status,
                        text=failure.body,
                        headers=failure.headers,
                        content_type="text/html",
                    )
                body = failure.body if failure.body is not None else {"error": "injected"}
                return web.json_response(body, status=failure.status, headers=failure.headers)
        return None

    def _rate_limit(self, method: str, user: str | None) -> web.Response | None:
        now = self.monotonic()
        if method in {"POST", "PUT", "DELETE"}:
            if user is None:  # unauthed POSTs (OAuth endpoints) have no per-user limit
                return None
            last = self._last_post
            if last is not None and now - last < _POST_PERIOD_S - self.post_tolerance_s:
                wait = _POST_PERIOD_S - (now - last)
                return self._too_many("AUTHED_API_POST_LIMIT", _POST_PERIOD_S, 1, wait)
            self._last_post = now
            return None
        window = self._gets.setdefault(user or "app", deque())
        while window and now - window[0] >= _GET_PERIOD_S:
            window.popleft()
        if len(window) >= _GET_LIMIT:
            name = "AUTHED_API_GET_LIMIT" if user else "UNAUTHED_API_GET_LIMIT"
            return self._too_many(
                name, _GET_PERIOD_S, _GET_LIMIT, _GET_PERIOD_S - (now - window[0])
            )
        window.append(now)
        return None

    def _too_many(self, name: str, period: float, limit: int, wait_s: float) -> web.Response:
        until = datetime.now(UTC) + timedelta(seconds=wait_s)
        info = {
            "name": name,
            "period": int(period),
            "limit": limit,
            "remaining": 0,
            "until": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self.rate_limited += 1
        self.rate_limit_log.append(info)
        headers = {"Retry-After": str(max(1, math.ceil(wait_s))), "X-Ratelimit": json.dumps(info)}
        return web.json_response({"error": "rate_limited"}, status=429, headers=headers)

    # --- OAuth ----------------------------------------------------------------------------
    @staticmethod
    async def _json(request: web.Request) -> Any:
        try:
            return json.loads(await request.read())
        except ValueError:
            raise web.HTTPBadRequest(text='{"error":"invalid json"}') from None

    async def _device_code(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, dict) or body.get("client_id") != self.client_id:
            return _error(401, "invalid_client")
        device = DeviceCode(
            device_code=secrets.token_hex(32),
            user_code=secrets.token_hex(4).upper(),
            expires_at=self.monotonic() + self.device_expires_in_s,
            interval_s=self.device_interval_s,
        )
        self.devices[device.user_code] = device
        return web.json_response(
            {
                "device_code": device.device_code,
                "user_code": device.user_code,
                "verification_url": "https://trakt.tv/activate",
                "expires_in": self.device_expires_in_s,
                "interval": self.device_interval_s,
            }
        )

    async def _device_token(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            return _error(400, "invalid_request")
        if (
            body.get("client_id") != self.client_id
            or body.get("client_secret") != self.client_secret
        ):
            return _error(401, "invalid_client")
        device = next((d for d in self.devices.values() if d.device_code == body.get("code")), None)
        if device is None:
            return web.json_response({}, status=404)
        now = self.monotonic()
        if device.state == "used":
            return web.json_response({}, status=409)
        if now >= device.expires_at:
            return web.json_response({}, status=410)
        if device.state == "denied":
            return web.json_response({}, status=418)
        too_fast = device.last_poll is not None and now - device.last_poll < device.interval_s * 0.9
        device.last_poll = now
        if too_fast:
            self.rate_limited += 1
            self.rate_limit_log.append({"name": "DEVICE_POLL", "user_code": device.user_code})
            return web.json_response({}, status=429)
        device.polls += 1
        if self.auto_approve_after is not None and device.polls > self.auto_approve_after:
            device.state = "approved"
        if device.state != "approved":
            return web.json_response({}, status=400)
        device.state = "used"
        return web.json_response(self.issue_token())

    async def _token(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            return _error(400, "invalid_request")
        if (
            body.get("client_id") != self.client_id
            or body.get("client_secret") != self.client_secret
        ):
            return _error(401, "invalid_client")
        if body.get("grant_type") != "refresh_token":
            return _error(400, "unsupported_grant_type")
        refresh = body.get("refresh_token")
        if refresh not in self._refresh:
            return _error(
                401,
                "invalid_grant",
                error_description="The provided authorization grant is invalid, expired, revoked",
            )
        self._refresh.discard(refresh)
        return web.json_response(self.issue_token())

    async def _revoke(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if isinstance(body, dict):
            self._access.pop(str(body.get("token")), None)
        return web.json_response({})

    # --- sync/history ---------------------------------------------------------------------
    def _record(self, action: str, when: datetime, entry: dict[str, Any], kind: str) -> int:
        history_id = next(self._history_ids)
        item: dict[str, Any] = {"id": history_id, "watched_at": _fmt(when), "action": action}
        if kind == "movie":
            item.update(type="movie", movie=_movie_obj(entry))
        else:
            item.update(type="episode", episode=_episode_obj(entry), show=_show_obj(entry["show"]))
        self.history.append(item)
        return history_id

    @staticmethod
    def _watched_at(obj: dict[str, Any], default: datetime) -> datetime:
        raw = obj.get("watched_at")
        if raw is None or raw == "released":
            return default
        return _parse(str(raw))

    async def _add_history(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            return _error(400, "invalid_request")
        now = datetime.fromtimestamp(self.clock(), UTC)
        added = {"movies": 0, "episodes": 0}
        not_found: dict[str, list[Any]] = {
            "movies": [],
            "shows": [],
            "seasons": [],
            "episodes": [],
            "people": [],
        }
        plays: list[tuple[datetime, dict[str, Any], str]] = []
        try:
            for obj in body.get("movies") or []:
                movie = self.catalog.movie(obj.get("ids") or {})
                if movie is None:
                    not_found["movies"].append({"ids": obj.get("ids")})
                else:
                    plays.append((self._watched_at(obj, now), movie, "movie"))
            for obj in body.get("episodes") or []:
                episode = self.catalog.episode(obj.get("ids") or {})
                if episode is None:
                    not_found["episodes"].append({"ids": obj.get("ids")})
                else:
                    plays.append((self._watched_at(obj, now), episode, "episode"))
            for obj in body.get("shows") or []:
                show = self.catalog.show(obj.get("ids") or {})
                if show is None:
                    not_found["shows"].append({"ids": obj.get("ids")})
                    continue
                found, missing = self._show_plays(show, obj, now)
                plays.extend(found)
                if missing:
                    not_found["shows"].append({"ids": obj.get("ids"), "seasons": missing})
            for obj in body.get("seasons") or []:  # no season ids in the catalogue
                not_found["seasons"].append({"ids": obj.get("ids")})
        except (ValueError, TypeError, AttributeError):
            return _error(422, "unprocessable_entity", error_description="bad watched_at or item")
        for when, entry, kind in plays:
            self._record("watch", when, entry, kind)
            added["movies" if kind == "movie" else "episodes"] += 1
        return web.json_response({"added": added, "not_found": not_found}, status=201)

    def _show_plays(
        self, show: dict[str, Any], obj: dict[str, Any], now: datetime
    ) -> tuple[list[tuple[datetime, dict[str, Any], str]], list[dict[str, Any]]]:
        """Plays of a ``shows[]`` entry (all episodes, whole seasons, or listed episodes), and
        the ``seasons[{number, episodes[...]}]`` Trakt cannot place.

        A listed episode the catalogue lacks (a special like S00E07, anime numbering) is not
        added; like the real service, it is reported under ``not_found.shows`` with the show's
        ids as sent and only the missing episodes (echoed as sent).
        """
        episodes = [e for e in self.catalog.episodes if e["show"] is show]
        show_when = self._watched_at(obj, now)
        seasons = obj.get("seasons")
        if not seasons:
            return [(show_when, e, "episode") for e in episodes], []
        out: list[tuple[datetime, dict[str, Any], str]] = []
        missing: list[dict[str, Any]] = []
        for season in seasons:
            season_when = self._watched_at(season, show_when)
            wanted = season.get("episodes")
            if not wanted:
                out += [
                    (season_when, e, "episode") for e in episodes if e["season"] == season["number"]
                ]
                continue
            lost: list[dict[str, Any]] = []
            for ep in wanted:
                found = self.catalog.episode_of(show, int(season["number"]), int(ep["number"]))
                if found is None:
                    lost.append(dict(ep))
                else:
                    out.append((self._watched_at(ep, season_when), found, "episode"))
            if lost:
                missing.append({"number": season["number"], "episodes": lost})
        return out, missing

    async def _get_history(self, request: web.Request) -> web.Response:
        kind = request.match_info.get("type")
        item_id = request.match_info.get("id")
        if kind is not None and kind not in _HISTORY_TYPES:
            return _error(404, "not_found")
        try:
            start = _parse(request.query["start_at"]) if "start_at" in request.query else None
            end = _parse(request.query["end_at"]) if "end_at" in request.query else None
            page = max(1, int(request.query.get("page", "1")))
            limit = max(1, int(request.query.get("limit", "10")))
        except ValueError:
            return _error(400, "bad_request")
        items = [h for h in self.history if self._history_match(h, kind, item_id)]
        if start is not None:
            items = [h for h in items if _parse(h["watched_at"]) >= start]
        if end is not None:
            items = [h for h in items if _parse(h["watched_at"]) <= end]
        items.sort(key=lambda h: (h["watched_at"], h["id"]), reverse=True)
        return self._paginated(items, page, limit)

    @staticmethod
    def _history_match(item: dict[str, Any], kind: str | None, item_id: str | None) -> bool:
        if kind is None:
            return True
        if kind == "movies":
            return item["type"] == "movie" and (
                item_id is None or str(item["movie"]["ids"]["trakt"]) == item_id
            )
        if item["type"] != "episode":
            return False
        if kind == "episodes":
            return item_id is None or str(item["episode"]["ids"]["trakt"]) == item_id
        if kind == "shows":
            return item_id is None or str(item["show"]["ids"]["trakt"]) == item_id
        return item_id is None  # seasons: no season ids in the catalogue

    @staticmethod
    def _paginated(items: list[dict[str, Any]], page: int, limit: int) -> web.Response:
        pages = max(1, math.ceil(len(items) / limit))
        chunk = items[(page - 1) * limit : page * limit]
        headers = {
            "X-Pagination-Page": str(page),
            "X-Pagination-Limit": str(limit),
            "X-Pagination-Page-Count": str(pages),
            "X-Pagination-Item-Count": str(len(items)),
        }
        return web.json_response(chunk, headers=headers)

    # --- scrobble -------------------------------------------------------------------------
    def _scrobble_item(self, body: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
        if isinstance(body.get("movie"), dict):
            return self.catalog.movie(body["movie"].get("ids") or {}), "movie"
        episode = body.get("episode")
        if not isinstance(episode, dict):
            raise ValueError("no movie or episode")
        if episode.get("ids"):
            return self.catalog.episode(episode["ids"]), "episode"
        show = self.catalog.show((body.get("show") or {}).get("ids") or {})
        if show is None:
            return None, "episode"
        return self.catalog.episode_of(
            show, int(episode["season"]), int(episode["number"])
        ), "episode"

    async def _scrobble(self, request: web.Request) -> web.Response:
        verb = request.match_info["action"]
        if verb not in {"start", "pause", "stop"}:
            return _error(404, "not_found")
        body = await self._json(request)
        record: dict[str, Any] = {"path": request.path, "status": 0, "action": None, "body": body}
        self.scrobbles.append(record)
        try:
            if not isinstance(body, dict):
                raise ValueError("body")
            progress = float(body["progress"])
            if not 0 <= progress <= 100:
                raise ValueError("progress")
            entry, kind = self._scrobble_item(body)
        except (KeyError, ValueError, TypeError):
            record["status"] = 422
            return _error(
                422, "unprocessable_entity", error_description="item and progress required"
            )
        record["progress"] = progress
        if entry is None:
            record["status"] = 404
            return web.json_response({}, status=404)
        action = verb
        if verb == "stop":
            action = "scrobble" if progress >= 80 else "pause"
        now = datetime.fromtimestamp(self.clock(), UTC)
        response: dict[str, Any] = {"id": 0, "action": action, "progress": progress}
        response["sharing"] = {"twitter": False, "mastodon": False, "tumblr": False}
        if kind == "movie":
            response["movie"] = _movie_obj(entry)
        else:
            response.update(episode=_episode_obj(entry), show=_show_obj(entry["show"]))
        if action == "scrobble":
            recent = self._recent_scrobble(kind, entry, now)
            if recent is not None:
                record["status"] = 409
                expires = recent + timedelta(seconds=self.scrobble_window_s)
                return web.json_response(
                    {"watched_at": _fmt(recent), "expires_at": _fmt(expires)}, status=409
                )
            response["id"] = self._record("scrobble", now, entry, kind)
        elif action == "pause":
            response["id"] = next(self._history_ids)
        record.update(status=201, action=action)
        return web.json_response(response, status=201)

    def _recent_scrobble(self, kind: str, entry: dict[str, Any], now: datetime) -> datetime | None:
        trakt_id = entry["ids"]["trakt"]
        for item in reversed(self.history):
            if item["action"] != "scrobble" or item["type"] != kind:
                continue
            if item[kind]["ids"]["trakt"] != trakt_id:
                continue
            when = _parse(item["watched_at"])
            if (now - when).total_seconds() < self.scrobble_window_s:
                return when
        return None

    # --- search ---------------------------------------------------------------------------
    def _hit(self, kind: str, entry: dict[str, Any], score: float | None) -> dict[str, Any]:
        if kind == "movie":
            return {"type": "movie", "score": score, "movie": _movie_obj(entry)}
        if kind == "show":
            return {"type": "show", "score": score, "show": _show_obj(entry)}
        return {
            "type": "episode",
            "score": score,
            "episode": _episode_obj(entry),
            "show": _show_obj(entry["show"]),
        }

    @staticmethod
    def _types(request: web.Request, default: str) -> set[str]:
        return {t.strip() for t in request.query.get("type", default).split(",") if t.strip()}

    def _page_query(self, request: web.Request, hits: list[dict[str, Any]]) -> web.Response:
        try:
            page = max(1, int(request.query.get("page", "1")))
            limit = max(1, int(request.query.get("limit", "10")))
        except ValueError:
            return _error(400, "bad_request")
        return self._paginated(hits, page, limit)

    async def _search_id(self, request: web.Request) -> web.Response:
        id_type, wanted = request.match_info["id_type"], request.match_info["id"]
        if id_type not in {"trakt", "imdb", "tmdb", "tvdb"}:
            return _error(404, "not_found")
        types = self._types(request, "movie,show,episode")
        hits: list[dict[str, Any]] = []
        pools = (
            ("movie", self.catalog.movies),
            ("show", self.catalog.shows),
            ("episode", self.catalog.episodes),
        )
        for kind, pool in pools:
            if kind not in types:
                continue
            for entry in pool:
                value = entry["ids"].get(id_type)
                if value is not None and str(value) == wanted:
                    hits.append(self._hit(kind, entry, None))
        return self._page_query(request, hits)

    async def _search_text(self, request: web.Request) -> web.Response:
        types = {t for t in request.match_info["type"].split(",") if t}
        if not types <= {"movie", "show", "episode", "person", "list"}:
            return _error(404, "not_found")
        query = request.query.get("query", "").strip().lower()
        years = request.query.get("years")
        hits: list[dict[str, Any]] = []
        for kind, pool in (("movie", self.catalog.movies), ("show", self.catalog.shows)):
            if kind not in types:
                continue
            for entry in pool:
                if entry["title"].lower() != query:
                    continue
                if years and not self._year_ok(entry["year"], years):
                    continue
                hits.append(self._hit(kind, entry, 1000.0))
        return self._page_query(request, hits)

    @staticmethod
    def _year_ok(year: int, years: str) -> bool:
        try:
            if "-" in years:
                low, high = years.split("-", 1)
                return int(low) <= year <= int(high)
            return year == int(years)
        except ValueError:
            return False
