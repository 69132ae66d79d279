"""The fake SIMKL keeps to the documented API (simkl_apiary.apib, api.simkl.org notes).

Plain aiohttp requests, no crosswatchd code: what a client sees on the wire.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest

from tests.fakes.catalog import Catalog, default_catalog
from tests.fakes.simkl import FakeSimkl

CID = "simkl-cid"
IDENT = {"client_id": CID, "app-name": "fakes-test", "app-version": "1.0"}
BIG_TROUBLE = {"ids": {"imdb": "tt0090728"}}
BARRY_LYNDON = {"ids": {"imdb": "tt0072684"}}
FUTURAMA = {"ids": {"tvdb": 73871}}
FRIEREN = {"ids": {"tvdb": 424536}}
T0 = datetime(2026, 5, 28, 20, 0, tzinfo=UTC)


class Now:
    """The fake's wall clock, moved by hand."""

    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


class Client:
    def __init__(self, http: aiohttp.ClientSession, fake: FakeSimkl) -> None:
        self.http = http
        self.fake = fake

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        headers = {"User-Agent": "fakes-test/1.0", "Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else orjson.dumps(body)
        async with self.http.request(
            method,
            self.fake.url + path,
            headers=headers,
            data=data,
            params={**IDENT, **(params or {})},
        ) as resp:
            return resp.status, orjson.loads(await resp.read())


@pytest.fixture
def now() -> Now:
    return Now()


@pytest.fixture
def catalog() -> Catalog:
    cat = default_catalog()
    frieren = cat.add_show("Frieren", 2023, anime=True, tvdb=424536)
    cat.add_episode(frieren, 1, 1, "The Journey's End", number_abs=1)
    return cat


@pytest.fixture
async def fake(now: Now, catalog: Catalog) -> AsyncIterator[FakeSimkl]:
    """Rate limits out of the way (their own tests switch them back on)."""
    async with FakeSimkl(
        client_id=CID, catalog=catalog, now=now, get_per_s=1000, post_per_s=1000
    ) as server:
        yield server


@pytest.fixture
async def client(fake: FakeSimkl) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as http:
        yield Client(http, fake)


async def post(client: Client, token: str, path: str, body: dict[str, Any]) -> Any:
    status, reply = await client.call("POST", path, token=token, body=body)
    assert status == 201, reply
    return reply


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- users apart


class TestUsersApart:
    async def test_a_play_is_only_in_its_token_users_lists(
        self, fake: FakeSimkl, client: Client
    ) -> None:
        """alex's play is alex's: sam's all-items stays `null`, the default user's history
        empty."""
        alex, sam = fake.issue_token(user="alex"), fake.issue_token(user="sam")

        await post(client, alex, "/sync/history", {"movies": [BIG_TROUBLE]})
        _, sams = await client.call("GET", "/sync/all-items", token=sam)
        _, alexs = await client.call("GET", "/sync/all-items", token=alex)

        assert sams is None and fake.history == []
        assert [m["movie"]["title"] for m in alexs["movies"]] == ["Big Trouble in Little China"]
        assert len(fake.user("alex").history) == 1

    async def test_pin_approval_binds_the_token_to_the_approving_user(
        self, fake: FakeSimkl, client: Client
    ) -> None:
        """approve_pin(user="sam") approves the latest code; the polled token is sam's."""
        fake.pin_interval_s = 0
        _, pin = await client.call("GET", "/oauth/pin")
        fake.approve_pin(user="sam")

        _, reply = await client.call("GET", f"/oauth/pin/{pin['user_code']}")

        assert reply["result"] == "OK" and fake.token_user(reply["access_token"]) == "sam"

    async def test_revoke_all_of_one_user_leaves_the_others(
        self, fake: FakeSimkl, client: Client
    ) -> None:
        """revoke_all(user="alex") → alex 401, sam still 200."""
        alex, sam = fake.issue_token(user="alex"), fake.issue_token(user="sam")

        fake.revoke_all(user="alex")

        assert (await client.call("GET", "/sync/activities", token=alex))[0] == 401
        assert (await client.call("GET", "/sync/activities", token=sam))[0] == 200

    async def test_get_limit_is_per_token_and_counted_for_its_user(
        self, catalog: Catalog, now: Now
    ) -> None:
        """10 GET/s per token: alex's 11th GET within a second is a 429, sam's first passes;
        the refusal is in alex's rate_limited only."""
        async with (
            FakeSimkl(client_id=CID, catalog=catalog, now=now, clock=lambda: 100.0) as fake,
            aiohttp.ClientSession() as http,
        ):
            client = Client(http, fake)
            alex, sam = fake.issue_token(user="alex"), fake.issue_token(user="sam")
            alexs = [
                (await client.call("GET", "/sync/activities", token=alex))[0] for _ in range(11)
            ]
            sams = (await client.call("GET", "/sync/activities", token=sam))[0]

        assert (alexs[-1], alexs[:10], sams) == (429, [200] * 10, 200)
        assert [r["reason"] for r in fake.user("alex").rate_limited] == ["get_rate"]
        assert fake.user("sam").rate_limited == []

    async def test_scrobble_lock_is_per_user(self, catalog: Catalog, now: Now) -> None:
        """The 20-s scrobble lock is per user: alex's held lock does not stop sam."""
        async with (
            FakeSimkl(
                client_id=CID, catalog=catalog, now=now, clock=lambda: 5.0, post_per_s=1000
            ) as fake,
            aiohttp.ClientSession() as http,
        ):
            fake.scrobble_lock_hold_s = 20.0
            client = Client(http, fake)
            alex, sam = fake.issue_token(user="alex"), fake.issue_token(user="sam")
            body = {"progress": 10, "movie": BIG_TROUBLE}
            first = (await client.call("POST", "/scrobble/start", token=alex, body=body))[0]
            again = await client.call("POST", "/scrobble/start", token=alex, body=body)
            other = (await client.call("POST", "/scrobble/start", token=sam, body=body))[0]

        assert (first, again[0], again[1]["error"], other) == (201, 400, "RATE_LIMIT", 201)


# --------------------------------------------------------------------------- activities


class TestActivities:
    async def test_a_movie_play_moves_movies_completed_only(
        self, fake: FakeSimkl, client: Client, now: Now
    ) -> None:
        """A movie play moves movies.completed, movies.all and all to when it was recorded;
        tv_shows and anime stay null."""
        token = fake.issue_token()
        now.at = T0 + timedelta(minutes=5)

        await post(client, token, "/sync/history", {"movies": [BIG_TROUBLE]})
        _, body = await client.call("GET", "/sync/activities", token=token)

        assert body["movies"]["completed"] == body["movies"]["all"] == body["all"] == at(5)
        assert body["movies"]["plantowatch"] is None
        assert body["tv_shows"]["all"] is None and body["anime"]["all"] is None

    async def test_post_answers_like_get(self, fake: FakeSimkl, client: Client) -> None:
        """The how-to POSTs /sync/activities; the reply is the same as the GET's."""
        token = fake.issue_token()
        await post(client, token, "/sync/add-to-list", {"shows": [{**FUTURAMA, "to": "hold"}]})

        get = await client.call("GET", "/sync/activities", token=token)
        posted = await client.call("POST", "/sync/activities", token=token)

        assert get == posted and get[1]["tv_shows"]["hold"] == at(0)

    async def test_a_rating_moves_rated_at_of_its_type(
        self, fake: FakeSimkl, client: Client, now: Now
    ) -> None:
        """Rating an anime moves anime.rated_at (and anime.watching: it auto-joins Watching)."""
        token = fake.issue_token()
        now.at = T0 + timedelta(minutes=7)

        await post(client, token, "/sync/ratings", {"shows": [{**FRIEREN, "rating": 10}]})
        _, body = await client.call("GET", "/sync/activities", token=token)

        assert body["anime"]["rated_at"] == body["anime"]["watching"] == at(7)
        assert body["tv_shows"]["rated_at"] is None

    async def test_another_users_change_leaves_these_activities(
        self, fake: FakeSimkl, client: Client
    ) -> None:
        """Activities are per user."""
        alex, sam = fake.issue_token(user="alex"), fake.issue_token(user="sam")

        await post(client, alex, "/sync/history", {"movies": [BIG_TROUBLE]})
        _, sams = await client.call("GET", "/sync/activities", token=sam)

        assert sams["all"] is None


# --------------------------------------------------------------------------- all-items


class TestAllItems:
    async def test_is_null_when_the_user_has_nothing(self, fake: FakeSimkl, client: Client) -> None:
        """ "If a user doesn't have anything in his watchlists, the response will be null"."""
        status, body = await client.call("GET", "/sync/all-items/shows", token=fake.issue_token())

        assert (status, body) == (200, None)

    async def test_date_from_selects_by_update_time_not_watch_time(
        self, fake: FakeSimkl, client: Client, now: Now
    ) -> None:
        """A play recorded at T0 watched "tomorrow" is not after date_from=T0+1min; a list
        move at T0+2min of a movie never watched is."""
        token = fake.issue_token()
        future = {**BIG_TROUBLE, "watched_at": "2026-05-29T20:00:00Z"}
        await post(client, token, "/sync/history", {"movies": [future]})
        now.at = T0 + timedelta(minutes=2)
        await post(
            client, token, "/sync/add-to-list", {"movies": [{**BARRY_LYNDON, "to": "plantowatch"}]}
        )

        _, body = await client.call(
            "GET", "/sync/all-items/movies", token=token, params={"date_from": at(1)}
        )

        assert [(m["movie"]["title"], m["status"]) for m in body["movies"]] == [
            ("Barry Lyndon", "plantowatch")
        ]

    async def test_status_segment_filters_by_list(self, fake: FakeSimkl, client: Client) -> None:
        """/sync/all-items/movies/plantowatch lists only Plan to Watch."""
        token = fake.issue_token()
        await post(client, token, "/sync/history", {"movies": [BIG_TROUBLE]})
        await post(
            client, token, "/sync/add-to-list", {"movies": [{**BARRY_LYNDON, "to": "plantowatch"}]}
        )

        _, body = await client.call("GET", "/sync/all-items/movies/plantowatch", token=token)

        assert [m["movie"]["title"] for m in body["movies"]] == ["Barry Lyndon"]
        assert body["movies"][0]["last_watched_at"] is None

    async def test_one_watched_state_per_item_the_latest(
        self, fake: FakeSimkl, client: Client
    ) -> None:
        """Two plays of a movie → one item, last_watched_at the later one."""
        token = fake.issue_token()
        plays = [
            {**BIG_TROUBLE, "watched_at": "2024-01-02T10:00:00Z"},
            {**BIG_TROUBLE, "watched_at": "2024-03-04T10:00:00Z"},
        ]
        await post(client, token, "/sync/history", {"movies": plays})

        _, body = await client.call("GET", "/sync/all-items/movies", token=token)

        assert [m["last_watched_at"] for m in body["movies"]] == ["2024-03-04T10:00:00Z"]

    async def test_extended_full_lists_watched_episodes_with_watched_at(
        self, fake: FakeSimkl, client: Client
    ) -> None:
        """extended=full&episode_watched_at=yes: seasons[].episodes[] with watched_at."""
        token = fake.issue_token()
        show = {
            **FUTURAMA,
            "seasons": [
                {"number": 2, "episodes": [{"number": 15, "watched_at": "2024-05-05T05:05:05Z"}]}
            ],
        }
        await post(client, token, "/sync/history", {"shows": [show]})

        _, body = await client.call(
            "GET",
            "/sync/all-items/shows",
            token=token,
            params={"extended": "full", "episode_watched_at": "yes"},
        )

        assert body["shows"][0]["seasons"] == [
            {"number": 2, "episodes": [{"number": 15, "watched_at": "2024-05-05T05:05:05Z"}]}
        ]

    async def test_anime_is_listed_under_anime(self, fake: FakeSimkl, client: Client) -> None:
        """An anime show is in the `anime` block with anime_type, not under `shows`."""
        token = fake.issue_token()
        await post(
            client, token, "/sync/add-to-list", {"shows": [{**FRIEREN, "to": "plantowatch"}]}
        )

        _, shows = await client.call("GET", "/sync/all-items/shows", token=token)
        _, anime = await client.call("GET", "/sync/all-items/anime", token=token)

        assert shows is None
        assert [(a["show"]["title"], a["anime_type"]) for a in anime["anime"]] == [
            ("Frieren", "tv")
        ]


# --------------------------------------------------------------------------- lists


class TestAddToList:
    async def test_moves_an_item_between_lists(self, fake: FakeSimkl, client: Client) -> None:
        """A watched (Completed) movie sent with to=plantowatch leaves Completed."""
        token = fake.issue_token()
        await post(client, token, "/sync/history", {"movies": [BIG_TROUBLE]})

        reply = await post(
            client, token, "/sync/add-to-list", {"movies": [{**BIG_TROUBLE, "to": "plantowatch"}]}
        )
        _, completed = await client.call("GET", "/sync/all-items/movies/completed", token=token)
        _, planned = await client.call("GET", "/sync/all-items/movies/plantowatch", token=token)

        assert reply["added"]["movies"] == [{**BIG_TROUBLE, "to": "plantowatch", "type": "movie"}]
        assert completed is None and len(planned["movies"]) == 1

    async def test_watching_is_not_a_movie_list(self, fake: FakeSimkl, client: Client) -> None:
        """Movies have no Watching / On Hold list → 400 wrong_parameter, nothing moved."""
        token = fake.issue_token()

        status, error = await client.call(
            "POST",
            "/sync/add-to-list",
            token=token,
            body={"movies": [{**BIG_TROUBLE, "to": "watching"}]},
        )

        assert (status, error["error"]) == (400, "wrong_parameter")
        assert fake.user().entries == {}

    async def test_unknown_item_is_not_found(self, fake: FakeSimkl, client: Client) -> None:
        """An item SIMKL does not know comes back under not_found."""
        unknown = {"ids": {"imdb": "tt0000222"}, "to": "plantowatch"}

        reply = await post(client, fake.issue_token(), "/sync/add-to-list", {"movies": [unknown]})

        assert reply["not_found"]["movies"] == [unknown] and reply["added"]["movies"] == []


class TestHistoryRemove:
    async def test_removing_a_movie_drops_its_history_and_its_rating(
        self, fake: FakeSimkl, client: Client, now: Now
    ) -> None:
        """ "ratings are removed automatically": after /sync/history/remove the movie is in no
        list, has no plays and no rating; removed_from_list moves."""
        token = fake.issue_token()
        await post(client, token, "/sync/history", {"movies": [BIG_TROUBLE]})
        await post(client, token, "/sync/ratings", {"movies": [{**BIG_TROUBLE, "rating": 9}]})
        now.at = T0 + timedelta(minutes=3)

        reply = await post(client, token, "/sync/history/remove", {"movies": [BIG_TROUBLE]})
        _, items = await client.call("GET", "/sync/all-items", token=token)
        _, ratings = await client.call("GET", "/sync/ratings/movies", token=token)
        _, activities = await client.call("GET", "/sync/activities", token=token)

        assert reply["deleted"]["movies"] == 1
        assert (items, ratings, fake.history) == (None, None, [])
        assert (
            activities["movies"]["removed_from_list"] == activities["movies"]["rated_at"] == at(3)
        )

    async def test_removing_episodes_keeps_the_show_in_its_list(
        self, fake: FakeSimkl, client: Client
    ) -> None:
        """A show sent with seasons[].episodes only unmarks those episodes."""
        token = fake.issue_token()
        await post(client, token, "/sync/history", {"shows": [FUTURAMA]})
        await post(client, token, "/sync/ratings", {"shows": [{**FUTURAMA, "rating": 8}]})

        body = {"shows": [{**FUTURAMA, "seasons": [{"number": 2, "episodes": [{"number": 15}]}]}]}
        reply = await post(client, token, "/sync/history/remove", body)
        _, items = await client.call("GET", "/sync/all-items/shows", token=token)

        assert reply["deleted"]["episodes"] == 1 and fake.history == []
        assert [(s["show"]["title"], s["user_rating"]) for s in items["shows"]] == [("Futurama", 8)]


# --------------------------------------------------------------------------- ratings


class TestRatings:
    async def test_rating_an_unlisted_movie_puts_it_in_completed(
        self, fake: FakeSimkl, client: Client
    ) -> None:
        """ "the movie will be added to 'I've seen this' list"; statuses says so."""
        token = fake.issue_token()

        reply = await post(
            client, token, "/sync/ratings", {"movies": [{**BIG_TROUBLE, "rating": 7}]}
        )

        assert reply["added"]["statuses"][0]["response"] == {"status": "completed"}
        assert fake.user().status_of("movie", fake.catalog.movies[0]["ids"]["simkl"]) == "completed"

    async def test_rating_outside_1_to_10_is_400_and_nothing_is_rated(
        self, fake: FakeSimkl, client: Client
    ) -> None:
        """rating must be one of 1…10."""
        token = fake.issue_token()
        for bad in (0, 11, 8.5, "8"):
            body = {"movies": [{**BARRY_LYNDON, "rating": 5}, {**BIG_TROUBLE, "rating": bad}]}
            status, error = await client.call("POST", "/sync/ratings", token=token, body=body)
            assert (status, error["error"]) == (400, "wrong_parameter"), bad

        assert fake.user().entries == {}

    async def test_date_from_selects_by_when_rated_on_simkl_not_rated_at(
        self, fake: FakeSimkl, client: Client, now: Now
    ) -> None:
        """A rating sent at T0+10min with rated_at years ago is after date_from=T0+5min."""
        token = fake.issue_token()
        await post(client, token, "/sync/ratings", {"movies": [{**BARRY_LYNDON, "rating": 6}]})
        now.at = T0 + timedelta(minutes=10)
        old = {**BIG_TROUBLE, "rating": 9, "rated_at": "2015-01-01T00:00:00Z"}
        await post(client, token, "/sync/ratings", {"movies": [old]})

        _, body = await client.call(
            "GET", "/sync/ratings/movies", token=token, params={"date_from": at(5)}
        )

        assert [(m["movie"]["title"], m["user_rated_at"]) for m in body["movies"]] == [
            ("Big Trouble in Little China", "2015-01-01T00:00:00Z")
        ]

    async def test_rating_segment_filters_by_value(self, fake: FakeSimkl, client: Client) -> None:
        """/sync/ratings/movies/9,10 lists only those ratings."""
        token = fake.issue_token()
        body = {"movies": [{**BIG_TROUBLE, "rating": 10}, {**BARRY_LYNDON, "rating": 3}]}
        await post(client, token, "/sync/ratings", body)

        _, high = await client.call("GET", "/sync/ratings/movies/9,10", token=token)

        assert [m["user_rating"] for m in high["movies"]] == [10]

    async def test_a_removed_rating_is_listed_as_null_after_date_from(
        self, fake: FakeSimkl, client: Client, now: Now
    ) -> None:
        """/sync/ratings/remove unrates; with date_from the deletion shows as user_rating null,
        and a rating filter skips it."""
        token = fake.issue_token()
        await post(client, token, "/sync/ratings", {"movies": [{**BIG_TROUBLE, "rating": 4}]})
        now.at = T0 + timedelta(minutes=10)
        await post(client, token, "/sync/ratings/remove", {"movies": [BIG_TROUBLE]})

        _, changed = await client.call(
            "GET", "/sync/ratings/movies", token=token, params={"date_from": at(5)}
        )
        _, filtered = await client.call(
            "GET", "/sync/ratings/movies/4", token=token, params={"date_from": at(5)}
        )

        assert [m["user_rating"] for m in changed["movies"]] == [None]
        assert filtered is None
