"""TraktProvider against the strict fake Trakt: history, lookups, scrobbles, errors, pacing.

Token refresh and the device flow are in ``test_trakt_auth.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crosswatchd.errors import AuthError, PermanentError, RetryableError
from crosswatchd.http import GetRetry
from crosswatchd.models import Action, Ids, Item, MediaKind, format_utc
from crosswatchd.providers.base import LiveOutcome, Play, PlayOutcome
from crosswatchd.providers.trakt import TraktProvider
from crosswatchd.ratelimit import Limiter, TokenBucket
from crosswatchd.tokens.files import TokenFile
from tests.fakes.catalog import default_catalog
from tests.fakes.trakt import FakeTrakt

CID, SECRET = "cid", "csecret"
T0 = datetime(2026, 11, 21, 10, 54, 52, tzinfo=UTC)

BIG_TROUBLE = Item(
    MediaKind.MOVIE, "Big Trouble in Little China", 1986, ids=Ids(imdb="tt0090728", tmdb="6978")
)
BARRY_LYNDON = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))
UNKNOWN_MOVIE = Item(MediaKind.MOVIE, "Nothing", 2000, ids=Ids(imdb="tt0000111"))
# Legacy thetvdb agent: only the show's ids plus season/number.
FUTURAMA_2X15 = Item(
    MediaKind.EPISODE, show_title="Futurama", show_ids=Ids(tvdb="73871"), season=2, number=15
)
# New Plex agent: the episode's own ids.
BOBS_9X15 = Item(
    MediaKind.EPISODE,
    show_title="Bob's Burgers",
    ids=Ids(imdb="tt9413736", tmdb="1707381", tvdb="7047159"),
    season=9,
    number=15,
)
UNKNOWN_EPISODE = Item(MediaKind.EPISODE, ids=Ids(tvdb="999999999"), season=1, number=1)
UNKNOWN_SHOW_EPISODE = Item(MediaKind.EPISODE, show_ids=Ids(tvdb="888888"), season=1, number=1)


def fast_limiter() -> Limiter:
    """Fast buckets for tests not about pacing (the fake still allows 1 authed POST/s)."""
    return Limiter.per_second(post_per_s=20, get_per_s=100)


class RecordingLimiter(Limiter):
    """A real limiter that also records every acquire and observed status."""

    def __init__(self) -> None:
        super().__init__({"post": TokenBucket(20.0), "get": TokenBucket(100.0)})
        self.acquired: list[str] = []
        self.observed: list[int] = []

    async def acquire(self, method: str) -> None:
        self.acquired.append(method.upper())
        await super().acquire(method)

    def observe(self, method: str, status: int, headers: Mapping[str, str]) -> float | None:
        self.observed.append(status)
        return super().observe(method, status, headers)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTrakt]:
    async with FakeTrakt(client_id=CID, client_secret=SECRET, catalog=default_catalog()) as f:
        yield f


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def store(tmp_path: Path, fake: FakeTrakt) -> TokenFile:
    tokens = TokenFile(tmp_path, "trakt")
    tokens.write(fake.issue_token())
    return tokens


def make_provider(
    fake: FakeTrakt,
    session: aiohttp.ClientSession,
    store: TokenFile,
    *,
    limiter: Limiter | None = None,
    api_url: str | None = None,
    **kwargs: Any,
) -> TraktProvider:
    return TraktProvider(
        session=session,
        limiter=limiter or fast_limiter(),
        tokens=store,
        client_id=CID,
        client_secret=SECRET,
        api_url=api_url or fake.url,
        get_retry=GetRetry(base_s=0.01),
        **kwargs,
    )


@pytest.fixture
def trakt(fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile) -> TraktProvider:
    return make_provider(fake, session, store)


def posts(fake: FakeTrakt, path: str = "/sync/history") -> int:
    return sum(1 for method, p, _ in fake.requests if method == "POST" and p == path)


async def seed(session: aiohttp.ClientSession, fake: FakeTrakt, body: dict[str, Any]) -> None:
    """Add history through the fake's own API (one authed POST)."""
    token = fake.issue_token()["access_token"]
    headers = {
        "trakt-api-key": CID,
        "trakt-api-version": "2",
        "Authorization": f"Bearer {token}",
    }
    async with session.post(f"{fake.url}/sync/history", json=body, headers=headers) as resp:
        assert resp.status == 201


