"""Real ``crosswatchd serve`` processes: a profile added while one runs, replicas sharing the
target accounts of one PostgreSQL database (and taking over a killed one's), and a database
outage answered 503 then recovered without a restart. The strict fake Trakt (one user per
profile) is the target."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crosswatchd.tokens.files import TokenFile
from tests.backends import BACKENDS, save_token
from tests.e2e_support import Daemon, free_port, movie_payload, post_webhook, wait_for, write_config
from tests.fakes.catalog import default_catalog
from tests.fakes.trakt import FakeTrakt
from tests.pgcluster import PgCluster
from tests.test_cli import cli
from tests.test_e2e_households import post_tautulli, tautulli_watched

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
    if url:  # with PostgreSQL the tokens are in the database, for every replica
        await save_token(url, "trakt", fake.issue_token(user="bob"), "bob")
    else:
        TokenFile(data_dir, "trakt", "bob").write(fake.issue_token(user="bob"))
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
        daemons.append(Daemon(configs[-1], port, tmp_path / f"daemon{n}.log"))
    for name in names:  # in the database: every replica reads the same rows
        await save_token(pg_url, "trakt", fake.issue_token(user=name), name)
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
    await save_token(pg_url, "trakt", fake.issue_token())
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


async def test_three_replicas_deliver_every_acknowledged_play_once_through_kills_and_expiry(
    tmp_path: Path, pg_url: str, fake: FakeTrakt
) -> None:
    """The issue's end-to-end run: three replicas on one database, six profiles (one Trakt
    account each, 1 POST/s), webhooks spread across the replicas; every play arrives twice as
    Plex's ``media.scrobble`` at two replicas at the same moment and, for half the profiles,
    once more as Tautulli's ``watched`` at the third. Meanwhile two replicas are SIGKILLed and
    started again, and every access token expires (401, then a refresh that rotates the
    refresh token). Every acknowledged play is on its account exactly once, with the time it
    was watched, within two minutes of the last webhook; Trakt answered no 429 and no
    ``invalid_grant``.

    The tokens are rows of the database: the refresh by one holder must be what the next
    holder uses."""
    names = [f"p{n}" for n in range(1, 7)]
    with_tautulli = set(names[::2])
    lease_s = 3.0
    extra = "\n".join(
        f'[[profiles]]\nname = "{name}"\nplex_accounts = ["{name.upper()}"]'
        + (f'\ntautulli_users = ["{name}"]' if name in with_tautulli else "")
        for name in names
    )
    daemons: list[Daemon] = []
    for n in range(3):
        data_dir, port = tmp_path / f"data{n}", free_port()
        data_dir.mkdir(mode=0o700)
        config = write_config(
            tmp_path / f"c{n}.toml",
            data_dir=data_dir,
            port=port,
            trakt=fake,
            database_url=pg_url,
            lease_s=lease_s,
            extra=extra,
        )
        daemons.append(Daemon(config, port, tmp_path / f"daemon{n}.log"))
    for name in names:  # in the database: every replica reads the same rows
        await save_token(pg_url, "trakt", fake.issue_token(user=name), name)
    # (profile, movie) -> (posted at, acknowledged at), unix seconds
    acked: dict[tuple[str, int], tuple[float, float]] = {}
    answers: list[int] = []

    async def play_round(http: aiohttp.ClientSession, movie: int, live: list[Daemon]) -> None:
        async def one(k: int, name: str) -> None:
            first, second = live[k % len(live)], live[(k + 1) % len(live)]
            sends = [
                post_webhook(http, first.port, played_by(movie, name.upper())),
                post_webhook(http, second.port, played_by(movie, name.upper())),
            ]
            if name in with_tautulli and len(live) > 2:
                third = live[(k + 2) % len(live)]
                sends.append(post_tautulli(http, third.port, tautulli_watched(movie, name)))
            posted = time.time()
            statuses = await asyncio.gather(*sends)
            answers.extend(statuses)
            if any(200 <= s < 300 for s in statuses):
                acked[(name, movie)] = (posted, time.time())

        await asyncio.gather(*(one(k, name) for k, name in enumerate(names)))

    try:
        await asyncio.gather(*(d.start() for d in daemons))
        async with aiohttp.ClientSession() as http:
            await play_round(http, 0, daemons)
            daemons[0].kill()  # mid-delivery: it held a third of the accounts
            await play_round(http, 1, daemons[1:])
            await daemons[0].start()
            fake.expire_access_tokens()  # every user's access token: 401, refresh, rotate
            await play_round(http, 2, daemons)
            # Each holder has refreshed its accounts' tokens once these are on Trakt; the
            # accounts of the replica killed next go on with the tokens it rotated.
            await wait_for(
                lambda: all(len(fake.plays(user=name)) >= 3 for name in names),
                lease_s + 20,
                "the plays after the expiry",
            )
            daemons[1].kill()
            await play_round(http, 3, [daemons[0], daemons[2]])
            await daemons[1].start()
            await play_round(http, 4, daemons)
            last_webhook = time.monotonic()

        def delivered() -> int:
            return sum(len(fake.plays(user=name)) for name in names)

        await wait_for(lambda: delivered() >= len(acked), 120, "every acknowledged play")
        took_s = time.monotonic() - last_webhook
        await asyncio.sleep(lease_s + 1)  # a late duplicate would show up by now
    finally:
        codes = [d.stop() for d in daemons if d.proc is not None]
    assert codes == [0, 0, 0]
    assert took_s < 120
    assert len(acked) == len(names) * 5, sorted(acked)  # every play had a live replica
    assert all(s in (200, 202) for s in answers if s), answers  # every copy answered 2xx
    for name in names:
        entries = fake.plays(user=name)
        got = sorted(h["movie"]["ids"]["imdb"] for h in entries)
        assert got == [f"tt{9_000_000 + m}" for m in range(5)], (name, got)
        for entry in entries:
            movie = int(entry["movie"]["ids"]["imdb"][2:]) - 9_000_000
            posted, ack = acked[(name, movie)]
            watched = datetime.fromisoformat(entry["watched_at"].replace("Z", "+00:00"))
            assert posted - 1 <= watched.timestamp() <= ack + 1, (name, movie, entry)
    refreshes = sum(1 for m, p, _ in fake.requests if (m, p) == ("POST", "/oauth/token"))
    assert fake.unauthorized >= 1 and refreshes >= len(names), "the expiry was not exercised"
    assert fake.rate_limited == 0, fake.rate_limit_log
    assert fake.invalid_grants == 0
    for n in range(3):
        assert "Traceback" not in (tmp_path / f"daemon{n}.log").read_text()
