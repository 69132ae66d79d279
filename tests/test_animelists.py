"""The Anime-Lists mapping (``crosswatchd.animelists``) and its store.

Mapping tests use real rows of ``anime-list-master.xml`` quoted in
``shared/reference/anime/README.md`` §2 "Worked examples" (WE1…WE9) and a few more real rows
from the same snapshot (Anime-Lists/anime-lists @ 20ca4d8) for edge cases; constructed rows
say so. Store tests run against a fake list host on 127.0.0.1 with an injected clock.
"""

from __future__ import annotations

import asyncio
import gc
import os
import stat
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
import structlog

from crosswatchd import __version__
from crosswatchd.animelists import (
    AnimeListError,
    AnimeMapping,
    MappedEpisode,
    MappedFilm,
    MappingRule,
    Numbering,
    Unmapped,
    UnmappedKind,
    parse_anime_list,
)
from crosswatchd.animelists_store import (
    LIST_FILE,
    META_FILE,
    STATUS_FILE,
    AnimeListStore,
    ListUnavailable,
    RefreshResult,
)
from crosswatchd.models import Ids
from crosswatchd.sources.guids import parse_guid
from tests.clocks import Clock
from tests.fakes.animelists import (
    CONSTRUCTED_ROWS,
    REAL_ROWS,
    AnimeRow,
    FakeAnimeLists,
    MappingSpec,
    anime_list_xml,
)


@pytest.fixture(scope="module")
def mapping() -> AnimeMapping:
    return parse_anime_list(anime_list_xml([*REAL_ROWS, *CONSTRUCTED_ROWS]))


def mapped(result: object) -> MappedEpisode:
    assert isinstance(result, MappedEpisode), result
    return result


def unmapped(result: object, kind: UnmappedKind) -> Unmapped:
    assert isinstance(result, Unmapped), result
    assert result.kind is kind, result
    return result


