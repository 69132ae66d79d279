"""``crosswatchd reconcile`` as the real console script: its report, ``--json``, ``--dry-run``,
the exit codes (0 done, 1 a side could not be read or another pass runs, 2 a config error),
and the ``[reconcile]`` settings from the file and the environment."""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from crosswatchd.config import load_settings
from crosswatchd.errors import ConfigError
from crosswatchd.tokens.files import TokenFile
from tests.fakes.catalog import Catalog
from tests.fakes.plex_server import FakePlexServer
from tests.fakes.trakt import FakeTrakt
from tests.reconcile_support import add_media, play_times
from tests.test_cli import Home, cli


@dataclass
class Setup:
    home: Home
    trakt: FakeTrakt
    plex: FakePlexServer


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    catalog = Catalog()
    async with FakeTrakt(catalog=catalog) as trakt, FakePlexServer(token="owner-token") as plex:
        media = add_media(catalog, plex, movies=5, shows=0, episodes=0)
        for n, (item, at) in enumerate(zip(media, play_times(5), strict=True)):
            plex.add_play(item.rating_key, viewed_at=at)
            if n:
                trakt.add_play(item.entry, at)
        home = Home(tmp_path / "data", tmp_path / "crosswatchd.toml")
        home.configure(
            trakt={
                "client_id": trakt.client_id,
                "client_secret": trakt.client_secret,
                "api_url": trakt.url,
            },
            plex={"url": plex.url, "token": plex.token},
            resolver={"use_search": False},
            delivery={"timeout_s": 5},
        )
        TokenFile(home.data_dir, "trakt").write(trakt.issue_token())
        yield Setup(home, trakt, plex)


async def test_json_report_of_a_pass_and_what_it_enqueued(setup: Setup) -> None:
    run = await cli(setup.home.config, "reconcile", "--json")
    assert run.code == 0, run.err
    report = orjson.loads(run.out)
    trakt = report["profiles"]["default"]["trakt"]
    assert {k: trakt[k] for k in ("source_plays", "target_plays", "missing", "enqueued")} == {
        "source_plays": 5,
        "target_plays": 4,
        "missing": 1,
        "enqueued": 1,
    }
    assert report["errors"] == [] and report["dry_run"] is False
    assert await setup.home.query("SELECT provider, kind FROM deliveries") == [("trakt", "play")]
    status = await cli(setup.home.config, "status", "--json")
    assert orjson.loads(status.out)["reconcile"]["default"]["trakt"]["enqueued"] == 1


async def test_dry_run_text_report_enqueues_nothing(setup: Setup) -> None:
    run = await cli(setup.home.config, "reconcile", "--dry-run")
    assert run.code == 0, run.err
    assert "dry run: nothing enqueued" in run.out
    row = next(line for line in run.out.splitlines() if line.strip().startswith("trakt"))
    assert row.split()[1:5] == ["5", "4", "1", "1"]  # source, target, missing, enqueued
    assert await setup.home.query("SELECT count(*) FROM deliveries") == [(0,)]


async def test_a_target_that_cannot_be_read_is_named_and_exits_1(setup: Setup) -> None:
    setup.trakt.down = True
    run = await cli(setup.home.config, "reconcile")
    assert run.code == 1
    assert run.err_lines == [
        line for line in run.err_lines if line.startswith("crosswatchd: reconcile: default/trakt")
    ]
    assert "could not be read" in run.err and len(run.err_lines) == 1


async def test_a_source_that_cannot_be_read_is_named_and_exits_1(setup: Setup) -> None:
    setup.plex.down = True
    run = await cli(setup.home.config, "reconcile", "--json")
    assert run.code == 1
    assert "sources could not be read: plex" in run.err and "HTTP 503" in run.err
    assert orjson.loads(run.out)["errors"]


async def test_no_source_is_a_config_error(setup: Setup, tmp_path: Path) -> None:
    home = Home(tmp_path / "other", tmp_path / "other.toml")
    home.configure(trakt={"client_id": "cid"})
    run = await cli(home.config, "reconcile")
    assert run.code == 2
    assert run.err_lines == [
        "crosswatchd: config error: tautulli.url: reconcile needs a source: set tautulli.url"
        " and tautulli.api_key, or plex.url and plex.token"
    ]


async def test_an_unknown_profile_is_a_config_error(setup: Setup) -> None:
    run = await cli(setup.home.config, "reconcile", "--profile", "nobody")
    assert run.code == 2 and "--profile" in run.err


async def test_a_pass_already_running_is_one_line_and_exit_1(setup: Setup) -> None:
    setup.home.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(setup.home.data_dir / "reconcile.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        run = await cli(setup.home.config, "reconcile")
    finally:
        os.close(fd)
    assert run.code == 1
    assert run.err_lines == [
        f"crosswatchd: a reconcile pass (pid 4242) is already running on"
        f" {setup.home.data_dir}; try again later"
    ]


def test_reconcile_settings_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[reconcile]\ninterval_s = 3600\ninclude_marked_watched = true\n")
    settings = load_settings(path, environ={"CROSSWATCHD_RECONCILE__MATCH_WINDOW_S": "600"})
    assert settings.reconcile.interval_s == 3600 and settings.reconcile.include_marked_watched
    assert settings.match_window_s() == 600.0
    assert load_settings(environ={}).match_window_s() == 14400.0  # the dedupe window
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"CROSSWATCHD_RECONCILE__INTERVAL_S": "-5"})
    assert caught.value.key == "CROSSWATCHD_RECONCILE__INTERVAL_S"


async def test_a_profile_added_at_run_time_is_reconciled(setup: Setup) -> None:
    """``crosswatchd profile add`` (no config edit): the next pass compares that person's
    plays with their own account and queues what it lacks there, and nowhere else."""
    sam_id = 238960586
    setup.plex.add_account(sam_id, "sam")
    keys = sorted({play["ratingKey"] for play in setup.plex.history})[:2]
    for key, at in zip(keys, play_times(2), strict=True):
        setup.plex.add_play(key, account_id=sam_id, viewed_at=at)
    added = await cli(setup.home.config, "profile", "add", "sam", "--plex-account", "sam")
    assert added.code == 0, added.err
    TokenFile(setup.home.data_dir, "trakt", "sam").write(setup.trakt.issue_token(user="sam"))

    run = await cli(setup.home.config, "reconcile", "--json", "--profile", "sam")
    assert run.code == 0, run.err
    report = orjson.loads(run.out)
    assert set(report["profiles"]) == {"sam"}
    sam = report["profiles"]["sam"]["trakt"]
    assert (sam["source_plays"], sam["missing"], sam["enqueued"]) == (2, 2, 2)
    whole = orjson.loads((await cli(setup.home.config, "reconcile", "--json")).out)
    assert set(whole["profiles"]) == {"default", "sam"}
    assert whole["profiles"]["sam"]["trakt"]["enqueued"] == 0  # queued once
