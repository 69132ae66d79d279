"""The drainer against the strict fakes: claim → resolve → deliver → settle, one target each.

Real SQLite outbox in ``tmp_path``, real fakes on 127.0.0.1, real providers and limiters;
time is an injected clock the tests move (the outbox and the drainer share it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crosswatchd.config import DeliverySettings
from crosswatchd.drain import Drainer
from crosswatchd.http import GetRetry
from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import Outbox
from crosswatchd.providers.base import Play
from crosswatchd.providers.simkl import SimklProvider
from crosswatchd.providers.trakt import TraktProvider
from crosswatchd.ratelimit import Limiter
from crosswatchd.settlement import retry_delay_s
from crosswatchd.tokens.files import TokenFile
from tests.clocks import Clock
from tests.fakes.catalog import default_catalog
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt

CID, SECRET = "cid", "csecret"
T0 = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
NOW = (T0 + timedelta(days=1)).timestamp()

SETTINGS = DeliverySettings(
    lease_s=30.0,
    live_max_age_s=300.0,
    backoff_base_s=2.0,
    backoff_max_s=60.0,
    poll_s=0.05,
    timeout_s=2.0,
)

BIG_TROUBLE = Item(
    MediaKind.MOVIE, "Big Trouble in Little China", 1986, ids=Ids(imdb="tt0090728", tmdb="6978")
)
BARRY_LYNDON = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))
FUTURAMA_2X15 = Item(
    MediaKind.EPISODE,
    show_title="Futurama",
    show_ids=Ids(tvdb="73871"),
    season=2,
    number=15,
)
BOBS_9X15 = Item(
    MediaKind.EPISODE,
    show_title="Bob's Burgers",
    ids=Ids(imdb="tt9413736", tmdb="1707381", tvdb="7047159"),
    season=9,
    number=15,
)
UNKNOWN_MOVIE = Item(MediaKind.MOVIE, "Nothing", 2000, ids=Ids(imdb="tt0000111"))


def watched(item: Item, at: datetime = T0) -> PlayEvent:
    return PlayEvent(Source.PLEX, Action.WATCHED, "alice", item, at, progress_pct=100.0)


def live(item: Item, at: datetime, action: Action = Action.START, pct: float = 12.5) -> PlayEvent:
    return PlayEvent(Source.PLEX, action, "alice", item, at, progress_pct=pct, session="p1")


def history_posts(requests: list[tuple[str, str, dict[str, str]]]) -> int:
    return sum(1 for method, path, _ in requests if (method, path) == ("POST", "/sync/history"))


def simkl_history_posts(fake: FakeSimkl) -> int:
    return sum(1 for r in fake.requests if (r["method"], r["path"]) == ("POST", "/sync/history"))


def trakt_titles(fake: FakeTrakt) -> list[str]:
    return sorted(
        h["movie"]["title"] if h["type"] == "movie" else h["show"]["title"] for h in fake.history
    )


async def rows(outbox: Outbox, columns: str) -> list[tuple[Any, ...]]:
    return await outbox.fetch_all(f"SELECT {columns} FROM deliveries ORDER BY id")


async def until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    """Wait (briefly) for something the fake does on its own time."""
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def catch_up(outbox: Outbox, clock: Clock, provider: str, kind: str = "play") -> None:
    """Move the clock to when the next delivery is due."""
    due = await outbox.next_due_in(provider, kind)
    assert due is not None
    clock.advance(due)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def fake_trakt() -> AsyncIterator[FakeTrakt]:
    # post_tolerance_s=1.0 switches off the fake's 1-POST-per-second rule: pacing is tested in
    # test_trakt_provider.py, and these tests send POSTs back to back on a moved clock.
    async with FakeTrakt(
        client_id=CID, client_secret=SECRET, catalog=default_catalog(), post_tolerance_s=1.0
    ) as fake:
        yield fake


@pytest.fixture
async def fake_simkl() -> AsyncIterator[FakeSimkl]:
    async with FakeSimkl(
        client_id=CID, catalog=default_catalog(), get_per_s=1000, post_per_s=1000
    ) as fake:
        yield fake


@pytest.fixture
def trakt_tokens(tmp_path: Path) -> TokenFile:
    return TokenFile(tmp_path, "trakt")


@pytest.fixture
def simkl_tokens(tmp_path: Path, fake_simkl: FakeSimkl) -> TokenFile:
    store = TokenFile(tmp_path, "simkl")
    store.write({"access_token": fake_simkl.issue_token(), "token_type": "bearer"})
    return store


def fast_limiter() -> Limiter:
    return Limiter.per_second(post_per_s=1000, get_per_s=1000, get_capacity=1000)


def make_trakt(
    fake: FakeTrakt, session: aiohttp.ClientSession, tokens: TokenFile, timeout_s: float = 2.0
) -> TraktProvider:
    return TraktProvider(
        session=session,
        limiter=fast_limiter(),
        tokens=tokens,
        client_id=CID,
        client_secret=SECRET,
        api_url=fake.url,
        timeout_s=timeout_s,
        get_retry=GetRetry(base_s=0.001),
        refusal_settle_s=0.01,
    )


@pytest.fixture
def trakt(
    fake_trakt: FakeTrakt, session: aiohttp.ClientSession, trakt_tokens: TokenFile
) -> TraktProvider:
    trakt_tokens.write(fake_trakt.issue_token())
    return make_trakt(fake_trakt, session, trakt_tokens)


@pytest.fixture
def simkl(
    fake_simkl: FakeSimkl, session: aiohttp.ClientSession, simkl_tokens: TokenFile
) -> SimklProvider:
    return SimklProvider(
        session=session,
        limiter=fast_limiter(),
        tokens=simkl_tokens,
        client_id=CID,
        api_url=fake_simkl.url,
        timeout_s=2.0,
        get_retry=GetRetry(base_s=0.001),
    )


@pytest.fixture
async def outbox(tmp_path: Path, clock: Clock) -> AsyncIterator[Outbox]:
    box = await Outbox.open(tmp_path / "outbox.db", providers=["trakt"], unix_s=clock)
    yield box
    await box.close()


@pytest.fixture
async def both_outbox(tmp_path: Path, clock: Clock) -> AsyncIterator[Outbox]:
    box = await Outbox.open(tmp_path / "both.db", providers=["trakt", "simkl"], unix_s=clock)
    yield box
    await box.close()


def drainer(outbox: Outbox, provider: TraktProvider | SimklProvider, clock: Clock) -> Drainer:
    # rand=1.0: the jitter always takes the full backoff, so delays are exact.
    return Drainer(outbox, provider, SETTINGS, unix_s=clock, rand=lambda: 1.0)


@pytest.fixture
def trakt_drainer(outbox: Outbox, trakt: TraktProvider, clock: Clock) -> Drainer:
    return drainer(outbox, trakt, clock)


# --- plays ----------------------------------------------------------------------------------


class TestPlays:
    async def test_pending_plays_go_out_in_one_post_at_their_watched_at(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt
    ) -> None:
        """Pending plays are sent in one POST /sync/history, each with its own watched_at,
        recorded once each, and become delivered."""
        items = [BIG_TROUBLE, BARRY_LYNDON, FUTURAMA_2X15, BOBS_9X15]
        for n, item in enumerate(items):
            await outbox.enqueue(watched(item, T0 + timedelta(hours=n)))

        assert await trakt_drainer.drain_plays_once() == 4

        assert history_posts(fake_trakt.requests) == 1
        assert trakt_titles(fake_trakt) == sorted(
            ["Big Trouble in Little China", "Barry Lyndon", "Futurama", "Bob's Burgers"]
        )
        assert sorted(h["watched_at"] for h in fake_trakt.history) == [
            "2024-01-15T10:30:00.000Z",
            "2024-01-15T11:30:00.000Z",
            "2024-01-15T12:30:00.000Z",
            "2024-01-15T13:30:00.000Z",
        ]
        counts = (await outbox.counts())["trakt"]
        assert (counts.delivered, counts.pending) == (4, 0)

    async def test_a_batch_holds_at_most_max_batch_plays(
        self, outbox: Outbox, trakt: TraktProvider, trakt_drainer: Drainer, fake_trakt: FakeTrakt
    ) -> None:
        """More pending plays than the provider's max_batch take one POST per max_batch."""
        trakt.max_batch = 2
        for n, item in enumerate([BIG_TROUBLE, BARRY_LYNDON, BOBS_9X15]):
            await outbox.enqueue(watched(item, T0 + timedelta(hours=n)))

        assert await trakt_drainer.drain_plays_once() == 2
        assert len(fake_trakt.history) == 2
        assert await trakt_drainer.drain_plays_once() == 1

        assert history_posts(fake_trakt.requests) == 2
        assert len(fake_trakt.history) == 3

    async def test_not_found_play_is_parked_and_not_retried(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt, clock: Clock
    ) -> None:
        """An item Trakt lists as not_found is parked (not_found) and never sent again."""
        await outbox.enqueue(watched(UNKNOWN_MOVIE))

        await trakt_drainer.drain_plays_once()

        [parked] = await outbox.parked()
        assert (parked.reason_kind, parked.provider) == ("not_found", "trakt")
        assert "not_found" in parked.reason
        clock.advance(86400)
        assert await trakt_drainer.drain_plays_once() == 0
        assert history_posts(fake_trakt.requests) == 1
        assert (await outbox.counts())["trakt"].parked == 1

    async def test_play_without_any_ids_is_parked_unresolved_with_a_reason(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt
    ) -> None:
        """With the passthrough resolver, a play with no external ids is parked unresolved,
        visible in counts, and nothing is sent."""
        await outbox.enqueue(watched(Item(MediaKind.MOVIE, "Home Video", 2020, rating_key="9")))

        assert await trakt_drainer.drain_plays_once() == 1

        assert (await outbox.counts())["trakt"].unresolved == 1
        [parked] = await outbox.parked(kinds=["unresolved"])
        assert "no external ids" in parked.reason
        assert fake_trakt.requests == []

    async def test_play_the_target_cannot_identify_is_parked_unresolved(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt
    ) -> None:
        """A movie with ids, but none Trakt takes (only tvdb/simkl), is parked unresolved
        with Trakt's reason, without a request."""
        await outbox.enqueue(watched(Item(MediaKind.MOVIE, "Odd", 2001, ids=Ids(tvdb="1"))))

        await trakt_drainer.drain_plays_once()

        [parked] = await outbox.parked(kinds=["unresolved"])
        assert "trakt, imdb or tmdb" in parked.reason
        assert fake_trakt.requests == []

    async def test_account_limit_420_makes_the_delivery_dead_with_a_reason(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt, clock: Clock
    ) -> None:
        """Trakt's 420 (account limit) is permanent: dead, with the reason, not retried."""
        await outbox.enqueue(watched(BIG_TROUBLE))
        fake_trakt.fail_next(
            420, headers={"X-Account-Limit": "100", "X-VIP-User": "false"}, path="/sync/history"
        )

        await trakt_drainer.drain_plays_once()

        assert (await outbox.counts())["trakt"].dead == 1
        [dead] = await outbox.parked(states=["dead"])
        assert "account limit" in dead.reason
        clock.advance(86400)
        assert await trakt_drainer.drain_plays_once() == 0
        assert fake_trakt.history == []

    async def test_a_refused_client_id_keeps_plays_pending_not_dead(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt, clock: Clock
    ) -> None:
        """A 403 (Trakt refuses the app: wrong client id) is the config's fault, not the
        play's: the play waits, attempt refunded, and goes through once the config is right."""
        await outbox.enqueue(watched(BIG_TROUBLE))
        fake_trakt.fail_next(403, path="/sync/history")

        await trakt_drainer.drain_plays_once()

        counts = (await outbox.counts())["trakt"]
        assert (counts.pending, counts.dead) == (1, 0)
        [(attempts, error)] = await rows(outbox, "attempts, last_error")
        assert attempts == 0 and "trakt.client_id" in error
        clock.advance(60)
        await trakt_drainer.drain_plays_once()
        assert trakt_titles(fake_trakt) == ["Big Trouble in Little China"]


