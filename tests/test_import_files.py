"""Importing Letterboxd and TV Time exports into the outbox (crosswatchd.imports.runner), in
process: the real readers, a real outbox file, the resolver with its cache and the fake Trakt
and SIMKL searches. Delivery to the fakes is tested end to end in test_files_cli.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest

from crosswatchd.imports.letterboxd import open_letterboxd
from crosswatchd.imports.runner import (
    FileImportSummary,
    format_file_summary,
    import_letterboxd,
    import_tvtime,
)
from crosswatchd.imports.tvtime import open_tvtime
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import Outbox
from crosswatchd.providers.simkl import SimklSearch
from crosswatchd.providers.trakt import TraktSearch
from crosswatchd.resolve import IdCache, Resolver
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt
from tests.file_fixtures import DIARY_HEADER, csv_text, diary_row, write_text, write_zip
from tests.files_world import (
    EPISODE_PLAYS,
    MATCHED,
    UNMATCHED,
    V2_ROWS,
    files_catalog,
    letterboxd_diary,
    letterboxd_zip,
    tvtime_v2,
    tvtime_zip,
)
from tests.test_resolve import FAST_RETRY, fast_limiter

PARIS = ZoneInfo("Europe/Paris")
REFERENCE = Path("/work/shared/reference/letterboxd/constructed-sample-export")
TOKYO = ZoneInfo("Asia/Tokyo")
DUNE_2021 = Item(MediaKind.MOVIE, "Dune", 2021, ids=Ids(imdb="tt1160419", tmdb="438631"))


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTrakt, FakeSimkl]]:
    catalog = files_catalog()
    async with (
        FakeTrakt(client_id="trakt-cid", catalog=catalog) as trakt,
        FakeSimkl(client_id="simkl-cid", catalog=catalog) as simkl,
    ):
        yield trakt, simkl


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = await Outbox.open(
        tmp_path / "data" / "outbox.sqlite3",
        targets={"default": ["trakt", "simkl"], "sam": ["trakt"]},
    )
    yield box
    await box.close()


@pytest.fixture
async def resolver(tmp_path: Path, fakes: tuple[FakeTrakt, FakeSimkl]) -> AsyncIterator[Resolver]:
    trakt, simkl = fakes
    cache = await IdCache.open(
        tmp_path / "data" / "cache.sqlite3", positive_ttl_s=86400, negative_ttl_s=3600
    )
    async with aiohttp.ClientSession() as http:
        yield Resolver(
            cache=cache,
            trakt_search=TraktSearch(
                session=http,
                limiter=fast_limiter(),
                client_id="trakt-cid",
                api_url=trakt.url,
                get_retry=FAST_RETRY,
            ),
            simkl_search=SimklSearch(
                session=http,
                limiter=fast_limiter(),
                client_id="simkl-cid",
                api_url=simkl.url,
                get_retry=FAST_RETRY,
            ),
            title_fallback=True,
        )
    await cache.close()


Importer = Callable[..., Any]


@pytest.fixture
def letterboxd(outbox: Outbox, resolver: Resolver) -> Importer:
    async def run(path: Path, **kw: Any) -> FileImportSummary:
        kw.setdefault("profile", "default")
        tz = kw.pop("tz", PARIS)
        with open_letterboxd(path, tz=tz) as reader:
            return await import_letterboxd(reader, outbox, resolver, **kw)

    return run


@pytest.fixture
def tvtime(outbox: Outbox, resolver: Resolver) -> Importer:
    async def run(path: Path, **kw: Any) -> FileImportSummary:
        kw.setdefault("profile", "default")
        with open_tvtime(path) as reader:
            return await import_tvtime(reader, outbox, resolver, **kw)

    return run


async def queued_items(outbox: Outbox, action: str = "watched") -> list[tuple[Any, ...]]:
    """``(label, item JSON, occurred_at, import_key, rating, deliveries)`` of every event."""
    return await outbox.fetch_all(
        "SELECT label, item, occurred_at, import_key, rating,"
        " (SELECT count(*) FROM deliveries d WHERE d.event_id = e.id)"
        " FROM events e WHERE action = ? ORDER BY id",
        [action],
    )


def noon(day: str, tz: ZoneInfo = PARIS) -> float:
    return datetime.combine(
        datetime.fromisoformat(day).date(), datetime.min.time().replace(hour=12), tz
    ).timestamp()


class TestLetterboxdPlays:
    """Each diary row is one movie play at noon local on its Watched Date, matched by exact
    title and year; what matches nothing is reported, never queued."""

    async def test_matched_rows_are_queued_with_their_ids_and_the_rest_reported(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox
    ) -> None:
        summary = await letterboxd(letterboxd_zip(tmp_path))

        events = await queued_items(outbox)
        assert [e[0] for e in events] == [f"{t} ({y})" for t, y in MATCHED]
        assert all(e[5] == 2 for e in events)  # a delivery per target
        assert (summary.plays, summary.queued, summary.unmatched_rows) == (10, 7, 3)
        assert list(summary.unmatched) == UNMATCHED
        assert summary.by_kind == {"movie": 7}

    async def test_same_title_films_of_different_years_get_their_own_ids(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox
    ) -> None:
        await letterboxd(letterboxd_zip(tmp_path))

        tmdb = [(label, _ids(item).get("tmdb")) for label, item, *_ in await queued_items(outbox)]
        assert ("Dune (1984)", "841") in tmdb
        assert ("Dune (2021)", "438631") in tmdb
        assert ("Ocean's Eleven (1960)", "299") in tmdb
        assert ("Ocean's Eleven (2001)", "161") in tmdb

    async def test_punctuation_and_diacritics_match_exactly(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox
    ) -> None:
        """Commas, apostrophes, ampersands, and a decomposed à (NFD) in the file."""
        await letterboxd(letterboxd_zip(tmp_path))

        tmdb = {label: _ids(item).get("tmdb") for label, item, *_ in await queued_items(outbox)}
        assert tmdb["Red, White & Royal Blue (2023)"] == "930094"
        assert tmdb["Bande à part (1964)"] == "8073"

    async def test_a_rewatch_row_is_a_play_of_its_own_at_noon_in_the_zone(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox
    ) -> None:
        await letterboxd(letterboxd_zip(tmp_path))

        dune = [e[2] for e in await queued_items(outbox) if e[0] == "Dune (2021)"]
        assert dune == [noon("2024-01-06"), noon("2024-04-10")]  # 11:00Z and, in summer, 10:00Z

    async def test_series_and_episodes_logged_as_films_are_never_queued(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox
    ) -> None:
        summary = await letterboxd(letterboxd_zip(tmp_path))

        labels = {e[0] for e in await queued_items(outbox)}
        assert not labels & set(UNMATCHED)
        series = summary.unmatched["Love, Death & Robots (2019)"]
        assert (series.rows, series.first) == (1, "diary.csv line 11")
        assert "no single exact match for movie" in series.reason

    async def test_unmatched_rows_are_not_recorded_so_a_later_import_tries_them(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox
    ) -> None:
        await letterboxd(letterboxd_zip(tmp_path))

        assert await outbox.imported_keys("default", ["letterboxd:https://boxd.it/t008"]) == set()

    async def test_the_plays_go_to_the_chosen_profile_only(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox
    ) -> None:
        await letterboxd(letterboxd_zip(tmp_path), profile="sam")

        rows = await outbox.fetch_all("SELECT DISTINCT profile, provider FROM deliveries")
        assert rows == [("sam", "trakt")]


class TestIdempotence:
    """A row's key is its diary entry's URI: a second import of the ZIP or of its bare
    diary.csv queues nothing, whatever --tz says."""

    @pytest.mark.parametrize("again", ["zip", "diary", "diary-crlf-bom", "other-zone"])
    async def test_a_second_import_queues_nothing(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox, again: str
    ) -> None:
        first = await letterboxd(letterboxd_zip(tmp_path / "a"))
        events = await outbox.fetch_all("SELECT count(*) FROM events")
        deliveries = await outbox.fetch_all("SELECT count(*) FROM deliveries")

        if again == "zip":
            second = await letterboxd(letterboxd_zip(tmp_path / "b"))
        elif again == "other-zone":
            second = await letterboxd(letterboxd_zip(tmp_path / "b"), tz=TOKYO)
        else:
            bare = letterboxd_diary(tmp_path / "b", bom=again != "diary", crlf=again != "diary")
            second = await letterboxd(bare)

        assert (first.queued, second.queued, second.already_imported) == (7, 0, 7)
        assert second.ratings_queued == 0
        assert await outbox.fetch_all("SELECT count(*) FROM events") == events
        assert await outbox.fetch_all("SELECT count(*) FROM deliveries") == deliveries

    async def test_a_play_plex_already_reported_is_held_and_counts_as_imported(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox
    ) -> None:
        """Dune (2021) played on Plex at 13:30Z, within the window of the diary's noon."""
        at = datetime(2024, 1, 6, 13, 30, tzinfo=UTC)
        await outbox.enqueue_many([PlayEvent(Source.PLEX, Action.WATCHED, "me", DUNE_2021, at)])

        first = await letterboxd(letterboxd_zip(tmp_path / "a"))
        second = await letterboxd(letterboxd_zip(tmp_path / "b"))

        assert (first.queued, first.already_held) == (6, 1)
        assert (second.queued, second.already_held, second.already_imported) == (0, 0, 7)

    async def test_rows_a_search_outage_left_unmatched_are_imported_next_time(
        self,
        tmp_path: Path,
        letterboxd: Importer,
        fakes: tuple[FakeTrakt, FakeSimkl],
    ) -> None:
        trakt, simkl = fakes
        trakt.down = simkl.down = True
        during = await letterboxd(letterboxd_zip(tmp_path / "a"))
        trakt.down = simkl.down = False

        after = await letterboxd(letterboxd_zip(tmp_path / "b"))

        assert (during.queued, during.retry_later) == (0, 10)
        assert "import again later" in during.unmatched["Dune (2021)"].reason
        assert "could not be looked up now" in format_file_summary(during)
        assert (after.queued, after.already_imported, after.unmatched_rows) == (7, 0, 3)

    async def test_a_dry_run_counts_what_a_real_run_queues_and_writes_nothing(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox
    ) -> None:
        dry = await letterboxd(letterboxd_zip(tmp_path), dry_run=True)
        assert await outbox.fetch_all("SELECT count(*) FROM events") == [(0,)]

        real = await letterboxd(letterboxd_zip(tmp_path))

        counted = ("queued", "already_held", "unmatched_rows", "ratings_queued")
        assert [getattr(dry, c) for c in counted] == [getattr(real, c) for c in counted]
        assert [e.item.label() for e in dry.sample] == [f"{t} ({y})" for t, y in MATCHED]


