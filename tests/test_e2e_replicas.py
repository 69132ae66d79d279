"""Real ``crosswatchd serve`` processes: a profile added while one runs, replicas sharing the
target accounts of one PostgreSQL database (and taking over a killed one's), and a database
outage answered 503 then recovered without a restart. The strict fake Trakt (one user per
profile) is the target."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crosswatchd.tokens import TokenStore
from tests.backends import BACKENDS
from tests.e2e_support import Daemon, free_port, movie_payload, post_webhook, wait_for, write_config
from tests.fakes.catalog import default_catalog
from tests.fakes.trakt import FakeTrakt
from tests.pgcluster import PgCluster
from tests.test_cli import cli

MOVIES = 8


def played_by(n: int, account: str, *, owner: bool = False) -> dict[str, Any]:
    """Test movie *n* scrobbled by Plex account *account* (the webhook owner's if *owner*)."""
    payload = movie_payload(n)
    payload["Account"]["title"] = account
    payload["user"] = owner
    return payload


def imdb_of(fake: FakeTrakt, user: str) -> list[str]:
    return sorted(h["movie"]["ids"]["imdb"] for h in fake.plays(user=user))


def profiles_toml(names: list[str]) -> str:
    return "\n".join(
        f'[[profiles]]\nname = "{name}"\nplex_accounts = ["{name.upper()}"]' for name in names
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeTrakt]:
    catalog = default_catalog()
    for n in range(MOVIES):
        catalog.add_movie(f"Test Movie {n}", 2000, imdb=f"tt{9_000_000 + n}", tmdb=800_000 + n)
    async with FakeTrakt(catalog=catalog) as running:
        yield running


async def get_status(port: int, path: str) -> int:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
            http.get(f"http://127.0.0.1:{port}{path}") as resp,
        ):
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_profile_added_while_serve_runs_gets_its_plays_delivered(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, fake: FakeTrakt
) -> None:
    url = "" if backend == "sqlite" else request.getfixturevalue("pg_url")
    env = {"CROSSWATCHD_DATABASE_URL": url} if url else {}
    data_dir, port = tmp_path / "data", free_port()
    config = write_config(
        tmp_path / "c.toml", data_dir=data_dir, port=port, trakt=fake, database_url=url
    )
    TokenStore(data_dir, "trakt", "bob").save(fake.issue_token(user="bob"))
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    await daemon.start()
    try:
        added = await cli(config, "profile", "add", "bob", "--plex-account", "Bob", env=env)
        assert added.code == 0, added.err
        own = next(line.split()[-1] for line in added.out.splitlines() if "Plex:" in line)
        own_path = own.split(str(port), 1)[1]
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 15
            status = 0
            while status != 202 and time.monotonic() < deadline:  # taken up within seconds
                status = await post_webhook(http, port, played_by(0, "Bob"))
                await asyncio.sleep(0.2)
            assert status == 202, "the daemon did not take the new profile up"
            assert await post_webhook(http, port, played_by(1, "Bob"), path=own_path) == 202
            # bob's own URL is bob's alone: a stranger's play there goes nowhere
            assert await post_webhook(http, port, played_by(2, "Stranger"), path=own_path) == 200
        await wait_for(lambda: len(fake.plays(user="bob")) >= 2, 20, "bob's plays on Trakt")
        await asyncio.sleep(0.5)
        assert imdb_of(fake, "bob") == ["tt9000000", "tt9000001"]
        assert fake.plays() == []  # nothing in anyone else's account
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