class TestTransientFailures:
    async def test_outage_backs_off_then_delivers_once(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt, clock: Clock
    ) -> None:
        """A 503 leaves the play pending with a later next_attempt_at (base backoff), the
        attempt counted; once Trakt is back and the time has come, it lands exactly once."""
        await outbox.enqueue(watched(BIG_TROUBLE))
        fake_trakt.down = True

        await trakt_drainer.drain_plays_once()

        assert await rows(outbox, "state, attempts, next_attempt_at") == [
            ("pending", 1, clock.now + SETTINGS.backoff_base_s)
        ]
        seen = len(fake_trakt.requests)
        assert await trakt_drainer.drain_plays_once() == 0  # not due yet: nothing is tried
        assert len(fake_trakt.requests) == seen

        fake_trakt.down = False
        await catch_up(outbox, clock, "trakt")
        assert await trakt_drainer.drain_plays_once() == 1

        assert await rows(outbox, "state") == [("delivered",)]
        assert trakt_titles(fake_trakt) == ["Big Trouble in Little China"]

    async def test_long_outage_loses_nothing_and_gives_up_on_nothing(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt, clock: Clock
    ) -> None:
        """Through 25 failed attempts the plays stay pending (none parked or dead), the wait
        grows to backoff_max_s and no further; afterwards each lands exactly once."""
        for n, item in enumerate([BIG_TROUBLE, BARRY_LYNDON, FUTURAMA_2X15]):
            await outbox.enqueue(watched(item, T0 + timedelta(hours=n)))
        fake_trakt.down = True

        waits = []
        for _ in range(25):
            await catch_up(outbox, clock, "trakt")
            assert await trakt_drainer.drain_plays_once() == 3
            due = await outbox.next_due_in("trakt", "play")
            assert due is not None
            waits.append(due)
            counts = (await outbox.counts())["trakt"]
            assert (counts.pending, counts.parked, counts.unresolved, counts.dead) == (3, 0, 0, 0)

        assert waits[:6] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
        assert set(waits[5:]) == {SETTINGS.backoff_max_s}
        assert await rows(outbox, "attempts") == [(25,), (25,), (25,)]

        fake_trakt.down = False
        await catch_up(outbox, clock, "trakt")
        assert await trakt_drainer.drain_plays_once() == 3

        assert (await outbox.counts())["trakt"].delivered == 3
        assert trakt_titles(fake_trakt) == [
            "Barry Lyndon",
            "Big Trouble in Little China",
            "Futurama",
        ]

    async def test_429_retry_after_reschedules_that_many_seconds_later(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt, clock: Clock
    ) -> None:
        """429 with Retry-After: 7 → pending, due at now + 7 s (not the backoff)."""
        await outbox.enqueue(watched(BIG_TROUBLE))
        fake_trakt.fail_next(429, headers={"Retry-After": "7"}, path="/sync/history")

        await trakt_drainer.drain_plays_once()

        [(state, due, error)] = await rows(outbox, "state, next_attempt_at, last_error")
        assert state == "pending"
        assert due == pytest.approx(clock.now + 7.0)
        assert "429" in error
        assert fake_trakt.history == []


