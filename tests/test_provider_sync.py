"""Whole-account reads for reconcile, against the strict fakes: Trakt's history pages (the
largest page Trakt serves, the pagination headers followed whatever page size the server
chose) and ratings, SIMKL's all-items and ratings (``null`` answers, ``date_from``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from crosswatchd.http import GetRetry
from crosswatchd.models import Ids, Item, MediaKind, item_keys
from crosswatchd.providers.simkl import SimklProvider
from crosswatchd.providers.trakt import TraktProvider
from crosswatchd.ratelimit import Limiter
from crosswatchd.tokens import TokenStore
from tests.fakes.catalog import default_catalog
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt

T0 = datetime(2025, 1, 1, 20, 0, tzinfo=UTC)
FAST = Limiter.per_second(post_per_s=1000, get_per_s=1000, get_capacity=1000)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
async def trakt(
    session: aiohttp.ClientSession, tmp_path: Path
) -> AsyncIterator[tuple[FakeTrakt, TraktProvider]]:
    async with FakeTrakt(catalog=default_catalog()) as fake:
        tokens = TokenStore(tmp_path, "trakt")
        tokens.save(fake.issue_token())
        provider = TraktProvider(
            session=session,
            limiter=FAST,
            tokens=tokens,
            client_id=fake.client_id,
            client_secret=fake.client_secret,
            api_url=fake.url,
            get_retry=GetRetry(tries=2, base_s=0.001),
        )
        yield fake, provider


@pytest.fixture
async def simkl(
    session: aiohttp.ClientSession, tmp_path: Path
) -> AsyncIterator[tuple[FakeSimkl, SimklProvider]]:
    async with FakeSimkl(catalog=default_catalog(), get_per_s=1000, post_per_s=1000) as fake:
        tokens = TokenStore(tmp_path, "simkl")
        tokens.save({"access_token": fake.issue_token()})
        provider = SimklProvider(
            session=session, limiter=FAST, tokens=tokens, client_id=fake.client_id, api_url=fake.url
        )
        yield fake, provider


def movie_keys(imdb: str) -> tuple[str, ...]:
    return tuple(item_keys(Item(MediaKind.MOVIE, ids=Ids(imdb=imdb))))


class TestTraktSync:
    async def test_pages_of_250_and_the_counts_trakt_reports(
        self, trakt: tuple[FakeTrakt, TraktProvider]
    ) -> None:
        fake, provider = trakt
        movie = fake.catalog.movie({"imdb": "tt0090728"})
        assert movie is not None
        for n in range(260):
            fake.add_play(movie, T0 + timedelta(days=n))
        first = await provider.sync().history_page("movies", 1)
        second = await provider.sync().history_page("movies", 2)
        assert (len(first.watches), first.page_count, first.item_count) == (250, 2, 260)
        assert len(second.watches) == 10
        assert first.watches[0].at == (T0 + timedelta(days=259)).timestamp()  # newest first
        assert set(first.watches[0].keys) >= set(movie_keys("tt0090728"))
        assert {q["limit"] for _, p, q in fake.requests if p == "/sync/history/movies"} == {"250"}

    async def test_a_smaller_page_the_server_chose_is_followed(
        self, trakt: tuple[FakeTrakt, TraktProvider]
    ) -> None:
        fake, provider = trakt
        fake.history_max_limit = 4
        movie = fake.catalog.movie({"imdb": "tt0072684"})
        assert movie is not None
        for n in range(10):
            fake.add_play(movie, T0 + timedelta(days=n))
        page = await provider.sync().history_page(None, 1)
        assert (len(page.watches), page.page_count, page.item_count) == (4, 3, 10)

    async def test_every_rating_with_its_kind(self, trakt: tuple[FakeTrakt, TraktProvider]) -> None:
        fake, provider = trakt
        movie = fake.catalog.movie({"imdb": "tt0090728"})
        show = fake.catalog.show({"tvdb": 73871})
        assert movie is not None and show is not None
        episode = fake.catalog.episode_of(show, 2, 15)
        assert episode is not None
        fake.rate(("movie", movie["ids"]["trakt"]), 8)
        fake.rate(("show", show["ids"]["trakt"]), 9)
        fake.rate(("episode", episode["ids"]["trakt"]), 6)
        rated = {r.kind: r for r in await provider.sync().ratings()}
        assert {kind: r.rating for kind, r in rated.items()} == {
            MediaKind.MOVIE: 8,
            MediaKind.SHOW: 9,
            MediaKind.EPISODE: 6,
        }
        assert "show:tvdb:73871:2:15" in rated[MediaKind.EPISODE].keys


class TestSimklSync:
    async def test_an_empty_account_answers_null_and_reads_as_nothing(
        self, simkl: tuple[FakeSimkl, SimklProvider]
    ) -> None:
        _, provider = simkl
        watched = await provider.sync().watched()
        assert watched.movies == [] and watched.shows == {}
        assert (await provider.sync().ratings()).rated == []

    async def test_watched_movies_and_episodes_and_a_date_from_delta(
        self, simkl: tuple[FakeSimkl, SimklProvider]
    ) -> None:
        fake, provider = simkl
        movie = fake.catalog.movie({"imdb": "tt0090728"})
        show = fake.catalog.show({"tvdb": 73871})
        assert movie is not None and show is not None
        episode = fake.catalog.episode_of(show, 2, 15)
        assert episode is not None
        fake.add_play(movie, T0)
        fake.add_play(episode, T0 + timedelta(hours=2))
        watched = await provider.sync().watched()
        assert [w.at for w in watched.movies] == [T0.timestamp()]
        [(show_ident, episodes)] = watched.shows.items()
        assert show_ident.startswith("s:simkl:")
        assert [w.ident for w in episodes] == [f"e:{show_ident}:2:15"]
        assert "show:tvdb:73871:2:15" in episodes[0].keys
        later = await provider.sync().watched(datetime.now(UTC) + timedelta(hours=1))
        assert later.movies == [] and later.shows == {}  # nothing updated since

    async def test_a_removed_rating_shows_in_a_date_from_answer(
        self, simkl: tuple[FakeSimkl, SimklProvider]
    ) -> None:
        fake, provider = simkl
        movie = fake.catalog.movie({"imdb": "tt0090728"})
        assert movie is not None
        fake.rate("movie", movie["ids"]["simkl"], 8)
        [rated] = (await provider.sync().ratings()).rated
        assert (rated.kind, rated.rating, rated.ident) == (
            MediaKind.MOVIE,
            8,
            f"m:simkl:{movie['ids']['simkl']}",
        )
        since = datetime.now(UTC) - timedelta(minutes=5)
        fake.user().entries[("movie", movie["ids"]["simkl"])].rating = None
        fake.user().entries[("movie", movie["ids"]["simkl"])].rating_changed_at = datetime.now(UTC)
        delta = await provider.sync().ratings(since)
        assert delta.rated == [] and delta.removed == [rated.ident]
