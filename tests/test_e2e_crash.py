"""End to end: the real daemon as a subprocess, real Plex multipart webhooks, a fake Trakt on
loopback, and SIGKILL at the worst moments. Every acknowledged (202) play must reach Trakt
exactly once, with the time it was watched."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from crosswatchd.tokens import TokenStore
from tests.fakes.catalog import default_catalog
from tests.fakes.trakt import FakeTrakt

FIXTURES = Path(__file__).parent / "fixtures" / "plex"
SECRET = "e2e-secret-not-in-logs"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _movie_payload(n: int, event: str = "media.scrobble") -> dict[str, Any]:
    """The real Big Trouble in Little China scrobble, re-labelled as movie number *n*."""
    base = orjson.loads(
        (FIXTURES / "movie_media.scrobble_plex-agent_big-trouble-in-little-china.json").read_bytes()
    )
    payload = copy.deepcopy(base)
    payload["event"] = event
    meta = payload["Metadata"]
    meta["ratingKey"] = str(900_000 + n)
    meta["key"] = f"/library/metadata/{900_000 + n}"
    meta["title"] = f"Test Movie {n}"
    meta["guid"] = f"plex://movie/{n:024x}"
    meta["Guid"] = [{"id": f"imdb://tt{9_000_000 + n}"}, {"id": f"tmdb://{800_000 + n}"}]
    return payload


class Daemon:
    """``crosswatchd serve`` as a child process."""

    def __init__(self, config: Path, port: int, log_path: Path) -> None:
        self.config = config
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; we poll /healthz
                [sys.executable, "-m", "crosswatchd.cli", "--config", str(self.config), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert self.proc.poll() is None, self.log_path.read_text()
                await asyncio.sleep(0.05)
        raise AssertionError("daemon did not come up:\n" + self.log_path.read_text())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
        return self.proc.returncode


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[FakeTrakt, Daemon]]:
    catalog = default_catalog()
    for n in range(60):
        catalog.add_movie(f"Test Movie {n}", 2000, imdb=f"tt{9_000_000 + n}", tmdb=800_000 + n)
    async with FakeTrakt(catalog=catalog) as fake:
        data_dir = tmp_path / "data"
        TokenStore(data_dir, "trakt").save(fake.issue_token())
        port = _free_port()
        config = tmp_path / "crosswatchd.toml"
        config.write_text(
            f"""
data_dir = "{data_dir}"
[http]
port = {port}
[webhook]
secret = "{SECRET}"
[plex]
accounts = []
[trakt]
client_id = "{fake.client_id}"
client_secret = "{fake.client_secret}"
api_url = "{fake.url}"
[resolver]
use_search = false
[delivery]
timeout_s = 3.0
poll_s = 0.2
backoff_base_s = 0.2
backoff_max_s = 1.0
lease_s = 30
"""
        )
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        try:
            yield fake, daemon
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()


async def _post(http: aiohttp.ClientSession, port: int, payload: dict[str, Any]) -> int:
    form = aiohttp.FormData()
    form.add_field("payload", orjson.dumps(payload).decode(), content_type="application/json")
    form.add_field(
        "thumb", b"\xff\xd8\xff" + b"\0" * 20_000, filename="thumb.jpg", content_type="image/jpeg"
    )
    url = f"http://127.0.0.1:{port}/webhook/plex?token={SECRET}"
    try:
        async with http.post(url, data=form) as resp:
            return resp.status
    except aiohttp.ClientError:
        return 0


async def _wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s / 0.1)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


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
            assert await _post(http, daemon.port, _movie_payload(n)) == 202
            acked.append(f"tt{9_000_000 + n}")
        await _wait_for(
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
            assert await _post(http, daemon.port, _movie_payload(n)) == 202
            acked.append(f"tt{9_000_000 + n}")
        await _wait_for(lambda: set(acked) <= set(_imdb_counts(fake)), 60, "all plays")
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
            return f"tt{9_000_000 + n}", await _post(http, daemon.port, _movie_payload(n))

        burst = [asyncio.create_task(send(n)) for n in range(40)]
        await _wait_for(lambda: sum(t.done() for t in burst) >= 10, 20, "some replies")
        daemon.kill()
        results = await asyncio.gather(*burst)
        acked = [imdb for imdb, status in results if status == 202]
        assert len(acked) >= 10
        assert all(status in (202, 0) for _, status in results)

        await daemon.start()
        await _wait_for(lambda: set(acked) <= set(_imdb_counts(fake)), 60, "all acked plays")
        await asyncio.sleep(1.0)
    counts = _imdb_counts(fake)
    assert all(n == 1 for n in counts.values()), counts  # nothing twice, acked or not
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
        assert await _post(http, daemon.port, _movie_payload(50)) == 202
        await asyncio.sleep(3.0)  # several failed attempts
        assert not fake.history
        fake.down = False
        await _wait_for(lambda: bool(fake.history), 30, "the play after the outage")
        assert asyncio.get_running_loop().time() - before > 3.0
    watched_at = fake.history[0]["watched_at"]
    from crosswatchd.models import parse_utc

    assert abs(parse_utc(watched_at).timestamp() - sent_at) < 2.0
    assert daemon.stop() == 0
