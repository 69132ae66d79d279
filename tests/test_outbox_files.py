"""What the outbox keeps for imported files and gives to exports (migration 4 and the
``imported_keys``, ``rating_keys``, ``movie_plays``, ``movie_ratings`` queries)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crosswatchd.models import Action, Ids, Item, MediaKind, PlayEvent, Source
from crosswatchd.outbox import Outbox, ReasonKind, Settlement
from crosswatchd.outbox.states import DeliveryState
from tests.clocks import Clock

T0 = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
WINDOW_S = 4 * 3600.0
DUNE = Item(MediaKind.MOVIE, "Dune", 2021, ids=Ids(imdb="tt1160419", tmdb="438631"))
DUNE_TITLE_ONLY = Item(MediaKind.MOVIE, "Dune", 2021)
BARRY = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))
EPISODE = Item(
    MediaKind.EPISODE, show_title="Futurama", show_ids=Ids(tvdb="73871"), season=2, number=15
)


def play(
    item: Item,
    at: datetime,
    *,
    key: str | None = None,
    profile: str = "alex",
    source: Source = Source.IMPORT,
) -> PlayEvent:
    return PlayEvent(
        source, Action.WATCHED, "letterboxd", item, at, profile=profile, import_key=key
    )


def rate(item: Item, rating: int | None, at: datetime, profile: str = "alex") -> PlayEvent:
    return PlayEvent(
        Source.IMPORT, Action.RATE, "letterboxd", item, at, profile=profile, rating=rating
    )


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = await Outbox.open(
        tmp_path / "outbox.sqlite3",
        targets={"alex": ["trakt", "simkl"], "sam": ["trakt"], "kid": []},
        dedupe_window_s=WINDOW_S,
        unix_s=Clock((T0 + timedelta(days=400)).timestamp()),
    )
    yield box
    await box.close()


class TestImportKeys:
    """One event per profile and file row, whatever its time."""

    async def test_a_row_key_is_found_once_its_event_is_stored(self, outbox: Outbox) -> None:
        await outbox.enqueue_many([play(DUNE, T0, key="letterboxd:https://boxd.it/a1")])

        found = await outbox.imported_keys(
            "alex", ["letterboxd:https://boxd.it/a1", "letterboxd:https://boxd.it/a2"]
        )

        assert found == {"letterboxd:https://boxd.it/a1"}
        assert await outbox.imported_keys("sam", ["letterboxd:https://boxd.it/a1"]) == set()

    async def test_the_same_row_twice_for_one_profile_is_refused_whole(
        self, outbox: Outbox
    ) -> None:
        """Even at another time (another --tz), and the batch it is in writes nothing."""
        await outbox.enqueue_many([play(DUNE, T0, key="k1")])

        with pytest.raises(sqlite3.IntegrityError):
            await outbox.enqueue_many(
                [play(BARRY, T0, key="k2"), play(DUNE, T0 + timedelta(hours=9), key="k1")]
            )

        assert await outbox.fetch_all("SELECT import_key FROM events ORDER BY id") == [("k1",)]

    async def test_another_profile_may_import_the_same_row(self, outbox: Outbox) -> None:
        await outbox.enqueue_many([play(DUNE, T0, key="k1")])
        [result] = await outbox.enqueue_many([play(DUNE, T0, key="k1", profile="sam")])

        assert result.new_deliveries == 1

    async def test_a_kept_duplicate_still_records_its_row(self, outbox: Outbox) -> None:
        """A row whose play every target already had (a Plex play an hour before) keeps its
        event, without deliveries, so the row counts as imported."""
        plex = play(DUNE, T0 - timedelta(hours=1), source=Source.PLEX)
        await outbox.enqueue_many([plex])

        [result] = await outbox.enqueue_many([play(DUNE, T0, key="k1")], keep_duplicates=True)

        assert (result.duplicate, result.new_deliveries) == (True, 0)
        assert await outbox.imported_keys("alex", ["k1"]) == {"k1"}

    async def test_events_without_a_row_key_are_never_one_row(self, outbox: Outbox) -> None:
        """Webhook events have no import key: the unique index leaves them alone."""
        await outbox.enqueue_many([play(DUNE, T0), play(BARRY, T0)])

        assert len(await outbox.fetch_all("SELECT id FROM events")) == 2


class TestRatingMarks:
    async def test_the_latest_rating_per_key_wins_by_time(self, outbox: Outbox) -> None:
        await outbox.enqueue_many([rate(DUNE, 6, T0 + timedelta(days=2)), rate(DUNE, 8, T0)])

        marks = await outbox.rating_marks("alex")

        assert {marks[k].rating for k in ("movie:imdb:tt1160419", "movie:tmdb:438631")} == {6}
        assert await outbox.rating_marks("sam") == {}

    async def test_a_cleared_rating_is_a_mark_without_a_value(self, outbox: Outbox) -> None:
        await outbox.enqueue_many([rate(DUNE, 6, T0), rate(DUNE, None, T0 + timedelta(days=1))])

        assert (await outbox.rating_marks("alex"))["movie:imdb:tt1160419"].rating is None


class TestMoviePlays:
    """What ``export letterboxd`` reads: the profile's movie plays, delivered or not."""

    async def test_movie_plays_oldest_first_episodes_and_other_profiles_left_out(
        self, outbox: Outbox
    ) -> None:
        await outbox.enqueue_many(
            [
                play(BARRY, T0 + timedelta(days=3)),
                play(EPISODE, T0 + timedelta(days=2)),
                play(DUNE, T0),
                play(DUNE, T0 + timedelta(days=1), profile="sam"),
            ]
        )

        held = await outbox.movie_plays("alex")

        assert [(p.item.title, p.watched_at) for p in held] == [
            ("Dune", T0),
            ("Barry Lyndon", T0 + timedelta(days=3)),
        ]

    async def test_delivered_parked_and_waiting_plays_all_count(self, outbox: Outbox) -> None:
        await outbox.enqueue_many(
            [play(DUNE, T0), play(BARRY, T0 + timedelta(days=1), source=Source.PLEX)]
        )
        claimed = await outbox.claim("trakt", "play", limit=10, lease_s=30, profile="alex")
        await outbox.settle(claimed[0], Settlement(DeliveryState.DELIVERED))
        await outbox.settle(
            claimed[1],
            Settlement(DeliveryState.PARKED, reason="x", reason_kind=ReasonKind.NOT_FOUND),
        )

        assert len(await outbox.movie_plays("alex")) == 2

    async def test_a_repeat_of_a_play_is_not_a_play_of_its_own(self, outbox: Outbox) -> None:
        """Plex's scrobble and Tautulli's watched of one viewing: one row."""
        await outbox.enqueue_many([play(DUNE, T0, source=Source.PLEX)])
        await outbox.enqueue_many([play(DUNE, T0 + timedelta(minutes=3), source=Source.TAUTULLI)])

        assert [p.watched_at for p in await outbox.movie_plays("alex")] == [T0]

    async def test_a_play_given_up_on_is_left_out(self, outbox: Outbox) -> None:
        await outbox.enqueue_many([play(DUNE_TITLE_ONLY, T0)])
        claimed = await outbox.claim("trakt", "play", limit=10, lease_s=30, profile="alex")
        claimed += await outbox.claim("simkl", "play", limit=10, lease_s=30, profile="alex")
        for delivery in claimed:
            await outbox.settle(
                delivery,
                Settlement(DeliveryState.PARKED, reason="x", reason_kind=ReasonKind.UNRESOLVED),
            )
        assert len(await outbox.movie_plays("alex")) == 1

        assert await outbox.dismiss_parked(profile="alex") == 2

        assert await outbox.movie_plays("alex") == []

    async def test_a_play_stored_without_targets_counts(self, outbox: Outbox) -> None:
        await outbox.enqueue_many([play(DUNE, T0, profile="kid")])

        assert len(await outbox.movie_plays("kid")) == 1

    async def test_the_ids_a_delivery_resolved_are_used(self, outbox: Outbox) -> None:
        await outbox.enqueue_many([play(DUNE_TITLE_ONLY, T0)])
        [claimed] = await outbox.claim("trakt", "play", limit=10, lease_s=30, profile="alex")
        await outbox.save_resolution(claimed, DUNE, "title")

        [held] = await outbox.movie_plays("alex")

        assert held.item.ids == DUNE.ids


