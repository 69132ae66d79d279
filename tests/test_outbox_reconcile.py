"""What the outbox offers reconcile: plays meant for one target account only (``targets=``)
that no other target adopts later, the plays the daemon delivered (what a pass folds into its
copy of a target), and backfill that never delays a fresh webhook play by more than a batch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from crosswatchd.models import Ids, Item, MediaKind, Source
from crosswatchd.outbox import DeliveryKind, Outbox, Settlement
from tests.clocks import Clock
from tests.test_outbox import BARRY_LYNDON, MOVIE_PLEX, PROVIDERS, T0, WINDOW_S, watched


@pytest.fixture
def clock() -> Clock:
    return Clock((T0 + timedelta(hours=1)).timestamp())


@pytest.fixture
async def outbox(tmp_path: Path, clock: Clock) -> AsyncIterator[Outbox]:
    box = await Outbox.open(
        tmp_path / "outbox.db", providers=PROVIDERS, dedupe_window_s=WINDOW_S, unix_s=clock
    )
    yield box
    await box.close()


def movie(n: int) -> Item:
    return Item(MediaKind.MOVIE, f"Movie {n}", 2000, ids=Ids(imdb=f"tt{7_000_000 + n}"))


class TestOnlySomeTargets:
    async def test_a_play_only_simkl_lacks_becomes_a_simkl_delivery_alone(
        self, outbox: Outbox
    ) -> None:
        [result] = await outbox.enqueue_many(
            [watched(BARRY_LYNDON, T0, Source.RECONCILE)], targets=["simkl"]
        )
        assert result.new_deliveries == 1 and not result.duplicate
        assert await outbox.fetch_all("SELECT provider, kind, priority FROM deliveries") == [
            ("simkl", "play", 1)
        ]

    async def test_no_other_target_adopts_it_later(self, outbox: Outbox) -> None:
        await outbox.enqueue_many([watched(BARRY_LYNDON, T0, Source.RECONCILE)], targets=["simkl"])
        assert await outbox.adopt_targets() == 0
        assert await outbox.fetch_all("SELECT provider FROM deliveries") == [("simkl",)]

    async def test_it_dedupes_against_that_target_only(self, outbox: Outbox) -> None:
        await outbox.enqueue(watched(MOVIE_PLEX, T0))  # a webhook play: both targets
        again = watched(MOVIE_PLEX, T0 + timedelta(minutes=7), Source.RECONCILE)
        [result] = await outbox.enqueue_many([again], keep_duplicates=False, targets=["trakt"])
        assert result.duplicate and result.event_id is None
        later = watched(MOVIE_PLEX, T0 + timedelta(days=2), Source.RECONCILE)
        [result] = await outbox.enqueue_many([later], targets=["trakt"])
        assert result.new_deliveries == 1
        rows = await outbox.fetch_all("SELECT provider FROM deliveries ORDER BY id")
        assert rows == [("trakt",), ("simkl",), ("trakt",)]


class TestPlaysSince:
    async def test_the_plays_delivered_since_then_to_that_account_with_their_times(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        await outbox.enqueue_many([watched(movie(n), T0 + timedelta(days=n)) for n in range(3)])
        claimed = await outbox.claim("trakt", DeliveryKind.PLAY, limit=10, lease_s=30)
        await outbox.settle(claimed[0], Settlement.delivered())  # before: not listed
        clock.advance(10)
        since = clock()
        await outbox.settle(claimed[1], Settlement.delivered())  # sent
        await outbox.settle(claimed[2], Settlement.delivered(note="found in history"))
        plays = await outbox.timed_plays_since("default", "trakt", since_s=since)
        assert [(item.ids.imdb, at) for item, at in plays] == [
            ("tt7000001", (T0 + timedelta(days=1)).timestamp()),
            ("tt7000002", (T0 + timedelta(days=2)).timestamp()),
        ]
        assert await outbox.timed_plays_since("default", "simkl", since_s=since) == []
        assert await outbox.timed_plays_since("default", "trakt", since_s=clock() + 1) == []


class TestBackfillPriority:
    async def test_a_fresh_play_waits_behind_no_more_than_one_batch_of_backfill(
        self, outbox: Outbox
    ) -> None:
        """100,000 reconcile plays waiting: the next claim takes the fresh webhook play
        first, so it is sent with the next batch at the latest."""
        backlog = [
            watched(movie(n), T0 - timedelta(days=1, hours=n % 24 * 5), Source.RECONCILE)
            for n in range(100_000)
        ]
        for start in range(0, len(backlog), 5000):
            await outbox.enqueue_many(backlog[start : start + 5000], targets=["trakt"])
        first = await outbox.claim("trakt", DeliveryKind.PLAY, limit=100, lease_s=30)
        assert len(first) == 100 and {c.source for c in first} == {Source.RECONCILE}
        fresh = watched(BARRY_LYNDON, T0)
        await outbox.enqueue(fresh)
        second = await outbox.claim("trakt", DeliveryKind.PLAY, limit=100, lease_s=30)
        assert len(second) == 100
        assert [c.item for c in second if c.source is Source.PLEX] == [BARRY_LYNDON]
