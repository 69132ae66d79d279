"""End to end with two targets: SIMKL is down for the whole first half of the test while Trakt
receives every play on time; then SIMKL recovers and receives every play exactly once, the
episodes under the show's ids that the resolver found (Plex sends only the episode's ids)."""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from crosswatchd.tokens.files import TokenFile
from tests.e2e_support import (
    FIXTURES,
    Daemon,
    free_port,
    movie_payload,
    post_webhook,
    wait_for,
    write_config,
)
from tests.fakes.catalog import Catalog, default_catalog
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt

MOVIES = 6


def _bobs_burgers_scrobble() -> dict[str, Any]:
    """The real Bob's Burgers S09E15 payload (new Plex agent: episode ids only), finished."""
    payload = copy.deepcopy(
        orjson.loads(
            (FIXTURES / "episode_media.pause_plex-agent_bobs-burgers_s09e15.json").read_bytes()
        )
    )
    payload["event"] = "media.scrobble"
    payload["user"] = True
    return payload


def _trakt_plays(fake: FakeTrakt) -> Counter[str]:
    out: Counter[str] = Counter()
    for h in fake.history:
        if h["type"] == "movie":
            out[f"movie:{h['movie']['ids']['imdb']}"] += 1
        else:
            out[f"episode:{h['episode']['ids']['trakt']}"] += 1
    return out


def _simkl_plays(fake: FakeSimkl) -> Counter[str]:
    out: Counter[str] = Counter()
    for h in fake.history:
        if h["type"] == "movie":
            out[f"movie:{h['simkl']}"] += 1
        else:
            out[f"episode:{h['simkl']}:{h['season']}:{h['number']}"] += 1
    return out


@pytest.fixture
async def targets(
    tmp_path: Path,
) -> AsyncIterator[tuple[FakeTrakt, FakeSimkl, Daemon, Catalog]]:
    catalog = default_catalog()
    for n in range(MOVIES):
        catalog.add_movie(f"Test Movie {n}", 2000, imdb=f"tt{9_000_000 + n}", tmdb=800_000 + n)
    async with FakeTrakt(catalog=catalog) as trakt, FakeSimkl(catalog=catalog) as simkl:
        data_dir = tmp_path / "data"
        TokenFile(data_dir, "trakt").write(trakt.issue_token())
        TokenFile(data_dir, "simkl").write({"access_token": simkl.issue_token()})
        port = free_port()
        config = write_config(
            tmp_path / "crosswatchd.toml",
            data_dir=data_dir,
            port=port,
            trakt=trakt,
            simkl=simkl,
            use_search=True,
        )
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        try:
            yield trakt, simkl, daemon, catalog
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()


async def test_simkl_outage_never_delays_trakt_and_simkl_gets_every_play_once_after(
    targets: tuple[FakeTrakt, FakeSimkl, Daemon, Catalog],
) -> None:
    trakt, simkl, daemon, catalog = targets
    simkl.down = True
    await daemon.start()
    async with aiohttp.ClientSession() as http:
        for n in range(MOVIES):
            assert await post_webhook(http, daemon.port, movie_payload(n)) == 202
        assert await post_webhook(http, daemon.port, _bobs_burgers_scrobble()) == 202
        # Trakt gets all seven while SIMKL is still down.
        await wait_for(lambda: sum(_trakt_plays(trakt).values()) >= MOVIES + 1, 30, "Trakt")
        assert not simkl.history
        simkl_calls_while_down = len(simkl.requests)
        assert simkl_calls_while_down > 0  # it kept trying, with backoff

        simkl.down = False
        await wait_for(lambda: sum(_simkl_plays(simkl).values()) >= MOVIES + 1, 60, "SIMKL")
        await asyncio.sleep(1.5)  # let any (wrong) duplicate arrive before judging
    trakt_plays = _trakt_plays(trakt)
    simkl_plays = _simkl_plays(simkl)
    assert all(n == 1 for n in trakt_plays.values()), trakt_plays
    assert all(n == 1 for n in simkl_plays.values()), simkl_plays
    assert len(trakt_plays) == len(simkl_plays) == MOVIES + 1

    bobs = catalog.show({"tvdb": 194031})
    assert bobs is not None
    episode = next(h for h in simkl.history if h["type"] == "episode")
    assert (episode["simkl"], episode["season"], episode["number"]) == (bobs["ids"]["simkl"], 9, 15)
    assert episode["show_ids"], "SIMKL got the episode under the show's ids"
    assert trakt.rate_limited == 0
    assert not simkl.rate_limited

    assert daemon.stop() == 0
