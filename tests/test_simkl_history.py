"""SIMKL history, pure: the POST /sync/history body, its reply mapped to plays, date_from and
all-items matching (no HTTP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.providers.base import Play, PlayOutcome
from crosswatchd.providers.simkl.history import (
    AllItems,
    HistoryReply,
    build_batch,
    date_from,
    found_in,
    outcomes_of,
)

T0 = datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
STAMP = "2024-01-15T10:30:00.000Z"

MOVIE = Item(MediaKind.MOVIE, "Big Trouble", 1986, ids=Ids(imdb="tt0090728", trakt="1"))
OTHER_MOVIE = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, ids=Ids(imdb="tt0072684"))


def episode(season: int, number: int, tvdb: str = "73871") -> Item:
    return Item(
        MediaKind.EPISODE,
        show_title="Futurama",
        show_year=1999,
        show_ids=Ids(tvdb=tvdb),
        season=season,
        number=number,
    )


class TestBatchBody:
    """Movies one object each; episodes under their show's ids, then by season."""

    def test_movie_carries_title_year_ids_and_watched_at(self) -> None:
        """SIMKL has no trakt id key: only the ids it takes are sent."""
        body = build_batch([Play(1, MOVIE, T0)]).body()

        assert body == {
            "movies": [
                {
                    "title": "Big Trouble",
                    "year": 1986,
                    "ids": {"imdb": "tt0090728"},
                    "watched_at": STAMP,
                }
            ]
        }

    def test_episodes_go_under_their_show_grouped_by_season(self) -> None:
        plays = [Play(1, episode(2, 15), T0), Play(2, episode(2, 16), T0)]
        plays.append(Play(3, episode(3, 1), T0))

        body = build_batch(plays).body()

        assert body == {
            "shows": [
                {
                    "title": "Futurama",
                    "year": 1999,
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

    def test_a_season_numbered_show_never_carries_an_anidb_id(self) -> None:
        """SIMKL reads an AniDB id with AniDB's numbering and documents no rule for which id
        wins beside a TVDB id: a show whose episodes go by TVDB season and number is sent by
        its other ids only (shared/reference/anime/README.md §3)."""
        item = Item(
            MediaKind.EPISODE,
            show_title="Attack on Titan",
            show_ids=Ids(tvdb="267440", anidb="14444", imdb="tt2560140"),
            season=3,
            number=15,
        )

        body = build_batch([Play(1, item, T0)]).body()

        assert body["shows"][0]["ids"] == {"imdb": "tt2560140", "tvdb": 267440}

    def test_empty_parts_are_left_out(self) -> None:
        assert list(build_batch([Play(1, episode(1, 1), T0)]).body()) == ["shows"]


class TestOutcomes:
    """A play is ADDED only when the counts account for exactly the plays not found."""

    PLAYS = (Play(1, MOVIE, T0), Play(2, OTHER_MOVIE, T0), Play(3, episode(2, 15), T0))

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
            pytest.param(
                None, {1: "unconfirmed", 2: "unconfirmed", 3: "unconfirmed"}, id="null-reply"
            ),
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
                    "not_found": {"shows": [{"ids": {"tvdb": 73871}}]},
                },
                {1: "added", 2: "added", 3: "not_found"},
                id="show-not-found",
            ),
            pytest.param(
                {
                    "added": {"movies": 2, "episodes": 0},
                    "not_found": {"episodes": [{"number": 15, "watched_at": STAMP}]},
                },
                {1: "added", 2: "added", 3: "not_found"},
                id="episode-echo",
            ),
            pytest.param(
                {
                    "added": {"movies": 2, "episodes": 1},
                    "not_found": {"movies": [{"ids": {"imdb": "tt9999999"}}]},
                },
                {1: "unconfirmed", 2: "unconfirmed", 3: "added"},
                id="untraceable-entry",
            ),
            pytest.param(
                {"added": {"movies": 2, "episodes": 1}, "not_found": {"movies": ["junk"]}},
                {1: "unconfirmed", 2: "unconfirmed", 3: "added"},
                id="entry-not-an-object",
            ),
            pytest.param(
                {"added": {"movies": True, "episodes": "1"}},
                {1: "unconfirmed", 2: "unconfirmed", 3: "added"},
                id="count-types",
            ),
        ],
    )
    def test_reply_table(self, raw: dict[str, Any] | None, expected: dict[int, str]) -> None:
        parsed = None if raw is None else HistoryReply.model_validate(raw)

        outcomes = outcomes_of(parsed, build_batch(self.PLAYS))

        assert {key: outcome.value for key, outcome in outcomes.items()} == expected

    def test_episode_echo_needs_the_sent_watched_at(self) -> None:
        raw = {"added": {"episodes": 0}, "not_found": {"episodes": [{"number": 15}]}}

        outcomes = outcomes_of(
            HistoryReply.model_validate(raw), build_batch([Play(3, episode(2, 15), T0)])
        )

        assert outcomes == {3: PlayOutcome.UNCONFIRMED}


