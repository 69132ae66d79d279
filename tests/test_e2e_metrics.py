"""``GET /metrics`` of a real daemon process, counted against known traffic, and agreeing with
``status --json`` at the same moment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

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
from tests.fakes.catalog import default_catalog
from tests.fakes.trakt import FakeTrakt


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[FakeTrakt, Daemon, Path]]:
    catalog = default_catalog()
    for n in range(1, 10):
        catalog.add_movie(f"Test Movie {n}", 2000, imdb=f"tt{9_000_000 + n}", tmdb=800_000 + n)
    async with FakeTrakt(catalog=catalog) as fake:
        data_dir = tmp_path / "data"
        port = free_port()
        config = write_config(tmp_path / "c.toml", data_dir=data_dir, port=port, trakt=fake)
        TokenFile(data_dir, "trakt").write(fake.issue_token())
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        try:
            yield fake, daemon, config
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_the_traffic_and_agree_with_status(
    world: tuple[FakeTrakt, Daemon, Path],
) -> None:
    fake, daemon, config = world
    await daemon.start()
    base = f"http://127.0.0.1:{daemon.port}"
    async with aiohttp.ClientSession() as http:
        for n in (1, 2, 3):
            assert await post_webhook(http, daemon.port, movie_payload(n)) == 202
        library_new = orjson.loads(
            (FIXTURES / "episode_library.new_plex-agent_bluey_s02e50.json").read_bytes()
        )
        assert await post_webhook(http, daemon.port, library_new) == 200
        async with http.post(f"{base}/webhook/plex?token=wrong", data=b"{}") as resp:
            assert resp.status == 401
        await wait_for(lambda: len(fake.history) == 3, 20, "three plays on Trakt")
        await asyncio.sleep(0.5)
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
        status = subprocess.run(  # noqa: ASYNC221 - the daemon is another process
            [sys.executable, "-m", "crosswatchd.cli", "--config", str(config), "status", "--json"],
            capture_output=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("CROSSWATCHD_")},
            check=True,
        )
        async with http.get(
            f"{base}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        ) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    found = samples(text)
    assert value(found, "crosswatchd_webhooks_total", source="plex", outcome="accepted") == 3
    assert value(found, "crosswatchd_webhooks_total", source="plex", outcome="ignored") == 1
    assert value(found, "crosswatchd_webhooks_total", source="plex", outcome="rejected") == 1
    assert (
        value(found, "crosswatchd_delivery_attempts_total", provider="trakt", outcome="delivered")
        == 3
    )
    assert value(found, "crosswatchd_delivery_latency_seconds_count", provider="trakt") == 3
    assert value(found, "crosswatchd_provider_requests_total", provider="trakt", status="201") >= 1
    report = json.loads(status.stdout)["profiles"]["default"]["trakt"]
    for state in ("pending", "delivered", "unresolved", "parked", "dead"):
        gauge = value(
            found, "crosswatchd_deliveries", profile="default", provider="trakt", state=state
        )
        assert gauge == report[state], state
    assert report["delivered"] == 3
    assert daemon.stop() == 0
