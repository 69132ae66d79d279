"""Tautulli webhook bodies (config/tautulli-webhook.json) -> PlayEvent / Ignored / PayloadError."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crosswatchd.errors import PayloadError
from crosswatchd.models import Action, Ids, MediaKind, PlayEvent, Source
from crosswatchd.profiles import Household
from crosswatchd.sources.tautulli import (
    Ignored,
    TautulliWebhook,
    parse_tautulli_body,
    tautulli_event,
)

ROOT = Path(__file__).parent.parent
TEMPLATE = ROOT / "config" / "tautulli-webhook.json"
FIXTURES = Path(__file__).parent / "fixtures" / "tautulli"
RECEIVED = datetime(2026, 11, 21, 10, 54, 52, tzinfo=UTC)
USERS = ["testyboi"]

WATCHED_MOVIE = "watched_movie_barry-lyndon.json"
WATCHED_EPISODE = "watched_episode_futurama_s02e15.json"
PLACEHOLDERS = "pause_episode_legacy-thetvdb_placeholders.json"
CREATED = "created_recently-added.json"


def data(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_bytes())
    return loaded


def event_of(source: bytes | str | dict[str, Any], users: list[str] | None = None) -> Any:
    body = parse_tautulli_body(source)
    household = Household.implicit(tautulli_users=USERS if users is None else users)
    return tautulli_event(body, received_at=RECEIVED, household=household)


def play(source: bytes | str | dict[str, Any], users: list[str] | None = None) -> PlayEvent:
    result = event_of(source, users)
    assert isinstance(result, PlayEvent), result
    return result


def ignored(source: bytes | str | dict[str, Any], users: list[str] | None = None) -> Ignored:
    result = event_of(source, users)
    assert isinstance(result, Ignored), result
    return result


class TestTemplate:
    """The shipped body template matches the model and means 'nothing known' unsubstituted."""

    def test_every_template_key_is_a_model_field(self) -> None:
        template = json.loads(TEMPLATE.read_text())
        assert set(template) == set(TautulliWebhook.model_fields)

    def test_every_template_value_is_its_own_placeholder(self) -> None:
        template = json.loads(TEMPLATE.read_text())
        assert all(value == f"{{{key}}}" for key, value in template.items())

    def test_unsubstituted_template_parses_to_all_missing(self) -> None:
        body = parse_tautulli_body(TEMPLATE.read_bytes())
        assert body == TautulliWebhook()


class TestWatchedMovie:
    """A `watched` movie: a completed play at Tautulli's unixtime."""

    def test_is_watched_at_unixtime_in_utc(self) -> None:
        event = play(json.dumps(data(WATCHED_MOVIE)))
        assert (event.source, event.action) == (Source.TAUTULLI, Action.WATCHED)
        assert event.occurred_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
        assert event.occurred_at.utcoffset() is not None

    def test_ids_are_the_movies(self) -> None:
        item = play(data(WATCHED_MOVIE)).item
        assert item.kind is MediaKind.MOVIE
        assert item.ids == Ids(imdb="tt0072684", tmdb="3175")
        assert item.show_ids == Ids()
        assert (item.title, item.year, item.rating_key) == ("Barry Lyndon", 1975, "75580")
        assert item.guid == "com.plexapp.agents.imdb://tt0072684?lang=en"

    def test_movie_has_no_episode_fields(self) -> None:
        item = play(data(WATCHED_MOVIE)).item
        assert (item.show_title, item.season, item.number, item.grandparent_rating_key) == (
            None,
            None,
            None,
            None,
        )

    def test_progress_session_and_account(self) -> None:
        event = play(data(WATCHED_MOVIE))
        assert (event.progress_pct, event.view_offset_ms, event.duration_ms) == (
            91.0,
            10046400,
            11040000,
        )
        assert (event.session, event.account) == ("42", "testyboi")

    def test_guid_fills_a_missing_template_id(self) -> None:
        body = data(WATCHED_MOVIE)
        body["imdb_id"] = ""
        assert play(body).item.ids == Ids(imdb="tt0072684", tmdb="3175")