class TestDateFrom:
    """The earliest moment what we look for can have touched the item, less a day."""

    @pytest.mark.parametrize(
        ("plays", "expected"),
        [
            pytest.param([Play(1, MOVIE, T0)], T0 - timedelta(days=1, seconds=5), id="never-sent"),
            pytest.param(
                [Play(1, MOVIE, T0 - timedelta(days=900), sent_at=T0)],
                T0 - timedelta(days=1),
                id="sent-play-uses-sent_at",
            ),
            pytest.param(
                [Play(1, MOVIE, T0), Play(2, MOVIE, T0 - timedelta(hours=3))],
                T0 - timedelta(days=1, hours=3, seconds=5),
                id="earliest-play-wins",
            ),
        ],
    )
    def test_date_from_table(self, plays: list[Play], expected: datetime) -> None:
        assert date_from(plays, tolerance_s=5) == expected


def all_items(**raw: Any) -> AllItems:
    return AllItems.model_validate(raw)


class TestFoundIn:
    """A play is found when SIMKL's latest watch of its item is within the tolerance."""

    def test_movie_last_watched_at_its_time_is_found(self) -> None:
        items = all_items(
            movies=[
                {"movie": {"ids": {"imdb": "tt0090728"}}, "last_watched_at": "2024-01-15T10:30:03Z"}
            ]
        )

        assert found_in(items, [Play(1, MOVIE, T0)], tolerance_s=5) == {1}

    def test_movie_watched_again_since_is_not_found(self) -> None:
        items = all_items(
            movies=[
                {"movie": {"ids": {"imdb": "tt0090728"}}, "last_watched_at": "2024-02-01T00:00:00Z"}
            ]
        )

        assert found_in(items, [Play(1, MOVIE, T0)], tolerance_s=5) == set()

    def test_episode_needs_show_ids_season_number_and_time(self) -> None:
        items = all_items(
            shows=[
                {
                    "show": {"ids": {"tvdb": 73871}},
                    "seasons": [
                        {
                            "number": 2,
                            "episodes": [{"number": 15, "watched_at": "2024-01-15T10:30:00Z"}],
                        }
                    ],
                }
            ]
        )
        plays = [
            Play(1, episode(2, 15), T0),
            Play(2, episode(2, 16), T0),
            Play(3, episode(2, 15, tvdb="1"), T0),
        ]

        assert found_in(items, plays, tolerance_s=5) == {1}

    def test_entries_with_unreadable_fields_find_nothing(self) -> None:
        items = all_items(
            movies=["junk", {"movie": "tt0090728", "last_watched_at": 5}],
            shows=[{"show": {"ids": {"tvdb": 73871}}, "seasons": "all"}],
        )
        plays = [Play(1, MOVIE, T0), Play(2, episode(2, 15), T0)]

        assert found_in(items, plays, tolerance_s=5) == set()
