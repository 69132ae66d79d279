"""HAMA AniDB plays: the resolver's ``anime`` step on a loaded Anime-Lists file, and what the
daemon's other pieces do with its answers (settlement, the outbox re-queue, status).

Items come from the real Plex webhook captures (``tests/fixtures/plex``) with a HAMA GUID put
in, parsed by the real webhook parser; the list is served by the fake list host and holds the
real rows of ``tests.fakes.animelists.REAL_ROWS`` (the reference's worked examples) plus a
few constructed rows, each saying what it stands for. Trakt is the fake Trakt (its id search
and its seasons listing with ``number_abs``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from crosswatchd.animelists_store import AnimeListStore
from crosswatchd.cli.status import _anime_line
from crosswatchd.config import Settings
from crosswatchd.errors import RetryableError, UnresolvedError
from crosswatchd.http import GetRetry
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import (
    Claimed,
    DeliveryKind,
    DeliveryState,
    Outbox,
    ReasonKind,
    Settlement,
)
from crosswatchd.profiles import Household
from crosswatchd.providers.base import PlayOutcome
from crosswatchd.providers.simkl import SimklSearch
from crosswatchd.providers.trakt import TraktSearch
from crosswatchd.ratelimit import Limiter
from crosswatchd.report import build_report
from crosswatchd.resolve import IdCache, Resolver
from crosswatchd.settlement import RetryPolicy, Rules, Step, decide
from crosswatchd.sources.guids import AnidbGuid, anidb_guid
from crosswatchd.sources.plex import parse_plex_payload, plex_event
from crosswatchd.sources.tautulli import parse_tautulli_body, tautulli_event
from tests.fakes.animelists import (
    CONSTRUCTED_ROWS,
    REAL_ROWS,
    AnimeRow,
    FakeAnimeLists,
    anime_list_xml,
)
from tests.fakes.catalog import Catalog
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt

FIXTURES = Path(__file__).parent / "fixtures" / "plex"
RECEIVED = datetime(2026, 8, 21, 20, 0, tzinfo=UTC)
HAMA = "com.plexapp.agents.hama://"
FAST_RETRY = GetRetry(tries=2, base_s=0.001)

#: Constructed: a series TVDB numbers absolutely with no range at all (an ongoing show).
ONGOING = AnimeRow(70010, tvdbid="70010", defaulttvdbseason="a", name="Constructed: ongoing")
LIST = anime_list_xml([*REAL_ROWS, *CONSTRUCTED_ROWS, ONGOING])


def plex_episode(guid: str, season: int, number: int, show: str = "Some Anime") -> Item:
    """The real legacy-agent episode capture (Futurama, paused), finished, with a HAMA GUID."""
    payload = orjson.loads(
        (FIXTURES / "episode_media.pause_legacy-agent_thetvdb_futurama.json").read_bytes()
    )
    payload["event"] = "media.scrobble"
    meta = payload["Metadata"]
    meta.update(guid=guid, parentIndex=season, index=number, grandparentTitle=show)
    return _item(payload)


def plex_movie(guid: str, title: str = "Kimi no Na wa.") -> Item:
    """The real legacy-agent movie capture (Barry Lyndon, stopped), with a HAMA GUID."""
    payload = orjson.loads(
        (FIXTURES / "movie_media.stop_legacy-agent_imdb_barry-lyndon.json").read_bytes()
    )
    payload["event"] = "media.scrobble"
    payload["Metadata"].update(guid=guid, title=title, year=2016)
    return _item(payload)


def _item(payload: dict[str, Any]) -> Item:
    event = plex_event(
        parse_plex_payload(orjson.dumps(payload)),
        received_at=RECEIVED,
        household=Household.implicit(plex_accounts=[payload["Account"]["title"]]),
    )
    assert isinstance(event, PlayEvent), event
    return event.item


def anime_catalog() -> Catalog:
    """What Trakt and SIMKL know of the shows the list maps to."""
    cat = Catalog()
    sdbh = cat.add_show("Super Dragon Ball Heroes", 2018, anime=True, tvdb=347734)
    for n in range(1, 7):
        cat.add_episode(sdbh, 1, n, number_abs=n)
    ongoing = cat.add_show("Ongoing", 2024, anime=True, tvdb=70010)
    for n in range(1, 4):
        cat.add_episode(ongoing, 1, n, number_abs=n)
    return cat


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
async def list_host() -> AsyncIterator[FakeAnimeLists]:
    async with FakeAnimeLists(LIST) as fake:
        yield fake


@pytest.fixture
async def lists(
    session: aiohttp.ClientSession, list_host: FakeAnimeLists, tmp_path: Path
) -> AnimeListStore:
    store = AnimeListStore(session=session, directory=tmp_path / "anime", url=list_host.url)
    assert await store.ensure() is not None
    return store


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[IdCache]:
    cache = await IdCache.open(tmp_path / "cache.sqlite3", positive_ttl_s=1e6, negative_ttl_s=60)
    yield cache
    await cache.close()


@pytest.fixture
async def trakt() -> AsyncIterator[FakeTrakt]:
    async with FakeTrakt(client_id="cid", client_secret="secret", catalog=anime_catalog()) as fake:
        yield fake


@pytest.fixture
async def simkl() -> AsyncIterator[FakeSimkl]:
    async with FakeSimkl(client_id="sid", catalog=anime_catalog()) as fake:
        yield fake


@pytest.fixture
def make(
    cache: IdCache, session: aiohttp.ClientSession, lists: AnimeListStore
) -> Callable[..., Resolver]:
    def build(
        *,
        trakt: FakeTrakt | None = None,
        simkl: FakeSimkl | None = None,
        anime: AnimeListStore | None = lists,
    ) -> Resolver:
        limiter = Limiter.per_second(post_per_s=100, get_per_s=1000, get_capacity=1000)
        return Resolver(
            cache=cache,
            trakt_search=None
            if trakt is None
            else TraktSearch(
                session=session,
                limiter=limiter,
                client_id="cid",
                api_url=trakt.url,
                get_retry=FAST_RETRY,
            ),
            simkl_search=None
            if simkl is None
            else SimklSearch(
                session=session,
                limiter=limiter,
                client_id="sid",
                api_url=simkl.url,
                get_retry=FAST_RETRY,
            ),
            anime=anime,
        )

    return build


def trakt_gets(fake: FakeTrakt) -> list[str]:
    return [path for method, path, _ in fake.requests if method == "GET"]


# --------------------------------------------------------------------------------------------
# HAMA GUIDs
# --------------------------------------------------------------------------------------------


class TestAnidbGuid:
    @pytest.mark.parametrize(
        ("guid", "expected"),
        [
            (f"{HAMA}anidb-17494/1/7?lang=en", AnidbGuid("17494", "anidb", 1, 7)),
            (f"{HAMA}anidb-9541/0/7?lang=da", AnidbGuid("9541", "anidb", 0, 7)),
            (f"{HAMA}anidb-11829?lang=en", AnidbGuid("11829", "anidb", None, None)),
            (f"{HAMA}anidb-17494/1?lang=en", AnidbGuid("17494", "anidb", 1, None)),
            (f"{HAMA}anidb2-14444/3/15", AnidbGuid("14444", "anidb2", 3, 15)),
            (f"{HAMA}ANIDB-23/1/2", AnidbGuid("23", "anidb", 1, 2)),
            (f"{HAMA}anidb-23/x/2", AnidbGuid("23", "anidb", None, None)),
        ],
    )
    def test_anidb_forms(self, guid: str, expected: AnidbGuid) -> None:
        assert anidb_guid(guid) == expected

    @pytest.mark.parametrize(
        "guid",
        [
            f"{HAMA}tvdb-81797/22/70?lang=en",
            f"{HAMA}anidb-0/1/1",
            f"{HAMA}anidb-abc/1/1",
            "com.plexapp.agents.thetvdb://73871/2/15?lang=en",
            "plex://episode/5d9c1276e9d5a1001f4ff2fa",
            "",
            None,
            17494,
        ],
    )
    def test_anything_else_is_not_an_anidb_guid(self, guid: object) -> None:
        assert anidb_guid(guid) is None


# --------------------------------------------------------------------------------------------
# The anime step
# --------------------------------------------------------------------------------------------


class TestEpisodes:
    """AniDB episodes become the TVDB show, season and episode the list gives."""

    @pytest.mark.parametrize(
        ("guid", "season", "number", "tvdb", "expected"),
        [
            # WE1, plain season: defaulttvdbseason 2.
            (f"{HAMA}anidb-15207/1/5?lang=en", 1, 5, "354198", (2, 5)),
            # WE2: episodeoffset 12 in season 3.
            (f"{HAMA}anidb-14444/1/3?lang=en", 1, 3, "267440", (3, 15)),
            # WE3: a special through an individual mapping-list pair (S7 -> S00E08).
            (f"{HAMA}anidb-9541/0/7?lang=en", 0, 7, "267440", (0, 8)),
            # WE4: a special through a range (offset 1).
            (f"{HAMA}anidb-23/0/2?lang=en", 0, 2, "76885", (0, 3)),
            # WE5: a range of an absolute row gives a season.
            (f"{HAMA}anidb-8550/1/60?lang=en", 1, 60, "252322", (2, 2)),
            # anidb2: Plex already shows TVDB numbering; only the series comes from the list.
            (f"{HAMA}anidb2-14444/3/15?lang=en", 3, 15, "267440", (3, 15)),
        ],
    )
    async def test_mapped_to_tvdb(
        self,
        make: Callable[..., Resolver],
        trakt: FakeTrakt,
        guid: str,
        season: int,
        number: int,
        tvdb: str,
        expected: tuple[int, int],
    ) -> None:
        resolution = await make(trakt=trakt).resolve(plex_episode(guid, season, number))

        item = resolution.item
        assert resolution.step == "anime"
        assert (item.show_ids, (item.season, item.number)) == (Ids(tvdb=tvdb), expected)
        assert item.guid == guid  # kept: it says where the play came from
        assert trakt.requests == []  # the list alone; no search

    async def test_the_guid_numbers_win_over_the_library_indexes(
        self, make: Callable[..., Resolver]
    ) -> None:
        item = plex_episode(f"{HAMA}anidb-14444/1/3?lang=en", 5, 99)

        resolved = (await make().resolve(item)).item

        assert (resolved.season, resolved.number) == (3, 15)

    async def test_cached_answers_never_pair_anidb_numbers_with_a_show(
        self, make: Callable[..., Resolver], cache: IdCache
    ) -> None:
        """An identity remembered under the GUID (say, by a search before the list was used)
        with AniDB's season and number is not taken: the list decides."""
        guid = f"{HAMA}anidb-14444/1/3?lang=en"
        stale = {"kind": "episode", "ids": {}, "show_ids": {"simkl": "39687"}, "season": 1}
        await cache.put([f"item:guid:{guid.split('?')[0]}"], {**stale, "number": 3}, step="simkl")

        resolved = (await make().resolve(plex_episode(guid, 1, 3))).item

        assert (resolved.show_ids, resolved.season, resolved.number) == (Ids(tvdb="267440"), 3, 15)

    async def test_tautulli_webhook_with_the_same_guid_maps_the_same_way(
        self, make: Callable[..., Resolver]
    ) -> None:
        """Tautulli fills ``{thetvdb_id}`` where it can; AniDB's S1E3 must still become S3E15,
        not be sent as S01E03 of that show."""
        body = parse_tautulli_body(
            {
                "action": "watched",
                "unixtime": "1790000000",
                "username": "alice",
                "media_type": "episode",
                "title": "Attack on Titan - Smoke Signal",
                "show_name": "Attack on Titan",
                "season_num": "1",
                "episode_num": "3",
                "rating_key": "4242",
                "guid": f"{HAMA}anidb-14444/1/3?lang=en",
                "thetvdb_id": "267440",
            }
        )
        event = tautulli_event(
            body, received_at=RECEIVED, household=Household.implicit(tautulli_users=["alice"])
        )
        assert isinstance(event, PlayEvent)

        resolved = (await make().resolve(event.item)).item

        assert (resolved.show_ids.tvdb, resolved.season, resolved.number) == ("267440", 3, 15)

    async def test_tvdb_guid_needs_no_list(
        self, session: aiohttp.ClientSession, make: Callable[..., Resolver], tmp_path: Path
    ) -> None:
        down = AnimeListStore(
            session=session, directory=tmp_path / "down", url="http://127.0.0.1:9/x"
        )
        await down.ensure()  # nothing listens there: no list loaded

        resolution = await make(anime=down).resolve(
            plex_episode(f"{HAMA}tvdb-81797/22/70?lang=en", 22, 70)
        )

        assert resolution.step == "payload"
        item = resolution.item
        assert (item.show_ids, item.season, item.number) == (Ids(tvdb="81797"), 22, 70)


