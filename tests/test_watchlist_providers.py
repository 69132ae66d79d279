"""Trakt's watchlist and SIMKL's Plan to Watch as the providers read and change them, against
the strict fakes: pages, activity fields, and SIMKL's rule that no change ever costs a watch
record."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from crosswatchd.http import GetRetry
from crosswatchd.models import Action, Ids, Item, MediaKind
from crosswatchd.providers.base import Change, ChangeOutcome
from crosswatchd.providers.simkl import SimklProvider
from crosswatchd.providers.trakt import TraktProvider
from crosswatchd.ratelimit import Limiter
from crosswatchd.tokens import TokenStore
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt
from tests.watchlist_support import CID, SECRET, imdb, watchlist_catalog

FAST = GetRetry(tries=2, base_s=0.01)
T0 = datetime(2026, 5, 1, tzinfo=UTC)


def film(n: int) -> Item:
    return Item(MediaKind.MOVIE, f"Film {n}", 1990 + n, ids=Ids(imdb=imdb(n)))


def changes(*pairs: tuple[Action, Item]) -> list[Change]:
    return [Change(i, action, item, T0) for i, (action, item) in enumerate(pairs, start=1)]


def limiter() -> Limiter:
    return Limiter.per_second(post_per_s=1000, get_per_s=1000, get_capacity=1000)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def fake_simkl() -> AsyncIterator[FakeSimkl]:
    async with FakeSimkl(client_id=CID, catalog=watchlist_catalog(), post_per_s=1000) as fake:
        yield fake


@pytest.fixture
async def fake_trakt() -> AsyncIterator[FakeTrakt]:
    async with FakeTrakt(
        client_id=CID, client_secret=SECRET, catalog=watchlist_catalog(), post_tolerance_s=1.0
    ) as fake:
        yield fake


@pytest.fixture
def simkl(fake_simkl: FakeSimkl, session: aiohttp.ClientSession, tmp_path: Path) -> SimklProvider:
    tokens = TokenStore(tmp_path, "simkl")
    tokens.save({"access_token": fake_simkl.issue_token()})
    return SimklProvider(
        session=session,
        limiter=limiter(),
        tokens=tokens,
        client_id=CID,
        api_url=fake_simkl.url,
        get_retry=FAST,
    )


@pytest.fixture
def trakt(fake_trakt: FakeTrakt, session: aiohttp.ClientSession, tmp_path: Path) -> TraktProvider:
    tokens = TokenStore(tmp_path, "trakt")
    tokens.save(fake_trakt.issue_token())
    return TraktProvider(
        session=session,
        limiter=limiter(),
        tokens=tokens,
        client_id=CID,
        client_secret=SECRET,
        api_url=fake_trakt.url,
        get_retry=FAST,
    )


class TestSimklPlanToWatch:
    async def test_an_addition_lands_in_plan_to_watch(
        self, simkl: SimklProvider, fake_simkl: FakeSimkl
    ) -> None:
        results = await simkl.apply_changes(changes((Action.WATCHLIST_ADD, film(1))))
        assert results[1].outcome is ChangeOutcome.APPLIED
        assert fake_simkl.list_imdb() == {imdb(1)}

    @pytest.mark.parametrize("where", ["completed", "dropped"])
    async def test_an_item_in_another_list_stays_there_with_its_history(
        self, simkl: SimklProvider, fake_simkl: FakeSimkl, where: str
    ) -> None:
        fake_simkl.put_in_list("movie", {"imdb": imdb(1)}, where)
        results = await simkl.apply_changes(changes((Action.WATCHLIST_ADD, film(1))))
        assert results[1].outcome is ChangeOutcome.KEPT
        assert results[1].note is not None and where in results[1].note
        assert fake_simkl.list_imdb(where) == {imdb(1)}
        assert not [r for r in fake_simkl.requests if r["path"] == "/sync/add-to-list"]

    async def test_a_removal_takes_off_only_what_is_still_in_plan_to_watch(
        self, simkl: SimklProvider, fake_simkl: FakeSimkl
    ) -> None:
        fake_simkl.put_in_list("movie", {"imdb": imdb(1)}, "plantowatch")
        fake_simkl.put_in_list("movie", {"imdb": imdb(2)}, "completed")
        results = await simkl.apply_changes(
            changes(
                (Action.WATCHLIST_REMOVE, film(1)),
                (Action.WATCHLIST_REMOVE, film(2)),
                (Action.WATCHLIST_REMOVE, film(3)),  # on no list: nothing to do
            )
        )
        assert [results[k].outcome for k in (1, 2, 3)] == [
            ChangeOutcome.APPLIED,
            ChangeOutcome.KEPT,
            ChangeOutcome.APPLIED,
        ]
        assert fake_simkl.list_imdb() == set()
        assert fake_simkl.list_imdb("completed") == {imdb(2)}
        removes = [r["json"] for r in fake_simkl.requests if r["path"] == "/sync/history/remove"]
        assert removes == [
            {"movies": [{"title": "Film 1", "year": 1991, "ids": {"imdb": imdb(1)}}]}
        ]

    async def test_one_check_per_batch_and_an_unknown_item_is_not_found(
        self, simkl: SimklProvider, fake_simkl: FakeSimkl
    ) -> None:
        stranger = Item(MediaKind.MOVIE, "Nobody Knows", 2001, ids=Ids(imdb="tt0000123"))
        results = await simkl.apply_changes(
            changes((Action.WATCHLIST_ADD, film(1)), (Action.WATCHLIST_ADD, stranger))
        )
        assert results[2].outcome is ChangeOutcome.NOT_FOUND
        checks = [r for r in fake_simkl.requests if r["path"] == "/sync/watched"]
        assert len(checks) == 1 and checks[0]["json"][0] == {
            "type": "movie",
            "title": "Film 1",
            "year": 1991,
            "imdb": imdb(1),
        }

    async def test_plan_to_watch_is_read_for_movies_shows_and_anime(
        self, simkl: SimklProvider, fake_simkl: FakeSimkl
    ) -> None:
        fake_simkl.put_in_list("movie", {"imdb": imdb(1)}, "plantowatch")
        fake_simkl.put_in_list("show", {"tvdb": 73871}, "plantowatch")
        fake_simkl.put_in_list("movie", {"imdb": imdb(2)}, "completed")
        items = await simkl.read_watchlist()
        assert sorted((i.kind, i.title) for i in items) == [
            (MediaKind.MOVIE, "Film 1"),
            (MediaKind.SHOW, "Futurama"),
        ]
        paths = {r["path"] for r in fake_simkl.requests if r["method"] == "GET"}
        assert {f"/sync/all-items/{t}/plantowatch" for t in ("movies", "shows", "anime")} <= paths

    async def test_plan_to_watch_activity_moves_with_an_addition(
        self, simkl: SimklProvider, fake_simkl: FakeSimkl
    ) -> None:
        before = await simkl.last_activities()
        fake_simkl.put_in_list("movie", {"imdb": imdb(1)}, "plantowatch")
        after = await simkl.last_activities()
        assert after.moved(before, *simkl.watchlist_activity)


class TestTraktWatchlist:
    async def test_every_page_is_read_and_only_movies_and_shows_kept(
        self, trakt: TraktProvider, fake_trakt: FakeTrakt
    ) -> None:
        fake_trakt.list_max_limit = 5  # so twelve films take three pages
        for n in range(1, 13):
            fake_trakt.watchlist_add("movie", {"imdb": imdb(n)})
        fake_trakt.watchlist_add("show", {"tvdb": 73871})
        items = await trakt.read_watchlist()
        assert len(items) == 13
        assert {i.ids.imdb for i in items} == {*(imdb(n) for n in range(1, 13)), "tt0149460"}
        pages = [q["page"] for _, p, q in fake_trakt.requests if p == "/sync/watchlist/all"]
        assert pages == ["1", "2", "3"]

    async def test_watchlist_activity_moves_with_a_change(
        self, trakt: TraktProvider, fake_trakt: FakeTrakt
    ) -> None:
        before = await trakt.last_activities()
        fake_trakt.clock = lambda: time.time() + 5  # a later second
        fake_trakt.watchlist_add("movie", {"imdb": imdb(1)})
        after = await trakt.last_activities()
        assert after.moved(before, *trakt.watchlist_activity)
