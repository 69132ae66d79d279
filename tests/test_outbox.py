"""The outbox: schema, fan-out, dedupe, group commit, lease-guarded claim and settle.

Tests of the ``outbox`` fixture run twice: on a real SQLite file (WAL) in ``tmp_path`` and on a
fresh database of a throwaway PostgreSQL cluster; the others are about SQLite files. Time is an
injected clock (unix seconds).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crosswatchd.errors import StorageError
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import (
    SCHEMA_VERSION,
    Claimed,
    DeliveryKind,
    DeliveryState,
    Outbox,
    ReasonKind,
    Settlement,
)
from crosswatchd.outbox.queries import MIGRATIONS, QUERIES, Queries, named_blocks
from tests.backends import BACKENDS, outbox_for
from tests.clocks import Clock

PROVIDERS = ["trakt", "simkl"]
T0 = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
WINDOW_S = 3600.0
LEASE_S = 30.0

# Plex (new agent) and Tautulli describe the same movie differently; the ratingKey is shared.
MOVIE_PLEX = Item(
    MediaKind.MOVIE,
    "Big Trouble in Little China",
    1986,
    ids=Ids(imdb="tt0090728"),
    rating_key="59852",
    guid="plex://movie/5d7768254de0ee001fcc8d1e",
)
MOVIE_TAUTULLI = Item(
    MediaKind.MOVIE, "Big Trouble in Little China", 1986, ids=Ids(tmdb="6978"), rating_key="59852"
)
BARRY_LYNDON = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))
# Legacy thetvdb agent vs a Tautulli body without a ratingKey: same show tvdb id + S/E.
FUTURAMA_LEGACY = Item(
    MediaKind.EPISODE, show_title="Futurama", show_ids=Ids(tvdb="73871"), season=2, number=15
)
FUTURAMA_TAUTULLI = Item(
    MediaKind.EPISODE,
    "A Clone of My Own",
    show_title="Futurama",
    show_ids=Ids(tvdb="73871", imdb="tt0149460"),
    season=2,
    number=15,
)
FUTURAMA_2X14 = Item(
    MediaKind.EPISODE, show_title="Futurama", show_ids=Ids(tvdb="73871"), season=2, number=14
)
# New Plex agent (the episode's own ids) vs Tautulli (show ids): they share the ratingKey.
BOBS_PLEX = Item(
    MediaKind.EPISODE,
    "The Fresh Princ-ipal",
    ids=Ids(imdb="tt9413736", tvdb="7047159"),
    show_title="Bob's Burgers",
    season=9,
    number=15,
    rating_key="70001",
    grandparent_rating_key="70000",
)
BOBS_TAUTULLI = Item(
    MediaKind.EPISODE,
    show_title="Bob's Burgers",
    show_ids=Ids(tvdb="194031"),
    season=9,
    number=15,
    rating_key="70001",
)


def watched(
    item: Item, at: datetime, source: Source = Source.PLEX, account: str = "alice"
) -> PlayEvent:
    """A completed play."""
    return PlayEvent(source, Action.WATCHED, account, item, at, progress_pct=100.0)


def live(item: Item, at: datetime, action: Action = Action.START) -> PlayEvent:
    """Live state (start/pause/stop)."""
    return PlayEvent(Source.PLEX, action, "alice", item, at, progress_pct=12.5, session="p1")


@pytest.fixture
def clock() -> Clock:
    return Clock((T0 + timedelta(hours=1)).timestamp())


@pytest.fixture(params=BACKENDS)
async def outbox(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Outbox]:
    """The outbox under test, on SQLite and on PostgreSQL."""
    async with outbox_for(
        request, tmp_path, providers=PROVIDERS, dedupe_window_s=WINDOW_S, unix_s=clock
    ) as box:
        yield box


@pytest.fixture
async def sqlite_outbox(tmp_path: Path, clock: Clock) -> AsyncIterator[Outbox]:
    """An outbox file, for what only SQLite has (pragmas, its query planner, RETURNING)."""
    box = await Outbox.open(
        tmp_path / "outbox.db", providers=PROVIDERS, dedupe_window_s=WINDOW_S, unix_s=clock
    )
    yield box
    await box.close()


async def deliveries(
    outbox: Outbox, columns: str = "provider, kind, state"
) -> list[tuple[Any, ...]]:
    return await outbox.fetch_all(f"SELECT {columns} FROM deliveries ORDER BY id")


async def row(outbox: Outbox, delivery_id: int, columns: str) -> tuple[Any, ...]:
    [found] = await outbox.fetch_all(
        f"SELECT {columns} FROM deliveries WHERE id = ?", [delivery_id]
    )
    return found


async def table_sizes(outbox: Outbox) -> dict[str, int]:
    sizes = {}
    for table in ("events", "deliveries", "delivery_keys", "seen_accounts"):
        [(n,)] = await outbox.fetch_all(f"SELECT count(*) FROM {table}")
        sizes[table] = int(n)
    return sizes


async def claim(outbox: Outbox, provider: str = "trakt", limit: int = 10) -> list[Claimed]:
    return await outbox.claim(provider, "play", limit=limit, lease_s=LEASE_S)


class TestSchema:
    async def test_new_file_gets_the_current_schema_version_in_wal_mode(
        self, sqlite_outbox: Outbox
    ) -> None:
        """A new outbox file is at PRAGMA user_version 5 (every migration), journal_mode WAL."""
        assert SCHEMA_VERSION == 5
        assert await sqlite_outbox.fetch_all("PRAGMA user_version") == [(5,)]
        assert await sqlite_outbox.fetch_all("PRAGMA journal_mode") == [("wal",)]

    async def test_reopening_keeps_events_and_deliveries(
        self, tmp_path: Path, clock: Clock
    ) -> None:
        """Closing and reopening the file keeps what was committed, at the same version."""
        path = tmp_path / "outbox.db"
        first = await Outbox.open(path, providers=PROVIDERS, unix_s=clock)
        await first.enqueue(watched(MOVIE_PLEX, T0))
        await first.close()

        again = await Outbox.open(path, providers=PROVIDERS, unix_s=clock)
        try:
            assert await again.fetch_all("PRAGMA user_version") == [(SCHEMA_VERSION,)]
            counts = await again.counts()
            assert {p: c.pending for p, c in counts.items()} == {"trakt": 1, "simkl": 1}
            [claimed] = await claim(again)
            assert claimed.item == MOVIE_PLEX
            assert claimed.watched_at == T0
        finally:
            await again.close()

    async def test_newer_schema_version_refuses_to_open(self, tmp_path: Path) -> None:
        """A file written by a newer crosswatchd is refused and left untouched."""
        path = tmp_path / "outbox.db"
        with sqlite3.connect(path) as conn:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        with pytest.raises(StorageError, match="newer"):
            await Outbox.open(path, providers=PROVIDERS)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 1,)
            assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


class TestFanOut:
    async def test_play_becomes_one_play_delivery_per_provider_watched_at_occurred_at(
        self, outbox: Outbox
    ) -> None:
        """A completed play fans out into one pending 'play' delivery per provider, with
        watched_at = the event's occurred_at."""
        result = await outbox.enqueue(watched(MOVIE_PLEX, T0))

        assert (result.new_deliveries, result.duplicate) == (2, False)
        assert await deliveries(outbox, "provider, kind, state, watched_at") == [
            ("trakt", "play", "pending", T0.timestamp()),
            ("simkl", "play", "pending", T0.timestamp()),
        ]

    async def test_live_event_becomes_one_live_delivery_per_provider(self, outbox: Outbox) -> None:
        """Live state fans out into 'live' deliveries without a watched_at."""
        result = await outbox.enqueue(live(MOVIE_PLEX, T0))

        assert (result.new_deliveries, result.duplicate) == (2, False)
        assert await deliveries(outbox, "provider, kind, state, watched_at") == [
            ("trakt", "live", "pending", None),
            ("simkl", "live", "pending", None),
        ]
        counts = await outbox.counts()
        assert (counts["trakt"].live_pending, counts["trakt"].pending) == (1, 0)


