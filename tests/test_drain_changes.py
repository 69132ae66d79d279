"""Ratings and watchlist changes through the drainer: real outbox, real providers, the strict
Trakt and SIMKL fakes. What a user sees on each service after a rating or a watchlist change
was queued, through outages, refusals and a full Trakt watchlist."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crosswatchd.drain import Drainer
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import Outbox
from crosswatchd.providers.simkl import SimklProvider
from crosswatchd.providers.trakt import TraktProvider
from tests.clocks import Clock
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt
from tests.test_drain import (  # noqa: F401  (fixtures)
    BIG_TROUBLE,
    BOBS_9X15,
    FUTURAMA_2X15,
    T0,
    UNKNOWN_MOVIE,
    both_outbox,
    clock,
    drainer,
    fake_simkl,
    fake_trakt,
    outbox,
    session,
    simkl,
    simkl_tokens,
    trakt,
    trakt_drainer,
    trakt_tokens,
)

FUTURAMA = Item(MediaKind.SHOW, "Futurama", 1999, ids=Ids(tvdb="73871"))
FUTURAMA_S2 = Item(MediaKind.SEASON, show_title="Futurama", show_ids=Ids(tvdb="73871"), season=2)


def rate(item: Item, rating: int | None, minutes: int = 0) -> PlayEvent:
    at = T0 + timedelta(minutes=minutes)
    return PlayEvent(Source.PLEX, Action.RATE, "alice", item, at, rating=rating)


def listed(item: Item, add: bool = True, minutes: int = 0) -> PlayEvent:
    action = Action.WATCHLIST_ADD if add else Action.WATCHLIST_REMOVE
    return PlayEvent(Source.WATCHLIST, action, "alice", item, T0 + timedelta(minutes=minutes))


def trakt_id(fake: FakeTrakt, kind: str, **ids: Any) -> int:
    entry = fake.catalog.movie(ids) if kind == "movie" else fake.catalog.show(ids)
    assert entry is not None
    return int(entry["ids"]["trakt"])


def simkl_id(fake: FakeSimkl, kind: str, **ids: Any) -> int:
    entry = fake.catalog.movie(ids) if kind == "movie" else fake.catalog.show(ids)
    assert entry is not None
    return int(entry["ids"]["simkl"])


async def states(outbox: Outbox, kind: str) -> list[tuple[Any, ...]]:
    return await outbox.fetch_all(
        "SELECT provider, state, reason_kind, reason FROM deliveries WHERE kind = ? ORDER BY id",
        (kind,),
    )


class TestRatings:
    async def test_a_movie_rating_lands_on_both_with_its_value_and_time(
        self,
        both_outbox: Outbox,
        trakt: TraktProvider,
        simkl: SimklProvider,
        fake_trakt: FakeTrakt,
        fake_simkl: FakeSimkl,
        clock: Clock,
    ) -> None:
        await both_outbox.enqueue(rate(BIG_TROUBLE, 8))
        assert await drainer(both_outbox, trakt, clock).drain_ratings_once() == 1
        assert await drainer(both_outbox, simkl, clock).drain_ratings_once() == 1
        movie = ("movie", trakt_id(fake_trakt, "movie", imdb="tt0090728"))
        assert fake_trakt.user().rating_of(movie) == 8
        assert fake_trakt.user().ratings[movie]["rated_at"].startswith("2024-01-15T10:30:00")
        assert (
            fake_simkl.user().rating_of("movie", simkl_id(fake_simkl, "movie", imdb="tt0090728"))
            == 8
        )
        assert [s[:2] for s in await states(both_outbox, "rating")] == [
            ("trakt", "delivered"),
            ("simkl", "delivered"),
        ]

    async def test_a_cleared_rating_removes_it_on_both(
        self,
        both_outbox: Outbox,
        trakt: TraktProvider,
        simkl: SimklProvider,
        fake_trakt: FakeTrakt,
        fake_simkl: FakeSimkl,
        clock: Clock,
    ) -> None:
        await both_outbox.enqueue(rate(BIG_TROUBLE, 8))
        for provider in (trakt, simkl):
            await drainer(both_outbox, provider, clock).drain_ratings_once()
        await both_outbox.enqueue(rate(BIG_TROUBLE, None, minutes=5))
        for provider in (trakt, simkl):
            assert await drainer(both_outbox, provider, clock).drain_ratings_once() == 1
        movie = ("movie", trakt_id(fake_trakt, "movie", imdb="tt0090728"))
        assert fake_trakt.user().rating_of(movie) is None
        assert (
            fake_simkl.user().rating_of("movie", simkl_id(fake_simkl, "movie", imdb="tt0090728"))
            is None
        )

    async def test_episode_season_and_show_ratings_reach_trakt_and_only_the_show_simkl(
        self,
        both_outbox: Outbox,
        trakt: TraktProvider,
        simkl: SimklProvider,
        fake_trakt: FakeTrakt,
        fake_simkl: FakeSimkl,
        clock: Clock,
    ) -> None:
        await both_outbox.enqueue(rate(FUTURAMA_2X15, 9))  # show ids + numbers only
        await both_outbox.enqueue(rate(BOBS_9X15, 6))  # ids of its own
        await both_outbox.enqueue(rate(FUTURAMA_S2, 7))
        await both_outbox.enqueue(rate(FUTURAMA, 10))
        assert await drainer(both_outbox, trakt, clock).drain_ratings_once() == 4
        assert await drainer(both_outbox, simkl, clock).drain_ratings_once() == 1
        show = trakt_id(fake_trakt, "show", tvdb=73871)
        futurama_ep = fake_trakt.catalog.episode_of(fake_trakt.catalog.show({"tvdb": 73871}), 2, 15)
        bobs_ep = fake_trakt.catalog.episode({"imdb": "tt9413736"})
        assert futurama_ep is not None and bobs_ep is not None
        user = fake_trakt.user()
        assert user.rating_of(("episode", futurama_ep["ids"]["trakt"])) == 9
        assert user.rating_of(("episode", bobs_ep["ids"]["trakt"])) == 6
        assert user.rating_of(("season", show, 2)) == 7
        assert user.rating_of(("show", show)) == 10
        assert fake_simkl.user().rating_of("show", simkl_id(fake_simkl, "show", tvdb=73871)) == 10

    async def test_through_an_outage_only_the_latest_of_two_ratings_is_sent(
        self,
        outbox: Outbox,
        trakt_drainer: Drainer,
        fake_trakt: FakeTrakt,
        clock: Clock,
    ) -> None:
        fake_trakt.fail_next(503, path="/sync/ratings")
        await outbox.enqueue(rate(BIG_TROUBLE, 7))
        assert await trakt_drainer.drain_ratings_once() == 1  # 503: waits
        await outbox.enqueue(rate(BIG_TROUBLE, 4, minutes=2))  # supersedes the waiting 7
        due = await outbox.next_due_in("trakt", "rating")
        clock.advance(max(due or 0.0, 0.0))
        assert await trakt_drainer.drain_ratings_once() == 1
        movie = ("movie", trakt_id(fake_trakt, "movie", imdb="tt0090728"))
        assert fake_trakt.user().rating_of(movie) == 4
        posts = [r for r in fake_trakt.requests if r[:2] == ("POST", "/sync/ratings")]
        assert len(posts) == 2  # the refused one, then only the 4
        assert [s[:3] for s in await states(outbox, "rating")] == [
            ("trakt", "dropped", "superseded"),
            ("trakt", "delivered", None),
        ]

    async def test_an_unknown_item_is_parked_and_the_rest_of_the_batch_lands(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt
    ) -> None:
        await outbox.enqueue(rate(UNKNOWN_MOVIE, 5))
        await outbox.enqueue(rate(BIG_TROUBLE, 8))
        assert await trakt_drainer.drain_ratings_once() == 2
        assert [s[:3] for s in await states(outbox, "rating")] == [
            ("trakt", "parked", "not_found"),
            ("trakt", "delivered", None),
        ]
        parked = await outbox.parked()
        assert [p.label for p in parked] == ["Nothing (2000)"]

    async def test_a_revoked_token_keeps_the_rating_waiting(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt
    ) -> None:
        fake_trakt.revoke_all()
        await outbox.enqueue(rate(BIG_TROUBLE, 8))
        await trakt_drainer.drain_ratings_once()
        ((_, state, _, _),) = await states(outbox, "rating")
        assert state == "pending"


class TestTraktWatchlist:
    async def test_additions_and_removals_land(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt
    ) -> None:
        await outbox.enqueue(listed(BIG_TROUBLE))
        await outbox.enqueue(listed(FUTURAMA))
        assert await trakt_drainer.drain_watchlist_once() == 2
        movie = ("movie", trakt_id(fake_trakt, "movie", imdb="tt0090728"))
        show = ("show", trakt_id(fake_trakt, "show", tvdb=73871))
        assert fake_trakt.user().watchlist_keys() == [movie, show]
        await outbox.enqueue(listed(BIG_TROUBLE, add=False, minutes=1))
        assert await trakt_drainer.drain_watchlist_once() == 1
        assert fake_trakt.user().watchlist_keys() == [show]

    async def test_a_full_watchlist_parks_what_does_not_fit_naming_the_limit(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt
    ) -> None:
        fake_trakt.user().watchlist_limit = 1
        await outbox.enqueue(listed(BIG_TROUBLE))
        await outbox.enqueue(listed(FUTURAMA))
        await outbox.enqueue(rate(BIG_TROUBLE, 8))
        assert await trakt_drainer.drain_watchlist_once() == 2
        assert await trakt_drainer.drain_ratings_once() == 1  # the account is not dead
        movie = ("movie", trakt_id(fake_trakt, "movie", imdb="tt0090728"))
        assert fake_trakt.user().watchlist_keys() == [movie]
        (_, (provider, state, reason_kind, reason)) = await states(outbox, "watchlist")
        assert (provider, state, reason_kind) == ("trakt", "parked", "rejected")
        assert "420" in reason and "X-Account-Limit=1" in reason
        assert fake_trakt.user().rating_of(movie) == 8


@pytest.mark.parametrize("rating", [1, 10])
async def test_the_range_ends_are_sent_as_they_are(
    rating: int, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt
) -> None:
    await outbox.enqueue(rate(BIG_TROUBLE, rating))
    await trakt_drainer.drain_ratings_once()
    movie = ("movie", trakt_id(fake_trakt, "movie", imdb="tt0090728"))
    assert fake_trakt.user().rating_of(movie) == rating


class TestLastActivities:
    """The first GET of every pass: it moves when the account changes, so an unchanged
    account needs nothing more."""

    async def test_trakt_rated_at_moves_with_a_rating_and_nothing_else_does(
        self,
        outbox: Outbox,
        trakt: TraktProvider,
        trakt_drainer: Drainer,
        fake_trakt: FakeTrakt,
    ) -> None:
        before = await trakt.last_activities()
        assert not before.moved(await trakt.last_activities(), ("movies", "rated_at"))
        fake_trakt.clock = lambda: time.time() + 60  # Trakt's own clock moves on
        await outbox.enqueue(rate(BIG_TROUBLE, 8))
        await trakt_drainer.drain_ratings_once()
        after = await trakt.last_activities()
        assert after.moved(before, ("movies", "rated_at"))
        assert not after.moved(before, ("movies", "watched_at"), ("watchlist", "updated_at"))
        assert after.moved(None, ("movies", "watched_at"))  # nothing to compare: read

    async def test_simkl_rated_at_moves_with_a_rating(
        self,
        both_outbox: Outbox,
        simkl: SimklProvider,
        fake_simkl: FakeSimkl,
        clock: Clock,
    ) -> None:
        before = await simkl.last_activities()
        fake_simkl.now = lambda: datetime.now(UTC) + timedelta(minutes=2)  # SIMKL's clock moves on
        await both_outbox.enqueue(rate(BIG_TROUBLE, 8))
        await drainer(both_outbox, simkl, clock).drain_ratings_once()
        after = await simkl.last_activities()
        assert after.moved(before, ("movies", "rated_at"))
        assert not after.moved(before, ("tv_shows", "rated_at"))
        paths = [r["path"] for r in fake_simkl.requests if r["method"] == "GET"]
        assert paths == ["/sync/activities", "/sync/activities"]
