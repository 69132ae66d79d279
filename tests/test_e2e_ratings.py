"""Ratings end to end: the real daemon, Plex ``media.rate`` webhooks (the real capture, its
``rating`` changed the way Plex would send it), and the strict Trakt and SIMKL fakes. What the
person sees on each service after rating, re-rating and clearing, and the order of two ratings
kept through an outage and a SIGKILL."""

from __future__ import annotations

import asyncio
import copy
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from crosswatchd.tokens.files import TokenFile
from tests.e2e_support import FIXTURES, Daemon, free_port, post_webhook, wait_for, write_config
from tests.fakes.catalog import default_catalog
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt

RATE = "movie_media.rate_plex-agent_big-trouble-in-little-china.json"
EPISODE = "episode_media.pause_legacy-agent_thetvdb_futurama.json"


def rate_payload(rating: float | None, name: str = RATE) -> dict[str, Any]:
    payload: dict[str, Any] = copy.deepcopy(orjson.loads((FIXTURES / name).read_bytes()))
    payload["event"] = "media.rate"
    payload["user"] = True
    if rating is None:
        payload.pop("rating", None)
    else:
        payload["rating"] = rating
    return payload


World = tuple[FakeTrakt, FakeSimkl, Daemon, Path]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    catalog = default_catalog()
    async with FakeTrakt(catalog=catalog) as trakt, FakeSimkl(catalog=catalog) as simkl:
        data_dir = tmp_path / "data"
        TokenFile(data_dir, "trakt").write(trakt.issue_token())
        TokenFile(data_dir, "simkl").write({"access_token": simkl.issue_token()})
        port = free_port()
        config = write_config(
            tmp_path / "crosswatchd.toml", data_dir=data_dir, port=port, trakt=trakt, simkl=simkl
        )
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        try:
            yield trakt, simkl, daemon, data_dir
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()


def trakt_rating(fake: FakeTrakt) -> int | None:
    movie = fake.catalog.movie({"imdb": "tt0090728"})
    assert movie is not None
    return fake.user().rating_of(("movie", movie["ids"]["trakt"]))


def simkl_rating(fake: FakeSimkl) -> int | None:
    movie = fake.catalog.movie({"imdb": "tt0090728"})
    assert movie is not None
    return fake.user().rating_of("movie", movie["ids"]["simkl"])


async def rate(http: aiohttp.ClientSession, daemon: Daemon, rating: float | None) -> None:
    assert await post_webhook(http, daemon.port, rate_payload(rating)) == 202


async def test_rate_rerate_half_star_and_clear_reach_both_services(world: World) -> None:
    trakt, simkl, daemon, _ = world
    await daemon.start()
    async with aiohttp.ClientSession() as http:
        for sent, shown in ((8, 8), (7, 7), (4.5, 5)):
            await rate(http, daemon, sent)
            await wait_for(
                lambda shown=shown: trakt_rating(trakt) == shown == simkl_rating(simkl),
                20,
                f"rating {shown} on both",
            )
        await rate(http, daemon, None)
        await wait_for(
            lambda: trakt_rating(trakt) is None and simkl_rating(simkl) is None,
            20,
            "the rating removed on both",
        )
        # An episode rating goes to Trakt only: SIMKL rates movies and shows.
        episode = rate_payload(9, EPISODE)
        assert await post_webhook(http, daemon.port, episode) == 202
        await wait_for(lambda: any(k[0] == "episode" for k in trakt.ratings), 20, "episode")
        await asyncio.sleep(0.5)
    show = trakt.catalog.show({"tvdb": 73871})
    assert show is not None
    futurama = trakt.catalog.episode_of(show, 2, 15)
    assert futurama is not None
    assert trakt.user().rating_of(("episode", futurama["ids"]["trakt"])) == 9
    simkl_posts = [r["path"] for r in simkl.requests if r["method"] == "POST"]
    assert simkl_posts == ["/sync/ratings"] * 3 + ["/sync/ratings/remove"]  # no episode
    assert daemon.stop() == 0


async def test_two_ratings_across_an_outage_and_a_sigkill_end_as_the_later_one(
    world: World,
) -> None:
    trakt, simkl, daemon, data_dir = world
    trakt.down = True
    simkl.down = True
    await daemon.start()
    async with aiohttp.ClientSession() as http:
        await rate(http, daemon, 8)
        await wait_for(lambda: len(trakt.requests) > 0, 10, "a refused try")
        daemon.kill()
        await daemon.start()
        await rate(http, daemon, 6)
        await asyncio.sleep(0.5)
        refused = len(trakt.requests)
        trakt.down = simkl.down = False
        await wait_for(
            lambda: trakt_rating(trakt) == 6 == simkl_rating(simkl), 30, "the later rating"
        )
        await asyncio.sleep(1.5)  # an older rating sent late would overwrite it now
    assert trakt_rating(trakt) == 6 and simkl_rating(simkl) == 6
    posts = [r for r in trakt.requests[refused:] if r[:2] == ("POST", "/sync/ratings")]
    assert 1 <= len(posts) <= 2  # the 6, maybe after an 8 already on its way when it came
    assert daemon.stop() == 0
    with sqlite3.connect(data_dir / "outbox.sqlite3") as db:
        rows = db.execute(
            "SELECT e.rating, d.provider, d.state, d.reason_kind FROM deliveries d"
            " JOIN events e ON e.id = d.event_id ORDER BY d.id"
        ).fetchall()
    assert rows == [
        (8, "trakt", "dropped", "superseded"),
        (8, "simkl", "dropped", "superseded"),
        (6, "trakt", "delivered", None),
        (6, "simkl", "delivered", None),
    ]