class TestWatchedEpisode:
    """For episodes the template's ids are the show's."""

    def test_template_ids_become_show_ids(self) -> None:
        item = play(data(WATCHED_EPISODE)).item
        assert item.kind is MediaKind.EPISODE
        assert item.show_ids == Ids(imdb="tt0149460", tmdb="615", tvdb="73871")

    def test_plex_episode_guid_gives_no_episode_ids(self) -> None:
        item = play(data(WATCHED_EPISODE)).item
        assert item.ids == Ids()
        assert item.guid == "plex://episode/5d9c0a8c2192ba001f31a2a1"

    def test_season_number_titles_and_keys(self) -> None:
        item = play(data(WATCHED_EPISODE)).item
        assert (item.season, item.number) == (2, 15)
        assert (item.show_title, item.title) == ("Futurama", "A Clone of My Own")
        assert (item.rating_key, item.grandparent_rating_key) == ("59852", "59800")
        assert item.label() == "Futurama S02E15"

    def test_year_is_the_episodes_not_the_shows(self) -> None:
        item = play(data(WATCHED_EPISODE)).item
        assert (item.year, item.show_year) == (2000, None)

    def test_watched_below_ninety_percent_is_still_watched(self) -> None:
        event = play(data(WATCHED_EPISODE))
        assert (event.action, event.progress_pct) == (Action.WATCHED, 88.0)


class TestMissingValues:
    """`""` and unsubstituted `"{param}"` both mean missing."""

    def test_legacy_guid_fills_show_id_and_position(self) -> None:
        item = play(data(PLACEHOLDERS)).item
        assert item.show_ids == Ids(tvdb="73871")
        assert (item.season, item.number) == (2, 15)

    def test_the_legacy_guids_numbering_wins_over_season_and_episode_num(self) -> None:
        body = data(PLACEHOLDERS)
        body.update(season_num="3", episode_num="4")
        item = play(body).item
        assert (item.season, item.number) == (2, 15)

    def test_server_machine_id_scopes_the_rating_keys(self) -> None:
        body = data(PLACEHOLDERS)
        body["server_machine_id"] = "abc123"
        assert play(body).item.server == "abc123"
        assert play(data(PLACEHOLDERS)).item.server is None

    def test_placeholders_are_none(self) -> None:
        body = parse_tautulli_body(data(PLACEHOLDERS))
        missing = (body.unixtime, body.episode_num, body.year, body.imdb_id, body.thetvdb_id)
        assert missing == (None, None, None, None, None)
        assert (body.season_num, body.themoviedb_id, body.progress_percent) == (None, None, None)
        assert (body.session_key, body.user_rating) == (None, None)

    def test_missing_unixtime_falls_back_to_received_at(self) -> None:
        assert play(data(PLACEHOLDERS)).occurred_at == RECEIVED

    def test_missing_progress_percent_uses_view_offset(self) -> None:
        event = play(data(PLACEHOLDERS))
        assert (event.progress_pct, event.view_offset_ms, event.duration_ms) == (
            50.0,
            660000,
            1320000,
        )

    def test_missing_session_key_is_none(self) -> None:
        assert play(data(PLACEHOLDERS)).session is None

    def test_whitespace_only_value_is_missing(self) -> None:
        body = data(WATCHED_MOVIE)
        body["themoviedb_id"] = "   "
        assert play(body).item.ids == Ids(imdb="tt0072684")

    def test_invalid_ids_are_dropped(self) -> None:
        body = data(WATCHED_MOVIE)
        body.update(imdb_id="nm0000123", themoviedb_id="0", thetvdb_id="abc")
        body["guid"] = "plex://movie/5d776b9b594b2b001e6dbd2c"
        assert play(body).item.ids == Ids()


class TestActions:
    """Tautulli triggers map to actions; a stop is live state even when nearly complete."""

    @pytest.mark.parametrize(
        ("action", "expected"),
        [
            ("play", Action.START),
            ("resume", Action.START),
            ("pause", Action.PAUSE),
            ("stop", Action.STOP),
            ("watched", Action.WATCHED),
            ("Watched", Action.WATCHED),
        ],
    )
    def test_action_mapping(self, action: str, expected: Action) -> None:
        body = data(WATCHED_MOVIE)
        body["action"] = action
        assert play(body).action is expected

    def test_stop_at_ninety_five_percent_stays_stop(self) -> None:
        body = data(WATCHED_MOVIE)
        body.update(action="stop", progress_percent="95")
        event = play(body)
        assert (event.action, event.progress_pct) == (Action.STOP, 95.0)

    def test_created_is_ignored_without_needing_a_username(self) -> None:
        result = ignored(data(CREATED))
        assert "created" in result.reason
        assert result.account is None

    @pytest.mark.parametrize("action", ["buffer", "error", "intro", "", "{action}"])
    def test_other_actions_are_ignored(self, action: str) -> None:
        body = data(WATCHED_MOVIE)
        body["action"] = action
        assert "not a playback action" in ignored(body).reason

    @pytest.mark.parametrize("media_type", ["track", "clip", "show", "season", ""])
    def test_non_movie_or_episode_media_type_is_ignored(self, media_type: str) -> None:
        body = data(WATCHED_MOVIE)
        body["media_type"] = media_type
        result = ignored(body)
        assert "not a movie or episode" in result.reason
        assert result.account == "testyboi"


