"""A strict fake of the Trakt API, served by a real aiohttp app on 127.0.0.1.

It answers the endpoints crosswatchd uses, as strictly as the real service. Section names
below are those of the Trakt API Blueprint (``shared/reference/trakt/trakt.apib`` and its
extract ``trakt_api_extract_auth_scrobble_search_sync.md``); the watchlist changes of 2026
follow ``shared/reference/plex/discover-watchlist.md`` §7.

- "Required Headers": every request needs ``trakt-api-key`` == client id (else 403),
  ``trakt-api-version: 2`` (else 400) and a ``User-Agent`` (else 403); a POST needs
  ``Content-Type: application/json`` (else 412, "Status Codes").
- OAuth: ``/sync/*``, ``/scrobble/*`` and ``/users/settings`` need ``Authorization: Bearer
  <valid access token>`` (else 401). "Authentication - Devices" (device code flow), "Refresh
  Token" (rotating refresh tokens: the old one is dead after use, 401 ``invalid_grant``).
- **Several users.** Every access and refresh token belongs to one user (:class:`TraktUser`);
  history, ratings, watchlist, last activities, scrobble state and rate limits are that user's.
  Requests with another user's token never see or change them. A refresh hands out a token pair
  of the same user. The default user (``default_user``, "me") is the one the single-user API
  (``history``, ``plays()``, ``issue_token()``, ``approve_device(code)``) stands for.
- "Rate Limiting": per user token, more than one authed POST/PUT/DELETE per second
  (``AUTHED_API_POST_LIMIT``) or more than 1000 GETs per 300 s (``AUTHED_API_GET_LIMIT``) → 429
  with ``Retry-After`` and ``X-Ratelimit``; unauthenticated GETs count per client id
  (``UNAUTHED_API_GET_LIMIT``). Always on. 429s are counted in total and per user.
- "Sync / Add to History" (no de-duplication, like the real one; an episode it cannot place
  under a known show is listed in ``not_found.shows`` with only the missing episodes),
  "Sync / Get History" ("Pagination": 10 per page by default; ``start_at``/``end_at``),
  "Sync / Remove from History" (items or raw history ``ids``).
- "Sync / Last Activities": the documented shape; ``movies|episodes.watched_at`` move when a
  play is added or removed, ``*.rated_at`` when a rating changes, ``*.watchlisted_at`` and
  ``watchlist.updated_at`` when the watchlist changes, ``*.paused_at`` on a paused scrobble;
  ``all`` is the latest of them. Timestamps are when the change happened (the fake's ``clock``),
  not the play's ``watched_at``.
- "Sync / Add Ratings", "Remove Ratings", "Get Ratings" (movies, shows, seasons, episodes; a
  season or episode rated under its show ``shows[{ids, seasons[{number, rating |
  episodes[{number, rating}]}]}]``; "Pagination Optional").
- "Sync / Get Watchlist", "Add to Watchlist", "Remove from Watchlist": paginated by default
  (100 per page, at most 250) since 2026-04-15 (discover-watchlist.md §7); additions past the
  user's ``watchlist_limit`` → 420 with ``X-Account-Limit``, ``X-VIP-User`` and
  ``X-Upgrade-URL`` ("VIP Methods"; the whole batch is refused — the reference leaves partial
  additions open). "Auto Removal": a play removes the movie, or the episode, its season and its
  show, from that user's watchlist.
- "Seasons / Summary" ``GET /shows/{id}/seasons`` (``extended=episodes``; ``number_abs`` is part
  of the *full* episode object, so it needs ``extended=full,episodes``), "Users / Settings"
  (``limits.watchlist.item_count``).
- "Scrobble" (stop ≥ 80 % records a play; a repeat within the window → 409), "Search / ID
  Lookup" and "Search / Text Query" (titles holding every word of the query, exact ones
  first: the client has to pick the exact one).

Recorded state (plain attributes, for assertions):

- ``history``: the default user's plays, oldest first, shaped like ``GET /sync/history`` items
  ``{id, watched_at, action, type, movie | episode + show}``; ``user(name).history`` for others.
  ``add_play()`` records one directly (another app's play; no request, no rate limit),
  ``rate()`` a rating.
- ``user(name)``: a :class:`TraktUser` (``history``, ``ratings``, ``watchlist``,
  ``activities``, ``scrobbles``, ``rate_limited``, ``rate_limit_log``, ``watchlist_limit``,
  ``vip``); ``users`` maps names to them.
- ``scrobbles``: every ``/scrobble/*`` call ``{path, status, action, progress, body, user}``.
- ``requests``: ``(method, path, query)`` of every request received.
- ``rate_limited``: how many 429s the fake's own limit enforcement sent (device polls that
  came too fast included; injected ``fail_next(429)`` not counted); ``rate_limit_log`` has them.
- ``unauthorized``: 401 ``invalid_token`` answers (expired or unknown access tokens);
  ``invalid_grants``: 401 ``invalid_grant`` answers to refreshes (a rotated-away refresh token).

Knobs: ``fail_next()``, ``down``, ``delay_s``, ``access_token_ttl_s``, ``device_interval_s``,
``device_expires_in_s``, ``auto_approve_after``, ``watchlist_limit`` (default for new users),
``history_max_limit`` (250: "The current target maximum page size is 250 when you request a
limit", trakt/trakt-api discussion #775; None: no cap),
``list_page_limit``/``list_max_limit``, ``get_limit``/``get_period_s``, ``approve_device()``,
``deny_device()``, ``issue_token()``, ``expire_access_tokens()``, ``revoke_all()`` (the last
four take ``user=``).

Usage::

    async with FakeTrakt(client_id="cid", client_secret="csecret") as fake:
        alex = fake.issue_token(user="alex")["access_token"]
        ...  # fake.url
        assert fake.plays(user="alex") == []

or ``await fake.start()`` / ``await fake.stop()`` from a plain script.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import re
import secrets
import time
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.fakes.catalog import Catalog, default_catalog

__all__ = ["DeviceCode", "FakeTrakt", "TraktUser"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: ``("movie", trakt)``, ``("show", trakt)``, ``("season", show trakt, number)`` or
#: ``("episode", trakt)``: one rateable / watchlistable thing.
Key = tuple[Any, ...]

_POST_PERIOD_S = 1.0
_GET_LIMIT = 1000
_GET_PERIOD_S = 300.0
_HISTORY_TYPES = {"movies", "shows", "seasons", "episodes"}
_KINDS = ("movies", "shows", "seasons", "episodes")
_TYPE_OF = {"movies": "movie", "shows": "show", "seasons": "season", "episodes": "episode"}
_WATCHLIST_SORTS = {
    "rank",
    "added",
    "title",
    "released",
    "runtime",
    "popularity",
    "random",
    "percentage",
    "imdb_rating",
    "tmdb_rating",
    "rt_tomatometer",
    "rt_audience",
    "metascore",
    "votes",
    "imdb_votes",
    "tmdb_votes",
    "my_rating",
    "watched",
    "collected",
}
#: "Sync / Last Activities": every group and field of the documented reply.
_ACTIVITY_FIELDS: dict[str, tuple[str, ...]] = {
    "movies": (
        "watched_at",
        "collected_at",
        "rated_at",
        "watchlisted_at",
        "favorited_at",
        "commented_at",
        "paused_at",
        "hidden_at",
    ),
    "episodes": (
        "watched_at",
        "collected_at",
        "rated_at",
        "watchlisted_at",
        "commented_at",
        "paused_at",
    ),
    "shows": (
        "rated_at",
        "watchlisted_at",
        "favorited_at",
        "commented_at",
        "hidden_at",
        "dropped_at",
    ),
    "seasons": ("rated_at", "watchlisted_at", "commented_at", "hidden_at"),
    "comments": ("liked_at", "blocked_at"),
    "lists": ("liked_at", "updated_at", "commented_at"),
    "watchlist": ("updated_at",),
    "favorites": ("updated_at",),
    "account": ("settings_at", "followed_at", "following_at", "pending_at", "requested_at"),
    "saved_filters": ("updated_at",),
    "notes": ("updated_at",),
}


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


def _words(text: str) -> list[str]:
    """The words of a title or query as the text search compares them (NFC, case-folded)."""
    return re.findall(r"\w+", unicodedata.normalize("NFC", text).casefold())


def _error(status: int, error: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, **extra}, status=status)


def _unprocessable(description: str) -> web.Response:
    return _error(422, "unprocessable_entity", error_description=description)


def _objects(body: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The ``kind`` array of a sync body; anything but a list of objects is a 422."""
    value = body.get(kind)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(o, dict) for o in value):
        raise ValueError(f"{kind} must be an array of objects")
    return value