class TestLetterboxdRatings:
    """The diary's Rating × 2 (latest entry), else ratings.csv, as rating changes."""

    async def test_each_rated_film_gets_its_latest_rating_at_noon_on_its_day(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox
    ) -> None:
        summary = await letterboxd(letterboxd_zip(tmp_path))

        rated = {e[0]: (e[4], e[2]) for e in await queued_items(outbox, "rate")}
        assert rated == {
            "Dune (1984)": (6, noon("2024-01-05")),
            "Dune (2021)": (9, noon("2024-04-10")),  # 4 → 4.5 on the rewatch; not ratings.csv's 2
            "Red, White & Royal Blue (2023)": (5, noon("2024-02-14")),
            "Bande à part (1964)": (10, noon("2024-03-02")),
            "What Happened to Monday (2017)": (7, noon("2024-06-01")),
        }
        assert (summary.ratings, summary.ratings_queued, summary.ratings_unmatched) == (6, 5, 1)

    async def test_a_later_rating_already_held_is_not_overridden(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox
    ) -> None:
        """Rated 3 on Plex in 2025: the diary's 9 of 2024 is older."""
        plex = PlayEvent(
            Source.PLEX, Action.RATE, "me", DUNE_2021, datetime(2025, 1, 1, tzinfo=UTC), rating=3
        )
        await outbox.enqueue_many([plex])

        summary = await letterboxd(letterboxd_zip(tmp_path))

        assert (summary.ratings_older, summary.ratings_queued) == (1, 4)
        dune = [e[4] for e in await queued_items(outbox, "rate") if e[0] == "Dune (2021)"]
        assert dune == [3]  # Plex's alone

    async def test_a_changed_rating_in_a_later_export_is_queued(
        self, tmp_path: Path, letterboxd: Importer, outbox: Outbox
    ) -> None:
        rows = [diary_row("Dune", 2021, "2024-01-06", "https://boxd.it/t002", rating="4")]
        await letterboxd(write_text(tmp_path / "a.csv", csv_text(DIARY_HEADER, rows)))
        rows[0]["Rating"] = "2"

        again = await letterboxd(write_text(tmp_path / "b.csv", csv_text(DIARY_HEADER, rows)))

        assert (again.already_imported, again.ratings_queued) == (1, 1)
        assert [e[4] for e in await queued_items(outbox, "rate")] == [8, 4]


