"""Reading Letterboxd's data export (ZIP or diary.csv) into diary plays and film ratings.

Formats: /work/shared/reference/letterboxd/README.md §2 (files, headers, value formats).
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crosswatchd.errors import CrosswatchError
from crosswatchd.imports import FileFormatError, parse_zone, system_zone
from crosswatchd.imports.letterboxd import (
    DiaryEntry,
    film_key,
    open_letterboxd,
    read_letterboxd,
)
from crosswatchd.models import MediaKind
from tests.file_fixtures import (
    DIARY_HEADER,
    RATINGS_HEADER,
    csv_text,
    diary_row,
    rating_row,
    write_text,
    write_zip,
)

PARIS = ZoneInfo("Europe/Paris")
REFERENCE = Path("/work/shared/reference/letterboxd/constructed-sample-export")

YI_NFC = unicodedata.normalize("NFC", "Yí (Endless River)")
YI_NFD = unicodedata.normalize("NFD", "Yí (Endless River)")
assert YI_NFC != YI_NFD

#: A diary written for these tests: same-title films of different years, punctuation,
#: diacritics in NFD, rewatches, an unknown film and a series logged as a film.
DIARY_ROWS = [
    diary_row("Dune", 1984, "2024-01-05", "https://boxd.it/aaa001", rating="3"),
    diary_row("Dune", 2021, "2024-01-06", "https://boxd.it/aaa002", rating="4"),
    diary_row(
        "Red, White & Royal Blue", 2023, "2024-02-14", "https://boxd.it/aaa003", rating="2.5"
    ),
    diary_row("Ocean's Eleven", 2001, "2024-03-01", "https://boxd.it/aaa004", tags="heist, fun"),
    diary_row(YI_NFD, 2021, "2024-03-02", "https://boxd.it/aaa005", rating="5"),
    diary_row("Dune", 2021, "2024-04-10", "https://boxd.it/aaa006", rating="4.5", rewatch=True),
    diary_row("Dune", 2021, "2024-05-01", "https://boxd.it/aaa007", rewatch=True),
    diary_row("Zzyzx Nonexistent Picture", 2031, "2024-05-02", "https://boxd.it/aaa008"),
    diary_row("Love, Death & Robots: Sonnie's Edge", 2019, "2024-05-03", "https://boxd.it/aaa009"),
]
RATINGS_ROWS = [
    rating_row("Dune", 2021, "2", "https://boxd.it/f1"),
    rating_row("Ocean's Eleven", 2001, "3.5", "https://boxd.it/f2"),
    rating_row(YI_NFC, 2021, "1", "https://boxd.it/f3"),
    rating_row("Paddington 2", 2017, "5", "https://boxd.it/f4"),
]
DELETED_ROWS = [diary_row("Baby Driver", 2017, "2024-05-04", "https://boxd.it/del001", rating="3")]
ORPHANED_ROWS = [diary_row("Money Heist", 2017, "2024-09-20", "", rating="4")]


def export_zip(tmp_path: Path, diary: str | None = None, **extra: str | bytes) -> Path:
    """A Letterboxd export ZIP: root diary.csv + ratings.csv, and deleted/ and orphaned/."""
    members: dict[str, str | bytes] = {
        "diary.csv": diary if diary is not None else csv_text(DIARY_HEADER, DIARY_ROWS),
        "ratings.csv": csv_text(RATINGS_HEADER, RATINGS_ROWS),
        "watched.csv": "Date,Name,Year,Letterboxd URI\n2024-01-05,Dune,1984,https://boxd.it/x\n",
        "deleted/diary.csv": csv_text(DIARY_HEADER, DELETED_ROWS),
        "orphaned/diary.csv": csv_text(DIARY_HEADER, ORPHANED_ROWS),
        **extra,
    }
    return write_zip(tmp_path / "letterboxd-member-2025-01-01-10-00-utc.zip", members)


def bare_diary(tmp_path: Path, rows: list[dict[str, object]] | None = None, **kw: bool) -> Path:
    text = csv_text(DIARY_HEADER, DIARY_ROWS if rows is None else rows)
    return write_text(tmp_path / "diary.csv", text, **kw)


def titles(entries: tuple[DiaryEntry, ...]) -> list[tuple[str, int | None]]:
    return [(e.title, e.year) for e in entries]


class TestDiaryPlays:
    """Each root diary.csv row is one movie play at 12:00 local on its Watched Date."""

    def test_every_row_is_a_play_in_file_order_with_its_uri_as_key(self, tmp_path: Path) -> None:
        got = read_letterboxd(export_zip(tmp_path), tz=PARIS)
        assert [e.key for e in got.entries] == [f"https://boxd.it/aaa00{i}" for i in range(1, 10)]
        assert [e.line for e in got.entries] == list(range(2, 11))

    def test_the_zip_and_its_bare_diary_give_the_same_entries(self, tmp_path: Path) -> None:
        zipped = read_letterboxd(export_zip(tmp_path), tz=PARIS).entries
        bare = read_letterboxd(bare_diary(tmp_path), tz=PARIS).entries
        assert bare == zipped

    def test_deleted_and_orphaned_diaries_are_never_read(self, tmp_path: Path) -> None:
        got = read_letterboxd(export_zip(tmp_path), tz=PARIS)
        assert ("Baby Driver", 2017) not in titles(got.entries)
        assert ("Money Heist", 2017) not in titles(got.entries)
        assert got.stats[0].file == "diary.csv" and got.stats[0].rows == len(DIARY_ROWS)

    def test_play_time_is_noon_in_the_given_zone_as_utc(self, tmp_path: Path) -> None:
        path = bare_diary(tmp_path)
        paris = read_letterboxd(path, tz=PARIS).entries[0]
        los_angeles = read_letterboxd(path, tz=ZoneInfo("America/Los_Angeles")).entries[0]
        assert paris.watched_on == los_angeles.watched_on == date(2024, 1, 5)
        assert paris.watched_at == datetime(2024, 1, 5, 11, 0, tzinfo=UTC)
        assert los_angeles.watched_at == datetime(2024, 1, 5, 20, 0, tzinfo=UTC)

    def test_summer_time_is_honoured(self, tmp_path: Path) -> None:
        rows = [diary_row("Dune", 2021, "2024-07-01", "https://boxd.it/s1")]
        entry = read_letterboxd(bare_diary(tmp_path, rows), tz=PARIS).entries[0]
        assert entry.watched_at == datetime(2024, 7, 1, 10, 0, tzinfo=UTC)

    def test_same_title_films_of_different_years_stay_apart(self, tmp_path: Path) -> None:
        entries = read_letterboxd(export_zip(tmp_path), tz=PARIS).entries
        dunes = [(e.year, e.film) for e in entries if e.title == "Dune"]
        assert dunes[0] == (1984, ("dune", 1984))
        assert {year for year, _ in dunes} == {1984, 2021}
        assert len({film for _, film in dunes}) == 2

    def test_titles_keep_commas_apostrophes_and_ampersands(self, tmp_path: Path) -> None:
        names = [e.title for e in read_letterboxd(export_zip(tmp_path), tz=PARIS).entries]
        assert "Red, White & Royal Blue" in names
        assert "Ocean's Eleven" in names
        assert "Love, Death & Robots: Sonnie's Edge" in names

    def test_decomposed_diacritics_are_read_as_composed(self, tmp_path: Path) -> None:
        entry = read_letterboxd(export_zip(tmp_path), tz=PARIS).entries[4]
        assert entry.title == YI_NFC
        assert film_key(YI_NFD, 2021) == film_key(YI_NFC, 2021) == entry.film

    def test_a_rewatch_row_is_a_play_of_its_own(self, tmp_path: Path) -> None:
        entries = read_letterboxd(export_zip(tmp_path), tz=PARIS).entries
        dune_2021 = [e for e in entries if e.film == ("dune", 2021)]
        assert [(e.watched_on.isoformat(), e.rewatch) for e in dune_2021] == [
            ("2024-01-06", False),
            ("2024-04-10", True),
            ("2024-05-01", True),
        ]

    def test_unknown_films_and_series_are_returned_for_the_resolver_to_report(
        self, tmp_path: Path
    ) -> None:
        entries = read_letterboxd(export_zip(tmp_path), tz=PARIS).entries
        unknown = [e for e in entries if e.year in (2019, 2031)]
        assert [e.item().kind for e in unknown] == [MediaKind.MOVIE, MediaKind.MOVIE]
        assert [e.item().label() for e in unknown] == [
            "Zzyzx Nonexistent Picture (2031)",
            "Love, Death & Robots: Sonnie's Edge (2019)",
        ]
        assert all(not e.item().ids for e in unknown)

    def test_entry_rating_is_doubled_and_empty_stays_none(self, tmp_path: Path) -> None:
        entries = read_letterboxd(export_zip(tmp_path), tz=PARIS).entries
        assert [e.rating10 for e in entries[:4]] == [6, 8, 5, None]

    def test_columns_are_read_by_name_in_any_order(self, tmp_path: Path) -> None:
        header = (
            "Watched Date",
            "Tags",
            "Letterboxd URI",
            "Rewatch",
            "Name",
            "Rating",
            "Year",
            "Date",
        )
        shuffled = write_text(tmp_path / "shuffled.csv", csv_text(header, DIARY_ROWS))
        assert read_letterboxd(shuffled, tz=PARIS).entries == (
            read_letterboxd(bare_diary(tmp_path), tz=PARIS).entries
        )

    def test_a_row_without_a_uri_gets_a_stable_key_per_occurrence(self, tmp_path: Path) -> None:
        rows = [
            diary_row("Dune", 2021, "2024-01-06", ""),
            diary_row("Dune", 2021, "2024-01-06", ""),
        ]
        keys = [e.key for e in read_letterboxd(bare_diary(tmp_path, rows), tz=PARIS).entries]
        assert keys == [
            "letterboxd-diary:Dune|2021|2024-01-06|1",
            "letterboxd-diary:Dune|2021|2024-01-06|2",
        ]

    def test_entries_are_streamed(self, tmp_path: Path) -> None:
        with open_letterboxd(bare_diary(tmp_path), tz=PARIS) as export:
            stream = export.diary()
            first = next(stream)
            assert first.title == "Dune"
            assert export.stats[0].rows == 1


class TestRatings:
    """A film's 1–10 rating: latest rated diary entry × 2, else ratings.csv in the ZIP."""

    def test_the_latest_rated_diary_entry_wins(self, tmp_path: Path) -> None:
        ratings = read_letterboxd(export_zip(tmp_path), tz=PARIS).ratings
        assert ratings[("dune", 2021)].rating10 == 9  # 4 → 4.5 on rewatch; unrated rewatch after
        assert ratings[("dune", 2021)].file == "diary.csv"
        assert ratings[("dune", 1984)].rating10 == 6

    def test_diary_rating_wins_over_ratings_csv(self, tmp_path: Path) -> None:
        ratings = read_letterboxd(export_zip(tmp_path), tz=PARIS).ratings
        assert ratings[film_key(YI_NFC, 2021)].rating10 == 10

    def test_ratings_csv_rates_films_without_a_diary_rating(self, tmp_path: Path) -> None:
        ratings = read_letterboxd(export_zip(tmp_path), tz=PARIS).ratings
        oceans = ratings[("ocean's eleven", 2001)]
        assert (oceans.rating10, oceans.file, oceans.film_uri) == (
            7,
            "ratings.csv",
            "https://boxd.it/f2",
        )
        assert ratings[("paddington 2", 2017)].rating10 == 10

    def test_unrated_films_have_no_rating(self, tmp_path: Path) -> None:
        ratings = read_letterboxd(export_zip(tmp_path), tz=PARIS).ratings
        assert ("zzyzx nonexistent picture", 2031) not in ratings

    def test_latest_is_by_watched_date_not_file_order(self, tmp_path: Path) -> None:
        rows = [
            diary_row("Dune", 2021, "2024-06-01", "https://boxd.it/b", rating="2"),
            diary_row(
                "Dune", 2021, "2024-01-01", "https://boxd.it/a", rating="5", logged="2024-07-01"
            ),
        ]
        with open_letterboxd(bare_diary(tmp_path, rows), tz=PARIS) as export:
            assert export.ratings()[("dune", 2021)].rating10 == 4
            assert not export.has_ratings_file

    def test_a_rating_says_the_day_it_was_given(self, tmp_path: Path) -> None:
        """The diary entry's Date (logged), else its Watched Date; ratings.csv's Date."""
        ratings = read_letterboxd(export_zip(tmp_path), tz=PARIS).ratings
        assert ratings[("dune", 2021)].rated_on == date(2024, 4, 10)
        assert ratings[("paddington 2", 2017)].rated_on == date(2024, 1, 1)
        rows = [diary_row("Dune", 2021, "2024-01-01", "https://boxd.it/a", rating="5")]
        rows[0]["Date"] = ""
        bare = read_letterboxd(bare_diary(tmp_path, rows), tz=PARIS).ratings
        assert bare[("dune", 2021)].rated_on == date(2024, 1, 1)

    def test_a_bare_diary_has_only_diary_ratings(self, tmp_path: Path) -> None:
        ratings = read_letterboxd(bare_diary(tmp_path), tz=PARIS).ratings
        assert ("paddington 2", 2017) not in ratings
        assert ratings[("dune", 2021)].rating10 == 9


