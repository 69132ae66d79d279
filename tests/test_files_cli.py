"""``crosswatchd import letterboxd|tvtime`` and ``export letterboxd`` as a user runs them: the
real command (a child process), the real daemon delivering to the strict Trakt and SIMKL
fakes, each import run twice (the second queues nothing), bad input, households, the progress
bar on a terminal only; the export's dates in two zones, its split at 1 MB, read back by
Python's csv module."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import pty
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from crosswatchd.exports.letterboxd import HEADER, MAX_FILE_BYTES
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import Outbox
from crosswatchd.tokens.files import TokenFile
from tests.e2e_support import Daemon, free_port, wait_for
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt
from tests.file_fixtures import DIARY_HEADER, csv_text, diary_row, write_text, write_zip
from tests.files_world import (
    EPISODE_PLAYS,
    MATCHED,
    files_catalog,
    letterboxd_diary,
    letterboxd_zip,
    tvtime_v2,
    tvtime_zip,
)
from tests.test_cli import COMMAND, _env, cli

HEADER_LINE = ",".join(HEADER)
NEW_YORK = ZoneInfo("America/New_York")


@dataclass
class World:
    """The fakes, the daemon (not started) and its config, for one household."""

    trakt: FakeTrakt
    simkl: FakeSimkl
    daemon: Daemon
    config: Path
    data_dir: Path

    async def outbox_rows(self, sql: str) -> list[tuple[Any, ...]]:
        box = await Outbox.open(self.data_dir / "outbox.sqlite3", providers=["trakt", "simkl"])
        try:
            return await box.fetch_all(sql)
        finally:
            await box.close()


def _config(
    path: Path, data_dir: Path, port: int, trakt: FakeTrakt, simkl: FakeSimkl, extra: str = ""
) -> Path:
    path.write_text(
        f'data_dir = "{data_dir}"\n'
        f"[http]\nport = {port}\n"
        '[webhook]\nsecret = "files-secret"\n'
        "[resolver]\nuse_search = true\n"
        "[delivery]\ntimeout_s = 3.0\npoll_s = 0.2\nbackoff_base_s = 0.2\n"
        "backoff_max_s = 1.0\nlease_s = 30\n"
        f'[trakt]\nclient_id = "{trakt.client_id}"\nclient_secret = "{trakt.client_secret}"\n'
        f'api_url = "{trakt.url}"\n'
        f'[simkl]\nclient_id = "{simkl.client_id}"\napi_url = "{simkl.url}"\n' + extra
    )
    return path


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    catalog = files_catalog()
    async with FakeTrakt(catalog=catalog) as trakt, FakeSimkl(catalog=catalog) as simkl:
        data_dir = tmp_path / "data"
        TokenFile(data_dir, "trakt").write(trakt.issue_token())
        TokenFile(data_dir, "simkl").write({"access_token": simkl.issue_token()})
        port = free_port()
        config = _config(tmp_path / "crosswatchd.toml", data_dir, port, trakt, simkl)
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        try:
            yield World(trakt, simkl, daemon, config, data_dir)
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()


def trakt_movies(fake: FakeTrakt, user: str | None = None) -> list[tuple[str, str]]:
    """``(imdb id, watched_at)`` of every movie play on the fake Trakt, oldest first."""
    return [(p["movie"]["ids"]["imdb"], p["watched_at"]) for p in fake.plays("movie", user=user)]


def simkl_plays(fake: FakeSimkl, kind: str, user: str | None = None) -> list[dict[str, Any]]:
    return [p for p in fake.user(user).history if p["type"] == kind]


def noon_utc(day: str, zone: str = "Europe/Paris") -> str:
    moment = datetime.combine(
        datetime.fromisoformat(day).date(), datetime.min.time(), ZoneInfo(zone)
    )
    return (moment + timedelta(hours=12)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# -- end to end -----------------------------------------------------------------------------


class TestLetterboxdEndToEnd:
    async def test_the_diary_lands_on_both_services_once_with_its_ratings(
        self, world: World, tmp_path: Path
    ) -> None:
        first = await cli(
            world.config,
            "import",
            "letterboxd",
            str(letterboxd_zip(tmp_path)),
            "--tz",
            "Europe/Paris",
        )
        assert first.code == 0, first.err
        assert first.err == ""  # no progress bar on a pipe, no log lines
        assert first.out.splitlines()[-1].startswith("import: 7 queued of 10 plays, 0 already")
        second = await cli(
            world.config,
            "import",
            "letterboxd",
            str(letterboxd_diary(tmp_path / "bare")),
            "--tz",
            "Europe/Paris",
        )
        assert second.code == 0, second.err
        assert second.out.splitlines()[-1].startswith(
            "import: 0 queued of 10 plays, 7 already imported"
        )
        assert "ratings:           4 read, 0 queued, 4 already held" in second.out

        await world.daemon.start()
        await wait_for(
            lambda: (
                len(trakt_movies(world.trakt)) == 7
                and len(simkl_plays(world.simkl, "movie")) == 7
                and len(world.trakt.user().ratings) == 5
            ),
            30,
            "7 plays and 5 ratings on Trakt, 7 plays on SIMKL",
        )
        dune_2021 = [w for imdb, w in trakt_movies(world.trakt) if imdb == "tt1160419"]
        assert dune_2021 == [noon_utc("2024-01-06"), noon_utc("2024-04-10")]  # the rewatch too
        assert {imdb for imdb, _ in trakt_movies(world.trakt)} == {
            "tt0087182",
            "tt1160419",
            "tt10172266",
            "tt0240772",
            "tt0057869",
            "tt0054135",
        }
        dune = world.trakt.catalog.movie({"imdb": "tt1160419"})
        assert dune is not None
        assert world.trakt.user().rating_of(("movie", dune["ids"]["trakt"])) == 9
        assert world.simkl.user().rating_of("movie", dune["ids"]["simkl"]) == 9

        third = await cli(
            world.config, "import", "letterboxd", str(letterboxd_zip(tmp_path / "c")), "--tz", "UTC"
        )
        assert third.out.splitlines()[-1].startswith("import: 0 queued of 10 plays, 7 already")
        assert await world.outbox_rows("SELECT count(*) FROM deliveries") == [(24,)]
        assert len(trakt_movies(world.trakt)) == 7


class TestTvTimeEndToEnd:
    async def test_episodes_specials_rewatches_and_films_land_once(
        self, world: World, tmp_path: Path
    ) -> None:
        first = await cli(world.config, "import", "tvtime", str(tvtime_zip(tmp_path)))
        assert first.code == 0, first.err
        assert first.out.splitlines()[-1].startswith("import: 9 queued of 9 plays")
        second = await cli(world.config, "import", "tvtime", str(tvtime_v2(tmp_path / "bare")))
        assert second.out.splitlines()[-1].startswith(
            f"import: 0 queued of {EPISODE_PLAYS} plays, {EPISODE_PLAYS} already imported"
        )

        await world.daemon.start()
        await wait_for(
            lambda: (
                len(world.trakt.plays("episode")) == EPISODE_PLAYS
                and len(world.trakt.plays("movie")) == 1
                and len(simkl_plays(world.simkl, "episode")) == EPISODE_PLAYS
                and len(simkl_plays(world.simkl, "movie")) == 1
            ),
            30,
            "8 episode plays and a film on each service",
        )
        episodes = [
            (
                p["show"]["ids"]["tvdb"],
                p["episode"]["season"],
                p["episode"]["number"],
                p["watched_at"],
            )
            for p in world.trakt.plays("episode")
        ]
        assert (304219, 0, 1, "2018-12-14T23:59:31.000Z") in episodes  # the special
        assert [e for e in episodes if e[0] == 75707 and e[2] == 5] == [
            (75707, 1, 5, "2016-08-11T02:05:17.000Z"),
            (75707, 1, 5, "2019-01-03T21:40:00.000Z"),  # the rewatch
        ]
        assert [e[3] for e in episodes if e[0] == 413526] == ["2024-11-02T11:53:58.000Z"] * 2
        assert (349310, 1, 6, "2019-02-01T20:00:00.000Z") in episodes  # by its episode id

        third = await cli(world.config, "import", "tvtime", str(tvtime_zip(tmp_path / "c")))
        assert third.out.splitlines()[-1].startswith("import: 0 queued of 9 plays, 9 already")
        assert await world.outbox_rows("SELECT count(*) FROM deliveries") == [(18,)]


class TestHouseholds:
    @pytest.fixture
    async def household(self, tmp_path: Path) -> AsyncIterator[World]:
        catalog = files_catalog()
        async with FakeTrakt(catalog=catalog) as trakt, FakeSimkl(catalog=catalog) as simkl:
            data_dir = tmp_path / "data"
            for profile in ("alex", "sam"):
                TokenFile(data_dir, "trakt", profile).write(trakt.issue_token(user=profile))
                TokenFile(data_dir, "simkl", profile).write(
                    {"access_token": simkl.issue_token(user=profile)}
                )
            port = free_port()
            profiles = (
                '[[profiles]]\nname = "alex"\nplex_accounts = ["Alex"]\n'
                '[[profiles]]\nname = "sam"\nplex_accounts = ["Sam"]\n'
            )
            config = _config(tmp_path / "c.toml", data_dir, port, trakt, simkl, profiles)
            daemon = Daemon(config, port, tmp_path / "daemon.log")
            try:
                yield World(trakt, simkl, daemon, config, data_dir)
            finally:
                if daemon.proc is not None and daemon.proc.poll() is None:
                    daemon.stop()

    async def test_several_profiles_need_the_profile_option(
        self, household: World, tmp_path: Path
    ) -> None:
        for command in (
            ["import", "letterboxd", str(letterboxd_zip(tmp_path))],
            ["import", "tvtime", str(tvtime_zip(tmp_path))],
            ["export", "letterboxd"],
        ):
            run = await cli(household.config, *command)
            assert run.code == 2, run
            assert len(run.err_lines) == 1
            assert "--profile" in run.err and "alex, sam" in run.err

    async def test_plays_go_to_the_named_profiles_accounts_only(
        self, household: World, tmp_path: Path
    ) -> None:
        rows = [diary_row("Dune", 2021, "2024-01-06", "https://boxd.it/t002", rating="4")]
        diary = write_text(tmp_path / "diary.csv", csv_text(DIARY_HEADER, rows))
        run = await cli(household.config, "import", "letterboxd", str(diary), "--profile", "sam")
        assert run.code == 0, run.err
        assert "for profile sam" in run.out

        await household.daemon.start()
        await wait_for(
            lambda: (
                len(trakt_movies(household.trakt, "sam")) == 1
                and len(simkl_plays(household.simkl, "movie", "sam")) == 1
            ),
            30,
            "sam's play on sam's accounts",
        )
        assert trakt_movies(household.trakt, "alex") == []
        assert simkl_plays(household.simkl, "movie", "alex") == []


# -- bad input ----------------------------------------------------------------------------------


class TestBadInput:
    """One line naming the file and the problem, exit 2, nothing queued."""

    @pytest.fixture
    def config(self, tmp_path: Path) -> Path:
        path = tmp_path / "crosswatchd.toml"
        path.write_text(
            f'data_dir = "{tmp_path / "data"}"\n[trakt]\nclient_id = "cid"\n'
            'api_url = "http://127.0.0.1:9"\n'
        )
        return path

    @pytest.mark.parametrize(
        ("command", "make", "said"),
        [
            (
                "letterboxd",
                lambda p: write_text(p / "x.csv", "\x00\x01binary"),
                "neither a ZIP nor a CSV",
            ),
            (
                "letterboxd",
                lambda p: write_zip(p / "x.zip", {"ratings.csv": "a\n"}),
                "has no diary.csv",
            ),
            (
                "letterboxd",
                lambda p: write_zip(p / "x.zip", {"diary.csv": "Name\n"}, encrypted=True),
                "password-protected; extract it first",
            ),
            (
                "letterboxd",
                lambda p: write_text(p / "x.csv", "Name,Year\nDune,2021\n"),
                "no 'Letterboxd URI', 'Watched Date' columns",
            ),
            (
                "tvtime",
                lambda p: write_zip(p / "x.zip", {"diary.csv": "a\n"}),
                "is a Letterboxd export",
            ),
            (
                "tvtime",
                lambda p: write_zip(
                    p / "x.zip", {"tracking-prod-records-v2.csv": "key\n"}, encrypted=True
                ),
                "password-protected",
            ),
            (
                "tvtime",
                lambda p: write_text(p / "x.csv", "key,when\nk,1\n"),
                "no 'created_at' column",
            ),
        ],
    )
    async def test_a_file_that_cannot_be_read(
        self, config: Path, tmp_path: Path, command: str, make: Any, said: str
    ) -> None:
        path = make(tmp_path)

        run = await cli(config, "import", command, str(path))

        assert run.code == 2, run
        assert run.err_lines == [run.err_lines[0]] and str(path) in run.err and said in run.err
        assert "Traceback" not in run.err
        assert not (tmp_path / "data" / "outbox.sqlite3").exists()

    async def test_an_unknown_zone(self, config: Path, tmp_path: Path) -> None:
        diary = letterboxd_diary(tmp_path)

        run = await cli(config, "import", "letterboxd", str(diary), "--tz", "Mars/Olympus")

        assert run.code == 2
        assert run.err_lines == [
            f"crosswatchd: {diary}: --tz 'Mars/Olympus' is not a time zone; use an IANA name "
            "such as Europe/Paris or America/New_York"
        ]

    async def test_a_bad_row_is_skipped_and_named_and_the_rest_imported(
        self, config: Path, tmp_path: Path
    ) -> None:
        rows = [
            diary_row("Dune", 2021, "2024-02-30", "https://boxd.it/t002"),
            diary_row("Dune", 1984, "2024-01-05", "https://boxd.it/t001"),
        ]
        diary = write_text(tmp_path / "diary.csv", csv_text(DIARY_HEADER, rows))
        offline = write_text(tmp_path / "offline.toml", f'data_dir = "{tmp_path / "data"}"\n')

        run = await cli(offline, "import", "letterboxd", str(diary), "--dry-run")

        assert run.code == 0, run.err
        assert (
            "    diary.csv line 2: bad Watched Date '2024-02-30' (expected YYYY-MM-DD)" in run.out
        )
        assert "1 skipped, 2 rows read" in run.out
        assert "note: no title search is configured" in run.out

    async def test_a_profile_without_targets_has_nowhere_to_import_to(self, tmp_path: Path) -> None:
        config = tmp_path / "c.toml"
        config.write_text(f'data_dir = "{tmp_path / "data"}"\n')

        run = await cli(config, "import", "tvtime", str(tvtime_zip(tmp_path)))

        assert run.code == 2
        assert "no delivery target" in run.err


class TestProgressBar:
    async def test_a_bar_on_a_terminal(self, tmp_path: Path) -> None:
        config = tmp_path / "c.toml"
        config.write_text(
            f'data_dir = "{tmp_path / "data"}"\n[resolver]\nuse_search = false\n'
            '[trakt]\nclient_id = "cid"\napi_url = "http://127.0.0.1:9"\n'
        )
        master, slave = pty.openpty()
        reading = asyncio.get_running_loop().run_in_executor(None, _drain, master)
        proc = await asyncio.create_subprocess_exec(
            *COMMAND,
            "--config",
            str(config),
            "import",
            "letterboxd",
            str(letterboxd_zip(tmp_path)),
            "--dry-run",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=slave,
            env=_env(),
        )
        os.close(slave)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        terminal = await asyncio.wait_for(reading, 10)

        assert proc.returncode == 0
        assert "diary.csv:" in terminal and "/10 [" in terminal and "rows/s" in terminal
        assert out.decode().splitlines()[-1].startswith("dry run:")  # the report on stdout


def _drain(fd: int) -> str:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end is closed and everything was read
            break
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return data.decode(errors="replace")


# -- export letterboxd ------------------------------------------------------------------------


@pytest.fixture
def export_config(tmp_path: Path) -> Path:
    path = tmp_path / "crosswatchd.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n[trakt]\nclient_id = "cid"\n')
    return path


async def hold(tmp_path: Path, events: list[PlayEvent]) -> None:
    box = await Outbox.open(tmp_path / "data" / "outbox.sqlite3", providers=["trakt"])
    try:
        for offset in range(0, len(events), 2000):
            await box.enqueue_many(events[offset : offset + 2000])
    finally:
        await box.close()


def plex_play(item: Item, at: datetime) -> PlayEvent:
    return PlayEvent(Source.PLEX, Action.WATCHED, "me", item, at)


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


class TestExport:
    async def test_a_late_evening_play_in_new_york_is_that_day_there_and_the_next_in_tokyo(
        self, export_config: Path, tmp_path: Path
    ) -> None:
        dune = Item(MediaKind.MOVIE, "Dune", 2021, ids=Ids(imdb="tt1160419", tmdb="438631"))
        evening = datetime(2024, 6, 1, 23, 30, tzinfo=NEW_YORK)
        await hold(tmp_path, [plex_play(dune, evening.astimezone(UTC))])

        there = await cli(export_config, "export", "letterboxd", "--tz", "America/New_York")
        tokyo = await cli(export_config, "export", "letterboxd", "--tz", "Asia/Tokyo")

        assert there.code == tokyo.code == 0, there.err + tokyo.err
        assert there.out == f"{HEADER_LINE}\nDune,2021,tt1160419,438631,2024-06-01,,false\n"
        assert tokyo.out == f"{HEADER_LINE}\nDune,2021,tt1160419,438631,2024-06-02,,false\n"

    async def test_rewatches_ratings_ids_and_since(
        self, export_config: Path, tmp_path: Path
    ) -> None:
        """One film known by imdb in one play and tmdb in another: every row has both ids;
        Rewatch counts plays before --since; the latest rating of the film."""
        t0 = datetime(2024, 1, 10, 20, 0, tzinfo=UTC)
        by_imdb = Item(MediaKind.MOVIE, "Dune", 2021, ids=Ids(imdb="tt1160419"))
        by_tmdb = Item(MediaKind.MOVIE, "Dune", 2021, ids=Ids(tmdb="438631"))
        both = Item(MediaKind.MOVIE, "Dune", 2021, ids=Ids(imdb="tt1160419", tmdb="438631"))
        other = Item(MediaKind.MOVIE, "Red, White & Royal Blue", 2023, ids=Ids(tmdb="930094"))
        episode = Item(
            MediaKind.EPISODE,
            show_title="Futurama",
            show_ids=Ids(tvdb="73871"),
            season=2,
            number=15,
        )
        rate = [
            PlayEvent(Source.PLEX, Action.RATE, "me", both, t0, rating=8),
            PlayEvent(Source.PLEX, Action.RATE, "me", by_imdb, t0 + timedelta(days=50), rating=7),
        ]
        await hold(
            tmp_path,
            [
                plex_play(by_imdb, t0),
                plex_play(other, t0 + timedelta(days=1)),
                plex_play(episode, t0 + timedelta(days=2)),
                plex_play(by_tmdb, t0 + timedelta(days=40)),
                plex_play(both, t0 + timedelta(days=60)),
                *rate,
            ],
        )

        run = await cli(
            export_config, "export", "letterboxd", "--tz", "UTC", "--since", "2024-02-01"
        )

        assert run.code == 0, run.err
        assert run.out.splitlines() == [
            HEADER_LINE,
            "Dune,2021,tt1160419,438631,2024-02-19,7,true",
            "Dune,2021,tt1160419,438631,2024-03-10,7,true",
        ]
        everything = await cli(export_config, "export", "letterboxd", "--tz", "UTC")
        assert everything.out.splitlines()[1:3] == [
            "Dune,2021,tt1160419,438631,2024-01-10,7,false",
            '"Red, White & Royal Blue",2023,,930094,2024-01-11,,false',
        ]

    async def test_a_large_export_is_split_under_1_mb_and_reads_back_the_same(
        self, export_config: Path, tmp_path: Path
    ) -> None:
        """About 1.2 MB of rows: two files, each under 1,000,000 bytes and with the header;
        Python's csv module reads back every title (commas, quotes, diacritics)."""
        t0 = datetime(2020, 1, 1, 12, tzinfo=UTC)
        titles = [f'Film {n}, "Part" à l\'été & co' for n in range(17_000)]
        await hold(
            tmp_path,
            [
                plex_play(
                    Item(MediaKind.MOVIE, title, 1990, ids=Ids(imdb=f"tt{10_000_000 + n}")),
                    t0 + timedelta(minutes=n),
                )
                for n, title in enumerate(titles)
            ],
        )
        output = tmp_path / "out" / "diary.csv"
        output.parent.mkdir()

        run = await cli(
            export_config, "export", "letterboxd", "--tz", "UTC", "--output", str(output)
        )
        streamed = await cli(export_config, "export", "letterboxd", "--tz", "UTC")

        assert run.code == 0, run.err
        parts = [output, output.with_name("diary-2.csv")]
        assert set(output.parent.iterdir()) == set(parts)
        sizes = [p.stat().st_size for p in parts]
        assert all(size <= MAX_FILE_BYTES for size in sizes) and sum(sizes) > 1_200_000
        read = []
        for part in parts:
            text = part.read_text("utf-8")
            assert text.startswith(HEADER_LINE + "\n")
            read += [row["Title"] for row in rows_of(text)]
        assert read == titles
        assert f"wrote 17,000 plays of default to {output}, {parts[1]}" in run.err
        assert len(streamed.out.encode()) > MAX_FILE_BYTES
        assert [row["Title"] for row in rows_of(streamed.out)] == titles
        assert "use --output FILE" in streamed.err

    async def test_an_unknown_zone_is_one_line_exit_2(self, export_config: Path) -> None:
        run = await cli(export_config, "export", "letterboxd", "--tz", "Nowhere/Land")

        assert run.code == 2 and len(run.err_lines) == 1
        assert "'Nowhere/Land' is not a time zone" in run.err

    async def test_the_import_and_the_export_round_trip(self, world: World, tmp_path: Path) -> None:
        """A diary imported and exported in the same zone has its films on their dates."""
        run = await cli(
            world.config,
            "import",
            "letterboxd",
            str(letterboxd_zip(tmp_path)),
            "--tz",
            "Europe/Paris",
        )
        assert run.code == 0, run.err

        export = await cli(world.config, "export", "letterboxd", "--tz", "Europe/Paris")

        rows = rows_of(export.out)
        assert [(r["Title"], int(r["Year"])) for r in rows] == MATCHED
        assert [r["WatchedDate"] for r in rows] == [
            "2024-01-05",
            "2024-01-06",
            "2024-02-14",
            "2024-03-01",
            "2024-03-02",
            "2024-04-10",
            "2024-04-11",
        ]
        assert [r["Rewatch"] for r in rows].count("true") == 1
        assert rows[1]["Rating10"] == rows[5]["Rating10"] == "9"
