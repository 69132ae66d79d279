"""Reading a Plex server's play history, accounts and library view state (the reconcile
pass's Plex source) from the fake PMS, page by page."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from crosswatchd.errors import SourceUnavailableError
from crosswatchd.models import MediaKind
from crosswatchd.sources.plex_library import LibraryEntry, PlexLibrary, PlexPlay
from crosswatchd.sources.plex_server import PlexServer
from tests.fakes.plex_server import FakePlexServer


@pytest.fixture
async def plex() -> AsyncIterator[FakePlexServer]:
    async with FakePlexServer(token="owner-token", owner="alex") as fake:
        fake.add_movie("100", "Barry Lyndon", 1975, ["imdb://tt0072684", "tmdb://3175"])
        fake.add_show("200", "Futurama", 1999, ["tvdb://73871"])
        fake.add_episode("201", "200", 2, 15, ["tvdb://1001"], title="A Clone of My Own")
        yield fake


@pytest.fixture
async def library(plex: FakePlexServer) -> AsyncIterator[PlexLibrary]:
    async with aiohttp.ClientSession() as session:
        server = PlexServer(session=session, url=plex.url, token=plex.token, timeout_s=5)
        yield PlexLibrary(server, page_size=3)


async def history(library: PlexLibrary, since: int | None = None) -> list[PlexPlay]:
    return [play async for page in library.history(since=since) for play in page]


async def entries(library: PlexLibrary) -> list[LibraryEntry]:
    return [entry async for page in library.library() for entry in page]


class TestHistory:
    async def test_every_play_of_every_account_across_pages_oldest_first(
        self, plex: FakePlexServer, library: PlexLibrary
    ) -> None:
        plex.add_account(238960586, "sam")
        for n in range(7):
            plex.add_play("100", account_id=1, viewed_at=1_700_000_000 + n * 86400)
        plex.add_play("201", account_id=238960586, viewed_at=1_690_000_000)
        await library.identify()
        plays = await history(library)
        assert [p.viewed_at for p in plays] == sorted(p.viewed_at for p in plays)
        assert len(plays) == 8 and {p.account_id for p in plays} == {1, 238960586}
        episode = plays[0].item
        assert episode.kind is MediaKind.EPISODE
        assert (episode.season, episode.number, episode.rating_key) == (2, 15, "201")
        assert episode.grandparent_rating_key == "200"  # from grandparentKey
        assert episode.server == plex.machine_identifier
        pages = [q for p, q in plex.requests if p == "/status/sessions/history/all"]
        assert len(pages) == 3  # 8 rows, 3 per page

    async def test_since_keeps_later_plays(
        self, plex: FakePlexServer, library: PlexLibrary
    ) -> None:
        for n in range(4):
            plex.add_play("100", viewed_at=1_700_000_000 + n)
        assert [p.viewed_at for p in await history(library, since=1_700_000_002)] == [
            1_700_000_002,
            1_700_000_003,
        ]

    async def test_a_refused_token_is_one_line_naming_the_setting(
        self, plex: FakePlexServer
    ) -> None:
        async with aiohttp.ClientSession() as session:
            server = PlexServer(session=session, url=plex.url, token="wrong", timeout_s=5)
            with pytest.raises(SourceUnavailableError, match=r"refused the token.*plex\.token"):
                await history(PlexLibrary(server))


class TestAccountsAndLibrary:
    async def test_accounts_map_ids_to_names(
        self, plex: FakePlexServer, library: PlexLibrary
    ) -> None:
        plex.add_account(238960586, "sam")
        assert await library.accounts() == {1: "alex", 238960586: "sam"}

    async def test_view_state_ratings_and_marks_of_the_token_account(
        self, plex: FakePlexServer, library: PlexLibrary
    ) -> None:
        plex.mark_watched("100", viewed_at=1_700_000_000)
        plex.rate("100", 7.0, rated_at=1_700_000_100)
        plex.rate("200", 9.0, rated_at=1_700_000_200)
        found = {e.item.rating_key: e for e in await entries(library)}
        assert set(found) == {"100", "200", "201"}
        movie = found["100"]
        assert movie.item.ids.imdb == "tt0072684"
        assert (movie.view_count, movie.last_viewed_at) == (1, 1_700_000_000)
        assert (movie.user_rating, movie.last_rated_at) == (7.0, 1_700_000_100)
        assert found["200"].item.kind is MediaKind.SHOW and found["200"].user_rating == 9.0
        assert found["201"].user_rating is None and found["201"].view_count == 0
