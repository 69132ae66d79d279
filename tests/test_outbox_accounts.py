"""The outbox's side of replicas and run-time profiles, on SQLite and PostgreSQL: the
deliveries of accounts handed over are due at once, the accounts with work queued, a removed
profile's deliveries discarded, and new targets adopted for one account only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import DeliveryKind, Outbox
from tests.backends import BACKENDS, outbox_for
from tests.clocks import Clock

T0 = datetime(2026, 1, 2, 20, 0, tzinfo=UTC)
TARGETS = {"ann": ["trakt", "simkl"], "ben": ["trakt"]}


def play(n: int, profile: str) -> PlayEvent:
    item = Item(MediaKind.MOVIE, f"Film {n}", 2000, ids=Ids(imdb=f"tt{1_000_000 + n}"))
    return PlayEvent(Source.PLEX, Action.WATCHED, profile, item, T0, profile=profile)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0.timestamp() + 3600)


@pytest.fixture(params=BACKENDS)
async def outbox(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Outbox]:
    async with outbox_for(request, tmp_path, targets=TARGETS, unix_s=clock) as box:
        yield box


async def states(outbox: Outbox) -> dict[tuple[str, str], list[tuple[str, bool]]]:
    rows = await outbox.fetch_all(
        "SELECT profile, provider, state, sent_at IS NOT NULL FROM deliveries ORDER BY id"
    )
    out: dict[tuple[str, str], list[tuple[str, bool]]] = {}
    for profile, provider, state, sent in rows:
        out.setdefault((profile, provider), []).append((state, bool(sent)))
    return out


async def test_a_handed_over_accounts_leased_deliveries_are_due_at_once(
    outbox: Outbox, clock: Clock
) -> None:
    await outbox.enqueue_many([play(1, "ann"), play(2, "ben")])
    for profile, provider in (("ann", "trakt"), ("ann", "simkl"), ("ben", "trakt")):
        claimed = await outbox.claim(
            provider, DeliveryKind.PLAY, limit=10, lease_s=120, profile=profile
        )
        await outbox.mark_sent(claimed)
    assert await outbox.release_accounts([("ann", "trakt")]) == 1
    assert await states(outbox) == {
        ("ann", "trakt"): [("pending", True)],  # due now, sent_at kept: looked up first
        ("ann", "simkl"): [("leased", True)],
        ("ben", "trakt"): [("leased", True)],
    }
    assert await outbox.next_due_in("trakt", DeliveryKind.PLAY, profile="ann") == 0
    assert await outbox.release_accounts([]) == 0


async def test_the_accounts_with_work_queued(outbox: Outbox) -> None:
    assert await outbox.queued_accounts() == set()
    await outbox.enqueue_many([play(1, "ann"), play(2, "ben")])
    assert await outbox.queued_accounts() == {("ann", "trakt"), ("ann", "simkl"), ("ben", "trakt")}


async def test_a_removed_profiles_deliveries_are_discarded_and_no_others(outbox: Outbox) -> None:
    await outbox.enqueue_many([play(1, "ann"), play(2, "ann"), play(3, "ben")])
    assert await outbox.discard_profile("ann") == 4
    found = await states(outbox)
    assert found[("ann", "trakt")] == [("dropped", False)] * 2
    assert found[("ben", "trakt")] == [("pending", False)]
    assert await outbox.queued_accounts() == {("ben", "trakt")}
    reasons = await outbox.fetch_all("SELECT DISTINCT reason FROM deliveries WHERE profile = 'ann'")
    assert reasons == [("discarded with its profile",)]


async def test_a_profile_added_later_adopts_its_plays_for_the_account_taken_only(
    outbox: Outbox,
) -> None:
    outbox.set_targets({"ann": [], "ben": []})  # plays stored while ann had no targets
    await outbox.enqueue_many([play(1, "ann"), play(2, "ann")])
    outbox.set_targets({"ann": ["trakt", "simkl"]})
    assert await outbox.adopt_targets([("ann", "trakt")]) == 2
    assert await outbox.queued_accounts() == {("ann", "trakt")}
    assert await outbox.adopt_targets([("ann", "trakt")]) == 0  # idempotent
