"""The pure comparison of a reconcile pass: missing and extra plays for a target that keeps
every play (Trakt) and one that keeps one state per item (SIMKL), and ratings."""

from __future__ import annotations

from crosswatchd.models import Ids, Item, MediaKind, item_keys
from crosswatchd.reconcile.diff import Rated, Watch, diff_plays, diff_ratings

H = 3600.0
WINDOW = 4 * H
DAY = 86400.0


def movie(n: int, *, imdb: bool = True, tmdb: bool = False) -> tuple[str, ...]:
    ids = Ids(imdb=f"tt{n}" if imdb else None, tmdb=str(n) if tmdb else None)
    return tuple(item_keys(Item(MediaKind.MOVIE, ids=ids)))


def episode_by_show(show_tvdb: int, season: int, number: int) -> tuple[str, ...]:
    item = Item(MediaKind.EPISODE, show_ids=Ids(tvdb=str(show_tvdb)), season=season, number=number)
    return tuple(item_keys(item))


def episode_full(show_tvdb: int, season: int, number: int, own_tvdb: int) -> tuple[str, ...]:
    item = Item(
        MediaKind.EPISODE,
        ids=Ids(tvdb=str(own_tvdb)),
        show_ids=Ids(tvdb=str(show_tvdb), imdb="tt99"),
        season=season,
        number=number,
    )
    return tuple(item_keys(item))


class TestEveryPlay:
    def test_a_play_held_within_the_window_is_present_one_outside_it_missing(self) -> None:
        source = [Watch(movie(1), 0.0), Watch(movie(2), 10 * DAY)]
        target = [Watch(movie(1), 3 * H), Watch(movie(2), 10 * DAY + 5 * H)]
        found = diff_plays(source, target, window_s=WINDOW, every_play=True)
        assert found.missing == [1]
        assert (found.matched, found.extra, found.source_plays, found.target_plays) == (
            1,
            1,
            2,
            2,
        )

    def test_items_match_by_any_shared_key(self) -> None:
        """The source knows the show's tvdb id and the position; Trakt also the episode's own
        ids: one shared key is enough. A movie known by tmdb alone matches tmdb + imdb."""
        source = [
            Watch(episode_by_show(73871, 2, 15), 0.0),
            Watch(movie(5, imdb=False, tmdb=True), 0.0),
        ]
        target = [
            Watch(episode_full(73871, 2, 15, own_tvdb=163303), 60.0),
            Watch(movie(5, imdb=True, tmdb=True), 60.0),
        ]
        assert diff_plays(source, target, window_s=WINDOW, every_play=True).missing == []

    def test_one_target_play_accounts_for_one_source_play(self) -> None:
        """Watched on Monday and on Friday, on Trakt once: Friday's play is missing."""
        source = [Watch(movie(1), 0.0), Watch(movie(1), 4 * DAY)]
        target = [Watch(movie(1), 60.0)]
        found = diff_plays(source, target, window_s=WINDOW, every_play=True)
        assert found.missing == [1] and found.extra == 0

    def test_repeats_within_the_window_are_one_play(self) -> None:
        """Plex's history and Tautulli's row of one viewing, minutes apart, are one play."""
        source = [Watch(movie(1), 0.0), Watch(movie(1), 300.0), Watch(movie(1), 2 * H)]
        assert diff_plays(source, [], window_s=WINDOW, every_play=True).missing == [0]
        found = diff_plays(source, [Watch(movie(1), 100.0)], window_s=WINDOW, every_play=True)
        assert found.missing == [] and found.source_plays == 1

    def test_the_closest_fitting_pairs_are_made_earliest_first(self) -> None:
        source = [Watch(movie(1), 0.0), Watch(movie(1), 5 * H)]
        target = [Watch(movie(1), 3 * H)]  # within the window of both
        found = diff_plays(source, target, window_s=WINDOW, every_play=True)
        assert found.missing == [1] and found.matched == 1

    def test_extra_counts_only_since_a_day_when_given(self) -> None:
        target = [Watch(movie(1), 0.0), Watch(movie(2), 10 * DAY)]
        assert diff_plays([], target, window_s=WINDOW, every_play=True).extra == 2
        assert diff_plays([], target, window_s=WINDOW, every_play=True, since=DAY).extra == 1


class TestOneStatePerItem:
    def test_an_item_watched_at_all_is_present_whenever(self) -> None:
        source = [Watch(movie(1), 0.0), Watch(movie(1), 30 * DAY)]
        target = [Watch(movie(1), 90 * DAY)]
        found = diff_plays(source, target, window_s=WINDOW, every_play=False)
        assert found.missing == [] and found.matched == 2

    def test_a_missing_item_is_sent_once_as_its_latest_play(self) -> None:
        source = [Watch(movie(1), 30 * DAY), Watch(movie(1), 0.0), Watch(movie(2), 0.0)]
        target = [Watch(movie(2), 0.0), Watch(movie(3), 0.0)]
        found = diff_plays(source, target, window_s=WINDOW, every_play=False)
        assert found.missing == [0] and found.extra == 1


class TestRatings:
    def test_missing_different_and_extra(self) -> None:
        source = [Rated(movie(1), 8), Rated(movie(2), 7), Rated(movie(3), 6)]
        target = [Rated(movie(2), 7), Rated(movie(3), 9), Rated(movie(4), 5)]
        found = diff_ratings(source, target)
        assert found.send == [0, 2]
        assert (found.missing, found.different, found.extra) == (1, 1, 1)

    def test_a_show_and_its_episode_are_different_items(self) -> None:
        show = tuple(item_keys(Item(MediaKind.SHOW, ids=Ids(tvdb="73871"))))
        source = [Rated(show, 9)]
        target = [Rated(episode_by_show(73871, 2, 15), 9)]
        found = diff_ratings(source, target)
        assert (found.missing, found.extra) == (1, 1)


class TestWaiting:
    def test_a_play_on_its_way_is_not_missing_and_never_extra(self) -> None:
        source = [Watch(movie(1), 0.0), Watch(movie(2), 0.0)]
        waiting = [Watch(movie(1), 120.0), Watch(movie(3), 0.0)]
        found = diff_plays(source, [], window_s=WINDOW, every_play=True, waiting=waiting)
        assert found.missing == [1] and found.waiting == 1 and found.extra == 0

    def test_for_one_state_targets_any_waiting_play_of_the_item_counts(self) -> None:
        source = [Watch(movie(1), 30 * DAY)]
        waiting = [Watch(movie(1), 0.0)]
        found = diff_plays(source, [], window_s=WINDOW, every_play=False, waiting=waiting)
        assert found.missing == [] and found.waiting == 1
        trakt = diff_plays(source, [], window_s=WINDOW, every_play=True, waiting=waiting)
        assert trakt.missing == [0]
