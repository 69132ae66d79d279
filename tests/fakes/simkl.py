"""A strict fake of the SIMKL API (https://api.simkl.com), served for real on 127.0.0.1.

Modelled on SIMKL's Apiary blueprint (``shared/reference/simkl/simkl_apiary.apib``, extract
``simkl_api_extract_auth_scrobble_sync.md``; sections named below) and the newer api.simkl.org
pages (``api_simkl_org_notes.md``). It is as strict as the docs:

- every request needs the client id (``client_id`` query or ``simkl-api-key`` header; wrong or
  missing → 412 ``client_id_failed``), ``app-name`` and ``app-version`` query parameters and a
  ``User-Agent`` header (missing → 400 ``empty_field``) — api.simkl.org "Headers";
- ``/sync/*`` and ``/scrobble/*`` need ``Authorization: Bearer <token>`` (401 otherwise);
- errors use SIMKL's envelope ``{"error": <id>, "code": <status>, "message": <text>}``
  (api.simkl.org "Errors");
- **several users**: each token belongs to one user (:class:`SimklUser`; ``issue_token(user=)``,
  ``approve_pin(code, user=)``); history, lists, ratings, activities, playbacks, the scrobble
  lock and the 409 window are that user's. The default user (``default_user``) is the one the
  single-user API (``history``, ``issue_token()``) stands for;
- per token (or per client id when unauthenticated): more than ``get_per_s`` GETs in a second →
  429; more than ``post_per_s`` POSTs → a temporary block of ``post_block_s`` seconds during
  which every POST is refused (and each refused POST extends it) — api.simkl.org "Rate limits".
  The POST check allows 100 ms of arrival jitter, so a client pacing at exactly 1 POST/s passes.
  Refusals are logged in ``rate_limited`` and in the token user's ``rate_limited``;
- scrobbles share one per-user lock (held while a scrobble is processed, up to 20 s, and for
  ``scrobble_lock_hold_s`` after it); a collision → 400 ``RATE_LIMIT``;
- what SIMKL stores: one ``last_watched_at`` per movie and one ``watched_at`` per episode (the
  latest), at second precision; ``/sync/all-items`` reports that, not every play;
- each item of a user is in at most one list (``plantowatch``, ``watching``, ``completed``,
  ``hold``, ``dropped``): a play puts a movie in ``completed`` and a show in ``watching`` (or
  ``completed`` once every catalogued episode is watched); ``POST /sync/add-to-list`` moves it
  ("Add Item to the List"); a rating puts an unlisted movie in ``completed`` and an unlisted show
  in ``watching`` ("Last Activities" note, "Add Ratings");
- ``/sync/all-items?date_from=`` returns only items *updated* after ``date_from`` (a play
  recorded, a list move, a rating that moved the item — stamped with the injectable ``now``),
  not items *watched* after it: a play sent today with a ``watched_at`` years ago is returned
  for ``date_from`` = yesterday, and an item untouched since before ``date_from`` is left out. A
  rating change alone does not update the item; it is seen through ``/sync/ratings?date_from=``
  ("Last Activities": ``rated_at`` → "use the Get Ratings endpoint with date_from");
- ``/sync/activities`` (GET or POST): per user, each timestamp is when that list/rating/
  playback data last changed; ``removed_from_list`` when an item left the lists;
- ``POST /sync/history/remove`` ("Remove Items from History and from Lists"): a movie or a show
  without seasons leaves the lists with its watched history *and its rating*; seasons/episodes
  only unmark those episodes;
- ``POST /sync/watched`` ("Check if watched"): per object sent, whether the user has it in a
  list (``result`` true/false/``"not_found"``) and which (``list``), in the order sent;
- ``GET /search/id`` ("ID Lookup") and ``GET /search/{movie|tv|anime}?q=`` ("Text": every
  title holding the words of ``q``, nearest first, so a client must pick the exact title
  itself; ids ``simkl_id``, ``slug`` and, when known, ``tmdb`` as a string).

Usage::

    async with FakeSimkl(client_id="cid", catalog=default_catalog()) as fake:
        token = fake.issue_token()            # the default user
        sam = fake.issue_token(user="sam")
        ...  # point a client at fake.url
        assert fake.history[0]["watched_at"] == "2024-01-15T10:30:00.000Z"
        assert fake.user("sam").status_of("movie", 500_000) is None

Recorded state (plain attributes): ``history`` (the default user's plays, no dedupe; others in
``user(name).history``), ``users``, ``scrobbles``, ``requests`` (every request with its status),
``rate_limited``, ``pin_polls``, ``tokens`` (valid tokens; clearing it revokes them all).
``add_play()`` records a play directly (another app's; no request, no rate limit), ``rate()`` a
rating.
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
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.catalog import Catalog, default_catalog

__all__ = ["PIN_VERIFICATION_URL", "TOKEN_LIFETIME_S", "FakeSimkl", "SimklEntry", "SimklUser"]

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
_LIST_STATUSES = ("plantowatch", "watching", "completed", "hold", "dropped")
#: Movies have no Watching / On Hold list (api.simkl.org "add-to-list").
_MOVIE_STATUSES = ("plantowatch", "completed", "dropped")
_ALL_ITEM_TYPES = {"movies", "shows", "anime"}
_ID_OUT_KEYS = ("imdb", "tmdb", "tvdb")
#: "Last Activities": the fields of each group (movies lack watching/hold).
_ACTIVITY_FIELDS = {
    "tv_shows": ("all", "rated_at", "playback", *_LIST_STATUSES, "removed_from_list"),
    "anime": ("all", "rated_at", "playback", *_LIST_STATUSES, "removed_from_list"),
    "movies": ("all", "rated_at", "playback", *_MOVIE_STATUSES, "removed_from_list"),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: ``("movie", simkl id)`` or ``("show", simkl id)`` (anime are shows).
EntryKey = tuple[str, int]


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
    user: str | None = None


@dataclass
class _Limits:
    """Rate-limit state of one token (or one client id when unauthenticated)."""

    get: _Bucket
    post: _Bucket
    post_blocked_until: float = 0.0


@dataclass
class SimklEntry:
    """One movie or show in a user's lists: its list, rating and when it last changed.

    ``updated_at`` drives ``/sync/all-items?date_from``; ``rating_changed_at`` drives
    ``/sync/ratings?date_from``; ``watched_at`` is a completion date sent with
    ``add-to-list`` (``to: completed``) without a play.
    """

    kind: str  # movie | show
    simkl: int
    status: str | None
    added_at: datetime
    updated_at: datetime
    rating: int | None = None
    rated_at: datetime | None = None
    rating_changed_at: datetime | None = None
    watched_at: datetime | None = None


@dataclass
class SimklUser:
    """One SIMKL account inside the fake."""

    name: str
    history: list[dict[str, Any]] = field(default_factory=list)
    entries: dict[EntryKey, SimklEntry] = field(default_factory=dict)
    activities: dict[str, Any] = field(default_factory=dict)
    scrobbles: list[dict[str, Any]] = field(default_factory=list)
    rate_limited: list[dict[str, Any]] = field(default_factory=list)
    scrobble_lock_until: float = field(default=0.0, repr=False)
    #: How many plays of ``history`` :meth:`latest` covers, and the latest watched_at per
    #: movie (by simkl id) and per show (by simkl id, then (season, number)); it only grows
    #: between removals, which reset it, so all-items over a large history stays linear.
    _latest: tuple[int, dict[int, datetime], dict[int, dict[tuple[int, int], datetime]]] | None = (
        field(default=None, repr=False)
    )
    duplicates: dict[tuple[Any, ...], tuple[datetime, datetime]] = field(
        default_factory=dict, repr=False
    )

    def __post_init__(self) -> None:
        if not self.activities:
            self.activities = {"all": None, "settings": {"all": None}}
            for group, names in _ACTIVITY_FIELDS.items():
                self.activities[group] = dict.fromkeys(names)

    def touch(self, when: datetime, group: str, *names: str) -> None:
        """Move ``activities[group][name]`` for each name, and the group's and overall ``all``."""
        stamp = _fmt_s(when)
        fields = self.activities[group]
        for name in names:
            fields[name] = stamp
        fields["all"] = max(fields["all"] or stamp, stamp)
        self.activities["all"] = max(self.activities["all"] or stamp, stamp)

    def latest(self) -> tuple[dict[int, datetime], dict[int, dict[tuple[int, int], datetime]]]:
        """The latest watched_at per movie and per show's episode (see ``_latest``)."""
        done, movies, shows = self._latest if self._latest is not None else (0, {}, {})
        for play in self.history[done:]:
            moment = play["watched_at_dt"]
            if play["type"] == "movie":
                if play["simkl"] not in movies or movies[play["simkl"]] < moment:
                    movies[play["simkl"]] = moment
                continue
            episodes = shows.setdefault(play["simkl"], {})
            key = (play["season"], play["number"])
            if key not in episodes or episodes[key] < moment:
                episodes[key] = moment
        self._latest = (len(self.history), movies, shows)
        return movies, shows

    def forget_latest(self) -> None:
        """Plays were removed: :meth:`latest` is computed afresh."""
        self._latest = None

    def status_of(self, kind: str, simkl: int) -> str | None:
        """The list (*kind* ``movie``/``show``) the item is in, or None."""
        entry = self.entries.get((kind, simkl))
        return None if entry is None else entry.status

    def rating_of(self, kind: str, simkl: int) -> int | None:
        """The user's rating of the item, or None."""
        entry = self.entries.get((kind, simkl))
        return None if entry is None else entry.rating


