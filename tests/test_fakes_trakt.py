"""The fake Trakt keeps to the documented API (trakt.apib; discover-watchlist.md §7).

Plain aiohttp requests, no crosswatchd code: what a client sees on the wire.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.catalog import Catalog, default_catalog
from tests.fakes.trakt import FakeTrakt

CID, SECRET = "cid", "csecret"
BIG_TROUBLE = {"ids": {"imdb": "tt0090728"}}
BARRY_LYNDON = {"ids": {"imdb": "tt0072684"}}
FUTURAMA = {"ids": {"tvdb": 73871}}
FUTURAMA_S02E15 = {"ids": {"tvdb": 163303}}
T0 = 1_780_000_000.0  # 2026-05-28T20:26:40Z


class Wall:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Client:
    """Trakt's required headers ("Required Headers") around one aiohttp session."""

    def __init__(self, http: aiohttp.ClientSession, fake: FakeTrakt) -> None:
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
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {
            "trakt-api-key": CID,
            "trakt-api-version": "2",
            "User-Agent": "fakes-test/1.0",
            "Content-Type": "application/json",
        }
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body)
        async with self.http.request(
            method, self.fake.url + path, headers=headers, data=data, params=params
        ) as resp:
            raw = await resp.read()
            payload = json.loads(raw) if raw else None
            return resp.status, payload, dict(resp.headers)


@pytest.fixture
def wall() -> Wall:
    return Wall()


@pytest.fixture
def catalog() -> Catalog:
    cat = default_catalog()
    for n in range(30):
        cat.add_movie(f"Filler {n}", 2000 + n, imdb=f"tt{9_100_000 + n}")
    anime = cat.add_show("Frieren", 2023, anime=True, tvdb=424536)
    cat.add_episode(anime, 1, 28, "The Land Where Heroes Rest", number_abs=28)
    cat.add_episode(anime, 2, 1, "Journey North", number_abs=29)
    return cat


@pytest.fixture
async def fake(wall: Wall, catalog: Catalog) -> AsyncIterator[FakeTrakt]:
    """POST pacing out of the way (its own tests switch it back on)."""
    async with FakeTrakt(
        client_id=CID, client_secret=SECRET, catalog=catalog, clock=wall, post_tolerance_s=1.0
    ) as server:
        yield server


@pytest.fixture
async def client(fake: FakeTrakt) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as http:
        yield Client(http, fake)


def token(fake: FakeTrakt, user: str | None = None) -> str:
    return str(fake.issue_token(user=user)["access_token"])


async def watch(client: Client, tok: str, body: dict[str, Any]) -> None:
    status, _, _ = await client.call("POST", "/sync/history", token=tok, body=body)
    assert status == 201


# --------------------------------------------------------------------------- users apart


