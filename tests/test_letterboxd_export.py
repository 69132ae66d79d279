"""Writing movie plays as the CSV Letterboxd imports.

Format: /work/shared/reference/letterboxd/README.md §1 (import columns, dates, 1 MB) and §4.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crosswatchd.exports.letterboxd import (
    HEADER,
    MAX_FILE_BYTES,
    FilmPlay,
    LetterboxdRow,
    diary_rows,
    film_plays,
    leftover_parts,
    part_path,
    render_lines,
    write_files,
    write_stream,
)
from crosswatchd.imports import FileFormatError
from crosswatchd.models import Ids, Item, MediaKind

NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
HEADER_LINE = "Title,Year,imdbID,tmdbID,WatchedDate,Rating10,Rewatch\n"


def play(
    title: str,
    year: int | None,
    at: datetime,
    *,
    key: str | None = None,
    imdb: str | None = None,
    tmdb: str | None = None,
) -> FilmPlay:
    return FilmPlay(
        film_key=key or f"{title}|{year}",
        title=title,
        year=year,
        imdb=imdb,
        tmdb=tmdb,
        watched_at=at,
    )


DUNE_1984 = dict(key="tmdb:841", imdb="tt0087182", tmdb="841")
DUNE_2021 = dict(key="tmdb:438631", imdb="tt1160419", tmdb="438631")


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def as_text(rows: list[LetterboxdRow]) -> str:
    out = io.BytesIO()
    write_stream(rows, out)
    return out.getvalue().decode("utf-8")


class TestRows:
    """One row per play, oldest first; local dates; rewatch and rating rules."""

    def test_a_late_evening_play_in_new_york_is_that_day_there_and_the_next_in_tokyo(
        self,
    ) -> None:
        evening = datetime(2024, 6, 1, 23, 30, tzinfo=NEW_YORK)  # 2024-06-02T03:30Z
        plays = [play("Dune", 2021, evening.astimezone(UTC), **DUNE_2021)]
        assert diary_rows(plays, {}, NEW_YORK)[0].watched_on == date(2024, 6, 1)
        assert diary_rows(plays, {}, TOKYO)[0].watched_on == date(2024, 6, 2)
        assert diary_rows(plays, {}, UTC)[0].watched_on == date(2024, 6, 2)

    def test_oldest_first_whatever_the_input_order(self) -> None:
        plays = [
            play("C", 2003, utc(2024, 3, 1, 12)),
            play("A", 2001, utc(2024, 1, 1, 12)),
            play("B", 2002, utc(2024, 2, 1, 12)),
        ]
        assert [r.title for r in diary_rows(plays, {}, UTC)] == ["A", "B", "C"]

    def test_rewatch_after_the_first_play_of_a_film_only(self) -> None:
        plays = [
            play("Dune", 2021, utc(2024, 5, 1, 20), **DUNE_2021),
            play("Dune", 1984, utc(2024, 2, 1, 20), **DUNE_1984),
            play("Dune", 2021, utc(2024, 1, 1, 20), **DUNE_2021),
            play("Dune", 2021, utc(2024, 9, 1, 20), **DUNE_2021),
        ]
        rows = diary_rows(plays, {}, UTC)
        assert [(r.year, r.rewatch) for r in rows] == [
            (2021, False),
            (1984, False),  # same title, another film
            (2021, True),
            (2021, True),
        ]

    def test_rewatch_counts_plays_before_since(self) -> None:
        plays = [
            play("Dune", 2021, utc(2023, 12, 31, 12), **DUNE_2021),
            play("Dune", 2021, utc(2024, 3, 1, 12), **DUNE_2021),
            play("Heat", 1995, utc(2024, 3, 2, 12)),
        ]
        rows = diary_rows(plays, {}, UTC, since=date(2024, 1, 1))
        assert [(r.title, r.rewatch) for r in rows] == [("Dune", True), ("Heat", False)]

    def test_since_is_a_local_date_and_inclusive(self) -> None:
        late = datetime(2024, 1, 1, 0, 30, tzinfo=TOKYO)  # 2023-12-31T15:30Z
        plays = [play("Heat", 1995, late.astimezone(UTC))]
        assert len(diary_rows(plays, {}, TOKYO, since=date(2024, 1, 1))) == 1
        assert diary_rows(plays, {}, NEW_YORK, since=date(2024, 1, 1)) == []

    def test_ids_on_every_row_that_has_them(self) -> None:
        plays = [
            play("Dune", 2021, utc(2024, 1, 1), **DUNE_2021),
            play("Dune", 2021, utc(2024, 2, 1), **DUNE_2021),
            play("Heat", 1995, utc(2024, 3, 1), tmdb="949"),
        ]
        rows = diary_rows(plays, {}, UTC)
        assert [(r.imdb, r.tmdb) for r in rows] == [
            ("tt1160419", "438631"),
            ("tt1160419", "438631"),
            (None, "949"),
        ]

    def test_malformed_ids_are_left_out(self) -> None:
        rows = diary_rows([play("X", 2000, utc(2024, 1, 1), imdb="1160419", tmdb="tt1")], {}, UTC)
        assert (rows[0].imdb, rows[0].tmdb) == (None, None)

    def test_rating10_is_the_films_rating_or_empty_never_zero(self) -> None:
        plays = [
            play("Dune", 2021, utc(2024, 1, 1), **DUNE_2021),
            play("Dune", 1984, utc(2024, 1, 2), **DUNE_1984),
            play("Heat", 1995, utc(2024, 1, 3), key="heat"),
            play("Ran", 1985, utc(2024, 1, 4), key="ran"),
        ]
        ratings = {"tmdb:438631": 9, "tmdb:841": 0, "heat": 11}
        rows = diary_rows(plays, ratings, UTC)
        assert [r.rating10 for r in rows] == [9, None, None, None]
        lines = as_text(rows).splitlines()
        assert [line.split(",")[5] for line in lines[1:]] == ["9", "", "", ""]

    def test_naive_play_times_are_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            play("Heat", 1995, datetime(2024, 1, 1, 12))


class TestCsv:
    """UTF-8, comma-separated, no space after a comma, quoted where needed, LF."""

    TITLES = [
        "Red, White & Royal Blue",
        "Ocean's Eleven",
        'The "Wizard" of Speed and Time',
        "Bande à part",
        "Yí (Endless River)",
        "¡Atraco!",
        "Love, Death & Robots: Sonnie's Edge",
    ]

    def rows(self) -> list[LetterboxdRow]:
        plays = [play(t, 2000 + i, utc(2024, 1, 1 + i, 12)) for i, t in enumerate(self.TITLES)]
        return diary_rows(plays, {}, UTC)

    def test_the_header_is_exact(self) -> None:
        assert HEADER_LINE.rstrip("\n") == ",".join(HEADER)
        assert as_text([]) == HEADER_LINE

    def test_bytes_of_a_row(self) -> None:
        plays = [play("Red, White & Royal Blue", 2023, utc(2024, 2, 14, 20), tmdb="1010581")]
        text = as_text(diary_rows(plays, {"Red, White & Royal Blue|2023": 7}, UTC))
        assert text == HEADER_LINE + '"Red, White & Royal Blue",2023,,1010581,2024-02-14,7,false\n'

    def test_read_back_by_pythons_csv_gives_the_same_titles(self) -> None:
        reader = csv.DictReader(io.StringIO(as_text(self.rows())))
        assert reader.fieldnames == list(HEADER)
        assert [row["Title"] for row in reader] == self.TITLES

    def test_titles_are_written_composed(self) -> None:
        nfd = unicodedata.normalize("NFD", "Bande à part")
        rows = diary_rows([play(nfd, 1964, utc(2024, 1, 1))], {}, UTC)
        assert as_text(rows).splitlines()[1].startswith("Bande à part,1964,")

    def test_no_space_after_commas_and_lf_line_ends(self) -> None:
        text = as_text(self.rows())
        assert "\r" not in text
        for line in text.splitlines():
            fields = next(csv.reader([line]))
            assert not any(f != f.lstrip() for f in fields)

    def test_utf_8_without_bom(self) -> None:
        out = io.BytesIO()
        write_stream(self.rows(), out)
        data = out.getvalue()
        assert not data.startswith(b"\xef\xbb\xbf")
        assert "Yí (Endless River)".encode() in data

    def test_line_breaks_in_a_title_become_spaces(self) -> None:
        rows = diary_rows([play("Two\nLines", 2000, utc(2024, 1, 1))], {}, UTC)
        assert as_text(rows).splitlines()[1].startswith("Two Lines,")

    def test_render_lines_yields_the_header_then_one_line_per_row(self) -> None:
        lines = list(render_lines(self.rows()))
        assert lines[0] == HEADER_LINE and len(lines) == 1 + len(self.TITLES)
        assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)


def big_rows(total_bytes: int) -> list[LetterboxdRow]:
    """Rows adding up to about *total_bytes* of CSV (each about 93 bytes)."""
    start = utc(2000, 1, 1, 12)
    plays = []
    for i in range(total_bytes // 93):
        title = f"A Film With A Long Enough Title, Part {i:06d} — é"
        plays.append(
            play(title, 1990 + i % 30, start + timedelta(hours=i), imdb=f"tt{i:07d}", tmdb=str(i))
        )
    return diary_rows(plays, {f"{p.title}|{p.year}": 1 + i % 10 for i, p in enumerate(plays)}, UTC)


class TestSplitting:
    """Over 1,000,000 bytes: FILE, FILE-2 … each under the limit and with the header."""

    def test_a_1_2_mb_export_is_two_files_each_under_the_limit(self, tmp_path: Path) -> None:
        rows = big_rows(1_200_000)
        size = write_stream(rows, io.BytesIO())
        assert 1_150_000 < size < 1_250_000
        written = write_files(rows, tmp_path / "letterboxd.csv")
        assert written == [tmp_path / "letterboxd.csv", tmp_path / "letterboxd-2.csv"]
        for path in written:
            data = path.read_bytes()
            assert len(data) <= MAX_FILE_BYTES
            assert data.startswith(HEADER_LINE.encode())
        read_back = [
            row for path in written for row in csv.DictReader(io.StringIO(path.read_text("utf-8")))
        ]
        assert [r["Title"] for r in read_back] == [r.title for r in rows]
        assert [r["WatchedDate"] for r in read_back] == [r.watched_on.isoformat() for r in rows]

    def test_a_small_export_is_one_file(self, tmp_path: Path) -> None:
        written = write_files(big_rows(50_000), tmp_path / "out.csv")
        assert written == [tmp_path / "out.csv"]

    def test_no_rows_is_a_file_with_the_header(self, tmp_path: Path) -> None:
        (written,) = write_files([], tmp_path / "out.csv")
        assert written.read_text() == HEADER_LINE

    def test_exactly_at_the_limit_stays_one_file(self, tmp_path: Path) -> None:
        rows = big_rows(20_000)
        size = write_stream(rows, io.BytesIO())
        assert len(write_files(rows, tmp_path / "a.csv", max_bytes=size)) == 1
        assert len(write_files(rows, tmp_path / "b.csv", max_bytes=size - 1)) == 2

    def test_many_parts_are_numbered_in_order(self, tmp_path: Path) -> None:
        written = write_files(big_rows(30_000), tmp_path / "out.csv", max_bytes=10_000)
        assert len(written) >= 3
        assert [p.name for p in written] == ["out.csv"] + [
            f"out-{n}.csv" for n in range(2, len(written) + 1)
        ]
        assert all(p.stat().st_size <= 10_000 for p in written)

    @pytest.mark.parametrize(
        ("name", "second"),
        [("diary.csv", "diary-2.csv"), ("diary", "diary-2"), ("my.films.csv", "my.films-2.csv")],
    )
    def test_part_names_put_the_number_before_the_suffix(self, name: str, second: str) -> None:
        assert part_path(Path("/x") / name, 1) == Path("/x") / name
        assert part_path(Path("/x") / name, 2) == Path("/x") / second

    def test_parts_of_an_earlier_longer_export_are_found_not_deleted(self, tmp_path: Path) -> None:
        output = tmp_path / "out.csv"
        earlier = write_files(big_rows(30_000), output, max_bytes=10_000)
        now = write_files(big_rows(5_000), output, max_bytes=10_000)
        assert len(now) == 1 and len(earlier) >= 3
        assert leftover_parts(output, len(now)) == earlier[1:]
        assert all(path.exists() for path in earlier)

    def test_stdout_size_tells_when_it_is_over_the_limit(self) -> None:
        assert write_stream(big_rows(1_200_000), io.BytesIO()) > MAX_FILE_BYTES

    def test_an_unwritable_output_is_one_clear_line(self, tmp_path: Path) -> None:
        target = tmp_path / "missing-folder" / "out.csv"
        with pytest.raises(FileFormatError) as caught:
            write_files(big_rows(1_000), target)
        assert str(caught.value).startswith(f"{target}: cannot be written")
        assert list(tmp_path.iterdir()) == []


class TestFilmPlays:
    """The outbox's plays and ratings as films: one film per shared imdb or tmdb id."""

    T = datetime(2024, 1, 1, tzinfo=UTC)

    def test_ids_shared_through_another_play_make_one_film_with_both_ids(self) -> None:
        imdb_only = Item(MediaKind.MOVIE, "Dune", 2021, ids=Ids(imdb="tt1160419"))
        both = Item(MediaKind.MOVIE, "Dune", 2021, ids=Ids(imdb="tt1160419", tmdb="438631"))
        tmdb_only = Item(MediaKind.MOVIE, "Dune", 2021, ids=Ids(tmdb="438631"))

        plays, _ = film_plays([(imdb_only, self.T), (tmdb_only, self.T), (both, self.T)])

        assert len({p.film_key for p in plays}) == 1
        assert {(p.imdb, p.tmdb) for p in plays} == {("tt1160419", "438631")}

    def test_a_play_without_ids_joins_the_one_film_of_its_title_and_year(self) -> None:
        resolved = Item(MediaKind.MOVIE, "Dune", 2021, ids=Ids(tmdb="438631"))
        parked = Item(MediaKind.MOVIE, "DUNE", 2021)
        other_year = Item(MediaKind.MOVIE, "Dune", 1984)

        plays, _ = film_plays([(resolved, self.T), (parked, self.T), (other_year, self.T)])

        assert plays[0].film_key == plays[1].film_key != plays[2].film_key
        assert plays[1].tmdb == "438631" and plays[2].tmdb is None

    def test_two_films_of_one_title_and_year_are_not_guessed_between(self) -> None:
        first = Item(MediaKind.MOVIE, "Twin", 2001, ids=Ids(imdb="tt0000001"))
        second = Item(MediaKind.MOVIE, "Twin", 2001, ids=Ids(imdb="tt0000002"))
        bare = Item(MediaKind.MOVIE, "Twin", 2001)

        plays, _ = film_plays([(first, self.T), (second, self.T), (bare, self.T)])

        assert len({p.film_key for p in plays}) == 3

    def test_the_latest_rating_of_a_film_wins_and_a_clearing_removes_it(self) -> None:
        dune = Item(MediaKind.MOVIE, "Dune", 2021, ids=Ids(imdb="tt1160419", tmdb="438631"))
        barry = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))
        ratings = [
            (Item(MediaKind.MOVIE, "Dune", 2021, ids=Ids(tmdb="438631")), 8),
            (dune, 6),
            (barry, 9),
            (barry, None),
        ]

        plays, rated = film_plays([(dune, self.T), (barry, self.T)], ratings)

        assert rated == {plays[0].film_key: 6}
