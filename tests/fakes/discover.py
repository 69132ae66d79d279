"""A fake Plex Discover (the account watchlist) and plex.tv PIN sign-in, on 127.0.0.1.

Follows ``shared/reference/plex/discover-watchlist.md`` (sections §1–§6 named below). Plex
publishes no documentation for these services; what that file marks **unconfirmed** is a choice
here, listed at the end.

One app serves every host a client talks to, so a client is configured with the same base URL
(:attr:`FakeDiscover.url`) for all three:

- ``discover_url`` (real: ``https://discover.provider.plex.tv``) — watchlist, item metadata,
  add/remove;
- ``metadata_url`` (real: ``https://metadata.provider.plex.tv``) — ``/library/metadata/matches``
  (§1: answered here on the same base; make it configurable, as the reference advises);
- ``plextv_url`` (real: ``https://plex.tv``) — ``/api/v2/pins`` and ``/api/v2/user``.

Behaviour:

- §2 Authentication: every Discover/metadata call and ``/api/v2/user`` needs an **account**
  token (``X-Plex-Token`` header or query); missing or unknown → 401. Each token is one user
  (:meth:`add_user`) with their own watchlist. JSON only with ``Accept: application/json``;
  otherwise XML. Errors: ``{"Error": {"error", "message", "statusCode"}}`` (§6) or the XML
  ``<Error …/>``.
- §3 Reading: ``GET /library/sections/watchlist/{all|available|released}``, paged by
  ``X-Plex-Container-Start``/``X-Plex-Container-Size`` (headers or query), ``size`` 20 without
  paging (``default_page_size``, the PKC sample), ``offset``/``size``/``totalSize``,
  ``librarySectionID: "watchlist"``, ``identifier: "tv.plex.provider.discover"``; ``type`` 1/2;
  ``sort`` ``watchlistedAt``/``titleSort`` ``:asc``/``:desc`` (default newest first). Rows carry
  ``ratingKey``, ``key``, ``guid``, ``type``, ``title``, ``year``, ``slug``, ``watchlistedAt`` —
  **no** ``Guid[]``: the external ids come from one ``GET /library/metadata/{ratingKey}`` per
  item (which always has ``Guid[]``). An ``ETag`` comes with every listing; ``If-None-Match``
  with the current one → 304 (Seerr).
- §4 ``PUT /actions/addToWatchlist?ratingKey=`` / ``removeFromWatchlist``: the **Discover**
  ratingKey (24 hex, the last part of the ``plex://movie|show/…`` guid); anything else → 404.
  2xx with no body.
- §5 ``GET /library/metadata/matches?type=1|2|movie|show&guid=<scheme>://<id>`` or
  ``?title=tmdb-<id>|imdb-<id>|tvdb-<id>`` (CrossWatch's form): the items carrying that id;
  without ``type`` both kinds answer (TMDB ids are per type). Rows carry no ``Guid[]``.
- plex.tv PIN sign-in, as python-plexapi's ``MyPlexPinLogin`` uses it: ``POST /api/v2/pins``
  (``strong=true`` for the OAuth form) → 201 ``{id, code, …, authToken: null}``;
  ``GET /api/v2/pins/{id}`` → the same, with ``authToken`` once :meth:`approve_pin` ran. Both
  need ``X-Plex-Client-Identifier`` (400 otherwise) and a pin is only visible to the client
  identifier that created it; an unknown or expired pin → 404. XML by default (python-plexapi
  parses the ``<pin>`` element's attributes), JSON with ``Accept: application/json``.
- ``GET /api/v2/user`` → the token's account ``{id, uuid, username, title, email}``.

Choices where the reference is unconfirmed: a duplicate add / removal of an absent item answer
``duplicate_add_status`` / ``absent_remove_status`` (200; CrossWatch also accepts 409/404);
``available``/``released`` list the same items as ``all`` (no availability model); listing rows
never carry ``Guid[]`` even with ``includeGuids``; ``put_json_headers_500`` (off) reproduces
Seerr's note that a PUT with JSON ``Accept``/``Content-Type`` got a 500.

Recorded state: ``requests`` (``(method, path, query)``), ``metadata_calls`` (Counter per
ratingKey), ``users``. Knobs: ``add_user()``, ``add_item()``, ``add_to_watchlist()``,
``remove_from_watchlist()``, ``approve_pin()``, ``fail_next()``, ``down``,
``default_page_size``, ``pin_expires_in_s``, ``before_request``, ``omit_total_size``.

Usage::

    async with FakeDiscover(catalog=default_catalog()) as plex:
        sam = plex.add_user("sam")
        plex.add_to_watchlist(plex.rating_key_for({"imdb": "tt0090728"}), user="sam")
        ...  # discover_url = metadata_url = plextv_url = plex.url
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
import string
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import quoteattr

from aiohttp import web

from tests.fakes.catalog import Catalog, default_catalog

__all__ = ["DiscoverUser", "FakeDiscover"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_FILTERS = {"all", "available", "released"}
_TYPES = {"1": "movie", "2": "show", "movie": "movie", "show": "show"}
_NO_TOKEN_PATHS = ("/api/v2/pins",)


@dataclass
class DiscoverUser:
    """One plex.tv account: its token and its watchlist (``(ratingKey, watchlistedAt)``)."""

    name: str
    token: str
    id: int
    uuid: str
    watchlist: list[tuple[str, int]] = field(default_factory=list)

    def rating_keys(self) -> list[str]:
        """The watchlist's Discover ratingKeys, oldest addition first."""
        return [rk for rk, _ in self.watchlist]


