"""Ratings and watchlist changes in the outbox: the latest change of an item wins per target
account (a later one supersedes a waiting one; an older one never overwrites a newer one),
SIMKL never gets a season or episode rating, and backfilled plays wait behind fresh ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import DeliveryKind, Outbox, Settlement
from tests.backends import BACKENDS, outbox_for
from tests.clocks import Clock

T0 = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
FILM = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"), rating_key="7")
SEASON = Item(MediaKind.SEASON, "Season 2", ids=Ids(tvdb="1"), show_ids=Ids(tvdb="73871"), season=2)


def rate(item: Item, rating: int | None, at: datetime, source: Source = Source.PLEX) -> PlayEvent:
    return PlayEvent(source, Action.RATE, "alice", item, at, rating=rating)


def watched(n: int, source: Source, at: datetime) -> PlayEvent:
    item = Item(MediaKind.MOVIE, f"Film {n}", 2000, ids=Ids(imdb=f"tt{1_000_000 + n}"))
    return PlayEvent(source, Action.WATCHED, "alice", item, at)


@pytest.fixture(params=BACKENDS)
async def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outbox]:
    """On SQLite and on PostgreSQL."""
    async with outbox_for(
        request, tmp_path, providers=["trakt", "simkl"], unix_s=Clock(T0.timestamp())
    ) as box:
        yield box


async def ratings(outbox: Outbox, provider: str = "trakt") -> list[tuple[int | None, str]]:
    rows = await outbox.fetch_all(
        "SELECT e.rating, d.state FROM deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE d.kind = 'rating' AND d.provider = ? ORDER BY d.id",
        [provider],
    )
    return [(r[0], str(r[1])) for r in rows]


class TestLatestRatingWins:
    async def test_a_later_rating_supersedes_a_waiting_one(self, outbox: Outbox) -> None:
        await outbox.enqueue(rate(FILM, 8, T0))
        await outbox.enqueue(rate(FILM, 7, T0 + timedelta(minutes=1)))
        assert await ratings(outbox) == [(8, "dropped"), (7, "pending")]

    async def test_a_rating_being_sent_is_superseded_too(self, outbox: Outbox) -> None:
        await outbox.enqueue(rate(FILM, 8, T0))
        (sending,) = await outbox.claim("trakt", DeliveryKind.RATING, limit=10, lease_s=30)
        await outbox.enqueue(rate(FILM, 7, T0 + timedelta(minutes=1)))
        assert await ratings(outbox) == [(8, "dropped"), (7, "pending")]
        assert not await outbox.settle(sending, Settlement.delivered())  # its lease is gone

    async def test_an_older_rating_never_overwrites_a_newer_one(self, outbox: Outbox) -> None:
        await outbox.enqueue(rate(FILM, 7, T0 + timedelta(minutes=1)))
        (newer,) = await outbox.claim("trakt", DeliveryKind.RATING, limit=10, lease_s=30)
        assert await outbox.settle(newer, Settlement.delivered())
        await outbox.enqueue(rate(FILM, 8, T0, Source.IMPORT))  # an old rating, imported late
        assert await ratings(outbox) == [(7, "delivered"), (8, "dropped")]

    async def test_a_cleared_rating_is_a_change_like_any_other(self, outbox: Outbox) -> None:
        await outbox.enqueue(rate(FILM, 8, T0))
        await outbox.enqueue(rate(FILM, None, T0 + timedelta(minutes=1)))
        assert await ratings(outbox) == [(8, "dropped"), (None, "pending")]

    async def test_each_target_account_keeps_its_own_latest(self, outbox: Outbox) -> None:
        await outbox.enqueue(rate(FILM, 8, T0))
        (trakt,) = await outbox.claim("trakt", DeliveryKind.RATING, limit=10, lease_s=30)
        await outbox.settle(trakt, Settlement.delivered())
        assert await ratings(outbox, "simkl") == [(8, "pending")]

    async def test_simkl_never_gets_a_season_or_episode_rating(self, outbox: Outbox) -> None:
        await outbox.enqueue(rate(SEASON, 9, T0))
        assert await ratings(outbox, "trakt") == [(9, "pending")]
        assert await ratings(outbox, "simkl") == []


class TestFreshPlaysFirst:
    async def test_a_webhook_play_is_claimed_before_a_large_import_backlog(
        self, outbox: Outbox
    ) -> None:
        await outbox.enqueue_many(
            [watched(n, Source.IMPORT, T0 - timedelta(days=n)) for n in range(1, 301)]
        )
        await outbox.enqueue(watched(999, Source.PLEX, T0))
        first = await outbox.claim("trakt", DeliveryKind.PLAY, limit=100, lease_s=30)
        assert Source.PLEX in {c.source for c in first}  # in the very next batch
        assert len(first) == 100
