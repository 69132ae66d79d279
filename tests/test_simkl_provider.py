"""SimklProvider against the strict fake SIMKL server (a real aiohttp app on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crosswatchd import __version__
from crosswatchd.errors import AuthError, PermanentError, RetryableError
from crosswatchd.http import GetRetry
from crosswatchd.models import Action, Ids, Item, MediaKind, format_utc
from crosswatchd.providers.base import LiveOutcome, Play, PlayOutcome
from crosswatchd.providers.simkl import MAX_BATCH, SimklProvider
from crosswatchd.ratelimit import Limiter
from crosswatchd.tokens import TokenStore
from tests.fakes.catalog import default_catalog
from tests.fakes.simkl import FakeSimkl

CLIENT_ID = "test-client-id"
WATCHED = datetime(2024, 1, 15, 10, 30, 0, 123000, tzinfo=UTC)

BIG_TROUBLE = Item(
    MediaKind.MOVIE, "Big Trouble in Little China", 1986, Ids(imdb="tt0090728", tmdb="6978")
)
BARRY_LYNDON = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, Ids(tmdb="3175"))
UNKNOWN_MOVIE = Item(MediaKind.MOVIE, "Not On Simkl", 2001, Ids(imdb="tt0000001"))
FUTURAMA_S02E15 = Item(
    MediaKind.EPISODE,
    "A Clone of My Own",
    ids=Ids(tvdb="163303"),
    show_title="Futurama",
    show_year=1999,
    show_ids=Ids(tvdb="73871", imdb="tt0149460"),
    season=2,
    number=15,
)
BOBS_S09E15 = Item(
    MediaKind.EPISODE,
    "The Fresh Princ-ipal",
    ids=Ids(imdb="tt9413736"),
    show_title="Bob's Burgers",
    show_ids=Ids(tmdb="32726"),
    season=9,
    number=15,
)
FUTURAMA_UNKNOWN_EPISODE = Item(
    MediaKind.EPISODE, show_title="Futurama", show_ids=Ids(tvdb="73871"), season=9, number=99
)
UNKNOWN_SHOW_EPISODE = Item(
    MediaKind.EPISODE, show_title="Nope", show_ids=Ids(tvdb="999999"), season=1, number=1
)


def fast_limiter() -> Limiter:
    return Limiter.per_second(post_per_s=1000, get_per_s=1000, get_capacity=1000)


#: In-process GET retries without noticeable waits.
FAST_RETRY = GetRetry(tries=3, base_s=0.001)


def make_provider(
    session: aiohttp.ClientSession,
    fake: FakeSimkl,
    tokens: TokenStore,
    *,
    limiter: Limiter | None = None,
    timeout_s: float = 5.0,
    client_id: str = CLIENT_ID,
) -> SimklProvider:
    return SimklProvider(
        session=session,
        limiter=limiter or fast_limiter(),
        tokens=tokens,
        client_id=client_id,
        api_url=fake.url,
        timeout_s=timeout_s,
        get_retry=FAST_RETRY,
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeSimkl]:
    """A fake whose rate limits are out of the way (pacing has its own tests)."""
    async with FakeSimkl(
        client_id=CLIENT_ID, catalog=default_catalog(), get_per_s=1000, post_per_s=1000
    ) as server:
        yield server


@pytest.fixture
def tokens(tmp_path: Path, fake: FakeSimkl) -> TokenStore:
    store = TokenStore(tmp_path, "simkl")
    store.save({"access_token": fake.issue_token(), "token_type": "bearer", "scope": "public"})
    return store


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def provider(session: aiohttp.ClientSession, fake: FakeSimkl, tokens: TokenStore) -> SimklProvider:
    return make_provider(session, fake, tokens)


def posts(fake: FakeSimkl, path: str) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r["method"] == "POST" and r["path"] == path]


async def raw_request(
    fake: FakeSimkl,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    user_agent: bool = True,
) -> tuple[int, Any]:
    """One request as a hand-written client would send it; returns (status, JSON body)."""
    skip = () if user_agent else ("User-Agent",)
    async with (
        aiohttp.ClientSession(skip_auto_headers=skip) as session,
        session.request(method, fake.url + path, params=params, headers=headers, json=body) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


IDENT = {"client_id": CLIENT_ID, "app-name": "tests", "app-version": "1.0"}


# --------------------------------------------------------------------------- add_history


class TestAddHistory:
    async def test_movie_lands_with_exact_watched_at(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """A movie play is recorded once, at its own watched_at, by its ids."""
        result = await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)])

        assert result == {1: PlayOutcome.ADDED}
        assert len(fake.history) == 1
        play = fake.history[0]
        assert play["type"] == "movie"
        assert play["watched_at"] == "2024-01-15T10:30:00.123Z"
        assert play["ids"] == {"imdb": "tt0090728", "tmdb": 6978}
        assert play["title"] == "Big Trouble in Little China"

    async def test_episode_is_sent_under_its_show_ids(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """SIMKL places an episode by the SHOW's ids plus season/number, not the episode's ids."""
        result = await provider.add_history([Play(2, FUTURAMA_S02E15, WATCHED)])

        assert result == {2: PlayOutcome.ADDED}
        play = fake.history[0]
        assert (play["type"], play["season"], play["number"]) == ("episode", 2, 15)
        assert play["show_ids"] == {"tvdb": 73871, "imdb": "tt0149460"}
        assert play["watched_at"] == format_utc(WATCHED)
        body = posts(fake, "/sync/history")[0]["json"]
        assert "episodes" not in body
        assert body["shows"][0]["seasons"] == [
            {"number": 2, "episodes": [{"number": 15, "watched_at": format_utc(WATCHED)}]}
        ]

    async def test_mixed_batch_is_added_in_one_request(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """Movies and episodes of several shows go in one POST and are all confirmed."""
        plays = [
            Play(1, BIG_TROUBLE, WATCHED),
            Play(2, FUTURAMA_S02E15, WATCHED + timedelta(hours=1)),
            Play(3, BOBS_S09E15, WATCHED + timedelta(hours=2)),
            Play(4, BARRY_LYNDON, WATCHED + timedelta(hours=3)),
        ]

        result = await provider.add_history(plays)

        assert result == dict.fromkeys([1, 2, 3, 4], PlayOutcome.ADDED)
        assert len(posts(fake, "/sync/history")) == 1
        recorded = sorted((p["title"], p["watched_at"]) for p in fake.history)
        assert recorded == sorted(
            [
                ("Big Trouble in Little China", format_utc(WATCHED)),
                ("Futurama", format_utc(WATCHED + timedelta(hours=1))),
                ("Bob's Burgers", format_utc(WATCHED + timedelta(hours=2))),
                ("Barry Lyndon", format_utc(WATCHED + timedelta(hours=3))),
            ]
        )

    async def test_two_plays_of_one_movie_are_both_recorded(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """No dedupe in the provider: each play is sent with its own watched_at."""
        later = WATCHED + timedelta(days=1)
        result = await provider.add_history(
            [Play(1, BIG_TROUBLE, WATCHED), Play(2, BIG_TROUBLE, later)]
        )

        assert result == {1: PlayOutcome.ADDED, 2: PlayOutcome.ADDED}
        assert [p["watched_at"] for p in fake.history] == [format_utc(WATCHED), format_utc(later)]

    async def test_unknown_movie_is_not_found_and_the_rest_added(
        self, provider: SimklProvider
    ) -> None:
        """A movie in not_found.movies is NOT_FOUND; the other play still counts as ADDED."""
        result = await provider.add_history(
            [Play(1, BIG_TROUBLE, WATCHED), Play(2, UNKNOWN_MOVIE, WATCHED)]
        )

        assert result == {1: PlayOutcome.ADDED, 2: PlayOutcome.NOT_FOUND}

    async def test_unknown_show_makes_its_episodes_not_found(self, provider: SimklProvider) -> None:
        """A show in not_found.shows marks every episode sent under it NOT_FOUND."""
        result = await provider.add_history(
            [Play(1, UNKNOWN_SHOW_EPISODE, WATCHED), Play(2, FUTURAMA_S02E15, WATCHED)]
        )

        assert result == {1: PlayOutcome.NOT_FOUND, 2: PlayOutcome.ADDED}

    async def test_unknown_episode_of_a_known_show_is_not_found(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """An echoed not_found episode ({number, watched_at}) is traced back to its play."""
        result = await provider.add_history(
            [
                Play(1, FUTURAMA_UNKNOWN_EPISODE, WATCHED),
                Play(2, FUTURAMA_S02E15, WATCHED + timedelta(minutes=30)),
            ]
        )

        assert result == {1: PlayOutcome.NOT_FOUND, 2: PlayOutcome.ADDED}
        assert [(p["season"], p["number"]) for p in fake.history] == [(2, 15)]

    async def test_empty_ack_is_unconfirmed_never_added(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """A 2xx that neither adds nor rejects anything is UNCONFIRMED, even if it landed."""
        fake.ack_empty_next = 1

        result = await provider.add_history(
            [Play(1, BIG_TROUBLE, WATCHED), Play(2, FUTURAMA_S02E15, WATCHED)]
        )

        assert result == {1: PlayOutcome.UNCONFIRMED, 2: PlayOutcome.UNCONFIRMED}
        assert len(fake.history) == 2  # the glitch: SIMKL did record them

    async def test_count_mismatch_is_unconfirmed(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """If `added` does not account for every play, none of them is assumed delivered."""
        fake.fail_next(
            201,
            body={
                "added": {"movies": 1, "shows": 0, "episodes": 0, "statuses": []},
                "not_found": {"movies": [], "shows": [], "episodes": []},
            },
        )

        result = await provider.add_history(
            [Play(1, BIG_TROUBLE, WATCHED), Play(2, BARRY_LYNDON, WATCHED)]
        )

        assert result == {1: PlayOutcome.UNCONFIRMED, 2: PlayOutcome.UNCONFIRMED}

    async def test_status_200_reply_is_accepted(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """Apiary shows 200 for POST /sync/history, the newer docs 201: both are success."""
        fake.fail_next(
            200,
            body={
                "added": {"movies": 1, "shows": 0, "episodes": 0, "statuses": []},
                "not_found": {"movies": [], "shows": [], "episodes": []},
            },
        )

        assert await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)]) == {1: PlayOutcome.ADDED}

    async def test_null_reply_is_unconfirmed(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """A JSON `null` body means "nothing", so the plays are UNCONFIRMED."""
        fake.fail_next(201, body=b"null")

        assert await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)]) == {
            1: PlayOutcome.UNCONFIRMED
        }

    async def test_unsendable_play_is_not_found_without_a_request(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """An episode without show ids cannot be placed by SIMKL; it is never sent."""
        orphan = Item(MediaKind.EPISODE, ids=Ids(tvdb="163303"), season=2, number=15)

        assert await provider.add_history([Play(1, orphan, WATCHED)]) == {1: PlayOutcome.NOT_FOUND}
        assert fake.requests == []

    async def test_every_request_identifies_the_app(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """client_id, app-name, app-version, User-Agent, simkl-api-key and the bearer token."""
        await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)])

        request = fake.requests[0]
        assert request["query"]["client_id"] == CLIENT_ID
        assert request["query"]["app-name"] == "crosswatchd"
        assert request["query"]["app-version"] == __version__
        assert request["headers"]["User-Agent"] == f"crosswatchd/{__version__}"
        assert request["headers"]["simkl-api-key"] == CLIENT_ID
        assert request["headers"]["Authorization"].startswith("Bearer ")
        assert request["headers"]["Content-Type"] == "application/json"

    def test_max_batch_is_documented_size(self, provider: SimklProvider) -> None:
        """The batch size the drainer uses is the module's MAX_BATCH (100, as Trakt)."""
        assert provider.max_batch == MAX_BATCH == 100

    async def test_oversized_batch_is_a_caller_bug(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """More than max_batch plays → ValueError before anything is sent."""
        plays = [Play(n, BIG_TROUBLE, WATCHED) for n in range(MAX_BATCH + 1)]

        with pytest.raises(ValueError, match="at most"):
            await provider.add_history(plays)
        assert fake.requests == []


# --------------------------------------------------------------------------- errors


class TestErrors:
    async def test_revoked_token_is_auth_error(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """401 (the user revoked the app; tokens never expire) asks for `auth simkl`."""
        fake.tokens.clear()

        with pytest.raises(AuthError, match="crosswatchd auth simkl"):
            await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)])

    async def test_401_revokes_the_stored_token(
        self, provider: SimklProvider, fake: FakeSimkl, tokens: TokenStore
    ) -> None:
        """After a 401 the token file is renamed simkl.json.revoked, the provider is not
        authorized, and the next call fails at once without a request."""
        fake.tokens.clear()
        with pytest.raises(AuthError):
            await provider.find_in_history([Play(1, BIG_TROUBLE, WATCHED)])

        assert not tokens.path.exists()
        assert tokens.path.with_name("simkl.json.revoked").exists()
        assert provider.is_authorized() is False
        sent = len(fake.requests)
        with pytest.raises(AuthError, match="not authorized; run `crosswatchd auth simkl`"):
            await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)])
        assert len(fake.requests) == sent

    async def test_scrobble_401_revokes_too(
        self, provider: SimklProvider, fake: FakeSimkl, tokens: TokenStore
    ) -> None:
        """A 401 on a live scrobble revokes the token like one on a sync call."""
        fake.tokens.clear()

        with pytest.raises(AuthError):
            await provider.scrobble(Action.START, BIG_TROUBLE, 10.0)
        assert provider.is_authorized() is False

    async def test_no_stored_token_is_auth_error_without_a_request(
        self, provider: SimklProvider, fake: FakeSimkl, tokens: TokenStore
    ) -> None:
        """Without a token file nothing is sent and the provider says it is not authorized."""
        tokens.path.unlink()

        assert provider.is_authorized() is False
        with pytest.raises(AuthError, match="crosswatchd auth simkl"):
            await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)])
        assert fake.requests == []

    async def test_429_is_retryable_with_retry_after(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """429 → RetryableError carrying the server's Retry-After seconds."""
        fake.fail_next(429, headers={"Retry-After": "7"})

        with pytest.raises(RetryableError) as caught:
            await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)])
        assert caught.value.retry_after_s == 7.0

    @pytest.mark.parametrize("status", [500, 502, 503])
    async def test_server_errors_are_retryable(
        self, provider: SimklProvider, fake: FakeSimkl, status: int
    ) -> None:
        """5xx → RetryableError."""
        fake.fail_next(status)

        with pytest.raises(RetryableError):
            await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)])

    async def test_service_down_is_retryable(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """SIMKL answering 503 to everything → RetryableError, for reads as well."""
        fake.down = True

        with pytest.raises(RetryableError):
            await provider.find_in_history([Play(1, BIG_TROUBLE, WATCHED)])

    async def test_timeout_is_retryable_and_the_post_is_not_repeated(
        self, session: aiohttp.ClientSession, fake: FakeSimkl, tokens: TokenStore
    ) -> None:
        """After a timeout the POST is not retried in-process; the play may have landed."""
        fake.delay_s = 0.5
        simkl = make_provider(session, fake, tokens, timeout_s=0.1)

        with pytest.raises(RetryableError, match="no answer"):
            await simkl.add_history([Play(1, BIG_TROUBLE, WATCHED)])

        assert len(posts(fake, "/sync/history")) == 1
        assert len(fake.history) == 1  # it did land
        fake.delay_s = 0.0
        assert await simkl.find_in_history([Play(1, BIG_TROUBLE, WATCHED)]) == {1}

    async def test_connection_refused_is_retryable(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """Nothing listening → RetryableError."""
        await fake.stop()

        with pytest.raises(RetryableError):
            await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)])

    async def test_wrong_client_id_makes_plays_wait_not_die(
        self, session: aiohttp.ClientSession, fake: FakeSimkl, tokens: TokenStore
    ) -> None:
        """412 client_id_failed → AuthError (plays wait for the config fix, never dead),
        quoting SIMKL's message, not the key."""
        simkl = make_provider(session, fake, tokens, client_id="not-the-client-id")

        with pytest.raises(AuthError, match="client_id is wrong") as caught:
            await simkl.add_history([Play(1, BIG_TROUBLE, WATCHED)])

        assert "not-the-client-id" not in str(caught.value)
        assert simkl.is_authorized() is True  # config problem: the token is kept
        assert tokens.path.exists()

    async def test_other_client_errors_are_permanent(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """A 400 that is not the scrobble lock is PermanentError with the envelope message."""
        fake.fail_next(
            400, body={"error": "wrong_parameter", "code": 400, "message": "Wrong watched_at"}
        )

        with pytest.raises(PermanentError, match="Wrong watched_at") as caught:
            await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)])
        assert caught.value.scope == "request"

    async def test_token_never_appears_in_errors(
        self, provider: SimklProvider, fake: FakeSimkl, tokens: TokenStore
    ) -> None:
        """The access token is not part of any exception message."""
        token = tokens.load()
        assert token is not None
        fake.tokens.clear()

        with pytest.raises(AuthError) as caught:
            await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)])
        assert token.access_token not in str(caught.value)