class TestEpisodes:
    """AniDB episodes become exactly the TVDB show + season + episode they are."""

    def test_plain_season_uses_defaulttvdbseason(self, mapping: AnimeMapping) -> None:
        result = mapped(mapping.episode("15207", 1, 5))  # WE1
        assert result == MappedEpisode(
            "15207", Ids(tvdb="354198"), 2, (5,), Numbering.SEASON, MappingRule.DEFAULT
        )

    def test_episodeoffset_is_added(self, mapping: AnimeMapping) -> None:
        result = mapped(mapping.episode("14444", 1, 3))  # WE2
        assert (result.show_ids, result.season, result.episode) == (Ids(tvdb="267440"), 3, 15)

    def test_special_through_individual_pair(self, mapping: AnimeMapping) -> None:
        result = mapped(mapping.episode("9541", 0, 7))  # WE3: S7 is S00E08, not S00E07
        assert (result.season, result.episodes, result.rule) == (0, (8,), MappingRule.PAIR)

    def test_minus_zero_pair_maps_to_nothing(self, mapping: AnimeMapping) -> None:
        result = unmapped(mapping.episode("9541", 0, 11), UnmappedKind.NO_EPISODE)  # WE3
        assert result.reason == (
            "AniDB 9541 special 11 maps to no TVDB episode in the Anime-Lists mapping"
        )

    def test_special_through_range(self, mapping: AnimeMapping) -> None:
        found = [mapped(mapping.episode("23", 0, n)) for n in (1, 2, 3)]  # WE4
        assert [(r.season, r.episode, r.rule) for r in found] == [
            (0, 2, MappingRule.RANGE),
            (0, 3, MappingRule.RANGE),
            (0, 4, MappingRule.RANGE),
        ]
        unmapped(mapping.episode("23", 0, 4), UnmappedKind.NO_EPISODE)  # ;4-0;

    def test_range_offset_gives_season_of_absolute_row(self, mapping: AnimeMapping) -> None:
        found = [mapped(mapping.episode("8550", 1, n)) for n in (1, 60, 148)]
        assert [(r.season, r.episode, r.numbering) for r in found] == [
            (1, 1, Numbering.SEASON),
            (2, 2, Numbering.SEASON),  # WE5: AniDB 60 is S02E02
            (3, 12, Numbering.SEASON),
        ]

    def test_absolute_row_outside_its_ranges_gives_an_absolute_number(
        self, mapping: AnimeMapping
    ) -> None:
        result = mapped(mapping.episode("8550", 1, 149))
        assert result == MappedEpisode(
            "8550", Ids(tvdb="252322"), None, (149,), Numbering.ABSOLUTE, MappingRule.ABSOLUTE
        )

    def test_absolute_number_adds_episodeoffset(self, mapping: AnimeMapping) -> None:
        in_range = mapped(mapping.episode("9980", 1, 52))
        assert (in_range.season, in_range.episode) == (6, 1)
        beyond = mapped(mapping.episode("9980", 1, 103))
        assert (beyond.numbering, beyond.season, beyond.episode) == (Numbering.ABSOLUTE, None, 278)

    def test_mappings_for_tmdb_only_are_ignored(self, mapping: AnimeMapping) -> None:
        result = mapped(mapping.episode("69", 1, 70))  # no tvdbseason range: absolute
        assert (result.numbering, result.episode) == (Numbering.ABSOLUTE, 70)
        assert mapped(mapping.episode("69", 0, 1)).episodes == (27,)

    def test_range_without_end_is_open(self, mapping: AnimeMapping) -> None:
        result = mapped(mapping.episode("14086", 1, 60))
        assert (result.season, result.episode, result.rule) == (6, 12, MappingRule.RANGE)

    def test_range_without_start_begins_at_one(self, mapping: AnimeMapping) -> None:
        assert mapped(mapping.episode("3427", 0, 2)).episodes == (7,)  # offset 5
        assert mapped(mapping.episode("3427", 0, 6)).episodes == (34,)  # its pair wins

    def test_pair_beats_the_range_covering_the_episode(self, mapping: AnimeMapping) -> None:
        assert mapped(mapping.episode("70001", 1, 4)).episodes == (4,)
        assert mapped(mapping.episode("70001", 1, 6)).episodes == (7, 8)
        unmapped(mapping.episode("70001", 1, 5), UnmappedKind.NO_EPISODE)

    def test_one_anidb_episode_can_be_two_tvdb_episodes(self, mapping: AnimeMapping) -> None:
        both = mapped(mapping.episode("19402", 0, 1))  # WE8
        assert (both.season, both.episodes) == (0, (15, 16))
        other = mapped(mapping.episode("19402", 0, 401))  # O1
        assert (other.season, other.episodes) == (0, (15,))
        regular = mapped(mapping.episode("19402", 1, 1))  # defaulttvdbseason 0, offset 14
        assert (regular.season, regular.episodes, regular.rule) == (0, (15,), MappingRule.DEFAULT)

    def test_repeated_pairs_into_one_season_add_episodes(self, mapping: AnimeMapping) -> None:
        assert mapped(mapping.episode("10860", 1, 1)).episodes == (1, 2)

    def test_real_target_wins_over_minus_zero(self, mapping: AnimeMapping) -> None:
        result = mapped(mapping.episode("25", 0, 1))
        assert (result.season, result.episodes) == (1, (26,))
        unmapped(mapping.episode("25", 0, 2), UnmappedKind.NO_EPISODE)

    def test_special_without_mapping_is_unmapped(self, mapping: AnimeMapping) -> None:
        result = unmapped(mapping.episode("9541", 0, 16), UnmappedKind.NO_EPISODE)
        assert "AniDB 9541 special 16" in result.reason

    def test_tvdb_numbering_wins_where_tmdb_disagrees(self, mapping: AnimeMapping) -> None:
        result = mapped(mapping.episode("15593", 1, 1))  # WE7: TVDB S02E14 (TMDB S01E39)
        assert (result.show_ids, result.season, result.episode) == (Ids(tvdb="305089"), 2, 14)

    def test_season_above_one_is_already_tvdb_numbering(self, mapping: AnimeMapping) -> None:
        result = mapped(mapping.episode("15207", 3, 4))
        assert (result.season, result.episode, result.rule) == (3, 4, MappingRule.TVDB_NUMBERED)

    def test_caller_can_say_the_library_is_tvdb_numbered(self, mapping: AnimeMapping) -> None:
        result = mapped(mapping.episode("14444", 1, 5, tvdb_numbered=True))
        assert (result.season, result.episode) == (1, 5)

    def test_id_missing_from_the_list(self, mapping: AnimeMapping) -> None:
        result = unmapped(mapping.episode("17290", 1, 1), UnmappedKind.NOT_IN_LIST)
        assert result.reason == "AniDB 17290 is not in the Anime-Lists mapping"

    def test_row_without_tvdb_series(self, mapping: AnimeMapping) -> None:
        result = unmapped(mapping.episode("99999", 1, 1), UnmappedKind.NO_IDS)  # WE9
        assert result.reason == (
            'AniDB 99999 has no TVDB series in the Anime-Lists mapping (tvdbid="")'
        )
        assert "hentai" in unmapped(mapping.episode("5501", 1, 1), UnmappedKind.NO_IDS).reason

    def test_offset_below_episode_one_is_unmapped(self, mapping: AnimeMapping) -> None:
        unmapped(mapping.episode("70002", 1, 5), UnmappedKind.NO_EPISODE)
        assert mapped(mapping.episode("70002", 1, 13)).episode == 1

    def test_a_hama_guid_feeds_the_lookup(self, mapping: AnimeMapping) -> None:
        parsed = parse_guid("com.plexapp.agents.hama://anidb-9541/0/7?lang=en")
        assert parsed.ids.anidb and parsed.season is not None and parsed.number is not None
        assert mapped(mapping.episode(parsed.ids.anidb, parsed.season, parsed.number)).episode == 8


