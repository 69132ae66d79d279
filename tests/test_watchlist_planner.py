"""The watchlist planner, pure: what a pass queues for each side, given each side's list now
and at its last read and what the outbox still holds (crosswatchd/watchlist/planner.py)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import count

import pytest

from crosswatchd.models import Action, Ids, Item, MediaKind
from crosswatchd.outbox import DeliveryState, ReasonKind, WatchlistChange
from crosswatchd.watchlist.items import Groups, identity_keys, merged
from crosswatchd.watchlist.planner import Plan, Side, plan, vanished

ADD, REMOVE = Action.WATCHLIST_ADD, Action.WATCHLIST_REMOVE
_IDS = count(1)


def movie(n: int, *, tmdb: bool = True, imdb: bool = True, trakt: str | None = None) -> Item:
    ids = Ids(
        imdb=f"tt{1000 + n}" if imdb else None, tmdb=str(500 + n) if tmdb else None, trakt=trakt
    )
    return Item(MediaKind.MOVIE, f"Film {n}", 2000 + n, ids=ids, guid=f"plex://movie/{n:024x}")


def change(
    provider: str,
    action: Action,
    item: Item,
    state: DeliveryState = DeliveryState.PENDING,
    reason_kind: ReasonKind | None = None,
) -> WatchlistChange:
    n = next(_IDS)
    return WatchlistChange(n, provider, action, state, reason_kind, None, None, float(n), item)


def side(
    name: str,
    before: Sequence[Item] = (),
    now: Sequence[Item] = (),
    changes: Sequence[WatchlistChange] = (),
    watched: Sequence[Item] = (),
) -> Side:
    keys = frozenset(k for item in watched for k in identity_keys(item))
    return Side(name, list(before), list(now), list(changes), keys)


def queued(result: Plan) -> set[tuple[str, str, str]]:
    """``(side, add|remove, title)`` of every change planned."""
    return {(c.side, "add" if c.action is ADD else "remove", c.item.title) for c in result.changes}


class TestIdentity:
    def test_keys_are_typed_so_a_movie_and_a_show_sharing_a_tmdb_number_differ(self) -> None:
        film = Item(MediaKind.MOVIE, ids=Ids(tmdb="615"))
        show = Item(MediaKind.SHOW, ids=Ids(tmdb="615"))
        assert identity_keys(film) == {"movie:tmdb:615"}
        assert identity_keys(show) == {"show:tmdb:615"}

    def test_only_imdb_tmdb_and_tvdb_identify(self) -> None:
        assert identity_keys(Item(MediaKind.MOVIE, ids=Ids(trakt="5", simkl="9"))) == set()

    def test_an_episode_stands_for_its_show(self) -> None:
        episode = Item(MediaKind.EPISODE, show_ids=Ids(tvdb="73871"), season=2, number=15)
        assert identity_keys(episode) == {"show:tvdb:73871"}

    def test_items_sharing_any_key_are_one_group(self) -> None:
        groups = Groups()
        groups.add({"movie:imdb:tt1"})
        groups.add({"movie:tmdb:5"})
        groups.add({"movie:imdb:tt1", "movie:tmdb:5"})  # joins the two
        assert groups.group_of({"movie:imdb:tt1"}) == groups.group_of({"movie:tmdb:5"})
        assert groups.group_of({"movie:imdb:tt9"}) is None

    def test_merged_fills_ids_from_every_copy(self) -> None:
        one = merged([movie(1, tmdb=False), movie(1, imdb=False, trakt="77")])
        assert one.ids.as_dict() == {"imdb": "tt1001", "tmdb": "501", "trakt": "77"}
        assert one.title == "Film 1"


class TestModePlex:
    def test_a_plex_item_goes_to_every_target_that_lacks_it(self) -> None:
        result = plan("plex", [side("plex", now=[movie(1)]), side("trakt"), side("simkl")])
        assert queued(result) == {("trakt", "add", "Film 1"), ("simkl", "add", "Film 1")}

    def test_a_target_holding_the_item_by_another_id_gets_nothing(self) -> None:
        result = plan(
            "plex",
            [side("plex", now=[movie(1)]), side("trakt", now=[movie(1, imdb=False)])],
        )
        assert result.changes == []

    def test_an_item_removed_from_plex_is_removed_from_the_targets(self) -> None:
        result = plan(
            "plex",
            [
                side("plex", before=[movie(1)]),
                side("trakt", before=[movie(1)], now=[movie(1)]),
                side("simkl", before=[movie(1)], now=[movie(1)]),
            ],
        )
        assert queued(result) == {("trakt", "remove", "Film 1"), ("simkl", "remove", "Film 1")}

    def test_items_only_on_a_target_stay_and_are_counted_extra(self) -> None:
        result = plan("plex", [side("plex"), side("trakt", before=[movie(2)], now=[movie(2)])])
        assert result.changes == []
        assert result.extra == {"trakt": 1}

    def test_nothing_is_written_to_plex_and_target_removals_are_not_copied(self) -> None:
        result = plan(
            "plex",
            [
                side("plex", before=[movie(1)], now=[movie(1)]),
                side("trakt", before=[movie(1)], now=[movie(3)]),  # removed 1, added 3
            ],
        )
        assert queued(result) == {("trakt", "add", "Film 1")}  # Plex is the source


class TestTwoWay:
    def test_an_addition_anywhere_reaches_every_side(self) -> None:
        result = plan(
            "two-way", [side("plex"), side("trakt", now=[movie(3)]), side("simkl", now=[movie(4)])]
        )
        assert queued(result) == {
            ("plex", "add", "Film 3"),
            ("simkl", "add", "Film 3"),
            ("plex", "add", "Film 4"),
            ("trakt", "add", "Film 4"),
        }

    @pytest.mark.parametrize("remover", ["plex", "trakt", "simkl"])
    def test_a_removal_on_any_side_wins_over_the_sides_that_still_hold_it(
        self, remover: str
    ) -> None:
        sides = [
            side(name, before=[movie(1)], now=[] if name == remover else [movie(1)])
            for name in ("plex", "trakt", "simkl")
        ]
        result = plan("two-way", sides)
        others = {n for n in ("plex", "trakt", "simkl") if n != remover}
        assert queued(result) == {(n, "remove", "Film 1") for n in others}

    def test_a_removal_still_on_its_way_is_not_undone_by_a_side_that_holds_the_item(
        self,
    ) -> None:
        """Plex removed the film last pass; Trakt's removal is parked (refused): the film
        still on Trakt must not come back to Plex and SIMKL, and the removal is tried again."""
        parked = change("trakt", REMOVE, movie(1), DeliveryState.PARKED, ReasonKind.REJECTED)
        result = plan(
            "two-way",
            [
                side("plex"),
                side("trakt", before=[movie(1)], now=[movie(1)], changes=[parked]),
                side("simkl"),
            ],
        )
        assert queued(result) == {("trakt", "remove", "Film 1")}

    def test_a_fresh_addition_wins_over_an_older_removal_still_on_its_way(self) -> None:
        """Plex removed the film last pass and Trakt's removal still waits; now the person
        puts it back on Plex: an addition for Trakt supersedes the waiting removal."""
        waiting = change("trakt", REMOVE, movie(1))
        result = plan(
            "two-way",
            [
                side("plex", now=[movie(1)]),
                side("trakt", before=[movie(1)], now=[movie(1)], changes=[waiting]),
            ],
        )
        assert queued(result) == {("trakt", "add", "Film 1")}

    def test_the_first_pass_only_adds(self) -> None:
        result = plan(
            "two-way", [side("plex", now=[movie(1)]), side("trakt", now=[movie(2)]), side("simkl")]
        )
        assert {action for _, action, _ in queued(result)} == {"add"}

    def test_a_target_that_dropped_a_watched_item_does_not_remove_it_elsewhere(self) -> None:
        """Trakt takes a watched film off its watchlist by itself; with a play of it since
        the last read, that is not a removal: Plex and SIMKL keep it, Trakt gets it back."""
        result = plan(
            "two-way",
            [
                side("plex", before=[movie(1)], now=[movie(1)]),
                side("trakt", before=[movie(1)], watched=[movie(1)]),
                side("simkl", before=[movie(1)], now=[movie(1)]),
            ],
        )
        assert queued(result) == {("trakt", "add", "Film 1")}

    def test_without_a_play_the_same_drop_is_a_removal(self) -> None:
        result = plan(
            "two-way",
            [
                side("plex", before=[movie(1)], now=[movie(1)]),
                side("trakt", before=[movie(1)], watched=[movie(2)]),
            ],
        )
        assert queued(result) == {("plex", "remove", "Film 1")}


class TestWhatTheOutboxHolds:
    def test_a_change_already_waiting_is_not_queued_again(self) -> None:
        result = plan(
            "plex",
            [side("plex", now=[movie(1)]), side("trakt", changes=[change("trakt", ADD, movie(1))])],
        )
        assert result.changes == []

    def test_an_addition_a_full_list_refused_is_tried_again(self) -> None:
        refused = change("trakt", ADD, movie(1), DeliveryState.PARKED, ReasonKind.REJECTED)
        result = plan("plex", [side("plex", now=[movie(1)]), side("trakt", changes=[refused])])
        assert queued(result) == {("trakt", "add", "Film 1")}

    @pytest.mark.parametrize("reason", [ReasonKind.NOT_FOUND, ReasonKind.UNRESOLVED])
    def test_an_addition_parked_for_the_user_is_not_queued_again(self, reason: ReasonKind) -> None:
        parked = change("trakt", ADD, movie(1), DeliveryState.PARKED, reason)
        assert (
            plan("plex", [side("plex", now=[movie(1)]), side("trakt", changes=[parked])]).changes
            == []
        )

    def test_an_addition_simkl_kept_unapplied_is_not_asked_again(self) -> None:
        kept = change("simkl", ADD, movie(1), DeliveryState.DELIVERED, ReasonKind.KEPT)
        result = plan("plex", [side("plex", now=[movie(1)]), side("simkl", changes=[kept])])
        assert result.changes == []

    def test_a_removal_also_takes_back_an_addition_still_waiting(self) -> None:
        waiting = change("trakt", ADD, movie(1))
        result = plan("plex", [side("plex", before=[movie(1)]), side("trakt", changes=[waiting])])
        assert queued(result) == {("trakt", "remove", "Film 1")}


def test_vanished_lists_what_a_side_no_longer_holds_by_any_id() -> None:
    assert vanished([movie(1), movie(2)], [movie(1, tmdb=False)]) == [movie(2)]


def test_a_plan_needs_the_plex_side() -> None:
    with pytest.raises(ValueError, match="plex"):
        plan("plex", [side("trakt")])
