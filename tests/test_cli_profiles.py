"""``crosswatchd profile add|list|remove`` and ``webhook-url --profile``, as the real command
in a subprocess, on SQLite files and on PostgreSQL: people are added and removed without
editing the config file, a name in both places is one line naming it (exit 2), and the plays
queued for a removed profile are kept until delivered or discarded."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crosswatchd.config import Settings
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.profiles import Household
from crosswatchd.storage import Storage
from tests.backends import BACKENDS
from tests.test_cli import Home, Run, cli, free_port

TRAKT = {"client_id": "cid", "client_secret": "csecret"}


class Relay:
    """A config file and its storage (SQLite files, or the test's PostgreSQL database)."""

    def __init__(self, home: Home, url: str) -> None:
        self.home = home
        self.url = url

    @property
    def env(self) -> dict[str, str]:
        return {"CROSSWATCHD_DATABASE_URL": self.url} if self.url else {}

    async def run(self, *args: str) -> Run:
        return await cli(self.home.config, *args, env=self.env)

    async def queue_play(self, profile: str) -> None:
        """A play of *profile* to its Trakt account, queued as the daemon would."""
        settings = Settings(data_dir=self.home.data_dir, database_url=self.url, trakt=TRAKT)
        storage = await Storage.open(settings)
        try:
            outbox = await storage.outbox(Household.from_settings(settings))
            outbox.set_targets({profile: ["trakt"]})
            try:
                item = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))
                at = datetime(2026, 1, 2, 20, 0, tzinfo=UTC)
                await outbox.enqueue(
                    PlayEvent(Source.PLEX, Action.WATCHED, "x", item, at, profile=profile)
                )
            finally:
                await outbox.close()
        finally:
            await storage.close()

    async def status(self) -> dict[str, object]:
        run = await self.run("status", "--json")
        assert run.code == 0, run.err
        loaded: dict[str, object] = json.loads(run.out)
        return loaded


@pytest.fixture(params=BACKENDS)
async def relay(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Relay]:
    home = Home(tmp_path / "data", tmp_path / "crosswatchd.toml")
    home.configure(
        [{"name": "alex", "plex_accounts": ["Alex"], "tautulli_users": ["alexandra"]}],
        trakt=TRAKT,
    )
    url = "" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    yield Relay(home, url)


async def test_a_profile_is_added_listed_and_removed(relay: Relay) -> None:
    added = await relay.run(
        "profile", "add", "bob", "--plex-account", "Bob", "--tautulli-user", "bobby"
    )
    assert added.code == 0, added.err
    assert "Added profile bob (targets: trakt)" in added.out
    plex_url = next(line.split()[-1] for line in added.out.splitlines() if "Plex:" in line)
    assert "/webhook/plex/" in plex_url and "token=" not in plex_url
    listed = json.loads((await relay.run("profile", "list", "--json")).out)
    assert [(p["name"], p["source"]) for p in listed] == [("alex", "config"), ("bob", "database")]
    assert listed[1]["plex_accounts"] == ["bob"] and listed[1]["targets"] == ["trakt"]
    printed = await relay.run("webhook-url", "--profile", "bob")
    assert printed.code == 0 and plex_url in printed.out
    assert "bob" in (await relay.status())["profiles"]  # type: ignore[operator]
    removed = await relay.run("profile", "remove", "bob")
    assert removed.code == 0, removed.err
    assert "Removed profile bob" in removed.out
    listed = json.loads((await relay.run("profile", "list", "--json")).out)
    assert [p["name"] for p in listed] == ["alex"]
    gone = await relay.run("webhook-url", "--profile", "bob")
    assert gone.code == 2 and "no profile 'bob'" in gone.err


async def test_a_config_file_profile_has_its_own_url_too(relay: Relay) -> None:
    printed = await relay.run("webhook-url", "--profile", "alex")
    assert printed.code == 0, printed.err
    assert "/webhook/plex/" in printed.out and "/webhook/tautulli/" in printed.out


async def test_adding_a_profile_the_config_file_defines_is_one_line_naming_it(
    relay: Relay,
) -> None:
    run = await relay.run("profile", "add", "alex")
    assert run.code == 2
    assert len(run.err_lines) == 1 and "'alex'" in run.err and "config file" in run.err


async def test_a_name_in_the_config_file_and_in_the_database_stops_every_command(
    relay: Relay,
) -> None:
    assert (await relay.run("profile", "add", "bob", "--plex-account", "Bob")).code == 0
    relay.home.configure(
        [{"name": "alex", "plex_accounts": ["Alex"]}, {"name": "bob", "plex_accounts": ["Bobby"]}],
        trakt=TRAKT,
        http={"port": free_port()},  # serve must fail on the name, whatever else runs here
    )
    for command in (["status"], ["profile", "list"], ["serve"]):
        run = await relay.run(*command)
        assert run.code == 2, (command, run.err)
        assert len(run.err_lines) == 1, run.err
        assert "'bob' is defined in the config file and in the database" in run.err


async def test_an_account_of_another_profile_cannot_be_added(relay: Relay) -> None:
    run = await relay.run("profile", "add", "bob", "--plex-account", "alex")
    assert run.code == 2
    assert "--plex-account" in run.err and "'alex'" in run.err
    run = await relay.run("profile", "add", "bob", "--tautulli-user", "ALEXANDRA")
    assert run.code == 2 and "--tautulli-user" in run.err


async def test_a_removed_profiles_queued_plays_are_kept_until_discarded(relay: Relay) -> None:
    assert (await relay.run("profile", "add", "bob", "--plex-account", "Bob")).code == 0
    await relay.queue_play("bob")
    removed = await relay.run("profile", "remove", "bob")
    assert removed.code == 0, removed.err
    assert "1 play(s)/change(s) of bob are still queued" in removed.out
    assert "--discard-queued" in removed.out
    status = await relay.status()
    assert status["profiles"]["bob"]["trakt"]["pending"] == 1  # type: ignore[index]
    discarded = await relay.run("profile", "remove", "bob", "--discard-queued")
    assert discarded.code == 0, discarded.err
    assert "Discarded 1 delivery(ies) of bob" in discarded.out
    status = await relay.status()
    assert "bob" not in status["profiles"]  # type: ignore[operator]  # nothing left to show


async def test_removing_an_unknown_or_config_profile_is_one_line(relay: Relay) -> None:
    unknown = await relay.run("profile", "remove", "nobody")
    assert unknown.code == 2 and "no profile 'nobody' in the database" in unknown.err
    configured = await relay.run("profile", "remove", "alex")
    assert configured.code == 2 and "remove it there" in configured.err


async def test_a_bad_profile_name_is_refused(relay: Relay) -> None:
    run = await relay.run("profile", "add", "Bob Smith")
    assert run.code == 2 and "a profile name is" in run.err