def _counts() -> dict[str, int]:
    return dict.fromkeys(_KINDS, 0)


def _empty_not_found() -> dict[str, list[Any]]:
    return {kind: [] for kind in _KINDS}


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
    #: Who approved it (``approve_device(code, user=…)``); None → the default user.
    user: str | None = None


@dataclass
class TraktUser:
    """One Trakt account inside the fake: everything a token of it reads and writes.

    ``ratings`` maps a :data:`Key` to a ``GET /sync/ratings`` item; ``watchlist`` holds
    ``GET /sync/watchlist`` items in rank order; ``activities`` is the ``GET
    /sync/last_activities`` reply. ``rate_limited`` counts the 429s this user's token got.
    """

    name: str
    created_at: datetime
    watchlist_limit: int = 250
    vip: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    ratings: dict[Key, dict[str, Any]] = field(default_factory=dict)
    watchlist: list[dict[str, Any]] = field(default_factory=list)
    scrobbles: list[dict[str, Any]] = field(default_factory=list)
    rate_limited: int = 0
    rate_limit_log: list[dict[str, Any]] = field(default_factory=list)
    activities: dict[str, Any] = field(default_factory=dict)
    last_post: float | None = field(default=None, repr=False)
    gets: deque[float] = field(default_factory=deque, repr=False)
    #: Bumped on every change of ``history`` (the fake's sorted view of it is rebuilt then).
    history_version: int = field(default=0, repr=False)
    newest_first: tuple[int, list[tuple[datetime, dict[str, Any]]]] | None = field(
        default=None, repr=False
    )
    last_listing: tuple[tuple[Any, ...], list[dict[str, Any]]] | None = field(
        default=None, repr=False
    )

    def sorted_history(self) -> list[tuple[datetime, dict[str, Any]]]:
        """``(watched_at, item)`` of every play, newest first (cached per version)."""
        cached = self.newest_first
        if cached is None or cached[0] != self.history_version:
            ordered = sorted(
                ((_parse(h["watched_at"]), h) for h in self.history),
                key=lambda pair: (pair[0], pair[1]["id"]),
                reverse=True,
            )
            cached = self.newest_first = (self.history_version, ordered)
        return cached[1]

    def __post_init__(self) -> None:
        if not self.activities:
            start = _fmt(self.created_at)
            self.activities = {"all": start}
            for group, names in _ACTIVITY_FIELDS.items():
                self.activities[group] = dict.fromkeys(names, start)

    def touch(self, when: datetime, *fields: tuple[str, str]) -> None:
        """Move ``activities[group][name]`` (and ``all``) to *when* for each pair."""
        stamp = _fmt(when)
        for group, name in fields:
            self.activities[group][name] = stamp
        self.activities["all"] = max(self.activities["all"], stamp)

    def plays(self, kind: str | None = None) -> list[dict[str, Any]]:
        """History items (``kind`` ``"movie"``/``"episode"`` to filter), oldest first."""
        return [h for h in self.history if kind is None or h["type"] == kind]

    def rating_of(self, key: Key) -> int | None:
        """The rating of *key* (see :data:`Key`), or None."""
        item = self.ratings.get(key)
        return None if item is None else int(item["rating"])

    def watchlist_keys(self) -> list[Key]:
        """The watchlist as keys, in rank order."""
        return [item["_key"] for item in self.watchlist]


_USER = web.RequestKey("trakt_user", TraktUser)


@dataclass
class _Failure:
    status: int
    remaining: int
    headers: dict[str, str]
    body: Any
    path: str | None
    method: str | None = None


@dataclass
class _Targets:
    """What a sync body named: catalogue items found (key, the object that named them) and the
    ``not_found`` echo."""

    found: list[tuple[Key, dict[str, Any]]] = field(default_factory=list)
    not_found: dict[str, list[Any]] = field(default_factory=_empty_not_found)