class TestAbsolute:
    """Episodes the list numbers absolutely take Trakt's season and number (number_abs)."""

    async def test_absolute_number_through_trakts_episode_list(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        # Super Dragon Ball Heroes: ranges start at episode 7, so 1-6 are absolute.
        resolver = make(trakt=trakt)
        item = plex_episode(f"{HAMA}anidb-14086/1/3?lang=en", 1, 3)

        resolved = (await resolver.resolve(item)).item

        assert (resolved.show_ids.tvdb, resolved.season, resolved.number) == ("347734", 1, 3)
        assert resolved.show_ids.trakt  # Trakt's own id, from its search
        assert [p.split("/")[1] for p in trakt_gets(trakt)] == ["search", "shows"]
        assert trakt.requests[-1][2]["extended"] == "full,episodes"

    async def test_the_shows_episode_list_is_asked_once(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        resolver = make(trakt=trakt)
        for number in (3, 4, 5):
            item = plex_episode(f"{HAMA}anidb-14086/1/{number}?lang=en", 1, number)
            assert (await resolver.resolve(item)).item.number == number

        assert len(trakt_gets(trakt)) == 2

    async def test_an_episode_past_the_cached_list_asks_again_once(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        resolver = make(trakt=trakt)
        await resolver.resolve(plex_episode(f"{HAMA}anidb-70010/1/2", 1, 2))
        show = trakt.catalog.show({"tvdb": 70010})
        assert show is not None
        trakt.catalog.add_episode(show, 2, 1, number_abs=4)  # aired since

        resolved = (await resolver.resolve(plex_episode(f"{HAMA}anidb-70010/1/4", 1, 4))).item
        await resolver.resolve(plex_episode(f"{HAMA}anidb-70010/1/4", 1, 4))

        assert (resolved.season, resolved.number) == (2, 1)
        assert len(trakt_gets(trakt)) == 3  # search, the list, the list again for episode 4

    async def test_a_number_trakt_does_not_list_parks(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        with pytest.raises(UnresolvedError) as caught:
            await make(trakt=trakt).resolve(plex_episode(f"{HAMA}anidb-70010/1/9", 1, 9))

        assert caught.value.step == "anime"
        assert caught.value.reason.startswith(
            "AniDB 70010 episode 9 is TVDB 70010 absolute episode 9 in the Anime-Lists mapping;"
            " Trakt lists no episode with absolute number 9"
        )

    async def test_trakt_down_keeps_the_play_waiting(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        trakt.fail_next(503, count=10, path="/shows/")

        with pytest.raises(RetryableError):
            await make(trakt=trakt).resolve(plex_episode(f"{HAMA}anidb-14086/1/3", 1, 3))

    async def test_trakt_refusing_the_episode_list_parks_never_guesses(
        self, make: Callable[..., Resolver], trakt: FakeTrakt
    ) -> None:
        trakt.fail_next(422, path="/shows/")

        with pytest.raises(UnresolvedError, match="Trakt refused its episode list") as caught:
            await make(trakt=trakt).resolve(plex_episode(f"{HAMA}anidb-14086/1/3", 1, 3))

        assert caught.value.step == "anime"

    async def test_without_trakt_search_it_parks_saying_so(
        self, make: Callable[..., Resolver]
    ) -> None:
        with pytest.raises(UnresolvedError, match="Trakt search is off"):
            await make().resolve(plex_episode(f"{HAMA}anidb-14086/1/3", 1, 3))


class TestFilmsShowsSeasons:
    async def test_film_by_tmdb_and_imdb(self, make: Callable[..., Resolver]) -> None:
        resolution = await make().resolve(plex_movie(f"{HAMA}anidb-11829?lang=en"))

        assert resolution.step == "anime"
        assert resolution.item.kind is MediaKind.MOVIE
        assert resolution.item.ids == Ids(imdb="tt5311514", tmdb="372058")  # no anidb

    async def test_film_the_list_places_in_a_series_is_that_episode(
        self, make: Callable[..., Resolver]
    ) -> None:
        # Constructed row 70003: tvdbid 267440, defaulttvdbseason 0, episodeoffset 3.
        resolved = (await make().resolve(plex_movie(f"{HAMA}anidb-70003", "OVA"))).item

        assert resolved.kind is MediaKind.EPISODE
        assert (resolved.show_ids, resolved.season, resolved.number) == (Ids(tvdb="267440"), 0, 4)
        assert resolved.show_title == "OVA"

    async def test_a_show_is_its_tvdb_series(self, make: Callable[..., Resolver]) -> None:
        show = Item(MediaKind.SHOW, "Kaguya-sama", guid=f"{HAMA}anidb-15207?lang=en")

        resolution = await make().resolve(show)

        assert (resolution.step, resolution.item.ids) == ("anime", Ids(tvdb="354198"))

    async def test_a_season_is_the_tvdb_season_of_its_first_episode(
        self, make: Callable[..., Resolver]
    ) -> None:
        season = Item(MediaKind.SEASON, "Season 1", season=1, guid=f"{HAMA}anidb-14444/1")

        resolved = (await make().resolve(season)).item

        assert (resolved.show_ids, resolved.season) == (Ids(tvdb="267440"), 3)


class TestNotMapped:
    """A definite no from the list parks the play with the list's reason; no other step runs."""

    @pytest.mark.parametrize(
        ("guid", "season", "number", "reason"),
        [
            (
                f"{HAMA}anidb-17290/1/1?lang=en",
                1,
                1,
                "AniDB 17290 is not in the Anime-Lists mapping",
            ),
            (
                f"{HAMA}anidb-9541/0/11?lang=en",
                0,
                11,
                "AniDB 9541 special 11 maps to no TVDB episode in the Anime-Lists mapping",
            ),
            (
                f"{HAMA}anidb-99999/1/1?lang=en",
                1,
                1,
                'AniDB 99999 has no TVDB series in the Anime-Lists mapping (tvdbid="")',
            ),
            (
                f"{HAMA}anidb4-14444/4/2?lang=en",
                4,
                2,
                "AniDB 14444: HAMA's anidb4 numbering moves TVDB specials into seasons",
            ),
        ],
    )
    async def test_parked_with_the_lists_reason(
        self,
        make: Callable[..., Resolver],
        trakt: FakeTrakt,
        simkl: FakeSimkl,
        guid: str,
        season: int,
        number: int,
        reason: str,
    ) -> None:
        with pytest.raises(UnresolvedError) as caught:
            await make(trakt=trakt, simkl=simkl).resolve(plex_episode(guid, season, number))

        assert caught.value.step == "anime"
        assert caught.value.reason.startswith(reason)
        assert trakt.requests == [] and simkl.requests == []  # SIMKL's anidb search: never

    async def test_film_without_film_or_tvdb_ids(self, make: Callable[..., Resolver]) -> None:
        with pytest.raises(UnresolvedError, match="AniDB 99999 has no TMDB, IMDb or TVDB id"):
            await make().resolve(plex_movie(f"{HAMA}anidb-99999"))

    async def test_mapping_off_parks_every_anidb_play(
        self, session: aiohttp.ClientSession, make: Callable[..., Resolver], tmp_path: Path
    ) -> None:
        off = AnimeListStore(session=session, directory=tmp_path / "off", url="")

        with pytest.raises(UnresolvedError, match="the Anime-Lists mapping is off"):
            await make(anime=off).resolve(plex_episode(f"{HAMA}anidb-15207/1/5", 1, 5))


class TestWaitingForTheList:
    async def test_no_list_yet_is_retryable_and_asks_no_one_else(
        self,
        session: aiohttp.ClientSession,
        make: Callable[..., Resolver],
        list_host: FakeAnimeLists,
        trakt: FakeTrakt,
        simkl: FakeSimkl,
        tmp_path: Path,
    ) -> None:
        list_host.fail_status = 503
        waiting = AnimeListStore(
            session=session, directory=tmp_path / "w", url=list_host.url, retry_s=30
        )
        await waiting.ensure()
        resolver = make(trakt=trakt, simkl=simkl, anime=waiting)

        with pytest.raises(RetryableError) as caught:
            await resolver.resolve(plex_episode(f"{HAMA}anidb-15207/1/5", 1, 5))

        assert str(caught.value) == "anime: the Anime-Lists mapping is not available yet (HTTP 503)"
        assert caught.value.retry_after_s == pytest.approx(32, abs=1)  # retry_s + the slack
        assert trakt.requests == [] and simkl.requests == []


# --------------------------------------------------------------------------------------------
# What the rest of the daemon does with it
# --------------------------------------------------------------------------------------------


def claimed(item: Item, provider: str = "trakt") -> Claimed:
    return Claimed(
        id=1,
        event_id=1,
        provider=provider,
        kind=DeliveryKind.PLAY,
        lease_token="t",
        attempts=1,
        action=Action.WATCHED,
        source=Source.PLEX,
        account="alice",
        item=item,
        resolved=True,
        label=item.label(),
        occurred_at=RECEIVED,
        watched_at=RECEIVED,
        progress_pct=100.0,
        sent_at=None,
    )


class TestNotFound:
    async def test_not_found_of_a_mapped_episode_names_anidb_and_the_mapping(
        self, make: Callable[..., Resolver]
    ) -> None:
        """Trakt moving a show to other numbering answers not_found: the play parks saying
        what the list made of it, never sent to a guessed episode."""
        item = (await make().resolve(plex_episode(f"{HAMA}anidb-14444/1/3?lang=en", 1, 3))).item
        rules = Rules("trakt", RetryPolicy(1.0, 1.0), 300.0)

        settlement = decide(
            claimed(item), Step.SEND, PlayOutcome.NOT_FOUND, rules, now_s=RECEIVED.timestamp()
        )

        assert settlement.state is DeliveryState.PARKED
        assert settlement.reason_kind is ReasonKind.NOT_FOUND
        assert settlement.reason == (
            "trakt does not know this item (not_found): AniDB 14444 episode 3 is TVDB 267440"
            " S03E15 in the Anime-Lists mapping; trakt may number this show or film differently"
        )

    def test_other_items_keep_the_plain_reason(self) -> None:
        item = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))
        rules = Rules("simkl", RetryPolicy(1.0, 1.0), 300.0)

        settlement = decide(
            claimed(item, "simkl"), Step.SEND, PlayOutcome.NOT_FOUND, rules, now_s=0.0
        )

        assert settlement.reason == "simkl does not know this item (not_found)"


def _event(n: int, guid: str) -> PlayEvent:
    item = Item(MediaKind.MOVIE, f"Film {n}", 2020, rating_key=str(n), guid=guid)
    return PlayEvent(Source.PLEX, Action.WATCHED, "alice", item, RECEIVED)


class TestRequeue:
    async def test_a_new_list_requeues_only_what_the_list_parked(self, tmp_path: Path) -> None:
        box = await Outbox.open(tmp_path / "outbox.sqlite3", providers=["trakt"])
        try:
            for n in range(1, 5):
                await box.enqueue(_event(n, f"{HAMA}anidb-{n}"))
            claims = await box.claim("trakt", DeliveryKind.PLAY, limit=10, lease_s=60)
            reasons = [
                ("anime: AniDB 1 is not in the Anime-Lists mapping", ReasonKind.UNRESOLVED),
                (
                    "trakt does not know this item (not_found): AniDB 2 is TMDB 5 in the"
                    " Anime-Lists mapping; trakt may number this show or film differently",
                    ReasonKind.NOT_FOUND,
                ),
                ("payload: no external ids", ReasonKind.UNRESOLVED),
                ("trakt does not know this item (not_found)", ReasonKind.NOT_FOUND),
            ]
            for delivery, (reason, kind) in zip(claims, reasons, strict=True):
                await box.settle(delivery, Settlement.parked(reason, kind))
            generation = await box.retry_generation()

            count = await box.retry_parked(
                kinds=(ReasonKind.UNRESOLVED, ReasonKind.NOT_FOUND),
                reason_contains="Anime-Lists",
                announce=False,
            )

            assert count == 2
            states = await box.fetch_all("SELECT state FROM deliveries ORDER BY id")
            assert [s for (s,) in states] == ["pending", "pending", "parked", "parked"]
            assert await box.retry_generation() == generation  # cached lookups stay
        finally:
            await box.close()


class TestStatus:
    async def test_report_says_what_is_stored_and_the_last_refresh(
        self, lists: AnimeListStore, list_host: FakeAnimeLists, tmp_path: Path
    ) -> None:
        settings = Settings(data_dir=tmp_path / "anime", anime={"mapping_url": list_host.url})
        list_host.fail_status = 503
        await lists.refresh()
        box = await Outbox.open(tmp_path / "outbox.sqlite3", providers=[])
        try:
            report = await build_report(settings, box)
        finally:
            await box.close()

        anime = report["anime"]
        assert (anime["enabled"], anime["stored"], anime["size"]) == (True, True, len(LIST))
        assert anime["fetched_at"].endswith("Z") and anime["checked_at"].endswith("Z")
        assert anime["last_attempt"]["result"] == "failed"
        assert anime["last_attempt"]["error"] == "HTTP 503"

    def test_status_text_has_one_line_on_the_list(self) -> None:
        stored = {
            "enabled": True,
            "stored": True,
            "fetched_at": "2026-08-16T01:00:00Z",
            "checked_at": "2026-08-20T01:00:00Z",
            "last_attempt": {"at": "2026-08-21T01:00:00Z", "result": "failed", "error": "HTTP 503"},
        }
        waiting = {**stored, "stored": False}
        off = {**stored, "enabled": False}

        assert _anime_line(stored) == (
            "anime list:  stored 2026-08-16T01:00:00Z, checked 2026-08-20T01:00:00Z;"
            " last refresh 2026-08-21T01:00:00Z failed: HTTP 503"
        )
        assert _anime_line(waiting).startswith("anime list:  not stored yet (AniDB plays wait")
        assert _anime_line(off).startswith("anime list:  off")

    async def test_nothing_stored_for_another_url(
        self, lists: AnimeListStore, tmp_path: Path
    ) -> None:
        settings = Settings(
            data_dir=tmp_path / "anime", anime={"mapping_url": "https://example.org/list.xml"}
        )
        box = await Outbox.open(tmp_path / "outbox.sqlite3", providers=[])
        try:
            anime = (await build_report(settings, box))["anime"]
        finally:
            await box.close()

        assert (anime["stored"], anime["last_attempt"]) == (False, None)
