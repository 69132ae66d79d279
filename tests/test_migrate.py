"""``crosswatchd migrate --to postgresql://…`` as a user runs it: a one-household data dir,
used by a real SQLite daemon, moved into PostgreSQL; a daemon on PostgreSQL then delivers
what was waiting exactly once and never sends again what was delivered; a second run copies
nothing; the refusals are one line, exit 2, without the password."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from crosswatchd import postgres
from crosswatchd.config import load_settings
from crosswatchd.instance import FileValues
from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.reconcile.state import Copy, ReconcileState
from crosswatchd.resolve import IdCache
from crosswatchd.storage import PG_STORES, Storage
from crosswatchd.tokens.files import TokenFile
from crosswatchd.watchlist.state import PassRecord, StoredSide, WatchlistState
from tests.e2e_support import Daemon, free_port, movie_payload, post_webhook, wait_for, write_config
from tests.fakes.catalog import default_catalog
from tests.fakes.trakt import FakeTrakt
from tests.test_cli import cli
from tests.test_postgres import PASSWORD, closed_port

PLAYS = 5
DELIVERED = 3


def imdb(n: int) -> str:
    return f"tt{9_000_000 + n}"


async def query(url: str, sql: str) -> list[tuple[object, ...]]:
    db = await postgres.connect(url, stores=PG_STORES)
    try:
        return [tuple(row) for row in await db.fetch(sql)]
    finally:
        await db.close()


async def a_used_data_dir(tmp_path: Path, fake: FakeTrakt) -> tuple[Path, Path]:
    """A data dir a SQLite daemon used: 3 plays delivered, then 2 accepted while Trakt was
    down (one of them left in flight: leased, sent_at set, as a killed daemon leaves it); its
    token file, an id cache answer, a generated webhook secret, watchlist and reconcile
    state. Returns the data dir and its config."""
    data_dir = tmp_path / "data"
    TokenFile(data_dir, "trakt").write(fake.issue_token())
    port = free_port()
    config = write_config(tmp_path / "sqlite.toml", data_dir=data_dir, port=port, trakt=fake)
    daemon = Daemon(config, port, tmp_path / "sqlite.log")
    await daemon.start()
    try:
        async with aiohttp.ClientSession() as http:
            for n in range(DELIVERED):
                assert await post_webhook(http, port, movie_payload(n)) == 202
            await wait_for(lambda: len(fake.history) == DELIVERED, 30, "three plays on Trakt")
            fake.down = True
            before = len(fake.requests)
            for n in range(DELIVERED, PLAYS):
                assert await post_webhook(http, port, movie_payload(n)) == 202
            await wait_for(lambda: len(fake.requests) > before + 2, 30, "failed tries")
    finally:
        assert daemon.stop() == 0
    with sqlite3.connect(data_dir / "outbox.sqlite3") as db:
        db.execute(
            "UPDATE deliveries SET state = 'leased', lease_token = 'gone', sent_at = 1.0"
            " WHERE id = (SELECT max(id) FROM deliveries)"
        )
    cache = await IdCache.open(data_dir / "cache.sqlite3", positive_ttl_s=3600, negative_ttl_s=60)
    await cache.put(["item:movie:imdb:tt0090728"], {"ids": {"imdb": "tt0090728"}}, step="plex")
    await cache.close()
    await FileValues(data_dir).ensure("webhook_secret", lambda: "secret-from-the-data-dir")
    state = await WatchlistState.open(data_dir)
    heat = Item(MediaKind.MOVIE, "Heat", 1995, ids=Ids(imdb="tt0113277"))
    await state.save("default", {"plex": StoredSide([heat], None, 5.0)}, PassRecord("plex", 5.0))
    await state.close()
    reconcile = await ReconcileState.open(data_dir)
    await reconcile.save_copy("default", "trakt", "plays", Copy(None, 7.0))
    await reconcile.save_pass("default", "trakt", {"missing": 0})
    await reconcile.close()
    return data_dir, config


@pytest.mark.timeout(180)
async def test_a_used_data_dir_moves_and_a_replica_delivers_what_waited_once(
    tmp_path: Path, pg_url: str
) -> None:
    catalog = default_catalog()
    for n in range(PLAYS):
        catalog.add_movie(f"Test Movie {n}", 2000, imdb=imdb(n), tmdb=800_000 + n)
    async with FakeTrakt(catalog=catalog) as fake:
        data_dir, config = await a_used_data_dir(tmp_path, fake)

        first = await cli(config, "migrate", "--to", pg_url, "--json")
        assert first.code == 0, first.err
        report = json.loads(first.out)
        copied = report["copied"]
        assert copied["outbox"]["events"] == PLAYS
        assert copied["outbox"]["deliveries"] == PLAYS
        # the leased one arrives pending
        assert report["delivery_states"] == {"delivered": DELIVERED, "pending": PLAYS - DELIVERED}
        assert copied["tokens"] == {"default/trakt": 1}
        assert copied["id cache"] == {"answers": 1}
        assert copied["instance values"]["webhook_secret"] == 1
        assert copied["watchlist state"]["watchlist_sides"] == 1
        assert copied["reconcile state"] == {"copies": 1, "passes": 1}
        assert TokenFile(data_dir, "trakt").load() is not None  # the data dir is left alone
        secret = "SELECT value FROM instance_values WHERE name = 'webhook_secret'"
        assert await query(pg_url, secret) == [("secret-from-the-data-dir",)]

        # A replica on the database (its own, empty data dir) takes over.
        fake.down = False
        port = free_port()
        replica = write_config(
            tmp_path / "pg.toml",
            data_dir=tmp_path / "replica",
            port=port,
            trakt=fake,
            database_url=pg_url,
        )
        daemon = Daemon(replica, port, tmp_path / "pg.log")
        await daemon.start()
        try:
            await wait_for(lambda: len(fake.history) == PLAYS, 30, "the waiting plays")
            async with aiohttp.ClientSession() as http:
                # Plex reports a delivered play again: the copied dedupe history knows it.
                assert await post_webhook(http, port, movie_payload(0)) == 202
            await asyncio.sleep(1.5)
        finally:
            assert daemon.stop() == 0
        sent = sorted(h["movie"]["ids"]["imdb"] for h in fake.history)
        assert sent == [imdb(n) for n in range(PLAYS)]  # each exactly once
        plays = "SELECT state, count(*) FROM deliveries WHERE kind = 'play' GROUP BY state"
        assert dict(await query(pg_url, plays)) == {"delivered": PLAYS}  # type: ignore[arg-type]

        # (the cluster trusts loopback: a password in the URL is accepted, and never shown)
        with_password = pg_url.replace("@", f":{PASSWORD}@", 1)
        again = await cli(config, "migrate", "--to", with_password)
        assert again.code == 0, again.err
        assert PASSWORD not in again.out + again.err
        assert ":***@" in again.out
        assert f"events 0 copied, {PLAYS} skipped; deliveries 0 copied, {PLAYS} skipped" in (
            again.out
        )
        assert "tokens: default/trakt 0 copied, 1 skipped" in again.out
        assert "Nothing new to copy" in again.out
        third = json.loads((await cli(config, "migrate", "--to", pg_url, "--json")).out)
        assert all(n == 0 for store in third["copied"].values() for n in store.values())
        assert third["already_there"]["outbox"]["events"] == PLAYS
        assert third["already_there"]["id cache"] == {"answers": 1}
        assert dict(await query(pg_url, plays)) == {"delivered": PLAYS}  # type: ignore[arg-type]
        ids = await query(pg_url, "SELECT nextval(pg_get_serial_sequence('events', 'id'))")
        assert ids[0][0] > PLAYS  # new events are numbered after the copied ones


async def test_the_copy_waits_for_no_daemon_it_refuses_while_one_runs(
    tmp_path: Path, pg_url: str
) -> None:
    async with FakeTrakt() as fake:
        data_dir = tmp_path / "data"
        port = free_port()
        config = write_config(tmp_path / "c.toml", data_dir=data_dir, port=port, trakt=fake)
        daemon = Daemon(config, port, tmp_path / "d.log")
        await daemon.start()
        try:
            run = await cli(config, "migrate", "--to", pg_url)
        finally:
            assert daemon.stop() == 0
    assert run.code == 2
    assert len(run.err_lines) == 1 and "already running" in run.err
    assert await query(pg_url, "SELECT count(*) FROM events") == [(0,)]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (f"mysql://relay:{PASSWORD}@db/crosswatchd", "--to: 'mysql://relay:***@db/crosswatchd'"),
        (f"postgresql://relay:{PASSWORD}@db.example", "names no database"),
        ("", "cannot reach PostgreSQL"),  # a closed port, filled in below
    ],
)
async def test_a_bad_url_or_an_unreachable_server_is_one_line_exit_2_without_the_password(
    tmp_path: Path, url: str, said: str
) -> None:
    url = url or f"postgresql://relay:{PASSWORD}@127.0.0.1:{closed_port()}/crosswatchd"
    data_dir = tmp_path / "data"
    config = write_config(tmp_path / "c.toml", data_dir=data_dir, port=free_port())
    box = await IdCache.open(data_dir / "cache.sqlite3", positive_ttl_s=1, negative_ttl_s=1)
    await box.close()
    (data_dir / "outbox.sqlite3").write_bytes(b"")  # only looked at once the URL is good
    run = await cli(config, "migrate", "--to", url)
    assert run.code == 2, run.err
    assert len(run.err_lines) == 1, run.err
    assert said in run.err
    assert PASSWORD not in run.out + run.err


async def test_a_database_replicas_already_used_is_refused_and_left_alone(
    tmp_path: Path, pg_url: str
) -> None:
    """Events of the data dir and of the database share ids but are other plays: nothing of
    the outbox is copied (one line, exit 2)."""
    async with FakeTrakt() as fake:
        for where, url in (("data", ""), ("relay", pg_url)):
            port = free_port()
            config = write_config(
                tmp_path / f"{where}.toml",
                data_dir=tmp_path / where,
                port=port,
                trakt=fake,
                database_url=url,
            )
            daemon = Daemon(config, port, tmp_path / f"{where}.log")
            await daemon.start()
            try:
                async with aiohttp.ClientSession() as http:
                    number = 1 if where == "data" else 2
                    assert await post_webhook(http, port, movie_payload(number)) == 202
            finally:
                assert daemon.stop() == 0
        run = await cli(tmp_path / "data.toml", "migrate", "--to", pg_url)
    assert run.code == 2, run.out
    assert len(run.err_lines) == 1 and "already holds another event #1" in run.err
    assert await query(pg_url, "SELECT count(*) FROM events") == [(1,)]


async def test_profiles_added_at_run_time_move_and_serve_on_postgresql_knows_them(
    tmp_path: Path, pg_url: str
) -> None:
    """A profile added with `profile add` on SQLite is in the database after the move (its
    webhook URL unchanged: same token), `profile list` with the PostgreSQL config shows it,
    and a second run copies it again never."""
    async with FakeTrakt() as fake:
        data_dir = tmp_path / "data"
        config = write_config(tmp_path / "c.toml", data_dir=data_dir, port=free_port(), trakt=fake)
        added = await cli(config, "profile", "add", "sam", "--plex-account", "Sam")
        assert added.code == 0, added.err
        outbox = await Storage.files(load_settings(config)).outbox()  # a daemon ran here
        await outbox.close()
        url_before = await cli(config, "webhook-url", "--profile", "sam")
        first = await cli(config, "migrate", "--to", pg_url, "--json")
        assert first.code == 0, first.err
        assert json.loads(first.out)["copied"]["profiles"] == {"profiles": 1}
        again = await cli(config, "migrate", "--to", pg_url, "--json")
        assert json.loads(again.out)["copied"]["profiles"] == {"profiles": 0}
        pg_config = write_config(
            tmp_path / "pg.toml",
            data_dir=tmp_path / "pgdata",
            port=free_port(),
            trakt=fake,
            database_url=pg_url,
        )
        listed = await cli(pg_config, "profile", "list", "--json")
        assert [p["name"] for p in json.loads(listed.out)] == ["default", "sam"]
        url_after = await cli(pg_config, "webhook-url", "--profile", "sam")

        def tokens(out: str) -> list[str]:  # the ports differ: the two configs' own
            return [line.rsplit("/", 1)[1] for line in out.splitlines()]

        assert tokens(url_after.out) == tokens(url_before.out)