def _fmt_s(moment: datetime) -> str:
    """SIMKL's own timestamps: second precision, ``Z`` (Apiary "Dates")."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fmt_ms(moment: datetime) -> str:
    """How a client sends timestamps: ``2026-11-21T10:54:52.000Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_utc(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {value!r}")
    return parsed.astimezone(UTC)


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


def _words(text: str) -> list[str]:
    """The words of a title or query as the text search compares them (NFC, case-folded)."""
    return re.findall(r"\w+", unicodedata.normalize("NFC", text).casefold())


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


def _objects(body: dict[str, Any], kind: str) -> list[Any]:
    value = body.get(kind)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _BadRequest("wrong_parameter", f'"{kind}" must be an array')
    return value


class FakeSimkl:
    """The fake server. See the module docstring for behaviour, state and knobs.

    *clock* (monotonic seconds) drives rate limits, the PIN flow and the scrobble lock; *now*
    (aware UTC datetime) stamps plays, list updates and activities. Both are injectable.
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
        default_user: str = "me",
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
        self.default_user = default_user
        # Recorded state.
        self.users: dict[str, SimklUser] = {default_user: SimklUser(default_user)}
        self.history: list[dict[str, Any]] = self.users[default_user].history
        self.scrobbles: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.rate_limited: list[dict[str, Any]] = []
        self.pin_polls: list[dict[str, Any]] = []
        self.tokens: set[str] = set()
        self.pins: dict[str, _Pin] = {}
        # Knobs.
        self.down = False
        #: Users whose authenticated requests get 503 (one account in an outage).
        self.down_users: set[str] = set()
        self.delay_s = 0.0
        self.ack_empty_next = 0
        self.auto_approve_after: int | None = None
        self.pin_slow_down_below_s: float | None = None
        self.scrobble_lock_hold_s = 0.0
        self.search_null_when_empty = False
        self.post_block_status = 429
        # Internals.
        self._token_user: dict[str, str] = {}
        self._failures: list[_Failure] = []
        self._limits: dict[str, _Limits] = {}
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
        router = app.router
        router.add_get("/oauth/pin", self._pin_new)
        router.add_get("/oauth/pin/{user_code}", self._pin_poll)
        router.add_get("/search/id", self._search_id)
        router.add_get("/search/{type}", self._search_text)
        router.add_post("/sync/history", self._sync_history)
        router.add_post("/sync/history/remove", self._history_remove)
        router.add_get("/sync/activities", self._activities)
        router.add_post("/sync/activities", self._activities)
        router.add_post("/sync/ratings", self._add_ratings)
        router.add_post("/sync/ratings/remove", self._remove_ratings)  # before /{type}
        router.add_post("/sync/add-to-list", self._add_to_list)
        router.add_post("/sync/watched", self._watched)
        for tail in ("", "/", "/{type}", "/{type}/", "/{type}/{status}"):
            router.add_get("/sync/all-items" + tail, self._all_items)
            router.add_get("/sync/ratings" + tail, self._get_ratings)
            if tail:  # "Get Ratings" is documented as a POST too
                router.add_post("/sync/ratings" + tail, self._get_ratings)
        router.add_post("/scrobble/{action}", self._scrobble)
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

    # ------------------------------------------------------------------ users and knobs

    def user(self, name: str | None = None) -> SimklUser:
        """The user *name* (created on first use; None → the default user)."""
        name = self.default_user if name is None else name
        found = self.users.get(name)
        if found is None:
            found = self.users[name] = SimklUser(name)
        return found

    def put_in_list(
        self, kind: str, ids: dict[str, Any], status: str, *, user: str | None = None
    ) -> None:
        """*user* moves a catalogue movie or show (*kind*) to list *status* on simkl.com (as
        ``add-to-list`` does: the activities of the lists it left and entered move)."""
        media = self.catalog.movie(ids) if kind == "movie" else self.catalog.show(ids)
        assert media is not None, ids
        self._set_status(self.user(user), kind, media["ids"]["simkl"], status, self.now())

    def leave_lists(self, kind: str, ids: dict[str, Any], *, user: str | None = None) -> None:
        """*user* takes an item off their lists on simkl.com (with its plays and rating, as
        ``/sync/history/remove``; ``removed_from_list`` moves)."""
        media = self.catalog.movie(ids) if kind == "movie" else self.catalog.show(ids)
        assert media is not None, ids
        self._forget(self.user(user), kind, media["ids"]["simkl"], self.now())

    def list_imdb(self, status: str = "plantowatch", *, user: str | None = None) -> set[str]:
        """The imdb ids of the items in *user*'s list *status*."""
        found = set()
        for entry in self.user(user).entries.values():
            if entry.status == status:
                media = self._media(entry)
                found.add(str(media["ids"]["imdb"]))
        return found

    def token_user(self, token: str) -> str | None:
        """Whose valid *token* is (None when unknown or revoked)."""
        return self._token_user.get(token, self.default_user) if token in self.tokens else None

    def revoke_all(self, user: str | None = None) -> None:
        """Every token (of *user* only, if given) stops working: the user revoked the app."""
        for token in list(self.tokens):
            if user is None or self._token_user.get(token) == user:
                self.tokens.discard(token)

    def clear_failures(self) -> None:
        """Forget the failures :meth:`fail_next` still had to inject (the outage is over)."""
        self._failures.clear()

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

    def add_play(
        self, entry: dict[str, Any], watched_at: datetime, *, user: str | None = None
    ) -> None:
        """Record a play of catalogue *entry* (a movie or an episode dict) at *watched_at* for
        *user*, as another app would have (the item's list and activities move)."""
        text = _fmt_ms(watched_at)
        if "show" in entry:
            play = self._episode_play(entry, entry["show"]["ids"], None, text, watched_at)
        else:
            play = self._movie_play(entry, entry["ids"], text, watched_at, "history")
        self._record(self.user(user), play)

    def rate(self, kind: str, simkl: int, rating: int, *, user: str | None = None) -> None:
        """*user* rates the movie or show (*kind* ``movie``/``show``) *rating* on the site:
        as ``POST /sync/ratings`` would (an unlisted item is listed)."""
        owner = self.user(user)
        now = self.now()
        entry = owner.entries.get((kind, simkl))
        if entry is None or entry.status is None:
            entry = self._set_status(
                owner, kind, simkl, "completed" if kind == "movie" else "watching", now
            )
        entry.rating, entry.rated_at, entry.rating_changed_at = rating, now, now
        owner.touch(now, self._group(kind, simkl), "rated_at")

    def issue_token(self, *, user: str | None = None) -> str:
        """Mint a valid access token of *user* (default user if None), as if they had
        authorized the app."""
        token = secrets.token_hex(32)
        self.tokens.add(token)
        self._token_user[token] = self.user(user).name
        return token

    def approve_pin(self, user_code: str | None = None, user: str | None = None) -> None:
        """*user* (default user if None) entered *user_code* (the latest one if None) at
        simkl.com/pin and approved the app."""
        code = user_code if user_code is not None else self.last_user_code
        assert code is not None, "no PIN code issued"
        pin = self.pins[code]
        pin.approved = True
        pin.user = self.user(user).name

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
        if (
            self.down_users
            and request.path.startswith(("/sync/", "/scrobble/"))
            and self._request_user(request).name in self.down_users
        ):
            return _envelope(503, message="Simkl is overloaded, try again later")
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

    def _request_user(self, request: web.Request) -> SimklUser:
        """The user of the request's (valid) token; only for routes behind ``_check_auth``."""
        token = self._bearer(request) or ""
        return self.user(self._token_user.get(token))

    def _limits_of(self, request: web.Request) -> _Limits:
        token = self._bearer(request)
        key = f"token:{token}" if token in self.tokens else f"client:{self.client_id}"
        limits = self._limits.get(key)
        if limits is None:
            now = self.clock()
            limits = _Limits(
                get=_Bucket(
                    self.get_per_s, max(1.0, self.get_per_s), max(1.0, self.get_per_s), now
                ),
                post=_Bucket(self.post_per_s, 1.0, 1.0, now),
            )
            self._limits[key] = limits
        return limits

    def _log_refusal(self, request: web.Request, entry: dict[str, Any]) -> None:
        token = self._bearer(request)
        if token in self.tokens:
            owner = self.user(self._token_user.get(token or ""))
            entry["user"] = owner.name
            owner.rate_limited.append(entry)
        self.rate_limited.append(entry)

    def _check_rate(self, request: web.Request) -> web.Response | None:
        limits = self._limits_of(request)
        now = self.clock()
        entry = {"method": request.method, "path": request.path, "at": now}
        if request.method in {"GET", "HEAD"}:
            if limits.get.take(now, 1.0):
                return None
            self._log_refusal(request, {**entry, "status": 429, "reason": "get_rate"})
            return _envelope(
                429, "too_many_requests", "Rate limit exceeded", **{"Retry-After": "1"}
            )
        if now < limits.post_blocked_until:
            reason = "post_blocked"
        elif limits.post.take(now, 1.0 - POST_JITTER_S * self.post_per_s):
            return None
        else:
            reason = "post_rate"
        limits.post_blocked_until = now + self.post_block_s  # repeated overages extend it
        status = self.post_block_status
        self._log_refusal(request, {**entry, "status": status, "reason": reason})
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

    async def _object_body(self, request: web.Request) -> dict[str, Any]:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise _BadRequest("wrong_parameter", "Body must be an object")
        return body

    def _watched_at(self, value: Any) -> tuple[str, datetime]:
        if value is None:
            moment = self.now()
            return _fmt_ms(moment), moment
        if not isinstance(value, str):
            raise _BadRequest("wrong_parameter", 'Wrong "watched_at" value')
        try:
            return value, _parse_utc(value)
        except ValueError:
            raise _BadRequest("wrong_parameter", f'Wrong "watched_at" value: {value}') from None

    @staticmethod
    def _date(value: Any, name: str) -> datetime | None:
        if value is None:
            return None
        try:
            return _parse_utc(str(value))
        except ValueError:
            raise _BadRequest("wrong_parameter", f'Wrong "{name}" value') from None

    def _group(self, kind: str, simkl: int) -> str:
        """The activities group of an item: ``movies``, ``tv_shows`` or ``anime``."""
        if kind == "movie":
            return "movies"
        show = self.catalog.show({"simkl": simkl})
        return "anime" if show is not None and show.get("anime") else "tv_shows"

    def _simkl_type(self, kind: str, simkl: int) -> str:
        group = self._group(kind, simkl)
        return {"movies": "movie", "tv_shows": "tv", "anime": "anime"}[group]

    def _show_plays(self, user: SimklUser, simkl: int) -> dict[tuple[int, int], datetime]:
        """Latest ``watched_at`` per (season, number) of a show's plays."""
        return dict(user.latest()[1].get(simkl, {}))

    def _show_status(self, user: SimklUser, simkl: int) -> str:
        show = self.catalog.show({"simkl": simkl})
        assert show is not None
        total = len(self.catalog.episodes_of(show))
        return "completed" if len(self._show_plays(user, simkl)) >= total else "watching"

    def _set_status(
        self, user: SimklUser, kind: str, simkl: int, status: str | None, when: datetime
    ) -> SimklEntry:
        """Put the item in list *status* (None: keep it where it is), stamping it updated and
        moving the activity timestamps of the lists it left and entered."""
        group = self._group(kind, simkl)
        entry = user.entries.get((kind, simkl))
        if entry is None:
            entry = user.entries[(kind, simkl)] = SimklEntry(kind, simkl, None, when, when)
        old = entry.status
        if status is not None:
            entry.status = status
        entry.updated_at = when
        names = {n for n in (old, entry.status) if n is not None}
        user.touch(when, group, *sorted(names))
        return entry

    def _record(self, user: SimklUser, play: dict[str, Any]) -> SimklEntry:
        """Store a play and move its item to the list a play puts it in."""
        now = self.now()
        play["recorded_at"] = now
        play["user"] = user.name
        user.history.append(play)
        if play["type"] == "movie":
            return self._set_status(user, "movie", play["simkl"], "completed", now)
        return self._set_status(
            user, "show", play["simkl"], self._show_status(user, play["simkl"]), now
        )

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
                "access_token": self.issue_token(user=pin.user),
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

    async def _search_text(self, request: web.Request) -> web.Response:
        """ "Search / Text": ``/search/{movie|tv|anime}?q=`` (``q`` required), titles holding
        every word of ``q`` (nearest first: the real search ranks by relevance, so the client
        has to pick the exact title), paged ("Page limit is 20, max items per page is 50").
        Results are Standard Media Objects as the Apiary example shows them:
        ``{title, year, endpoint_type, poster, ids: {simkl_id, slug, tmdb?}}``."""
        kind = request.match_info["type"]
        if kind not in {"movie", "tv", "anime"}:
            raise _BadRequest("wrong_parameter", f'Wrong "type" value: {kind}')
        wanted = _words(request.query.get("q", ""))
        if not wanted:
            raise _BadRequest("empty_field", 'Missed "q" parameter')
        try:
            page = max(1, int(request.query.get("page", "1")))
            limit = min(50, max(1, int(request.query.get("limit", "10"))))
        except ValueError:
            raise _BadRequest("wrong_parameter", "Wrong page or limit") from None
        if kind == "movie":
            pool = [("movies", m) for m in self.catalog.movies]
        else:
            anime = kind == "anime"
            pool = [
                ("anime" if anime else "tv", s)
                for s in self.catalog.shows
                if bool(s.get("anime")) == anime
            ]
        scored: list[tuple[float, dict[str, Any]]] = []
        for endpoint, entry in pool:
            words = _words(entry["title"])
            if not set(wanted) <= set(words):
                continue
            ids = {"simkl_id": entry["ids"]["simkl"], "slug": entry["ids"].get("slug")}
            if entry["ids"].get("tmdb"):
                ids["tmdb"] = str(entry["ids"]["tmdb"])
            result = {
                "title": entry["title"],
                "year": entry["year"],
                "endpoint_type": endpoint,
                "poster": "00/0000000000000",
                "ids": ids,
            }
            scored.append((len(wanted) / len(words), result))
        scored.sort(key=lambda pair: -pair[0])
        results = [result for _, result in scored][: 20 * limit]
        pages = max(1, math.ceil(len(results) / limit))
        headers = {
            "X-Pagination-Page": str(page),
            "X-Pagination-Limit": str(limit),
            "X-Pagination-Page-Count": str(pages),
            "X-Pagination-Item-Count": str(len(results)),
        }
        return _json(results[(page - 1) * limit : page * limit], headers=headers)

    # ------------------------------------------------------------------ sync/history

    async def _sync_history(self, request: web.Request) -> web.Response:
        """ "Add Items to the history": plays; ``added.statuses`` says which list each
        requested movie/show is in afterwards."""
        user = self._request_user(request)
        body = await self._object_body(request)
        plays: list[dict[str, Any]] = []
        requested: list[tuple[dict[str, Any], str, int]] = []
        added: dict[str, Any] = {"movies": 0, "shows": 0, "episodes": 0, "statuses": []}
        not_found: dict[str, list[Any]] = {"movies": [], "shows": [], "episodes": []}
        for obj in _objects(body, "movies"):
            movie = self.catalog.movie(obj.get("ids") or {}) if isinstance(obj, dict) else None
            if movie is None:
                not_found["movies"].append(obj)
                continue
            text, moment = self._watched_at(obj.get("watched_at"))
            plays.append(self._movie_play(movie, obj.get("ids"), text, moment, "history"))
            requested.append((obj, "movie", movie["ids"]["simkl"]))
            added["movies"] += 1
        for obj in [*_objects(body, "shows"), *_objects(body, "anime")]:
            show = self.catalog.show(obj.get("ids") or {}) if isinstance(obj, dict) else None
            if show is None:
                not_found["shows"].append(obj)  # unresolved anime too (no not_found.anime)
                continue
            added["shows"] += 1
            requested.append((obj, "show", show["ids"]["simkl"]))
            seasons = obj.get("seasons")
            if obj.get("episodes") is not None:  # shorthand: wraps to season 1
                seasons = [*(seasons or []), {"number": 1, "episodes": obj["episodes"]}]
            if not seasons:  # the whole show
                seasons = [
                    {"number": ep["season"], "episodes": [{"number": ep["number"]}]}
                    for ep in self.catalog.episodes_of(show)
                ]
            for season in seasons:
                number = season.get("number")
                episodes = season.get("episodes")
                if episodes is None:  # the whole season
                    episodes = [
                        {"number": ep["number"]} for ep in self.catalog.episodes_of(show, number)
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
        for obj in _objects(body, "episodes"):
            episode = self.catalog.episode(obj.get("ids") or {}) if isinstance(obj, dict) else None
            if episode is None:
                not_found["episodes"].append(obj)
                continue
            text, moment = self._watched_at(obj.get("watched_at"))
            plays.append(self._episode_play(episode, None, obj.get("ids"), text, moment))
            added["episodes"] += 1
        for play in plays:
            self._record(user, play)
        for obj, kind, simkl in requested:
            added["statuses"].append(
                {"request": obj, "response": self._status_response(user, kind, simkl)}
            )
        if self.ack_empty_next > 0:
            self.ack_empty_next -= 1
            empty = {"movies": 0, "shows": 0, "episodes": 0, "statuses": []}
            return _json({"added": empty, "not_found": {"movies": [], "shows": [], "episodes": []}})
        return _json({"added": added, "not_found": not_found}, 201)

    def _status_response(self, user: SimklUser, kind: str, simkl: int) -> dict[str, Any]:
        simkl_type = self._simkl_type(kind, simkl)
        return {
            "status": user.status_of(kind, simkl),
            "simkl_type": simkl_type,
            "anime_type": "tv" if simkl_type == "anime" else None,
        }

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

    async def _history_remove(self, request: web.Request) -> web.Response:
        """ "Remove Items from History and from Lists": a movie, or a show sent without
        seasons, leaves every list with its watched history and its rating ("When removing
        show or movie, ratings are removed automatically"); a show with ``seasons`` (and
        ``episodes``) only unmarks those episodes.

        The apib shows no reply body; this fake answers 201 ``{"deleted": {movies, shows,
        episodes}, "not_found": {movies, shows}}`` (items SIMKL does not know are not found;
        known items absent from the lists are simply not counted).
        """
        user = self._request_user(request)
        body = await self._object_body(request)
        now = self.now()
        deleted = {"movies": 0, "shows": 0, "episodes": 0}
        not_found: dict[str, list[Any]] = {"movies": [], "shows": []}
        for obj in _objects(body, "movies"):
            movie = self.catalog.movie(obj.get("ids") or {}) if isinstance(obj, dict) else None
            if movie is None:
                not_found["movies"].append(obj)
            elif self._forget(user, "movie", movie["ids"]["simkl"], now):
                deleted["movies"] += 1
        for obj in [*_objects(body, "shows"), *_objects(body, "anime")]:
            show = self.catalog.show(obj.get("ids") or {}) if isinstance(obj, dict) else None
            if show is None:
                not_found["shows"].append(obj)
                continue
            simkl = show["ids"]["simkl"]
            if not obj.get("seasons"):
                if self._forget(user, "show", simkl, now):
                    deleted["shows"] += 1
                continue
            wanted: set[tuple[Any, Any]] = set()
            for season in obj["seasons"]:
                number = season.get("number") if isinstance(season, dict) else None
                episodes = season.get("episodes") if isinstance(season, dict) else None
                if episodes is None:
                    wanted |= {
                        (number, e["number"]) for e in self.catalog.episodes_of(show, number)
                    }
                else:
                    wanted |= {(number, e.get("number")) for e in episodes if isinstance(e, dict)}
            kept = [
                p
                for p in user.history
                if not (
                    p["type"] == "episode"
                    and p["simkl"] == simkl
                    and (p["season"], p["number"]) in wanted
                )
            ]
            removed = len(user.history) - len(kept)
            if removed:
                user.history[:] = kept
                user.forget_latest()
                deleted["episodes"] += removed
                still = self._show_plays(user, simkl)
                status = None if not still else self._show_status(user, simkl)
                self._set_status(user, "show", simkl, status, now)
        return _json({"deleted": deleted, "not_found": not_found}, 201)

    def _forget(self, user: SimklUser, kind: str, simkl: int, now: datetime) -> bool:
        """Drop an item from the lists, with its plays and rating. True if it was there."""
        entry = user.entries.pop((kind, simkl), None)
        play_type = "movie" if kind == "movie" else "episode"
        kept = [p for p in user.history if not (p["type"] == play_type and p["simkl"] == simkl)]
        had_plays = len(kept) != len(user.history)
        user.history[:] = kept
        user.forget_latest()
        if entry is None and not had_plays:
            return False
        group = self._group(kind, simkl)
        names = ["removed_from_list"]
        if entry is not None and entry.rating is not None:
            names.append("rated_at")
        user.touch(now, group, *names)
        return True

    # ------------------------------------------------------------------ sync/activities

    async def _activities(self, request: web.Request) -> web.Response:
        """ "Last Activities" (GET; the how-to also POSTs): this user's timestamps."""
        return _json(self._request_user(request).activities)

    # ------------------------------------------------------------------ sync/all-items

    async def _all_items(self, request: web.Request) -> web.Response:
        """ "Get All Items" ``/{type}/{status}``: ``null`` when there is nothing to report;
        ``date_from`` on the item's update time; ``extended=full`` adds watched episodes
        (``episode_watched_at=yes`` their ``watched_at``); ``simkl_ids_only``/``ids_only``
        minify each row to its media object with ids (shape not in the reference: chosen)."""
        user = self._request_user(request)
        kind = request.match_info.get("type") or None
        status = request.match_info.get("status") or None
        if kind is not None and kind not in _ALL_ITEM_TYPES:
            raise _BadRequest("wrong_parameter", f'Wrong "type" value: {kind}')
        if status is not None and status not in _LIST_STATUSES:
            raise _BadRequest("wrong_parameter", f'Wrong "status" value: {status}')
        date_from = self._date(request.query.get("date_from") or None, "date_from")
        extended = request.query.get("extended", "")
        with_episodes = extended in {"full", "full_anime_seasons"}
        with_watched_at = request.query.get("episode_watched_at") == "yes"
        out: dict[str, list[dict[str, Any]]] = {}
        for entry in sorted(user.entries.values(), key=lambda e: e.added_at):
            if entry.status is None or (status is not None and entry.status != status):
                continue
            if date_from is not None and entry.updated_at <= date_from:
                continue
            group = {"movies": "movies", "tv_shows": "shows", "anime": "anime"}[
                self._group(entry.kind, entry.simkl)
            ]
            if kind is not None and group != kind:
                continue
            if extended in {"simkl_ids_only", "ids_only"}:
                row = self._ids_row(entry, simkl_only=extended == "simkl_ids_only")
            else:
                row = self._row(user, entry, with_episodes, with_watched_at)
            out.setdefault(group, []).append(row)
        return _json(out or None)  # nothing to report: the whole body is `null`

    def _media(self, entry: SimklEntry) -> dict[str, Any]:
        found = (
            self.catalog.movie({"simkl": entry.simkl})
            if entry.kind == "movie"
            else self.catalog.show({"simkl": entry.simkl})
        )
        assert found is not None
        return found

    def _ids_row(self, entry: SimklEntry, *, simkl_only: bool) -> dict[str, Any]:
        ids = _out_ids(self._media(entry)["ids"])
        if simkl_only:
            ids = {"simkl": ids["simkl"], "slug": ids["slug"]}
        return {"movie" if entry.kind == "movie" else "show": {"ids": ids}}

    def _row(
        self, user: SimklUser, entry: SimklEntry, with_episodes: bool, with_watched_at: bool
    ) -> dict[str, Any]:
        media = self._media(entry)
        common: dict[str, Any] = {
            "added_to_watchlist_at": _fmt_s(entry.added_at),
            "last_watched_at": None,
            "user_rated_at": _fmt_s(entry.rated_at) if entry.rated_at else None,
            "user_rating": entry.rating,
            "status": entry.status,
        }
        obj = {"title": media["title"], "year": media["year"], "ids": _out_ids(media["ids"])}
        if entry.kind == "movie":
            last = user.latest()[0].get(entry.simkl)
            watched = [] if last is None else [last]
            if entry.watched_at is not None:
                watched.append(entry.watched_at)
            common["last_watched_at"] = _fmt_s(max(watched)) if watched else None
            return {**common, "movie": obj}
        latest = self._show_plays(user, entry.simkl)
        episodes = self.catalog.episodes_of(media)
        last_key = max(latest, key=lambda k: latest[k]) if latest else None
        unwatched = [e for e in episodes if (e["season"], e["number"]) not in latest]
        row: dict[str, Any] = {
            **common,
            "last_watched_at": _fmt_s(latest[last_key]) if last_key else None,
            "last_watched": f"S{last_key[0]:02d}E{last_key[1]:02d}" if last_key else None,
            "next_to_watch": (
                f"S{unwatched[0]['season']:02d}E{unwatched[0]['number']:02d}" if unwatched else None
            ),
            "watched_episodes_count": len(latest),
            "total_episodes_count": len(episodes),
            "not_aired_episodes_count": 0,
            "show": obj,
        }
        if media.get("anime"):
            row["anime_type"] = "tv"
        if with_episodes:
            seasons: dict[int, list[dict[str, Any]]] = {}
            for (season, number), moment in sorted(latest.items()):
                episode: dict[str, Any] = {"number": number}
                if with_watched_at:
                    episode["watched_at"] = _fmt_s(moment)
                seasons.setdefault(season, []).append(episode)
            row["seasons"] = [{"number": s, "episodes": eps} for s, eps in seasons.items()]
        return row

    # ------------------------------------------------------------------ sync/ratings

    def _rated_items(
        self, body: dict[str, Any]
    ) -> tuple[list[tuple[dict[str, Any], str, int]], dict[str, list[Any]]]:
        """The movies and shows (anime are shows) a ratings/list body names, and the rest."""
        found: list[tuple[dict[str, Any], str, int]] = []
        not_found: dict[str, list[Any]] = {"movies": [], "shows": []}
        for obj in _objects(body, "movies"):
            movie = self.catalog.movie(obj.get("ids") or {}) if isinstance(obj, dict) else None
            if movie is None:
                not_found["movies"].append(obj)
            else:
                found.append((obj, "movie", movie["ids"]["simkl"]))
        for obj in [*_objects(body, "shows"), *_objects(body, "anime")]:
            show = self.catalog.show(obj.get("ids") or {}) if isinstance(obj, dict) else None
            if show is None:
                not_found["shows"].append(obj)
            else:
                found.append((obj, "show", show["ids"]["simkl"]))
        return found, not_found

    async def _add_ratings(self, request: web.Request) -> web.Response:
        """ "Add Ratings": ``rating`` an integer 1–10 (anything else: 400 ``wrong_parameter``,
        nothing rated — the apib lists the values, not the error), optional ``rated_at``.
        An unlisted movie moves to Completed, an unlisted show to Watching; 201 (api.simkl.org
        "POST → 201") ``{added: {movies, shows, statuses}, not_found: {movies, shows}}``."""
        user = self._request_user(request)
        body = await self._object_body(request)
        found, not_found = self._rated_items(body)
        now = self.now()
        checked = []
        for obj, kind, simkl in found:
            rating = obj.get("rating")
            if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 10:
                raise _BadRequest("wrong_parameter", f'Wrong "rating" value: {rating!r}')
            rated_at = self._date(obj.get("rated_at"), "rated_at") or now
            checked.append((obj, kind, simkl, rating, rated_at))
        added: dict[str, Any] = {"movies": 0, "shows": 0, "statuses": []}
        for obj, kind, simkl, rating, rated_at in checked:
            entry = user.entries.get((kind, simkl))
            if entry is None or entry.status is None:
                entry = self._set_status(
                    user, kind, simkl, "completed" if kind == "movie" else "watching", now
                )
            entry.rating, entry.rated_at, entry.rating_changed_at = rating, rated_at, now
            user.touch(now, self._group(kind, simkl), "rated_at")
            added["movies" if kind == "movie" else "shows"] += 1
            added["statuses"].append({"request": obj, "response": {"status": entry.status}})
        return _json({"added": added, "not_found": not_found}, 201)

    async def _remove_ratings(self, request: web.Request) -> web.Response:
        """ "Remove Ratings": the items stay in their lists, unrated. The apib shows no reply
        body; this fake answers 201 ``{deleted: {movies, shows}, not_found}``."""
        user = self._request_user(request)
        body = await self._object_body(request)
        found, not_found = self._rated_items(body)
        now = self.now()
        deleted = {"movies": 0, "shows": 0}
        for _, kind, simkl in found:
            entry = user.entries.get((kind, simkl))
            if entry is None or entry.rating is None:
                continue
            entry.rating, entry.rated_at, entry.rating_changed_at = None, None, now
            user.touch(now, self._group(kind, simkl), "rated_at")
            deleted["movies" if kind == "movie" else "shows"] += 1
        return _json({"deleted": deleted, "not_found": not_found}, 201)

    async def _get_ratings(self, request: web.Request) -> web.Response:
        """ "Get Ratings" ``/{type}/{rating}`` (GET, or POST as the apib heading has it):
        ``rating`` one or comma-separated values; ``date_from`` selects ratings *changed* on
        SIMKL after it (not by ``rated_at``) and then also lists ratings deleted since, with
        ``user_rating: null`` ("skip items with deleted ratings" by filtering on rating).
        ``null`` when nothing matches (as "Get All Items"; the reference shows no empty reply).
        """
        user = self._request_user(request)
        kind = request.match_info.get("type") or None
        raw = request.match_info.get("status") or None  # the {rating} segment
        if kind is not None and kind not in _ALL_ITEM_TYPES:
            raise _BadRequest("wrong_parameter", f'Wrong "type" value: {kind}')
        wanted: set[int] | None = None
        if raw is not None:
            try:
                wanted = {int(v) for v in raw.split(",") if v.strip()}
            except ValueError:
                raise _BadRequest("wrong_parameter", f'Wrong "rating" value: {raw}') from None
            if not wanted or not wanted <= set(range(1, 11)):
                raise _BadRequest("wrong_parameter", f'Wrong "rating" value: {raw}')
        date_from = self._date(request.query.get("date_from") or None, "date_from")
        out: dict[str, list[dict[str, Any]]] = {}
        for entry in user.entries.values():
            if entry.rating_changed_at is None:
                continue
            if entry.rating is None and (date_from is None or wanted is not None):
                continue
            if wanted is not None and entry.rating not in wanted:
                continue
            if date_from is not None and entry.rating_changed_at <= date_from:
                continue
            group = {"movies": "movies", "tv_shows": "shows", "anime": "anime"}[
                self._group(entry.kind, entry.simkl)
            ]
            if kind is not None and group != kind:
                continue
            row = self._row(user, entry, with_episodes=False, with_watched_at=False)
            row.pop("added_to_watchlist_at", None)
            out.setdefault(group, []).append(row)
        return _json(out or None)

    # ------------------------------------------------------------------ sync/add-to-list

    async def _add_to_list(self, request: web.Request) -> web.Response:
        """ "Add Item to the List": ``to`` plantowatch|watching|completed|hold|dropped
        (movies: plantowatch|completed|dropped) moves the item there from whatever list it was
        in; ``watched_at`` only with ``completed``. A bad ``to`` is 400 ``wrong_parameter``
        (the reference does not say; chosen). 201 ``{added: {movies: [...], shows: [...]},
        not_found}``, each added item echoed with its ``to`` and ``type``."""
        user = self._request_user(request)
        body = await self._object_body(request)
        found, not_found = self._rated_items(body)
        checked = []
        for obj, kind, simkl in found:
            to = obj.get("to")
            allowed = _MOVIE_STATUSES if kind == "movie" else _LIST_STATUSES
            if to not in allowed:
                raise _BadRequest("wrong_parameter", f'Wrong "to" value: {to!r}')
            watched_at = self._date(obj.get("watched_at"), "watched_at")
            if watched_at is not None and to != "completed":
                raise _BadRequest("wrong_parameter", '"watched_at" is only for "completed"')
            checked.append((obj, kind, simkl, to, watched_at))
        now = self.now()
        added: dict[str, list[dict[str, Any]]] = {"movies": [], "shows": []}
        for obj, kind, simkl, to, watched_at in checked:
            entry = self._set_status(user, kind, simkl, to, now)
            if watched_at is not None:
                entry.watched_at = watched_at
            added["movies" if kind == "movie" else "shows"].append({**obj, "type": kind})
        return _json({"added": added, "not_found": not_found}, 201)

    # ------------------------------------------------------------------ sync/watched

    async def _watched(self, request: web.Request) -> web.Response:
        """ "Check if watched" (POST): a JSON **array** of flat objects (``type`` movie|show,
        ``title``, ``year`` and ids such as ``imdb``, ``tmdb``, ``tvdb``, ``simkl``; anything
        else is 400 ``wrong_parameter``, chosen: the apib shows no error); one answer per
        object, in order, echoing the ids sent, with ``result`` ``true`` (in one of the
        user's lists, named by ``list``, with ``last_watched_at``), ``false`` (known, on no
        list) or ``"not_found"``. ``extended`` allows at most 100 objects (more: 400).
        A TMDB id without ``type`` is looked up among movies first."""
        user = self._request_user(request)
        body = await self._body(request)
        if not isinstance(body, list) or not all(isinstance(o, dict) for o in body):
            raise _BadRequest("wrong_parameter", "the body must be an array of objects")
        if request.query.get("extended") and len(body) > 100:
            raise _BadRequest("wrong_parameter", "at most 100 items with extended")
        answers = []
        for obj in body:
            ids = {k: obj[k] for k in ("simkl", "imdb", "tmdb", "tvdb", "anidb") if k in obj}
            echo: dict[str, Any] = dict(ids)
            kinds = ["movie"] if obj.get("type") == "movie" else ["show"]
            if obj.get("type") not in ("movie", "show"):
                kinds = ["movie", "show"]
            found: tuple[str, dict[str, Any]] | None = None
            for kind in kinds:
                media = self.catalog.movie(ids) if kind == "movie" else self.catalog.show(ids)
                if media is not None:
                    found = (kind, media)
                    break
            if found is None:
                answers.append({**echo, "result": "not_found"})
                continue
            kind, media = found
            entry = user.entries.get((kind, media["ids"]["simkl"]))
            if entry is None or entry.status is None:
                answers.append({**echo, "result": False})
                continue
            row = self._row(user, entry, with_episodes=False, with_watched_at=False)
            answers.append(
                {
                    **echo,
                    "result": True,
                    "list": entry.status,
                    "last_watched_at": row["last_watched_at"],
                }
            )
        return _json(answers)

    # ------------------------------------------------------------------ scrobble

    async def _scrobble(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        if action not in {"start", "pause", "stop"}:
            raise web.HTTPNotFound()
        user = self._request_user(request)
        now = self.clock()
        if now < user.scrobble_lock_until:
            self._log_refusal(
                request,
                {
                    "method": "POST",
                    "path": request.path,
                    "at": now,
                    "status": 400,
                    "reason": "scrobble_lock",
                },
            )
            return _envelope(
                400, "RATE_LIMIT", "Another scrobble is being processed, try again in 20 seconds"
            )
        user.scrobble_lock_until = now + SCROBBLE_LOCK_S
        try:
            return await self._scrobble_locked(request, user, action)
        finally:
            user.scrobble_lock_until = self.clock() + min(
                self.scrobble_lock_hold_s, SCROBBLE_LOCK_S
            )

    async def _scrobble_locked(
        self, request: web.Request, user: SimklUser, action: str
    ) -> web.Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            raise _BadRequest("wrong_parameter", "Body must be an object")
        progress = body.get("progress")
        if isinstance(progress, bool) or not isinstance(progress, int | float):
            raise _BadRequest("empty_field", 'Missed "progress" parameter')
        if not 0 <= progress <= 100:
            raise _BadRequest("wrong_parameter", 'Wrong "progress" value')
        record: dict[str, Any] = {"endpoint": action, "progress": progress, "user": user.name}
        self.scrobbles.append(record)
        user.scrobbles.append(record)
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
            group = "movies"

            def make_play(moment: datetime, item: dict[str, Any] = movie) -> dict[str, Any]:
                return self._movie_play(item, record["ids"], _fmt_ms(moment), moment, "scrobble")
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
            group = self._group("show", show["ids"]["simkl"])

            def make_play(moment: datetime, item: dict[str, Any] = found) -> dict[str, Any]:
                return self._episode_play(
                    item, record["ids"], None, _fmt_ms(moment), moment, "scrobble"
                )
        else:
            record["status"] = 400
            raise _BadRequest("empty_field", "Send a movie, or a show with an episode")
        wall = self.now()
        duplicate = user.duplicates.get(key)
        if action in {"pause", "stop"} and progress >= 80 and duplicate and wall < duplicate[1]:
            record["status"] = 409
            return _json(
                {"watched_at": _fmt_ms(duplicate[0]), "expires_at": _fmt_ms(duplicate[1])},
                409,
            )
        if action == "start":
            scrobble_id, result = 0, "start"
        elif action == "stop" and progress >= 80:
            scrobble_id, result = next(self._scrobble_ids), "scrobble"
            user.duplicates[key] = (wall, wall + DUPLICATE_WINDOW)
            self._record(user, make_play(wall))
        else:
            scrobble_id, result = next(self._scrobble_ids), "pause"
            user.touch(wall, group, "playback")
        record.update(action=result, status=201)
        return _json(
            {"id": scrobble_id, "action": result, "progress": _progress_out(progress), **echo}, 201
        )
