"""The status page of a real daemon, in real headless Chromium (Debian's ``chromium``): it
renders, its screenshot is not blank, it loads nothing from any other host, and it shows the
queue per target account without the webhook secret or a token."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from PIL import Image

from crosswatchd.tokens import TokenStore
from tests.browser import chromium_path, load_page
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

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs chromium (.ci/run)")

#: Where the last screenshot is kept for a person to look at.
SHOT = Path("/tmp/crosswatchd-status-page.png")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[FakeTrakt, Daemon, Path]]:
    catalog = default_catalog()
    for n in (1, 2, 3):  # film 4 is unknown to Trakt: parked not_found
        catalog.add_movie(f"Test Movie {n}", 2000, imdb=f"tt{9_000_000 + n}", tmdb=800_000 + n)
    async with FakeTrakt(catalog=catalog) as fake:
        data_dir = tmp_path / "data"
        port = free_port()
        config = write_config(tmp_path / "c.toml", data_dir=data_dir, port=port, trakt=fake)
        token = fake.issue_token()
        TokenStore(data_dir, "trakt").save(token)
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        try:
            yield fake, daemon, data_dir
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()


@pytest.mark.timeout(120)
async def test_the_status_page_renders_self_contained_without_secrets(
    world: tuple[FakeTrakt, Daemon, Path], tmp_path: Path
) -> None:
    fake, daemon, data_dir = world
    await daemon.start()
    async with aiohttp.ClientSession() as http:
        for n in (1, 2, 3, 4):
            assert await post_webhook(http, daemon.port, movie_payload(n)) == 202
        stranger = orjson.loads(
            (FIXTURES / "episode_media.pause_plex-agent_bobs-burgers_s09e15.json").read_bytes()
        )
        assert await post_webhook(http, daemon.port, stranger) == 200
        await wait_for(lambda: len(fake.history) == 3, 20, "three plays on Trakt")
    base = f"http://127.0.0.1:{daemon.port}/"
    page = await load_page(base)

    assert page.requests, "the page should have been requested"
    assert all(url.startswith(base) for url in page.requests), page.requests
    image = Image.open(io.BytesIO(page.png)).convert("RGB")
    assert image.width >= 800 and image.height >= 400
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is None or len(colors) > 20, "the screenshot is blank"
    SHOT.write_bytes(page.png)  # noqa: ASYNC240 - a few KB, once

    text = page.text
    assert "crosswatchd webhook-url" in text
    assert "/webhook/plex?token=<secret>" in text
    assert "Test Movie 1" in text  # a recent delivery
    assert "not_found" in text  # the parked film's reason
    assert "melissar26" in text  # the ignored account
    assert "no Plex token" in text  # the watchlist section: no sync without one
    row = next(line for line in text.splitlines() if line.startswith("default\ttrakt"))
    assert row.split("\t")[2:6] == ["yes", "0", "3", "0"]
    token = TokenStore(data_dir, "trakt").load()
    assert token is not None
    for secret in (SECRET, token.access_token, token.refresh_token or "-"):
        assert secret not in page.html
    assert daemon.stop() == 0