class TestTvTime:
    """Episode plays at created_at (UTC) by TVDB ids; rewatches, specials, bulk-marked
    seasons; films of the v1 file by title and year."""

    async def test_every_seen_episode_and_rewatch_is_a_play(
        self, tmp_path: Path, tvtime: Importer, outbox: Outbox
    ) -> None:
        summary = await tvtime(tvtime_zip(tmp_path))

        labels = [e[0] for e in await queued_items(outbox)]
        assert labels == [
            "The Unit S01E04",
            "The Unit S01E05",
            "The Unit S01E05",
            "Treason S01E04",
            "Treason S01E05",
            "Marvel's Luke Cage S02E13",
            "Marvel's Luke Cage S00E01",
            "Bodyguard (2018) S01E06",
            "Seven Sisters (2017)",
        ]
        assert summary.by_kind == {"episode": EPISODE_PLAYS, "movie": 1}
        assert summary.unmatched_rows == 0

    async def test_times_are_created_at_read_as_utc(
        self, tmp_path: Path, tvtime: Importer, outbox: Outbox
    ) -> None:
        await tvtime(tvtime_zip(tmp_path))

        times = [e[2] for e in await queued_items(outbox)]
        assert times[0] == datetime(2016, 8, 10, 16, 48, 22, tzinfo=UTC).timestamp()
        assert times[3] == times[4]  # the bulk-marked season: one time, two plays

    async def test_ids_come_from_the_export_or_an_id_search_never_a_title(
        self, tmp_path: Path, tvtime: Importer, outbox: Outbox, fakes: tuple[FakeTrakt, Any]
    ) -> None:
        """Bodyguard's row has its TVDB episode id alone: Trakt's id search names the show and
        position; Treason's first row has the series id and numbers only."""
        trakt, _ = fakes

        await tvtime(tvtime_zip(tmp_path))

        items = {e[0]: _item(e[1]) for e in await queued_items(outbox)}
        guard = items["Bodyguard (2018) S01E06"]
        assert (guard["show_ids"].get("tvdb"), guard["season"], guard["number"]) == ("349310", 1, 6)
        treason = items["Treason S01E04"]
        assert (treason["show_ids"], treason["season"], treason["number"]) == (
            {"tvdb": "413526"},
            1,
            4,
        )
        searches = [r for r in trakt.requests if r[1].startswith("/search/")]
        assert [r[1] for r in searches if r[1] != "/search/movie"] == ["/search/tvdb/6733513"]

    async def test_a_special_is_season_zero(
        self, tmp_path: Path, tvtime: Importer, outbox: Outbox
    ) -> None:
        await tvtime(tvtime_zip(tmp_path))

        items = {e[0]: _item(e[1]) for e in await queued_items(outbox)}
        assert items["Marvel's Luke Cage S00E01"]["ids"] == {"tvdb": "6804123"}

    async def test_a_film_under_a_localized_name_matches_by_its_english_slug(
        self, tmp_path: Path, tvtime: Importer, outbox: Outbox
    ) -> None:
        await tvtime(tvtime_zip(tmp_path))

        [film] = [e for e in await queued_items(outbox) if e[0] == "Seven Sisters (2017)"]
        assert _ids(film[1]) == {"imdb": "tt1536537", "tmdb": "406990", **_fake_ids(film[1])}
        assert film[2] == 1649590015.0

    async def test_a_second_import_of_the_zip_or_the_bare_csv_queues_nothing(
        self, tmp_path: Path, tvtime: Importer, outbox: Outbox
    ) -> None:
        first = await tvtime(tvtime_zip(tmp_path / "a"))
        again = await tvtime(tvtime_zip(tmp_path / "b"))
        bare = await tvtime(tvtime_v2(tmp_path / "c"))

        assert (first.queued, again.queued, bare.queued) == (EPISODE_PLAYS + 1, 0, 0)
        assert (again.already_imported, bare.already_imported) == (EPISODE_PLAYS + 1, EPISODE_PLAYS)

    async def test_rows_that_are_not_plays_are_counted_by_kind(
        self, tmp_path: Path, tvtime: Importer
    ) -> None:
        summary = await tvtime(tvtime_zip(tmp_path))

        not_plays = {k: n for t in summary.tables for k, n in t.non_play.items()}
        assert not_plays == {
            "tracking-stats": 1,
            "user-series": 1,
            "towatch movie": 1,
            "watch episode": 1,
        }


