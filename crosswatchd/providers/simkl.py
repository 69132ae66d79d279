"""SIMKL as a delivery target: history, live scrobbles, and the PIN authorization flow.

Facts used here (``shared/reference/simkl``; "Apiary" = the SIMKL API blueprint, "docs" =
api.simkl.org):

- Identification on every request: ``client_id`` (query; we also send the ``simkl-api-key``
  header), ``app-name`` and ``app-version`` query parameters and a ``User-Agent``; user endpoints
  (``/sync/*``, ``/scrobble/*``) take ``Authorization: Bearer <token>`` (docs "Headers").
- Errors come as ``{"error": <id>, "code": <status>, "message": <text>}`` (docs "Errors").
  Scrobbles hold a 20-second per-user lock; a collision is **400** ``RATE_LIMIT``, not 429
  (docs "Rate limits"). 412 means a bad ``client_id``.
- Tokens never expire and there is no refresh flow (Apiary "Authentication - PIN"): a 401 means
  the user revoked the app, so the token is revoked in the
  :class:`~crosswatchd.tokens.TokenStore` (``simkl.json.revoked``) and the only cure is
  ``crosswatchd auth simkl``. A 412 (bad client id) is config and keeps the token.
- ``POST /sync/history`` answers 200 or 201 with ``{"added": {"movies", "shows", "episodes",
  "statuses"}, "not_found": {"movies", "shows", "episodes"}}``; an episode must be sent under its
  **show's** ids with season and number (Apiary "Add Items to the history").
- ``GET /sync/all-items/{type}`` returns ``null`` when there is nothing to report and keeps one
  ``last_watched_at`` per movie and one ``watched_at`` per episode (with ``extended=full`` and
  ``episode_watched_at=yes``), at second precision (Apiary "Get All Items"). ``date_from``
  selects items *updated* on SIMKL since then, and is mandatory in practice: apps that pull
  the whole library get rate-limited or their client id blocked (api.simkl.org "Sync").

Translation of statuses (the drainer never reads a status code):

===========================  =========================================================
2xx                          success (``null`` bodies mean "empty")
400 ``RATE_LIMIT``           :class:`RetryableError` with ``retry_after_s=20`` (never park)
401                          :class:`AuthError` ("run ``crosswatchd auth simkl``"), token revoked
404 / 409 on a scrobble      ``LiveOutcome.NOT_FOUND`` / ``LiveOutcome.ALREADY``
429, 5xx, timeout, refused   :class:`RetryableError` (``Retry-After`` when given)
412 (bad client_id)          :class:`AuthError`: plays wait for the config to be fixed
other 4xx                    :class:`PermanentError` (``scope="request"``), SIMKL's message
===========================  =========================================================

A POST is never retried in-process: after a timeout the play may have landed, and only
:meth:`SimklProvider.find_in_history` can tell.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import structlog

from crosswatchd import __version__
from crosswatchd.errors import AuthError, PermanentError, ProviderError, RetryableError
from crosswatchd.models import Action, Ids, Item, MediaKind, format_utc, parse_utc
from crosswatchd.providers.base import LiveOutcome, Play, PlayOutcome, split_sendable
from crosswatchd.ratelimit import Limiter
from crosswatchd.tokens import Token, TokenStore

__all__ = ["MAX_BATCH", "SimklProvider", "pin_auth"]

log = structlog.get_logger(__name__)

NAME = "simkl"

#: Plays per ``POST /sync/history``. SIMKL documents no body limit, but its reply only carries
#: aggregate ``added`` counts: one glitch in a batch makes every play of it UNCONFIRMED and
#: costs a look-up, so batches stay small. At 1 POST/s, 50 plays/s still imports 10 000 plays
#: in under 4 minutes.
MAX_BATCH = 50
#: The per-user scrobble lock (docs "Rate limits", scrobble-checkin).
SCROBBLE_LOCK_S = 20.0
#: Default tolerance of :meth:`SimklProvider.find_in_history`: how far a stored ``watched_at``
#: may be from ours and still be the same play (SIMKL keeps seconds only; we send milliseconds).
MATCH_TOLERANCE_S = 5.0
#: Slack subtracted from every ``date_from``: covers clock skew between us and SIMKL and its note
#: that dates are still handled in New York time, GMT−05:00 (Apiary "Dates"), with room to spare.
DATE_FROM_MARGIN = timedelta(days=1)
#: Live progress is clamped into this range: never 0 (some players report 0 on resume) and
#: below SIMKL's 80 % mark, so a live update can never record a play.
PROGRESS_MIN_PCT = 1.0
PROGRESS_MAX_PCT = 79.9
#: Extra wait after a PIN "Slow down" reply (as RFC 8628 prescribes for ``slow_down``).
SLOW_DOWN_STEP_S = 5.0
REAUTH_HINT = "run `crosswatchd auth simkl`"

_MOVIE_ID_KEYS = frozenset({"imdb", "tmdb", "simkl"})
_SHOW_ID_KEYS = frozenset({"imdb", "tmdb", "tvdb", "simkl"})
_SENT_ID_KEYS = ("simkl", "imdb", "tmdb", "tvdb", "anidb")  # SIMKL has no `trakt` id key


# --------------------------------------------------------------------------- HTTP plumbing


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    data: Any  # parsed JSON; None for `null`, an empty body or a non-JSON error body
    retry_after_s: float | None  # what the limiter learnt from the response, if anything

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def envelope(self) -> tuple[str, str]:
        """SIMKL's ``(error, message)``; empty strings when the body has none."""
        if not isinstance(self.data, dict):
            return "", ""
        return str(self.data.get("error") or ""), str(self.data.get("message") or "")


