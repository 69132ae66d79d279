"""A fake Tautulli serving the API v2 (``GET /api/v2?apikey=…&cmd=…``).

Follows ``shared/reference/tautulli/api_v2_reference.md`` and Tautulli's ``plexpy/api2.py``:

- every JSON answer is wrapped as ``{"response": {"result", "message", "data"}}``;
- a missing or wrong ``apikey`` is HTTP 401 with ``result "error"``, ``message "Invalid apikey"``
  (``"Parameter apikey is required"`` when absent); a missing/unknown ``cmd`` is HTTP 400;
- ``get_history`` honours ``start``, ``length``, ``order_column``, ``order_dir``, ``after``
  (``YYYY-MM-DD``, on the row's ``date`` in UTC), ``before``, ``user`` (comma-separated
  usernames), ``user_id`` (comma-separated ids), ``media_type`` and ``grouping`` (accepted; rows
  are already grouped); bad values are HTTP 400. Several users' rows stay apart: each row has
  its ``user`` and that user's own ``user_id`` (:func:`user_id_of`), and the filters select on
  them as Tautulli's ``session_history.user``/``user_id`` conditions do. ``data`` is
  ``{recordsFiltered, recordsTotal, draw, data: [rows], filter_duration, total_duration}``;
- ``get_metadata`` needs ``rating_key`` and answers the stored dict, or ``{}`` when unknown;
- ``get_users`` answers ``[{"username", "user_id", "friendly_name", …}]``;
- ``get_server_identity`` ("Get info about the local server") answers the Plex server's
  ``{"machine_identifier", "version"}``, so clients can scope Plex ratingKeys by server. The
  reference's docstring draws it as a one-element list, but Tautulli's code
  (``pmsconnect.get_server_identity``, "Output: dict") returns the dict; the fake answers the
  dict, or the list with ``server_identity_as_list = True``.

Recorded state: ``calls_by_cmd`` (Counter of answered commands), ``metadata_calls_by_key``
(Counter per rating_key), ``requests`` (every request's query, ``apikey`` removed).
Knobs: ``html_mode`` (a 200 HTML login page, like a reverse proxy), ``repeat_page`` (get_history
ignores ``start`` and always answers the first page), ``delay_s``, ``fail_next(status, n)``,
``machine_identifier`` / ``pms_version`` (constructor), ``server_identity_as_list``.

:func:`make_rows` builds a large deterministic history (generated lazily, so 100,000 rows cost
almost no memory) and the matching metadata; :func:`history_row` builds one row for tests.

Usage::

    async with FakeTautulli(api_key="key", rows=[history_row(...)], users=["alice"]) as fake:
        TautulliClient(session=s, url=fake.url, api_key="key")
"""

from __future__ import annotations

import asyncio
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, overload

import orjson
from aiohttp import web

__all__ = [
    "FakeTautulli",
    "GeneratedHistory",
    "SyntheticHistory",
    "history_row",
    "make_rows",
    "user_id_of",
]

_ORDER_COLUMNS = frozenset(
    {
        "date",
        "friendly_name",
        "ip_address",
        "platform",
        "player",
        "full_title",
        "started",
        "paused_counter",
        "stopped",
        "duration",
    }
)
_MEDIA_TYPES = frozenset({"movie", "episode", "track", "live", "collection", "playlist"})
_COMMANDS = frozenset({"get_history", "get_metadata", "get_users", "get_server_identity"})

_LOGIN_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>"
    '<body><form method="post" action="/oauth2/sign_in"><input name="user">'
    '<input name="password" type="password"></form></body></html>\n'
)


def user_id_of(username: str) -> int:
    """The Plex user id the fake gives *username* (stable, distinct per name)."""
    return 100_000 + zlib.crc32(username.encode()) % 900_000


def _day(moment: int) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d")


class _BadParam(Exception):
    pass