class TestFilms:
    """An AniDB film becomes its TMDB / IMDb film."""

    def test_film_row_gives_tmdb_and_imdb(self, mapping: AnimeMapping) -> None:
        assert mapping.film("11829") == MappedFilm(  # WE6
            "11829", Ids(tmdb="372058", imdb="tt5311514"), ("372058",), ("tt5311514",)
        )

    def test_comma_list_gives_the_first_id_and_keeps_all(self, mapping: AnimeMapping) -> None:
        film = mapping.film("8311")
        assert isinstance(film, MappedFilm)
        assert film.ids == Ids(imdb="tt4232272")
        assert film.imdb_ids == ("tt4232272", "tt6302292")

    def test_invalid_ids_in_a_list_are_skipped(self, mapping: AnimeMapping) -> None:
        film = mapping.film("70004")
        assert isinstance(film, MappedFilm)
        assert film.ids == Ids(tmdb="12345", imdb="tt0000002")
        assert film.tmdb_ids == ("12345", "67890")

    def test_film_without_film_ids_in_a_tvdb_series_is_its_episode(
        self, mapping: AnimeMapping
    ) -> None:
        placed = mapped(mapping.film("70003"))
        assert (placed.show_ids, placed.season, placed.episode) == (Ids(tvdb="267440"), 0, 4)
        assert placed.rule is MappingRule.FILM_EPISODE

    def test_film_without_any_id(self, mapping: AnimeMapping) -> None:
        result = unmapped(mapping.film("99999"), UnmappedKind.NO_IDS)
        assert "AniDB 99999" in result.reason

    def test_film_missing_from_the_list(self, mapping: AnimeMapping) -> None:
        unmapped(mapping.film("17290"), UnmappedKind.NOT_IN_LIST)


