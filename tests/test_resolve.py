"""Id resolution: payload → cache → Plex → Tautulli → Trakt → SIMKL → title, against fakes.

Every outside service is a real fake server (tests/fakes); the number of requests each one
received is what a user would notice (API quota), so most tests assert on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from crosswatchd.animelists_store import AnimeListStore
from crosswatchd.config import Settings
from crosswatchd.errors import RetryableError, SourceUnavailableError, UnresolvedError
from crosswatchd.http import GetRetry
from crosswatchd.models import Ids, Item, MediaKind, PlayEvent
from crosswatchd.profiles import Household
from crosswatchd.providers.simkl import SimklSearch
from crosswatchd.providers.trakt import TraktSearch
from crosswatchd.ratelimit import Limiter, TokenBucket
from crosswatchd.resolve import STEPS, IdCache, Resolver, build_resolver
from crosswatchd.resolve.keys import _PLEX_GUID
from crosswatchd.resolve.tautulli import TautulliMetadata
from crosswatchd.sources.guids import parse_guid
from crosswatchd.sources.plex import parse_plex_payload, plex_event
from crosswatchd.sources.plex_server import PlexServer
from crosswatchd.sources.tautulli_api import TautulliClient
from tests.backends import BACKENDS, cache_for
from tests.fakes.catalog import Catalog
from tests.fakes.plex_server import FakePlexServer
from tests.fakes.simkl import FakeSimkl
from tests.fakes.tautulli import FakeTautulli
from tests.fakes.trakt import FakeTrakt

FIXTURES = Path(__file__).parent / "fixtures" / "plex"
BOBS_EPISODE_GUID = "plex://episode/5de8dbdf18b6d6001db44001"  # in the Bob's Burgers fixture
PLEX_TOKEN = "plex-secret-token"
POSITIVE_TTL_S = 1000.0
NEGATIVE_TTL_S = 10.0


class FakeClock:
    """Unix-seconds clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def movie(**kw: Any) -> Item:
    return Item(kind=MediaKind.MOVIE, **kw)


def episode(**kw: Any) -> Item:
    return Item(kind=MediaKind.EPISODE, **kw)


def fast_limiter() -> Limiter:
    return Limiter.per_second(post_per_s=100, get_per_s=1000, get_capacity=1000)


#: In-process GET retries without noticeable waits.
FAST_RETRY = GetRetry(tries=3, base_s=0.001)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def cache(tmp_path: Path, clock: FakeClock) -> AsyncIterator[IdCache]:
    cache = await IdCache.open(
        tmp_path / "cache.sqlite3",
        positive_ttl_s=POSITIVE_TTL_S,
        negative_ttl_s=NEGATIVE_TTL_S,
        unix_s=clock,
    )
    yield cache
    await cache.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def plex() -> AsyncIterator[FakePlexServer]:
    async with FakePlexServer(token=PLEX_TOKEN) as fake:
        fake.add_movie("100", "Barry Lyndon", 1975, ["imdb://tt0072684", "tmdb://3175"])
        fake.add_show("200", "Futurama", 1999, ["imdb://tt0149460", "tmdb://615", "tvdb://73871"])
        fake.add_episode("215", "200", 2, 15, ["tvdb://163303"], title="A Clone of My Own")
        fake.add_episode("201", "200", 0, 1, [], title="Special")
        yield fake


@pytest.fixture
async def trakt() -> AsyncIterator[FakeTrakt]:
    async with FakeTrakt(client_id="trakt-cid", client_secret="trakt-secret") as fake:
        yield fake


@pytest.fixture
async def simkl() -> AsyncIterator[FakeSimkl]:
    async with FakeSimkl(client_id="simkl-cid") as fake:
        yield fake


@pytest.fixture
def make(cache: IdCache, session: aiohttp.ClientSession) -> Callable[..., Resolver]:
    """Build a Resolver wired to whichever fakes a test passes."""

    def build(
        *,
        plex: FakePlexServer | None = None,
        trakt: FakeTrakt | None = None,
        simkl: FakeSimkl | None = None,
        tautulli: FakeTautulli | None = None,
        title_fallback: bool = False,
        id_cache: IdCache | None = None,
        on_lookup: Callable[[str, bool], None] | None = None,
        anime: AnimeListStore | None = None,
    ) -> Resolver:
        return Resolver(
            on_lookup=on_lookup,
            cache=id_cache or cache,
            plex=PlexServer(session=session, url=plex.url, token=PLEX_TOKEN, get_retry=FAST_RETRY)
            if plex
            else None,
            tautulli=TautulliClient(
                session=session, url=tautulli.url, api_key="key", get_retry=FAST_RETRY
            )
            if tautulli
            else None,
            trakt_search=TraktSearch(
                session=session,
                limiter=fast_limiter(),
                client_id="trakt-cid",
                api_url=trakt.url,
                get_retry=FAST_RETRY,
            )
            if trakt
            else None,
            simkl_search=SimklSearch(
                session=session,
                limiter=fast_limiter(),
                client_id="simkl-cid",
                api_url=simkl.url,
                get_retry=FAST_RETRY,
            )
            if simkl
            else None,
            title_fallback=title_fallback,
            anime=anime,
        )

    return build


def bobs_burgers_item() -> Item:
    """The item of the real Bob's Burgers S09E15 webhook (ratingKey 146734, show 146560)."""
    event = plex_event(
        parse_plex_payload(
            (FIXTURES / "episode_media.pause_plex-agent_bobs-burgers_s09e15.json").read_bytes()
        ),
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        household=Household.implicit(plex_accounts=["melissar26"]),
    )
    assert isinstance(event, PlayEvent)
    assert event.item.guid == BOBS_EPISODE_GUID
    return event.item


def search_requests(fake: FakeTrakt) -> list[tuple[str, str, dict[str, str]]]:
    return [r for r in fake.requests if r[1].startswith("/search/")]


# --------------------------------------------------------------------------------------------
# The chain
# --------------------------------------------------------------------------------------------


class TestChain:
    async def test_every_step_runs_in_the_documented_order(
        self,
        make: Callable[..., Resolver],
        plex: FakePlexServer,
        trakt: FakeTrakt,
        simkl: FakeSimkl,
        session: aiohttp.ClientSession,
        tmp_path: Path,
    ) -> None:
        lists = AnimeListStore(session=session, directory=tmp_path, url="")
        async with FakeTautulli() as tautulli:
            resolver = make(
                plex=plex,
                tautulli=tautulli,
                trakt=trakt,
                simkl=simkl,
                title_fallback=True,
                anime=lists,
            )

        assert resolver.steps == STEPS

    async def test_a_step_without_its_service_is_left_out(
        self, make: Callable[..., Resolver], simkl: FakeSimkl
    ) -> None:
        """Without Plex, Tautulli and Trakt only SIMKL's id and title searches remain; the
        title fallback needs a search: without any there is no title step."""
        resolver = make(simkl=simkl, title_fallback=True)

        assert resolver.steps == ("payload", "cache", "simkl", "title")
        assert make(title_fallback=True).steps == ("payload", "cache")


# --------------------------------------------------------------------------------------------
# Step 1: ids in the payload
# --------------------------------------------------------------------------------------------


