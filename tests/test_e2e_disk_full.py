"""A full disk, for real: the daemon's data dir on a small tmpfs, filled up while webhooks
arrive, then freed. A failed commit answers 503 (never 202), /readyz says why, the log does
not flood, webhooks are accepted again within seconds of space returning (no restart), every
acknowledged play reaches Trakt exactly once, and the database passes its integrity check.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from crosswatchd.tokens.files import TokenFile
from tests.e2e_support import (
    Daemon,
    free_port,
    movie_payload,
    post_webhook,
    wait_for,
    write_config,
)
from tests.fakes.catalog import default_catalog
from tests.fakes.trakt import FakeTrakt

SIZE = "6m"


def _mount_tmpfs(where: Path) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(where)],
        capture_output=True,
    )
    return run.returncode == 0


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "small-disk"
    if shutil.which("mount") is None or not _mount_tmpfs(where):
        pytest.skip("needs permission to mount a tmpfs (root, as in CI)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
async def world(tmp_path: Path, tmpfs: Path) -> AsyncIterator[tuple[FakeTrakt, Daemon, Path]]:
    catalog = default_catalog()
    for n in range(1, 400):
        catalog.add_movie(f"Test Movie {n}", 2000, imdb=f"tt{9_000_000 + n}", tmdb=800_000 + n)
    async with FakeTrakt(catalog=catalog) as fake:
        data_dir = tmpfs / "data"
        port = free_port()
        config = write_config(tmp_path / "c.toml", data_dir=data_dir, port=port, trakt=fake)
        TokenFile(data_dir, "trakt").write(fake.issue_token())
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        try:
            yield fake, daemon, data_dir
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()


def fill(disk: Path) -> Path:
    """Fill *disk* to the last byte; the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for chunk in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler


async def readyz(http: aiohttp.ClientSession, port: int) -> tuple[int, dict[str, object]]:
    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
        return resp.status, await resp.json()


@pytest.mark.timeout(180)
async def test_a_full_disk_is_503_then_recovers_by_itself_losing_nothing(
    world: tuple[FakeTrakt, Daemon, Path],
) -> None:
    fake, daemon, data_dir = world
    await daemon.start()
    acknowledged: list[int] = []
    refused = 0
    async with aiohttp.ClientSession() as http:
        for n in range(1, 21):
            if await post_webhook(http, daemon.port, movie_payload(n)) == 202:
                acknowledged.append(n)
        assert len(acknowledged) == 20
        assert (await readyz(http, daemon.port))[0] == 200

        filler = fill(data_dir.parent)
        n = 21
        while refused < 20 and n < 300:
            status = await post_webhook(http, daemon.port, movie_payload(n))
            assert status in (202, 503), status
            if status == 202:
                acknowledged.append(n)
            else:
                refused += 1
            n += 1
        assert refused == 20, "the disk never filled up"
        status, body = await readyz(http, daemon.port)
        assert status == 503
        assert "cannot be written" in str(body["problems"])

        filler.unlink()
        recovered = asyncio.get_running_loop().time()
        while await post_webhook(http, daemon.port, movie_payload(n)) != 202:
            assert asyncio.get_running_loop().time() - recovered < 10, "no recovery"
            await asyncio.sleep(0.2)
        acknowledged.append(n)
        await wait_for(
            lambda: len(fake.history) >= len(acknowledged), 60, "every acknowledged play"
        )
        await asyncio.sleep(1.5)
        assert (await readyz(http, daemon.port))[0] == 200
    delivered = Counter(str(h["movie"]["ids"]["imdb"]) for h in fake.history)
    assert delivered == Counter(f"tt{9_000_000 + k}" for k in acknowledged)
    assert daemon.stop() == 0
    with sqlite3.connect(data_dir / "outbox.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    log = daemon.log_path.read_text()
    assert log.count("Traceback") == 0
    assert log.count("webhook.storage_failed") <= 3  # one line a minute, with a count
