"""Trakt history, pure: the POST /sync/history body, its reply mapped to plays, and history
entries matched to plays (no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.providers.base import Play, PlayOutcome
from crosswatchd.providers.trakt.history import (
    HistoryEntry,
    HistoryReply,
    clusters,
    history_body,
    matches,
    outcomes_of,
)

T0 = datetime(2026, 11, 21, 10, 54, 52, tzinfo=UTC)
STAMP = "2026-11-21T10:54:52.000Z"

MOVIE = Item(MediaKind.MOVIE, "Big Trouble", 1986, ids=Ids(imdb="tt0090728", tmdb="6978"))
OTHER_MOVIE = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))
OWN_IDS_EPISODE = Item(MediaKind.EPISODE, ids=Ids(tvdb="7047159"), season=9, number=15)


def show_episode(season: int, number: int, tvdb: str = "73871") -> Item:
    """An episode known only by its show's ids and its position (legacy thetvdb agent)."""
    return Item(MediaKind.EPISODE, show_ids=Ids(tvdb=tvdb), season=season, number=number)


def reply(**raw: Any) -> HistoryReply:
    return HistoryReply.model_validate(raw)


class TestHistoryBody:
    """Movies in movies[], episodes with own ids in episodes[], others under their show."""

    def test_movie_goes_in_movies_with_the_ids_trakt_takes(self) -> None:
        movie = Item(MediaKind.MOVIE, ids=Ids(imdb="tt0090728", tmdb="6978", simkl="53536"))

        body, sent = history_body([Play(1, movie, T0)])

        assert body == {
            "movies": [{"ids": {"imdb": "tt0090728", "tmdb": 6978}, "watched_at": STAMP}]
        }
        assert [(s.play.key, s.form) for s in sent] == [(1, "movies")]

    def test_episode_with_its_own_ids_goes_in_episodes(self) -> None:
        body, sent = history_body([Play(1, OWN_IDS_EPISODE, T0)])

        assert body == {"episodes": [{"ids": {"tvdb": 7047159}, "watched_at": STAMP}]}
        assert sent[0].form == "episodes"

    def test_episodes_of_one_show_share_one_show_object_grouped_by_season(self) -> None:
        plays = [
            Play(1, show_episode(2, 15), T0),
            Play(2, show_episode(2, 16), T0),
            Play(3, show_episode(3, 1), T0),
        ]

        body, sent = history_body(plays)

        assert body == {
            "shows": [
                {
                    "ids": {"tvdb": 73871},
                    "seasons": [
                        {
                            "number": 2,
                            "episodes": [
                                {"number": 15, "watched_at": STAMP},
                                {"number": 16, "watched_at": STAMP},
                            ],
                        },
                        {"number": 3, "episodes": [{"number": 1, "watched_at": STAMP}]},
                    ],
                }
            ]
        }
        assert {s.form for s in sent} == {"shows"}

    def test_only_the_forms_used_are_in_the_body(self) -> None:
        body, _ = history_body([Play(1, MOVIE, T0), Play(2, show_episode(1, 1), T0)])

        assert sorted(body) == ["movies", "shows"]


class TestOutcomes:
    """The reply's not_found and added counts, mapped back to play keys."""

    PLAYS = (Play(1, MOVIE, T0), Play(2, OTHER_MOVIE, T0), Play(3, show_episode(0, 7), T0))

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            pytest.param(
                {"added": {"movies": 2, "episodes": 1}},
                {1: "added", 2: "added", 3: "added"},
                id="counts-match",
            ),
            pytest.param(
                {"added": {"movies": 1, "episodes": 1}},
                {1: "unconfirmed", 2: "unconfirmed", 3: "added"},
                id="movie-count-short",
            ),
            pytest.param({}, {1: "unconfirmed", 2: "unconfirmed", 3: "unconfirmed"}, id="empty"),
            pytest.param(
                {
                    "added": {"movies": 1, "episodes": 1},
                    "not_found": {"movies": [{"ids": {"imdb": "tt0072684"}}]},
                },
                {1: "added", 2: "not_found", 3: "added"},
                id="movie-not-found",
            ),
            pytest.param(
                {
                    "added": {"movies": 2, "episodes": 0},
                    "not_found": {
                        "shows": [
                            {
                                "ids": {"tvdb": 73871},
                                "seasons": [{"number": 0, "episodes": [{"number": 7}]}],
                            }
                        ]
                    },
                },
                {1: "added", 2: "added", 3: "not_found"},
                id="special-under-its-show",
            ),
            pytest.param(
                {
                    "added": {"movies": 2, "episodes": 0},
                    "not_found": {"shows": [{"ids": {"tvdb": 73871}}]},
                },
                {1: "added", 2: "added", 3: "not_found"},
                id="whole-show",
            ),
            pytest.param(
                {
                    "added": {"movies": 2, "episodes": 0},
                    "not_found": {"episodes": [{"season": 0, "number": 7}]},
                },
                {1: "added", 2: "added", 3: "not_found"},
                id="bare-episode-echo",
            ),
            pytest.param(
                {"added": "lots", "not_found": {"movies": "none", "shows": [5, None]}},
                {1: "unconfirmed", 2: "unconfirmed", 3: "unconfirmed"},
                id="wrong-types-confirm-nothing",
            ),
        ],
    )
    def test_reply_table(self, raw: dict[str, Any], expected: dict[int, str]) -> None:
        _, sent = history_body(self.PLAYS)

        outcomes = outcomes_of(reply(**raw), sent)

        assert {key: outcome.value for key, outcome in outcomes.items()} == expected

    def test_not_found_show_entry_spares_the_shows_other_episodes(self) -> None:
        _, sent = history_body([Play(1, show_episode(0, 7), T0), Play(2, show_episode(1, 1), T0)])
        raw = {
            "added": {"episodes": 1},
            "not_found": {
                "shows": [
                    {
                        "ids": {"tvdb": 73871},
                        "seasons": [{"number": 0, "episodes": [{"number": 7}]}],
                    }
                ]
            },
        }

        assert outcomes_of(reply(**raw), sent) == {1: PlayOutcome.NOT_FOUND, 2: PlayOutcome.ADDED}

    def test_ambiguous_bare_episode_echo_marks_nothing_not_found(self) -> None:
        """Two show-form plays fit an id-less echo: neither is guessed."""
        _, sent = history_body(
            [Play(1, show_episode(1, 1, "1"), T0), Play(2, show_episode(1, 1, "2"), T0)]
        )
        raw = {"added": {"episodes": 1}, "not_found": {"episodes": [{"number": 1}]}}

        assert set(outcomes_of(reply(**raw), sent).values()) == {PlayOutcome.UNCONFIRMED}