class TestPayload:
    async def test_movie_with_guid_array_ids_resolves_without_any_outside_call(
        self, make: Callable[..., Resolver], plex: FakePlexServer, trakt: FakeTrakt
    ) -> None:
        resolver = make(plex=plex, trakt=trakt)
        item = movie(title="Big Trouble", ids=Ids(imdb="tt0090728", tmdb="6978"), rating_key="9")

        result = await resolver.resolve(item)

        assert result.step == "payload"
        assert result.item.ids.imdb == "tt0090728"
        assert plex.requests == [] and search_requests(trakt) == []

    async def test_legacy_imdb_guid_gives_the_movie_id(self, make: Callable[..., Resolver]) -> None:
        item = movie(title="Barry Lyndon", guid="com.plexapp.agents.imdb://tt0072684?lang=en")

        result = await make().resolve(item)

        assert (result.step, result.item.ids.imdb) == ("payload", "tt0072684")

    async def test_legacy_thetvdb_guid_gives_show_id_season_and_number(
        self, make: Callable[..., Resolver]
    ) -> None:
        item = episode(guid="com.plexapp.agents.thetvdb://73871/2/15?lang=en")

        result = await make().resolve(item)

        assert result.step == "payload"
        assert result.item.show_ids == Ids(tvdb="73871")
        assert (result.item.season, result.item.number) == (2, 15)

    async def test_hama_tvdb_guid_gives_show_id_and_position(
        self, make: Callable[..., Resolver]
    ) -> None:
        item = episode(guid="com.plexapp.agents.hama://tvdb-81797/3/7?lang=en")

        result = await make().resolve(item)

        assert result.step == "payload"
        assert (result.item.show_ids.tvdb, result.item.season, result.item.number) == (
            "81797",
            3,
            7,
        )

    async def test_hama_anidb_episode_without_lookups_is_returned_partial_not_dropped(
        self, make: Callable[..., Resolver]
    ) -> None:
        """anidb alone does not meet the goal (Trakt cannot use it) but SIMKL can: kept."""
        item = episode(guid="com.plexapp.agents.hama://anidb-23/1/5")

        result = await make().resolve(item)

        assert result.item.show_ids == Ids(anidb="23")
        assert (result.item.season, result.item.number) == (1, 5)

    async def test_special_season_zero_is_a_real_season(
        self, make: Callable[..., Resolver]
    ) -> None:
        item = episode(guid="com.plexapp.agents.thetvdb://73871/0/3")

        result = await make().resolve(item)

        assert (result.step, result.item.season, result.item.number) == ("payload", 0, 3)

    async def test_year_numbered_season_is_kept_as_the_season(
        self, make: Callable[..., Resolver]
    ) -> None:
        item = episode(guid="com.plexapp.agents.thetvdb://248841/2019/12")

        result = await make().resolve(item)

        assert result.step == "payload"
        assert (result.item.show_ids.tvdb, result.item.season, result.item.number) == (
            "248841",
            2019,
            12,
        )
        assert result.item.year is None  # a season number is never taken for a year

    async def test_legacy_tvdb_guid_numbering_wins_over_the_librarys(
        self, make: Callable[..., Resolver]
    ) -> None:
        """A library in DVD order numbers the episode S03E04; the thetvdb GUID names TVDB's
        S02E15, the numbering that goes with TVDB show 73871."""
        item = episode(guid="com.plexapp.agents.thetvdb://73871/2/15?lang=en", season=3, number=4)

        result = await make().resolve(item)

        assert result.item.show_ids == Ids(tvdb="73871")
        assert (result.item.season, result.item.number) == (2, 15)

    def test_plex_guid_shortcut_agrees_with_parse_guid(self) -> None:
        """The resolver skips parse_guid for ``plex://`` GUIDs; the answer must be the same."""
        for guid in ("plex://movie/5d7768313c3c2a001fbcd1f0", "plex://episode/5e83?x=1"):
            assert parse_guid(guid) == _PLEX_GUID

    async def test_local_item_is_unresolved_without_asking_anyone(
        self,
        make: Callable[..., Resolver],
        plex: FakePlexServer,
        trakt: FakeTrakt,
    ) -> None:
        plex.add_movie("300", "Holiday 2019", 2019, [], guid="local://300")
        resolver = make(plex=plex, trakt=trakt, title_fallback=True)
        item = movie(title="Holiday 2019", year=2019, rating_key="300", guid="local://300")

        with pytest.raises(UnresolvedError) as err:
            await resolver.resolve(item)

        assert err.value.step == "payload"
        assert "local://300" in err.value.reason
        assert plex.requests == [] and search_requests(trakt) == []

    async def test_nothing_known_and_nothing_configured_names_a_reason(
        self, make: Callable[..., Resolver]
    ) -> None:
        with pytest.raises(UnresolvedError) as err:
            await make().resolve(movie(title="Mystery", year=2001))

        assert err.value.step == "payload"
        assert "no lookup configured" in err.value.reason


# --------------------------------------------------------------------------------------------
# Step 2: the persistent cache
# --------------------------------------------------------------------------------------------