@dataclass
class _Pin:
    id: int
    code: str
    client_identifier: str
    created_at: float
    expires_at: float
    strong: bool
    user: str | None = None  # who approved it

    def body(self, auth_token: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "code": self.code,
            "product": "Plex Web",
            "trusted": False,
            "qr": f"https://plex.tv/api/v2/pins/qr/{self.code}",
            "clientIdentifier": self.client_identifier,
            "location": {"code": "US", "country": "United States"},
            "expiresIn": max(0, int(self.expires_at - self.created_at)),
            "createdAt": _iso(self.created_at),
            "expiresAt": _iso(self.expires_at),
            "authToken": auth_token,
            "newRegistration": None,
        }


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _attrs(item: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={quoteattr(str(v).lower() if isinstance(v, bool) else str(v))}"
        for k, v in item.items()
        if v is not None and not isinstance(v, list | dict)
    )


class FakeDiscover:
    """Discover + metadata + plex.tv in one app (see the module docstring)."""

    def __init__(
        self,
        *,
        catalog: Catalog | None = None,
        token: str = "plex-account-token",
        user: str = "owner",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog if catalog is not None else default_catalog()
        self.clock = clock
        self.items: dict[str, dict[str, Any]] = {}
        self.users: dict[str, DiscoverUser] = {}
        self.default_user = user
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.metadata_calls: Counter[str] = Counter()
        self.pins: dict[int, _Pin] = {}
        # Knobs.
        self.down = False
        self.delay_s = 0.0
        self.default_page_size = 20
        self.pin_expires_in_s = 1800.0
        self.duplicate_add_status = 200
        self.absent_remove_status = 200
        self.put_json_headers_500 = False
        #: Leave ``totalSize`` out of watchlist pages (the reference never shows it missing;
        #: a client must not take such a page for the whole list unless it says it is).
        self.omit_total_size = False
        #: Called with every request before it is answered (e.g. to change the list while a
        #: client pages through it).
        self.before_request: Callable[[web.Request], None] | None = None
        self._failures: list[tuple[int, str | None]] = []
        self._pin_ids = itertools.count(1_042_000_001)
        self._account_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.add_user(user, token)
        for movie in self.catalog.movies:
            self._from_catalog("movie", movie)
        for show in self.catalog.shows:
            self._from_catalog("show", show)

    # -- library and users --------------------------------------------------------------------

    def _from_catalog(self, kind: str, entry: dict[str, Any]) -> None:
        ids = entry["ids"]
        guids = [f"{k}://{ids[k]}" for k in ("imdb", "tmdb", "tvdb") if ids.get(k)]
        base = 0x5D7768000000000000000000 if kind == "movie" else 0x5D9C08000000000000000000
        self.add_item(
            kind,
            entry["title"],
            entry["year"],
            guids,
            rating_key=f"{base + int(ids['trakt']):024x}",
            slug=ids.get("slug"),
        )

    def add_item(
        self,
        kind: str,
        title: str,
        year: int,
        guids: list[str],
        *,
        rating_key: str | None = None,
        slug: str | None = None,
    ) -> str:
        """A Discover movie or show (*guids* like ``["imdb://tt…", "tmdb://…"]``, possibly
        none — §3: some items have no external id). Returns its ratingKey."""
        rk = rating_key or secrets.token_hex(12)
        self.items[rk] = {
            "ratingKey": rk,
            "key": f"/library/metadata/{rk}",
            "guid": f"plex://{kind}/{rk}",
            "type": kind,
            "title": title,
            "year": year,
            "slug": slug,
            "Guid": [{"id": g} for g in guids],
        }
        return rk

    def rating_key_for(self, ids: dict[str, Any], kind: str | None = None) -> str | None:
        """The ratingKey of the item carrying any of *ids* (``{"imdb": "tt…"}``)."""
        wanted = {f"{k}://{v}" for k, v in ids.items() if v}
        for rk, item in self.items.items():
            if kind is not None and item["type"] != kind:
                continue
            if wanted & {g["id"] for g in item["Guid"]}:
                return rk
        return None

    def add_user(self, name: str, token: str | None = None) -> str:
        """A plex.tv account with its own watchlist; returns its account token."""
        token = token or secrets.token_urlsafe(15)
        account_id = next(self._account_ids)
        uuid = hashlib.sha1(name.encode()).hexdigest()[:16]
        self.users[name] = DiscoverUser(name, token, account_id, uuid)
        return token

    def user(self, name: str | None = None) -> DiscoverUser:
        """The user *name* (None: the default one)."""
        return self.users[self.default_user if name is None else name]

    def add_to_watchlist(
        self, rating_key: str, *, user: str | None = None, at: float | None = None
    ) -> None:
        """Seed *user*'s watchlist (as if added on plex.tv at unix time *at*)."""
        if rating_key not in self.items:
            raise KeyError(rating_key)
        owner = self.user(user)
        if rating_key not in owner.rating_keys():
            owner.watchlist.append((rating_key, int(self.clock() if at is None else at)))

    def remove_from_watchlist(self, rating_key: str, *, user: str | None = None) -> None:
        """*user* takes an item off their watchlist on plex.tv."""
        owner = self.user(user)
        owner.watchlist = [(k, at) for k, at in owner.watchlist if k != rating_key]

    def watchlist_imdb(self, user: str | None = None) -> set[str]:
        """The imdb ids of the items on *user*'s watchlist (those that have one)."""
        found = set()
        for key in self.user(user).rating_keys():
            for guid in self.items[key]["Guid"]:
                if guid["id"].startswith("imdb://"):
                    found.add(guid["id"].removeprefix("imdb://"))
        return found

    def approve_pin(self, code: str, user: str | None = None) -> None:
        """*user* (default user if None) signed in and linked pin *code*."""
        pin = next(p for p in self.pins.values() if p.code == code)
        pin.user = self.user(user).name

    def clear_failures(self) -> None:
        """Forget the failures :meth:`fail_next` still had to inject (the outage is over)."""
        self._failures.clear()

    def fail_next(self, status: int, count: int = 1, *, path: str | None = None) -> None:
        """Answer the next *count* requests (whose path starts with *path*) with *status*."""
        self._failures.extend([(status, path)] * count)

    # -- plumbing ---------------------------------------------------------------------------

    def _user_of(self, request: web.Request) -> DiscoverUser | None:
        token = request.headers.get("X-Plex-Token") or request.query.get("X-Plex-Token")
        return next((u for u in self.users.values() if token and u.token == token), None)

    @staticmethod
    def _error(request: web.Request, status: int, error: str, message: str) -> web.Response:
        """§6 error bodies: JSON ``{"Error": {…}}`` or the XML ``<Error …/>``."""
        if _wants_json(request):
            body = {"Error": {"error": error, "message": message, "statusCode": status}}
            return web.json_response(body, status=status)
        xml = (
            f'<Error error={quoteattr(error)} message={quoteattr(message)} statusCode="{status}"/>'
        )
        return web.Response(status=status, text=xml, content_type="text/xml")

    @staticmethod
    def _container(
        request: web.Request,
        container: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        if _wants_json(request):
            return web.json_response({"MediaContainer": container}, headers=headers)
        rows = container.get("Metadata", [])
        children = "".join(
            f"<{'Directory' if r.get('type') == 'show' else 'Video'} {_attrs(r)}>"
            + "".join(f"<Guid id={quoteattr(g['id'])}/>" for g in r.get("Guid", []))
            + f"</{'Directory' if r.get('type') == 'show' else 'Video'}>"
            for r in rows
        )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<MediaContainer {_attrs(container)}>{children}</MediaContainer>"
        )
        return web.Response(text=xml, content_type="text/xml", headers=headers)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.query)))
        if self.before_request is not None:
            self.before_request(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.down:
            return web.Response(status=503, text="Service Unavailable")
        for n, (status, path) in enumerate(self._failures):
            if path is None or request.path.startswith(path):
                del self._failures[n]
                return self._error(request, status, "Injected", "injected failure")
        if not request.path.startswith(_NO_TOKEN_PATHS) and self._user_of(request) is None:
            return self._error(request, 401, "Unauthorized", "Invalid or missing X-Plex-Token")
        return await handler(request)

    @staticmethod
    def _paging(request: web.Request, default_size: int) -> tuple[int, int]:
        def value(name: str) -> str | None:
            return request.headers.get(name) or request.query.get(name)

        start, size = value("X-Plex-Container-Start"), value("X-Plex-Container-Size")
        try:
            return max(0, int(start or 0)), (max(0, int(size)) if size else default_size)
        except ValueError:
            raise web.HTTPBadRequest(text="bad container paging") from None

    @staticmethod
    def _row(item: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k != "Guid"} | extra

    # -- §3 watchlist -------------------------------------------------------------------------

    async def _watchlist(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["filter"] not in _FILTERS:
            return self._error(request, 404, "Not Found", "Section 'watchlist' not found!")
        owner = self._user_of(request)
        assert owner is not None
        etag = '"' + hashlib.md5(repr(owner.watchlist).encode()).hexdigest() + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        wanted = _TYPES.get(request.query.get("type", ""))
        rows = [
            self._row(self.items[rk], watchlistedAt=at)
            for rk, at in owner.watchlist
            if wanted is None or self.items[rk]["type"] == wanted
        ]
        field_name, _, direction = request.query.get("sort", "watchlistedAt:desc").partition(":")
        if field_name == "titleSort":
            rows.sort(key=lambda r: str(r["title"]).lower(), reverse=direction == "desc")
        else:  # watchlistedAt (the default, newest first)
            rows.sort(key=lambda r: int(r["watchlistedAt"]), reverse=direction != "asc")
        start, size = self._paging(request, self.default_page_size)
        page = rows[start : start + size]
        container = {
            "librarySectionID": "watchlist",
            "librarySectionTitle": "Watchlist",
            "offset": start,
            "size": len(page),
            "totalSize": len(rows),
            "identifier": "tv.plex.provider.discover",
            "Metadata": page,
        }
        if self.omit_total_size:
            del container["totalSize"]
        return self._container(request, container, {"ETag": etag})

    async def _metadata(self, request: web.Request) -> web.StreamResponse:
        rk = request.match_info["rk"]
        self.metadata_calls[rk] += 1
        item = self.items.get(rk)
        if item is None:
            return self._error(request, 404, "Not Found", f"Metadata {rk} not found")
        return self._container(request, {"size": 1, "Metadata": [dict(item)]})

    # -- §4 add / remove ------------------------------------------------------------------------

    async def _action(self, request: web.Request) -> web.StreamResponse:
        if self.put_json_headers_500 and (
            _wants_json(request)
            or request.headers.get("Content-Type", "").startswith("application/json")
        ):
            return web.Response(status=500, text="Internal Server Error")
        owner = self._user_of(request)
        assert owner is not None
        rk = request.query.get("ratingKey", "")
        if not rk:
            return self._error(request, 400, "Bad Request", "ratingKey is required")
        if rk not in self.items:
            return self._error(request, 404, "Not Found", f"Metadata {rk} not found")
        present = rk in owner.rating_keys()
        if request.match_info["action"] == "addToWatchlist":
            if present:
                return web.Response(status=self.duplicate_add_status)
            owner.watchlist.append((rk, int(self.clock())))
            return web.Response(status=200)
        if not present:
            return web.Response(status=self.absent_remove_status)
        owner.watchlist = [(k, at) for k, at in owner.watchlist if k != rk]
        return web.Response(status=200)

    # -- §5 matches -----------------------------------------------------------------------------

    async def _matches(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        kind = _TYPES.get(query.get("type", ""))
        if "type" in query and kind is None:
            return self._error(request, 400, "Bad Request", "bad type")
        guid = query.get("guid")
        if guid is None and query.get("title", "").count("-") == 1:
            scheme, _, value = query["title"].partition("-")
            if scheme in {"tmdb", "imdb", "tvdb"}:
                guid = f"{scheme}://{value}"
        if not guid:
            return self._error(request, 400, "Bad Request", "guid or title is required")
        rows = [
            self._row(item)
            for item in self.items.values()
            if (kind is None or item["type"] == kind) and guid in {g["id"] for g in item["Guid"]}
        ]
        return self._container(request, {"size": len(rows), "Metadata": rows})

    # -- plex.tv ------------------------------------------------------------------------------

    def _pin_reply(self, request: web.Request, pin: _Pin, status: int = 200) -> web.Response:
        token = self.users[pin.user].token if pin.user is not None else None
        body = pin.body(token)
        if _wants_json(request):
            return web.json_response(body, status=status)
        flat = {k: v for k, v in body.items() if not isinstance(v, dict)}
        xml = f'<?xml version="1.0" encoding="UTF-8"?>\n<pin {_attrs(flat)}/>'
        return web.Response(status=status, text=xml, content_type="text/xml")

    def _pin_error(
        self, request: web.Request, status: int, code: int, message: str
    ) -> web.Response:
        body = {"errors": [{"code": code, "message": message, "status": status}]}
        if _wants_json(request):
            return web.json_response(body, status=status)
        xml = (
            f'<errors><error code="{code}" message={quoteattr(message)} status="{status}"/>'
            "</errors>"
        )
        return web.Response(status=status, text=xml, content_type="text/xml")

    async def _pin_new(self, request: web.Request) -> web.Response:
        client = request.headers.get("X-Plex-Client-Identifier")
        if not client:
            return self._pin_error(request, 400, 1000, "X-Plex-Client-Identifier is missing")
        strong = request.query.get("strong", "").lower() == "true"
        alphabet = string.ascii_uppercase + string.digits
        code = "".join(secrets.choice(alphabet) for _ in range(25 if strong else 4))
        now = self.clock()
        pin = _Pin(next(self._pin_ids), code, client, now, now + self.pin_expires_in_s, strong)
        self.pins[pin.id] = pin
        return self._pin_reply(request, pin, status=201)

    async def _pin_check(self, request: web.Request) -> web.Response:
        client = request.headers.get("X-Plex-Client-Identifier")
        if not client:
            return self._pin_error(request, 400, 1000, "X-Plex-Client-Identifier is missing")
        try:
            pin = self.pins.get(int(request.match_info["id"]))
        except ValueError:
            pin = None
        if pin is None or pin.client_identifier != client or self.clock() >= pin.expires_at:
            return self._pin_error(request, 404, 1020, "Code not found or expired")
        return self._pin_reply(request, pin)

    async def _account(self, request: web.Request) -> web.Response:
        owner = self._user_of(request)
        assert owner is not None
        body = {
            "id": owner.id,
            "uuid": owner.uuid,
            "username": owner.name,
            "title": owner.name,
            "email": f"{owner.name}@example.org",
            "authToken": owner.token,
        }
        if _wants_json(request):
            return web.json_response(body)
        return web.Response(text=f"<user {_attrs(body)}/>", content_type="text/xml")

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> str:
        """Serve on 127.0.0.1 at a random port; returns (and sets) :attr:`url`."""
        app = web.Application(middlewares=[self._middleware])
        router = app.router
        router.add_get("/library/sections/watchlist/{filter}", self._watchlist)
        router.add_get("/library/metadata/matches", self._matches)  # before /{rk}
        router.add_get("/library/metadata/{rk}", self._metadata)
        router.add_put("/actions/{action:addToWatchlist|removeFromWatchlist}", self._action)
        router.add_post("/api/v2/pins", self._pin_new)
        router.add_get("/api/v2/pins/{id}", self._pin_check)
        router.add_get("/api/v2/user", self._account)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=0.5)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscover:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
