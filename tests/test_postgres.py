"""The PostgreSQL backend at the edges: ``database_url`` in the configuration, a server that
cannot be reached, a schema newer than the code, and several processes migrating an empty
database at once. The password never reaches any output."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import aiohttp
import pytest

from crosswatchd import postgres
from crosswatchd.errors import ConfigError, StorageError
from crosswatchd.outbox.queries import PG_MIGRATIONS
from crosswatchd.sqlite import SchemaTooNewError
from tests.backends import save_token
from tests.e2e_support import Daemon, free_port, movie_payload, post_webhook, wait_for, write_config
from tests.fakes.catalog import default_catalog
from tests.fakes.trakt import FakeTrakt
from tests.test_cli import Home, cli

PASSWORD = "s3cr3t-pass-9f1c"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestUrl:
    @pytest.mark.parametrize(
        ("url", "said"),
        [
            ("mysql://u:p@h/db", "is not a PostgreSQL URL"),
            ("postgresql://u@h", "names no database"),
            ("postgresql://u@h:notaport/db", "not a valid URL"),
        ],
    )
    def test_a_bad_url_is_a_config_error_naming_database_url(self, url: str, said: str) -> None:
        with pytest.raises(ConfigError, match=said) as caught:
            postgres.validate_url(url)
        assert caught.value.key == "database_url"

    def test_the_password_is_masked(self) -> None:
        url = f"postgresql://relay:{PASSWORD}@db.example:5433/crosswatchd"
        assert postgres.masked(url) == "postgresql://relay:***@db.example:5433/crosswatchd"
        assert postgres.password_of(url) == PASSWORD


async def test_a_bad_database_url_in_the_environment_is_one_line_exit_2(tmp_path: Path) -> None:
    home = Home(tmp_path / "data", tmp_path / "c.toml")
    home.configure(trakt={"client_id": "cid", "client_secret": "csecret"})
    run = await cli(
        home.config, "status", env={"CROSSWATCHD_DATABASE_URL": f"mysql://u:{PASSWORD}@h/db"}
    )
    assert run.code == 2
    assert len(run.err_lines) == 1
    assert run.err_lines[0].startswith("crosswatchd: config error: CROSSWATCHD_DATABASE_URL:")
    assert PASSWORD not in run.out + run.err


async def test_an_unreachable_server_is_one_line_exit_2_without_the_password(
    tmp_path: Path,
) -> None:
    home = Home(tmp_path / "data", tmp_path / "c.toml")
    url = f"postgresql://relay:{PASSWORD}@127.0.0.1:{closed_port()}/crosswatchd"
    home.configure(trakt={"client_id": "cid", "client_secret": "csecret"})
    run = await cli(home.config, "status", env={"CROSSWATCHD_DATABASE_URL": url})
    assert run.code == 2, run.err
    assert len(run.err_lines) == 1, run.err
    assert "cannot reach PostgreSQL" in run.err and "relay:***@127.0.0.1" in run.err
    assert PASSWORD not in run.out + run.err


async def test_status_reads_the_shared_database(tmp_path: Path, pg_url: str) -> None:
    home = Home(tmp_path / "data", tmp_path / "c.toml")
    home.configure(trakt={"client_id": "cid", "client_secret": "csecret"})
    run = await cli(home.config, "status", "--json", env={"CROSSWATCHD_DATABASE_URL": pg_url})
    assert run.code == 0, run.err
    assert json.loads(run.out)["providers"]["trakt"]["pending"] == 0
    assert not (tmp_path / "data" / "outbox.sqlite3").exists()


async def test_a_schema_newer_than_the_code_is_refused_untouched(pg_url: str) -> None:
    db = await postgres.connect(pg_url, stores={"outbox": PG_MIGRATIONS})
    await db.execute("UPDATE schema_versions SET version = 99 WHERE store = 'outbox'")
    await db.close()
    with pytest.raises(SchemaTooNewError, match="newer than this crosswatchd") as caught:
        await postgres.connect(pg_url, stores={"outbox": PG_MIGRATIONS})
    assert isinstance(caught.value, StorageError)


async def test_processes_starting_together_on_an_empty_database_migrate_it_once(
    pg_url: str,
) -> None:
    dbs = await asyncio.gather(
        *(postgres.connect(pg_url, stores={"outbox": PG_MIGRATIONS}) for _ in range(6))
    )
    try:
        rows = await dbs[0].fetch("SELECT store, version FROM schema_versions")
        assert [(r["store"], r["version"]) for r in rows] == [("outbox", len(PG_MIGRATIONS))]
    finally:
        for db in dbs:
            await db.close()


async def test_a_daemon_on_postgresql_takes_webhooks_and_delivers_each_play_once(
    tmp_path: Path, pg_url: str
) -> None:
    """Plays (each reported twice: scrobble and stop) committed to PostgreSQL before the
    202, delivered once each; nothing written to an outbox file."""
    catalog = default_catalog()
    for n in range(5):
        catalog.add_movie(f"Test Movie {n}", 2000, imdb=f"tt{9_000_000 + n}", tmdb=800_000 + n)
    async with FakeTrakt(catalog=catalog) as fake:
        data_dir = tmp_path / "data"
        await save_token(pg_url, "trakt", fake.issue_token())
        port = free_port()
        config = write_config(
            tmp_path / "c.toml", data_dir=data_dir, port=port, trakt=fake, database_url=pg_url
        )
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        await daemon.start()
        try:
            async with aiohttp.ClientSession() as http:
                for n in range(5):
                    assert await post_webhook(http, port, movie_payload(n)) == 202
                    stop = movie_payload(n, "media.stop")
                    assert await post_webhook(http, port, stop) in (200, 202)
            await wait_for(lambda: len(fake.history) >= 5, 30, "five plays on Trakt")
            await asyncio.sleep(1.0)
            assert sorted(h["movie"]["ids"]["imdb"] for h in fake.history) == [
                f"tt{9_000_000 + n}" for n in range(5)
            ]
        finally:
            assert daemon.stop() == 0
    assert not (data_dir / "outbox.sqlite3").exists()
