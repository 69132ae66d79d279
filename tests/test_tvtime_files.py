"""Reading TV Time's GDPR export (ZIP or tracking-prod-records-v2.csv) into episode plays.

Formats: /work/shared/reference/tvtime/README.md §1 (files, headers, row kinds, UTC times).
"""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crosswatchd.imports import FileFormatError
from crosswatchd.imports.tvtime import EpisodeWatch, MovieWatch, TvTimeReader, open_tvtime
from crosswatchd.models import Ids, MediaKind
from tests.file_fixtures import (
    V1_HEADER,
    V2_HEADER,
    V2_SLIM_HEADER,
    csv_text,
    episode_row,
    write_text,
    write_zip,
)

REFERENCE = Path("/work/shared/reference/tvtime/constructed-sample-gdpr-export")
UNIT = "watch-episode-5f0c2d9e-7a41-4c1e-9d55-2b9f3f1e8a10-1c2d3e4f-0000-4000-8000-00000000000"
TREASON = "watch-episode-9a7b6c5d-1e2f-4a3b-8c9d-0e1f2a3b4c5d-2d3e4f5a-0000-4000-8000-00000000000"
STATS_ROW: dict[str, object] = {
    "created_at": "2016-08-04 15:10:45",
    "user_id": "12345678",
    "key": "tracking-stats",
    "updated_at": "2025-06-25 19:32:08",
    "ep_watch_count": "1893",
}


def series_row(uuid: str, s_id: str, name: str) -> dict[str, object]:
    """A ``user-series-`` (show state) row: not a play."""
    return {
        "created_at": "2016-08-04 15:10:45",
        "user_id": "12345678",
        "key": f"user-series-{uuid}",
        "is_followed": "true",
        "s_id": s_id,
        "series_name": name,
    }


#: A v2 file written for these tests: a stats row, plays, a special, a rewatch, a bulk-marked
#: season, a show with a year suffix, show-state rows.
V2_ROWS: list[dict[str, object]] = [
    STATS_ROW,
    episode_row("2016-08-10 16:48:22", UNIT + "1"),
    episode_row("2016-08-11 02:05:17", UNIT + "2", ep_no="5", ep_id="306588"),
    episode_row(
        "2019-01-03 21:40:00", "re" + UNIT + "2-1", ep_no="5", ep_id="306588", rewatch_count="1"
    ),
    episode_row(
        "2024-11-02 11:53:58", TREASON + "1", s_id="413526", ep_no="1", ep_id="9476784",
        series_name="Treason", bulk_type="season",
    ),
    episode_row(
        "2024-11-02 11:53:58", TREASON + "2", s_id="413526", ep_no="2", ep_id="9476785",
        series_name="Treason", bulk_type="season",
    ),
    episode_row(
        "2024-11-02 11:53:58", TREASON + "3", s_id="413526", ep_no="3", ep_id="9476786",
        series_name="Treason", bulk_type="season",
    ),
    episode_row(
        "2018-12-14 23:59:31", "watch-episode-0d9c-3e4f-2", s_id="304219", s_no="0", ep_no="1",
        ep_id="6804123", series_name="Marvel's Luke Cage", is_special="true",
    ),
    episode_row(
        "2018-11-20 21:02:11", "watch-episode-a1b2-c3d4-6", s_id="349310", ep_no="6",
        ep_id="6733513", series_name="Bodyguard (2018)",
    ),
    series_row("5f0c2d9e-7a41-4c1e-9d55-2b9f3f1e8a10", "75707", "The Unit"),
    series_row("9a7b6c5d-1e2f-4a3b-8c9d-0e1f2a3b4c5d", "413526", "Treason"),
]  # fmt: skip

