"""Reconcile of ratings: the Plex server owner's stars against Trakt's and SIMKL's ratings;
missing and different ones are enqueued, a rating only on a target is reported and never
removed, and ratings that cannot be read never stop the plays being reconciled."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crosswatchd.tokens import TokenStore
from tests.fakes.catalog import Catalog
from tests.fakes.plex_server import FakePlexServer
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt
from tests.reconcile_support import T0, add_media
from tests.test_reconcile import World


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    catalog = Catalog()
    async with (
        FakeTrakt(catalog=catalog) as trakt,
        FakeSimkl(catalog=catalog) as simkl,
        FakePlexServer(token="owner-token", owner="alex") as plex,
    ):
        media = add_media(catalog, plex, movies=4, shows=1, episodes=2)
        data_dir = tmp_path / "data"
        TokenStore(data_dir, "trakt").save(trakt.issue_token())
        TokenStore(data_dir, "simkl").save({"access_token": simkl.issue_token()})
        yield World(tmp_path, trakt, simkl, plex, media)


def rated(world: World) -> dict[str, Any]:
    """Movie 0 rated 8 everywhere, movie 1 rated 7 on Plex but 5 on Trakt and not on SIMKL,
    movie 2 rated 4 on the targets only, the show 9 and its first episode 6 on Plex only."""
    movies = world.media[:4]
    episode = world.media[4]
    show = episode.entry["show"]
    show_key = str(int(episode.rating_key) - 1)
    world.plex.rate(movies[0].rating_key, 8.0, rated_at=T0)
    world.plex.rate(movies[1].rating_key, 7.0, rated_at=T0)
    world.plex.rate(show_key, 9.0, rated_at=T0)
    world.plex.rate(episode.rating_key, 5.5, rated_at=T0)  # half stars: 6
    for n, value in ((0, 8), (1, 5), (2, 4)):
        world.trakt.rate(("movie", movies[n].entry["ids"]["trakt"]), value)
    for n, value in ((0, 8), (2, 4)):
        world.simkl.rate("movie", movies[n].entry["ids"]["simkl"], value)
    return {"movies": movies, "show": show, "episode": episode}


async def test_missing_and_different_ratings_are_sent_extra_ones_only_reported(
    world: World,
) -> None:
    items = rated(world)
    report = await world.run_pass(reconcile={"ratings": True})
    assert not report.errors
    trakt = report.profiles["default"]["trakt"].ratings
    simkl = report.profiles["default"]["simkl"].ratings
    assert trakt is not None and simkl is not None
    assert {
        k: trakt[k] for k in ("source", "target", "missing", "different", "enqueued", "extra")
    } == {
        "source": 4,
        "target": 3,
        "missing": 2,  # the show, the episode
        "different": 1,  # movie 1: 7 on Plex, 5 on Trakt
        "enqueued": 3,
        "extra": 1,  # movie 2
    }
    # SIMKL rates movies and shows only: the episode is not compared, not sent.
    assert {
        k: simkl[k] for k in ("source", "target", "missing", "different", "enqueued", "extra")
    } == {
        "source": 3,
        "target": 2,
        "missing": 2,
        "different": 0,
        "enqueued": 2,
        "extra": 1,
    }
    await world.deliver()
    movies, show, episode = items["movies"], items["show"], items["episode"]
    me = world.trakt.user()
    assert me.rating_of(("movie", movies[1].entry["ids"]["trakt"])) == 7
    assert me.rating_of(("show", show["ids"]["trakt"])) == 9
    assert me.rating_of(("episode", episode.entry["ids"]["trakt"])) == 6
    assert me.rating_of(("movie", movies[2].entry["ids"]["trakt"])) == 4  # never removed
    simkl_me = world.simkl.user()
    assert simkl_me.rating_of("movie", movies[1].entry["ids"]["simkl"]) == 7
    assert simkl_me.rating_of("show", show["ids"]["simkl"]) == 9
    assert simkl_me.rating_of("movie", movies[2].entry["ids"]["simkl"]) == 4

    again = await world.run_pass(reconcile={"ratings": True})
    for result in again.profiles["default"].values():
        assert result.ratings is not None
        assert (result.ratings["missing"], result.ratings["different"]) == (0, 0)
        assert result.ratings["enqueued"] == 0


async def test_an_unreadable_plex_library_is_reported_and_the_plays_still_reconciled(
    world: World,
) -> None:
    rated(world)
    world.plex.add_play(world.media[3].rating_key, viewed_at=T0)
    world.plex.fail_next(500, 3, path="/library/sections")  # every in-process try
    report = await world.run_pass(reconcile={"ratings": True})
    assert not report.errors  # the plays' sides were read
    for result in report.profiles["default"].values():
        assert result.enqueued == 1
        assert result.ratings is not None and "plex library" in result.ratings["error"]


async def test_ratings_a_target_cannot_read_are_reported_apart(world: World) -> None:
    rated(world)
    world.trakt.fail_next(503, count=3, path="/sync/ratings")
    report = await world.run_pass(reconcile={"ratings": True})
    trakt = report.profiles["default"]["trakt"]
    assert trakt.error is None and not report.errors
    assert trakt.ratings is not None and "trakt ratings" in trakt.ratings["error"]
    assert report.profiles["default"]["simkl"].ratings["enqueued"] == 2  # type: ignore[index]
