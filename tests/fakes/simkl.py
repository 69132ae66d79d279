"""A strict fake of the SIMKL API (https://api.simkl.com), served for real on 127.0.0.1.

Modelled on SIMKL's Apiary blueprint and the newer api.simkl.org pages (see
``shared/reference/simkl``). It is as strict as the docs:

- every request needs the client id (``client_id`` query or ``simkl-api-key`` header; wrong or
  missing → 412 ``client_id_failed``), ``app-name`` and ``app-version`` query parameters and a
  ``User-Agent`` header (missing → 400 ``empty_field``) — api.simkl.org "Headers";
- ``/sync/*`` and ``/scrobble/*`` need ``Authorization: Bearer <token>`` (401 otherwise);
- errors use SIMKL's envelope ``{"error": <id>, "code": <status>, "message": <text>}``
  (api.simkl.org "Errors");
- per token (or per client id when unauthenticated): more than ``get_per_s`` GETs in a second →
  429; more than ``post_per_s`` POSTs → a temporary block of ``post_block_s`` seconds during
  which every POST is refused (and each refused POST extends it) — api.simkl.org "Rate limits".
  The POST check allows 100 ms of arrival jitter, so a client pacing at exactly 1 POST/s passes;
- scrobbles share one per-user lock (held while a scrobble is processed, up to 20 s, and for
  ``scrobble_lock_hold_s`` after it); a collision → 400 ``RATE_LIMIT``;
- what SIMKL stores: one ``last_watched_at`` per movie and one ``watched_at`` per episode (the
  latest), at second precision; ``/sync/all-items`` reports that, not every play;
- ``/sync/all-items?date_from=`` returns only items *updated* after ``date_from`` (an item is
  updated when a play of it is recorded, stamped with the injectable ``now``), not items
  *watched* after it: a play sent today with a ``watched_at`` years ago is returned for
  ``date_from`` = yesterday, and an item untouched since before ``date_from`` is left out.

Usage::

    async with FakeSimkl(client_id="cid", catalog=default_catalog()) as fake:
        token = fake.issue_token()
        ...  # point a client at fake.url
        assert fake.history[0]["watched_at"] == "2024-01-15T10:30:00.000Z"

Recorded state (plain attributes): ``history`` (every play, no dedupe), ``scrobbles``,
``requests`` (every request with its status), ``rate_limited``, ``pin_polls``, ``tokens``.
Knobs: ``fail_next()``, ``down``, ``delay_s`` (the response is held back *after* the request
was processed: a timed-out POST still landed), ``ack_empty_next``, ``approve_pin()``,
``auto_approve_after``, ``pin_slow_down_below_s``, ``scrobble_lock_hold_s``,
``search_null_when_empty``, ``post_block_status``.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from crosswatchd.models import format_utc, parse_utc
from tests.fakes.catalog import Catalog, default_catalog

__all__ = ["PIN_VERIFICATION_URL", "TOKEN_LIFETIME_S", "FakeSimkl"]

#: Where users enter the PIN (api.simkl.org "get-pin").
PIN_VERIFICATION_URL = "https://simkl.com/pin"
#: ``expires_in`` advertised with a token: 5 years (api.simkl.org "Authentication").
TOKEN_LIFETIME_S = 157_680_000
#: Per-user scrobble lock timeout (api.simkl.org "scrobble-checkin").
SCROBBLE_LOCK_S = 20.0
#: Duplicate protection window for stop/pause >= 80 % (Apiary "Stop").
DUPLICATE_WINDOW = timedelta(hours=1)
#: Arrival jitter tolerated by the POST rate check.
POST_JITTER_S = 0.1

_STATUS_ERRORS = {
    400: "bad_request",
    401: "user_token_failed",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    412: "client_id_failed",
    429: "too_many_requests",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
}
_LIST_STATUSES = {"watching", "plantowatch", "hold", "completed", "dropped"}
_ALL_ITEM_TYPES = {"movies", "shows", "anime"}
_ID_OUT_KEYS = ("imdb", "tmdb", "tvdb")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _BadRequest(Exception):
    def __init__(self, error: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.status = status


@dataclass
class _Failure:
    status: int
    count: int
    headers: dict[str, str]
    body: Any
    path: str | None


@dataclass
class _Bucket:
    rate_per_s: float
    capacity: float
    tokens: float
    stamp: float

    def take(self, now: float, need: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate_per_s)
        self.stamp = now
        if self.tokens >= need:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class _Pin:
    user_code: str
    expires_at: float
    interval_s: float
    last_poll: float
    polls: int = 0
    approved: bool = False


@dataclass
class _User:
    """Rate-limit state of one token (or one client id when unauthenticated)."""

    get: _Bucket
    post: _Bucket
    post_blocked_until: float = 0.0


def _fmt_s(moment: datetime) -> str:
    """SIMKL's own timestamps: second precision, ``Z`` (Apiary "Dates")."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def _envelope(
    status: int, error: str | None = None, message: str | None = None, **headers: str
) -> web.Response:
    body: dict[str, Any] = {"error": error or _STATUS_ERRORS.get(status, "error"), "code": status}
    if message:
        body["message"] = message
    return _json(body, status, headers or None)