@dataclass(eq=False, repr=False)
class FakeTrakt:
    """A strict fake Trakt API (see the module docstring for behaviour and knobs).

    ``clock`` is wall-clock unix seconds (token ``created_at``/expiry, device-code expiry,
    last-activity timestamps); ``monotonic`` drives rate limits and poll intervals.
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
    #: The user of the single-user API (tokens issued without ``user=``).
    default_user: str = "me"
    #: Watchlist item limit of new users (free accounts: 250 since 2026, discover-watchlist §7).
    watchlist_limit: int = 250
    #: Largest history page served ("target maximum page size is 250", trakt-api discussion
    #: #775); None = no cap.
    history_max_limit: int | None = 250
    #: Default and largest page of lists/watchlist (paginated by default since 2026-04-15).
    list_page_limit: int = 100
    list_max_limit: int = 250
    #: "Rate Limiting": GETs allowed per period, per user token (or per client id).
    get_limit: int = _GET_LIMIT
    get_period_s: float = _GET_PERIOD_S

    # --- recorded state -------------------------------------------------------------------
    history: list[dict[str, Any]] = field(default_factory=list)
    scrobbles: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    rate_limited: int = 0
    #: 401 ``invalid_token`` answers (an expired or unknown access token) and 401
    #: ``invalid_grant`` answers (a refresh token used twice, revoked or unknown).
    unauthorized: int = 0
    invalid_grants: int = 0
    rate_limit_log: list[dict[str, Any]] = field(default_factory=list)
    devices: dict[str, DeviceCode] = field(default_factory=dict)  # by user_code
    # --- failure knobs --------------------------------------------------------------------
    down: bool = False
    #: Users whose authenticated requests get 503 (one account in an outage).
    down_users: set[str] = field(default_factory=set)
    delay_s: float = 0.0

    url: str = ""

    def __post_init__(self) -> None:
        self._access: dict[str, tuple[float, str]] = {}  # token -> (expires_at, user)
        self._refresh: dict[str, str] = {}  # refresh token -> user
        self._failures: list[_Failure] = []
        self._history_ids = itertools.count(3_373_536_600)
        self._list_ids = itertools.count(101)
        self._app_gets: deque[float] = deque()  # unauthenticated GETs of this client id
        self.users: dict[str, TraktUser] = {}
        self._runner: web.AppRunner | None = None
        # The default user's history *is* ``self.history`` (the single-user API).
        self.users[self.default_user] = TraktUser(
            self.default_user, self._now(), self.watchlist_limit, history=self.history
        )

    def __repr__(self) -> str:
        return (
            f"FakeTrakt(url={self.url!r}, users={sorted(self.users)}, "
            f"history={len(self.history)}, scrobbles={len(self.scrobbles)}, "
            f"requests={len(self.requests)}, rate_limited={self.rate_limited})"
        )

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> str:
        """Serve on ``host`` at a random port; returns (and sets) :attr:`url`."""
        app = web.Application(middlewares=[self._middleware])
        router = app.router
        router.add_post("/oauth/device/code", self._device_code)
        router.add_post("/oauth/device/token", self._device_token)
        router.add_post("/oauth/token", self._token)
        router.add_post("/oauth/revoke", self._revoke)
        router.add_get("/sync/last_activities", self._last_activities)
        router.add_post("/sync/history", self._add_history)
        router.add_post("/sync/history/remove", self._remove_history)
        router.add_get("/sync/history", self._get_history)
        router.add_get("/sync/history/{type}", self._get_history)
        router.add_get("/sync/history/{type}/{id}", self._get_history)
        router.add_post("/sync/ratings", self._add_ratings)
        router.add_post("/sync/ratings/remove", self._remove_ratings)
        router.add_get("/sync/ratings", self._get_ratings)
        router.add_get("/sync/ratings/{type}", self._get_ratings)
        router.add_get("/sync/ratings/{type}/{rating}", self._get_ratings)
        router.add_post("/sync/watchlist", self._add_watchlist)
        router.add_post("/sync/watchlist/remove", self._remove_watchlist)
        router.add_get("/sync/watchlist", self._get_watchlist)
        router.add_get("/sync/watchlist/{type}", self._get_watchlist)
        router.add_get("/sync/watchlist/{type}/{sort_by}", self._get_watchlist)
        router.add_get("/sync/watchlist/{type}/{sort_by}/{sort_how}", self._get_watchlist)
        router.add_get("/users/settings", self._settings)
        router.add_get("/shows/{id}/seasons", self._seasons)
        router.add_post("/scrobble/{action}", self._scrobble)
        router.add_get("/search/{id_type}/{id}", self._search_id)
        router.add_get("/search/{type}", self._search_text)
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

    # --- users ----------------------------------------------------------------------------
    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def user(self, name: str | None = None) -> TraktUser:
        """The user *name* (created on first use; None → the default user)."""
        name = self.default_user if name is None else name
        found = self.users.get(name)
        if found is None:
            found = TraktUser(name, self._now(), self.watchlist_limit)
            self.users[name] = found
        return found

    @property
    def ratings(self) -> dict[Key, dict[str, Any]]:
        """The default user's ratings (see :attr:`TraktUser.ratings`)."""
        return self.user().ratings

    @property
    def watchlist(self) -> list[dict[str, Any]]:
        """The default user's watchlist (see :attr:`TraktUser.watchlist`)."""
        return self.user().watchlist

    @property
    def last_activities(self) -> dict[str, Any]:
        """The default user's ``GET /sync/last_activities`` reply."""
        return self.user().activities

    # --- knobs ----------------------------------------------------------------------------
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
        method: str | None = None,
    ) -> None:
        """Answer the next *count* requests (whose path starts with *path* and whose method is
        *method*, if given) with *status*, *headers* and *body* (dict/list → JSON, str →
        text/html, None → a JSON error).
        """
        self._failures.append(_Failure(status, count, dict(headers or {}), body, path, method))

    def issue_token(
        self, expires_in: int | None = None, *, user: str | None = None
    ) -> dict[str, Any]:
        """Mint a valid token pair of *user* (default user if None) without the device flow;
        returns the token response."""
        owner = self.user(user).name
        ttl = self.access_token_ttl_s if expires_in is None else expires_in
        created_at = int(self.clock())
        access, refresh = secrets.token_hex(32), secrets.token_hex(32)
        self._access[access] = (created_at + ttl, owner)
        self._refresh[refresh] = owner
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
            "scope": "public",
            "created_at": created_at,
        }

    def expire_access_tokens(self, user: str | None = None) -> None:
        """Every access token issued so far (of *user* only, if given) stops working; refresh
        tokens still do."""
        for token, (_, owner) in list(self._access.items()):
            if user is None or owner == user:
                del self._access[token]

    def revoke_all(self, user: str | None = None) -> None:
        """Every access and refresh token (of *user* only, if given) stops working: the user
        revoked the app."""
        self.expire_access_tokens(user)
        for token, owner in list(self._refresh.items()):
            if user is None or owner == user:
                del self._refresh[token]

    def approve_device(self, user_code: str, user: str | None = None) -> None:
        """*user* (default user if None) entered *user_code* and approved the app."""
        device = self.devices[user_code]
        device.state = "approved"
        device.user = self.user(user).name

    def deny_device(self, user_code: str) -> None:
        """The user entered *user_code* and denied the app."""
        self.devices[user_code].state = "denied"

    def rate(
        self, key: Key, rating: int, *, rated_at: datetime | None = None, user: str | None = None
    ) -> None:
        """Rate *key* (``("movie", trakt)``…) *rating* for *user*, as the user would on the
        site (``*.rated_at`` moves)."""
        owner = self.user(user)
        kind, media = self._media(key)
        now = self._now()
        owner.ratings[key] = {
            "rated_at": _fmt(rated_at or now),
            "rating": rating,
            "type": kind,
            **media,
        }
        owner.touch(now, (f"{kind}s", "rated_at"))

    def watchlist_add(self, kind: str, ids: dict[str, Any], *, user: str | None = None) -> None:
        """*user* puts a catalogue movie or show (*kind*) with any of *ids* on their watchlist
        on trakt.tv (activities move as for ``POST /sync/watchlist``)."""
        media = self.catalog.movie(ids) if kind == "movie" else self.catalog.show(ids)
        assert media is not None, ids
        owner = self.user(user)
        key: Key = (kind, media["ids"]["trakt"])
        if key in owner.watchlist_keys():
            return
        now = self._now()
        owner.watchlist.append(
            {
                "rank": len(owner.watchlist) + 1,
                "id": next(self._list_ids),
                "listed_at": _fmt(now),
                "notes": None,
                "type": kind,
                **self._media(key)[1],
                "_key": key,
            }
        )
        owner.touch(now, ("watchlist", "updated_at"), (f"{kind}s", "watchlisted_at"))

    def watchlist_remove(self, kind: str, ids: dict[str, Any], *, user: str | None = None) -> None:
        """*user* takes a movie or show off their watchlist on trakt.tv."""
        media = self.catalog.movie(ids) if kind == "movie" else self.catalog.show(ids)
        assert media is not None, ids
        self._drop_from_watchlist(self.user(user), {(kind, media["ids"]["trakt"])}, self._now())

    def watchlist_imdb(self, *, user: str | None = None) -> set[str]:
        """The imdb ids of the movies and shows on *user*'s watchlist."""
        return {
            str(item[item["type"]]["ids"]["imdb"])
            for item in self.user(user).watchlist
            if item["type"] in ("movie", "show")
        }

    def plays(self, kind: str | None = None, *, user: str | None = None) -> list[dict[str, Any]]:
        """History items of *user* (default user if None; ``kind`` ``"movie"``/``"episode"``
        to filter), oldest first."""
        return self.user(user).plays(kind)

    def add_play(
        self, entry: dict[str, Any], watched_at: datetime, *, user: str | None = None
    ) -> int:
        """Record a play of catalogue *entry* (a movie or an episode dict) at *watched_at*
        for *user*, as another app would have (activities move); returns its history id."""
        kind = "episode" if "show" in entry else "movie"
        return self._record(self.user(user), "watch", watched_at, entry, kind)

    def token_user(self, access_token: str) -> str | None:
        """Whose *access_token* is (None when unknown or expired)."""
        entry = self._access.get(access_token)
        return None if entry is None else entry[1]

    # --- middleware: logging, failures, headers, OAuth, rate limits ------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        if self.down:
            return web.Response(status=503, text="<html>503 Service Unavailable</html>")
        if self.delay_s:
            await request.read()  # the body has arrived; only the answer is slow
            await asyncio.sleep(self.delay_s)
        failure = self._take_failure(request.path, request.method)
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
        user: TraktUser | None = None
        auth = request.headers.get("Authorization")
        needs_auth = request.path.startswith(("/sync/", "/scrobble/", "/users/settings"))
        if auth is not None or needs_auth:
            token = auth[7:] if auth and auth.startswith("Bearer ") else ""
            entry = self._access.get(token)
            if entry is None or entry[0] <= self.clock():
                self.unauthorized += 1
                return _error(401, "invalid_token", error_description="OAuth must be provided")
            user = self.user(entry[1])
        if user is not None:
            request[_USER] = user
            if user.name in self.down_users:
                return web.Response(status=503, text="<html>503 Service Unavailable</html>")
        limited = self._rate_limit(request.method, user)
        if limited is not None:
            return limited
        return await handler(request)

    def _take_failure(self, path: str, method: str = "GET") -> web.Response | None:
        for failure in self._failures:
            if failure.method is not None and failure.method != method:
                continue
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

    def _rate_limit(self, method: str, user: TraktUser | None) -> web.Response | None:
        """ "Rate Limiting": POSTs 1/s per user token; GETs 1000/300 s per user token, or per
        client id (``UNAUTHED_API_GET_LIMIT``) without one."""
        now = self.monotonic()
        if method in {"POST", "PUT", "DELETE"}:
            if user is None:  # unauthed POSTs (OAuth endpoints) have no per-user limit
                return None
            last = user.last_post
            if last is not None and now - last < _POST_PERIOD_S - self.post_tolerance_s:
                wait = _POST_PERIOD_S - (now - last)
                return self._too_many("AUTHED_API_POST_LIMIT", _POST_PERIOD_S, 1, wait, user)
            user.last_post = now
            return None
        window = user.gets if user is not None else self._app_gets
        period = self.get_period_s
        while window and now - window[0] >= period:
            window.popleft()
        if len(window) >= self.get_limit:
            name = "AUTHED_API_GET_LIMIT" if user else "UNAUTHED_API_GET_LIMIT"
            return self._too_many(name, period, self.get_limit, period - (now - window[0]), user)
        window.append(now)
        return None

    def _too_many(
        self, name: str, period: float, limit: int, wait_s: float, user: TraktUser | None
    ) -> web.Response:
        until = datetime.now(UTC) + timedelta(seconds=wait_s)
        info = {
            "name": name,
            "period": int(period),
            "limit": limit,
            "remaining": 0,
            "until": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self.rate_limited += 1
        self.rate_limit_log.append({**info, "user": user.name if user else None})
        if user is not None:
            user.rate_limited += 1
            user.rate_limit_log.append(info)
        headers = {"Retry-After": str(max(1, math.ceil(wait_s))), "X-Ratelimit": json.dumps(info)}
        return web.json_response({"error": "rate_limited"}, status=429, headers=headers)

    @staticmethod
    def _user_of(request: web.Request) -> TraktUser:
        return request[_USER]  # OAuth-only routes: the middleware set it

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
        return web.json_response(self.issue_token(user=device.user))

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
        owner = self._refresh.pop(str(refresh), None)
        if owner is None:
            self.invalid_grants += 1
            return _error(
                401,
                "invalid_grant",
                error_description="The provided authorization grant is invalid, expired, revoked",
            )
        return web.json_response(self.issue_token(user=owner))

    async def _revoke(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if isinstance(body, dict):
            self._access.pop(str(body.get("token")), None)
        return web.json_response({})

    # --- catalogue helpers ----------------------------------------------------------------
    def _show_by_trakt(self, trakt: int) -> dict[str, Any]:
        show = self.catalog.show({"trakt": trakt})
        assert show is not None
        return show

    def _media(self, key: Key) -> tuple[str, dict[str, Any]]:
        """The ``type`` and the standard media object(s) of *key*, as sync replies carry them."""
        kind = key[0]
        if kind == "movie":
            movie = self.catalog.movie({"trakt": key[1]})
            assert movie is not None
            return "movie", {"movie": _movie_obj(movie)}
        if kind == "show":
            return "show", {"show": _show_obj(self._show_by_trakt(key[1]))}
        if kind == "season":
            show = self._show_by_trakt(key[1])
            season = {"number": key[2], "ids": self.catalog.season_ids(show, key[2])}
            return "season", {"season": season, "show": _show_obj(show)}
        episode = self.catalog.episode({"trakt": key[1]})
        assert episode is not None
        return "episode", {"episode": _episode_obj(episode), "show": _show_obj(episode["show"])}

    def _targets(self, body: dict[str, Any]) -> _Targets:
        """The catalogue items a sync body (ratings, watchlist, history removal) names.

        "Sync": ``movies[]``, ``shows[]`` (the show itself; with ``seasons[{number}]`` those
        seasons; with ``seasons[{number, episodes[{number}]}]`` those episodes), ``seasons[]``
        and ``episodes[]`` by ids. Unknown items are echoed as sent under ``not_found``; a
        show's unknown seasons/episodes under ``not_found.shows`` with only those.
        """
        out = _Targets()
        for obj in _objects(body, "movies"):
            movie = self.catalog.movie(obj.get("ids") or {})
            if movie is None:
                out.not_found["movies"].append(obj)
            else:
                out.found.append((("movie", movie["ids"]["trakt"]), obj))
        for obj in _objects(body, "shows"):
            show = self.catalog.show(obj.get("ids") or {})
            if show is None:
                out.not_found["shows"].append(obj)
                continue
            show_trakt = show["ids"]["trakt"]
            seasons = obj.get("seasons")
            if not seasons:
                out.found.append((("show", show_trakt), obj))
                continue
            if not isinstance(seasons, list) or not all(isinstance(s, dict) for s in seasons):
                raise ValueError("seasons must be an array of objects")
            missing: list[dict[str, Any]] = []
            known = self.catalog.seasons_of(show)
            for season in seasons:
                number = season.get("number")
                if not isinstance(number, int) or isinstance(number, bool):
                    raise ValueError("season number must be an integer")
                episodes = season.get("episodes")
                if not episodes:
                    if number in known:
                        out.found.append((("season", show_trakt, number), season))
                    else:
                        missing.append(season)
                    continue
                lost = []
                for ep in episodes:
                    found = None
                    if isinstance(ep, dict) and isinstance(ep.get("number"), int):
                        found = self.catalog.episode_of(show, number, ep["number"])
                    if found is None:
                        lost.append(ep)
                    else:
                        out.found.append((("episode", found["ids"]["trakt"]), ep))
                if lost:
                    missing.append({"number": number, "episodes": lost})
            if missing:
                out.not_found["shows"].append({"ids": obj.get("ids"), "seasons": missing})
        for obj in _objects(body, "seasons"):
            season_of = self.catalog.season(obj.get("ids") or {})
            if season_of is None:
                out.not_found["seasons"].append(obj)
            else:
                show, number = season_of
                out.found.append((("season", show["ids"]["trakt"], number), obj))
        for obj in _objects(body, "episodes"):
            episode = self.catalog.episode(obj.get("ids") or {})
            if episode is None:
                out.not_found["episodes"].append(obj)
            else:
                out.found.append((("episode", episode["ids"]["trakt"]), obj))
        return out

    # --- sync/last_activities -------------------------------------------------------------
    async def _last_activities(self, request: web.Request) -> web.Response:
        """ "Sync / Last Activities": the documented shape, this user's timestamps."""
        return web.json_response(self._user_of(request).activities)

    # --- sync/history ---------------------------------------------------------------------
    def _record(
        self, user: TraktUser, action: str, when: datetime, entry: dict[str, Any], kind: str
    ) -> int:
        history_id = next(self._history_ids)
        item: dict[str, Any] = {"id": history_id, "watched_at": _fmt(when), "action": action}
        if kind == "movie":
            item.update(type="movie", movie=_movie_obj(entry))
        else:
            item.update(type="episode", episode=_episode_obj(entry), show=_show_obj(entry["show"]))
        user.history.append(item)
        user.history_version += 1
        now = self._now()
        user.touch(now, ("movies" if kind == "movie" else "episodes", "watched_at"))
        self._auto_remove(user, kind, entry, now)
        return history_id

    def _auto_remove(
        self, user: TraktUser, kind: str, entry: dict[str, Any], now: datetime
    ) -> None:
        """ "Get Watchlist / Auto Removal": a watched movie leaves the watchlist; a watched
        episode takes itself, its season and its show off it."""
        if kind == "movie":
            gone: set[Key] = {("movie", entry["ids"]["trakt"])}
        else:
            show_trakt = entry["show"]["ids"]["trakt"]
            gone = {
                ("episode", entry["ids"]["trakt"]),
                ("season", show_trakt, entry["season"]),
                ("show", show_trakt),
            }
        self._drop_from_watchlist(user, gone, now)

    def _drop_from_watchlist(self, user: TraktUser, keys: set[Key], now: datetime) -> list[Key]:
        removed = [item["_key"] for item in user.watchlist if item["_key"] in keys]
        if not removed:
            return []
        user.watchlist[:] = [item for item in user.watchlist if item["_key"] not in keys]
        for rank, item in enumerate(user.watchlist, start=1):
            item["rank"] = rank
        groups = {f"{key[0]}s" for key in removed}
        user.touch(now, ("watchlist", "updated_at"), *((g, "watchlisted_at") for g in groups))
        return removed

    @staticmethod
    def _watched_at(obj: dict[str, Any], default: datetime) -> datetime:
        raw = obj.get("watched_at")
        if raw is None or raw == "released":
            return default
        return _parse(str(raw))

    async def _add_history(self, request: web.Request) -> web.Response:
        user = self._user_of(request)
        body = await self._json(request)
        if not isinstance(body, dict):
            return _error(400, "invalid_request")
        now = self._now()
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
            for obj in body.get("seasons") or []:
                season_of = self.catalog.season(obj.get("ids") or {})
                if season_of is None:
                    not_found["seasons"].append({"ids": obj.get("ids")})
                    continue
                when = self._watched_at(obj, now)
                plays += [(when, e, "episode") for e in self.catalog.episodes_of(*season_of)]
        except (ValueError, TypeError, AttributeError):
            return _unprocessable("bad watched_at or item")
        for when, entry, kind in plays:
            self._record(user, "watch", when, entry, kind)
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
        episodes = self.catalog.episodes_of(show)
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

    async def _remove_history(self, request: web.Request) -> web.Response:
        """ "Sync / Remove from History": items (a show = all its episodes, a season = its
        episodes) or raw history ``ids``; 200 ``{deleted: {movies, episodes}, not_found}``."""
        user = self._user_of(request)
        body = await self._json(request)
        if not isinstance(body, dict):
            return _error(400, "invalid_request")
        try:
            targets = self._targets(body)
            raw_ids = body.get("ids") or []
            if not isinstance(raw_ids, list):
                raise ValueError("ids must be an array")
        except (ValueError, TypeError, AttributeError):
            return _unprocessable("bad item")
        keys = {key for key, _ in targets.found}
        wanted_ids = {i for i in raw_ids if isinstance(i, int)}
        not_found = {**targets.not_found, "ids": [i for i in raw_ids if i not in wanted_ids]}
        known_ids = {h["id"] for h in user.history}
        not_found["ids"] += sorted(wanted_ids - known_ids)
        keep, deleted = [], {"movies": 0, "episodes": 0}
        for item in user.history:
            if item["id"] in wanted_ids or self._history_hit(item, keys):
                deleted["movies" if item["type"] == "movie" else "episodes"] += 1
            else:
                keep.append(item)
        user.history[:] = keep
        user.history_version += 1
        now = self._now()
        if deleted["movies"]:
            user.touch(now, ("movies", "watched_at"))
        if deleted["episodes"]:
            user.touch(now, ("episodes", "watched_at"))
        return web.json_response({"deleted": deleted, "not_found": not_found})

    @staticmethod
    def _history_hit(item: dict[str, Any], keys: set[Key]) -> bool:
        if item["type"] == "movie":
            return ("movie", item["movie"]["ids"]["trakt"]) in keys
        show_trakt = item["show"]["ids"]["trakt"]
        return bool(
            {
                ("episode", item["episode"]["ids"]["trakt"]),
                ("season", show_trakt, item["episode"]["season"]),
                ("show", show_trakt),
            }
            & keys
        )

    async def _get_history(self, request: web.Request) -> web.Response:
        """ "Sync / Get History": this user's plays, newest first, ``start_at``/``end_at``
        inclusive, "Pagination" (10 per page by default; ``history_max_limit`` caps)."""
        user = self._user_of(request)
        kind = request.match_info.get("type")
        item_id = request.match_info.get("id")
        if kind is not None and kind not in _HISTORY_TYPES:
            return _error(404, "not_found")
        try:
            start = _parse(request.query["start_at"]) if "start_at" in request.query else None
            end = _parse(request.query["end_at"]) if "end_at" in request.query else None
            page, limit = self._page_args(request, 10, self.history_max_limit)
        except ValueError:
            return _error(400, "bad_request")
        query = (user.history_version, kind, item_id, start, end)
        if user.last_listing is None or user.last_listing[0] != query:
            # Paging through one listing asks the same query again and again: keep the last.
            listing = [
                h
                for when, h in user.sorted_history()
                if (start is None or when >= start)
                and (end is None or when <= end)
                and self._history_match(h, kind, item_id)
            ]
            user.last_listing = (query, listing)
        return self._paginated(user.last_listing[1], page, limit)

    def _history_match(self, item: dict[str, Any], kind: str | None, item_id: str | None) -> bool:
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
        if item_id is None:
            return True
        season_of = self.catalog.season({"trakt": item_id})
        return season_of is not None and (
            item["show"]["ids"]["trakt"] == season_of[0]["ids"]["trakt"]
            and item["episode"]["season"] == season_of[1]
        )

    @staticmethod
    def _page_args(
        request: web.Request, default_limit: int, max_limit: int | None
    ) -> tuple[int, int]:
        """``page`` and ``limit`` ("Pagination"); a *limit* above *max_limit* is clamped to it
        (and ``X-Pagination-Limit`` says so)."""
        page = max(1, int(request.query.get("page", "1")))
        limit = max(1, int(request.query.get("limit", str(default_limit))))
        if max_limit is not None:
            limit = min(limit, max_limit)
        return page, limit

    @staticmethod
    def _paginated(
        items: list[dict[str, Any]],
        page: int,
        limit: int,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        pages = max(1, math.ceil(len(items) / limit))
        chunk = items[(page - 1) * limit : page * limit]
        out = {
            **(headers or {}),
            "X-Pagination-Page": str(page),
            "X-Pagination-Limit": str(limit),
            "X-Pagination-Page-Count": str(pages),
            "X-Pagination-Item-Count": str(len(items)),
        }
        return web.json_response(chunk, headers=out)

    # --- sync/ratings ---------------------------------------------------------------------
    async def _add_ratings(self, request: web.Request) -> web.Response:
        """ "Sync / Add Ratings": each rated object carries an integer ``rating`` 1–10 and an
        optional ``rated_at``; a show with ``seasons`` rates those seasons (or their listed
        episodes), not the show. A bad ``rating``/``rated_at`` is a 422 ("Status Codes":
        validation errors) and nothing is rated; unknown items go to ``not_found``."""
        user = self._user_of(request)
        body = await self._json(request)
        if not isinstance(body, dict):
            return _error(400, "invalid_request")
        now = self._now()
        try:
            targets = self._targets(body)
            rated = []
            for key, obj in targets.found:
                rating = obj.get("rating")
                if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 10:
                    raise ValueError(f"rating must be an integer 1-10, got {rating!r}")
                raw = obj.get("rated_at")
                rated.append((key, rating, now if raw is None else _parse(str(raw))))
        except (ValueError, TypeError, AttributeError) as exc:
            return _unprocessable(str(exc))
        added = _counts()
        for key, rating, rated_at in rated:
            kind, media = self._media(key)
            user.ratings[key] = {
                "rated_at": _fmt(rated_at),
                "rating": rating,
                "type": kind,
                **media,
            }
            added[f"{kind}s"] += 1
        user.touch(now, *((k, "rated_at") for k in _KINDS if added[k]))
        return web.json_response({"added": added, "not_found": targets.not_found}, status=201)

    async def _remove_ratings(self, request: web.Request) -> web.Response:
        """ "Sync / Remove Ratings": 200 ``{deleted, not_found}``."""
        user = self._user_of(request)
        body = await self._json(request)
        if not isinstance(body, dict):
            return _error(400, "invalid_request")
        try:
            targets = self._targets(body)
        except (ValueError, TypeError, AttributeError) as exc:
            return _unprocessable(str(exc))
        deleted = _counts()
        for key, _ in targets.found:
            if user.ratings.pop(key, None) is not None:
                deleted[f"{key[0]}s"] += 1
        user.touch(self._now(), *((k, "rated_at") for k in _KINDS if deleted[k]))
        return web.json_response({"deleted": deleted, "not_found": targets.not_found})

    async def _get_ratings(self, request: web.Request) -> web.Response:
        """ "Sync / Get Ratings": ``{type}`` movies|shows|seasons|episodes|all, ``{rating}`` one
        or comma-separated values 1–10; newest first; "Pagination Optional" (everything unless
        ``page``/``limit`` is sent)."""
        user = self._user_of(request)
        kind = request.match_info.get("type", "all")
        if kind != "all" and kind not in _TYPE_OF:
            return _error(404, "not_found")
        wanted: set[int] | None = None
        raw = request.match_info.get("rating")
        try:
            if raw is not None:
                wanted = {int(v) for v in raw.split(",") if v.strip()}
                if not wanted or not wanted <= set(range(1, 11)):
                    raise ValueError(raw)
            items = [
                dict(item)
                for item in user.ratings.values()
                if (kind == "all" or item["type"] == _TYPE_OF[kind])
                and (wanted is None or item["rating"] in wanted)
            ]
            items.sort(key=lambda i: i["rated_at"], reverse=True)
            if "page" in request.query or "limit" in request.query:
                page, limit = self._page_args(request, 10, None)
                return self._paginated(items, page, limit)
        except ValueError:
            return _error(400, "bad_request")
        return web.json_response(items)

    # --- sync/watchlist -------------------------------------------------------------------
    def _public_watchlist_item(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if not k.startswith("_")}

    def _list_info(self, user: TraktUser) -> dict[str, Any]:
        return {
            "updated_at": user.activities["watchlist"]["updated_at"],
            "item_count": len(user.watchlist),
        }

    async def _add_watchlist(self, request: web.Request) -> web.Response:
        """ "Sync / Add to Watchlist": 201 ``{added, existing, not_found, list}``; past the
        user's limit 420 with the "VIP Methods" headers (nothing added)."""
        user = self._user_of(request)
        body = await self._json(request)
        if not isinstance(body, dict):
            return _error(400, "invalid_request")
        try:
            targets = self._targets(body)
        except (ValueError, TypeError, AttributeError) as exc:
            return _unprocessable(str(exc))
        present = set(user.watchlist_keys())
        added, existing = _counts(), _counts()
        new: list[tuple[Key, dict[str, Any]]] = []
        for key, obj in targets.found:
            group = f"{key[0]}s"
            if key in present:
                existing[group] += 1
                continue
            present.add(key)
            new.append((key, obj))
            added[group] += 1
        if new and len(user.watchlist) + len(new) > user.watchlist_limit:
            return web.Response(
                status=420,
                content_type="application/json",
                headers={
                    "X-Upgrade-URL": "https://trakt.tv/vip",
                    "X-VIP-User": "true" if user.vip else "false",
                    "X-Account-Limit": str(user.watchlist_limit),
                },
            )
        now = self._now()
        for key, obj in new:
            kind, media = self._media(key)
            notes = obj.get("notes") if user.vip else None  # notes are for VIPs only
            user.watchlist.append(
                {
                    "rank": len(user.watchlist) + 1,
                    "id": next(self._list_ids),
                    "listed_at": _fmt(now),
                    "notes": notes,
                    "type": kind,
                    **media,
                    "_key": key,
                }
            )
        if new:
            user.touch(
                now,
                ("watchlist", "updated_at"),
                *((k, "watchlisted_at") for k in _KINDS if added[k]),
            )
        return web.json_response(
            {
                "added": added,
                "existing": existing,
                "not_found": targets.not_found,
                "list": self._list_info(user),
            },
            status=201,
        )

    async def _remove_watchlist(self, request: web.Request) -> web.Response:
        """ "Sync / Remove from Watchlist": 200 ``{deleted, not_found, list}``."""
        user = self._user_of(request)
        body = await self._json(request)
        if not isinstance(body, dict):
            return _error(400, "invalid_request")
        try:
            targets = self._targets(body)
        except (ValueError, TypeError, AttributeError) as exc:
            return _unprocessable(str(exc))
        removed = self._drop_from_watchlist(user, {k for k, _ in targets.found}, self._now())
        deleted = _counts()
        for key in removed:
            deleted[f"{key[0]}s"] += 1
        return web.json_response(
            {"deleted": deleted, "not_found": targets.not_found, "list": self._list_info(user)}
        )

    async def _get_watchlist(self, request: web.Request) -> web.Response:
        """ "Sync / Get Watchlist" ``/{type}/{sort_by}/{sort_how}``: rank order by default
        (``X-Sort-By``/``X-Sort-How``), ``X-Applied-Sort-*`` when a sort is asked for;
        paginated by default since 2026-04-15 (``list_page_limit``, at most
        ``list_max_limit``; discover-watchlist.md §7)."""
        user = self._user_of(request)
        kind = request.match_info.get("type", "all")
        sort_by = request.match_info.get("sort_by")
        sort_how = request.match_info.get("sort_how", "asc")
        if kind != "all" and kind not in _TYPE_OF:
            return _error(404, "not_found")
        if (sort_by is not None and sort_by not in _WATCHLIST_SORTS) or sort_how not in {
            "asc",
            "desc",
        }:
            return _error(404, "not_found")
        try:
            page, limit = self._page_args(request, self.list_page_limit, self.list_max_limit)
        except ValueError:
            return _error(400, "bad_request")
        items = [
            self._public_watchlist_item(i)
            for i in user.watchlist
            if kind == "all" or i["type"] == _TYPE_OF[kind]
        ]
        headers = {"X-Sort-By": "rank", "X-Sort-How": "asc", "X-List-ID": "1"}
        if sort_by is not None:
            items.sort(key=self._sort_key(sort_by), reverse=sort_how == "desc")
            headers.update({"X-Applied-Sort-By": sort_by, "X-Applied-Sort-How": sort_how})
        return self._paginated(items, page, limit, headers)

    @staticmethod
    def _sort_key(sort_by: str) -> Callable[[dict[str, Any]], Any]:
        def media(item: dict[str, Any]) -> dict[str, Any]:
            inner: dict[str, Any] = item.get(item["type"]) or {}
            return inner if item["type"] != "season" else item["show"]

        if sort_by == "added":
            return lambda i: (i["listed_at"], i["rank"])
        if sort_by == "title":
            return lambda i: (str(media(i).get("title") or ""), i["rank"])
        if sort_by == "released":
            return lambda i: (int(media(i).get("year") or 0), i["rank"])
        return lambda i: i["rank"]  # VIP-only and unmodelled sorts fall back to rank

    # --- users/settings -------------------------------------------------------------------
    async def _settings(self, request: web.Request) -> web.Response:
        """ "Users / Settings": the account and its ``limits`` (watchlist item count)."""
        user = self._user_of(request)
        limit = {"item_count": user.watchlist_limit}
        return web.json_response(
            {
                "user": {
                    "username": user.name,
                    "private": False,
                    "name": user.name.title(),
                    "vip": user.vip,
                    "vip_ep": False,
                    "ids": {
                        "slug": user.name,
                        "uuid": hashlib.sha1(user.name.encode()).hexdigest(),
                    },
                },
                "account": {"timezone": "UTC", "date_format": "ymd", "time_24hr": True},
                "limits": {
                    "list": {"count": 2, "item_count": 100},
                    "watchlist": limit,
                    "favorites": {"item_count": 100},
                    "search": {"recent_count": 5},
                    "collection": {"item_count": 100},
                    "notes": {"item_count": 100},
                },
                "permissions": {"commenting": True, "liking": True, "following": True},
            }
        )

    # --- shows/{id}/seasons ---------------------------------------------------------------
    def _show_by_path_id(self, raw: str) -> dict[str, Any] | None:
        """ "Seasons / Summary": the id is a Trakt ID, Trakt slug, or IMDB ID."""
        if raw.isdigit():
            return self.catalog.show({"trakt": int(raw)})
        if raw.startswith("tt"):
            return self.catalog.show({"imdb": raw})
        return self.catalog.show({"slug": raw})

    async def _seasons(self, request: web.Request) -> web.Response:
        """ "Seasons / Summary" ``GET /shows/{id}/seasons``: ``extended=episodes`` adds each
        season's episodes as minimal objects (season, number, title, ids); with ``full`` too
        the episodes are full objects, which is where ``number_abs`` lives ("Episodes /
        Summary", ``?extended=full``) — anime clients map absolute numbers with it."""
        show = self._show_by_path_id(request.match_info["id"])
        if show is None:
            return web.json_response({}, status=404)
        extended = {p.strip() for p in request.query.get("extended", "").split(",") if p.strip()}
        full = "full" in extended
        out = []
        for number in self.catalog.seasons_of(show):
            episodes = self.catalog.episodes_of(show, number)
            season: dict[str, Any] = {
                "number": number,
                "ids": self.catalog.season_ids(show, number),
            }
            if full:
                season.update(
                    title="Specials" if number == 0 else f"Season {number}",
                    episode_count=len(episodes),
                    aired_episodes=len(episodes),
                    overview=None,
                    first_aired=None,
                    rating=0,
                    votes=0,
                    network=None,
                )
            if "episodes" in extended:
                season["episodes"] = [
                    self._episode_full(e) if full else _episode_obj(e) for e in episodes
                ]
            out.append(season)
        return web.json_response(out)

    @staticmethod
    def _episode_full(episode: dict[str, Any]) -> dict[str, Any]:
        return {
            **_episode_obj(episode),
            "number_abs": episode.get("number_abs"),
            "overview": None,
            "first_aired": None,
            "updated_at": None,
            "rating": 0,
            "votes": 0,
            "comment_count": 0,
            "available_translations": [],
            "runtime": None,
            "episode_type": "standard",
        }

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
        if "season" not in episode and "number_abs" in episode:  # absolute numbering (anime)
            return self.catalog.episode_abs(show, int(episode["number_abs"])), "episode"
        return self.catalog.episode_of(
            show, int(episode["season"]), int(episode["number"])
        ), "episode"

    async def _scrobble(self, request: web.Request) -> web.Response:
        user = self._user_of(request)
        verb = request.match_info["action"]
        if verb not in {"start", "pause", "stop"}:
            return _error(404, "not_found")
        body = await self._json(request)
        record: dict[str, Any] = {
            "path": request.path,
            "status": 0,
            "action": None,
            "body": body,
            "user": user.name,
        }
        self.scrobbles.append(record)
        user.scrobbles.append(record)
        try:
            if not isinstance(body, dict):
                raise ValueError("body")
            progress = float(body["progress"])
            if not 0 <= progress <= 100:
                raise ValueError("progress")
            entry, kind = self._scrobble_item(body)
        except (KeyError, ValueError, TypeError):
            record["status"] = 422
            return _unprocessable("item and progress required")
        record["progress"] = progress
        if entry is None:
            record["status"] = 404
            return web.json_response({}, status=404)
        action = verb
        if verb == "stop":
            action = "scrobble" if progress >= 80 else "pause"
        now = self._now()
        response: dict[str, Any] = {"id": 0, "action": action, "progress": progress}
        response["sharing"] = {"twitter": False, "mastodon": False, "tumblr": False}
        if kind == "movie":
            response["movie"] = _movie_obj(entry)
        else:
            response.update(episode=_episode_obj(entry), show=_show_obj(entry["show"]))
        if action == "scrobble":
            recent = self._recent_scrobble(user, kind, entry, now)
            if recent is not None:
                record["status"] = 409
                expires = recent + timedelta(seconds=self.scrobble_window_s)
                return web.json_response(
                    {"watched_at": _fmt(recent), "expires_at": _fmt(expires)}, status=409
                )
            response["id"] = self._record(user, "scrobble", now, entry, kind)
        elif action == "pause":
            response["id"] = next(self._history_ids)
            user.touch(now, ("movies" if kind == "movie" else "episodes", "paused_at"))
        record.update(status=201, action=action)
        return web.json_response(response, status=201)

    def _recent_scrobble(
        self, user: TraktUser, kind: str, entry: dict[str, Any], now: datetime
    ) -> datetime | None:
        trakt_id = entry["ids"]["trakt"]
        for item in reversed(user.history):
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
            page, limit = self._page_args(request, 10, None)
        except ValueError:
            return _error(400, "bad_request")
        return self._paginated(hits, page, limit)

    def _pools(self) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        yield "movie", self.catalog.movies
        yield "show", self.catalog.shows
        yield "episode", self.catalog.episodes

    async def _search_id(self, request: web.Request) -> web.Response:
        id_type, wanted = request.match_info["id_type"], request.match_info["id"]
        if id_type not in {"trakt", "imdb", "tmdb", "tvdb"}:
            return _error(404, "not_found")
        types = self._types(request, "movie,show,episode")
        hits: list[dict[str, Any]] = []
        for kind, pool in self._pools():
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
        query = request.query.get("query", "")
        wanted = _words(query)
        if not wanted:
            return _error(400, "bad_request")
        years = request.query.get("years")
        scored: list[tuple[float, dict[str, Any]]] = []
        for kind, pool in (("movie", self.catalog.movies), ("show", self.catalog.shows)):
            if kind not in types:
                continue
            for entry in pool:
                # Like the real search, near titles are hits too (every word of the query in
                # the title: "Dune" finds "Dune: Part Two"); an exact title scores highest.
                words = _words(entry["title"])
                if not set(wanted) <= set(words):
                    continue
                if years and not self._year_ok(entry["year"], years):
                    continue
                score = 1000.0 if words == wanted else 1000.0 * len(wanted) / len(words)
                scored.append((score, self._hit(kind, entry, score)))
        scored.sort(key=lambda pair: -pair[0])
        return self._page_query(request, [hit for _, hit in scored])

    @staticmethod
    def _year_ok(year: int, years: str) -> bool:
        try:
            if "-" in years:
                low, high = years.split("-", 1)
                return int(low) <= year <= int(high)
            return year == int(years)
        except ValueError:
            return False