MOVIE_ROWS: list[dict[str, object]] = [
    {
        "uuid": "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d",
        "type": "watch",
        "type-uuid-n": "watch-6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d-0",
        "created_at": "2022-04-10 11:26:55",
        "release_date": "2017-10-12",
        "alpha_range_key": "watch-alpha-what-happened-to-monday",
        "movie_name": "What Happened to Monday",
        "entity_type": "movie",
        "watch_date_range_key": "watch-date-1649590015",
    },
    {
        "uuid": "7b8c9d0e-1f2a-4b3c-9d4e-5f6a7b8c9d0e",
        "type": "towatch",
        "created_at": "2021-01-02 10:00:00",
        "release_date": "0001-01-01",
        "movie_name": "The Vast of Night",
        "entity_type": "movie",
    },
    {
        "uuid": "8c9d0e1f-2a3b-4c4d-8e5f-6a7b8c9d0e1f",
        "type": "watch",
        "type-uuid-n": "watch-8c9d0e1f-2a3b-4c4d-8e5f-6a7b8c9d0e1f-0",
        "created_at": "2020-05-01 20:00:00",
        "release_date": "0000-00-00",
        "alpha_range_key": "watch-alpha-amelie",
        "movie_name": "Le Fabuleux Destin d'Amélie Poulain",
        "entity_type": "movie",
        "watch_date_range_key": "watch-date-1588363200",
    },
    {
        "type": "watch",
        "created_at": "2017-02-19 20:31:07",
        "series_name": "The Unit",
        "entity_type": "episode",
        "season_number": "2",
        "episode_number": "1",
        "episode_id": "306590",
        "watch_date_range_key": "watch-date-1487536267",
    },
]


def v2_text(
    header: tuple[str, ...] = V2_HEADER, rows: list[dict[str, object]] | None = None
) -> str:
    return csv_text(header, V2_ROWS if rows is None else rows)


def gdpr_zip(tmp_path: Path, v2: str | None = None, **extra: str | bytes) -> Path:
    members: dict[str, str | bytes] = {
        "tracking-prod-records-v2.csv": v2 if v2 is not None else v2_text(),
        "tracking-prod-records.csv": csv_text(V1_HEADER, MOVIE_ROWS),
        "followed_tv_show.csv": "user_id,tv_show_id,tv_show_name\n12345678,75707,The Unit\n",
        **extra,
    }
    return write_zip(tmp_path / "gdpr-export.zip", members)


def episodes_of(path: Path) -> tuple[list[EpisodeWatch], TvTimeReader]:
    with open_tvtime(path) as export:
        return list(export.episodes()), export


class TestEpisodePlays:
    """watch-episode- and rewatch-episode- rows are plays at created_at, read as UTC."""

    def test_plays_in_file_order_with_tvdb_ids(self, tmp_path: Path) -> None:
        plays, _ = episodes_of(gdpr_zip(tmp_path))
        assert [(p.tvdb_series_id, p.tvdb_episode_id, p.season, p.number) for p in plays] == [
            ("75707", "306587", 1, 4),
            ("75707", "306588", 1, 5),
            ("75707", "306588", 1, 5),
            ("413526", "9476784", 1, 1),
            ("413526", "9476785", 1, 2),
            ("413526", "9476786", 1, 3),
            ("304219", "6804123", 0, 1),
            ("349310", "6733513", 1, 6),
        ]
        assert [p.line for p in plays] == list(range(3, 11))

    def test_created_at_is_utc(self, tmp_path: Path) -> None:
        plays, _ = episodes_of(gdpr_zip(tmp_path))
        assert plays[1].watched_at == datetime(2016, 8, 11, 2, 5, 17, tzinfo=UTC)
        assert plays[1].watched_at.utcoffset() is not None

    def test_a_rewatch_is_a_play_of_its_own(self, tmp_path: Path) -> None:
        plays, _ = episodes_of(gdpr_zip(tmp_path))
        first, again = plays[1], plays[2]
        assert (first.rewatch, again.rewatch) == (False, True)
        assert first.item() == again.item()
        assert again.watched_at == datetime(2019, 1, 3, 21, 40, tzinfo=UTC)
        assert first.key != again.key

    def test_a_special_is_season_zero(self, tmp_path: Path) -> None:
        special = episodes_of(gdpr_zip(tmp_path))[0][6]
        assert (special.season, special.number, special.special) == (0, 1, True)

    def test_is_special_puts_an_episode_in_season_zero(self, tmp_path: Path) -> None:
        row = episode_row("2020-01-01 10:00:00", UNIT + "9", s_no="", is_special="true")
        row["season_number"] = ""
        plays, _ = episodes_of(write_text(tmp_path / "v2.csv", v2_text(rows=[row])))
        assert (plays[0].season, plays[0].special) == (0, True)

    def test_a_bulk_marked_season_is_one_play_per_episode(self, tmp_path: Path) -> None:
        plays, _ = episodes_of(gdpr_zip(tmp_path))
        bulk = [p for p in plays if p.bulk_type == "season"]
        assert [p.number for p in bulk] == [1, 2, 3]
        assert len({p.watched_at for p in bulk}) == 1
        assert len({p.key for p in bulk}) == 3

    def test_the_key_is_the_key_column_with_created_at(self, tmp_path: Path) -> None:
        plays, _ = episodes_of(gdpr_zip(tmp_path))
        assert plays[0].key == UNIT + "1@2016-08-10 16:48:22"

    def test_the_zip_and_its_bare_v2_csv_give_the_same_plays(self, tmp_path: Path) -> None:
        zipped, _ = episodes_of(gdpr_zip(tmp_path))
        bare, _ = episodes_of(write_text(tmp_path / "tracking-prod-records-v2.csv", v2_text()))
        assert bare == zipped

    def test_the_item_carries_tvdb_ids_and_the_name_for_display(self, tmp_path: Path) -> None:
        bodyguard = episodes_of(gdpr_zip(tmp_path))[0][7].item()
        assert bodyguard.kind is MediaKind.EPISODE
        assert bodyguard.ids == Ids(tvdb="6733513")
        assert bodyguard.show_ids == Ids(tvdb="349310")
        assert bodyguard.label() == "Bodyguard (2018) S01E06"

    def test_non_play_rows_are_counted_by_kind(self, tmp_path: Path) -> None:
        _, export = episodes_of(gdpr_zip(tmp_path))
        stats = export.stats[0]
        assert stats.file == "tracking-prod-records-v2.csv"
        assert (stats.rows, stats.plays, stats.skipped_count) == (11, 8, 0)
        assert stats.non_play == {"tracking-stats": 1, "user-series": 2}


