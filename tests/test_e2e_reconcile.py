"""Reconcile end to end: the real daemon (``crosswatchd serve``) runs its passes against the
strict fakes; ``crosswatchd reconcile`` runs one by hand beside it. The drift closes exactly
(every item once on both targets), a second pass finds nothing for two requests per target,
and neither a 503 nor a SIGKILL in the middle of a pass costs a play or adds one twice."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crosswatchd.tokens import TokenStore
from tests.e2e_support import (
    Daemon,
    free_port,
    movie_payload,
    post_webhook,
    wait_for,
    write_config,
)
from tests.fakes.catalog import Catalog
from tests.fakes.plex_server import FakePlexServer
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt
from tests.reconcile_support import Media, add_media, play_times

#: Source plays; Trakt and SIMKL hold all but these.
PLAYS = 500
TRAKT_MISSING = set(range(0, PLAYS, 10))  # 50
SIMKL_MISSING = set(list(range(3, PLAYS, 16))[:30])  # 30


@dataclass
class World:
    trakt: FakeTrakt
    simkl: FakeSimkl
    plex: FakePlexServer
    media: list[Media]
    daemon: Daemon
    config: Path
    data_dir: Path


def configure(path: Path, world: World, *, first_delay_s: float, interval_s: int) -> None:
    """The e2e daemon config, the Plex server as the source, reconcile on a short clock."""
    write_config(
        path,
        data_dir=world.data_dir,
        port=world.daemon.port,
        trakt=world.trakt,
        simkl=world.simkl,
    )
    with path.open("a") as fh:
        fh.write(
            f'[plex]\nurl = "{world.plex.url}"\ntoken = "{world.plex.token}"\n'
            f"[reconcile]\nfirst_delay_s = {first_delay_s}\ninterval_s = {interval_s}\n"
            "ratings = false\n"
        )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    catalog = Catalog()
    async with (
        FakeTrakt(catalog=catalog) as trakt,
        FakeSimkl(catalog=catalog) as simkl,
        FakePlexServer(token="owner-token", owner="alex") as plex,
    ):
        media = add_media(catalog, plex, movies=300, shows=10, episodes=20)
        assert len(media) == PLAYS
        for n, (item, at) in enumerate(zip(media, play_times(PLAYS), strict=True)):
            plex.add_play(item.rating_key, viewed_at=at)
            if n not in TRAKT_MISSING:
                trakt.add_play(item.entry, at)
            if n not in SIMKL_MISSING:
                simkl.add_play(item.entry, at)
        data_dir = tmp_path / "data"
        TokenStore(data_dir, "trakt").save(trakt.issue_token())
        TokenStore(data_dir, "simkl").save({"access_token": simkl.issue_token()})
        config = tmp_path / "crosswatchd.toml"
        daemon = Daemon(config, free_port(), tmp_path / "daemon.log")
        found = World(trakt, simkl, plex, media, daemon, config, data_dir)
        try:
            yield found
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()


def trakt_counts(fake: FakeTrakt) -> Counter[int]:
    return Counter(
        int(h["movie" if h["type"] == "movie" else "episode"]["ids"]["trakt"]) for h in fake.history
    )


def simkl_counts(fake: FakeSimkl) -> Counter[tuple[int, Any, Any]]:
    return Counter((p["simkl"], p["season"], p["number"]) for p in fake.history)


def every_item_once(world: World) -> bool:
    return len(world.trakt.history) == PLAYS and len(world.simkl.history) == PLAYS


def assert_every_item_once(world: World) -> None:
    assert set(trakt_counts(world.trakt).values()) == {1}
    assert len(trakt_counts(world.trakt)) == PLAYS
    assert set(simkl_counts(world.simkl).values()) == {1}
    assert len(simkl_counts(world.simkl)) == PLAYS


def passes(data_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    path = data_dir / "reconcile.sqlite3"
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        try:
            rows = db.execute("SELECT profile, provider, result FROM passes").fetchall()
        except sqlite3.OperationalError:  # the daemon is creating the file right now
            rows = []
    db.close()
    return {(p, t): orjson.loads(r) for p, t, r in rows}


def by_hand(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crosswatchd.cli", "--config", str(config), "reconcile", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def gets_since(world: World, trakt_start: int, simkl_start: int) -> tuple[int, int]:
    trakt = sum(1 for m, _, _ in world.trakt.requests[trakt_start:] if m == "GET")
    simkl = sum(1 for r in world.simkl.requests[simkl_start:] if r["method"] == "GET")
    return trakt, simkl


async def test_drift_closes_exactly_and_a_second_pass_costs_two_requests_per_target(
    world: World,
) -> None:
    configure(world.config, world, first_delay_s=0.2, interval_s=3600)
    await world.daemon.start()
    await wait_for(lambda: len(passes(world.data_dir)) == 2, 60, "the first pass")
    first = passes(world.data_dir)
    assert (first["default", "trakt"]["missing"], first["default", "trakt"]["enqueued"]) == (50, 50)
    assert (first["default", "simkl"]["missing"], first["default", "simkl"]["enqueued"]) == (30, 30)
    assert first["default", "trakt"]["source_plays"] == PLAYS
    await wait_for(lambda: every_item_once(world), 60, "every play delivered")
    await asyncio.sleep(0.5)
    assert_every_item_once(world)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{world.daemon.port}/metrics") as resp,
    ):
        metrics = await resp.text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }
    for provider, enqueued in (("trakt", 50), ("simkl", 30)):
        account = (("profile", "default"), ("provider", provider))
        passed = ("crosswatchd_reconcile_passes_total", (("outcome", "ok"), *account))
        assert samples[passed] == 1
        plays = ("crosswatchd_reconcile_enqueued_total", (("kind", "plays"), *account))
        assert samples[plays] == enqueued

    trakt_start, simkl_start = len(world.trakt.requests), len(world.simkl.requests)
    done = await asyncio.to_thread(by_hand, world.config, "--json")
    assert done.returncode == 0, done.stderr
    report = orjson.loads(done.stdout)
    for provider in ("trakt", "simkl"):
        figures = report["profiles"]["default"][provider]
        assert set(figures) >= {
            "source_plays",
            "target_plays",
            "missing",
            "enqueued",
            "extra",
            "unresolved",
            "api_calls",
            "duration_s",
        }
        assert (figures["missing"], figures["enqueued"], figures["extra"]) == (0, 0, 0)
        assert figures["target_plays"] == PLAYS
    assert all(n <= 2 for n in gets_since(world, trakt_start, simkl_start))
    assert world.daemon.stop() == 0
    assert_every_item_once(world)
    lines = [orjson.loads(line) for line in world.daemon.log_path.read_text().splitlines()]
    [done] = [line for line in lines if line.get("event") == "reconcile.done"]  # one per pass
    assert done["profiles"]["default"]["trakt"]["enqueued"] == 50
    assert done["profiles"]["default"]["simkl"]["enqueued"] == 30


async def test_a_503_during_a_pass_is_completed_by_the_next_one(world: World) -> None:
    world.trakt.fail_next(503, count=3, path="/sync/history")  # every try of one page
    configure(world.config, world, first_delay_s=0.2, interval_s=2)
    await world.daemon.start()
    await wait_for(lambda: len(passes(world.data_dir)) == 2, 60, "the first pass")
    assert "could not be read" in passes(world.data_dir)["default", "trakt"]["error"]
    await wait_for(lambda: every_item_once(world), 90, "the next pass and its deliveries")
    await asyncio.sleep(2.5)  # one more pass: nothing more
    assert "error" not in passes(world.data_dir)["default", "trakt"]
    assert world.daemon.stop() == 0
    assert_every_item_once(world)


async def test_a_sigkill_during_a_pass_loses_nothing_and_adds_nothing_twice(
    world: World,
) -> None:
    world.simkl.delay_s = 1.0  # the pass is reading SIMKL when it is killed
    configure(world.config, world, first_delay_s=0.2, interval_s=3600)
    await world.daemon.start()
    await wait_for(
        lambda: any(r["path"] == "/sync/activities" for r in world.simkl.requests),
        60,
        "the pass reading SIMKL",
    )
    world.daemon.kill()
    assert passes(world.data_dir).get(("default", "simkl")) is None
    world.simkl.delay_s = 0.0
    await world.daemon.start()
    await wait_for(lambda: every_item_once(world), 90, "the next pass and its deliveries")
    await asyncio.sleep(1.0)
    assert world.daemon.stop() == 0
    assert_every_item_once(world)
    again = await asyncio.to_thread(by_hand, world.config, "--json")
    assert again.returncode == 0, again.stderr
    for figures in orjson.loads(again.stdout)["profiles"]["default"].values():
        assert (figures["missing"], figures["enqueued"]) == (0, 0)


async def test_sigterm_during_a_pass_stops_the_daemon_at_once(world: World) -> None:
    world.simkl.delay_s = 30.0  # the pass waits on SIMKL
    configure(world.config, world, first_delay_s=0.2, interval_s=3600)
    await world.daemon.start()
    await wait_for(
        lambda: any(r["path"] == "/sync/activities" for r in world.simkl.requests),
        60,
        "the pass reading SIMKL",
    )
    began = time.monotonic()
    assert await asyncio.to_thread(world.daemon.stop) == 0
    assert time.monotonic() - began < 6.0
    assert "reconcile.error" not in world.daemon.log_path.read_text()


async def test_a_webhook_play_also_in_the_history_minutes_apart_is_not_enqueued_again(
    world: World,
) -> None:
    """The real Plex scrobble webhook of a movie, and the server's history row of the same
    viewing three minutes earlier: one play on each target."""
    n = 7
    imdb, tmdb = f"tt{9_000_000 + n}", 800_000 + n
    entry = world.trakt.catalog.add_movie(f"Test Movie {n}", 2000, imdb=imdb, tmdb=tmdb)
    rating_key = str(900_000 + n)
    world.plex.add_movie(rating_key, entry["title"], 2000, [f"imdb://{imdb}", f"tmdb://{tmdb}"])
    world.plex.add_play(rating_key, viewed_at=int(time.time()) - 180)
    configure(world.config, world, first_delay_s=2.0, interval_s=3600)
    await world.daemon.start()
    async with aiohttp.ClientSession() as http:
        assert await post_webhook(http, world.daemon.port, movie_payload(n)) == 202
    await wait_for(lambda: len(passes(world.data_dir)) == 2, 60, "the first pass")
    done = passes(world.data_dir)
    assert done["default", "trakt"]["enqueued"] == 50  # the drift, not the webhook's play
    assert done["default", "simkl"]["enqueued"] == 30
    await wait_for(
        lambda: len(world.trakt.history) == PLAYS + 1 and len(world.simkl.history) == PLAYS + 1,
        60,
        "every play delivered",
    )
    await asyncio.sleep(1.0)
    assert world.daemon.stop() == 0
    assert trakt_counts(world.trakt)[int(entry["ids"]["trakt"])] == 1
    assert simkl_counts(world.simkl)[(entry["ids"]["simkl"], None, None)] == 1
