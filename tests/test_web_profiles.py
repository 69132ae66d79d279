"""Each profile's own webhook URLs (``/webhook/plex/<profile token>``): what arrives there is
that profile's alone, so people who share no Plex server can share one relay. The shared URLs
keep routing the whole household. Real intake app, real outbox and roster (SQLite files)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from crosswatchd.config import Settings
from crosswatchd.outbox import Outbox
from crosswatchd.profiles import StoredProfile
from crosswatchd.roster import LiveHousehold, ProfileStore, profile_token
from crosswatchd.web import build_app
from tests.intake_support import (
    BIG_TROUBLE_SCROBBLE,
    NOW,
    SECRET,
    WATCHED_MOVIE,
    Reply,
    plex,
    plex_form,
    tautulli,
)

BOB_TOKEN = "bob-own-token-0123456789abcdef"
OWNER_TOKEN = "solo-own-token-0123456789abcde"


@dataclass
class Relay:
    client: TestClient[Any, Any]
    outbox: Outbox
    roster: ProfileStore

    async def post_plex(self, path: str, payload: dict[str, Any], **params: str) -> Reply:
        resp = await self.client.post(path, params=params, data=plex_form(payload))
        return await Reply.of(resp)

    async def post_tautulli(self, path: str, body: dict[str, Any]) -> Reply:
        resp = await self.client.post(
            path, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
        )
        return await Reply.of(resp)

    async def queued(self) -> list[tuple[str, str]]:
        rows = await self.outbox.fetch_all(
            "SELECT profile, provider FROM deliveries WHERE kind = 'play' ORDER BY id"
        )
        return [(str(p), str(t)) for p, t in rows]


def as_account(payload: dict[str, Any], title: str, *, user: bool) -> dict[str, Any]:
    payload["Account"]["title"] = title
    payload["user"] = user
    return payload


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[Relay]:
    """alex in the config file; bob (plex account Bob, tautulli user bobby) and solo (no
    accounts: the webhook owner's own plays) in the roster."""
    settings = Settings(
        data_dir=tmp_path,
        trakt={"client_id": "cid", "client_secret": "cs"},
        profiles=[{"name": "alex", "plex_accounts": ["title"], "tautulli_users": ["testyboi"]}],
    )
    roster = await ProfileStore.open(tmp_path / "profiles.sqlite3")
    await roster.add(StoredProfile("bob", ("Bob",), ("bobby",), webhook_token=BOB_TOKEN))
    await roster.add(StoredProfile("solo", webhook_token=OWNER_TOKEN))
    household = await LiveHousehold.load(settings, SECRET, roster)
    outbox = await Outbox.open(
        tmp_path / "outbox.sqlite3",
        targets={p.name: list(p.targets) for p in household.current.profiles},
    )
    app = build_app(settings, outbox, SECRET, now=lambda: NOW, household=household)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    yield Relay(client, outbox, roster)
    await client.close()
    await outbox.close()
    await roster.close()


async def test_a_profiles_own_url_takes_its_plays(relay: Relay) -> None:
    payload = as_account(plex(BIG_TROUBLE_SCROBBLE), "Bob", user=False)
    reply = await relay.post_plex(f"/webhook/plex/{BOB_TOKEN}", payload)
    assert (reply.status, reply.body["profile"]) == (202, "bob")
    assert await relay.queued() == [("bob", "trakt")]


async def test_another_members_play_on_a_profiles_url_is_ignored(relay: Relay) -> None:
    """alex's play posted to bob's URL goes nowhere: never one member's play in another's."""
    payload = as_account(plex(BIG_TROUBLE_SCROBBLE), "title", user=True)
    reply = await relay.post_plex(f"/webhook/plex/{BOB_TOKEN}", payload)
    assert (reply.status, reply.body["status"]) == (200, "ignored")
    assert "is in no profile (profiles: bob)" in reply.body["reason"]
    assert await relay.queued() == []


async def test_a_profile_without_accounts_takes_the_webhook_owners_own_plays(
    relay: Relay,
) -> None:
    own = as_account(plex(BIG_TROUBLE_SCROBBLE), "someone", user=True)
    reply = await relay.post_plex(f"/webhook/plex/{OWNER_TOKEN}", own)
    assert (reply.status, reply.body["profile"]) == (202, "solo")
    guest = as_account(plex(BIG_TROUBLE_SCROBBLE), "a guest", user=False)
    reply = await relay.post_plex(f"/webhook/plex/{OWNER_TOKEN}", guest)
    assert (reply.status, reply.body["status"]) == (200, "ignored")
    assert "lists no plex accounts" in reply.body["reason"]
    assert await relay.queued() == [("solo", "trakt")]


async def test_an_unknown_profile_token_is_refused(relay: Relay) -> None:
    payload = as_account(plex(BIG_TROUBLE_SCROBBLE), "Bob", user=False)
    reply = await relay.post_plex("/webhook/plex/not-a-token", payload)
    assert reply.status == 401
    reply = await relay.post_plex(f"/webhook/plex/{SECRET}", payload)  # the secret is not one
    assert reply.status == 401
    assert await relay.queued() == []


async def test_the_shared_url_still_routes_the_whole_household(relay: Relay) -> None:
    bob = as_account(plex(BIG_TROUBLE_SCROBBLE), "Bob", user=False)
    assert (await relay.post_plex("/webhook/plex", bob, token=SECRET)).body["profile"] == "bob"
    alex = as_account(plex(BIG_TROUBLE_SCROBBLE), "title", user=True)
    reply = await relay.post_plex("/webhook/plex", alex, token=SECRET)
    assert (reply.status, reply.body["profile"], reply.body["duplicate"]) == (202, "alex", False)


async def test_a_config_file_profile_has_a_url_derived_from_the_secret(relay: Relay) -> None:
    payload = as_account(plex(BIG_TROUBLE_SCROBBLE), "title", user=True)
    reply = await relay.post_plex(f"/webhook/plex/{profile_token(SECRET, 'alex')}", payload)
    assert (reply.status, reply.body["profile"]) == (202, "alex")


async def test_a_profiles_tautulli_url_takes_its_users_plays_only(relay: Relay) -> None:
    body = tautulli(WATCHED_MOVIE)
    body["username"] = "bobby"
    reply = await relay.post_tautulli(f"/webhook/tautulli/{BOB_TOKEN}", body)
    assert (reply.status, reply.body["profile"]) == (202, "bob")
    other = tautulli(WATCHED_MOVIE)  # testyboi: alex's
    reply = await relay.post_tautulli(f"/webhook/tautulli/{BOB_TOKEN}", other)
    assert (reply.status, reply.body["status"]) == (200, "ignored")
    assert await relay.queued() == [("bob", "trakt")]


async def test_a_profile_added_a_moment_ago_is_found_by_its_token(relay: Relay) -> None:
    """Another replica (or the CLI) added it: an unknown token reloads the roster once."""
    await relay.roster.add(StoredProfile("cleo", ("Cleo",), webhook_token="cleo-token-1234567"))
    payload = as_account(plex(BIG_TROUBLE_SCROBBLE), "Cleo", user=False)
    await asyncio.sleep(1.05)  # the roster is read again at most once a second
    reply = await relay.post_plex("/webhook/plex/cleo-token-1234567", payload)
    assert (reply.status, reply.body["profile"]) == (202, "cleo")


def test_urls_with_a_profile_token_are_never_logged_whole() -> None:
    from aiohttp.test_utils import make_mocked_request

    from crosswatchd.web import _shown_path

    request = make_mocked_request(
        "POST", f"/webhook/plex/{BOB_TOKEN}", match_info={"token": BOB_TOKEN}
    )
    assert BOB_TOKEN not in _shown_path(request)