async def test_replicas_share_the_accounts_and_take_over_a_killed_ones(
    tmp_path: Path, pg_url: str, fake: FakeTrakt
) -> None:
    """Two replicas hold two accounts each (``status`` says which); one is SIGKILLed: the
    other takes its accounts and sends their plays within ``lease_s`` plus a few seconds."""
    names = ["p1", "p2", "p3", "p4"]
    lease_s = 4.0
    daemons: list[Daemon] = []
    configs: list[Path] = []
    for n in range(2):
        data_dir, port = tmp_path / f"data{n}", free_port()
        configs.append(
            write_config(
                tmp_path / f"c{n}.toml",
                data_dir=data_dir,
                port=port,
                trakt=fake,
                database_url=pg_url,
                lease_s=lease_s,
                extra=profiles_toml(names),
            )
        )
        for name in names:  # tokens are files in each replica's data dir (for now)
            TokenStore(data_dir, "trakt", name).save(fake.issue_token(user=name))
        daemons.append(Daemon(configs[-1], port, tmp_path / f"daemon{n}.log"))
    try:
        for daemon in daemons:
            await daemon.start()

        async def replicas() -> list[dict[str, Any]]:
            run = await cli(configs[0], "status", "--json")
            assert run.code == 0, run.err
            listed: list[dict[str, Any]] = json.loads(run.out)["replicas"]
            return listed

        deadline = time.monotonic() + 20
        listed = await replicas()
        while sorted(len(r["accounts"]) for r in listed) != [2, 2]:
            assert time.monotonic() < deadline, listed
            await asyncio.sleep(0.5)
            listed = await replicas()
        assert {r["pid"] for r in listed} == {d.proc.pid for d in daemons if d.proc}
        assert all(r["host"] and r["heartbeat_at"].endswith("Z") and r["live"] for r in listed)
        assert sorted(a for r in listed for a in r["accounts"]) == [f"{n}/trakt" for n in names]
        text = await cli(configs[0], "status")
        assert "replicas:" in text.out and "2 account(s)" in text.out
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{daemons[1].port}/") as page,
        ):
            html = await page.text()  # every replica's status page lists them all
        assert "<h2>Replicas</h2>" in html and all(r["id"] in html for r in listed)

        survivor, victim = daemons
        victim_pid = victim.proc.pid if victim.proc else None
        theirs = next(r["accounts"] for r in listed if r["pid"] == victim_pid)
        victim.kill()
        killed_at = time.monotonic()
        async with aiohttp.ClientSession() as http:
            for n, name in enumerate(names):
                assert await post_webhook(http, survivor.port, played_by(n, name.upper())) == 202
        await wait_for(
            lambda: all(len(fake.plays(user=name)) == 1 for name in names),
            lease_s + 10,
            "every play delivered by the survivor",
        )
        taken_s = time.monotonic() - killed_at
        assert taken_s < lease_s + 6, f"took {taken_s:.1f} s"
        assert theirs, "the killed replica held accounts"
        await asyncio.sleep(0.5)
        for n, name in enumerate(names):
            assert imdb_of(fake, name) == [f"tt{9_000_000 + n}"]
        assert fake.rate_limited == 0
    finally:
        for daemon in daemons:
            if daemon.proc is not None and daemon.proc.poll() is None:
                assert daemon.stop() == 0


async def test_a_database_outage_is_answered_503_and_recovered_without_a_restart(
    tmp_path: Path, pg_url: str, pg_cluster: PgCluster, fake: FakeTrakt
) -> None:
    """While PostgreSQL is down: /readyz is not ready and webhooks get 503 (never a 202 that
    could be lost, never a 500); once it is back, the same process takes and delivers plays
    again, and every play it acknowledged is on Trakt once. The outage outlasts the leases,
    so they are taken up again too."""
    data_dir, port = tmp_path / "data", free_port()
    config = write_config(
        tmp_path / "c.toml",
        data_dir=data_dir,
        port=port,
        trakt=fake,
        database_url=pg_url,
        lease_s=4,
    )
    TokenStore(data_dir, "trakt").save(fake.issue_token())
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    await daemon.start()
    acknowledged: list[int] = []
    try:
        async with aiohttp.ClientSession() as http:
            assert await post_webhook(http, port, played_by(0, "me", owner=True)) == 202
            acknowledged.append(0)
            await wait_for(lambda: len(fake.history) == 1, 15, "the first play")
            pg_cluster.stop_server()
            try:
                statuses = [await post_webhook(http, port, played_by(1, "me", owner=True))]
                await asyncio.sleep(0.5)
                assert await get_status(port, "/readyz") == 503
                for n in (2, 3):
                    statuses.append(await post_webhook(http, port, played_by(n, "me", owner=True)))
                await asyncio.sleep(5)  # past lease_s: the leases expire meanwhile
                statuses.append(await post_webhook(http, port, played_by(4, "me", owner=True)))
                assert set(statuses) == {503}, statuses
                assert await get_status(port, "/healthz") == 200  # alive, just not ready
            finally:
                pg_cluster.start_server()
            deadline = time.monotonic() + 20
            while await get_status(port, "/readyz") != 200:
                assert time.monotonic() < deadline, "not ready again after the database came back"
                await asyncio.sleep(0.2)
            for n in (1, 5):  # the sender tries again; a new play too
                assert await post_webhook(http, port, played_by(n, "me", owner=True)) == 202
                acknowledged.append(n)
        await wait_for(lambda: len(fake.history) >= len(acknowledged), 30, "plays after recovery")
        await asyncio.sleep(0.5)
        assert sorted(h["movie"]["ids"]["imdb"] for h in fake.history) == [
            f"tt{9_000_000 + n}" for n in sorted(acknowledged)
        ]
    finally:
        assert daemon.stop() == 0
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log
    assert "replica.storage_unavailable" in log and "replica.storage_recovered" in log
