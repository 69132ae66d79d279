"""How the drainer settles the awkward outcomes: replies that confirm nothing, a batch the
target refuses, surprises inside the daemon, targets configured late, and imported plays that
another app already recorded.

Most tests drive the drainer through a scripted target (a :class:`Provider` written here: the
drainer's decisions are what is tested, not HTTP); the import test uses the fake Trakt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from crosswatchd.config import DeliverySettings
from crosswatchd.drain import Drainer
from crosswatchd.errors import ErrorScope, PermanentError
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import Outbox
from crosswatchd.providers.base import LiveOutcome, Play, PlayOutcome
from crosswatchd.providers.trakt import TraktProvider
from crosswatchd.ratelimit import Limiter
from crosswatchd.tokens.files import TokenFile
from tests.clocks import Clock
from tests.fakes.catalog import default_catalog
from tests.fakes.trakt import FakeTrakt

T0 = datetime(2025, 3, 1, 20, 0, tzinfo=UTC)


def movie(n: int) -> Item:
    return Item(MediaKind.MOVIE, f"Movie {n}", 2000, ids=Ids(imdb=f"tt{7_000_000 + n}"))


def watched(item: Item, at: datetime = T0, source: Source = Source.PLEX) -> PlayEvent:
    return PlayEvent(source, Action.WATCHED, "alice", item, at, progress_pct=100.0)


class ScriptedTarget:
    """A Provider whose answers the test decides: ``outcome(play) -> PlayOutcome``, or an
    exception to raise for a whole batch (``refuse_batches_over``)."""

    name = "trakt"
    max_batch = 100
    keeps_every_play = True

    def __init__(self) -> None:
        self.sent: list[list[str]] = []
        self.history_checks = 0
        self.outcome: Any = lambda play: PlayOutcome.ADDED
        self.refuse_batches_over: int | None = None
        self.refuse_imdb: str | None = None

    def is_authorized(self) -> bool:
        return True

    def missing_ids(self, item: Item) -> str | None:
        return None if item.ids else "no ids"

    async def add_history(self, plays: Sequence[Play]) -> dict[int, PlayOutcome]:
        self.sent.append([p.item.ids.imdb or "" for p in plays])
        if self.refuse_batches_over is not None and len(plays) > self.refuse_batches_over:
            raise PermanentError("trakt", "HTTP 422: unprocessable batch")
        if self.refuse_imdb and any(p.item.ids.imdb == self.refuse_imdb for p in plays):
            raise PermanentError("trakt", "HTTP 422: unprocessable item")
        return {p.key: self.outcome(p) for p in plays}

    async def find_in_history(self, plays: Sequence[Play], *, tolerance_s: float = 5.0) -> set[int]:
        self.history_checks += 1
        return set()

    async def scrobble(self, action: Action, item: Item, progress_pct: float) -> LiveOutcome:
        return LiveOutcome.SENT

    async def close(self) -> None:
        return None


@pytest.fixture
def clock() -> Clock:
    return Clock((T0 + timedelta(minutes=5)).timestamp())


@pytest.fixture
async def outbox(tmp_path: Path, clock: Clock) -> AsyncIterator[Outbox]:
    box = await Outbox.open(tmp_path / "outbox.db", providers=["trakt"], unix_s=clock)
    yield box
    await box.close()


def drainer(outbox: Outbox, target: Any, clock: Clock, **settings: Any) -> Drainer:
    return Drainer(
        outbox,
        target,
        DeliverySettings(backoff_base_s=1, backoff_max_s=4, **settings),
        unix_s=clock,
        rand=lambda: 1.0,
    )


async def states(outbox: Outbox) -> list[tuple[str, str | None]]:
    rows = await outbox.fetch_all("SELECT state, reason_kind FROM deliveries ORDER BY id")
    return [(str(r[0]), r[1]) for r in rows]


class TestUnconfirmed:
    async def test_a_play_never_confirmed_is_parked_after_three_sends_not_resent_forever(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        target = ScriptedTarget()
        target.outcome = lambda play: PlayOutcome.UNCONFIRMED
        drain = drainer(outbox, target, clock)
        await outbox.enqueue(watched(movie(1)))
        for _ in range(10):
            await drain.drain_plays_once()
            clock.advance(120)
        assert len(target.sent) == 3
        assert await states(outbox) == [("parked", "unconfirmed")]
        [parked] = await outbox.parked(kinds=["unconfirmed"])
        assert "neither confirmed" in parked.reason
        # The user can send it again.
        assert await outbox.retry_parked(parked.id) == 1


class TestRefusedBatch:
    async def test_a_refused_batch_is_resent_play_by_play_and_only_the_culprit_parked(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        target = ScriptedTarget()
        target.refuse_imdb = "tt7000002"
        drain = drainer(outbox, target, clock)
        for n in range(1, 4):
            await outbox.enqueue(watched(movie(n), T0 + timedelta(minutes=n)))
        await drain.drain_plays_once()
        assert target.sent[0] == ["tt7000001", "tt7000002", "tt7000003"]
        assert sorted(map(tuple, target.sent[1:])) == [
            ("tt7000001",),
            ("tt7000002",),
            ("tt7000003",),
        ]
        assert await states(outbox) == [
            ("delivered", None),
            ("parked", "rejected"),
            ("delivered", None),
        ]
        [parked] = await outbox.parked(kinds=["rejected"])
        assert "unprocessable item" in parked.reason

    async def test_account_level_refusal_is_dead_and_can_be_retried_by_id(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        class Locked(ScriptedTarget):
            async def add_history(self, plays: Sequence[Play]) -> dict[int, PlayOutcome]:
                self.sent.append([p.item.ids.imdb or "" for p in plays])
                raise PermanentError("trakt", "account locked (423)", scope=ErrorScope.ACCOUNT)

        target = Locked()
        await outbox.enqueue(watched(movie(1)))
        await drainer(outbox, target, clock).drain_plays_once()
        assert await states(outbox) == [("dead", "permanent")]
        [dead] = await outbox.parked(states=["dead"])
        assert await outbox.retry_parked(dead.id) == 1
        assert await states(outbox) == [("pending", None)]


class TestSurprises:
    async def test_an_unexpected_exception_reschedules_with_the_error_visible(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        async def broken_resolver(item: Item) -> tuple[Item, str]:
            raise KeyError("weird API shape")

        target = ScriptedTarget()
        drain = Drainer(outbox, target, DeliverySettings(), resolve=broken_resolver, unix_s=clock)
        await outbox.enqueue(watched(movie(1)))
        await outbox.enqueue(watched(movie(2), T0 + timedelta(minutes=1)))
        assert await drain.drain_plays_once() == 2
        rows = await outbox.fetch_all("SELECT state, last_error, next_attempt_at FROM deliveries")
        assert all(r[0] == "pending" for r in rows)
        assert all("internal error: KeyError" in r[1] for r in rows)
        assert all(r[2] > clock.now for r in rows)
        backlog = (await outbox.backlog())[("default", "trakt")]
        assert "KeyError" in backlog["last_error"]


class TestLateTargets:
    async def test_plays_stored_with_no_target_reach_the_first_target_configured(
        self, tmp_path: Path, clock: Clock
    ) -> None:
        path = tmp_path / "outbox.db"
        untargeted = await Outbox.open(path, providers=[], unix_s=clock)
        try:
            await untargeted.enqueue(watched(movie(1)))
            await untargeted.enqueue(watched(movie(1), T0 + timedelta(minutes=3)))  # same play
            await untargeted.enqueue(watched(movie(2)))
            await untargeted.enqueue(
                PlayEvent(Source.PLEX, Action.START, "alice", movie(3), T0, progress_pct=5.0)
            )
            assert await untargeted.untargeted_plays() == 3
        finally:
            await untargeted.close()

        trakt = await Outbox.open(path, providers=["trakt"], unix_s=clock)
        try:
            assert await trakt.adopt_targets() == 2  # two distinct plays; no live state
            assert await trakt.adopt_targets() == 0  # idempotent
            assert await trakt.untargeted_plays() == 0
            assert await states(trakt) == [("pending", None), ("pending", None)]
        finally:
            await trakt.close()

        both = await Outbox.open(path, providers=["trakt", "simkl"], unix_s=clock)
        try:
            assert await both.adopt_targets() == 2  # SIMKL gets them; Trakt no second copy
            rows = await both.fetch_all(
                "SELECT provider, count(*) FROM deliveries GROUP BY provider ORDER BY provider"
            )
            assert rows == [("simkl", 2), ("trakt", 2)]
            # and a later duplicate of one of them is still recognised for both targets
            (again,) = await both.enqueue_many([watched(movie(2), T0 + timedelta(minutes=9))])
            assert again.duplicate
        finally:
            await both.close()


class TestImportAgainstExistingHistory:
    async def test_an_imported_play_another_app_already_recorded_is_not_sent_again(
        self, tmp_path: Path, clock: Clock
    ) -> None:
        async with FakeTrakt(catalog=default_catalog(), post_tolerance_s=1.0) as fake:
            tokens = TokenFile(tmp_path, "trakt")
            tokens.write(fake.issue_token())
            async with aiohttp.ClientSession() as session:
                provider = TraktProvider(
                    session=session,
                    limiter=Limiter.per_second(post_per_s=50, get_per_s=100),
                    tokens=tokens,
                    client_id=fake.client_id,
                    client_secret=fake.client_secret,
                    api_url=fake.url,
                )
                barry = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))
                big = Item(
                    MediaKind.MOVIE, "Big Trouble in Little China", 1986, ids=Ids(imdb="tt0090728")
                )
                # Another scrobbler recorded Barry Lyndon 40 minutes before Tautulli's stop.
                await provider.add_history([Play(0, barry, T0 - timedelta(minutes=40))])
                box = await Outbox.open(tmp_path / "o.db", providers=["trakt"], unix_s=clock)
                try:
                    await box.enqueue_many(
                        [
                            watched(barry, T0, Source.IMPORT),
                            watched(big, T0 - timedelta(days=30), Source.IMPORT),
                        ]
                    )
                    await drainer(box, provider, clock).drain_plays_once()
                    assert await states(box) == [("delivered", None), ("delivered", None)]
                    notes = await box.fetch_all("SELECT reason FROM deliveries ORDER BY id")
                    assert "already in history" in str(notes[0][0])
                finally:
                    await box.close()
        titles = sorted(h["movie"]["title"] for h in fake.history)
        assert titles == ["Barry Lyndon", "Big Trouble in Little China"]


class TestImportLookupOnlyWhereDuplicatesExist:
    async def test_a_target_keeping_one_state_per_item_gets_imports_without_a_lookup(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        """SIMKL keeps one watched state per item: looking up old imported plays there would
        download the whole library per batch (and can get a client id blocked) for nothing."""
        target = ScriptedTarget()
        target.keeps_every_play = False
        await outbox.enqueue_many([watched(movie(1), T0 - timedelta(days=900), Source.IMPORT)])
        await drainer(outbox, target, clock).drain_plays_once()
        assert target.history_checks == 0
        assert target.sent == [["tt7000001"]]

    async def test_a_target_keeping_every_play_is_asked_first(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        target = ScriptedTarget()
        await outbox.enqueue_many([watched(movie(1), T0 - timedelta(days=900), Source.IMPORT)])
        await drainer(outbox, target, clock).drain_plays_once()
        assert target.history_checks == 1
        assert target.sent == [["tt7000001"]]


class TestLostLease:
    async def test_a_settle_after_the_lease_was_lost_changes_nothing_and_is_logged_once(
        self, outbox: Outbox, clock: Clock
    ) -> None:
        """A send that outlives its lease: another worker claims the plays meanwhile. The
        slow worker's settlements are refused (the newer claim stands) and each is logged
        once as delivery.lease_lost with its delivery id, never as delivered."""
        claims: list[list[int]] = []

        class Slow(ScriptedTarget):
            async def add_history(self, plays: Sequence[Play]) -> dict[int, PlayOutcome]:
                clock.advance(DeliverySettings().lease_s + 1)
                newer = await outbox.claim("trakt", "play", limit=10, lease_s=60)
                claims.append([c.id for c in newer])
                return await super().add_history(plays)

        for n in (1, 2):
            await outbox.enqueue(watched(movie(n), T0 + timedelta(minutes=n)))
        with structlog.testing.capture_logs() as logs:
            await drainer(outbox, Slow(), clock).drain_plays_once()

        lost = [e for e in logs if e["event"] == "delivery.lease_lost"]
        assert sorted(e["delivery_id"] for e in lost) == claims[0] == [1, 2]
        assert all(e["outcome"] == "delivered" for e in lost)
        assert not [e for e in logs if e["event"] == "delivery.delivered"]
        assert await states(outbox) == [("leased", None), ("leased", None)]
