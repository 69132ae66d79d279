"""What the file-import tests share: a catalogue the fake Trakt and SIMKL both know, and a
Letterboxd export and a TV Time export written for the tests in the reference formats
(``/work/shared/reference/letterboxd/README.md`` §2, ``/work/shared/reference/tvtime/README.md``
§1).

The Letterboxd diary has same-title films of different years (Dune 1984/2021, Ocean's Eleven
1960/2001), titles with commas, apostrophes, ampersands and a decomposed diacritic, a rewatch,
an unknown film, an episode and a series logged as films. The TV Time export has a special
(S00E01), a rewatch, a bulk-marked season, an episode known only by its TVDB episode id, one
known only by its series id and numbers, its columns in another order than the real header,
show-state and stats rows, and (in the v1 file) a film under a localized name.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

from tests.fakes.catalog import Catalog, default_catalog
from tests.file_fixtures import (
    DIARY_HEADER,
    RATINGS_HEADER,
    V1_HEADER,
    V2_HEADER,
    csv_text,
    diary_row,
    episode_row,
    rating_row,
    write_text,
    write_zip,
)


def files_catalog() -> Catalog:
    """The default catalogue and the films and shows of the exports below (TMDb/IMDb/TVDB ids
    as on those services; the fakes derive trakt and simkl ids)."""
    cat = default_catalog()
    cat.add_movie("Dune", 1984, imdb="tt0087182", tmdb=841)
    cat.add_movie("Dune", 2021, imdb="tt1160419", tmdb=438631)
    cat.add_movie("Dune: Part Two", 2024, imdb="tt15239678", tmdb=693134)
    cat.add_movie("Red, White & Royal Blue", 2023, imdb="tt10172266", tmdb=930094)
    cat.add_movie("Ocean's Eleven", 2001, imdb="tt0240772", tmdb=161)
    cat.add_movie("Ocean's Eleven", 1960, imdb="tt0054135", tmdb=299)
    cat.add_movie("Bande à part", 1964, imdb="tt0057869", tmdb=8073)
    cat.add_movie("What Happened to Monday", 2017, imdb="tt1536537", tmdb=406990)
    cat.add_show("Love, Death & Robots", 2019, tvdb=357888, imdb="tt9561862", tmdb=86831)
    unit = cat.add_show("The Unit", 2006, tvdb=75707, imdb="tt0439069", tmdb=2542)
    cat.add_episode(unit, 1, 4, tvdb=306587)
    cat.add_episode(unit, 1, 5, tvdb=306588)
    treason = cat.add_show("Treason", 2022, tvdb=413526, tmdb=197102)
    cat.add_episode(treason, 1, 4, tvdb=9476787)
    cat.add_episode(treason, 1, 5, tvdb=9476788)
    cage = cat.add_show("Marvel's Luke Cage", 2016, tvdb=304219, imdb="tt3322314", tmdb=62126)
    cat.add_episode(cage, 2, 13, tvdb=6668403)
    cat.add_episode(cage, 0, 1, "Special", tvdb=6804123)
    bodyguard = cat.add_show("Bodyguard", 2018, tvdb=349310, imdb="tt7493974", tmdb=80307)
    cat.add_episode(bodyguard, 1, 6, tvdb=6733513)
    return cat


BANDE_NFD = unicodedata.normalize("NFD", "Bande à part")
assert BANDE_NFD != "Bande à part"

#: ``diary.csv`` rows: 10 plays; 7 match a film, 3 match none (an unknown film, an episode and
#: a series logged as films).
DIARY_ROWS: list[dict[str, object]] = [
    diary_row("Dune", 1984, "2024-01-05", "https://boxd.it/t001", rating="3"),
    diary_row("Dune", 2021, "2024-01-06", "https://boxd.it/t002", rating="4"),
    diary_row("Red, White & Royal Blue", 2023, "2024-02-14", "https://boxd.it/t003", rating="2.5"),
    diary_row("Ocean's Eleven", 2001, "2024-03-01", "https://boxd.it/t004", tags="heist, fun"),
    diary_row(BANDE_NFD, 1964, "2024-03-02", "https://boxd.it/t005", rating="5"),
    diary_row("Dune", 2021, "2024-04-10", "https://boxd.it/t006", rating="4.5", rewatch=True),
    diary_row("Ocean's Eleven", 1960, "2024-04-11", "https://boxd.it/t007"),
    diary_row("Zzyzx Nonexistent Picture", 2031, "2024-05-02", "https://boxd.it/t008"),
    diary_row("Love, Death & Robots: Sonnie's Edge", 2019, "2024-05-03", "https://boxd.it/t009"),
    diary_row("Love, Death & Robots", 2019, "2024-05-04", "https://boxd.it/t010"),
]
#: ``ratings.csv``: one film the diary rates too (the diary wins), one it does not, one unknown.
RATINGS_ROWS: list[dict[str, object]] = [
    rating_row("Dune", 2021, "2", "https://boxd.it/f001", logged="2024-01-07"),
    rating_row("What Happened to Monday", 2017, "3.5", "https://boxd.it/f002", logged="2024-06-01"),
    rating_row("Zzyzx Nonexistent Picture", 2031, "1", "https://boxd.it/f003"),
]
#: Titles of the matched plays, in file order, and of the unmatched rows.
MATCHED = [
    ("Dune", 1984),
    ("Dune", 2021),
    ("Red, White & Royal Blue", 2023),
    ("Ocean's Eleven", 2001),
    ("Bande à part", 1964),
    ("Dune", 2021),
    ("Ocean's Eleven", 1960),
]
UNMATCHED = [
    "Zzyzx Nonexistent Picture (2031)",
    "Love, Death & Robots: Sonnie's Edge (2019)",
    "Love, Death & Robots (2019)",
]


def letterboxd_zip(folder: Path, diary: list[dict[str, object]] | None = None) -> Path:
    """The export ZIP as Letterboxd sends it (root files, deleted/ and orphaned/ too)."""
    deleted = [diary_row("Dune", 2021, "2024-02-02", "https://boxd.it/d001")]
    orphaned = [diary_row("Dune", 1984, "2024-02-03", "")]
    members: dict[str, str | bytes] = {
        "diary.csv": csv_text(DIARY_HEADER, DIARY_ROWS if diary is None else diary),
        "ratings.csv": csv_text(RATINGS_HEADER, RATINGS_ROWS),
        "watched.csv": "Date,Name,Year,Letterboxd URI\n2024-01-05,Dune,1984,https://boxd.it/x\n",
        "deleted/diary.csv": csv_text(DIARY_HEADER, deleted),
        "orphaned/diary.csv": csv_text(DIARY_HEADER, orphaned),
    }
    folder.mkdir(parents=True, exist_ok=True)
    return write_zip(folder / "letterboxd-member-2025-01-01-10-00-utc.zip", members)


def letterboxd_diary(folder: Path, *, bom: bool = False, crlf: bool = False) -> Path:
    """The ZIP's ``diary.csv`` alone."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_text(folder / "diary.csv", csv_text(DIARY_HEADER, DIARY_ROWS), bom=bom, crlf=crlf)