class TestParser:
    """Malformed input raises AnimeListError; the lookup keeps only what mapping needs."""

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b'<anime-list><anime anidbid="1"',
            b"<html><body>Sign in</body></html>",
            b"<anime-list></anime-list>",
            b'<!DOCTYPE x [<!ENTITY a "aaaa">]><anime-list><anime anidbid="1">&a;</anime>'
            b"</anime-list>",
        ],
        ids=["empty", "truncated", "html", "no-rows", "entities"],
    )
    def test_bad_input_raises_a_value_error(self, data: bytes) -> None:
        with pytest.raises(AnimeListError) as info:
            parse_anime_list(data)
        assert isinstance(info.value, ValueError)

    def test_malformed_and_duplicate_rows_are_skipped(self) -> None:
        data = anime_list_xml(
            [
                AnimeRow(1, tvdbid="72025", defaulttvdbseason="1"),
                AnimeRow(1, tvdbid="99", defaulttvdbseason="9"),
                AnimeRow("x", tvdbid="72025", defaulttvdbseason="1"),
                AnimeRow("²", tvdbid="72025", defaulttvdbseason="1"),  # isdigit(), not int()
                AnimeRow(2, tvdbid="72026", defaulttvdbseason="1", episodeoffset="1x"),
            ]
        )
        result = parse_anime_list(data)
        assert (len(result), result.skipped_rows) == (2, 3)
        unmapped(result.episode("2", 1, 1), UnmappedKind.NO_EPISODE)  # no default rule
        assert mapped(result.episode("1", 1, 1)).show_ids == Ids(tvdb="72025")

    def test_full_size_list_is_held_compactly(self) -> None:
        rows = [
            AnimeRow(
                n,
                tvdbid=str(300000 + n // 3) if n % 2 else "",
                defaulttvdbseason=str(n % 3 + 1) if n % 2 else "",
                name=f"Title {n} " + "x" * 40,
                mappings=(MappingSpec(0, tvdbseason=0, pairs=";1-2;2-0;"),) if n % 10 == 1 else (),
            )
            for n in range(1, 17_001)
        ]
        data = anime_list_xml(rows)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            result = parse_anime_list(data)
            retained = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(result) == 17_000
        assert retained < len(data)  # far below the DOM (~10x the bytes) and below the bytes


# -- the store -----------------------------------------------------------------------------------

LIST_V1 = anime_list_xml(REAL_ROWS)
LIST_V2 = anime_list_xml([*REAL_ROWS, AnimeRow(17290, tvdbid="418367", defaulttvdbseason="1")])
REFRESH_S = 86400.0
RETRY_S = 300.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnimeLists]:
    async with FakeAnimeLists(LIST_V1) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def clock() -> Clock:
    return Clock(1_790_000_000.0)


def make_store(
    session: aiohttp.ClientSession,
    fake: FakeAnimeLists,
    directory: Path,
    clock: Clock,
    **kwargs: object,
) -> AnimeListStore:
    options: dict[str, object] = {
        "url": fake.url,
        "refresh_s": REFRESH_S,
        "retry_s": RETRY_S,
        "timeout_s": 5.0,
    }
    options.update(kwargs)
    return AnimeListStore(session=session, directory=directory, unix_s=clock, **options)  # type: ignore[arg-type]