class TestAuthorization:
    async def test_without_a_token_nothing_is_claimed_until_one_is_saved(
        self,
        outbox: Outbox,
        fake_trakt: FakeTrakt,
        session: aiohttp.ClientSession,
        trakt_tokens: TokenFile,
        clock: Clock,
    ) -> None:
        """No token: the drainer claims nothing and spends no attempts; once `crosswatchd
        auth` saves a token, the play is delivered."""
        unauthorized = drainer(outbox, make_trakt(fake_trakt, session, trakt_tokens), clock)
        await outbox.enqueue(watched(BIG_TROUBLE))

        for _ in range(3):
            assert await unauthorized.drain_plays_once() == 0
            clock.advance(60)

        assert await rows(outbox, "state, attempts, lease_token") == [("pending", 0, None)]
        assert fake_trakt.requests == []

        trakt_tokens.write(fake_trakt.issue_token())
        assert await unauthorized.drain_plays_once() == 1
        assert await rows(outbox, "state") == [("delivered",)]
        assert len(fake_trakt.history) == 1

    async def test_revoked_token_keeps_the_play_pending_without_spending_an_attempt(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt
    ) -> None:
        """A 401 that a refresh cannot fix (user revoked the app) → pending, attempt
        refunded, nothing recorded."""
        await outbox.enqueue(watched(BIG_TROUBLE))
        fake_trakt.revoke_all()

        await trakt_drainer.drain_plays_once()

        assert await rows(outbox, "state, attempts") == [("pending", 0)]
        assert fake_trakt.history == []