class _Client:
    """Sends one request with SIMKL's identification; never retries."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        client_id: str,
        api_url: str,
        app_name: str,
        app_version: str,
        user_agent: str | None,
        timeout_s: float,
        limiter: Limiter | None,
    ) -> None:
        self._session = session
        self._client_id = client_id
        self._base = api_url.rstrip("/")
        self._app = {"app-name": app_name, "app-version": app_version}
        self._user_agent = user_agent or f"{app_name}/{app_version}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._limiter = limiter

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        token: str | None = None,
    ) -> _Response:
        """Send *method* *path*; raises :class:`RetryableError` on timeouts, connection errors
        and unparseable 2xx bodies. Messages name the path only: the URL carries the client id."""
        headers = {"User-Agent": self._user_agent, "simkl-api-key": self._client_id}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        query = {"client_id": self._client_id, **self._app, **(params or {})}
        if self._limiter is not None:
            await self._limiter.acquire(method)
        try:
            async with self._session.request(
                method,
                self._base + path,
                params=query,
                data=data,
                headers=headers,
                timeout=self._timeout,
            ) as resp:
                raw = await resp.read()
                status = resp.status
                wait = None
                if self._limiter is not None:
                    wait = self._limiter.observe(method, status, resp.headers)
                elif resp.headers.get("Retry-After", "").isdigit():
                    wait = float(resp.headers["Retry-After"])
        except TimeoutError:
            raise RetryableError(
                NAME, f"{method} {path}: no answer within {self._timeout.total}s"
            ) from None
        except aiohttp.ClientError as exc:
            raise RetryableError(NAME, f"{method} {path}: {type(exc).__name__}") from None
        parsed: Any = None
        if raw.strip():
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                if 200 <= status < 300:
                    raise RetryableError(
                        NAME, f"{method} {path}: HTTP {status} with a non-JSON body"
                    ) from None
        log.debug("simkl.http", method=method, path=path, status=status)
        return _Response(status, parsed, wait)


def _error(resp: _Response, what: str) -> ProviderError:
    """The exception for a non-2xx answer (see the module docstring's table)."""
    error_id, message = resp.envelope()
    detail = ": ".join(part for part in (error_id, message) if part)
    if resp.status == 400 and error_id.upper() == "RATE_LIMIT":
        return RetryableError(NAME, f"{what}: scrobble lock held (400 RATE_LIMIT)", SCROBBLE_LOCK_S)
    if resp.status == 401:
        return AuthError(NAME, f"{what}: SIMKL rejected the access token (401); {REAUTH_HINT}")
    if resp.status == 412:
        # SIMKL refuses the app (bad client_id): a configuration problem, not the play's.
        # Plays wait for it to be fixed instead of dying.
        return AuthError(
            NAME,
            f"{what}: SIMKL refused the app (412 {detail}): check simkl.client_id; plays wait",
        )
    if resp.status == 429:
        return RetryableError(NAME, f"{what}: rate limited (429)", resp.retry_after_s)
    if resp.status >= 500:
        return RetryableError(NAME, f"{what}: HTTP {resp.status}", resp.retry_after_s)
    return PermanentError(NAME, f"{what}: HTTP {resp.status}" + (f" {detail}" if detail else ""))


# --------------------------------------------------------------------------- wire shapes


def _api_ids(ids: Ids) -> dict[str, str | int]:
    api = ids.as_api_ids()
    return {key: api[key] for key in _SENT_ID_KEYS if key in api}


def _id_pairs(raw: Any) -> set[tuple[str, str]]:
    if not isinstance(raw, dict):
        return set()
    return {
        (str(key), str(value))
        for key, value in raw.items()
        if key in _SENT_ID_KEYS and value not in (None, "", 0, "0")
    }


def _titled(ids: dict[str, str | int], title: str | None, year: int | None) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if title:
        obj["title"] = title
    if year:
        obj["year"] = year
    obj["ids"] = ids
    return obj


def _close_to(raw: Any, moment: datetime, tolerance_s: float) -> bool:
    """True when SIMKL's timestamp *raw* is within *tolerance_s* seconds of *moment*."""
    if not isinstance(raw, str):
        return False
    try:
        stored = parse_utc(raw)
    except ValueError:
        return False
    return abs((stored - moment).total_seconds()) <= tolerance_s


def _date_from(plays: Sequence[Play], tolerance_s: float) -> datetime:
    """The ``date_from`` of a history look-up for *plays* (see ``find_in_history``).

    Per play, the earliest time its item can have been updated on SIMKL by what we look for:
    ``sent_at`` for a play we sent (our POST updated the item then), else ``watched_at −
    tolerance`` (whoever recorded a watch at about that time did so afterwards). The minimum
    over the plays, less :data:`DATE_FROM_MARGIN`.
    """
    tolerance = timedelta(seconds=tolerance_s)
    earliest = min(p.sent_at if p.sent_at is not None else p.watched_at - tolerance for p in plays)
    return earliest - DATE_FROM_MARGIN


def _simkl_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _SentEpisode:
    key: int
    season: int
    number: int
    watched_at: str


@dataclass
class _SentShow:
    obj: dict[str, Any]
    episodes: list[_SentEpisode] = field(default_factory=list)


@dataclass
class _Batch:
    """The ``POST /sync/history`` body and what each part of it stands for."""

    movies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    shows: list[_SentShow] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.movies:
            out["movies"] = [obj for _, obj in self.movies]
        if self.shows:
            out["shows"] = [show.obj for show in self.shows]
        return out


def _build_batch(plays: Iterable[Play]) -> _Batch:
    """Movies one object each; episodes grouped under their show's ids, then by season."""
    batch = _Batch()
    by_show: dict[frozenset[tuple[str, str | int]], _SentShow] = {}
    for play in plays:
        item, watched_at = play.item, format_utc(play.watched_at)
        if item.kind is MediaKind.MOVIE:
            obj = _titled(_api_ids(item.ids), item.title, item.year)
            obj["watched_at"] = watched_at
            batch.movies.append((play.key, obj))
            continue
        assert item.season is not None and item.number is not None  # checked by missing_ids
        show_ids = _api_ids(item.show_ids)
        group = by_show.get(frozenset(show_ids.items()))
        if group is None:
            group = _SentShow(_titled(show_ids, item.show_title, item.show_year))
            group.obj["seasons"] = []
            by_show[frozenset(show_ids.items())] = group
            batch.shows.append(group)
        seasons: list[dict[str, Any]] = group.obj["seasons"]
        season = next((s for s in seasons if s["number"] == item.season), None)
        if season is None:
            season = {"number": item.season, "episodes": []}
            seasons.append(season)
        season["episodes"].append({"number": item.number, "watched_at": watched_at})
        group.episodes.append(_SentEpisode(play.key, item.season, item.number, watched_at))
    return batch


def _list(section: Any, name: str) -> list[Any]:
    value = section.get(name) if isinstance(section, dict) else None
    return value if isinstance(value, list) else []


def _count(section: Any, name: str) -> int | None:
    value = section.get(name) if isinstance(section, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _settle(
    keys: Sequence[int], not_found: set[int], unmatched: int, added: int | None
) -> dict[int, PlayOutcome]:
    """Outcomes of one category (movies or episodes).

    A play is ADDED only when every ``not_found`` entry was traced to its plays and ``added``
    equals the number of the others; anything less certain is UNCONFIRMED.
    """
    rest = [k for k in keys if k not in not_found]
    confirmed = unmatched == 0 and added is not None and added == len(rest)
    out = {k: PlayOutcome.NOT_FOUND for k in keys if k in not_found}
    out.update({k: PlayOutcome.ADDED if confirmed else PlayOutcome.UNCONFIRMED for k in rest})
    return out


def _read_reply(data: Any, batch: _Batch) -> dict[int, PlayOutcome]:
    """Map SIMKL's ``added``/``not_found`` reply back to the batch's play keys."""
    added = data.get("added") if isinstance(data, dict) else None
    not_found = data.get("not_found") if isinstance(data, dict) else None

    movie_nf: set[int] = set()
    movie_unmatched = 0
    for entry in _list(not_found, "movies"):
        wanted = _id_pairs(entry.get("ids") if isinstance(entry, dict) else None)
        hits = {k for k, obj in batch.movies if wanted & _id_pairs(obj["ids"])}
        movie_nf |= hits
        movie_unmatched += not hits

    episode_nf: set[int] = set()
    episode_unmatched = 0
    for entry in _list(not_found, "shows"):
        wanted = _id_pairs(entry.get("ids") if isinstance(entry, dict) else None)
        hits = {e.key for s in batch.shows if wanted & _id_pairs(s.obj["ids"]) for e in s.episodes}
        episode_nf |= hits
        episode_unmatched += not hits
    sent_episodes = [e for s in batch.shows for e in s.episodes]
    for entry in _list(not_found, "episodes"):
        # SIMKL echoes the episode object it could not place: {"number", "watched_at"}.
        hits = set()
        if isinstance(entry, dict):
            hits = {
                e.key
                for e in sent_episodes
                if e.key not in episode_nf
                and entry.get("number") == e.number
                and entry.get("watched_at") == e.watched_at
                and entry.get("season", e.season) == e.season
            }
        if len(hits) == 1:
            episode_nf |= hits
        else:
            episode_unmatched += 1

    outcomes = _settle(
        [k for k, _ in batch.movies], movie_nf, movie_unmatched, _count(added, "movies")
    )
    outcomes.update(
        _settle(
            [e.key for e in sent_episodes],
            episode_nf,
            episode_unmatched,
            _count(added, "episodes"),
        )
    )
    return outcomes


# --------------------------------------------------------------------------- provider


class SimklProvider:
    """SIMKL delivery target; implements :class:`crosswatchd.providers.base.Provider`.

    *session* belongs to the caller, who closes it (:meth:`close` leaves it open). *limiter* is
    awaited before every request (docs "Rate limits": 10 GET/s and 1 POST/s per token) and
    told about every response. *tokens* is re-read on every call, so ``crosswatchd auth simkl``
    takes effect without a restart. *api_url* is ``https://api.simkl.com`` in production.
    """

    name = NAME
    max_batch = MAX_BATCH
    #: SIMKL keeps one watched state (and last watched_at) per movie or episode.
    keeps_every_play = False

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        limiter: Limiter,
        tokens: TokenStore,
        client_id: str,
        api_url: str,
        app_name: str = "crosswatchd",
        app_version: str = __version__,
        timeout_s: float = 30.0,
        user_agent: str | None = None,
    ) -> None:
        self._tokens = tokens
        self._http = _Client(
            session=session,
            client_id=client_id,
            api_url=api_url,
            app_name=app_name,
            app_version=app_version,
            user_agent=user_agent,
            timeout_s=timeout_s,
            limiter=limiter,
        )

    def is_authorized(self) -> bool:
        """True when a token is stored (SIMKL tokens do not expire)."""
        return self._tokens.load() is not None

    def _token(self) -> str:
        token = self._tokens.load()
        if token is None:
            raise AuthError(NAME, f"not authorized; {REAUTH_HINT}")
        return token.access_token

    def _failed(self, resp: _Response, what: str, token: str) -> ProviderError:
        """The error for a non-2xx answer; a 401 also revokes *token* if it is still the stored
        one (``crosswatchd auth simkl`` may have replaced it meanwhile)."""
        if resp.status == 401:
            current = self._tokens.load()
            if current is not None and current.access_token == token:
                self._tokens.revoke()
                log.warning("simkl.token.revoked", hint=REAUTH_HINT)
        return _error(resp, what)

    def missing_ids(self, item: Item) -> str | None:
        """Why SIMKL cannot take *item*, or ``None``.

        A movie needs an imdb, tmdb or simkl id; an episode needs its **show's** imdb, tmdb,
        tvdb or simkl id plus season and number (Apiary "Add Items to the history").
        """
        if item.kind is MediaKind.MOVIE:
            if _MOVIE_ID_KEYS & _api_ids(item.ids).keys():
                return None
            return "SIMKL needs an imdb, tmdb or simkl id for a movie"
        if not _SHOW_ID_KEYS & _api_ids(item.show_ids).keys():
            return "SIMKL needs the show's imdb, tmdb, tvdb or simkl id for an episode"
        if item.season is None or item.number is None:
            return "SIMKL needs the season and episode number of an episode"
        return None

    async def add_history(self, plays: Sequence[Play]) -> dict[int, PlayOutcome]:
        """``POST /sync/history`` with each play's ``watched_at``; an outcome per ``Play.key``.

        Movies go by their ids; episodes as ``shows[{ids: <show ids>, seasons[{number,
        episodes[{number, watched_at}]}]}]``. 200 and 201 are both success. ``not_found``
        entries become NOT_FOUND; the rest are ADDED only if the ``added`` counts account for
        exactly them, else UNCONFIRMED (check with :meth:`find_in_history`, never assume).
        Plays that :meth:`missing_ids` rejects are NOT_FOUND without being sent. More than
        :data:`MAX_BATCH` plays is a caller bug (``ValueError``).

        Raises :class:`RetryableError` (429, 5xx, timeout — the play may have landed),
        :class:`AuthError` (no token; 401, which also revokes the token; 412 bad client id,
        which does not), :class:`PermanentError` (other 4xx, ``scope="request"``).
        """
        if len(plays) > self.max_batch:
            raise ValueError(f"at most {self.max_batch} plays per call, got {len(plays)}")
        sendable, outcomes = split_sendable("simkl", plays, self.missing_ids)
        if not sendable:
            return outcomes
        token = self._token()
        batch = _build_batch(sendable)
        resp = await self._http.request("POST", "/sync/history", body=batch.body(), token=token)
        if not resp.ok:
            raise self._failed(resp, "POST /sync/history", token)
        outcomes.update(_read_reply(resp.data, batch))
        counts = {o.value: sum(1 for v in outcomes.values() if v is o) for o in PlayOutcome}
        log.info("simkl.history.sent", status=resp.status, plays=len(plays), **counts)
        return outcomes

    async def find_in_history(
        self, plays: Sequence[Play], *, tolerance_s: float = MATCH_TOLERANCE_S
    ) -> set[int]:
        """Keys of *plays* whose item SIMKL shows as watched within ±*tolerance_s* seconds of
        ``watched_at``.

        Reads ``GET /sync/all-items/movies`` and ``/sync/all-items/shows?extended=full&
        episode_watched_at=yes`` (at most one request each) with ``date_from``. SIMKL keeps
        only the *latest* watch per movie and per episode: a play matches when that latest
        ``watched_at`` is within the tolerance, so an earlier play of an item watched again
        since cannot be confirmed (it is reported missing; re-sending it to SIMKL is
        harmless). Anime are not looked up.

        ``date_from`` filters on when an item was last *updated* on SIMKL, so it is set per
        play to the earliest moment what we look for can have touched the item, and the
        minimum is taken, less a day (:data:`DATE_FROM_MARGIN`, New York time and skew):

        - a play with ``sent_at`` (an earlier send that may have landed): ``sent_at``. The
          check after a crash or an unconfirmed send then downloads only the items changed
          since that send, however old the play's ``watched_at``.
        - a play without ``sent_at`` (the check before sending an import: was it recorded by
          another app at about that time?): ``watched_at − tolerance``. Cheap for recent
          plays; for plays from long ago this downloads every item updated since then, up to
          the whole library with every episode's watched_at, once per batch (the drainer
          batches 50 plays). Correct, but costly for large old imports: SIMKL has no cheaper
          per-item history look-up in ``all-items``.

        Raises like :meth:`add_history`; ``ValueError`` for a negative tolerance.
        """
        if tolerance_s < 0:
            raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
        if not plays:
            return set()
        token = self._token()
        movies = [p for p in plays if p.item.kind is MediaKind.MOVIE]
        episodes = [p for p in plays if p.item.kind is MediaKind.EPISODE]
        found: set[int] = set()
        if movies:
            data = await self._get_items("movies", movies, tolerance_s, {}, token)
            entries = [e for e in _list(data, "movies") if isinstance(e, dict)]
            for play in movies:
                if any(_has_movie(entry, play, tolerance_s) for entry in entries):
                    found.add(play.key)
        if episodes:
            extra = {"extended": "full", "episode_watched_at": "yes"}
            data = await self._get_items("shows", episodes, tolerance_s, extra, token)
            entries = [e for e in _list(data, "shows") if isinstance(e, dict)]
            for play in episodes:
                if any(_has_episode(entry, play, tolerance_s) for entry in entries):
                    found.add(play.key)
        log.info(
            "simkl.history.checked", plays=len(plays), found=len(found), tolerance_s=tolerance_s
        )
        return found

    async def _get_items(
        self,
        kind: str,
        plays: Sequence[Play],
        tolerance_s: float,
        extra: dict[str, str],
        token: str,
    ) -> Any:
        date_from = _date_from(plays, tolerance_s)
        params = {"date_from": _simkl_time(date_from), **extra}
        path = f"/sync/all-items/{kind}"
        resp = await self._http.request("GET", path, params=params, token=token)
        if not resp.ok:
            raise self._failed(resp, f"GET {path}", token)
        return resp.data

    async def scrobble(self, action: Action, item: Item, progress_pct: float) -> LiveOutcome:
        """Send live state: START → ``/scrobble/start``, PAUSE and STOP → ``/scrobble/pause``.

        *progress_pct* is clamped to [1, 79.9] so SIMKL never records a play from it (its mark
        is 80 %, Apiary "Stop"). Returns SENT (201), ALREADY (409: completed within the last
        hour), NOT_FOUND (404, or the item lacks the ids SIMKL needs — nothing is sent).
        Raises :class:`RetryableError` for the 20-second scrobble lock (400 ``RATE_LIMIT``,
        ``retry_after_s=20``), 429, 5xx and timeouts; :class:`AuthError` for 401 (token revoked);
        :class:`PermanentError` for other 4xx; ``ValueError`` for ``Action.WATCHED``.
        """
        if action is Action.WATCHED:
            raise ValueError("scrobble() sends live state only; record plays with add_history()")
        reason = self.missing_ids(item)
        if reason is not None:
            log.info("simkl.scrobble.unsendable", item=item.label(), reason=reason)
            return LiveOutcome.NOT_FOUND
        if not math.isfinite(progress_pct):
            progress_pct = PROGRESS_MIN_PCT
        progress = round(min(max(progress_pct, PROGRESS_MIN_PCT), PROGRESS_MAX_PCT), 2)
        path = "/scrobble/start" if action is Action.START else "/scrobble/pause"
        body: dict[str, Any] = {"progress": progress}
        if item.kind is MediaKind.MOVIE:
            body["movie"] = _titled(_api_ids(item.ids), item.title, item.year)
        else:
            body["show"] = _titled(_api_ids(item.show_ids), item.show_title, item.show_year)
            body["episode"] = {"season": item.season, "number": item.number}
        token = self._token()
        resp = await self._http.request("POST", path, body=body, token=token)
        if resp.ok:
            outcome = LiveOutcome.SENT
        elif resp.status == 409:
            outcome = LiveOutcome.ALREADY
        elif resp.status == 404:
            outcome = LiveOutcome.NOT_FOUND
        else:
            raise self._failed(resp, f"POST {path}", token)
        log.info("simkl.scrobble", action=action.value, item=item.label(), outcome=outcome.value)
        return outcome

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the caller (shared with Trakt)."""


def _has_movie(entry: dict[str, Any], play: Play, tolerance_s: float) -> bool:
    """True when an all-items movie *entry* is *play*'s movie, last watched at its time."""
    movie = entry.get("movie")
    ids = movie.get("ids") if isinstance(movie, dict) else None
    return bool(_id_pairs(_api_ids(play.item.ids)) & _id_pairs(ids)) and _close_to(
        entry.get("last_watched_at"), play.watched_at, tolerance_s
    )


def _has_episode(entry: dict[str, Any], play: Play, tolerance_s: float) -> bool:
    """True when an all-items show *entry* has *play*'s episode watched at its time."""
    show = entry.get("show")
    if not _id_pairs(_api_ids(play.item.show_ids)) & _id_pairs(
        show.get("ids") if isinstance(show, dict) else None
    ):
        return False
    for season in _list(entry, "seasons"):
        if not isinstance(season, dict) or season.get("number") != play.item.season:
            continue
        for episode in _list(season, "episodes"):
            if (
                isinstance(episode, dict)
                and episode.get("number") == play.item.number
                and _close_to(episode.get("watched_at"), play.watched_at, tolerance_s)
            ):
                return True
    return False


# --------------------------------------------------------------------------- PIN flow


async def pin_auth(
    *,
    session: aiohttp.ClientSession,
    tokens: TokenStore,
    client_id: str,
    api_url: str,
    app_name: str = "crosswatchd",
    app_version: str = __version__,
    out: Callable[[str], None] = print,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    user_agent: str | None = None,
    timeout_s: float = 30.0,
) -> Token:
    """Authorize crosswatchd for a SIMKL account with the PIN flow; store the token (0600).

    ``GET /oauth/pin`` → ``{user_code, verification_url, expires_in, interval}``; *out* shows
    the URL and code; then ``GET /oauth/pin/{user_code}`` every ``interval`` seconds (5 more
    after each "Slow down") until ``{"result": "OK", "access_token"}`` (Apiary "Authentication
    - PIN"). Waiting is done with *sleep*; time spent is the larger of the slept total and the
    loop clock, so an injected sleep makes expiry testable.

    Returns the stored :class:`Token`. Raises :class:`AuthError` when the code expires
    (``expires_in``, 900 s on SIMKL), disappears (a poll answered with a fresh ``device_code``)
    or SIMKL refuses the app (e.g. 412 bad client id); :class:`RetryableError` when the first
    request cannot reach SIMKL. Transient failures while polling are ridden out.
    """
    http = _Client(
        session=session,
        client_id=client_id,
        api_url=api_url,
        app_name=app_name,
        app_version=app_version,
        user_agent=user_agent,
        timeout_s=timeout_s,
        limiter=None,
    )
    resp = await http.request("GET", "/oauth/pin")
    data = resp.data if isinstance(resp.data, dict) else {}
    user_code = data.get("user_code")
    if not resp.ok or data.get("result") != "OK" or not user_code:
        raise _pin_error(resp, "requesting a PIN")
    url = data.get("verification_url") or data.get("verification_uri") or "https://simkl.com/pin"
    interval = float(data.get("interval") or 5)
    expires_in = float(data.get("expires_in") or 900)
    out(f"Open {url} and enter the code {user_code} (valid for {expires_in / 60:.0f} minutes).")
    loop = asyncio.get_running_loop()
    started, slept = loop.time(), 0.0
    poll_path = f"/oauth/pin/{quote(str(user_code), safe='')}"
    while True:
        await sleep(interval)
        slept += interval
        if max(slept, loop.time() - started) >= expires_in:
            raise AuthError(NAME, f"the code expired before it was entered; {REAUTH_HINT} again")
        try:
            resp = await http.request("GET", poll_path)
        except RetryableError as exc:
            log.warning("simkl.pin.poll_failed", error=str(exc))
            continue
        if resp.status == 429 or resp.status >= 500:
            log.warning("simkl.pin.poll_failed", status=resp.status)
            continue
        data = resp.data if isinstance(resp.data, dict) else {}
        if not resp.ok:
            raise _pin_error(resp, "checking the PIN")
        if data.get("result") == "OK" and data.get("access_token"):
            token = tokens.save({k: v for k, v in data.items() if k != "result"})
            log.info("simkl.pin.authorized")
            out("SIMKL authorized.")
            return token
        if "device_code" in data:  # the code is gone; SIMKL answered with a fresh one
            raise AuthError(NAME, f"the code is no longer valid; {REAUTH_HINT} again")
        if "slow" in str(data.get("message", "")).lower():
            interval += SLOW_DOWN_STEP_S
            log.info("simkl.pin.slow_down", interval_s=interval)
            continue
        log.debug("simkl.pin.pending")


def _pin_error(resp: _Response, what: str) -> AuthError:
    error_id, message = resp.envelope()
    detail = ": ".join(part for part in (error_id, message) if part) or "unexpected answer"
    return AuthError(NAME, f"{what} failed: HTTP {resp.status} {detail}")