class TestReferenceSample:
    """The constructed sample export of the reference folder, zipped as Letterboxd sends it
    (deleted/, orphaned/, likes/, lists/ included)."""

    async def test_its_ten_diary_rows_are_ten_plays(
        self,
        tmp_path: Path,
        outbox: Outbox,
        resolver: Resolver,
        fakes: tuple[FakeTrakt, FakeSimkl],
    ) -> None:
        trakt, _ = fakes
        for title, year, imdb, tmdb in [
            ("Rififi", 1955, "tt0048021", 934),
            ("The Thomas Crown Affair", 1968, "tt0063688", 912),
            ("The Thomas Crown Affair", 1999, "tt0155267", 913),
            ("Inside Man", 2006, "tt0454848", 388),
            ("Hell or High Water", 2016, "tt2582782", 338766),
            ("The Italian Job", 1969, "tt0064505", 10536),
        ]:
            trakt.catalog.add_movie(title, year, imdb=imdb, tmdb=tmdb)
        export = _zip_folder(REFERENCE, tmp_path / "letterboxd-samplemember-2025-02-09-utc.zip")

        with open_letterboxd(export, tz=PARIS) as reader:
            summary = await import_letterboxd(reader, outbox, resolver, profile="default")

        assert (summary.plays, summary.queued, summary.unmatched_rows) == (10, 10, 0)
        labels = [e[0] for e in await queued_items(outbox)]
        assert labels.count("Rififi (1955)") == labels.count("Ocean's Eleven (2001)") == 2
        assert "Baby Driver (2017)" not in labels  # deleted/diary.csv
        assert summary.ratings_queued == 7  # every rated film; Inside Man is unrated