class TestUsersApart:
    async def test_a_play_is_only_in_its_token_users_history(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """A play sent with alex's token is alex's; sam's history stays empty."""
        alex, sam = token(fake, "alex"), token(fake, "sam")

        await watch(client, alex, {"movies": [BIG_TROUBLE]})
        _, sams, _ = await client.call("GET", "/sync/history", token=sam)

        assert [h["movie"]["title"] for h in fake.plays(user="alex")] == [
            "Big Trouble in Little China"
        ]
        assert sams == [] and fake.user("sam").history == [] and fake.history == []

    async def test_device_approval_binds_the_token_to_the_approving_user(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """approve_device(code, user="sam") → the polled token writes sam's history."""
        fake.device_interval_s = 0.0
        _, code, _ = await client.call("POST", "/oauth/device/code", body={"client_id": CID})
        fake.approve_device(code["user_code"], user="sam")
        poll = {"code": code["device_code"], "client_id": CID, "client_secret": SECRET}
        status, tok, _ = await client.call("POST", "/oauth/device/token", body=poll)

        await watch(client, tok["access_token"], {"movies": [BIG_TROUBLE]})

        assert status == 200 and fake.token_user(tok["access_token"]) == "sam"
        assert len(fake.plays(user="sam")) == 1 and fake.plays() == []

    async def test_old_signature_approves_for_the_default_user(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """approve_device(code) without a user → the default user's token."""
        fake.device_interval_s = 0.0
        _, code, _ = await client.call("POST", "/oauth/device/code", body={"client_id": CID})
        fake.approve_device(code["user_code"])
        poll = {"code": code["device_code"], "client_id": CID, "client_secret": SECRET}
        _, tok, _ = await client.call("POST", "/oauth/device/token", body=poll)

        assert fake.token_user(tok["access_token"]) == fake.default_user

    async def test_refresh_keeps_the_user_and_kills_the_old_refresh_token(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """ "Refresh Token": the new pair is alex's; the used refresh token → 401 invalid_grant."""
        old = fake.issue_token(user="alex")
        body = {
            "refresh_token": old["refresh_token"],
            "client_id": CID,
            "client_secret": SECRET,
            "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
            "grant_type": "refresh_token",
        }

        first, new, _ = await client.call("POST", "/oauth/token", body=body)
        again, error, _ = await client.call("POST", "/oauth/token", body=body)

        assert first == 200 and fake.token_user(new["access_token"]) == "alex"
        assert (again, error["error"]) == (401, "invalid_grant")

    async def test_expire_access_tokens_of_one_user_leaves_the_others(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """expire_access_tokens(user="alex") → alex 401, sam still 200."""
        alex, sam = token(fake, "alex"), token(fake, "sam")

        fake.expire_access_tokens(user="alex")

        assert (await client.call("GET", "/sync/last_activities", token=alex))[0] == 401
        assert (await client.call("GET", "/sync/last_activities", token=sam))[0] == 200

    async def test_revoke_all_of_one_user_kills_only_their_refresh_tokens(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """revoke_all(user="alex"): alex's refresh token is dead, sam's still refreshes."""
        alex, sam = fake.issue_token(user="alex"), fake.issue_token(user="sam")
        fake.revoke_all(user="alex")

        async def refresh(pair: dict[str, Any]) -> int:
            body = {
                "refresh_token": pair["refresh_token"],
                "client_id": CID,
                "client_secret": SECRET,
                "grant_type": "refresh_token",
            }
            return (await client.call("POST", "/oauth/token", body=body))[0]

        assert (await refresh(alex), await refresh(sam)) == (401, 200)


# --------------------------------------------------------------------------- rate limits


class TestRateLimits:
    async def test_post_limit_is_per_user_token(self, fake: FakeTrakt, client: Client) -> None:
        """AUTHED_API_POST_LIMIT is per user: sam's POST right after alex's passes, alex's
        second is a 429 with Retry-After and X-Ratelimit, counted for alex only."""
        fake.post_tolerance_s = 0.0
        alex, sam = token(fake, "alex"), token(fake, "sam")
        body = {"movies": [BIG_TROUBLE]}

        first = await client.call("POST", "/sync/history", token=alex, body=body)
        other = await client.call("POST", "/sync/history", token=sam, body=body)
        second = await client.call("POST", "/sync/history", token=alex, body=body)

        assert (first[0], other[0], second[0]) == (201, 201, 429)
        assert int(second[2]["Retry-After"]) >= 1
        assert json.loads(second[2]["X-Ratelimit"])["name"] == "AUTHED_API_POST_LIMIT"
        assert (fake.user("alex").rate_limited, fake.user("sam").rate_limited) == (1, 0)

    async def test_get_limit_is_per_user_token(self, fake: FakeTrakt, client: Client) -> None:
        """AUTHED_API_GET_LIMIT counts per token's user: alex over the limit, sam untouched."""
        fake.get_limit = 3
        alex, sam = token(fake, "alex"), token(fake, "sam")

        alexs = [(await client.call("GET", "/sync/history", token=alex))[0] for _ in range(4)]
        sams = (await client.call("GET", "/sync/history", token=sam))[0]

        assert (alexs, sams) == ([200, 200, 200, 429], 200)
        assert fake.user("alex").rate_limit_log[0]["name"] == "AUTHED_API_GET_LIMIT"

    async def test_unauthenticated_gets_count_per_client_id(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """UNAUTHED_API_GET_LIMIT: search without a token shares one budget per client id."""
        fake.get_limit = 2

        statuses = [(await client.call("GET", "/search/imdb/tt0090728"))[0] for _ in range(3)]
        _, _, headers = await client.call("GET", "/search/imdb/tt0090728")

        assert statuses == [200, 200, 429]
        assert json.loads(headers["X-Ratelimit"])["name"] == "UNAUTHED_API_GET_LIMIT"


# --------------------------------------------------------------------------- last activities


class TestLastActivities:
    async def test_reply_has_the_documented_groups_and_fields(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """ "Sync / Last Activities": all, movies/episodes/shows/seasons …, watchlist.updated_at."""
        _, body, _ = await client.call("GET", "/sync/last_activities", token=token(fake))

        assert {"all", "movies", "episodes", "shows", "seasons", "watchlist"} <= set(body)
        assert {"watched_at", "rated_at", "watchlisted_at", "paused_at"} <= set(body["movies"])
        assert {"watched_at", "rated_at", "watchlisted_at"} <= set(body["episodes"])
        assert {"rated_at", "watchlisted_at"} <= set(body["shows"]) & set(body["seasons"])
        assert body["watchlist"]["updated_at"].endswith(".000Z")

    async def test_a_play_moves_watched_at_to_when_it_was_recorded(
        self, fake: FakeTrakt, client: Client, wall: Wall
    ) -> None:
        """A movie play recorded an hour later moves movies.watched_at and all to that moment
        (not to the play's watched_at); episodes.watched_at stays."""
        tok = token(fake)
        _, before, _ = await client.call("GET", "/sync/last_activities", token=tok)
        wall.now += 3600
        play = {**BIG_TROUBLE, "watched_at": "2001-01-01T00:00:00.000Z"}

        await watch(client, tok, {"movies": [play]})
        _, after, _ = await client.call("GET", "/sync/last_activities", token=tok)

        assert after["movies"]["watched_at"] == after["all"] == "2026-05-28T21:26:40.000Z"
        assert after["episodes"]["watched_at"] == before["episodes"]["watched_at"]

    async def test_a_rating_moves_only_its_types_rated_at(
        self, fake: FakeTrakt, client: Client, wall: Wall
    ) -> None:
        """An episode rating moves episodes.rated_at, not movies.rated_at."""
        tok = token(fake)
        wall.now += 60

        await client.call(
            "POST",
            "/sync/ratings",
            token=tok,
            body={"episodes": [{**FUTURAMA_S02E15, "rating": 8}]},
        )
        _, body, _ = await client.call("GET", "/sync/last_activities", token=tok)

        assert body["episodes"]["rated_at"] == "2026-05-28T20:27:40.000Z"
        assert body["movies"]["rated_at"] == "2026-05-28T20:26:40.000Z"

    async def test_one_users_change_does_not_move_anothers_activities(
        self, fake: FakeTrakt, client: Client, wall: Wall
    ) -> None:
        """Activities are per user: alex's watchlist change leaves sam's timestamps."""
        alex, sam = token(fake, "alex"), token(fake, "sam")
        _, before, _ = await client.call("GET", "/sync/last_activities", token=sam)
        wall.now += 60

        await client.call("POST", "/sync/watchlist", token=alex, body={"movies": [BIG_TROUBLE]})
        _, after, _ = await client.call("GET", "/sync/last_activities", token=sam)

        assert after == before
        assert fake.user("alex").activities["watchlist"]["updated_at"] > before["all"]


# --------------------------------------------------------------------------- history


class TestHistory:
    async def test_pages_carry_the_pagination_headers(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """ "Pagination": 10 per page by default, X-Pagination-Page|Limit|Page-Count|Item-Count."""
        tok = token(fake)
        movies = [{"ids": {"imdb": f"tt{9_100_000 + n}"}} for n in range(25)]
        await watch(client, tok, {"movies": movies})

        _, page3, headers = await client.call(
            "GET", "/sync/history/movies", token=tok, params={"page": "3"}
        )

        assert len(page3) == 5
        assert [headers[f"X-Pagination-{h}"] for h in ("Page", "Limit", "Page-Count")] == [
            "3",
            "10",
            "3",
        ]
        assert headers["X-Pagination-Item-Count"] == "25"

    async def test_start_at_and_end_at_bound_watched_at(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """start_at/end_at select plays by watched_at, both ends inclusive, newest first."""
        tok = token(fake)
        days = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
        movies = [
            {"ids": {"imdb": f"tt{9_100_000 + n}"}, "watched_at": f"{d}T12:00:00.000Z"}
            for n, d in enumerate(days)
        ]
        await watch(client, tok, {"movies": movies})

        params = {"start_at": "2024-01-02T12:00:00.000Z", "end_at": "2024-01-03T12:00:00.000Z"}
        _, items, _ = await client.call("GET", "/sync/history/movies", token=tok, params=params)

        assert [i["watched_at"][:10] for i in items] == ["2024-01-03", "2024-01-02"]

    async def test_episodes_type_leaves_movies_out(self, fake: FakeTrakt, client: Client) -> None:
        """/sync/history/episodes lists only episode plays, with their show."""
        tok = token(fake)
        await watch(client, tok, {"movies": [BIG_TROUBLE], "episodes": [FUTURAMA_S02E15]})

        _, items, _ = await client.call("GET", "/sync/history/episodes", token=tok)

        assert [(i["type"], i["show"]["title"]) for i in items] == [("episode", "Futurama")]

    async def test_limit_above_history_max_limit_is_clamped(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """With history_max_limit set, a bigger limit is served as that many per page."""
        fake.history_max_limit = 4
        tok = token(fake)
        await watch(
            client, tok, {"movies": [{"ids": {"imdb": f"tt{9_100_000 + n}"}} for n in range(6)]}
        )

        _, items, headers = await client.call(
            "GET", "/sync/history", token=tok, params={"limit": "1000"}
        )

        assert len(items) == 4 and headers["X-Pagination-Limit"] == "4"
        assert headers["X-Pagination-Page-Count"] == "2"

    async def test_remove_by_history_id_deletes_that_play_only(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """ "Remove from History" with raw ids: one play gone, unknown ids in not_found.ids."""
        tok = token(fake)
        await watch(client, tok, {"movies": [BIG_TROUBLE, BIG_TROUBLE]})
        first = fake.history[0]["id"]

        status, body, _ = await client.call(
            "POST", "/sync/history/remove", token=tok, body={"ids": [first, 1]}
        )

        assert (status, body["deleted"]["movies"], body["not_found"]["ids"]) == (200, 1, [1])
        assert [h["id"] for h in fake.history] == [first + 1]


# --------------------------------------------------------------------------- ratings


class TestRatings:
    async def test_rating_outside_1_to_10_is_422_and_nothing_is_rated(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """ "Add Ratings": rating is an integer 1–10; 11 (or 7.5) is a validation error."""
        tok = token(fake)
        for bad in (11, 0, 7.5, "8"):
            body = {"movies": [{**BIG_TROUBLE, "rating": bad}, {**BARRY_LYNDON, "rating": 9}]}
            status, error, _ = await client.call("POST", "/sync/ratings", token=tok, body=body)
            assert (status, error["error"]) == (422, "unprocessable_entity"), bad

        assert fake.ratings == {}

    async def test_unknown_item_is_not_found_echoed_as_sent(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """An item Trakt does not know is listed in not_found with its rating; the rest rated."""
        unknown = {"rating": 10, "ids": {"imdb": "tt0000111"}}
        body = {
            "movies": [
                {**BIG_TROUBLE, "rating": 7, "rated_at": "2020-02-02T02:02:02.000Z"},
                unknown,
            ]
        }

        status, reply, _ = await client.call("POST", "/sync/ratings", token=token(fake), body=body)

        assert status == 201 and reply["added"]["movies"] == 1
        assert reply["not_found"]["movies"] == [unknown]
        (rated,) = fake.ratings.values()
        assert (rated["rating"], rated["rated_at"]) == (7, "2020-02-02T02:02:02.000Z")

    async def test_season_and_episode_are_rated_under_their_show(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """shows[{ids, seasons[{number, rating}]}] rates the season, and episodes listed
        under a season rate those episodes — not the show."""
        tok = token(fake)
        body = {
            "shows": [
                {**FUTURAMA, "rating": 3, "seasons": [{"number": 2, "rating": 9}]},
                {
                    **FUTURAMA,
                    "seasons": [{"number": 2, "episodes": [{"number": 15, "rating": 6}]}],
                },
            ]
        }

        _, reply, _ = await client.call("POST", "/sync/ratings", token=tok, body=body)
        _, seasons, _ = await client.call("GET", "/sync/ratings/seasons", token=tok)
        _, episodes, _ = await client.call("GET", "/sync/ratings/episodes", token=tok)
        _, shows, _ = await client.call("GET", "/sync/ratings/shows", token=tok)

        assert reply["added"] == {"movies": 0, "shows": 0, "seasons": 1, "episodes": 1}
        assert [(s["season"]["number"], s["show"]["title"], s["rating"]) for s in seasons] == [
            (2, "Futurama", 9)
        ]
        assert [(e["episode"]["number"], e["rating"]) for e in episodes] == [(15, 6)]
        assert shows == []

    async def test_get_ratings_filters_by_rating_value(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """/sync/ratings/movies/9,10 lists only those ratings."""
        tok = token(fake)
        body = {"movies": [{**BIG_TROUBLE, "rating": 10}, {**BARRY_LYNDON, "rating": 4}]}
        await client.call("POST", "/sync/ratings", token=tok, body=body)

        _, high, _ = await client.call("GET", "/sync/ratings/movies/9,10", token=tok)

        assert [r["movie"]["title"] for r in high] == ["Big Trouble in Little China"]

    async def test_remove_ratings_unrates_and_counts_deleted(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """ "Remove Ratings": 200 {deleted, not_found}; the rating is gone."""
        tok = token(fake)
        await client.call(
            "POST", "/sync/ratings", token=tok, body={"movies": [{**BIG_TROUBLE, "rating": 8}]}
        )

        status, reply, _ = await client.call(
            "POST", "/sync/ratings/remove", token=tok, body={"movies": [BIG_TROUBLE]}
        )

        assert (status, reply["deleted"]["movies"]) == (200, 1) and fake.ratings == {}


# --------------------------------------------------------------------------- watchlist


class TestWatchlist:
    async def test_add_answers_added_existing_not_found_and_list(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """ "Add to Watchlist": 201 {added, existing, not_found, list{updated_at, item_count}}."""
        tok = token(fake)
        await client.call("POST", "/sync/watchlist", token=tok, body={"movies": [BIG_TROUBLE]})
        unknown = {"ids": {"imdb": "tt0000111"}}
        body = {"movies": [BIG_TROUBLE, BARRY_LYNDON, unknown], "shows": [FUTURAMA]}

        status, reply, _ = await client.call("POST", "/sync/watchlist", token=tok, body=body)

        assert status == 201
        assert reply["added"] == {"movies": 1, "shows": 1, "seasons": 0, "episodes": 0}
        assert reply["existing"]["movies"] == 1
        assert reply["not_found"]["movies"] == [unknown]
        assert reply["list"]["item_count"] == 3

    async def test_listing_is_paginated_by_default_and_capped_at_250(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """Since 2026-04-15: 100 per page without parameters, a bigger limit served as 250."""
        fake.user().watchlist_limit = 1000
        for n in range(260):
            fake.catalog.add_movie(f"Watchlisted {n}", 1990, imdb=f"tt{9_500_000 + n}")
        tok = token(fake)
        movies = [{"ids": {"imdb": f"tt{9_500_000 + n}"}} for n in range(260)]
        await client.call("POST", "/sync/watchlist", token=tok, body={"movies": movies})

        _, default, headers = await client.call("GET", "/sync/watchlist/movies", token=tok)
        _, big, big_headers = await client.call(
            "GET", "/sync/watchlist/movies", token=tok, params={"limit": "1000"}
        )

        assert (len(default), headers["X-Pagination-Page-Count"]) == (100, "3")
        assert (len(big), big_headers["X-Pagination-Limit"]) == (250, "250")
        assert [i["rank"] for i in default[:3]] == [1, 2, 3]

    async def test_addition_past_the_limit_is_420_with_account_limit_headers(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """Over watchlist_limit → 420, X-Account-Limit, X-VIP-User, X-Upgrade-URL; nothing
        of the batch is added."""
        fake.user("alex").watchlist_limit = 2
        tok = token(fake, "alex")
        await client.call("POST", "/sync/watchlist", token=tok, body={"movies": [BIG_TROUBLE]})

        body = {"movies": [BARRY_LYNDON], "shows": [FUTURAMA]}
        status, _, headers = await client.call("POST", "/sync/watchlist", token=tok, body=body)

        assert status == 420
        assert (headers["X-Account-Limit"], headers["X-VIP-User"]) == ("2", "false")
        assert headers["X-Upgrade-URL"] == "https://trakt.tv/vip"
        assert len(fake.user("alex").watchlist) == 1

    async def test_a_watched_movie_leaves_the_watchlist(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """ "Auto Removal": adding a play of a watchlisted movie takes it off the watchlist."""
        tok = token(fake)
        body = {"movies": [BIG_TROUBLE, BARRY_LYNDON]}
        await client.call("POST", "/sync/watchlist", token=tok, body=body)

        await watch(client, tok, {"movies": [BIG_TROUBLE]})
        _, items, _ = await client.call("GET", "/sync/watchlist", token=tok)

        assert [(i["rank"], i["movie"]["title"]) for i in items] == [(1, "Barry Lyndon")]

    async def test_one_watched_episode_removes_its_whole_show(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """ "For shows and seasons, watching 1 episode will remove the entire show"."""
        tok = token(fake)
        await client.call("POST", "/sync/watchlist", token=tok, body={"shows": [FUTURAMA]})

        body = {"progress": 95, "episode": FUTURAMA_S02E15}
        status, _, _ = await client.call("POST", "/scrobble/stop", token=tok, body=body)

        assert status == 201 and fake.watchlist == []

    async def test_a_play_of_another_user_leaves_this_watchlist(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """Auto removal is per user: sam watching does not touch alex's watchlist."""
        alex, sam = token(fake, "alex"), token(fake, "sam")
        await client.call("POST", "/sync/watchlist", token=alex, body={"movies": [BIG_TROUBLE]})

        await watch(client, sam, {"movies": [BIG_TROUBLE]})

        assert len(fake.user("alex").watchlist) == 1

    async def test_remove_answers_deleted_and_list(self, fake: FakeTrakt, client: Client) -> None:
        """ "Remove from Watchlist": 200 {deleted, not_found, list}."""
        tok = token(fake)
        await client.call("POST", "/sync/watchlist", token=tok, body={"shows": [FUTURAMA]})

        status, reply, _ = await client.call(
            "POST", "/sync/watchlist/remove", token=tok, body={"shows": [FUTURAMA]}
        )

        assert (status, reply["deleted"]["shows"], reply["list"]["item_count"]) == (200, 1, 0)

    async def test_users_settings_reports_the_watchlist_limit(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """/users/settings limits.watchlist.item_count is the user's limit (250 by default)."""
        _, body, _ = await client.call("GET", "/users/settings", token=token(fake, "alex"))

        assert body["limits"]["watchlist"]["item_count"] == 250
        assert body["user"]["username"] == "alex"


# --------------------------------------------------------------------------- seasons


class TestSeasons:
    async def test_full_episodes_carry_number_abs(self, fake: FakeTrakt, client: Client) -> None:
        """/shows/{id}/seasons?extended=full,episodes: each episode has number and number_abs."""
        _, seasons, _ = await client.call(
            "GET", "/shows/frieren/seasons", params={"extended": "full,episodes"}
        )

        pairs = [
            (e["season"], e["number"], e["number_abs"]) for s in seasons for e in s["episodes"]
        ]
        assert pairs == [(1, 28, 28), (2, 1, 29)]

    async def test_episodes_alone_are_minimal_objects(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """extended=episodes gives the standard (minimal) episode object, as the apib example."""
        _, seasons, _ = await client.call(
            "GET", "/shows/frieren/seasons", params={"extended": "episodes"}
        )

        assert set(seasons[0]["episodes"][0]) == {"season", "number", "title", "ids"}

    async def test_unknown_show_is_404(self, fake: FakeTrakt, client: Client) -> None:
        """An id Trakt does not know → 404."""
        status, _, _ = await client.call("GET", "/shows/no-such-show/seasons")

        assert status == 404


# --------------------------------------------------------------------------- strictness


class TestStrictness:
    async def test_sync_without_a_token_is_401(self, fake: FakeTrakt, client: Client) -> None:
        """OAuth Required: /sync/* without Authorization → 401."""
        status, _, _ = await client.call("GET", "/sync/watchlist")

        assert status == 401

    async def test_a_repeat_scrobble_within_the_window_is_409(
        self, fake: FakeTrakt, client: Client
    ) -> None:
        """ "Scrobble / Stop": the same item again within the window → 409; one play."""
        tok = token(fake)
        body = {"progress": 90, "movie": BIG_TROUBLE}

        first = await client.call("POST", "/scrobble/stop", token=tok, body=body)
        second = await client.call("POST", "/scrobble/stop", token=tok, body=body)

        assert (first[0], second[0]) == (201, 409) and len(fake.history) == 1