class FakeTautulli:
    """A real aiohttp app on 127.0.0.1 holding a Tautulli history, metadata and users.

    ``rows`` is any sequence of history-row dicts (a list, or a :class:`SyntheticHistory`);
    ``metadata`` maps rating_key (str) to a ``get_metadata`` data dict; ``users`` are
    usernames (or full user dicts).
    """

    def __init__(
        self,
        *,
        api_key: str = "key",
        rows: Sequence[dict[str, Any]] = (),
        metadata: Mapping[str, dict[str, Any]] | None = None,
        users: Sequence[str | dict[str, Any]] = (),
        machine_identifier: str = "ds48g4r354a8v9byrrtr697g3g79w",
        pms_version: str = "1.41.0.8992-8463ad060",
    ) -> None:
        self.api_key = api_key
        self.machine_identifier = machine_identifier
        self.pms_version = pms_version
        self.server_identity_as_list = False
        self.rows: Sequence[dict[str, Any]] = rows
        self.metadata: dict[str, dict[str, Any]] = dict(metadata or {})
        self.users: list[str | dict[str, Any]] = list(users)
        # recorded state
        self.calls_by_cmd: Counter[str] = Counter()
        self.metadata_calls_by_key: Counter[str] = Counter()
        self.requests: list[dict[str, str]] = []
        # knobs
        self.html_mode = False
        self.repeat_page = False
        self.delay_s = 0.0
        self._failures: list[int] = []
        self._views: dict[tuple[Any, ...], list[int]] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> str:
        """Serve on 127.0.0.1 at a random port; returns (and sets) :attr:`url`."""
        app = web.Application()
        app.router.add_get("/api/v2", self._api)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=0.5)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        """Stop serving (the port then refuses connections)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTautulli:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- knobs ----------------------------------------------------------------------------

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next *count* requests with HTTP *status* and a plain-text body."""
        self._failures.extend([status] * count)

    # -- handler --------------------------------------------------------------------------

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        body = {"response": {"result": "error", "message": message, "data": {}}}
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    @staticmethod
    def _success(data: Any) -> web.Response:
        body = {"response": {"result": "success", "message": None, "data": data}}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def _api(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        apikey = query.pop("apikey", None)
        self.requests.append(dict(query))  # a copy: `query` is consumed below
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self._failures:
            status = self._failures.pop(0)
            return web.Response(status=status, text=f"{status} upstream error")
        if self.html_mode:
            return web.Response(text=_LOGIN_PAGE, content_type="text/html")
        if apikey is None:
            return self._error(401, "Parameter apikey is required")
        if apikey != self.api_key:
            return self._error(401, "Invalid apikey")
        cmd = query.pop("cmd", None)
        if cmd is None:
            return self._error(400, "Parameter cmd is required")
        if cmd not in _COMMANDS:
            return self._error(400, f"Unknown command: {cmd}")
        try:
            if cmd == "get_history":
                data: Any = self._get_history(query)
            elif cmd == "get_metadata":
                data = self._get_metadata(query)
            elif cmd == "get_server_identity":
                data = self._get_server_identity()
            else:
                data = self._get_users()
        except _BadParam as exc:
            return self._error(400, str(exc))
        self.calls_by_cmd[cmd] += 1
        return self._success(data)

    # -- commands -------------------------------------------------------------------------

    def _field(self, index: int, name: str) -> Any:
        fast = getattr(self.rows, "field", None)
        if fast is not None:
            return fast(index, name)
        return self.rows[index].get(name)

    def _view(self, query: dict[str, str]) -> list[int]:
        """Row indexes matching the filters, in the requested order (cached)."""
        column = query.get("order_column", "date")
        direction = query.get("order_dir", "desc")
        if column not in _ORDER_COLUMNS:
            raise _BadParam(f"Invalid order_column: {column}")
        if direction not in ("asc", "desc"):
            raise _BadParam(f"Invalid order_dir: {direction}")
        after, before = query.get("after"), query.get("before")
        for value in (after, before):
            if value is not None:
                try:
                    date.fromisoformat(value)
                except ValueError:
                    raise _BadParam(f"Invalid date {value!r}, expected YYYY-MM-DD") from None
        users = (
            frozenset(u.strip() for u in query["user"].split(",")) if query.get("user") else None
        )
        user_ids: frozenset[int] | None = None
        if query.get("user_id"):
            try:
                user_ids = frozenset(int(u) for u in query["user_id"].split(",") if u.strip())
            except ValueError:
                raise _BadParam(f"Invalid user_id: {query['user_id']}") from None
        media_type = query.get("media_type")
        if media_type is not None and media_type not in _MEDIA_TYPES:
            raise _BadParam(f"Invalid media_type: {media_type}")
        grouping = query.get("grouping", "1")
        if grouping not in ("0", "1"):
            raise _BadParam(f"Invalid grouping: {grouping}")
        key = (
            id(self.rows),
            len(self.rows),
            column,
            direction,
            after,
            before,
            users,
            user_ids,
            media_type,
        )
        cached = self._views.get(key)
        if cached is not None:
            return cached
        keep: list[int] = []
        for i in range(len(self.rows)):
            if users is not None and self._field(i, "user") not in users:
                continue
            if user_ids is not None and self._field(i, "user_id") not in user_ids:
                continue
            if media_type is not None and self._field(i, "media_type") != media_type:
                continue
            if after is not None or before is not None:
                day = _day(int(self._field(i, "date")))
                if (after is not None and day < after) or (before is not None and day > before):
                    continue
            keep.append(i)
        if column == "date" and getattr(self.rows, "newest_first", False):
            ordered = keep if direction == "desc" else keep[::-1]
        else:
            ordered = sorted(
                keep,
                key=lambda i: (self._field(i, column) is None, self._field(i, column) or 0),
                reverse=direction == "desc",
            )
        self._views = {key: ordered}  # one view at a time keeps memory flat
        return ordered

    def _get_history(self, query: dict[str, str]) -> dict[str, Any]:
        try:
            start = int(query.get("start", "0"))
            length = int(query.get("length", "25"))
        except ValueError:
            raise _BadParam("start and length must be integers") from None
        if start < 0 or length < 1:
            raise _BadParam("start must be >= 0 and length >= 1")
        view = self._view(query)
        if self.repeat_page:
            start = 0
        page = [self.rows[i] for i in view[start : start + length]]
        return {
            "draw": int(query.get("draw", "1") or 1),
            "recordsTotal": len(self.rows),
            "recordsFiltered": len(view),
            "total_duration": "42 days 5 hrs 18 mins",
            "filter_duration": "10 hrs 12 mins",
            "data": page,
        }

    def _get_metadata(self, query: dict[str, str]) -> dict[str, Any]:
        rating_key = query.get("rating_key")
        if not rating_key:
            raise _BadParam("Missing parameter: rating_key")
        self.metadata_calls_by_key[rating_key] += 1
        meta = self.metadata.get(rating_key)
        if meta is None:
            meta = getattr(self.rows, "metadata_for", lambda _k: None)(rating_key)
        return dict(meta) if meta else {}

    def _get_server_identity(self) -> dict[str, Any] | list[dict[str, Any]]:
        identity = {"machine_identifier": self.machine_identifier, "version": self.pms_version}
        return [identity] if self.server_identity_as_list else identity

    def _get_users(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for n, user in enumerate(self.users, start=1):
            if isinstance(user, dict):
                out.append(user)
                continue
            out.append(
                {
                    "allow_guest": 1,
                    "do_notify": 1,
                    "email": f"{user.lower().replace(' ', '.')}@example.org",
                    "friendly_name": user.title(),
                    "is_active": 1,
                    "is_admin": 1 if n == 1 else 0,
                    "is_home_user": 1,
                    "keep_history": 1,
                    "row_id": n,
                    "shared_libraries": ["1", "2"],
                    "thumb": "",
                    "user_id": str(user_id_of(user)),
                    "username": user,
                }
            )
        return out


# -- rows -------------------------------------------------------------------------------------


def history_row(
    *,
    row_id: int,
    user: str = "alice",
    media_type: str = "movie",
    title: str = "Barry Lyndon",
    year: int | None = 1975,
    rating_key: int | str = 1000,
    guid: str = "com.plexapp.agents.imdb://tt0072684?lang=en",
    stopped: int = 1_700_000_000,
    duration_s: int = 3600,
    watched_status: float = 1,
    show_title: str = "",
    season: int | str = "",
    episode: int | str = "",
    grandparent_rating_key: int | str = "",
    parent_rating_key: int | str = "",
    user_id: int | None = None,
) -> dict[str, Any]:
    """One ``get_history`` row shaped like api_v2_reference.md's example (all its keys).

    ``stopped`` is Unix seconds; ``started``/``date`` are ``stopped - duration_s``.
    ``percent_complete`` follows ``watched_status`` (1 → 97, 0.5 → 60, 0 → 12).
    ``user_id`` defaults to :func:`user_id_of` *user* (as ``get_users`` reports it).
    """
    started = stopped - duration_s
    percent = {1: 97, 0.5: 60}.get(watched_status, 12)
    full_title = f"{show_title} - {title}" if media_type == "episode" else title
    return {
        "date": started,
        "friendly_name": user.title(),
        "full_title": full_title,
        "grandparent_rating_key": grandparent_rating_key,
        "grandparent_title": show_title,
        "original_title": "",
        "group_count": 1,
        "group_ids": str(row_id),
        "guid": guid,
        "ip_address": "10.0.0.12",
        "live": 0,
        "location": "lan",
        "machine_id": "lmd93nkn12k29j2lnm",
        "media_index": episode,
        "media_type": media_type,
        "originally_available_at": f"{year or 2000}-04-24",
        "parent_media_index": season,
        "parent_rating_key": parent_rating_key,
        "parent_title": f"Season {season}" if season != "" else "",
        "paused_counter": 0,
        "percent_complete": percent,
        "platform": "Android",
        "play_duration": duration_s,
        "product": "Plex for Android (TV)",
        "player": "SHIELD Android TV",
        "rating_key": rating_key,
        "reference_id": row_id,
        "relayed": 0,
        "row_id": row_id,
        "secure": 1,
        "session_key": None,
        "started": started,
        "state": None,
        "stopped": stopped,
        "thumb": f"/library/metadata/{rating_key}/thumb/1462414561",
        "title": title,
        "transcode_decision": "direct play",
        "user": user,
        "user_id": user_id if user_id is not None else user_id_of(user),
        "watched_status": watched_status,
        "year": year if year is not None else "",
    }


def _mix(i: int, salt: int) -> int:
    """A cheap deterministic 32-bit hash of (i, salt) (Knuth multiplicative + xorshift)."""
    x = (i * 2654435761 + salt * 40503 + 0x9E3779B9) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 2246822519) & 0xFFFFFFFF
    x ^= x >> 13
    return x


@dataclass(frozen=True, slots=True)
class _CatalogItem:
    rating_key: str
    kind: str  # movie | episode | track
    title: str
    year: int
    guid: str
    needs_metadata: bool  # the row's guid carries no external id (new Plex agent)
    gone: bool  # get_metadata answers {} (item deleted from Plex)
    show: int = -1  # index into shows, episodes only
    season: int = 0
    number: int = 0


class SyntheticHistory(Sequence[dict[str, Any]]):
    """A read-only, lazily generated history of *n* rows, newest first.

    Row ``i`` is computed from ``i`` alone, so the sequence costs memory only for its catalogue
    (a few thousand items). ``field(i, name)`` answers one column without building the row.
    ``metadata_for(rating_key)`` is the ``get_metadata`` data of a catalogue item.
    """

    newest_first = True

    def __init__(
        self,
        n: int,
        *,
        users: Sequence[tuple[str, int]],
        needs_metadata_pct: float,
        newest: int,
        seed: int,
    ) -> None:
        self._n = n
        self._seed = seed
        self._newest = newest
        self._users: list[str] = []
        for name, weight in users:
            self._users.extend([name] * weight)
        n_movies = max(20, n // 40)
        n_shows = max(3, n // 2000)
        per_show = 100  # 10 seasons x 10 episodes
        n_tracks = max(10, n // 200)
        self.items: list[_CatalogItem] = []
        self.shows: list[tuple[str, str, str]] = []  # (rating_key, title, tvdb)
        threshold = int(needs_metadata_pct * 1000)
        rk = 10_000
        for m in range(n_movies):
            rk += 1
            needs = _mix(m, seed + 1) % 1000 < threshold
            gone = needs and _mix(m, seed + 2) % 100 < 5
            guid = (
                f"plex://movie/{rk:024x}"
                if needs
                else f"com.plexapp.agents.imdb://tt{1_000_000 + m:07d}?lang=en"
            )
            year = 1950 + m % 75
            self.items.append(_CatalogItem(str(rk), "movie", f"Movie {m}", year, guid, needs, gone))
        for s in range(n_shows):
            rk += 1
            self.shows.append((str(rk), f"Show {s}", str(70_000 + s)))
        for s in range(n_shows):
            for e in range(per_show):
                rk += 1
                j = s * per_show + e
                needs = _mix(j, seed + 3) % 1000 < threshold
                gone = needs and _mix(j, seed + 4) % 100 < 5
                season, number = e // 10 + 1, e % 10 + 1
                guid = (
                    f"plex://episode/{rk:024x}"
                    if needs
                    else f"com.plexapp.agents.thetvdb://{70_000 + s}/{season}/{number}?lang=en"
                )
                self.items.append(
                    _CatalogItem(
                        str(rk),
                        "episode",
                        f"Episode {number}",
                        2000 + s % 20,
                        guid,
                        needs,
                        gone,
                        show=s,
                        season=season,
                        number=number,
                    )
                )
        for t in range(n_tracks):
            rk += 1
            self.items.append(
                _CatalogItem(
                    str(rk), "track", f"Track {t}", 1990, f"plex://track/{rk:024x}", False, False
                )
            )
        self._by_key = {item.rating_key: item for item in self.items}
        self._shows_by_key = {show[0]: show for show in self.shows}
        self._n_movies = n_movies
        self._n_episodes = n_shows * per_show
        self._n_tracks = n_tracks

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._row(i) for i in range(*index.indices(self._n))]
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError(index)
        return self._row(index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self._row(i) for i in range(self._n))

    # -- generation -----------------------------------------------------------------------

    def _item_index(self, i: int) -> int:
        roll = _mix(i, self._seed + 10) % 100
        pick = _mix(i, self._seed + 11)
        if roll < 35:
            return pick % self._n_movies
        if roll < 94:
            return self._n_movies + pick % self._n_episodes
        return self._n_movies + self._n_episodes + pick % self._n_tracks

    def _stopped(self, i: int) -> int:
        # Rows are ~45 min apart on average, newest first, so 100k rows span ~8.5 years.
        return self._newest - i * 2700 - _mix(i, self._seed + 12) % 1200

    def field(self, i: int, name: str) -> Any:
        """Column *name* of row *i* without building the row (for filters and sorting)."""
        if name == "user":
            return self._users[_mix(i, self._seed + 13) % len(self._users)]
        if name == "user_id":
            return user_id_of(self.field(i, "user"))
        if name == "media_type":
            return self.items[self._item_index(i)].kind
        if name == "stopped":
            return self._stopped(i)
        if name in ("date", "started"):
            return self._stopped(i) - 1500
        return self._row(i).get(name)

    def _watched_status(self, i: int) -> float:
        roll = _mix(i, self._seed + 14) % 100
        return 1 if roll < 80 else (0.5 if roll < 90 else 0)

    def _row(self, i: int) -> dict[str, Any]:
        item = self.items[self._item_index(i)]
        row_id = self._n - i
        common = {
            "row_id": row_id,
            "user": self.field(i, "user"),
            "title": item.title,
            "year": item.year,
            "rating_key": int(item.rating_key),
            "guid": item.guid,
            "stopped": self._stopped(i),
            "duration_s": 1500,
            "watched_status": self._watched_status(i),
        }
        if item.kind == "episode":
            show_rk, show_title, _ = self.shows[item.show]
            return history_row(
                media_type="episode",
                show_title=show_title,
                season=item.season,
                episode=item.number,
                grandparent_rating_key=int(show_rk),
                parent_rating_key=int(show_rk) + 1_000_000 + item.season,
                **common,
            )
        return history_row(media_type=item.kind, **common)

    def metadata_for(self, rating_key: str) -> dict[str, Any] | None:
        """``get_metadata`` data of a catalogue item or show; None when unknown or gone."""
        show = self._shows_by_key.get(rating_key)
        if show is not None:
            show_rk, title, tvdb = show
            n = int(tvdb) - 70_000
            return {
                "rating_key": show_rk,
                "media_type": "show",
                "title": title,
                "year": "2000",
                "guid": f"plex://show/{int(show_rk):024x}",
                "guids": [f"imdb://tt{5_000_000 + n:07d}", f"tvdb://{tvdb}"],
            }
        item = self._by_key.get(rating_key)
        if item is None or item.gone:
            return None
        n = int(item.rating_key)
        meta: dict[str, Any] = {
            "rating_key": item.rating_key,
            "media_type": item.kind,
            "title": item.title,
            "year": str(item.year),
            "guid": item.guid,
            "guids": [],
        }
        if item.kind == "movie":
            meta["guids"] = [f"imdb://tt{2_000_000 + n:07d}", f"tmdb://{n}"]
        elif item.kind == "episode":
            show_rk, show_title, tvdb = self.shows[item.show]
            meta.update(
                grandparent_rating_key=show_rk,
                grandparent_title=show_title,
                parent_media_index=str(item.season),
                media_index=str(item.number),
            )
            # One in four new-agent episodes has no ids of its own in Plex: the importer
            # then needs the show's metadata (grandparent_rating_key) for show ids.
            if _mix(n, self._seed + 15) % 4:
                meta["guids"] = [f"tvdb://{9_000_000 + n}", f"tmdb://{n}"]
        return meta


@dataclass
class GeneratedHistory:
    """What :func:`make_rows` built: the rows, and what a correct import must find."""

    rows: SyntheticHistory
    #: rating_keys whose rows carry no external ids (the importer must call get_metadata).
    needs_metadata_keys: set[str] = field(default_factory=set)

    def completed_plays(self, users: Sequence[str] | None = None) -> int:
        """Rows that are completed movie/episode plays (of *users*, if given)."""
        wanted = set(users) if users is not None else None
        count = 0
        for i in range(len(self.rows)):
            if self.rows.field(i, "media_type") not in ("movie", "episode"):
                continue
            if wanted is not None and self.rows.field(i, "user") not in wanted:
                continue
            if self.rows._watched_status(i) == 1:
                count += 1
        return count


def make_rows(
    n: int,
    *,
    users: Sequence[tuple[str, int]] = (("alice", 6), ("bob", 3), ("carol", 1)),
    needs_metadata_pct: float = 0.2,
    newest: datetime = datetime(2026, 1, 15, 21, 30, tzinfo=UTC),
    seed: int = 0,
) -> GeneratedHistory:
    """A deterministic history of *n* rows, newest first.

    Mix: ~35 % movie, ~59 % episode, ~6 % track rows; ``watched_status`` 1 (80 %), 0.5 (10 %),
    0 (10 %); items recur (rewatches, each with its own ``stopped``). ``needs_metadata_pct`` of
    movies/episodes have a ``plex://`` guid without ids (5 % of those are gone from Plex: their
    ``get_metadata`` is ``{}``); the rest carry legacy-agent ids (imdb / thetvdb) in the row.
    *users* are ``(username, weight)`` pairs.
    """
    rows = SyntheticHistory(
        n,
        users=users,
        needs_metadata_pct=needs_metadata_pct,
        newest=int(newest.timestamp()),
        seed=seed,
    )
    needs = {item.rating_key for item in rows.items if item.needs_metadata}
    return GeneratedHistory(rows=rows, needs_metadata_keys=needs)
