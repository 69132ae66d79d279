"""SIMKL as a delivery target: history and live scrobbles.

Identification, the limiter, status translation and GET retries are :mod:`.http`'s; the
token and the PIN flow :mod:`.auth`'s; the history body, its reply, ``date_from`` and
all-items matching :mod:`.history`'s pure functions. Facts come from ``shared/reference/simkl``
("Apiary" = the SIMKL API blueprint, "docs" = api.simkl.org), named in each docstring.

A POST is never retried in-process: after a timeout the play may have landed, and only
:meth:`SimklProvider.find_in_history` can tell.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any, Final

import aiohttp
import structlog
from pydantic import ValidationError

from crosswatchd.http import GetRetry
from crosswatchd.models import Action, Item, MediaKind
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
from crosswatchd.providers.simkl.auth import SimklAuth
from crosswatchd.providers.simkl.changes import RatingsReply, rating_results, ratings_body
from crosswatchd.providers.simkl.history import (
    MATCH_TOLERANCE_S,
    MOVIE_ID_KEYS,
    SHOW_ID_KEYS,
    AllItems,
    HistoryReply,
    api_ids,
    build_batch,
    date_from,
    found_in,
    outcomes_of,
    show_api_ids,
    simkl_time,
    titled,
)
from crosswatchd.providers.simkl.http import NAME, json_data, simkl_client
from crosswatchd.providers.simkl.sync import SimklSync
from crosswatchd.providers.simkl.watchlist import (
    ACTIVITY_FIELDS,
    PLAN_TO_WATCH,
    READ_TYPES,
    apply_watchlist,
    plan_to_watch_item,
    rows_of,
)
from crosswatchd.ratelimit import Limiter
from crosswatchd.tokens import TokenStore

__all__ = ["MAX_BATCH", "SimklProvider"]

log = structlog.get_logger(__name__)

#: Plays per ``POST /sync/history``. SIMKL documents no body limit for it; the only per-request
#: item cap its sync API documents is 100 (``/sync/watched`` with ``extended``, Apiary "Check
#: if watched"), so 100 it is, as on Trakt: at 1 POST/s that drains 100 plays/s (10,000 in
#: under 2 minutes; bench/drain.py). The reply's ``added`` counts are per type, not per play:
#: a batch they do not account for is looked up once (one ``all-items`` GET since the send).
MAX_BATCH: Final = 100
#: Live progress is clamped into this range: never 0 (some players report 0 on resume) and
#: below SIMKL's 80 % mark, so a live update can never record a play.
PROGRESS_MIN_PCT: Final = 1.0
PROGRESS_MAX_PCT: Final = 79.9


class SimklProvider:
    """SIMKL delivery target; implements :class:`crosswatchd.providers.base.Provider`.

    *session* belongs to the caller, who closes it (:meth:`close` leaves it open). *limiter* is
    awaited before every request (docs "Rate limits": 10 GET/s and 1 POST/s per token) and
    told about every response. *tokens* is re-read on every call, so ``crosswatchd auth simkl``
    takes effect without a restart. *api_url* is ``https://api.simkl.com`` in production.
    *get_retry* is the in-process retry policy of GETs.

    Errors (:mod:`.http`'s table): :class:`~crosswatchd.errors.RetryableError` (429, 5xx,
    timeouts, the scrobble lock, a non-JSON 2xx), :class:`~crosswatchd.errors.AuthError` (no
    token; 401, which also revokes the token; 412 bad client id, which does not),
    :class:`~crosswatchd.errors.PermanentError` (other 4xx, ``scope=REQUEST``).
    """

    name = NAME
    max_batch = MAX_BATCH
    max_changes = 100
    #: SIMKL keeps one watched state (and last watched_at) per movie or episode.
    keeps_every_play = False
    #: The activity fields that move with Plan to Watch (:mod:`.watchlist`).
    watchlist_activity = ACTIVITY_FIELDS

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        limiter: Limiter,
        tokens: TokenStore,
        client_id: str,
        api_url: str,
        timeout_s: float = 30.0,
        get_retry: GetRetry | None = None,
    ) -> None:
        self._auth = SimklAuth(tokens)
        self._http = simkl_client(
            session=session,
            client_id=client_id,
            api_url=api_url,
            timeout_s=timeout_s,
            limiter=limiter,
            get_retry=get_retry,
        )
        # Held across a Plan to Watch check and the sends it decides, and around sending
        # plays: a play of ours never lands between the check and a history/remove.
        self._lists_lock = asyncio.Lock()

    def is_authorized(self) -> bool:
        """True when a token is stored (SIMKL tokens do not expire)."""
        return self._auth.is_authorized()

    def missing_ids(self, item: Item) -> str | None:
        """Why SIMKL cannot take *item*, or ``None``.

        A movie needs an imdb, tmdb or simkl id; an episode needs its **show's** imdb, tmdb,
        tvdb or simkl id plus season and number (Apiary "Add Items to the history"); a show
        its imdb, tmdb, tvdb or simkl id (Apiary "Add Ratings"). Seasons are never sent.
        """
        if item.kind is MediaKind.MOVIE:
            if MOVIE_ID_KEYS & api_ids(item.ids).keys():
                return None
            return "SIMKL needs an imdb, tmdb or simkl id for a movie"
        if item.kind is MediaKind.SHOW:
            if SHOW_ID_KEYS & api_ids(item.ids.merged(item.show_ids)).keys():
                return None
            return "SIMKL needs an imdb, tmdb, tvdb or simkl id for a show"
        if item.kind is MediaKind.SEASON:
            return "SIMKL does not rate or list seasons"
        if not SHOW_ID_KEYS & api_ids(item.show_ids).keys():
            return "SIMKL needs the show's imdb, tmdb, tvdb or simkl id for an episode"
        if item.season is None or item.number is None:
            return "SIMKL needs the season and episode number of an episode"
        return None

    async def add_history(self, plays: Sequence[Play]) -> dict[int, PlayOutcome]:
        """``POST /sync/history`` with each play's ``watched_at``; an outcome per ``Play.key``.

        The body is :func:`~.history.build_batch`'s (episodes under their show's ids). 200 and
        201 are both success. ``not_found`` entries become NOT_FOUND; the rest are ADDED only if
        the ``added`` counts account for exactly them, else UNCONFIRMED (check with
        :meth:`find_in_history`, never assume; :func:`~.history.outcomes_of`). Plays that
        :meth:`missing_ids` rejects are NOT_FOUND without being sent. More than
        :data:`MAX_BATCH` plays is a caller bug (``ValueError``).

        Raises :class:`~crosswatchd.errors.RetryableError` (429, 5xx, timeout — the play may
        have landed), :class:`~crosswatchd.errors.AuthError` (no token; 401, which also
        revokes the token; 412 bad client id, which does not),
        :class:`~crosswatchd.errors.PermanentError` (other 4xx, ``scope=REQUEST``).
        """
        if len(plays) > self.max_batch:
            raise ValueError(f"at most {self.max_batch} plays per call, got {len(plays)}")
        sendable, outcomes = split_sendable(NAME, plays, self.missing_ids)
        if not sendable:
            return outcomes
        token = self._auth.token()
        batch = build_batch(sendable)
        async with self._lists_lock:
            answer = await self._http.send(
                "POST", "/sync/history", json_body=batch.body(), bearer=token
            )
        if not answer.ok:
            raise self._auth.error_for(answer, token)
        try:
            reply: HistoryReply | None = HistoryReply.model_validate(json_data(answer))
        except ValidationError:  # `null` or not an object: nothing confirmed
            reply = None
        outcomes.update(outcomes_of(reply, batch))
        counts = {o.value: sum(1 for v in outcomes.values() if v is o) for o in PlayOutcome}
        log.info("simkl.history.sent", status=answer.status, plays=len(plays), **counts)
        return outcomes

    async def find_in_history(
        self, plays: Sequence[Play], *, tolerance_s: float = MATCH_TOLERANCE_S
    ) -> set[int]:
        """Keys of *plays* whose item SIMKL shows as watched within ±*tolerance_s* seconds of
        ``watched_at``.

        Reads ``GET /sync/all-items/movies`` and ``/sync/all-items/shows?extended=full&
        episode_watched_at=yes`` (at most one request each, retried in-process a few times on
        transient failures) with ``date_from`` (Apiary "Get All Items"). SIMKL keeps only the
        *latest* watch per movie and per episode: a play matches when that latest
        ``watched_at`` is within the tolerance (:func:`~.history.found_in`), so an earlier play
        of an item watched again since cannot be confirmed (it is reported missing; re-sending
        it to SIMKL is harmless). Anime are not looked up.

        ``date_from`` (:func:`~.history.date_from`) filters on when an item was last *updated*
        on SIMKL, so it is set per play to the earliest moment what we look for can have
        touched the item, and the minimum is taken, less a day (New York time and skew):

        - a play with ``sent_at`` (an earlier send that may have landed): ``sent_at``. The
          check after a crash or an unconfirmed send then downloads only the items changed
          since that send, however old the play's ``watched_at``.
        - a play without ``sent_at`` (the check before sending an import: was it recorded by
          another app at about that time?): ``watched_at − tolerance``. Cheap for recent
          plays; for plays from long ago this downloads every item updated since then, up to
          the whole library with every episode's watched_at, once per batch (the drainer
          batches 50 plays). Correct, but costly for large old imports: SIMKL has no cheaper
          per-item history look-up in ``all-items``. Apps that pull the whole library without
          ``date_from`` get rate-limited or their client id blocked (api.simkl.org "Sync").

        Raises like :meth:`add_history`; ``ValueError`` for a negative tolerance.
        """
        if tolerance_s < 0:
            raise ValueError(f"tolerance_s must be >= 0, got {tolerance_s}")
        if not plays:
            return set()
        token = self._auth.token()
        movies = [p for p in plays if p.item.kind is MediaKind.MOVIE]
        episodes = [p for p in plays if p.item.kind is MediaKind.EPISODE]
        found: set[int] = set()
        if movies:
            items = await self._all_items("movies", movies, tolerance_s, {}, token)
            found |= found_in(items, movies, tolerance_s)
        if episodes:
            extra = {"extended": "full", "episode_watched_at": "yes"}
            items = await self._all_items("shows", episodes, tolerance_s, extra, token)
            found |= found_in(items, episodes, tolerance_s)
        log.info(
            "simkl.history.checked", plays=len(plays), found=len(found), tolerance_s=tolerance_s
        )
        return found

    async def _all_items(
        self,
        kind: str,
        plays: Sequence[Play],
        tolerance_s: float,
        extra: dict[str, str],
        token: str,
    ) -> AllItems:
        """``GET /sync/all-items/{kind}`` since :func:`~.history.date_from` of *plays*;
        ``null`` or an answer of another shape reads as no items."""
        params = {"date_from": simkl_time(date_from(plays, tolerance_s)), **extra}
        path = f"/sync/all-items/{kind}"

        async def attempt() -> AllItems:
            answer = await self._http.send("GET", path, params=params, bearer=token)
            if not answer.ok:
                raise self._auth.error_for(answer, token)
            try:
                return AllItems.model_validate(json_data(answer))
            except ValidationError:
                return AllItems()

        return await self._http.retry_get(attempt, path=path)

    async def scrobble(self, action: Action, item: Item, progress_pct: float) -> LiveOutcome:
        """Send live state: START → ``/scrobble/start``, PAUSE and STOP → ``/scrobble/pause``.

        *progress_pct* is clamped to [1, 79.9] so SIMKL never records a play from it (its mark
        is 80 %, Apiary "Stop"). Returns SENT (201), ALREADY (409: completed within the last
        hour), NOT_FOUND (404, or the item lacks the ids SIMKL needs — nothing is sent).
        Raises :class:`~crosswatchd.errors.RetryableError` for the 20-second scrobble lock (400
        ``RATE_LIMIT``, ``retry_after_s=20``), 429, 5xx and timeouts;
        :class:`~crosswatchd.errors.AuthError` for 401 (token revoked);
        :class:`~crosswatchd.errors.PermanentError` for other 4xx; ``ValueError`` for
        ``Action.WATCHED``.
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
            body["movie"] = titled(api_ids(item.ids), item.title, item.year)
        else:
            body["show"] = titled(show_api_ids(item.show_ids), item.show_title, item.show_year)
            body["episode"] = {"season": item.season, "number": item.number}
        token = self._auth.token()
        answer = await self._http.send("POST", path, json_body=body, bearer=token)
        if answer.ok:
            json_data(answer)  # a 2xx that is not JSON is a proxy page, not SIMKL
            outcome = LiveOutcome.SENT
        elif answer.status == 409:
            outcome = LiveOutcome.ALREADY
        elif answer.status == 404:
            outcome = LiveOutcome.NOT_FOUND
        else:
            raise self._auth.error_for(answer, token)
        log.info("simkl.scrobble", action=action.value, item=item.label(), outcome=outcome.value)
        return outcome

    async def last_activities(self) -> Activities:
        """``GET /sync/activities`` (Apiary "Get last activity"; api.simkl.org asks every
        client to call it before any ``all-items`` read), retried in-process a few times on
        transient failures; raises like :meth:`add_history`."""
        token = self._auth.token()

        async def attempt() -> Activities:
            answer = await self._http.send("GET", "/sync/activities", bearer=token)
            if not answer.ok:
                raise self._auth.error_for(answer, token)
            return Activities.parse(json_data(answer))

        return await self._http.retry_get(attempt, path="/sync/activities")

    async def apply_changes(self, changes: Sequence[Change]) -> dict[int, ChangeResult]:
        """Apply rating and watchlist changes.

        Ratings: ``POST /sync/ratings`` for ratings set, ``POST /sync/ratings/remove`` for
        ratings cleared (Apiary "Add Ratings", "Remove Ratings"; 200 and 201 are both
        success). Items the reply's ``not_found`` echoes are ``NOT_FOUND``, the rest
        ``APPLIED``; a reply that is not an object confirms nothing specific, and the calls
        being idempotent, counts as applied.

        Watchlist changes go to Plan to Watch by :func:`~.watchlist.apply_watchlist`'s rules
        (checked with ``/sync/watched`` first; an item held in another list is ``KEPT``;
        only an item still in Plan to Watch is removed), holding the account's lock.

        Raises like :meth:`add_history`; ``ValueError`` for more than :attr:`max_changes`
        changes or a change of another kind (a caller bug).
        """
        if len(changes) > self.max_changes:
            raise ValueError(f"at most {self.max_changes} changes per call, got {len(changes)}")
        results: dict[int, ChangeResult] = {}
        rate = [c for c in changes if c.action is Action.RATE and c.rating]
        clear = [c for c in changes if c.action is Action.RATE and not c.rating]
        for path, group, with_rating in (
            ("/sync/ratings", rate, True),
            ("/sync/ratings/remove", clear, False),
        ):
            if not group:
                continue
            body, placed = ratings_body(group, with_rating=with_rating)
            data = await self._post(path, body)
            try:
                reply: RatingsReply | None = RatingsReply.model_validate(data)
            except ValidationError:
                reply = None
            answered = rating_results(reply, placed)
            results.update(answered)
            log.info(
                "simkl.ratings.sent",
                path=path,
                changes=len(group),
                not_found=sum(1 for r in answered.values() if r.outcome is ChangeOutcome.NOT_FOUND),
            )
        listed = [c for c in changes if c.action in (Action.WATCHLIST_ADD, Action.WATCHLIST_REMOVE)]
        if listed:
            async with self._lists_lock:
                answered = await apply_watchlist(self._post, listed)
            results.update(answered)
            log.info(
                "simkl.plantowatch.sent",
                changes=len(listed),
                **{
                    o.value: sum(1 for r in answered.values() if r.outcome is o)
                    for o in ChangeOutcome
                },
            )
        unknown = [c.key for c in changes if c.key not in results]
        if unknown:
            raise ValueError(f"changes of no kind SIMKL takes here: keys {unknown}")
        return results

    async def _post(self, path: str, body: Any) -> Any:
        """A POST with the user's token: the decoded 2xx body (None when empty); raises like
        :meth:`add_history` otherwise."""
        token = self._auth.token()
        answer = await self._http.send("POST", path, json_body=body, bearer=token)
        if not answer.ok:
            raise self._auth.error_for(answer, token)
        return json_data(answer)

    async def read_watchlist(self) -> list[Item]:
        """Every movie and show in Plan to Watch: ``GET /sync/all-items/{movies|shows|anime}/
        plantowatch`` (``null``: none; Apiary "Get All Items"), each GET retried in-process a
        few times. Call only after :meth:`last_activities` showed a change of
        :attr:`watchlist_activity` (or for a first read). Raises like :meth:`add_history`."""
        token = self._auth.token()
        items: list[Item] = []
        for kind_path, kind in READ_TYPES:
            path = f"/sync/all-items/{kind_path}/{PLAN_TO_WATCH}"

            async def attempt(path: str = path) -> Any:
                answer = await self._http.send("GET", path, bearer=token)
                if not answer.ok:
                    raise self._auth.error_for(answer, token)
                return json_data(answer)

            for row in rows_of(await self._http.retry_get(attempt, path=path)):
                item = plan_to_watch_item(row, kind)
                if item is not None:
                    items.append(item)
        return items

    def sync(self) -> SimklSync:
        """Whole-account reads (watched items, ratings) through this provider's client, for
        reconcile."""
        return SimklSync(http=self._http, auth=self._auth)

    async def close(self) -> None:
        """Nothing to release: the HTTP session belongs to the caller (shared with Trakt)."""