class TestDedupe:
    @pytest.mark.parametrize(
        ("plex", "tautulli"),
        [
            pytest.param(MOVIE_PLEX, MOVIE_TAUTULLI, id="movie-same-rating-key"),
            pytest.param(FUTURAMA_LEGACY, FUTURAMA_TAUTULLI, id="episode-show-tvdb-and-SxE"),
            pytest.param(BOBS_PLEX, BOBS_TAUTULLI, id="episode-own-ids-vs-show-ids-same-rk"),
        ],
    )
    async def test_same_play_from_plex_then_tautulli_is_one_delivery_per_provider(
        self, outbox: Outbox, plex: Item, tautulli: Item
    ) -> None:
        """Tautulli reporting a play Plex reported minutes earlier adds nothing."""
        first = await outbox.enqueue(watched(plex, T0))
        second = await outbox.enqueue(watched(tautulli, T0 + timedelta(minutes=4), Source.TAUTULLI))

        assert (first.new_deliveries, first.duplicate) == (2, False)
        assert (second.new_deliveries, second.duplicate) == (0, True)
        assert await deliveries(outbox) == [
            ("trakt", "play", "pending"),
            ("simkl", "play", "pending"),
        ]

    async def test_a_movie_in_two_libraries_is_one_play(self, outbox: Outbox) -> None:
        """Two ratingKeys (a 4K and an HD library), one movie: its ids make it one play."""
        hd = replace(MOVIE_PLEX, rating_key="1001")
        uhd = replace(MOVIE_PLEX, rating_key="2002", guid="plex://movie/another-copy")
        await outbox.enqueue(watched(hd, T0))
        again = await outbox.enqueue(watched(uhd, T0 + timedelta(minutes=2)))
        assert again.duplicate
        assert len(await deliveries(outbox)) == 2

    async def test_same_item_outside_the_window_is_a_second_play(self, outbox: Outbox) -> None:
        """The same item finished again after dedupe_window_s is a rewatch: new deliveries."""
        await outbox.enqueue(watched(MOVIE_PLEX, T0))
        later = T0 + timedelta(seconds=WINDOW_S + 60)
        again = await outbox.enqueue(watched(MOVIE_TAUTULLI, later, Source.TAUTULLI))

        assert (again.new_deliveries, again.duplicate) == (2, False)
        assert len(await deliveries(outbox)) == 4

    @pytest.mark.parametrize(
        ("one", "other"),
        [
            pytest.param(MOVIE_PLEX, BARRY_LYNDON, id="other-movie"),
            pytest.param(FUTURAMA_LEGACY, FUTURAMA_2X14, id="other-episode-same-show"),
        ],
    )
    async def test_different_item_in_the_window_is_not_deduped(
        self, outbox: Outbox, one: Item, other: Item
    ) -> None:
        """Another item watched minutes later is its own play."""
        await outbox.enqueue(watched(one, T0))
        result = await outbox.enqueue(watched(other, T0 + timedelta(minutes=4)))

        assert (result.new_deliveries, result.duplicate) == (2, False)

    async def test_episode_own_imdb_never_matches_a_show_imdb(self, outbox: Outbox) -> None:
        """Keys are typed: an episode whose own imdb id equals another item's show imdb id
        (same S/E even) is a different play."""
        by_show = Item(MediaKind.EPISODE, show_ids=Ids(imdb="tt0149460"), season=2, number=15)
        by_own = Item(MediaKind.EPISODE, ids=Ids(imdb="tt0149460"), season=2, number=15)

        await outbox.enqueue(watched(by_show, T0))
        result = await outbox.enqueue(watched(by_own, T0 + timedelta(minutes=1)))

        assert (result.new_deliveries, result.duplicate) == (2, False)

    async def test_identical_plays_in_one_batch_are_one_delivery_per_provider(
        self, outbox: Outbox
    ) -> None:
        """Dedupe applies between events of the same enqueue_many transaction."""
        results = await outbox.enqueue_many(
            [watched(MOVIE_PLEX, T0), watched(MOVIE_TAUTULLI, T0 + timedelta(minutes=2))]
        )

        assert [(r.new_deliveries, r.duplicate) for r in results] == [(2, False), (0, True)]
        assert len(await deliveries(outbox)) == 2