class TestColumns:
    """Columns are found by name: other orders, fallbacks, the slim header."""

    def test_columns_in_another_order(self, tmp_path: Path) -> None:
        shuffled = tuple(reversed(V2_HEADER))
        other, _ = episodes_of(write_text(tmp_path / "a.csv", v2_text(shuffled)))
        plain, _ = episodes_of(write_text(tmp_path / "b.csv", v2_text()))
        assert other == plain

    def test_numbers_fall_back_to_season_and_episode_number(self, tmp_path: Path) -> None:
        header = tuple(c for c in V2_HEADER if c not in ("s_no", "ep_no", "ep_id"))
        row = episode_row("2020-01-01 10:00:00", UNIT + "1", s_no="3", ep_no="7")
        for dropped in ("s_no", "ep_no", "ep_id"):
            del row[dropped]
        play = episodes_of(write_text(tmp_path / "v2.csv", v2_text(header, [row])))[0][0]
        assert (play.tvdb_episode_id, play.tvdb_series_id, play.season, play.number) == (
            None,
            "75707",
            3,
            7,
        )

    def test_episode_id_column_stands_in_for_ep_id(self, tmp_path: Path) -> None:
        header = (*(c for c in V2_HEADER if c != "ep_id"), "episode_id")
        row = episode_row("2020-01-01 10:00:00", UNIT + "1")
        row["episode_id"] = row.pop("ep_id")
        play = episodes_of(write_text(tmp_path / "v2.csv", v2_text(header, [row])))[0][0]
        assert play.tvdb_episode_id == "306587"

    def test_an_account_without_history_has_no_plays_and_no_error(self, tmp_path: Path) -> None:
        rows = [STATS_ROW, series_row("4f5a6b7c-8d9e-4f0a-9b1c-2d3e4f5a6b7c", "320724", "Legion")]
        plays, export = episodes_of(gdpr_zip(tmp_path, v2_text(V2_SLIM_HEADER, rows)))
        assert plays == []
        assert export.stats[0].non_play == {"tracking-stats": 1, "user-series": 1}
        assert export.stats[0].skipped == []

    def test_a_play_row_under_a_slim_header_is_skipped_and_named(self, tmp_path: Path) -> None:
        row: dict[str, object] = {"created_at": "2020-01-01 10:00", "key": UNIT + "1", "s_id": "1"}
        plays, export = episodes_of(write_text(tmp_path / "v2.csv", v2_text(V2_SLIM_HEADER, [row])))
        assert plays == []
        assert [s.reason for s in export.stats[0].skipped] == [
            "no TVDB episode id (ep_id), nor series id (s_id) with season and episode numbers"
        ]


