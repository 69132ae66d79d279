"""Wake-ups, on SQLite and PostgreSQL: a drainer loop is woken when its own account has work
(at once when it starts, at once on this process's intake, when a retry comes due) and not
for anyone else's; however many accounts are held, idle ones cost one query per poll in all.
A relay replica holding thousands of accounts used to run a query per loop per poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import DeliveryKind, Outbox, Settlement
from crosswatchd.outbox.wakeups import DueRow, Wakeups
from tests.backends import BACKENDS, outbox_for

T0 = datetime(2026, 1, 2, 20, 0, tzinfo=UTC)
PLAY = DeliveryKind.PLAY
POLL_S = 0.3


def play(n: int, profile: str) -> PlayEvent:
    item = Item(MediaKind.MOVIE, f"Film {n}", 2000, ids=Ids(imdb=f"tt{1_000_000 + n}"))
    return PlayEvent(Source.PLEX, Action.WATCHED, profile, item, T0, profile=profile)


@pytest.fixture(params=BACKENDS)
async def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outbox]:
    targets = {f"p{n:03d}": ["trakt"] for n in range(300)} | {"ann": ["trakt", "simkl"]}
    async with outbox_for(request, tmp_path, targets=targets) as box:
        yield box


async def woken(event: asyncio.Event, within_s: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), within_s)
    except TimeoutError:
        return False
    return True


async def test_a_loop_starting_on_an_account_with_queued_plays_is_woken_at_once(
    outbox: Outbox,
) -> None:
    """An account taken over from a dead replica: its backlog goes out without a poll's wait,
    and only its own loops are woken."""
    await outbox.enqueue_many([play(1, "ann")])
    ann = outbox.watch("ann", "simkl", PLAY, poll_s=30.0)
    ann_live = outbox.watch("ann", "simkl", DeliveryKind.LIVE, poll_s=30.0)
    other = outbox.watch("p001", "trakt", PLAY, poll_s=30.0)
    assert await woken(ann, 1.0)
    await asyncio.sleep(0.1)
    assert not ann_live.is_set() and not other.is_set()


async def test_intake_wakes_only_the_accounts_it_gave_deliveries_to(outbox: Outbox) -> None:
    watches = {p: outbox.watch(p, "trakt", PLAY, poll_s=30.0) for p in ("ann", "p001", "p002")}
    await asyncio.sleep(0.1)  # the first look found nothing
    assert not any(e.is_set() for e in watches.values())
    await outbox.enqueue_many([play(1, "p001")])
    assert watches["p001"].is_set()
    assert not watches["ann"].is_set() and not watches["p002"].is_set()


async def test_a_retry_wakes_its_loop_when_due_without_waiting_for_the_poll(
    outbox: Outbox,
) -> None:
    await outbox.enqueue_many([play(1, "p007")])
    (claimed,) = await outbox.claim("trakt", PLAY, limit=5, lease_s=60, profile="p007")
    assert await outbox.settle(claimed, Settlement.pending(0.6, "trakt: 503", keep_sent=False))
    wake = outbox.watch("p007", "trakt", PLAY, poll_s=30.0)
    assert not await woken(wake, 0.3)  # not due yet
    assert await woken(wake, 1.5)  # due: woken long before the 30 s poll


async def test_a_play_another_replica_queued_is_found_by_the_poll(outbox: Outbox) -> None:
    """Another replica's intake wakes nothing here: the poll finds its play within poll_s."""
    wake = outbox.watch("p009", "trakt", PLAY, poll_s=POLL_S)
    await asyncio.sleep(0.1)  # the first look found nothing
    elsewhere = Outbox.on(outbox.db, targets=outbox.targets)  # its own wake-ups
    began = time.monotonic()
    await elsewhere.enqueue_many([play(1, "p009")])
    assert not wake.is_set()
    assert await woken(wake, POLL_S + 1.0)
    assert time.monotonic() - began <= POLL_S + 0.5


async def test_idle_accounts_cost_one_query_per_poll_in_all(outbox: Outbox) -> None:
    """300 accounts x 4 kinds watched, one play queued: over 1.2 s the due times are read
    a handful of times, not once per loop per poll."""
    reads: list[Sequence[str] | None] = []

    async def counting(profiles: Sequence[str] | None) -> list[DueRow]:
        reads.append(profiles)
        return await outbox.due_accounts(profiles)

    wakeups = Wakeups(counting, unix_s=time.time)
    await outbox.enqueue_many([play(1, "p150")])
    events = {
        (p, kind): wakeups.watch(p, "trakt", str(kind), poll_s=POLL_S)
        for p in (f"p{n:03d}" for n in range(300))
        for kind in DeliveryKind
    }
    try:
        await asyncio.sleep(1.2)
    finally:
        await wakeups.close()
    assert len(reads) <= 2 + 1.2 / POLL_S
    assert [k for k, e in events.items() if e.is_set()] == [("p150", PLAY)]