class TestEnqueueCounts:
    async def test_reported_counts_match_the_deliveries_created(self, outbox: Outbox) -> None:
        """Each result's new_deliveries is what the fan-out trigger really created (SQLite:
        the insert reports it, RETURNING; PostgreSQL: counted afterwards)."""
        await self.check_counts(outbox)

    async def test_sqlite_counts_afterwards_where_returning_cannot(
        self, sqlite_outbox: Outbox
    ) -> None:
        """The fallback of an SQLite whose RETURNING does not see the earlier rows' triggers
        (the path PostgreSQL always takes) reports the same counts."""
        assert sqlite_outbox._counted_insert, "this SQLite should support the one-statement path"
        sqlite_outbox._counted_insert = False
        await self.check_counts(sqlite_outbox)

    @staticmethod
    async def check_counts(outbox: Outbox) -> None:
        await outbox.enqueue(watched(BARRY_LYNDON, T0))
        batch = [
            watched(MOVIE_PLEX, T0),
            watched(MOVIE_TAUTULLI, T0 + timedelta(minutes=2), Source.TAUTULLI),  # same play
            live(FUTURAMA_LEGACY, T0),
            watched(BARRY_LYNDON, T0 + timedelta(minutes=5)),  # already queued before
            watched(FUTURAMA_2X14, T0),
        ]
        results = await outbox.enqueue_many(batch)
        assert [r.new_deliveries for r in results] == [2, 0, 2, 0, 2]
        assert [r.duplicate for r in results] == [False, True, False, True, False]
        for result in results:
            rows = await outbox.fetch_all(
                "SELECT count(*) FROM deliveries WHERE event_id = ?", [result.event_id]
            )
            assert rows[0][0] == result.new_deliveries