class TestMovies:
    """type=watch, entity_type=movie rows of the v1 file in the ZIP are movie plays."""

    def movies(self, tmp_path: Path) -> tuple[list[MovieWatch], TvTimeReader]:
        with open_tvtime(gdpr_zip(tmp_path)) as export:
            return list(export.movies()), export

    def test_watched_movies_at_their_watch_date(self, tmp_path: Path) -> None:
        movies, _ = self.movies(tmp_path)
        assert [(m.title, m.year, m.slug, m.watched_at) for m in movies] == [
            (
                "What Happened to Monday",
                2017,
                "what-happened-to-monday",
                datetime(2022, 4, 10, 11, 26, 55, tzinfo=UTC),
            ),
            (
                "Le Fabuleux Destin d'Amélie Poulain",
                None,  # release_date 0000-00-00: no year
                "amelie",
                datetime(2020, 5, 1, 20, 0, tzinfo=UTC),
            ),
        ]
        assert movies[0].key == "watch-6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d-0@2022-04-10 11:26:55"
        assert movies[0].item().label() == "What Happened to Monday (2017)"

    def test_other_v1_rows_are_counted_not_played(self, tmp_path: Path) -> None:
        _, export = self.movies(tmp_path)
        assert export.has_movies
        assert export.stats[0].non_play == {"towatch movie": 1, "watch episode": 1}

    def test_rows_estimate_covers_both_files_before_reading(self, tmp_path: Path) -> None:
        with open_tvtime(gdpr_zip(tmp_path)) as export:
            assert export.rows_estimate == len(V2_ROWS) + len(MOVIE_ROWS)
        with open_tvtime(write_text(tmp_path / "v2.csv", v2_text())) as export:
            assert export.rows_estimate == len(V2_ROWS)

    def test_a_bare_v2_file_has_no_movies(self, tmp_path: Path) -> None:
        with open_tvtime(write_text(tmp_path / "v2.csv", v2_text())) as export:
            assert not export.has_movies
            assert list(export.movies()) == []

    def test_a_bad_watch_date_skips_the_movie(self, tmp_path: Path) -> None:
        rows = [{**MOVIE_ROWS[0], "watch_date_range_key": "watch-date-soon"}, MOVIE_ROWS[2]]
        v1 = csv_text(V1_HEADER, rows)
        with open_tvtime(gdpr_zip(tmp_path, **{"tracking-prod-records.csv": v1})) as export:
            assert [m.slug for m in export.movies()] == ["amelie"]
            assert [str(s) for s in export.stats[0].skipped] == [
                "tracking-prod-records.csv line 2: bad watch_date_range_key 'watch-date-soon' "
                "(expected watch-date-<seconds>)"
            ]


class TestBadRows:
    """A bad row is skipped, counted and named; the rest are read."""

    def test_bad_times_and_ids_skip_their_row_only(self, tmp_path: Path) -> None:
        rows = [
            episode_row("2016-08-10 16:48:22", UNIT + "1"),
            episode_row("2016-13-10 16:48:22", UNIT + "2"),
            episode_row("yesterday", UNIT + "3"),
            episode_row("", UNIT + "4"),
            episode_row("0001-01-01 00:00:00", UNIT + "5"),
            episode_row("2016-08-10 16:48:22", UNIT + "6", ep_id="S01E04"),
            episode_row("2016-08-10 16:48:22", UNIT + "7", ep_no="four"),
            episode_row("2016-08-10 16:48:22", ""),
            episode_row("2016-08-11 10:00:00", UNIT + "8"),
        ]
        plays, export = episodes_of(write_text(tmp_path / "v2.csv", v2_text(rows=rows)))
        assert [p.key.split("@")[0][-1] for p in plays] == ["1", "8"]
        assert [str(s) for s in export.stats[0].skipped] == [
            "v2.csv line 3: bad created_at '2016-13-10 16:48:22' (expected YYYY-MM-DD HH:MM:SS)",
            "v2.csv line 4: bad created_at 'yesterday' (expected YYYY-MM-DD HH:MM:SS)",
            "v2.csv line 5: no created_at",
            "v2.csv line 6: created_at '0001-01-01 00:00:00' is a placeholder, not a watch time",
            "v2.csv line 7: bad ep_id 'S01E04' (expected a TVDB id)",
            "v2.csv line 8: bad ep_no 'four' (expected a whole number)",
            "v2.csv line 9: no key",
        ]
        assert export.stats[0].skipped_count == 7

    def test_bom_and_crlf(self, tmp_path: Path) -> None:
        plain, _ = episodes_of(write_text(tmp_path / "a.csv", v2_text()))
        windows, export = episodes_of(
            write_text(tmp_path / "b.csv", v2_text(), bom=True, crlf=True)
        )
        assert windows == plain
        assert export.stats[0].skipped == []