class TestUsersFilter:
    """tautulli.users decides whose plays are ours; an empty list accepts nobody."""

    def test_empty_users_ignores_with_actionable_reason(self) -> None:
        result = ignored(data(WATCHED_MOVIE), users=[])
        assert result == Ignored(
            "tautulli.users is empty: add this username to accept its plays",
            account="testyboi",
            account_filtered=True,
        )

    def test_unlisted_username_is_ignored(self) -> None:
        result = ignored(data(WATCHED_MOVIE), users=["melissar26"])
        assert result.account == "testyboi"
        assert result.account_filtered
        assert "testyboi" in result.reason

    def test_username_match_is_case_insensitive(self) -> None:
        assert play(data(PLACEHOLDERS), users=[" testyboi"]).account == "TestyBoi"

    @pytest.mark.parametrize("username", ["", "{username}"])
    def test_missing_username_on_a_play_is_a_payload_error(self, username: str) -> None:
        body = data(WATCHED_MOVIE)
        body["username"] = username
        with pytest.raises(PayloadError, match="username"):
            event_of(body)


class TestLeniency:
    """Values may arrive as numbers as well as strings."""

    def test_ints_are_accepted(self) -> None:
        body = data(WATCHED_EPISODE)
        body.update(unixtime=1700003600, season_num=2, episode_num=15, year=2000)
        body.update(thetvdb_id=73871, rating_key=59852, progress_percent=88.5, duration_ms=1320000)
        event = play(body)
        assert (event.item.season, event.item.number, event.item.year) == (2, 15, 2000)
        assert event.item.show_ids.tvdb == "73871"
        assert event.item.rating_key == "59852"
        assert event.progress_pct == 88.5
        assert event.occurred_at == datetime(2023, 11, 14, 23, 13, 20, tzinfo=UTC)

    def test_episode_range_gives_first_number(self) -> None:
        body = data(WATCHED_EPISODE)
        body["episode_num"] = "15-16"
        assert play(body).item.number == 15

    def test_unknown_fields_are_ignored(self) -> None:
        body = data(WATCHED_MOVIE)
        body["server_name"] = "Vis"
        assert play(body).item.ids.imdb == "tt0072684"

    def test_title_without_show_prefix_is_kept(self) -> None:
        body = data(WATCHED_EPISODE)
        body["title"] = "A Clone of My Own"
        assert play(body).item.title == "A Clone of My Own"

    def test_naive_received_at_is_a_caller_error(self) -> None:
        body = parse_tautulli_body(data(WATCHED_MOVIE))
        with pytest.raises(ValueError, match="timezone-aware"):
            tautulli_event(
                body,
                received_at=datetime(2026, 1, 1),
                household=Household.implicit(tautulli_users=USERS),
            )


class TestPayloadErrors:
    """Bad bodies raise PayloadError with a one-line reason."""

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            (b"{not json", "not JSON"),
            (b"[]", "JSON object"),
            (b'{"year": "abc"}', "year"),
            (b'{"season_num": "two"}', "season_num"),
            (b'{"unixtime": "yesterday"}', "unixtime"),
            (b'{"progress_percent": "NaN"}', "progress_percent"),
            (b'{"title": ["a"]}', "title"),
            (b'{"username": {"a": 1}}', "username"),
            (b'{"rating_key": true}', "rating_key"),
        ],
    )
    def test_invalid_body(self, body: bytes, fragment: str) -> None:
        with pytest.raises(PayloadError) as caught:
            parse_tautulli_body(body)
        reason = str(caught.value)
        assert fragment in reason
        assert reason.startswith("invalid Tautulli payload")
        assert "\n" not in reason

    def test_out_of_range_unixtime_is_a_payload_error(self) -> None:
        body = data(WATCHED_MOVIE)
        body["unixtime"] = "99999999999999999"
        with pytest.raises(PayloadError, match="unixtime"):
            event_of(body)