class TestCrashSafety:
    @pytest.mark.parametrize("crash", ["restart", "lease_expiry"])
    async def test_sent_play_found_in_history_is_settled_without_a_second_post(
        self,
        outbox: Outbox,
        trakt: TraktProvider,
        trakt_drainer: Drainer,
        fake_trakt: FakeTrakt,
        clock: Clock,
        crash: str,
    ) -> None:
        """A worker marked the play sent, the POST landed, and the worker died before
        settling: the next drain finds the play in Trakt's history and settles it delivered
        without posting it again."""
        await outbox.enqueue(watched(BIG_TROUBLE))
        [claimed] = await outbox.claim("trakt", "play", limit=10, lease_s=SETTINGS.lease_s)
        await outbox.mark_sent([claimed])
        assert claimed.watched_at is not None
        await trakt.add_history([Play(claimed.id, claimed.item, claimed.watched_at)])
        if crash == "restart":
            assert await outbox.release_all_leases() == 1
        else:
            clock.advance(SETTINGS.lease_s + 1)

        assert await trakt_drainer.drain_plays_once() == 1

        assert await rows(outbox, "state") == [("delivered",)]
        assert history_posts(fake_trakt.requests) == 1
        assert len(fake_trakt.history) == 1

    async def test_sent_play_missing_from_history_is_sent_once(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt
    ) -> None:
        """A worker marked the play sent and died before the POST: the check finds nothing,
        so it is sent, once."""
        await outbox.enqueue(watched(BIG_TROUBLE))
        [claimed] = await outbox.claim("trakt", "play", limit=10, lease_s=SETTINGS.lease_s)
        await outbox.mark_sent([claimed])
        await outbox.release_all_leases()

        assert await trakt_drainer.drain_plays_once() == 1

        assert await rows(outbox, "state") == [("delivered",)]
        assert history_posts(fake_trakt.requests) == 1
        assert len(fake_trakt.history) == 1

    async def test_timed_out_post_that_landed_is_found_not_resent(
        self,
        outbox: Outbox,
        fake_trakt: FakeTrakt,
        session: aiohttp.ClientSession,
        trakt_tokens: TokenFile,
        clock: Clock,
    ) -> None:
        """The client gives up on a slow POST that Trakt then records; the retry looks in
        the history first, finds it and settles it: one play in Trakt."""
        trakt_tokens.write(fake_trakt.issue_token())
        slow = drainer(outbox, make_trakt(fake_trakt, session, trakt_tokens, 0.2), clock)
        await outbox.enqueue(watched(BIG_TROUBLE))
        fake_trakt.delay_s = 0.5

        await slow.drain_plays_once()

        [(state, sent_at, error)] = await rows(outbox, "state, sent_at, last_error")
        assert (state, sent_at is not None) == ("pending", True)
        assert "no answer" in error
        await until(lambda: len(fake_trakt.history) == 1)  # it lands after the client gave up
        fake_trakt.delay_s = 0.0

        await catch_up(outbox, clock, "trakt")
        assert await slow.drain_plays_once() == 1

        assert await rows(outbox, "state") == [("delivered",)]
        assert history_posts(fake_trakt.requests) == 1
        assert len(fake_trakt.history) == 1

    async def test_unconfirmed_simkl_play_is_checked_not_resent(
        self,
        tmp_path: Path,
        clock: Clock,
        simkl: SimklProvider,
        fake_simkl: FakeSimkl,
    ) -> None:
        """SIMKL answers 2xx without counting the play: it is retried later, the retry
        finds it in the history and does not post again."""
        box = await Outbox.open(tmp_path / "simkl.db", providers=["simkl"], unix_s=clock)
        try:
            simkl_drainer = drainer(box, simkl, clock)
            await box.enqueue(watched(BIG_TROUBLE))
            fake_simkl.ack_empty_next = 1

            await simkl_drainer.drain_plays_once()

            [(state, sent_at, due)] = await rows(box, "state, sent_at, next_attempt_at")
            assert (state, sent_at is not None, due > clock.now) == ("pending", True, True)
            await catch_up(box, clock, "simkl")
            assert await simkl_drainer.drain_plays_once() == 1

            assert await rows(box, "state") == [("delivered",)]
            assert simkl_history_posts(fake_simkl) == 1
            assert len(fake_simkl.history) == 1
        finally:
            await box.close()