class TestMovieRatings:
    async def test_movie_ratings_and_clearings_oldest_first(self, outbox: Outbox) -> None:
        later = T0 + timedelta(days=1)
        await outbox.enqueue_many(
            [rate(DUNE, None, later), rate(DUNE, 8, T0), rate(BARRY, 10, T0, profile="sam")]
        )

        held = await outbox.movie_ratings("alex")

        assert [(r.item.title, r.rating, r.rated_at) for r in held] == [
            ("Dune", 8, T0),
            ("Dune", None, later),
        ]


class TestPlans:
    async def test_a_rating_finds_the_changes_of_its_item_without_scanning_every_key(
        self, outbox: Outbox
    ) -> None:
        """state_keys_of_delivery starts from the new delivery's own keys (an index search),
        so a rating costs the same beside 100 or 100,000 plays (an import of many ratings
        stays linear)."""
        plan = await outbox.fetch_all(
            "EXPLAIN QUERY PLAN SELECT k.delivery_id FROM state_changes AS k"
            " WHERE k.new_delivery_id = ? AND k.relation = 'older'",
            [1],
        )

        details = [str(step[-1]) for step in plan]
        assert not any(d.startswith("SCAN") for d in details), details

    async def test_an_import_finds_its_rows_by_index(self, outbox: Outbox) -> None:
        plan = await outbox.fetch_all(
            "EXPLAIN QUERY PLAN SELECT import_key FROM events"
            " WHERE profile = ? AND import_key IN (SELECT value FROM json_each(?))",
            ["alex", '["k1"]'],
        )

        details = [str(step[-1]) for step in plan]
        assert any("events_import_key" in d for d in details), details