class TestGroupCommit:
    async def test_200_concurrent_enqueues_all_commit_with_their_own_ids(
        self, outbox: Outbox
    ) -> None:
        """200 concurrent enqueue() calls all return; every event is stored under the id
        its caller was told, with its deliveries."""
        items = [Item(MediaKind.MOVIE, f"Movie {i}", rating_key=str(1000 + i)) for i in range(200)]

        results = await asyncio.gather(*(outbox.enqueue(watched(i, T0)) for i in items))

        ids = [r.event_id for r in results]
        assert None not in ids
        assert len(set(ids)) == 200
        stored = dict(await outbox.fetch_all("SELECT id, label FROM events"))
        assert {r.event_id: stored[r.event_id] for r in results} == {
            r.event_id: item.label() for r, item in zip(results, items, strict=True)
        }
        assert all(r.new_deliveries == 2 for r in results)
        assert (await table_sizes(outbox))["deliveries"] == 400


class TestClaim:
    async def _five_events(self, outbox: Outbox, clock: Clock) -> list[int]:
        event_ids = []
        for n in range(5):
            item = Item(MediaKind.MOVIE, f"Movie {n}", rating_key=str(n))
            result = await outbox.enqueue(watched(item, T0))
            assert result.event_id is not None
            event_ids.append(result.event_id)
            clock.advance(1)
        return event_ids

    async def test_claim_leases_at_most_limit_oldest_first(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        """A claim leases up to *limit* due deliveries of one provider, oldest first, and
        counts the attempt."""
        event_ids = await self._five_events(outbox, clock)

        claimed = await claim(outbox, limit=3)

        assert [c.event_id for c in claimed] == event_ids[:3]
        assert {c.provider for c in claimed} == {"trakt"}
        assert [c.attempts for c in claimed] == [1, 1, 1]
        states = await deliveries(outbox, "provider, state")
        assert states.count(("trakt", "leased")) == 3
        assert states.count(("simkl", "pending")) == 5

    async def test_second_claim_skips_leased_rows(self, outbox: Outbox, clock: Clock) -> None:
        """Rows leased by one claim are not handed to the next while the lease lasts."""
        event_ids = await self._five_events(outbox, clock)
        first = await claim(outbox, limit=3)

        second = await claim(outbox, limit=10)

        assert [c.event_id for c in second] == event_ids[3:]
        assert not {c.id for c in first} & {c.id for c in second}
        assert await claim(outbox) == []

    async def test_expired_lease_is_reclaimed_and_the_old_token_cannot_settle(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        """After lease_s a new claim takes the row; the stale worker's settle, mark_sent and
        a settle as dead change nothing, whatever the new owner did."""
        await outbox.enqueue(watched(MOVIE_PLEX, T0))
        [stale] = await claim(outbox)
        clock.advance(LEASE_S + 1)

        [owner] = await claim(outbox)
        assert owner.id == stale.id
        assert owner.lease_token != stale.lease_token
        assert owner.attempts == 2
        assert await outbox.settle(owner, Settlement.pending(100, "503", keep_sent=False))
        after_owner = await row(outbox, owner.id, "state, next_attempt_at, lease_token, sent_at")

        assert await outbox.settle(stale, Settlement.delivered()) is False
        assert await outbox.settle(stale, Settlement.dead("nope")) is False
        await outbox.mark_sent([stale])

        assert await row(outbox, owner.id, "state, next_attempt_at, lease_token, sent_at") == (
            after_owner
        )
        assert after_owner == ("pending", clock.now + 100, None, None)

    async def test_unexpired_lease_cannot_be_settled_with_an_old_token(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        """While the new owner still holds the lease, the old token's settle is refused and
        the row stays leased to the new owner."""
        await outbox.enqueue(watched(MOVIE_PLEX, T0))
        [stale] = await claim(outbox)
        clock.advance(LEASE_S + 1)
        [owner] = await claim(outbox)

        assert await outbox.settle(stale, Settlement.pending(0, "x", keep_sent=False)) is False

        assert await row(outbox, owner.id, "state, lease_token") == ("leased", owner.lease_token)
        assert await outbox.settle(owner, Settlement.delivered()) is True


class TestSettle:
    async def test_retry_with_maybe_sent_keeps_sent_at(self, outbox: Outbox, clock: Clock) -> None:
        """A pending settlement with keep_sent=True keeps the in-flight mark; the next claim
        sees it."""
        await outbox.enqueue(watched(MOVIE_PLEX, T0))
        [first] = await claim(outbox)
        await outbox.mark_sent([first])
        sent_at = clock.now
        clock.advance(2)

        assert await outbox.settle(first, Settlement.pending(10, "timeout", keep_sent=True))

        assert await row(outbox, first.id, "state, sent_at, next_attempt_at, last_error") == (
            "pending",
            sent_at,
            clock.now + 10,
            "timeout",
        )
        clock.advance(10)
        [again] = await claim(outbox)
        assert again.sent_at == sent_at

    async def test_retry_without_maybe_sent_clears_sent_at(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        """A pending settlement with keep_sent=False clears the in-flight mark."""
        await outbox.enqueue(watched(MOVIE_PLEX, T0))
        [first] = await claim(outbox)
        await outbox.mark_sent([first])

        assert await outbox.settle(first, Settlement.pending(0, "refused", keep_sent=False))

        assert await row(outbox, first.id, "state, sent_at") == ("pending", None)
        [again] = await claim(outbox)
        assert again.sent_at is None

    async def test_retry_without_counting_refunds_the_attempt(self, outbox: Outbox) -> None:
        """refund_attempt=True gives the claim's attempt back; the default keeps it."""
        await outbox.enqueue(watched(MOVIE_PLEX, T0))
        [trakt] = await claim(outbox, "trakt")
        [simkl] = await claim(outbox, "simkl")

        await outbox.settle(
            trakt, Settlement.pending(0, "401", keep_sent=False, refund_attempt=True)
        )
        await outbox.settle(simkl, Settlement.pending(0, "503", keep_sent=False))

        assert await deliveries(outbox, "provider, attempts") == [("trakt", 0), ("simkl", 1)]

    async def test_release_all_leases_returns_leased_rows_to_pending_keeping_sent_at(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        """Daemon start: every leased row is pending again at once, its sent_at kept, and the
        old owner's token no longer settles it."""
        await outbox.enqueue(watched(MOVIE_PLEX, T0))
        await outbox.enqueue(watched(BARRY_LYNDON, T0))
        in_flight, idle = await claim(outbox)
        await outbox.mark_sent([in_flight])
        sent_at = clock.now

        assert await outbox.release_all_leases() == 2

        assert await deliveries(outbox, "provider, state, lease_token, sent_at") == [
            ("trakt", "pending", None, sent_at),
            ("simkl", "pending", None, None),
            ("trakt", "pending", None, None),
            ("simkl", "pending", None, None),
        ]
        assert await outbox.settle(in_flight, Settlement.delivered()) is False
        reclaimed = {c.id: c.sent_at for c in await claim(outbox)}
        assert reclaimed == {in_flight.id: sent_at, idle.id: None}


class TestParked:
    async def _park(self, outbox: Outbox) -> tuple[Claimed, Claimed]:
        await outbox.enqueue(watched(MOVIE_PLEX, T0))
        await outbox.enqueue(watched(BARRY_LYNDON, T0))
        unresolved, not_found = await claim(outbox)
        await outbox.save_resolution(unresolved, MOVIE_PLEX.with_ids(Ids(tmdb="6978")), "plex")
        await outbox.settle(unresolved, Settlement.parked("plex: no ids", ReasonKind.UNRESOLVED))
        await outbox.settle(not_found, Settlement.parked("trakt: not_found", ReasonKind.NOT_FOUND))
        return unresolved, not_found

    async def test_parked_deliveries_show_in_counts_and_the_parked_list(
        self, outbox: Outbox
    ) -> None:
        """An unresolved park counts as unresolved, a not_found park as parked; both are
        listed with their reasons, newest first."""
        unresolved, not_found = await self._park(outbox)

        counts = await outbox.counts()
        assert (counts["trakt"].unresolved, counts["trakt"].parked, counts["trakt"].pending) == (
            1,
            1,
            0,
        )
        listed = [(p.id, p.reason_kind, p.reason) for p in await outbox.parked()]
        assert listed == [
            (not_found.id, "not_found", "trakt: not_found"),
            (unresolved.id, "unresolved", "plex: no ids"),
        ]

    async def test_retry_parked_by_id_requeues_it_to_resolve_afresh(self, outbox: Outbox) -> None:
        """retry_parked(id) re-queues that delivery (any reason), attempts reset, resolution
        forgotten."""
        unresolved, not_found = await self._park(outbox)

        assert await outbox.retry_parked(unresolved.id) == 1
        assert await outbox.retry_parked(not_found.id) == 1

        again = {c.id: c for c in await claim(outbox)}
        assert set(again) == {unresolved.id, not_found.id}
        assert again[unresolved.id].resolved is False
        assert again[unresolved.id].item == MOVIE_PLEX
        assert again[unresolved.id].attempts == 1

    async def test_default_retry_requeues_unresolved_but_not_not_found(
        self, outbox: Outbox
    ) -> None:
        """retry_parked() takes every unresolved park and leaves not_found ones parked."""
        unresolved, not_found = await self._park(outbox)

        assert await outbox.retry_parked() == 1

        assert await row(outbox, unresolved.id, "state, reason") == ("pending", None)
        assert await row(outbox, not_found.id, "state, reason_kind") == ("parked", "not_found")
        assert await outbox.retry_parked() == 0


class TestScratch:
    async def test_a_scratch_outbox_holds_the_original_and_its_writes_vanish(
        self, outbox: Outbox
    ) -> None:
        """scratch() (import --dry-run): the plays the outbox holds, and what is written into
        it is gone afterwards, the original untouched (SQLite: a file copy; PostgreSQL: a
        transaction rolled back)."""
        await outbox.enqueue(watched(MOVIE_PLEX, T0))
        async with outbox.scratch() as copy:
            (dup,) = await copy.enqueue_many([watched(MOVIE_TAUTULLI, T0 + timedelta(minutes=1))])
            assert dup.duplicate  # the copy holds the original's play
            await copy.enqueue(watched(BARRY_LYNDON, T0))
            assert (await table_sizes(copy))["events"] == 3
        assert (await table_sizes(outbox))["events"] == 1
        (fresh,) = await outbox.enqueue_many([watched(BARRY_LYNDON, T0)])
        assert not fresh.duplicate


class TestAccounts:
    async def test_noted_accounts_are_listed_per_source_most_recent_first(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        """note_account() remembers rejected accounts; seen_accounts() lists a source's,
        most recently seen first, each once."""
        await outbox.note_account("tautulli", "bob")
        clock.advance(1)
        await outbox.note_account("tautulli", "carol")
        clock.advance(1)
        await outbox.note_account("tautulli", "bob")
        await outbox.note_account("plex", "dave")

        assert await outbox.seen_accounts("tautulli") == ["bob", "carol"]
        assert await outbox.seen_accounts("plex") == ["dave"]
        assert await outbox.seen_accounts("import") == []
        assert await outbox.fetch_all(
            "SELECT events FROM seen_accounts WHERE source = 'tautulli' AND account = 'bob'"
        ) == [(2,)]


class TestQueryPlan:
    """SQLite's planner (EXPLAIN QUERY PLAN), as litequeue checks its indexes."""

    async def test_claim_query_uses_the_deliveries_ready_index(self, sqlite_outbox: Outbox) -> None:
        """The claim's row selection is an index search on deliveries_ready, not a scan
        (the claim query itself)."""
        plan = await sqlite_outbox.fetch_all(
            "EXPLAIN QUERY PLAN " + QUERIES.claim,
            {
                "token": "t",
                "expires": 30.0,
                "now": 0.0,
                "profile": "default",
                "provider": "trakt",
                "kind": "play",
                "limit": 10,
            },
        )

        details = [str(step[-1]) for step in plan]
        assert any("INDEX deliveries_ready" in d for d in details), details
        assert not any(d.startswith("SCAN deliveries") for d in details), details

    @pytest.mark.parametrize(
        ("query", "params"),
        [
            pytest.param(
                "SELECT count(*) FROM event_fan_out AS f WHERE f.event_id = :id",
                {"id": 1},
                id="fan-out-count-of-the-intake",
            ),
            pytest.param(
                QUERIES.adopt_play,
                {"event_id": 1, "profile": "default", "provider": "trakt", "now": 0.0},
                id="adopt",
            ),
        ],
    )
    async def test_the_dedupe_rule_searches_delivery_keys_by_account_key_and_time(
        self, sqlite_outbox: Outbox, query: str, params: dict[str, Any]
    ) -> None:
        """Every use of play_duplicates walks the event's keys and searches delivery_keys by its
        primary key (target account, key, time range), never scanning an account's keys."""
        plan = await sqlite_outbox.fetch_all("EXPLAIN QUERY PLAN " + query, params)

        details = [str(step[-1]) for step in plan]
        search = (
            "SEARCH k USING PRIMARY KEY"
            " (profile=? AND provider=? AND kind=? AND key=? AND at>? AND at<?)"
        )
        assert search in details, details
        assert not any(d.startswith("SCAN k") for d in details), details


class TestSchemaVocabulary:
    async def test_the_enums_are_the_states_and_kinds_the_schema_checks(
        self, outbox: Outbox
    ) -> None:
        """DeliveryState and DeliveryKind list exactly what the deliveries table accepts."""
        if outbox.db.dialect == "sqlite":
            [(sql,)] = await outbox.fetch_all(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'"
            )
            checks = re.findall(r"CHECK \((\w+) IN \(([^)]*)\)\)", sql)
        else:  # PostgreSQL shows `CHECK ((kind = ANY (ARRAY['play'::text, …])))`
            rows = await outbox.fetch_all(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid = 'deliveries'::regclass AND contype = 'c'"
            )
            checks = [
                m.groups()
                for (sql,) in rows
                if (m := re.search(r"\((\w+) = ANY \(ARRAY\[(.*)\]", sql))
            ]
        allowed = {column: set(re.findall(r"'(\w+)'", values)) for column, values in checks}

        assert allowed == {
            "kind": {str(k) for k in DeliveryKind},
            "state": {str(s) for s in DeliveryState},
        }


class TestQueries:
    def test_every_named_query_is_loaded_and_no_other(self) -> None:
        """queries.sql names exactly the Queries fields; a missing or unknown name fails."""
        text = "-- header\n" + "".join(
            f"-- name: {f.name}\nSELECT 1\n" for f in dataclasses.fields(Queries)
        )
        assert Queries.parse(text).claim == "SELECT 1"
        with pytest.raises(ValueError, match=r"missing \['claim'\]"):
            Queries.parse(text.replace("-- name: claim\n", "-- name: claim_typo\n"))

    def test_a_name_defined_twice_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="twice"):
            named_blocks("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n", "name")

    def test_the_migrations_are_numbered_in_order(self) -> None:
        assert len(MIGRATIONS) == SCHEMA_VERSION == 5
        assert "CREATE TABLE events" in MIGRATIONS[0]
        assert "CREATE VIEW play_duplicates" in MIGRATIONS[1]
        assert "'parked', 'dead'" in MIGRATIONS[2]
        assert "CREATE UNIQUE INDEX events_import_key" in MIGRATIONS[3]


class TestReplicasShareOnePostgresOutbox:
    """Several replicas (each its own pool) writing one PostgreSQL outbox at the same moment."""

    async def test_the_same_play_reaching_three_replicas_at_once_is_one_play(
        self, pg_url: str, clock: Clock
    ) -> None:
        """Plex's scrobble at one replica, its stop at another, Tautulli's watched at a third,
        all at once, 30 times over: each play is one play (one delivery per target), and every
        copy gets an answer."""
        from crosswatchd import postgres
        from crosswatchd.outbox.queries import PG_MIGRATIONS

        dbs = await asyncio.gather(
            *(postgres.connect(pg_url, stores={"outbox": PG_MIGRATIONS}) for _ in range(3))
        )
        boxes = [
            Outbox.on(db, providers=PROVIDERS, dedupe_window_s=WINDOW_S, unix_s=clock) for db in dbs
        ]
        try:
            for n in range(30):
                at = T0 + timedelta(hours=n * 3)
                film = replace(MOVIE_PLEX, rating_key=str(90_000 + n))
                same = replace(MOVIE_TAUTULLI, rating_key=str(90_000 + n), ids=Ids(tmdb=str(n)))
                copies = [
                    boxes[0].enqueue(watched(film, at)),
                    boxes[1].enqueue(watched(film, at + timedelta(seconds=40))),
                    boxes[2].enqueue(watched(same, at + timedelta(minutes=2), Source.TAUTULLI)),
                ]
                results = await asyncio.gather(*copies)
                assert sorted(r.duplicate for r in results) == [False, True, True], n
            plays = await boxes[0].fetch_all(
                "SELECT provider, count(*) FROM deliveries WHERE kind = 'play'"
                " GROUP BY provider ORDER BY provider"
            )
            assert plays == [("simkl", 30), ("trakt", 30)]
        finally:
            for box, db in zip(boxes, dbs, strict=True):
                await box.close()
                await db.close()