class TestBadRows:
    """A bad row is skipped, counted and named (line + why); the other rows are read."""

    def test_bad_values_skip_their_row_only(self, tmp_path: Path) -> None:
        rows = [
            diary_row("Dune", 1984, "2024-01-05", "https://boxd.it/1"),
            diary_row("Dune", 2021, "2024-02-30", "https://boxd.it/2"),
            diary_row("Dune", 2021, "06/01/2024", "https://boxd.it/3"),
            diary_row("Dune", 2021, "", "https://boxd.it/4"),
            diary_row("Dune", 2021, "2024-01-07", "https://boxd.it/5", rating="6"),
            diary_row("Dune", "MMXXI", "2024-01-08", "https://boxd.it/6"),
            diary_row("", 2021, "2024-01-09", "https://boxd.it/7"),
            diary_row("Dune", 2021, "2024-01-10", "https://boxd.it/8", logged="yesterday"),
            diary_row("Dune", 2021, "2024-01-11", "https://boxd.it/9"),
        ]
        got = read_letterboxd(bare_diary(tmp_path, rows), tz=PARIS)
        assert [e.key for e in got.entries] == ["https://boxd.it/1", "https://boxd.it/9"]
        assert [str(s) for s in got.skipped] == [
            "diary.csv line 3: bad Watched Date '2024-02-30' (expected YYYY-MM-DD)",
            "diary.csv line 4: bad Watched Date '06/01/2024' (expected YYYY-MM-DD)",
            "diary.csv line 5: no Watched Date",
            "diary.csv line 6: bad Rating '6' (expected 0.5 to 5 in steps of 0.5)",
            "diary.csv line 7: bad Year 'MMXXI'",
            "diary.csv line 8: no Name",
            "diary.csv line 9: bad Date 'yesterday' (expected YYYY-MM-DD)",
        ]
        assert got.stats[0].skipped_count == 7
        assert got.stats[0].plays == 2

    def test_a_truncated_last_row_is_skipped(self, tmp_path: Path) -> None:
        text = csv_text(DIARY_HEADER, DIARY_ROWS[:2]) + "2024-02-15,Dune,2021,https://boxd.it/x"
        got = read_letterboxd(write_text(tmp_path / "diary.csv", text), tz=PARIS)
        assert len(got.entries) == 2
        assert [str(s) for s in got.skipped] == [
            "diary.csv line 4: 4 fields where the header has 8"
        ]

    def test_line_numbers_count_physical_lines_of_multiline_fields(self, tmp_path: Path) -> None:
        rows = [
            diary_row("Dune", 2021, "2024-01-05", "https://boxd.it/1", tags="two\nlines"),
            diary_row("Dune", 2021, "bad", "https://boxd.it/2"),
        ]
        got = read_letterboxd(bare_diary(tmp_path, rows), tz=PARIS)
        assert [s.line for s in got.skipped] == [4]

    def test_a_bad_ratings_csv_row_is_named_with_its_file(self, tmp_path: Path) -> None:
        ratings = csv_text(
            RATINGS_HEADER,
            [{"Name": "Paddington 2", "Year": 2017, "Rating": "ten"}, RATINGS_ROWS[3]],
        )
        got = read_letterboxd(export_zip(tmp_path, **{"ratings.csv": ratings}), tz=PARIS)
        assert [str(s) for s in got.skipped] == [
            "ratings.csv line 2: bad Rating 'ten' (expected 0.5 to 5 in steps of 0.5)"
        ]
        assert got.ratings[("paddington 2", 2017)].line == 3