# -- TV Time ------------------------------------------------------------------------------------

_SERIES = "5f0c2d9e-7a41-4c1e-9d55-2b9f3f1e8a10"
UNIT = f"watch-episode-{_SERIES}-1c2d3e4f-0000-4000-8000-00000000000"
TREASON = "watch-episode-9a7b6c5d-1e2f-4a3b-8c9d-0e1f2a3b4c5d-2d3e4f5a-0000-4000-8000-00000000000"
CAGE = "watch-episode-0d9c8b7a-6f5e-4d3c-2b1a-09f8e7d6c5b4-3e4f5a6b-0000-4000-8000-00000000000"
GUARD = "watch-episode-7e6d5c4b-3a29-4817-a6f5-e4d3c2b1a098-4f5a6b7c-0000-4000-8000-00000000000"

#: The v2 file's rows: 8 plays (S01E04, S01E05 and its rewatch of The Unit; Treason's
#: bulk-marked S01E04-05; Luke Cage S02E13 and the special S00E01; Bodyguard S01E06 by its
#: episode id alone), a stats row and a show-state row.
V2_ROWS: list[dict[str, Any]] = [
    {
        "created_at": "2016-08-04 15:10:45",
        "user_id": "12345678",
        "key": "tracking-stats",
        "ep_watch_count": "8",
    },
    episode_row("2016-08-10 16:48:22", UNIT + "1"),
    episode_row("2016-08-11 02:05:17", UNIT + "2", ep_no="5", ep_id="306588"),
    episode_row(
        "2019-01-03 21:40:00", "re" + UNIT + "2-1", ep_no="5", ep_id="306588", rewatch_count="1"
    ),
    episode_row(
        "2024-11-02 11:53:58",
        TREASON + "1",
        s_id="413526",
        ep_no="4",
        ep_id="",  # the series id with its numbers
        series_name="Treason",
        bulk_type="season",
    ),
    episode_row(
        "2024-11-02 11:53:58",
        TREASON + "2",
        s_id="413526",
        ep_no="5",
        ep_id="9476788",
        series_name="Treason",
        bulk_type="season",
    ),
    episode_row(
        "2018-12-09 00:22:02",
        CAGE + "1",
        s_id="304219",
        s_no="2",
        ep_no="13",
        ep_id="6668403",
        series_name="Marvel's Luke Cage",
    ),
    episode_row(
        "2018-12-14 23:59:31",
        CAGE + "2",
        s_id="304219",
        s_no="0",
        ep_no="1",
        ep_id="6804123",
        series_name="Marvel's Luke Cage",
        is_special="true",
    ),
    episode_row(
        "2019-02-01 20:00:00",
        GUARD + "1",
        s_id="",  # the episode id alone
        s_no="",
        ep_no="",
        ep_id="6733513",
        series_name="Bodyguard (2018)",
    ),
    {
        "created_at": "2016-08-04 15:10:45",
        "user_id": "12345678",
        "key": f"user-series-{_SERIES}",
        "is_followed": "true",
        "s_id": "75707",
        "series_name": "The Unit",
    },
]
#: The real header's columns in another order (trakt-web #2798: the order is not stable).
V2_SHUFFLED = tuple(reversed(V2_HEADER))
#: The v1 file: a watched film under a localized name (its English slug matches), one never
#: watched (towatch), and an episode row (the v2 file has the episodes).
V1_ROWS: list[dict[str, Any]] = [
    {
        "uuid": "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d",
        "type": "watch",
        "type-uuid-n": "watch-6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d-0",
        "created_at": "2022-04-10 11:26:55",
        "release_date": "2017-10-12",
        "alpha_range_key": "watch-alpha-what-happened-to-monday",
        "movie_name": "Seven Sisters",
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
EPISODE_PLAYS = 8


def tvtime_zip(folder: Path, v2_rows: list[dict[str, Any]] | None = None) -> Path:
    """A GDPR ZIP: the v2 file (columns shuffled), the v1 file, another file."""
    members: dict[str, str | bytes] = {
        "tracking-prod-records-v2.csv": csv_text(
            V2_SHUFFLED, V2_ROWS if v2_rows is None else v2_rows
        ),
        "tracking-prod-records.csv": csv_text(V1_HEADER, V1_ROWS),
        "followed_tv_show.csv": "user_id,tv_show_id,tv_show_name\n12345678,75707,The Unit\n",
    }
    folder.mkdir(parents=True, exist_ok=True)
    return write_zip(folder / "tvtime-gdpr-export.zip", members)


def tvtime_v2(folder: Path) -> Path:
    """The ZIP's ``tracking-prod-records-v2.csv`` alone."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_text(folder / "tracking-prod-records-v2.csv", csv_text(V2_SHUFFLED, V2_ROWS))
