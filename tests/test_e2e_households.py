"""Households end to end: the real daemon, one webhook URL, two people with their own Trakt and
SIMKL accounts (fakes that keep users apart), and a stranger on the same Plex server.

Each account ends up holding exactly its owner's plays; a film both people watched is one
play in each account; one account's outage delays nobody else's plays.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from crosswatchd.tokens import TokenStore
from tests.e2e_support import SECRET, Daemon, free_port, movie_payload, post_webhook, wait_for
from tests.fakes.catalog import Catalog, default_catalog
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt

TAUTULLI_WATCHED = (
    Path(__file__).parent / "fixtures" / "tautulli" / "watched_movie_barry-lyndon.json"
)


def plex_play(n: int, account: str) -> dict[str, Any]:
    """A real Plex scrobble of test movie *n* by Plex account *account* (the owner's webhook
    reports every account's plays: ``user`` is true for the owner only)."""
    payload = movie_payload(n)
    payload["Account"] = {"id": 1 if account == "Alex" else 100 + len(account), "title": account}
    payload["user"] = account == "Alex"
    payload["owner"] = True
    return payload


def tautulli_watched(n: int, username: str) -> dict[str, Any]:
    """Tautulli's ``watched`` body for test movie *n* (the same ids as :func:`plex_play`)."""
    body = json.loads(TAUTULLI_WATCHED.read_bytes())
    body.update(
        username=username,
        title=f"Test Movie {n}",
        rating_key=str(900_000 + n),
        guid=f"plex://movie/{n:024x}",
        imdb_id=f"tt{9_000_000 + n}",
        themoviedb_id=str(800_000 + n),
        unixtime=str(int(datetime.now(UTC).timestamp())),
    )
    return body


async def post_tautulli(http: aiohttp.ClientSession, port: int, body: dict[str, Any]) -> int:
    url = f"http://127.0.0.1:{port}/webhook/tautulli?token={SECRET}"
    async with http.post(
        url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
    ) as resp:
        return resp.status


def imdb_of(entries: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(e["movie"]["ids"]["imdb"]) for e in entries if "movie" in e)


def simkl_imdb_of(fake: FakeSimkl, catalog: Catalog, user: str) -> Counter[str]:
    """The plays of *user* on the SIMKL fake as a count of movie imdb ids."""
    by_simkl = {m["ids"]["simkl"]: m["ids"]["imdb"] for m in catalog.movies}
    return Counter(
        str(by_simkl[p["simkl"]]) for p in fake.user(user).history if p["type"] == "movie"
    )


def films() -> Catalog:
    """The fakes' catalogue with the test movies 1-9 (the ids of :func:`movie_payload`)."""
    catalog = default_catalog()
    for n in range(1, 10):
        catalog.add_movie(f"Test Movie {n}", 2000, imdb=f"tt{9_000_000 + n}", tmdb=800_000 + n)
    return catalog


@pytest.fixture
async def household(tmp_path: Path) -> AsyncIterator[tuple[FakeTrakt, FakeSimkl, Daemon]]:
    catalog = films()
    async with (
        FakeTrakt(client_id="cid", client_secret="csecret", catalog=catalog) as trakt,
        FakeSimkl(client_id="sid", catalog=catalog) as simkl,
    ):
        data_dir = tmp_path / "data"
        port = free_port()
        config = tmp_path / "crosswatchd.toml"
        config.write_text(
            f'data_dir = "{data_dir}"\n'
            f"[http]\nport = {port}\n"
            f'[webhook]\nsecret = "{SECRET}"\n'
            "[resolver]\nuse_search = false\n"
            "[delivery]\ntimeout_s = 3.0\npoll_s = 0.2\nbackoff_base_s = 0.2\n"
            "backoff_max_s = 1.0\nlease_s = 30\n"
            '[anime]\nmapping_url = ""\n'
            f'[trakt]\nclient_id = "cid"\nclient_secret = "csecret"\napi_url = "{trakt.url}"\n'
            f'[simkl]\nclient_id = "sid"\napi_url = "{simkl.url}"\n'
            '[[profiles]]\nname = "alex"\nplex_accounts = ["Alex"]\ntautulli_users = ["alex"]\n'
            '[[profiles]]\nname = "sam"\nplex_accounts = ["Sam"]\ntautulli_users = ["sam"]\n'
        )
        for profile in ("alex", "sam"):
            TokenStore(data_dir, "trakt", profile).save(trakt.issue_token(user=profile))
            TokenStore(data_dir, "simkl", profile).save(
                {"access_token": simkl.issue_token(user=profile)}
            )
        daemon = Daemon(config, port, tmp_path / "daemon.log")
        try:
            yield trakt, simkl, daemon
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.stop()


async def test_each_account_holds_exactly_its_owners_plays(
    household: tuple[FakeTrakt, FakeSimkl, Daemon],
) -> None:
    trakt, simkl, daemon = household
    await daemon.start()
    async with aiohttp.ClientSession() as http:
        assert await post_webhook(http, daemon.port, plex_play(1, "Alex")) == 202
        assert await post_webhook(http, daemon.port, plex_play(2, "Sam")) == 202
        assert await post_webhook(http, daemon.port, plex_play(3, "Stranger")) == 200
        # Both watch film 4 together: one play in each account.
        assert await post_webhook(http, daemon.port, plex_play(4, "Alex")) == 202
        assert await post_webhook(http, daemon.port, plex_play(4, "Sam")) == 202
        # Tautulli reports Alex's film 4 too (one play, not two) and Sam's film 5.
        assert await post_tautulli(http, daemon.port, tautulli_watched(4, "alex")) == 202
        assert await post_tautulli(http, daemon.port, tautulli_watched(5, "sam")) == 202
        assert await post_tautulli(http, daemon.port, tautulli_watched(6, "stranger")) == 200

        def settled() -> bool:
            return all(
                sum(imdb_of(trakt.user(u).history).values()) >= n
                and sum(simkl_imdb_of(simkl, simkl.catalog, u).values()) >= n
                for u, n in (("alex", 2), ("sam", 3))
            )

        await wait_for(settled, 30, "every play in its owner's accounts")
        await asyncio.sleep(1.0)  # nothing more arrives
    alex, sam = {"tt9000001": 1, "tt9000004": 1}, {"tt9000002": 1, "tt9000004": 1, "tt9000005": 1}
    assert imdb_of(trakt.user("alex").history) == Counter(alex)
    assert imdb_of(trakt.user("sam").history) == Counter(sam)
    assert simkl_imdb_of(simkl, simkl.catalog, "alex") == Counter(alex)
    assert simkl_imdb_of(simkl, simkl.catalog, "sam") == Counter(sam)
    assert trakt.user("me").history == []
    assert trakt.rate_limited == 0
    assert daemon.stop() == 0


async def test_one_accounts_outage_delays_nobody_else(
    household: tuple[FakeTrakt, FakeSimkl, Daemon],
) -> None:
    trakt, simkl, daemon = household
    trakt.down_users.add("sam")  # Sam's Trakt account: 503 for every request
    await daemon.start()
    async with aiohttp.ClientSession() as http:
        assert await post_webhook(http, daemon.port, plex_play(7, "Sam")) == 202
        assert await post_webhook(http, daemon.port, plex_play(8, "Alex")) == 202
        await wait_for(
            lambda: (
                bool(trakt.user("alex").history)
                and bool(simkl.user("alex").history)
                and bool(simkl.user("sam").history)
            ),
            15,
            "Alex's plays and Sam's SIMKL play during Sam's Trakt outage",
        )
        assert trakt.user("sam").history == []
        trakt.down_users.clear()
        await wait_for(lambda: bool(trakt.user("sam").history), 30, "Sam's play after the outage")
        await asyncio.sleep(1.0)
    assert imdb_of(trakt.user("sam").history) == Counter({"tt9000007": 1})
    assert imdb_of(trakt.user("alex").history) == Counter({"tt9000008": 1})
    assert daemon.stop() == 0