class TestRowCount:
    """How many rows a file has, known before it is read row by row (the progress bar)."""

    @pytest.mark.parametrize("crlf", [False, True])
    def test_rows_estimate_counts_the_lines_after_the_header(
        self, tmp_path: Path, crlf: bool
    ) -> None:
        with open_letterboxd(bare_diary(tmp_path, crlf=crlf), tz=PARIS) as export:
            assert export.rows_estimate == len(DIARY_ROWS)

    def test_a_last_line_without_its_newline_counts(self, tmp_path: Path) -> None:
        text = csv_text(DIARY_HEADER, DIARY_ROWS).rstrip("\n")
        path = write_text(tmp_path / "diary.csv", text)
        with open_letterboxd(path, tz=PARIS) as export:
            assert export.rows_estimate == len(DIARY_ROWS)


class TestTextEncoding:
    """UTF-8 with or without a BOM, LF or CRLF: the same entries."""

    @pytest.mark.parametrize(("bom", "crlf"), [(True, True), (True, False), (False, True)])
    def test_bom_and_crlf_read_the_same(self, tmp_path: Path, bom: bool, crlf: bool) -> None:
        plain = read_letterboxd(bare_diary(tmp_path), tz=PARIS)
        other = tmp_path / "other"
        other.mkdir()
        variant = read_letterboxd(bare_diary(other, bom=bom, crlf=crlf), tz=PARIS)
        assert variant.entries == plain.entries
        assert variant.skipped == ()

    def test_bom_and_crlf_inside_the_zip(self, tmp_path: Path) -> None:
        text = "\ufeff" + csv_text(DIARY_HEADER, DIARY_ROWS).replace("\n", "\r\n")
        got = read_letterboxd(export_zip(tmp_path, diary=text), tz=PARIS)
        assert got.entries == read_letterboxd(bare_diary(tmp_path), tz=PARIS).entries