# --------------------------------------------------------------------------- find_in_history


class TestFindInHistory:
    async def test_finds_plays_after_an_empty_ack(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """An UNCONFIRMED movie and episode are found in /sync/all-items at their watched_at."""
        plays = [Play(1, BIG_TROUBLE, WATCHED), Play(2, FUTURAMA_S02E15, WATCHED)]
        fake.ack_empty_next = 1
        assert set((await provider.add_history(plays)).values()) == {PlayOutcome.UNCONFIRMED}

        assert await provider.find_in_history(plays) == {1, 2}

    async def test_second_precision_is_within_tolerance(self, provider: SimklProvider) -> None:
        """SIMKL stores seconds only; a play 3 s off still matches, one an hour off does not."""
        await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)])

        near = Play(1, BIG_TROUBLE, WATCHED + timedelta(seconds=3))
        far = Play(2, BIG_TROUBLE, WATCHED + timedelta(hours=1))
        assert await provider.find_in_history([near, far]) == {1}

    async def test_other_episode_of_the_same_show_is_not_a_match(
        self, provider: SimklProvider
    ) -> None:
        """Show, season and number must all match, not just the show."""
        await provider.add_history([Play(1, FUTURAMA_S02E15, WATCHED)])
        other = Item(
            MediaKind.EPISODE,
            show_ids=Ids(tvdb="73871"),
            show_title="Futurama",
            season=2,
            number=16,
        )

        assert await provider.find_in_history([Play(9, other, WATCHED)]) == set()

    async def test_transient_get_failure_is_retried_in_process(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """A 503 on an all-items GET is retried with a short backoff and the look-up still
        answers."""
        await provider.add_history([Play(1, BIG_TROUBLE, WATCHED)])
        fake.fail_next(503, path="/sync/all-items")

        assert await provider.find_in_history([Play(1, BIG_TROUBLE, WATCHED)]) == {1}
        statuses = [r["status"] for r in fake.requests if r["path"] == "/sync/all-items/movies"]
        assert statuses == [503, 200]

    async def test_long_server_wait_is_left_to_the_outbox(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """A 503 asking for a minute's wait is not retried in-process: RetryableError with
        that wait after one request."""
        fake.fail_next(503, headers={"Retry-After": "60"}, path="/sync/all-items")

        with pytest.raises(RetryableError) as caught:
            await provider.find_in_history([Play(1, BIG_TROUBLE, WATCHED)])
        assert caught.value.retry_after_s == 60.0
        assert len(fake.requests) == 1

    async def test_null_all_items_means_nothing_found(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """An empty account answers `null`; that is "not there", not an error."""
        plays = [Play(1, BIG_TROUBLE, WATCHED), Play(2, FUTURAMA_S02E15, WATCHED)]

        assert await provider.find_in_history(plays) == set()
        assert {r["status"] for r in fake.requests} == {200}

    async def test_reads_all_items_with_date_from(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """A play never sent: date_from = watched_at − tolerance − 1 day; episodes are read
        with their watched_at."""
        await provider.find_in_history([Play(1, FUTURAMA_S02E15, WATCHED)])

        request = fake.requests[-1]
        assert request["path"] == "/sync/all-items/shows"
        assert request["query"]["date_from"] == "2024-01-14T10:29:55Z"
        assert request["query"]["extended"] == "full"
        assert request["query"]["episode_watched_at"] == "yes"

    async def test_large_tolerance_widens_date_from(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """A 4 h tolerance moves date_from 4 h earlier."""
        await provider.find_in_history([Play(1, BIG_TROUBLE, WATCHED)], tolerance_s=14400)

        assert fake.requests[-1]["query"]["date_from"] == "2024-01-14T06:30:00Z"

    async def test_sent_play_is_found_with_a_narrow_date_from(
        self, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        """A play sent just now with a watched_at years ago: date_from is sent_at − 1 day, not
        years back, and SIMKL (filtering on update time) still returns the item. An item
        last updated before that date_from is not downloaded, though its play matches."""
        clock = [datetime(2020, 5, 1, tzinfo=UTC)]
        async with FakeSimkl(
            client_id=CLIENT_ID, get_per_s=1000, post_per_s=1000, now=lambda: clock[0]
        ) as server:
            store = TokenStore(tmp_path, "simkl")
            store.save({"access_token": server.issue_token()})
            simkl = make_provider(session, server, store)
            long_ago = datetime(2019, 3, 2, 20, 0, tzinfo=UTC)
            await simkl.add_history([Play(1, BARRY_LYNDON, long_ago)])  # recorded in 2020
            clock[0] = sent_at = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
            await simkl.add_history([Play(2, BIG_TROUBLE, long_ago)])  # recorded just now

            found = await simkl.find_in_history(
                [
                    Play(2, BIG_TROUBLE, long_ago, sent_at=sent_at),
                    Play(3, BARRY_LYNDON, long_ago, sent_at=sent_at),
                ]
            )

        assert found == {2}
        assert server.requests[-1]["query"]["date_from"] == "2026-11-20T12:00:00Z"

    async def test_unsent_play_date_from_follows_watched_at(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """If any play has no sent_at, date_from reaches back to its watched_at − tolerance."""
        sent = Play(1, BIG_TROUBLE, WATCHED, sent_at=WATCHED + timedelta(days=30))
        unsent = Play(2, BARRY_LYNDON, WATCHED + timedelta(days=2))

        await provider.find_in_history([sent, unsent], tolerance_s=3600)

        assert fake.requests[-1]["query"]["date_from"] == "2024-01-16T09:30:00Z"

    async def test_play_recorded_by_another_app_hours_apart(self, provider: SimklProvider) -> None:
        """An import checked with a 4 h window finds a watch recorded 3 h off (by another
        app); the default tolerance does not."""
        await provider.add_history([Play(1, FUTURAMA_S02E15, WATCHED + timedelta(hours=3))])
        imported = Play(9, FUTURAMA_S02E15, WATCHED)

        assert await provider.find_in_history([imported]) == set()
        assert await provider.find_in_history([imported], tolerance_s=14400) == {9}

    async def test_only_the_latest_watch_is_matched(self, provider: SimklProvider) -> None:
        """SIMKL keeps the latest watch per item: a play near it matches within the tolerance,
        a play near an earlier (overwritten) watch does not."""
        await provider.add_history(
            [Play(1, BIG_TROUBLE, WATCHED), Play(2, BIG_TROUBLE, WATCHED + timedelta(hours=5))]
        )

        found = await provider.find_in_history(
            [
                Play(10, BIG_TROUBLE, WATCHED + timedelta(hours=4)),
                Play(11, BIG_TROUBLE, WATCHED - timedelta(minutes=10)),
            ],
            tolerance_s=14400,
        )

        assert found == {10}


# --------------------------------------------------------------------------- scrobble


class TestScrobble:
    async def test_start_is_sent_with_clamped_progress(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """START → /scrobble/start; progress 0 is raised to 1."""
        assert await provider.scrobble(Action.START, BIG_TROUBLE, 0.0) is LiveOutcome.SENT

        assert fake.scrobbles[0]["endpoint"] == "start"
        assert fake.scrobbles[0]["progress"] == 1.0
        assert fake.scrobbles[0]["action"] == "start"

    async def test_stop_goes_to_pause_and_never_records_a_play(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """STOP at 95 % → /scrobble/pause at 79.9 %: live state never becomes a play."""
        assert await provider.scrobble(Action.STOP, BIG_TROUBLE, 95.0) is LiveOutcome.SENT

        assert fake.scrobbles[0]["endpoint"] == "pause"
        assert fake.scrobbles[0]["progress"] == 79.9
        assert fake.history == []

    async def test_episode_scrobble_uses_show_ids_and_numbers(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """An episode is scrobbled as show{ids} + episode{season, number}."""
        await provider.scrobble(Action.PAUSE, FUTURAMA_S02E15, 42.5)

        body = posts(fake, "/scrobble/pause")[0]["json"]
        assert body["show"]["ids"] == {"tvdb": 73871, "imdb": "tt0149460"}
        assert body["episode"] == {"season": 2, "number": 15}
        assert body["progress"] == 42.5

    async def test_scrobble_lock_is_retryable_after_20_seconds(
        self, provider: SimklProvider, fake: FakeSimkl
    ) -> None:
        """400 RATE_LIMIT (the per-user scrobble lock) → RetryableError(retry_after_s=20)."""
        fake.scrobble_lock_hold_s = 20
        await provider.scrobble(Action.START, BIG_TROUBLE, 10.0)

        with pytest.raises(RetryableError) as caught:
            await provider.scrobble(Action.PAUSE, BIG_TROUBLE, 20.0)
        assert caught.value.retry_after_s == 20.0
        assert fake.rate_limited[-1]["reason"] == "scrobble_lock"

    async def test_conflict_is_already(self, provider: SimklProvider, fake: FakeSimkl) -> None:
        """409 {watched_at, expires_at} → ALREADY."""
        fake.fail_next(
            409,
            body={
                "watched_at": "2024-01-15T10:30:00.000Z",
                "expires_at": "2024-01-15T11:30:00.000Z",
            },
        )

        assert await provider.scrobble(Action.PAUSE, BIG_TROUBLE, 50.0) is LiveOutcome.ALREADY

    async def test_unknown_item_is_not_found(self, provider: SimklProvider) -> None:
        """404 from /scrobble → NOT_FOUND."""
        outcome = await provider.scrobble(Action.START, FUTURAMA_UNKNOWN_EPISODE, 5.0)

        assert outcome is LiveOutcome.NOT_FOUND

    async def test_watched_is_not_live_state(self, provider: SimklProvider) -> None:
        """Plays go through add_history; scrobble() refuses WATCHED."""
        with pytest.raises(ValueError, match="add_history"):
            await provider.scrobble(Action.WATCHED, BIG_TROUBLE, 100.0)


# --------------------------------------------------------------------------- missing_ids


class TestMissingIds:
    def test_episode_without_show_ids_is_refused(self, provider: SimklProvider) -> None:
        """An episode's own ids are not enough: SIMKL needs the show's."""
        orphan = Item(MediaKind.EPISODE, ids=Ids(tvdb="163303", imdb="tt1"), season=2, number=15)

        reason = provider.missing_ids(orphan)

        assert reason is not None and "show" in reason

    def test_episode_without_numbers_is_refused(self, provider: SimklProvider) -> None:
        """Season and number are required next to the show ids."""
        item = Item(MediaKind.EPISODE, show_ids=Ids(tvdb="73871"), season=2)

        assert provider.missing_ids(item) is not None

    def test_movie_with_only_a_trakt_id_is_refused(self, provider: SimklProvider) -> None:
        """SIMKL takes imdb, tmdb or simkl ids for movies."""
        assert provider.missing_ids(Item(MediaKind.MOVIE, "X", ids=Ids(trakt="12"))) is not None

    def test_complete_items_are_accepted(self, provider: SimklProvider) -> None:
        """A movie with an imdb id and an episode with show ids + numbers can be sent."""
        assert provider.missing_ids(BIG_TROUBLE) is None
        assert provider.missing_ids(FUTURAMA_S02E15) is None


# --------------------------------------------------------------------------- pacing


class TestPacing:
    async def test_default_pacing_never_trips_the_post_block(
        self, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        """1 POST/s from the default limiter stays under SIMKL's POST limit (real timing)."""
        async with FakeSimkl(client_id=CLIENT_ID) as strict:
            store = TokenStore(tmp_path, "simkl")
            store.save({"access_token": strict.issue_token()})
            limiter = Limiter.per_second(post_per_s=1.0, get_per_s=10.0)
            simkl = make_provider(session, strict, store, limiter=limiter)
            results = await asyncio.gather(
                *(
                    simkl.add_history([Play(n, BIG_TROUBLE, WATCHED + timedelta(hours=n))])
                    for n in range(3)
                )
            )

        assert strict.rate_limited == []
        assert all(r == {n: PlayOutcome.ADDED} for n, r in enumerate(results))

    async def test_unpaced_posts_hit_the_temporary_block(
        self, session: aiohttp.ClientSession, tmp_path: Path
    ) -> None:
        """Two POSTs in the same second: the second is refused and reported retryable."""
        async with FakeSimkl(client_id=CLIENT_ID) as strict:
            store = TokenStore(tmp_path, "simkl")
            store.save({"access_token": strict.issue_token()})
            simkl = make_provider(session, strict, store)
            await simkl.add_history([Play(1, BIG_TROUBLE, WATCHED)])
            with pytest.raises(RetryableError) as caught:
                await simkl.add_history([Play(2, BARRY_LYNDON, WATCHED)])

        assert caught.value.retry_after_s == 5.0
        assert [r["reason"] for r in strict.rate_limited] == ["post_rate"]
        assert len(strict.history) == 1


# --------------------------------------------------------------------------- the fake itself


class TestFakeStrictness:
    @pytest.mark.parametrize("missing", ["app-name", "app-version"])
    async def test_missing_app_parameter_is_rejected(self, fake: FakeSimkl, missing: str) -> None:
        """Every request must carry app-name and app-version (api.simkl.org "Headers")."""
        params = {k: v for k, v in IDENT.items() if k != missing}

        status, body = await raw_request(
            fake, "GET", "/search/id", params={**params, "imdb": "tt0090728"}
        )

        assert status == 400
        assert body["error"] == "empty_field" and missing in body["message"]

    async def test_missing_user_agent_is_rejected(self, fake: FakeSimkl) -> None:
        """A request without User-Agent is refused."""
        status, body = await raw_request(
            fake, "GET", "/search/id", params={**IDENT, "imdb": "tt0090728"}, user_agent=False
        )

        assert (status, body["error"]) == (400, "empty_field")

    async def test_missing_client_id_is_412(self, fake: FakeSimkl) -> None:
        """No client id → 412 client_id_failed in SIMKL's envelope."""
        params = {k: v for k, v in IDENT.items() if k != "client_id"}

        status, body = await raw_request(fake, "GET", "/search/id", params=params)

        assert status == 412
        assert body == {
            "error": "client_id_failed",
            "code": 412,
            "message": "Your client_id is wrong. Try another one",
        }

    async def test_client_id_header_is_accepted(self, fake: FakeSimkl) -> None:
        """simkl-api-key header stands in for the client_id query parameter."""
        params = {"app-name": "tests", "app-version": "1.0", "imdb": "tt0090728"}

        status, _ = await raw_request(
            fake, "GET", "/search/id", params=params, headers={"simkl-api-key": CLIENT_ID}
        )

        assert status == 200

    async def test_sync_without_bearer_is_401(self, fake: FakeSimkl) -> None:
        """/sync/* needs a bearer token."""
        status, body = await raw_request(fake, "GET", "/sync/activities", params=IDENT)

        assert (status, body["code"]) == (401, 401)

    async def test_all_items_is_null_when_empty(self, fake: FakeSimkl) -> None:
        """Nothing in the lists → the whole body is `null`."""
        headers = {"Authorization": f"Bearer {fake.issue_token()}"}

        status, body = await raw_request(
            fake, "GET", "/sync/all-items/movies", params=IDENT, headers=headers
        )

        assert (status, body) == (200, None)

    async def test_all_items_date_from_filters_on_update_time(self) -> None:
        """date_from selects items updated (a play recorded) after it, whatever their
        watched_at: a play of 2019 recorded in 2026 is returned for date_from in 2026."""
        recorded = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
        async with FakeSimkl(client_id=CLIENT_ID, now=lambda: recorded) as server:
            headers = {"Authorization": f"Bearer {server.issue_token()}"}
            body = {
                "movies": [{"ids": {"imdb": "tt0090728"}, "watched_at": "2019-01-01T00:00:00Z"}]
            }
            status, _ = await raw_request(
                server, "POST", "/sync/history", params=IDENT, headers=headers, body=body
            )
            assert status == 201

            async def since(date_from: str) -> Any:
                params = {**IDENT, "date_from": date_from}
                _, data = await raw_request(
                    server, "GET", "/sync/all-items/movies", params=params, headers=headers
                )
                return data

            before, after = await since("2026-11-21T11:00:00Z"), await since("2026-11-21T13:00:00Z")

        assert [m["last_watched_at"] for m in before["movies"]] == ["2019-01-01T00:00:00Z"]
        assert after is None

    async def test_repeat_stop_within_an_hour_is_409(self, fake: FakeSimkl) -> None:
        """A second stop >= 80 % of the same item → 409 {watched_at, expires_at}; one play."""
        headers = {"Authorization": f"Bearer {fake.issue_token()}"}
        body = {"progress": 90, "movie": {"ids": {"imdb": "tt0090728"}}}

        first, reply = await raw_request(
            fake, "POST", "/scrobble/stop", params=IDENT, headers=headers, body=body
        )
        second, conflict = await raw_request(
            fake, "POST", "/scrobble/stop", params=IDENT, headers=headers, body=body
        )

        assert (first, reply["action"]) == (201, "scrobble")
        assert second == 409 and set(conflict) == {"watched_at", "expires_at"}
        assert len(fake.history) == 1

    async def test_get_burst_over_the_limit_is_429(self) -> None:
        """More than 10 GETs within a second → 429 with Retry-After."""
        async with FakeSimkl(client_id=CLIENT_ID) as strict:
            params = {**IDENT, "imdb": "tt0090728"}
            statuses = [
                (await raw_request(strict, "GET", "/search/id", params=params))[0]
                for _ in range(12)
            ]

        assert statuses.count(429) >= 1
        assert statuses[:10] == [200] * 10
        assert strict.rate_limited[0]["reason"] == "get_rate"

    async def test_search_by_id(self, fake: FakeSimkl) -> None:
        """/search/id finds catalogue items (tmdb needs type=show for shows); else []."""
        _, movie = await raw_request(
            fake, "GET", "/search/id", params={**IDENT, "imdb": "tt0090728"}
        )
        _, show = await raw_request(
            fake, "GET", "/search/id", params={**IDENT, "tmdb": "615", "type": "show"}
        )
        _, none = await raw_request(
            fake, "GET", "/search/id", params={**IDENT, "imdb": "tt0000001"}
        )

        assert [(m["type"], m["title"]) for m in movie] == [
            ("movie", "Big Trouble in Little China")
        ]
        assert [(s["type"], s["title"]) for s in show] == [("tv", "Futurama")]
        assert none == []