class TestLive:
    async def test_start_is_scrobbled_to_scrobble_start(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt, clock: Clock
    ) -> None:
        """A fresh START goes to /scrobble/start and the delivery is done."""
        started = datetime.fromtimestamp(clock.now - 5, UTC)
        await outbox.enqueue(live(BIG_TROUBLE, started))

        assert await trakt_drainer.drain_live_once() == 1

        assert [(s["path"], s["status"]) for s in fake_trakt.scrobbles] == [
            ("/scrobble/start", 201)
        ]
        assert await rows(outbox, "kind, state") == [("live", "delivered")]

    async def test_stale_live_event_is_dropped_unsent(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt, clock: Clock
    ) -> None:
        """Live state older than live_max_age_s is dropped; nothing goes to Trakt."""
        old = datetime.fromtimestamp(clock.now - SETTINGS.live_max_age_s - 1, UTC)
        await outbox.enqueue(live(BIG_TROUBLE, old))

        assert await trakt_drainer.drain_live_once() == 1

        assert (await outbox.counts())["trakt"].dropped == 1
        assert fake_trakt.requests == []

    async def test_live_event_never_creates_a_history_entry(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt, clock: Clock
    ) -> None:
        """Even a STOP at 100 % goes out as live state below the scrobble mark: no play is
        recorded, and no play delivery exists."""
        at = datetime.fromtimestamp(clock.now - 5, UTC)
        await outbox.enqueue(live(BIG_TROUBLE, at, Action.STOP, pct=100.0))

        assert await trakt_drainer.drain_live_once() == 1
        assert await trakt_drainer.drain_plays_once() == 0

        [scrobble] = fake_trakt.scrobbles
        assert scrobble["status"] == 201
        assert scrobble["progress"] < 80
        assert fake_trakt.history == []

    async def test_a_stop_with_unknown_progress_right_after_the_play_sends_nothing(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt, clock: Clock
    ) -> None:
        """Plex sends media.stop without viewOffset right after media.scrobble: a 1 %
        /scrobble/pause would leave Trakt showing a resume point on an item just watched."""
        at = datetime.fromtimestamp(clock.now - 5, UTC)
        await outbox.enqueue(watched(BIG_TROUBLE, at - timedelta(seconds=20)))
        event = live(BIG_TROUBLE, at, Action.STOP)
        await outbox.enqueue(replace(event, progress_pct=None))

        assert await trakt_drainer.drain_live_once() == 1

        assert [s for s in fake_trakt.scrobbles] == []
        assert (await outbox.counts())["trakt"].dropped == 1

    async def test_a_stop_with_unknown_progress_and_no_play_before_is_still_sent(
        self, outbox: Outbox, trakt_drainer: Drainer, fake_trakt: FakeTrakt, clock: Clock
    ) -> None:
        at = datetime.fromtimestamp(clock.now - 5, UTC)
        await outbox.enqueue(replace(live(BIG_TROUBLE, at, Action.STOP), progress_pct=None))

        assert await trakt_drainer.drain_live_once() == 1

        assert [s["path"] for s in fake_trakt.scrobbles] == ["/scrobble/pause"]