class TestFileProblems:
    """A file-level problem: one FileFormatError line naming the file; nothing returned."""

    def assert_refused(self, path: Path, *fragments: str) -> FileFormatError:
        with pytest.raises(FileFormatError) as caught:
            read_letterboxd(path, tz=PARIS)
        message = str(caught.value)
        assert message.startswith(f"{path}: ")
        assert "\n" not in message
        for fragment in fragments:
            assert fragment in message
        assert isinstance(caught.value, CrosswatchError)
        return caught.value

    def test_not_a_zip_or_csv(self, tmp_path: Path) -> None:
        png = tmp_path / "poster.png"
        png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
        self.assert_refused(png, "neither a ZIP nor a CSV")

    def test_a_zip_without_diary_csv(self, tmp_path: Path) -> None:
        path = write_zip(tmp_path / "x.zip", {"watched.csv": "Date,Name,Year,Letterboxd URI\n"})
        self.assert_refused(path, "has no diary.csv")

    def test_a_zip_with_only_deleted_diaries(self, tmp_path: Path) -> None:
        text = csv_text(DIARY_HEADER, DELETED_ROWS)
        path = write_zip(
            tmp_path / "x.zip", {"deleted/diary.csv": text, "orphaned/diary.csv": text}
        )
        err = self.assert_refused(path, "has no diary.csv")
        assert "deleted/" not in err.message

    def test_a_rezipped_folder_points_at_its_diary(self, tmp_path: Path) -> None:
        text = csv_text(DIARY_HEADER, DIARY_ROWS)
        path = write_zip(tmp_path / "x.zip", {"letterboxd-member/diary.csv": text})
        self.assert_refused(path, "there is letterboxd-member/diary.csv")

    def test_a_password_protected_zip(self, tmp_path: Path) -> None:
        text = csv_text(DIARY_HEADER, DIARY_ROWS)
        path = write_zip(tmp_path / "x.zip", {"diary.csv": text}, encrypted=True)
        self.assert_refused(path, "password-protected", "extract it first")

    def test_a_csv_without_the_needed_columns(self, tmp_path: Path) -> None:
        path = write_text(tmp_path / "films.csv", "Film,Seen\nDune,2024-01-01\n")
        self.assert_refused(path, "no 'Name', 'Letterboxd URI', 'Watched Date' columns")

    def test_ratings_csv_given_instead_of_the_diary(self, tmp_path: Path) -> None:
        path = write_text(tmp_path / "ratings.csv", csv_text(RATINGS_HEADER, RATINGS_ROWS))
        self.assert_refused(path, "no 'Watched Date' column", "looks like Letterboxd's ratings.csv")

    def test_a_zip_whose_ratings_csv_lacks_columns(self, tmp_path: Path) -> None:
        path = export_zip(tmp_path, **{"ratings.csv": "Date,Name\n"})
        self.assert_refused(path, "ratings.csv: no 'Rating' column")

    def test_a_latin_1_file(self, tmp_path: Path) -> None:
        text = csv_text(DIARY_HEADER, [diary_row("Bande à part", 1964, "2024-03-02", "u")])
        path = tmp_path / "diary.csv"
        path.write_bytes(text.encode("latin-1"))
        self.assert_refused(path, "not UTF-8 text (line 2)")

    def test_utf_16(self, tmp_path: Path) -> None:
        path = tmp_path / "diary.csv"
        path.write_bytes(csv_text(DIARY_HEADER, DIARY_ROWS).encode("utf-16"))
        self.assert_refused(path, "UTF-16")

    def test_an_empty_file(self, tmp_path: Path) -> None:
        self.assert_refused(write_text(tmp_path / "diary.csv", ""), "is empty")

    def test_a_missing_file(self, tmp_path: Path) -> None:
        self.assert_refused(tmp_path / "nope.zip", "no such file")

    def test_a_damaged_zip(self, tmp_path: Path) -> None:
        good = export_zip(tmp_path).read_bytes()
        path = tmp_path / "damaged.zip"
        path.write_bytes(good[:200] + bytes(50) + good[250:])
        self.assert_refused(path, "diary.csv: damaged in the ZIP")

    def test_a_truncated_zip(self, tmp_path: Path) -> None:
        path = tmp_path / "cut.zip"
        path.write_bytes(export_zip(tmp_path).read_bytes()[:300])
        self.assert_refused(path, "damaged or incomplete ZIP")

    def test_a_tv_time_zip(self, tmp_path: Path) -> None:
        path = write_zip(tmp_path / "x.zip", {"tracking-prod-records-v2.csv": "key,created_at\n"})
        self.assert_refused(path, "TV Time export")


