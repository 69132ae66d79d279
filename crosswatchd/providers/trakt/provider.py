"""Trakt as a delivery target: history and live scrobbles.

Facts used here come from Trakt's API Blueprint (``shared/reference/trakt/trakt.apib``),
sections named in each docstring. Headers, the limiter, status translation and GET retries are
:mod:`.http`'s; tokens are :mod:`.auth`'s; the history body, its reply and history matching
are :mod:`.history`'s pure functions.

"Sync / Add to History" has no de-duplication: a ``POST /sync/history`` that timed out may have
landed, so it is never retried in-process; the drainer asks :meth:`TraktProvider.find_in_history`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import aiohttp
import structlog
from pydantic import ConfigDict, RootModel

from crosswatchd.errors import PermanentError
from crosswatchd.http import GetRetry
from crosswatchd.models import Action, Item, MediaKind, format_utc
from crosswatchd.providers.base import (
    Activities,
    Change,
    ChangeOutcome,
    ChangeResult,
    LiveOutcome,
    Play,
    PlayOutcome,
    split_sendable,
)
from crosswatchd.providers.trakt.auth import TraktAuth
from crosswatchd.providers.trakt.changes import (
    SEASON_ID_KEYS,
    ChangeReply,
    change_body,
    change_results,
)
from crosswatchd.providers.trakt.history import (
    EPISODE_ID_KEYS,
    MOVIE_ID_KEYS,
    SHOW_ID_KEYS,
    HistoryEntry,
    HistoryPage,
    HistoryReply,
    api_ids,
    clusters,
    history_body,
    matches,
    outcomes_of,
)
from crosswatchd.providers.trakt.http import NAME, raise_for_status, read_json, trakt_client
from crosswatchd.providers.trakt.sync import TraktSync
from crosswatchd.providers.trakt.watchlist import read_watchlist
from crosswatchd.ratelimit import Limiter
from crosswatchd.tokens import TokenStore

__all__ = ["TraktProvider"]

log = structlog.get_logger(__name__)

#: Default tolerance of :meth:`TraktProvider.find_in_history`: a history entry within this many
#: seconds of a play's watched_at is that play.
_MATCH_TOLERANCE_S: Final = 5.0
#: Scrobble progress is kept below Trakt's 80 % scrobble mark ("Scrobble / Stop").
_SCROBBLE_MIN_PCT: Final = 1.0
_SCROBBLE_MAX_PCT: Final = 79.9
_HISTORY_PAGE_LIMIT: Final = 100
_HISTORY_MAX_PAGES: Final = 200


class _AnyJson(RootModel[Any]):
    """A 2xx answer whose content is not read (a scrobble's): it only has to be JSON."""

    model_config = ConfigDict(defer_build=True)


class TraktProvider:
    """Trakt (https://trakt.tv) behind :class:`~crosswatchd.providers.base.Provider`.

    All collaborators are injected: the HTTP *session* (owned by the caller), the *limiter*
    (acquired before every HTTP attempt, fed every response), the *tokens* store, the
    credentials, *api_url* (``https://api.trakt.tv`` or a fake), per-request *timeout_s*,
    a wall clock *unix_s* (seconds) for token expiry and the in-process *get_retry* policy.

    Errors: :class:`RetryableError` (429, 5xx/52x, timeouts, connection errors, non-JSON 2xx),
    :class:`PermanentError` (420, 423, 426 with ``scope=ACCOUNT``; other 4xx with
    ``scope=REQUEST``), :class:`AuthError` (no token; refresh refused or 401 after a
    refresh, both of which also revoke the token; 403 app refused, which does not).
    """

    name = NAME
    max_batch = 100
    max_changes = 100
    #: Trakt history is a list of plays ("Sync / Add to History": no de-duplication).
    keeps_every_play = True
    #: The activity fields that move with the watchlist ("Sync / Last Activities").
    watchlist_activity = (
        ("watchlist", "updated_at"),
        ("movies", "watchlisted_at"),
        ("shows", "watchlisted_at"),
    )

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
        unix_s: Callable[[], float] = time.time,
        get_retry: GetRetry | None = None,
    ) -> None:
        self._http = trakt_client(
            session=session,
            client_id=client_id,
            api_url=api_url,
            timeout_s=timeout_s,
            limiter=limiter,
            get_retry=get_retry,
        )
        self._auth = TraktAuth(
            http=self._http,
            tokens=tokens,
            client_id=client_id,
            client_secret=client_secret,
            unix_s=unix_s,
        )

    def is_authorized(self) -> bool:
        """True when a token is stored (it may still need a refresh on first use)."""
        return self._auth.is_authorized()

    def missing_ids(self, item: Item) -> str | None:
        """Why Trakt cannot take *item*, or ``None``.

        A movie needs a trakt, imdb or tmdb id; an episode needs its own trakt/tvdb/imdb/tmdb
        id, or its show's plus season and number ("Sync / Add to History", "Scrobble"); a show
        its trakt/tvdb/imdb/tmdb id; a season its own trakt/tvdb/tmdb id, or its show's plus
        its number ("Sync / Add Ratings").
        """
        if item.kind is MediaKind.MOVIE:
            if api_ids(item.ids, MOVIE_ID_KEYS):
                return None
            return "movie has no trakt, imdb or tmdb id"
        if item.kind is MediaKind.SHOW:
            if api_ids(item.ids.merged(item.show_ids), SHOW_ID_KEYS):
                return None
            return "show has no trakt, tvdb, imdb or tmdb id"
        if item.kind is MediaKind.SEASON:
            if api_ids(item.ids, SEASON_ID_KEYS):
                return None
            if api_ids(item.show_ids, SHOW_ID_KEYS) and item.season is not None:
                return None
            return "season has no ids of its own, nor its show's ids and its number"
        if api_ids(item.ids, EPISODE_ID_KEYS):
            return None
        if not api_ids(item.show_ids, SHOW_ID_KEYS):
            return "episode has no trakt/tvdb/imdb/tmdb id of its own or of its show"
        if item.season is None or item.number is None:
            return "episode has only show ids and no season/episode number"
        return None

    async def add_history(self, plays: Sequence[Play]) -> dict[int, PlayOutcome]:
        """Record *plays* with one ``POST /sync/history`` ("Sync / Add to History").

        The body is :func:`~.history.history_body`'s; the answer's ``not_found`` entries are
        mapped back to plays (``NOT_FOUND``); when ``added`` counts the rest of a type
        exactly, those are ``ADDED``, otherwise ``UNCONFIRMED`` (:func:`~.history.outcomes_of`).
        Plays :meth:`missing_ids` rejects are ``NOT_FOUND`` without being sent. More than
        :attr:`max_batch` plays is a caller bug (``ValueError``).

        Never retried in-process: a timeout raises :class:`RetryableError` though the plays
        may have been recorded (Trakt does not de-duplicate). A 2xx answer that is not a JSON
        object is :class:`RetryableError` too.
        """
        if len(plays) > self.max_batch:
            raise ValueError(f"at most {self.max_batch} plays per call, got {len(plays)}")
        sendable, outcomes = split_sendable(NAME, plays, self.missing_ids)
        if not sendable:
            return outcomes
        body, sent = history_body(sendable)
        answer = await self._auth.call("POST", "/sync/history", json_body=body)
        raise_for_status(answer)
        reply = read_json(answer, HistoryReply, "unexpected answer shape")
        answered = outcomes_of(reply, sent)
        outcomes.update(answered)
        log.info(
            "trakt.history.sent",
            plays=len(sent),
            added=reply.added.model_dump() if reply.added else {},
            not_found=sum(1 for o in answered.values() if o is PlayOutcome.NOT_FOUND),
            unconfirmed=sum(1 for o in outcomes.values() if o is PlayOutcome.UNCONFIRMED),
        )
        return outcomes

    async def find_in_history(
        self, plays: Sequence[Play], *, tolerance_s: float = _MATCH_TOLERANCE_S
    ) -> set[int]:
        """Keys of *plays* already in the account's history: the same item, watched within
        ±*tolerance_s* seconds of the play's ``watched_at`` ("Sync / Get History").

        Plays are grouped per type (movies, episodes) into time ranges
        (:func:`~.history.clusters`: plays whose windows lie within 12 h of each other share
        one). Each range is one ranged query, ``start_at`` = first play − tolerance,
        ``end_at`` = last play + tolerance, every page followed ("Pagination", 100 per page).
        A range of one item with a known trakt id uses ``GET /sync/history/{type}/{trakt_id}``,
        others ``GET /sync/history/{type}``; so a batch costs one GET per range and page, not
        one per play, whatever the tolerance (e.g. 14 400 s for the import dedupe window).

        Entries match by any movie id, the episode's own ids, or show ids + season + number;
        one history entry accounts for at most one play (:func:`~.history.matches`).

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
            for cluster in clusters(group, tolerance):
                trakt_ids = {p.item.ids.trakt for p in cluster}
                only = next(iter(trakt_ids)) if len(trakt_ids) == 1 else None
                path = f"/sync/history/{kind}"
                if only and only.isdigit():
                    path += f"/{only}"
                entries = await self._history(
                    path, cluster[0].watched_at - tolerance, cluster[-1].watched_at + tolerance
                )
                queries += 1
                found |= matches(entries, cluster, tolerance_s)
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
            body["movie"] = {"ids": api_ids(item.ids, MOVIE_ID_KEYS)}
        elif own := api_ids(item.ids, EPISODE_ID_KEYS):
            body["episode"] = {"ids": own}
        else:
            body["show"] = {"ids": api_ids(item.show_ids, SHOW_ID_KEYS)}
            body["episode"] = {"season": item.season, "number": item.number}
        answer = await self._auth.call("POST", path, json_body=body)
        if answer.status == 409:
            log.info("trakt.scrobble.already", path=path, item=item.label())
            return LiveOutcome.ALREADY
        if answer.status == 404:
            log.info("trakt.scrobble.not_found", path=path, item=item.label())
            return LiveOutcome.NOT_FOUND
        raise_for_status(answer)
        read_json(answer, _AnyJson, "unexpected answer shape")
        log.info("trakt.scrobble.sent", path=path, item=item.label(), progress=progress)
        return LiveOutcome.SENT

    async def last_activities(self) -> Activities:
        """``GET /sync/last_activities`` ("Sync / Last Activities"), retried in-process a few
        times on transient failures; raises like :meth:`add_history`."""

        async def get() -> Activities:
            answer = await self._auth.call("GET", "/sync/last_activities")
            raise_for_status(answer)
            return Activities.parse(read_json(answer, _AnyJson, "expected an object").root)

        return await self._http.retry_get(get, path="/sync/last_activities")

    async def apply_changes(self, changes: Sequence[Change]) -> dict[int, ChangeResult]:
        """Apply ratings and watchlist changes, one request per kind of change present:
        ``POST /sync/ratings`` (ratings set), ``/sync/ratings/remove`` (ratings cleared),
        ``/sync/watchlist/remove`` and then ``/sync/watchlist`` (removals first, so they make
        room) ("Sync / Add Ratings", "Remove Ratings", "Add to Watchlist", "Remove from
        Watchlist"). Items the reply's ``not_found`` names are ``NOT_FOUND``, the rest
        ``APPLIED`` (:func:`~.changes.change_results`).

        A full watchlist answers 420 with ``X-Account-Limit`` and adds nothing ("VIP
        Methods"): the additions are then tried one at a time, so as many as fit are added;
        from the first one refused on, the rest are ``LIMIT`` with a note naming the limit.
        Other errors raise like :meth:`add_history` (a 420 on ratings is ``ACCOUNT``-scoped).
        More than :attr:`max_changes` changes is a caller bug (``ValueError``).
        """
        if len(changes) > self.max_changes:
            raise ValueError(f"at most {self.max_changes} changes per call, got {len(changes)}")
        results: dict[int, ChangeResult] = {}
        groups = (
            ("/sync/ratings", [c for c in changes if c.action is Action.RATE and c.rating], True),
            (
                "/sync/ratings/remove",
                [c for c in changes if c.action is Action.RATE and not c.rating],
                False,
            ),
            (
                "/sync/watchlist/remove",
                [c for c in changes if c.action is Action.WATCHLIST_REMOVE],
                False,
            ),
        )
        for path, group, with_rating in groups:
            if group:
                results.update(await self._change(path, group, with_rating=with_rating))
        additions = [c for c in changes if c.action is Action.WATCHLIST_ADD]
        if additions:
            results.update(await self._watchlist_add(additions))
        unknown = [c.key for c in changes if c.key not in results]
        if unknown:
            raise ValueError(f"changes of no kind Trakt takes: keys {unknown}")
        return results

    async def _change(
        self, path: str, changes: Sequence[Change], *, with_rating: bool
    ) -> dict[int, ChangeResult]:
        body, placed = change_body(changes, with_rating=with_rating)
        answer = await self._auth.call("POST", path, json_body=body)
        raise_for_status(answer)
        results = change_results(read_json(answer, ChangeReply, "unexpected answer shape"), placed)
        log.info(
            "trakt.changes.sent",
            path=path,
            changes=len(changes),
            not_found=sum(1 for r in results.values() if r.outcome is ChangeOutcome.NOT_FOUND),
        )
        return results

    async def _watchlist_add(self, changes: Sequence[Change]) -> dict[int, ChangeResult]:
        try:
            return await self._change("/sync/watchlist", changes, with_rating=False)
        except PermanentError as exc:
            if exc.status != 420:
                raise
            full = exc
        results: dict[int, ChangeResult] = {}
        if len(changes) > 1:
            for index, change in enumerate(changes):
                try:
                    results.update(
                        await self._change("/sync/watchlist", [change], with_rating=False)
                    )
                except PermanentError as exc:
                    if exc.status != 420:
                        raise
                    full = exc
                    changes = changes[index:]
                    break
            else:
                return results
        note = f"trakt watchlist is full: {full.message}"
        log.warning("trakt.watchlist.full", refused=len(changes), reason=full.message)
        results.update({c.key: ChangeResult(ChangeOutcome.LIMIT, note) for c in changes})
        return results

    async def read_watchlist(self) -> list[Item]:
        """Every movie and show on the watchlist, every page ("Sync / Get Watchlist";
        :func:`~.watchlist.read_watchlist`). Call only after :meth:`last_activities` showed
        a change of :attr:`watchlist_activity` (or for a first read). Raises like
        :meth:`add_history`."""
        return await read_watchlist(self._auth.call, self._http.retry_get)

    def sync(self) -> TraktSync:
        """Whole-account reads (history, ratings) through this provider's client, for
        reconcile."""
        return TraktSync(http=self._http, auth=self._auth)

    async def close(self) -> None:
        """Nothing to release: the session belongs to the caller."""

    async def _history(self, path: str, start: datetime, end: datetime) -> list[HistoryEntry]:
        """All history entries at *path* watched between *start* and *end*, every page; each
        page a GET with in-process retries."""
        params = {
            "start_at": format_utc(start),
            "end_at": format_utc(end),
            "limit": str(_HISTORY_PAGE_LIMIT),
        }
        entries: list[HistoryEntry] = []
        for page in range(1, _HISTORY_MAX_PAGES + 1):
            page_params = {**params, "page": str(page)}

            async def get(
                page_params: dict[str, str] = page_params,
            ) -> tuple[list[HistoryEntry], int]:
                answer = await self._auth.call("GET", path, params=page_params)
                raise_for_status(answer)
                batch = read_json(answer, HistoryPage, "expected a list").root
                try:
                    pages = int(answer.headers.get("X-Pagination-Page-Count", "1"))
                except ValueError:
                    pages = 1
                return batch, pages

            batch, pages = await self._http.retry_get(get, path=path)
            entries.extend(batch)
            if page >= pages or len(batch) < _HISTORY_PAGE_LIMIT:
                break
        else:
            log.warning("trakt.history.truncated", path=path, pages=_HISTORY_MAX_PAGES)
        return entries