class TestIndependence:
    async def test_trakt_delivers_while_simkl_is_down_and_simkl_catches_up(
        self,
        both_outbox: Outbox,
        trakt: TraktProvider,
        simkl: SimklProvider,
        fake_trakt: FakeTrakt,
        fake_simkl: FakeSimkl,
        clock: Clock,
    ) -> None:
        """One target's outage does not hold back the other; when SIMKL returns, it gets
        each play exactly once."""
        trakt_side = drainer(both_outbox, trakt, clock)
        simkl_side = drainer(both_outbox, simkl, clock)
        await both_outbox.enqueue(watched(BIG_TROUBLE, T0))
        await both_outbox.enqueue(watched(FUTURAMA_2X15, T0 + timedelta(hours=1)))
        fake_simkl.down = True

        assert await simkl_side.drain_plays_once() == 2
        assert await trakt_side.drain_plays_once() == 2

        counts = await both_outbox.counts()
        assert (counts["trakt"].delivered, counts["trakt"].pending) == (2, 0)
        assert (counts["simkl"].delivered, counts["simkl"].pending) == (0, 2)
        assert len(fake_trakt.history) == 2
        assert fake_simkl.history == []

        fake_simkl.down = False
        await catch_up(both_outbox, clock, "simkl")
        assert await simkl_side.drain_plays_once() == 2

        assert (await both_outbox.counts())["simkl"].delivered == 2
        assert sorted((p["type"], p["title"]) for p in fake_simkl.history) == [
            ("episode", "Futurama"),
            ("movie", "Big Trouble in Little China"),
        ]
        assert history_posts(fake_trakt.requests) == 1