class TestZones:
    """--tz: an IANA name, or the system's zone; anything else is one clear line."""

    def test_an_iana_name(self) -> None:
        assert parse_zone("Asia/Tokyo") == ZoneInfo("Asia/Tokyo")

    def test_no_name_means_the_system_zone(self) -> None:
        assert parse_zone(None) == parse_zone("  ") == system_zone()

    @pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "../etc/passwd", "America", "+02:00"])
    def test_a_bad_name_names_the_file(self, name: str) -> None:
        with pytest.raises(FileFormatError) as caught:
            parse_zone(name, path="diary.csv")
        assert str(caught.value).startswith(f"diary.csv: --tz {name!r} is not a time zone")

    def test_the_system_zone_from_tz(self) -> None:
        assert system_zone({"TZ": ":America/New_York"}) == ZoneInfo("America/New_York")

    def test_the_system_zone_from_the_localtime_link(self, tmp_path: Path) -> None:
        link = tmp_path / "localtime"
        link.symlink_to("/usr/share/zoneinfo/Asia/Tokyo")
        zone = system_zone({}, localtime=link, timezone_file=tmp_path / "none")
        assert zone == ZoneInfo("Asia/Tokyo")

    def test_the_system_zone_from_etc_timezone(self, tmp_path: Path) -> None:
        (tmp_path / "timezone").write_text("Europe/Paris\n")
        zone = system_zone({}, localtime=tmp_path / "none", timezone_file=tmp_path / "timezone")
        assert zone == PARIS

    def test_no_clue_means_utc(self, tmp_path: Path) -> None:
        zone = system_zone({}, localtime=tmp_path / "none", timezone_file=tmp_path / "none")
        assert datetime(2024, 1, 1, tzinfo=zone).utcoffset() == UTC.utcoffset(None)


class TestReferenceSample:
    """The constructed sample of the reference folder reads as its README describes."""

    def test_ten_diary_rows_two_rewatches(self, tmp_path: Path) -> None:
        got = read_letterboxd(REFERENCE / "diary.csv", tz=PARIS)
        assert len(got.entries) == 10 and got.skipped == ()
        assert sum(e.rewatch for e in got.entries) == 2
        assert ("Bande à part", 1964) in titles(got.entries)