class TestStore:
    """Downloaded at most once while unchanged; failures keep what is loaded."""

    async def test_first_start_downloads_stores_and_maps(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        store = make_store(session, fake, tmp_path / "anime", clock)
        assert await store.ensure() is not None
        assert mapped(store.episode("9541", 0, 7)).episode == 8
        assert (fake.full_responses, store.generation) == (1, 1)
        assert fake.requests[0]["User-Agent"] == f"crosswatchd/{__version__}"
        assert (tmp_path / "anime" / LIST_FILE).read_bytes() == LIST_V1
        meta = orjson.loads((tmp_path / "anime" / META_FILE).read_bytes())
        assert meta["etag"] == fake.current.etag
        assert meta["last_modified"] and meta["fetched_at"] == meta["checked_at"] == clock.now
        assert store.fetched_at == store.checked_at == clock.now

    async def test_files_are_private(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        await make_store(session, fake, tmp_path, clock).ensure()
        for name in (LIST_FILE, META_FILE, STATUS_FILE):
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
        assert sorted(os.listdir(tmp_path)) == sorted([LIST_FILE, META_FILE, STATUS_FILE])

    async def test_restart_uses_the_stored_copy_without_a_request(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        await make_store(session, fake, tmp_path, clock).ensure()
        clock.advance(3600)
        restarted = make_store(session, fake, tmp_path, clock)
        assert await restarted.ensure() is not None
        assert mapped(restarted.episode("15207", 1, 5)).season == 2
        assert fake.requests_count == 1
        assert restarted.next_due_in() == pytest.approx(REFRESH_S - 3600)

    async def test_due_copy_is_revalidated_with_a_conditional_get(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        await make_store(session, fake, tmp_path, clock).ensure()
        clock.advance(REFRESH_S)
        restarted = make_store(session, fake, tmp_path, clock)
        assert await restarted.refresh_if_due() is RefreshResult.UNCHANGED
        sent = fake.requests[-1]
        assert sent["If-None-Match"] == fake.current.etag
        assert "If-Modified-Since" in sent
        assert (fake.full_responses, fake.not_modified, restarted.generation) == (1, 1, 1)
        meta = orjson.loads((tmp_path / META_FILE).read_bytes())
        assert meta["checked_at"] == clock.now
        assert await restarted.refresh_if_due() is RefreshResult.NOT_DUE

    async def test_check_time_from_the_future_counts_as_now(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        await make_store(session, fake, tmp_path, clock).ensure()
        meta = orjson.loads((tmp_path / META_FILE).read_bytes())
        meta["checked_at"] = clock.now + 30 * REFRESH_S  # written under a clock set wrong
        (tmp_path / META_FILE).write_bytes(orjson.dumps(meta))
        restarted = make_store(session, fake, tmp_path, clock)
        await restarted.ensure()
        assert restarted.next_due_in() == pytest.approx(REFRESH_S)

    async def test_last_modified_alone_revalidates(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        store = make_store(session, fake, tmp_path, clock)
        await store.ensure()
        meta = orjson.loads((tmp_path / META_FILE).read_bytes())
        meta["etag"] = None
        (tmp_path / META_FILE).write_bytes(orjson.dumps(meta))
        clock.advance(REFRESH_S)
        restarted = make_store(session, fake, tmp_path, clock)
        assert await restarted.refresh_if_due() is RefreshResult.UNCHANGED
        assert "If-None-Match" not in fake.requests[-1]

    async def test_changed_list_is_downloaded_and_bumps_the_generation(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        seen: list[int] = []
        store = make_store(session, fake, tmp_path, clock, on_loaded=seen.append)
        await store.ensure()
        unmapped(store.episode("17290", 1, 1), UnmappedKind.NOT_IN_LIST)
        fake.publish(LIST_V2)
        clock.advance(REFRESH_S)
        assert await store.refresh_if_due() is RefreshResult.UPDATED
        assert mapped(store.episode("17290", 1, 1)).show_ids == Ids(tvdb="418367")
        assert (store.generation, seen) == (2, [1, 2])
        assert (tmp_path / LIST_FILE).read_bytes() == LIST_V2

    async def test_same_content_without_304_is_not_parsed_again(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        store = make_store(session, fake, tmp_path, clock)
        first = await store.ensure()
        fake.honour_validators = False
        clock.advance(REFRESH_S)
        assert await store.refresh_if_due() is RefreshResult.UNCHANGED
        assert (store.current() is first, store.generation, fake.full_responses) == (True, 1, 2)

    async def test_unavailable_at_first_start_then_back_within_retry_s(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        fake.fail_status = 503
        store = make_store(session, fake, tmp_path, clock)
        assert await store.ensure() is None
        waiting = store.episode("9541", 0, 7)
        assert isinstance(waiting, ListUnavailable)
        assert "not available yet" in waiting.reason
        assert waiting.retry_in_s == pytest.approx(RETRY_S)
        fake.fail_status = None
        clock.advance(RETRY_S - 1)
        assert await store.refresh_if_due() is RefreshResult.NOT_DUE
        assert fake.requests_count == 1
        clock.advance(1)
        assert await store.ensure() is not None
        assert (mapped(store.episode("9541", 0, 7)).episode, store.generation) == (8, 1)

    async def test_failed_refresh_keeps_the_copy_and_backs_off(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        store = make_store(session, fake, tmp_path, clock)
        first = await store.ensure()
        fake.fail_status = 503
        clock.advance(REFRESH_S)
        assert await store.refresh_if_due() is RefreshResult.FAILED
        assert store.current() is first
        assert store.next_due_in() == pytest.approx(RETRY_S)
        clock.advance(RETRY_S)
        assert await store.refresh_if_due() is RefreshResult.FAILED
        assert store.next_due_in() == pytest.approx(2 * RETRY_S)
        assert store.last_error == "HTTP 503"

    async def test_timeout_keeps_the_copy(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        store = make_store(session, fake, tmp_path, clock, timeout_s=0.2)
        first = await store.ensure()
        fake.delay_s = 1.0
        clock.advance(REFRESH_S)
        assert await store.refresh_if_due() is RefreshResult.FAILED
        assert store.current() is first
        assert store.last_error == "timed out"

    async def test_broken_new_download_keeps_the_old_copy(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        store = make_store(session, fake, tmp_path, clock)
        first = await store.ensure()
        fake.publish(LIST_V1[: len(LIST_V1) // 2])
        clock.advance(REFRESH_S)
        with structlog.testing.capture_logs() as logs:
            assert await store.refresh_if_due() is RefreshResult.REJECTED
        assert [e["event"] for e in logs] == ["anime.list.parse_failed"]
        assert (store.current() is first, store.generation) == (True, 1)
        assert (tmp_path / LIST_FILE).read_bytes() == LIST_V1
        restarted = make_store(session, fake, tmp_path, clock)
        assert await restarted.ensure() is not None
        assert mapped(restarted.episode("8550", 1, 60)).season == 2

    async def test_sidecar_that_does_not_match_forces_a_plain_get(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        await make_store(session, fake, tmp_path, clock).ensure()
        (tmp_path / LIST_FILE).write_bytes(LIST_V2)  # e.g. a crash between the two renames
        restarted = make_store(session, fake, tmp_path, clock)
        assert await restarted.refresh_if_due() is RefreshResult.UPDATED
        assert "If-None-Match" not in fake.requests[-1]
        assert (tmp_path / LIST_FILE).read_bytes() == LIST_V1

    async def test_ensure_does_not_wait_for_a_fetch_under_way(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        store = make_store(session, fake, tmp_path, clock)
        fake.delay_s = 0.5
        first = asyncio.create_task(store.ensure())
        await fake.request_seen.wait()
        assert await asyncio.wait_for(store.ensure(), timeout=0.2) is None
        assert await store.refresh_if_due() is RefreshResult.IN_PROGRESS
        assert isinstance(store.episode("9541", 0, 7), ListUnavailable)
        assert await first is not None
        assert fake.requests_count == 1

    async def test_empty_url_switches_the_mapping_off(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        store = make_store(session, fake, tmp_path, clock, url="")
        assert await store.ensure() is None
        assert fake.requests_count == 0
        unmapped(store.episode("9541", 0, 7), UnmappedKind.OFF)

    async def test_run_loads_the_list_and_stops(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        loaded = asyncio.Event()
        store = make_store(session, fake, tmp_path, clock, on_loaded=lambda _gen: loaded.set())
        stop = asyncio.Event()
        task = asyncio.create_task(store.run(stop))
        await asyncio.wait_for(loaded.wait(), timeout=5)
        stop.set()
        await asyncio.wait_for(task, timeout=2)
        assert (store.generation, fake.requests_count) == (1, 1)

    async def test_without_a_copy_failures_retry_every_retry_s(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        """Plays wait for the first copy: the store keeps trying every retry_s (no backoff),
        so they go out within retry_s of the URL answering again."""
        fake.fail_status = 503
        store = make_store(session, fake, tmp_path, clock)
        for _ in range(4):
            assert await store.refresh_if_due() is RefreshResult.FAILED
            assert store.next_due_in() == pytest.approx(RETRY_S)
            clock.advance(RETRY_S)
        assert fake.requests_count == 4

    async def test_run_reports_a_downloaded_list_not_the_stored_copy(
        self, session: aiohttp.ClientSession, fake: FakeAnimeLists, tmp_path: Path, clock: Clock
    ) -> None:
        """``on_updated`` (the daemon re-queues what the list parked) follows a download, not
        the load of the stored copy at start."""
        for expected in (1, 0):  # first start downloads; the restart loads the stored copy
            updated: list[int] = []
            loaded = asyncio.Event()
            store = make_store(
                session, fake, tmp_path, clock, on_loaded=lambda _g, ev=loaded: ev.set()
            )

            async def on_updated(seen: list[int] = updated) -> None:
                seen.append(1)

            stop = asyncio.Event()
            task = asyncio.create_task(store.run(stop, on_updated=on_updated))
            await asyncio.wait_for(loaded.wait(), timeout=5)
            await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(task, timeout=2)
            assert len(updated) == expected
        assert fake.full_responses == 1