class TestClusters:
    """Plays are looked up in time ranges; windows more than 12 h apart get their own."""

    def test_plays_close_together_share_one_range(self) -> None:
        plays = [Play(1, MOVIE, T0), Play(2, MOVIE, T0 + timedelta(hours=11))]

        assert [[p.key for p in c] for c in clusters(plays, timedelta(0))] == [[1, 2]]

    def test_plays_far_apart_get_their_own_ranges_in_time_order(self) -> None:
        plays = [Play(2, MOVIE, T0 + timedelta(days=2)), Play(1, MOVIE, T0)]

        assert [[p.key for p in c] for c in clusters(plays, timedelta(0))] == [[1], [2]]

    def test_the_tolerance_widens_what_counts_as_close(self) -> None:
        plays = [Play(1, MOVIE, T0), Play(2, MOVIE, T0 + timedelta(hours=14))]

        assert len(clusters(plays, timedelta(hours=1))) == 1


def entry(**raw: Any) -> HistoryEntry:
    return HistoryEntry.model_validate(raw)


class TestMatches:
    """History entries account for plays of the same item within the tolerance."""

    def test_movie_within_the_tolerance_matches(self) -> None:
        found = entry(id=1, watched_at="2026-11-21T10:54:55.000Z", movie={"ids": {"tmdb": 6978}})

        assert matches([found], [Play(7, MOVIE, T0)], tolerance_s=5) == {7}

    def test_movie_outside_the_tolerance_does_not_match(self) -> None:
        late = entry(id=1, watched_at="2026-11-21T11:54:52.000Z", movie={"ids": {"tmdb": 6978}})

        assert matches([late], [Play(7, MOVIE, T0)], tolerance_s=5) == set()

    def test_episode_matches_by_show_ids_season_and_number(self) -> None:
        found = entry(
            id=1,
            watched_at=STAMP,
            episode={"season": 2, "number": 15, "ids": {"tvdb": 1}},
            show={"ids": {"tvdb": 73871}},
        )
        plays = [Play(1, show_episode(2, 15), T0), Play(2, show_episode(2, 16), T0)]

        assert matches([found], plays, tolerance_s=5) == {1}

    def test_one_entry_accounts_for_one_play_the_closest(self) -> None:
        found = entry(id=1, watched_at=STAMP, movie={"ids": {"imdb": "tt0090728"}})
        plays = [Play(1, MOVIE, T0 + timedelta(seconds=3)), Play(2, MOVIE, T0)]

        assert matches([found], plays, tolerance_s=5) == {2}

    def test_entries_without_an_id_are_told_apart_by_position(self) -> None:
        twice = [entry(watched_at=STAMP, movie={"ids": {"imdb": "tt0090728"}})] * 2
        plays = [Play(1, MOVIE, T0), Play(2, MOVIE, T0)]

        assert matches(twice, plays, tolerance_s=5) == {1, 2}

    def test_entries_with_unreadable_fields_match_nothing(self) -> None:
        broken = [entry(id=1, watched_at="yesterday", movie={"ids": {"imdb": "tt0090728"}})]
        broken.append(entry(id=2, watched_at=STAMP, movie="tt0090728"))

        assert matches(broken, [Play(1, MOVIE, T0)], tolerance_s=5) == set()