def _zip_folder(folder: Path, target: Path) -> Path:
    """Every CSV under *folder*, zipped with its path inside the folder."""
    members: dict[str, str | bytes] = {
        str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*.csv"))
    }
    return write_zip(target, members)


class TestReport:
    async def test_the_summary_names_counts_unmatched_titles_and_skipped_rows(
        self, tmp_path: Path, letterboxd: Importer
    ) -> None:
        rows = [
            diary_row("Dune", 2021, "2024-01-06", "https://boxd.it/t002"),
            diary_row("Dune", 1984, "2024-13-01", "https://boxd.it/t001"),
            diary_row("Zzyzx Nonexistent Picture", 2031, "2024-05-02", "https://boxd.it/t008"),
        ]
        path = write_text(tmp_path / "diary.csv", csv_text(DIARY_HEADER, rows))

        text = format_file_summary(await letterboxd(path))

        lines = text.splitlines()
        assert lines[0] == f"Letterboxd import of {path} for profile default"
        assert "  rows read:         3 (diary.csv 3)" in lines
        assert "  unmatched:         1 (1 title; never sent, listed below)" in lines
        assert any(
            line.startswith("    Zzyzx Nonexistent Picture (2031): 1 row from diary.csv line 4 — ")
            for line in lines
        )
        assert "    diary.csv line 3: bad Watched Date '2024-13-01' (expected YYYY-MM-DD)" in lines
        assert lines[-1] == (
            "import: 1 queued of 2 plays, 0 already imported, 0 already held, 1 unmatched,"
            " 1 skipped, 3 rows read"
        )

    async def test_a_dry_run_lists_what_would_be_queued(
        self, tmp_path: Path, tvtime: Importer
    ) -> None:
        text = format_file_summary(await tvtime(tvtime_zip(tmp_path), dry_run=True))

        assert "(dry run: nothing written)" in text.splitlines()[0]
        assert "  would be queued (first 9):" in text
        assert "2016-08-10T16:48:22.000Z  The Unit S01E04  [tvdb=306587]" in text
        assert text.splitlines()[-1].startswith("dry run: 9 would be queued of 9 plays")

    async def test_progress_reports_rows_read_as_it_goes(
        self, tmp_path: Path, tvtime: Importer
    ) -> None:
        seen: list[int] = []
        rows = V2_ROWS * 120  # 1,200 rows (keys repeated)
        await tvtime(tvtime_zip(tmp_path, rows), progress=seen.append, chunk_size=100)

        assert seen == sorted(seen) and len(seen) > 5
        assert seen[-1] <= len(rows) + 3


def _item(raw: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(raw)
    return data


def _ids(raw: str) -> dict[str, str]:
    ids: dict[str, str] = _item(raw)["ids"]
    return ids


def _fake_ids(raw: str) -> dict[str, str]:
    """The ids besides imdb/tmdb a search added (the fakes' own trakt/simkl ids)."""
    return {k: v for k, v in _ids(raw).items() if k not in ("imdb", "tmdb")}