class TestRetryDelay:
    def test_retry_after_wins(self) -> None:
        """The server's Retry-After is used as is, whatever the attempt count."""
        assert retry_delay_s(9, base_s=2, max_s=60, retry_after_s=7, rand=lambda: 0.0) == 7.0
        assert retry_delay_s(1, base_s=2, max_s=60, retry_after_s=120, rand=lambda: 1.0) == 120.0

    def test_backoff_doubles_per_attempt_up_to_the_cap(self) -> None:
        """Without Retry-After: base · 2^(attempts−1), capped at max_s (no overflow at huge
        attempt counts)."""
        delays = [retry_delay_s(n, base_s=2, max_s=60, rand=lambda: 1.0) for n in range(1, 9)]

        assert delays == [2, 4, 8, 16, 32, 60, 60, 60]
        assert retry_delay_s(10_000, base_s=2, max_s=60, rand=lambda: 1.0) == 60

    @pytest.mark.parametrize(("r", "expected"), [(0.0, 8.0), (0.5, 12.0), (1.0, 16.0)])
    def test_jitter_lies_between_half_and_all_of_the_backoff(
        self, r: float, expected: float
    ) -> None:
        """Equal jitter: rand 0 → half the backoff, rand 1 → all of it."""
        assert retry_delay_s(4, base_s=2, max_s=60, rand=lambda: r) == expected


class TestConcurrency:
    async def test_a_drainer_waits_for_a_free_slot_and_stops_while_waiting(
        self, outbox: Outbox, trakt: TraktProvider, clock: Clock, fake_trakt: FakeTrakt
    ) -> None:
        """delivery.concurrency: with every slot taken (other accounts sending) a drainer
        with work waits its turn, sends when one comes free, and a drainer stopped while
        waiting (its account handed over) ends at once instead of sending first."""
        await outbox.enqueue(watched(BIG_TROUBLE))
        slots = asyncio.Semaphore(1)
        await slots.acquire()  # another account is sending
        stop = asyncio.Event()
        running = asyncio.create_task(
            Drainer(outbox, trakt, SETTINGS, unix_s=clock, slots=slots).run(stop)
        )
        await asyncio.sleep(0.3)
        assert fake_trakt.history == []
        slots.release()
        await until(lambda: len(fake_trakt.history) == 1)

        await until(lambda: not slots.locked())
        await slots.acquire()  # busy again
        await outbox.enqueue(watched(BARRY_LYNDON))
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(running, 1.0)
        assert trakt_titles(fake_trakt) == ["Big Trouble in Little China"]
        assert await rows(outbox, "state") == [("delivered",), ("pending",)]
