"""Replicas delivering for real: drainers, providers and limiters against the strict fake Trakt,
two replicas in the test's process on one storage (SQLite files and PostgreSQL), real time.

What a user would notice: a hand-over never lets two replicas' writes for one account come
closer than Trakt allows (1 POST/s, a ``Retry-After`` honoured by the next holder too), and a
replica that lost an account's lease sends nothing more for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crosswatchd.app import limiter_for, make_provider
from crosswatchd.config import Settings
from crosswatchd.drain import Drainer
from crosswatchd.errors import LeaseLostError
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.profiles import TargetAccount
from crosswatchd.ratelimit import Limiter
from crosswatchd.tokens.files import TokenFile
from tests.backends import BACKENDS
from tests.fakes.trakt import FakeTrakt
from tests.replica_support import Backend, Node

ANN = TargetAccount("ann", "trakt")
BIG_TROUBLE = Item(
    MediaKind.MOVIE, "Big Trouble in Little China", 1986, ids=Ids(imdb="tt0090728", tmdb="6978")
)
BARRY_LYNDON = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))


def play(item: Item) -> PlayEvent:
    at = datetime.now(UTC).replace(microsecond=0)
    return PlayEvent(
        Source.PLEX, Action.WATCHED, "Ann", item, at, progress_pct=100.0, profile="ann"
    )


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Wait for *condition*; the monotonic time it came true at."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", tmp_path)
    return Backend("postgresql", tmp_path, request.getfixturevalue("pg_url"))


@pytest.fixture
async def fake() -> AsyncIterator[FakeTrakt]:
    async with FakeTrakt() as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def settings(tmp_path: Path, fake: FakeTrakt) -> Settings:
    values = Settings(
        data_dir=tmp_path / "data",
        trakt={
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "api_url": fake.url,
        },
        delivery={"poll_s": 30.0, "timeout_s": 3.0, "backoff_base_s": 0.2, "lease_s": 30.0},
        profiles=[{"name": "ann", "plex_accounts": ["Ann"]}],
    )
    TokenFile(values.data_dir, "trakt", "ann").write(fake.issue_token(user="ann"))
    return values


@pytest.fixture
async def replica(
    backend: Backend, settings: Settings, session: aiohttp.ClientSession
) -> AsyncIterator[Any]:
    """Replicas with real drainers (providers, gated limiters), on real time."""
    made: list[Node] = []

    def limiter(account: TargetAccount) -> Limiter:
        return limiter_for(settings, account.provider)

    async def drain(node: Node, account: TargetAccount, stop: asyncio.Event) -> None:
        provider = make_provider(
            settings,
            session,
            account,
            TokenFile(settings.data_dir, account.provider, account.profile),
            limiter=node.limiters[account],
        )
        await Drainer(node.outbox, provider, settings.delivery, profile=account.profile).run(stop)

    async def make(name: str) -> Node:
        node = await Node.make(backend, name, settings, time.time, limiter=limiter, work=drain)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.close()


async def test_a_hand_over_keeps_the_accounts_writes_a_second_apart(
    replica: Any, fake: FakeTrakt
) -> None:
    """The next holder's limiter was made long ago (full): only the state that came with the
    lease keeps its first POST a second after the last holder's."""
    z: Node = await replica("z")  # shares go by id: "b" gets the one account once it runs
    await z.start()
    b: Node = await replica("b")
    await asyncio.sleep(1.2)  # b's own POST bucket is full by now
    await z.outbox.enqueue(play(BIG_TROUBLE))
    await until(lambda: len(fake.plays(user="ann")) == 1, 10, "z's play on Trakt")
    await b.outbox.enqueue(play(BARRY_LYNDON))  # b's drainer will claim it at once
    await b.start()
    await z.tick()  # over its share: hands ann over, with its limiter state
    await b.tick()
    assert b.held == [ANN]
    await until(lambda: len(fake.plays(user="ann")) == 2, 10, "b's play on Trakt")
    assert fake.user("ann").rate_limited == 0, fake.user("ann").rate_limit_log


async def test_a_retry_after_is_honoured_by_the_next_holder(replica: Any, fake: FakeTrakt) -> None:
    z: Node = await replica("z")
    await z.start()
    b: Node = await replica("b")
    fake.fail_next(429, headers={"Retry-After": "3"}, path="/sync/history", method="POST")
    await z.outbox.enqueue(play(BIG_TROUBLE))
    refused = await until(
        lambda: any(m == "POST" and p == "/sync/history" for m, p, _ in fake.requests),
        10,
        "the 429",
    )
    await b.outbox.enqueue(play(BARRY_LYNDON))
    await b.start()
    await z.tick()
    await b.tick()
    assert b.held == [ANN]
    landed = await until(lambda: len(fake.plays(user="ann")) >= 1, 15, "a play on Trakt")
    assert landed - refused >= 2.8, "the next holder wrote before Retry-After had passed"


async def test_a_replica_whose_lease_was_taken_sends_nothing_more(
    replica: Any, fake: FakeTrakt, backend: Backend
) -> None:
    z: Node = await replica("z")
    await z.start()
    assert z.held == [ANN]
    await z.store.db.execute(
        "UPDATE account_leases SET holder = 'elsewhere', expires_at = :until WHERE profile = 'ann'",
        {"until": time.time() + 300},
    )
    await z.outbox.enqueue(play(BIG_TROUBLE))
    running = z.supervisor._running[ANN]  # its drainer ends by itself
    await until(running.task.done, 10, "the drainer to end")
    await asyncio.sleep(0.3)
    assert not [r for r in fake.requests if r[0] == "POST"]
    assert fake.plays(user="ann") == []
    await z.tick()
    assert z.held == []
    rows = await z.outbox.fetch_all("SELECT state, sent_at IS NOT NULL FROM deliveries")
    assert rows == [("leased", 1)]  # left to expire; the next holder looks it up first


async def test_only_the_lease_holder_refreshes_the_rotating_token(
    replica: Any, fake: FakeTrakt, settings: Settings, session: aiohttp.ClientSession
) -> None:
    """Trakt's refresh token works once: a replica not holding the account must not use it
    (the holder would then hold a dead one). The refresh is a write, so the gate refuses it
    before it leaves; the holder's refresh goes through and is saved before use."""
    z: Node = await replica("z")
    await z.start()
    b: Node = await replica("b")  # not started: holds nothing
    tokens = TokenFile(settings.data_dir, "trakt", "ann")
    before = tokens.load()
    assert before is not None
    fake.expire_access_tokens(user="ann")  # the next call gets 401 and wants a refresh

    def refreshes() -> int:
        return sum(1 for m, p, _ in fake.requests if (m, p) == ("POST", "/oauth/token"))

    outsider = make_provider(settings, session, ANN, tokens, limiter=b.limiters[ANN])
    with pytest.raises(LeaseLostError):
        await outsider.last_activities()
    assert refreshes() == 0
    assert tokens.load() == before
    holder = make_provider(settings, session, ANN, tokens, limiter=z.limiters[ANN])
    await holder.last_activities()
    assert refreshes() == 1
    after = tokens.load()
    assert after is not None and after.refresh_token != before.refresh_token