class TestCache:
    """The cache's behaviour, on both backends (its own SQLite file, or the PostgreSQL
    database replicas share)."""

    @pytest.fixture(params=BACKENDS)
    async def cache(
        self, request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
    ) -> AsyncIterator[IdCache]:
        async with cache_for(
            request,
            tmp_path,
            positive_ttl_s=POSITIVE_TTL_S,
            negative_ttl_s=NEGATIVE_TTL_S,
            unix_s=clock,
        ) as cache:
            yield cache

    async def test_second_resolution_is_answered_from_the_cache(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        resolver = make(plex=plex)
        item = movie(title="Barry Lyndon", rating_key="100")

        first = await resolver.resolve(item)
        second = await resolver.resolve(item)

        assert first.step == "plex" and second.step == "cache"
        assert second.item.ids == first.item.ids == Ids(imdb="tt0072684", tmdb="3175")
        assert plex.calls["100"] == 1

    async def test_cache_survives_a_restart(
        self,
        make: Callable[..., Resolver],
        plex: FakePlexServer,
        cache: IdCache,
        clock: FakeClock,
    ) -> None:
        """What one process (or replica) cached is found by the next one on the same
        storage, without its memory."""
        await make(plex=plex).resolve(movie(rating_key="100"))
        again = IdCache(
            cache._db,
            positive_ttl_s=POSITIVE_TTL_S,
            negative_ttl_s=NEGATIVE_TTL_S,
            unix_s=clock,
            owns_db=False,
        )
        result = await make(plex=plex, id_cache=again).resolve(movie(rating_key="100"))

        assert result.step == "cache"
        assert result.item.ids.imdb == "tt0072684"
        assert plex.calls["100"] == 1
        assert again.stats.disk_hits >= 1

    async def test_an_item_seen_by_another_handle_is_answered_from_the_cache(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        """Resolved via ratingKey; later Tautulli sends the show id + position: no lookup."""
        resolver = make(plex=plex)
        await resolver.resolve(episode(rating_key="215", grandparent_rating_key="200"))

        later = await resolver.resolve(episode(ids=Ids(tvdb="163303")))

        assert later.step == "cache"
        assert later.item.show_ids.tvdb == "73871"
        assert (later.item.season, later.item.number) == (2, 15)
        assert sum(plex.calls.values()) == 2  # episode + show, once each

    async def test_a_confirmed_rating_key_serves_a_later_play_without_guid_from_the_cache(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        """Once the server confirmed ratingKey 215 is the webhook's item, Tautulli's guid-less
        report of 215 needs no lookup."""
        resolver = make(plex=plex)
        guid = str(plex.items["215"]["guid"])
        await resolver.resolve(episode(rating_key="215", guid=guid))

        later = await resolver.resolve(episode(rating_key="215"))

        assert (later.step, later.item.show_ids.tvdb) == ("cache", "73871")
        assert sum(plex.calls.values()) == 2  # episode + show, once each

    async def test_a_cached_identity_keeps_everything_else_the_item_says(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        """Only ids, show ids, season and number come from the cache; every other field of
        the item is kept, its Plex server (which scopes its ratingKeys in the outbox) too."""
        resolver = make(plex=plex)
        await resolver.resolve(episode(rating_key="215"))
        item = episode(
            title="A Clone of My Own",
            year=2000,
            show_title="Futurama",
            show_year=1999,
            rating_key="215",
            grandparent_rating_key="200",
            server="machine-1",
        )

        result = await resolver.resolve(item)

        assert result.step == "cache"
        identity = {"ids", "show_ids", "season", "number"}
        kept = [f.name for f in fields(Item) if f.name not in identity]
        assert [getattr(result.item, n) for n in kept] == [getattr(item, n) for n in kept]

    async def test_positive_answer_expires_after_its_ttl(
        self, make: Callable[..., Resolver], plex: FakePlexServer, clock: FakeClock
    ) -> None:
        resolver = make(plex=plex)
        await resolver.resolve(movie(rating_key="100"))

        clock.now += POSITIVE_TTL_S + 1
        result = await resolver.resolve(movie(rating_key="100"))

        assert result.step == "plex"
        assert plex.calls["100"] == 2

    async def test_unknown_item_is_not_asked_again_within_the_negative_ttl(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        resolver = make(plex=plex)
        for _ in range(3):
            with pytest.raises(UnresolvedError):
                await resolver.resolve(movie(rating_key="999"))

        assert plex.calls["999"] == 1

    async def test_unknown_item_is_asked_again_after_the_negative_ttl(
        self, make: Callable[..., Resolver], plex: FakePlexServer, clock: FakeClock
    ) -> None:
        resolver = make(plex=plex)
        with pytest.raises(UnresolvedError):
            await resolver.resolve(movie(rating_key="999"))
        plex.add_movie("999", "Barry Lyndon", 1975, ["imdb://tt0072684"])

        clock.now += NEGATIVE_TTL_S + 1
        result = await resolver.resolve(movie(rating_key="999"))

        assert result.item.ids.imdb == "tt0072684"
        assert plex.calls["999"] == 2

    async def test_forget_negative_lets_a_retry_ask_again_at_once(
        self, make: Callable[..., Resolver], plex: FakePlexServer, cache: IdCache
    ) -> None:
        resolver = make(plex=plex)
        with pytest.raises(UnresolvedError):
            await resolver.resolve(movie(rating_key="999"))
        plex.add_movie("999", "Barry Lyndon", 1975, ["imdb://tt0072684"])

        dropped = await cache.forget_negative()
        result = await resolver.resolve(movie(rating_key="999"))

        assert dropped == 1
        assert result.step == "plex"

    async def test_concurrent_requests_for_one_unknown_item_share_one_lookup(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        plex.delay_s = 0.05
        resolver = make(plex=plex)

        results = await asyncio.gather(
            *(resolver.resolve(movie(rating_key="100")) for _ in range(10))
        )

        assert {r.item.ids.imdb for r in results} == {"tt0072684"}
        assert plex.calls["100"] == 1


class TestCacheFile:
    """SQLite mode: the cache is a file of its own in the data dir."""

    async def test_a_reopened_file_still_has_the_answers(
        self, make: Callable[..., Resolver], plex: FakePlexServer, tmp_path: Path, clock: FakeClock
    ) -> None:
        async def open_cache() -> IdCache:
            return await IdCache.open(
                tmp_path / "restart.sqlite3",
                positive_ttl_s=POSITIVE_TTL_S,
                negative_ttl_s=NEGATIVE_TTL_S,
                unix_s=clock,
            )

        before = await open_cache()
        await make(plex=plex, id_cache=before).resolve(movie(rating_key="100"))
        await before.close()
        after = await open_cache()
        try:
            result = await make(plex=plex, id_cache=after).resolve(movie(rating_key="100"))
        finally:
            await after.close()

        assert result.step == "cache"
        assert plex.calls["100"] == 1

    async def test_cache_file_is_wal_and_versioned(self, tmp_path: Path) -> None:
        cache = await IdCache.open(
            tmp_path / "cache.sqlite3", positive_ttl_s=POSITIVE_TTL_S, negative_ttl_s=1.0
        )
        await cache.close()
        with sqlite3.connect(tmp_path / "cache.sqlite3") as db:
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
            version = db.execute("PRAGMA user_version").fetchone()[0]

        assert (mode, version) == ("wal", 1)


# --------------------------------------------------------------------------------------------
# Step 3: the Plex server
# --------------------------------------------------------------------------------------------


class TestPlex:
    async def test_movie_known_only_by_rating_key_gets_its_guid_ids(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        result = await make(plex=plex).resolve(movie(rating_key="100"))

        assert result.step == "plex"
        assert result.item.ids == Ids(imdb="tt0072684", tmdb="3175")
        path, query = plex.requests[0]
        assert (path, query.get("includeGuids")) == ("/library/metadata/100", "1")

    async def test_legacy_agent_movie_on_plex_gives_the_id_in_its_guid(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        """Legacy agents have no Guid[]; the id is in ``guid`` itself."""
        plex.add(
            "900",
            {
                "type": "movie",
                "title": "Barry Lyndon",
                "guid": "com.plexapp.agents.imdb://tt0072684?lang=en",
            },
        )

        result = await make(plex=plex).resolve(movie(rating_key="900"))

        assert (result.step, result.item.ids) == ("plex", Ids(imdb="tt0072684"))

    async def test_new_agent_episode_webhook_gets_show_ids_from_its_grandparent(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        """Real Bob's Burgers payload: Guid[] holds the episode's ids; the show's need PMS
        (after PMS confirmed that the payload's ratingKey is this very episode)."""
        plex.add_show("146560", "Bob's Burgers", 2011, ["tvdb://194031", "imdb://tt1561755"])
        plex.add_episode(
            "146734",
            "146560",
            9,
            15,
            ["imdb://tt9413736"],
            title="The Fresh Princ-ipal",
            guid=BOBS_EPISODE_GUID,
        )

        result = await make(plex=plex).resolve(bobs_burgers_item())

        assert result.step == "plex"
        assert result.item.show_ids == Ids(tvdb="194031", imdb="tt1561755")
        assert result.item.ids.imdb == "tt9413736"  # the episode's own ids are kept
        assert (result.item.season, result.item.number) == (9, 15)
        assert dict(plex.calls) == {"146734": 1, "146560": 1}

    async def test_episode_with_empty_guid_array_resolves_through_its_show(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        guid = "plex://episode/5e8339c4ec007c00412fee31"
        plex.add_show("17933", "Solar Opposites", 2020, ["tvdb://375892"])
        plex.add_episode("17946", "17933", 1, 3, [], guid=guid)
        item = episode(
            guid=guid,
            rating_key="17946",
            grandparent_rating_key="17933",
            season=1,
            number=3,
        )

        result = await make(plex=plex).resolve(item)

        assert result.item.show_ids.tvdb == "375892"
        assert result.item.ids == Ids()
        assert (result.item.season, result.item.number) == (1, 3)

    async def test_episode_known_only_by_rating_key_gets_position_and_show(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        result = await make(plex=plex).resolve(episode(rating_key="215"))

        assert result.item.show_ids.tvdb == "73871"
        assert result.item.ids.tvdb == "163303"
        assert (result.item.season, result.item.number) == (2, 15)

    async def test_special_keeps_season_zero_through_plex(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        result = await make(plex=plex).resolve(episode(rating_key="201"))

        assert (result.item.season, result.item.number) == (0, 1)
        assert result.item.show_ids.tvdb == "73871"

    async def test_legacy_tvdb_guid_numbering_wins_over_parent_index_and_index(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        """The server numbers the episode S03E04 (DVD order); its thetvdb GUID says TVDB's
        S02E15, the numbering that goes with the GUID's show id."""
        plex.add(
            "900",
            {
                "type": "episode",
                "title": "A Clone of My Own",
                "guid": "com.plexapp.agents.thetvdb://73871/2/15?lang=en",
                "parentIndex": 3,
                "index": 4,
                "grandparentRatingKey": "200",
            },
        )

        result = await make(plex=plex).resolve(episode(rating_key="900"))

        assert (result.step, result.item.show_ids.tvdb) == ("plex", "73871")
        assert (result.item.season, result.item.number) == (2, 15)

    async def test_movie_in_two_libraries_resolves_to_one_identity(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        guids = ["imdb://tt0090728", "tmdb://6978"]
        plex.add_movie("500", "Big Trouble", 1986, guids, section_id=1)
        plex.add_movie("600", "Big Trouble", 1986, guids, section_id=7)
        resolver = make(plex=plex)

        a = await resolver.resolve(movie(rating_key="500"))
        b = await resolver.resolve(movie(rating_key="600"))

        assert a.item.ids == b.item.ids == Ids(imdb="tt0090728", tmdb="6978")

    async def test_second_library_copy_with_the_same_plex_guid_is_a_cache_hit(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        guid = "plex://movie/5d7768313c3c2a001fbcd1f0"
        plex.add_movie("500", "Big Trouble", 1986, ["imdb://tt0090728"], guid=guid)
        resolver = make(plex=plex)
        await resolver.resolve(movie(rating_key="500", guid=guid))

        b = await resolver.resolve(movie(rating_key="600", guid=guid))

        assert (b.step, b.item.ids.imdb) == ("cache", "tt0090728")
        assert "600" not in plex.calls

    async def test_trailer_never_resolves_to_its_movie(
        self, make: Callable[..., Resolver], plex: FakePlexServer, trakt: FakeTrakt
    ) -> None:
        plex.add_clip("700", "Barry Lyndon", ["imdb://tt0072684"])
        resolver = make(plex=plex, trakt=trakt, title_fallback=True)

        with pytest.raises(UnresolvedError) as err:
            await resolver.resolve(movie(title="Barry Lyndon", year=1975, rating_key="700"))

        assert err.value.step == "plex"
        assert "clip (trailer)" in err.value.reason
        assert search_requests(trakt) == []

    async def test_episodes_of_one_show_cost_one_lookup_each_and_one_for_the_show(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        """10 webhook episodes of one show: 10 episode lookups + 1 show lookup, even when
        resolved concurrently."""
        plex.add_show("300", "Solar Opposites", 2020, ["tvdb://375892"])
        items = []
        for n in range(1, 11):
            guid = f"plex://episode/5e8339c4ec007c00412f{n:04x}"
            plex.add_episode(str(300 + n), "300", 1, n, [f"tvdb://{7_000_000 + n}"], guid=guid)
            items.append(
                episode(
                    guid=guid,
                    ids=Ids(tvdb=str(7_000_000 + n)),
                    rating_key=str(300 + n),
                    grandparent_rating_key="300",
                    season=1,
                    number=n,
                )
            )
        resolver = make(plex=plex)

        results = await asyncio.gather(*(resolver.resolve(i) for i in items))

        assert {r.item.show_ids.tvdb for r in results} == {"375892"}
        assert dict(plex.calls) == {"300": 1, **{str(300 + n): 1 for n in range(1, 11)}}

    async def test_unknown_rating_key_is_parked_with_step_and_reason(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        with pytest.raises(UnresolvedError) as err:
            await make(plex=plex).resolve(movie(rating_key="123"))

        assert (err.value.step, err.value.reason) == ("plex", "plex: ratingKey 123 not found")

    async def test_plex_server_error_is_retryable_and_not_cached(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        resolver = make(plex=plex)
        plex.fail_next(503, FAST_RETRY.tries)

        with pytest.raises(RetryableError) as err:
            await resolver.resolve(movie(rating_key="100"))
        result = await resolver.resolve(movie(rating_key="100"))

        assert err.value.provider == "plex"
        assert result.item.ids.imdb == "tt0072684"

    async def test_one_plex_server_error_is_retried_in_process(
        self, session: aiohttp.ClientSession, plex: FakePlexServer
    ) -> None:
        """A single 503 costs a second request, not a failed step."""
        client = PlexServer(session=session, url=plex.url, token=PLEX_TOKEN, get_retry=FAST_RETRY)
        plex.fail_next(503)

        meta = await client.metadata("100")

        assert meta is not None and meta.ids.imdb == "tt0072684"
        assert len(plex.requests) == 2

    async def test_refused_plex_token_is_not_retried(
        self, session: aiohttp.ClientSession, plex: FakePlexServer
    ) -> None:
        client = PlexServer(session=session, url=plex.url, token="wrong", get_retry=FAST_RETRY)

        with pytest.raises(SourceUnavailableError):
            await client.metadata("100")
        assert len(plex.requests) == 1

    async def test_bad_plex_token_is_reported_without_the_token(
        self, session: aiohttp.ClientSession, plex: FakePlexServer
    ) -> None:
        client = PlexServer(session=session, url=plex.url, token="wrong-token-value")

        with pytest.raises(SourceUnavailableError) as err:
            await client.metadata("100")

        assert "plex.token" in str(err.value)
        assert "wrong-token-value" not in str(err.value)

    async def test_client_asks_for_json(
        self, session: aiohttp.ClientSession, plex: FakePlexServer
    ) -> None:
        """The fake answers XML unless ``Accept: application/json`` is sent."""
        meta = await PlexServer(session=session, url=plex.url, token=PLEX_TOKEN).metadata("215")

        assert meta is not None
        assert (meta.kind, meta.season, meta.number, meta.grandparent_rating_key) == (
            "episode",
            2,
            15,
            "200",
        )


class TestOtherServer:
    """Plex webhooks also report plays on friends' servers: their ratingKeys name other items
    on the configured server, whose ids must never be taken."""

    @pytest.fixture
    def own_futurama(self, plex: FakePlexServer) -> FakePlexServer:
        """The own server keeps Futurama under the ratingKeys of the Bob's Burgers payload."""
        plex.add_show("146560", "Futurama", 1999, ["tvdb://73871", "imdb://tt0149460"])
        plex.add_episode("146734", "146560", 2, 15, ["tvdb://163303"], title="A Clone of My Own")
        return plex

    async def test_play_from_another_server_never_takes_the_own_servers_show_ids(
        self, make: Callable[..., Resolver], own_futurama: FakePlexServer, trakt: FakeTrakt
    ) -> None:
        result = await make(plex=own_futurama, trakt=trakt).resolve(bobs_burgers_item())

        assert result.step == "trakt"  # the chain went on past Plex
        assert result.item.show_ids.tvdb == "194031"  # Bob's Burgers, not Futurama's 73871
        assert "146560" not in own_futurama.calls  # the other show was never fetched

    async def test_play_from_another_server_without_searches_keeps_only_its_own_ids(
        self, make: Callable[..., Resolver], own_futurama: FakePlexServer
    ) -> None:
        result = await make(plex=own_futurama).resolve(bobs_burgers_item())

        assert result.item.show_ids == Ids()
        assert result.item.ids == Ids(imdb="tt9413736", tmdb="1707381", tvdb="7047159")

    async def test_mismatch_is_logged_and_not_asked_again(
        self, make: Callable[..., Resolver], own_futurama: FakePlexServer
    ) -> None:
        resolver = make(plex=own_futurama)
        with structlog.testing.capture_logs() as logs:
            await resolver.resolve(bobs_burgers_item())
            await resolver.resolve(bobs_burgers_item())

        other = [e for e in logs if e["event"] == "resolve.plex_other_server"]
        assert other and other[0]["rating_key"] == "146734"
        assert BOBS_EPISODE_GUID in other[0]["why"]
        assert dict(own_futurama.calls) == {"146734": 1}

    async def test_unresolved_play_from_another_server_says_so(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        plex.add_movie("100100", "Heat", 1995, ["imdb://tt0113277"])
        item = movie(title="Stranger Movie", rating_key="100100", guid="plex://movie/5d77aaaa")

        with pytest.raises(UnresolvedError) as err:
            await make(plex=plex).resolve(item)

        assert err.value.step == "plex"
        assert "ratingKey 100100 is another item" in err.value.reason

    async def test_own_items_cached_ratingkey_is_not_used_for_another_servers_play(
        self, make: Callable[..., Resolver], own_futurama: FakePlexServer
    ) -> None:
        own = Item(
            kind=MediaKind.EPISODE,
            title="A Clone of My Own",
            season=2,
            number=15,
            rating_key="146734",
            grandparent_rating_key="146560",
            guid=str(own_futurama.items["146734"]["guid"]),
        )
        resolver = make(plex=own_futurama)
        assert (await resolver.resolve(own)).item.show_ids.tvdb == "73871"

        result = await resolver.resolve(bobs_burgers_item())

        assert result.step != "cache"
        assert result.item.show_ids == Ids()

    async def test_legacy_guid_matches_whatever_its_language_query(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        plex.add_show("40", "Cowboy Bebop", 1998, ["tvdb://76885"])
        plex.add(
            "41",
            {
                "type": "episode",
                "title": "Asteroid Blues",
                "guid": "com.plexapp.agents.hama://anidb-23/1/1?lang=en",
                "parentIndex": 1,
                "index": 1,
                "grandparentRatingKey": "40",
            },
        )
        item = episode(rating_key="41", guid="com.plexapp.agents.hama://anidb-23/1/1?lang=ja")

        result = await make(plex=plex).resolve(item)

        assert result.step == "plex"
        assert result.item.show_ids == Ids(anidb="23", tvdb="76885")

    async def test_without_a_guid_another_position_is_another_item(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        """Own 215 is Futurama S02E15; a guid-less play of S03E04 under 215 is not it."""
        item = episode(rating_key="215", grandparent_rating_key="200", season=3, number=4)

        with pytest.raises(UnresolvedError) as err:
            await make(plex=plex).resolve(item)

        assert "S02E15, the play S03E04" in err.value.reason
        assert "200" not in plex.calls

    async def test_without_a_guid_another_title_is_another_item(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        with pytest.raises(UnresolvedError) as err:
            await make(plex=plex).resolve(movie(title="Heat", rating_key="100"))

        assert "titled 'Barry Lyndon'" in err.value.reason

    async def test_same_guid_but_another_season_is_another_item(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        guid = str(plex.items["215"]["guid"])
        item = episode(rating_key="215", guid=guid, season=5, number=15)

        with pytest.raises(UnresolvedError) as err:
            await make(plex=plex).resolve(item)

        assert err.value.step == "plex" and "another item" in err.value.reason
        assert "200" not in plex.calls

    async def test_tautulli_is_not_asked_again_about_a_rating_key_plex_answered(
        self, make: Callable[..., Resolver], own_futurama: FakePlexServer, trakt: FakeTrakt
    ) -> None:
        """Tautulli reads the same server: after Plex named another item under the
        ratingKey, Tautulli would only repeat it."""
        futurama = {
            "media_type": "episode",
            "guid": own_futurama.items["146734"]["guid"],
            "guids": ["tvdb://163303"],
            "grandparent_guids": ["tvdb://73871"],
            "grandparent_rating_key": "146560",
            "parent_media_index": "2",
            "media_index": "15",
        }
        async with FakeTautulli(metadata={"146734": futurama}) as fake:
            resolver = make(plex=own_futurama, tautulli=fake, trakt=trakt)
            result = await resolver.resolve(bobs_burgers_item())

        assert result.step == "trakt"
        assert dict(own_futurama.calls) == {"146734": 1}
        assert fake.calls_by_cmd["get_metadata"] == 0

    async def test_rating_key_unknown_to_plex_is_still_asked_of_tautulli(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        meta = {
            "media_type": "episode",
            "guid": BOBS_EPISODE_GUID,
            "guids": ["imdb://tt9413736"],
            "grandparent_guids": ["tvdb://194031"],
            "grandparent_rating_key": "146560",
            "parent_media_index": "9",
            "media_index": "15",
        }
        async with FakeTautulli(metadata={"146734": meta}) as fake:
            result = await make(plex=plex, tautulli=fake).resolve(bobs_burgers_item())

        assert (result.step, result.item.show_ids) == ("tautulli", Ids(tvdb="194031"))
        assert dict(plex.calls) == {"146734": 1}

    async def test_tautulli_item_with_another_guid_is_not_taken(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        meta = {
            "media_type": "episode",
            "guid": "plex://episode/5d9c1276e9d5a1001f4ff2fa",
            "guids": ["tvdb://5469015"],
            "grandparent_guids": ["tvdb://121361"],
            "grandparent_rating_key": "1219",
            "parent_media_index": "9",
            "media_index": "15",
        }
        async with FakeTautulli(metadata={"146734": meta}) as fake:
            result = await make(tautulli=fake, trakt=trakt).resolve(bobs_burgers_item())

        assert result.step == "trakt"
        assert result.item.show_ids.tvdb == "194031"  # not Tautulli's 121361

    async def test_tautulli_item_with_the_same_guid_is_taken(
        self, make: Callable[..., Resolver]
    ) -> None:
        meta = {
            "media_type": "episode",
            "guid": BOBS_EPISODE_GUID,
            "guids": ["imdb://tt9413736"],
            "grandparent_guids": ["tvdb://194031"],
            "grandparent_rating_key": "146560",
            "parent_media_index": "9",
            "media_index": "15",
        }
        async with FakeTautulli(metadata={"146734": meta}) as fake:
            result = await make(tautulli=fake).resolve(bobs_burgers_item())

        assert (result.step, result.item.show_ids) == ("tautulli", Ids(tvdb="194031"))


# --------------------------------------------------------------------------------------------
# Step 4: Tautulli
# --------------------------------------------------------------------------------------------


class TestTautulli:
    async def test_episode_gets_show_ids_from_grandparent_guids_in_one_call(
        self, make: Callable[..., Resolver]
    ) -> None:
        meta = {
            "media_type": "episode",
            "guid": "plex://episode/5d9c1276e9d5a1001f4ff2fa",
            "guids": ["imdb://tt3658014", "tvdb://5469015"],
            "grandparent_guids": ["imdb://tt0944947", "tvdb://121361"],
            "grandparent_rating_key": "1219",
            "parent_media_index": "6",
            "media_index": "1",
        }
        async with FakeTautulli(metadata={"153037": meta}) as fake:
            result = await make(tautulli=fake).resolve(episode(rating_key="153037"))

        assert result.step == "tautulli"
        assert result.item.show_ids == Ids(imdb="tt0944947", tvdb="121361")
        assert (result.item.season, result.item.number) == (6, 1)
        assert fake.calls_by_cmd["get_metadata"] == 1

    async def test_older_tautulli_without_grandparent_guids_asks_for_the_show(
        self, make: Callable[..., Resolver]
    ) -> None:
        ep = {
            "media_type": "episode",
            "guids": [],
            "grandparent_rating_key": "1219",
            "parent_media_index": "6",
            "media_index": "1",
        }
        show = {"media_type": "show", "guids": ["tvdb://121361"]}
        async with FakeTautulli(metadata={"153037": ep, "1219": show}) as fake:
            result = await make(tautulli=fake).resolve(episode(rating_key="153037"))

        assert result.item.show_ids.tvdb == "121361"
        assert dict(fake.metadata_calls_by_key) == {"153037": 1, "1219": 1}

    async def test_episodes_of_one_show_share_one_show_lookup_on_older_tautulli(
        self, make: Callable[..., Resolver]
    ) -> None:
        """Without grandparent_guids: 10 episodes cost 10 episode lookups + 1 show lookup."""
        metadata: dict[str, dict[str, Any]] = {
            "1219": {"media_type": "show", "guids": ["tvdb://121361"]}
        }
        for n in range(1, 11):
            metadata[str(153_000 + n)] = {
                "media_type": "episode",
                "guids": [],
                "grandparent_rating_key": "1219",
                "parent_media_index": "6",
                "media_index": str(n),
            }
        async with FakeTautulli(metadata=metadata) as fake:
            resolver = make(tautulli=fake)
            results = await asyncio.gather(
                *(resolver.resolve(episode(rating_key=str(153_000 + n))) for n in range(1, 11))
            )

        assert {r.item.show_ids.tvdb for r in results} == {"121361"}
        assert fake.metadata_calls_by_key["1219"] == 1
        assert sum(fake.metadata_calls_by_key.values()) == 11

    async def test_legacy_tvdb_guid_numbering_wins_over_the_media_indexes(
        self, make: Callable[..., Resolver]
    ) -> None:
        meta = {
            "media_type": "episode",
            "title": "A Clone of My Own",
            "guid": "com.plexapp.agents.thetvdb://73871/2/15?lang=en",
            "guids": [],
            "grandparent_rating_key": "200",
            "parent_media_index": "3",
            "media_index": "4",
        }
        async with FakeTautulli(metadata={"900": meta}) as fake:
            result = await make(tautulli=fake).resolve(episode(rating_key="900"))

        assert (result.step, result.item.show_ids.tvdb) == ("tautulli", "73871")
        assert (result.item.season, result.item.number) == (2, 15)

    def test_an_answer_cached_by_an_earlier_version_reads_the_same(self) -> None:
        """Before TautulliMetadata, the step also stored what the guid says (guid_scope,
        guid_ids, guid_season, guid_number); the guid itself tells it now."""
        old = {
            "kind": "episode",
            "guid": "com.plexapp.agents.thetvdb://73871/2/15?lang=en",
            "title": "A Clone of My Own",
            "ids": {"tvdb": "163303"},
            "show_ids": {},
            "guid_scope": "show",
            "guid_ids": {"tvdb": "73871"},
            "guid_season": 2,
            "guid_number": 15,
            "season": None,
            "number": None,
            "grk": "200",
        }

        meta = TautulliMetadata.from_value(old)

        assert (meta.kind, meta.ids, meta.show_ids) == (
            "episode",
            Ids(tvdb="163303"),
            Ids(tvdb="73871"),
        )
        assert (meta.position, meta.grandparent_rating_key) == ((2, 15), "200")

    def test_cached_shape_round_trips(self) -> None:
        data = {
            "media_type": "Episode",
            "guid": "plex://episode/5d9c1276e9d5a1001f4ff2fa",
            "title": "Winds of Winter",
            "year": "2016",
            "guids": ["imdb://tt4283094", "tvdb://5624261"],
            "grandparent_guids": ["tvdb://121361"],
            "parent_media_index": "6",
            "media_index": 10.0,
            "grandparent_rating_key": 1219,
        }
        meta = TautulliMetadata.from_data(data)

        assert TautulliMetadata.from_value(meta.value()) == meta
        assert (meta.kind, meta.year, meta.position, meta.grandparent_rating_key) == (
            "episode",
            2016,
            (6, 10),
            "1219",
        )

    async def test_tautulli_down_is_retryable(self, make: Callable[..., Resolver]) -> None:
        async with FakeTautulli() as fake:
            fake.fail_next(500, FAST_RETRY.tries)
            with pytest.raises(RetryableError) as err:
                await make(tautulli=fake).resolve(movie(rating_key="42"))

        assert err.value.provider == "tautulli"


# --------------------------------------------------------------------------------------------
# Steps 5-6: Trakt and SIMKL id lookups
# --------------------------------------------------------------------------------------------


class TestSearch:
    async def test_episode_known_by_its_own_id_gets_its_show_from_trakt(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        result = await make(trakt=trakt).resolve(episode(ids=Ids(tvdb="8031280")))

        assert result.step == "trakt"
        assert result.item.show_ids.tvdb == "353953"
        assert result.item.show_ids.trakt is not None
        assert (result.item.season, result.item.number) == (2, 50)
        assert search_requests(trakt)[0][1:] == ("/search/tvdb/8031280", {"type": "episode"})

    async def test_trakt_answer_is_cached(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        resolver = make(trakt=trakt)
        await resolver.resolve(episode(ids=Ids(tvdb="8031280")))

        again = await resolver.resolve(episode(ids=Ids(tvdb="8031280")))

        assert again.step == "cache"
        assert len(search_requests(trakt)) == 1

    async def test_trakt_season_numbers_do_not_override_the_sources(
        self, make: Callable[..., Resolver]
    ) -> None:
        """A year-numbered season from the source stays, whatever Trakt numbers it."""
        catalog = Catalog()
        show = catalog.add_show("Daily Show", 1996, tvdb=71256)
        catalog.add_episode(show, 25, 40, tvdb=7000001)
        async with FakeTrakt(client_id="trakt-cid", catalog=catalog) as fake:
            item = episode(ids=Ids(tvdb="7000001"), season=2019, number=40)
            result = await make(trakt=fake).resolve(item)

        assert (result.item.season, result.item.number) == (2019, 40)
        assert result.item.show_ids.tvdb == "71256"

    async def test_no_trakt_match_keeps_the_partial_item_and_is_not_asked_again(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        """An episode's own id is usable by Trakt even without show ids: returned, not parked."""
        resolver = make(trakt=trakt)
        item = episode(ids=Ids(tvdb="999"), season=1, number=1)

        first = await resolver.resolve(item)
        second = await resolver.resolve(item)

        assert first.item == second.item == item
        assert len(search_requests(trakt)) == 1

    async def test_plex_down_does_not_stop_trakt_from_resolving(
        self, make: Callable[..., Resolver], plex: FakePlexServer, trakt: FakeTrakt
    ) -> None:
        """A transient failure only matters when it is why the goal was not met."""
        plex.down = True
        item = episode(ids=Ids(tvdb="8031280"), rating_key="77", grandparent_rating_key="78")

        result = await make(plex=plex, trakt=trakt).resolve(item)

        assert result.step == "trakt"
        assert result.item.show_ids.tvdb == "353953"

    async def test_unresolved_names_the_last_step_that_was_tried(
        self, make: Callable[..., Resolver], trakt: FakeTrakt, plex: FakePlexServer
    ) -> None:
        """Trakt had no id to search with, so the reason is Plex's, not Trakt's."""
        plex.add_movie("800", "Obscure", 1931, [])
        with pytest.raises(UnresolvedError) as err:
            await make(plex=plex, trakt=trakt).resolve(movie(rating_key="800"))

        assert (err.value.step, err.value.reason) == (
            "plex",
            "plex: ratingKey 800 has no external ids",
        )
        assert search_requests(trakt) == []

    async def test_trakt_rate_limit_is_retryable_with_its_wait(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        trakt.fail_next(429, headers={"Retry-After": "7"}, path="/search/")

        with pytest.raises(RetryableError) as err:
            await make(trakt=trakt).resolve(episode(ids=Ids(tvdb="8031280")))

        assert (err.value.provider, err.value.retry_after_s) == ("trakt", 7.0)

    async def test_one_trakt_search_failure_is_retried_in_process(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        trakt.fail_next(502, path="/search/")

        result = await make(trakt=trakt).resolve(episode(ids=Ids(tvdb="8031280")))

        assert result.step == "trakt"
        assert len(search_requests(trakt)) == 2

    async def test_one_simkl_search_failure_is_retried_in_process(
        self, make: Callable[..., Resolver], simkl: FakeSimkl
    ) -> None:
        """The 503 is ridden out: the answer (nothing found) is the item as it was."""
        simkl.fail_next(503, path="/search/id")
        item = movie(ids=Ids(tvdb="1876"))

        result = await make(simkl=simkl).resolve(item)

        assert result.item == item
        assert [r["status"] for r in simkl.requests] == [503, 200]

    async def test_search_waits_for_the_rate_limiter(
        self, session: aiohttp.ClientSession, trakt: FakeTrakt
    ) -> None:
        acquired: list[str] = []

        class Recording(Limiter):
            async def acquire(self, method: str) -> None:
                acquired.append(method)
                await super().acquire(method)

        limiter = Recording({"get": TokenBucket(1000, 1000), "post": TokenBucket(100)})
        search = TraktSearch(
            session=session, limiter=limiter, client_id="trakt-cid", api_url=trakt.url
        )
        await search.by_id("imdb", "tt0090728", "movie")

        assert acquired == ["GET"]

    async def test_simkl_lookup_sends_identification_and_caches_nothing_found(
        self, make: Callable[..., Resolver], simkl: FakeSimkl
    ) -> None:
        resolver = make(simkl=simkl)
        item = movie(ids=Ids(tvdb="1876"))

        first = await resolver.resolve(item)
        second = await resolver.resolve(item)

        assert first.item.ids == second.item.ids == Ids(tvdb="1876")  # partial, kept
        searches = [r for r in simkl.requests if r["path"] == "/search/id"]
        assert len(searches) == 1 and searches[0]["status"] == 200
        assert searches[0]["query"]["tvdb"] == "1876"

    async def test_episode_with_show_ids_and_position_asks_nobody(
        self, make: Callable[..., Resolver], simkl: FakeSimkl, trakt: FakeTrakt
    ) -> None:
        """Tautulli's shape (show ids + season/number) already meets SIMKL's and Trakt's needs."""
        item = episode(show_ids=Ids(tvdb="73871"), season=2, number=15)

        result = await make(simkl=simkl, trakt=trakt).resolve(item)

        assert result.step == "payload"
        assert simkl.requests == [] and search_requests(trakt) == []


# --------------------------------------------------------------------------------------------
# Step 7: exact title + year
# --------------------------------------------------------------------------------------------


class TestTitle:
    async def test_title_fallback_is_off_by_default(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        with pytest.raises(UnresolvedError):
            await make(trakt=trakt).resolve(movie(title="Barry Lyndon", year=1975))

        assert search_requests(trakt) == []

    async def test_exact_title_and_year_resolve_a_movie(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        result = await make(trakt=trakt, title_fallback=True).resolve(
            movie(title="Barry Lyndon", year=1975)
        )

        assert result.step == "title"
        assert result.item.ids.imdb == "tt0072684"

    async def test_wrong_year_does_not_match(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        with pytest.raises(UnresolvedError) as err:
            await make(trakt=trakt, title_fallback=True).resolve(
                movie(title="Barry Lyndon", year=1976)
            )

        assert err.value.step == "title"

    async def test_an_episodes_year_is_never_used_as_the_shows(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        """Futurama's first episode aired in 1999, the show's year; still no title search."""
        item = episode(
            title="Space Pilot 3000", year=1999, show_title="Futurama", season=1, number=1
        )

        with pytest.raises(UnresolvedError) as err:
            await make(trakt=trakt, title_fallback=True).resolve(item)

        assert err.value.step == "title"
        assert "year" in err.value.reason
        assert [r for r in search_requests(trakt) if r[1] == "/search/show"] == []

    async def test_show_title_and_show_year_resolve_an_episode(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        item = episode(show_title="Futurama", show_year=1999, season=2, number=15)

        result = await make(trakt=trakt, title_fallback=True).resolve(item)

        assert result.step == "title"
        assert result.item.show_ids.tvdb == "73871"


def films() -> Catalog:
    """Same-title films of different years, a near title, a diacritic, and a series."""
    cat = Catalog()
    cat.add_movie("Dune", 1984, imdb="tt0087182", tmdb=841)
    cat.add_movie("Dune", 2021, imdb="tt1160419", tmdb=438631)
    cat.add_movie("Dune: Part Two", 2024, imdb="tt15239678", tmdb=693134)
    cat.add_movie("Bande à part", 1964, imdb="tt0057869", tmdb=8073)
    cat.add_movie("Twin Film", 2001, imdb="tt0000001", tmdb=1)
    cat.add_movie("Twin Film", 2001, imdb="tt0000002", tmdb=2)
    cat.add_show("Normal People", 2020, tvdb=368213, imdb="tt9059760", tmdb=89905)
    return cat


class TestPrefetch:
    """A bulk caller reads what the cache knows of many items at once (file imports)."""

    async def test_prefetched_items_resolve_without_a_query_each(
        self, make: Callable[..., Resolver], trakt: FakeTrakt, tmp_path: Path, clock: FakeClock
    ) -> None:
        items = [movie(title="Barry Lyndon", year=1975), movie(title="Nothing Such", year=1999)]
        with contextlib.suppress(UnresolvedError):
            for item in items:
                await make(trakt=trakt, title_fallback=True).resolve(item)
        reopened = await IdCache.open(
            tmp_path / "cache.sqlite3",
            positive_ttl_s=POSITIVE_TTL_S,
            negative_ttl_s=NEGATIVE_TTL_S,
            unix_s=clock,
        )
        try:
            resolver = make(trakt=trakt, title_fallback=True, id_cache=reopened)
            searched = len(search_requests(trakt))

            await resolver.prefetch([*items, movie(title="Dune", ids=Ids(imdb="tt1160419"))])
            asked = reopened.stats.disk_hits + reopened.stats.misses
            found = await resolver.resolve(items[0])

            assert found.item.ids.imdb == "tt0072684"
            assert reopened.stats.disk_hits + reopened.stats.misses == asked  # from memory
            with pytest.raises(UnresolvedError):
                await resolver.resolve(items[1])
            assert len(search_requests(trakt)) == searched  # the cached "no match" holds
        finally:
            await reopened.close()

    async def test_prefetch_loads_entries_and_remembers_absent_keys(self, cache: IdCache) -> None:
        await cache.put(["item:a", "item:b"], {"ids": {"imdb": "tt1"}}, step="title")
        await cache.put_negative("title:x", "nothing", step="title")
        cache._memory.clear()

        loaded = await cache.prefetch(["item:a", "title:x", "item:zzz", "item:a"])

        assert loaded == 2
        assert cache.peek("item:a") is not None and cache.peek("item:b") is None
        misses = cache.stats.misses
        assert await cache.get("item:zzz") is None
        assert cache.stats.misses == misses + 1  # answered as absent without a query


class TestTitleExactness:
    """The title step keeps only a hit whose title equals the item's after NFC and case
    folding and whose year is the same; Trakt first, then SIMKL (Letterboxd rows)."""

    @pytest.fixture
    async def trakt_films(self) -> AsyncIterator[FakeTrakt]:
        async with FakeTrakt(client_id="trakt-cid", catalog=films()) as fake:
            yield fake

    @pytest.fixture
    async def simkl_films(self) -> AsyncIterator[FakeSimkl]:
        async with FakeSimkl(client_id="simkl-cid", catalog=films()) as fake:
            yield fake

    @pytest.mark.parametrize(("year", "tmdb"), [(1984, "841"), (2021, "438631")])
    async def test_same_title_films_are_told_apart_by_year(
        self, make: Callable[..., Resolver], trakt_films: FakeTrakt, year: int, tmdb: str
    ) -> None:
        result = await make(trakt=trakt_films, title_fallback=True).resolve(
            movie(title="Dune", year=year)
        )

        assert (result.step, result.item.ids.tmdb) == ("title", tmdb)

    async def test_a_near_title_of_that_year_is_no_match(
        self, make: Callable[..., Resolver], trakt_films: FakeTrakt
    ) -> None:
        """Trakt answers "Dune: Part Two" (2024) for "Dune" 2024: not the same title."""
        with pytest.raises(UnresolvedError) as err:
            await make(trakt=trakt_films, title_fallback=True).resolve(
                movie(title="Dune", year=2024)
            )

        assert "no single exact match for movie 'Dune' (2024)" in err.value.reason
        assert any(r[1] == "/search/movie" for r in trakt_films.requests)

    async def test_case_and_unicode_composition_do_not_matter(
        self, make: Callable[..., Resolver], trakt_films: FakeTrakt
    ) -> None:
        decomposed = unicodedata.normalize("NFD", "BANDE À PART")
        result = await make(trakt=trakt_films, title_fallback=True).resolve(
            movie(title=decomposed, year=1964)
        )

        assert result.item.ids.imdb == "tt0057869"

    async def test_two_films_with_one_title_and_year_are_no_match(
        self, make: Callable[..., Resolver], trakt_films: FakeTrakt
    ) -> None:
        with pytest.raises(UnresolvedError):
            await make(trakt=trakt_films, title_fallback=True).resolve(
                movie(title="Twin Film", year=2001)
            )

    async def test_a_series_logged_as_a_film_matches_no_movie(
        self,
        make: Callable[..., Resolver],
        trakt_films: FakeTrakt,
        simkl_films: FakeSimkl,
    ) -> None:
        with pytest.raises(UnresolvedError) as err:
            await make(trakt=trakt_films, simkl=simkl_films, title_fallback=True).resolve(
                movie(title="Normal People", year=2020)
            )

        assert "on Trakt or SIMKL" in err.value.reason

    async def test_simkl_alone_finds_the_film_by_title(
        self, make: Callable[..., Resolver], simkl_films: FakeSimkl
    ) -> None:
        result = await make(simkl=simkl_films, title_fallback=True).resolve(
            movie(title="Dune", year=1984)
        )

        film = simkl_films.catalog.movie({"tmdb": 841})
        assert film is not None
        assert result.item.ids.tmdb == "841"
        assert result.item.ids.simkl == str(film["ids"]["simkl"])

    async def test_simkl_is_asked_when_trakt_has_no_exact_match(
        self,
        make: Callable[..., Resolver],
        trakt: FakeTrakt,
        simkl_films: FakeSimkl,
    ) -> None:
        """The default Trakt catalogue has no Dune; SIMKL's has."""
        result = await make(trakt=trakt, simkl=simkl_films, title_fallback=True).resolve(
            movie(title="Dune", year=2021)
        )

        assert result.item.ids.tmdb == "438631"

    async def test_each_answer_is_asked_once(
        self, make: Callable[..., Resolver], trakt_films: FakeTrakt
    ) -> None:
        resolver = make(trakt=trakt_films, title_fallback=True)
        for title in ("Dune", "dune", "Dune", "Nothing Such"):
            with contextlib.suppress(UnresolvedError):
                await resolver.resolve(movie(title=title, year=2021))

        assert len([r for r in trakt_films.requests if r[1] == "/search/movie"]) == 2


# --------------------------------------------------------------------------------------------
# build_resolver
# --------------------------------------------------------------------------------------------


class TestBuild:
    async def test_use_plex_false_skips_a_configured_plex(
        self, session: aiohttp.ClientSession, cache: IdCache, plex: FakePlexServer
    ) -> None:
        settings = Settings(
            plex={"url": plex.url, "token": PLEX_TOKEN},
            resolver={"use_plex": False},
            trakt={"client_id": ""},
            simkl={"client_id": ""},
        )
        resolver = build_resolver(
            settings,
            session=session,
            cache=cache,
            trakt_limiter=None,
            simkl_limiter=None,
            tautulli=None,
        )

        with pytest.raises(UnresolvedError):
            await resolver.resolve(movie(rating_key="100"))
        assert plex.requests == []

    async def test_configured_plex_and_trakt_are_used(
        self,
        session: aiohttp.ClientSession,
        cache: IdCache,
        plex: FakePlexServer,
        trakt: FakeTrakt,
    ) -> None:
        settings = Settings(
            plex={"url": plex.url, "token": PLEX_TOKEN},
            trakt={"client_id": "trakt-cid", "api_url": trakt.url},
            simkl={"client_id": ""},
        )
        resolver = build_resolver(
            settings,
            session=session,
            cache=cache,
            trakt_limiter=fast_limiter(),
            simkl_limiter=None,
            tautulli=None,
        )

        a = await resolver.resolve(movie(rating_key="100"))
        b = await resolver.resolve(episode(ids=Ids(tvdb="8031280")))

        assert (a.step, b.step) == ("plex", "trakt")


class TestShowsAndSeasons:
    """A rating of a show or a season needs the show's ids; they come from the GUID or the
    configured server's show, never from a search."""

    async def test_a_show_with_ids_in_its_guids_needs_no_lookup(
        self, make: Callable[..., Resolver], plex: FakePlexServer, trakt: FakeTrakt
    ) -> None:
        show = Item(MediaKind.SHOW, "Futurama", 1999, ids=Ids(tvdb="73871"), rating_key="200")
        result = await make(plex=plex, trakt=trakt).resolve(show)
        assert (result.step, result.item.ids) == ("payload", Ids(tvdb="73871"))
        assert plex.requests == [] and trakt.requests == []

    async def test_a_new_agent_show_gets_its_ids_from_the_server(
        self, make: Callable[..., Resolver], plex: FakePlexServer, trakt: FakeTrakt
    ) -> None:
        guid = plex.items["200"]["guid"]
        show = Item(MediaKind.SHOW, "Futurama", 1999, rating_key="200", guid=guid)
        result = await make(plex=plex, trakt=trakt).resolve(show)
        assert result.step == "plex"
        assert result.item.ids == Ids(imdb="tt0149460", tmdb="615", tvdb="73871")
        assert trakt.requests == []  # no search for a show

    async def test_a_season_gets_its_shows_ids_through_parent_rating_key(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        season = Item(
            MediaKind.SEASON,
            "Season 2",
            show_title="Futurama",
            season=2,
            rating_key="299",
            grandparent_rating_key="200",
        )
        result = await make(plex=plex).resolve(season)
        assert result.step == "plex"
        assert (result.item.show_ids.tvdb, result.item.season) == ("73871", 2)

    async def test_a_season_whose_show_key_is_another_show_here_is_parked(
        self, make: Callable[..., Resolver], plex: FakePlexServer
    ) -> None:
        season = Item(
            MediaKind.SEASON,
            "Season 1",
            show_title="Bluey",
            season=1,
            grandparent_rating_key="200",  # Futurama on this server: a friend's server's key
        )
        with pytest.raises(UnresolvedError, match="another item on the configured server"):
            await make(plex=plex).resolve(season)

    async def test_a_show_without_ids_or_server_is_parked_with_a_reason(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        show = Item(MediaKind.SHOW, "Obscure", 2001, guid="plex://show/abc")
        with pytest.raises(UnresolvedError, match="no ids of the show"):
            await make(trakt=trakt).resolve(show)
        assert trakt.requests == []


async def test_every_answer_is_counted_as_a_cache_hit_or_an_outside_lookup(
    make: Callable[..., Resolver], plex: FakePlexServer
) -> None:
    """What the metrics' crosswatchd_resolver_lookups counts."""
    seen: list[tuple[str, bool]] = []
    resolver = make(plex=plex, on_lookup=lambda step, hit: seen.append((step, hit)))
    await resolver.resolve(movie(rating_key="100"))  # asked outside
    await resolver.resolve(movie(rating_key="100"))  # the identity is cached now
    assert seen == [("plex", False), ("cache", True)]