class TestFileProblems:
    """File-level problems: one FileFormatError line naming the file; nothing returned."""

    def assert_refused(self, path: Path, *fragments: str) -> None:
        with pytest.raises(FileFormatError) as caught:
            open_tvtime(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and "\n" not in message
        for fragment in fragments:
            assert fragment in message

    def test_a_password_protected_zip(self, tmp_path: Path) -> None:
        path = write_zip(
            tmp_path / "x.zip", {"tracking-prod-records-v2.csv": v2_text()}, encrypted=True
        )
        self.assert_refused(path, "password-protected; extract it first")

    def test_a_zip_without_the_v2_file(self, tmp_path: Path) -> None:
        path = write_zip(
            tmp_path / "x.zip", {"tracking-prod-records.csv": csv_text(V1_HEADER, MOVIE_ROWS)}
        )
        self.assert_refused(path, "has no tracking-prod-records-v2.csv")

    def test_an_export_from_before_mid_2024(self, tmp_path: Path) -> None:
        path = write_zip(tmp_path / "x.zip", {"seen_episode.csv": "tv_show_name,episode_id\n"})
        self.assert_refused(path, "before mid-2024")

    def test_a_csv_without_key_or_created_at(self, tmp_path: Path) -> None:
        path = write_text(tmp_path / "v2.csv", "user_id,s_id\n1,2\n")
        self.assert_refused(path, "no 'key', 'created_at' columns")

    def test_the_v1_file_given_alone(self, tmp_path: Path) -> None:
        v1 = csv_text(tuple(c for c in V1_HEADER if c != "created_at"), [])
        self.assert_refused(
            write_text(tmp_path / "v1.csv", v1), "this is tracking-prod-records.csv"
        )

    def test_a_v1_file_in_the_zip_without_its_columns(self, tmp_path: Path) -> None:
        path = gdpr_zip(tmp_path, **{"tracking-prod-records.csv": "uuid,movie_name\n"})
        self.assert_refused(
            path, "tracking-prod-records.csv: no 'type', 'entity_type', 'created_at'"
        )

    def test_a_binary_file(self, tmp_path: Path) -> None:
        path = tmp_path / "export.7z"
        path.write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(100))
        self.assert_refused(path, "neither a ZIP nor a CSV")

    def test_nul_bytes_past_the_start(self, tmp_path: Path) -> None:
        path = tmp_path / "v2.csv"
        rows = [episode_row("2016-08-10 16:48:22", f"{UNIT}{i}") for i in range(30)]
        path.write_bytes(v2_text(rows=rows).encode() + b"2020-01-01 00:00:00,\x00\x00\n")
        assert path.stat().st_size > 4096
        self.assert_refused(path, "is not a CSV file (binary data at line 32)")


class TestStreaming:
    """A large file is read row by row: memory does not grow with the number of rows."""

    def test_rows_are_not_held_in_memory(self, tmp_path: Path) -> None:
        start = datetime(2020, 1, 1, tzinfo=UTC)
        rows = [
            episode_row(f"{start + timedelta(minutes=i):%Y-%m-%d %H:%M:%S}", f"{UNIT}{i}")
            for i in range(5_000)
        ]
        path = write_text(tmp_path / "v2.csv", v2_text(rows=rows))
        del rows
        with open_tvtime(path) as export:
            tracemalloc.start()
            try:
                count = sum(1 for _ in export.episodes())
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert count == 5_000
        # 5,000 EpisodeWatch objects alone would take over 2 MB; the file is about 1 MB.
        assert peak < 256 * 1024, f"peak {peak:,} bytes for {path.stat().st_size:,} bytes"

    def test_the_whole_file_check_reads_in_bounded_chunks(self, tmp_path: Path) -> None:
        rows = [episode_row("2020-01-01 10:00:00", f"{UNIT}{i}") for i in range(12_000)]
        path = write_text(tmp_path / "v2.csv", v2_text(rows=rows))
        del rows
        tracemalloc.start()
        try:
            open_tvtime(path).close()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert path.stat().st_size > 2 * 1024 * 1024
        assert peak < 1024 * 1024, f"peak {peak:,} bytes"


class TestReferenceSample:
    """The reference folder's constructed sample reads as its README describes."""

    def test_seven_plays_one_rewatch_one_special(self) -> None:
        plays, export = episodes_of(REFERENCE / "tracking-prod-records-v2.csv")
        assert len(plays) == 7 and export.stats[0].skipped == []
        assert sum(p.rewatch for p in plays) == 1
        assert [p.season for p in plays if p.special] == [0]