def _ids_match(sent: Any, known: dict[str, Any]) -> bool:
    if not isinstance(sent, dict):
        return False
    wanted = {(k, str(v)) for k, v in sent.items() if v not in (None, "", 0)}
    have = {(k, str(v)) for k, v in known.items() if v not in (None, "", 0)}
    return bool(wanted & have)


def _out_ids(ids: dict[str, Any]) -> dict[str, Any]:
    """Ids as SIMKL echoes them in sync lists: simkl an int, the rest strings (Apiary all-items)."""
    out: dict[str, Any] = {"simkl": ids["simkl"], "slug": ids.get("slug")}
    for key in _ID_OUT_KEYS:
        if ids.get(key) not in (None, ""):
            out[key] = str(ids[key])
    return out


def _progress_out(progress: float) -> float | int:
    return int(progress) if float(progress).is_integer() else round(progress, 2)


class FakeSimkl:
    """The fake server. See the module docstring for behaviour, state and knobs.

    *clock* (monotonic seconds) drives rate limits, the PIN flow and the scrobble lock; *now*
    (aware UTC datetime) stamps plays and list updates. Both are injectable for tests.
    """

    def __init__(
        self,
        *,
        client_id: str = "cid",
        catalog: Catalog | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        get_per_s: float = 10.0,
        post_per_s: float = 1.0,
        post_block_s: float = 5.0,
        pin_interval_s: float = 5,
        pin_expires_in_s: float = 900,
    ) -> None:
        self.client_id = client_id
        self.catalog = catalog if catalog is not None else default_catalog()
        self.clock = clock
        self.now = now
        self.get_per_s = get_per_s
        self.post_per_s = post_per_s
        self.post_block_s = post_block_s
        self.pin_interval_s = pin_interval_s
        self.pin_expires_in_s = pin_expires_in_s
        # Recorded state.
        self.history: list[dict[str, Any]] = []
        self.scrobbles: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.rate_limited: list[dict[str, Any]] = []
        self.pin_polls: list[dict[str, Any]] = []
        self.tokens: set[str] = set()
        self.pins: dict[str, _Pin] = {}
        # Knobs.
        self.down = False
        self.delay_s = 0.0
        self.ack_empty_next = 0
        self.auto_approve_after: int | None = None
        self.pin_slow_down_below_s: float | None = None
        self.scrobble_lock_hold_s = 0.0
        self.search_null_when_empty = False
        self.post_block_status = 429
        # Internals.
        self._failures: list[_Failure] = []
        self._users: dict[str, _User] = {}
        self._scrobble_lock_until = 0.0
        self._duplicates: dict[tuple[Any, ...], tuple[datetime, datetime]] = {}
        self._playback_at: dict[str, datetime] = {}
        self._scrobble_ids = itertools.count(10_000_000_001)
        self._runner: web.AppRunner | None = None
        self._port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:38111`` (only valid after :meth:`start`)."""
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        """Serve on 127.0.0.1 on a free port."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/oauth/pin", self._pin_new)
        app.router.add_get("/oauth/pin/{user_code}", self._pin_poll)
        app.router.add_get("/search/id", self._search_id)
        app.router.add_post("/sync/history", self._sync_history)
        app.router.add_get("/sync/activities", self._activities)
        app.router.add_post("/sync/activities", self._activities)
        app.router.add_get("/sync/all-items", self._all_items)
        app.router.add_get("/sync/all-items/", self._all_items)
        app.router.add_get("/sync/all-items/{type}", self._all_items)
        app.router.add_get("/sync/all-items/{type}/", self._all_items)
        app.router.add_get("/sync/all-items/{type}/{status}", self._all_items)
        app.router.add_post("/scrobble/{action}", self._scrobble)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.2, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=0.2)
        await site.start()
        address = self._runner.addresses[0]
        self._port = int(address[1])

    async def stop(self) -> None:
        """Stop serving; the port then refuses connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSimkl:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ knobs

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
        *status*. *body*: ``None`` → SIMKL's error envelope for *status*; ``bytes``/``str`` →
        sent as is (``b"null"`` for a JSON null); anything else → JSON. The request is not
        processed (nothing is recorded besides the request log)."""
        self._failures.append(_Failure(status, count, dict(headers or {}), body, path))

    def issue_token(self) -> str:
        """Mint a valid access token (as if a user had authorized the app)."""
        token = secrets.token_hex(32)
        self.tokens.add(token)
        return token

    def approve_pin(self, user_code: str) -> None:
        """The user entered *user_code* at simkl.com/pin and approved the app."""
        self.pins[user_code].approved = True

    @property
    def last_user_code(self) -> str | None:
        """The most recently issued, still pending PIN code."""
        return next(reversed(self.pins), None)

    # ------------------------------------------------------------------ middleware

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "headers": dict(request.headers),
            "json": None,
            "status": None,
        }
        if request.can_read_body:
            raw = await request.read()
            try:
                record["json"] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                record["body"] = raw
        self.requests.append(record)
        response = await self._dispatch(request, handler)
        record["status"] = response.status
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return response

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.down:
            return _envelope(503, message="Simkl is overloaded, try again later")
        failure = self._take_failure(request.path)
        if failure is not None:
            return failure
        refused = self._check_identity(request) or self._check_auth(request)
        if refused is not None:
            return refused
        limited = self._check_rate(request)
        if limited is not None:
            return limited
        try:
            return await handler(request)
        except _BadRequest as exc:
            return _envelope(exc.status, exc.error, exc.message)
        except web.HTTPException as exc:
            return _envelope(exc.status, message=exc.reason)

    def _take_failure(self, path: str) -> web.Response | None:
        for failure in self._failures:
            if failure.path is None or path.startswith(failure.path):
                failure.count -= 1
                if failure.count <= 0:
                    self._failures.remove(failure)
                if failure.body is None:
                    response = _envelope(failure.status, message="injected failure")
                elif isinstance(failure.body, bytes | str):
                    raw = failure.body.encode() if isinstance(failure.body, str) else failure.body
                    response = web.Response(
                        body=raw, status=failure.status, content_type="application/json"
                    )
                else:
                    response = _json(failure.body, failure.status)
                response.headers.update(failure.headers)
                return response
        return None

    def _check_identity(self, request: web.Request) -> web.Response | None:
        client_id = request.query.get("client_id") or request.headers.get("simkl-api-key")
        if not client_id or client_id != self.client_id:
            return _envelope(412, "client_id_failed", "Your client_id is wrong. Try another one")
        for name in ("app-name", "app-version"):
            if not request.query.get(name):
                return _envelope(400, "empty_field", f'Missed "{name}" parameter')
        if not request.headers.get("User-Agent"):
            return _envelope(400, "empty_field", 'Missed "User-Agent" header')
        return None

    @staticmethod
    def _bearer(request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _check_auth(self, request: web.Request) -> web.Response | None:
        if not request.path.startswith(("/sync/", "/scrobble/")):
            return None
        if self._bearer(request) not in self.tokens:
            return _envelope(401, "user_token_failed", "Authorization token is missing or wrong")
        return None

    def _user(self, request: web.Request) -> _User:
        token = self._bearer(request)
        key = f"token:{token}" if token in self.tokens else f"client:{self.client_id}"
        user = self._users.get(key)
        if user is None:
            now = self.clock()
            user = _User(
                get=_Bucket(
                    self.get_per_s, max(1.0, self.get_per_s), max(1.0, self.get_per_s), now
                ),
                post=_Bucket(self.post_per_s, 1.0, 1.0, now),
            )
            self._users[key] = user
        return user

    def _check_rate(self, request: web.Request) -> web.Response | None:
        user = self._user(request)
        now = self.clock()
        entry = {"method": request.method, "path": request.path, "at": now}
        if request.method in {"GET", "HEAD"}:
            if user.get.take(now, 1.0):
                return None
            self.rate_limited.append({**entry, "status": 429, "reason": "get_rate"})
            return _envelope(
                429, "too_many_requests", "Rate limit exceeded", **{"Retry-After": "1"}
            )
        if now < user.post_blocked_until:
            reason = "post_blocked"
        elif user.post.take(now, 1.0 - POST_JITTER_S * self.post_per_s):
            return None
        else:
            reason = "post_rate"
        user.post_blocked_until = now + self.post_block_s  # repeated overages extend the block
        status = self.post_block_status
        self.rate_limited.append({**entry, "status": status, "reason": reason})
        retry_after = str(max(1, math.ceil(self.post_block_s)))
        return _envelope(
            status,
            _STATUS_ERRORS.get(status),
            "POST rate limit exceeded, temporarily blocked",
            **{"Retry-After": retry_after},
        )

    # ------------------------------------------------------------------ helpers

    @staticmethod
    async def _body(request: web.Request) -> Any:
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise _BadRequest("wrong_parameter", "Request body is not valid JSON") from None

    def _watched_at(self, value: Any) -> tuple[str, datetime]:
        if value is None:
            moment = self.now()
            return format_utc(moment), moment
        if not isinstance(value, str):
            raise _BadRequest("wrong_parameter", 'Wrong "watched_at" value')
        try:
            return value, parse_utc(value)
        except ValueError:
            raise _BadRequest("wrong_parameter", f'Wrong "watched_at" value: {value}') from None

    def _record(self, play: dict[str, Any]) -> None:
        play["recorded_at"] = self.now()
        self.history.append(play)

    # ------------------------------------------------------------------ PIN flow

    def _new_pin(self) -> dict[str, Any]:
        alphabet = string.ascii_uppercase + string.digits
        while True:
            code = "".join(secrets.choice(alphabet) for _ in range(5))
            if code not in self.pins:
                break
        now = self.clock()
        self.pins[code] = _Pin(code, now + self.pin_expires_in_s, self.pin_interval_s, now)
        return {
            "result": "OK",
            "device_code": "DEVICE_CODE",
            "user_code": code,
            "verification_uri": PIN_VERIFICATION_URL,
            "verification_url": PIN_VERIFICATION_URL,
            "expires_in": self.pin_expires_in_s,
            "interval": self.pin_interval_s,
        }

    async def _pin_new(self, request: web.Request) -> web.Response:
        return _json(self._new_pin())

    async def _pin_poll(self, request: web.Request) -> web.Response:
        code = request.match_info["user_code"]
        now = self.clock()
        pin = self.pins.get(code)
        if pin is None or now >= pin.expires_at:
            # Unknown, used or expired code: SIMKL answers with a fresh init response.
            self.pins.pop(code, None)
            self.pin_polls.append({"user_code": code, "at": now, "reply": "gone"})
            return _json(self._new_pin())
        min_gap = self.pin_slow_down_below_s or pin.interval_s
        too_fast = now - pin.last_poll < min_gap - 1e-9
        pin.last_poll = now
        if too_fast:
            self.pin_polls.append({"user_code": code, "at": now, "reply": "slow_down"})
            return _json({"result": "KO", "message": "Slow down"})
        pin.polls += 1
        if self.auto_approve_after is not None and pin.polls > self.auto_approve_after:
            pin.approved = True
        if not pin.approved:
            self.pin_polls.append({"user_code": code, "at": now, "reply": "pending"})
            return _json({"result": "KO", "message": "Authorization pending"})
        del self.pins[code]
        self.pin_polls.append({"user_code": code, "at": now, "reply": "ok"})
        return _json(
            {
                "result": "OK",
                "access_token": self.issue_token(),
                "token_type": "bearer",
                "scope": "public",
                "expires_in": TOKEN_LIFETIME_S,
            }
        )

    # ------------------------------------------------------------------ search

    async def _search_id(self, request: web.Request) -> web.Response:
        query = request.query
        kind = (query.get("type") or "").lower()
        candidates: list[tuple[str, dict[str, Any]]] = []
        if query.get("simkl"):
            wanted: dict[str, Any] = {"simkl": query["simkl"]}
            candidates = [("movie", m) for m in self.catalog.movies]
            candidates += [("tv", s) for s in self.catalog.shows]
        elif query.get("imdb"):
            found = re.search(r"tt\d+", query["imdb"])
            wanted = {"imdb": found.group(0) if found else query["imdb"]}
            candidates = [("movie", m) for m in self.catalog.movies]
            candidates += [("tv", s) for s in self.catalog.shows]
        elif query.get("tmdb"):
            # `type` is required to look up a show by tmdb (Apiary "ID Lookup").
            wanted = {"tmdb": query["tmdb"]}
            if kind in {"show", "tv", "anime"}:
                candidates = [("tv", s) for s in self.catalog.shows]
            else:
                candidates = [("movie", m) for m in self.catalog.movies]
        elif query.get("tvdb"):
            wanted = {"tvdb": query["tvdb"]}
            candidates = [("tv", s) for s in self.catalog.shows]
        else:
            raise _BadRequest("empty_field", "Missed id parameter")
        results = [
            {
                "type": simkl_type,
                "title": entry["title"],
                "year": entry["year"],
                "status": "released" if simkl_type == "movie" else "ended",
                "ids": {"simkl": entry["ids"]["simkl"], "slug": entry["ids"].get("slug")},
            }
            for simkl_type, entry in candidates
            if _ids_match(wanted, entry["ids"])
        ]
        if not results and self.search_null_when_empty:
            return _json(None)
        return _json(results)

    # ------------------------------------------------------------------ sync

    async def _sync_history(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise _BadRequest("wrong_parameter", "Body must be an object")
        plays: list[dict[str, Any]] = []
        added: dict[str, Any] = {"movies": 0, "shows": 0, "episodes": 0, "statuses": []}
        not_found: dict[str, list[Any]] = {"movies": [], "shows": [], "episodes": []}
        for obj in body.get("movies") or []:
            movie = self.catalog.movie(obj.get("ids") or {}) if isinstance(obj, dict) else None
            if movie is None:
                not_found["movies"].append(obj)
                continue
            text, moment = self._watched_at(obj.get("watched_at"))
            plays.append(self._movie_play(movie, obj.get("ids"), text, moment, "history"))
            added["movies"] += 1
        for obj in body.get("shows") or []:
            show = self.catalog.show(obj.get("ids") or {}) if isinstance(obj, dict) else None
            if show is None:
                not_found["shows"].append(obj)
                continue
            added["shows"] += 1
            seasons = obj.get("seasons")
            if obj.get("episodes") is not None:  # shorthand: wraps to season 1
                seasons = [*(seasons or []), {"number": 1, "episodes": obj["episodes"]}]
            if not seasons:  # the whole show
                seasons = [
                    {"number": ep["season"], "episodes": [{"number": ep["number"]}]}
                    for ep in self.catalog.episodes
                    if ep["show"] is show
                ]
            for season in seasons:
                number = season.get("number")
                episodes = season.get("episodes")
                if episodes is None:  # the whole season
                    episodes = [
                        {"number": ep["number"]}
                        for ep in self.catalog.episodes
                        if ep["show"] is show and ep["season"] == number
                    ]
                for ep_obj in episodes:
                    episode = self.catalog.episode_of(show, number, ep_obj.get("number"))
                    if episode is None:
                        not_found["episodes"].append(ep_obj)
                        continue
                    text, moment = self._watched_at(
                        ep_obj.get("watched_at")
                        or season.get("watched_at")
                        or obj.get("watched_at")
                    )
                    plays.append(
                        self._episode_play(episode, obj.get("ids"), ep_obj.get("ids"), text, moment)
                    )
                    added["episodes"] += 1
        for obj in body.get("episodes") or []:
            episode = self.catalog.episode(obj.get("ids") or {}) if isinstance(obj, dict) else None
            if episode is None:
                not_found["episodes"].append(obj)
                continue
            text, moment = self._watched_at(obj.get("watched_at"))
            plays.append(self._episode_play(episode, None, obj.get("ids"), text, moment))
            added["episodes"] += 1
        for play in plays:
            self._record(play)
        if self.ack_empty_next > 0:
            self.ack_empty_next -= 1
            empty = {"movies": 0, "shows": 0, "episodes": 0, "statuses": []}
            return _json({"added": empty, "not_found": {"movies": [], "shows": [], "episodes": []}})
        return _json({"added": added, "not_found": not_found}, 201)

    @staticmethod
    def _movie_play(
        movie: dict[str, Any], sent_ids: Any, text: str, moment: datetime, via: str
    ) -> dict[str, Any]:
        return {
            "type": "movie",
            "ids": dict(sent_ids or {}),
            "show_ids": None,
            "simkl": movie["ids"]["simkl"],
            "title": movie["title"],
            "season": None,
            "number": None,
            "watched_at": text,
            "watched_at_dt": moment,
            "via": via,
        }

    @staticmethod
    def _episode_play(
        episode: dict[str, Any],
        show_ids: Any,
        episode_ids: Any,
        text: str,
        moment: datetime,
        via: str = "history",
    ) -> dict[str, Any]:
        show = episode["show"]
        return {
            "type": "episode",
            "ids": dict(episode_ids or {}),
            "show_ids": dict(show_ids) if show_ids else None,
            "simkl": show["ids"]["simkl"],
            "title": show["title"],
            "season": episode["season"],
            "number": episode["number"],
            "watched_at": text,
            "watched_at_dt": moment,
            "via": via,
        }

    async def _activities(self, request: web.Request) -> web.Response:
        def last(kind: str) -> datetime | None:
            stamps = [p["recorded_at"] for p in self.history if p["type"] == kind]
            return max(stamps) if stamps else None

        def fmt(moment: datetime | None) -> str | None:
            return _fmt_s(moment) if moment else None

        movies, shows = last("movie"), last("episode")
        everything = [m for m in (movies, shows, *self._playback_at.values()) if m]
        return _json(
            {
                "all": fmt(max(everything)) if everything else None,
                "settings": {"all": None},
                "tv_shows": {
                    "all": fmt(
                        max(
                            [m for m in (shows, self._playback_at.get("episode")) if m],
                            default=None,
                        )
                    ),
                    "rated_at": None,
                    "playback": fmt(self._playback_at.get("episode")),
                    "plantowatch": None,
                    "watching": fmt(shows),
                    "completed": None,
                    "hold": None,
                    "dropped": None,
                    "removed_from_list": None,
                },
                "anime": {
                    "all": None,
                    "rated_at": None,
                    "playback": None,
                    "plantowatch": None,
                    "watching": None,
                    "completed": None,
                    "hold": None,
                    "dropped": None,
                    "removed_from_list": None,
                },
                "movies": {
                    "all": fmt(
                        max(
                            [m for m in (movies, self._playback_at.get("movie")) if m], default=None
                        )
                    ),
                    "rated_at": None,
                    "playback": fmt(self._playback_at.get("movie")),
                    "plantowatch": None,
                    "completed": fmt(movies),
                    "dropped": None,
                    "removed_from_list": None,
                },
            }
        )

    async def _all_items(self, request: web.Request) -> web.Response:
        kind = request.match_info.get("type") or None
        status = request.match_info.get("status") or None
        if kind is not None and kind not in _ALL_ITEM_TYPES:
            raise _BadRequest("wrong_parameter", f'Wrong "type" value: {kind}')
        if status is not None and status not in _LIST_STATUSES:
            raise _BadRequest("wrong_parameter", f'Wrong "status" value: {status}')
        date_from: datetime | None = None
        if request.query.get("date_from"):
            try:
                date_from = parse_utc(request.query["date_from"])
            except ValueError:
                raise _BadRequest("wrong_parameter", 'Wrong "date_from" value') from None
        extended = request.query.get("extended", "")
        with_episodes = extended in {"full", "full_anime_seasons"}
        with_watched_at = request.query.get("episode_watched_at") == "yes"
        out: dict[str, Any] = {}
        if kind in (None, "movies"):
            movies = self._movie_items(date_from, status)
            if movies:
                out["movies"] = movies
        if kind in (None, "shows"):
            shows = self._show_items(date_from, status, with_episodes, with_watched_at)
            if shows:
                out["shows"] = shows
        return _json(out or None)  # nothing to report: the whole body is `null`

    def _movie_items(self, date_from: datetime | None, status: str | None) -> list[dict[str, Any]]:
        if status not in (None, "completed"):
            return []
        grouped: dict[int, list[dict[str, Any]]] = {}
        for play in self.history:
            if play["type"] == "movie":
                grouped.setdefault(play["simkl"], []).append(play)
        items = []
        for simkl_id, plays in grouped.items():
            updated = max(p["recorded_at"] for p in plays)
            if date_from is not None and updated <= date_from:
                continue
            movie = self.catalog.movie({"simkl": simkl_id})
            assert movie is not None
            items.append(
                {
                    "added_to_watchlist_at": _fmt_s(min(p["recorded_at"] for p in plays)),
                    "last_watched_at": _fmt_s(max(p["watched_at_dt"] for p in plays)),
                    "user_rated_at": None,
                    "user_rating": None,
                    "status": "completed",
                    "movie": {
                        "title": movie["title"],
                        "year": movie["year"],
                        "ids": _out_ids(movie["ids"]),
                    },
                }
            )
        return items

    def _show_items(
        self,
        date_from: datetime | None,
        status: str | None,
        with_episodes: bool,
        with_watched_at: bool,
    ) -> list[dict[str, Any]]:
        grouped: dict[int, list[dict[str, Any]]] = {}
        for play in self.history:
            if play["type"] == "episode":
                grouped.setdefault(play["simkl"], []).append(play)
        items = []
        for simkl_id, plays in grouped.items():
            updated = max(p["recorded_at"] for p in plays)
            if date_from is not None and updated <= date_from:
                continue
            show = self.catalog.show({"simkl": simkl_id})
            assert show is not None
            latest: dict[tuple[int, int], datetime] = {}
            for p in plays:
                key = (p["season"], p["number"])
                latest[key] = max(latest.get(key, p["watched_at_dt"]), p["watched_at_dt"])
            total = sum(1 for ep in self.catalog.episodes if ep["show"] is show)
            list_status = "completed" if len(latest) >= total else "watching"
            if status not in (None, list_status):
                continue
            last_key = max(latest, key=lambda k: latest[k])
            item: dict[str, Any] = {
                "added_to_watchlist_at": _fmt_s(min(p["recorded_at"] for p in plays)),
                "last_watched_at": _fmt_s(latest[last_key]),
                "user_rated_at": None,
                "user_rating": None,
                "status": list_status,
                "last_watched": f"S{last_key[0]:02d}E{last_key[1]:02d}",
                "next_to_watch": None,
                "watched_episodes_count": len(latest),
                "total_episodes_count": total,
                "not_aired_episodes_count": 0,
                "show": {
                    "title": show["title"],
                    "year": show["year"],
                    "ids": _out_ids(show["ids"]),
                },
            }
            if with_episodes:
                seasons: dict[int, list[dict[str, Any]]] = {}
                for (season, number), moment in sorted(latest.items()):
                    episode: dict[str, Any] = {"number": number}
                    if with_watched_at:
                        episode["watched_at"] = _fmt_s(moment)
                    seasons.setdefault(season, []).append(episode)
                item["seasons"] = [{"number": s, "episodes": eps} for s, eps in seasons.items()]
            items.append(item)
        return items

    # ------------------------------------------------------------------ scrobble

    async def _scrobble(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in {"start", "pause", "stop"}:
            raise web.HTTPNotFound()
        now = self.clock()
        if now < self._scrobble_lock_until:
            self.rate_limited.append(
                {
                    "method": "POST",
                    "path": request.path,
                    "at": now,
                    "status": 400,
                    "reason": "scrobble_lock",
                }
            )
            return _envelope(
                400, "RATE_LIMIT", "Another scrobble is being processed, try again in 20 seconds"
            )
        self._scrobble_lock_until = now + SCROBBLE_LOCK_S
        try:
            return await self._scrobble_locked(request, action)
        finally:
            self._scrobble_lock_until = self.clock() + min(
                self.scrobble_lock_hold_s, SCROBBLE_LOCK_S
            )

    async def _scrobble_locked(self, request: web.Request, action: str) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise _BadRequest("wrong_parameter", "Body must be an object")
        progress = body.get("progress")
        if isinstance(progress, bool) or not isinstance(progress, int | float):
            raise _BadRequest("empty_field", 'Missed "progress" parameter')
        if not 0 <= progress <= 100:
            raise _BadRequest("wrong_parameter", 'Wrong "progress" value')
        record: dict[str, Any] = {"endpoint": action, "progress": progress}
        self.scrobbles.append(record)
        show_obj = body.get("show") or body.get("anime")
        if isinstance(body.get("movie"), dict) and show_obj is None:
            record.update(type="movie", ids=dict(body["movie"].get("ids") or {}))
            movie = self.catalog.movie(body["movie"].get("ids") or {})
            if movie is None:
                record["status"] = 404
                return _envelope(404, "not_found", "Item not found")
            key: tuple[Any, ...] = ("movie", movie["ids"]["simkl"])
            echo: dict[str, Any] = {
                "movie": {
                    "title": movie["title"],
                    "year": movie["year"],
                    "ids": _out_ids(movie["ids"]),
                }
            }
            kind = "movie"

            def make_play(moment: datetime, movie: dict[str, Any] = movie) -> dict[str, Any]:
                return self._movie_play(
                    movie, record["ids"], format_utc(moment), moment, "scrobble"
                )
        elif isinstance(show_obj, dict) and isinstance(body.get("episode"), dict):
            ep_obj = body["episode"]
            season, number = ep_obj.get("season"), ep_obj.get("number")
            record.update(
                type="episode", ids=dict(show_obj.get("ids") or {}), season=season, number=number
            )
            if not isinstance(season, int) or not isinstance(number, int):
                record["status"] = 400
                raise _BadRequest("wrong_parameter", 'Wrong "episode" season/number')
            show = self.catalog.show(show_obj.get("ids") or {})
            found = self.catalog.episode_of(show, season, number) if show else None
            if show is None or found is None:
                record["status"] = 404
                return _envelope(404, "not_found", "Item not found")
            key = ("episode", show["ids"]["simkl"], season, number)
            echo = {
                "show": {
                    "title": show["title"],
                    "year": show["year"],
                    "ids": _out_ids(show["ids"]),
                },
                "episode": {"season": season, "number": number, "title": found["title"]},
            }
            kind = "episode"

            def make_play(moment: datetime, episode: dict[str, Any] = found) -> dict[str, Any]:
                return self._episode_play(
                    episode, record["ids"], None, format_utc(moment), moment, "scrobble"
                )
        else:
            record["status"] = 400
            raise _BadRequest("empty_field", "Send a movie, or a show with an episode")
        wall = self.now()
        duplicate = self._duplicates.get(key)
        if action in {"pause", "stop"} and progress >= 80 and duplicate and wall < duplicate[1]:
            record["status"] = 409
            return _json(
                {"watched_at": format_utc(duplicate[0]), "expires_at": format_utc(duplicate[1])},
                409,
            )
        if action == "start":
            scrobble_id, result = 0, "start"
        elif action == "stop" and progress >= 80:
            scrobble_id, result = next(self._scrobble_ids), "scrobble"
            self._duplicates[key] = (wall, wall + DUPLICATE_WINDOW)
            self._record(make_play(wall))
        else:
            scrobble_id, result = next(self._scrobble_ids), "pause"
            self._playback_at[kind] = wall
        record.update(action=result, status=201)
        return _json(
            {"id": scrobble_id, "action": result, "progress": _progress_out(progress), **echo}, 201
        )
