"""End to end: the real daemon as a subprocess, real Plex multipart webhooks, a fake Trakt on
loopback, and SIGKILL at the worst moments. Every acknowledged (202) play must reach Trakt
exactly once, with the time it was watched."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from crosswatchd.tokens import TokenStore
from tests.e2e_support import (
    FIXTURES,
    SECRET,
    Daemon,
    free_port,
    movie_payload,
    post_webhook,
    wait_for,
    write_config,
)
from tests.fakes.catalog import default_catalog
from tests.fakes.trakt import FakeTrakt


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[FakeTrakt, Daemon]]:
    catalog = default_catalog()
    for n in range(200):
        catalog.add_movie(f"Test Movie {n}", 2000, imdb=f"tt{9_000_000 + n}", tmdb=800_000 + n)
    async with FakeTrakt(catalog=catalog) as fake:
        data_dir = tmp_path / "data"
        TokenStore(data_dir, "trakt").save(fake.issue_token())
        port = free_port()
        config = write_config(
            tmp_path / "crosswatchd.toml", data_dir=data_dir, port=port, trakt=fake
        )
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        try:
            yield fake, daemon
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()


def _imdb_counts(fake: FakeTrakt) -> Counter[str]:
    return Counter(str(h["movie"]["ids"]["imdb"]) for h in fake.history if h["type"] == "movie")


async def test_sigkill_mid_send_then_restart_delivers_every_acknowledged_play_once(
    world: tuple[FakeTrakt, Daemon],
) -> None:
    fake, daemon = world
    await daemon.start()
    acked: list[str] = []
    async with aiohttp.ClientSession() as http:
        fake.delay_s = 2.0  # Trakt is slow: the first POST /sync/history stays in flight
        for n in range(12):
            assert await post_webhook(http, daemon.port, movie_payload(n)) == 202
            acked.append(f"tt{9_000_000 + n}")
        await wait_for(
            lambda: any(m == "POST" and p == "/sync/history" for m, p, _ in fake.requests),
            15,
            "a history POST in flight",
        )
        daemon.kill()  # mid-request: Trakt will still record what it received
        await asyncio.sleep(fake.delay_s + 0.5)
        landed_before_restart = sum(_imdb_counts(fake).values())
        assert landed_before_restart >= 1, "the in-flight POST should have landed"
        fake.delay_s = 0.0

        await daemon.start()
        for n in range(12, 24):
            assert await post_webhook(http, daemon.port, movie_payload(n)) == 202
            acked.append(f"tt{9_000_000 + n}")
        await wait_for(lambda: set(acked) <= set(_imdb_counts(fake)), 60, "all plays")
        await asyncio.sleep(1.0)  # let any (wrong) duplicate arrive before judging
    counts = _imdb_counts(fake)
    assert {imdb: counts[imdb] for imdb in acked} == dict.fromkeys(acked, 1)
    assert fake.rate_limited == 0
    assert daemon.stop() == 0
    assert SECRET not in daemon.log_path.read_text()


async def test_sigkill_during_webhook_burst_keeps_every_acknowledged_play(
    world: tuple[FakeTrakt, Daemon],
) -> None:
    fake, daemon = world
    await daemon.start()
    async with aiohttp.ClientSession() as http:

        async def send(n: int) -> tuple[str, int]:
            return f"tt{9_000_000 + n}", await post_webhook(http, daemon.port, movie_payload(n))

        burst = [asyncio.create_task(send(n)) for n in range(40)]
        await wait_for(lambda: sum(t.done() for t in burst) >= 10, 20, "some replies")
        daemon.kill()
        results = await asyncio.gather(*burst)
        acked = [imdb for imdb, status in results if status == 202]
        assert len(acked) >= 10
        assert all(status in (202, 0) for _, status in results)

        await daemon.start()
        await wait_for(lambda: set(acked) <= set(_imdb_counts(fake)), 60, "all acked plays")
        await asyncio.sleep(1.0)
    counts = _imdb_counts(fake)
    assert all(n == 1 for n in counts.values()), counts  # nothing twice, acked or not
    assert daemon.stop() == 0


async def test_sigterm_during_a_burst_from_8_senders_exits_0_in_10_s_and_loses_nothing(
    world: tuple[FakeTrakt, Daemon],
) -> None:
    """200 webhooks from 8 senders at once; SIGTERM in the middle. The daemon exits 0 within
    10 s; every play it acknowledged (202) is on Trakt exactly once after a restart; a
    webhook it did not acknowledge got a refusal or a closed connection, never a 202."""
    fake, daemon = world
    fake.delay_s = 0.3  # deliveries are in flight when the signal comes
    await daemon.start()
    assert daemon.proc is not None
    acked: list[str] = []
    refused: list[int] = []
    sent = 0

    async def sender(first: int) -> None:
        nonlocal sent
        async with aiohttp.ClientSession() as http:
            for n in range(first, 200, 8):
                sent += 1
                status = await post_webhook(http, daemon.port, movie_payload(n))
                if status == 202:
                    acked.append(f"tt{9_000_000 + n}")
                else:
                    refused.append(status)

    senders = [asyncio.create_task(sender(k)) for k in range(8)]
    await wait_for(lambda: sent >= 80, 30, "the burst under way")
    signalled = asyncio.get_running_loop().time()
    daemon.proc.terminate()
    code = await asyncio.to_thread(daemon.proc.wait, 15)
    took_s = asyncio.get_running_loop().time() - signalled
    await asyncio.gather(*senders)
    assert code == 0
    assert took_s < 10, f"exit took {took_s:.1f} s"
    assert 40 <= len(acked) < 200
    assert set(refused) <= {0, 503}  # a closed connection, or "stopping"
    fake.delay_s = 0.0
    await daemon.start()
    await wait_for(lambda: set(acked) <= set(_imdb_counts(fake)), 60, "every acknowledged play")
    await asyncio.sleep(1.0)  # let any (wrong) duplicate arrive before judging
    counts = _imdb_counts(fake)
    assert all(n == 1 for n in counts.values()), counts
    assert daemon.stop() == 0


async def test_watched_at_is_the_time_of_the_webhook_even_when_delivered_late(
    world: tuple[FakeTrakt, Daemon],
) -> None:
    fake, daemon = world
    fake.down = True  # Trakt is down when the play happens
    await daemon.start()
    async with aiohttp.ClientSession() as http:
        before = asyncio.get_running_loop().time()
        import time as _time

        sent_at = _time.time()
        assert await post_webhook(http, daemon.port, movie_payload(50)) == 202
        await asyncio.sleep(3.0)  # several failed attempts
        assert not fake.history
        fake.down = False
        await wait_for(lambda: bool(fake.history), 30, "the play after the outage")
        assert asyncio.get_running_loop().time() - before > 3.0
    watched_at = fake.history[0]["watched_at"]
    from crosswatchd.models import parse_utc

    assert abs(parse_utc(watched_at).timestamp() - sent_at) < 2.0
    assert daemon.stop() == 0


async def test_every_real_plex_payload_unmodified_gives_one_play_and_live_state_only(
    world: tuple[FakeTrakt, Daemon],
) -> None:
    """The reference payloads as Plex sent them: the one scrobble is one Trakt play at its
    receipt time; pauses/stops become /scrobble/pause below 80 % (never a play); the media.rate
    is the movie's rating 4 on Trakt; library.new, music and another account's event are
    answered 200 and go nowhere."""
    fake, daemon = world
    await daemon.start()
    expected = {
        "movie_media.scrobble_plex-agent_big-trouble-in-little-china.json": 202,
        "movie_media.rate_plex-agent_big-trouble-in-little-china.json": 202,
        "movie_media.stop_legacy-agent_imdb_barry-lyndon.json": 202,
        "episode_media.pause_legacy-agent_thetvdb_futurama.json": 202,
        "episode_media.pause_plex-agent_bobs-burgers_s09e15.json": 200,  # "user": false
        "episode_media.resume_plex-agent_solar-opposites_s01e03.json": 202,
        "episode_library.new_plex-agent_bluey_s02e50.json": 200,
        "official-doc-example_media.play_track.json": 200,
    }
    assert sorted(expected) == sorted(p.name for p in FIXTURES.glob("*.json"))
    async with aiohttp.ClientSession() as http:
        for name, status in expected.items():
            payload = orjson.loads((FIXTURES / name).read_bytes())
            assert await post_webhook(http, daemon.port, payload) == status, name
        await wait_for(lambda: bool(fake.history), 20, "the play")
        await wait_for(lambda: bool(fake.ratings), 20, "the rating")
        await wait_for(
            lambda: sum(s["path"] == "/scrobble/pause" for s in fake.scrobbles) >= 2,
            20,
            "the two pauses",
        )
        await asyncio.sleep(1.0)
    assert _imdb_counts(fake) == Counter({"tt0090728": 1})
    assert [(r["movie"]["ids"]["imdb"], r["rating"]) for r in fake.ratings.values()] == [
        ("tt0090728", 4)
    ]
    assert all(h["action"] == "watch" for h in fake.history)
    paused = [s["body"] for s in fake.scrobbles if s["path"] == "/scrobble/pause"]
    assert any(b.get("movie", {}).get("ids", {}).get("imdb") == "tt0072684" for b in paused)
    assert any(
        b.get("show", {}).get("ids", {}).get("tvdb") == 73871
        and b.get("episode") == {"season": 2, "number": 15}
        for b in paused
    ), paused
    assert all(float(s["body"]["progress"]) < 80 for s in fake.scrobbles)
    assert daemon.stop() == 0