class TestAddHistory:
    async def test_movie_lands_with_its_watched_at(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """A movie play is recorded once, at the play's watched_at, and reported ADDED."""
        outcomes = await trakt.add_history([Play(1, BIG_TROUBLE, T0)])

        assert outcomes == {1: PlayOutcome.ADDED}
        assert [(h["type"], h["movie"]["ids"]["imdb"]) for h in fake.history] == [
            ("movie", "tt0090728")
        ]
        assert fake.history[0]["watched_at"] == "2026-11-21T10:54:52.000Z"

    async def test_episode_with_only_show_ids_lands(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """An episode known by show ids + season/number goes in shows[] and lands as it."""
        outcomes = await trakt.add_history([Play(7, FUTURAMA_2X15, T0)])

        assert outcomes == {7: PlayOutcome.ADDED}
        [entry] = fake.plays("episode")
        assert entry["show"]["title"] == "Futurama"
        assert (entry["episode"]["season"], entry["episode"]["number"]) == (2, 15)
        assert entry["watched_at"] == "2026-11-21T10:54:52.000Z"

    async def test_episode_with_own_ids_lands(self, trakt: TraktProvider, fake: FakeTrakt) -> None:
        """An episode with its own ids goes in episodes[] and lands as that episode."""
        outcomes = await trakt.add_history([Play(8, BOBS_9X15, T0)])

        assert outcomes == {8: PlayOutcome.ADDED}
        [entry] = fake.plays("episode")
        assert entry["episode"]["ids"]["tvdb"] == 7047159
        assert entry["show"]["title"] == "Bob's Burgers"

    async def test_mixed_batch_is_one_post_with_every_watched_at(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """Movies, shows-form and episodes-form plays share one POST; each keeps its time."""
        plays = [
            Play(1, BIG_TROUBLE, T0),
            Play(2, FUTURAMA_2X15, T0 + timedelta(hours=1)),
            Play(3, BOBS_9X15, T0 + timedelta(hours=2)),
            Play(4, FUTURAMA_2X15, T0 + timedelta(days=1)),  # a rewatch is a second play
        ]
        outcomes = await trakt.add_history(plays)

        assert outcomes == {k: PlayOutcome.ADDED for k in (1, 2, 3, 4)}
        assert posts(fake) == 1
        assert sorted(h["watched_at"] for h in fake.history) == [
            "2026-11-21T10:54:52.000Z",
            "2026-11-21T11:54:52.000Z",
            "2026-11-21T12:54:52.000Z",
            "2026-11-22T10:54:52.000Z",
        ]

    async def test_not_found_entries_map_back_to_their_keys(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """Each item Trakt lists in not_found is NOT_FOUND; the rest of the batch is ADDED."""
        plays = [
            Play(1, BIG_TROUBLE, T0),
            Play(2, UNKNOWN_MOVIE, T0),
            Play(3, UNKNOWN_EPISODE, T0),
            Play(4, UNKNOWN_SHOW_EPISODE, T0),
            Play(5, BOBS_9X15, T0),
        ]
        outcomes = await trakt.add_history(plays)

        assert outcomes == {
            1: PlayOutcome.ADDED,
            2: PlayOutcome.NOT_FOUND,
            3: PlayOutcome.NOT_FOUND,
            4: PlayOutcome.NOT_FOUND,
            5: PlayOutcome.ADDED,
        }
        assert len(fake.history) == 2

    async def test_plays_neither_added_nor_listed_are_unconfirmed(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """When `added` falls short without a not_found entry, those plays are UNCONFIRMED."""
        fake.fail_next(
            201,
            body={
                "added": {"movies": 1, "episodes": 1},
                "not_found": {"movies": [], "shows": [], "seasons": [], "episodes": []},
            },
        )
        outcomes = await trakt.add_history(
            [Play(1, BOBS_9X15, T0), Play(2, FUTURAMA_2X15, T0), Play(3, BIG_TROUBLE, T0)]
        )

        assert outcomes == {
            1: PlayOutcome.UNCONFIRMED,
            2: PlayOutcome.UNCONFIRMED,
            3: PlayOutcome.ADDED,
        }

    async def test_unknown_episode_of_a_known_show_is_not_found(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """A special Trakt cannot place under a known show (Futurama S00E07) comes back in
        not_found.shows with only that episode: it is NOT_FOUND, the movie beside it ADDED,
        and the show's other episode in the batch is still ADDED."""
        special = Item(MediaKind.EPISODE, show_ids=Ids(tvdb="73871"), season=0, number=7)

        outcomes = await trakt.add_history(
            [
                Play(1, special, T0),
                Play(2, BIG_TROUBLE, T0),
                Play(3, FUTURAMA_2X15, T0 + timedelta(hours=1)),
            ]
        )

        assert outcomes == {
            1: PlayOutcome.NOT_FOUND,
            2: PlayOutcome.ADDED,
            3: PlayOutcome.ADDED,
        }
        assert sorted(h["type"] for h in fake.history) == ["episode", "movie"]

    async def test_bare_not_found_episode_maps_to_its_show_form_play(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """A not_found.episodes entry without ids (the episode object echoed) is traced to the
        one show-form play with that season, number and watched_at."""
        special = Item(MediaKind.EPISODE, show_ids=Ids(tvdb="73871"), season=0, number=7)
        fake.fail_next(
            201,
            body={
                "added": {"movies": 0, "episodes": 1},
                "not_found": {
                    "movies": [],
                    "shows": [],
                    "seasons": [],
                    "episodes": [{"number": 7, "watched_at": "2026-11-21T10:54:52.000Z"}],
                },
            },
        )

        outcomes = await trakt.add_history([Play(1, special, T0), Play(2, FUTURAMA_2X15, T0)])

        assert outcomes == {1: PlayOutcome.NOT_FOUND, 2: PlayOutcome.ADDED}

    async def test_item_without_usable_ids_is_not_found_and_not_sent(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """A play Trakt could never match is NOT_FOUND without a request."""
        no_ids = Item(MediaKind.MOVIE, "Mystery", 2001, ids=Ids(simkl="42"))
        assert trakt.missing_ids(no_ids) is not None

        assert await trakt.add_history([Play(1, no_ids, T0)]) == {1: PlayOutcome.NOT_FOUND}
        assert fake.requests == []


class TestMissingIds:
    @pytest.mark.parametrize(
        ("item", "ok"),
        [
            (BIG_TROUBLE, True),
            (Item(MediaKind.MOVIE, ids=Ids(trakt="12")), True),
            (Item(MediaKind.MOVIE, ids=Ids(tvdb="1", simkl="2")), False),
            (BOBS_9X15, True),
            (FUTURAMA_2X15, True),
            (Item(MediaKind.EPISODE, show_ids=Ids(tvdb="73871"), season=2), False),
            (Item(MediaKind.EPISODE, season=2, number=15), False),
        ],
    )
    def test_names_what_trakt_needs(self, trakt: TraktProvider, item: Item, ok: bool) -> None:
        """Movies need trakt/imdb/tmdb; episodes their own ids or show ids + season/number."""
        assert (trakt.missing_ids(item) is None) is ok


class TestFindInHistory:
    async def test_finds_a_play_by_trakt_id_within_tolerance(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """A play with a trakt id is looked up by id; ±5 s counts, a minute off does not."""
        await trakt.add_history([Play(1, BIG_TROUBLE, T0)])
        with_trakt = BIG_TROUBLE.with_ids(Ids(trakt=str(fake.catalog.movies[0]["ids"]["trakt"])))

        found = await trakt.find_in_history(
            [
                Play(10, with_trakt, T0 + timedelta(seconds=3)),
                Play(11, with_trakt, T0 + timedelta(minutes=1)),
            ]
        )

        assert found == {10}
        paths = {p for m, p, _ in fake.requests if m == "GET"}
        assert paths == {f"/sync/history/movies/{with_trakt.ids.trakt}"}

    async def test_ranged_query_follows_pagination(
        self, trakt: TraktProvider, fake: FakeTrakt, session: aiohttp.ClientSession
    ) -> None:
        """Without a trakt id, one ranged query is paged through until the play is found."""
        movies = [
            {"ids": {"imdb": "tt0072684"}, "watched_at": f"2026-11-21T{h:02d}:{m:02d}:00.000Z"}
            for h in range(3)
            for m in range(60)
        ]  # 180 plays between 00:00 and 02:59, newest first on the wire
        await seed(session, fake, {"movies": movies})

        oldest = datetime(2026, 11, 21, 0, 0, 2, tzinfo=UTC)  # 2 s after the first seeded play
        newest = datetime(2026, 11, 21, 2, 59, tzinfo=UTC)
        found = await trakt.find_in_history(
            [
                Play(1, BARRY_LYNDON, oldest),
                Play(2, BARRY_LYNDON, newest),
                Play(3, BIG_TROUBLE, newest),
            ]
        )

        assert found == {1, 2}
        pages = [q.get("page") for m, p, q in fake.requests if p == "/sync/history/movies"]
        assert pages == ["1", "2"]

    async def test_episode_matched_by_show_ids_season_and_number(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """An episode without its own ids is found by show ids + season + number."""
        await trakt.add_history([Play(1, FUTURAMA_2X15, T0)])
        other = Item(MediaKind.EPISODE, show_ids=Ids(tvdb="73871"), season=2, number=14)

        found = await trakt.find_in_history([Play(5, FUTURAMA_2X15, T0), Play(6, other, T0)])

        assert found == {5}

    async def test_ranged_query_is_widened_by_the_tolerance(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """start_at/end_at are the first and last play ∓ tolerance_s."""
        await trakt.find_in_history(
            [Play(1, BIG_TROUBLE, T0), Play(2, BARRY_LYNDON, T0 + timedelta(hours=1))],
            tolerance_s=14400,
        )

        [(_, path, query)] = [r for r in fake.requests if r[0] == "GET"]
        assert path == "/sync/history/movies"
        assert query["start_at"] == "2026-11-21T06:54:52.000Z"
        assert query["end_at"] == "2026-11-21T15:54:52.000Z"

    async def test_large_tolerance_finds_a_play_recorded_hours_apart(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """Another scrobbler recorded the play 3 h off: found within a 4 h tolerance, not
        within the default 5 s; by trakt id and without one."""
        await trakt.add_history([Play(1, BIG_TROUBLE, T0 - timedelta(hours=3))])
        trakt_id = str(fake.catalog.movies[0]["ids"]["trakt"])
        with_trakt = BIG_TROUBLE.with_ids(Ids(trakt=trakt_id))
        plays = [Play(10, BIG_TROUBLE, T0), Play(11, with_trakt, T0 + timedelta(days=3))]
        late = [Play(12, with_trakt, T0 - timedelta(hours=3, seconds=20))]

        assert await trakt.find_in_history(plays[:1]) == set()
        assert await trakt.find_in_history(plays[:1], tolerance_s=14400) == {10}
        assert await trakt.find_in_history(late, tolerance_s=14400) == {12}
        assert await trakt.find_in_history(plays[1:], tolerance_s=14400) == set()
        paths = [p for m, p, _ in fake.requests if m == "GET"]
        assert paths[-2:] == [f"/sync/history/movies/{trakt_id}"] * 2

    async def test_one_history_entry_accounts_for_one_play(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """Two plays of a movie near one recorded play: only the closer one is found."""
        await trakt.add_history([Play(1, BIG_TROUBLE, T0)])

        found = await trakt.find_in_history(
            [
                Play(10, BIG_TROUBLE, T0 + timedelta(hours=2)),
                Play(11, BIG_TROUBLE, T0 - timedelta(minutes=30)),
            ],
            tolerance_s=14400,
        )

        assert found == {11}

    async def test_batch_with_large_tolerance_costs_one_get_per_range(
        self, trakt: TraktProvider, fake: FakeTrakt, session: aiohttp.ClientSession
    ) -> None:
        """100 imported plays over ten days, checked with a 4 h window, cost one GET per range
        and page (here one), not one per play; all are found."""
        items = [BIG_TROUBLE, BARRY_LYNDON, FUTURAMA_2X15, BOBS_9X15]
        plays = [
            Play(n, items[n % 4], T0 + timedelta(hours=2.4 * n)) for n in range(100)
        ]  # 50 movies, 50 episodes
        body: dict[str, Any] = {"movies": [], "episodes": []}
        for play in plays:
            watched_at = format_utc(play.watched_at)
            if play.item is BIG_TROUBLE:
                body["movies"].append({"ids": {"imdb": "tt0090728"}, "watched_at": watched_at})
            elif play.item is BARRY_LYNDON:
                body["movies"].append({"ids": {"imdb": "tt0072684"}, "watched_at": watched_at})
            elif play.item is BOBS_9X15:
                body["episodes"].append({"ids": {"tvdb": 7047159}, "watched_at": watched_at})
            else:
                body["episodes"].append({"ids": {"tvdb": 163303}, "watched_at": watched_at})
        await seed(session, fake, body)

        found = await trakt.find_in_history(plays, tolerance_s=14400)

        assert found == {p.key for p in plays}
        gets = [p for m, p, _ in fake.requests if m == "GET"]
        assert sorted(gets) == ["/sync/history/episodes", "/sync/history/movies"]

    async def test_far_apart_plays_are_separate_ranges(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """Plays whose windows are more than 12 h apart get their own ranged queries."""
        await trakt.find_in_history(
            [Play(1, BIG_TROUBLE, T0), Play(2, BARRY_LYNDON, T0 + timedelta(days=2))],
            tolerance_s=14400,
        )

        starts = sorted(q["start_at"] for m, _, q in fake.requests if m == "GET")
        assert starts == ["2026-11-21T06:54:52.000Z", "2026-11-23T06:54:52.000Z"]

    async def test_empty_history_finds_nothing(self, trakt: TraktProvider) -> None:
        """Nothing recorded: nothing found."""
        assert await trakt.find_in_history([Play(1, BOBS_9X15, T0)]) == set()

    async def test_transient_get_failure_is_retried_in_process(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """A 502 on a history GET is retried with backoff and the lookup still answers."""
        fake.fail_next(502, path="/sync/history")

        assert await trakt.find_in_history([Play(1, BIG_TROUBLE, T0)]) == set()
        assert sum(1 for m, _, _ in fake.requests if m == "GET") == 2

    async def test_down_service_raises_retryable_after_a_few_tries(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """Trakt answering 503 to everything: a few GET tries, then RetryableError."""
        fake.down = True

        with pytest.raises(RetryableError):
            await trakt.find_in_history([Play(1, BIG_TROUBLE, T0)])
        assert len(fake.requests) == 3


class TestErrors:
    async def test_429_carries_retry_after(self, trakt: TraktProvider, fake: FakeTrakt) -> None:
        """429 → RetryableError with the server's Retry-After in seconds."""
        fake.fail_next(429, headers={"Retry-After": "7"})

        with pytest.raises(RetryableError) as err:
            await trakt.add_history([Play(1, BIG_TROUBLE, T0)])
        assert err.value.retry_after_s == 7.0

    async def test_server_error_on_post_is_retryable_and_not_resent(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """500 on POST /sync/history → RetryableError after exactly one attempt."""
        fake.fail_next(500)

        with pytest.raises(RetryableError):
            await trakt.add_history([Play(1, BIG_TROUBLE, T0)])
        assert posts(fake) == 1

    async def test_timed_out_post_is_never_resent(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """A POST /sync/history that timed out is not retried: it may land anyway (it does)."""
        trakt = make_provider(fake, session, store, timeout_s=0.1)
        fake.delay_s = 0.3

        with pytest.raises(RetryableError, match="no answer within"):
            await trakt.add_history([Play(1, BIG_TROUBLE, T0)])
        assert posts(fake) == 1
        for _ in range(50):  # the slow request completes server-side after the client gave up
            if fake.history:
                break
            await asyncio.sleep(0.02)
        assert len(fake.history) == 1

    async def test_connection_refused_is_retryable(
        self, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """Nothing listening → RetryableError."""
        async with FakeTrakt(client_id=CID, client_secret=SECRET) as gone:
            url = gone.url
        trakt = make_provider(gone, session, store, api_url=url)

        with pytest.raises(RetryableError):
            await trakt.add_history([Play(1, BIG_TROUBLE, T0)])

    async def test_non_json_success_is_retryable(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """A 2xx that is not JSON (a proxy page) → RetryableError, never a guess."""
        fake.fail_next(201, body="<html>ok</html>")

        with pytest.raises(RetryableError, match="non-JSON"):
            await trakt.add_history([Play(1, BIG_TROUBLE, T0)])

    @pytest.mark.parametrize(
        ("status", "headers", "reason", "scope"),
        [
            (420, {"X-Account-Limit": "100", "X-VIP-User": "false"}, "account limit", "account"),
            (423, {"X-Account-Locked": "true"}, "locked", "account"),
            (426, {}, "VIP", "account"),
            (422, {}, "422", "request"),
            (400, {}, "400", "request"),
            (404, {}, "404", "request"),
        ],
    )
    async def test_permanent_statuses(
        self,
        trakt: TraktProvider,
        fake: FakeTrakt,
        status: int,
        headers: dict[str, str],
        reason: str,
        scope: str,
    ) -> None:
        """420/423/426 refuse the account (scope "account"); other 4xx refuse the request
        (scope "request"); each PermanentError names the reason."""
        fake.fail_next(status, headers=headers)

        with pytest.raises(PermanentError, match=reason) as err:
            await trakt.add_history([Play(1, BIG_TROUBLE, T0)])
        assert err.value.scope == scope

    async def test_wrong_client_id_waits_and_keeps_the_token(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """403 (the app is refused): AuthError naming the setting; the token is not revoked."""
        trakt = TraktProvider(
            session=session,
            limiter=fast_limiter(),
            tokens=store,
            client_id="not-the-client-id",
            client_secret=SECRET,
            api_url=fake.url,
        )

        with pytest.raises(AuthError, match="client_id"):
            await trakt.add_history([Play(1, BIG_TROUBLE, T0)])
        assert trakt.is_authorized()
        assert store.path.exists()

    async def test_every_attempt_is_paced_and_observed(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """The limiter is acquired before, and fed after, every request the fake sees."""
        limiter = RecordingLimiter()
        trakt = make_provider(fake, session, store, limiter=limiter)
        fake.fail_next(500, path="/sync/history")

        await trakt.find_in_history([Play(1, BIG_TROUBLE, T0)])
        fake.expire_access_tokens()
        await trakt.add_history([Play(2, BIG_TROUBLE, T0)])

        assert limiter.acquired == [m for m, _, _ in fake.requests]
        assert limiter.observed == [500, 200, 401, 200, 201]


class TestScrobble:
    async def test_start_is_sent(self, trakt: TraktProvider, fake: FakeTrakt) -> None:
        """START → /scrobble/start, answered 201 → SENT."""
        assert await trakt.scrobble(Action.START, BIG_TROUBLE, 12.5) is LiveOutcome.SENT
        [record] = fake.scrobbles
        assert (record["path"], record["action"], record["progress"]) == (
            "/scrobble/start",
            "start",
            12.5,
        )

    @pytest.mark.parametrize("action", [Action.STOP, Action.PAUSE, Action.START])
    async def test_progress_is_clamped_so_no_play_is_recorded(
        self, trakt: TraktProvider, fake: FakeTrakt, action: Action
    ) -> None:
        """Even at 100 %, a live scrobble goes out below 80 % and never records a play."""
        assert await trakt.scrobble(action, BIG_TROUBLE, 100.0) is LiveOutcome.SENT

        [record] = fake.scrobbles
        assert record["progress"] == 79.9
        assert record["path"] != "/scrobble/stop"
        assert fake.history == []

    async def test_zero_progress_is_raised_to_one(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """Progress 0 goes out as 1 %."""
        await trakt.scrobble(Action.START, BIG_TROUBLE, 0.0)
        assert fake.scrobbles[0]["progress"] == 1.0

    async def test_episode_by_show_ids(self, trakt: TraktProvider, fake: FakeTrakt) -> None:
        """An episode without own ids is scrobbled as show ids + season/number."""
        assert await trakt.scrobble(Action.PAUSE, FUTURAMA_2X15, 40.0) is LiveOutcome.SENT
        assert fake.scrobbles[0]["body"]["show"] == {"ids": {"tvdb": 73871}}
        assert fake.scrobbles[0]["body"]["episode"] == {"season": 2, "number": 15}

    async def test_conflict_is_already(self, trakt: TraktProvider, fake: FakeTrakt) -> None:
        """409 (just scrobbled) → ALREADY, never an error to retry."""
        fake.fail_next(
            409,
            body={
                "watched_at": "2026-11-21T10:00:00.000Z",
                "expires_at": "2026-11-21T11:00:00.000Z",
            },
        )
        assert await trakt.scrobble(Action.PAUSE, BIG_TROUBLE, 50.0) is LiveOutcome.ALREADY
        assert posts(fake, "/scrobble/pause") == 1

    async def test_unknown_item_is_not_found(self, trakt: TraktProvider, fake: FakeTrakt) -> None:
        """The fake answers 404 for an item Trakt does not know → NOT_FOUND."""
        assert await trakt.scrobble(Action.START, UNKNOWN_MOVIE, 5.0) is LiveOutcome.NOT_FOUND


class TestPacing:
    async def test_default_post_rate_never_trips_trakts_limit(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """With Trakt's 1 POST/s, concurrent writes are spread out and never get a 429."""
        limiter = Limiter.per_second(post_per_s=1.0, get_per_s=1000 / 300, get_capacity=1000)
        trakt = make_provider(fake, session, store, limiter=limiter)
        started = time.monotonic()

        results = await asyncio.gather(
            trakt.add_history([Play(1, BIG_TROUBLE, T0)]),
            trakt.add_history([Play(2, BOBS_9X15, T0)]),
            trakt.scrobble(Action.START, BARRY_LYNDON, 10.0),
        )

        assert results[:2] == [{1: PlayOutcome.ADDED}, {2: PlayOutcome.ADDED}]
        assert results[2] is LiveOutcome.SENT
        assert fake.rate_limited == 0
        assert time.monotonic() - started >= 1.9

    async def test_fake_rejects_writes_faster_than_one_per_second(
        self, trakt: TraktProvider, fake: FakeTrakt
    ) -> None:
        """Control: unpaced writes get Trakt's 429, surfaced as RetryableError with a wait."""
        await trakt.add_history([Play(1, BIG_TROUBLE, T0)])

        with pytest.raises(RetryableError) as err:
            await trakt.add_history([Play(2, BIG_TROUBLE, T0)])
        assert err.value.retry_after_s is not None and err.value.retry_after_s >= 0.5
        assert fake.rate_limited == 1
        assert fake.rate_limit_log[0]["name"] == "AUTHED_API_POST_LIMIT"
        assert len(fake.history) == 1


class TestFakeIsStrict:
    """The fake rejects what the real Trakt rejects, so passing tests mean something."""

    @staticmethod
    def headers(**overrides: str | None) -> dict[str, str]:
        base: dict[str, str | None] = {
            "trakt-api-key": CID,
            "trakt-api-version": "2",
            "User-Agent": "test/1",
            "Content-Type": "application/json",
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    @pytest.mark.parametrize(
        ("overrides", "status"),
        [
            ({"trakt-api-key": None}, 403),
            ({"trakt-api-key": "someone-else"}, 403),
            ({"trakt-api-version": None}, 400),
            ({"trakt-api-version": "1"}, 400),
            ({"User-Agent": None}, 403),
        ],
    )
    async def test_required_headers(
        self,
        fake: FakeTrakt,
        session: aiohttp.ClientSession,
        overrides: dict[str, str | None],
        status: int,
    ) -> None:
        """Missing or wrong identification headers are refused."""
        async with session.get(
            f"{fake.url}/search/imdb/tt0090728",
            headers=self.headers(**overrides),
            skip_auto_headers=["User-Agent"],
        ) as resp:
            assert resp.status == status

    async def test_post_needs_json_content_type(
        self, fake: FakeTrakt, session: aiohttp.ClientSession
    ) -> None:
        """A POST that is not application/json → 412."""
        async with session.post(
            f"{fake.url}/oauth/device/code",
            data=b"client_id=cid",
            headers=self.headers(**{"Content-Type": "application/x-www-form-urlencoded"}),
        ) as resp:
            assert resp.status == 412

    @pytest.mark.parametrize("auth", [None, "Bearer nope"])
    async def test_sync_needs_a_valid_token(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, auth: str | None
    ) -> None:
        """/sync without a valid bearer token → 401."""
        async with session.get(
            f"{fake.url}/sync/history", headers=self.headers(Authorization=auth)
        ) as resp:
            assert resp.status == 401

    async def test_expired_access_token_is_refused(
        self, fake: FakeTrakt, session: aiohttp.ClientSession
    ) -> None:
        """An access token past its expires_in → 401."""
        token = fake.issue_token(expires_in=0)["access_token"]
        async with session.get(
            f"{fake.url}/sync/history", headers=self.headers(Authorization=f"Bearer {token}")
        ) as resp:
            assert resp.status == 401

    async def test_history_is_paginated_newest_first(
        self, fake: FakeTrakt, session: aiohttp.ClientSession
    ) -> None:
        """GET /sync/history pages by 10 with X-Pagination-* headers, newest first."""
        movies = [
            {"ids": {"tmdb": 6978}, "watched_at": f"2026-01-{d:02d}T00:00:00.000Z"}
            for d in range(1, 13)
        ]
        await seed(session, fake, {"movies": movies})
        token = fake.issue_token()["access_token"]
        async with session.get(
            f"{fake.url}/sync/history",
            headers=self.headers(Authorization=f"Bearer {token}"),
        ) as resp:
            body = await resp.json()
            assert resp.headers["X-Pagination-Page-Count"] == "2"
            assert resp.headers["X-Pagination-Item-Count"] == "12"
        assert len(body) == 10
        assert body[0]["watched_at"] == "2026-01-12T00:00:00.000Z"

    async def test_id_search_returns_episode_with_its_show(
        self, fake: FakeTrakt, session: aiohttp.ClientSession
    ) -> None:
        """/search/tvdb/{id}?type=episode → the episode with its show."""
        async with session.get(
            f"{fake.url}/search/tvdb/7047159", params={"type": "episode"}, headers=self.headers()
        ) as resp:
            [hit] = await resp.json()
        assert hit["type"] == "episode"
        assert hit["show"]["ids"]["tvdb"] == 194031

    async def test_stop_above_80_records_once_then_conflicts(
        self, fake: FakeTrakt, session: aiohttp.ClientSession
    ) -> None:
        """/scrobble/stop at >= 80 % records a play; the same stop again → 409, no second play."""
        token = fake.issue_token()["access_token"]
        headers = self.headers(Authorization=f"Bearer {token}")
        body = {"movie": {"ids": {"imdb": "tt0090728"}}, "progress": 90.0}
        async with session.post(f"{fake.url}/scrobble/stop", json=body, headers=headers) as resp:
            assert resp.status == 201
            assert (await resp.json())["action"] == "scrobble"
        await asyncio.sleep(1.0)  # Trakt allows one authed POST per second
        async with session.post(f"{fake.url}/scrobble/stop", json=body, headers=headers) as resp:
            assert resp.status == 409
            assert set(await resp.json()) == {"watched_at", "expires_at"}
        assert [h["action"] for h in fake.history] == ["scrobble"]
        assert fake.rate_limited == 0
