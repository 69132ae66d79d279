"""Plex webhook payloads -> PlayEvent / Ignored / PayloadError.

Every file in ``tests/fixtures/plex/`` is a real ``payload`` part (see its README).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from crosswatchd.errors import PayloadError
from crosswatchd.models import Action, Ids, MediaKind, PlayEvent, Source
from crosswatchd.profiles import Household
from crosswatchd.sources._edge import progress_percent
from crosswatchd.sources.plex import Ignored, PlexPayload, parse_plex_payload, plex_event

FIXTURES = Path(__file__).parent / "fixtures" / "plex"
ALL_FIXTURES = sorted(FIXTURES.glob("*.json"))
RECEIVED = datetime(2026, 11, 21, 10, 54, 52, tzinfo=UTC)

BARRY_LYNDON = "movie_media.stop_legacy-agent_imdb_barry-lyndon.json"
FUTURAMA = "episode_media.pause_legacy-agent_thetvdb_futurama.json"
BOBS_BURGERS = "episode_media.pause_plex-agent_bobs-burgers_s09e15.json"
SOLAR_OPPOSITES = "episode_media.resume_plex-agent_solar-opposites_s01e03.json"
BIG_TROUBLE_SCROBBLE = "movie_media.scrobble_plex-agent_big-trouble-in-little-china.json"
BIG_TROUBLE_RATE = "movie_media.rate_plex-agent_big-trouble-in-little-china.json"
BLUEY_LIBRARY_NEW = "episode_library.new_plex-agent_bluey_s02e50.json"
TRACK = "official-doc-example_media.play_track.json"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def data(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(raw(name))
    return copy.deepcopy(loaded)


def event_of(
    source: bytes | str | dict[str, Any], accounts: list[str] | None = None
) -> PlayEvent | Ignored:
    household = Household.implicit(plex_accounts=accounts or [])
    return plex_event(parse_plex_payload(source), received_at=RECEIVED, household=household)


def play(source: bytes | str | dict[str, Any], accounts: list[str] | None = None) -> PlayEvent:
    result = event_of(source, accounts)
    assert isinstance(result, PlayEvent), result
    return result


def ignored(source: bytes | str | dict[str, Any], accounts: list[str] | None = None) -> Ignored:
    result = event_of(source, accounts)
    assert isinstance(result, Ignored), result
    return result


class TestEveryRealPayload:
    """Each saved real payload parses and maps without raising, whatever form it arrives in."""

    def test_fixture_directory_holds_all_reference_payloads(self) -> None:
        assert len(ALL_FIXTURES) == 8

    @pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.stem)
    def test_parses_to_a_payload_with_its_event(self, path: Path) -> None:
        payload = parse_plex_payload(path.read_bytes())
        assert isinstance(payload, PlexPayload)
        assert payload.event == json.loads(path.read_bytes())["event"]

    @pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.stem)
    def test_bytes_text_and_mapping_inputs_agree(self, path: Path) -> None:
        body = path.read_bytes()
        as_bytes = parse_plex_payload(body)
        assert parse_plex_payload(body.decode("utf-8")) == as_bytes
        assert parse_plex_payload(json.loads(body)) == as_bytes

    @pytest.mark.parametrize("path", ALL_FIXTURES, ids=lambda p: p.stem)
    def test_listed_account_maps_to_event_or_reasoned_ignore(self, path: Path) -> None:
        title = json.loads(path.read_bytes())["Account"]["title"]
        result = event_of(path.read_bytes(), accounts=[title])
        if isinstance(result, Ignored):
            assert result.reason
            assert result.account == title
        else:
            assert result.source is Source.PLEX
            assert result.account == title
            assert result.occurred_at == RECEIVED


class TestBarryLyndonLegacyImdbMovie:
    """media.stop of a legacy imdb-agent movie with no viewOffset."""

    def test_is_a_stop_without_progress(self) -> None:
        event = play(raw(BARRY_LYNDON))
        assert event.action is Action.STOP
        assert (event.progress_pct, event.view_offset_ms, event.duration_ms) == (
            None,
            None,
            11040000,
        )

    def test_item_has_the_legacy_imdb_id(self) -> None:
        item = play(raw(BARRY_LYNDON)).item
        assert item.kind is MediaKind.MOVIE
        assert (item.title, item.year) == ("Barry Lyndon", 1975)
        assert item.ids == Ids(imdb="tt0072684")
        assert item.show_ids == Ids()
        assert item.guid == "com.plexapp.agents.imdb://tt0072684?lang=en"

    def test_movie_has_no_episode_fields(self) -> None:
        item = play(raw(BARRY_LYNDON)).item
        assert (item.show_title, item.season, item.number, item.grandparent_rating_key) == (
            None,
            None,
            None,
            None,
        )
        assert item.rating_key == "75580"

    def test_account_session_and_time(self) -> None:
        event = play(raw(BARRY_LYNDON))
        assert (event.account, event.session, event.occurred_at) == ("testyboi", "uwatm8", RECEIVED)


class TestFuturamaLegacyThetvdbEpisode:
    """media.pause of a legacy thetvdb-agent episode: show id 73871, S02E15."""

    def test_show_tvdb_id_season_and_number(self) -> None:
        item = play(raw(FUTURAMA)).item
        assert item.kind is MediaKind.EPISODE
        assert item.show_ids == Ids(tvdb="73871")
        assert (item.season, item.number) == (2, 15)
        assert item.label() == "Futurama S02E15"

    def test_episode_has_no_own_ids(self) -> None:
        assert play(raw(FUTURAMA)).item.ids == Ids()

    def test_titles_keys_and_episode_year(self) -> None:
        item = play(raw(FUTURAMA)).item
        assert (item.title, item.show_title) == ("A Clone of My Own", "Futurama")
        assert (item.year, item.show_year) == (2000, None)
        assert (item.rating_key, item.grandparent_rating_key) == ("59852", "59800")

    def test_pause_without_duration_has_offset_but_no_progress(self) -> None:
        event = play(raw(FUTURAMA))
        assert event.action is Action.PAUSE
        assert (event.progress_pct, event.view_offset_ms, event.duration_ms) == (
            None,
            1127000,
            None,
        )

    def test_season_and_number_fall_back_to_the_guid(self) -> None:
        body = data(FUTURAMA)
        del body["Metadata"]["parentIndex"], body["Metadata"]["index"]
        item = play(body).item
        assert (item.season, item.number) == (2, 15)

    def test_the_guids_tvdb_numbering_wins_over_another_episode_order(self) -> None:
        """The library sorts in DVD order (parentIndex 3, index 4); the thetvdb GUID's 2/15 is
        what goes with its TVDB show id."""
        body = data(FUTURAMA)
        body["Metadata"].update(parentIndex=3, index=4)
        item = play(body).item
        assert item.show_ids == Ids(tvdb="73871")
        assert (item.season, item.number) == (2, 15)

    def test_the_server_scopes_the_rating_keys(self) -> None:
        item = play(raw(FUTURAMA)).item
        assert item.server == data(FUTURAMA)["Server"]["uuid"]


class TestBobsBurgersNewAgentEpisode:
    """media.pause of a new-agent episode from a shared user (user=false, owner=true)."""

    def test_guid_array_gives_episode_ids_not_show_ids(self) -> None:
        item = play(raw(BOBS_BURGERS), accounts=["melissar26"]).item
        assert item.ids == Ids(imdb="tt9413736", tmdb="1707381", tvdb="7047159")
        assert item.show_ids == Ids()

    def test_episode_fields(self) -> None:
        item = play(raw(BOBS_BURGERS), accounts=["melissar26"]).item
        assert (item.show_title, item.season, item.number) == ("Bob's Burgers", 9, 15)
        assert (item.year, item.show_year) == (2019, None)
        assert item.guid == "plex://episode/5de8dbdf18b6d6001db44001"
        assert item.grandparent_rating_key == "146560"

    def test_progress_from_view_offset_and_duration(self) -> None:
        event = play(raw(BOBS_BURGERS), accounts=["melissar26"])
        assert event.action is Action.PAUSE
        assert event.progress_pct == 47.1  # 622000 / 1320000
        assert (event.view_offset_ms, event.duration_ms) == (622000, 1320000)
        assert event.session == "lc67jl41c87g9tqmftb3n8le"


class TestEventMapping:
    """Plex event names become actions; non-playback events are ignored with a reason."""

    def test_resume_is_start(self) -> None:
        event = play(raw(SOLAR_OPPOSITES))
        assert event.action is Action.START
        assert event.progress_pct == 29.5  # 372000 / 1260000

    def test_play_is_start(self) -> None:
        body = data(SOLAR_OPPOSITES)
        body["event"] = "media.play"
        assert play(body).action is Action.START

    def test_scrobble_is_watched_without_invented_progress(self) -> None:
        event = play(raw(BIG_TROUBLE_SCROBBLE))
        assert event.action is Action.WATCHED
        assert event.progress_pct is None
        assert event.item.ids == Ids(imdb="tt0090728", tmdb="6978", tvdb="1876")

    def test_stop_at_completed_threshold_is_watched(self) -> None:
        body = data(BARRY_LYNDON)
        body["Metadata"]["viewOffset"] = 9936000  # exactly 90.0 % of 11040000
        event = play(body)
        assert (event.action, event.progress_pct) == (Action.WATCHED, 90.0)

    def test_stop_below_threshold_stays_stop(self) -> None:
        body = data(BARRY_LYNDON)
        body["Metadata"]["viewOffset"] = 9925000  # 89.9 %
        event = play(body)
        assert (event.action, event.progress_pct) == (Action.STOP, 89.9)

    def test_pause_past_threshold_stays_pause(self) -> None:
        body = data(BOBS_BURGERS)
        body["Metadata"]["viewOffset"] = 1300000
        assert play(body, accounts=["melissar26"]).action is Action.PAUSE

    def test_the_real_media_rate_capture_is_a_rating_of_the_movie(self) -> None:
        event = play(raw(BIG_TROUBLE_RATE))
        assert (event.action, event.rating, event.account) == (Action.RATE, 4, "title")
        assert event.item.kind is MediaKind.MOVIE
        assert event.item.label() == "Big Trouble in Little China (1986)"
        assert event.item.ids == Ids(imdb="tt0090728", tmdb="6978", tvdb="1876")
        assert event.occurred_at == RECEIVED

    def test_library_new_is_ignored(self) -> None:
        assert "library.new" in ignored(raw(BLUEY_LIBRARY_NEW)).reason

    @pytest.mark.parametrize(
        "name", ["library.on.deck", "admin.database.backup", "device.new", "playback.started"]
    )
    def test_other_events_are_ignored(self, name: str) -> None:
        body = data(SOLAR_OPPOSITES)
        body["event"] = name
        assert name in ignored(body).reason

    def test_non_media_event_without_metadata_is_ignored_not_an_error(self) -> None:
        body = {"event": "admin.database.backup", "user": True, "owner": True}
        assert "admin.database.backup" in ignored(body).reason


class TestMediaTypes:
    """Only movies and episodes count; music, clips and extras are ignored."""

    def test_music_track_is_ignored(self) -> None:
        result = ignored(raw(TRACK))
        assert "track" in result.reason
        assert result.account == "elan"

    def test_clip_is_ignored(self) -> None:
        body = data(BIG_TROUBLE_SCROBBLE)
        body["Metadata"]["type"] = "clip"
        assert "clip" in ignored(body).reason

    def test_trailer_subtype_is_ignored(self) -> None:
        body = data(BIG_TROUBLE_SCROBBLE)
        body["Metadata"]["subtype"] = "trailer"
        assert "trailer" in ignored(body).reason

    def test_extra_type_is_ignored(self) -> None:
        body = data(BIG_TROUBLE_SCROBBLE)
        body["Metadata"]["extraType"] = 1
        assert "extra" in ignored(body).reason

    def test_missing_type_is_ignored(self) -> None:
        body = data(BIG_TROUBLE_SCROBBLE)
        del body["Metadata"]["type"]
        assert "not a movie or episode" in ignored(body).reason


class TestAccountFilter:
    """plex.accounts, or the webhook's own user when it is empty."""

    def test_empty_accounts_accept_own_user_events(self) -> None:
        assert play(raw(BARRY_LYNDON), accounts=[]).account == "testyboi"

    def test_empty_accounts_ignore_other_users_events(self) -> None:
        result = ignored(raw(BOBS_BURGERS), accounts=[])
        assert result.account == "melissar26"
        assert "melissar26" in result.reason
        assert "user=false" in result.reason

    def test_listed_account_is_accepted_even_when_user_is_false(self) -> None:
        assert play(raw(BOBS_BURGERS), accounts=["someone", "melissar26"]).account == "melissar26"

    def test_account_match_is_case_insensitive(self) -> None:
        assert play(raw(BARRY_LYNDON), accounts=["  TestyBoi "]).account == "testyboi"

    def test_unlisted_account_is_ignored_even_when_user_is_true(self) -> None:
        result = ignored(raw(BARRY_LYNDON), accounts=["melissar26"])
        assert result.account == "testyboi"
        assert "testyboi" in result.reason
        assert "plex.accounts" in result.reason

    def test_missing_account_is_ignored_when_accounts_are_listed(self) -> None:
        body = data(BARRY_LYNDON)
        del body["Account"]
        result = ignored(body, accounts=["testyboi"])
        assert result.account is None


class TestLeniency:
    """Unknown fields, numbers as strings and odd shapes that still carry a usable play."""

    def test_numbers_as_strings_are_accepted(self) -> None:
        body = data(BOBS_BURGERS)
        meta = body["Metadata"]
        meta.update(index="15", parentIndex="9", viewOffset="622000", duration="1320000.0")
        meta.update(year="2019", ratingKey=146734, grandparentRatingKey=146560)
        body["user"] = "true"
        event = play(body)
        assert (event.item.season, event.item.number, event.item.year) == (9, 15, 2019)
        assert (event.view_offset_ms, event.duration_ms, event.progress_pct) == (
            622000,
            1320000,
            47.1,
        )
        assert (event.item.rating_key, event.item.grandparent_rating_key) == ("146734", "146560")

    def test_unknown_fields_are_ignored(self) -> None:
        body = data(BARRY_LYNDON)
        body["Brand"] = {"new": ["thing"]}
        body["Metadata"]["Image"] = [{"alt": "x", "type": "coverPoster"}]
        assert play(body).item.ids == Ids(imdb="tt0072684")

    def test_guid_array_wins_over_legacy_guid(self) -> None:
        body = data(BARRY_LYNDON)
        body["Metadata"]["Guid"] = [{"id": "imdb://tt9999999"}, {"id": "tmdb://3175"}]
        assert play(body).item.ids == Ids(imdb="tt9999999", tmdb="3175")

    def test_guid_array_of_bare_strings_is_read(self) -> None:
        body = data(BIG_TROUBLE_SCROBBLE)
        body["Metadata"]["Guid"] = ["imdb://tt0090728"]
        assert play(body).item.ids == Ids(imdb="tt0090728")

    def test_missing_player_gives_no_session(self) -> None:
        body = data(BARRY_LYNDON)
        del body["Player"]
        assert play(body).session is None

    def test_occurred_at_is_received_at_in_utc(self) -> None:
        local = RECEIVED.astimezone(timezone(timedelta(hours=-5)))
        result = plex_event(
            parse_plex_payload(raw(BARRY_LYNDON)), received_at=local, household=Household.implicit()
        )
        assert isinstance(result, PlayEvent)
        assert result.occurred_at == RECEIVED
        assert result.occurred_at.utcoffset() == timedelta(0)

    def test_naive_received_at_is_a_caller_error(self) -> None:
        payload = parse_plex_payload(raw(BARRY_LYNDON))
        with pytest.raises(ValueError, match="timezone-aware"):
            plex_event(payload, received_at=datetime(2026, 1, 1), household=Household.implicit())


class TestPayloadErrors:
    """Invalid input raises PayloadError with a one-line reason, nothing else."""

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            (b"{not json", "not JSON"),
            (b"", "not JSON"),
            (b"\xff\xfe{}", "not JSON"),
            (b"[1, 2]", "JSON object"),
            (b'"media.play"', "JSON object"),
            (b"{}", "event"),
            (b'{"event": null}', "event"),
            (b'{"event": 5}', "event"),
            (b'{"event": "media.play"}', "without Metadata"),
            (b'{"event": "media.scrobble", "Metadata": null}', "without Metadata"),
            (b'{"event": "media.play", "Metadata": "movie"}', "Metadata"),
            (b'{"event": "media.play", "Metadata": {"index": "abc"}}', "Metadata.index"),
            (b'{"event": "media.play", "Metadata": {"viewOffset": 1.5}}', "Metadata.viewOffset"),
            (b'{"event": "media.play", "Metadata": {"Guid": "imdb://tt1"}}', "Metadata.Guid"),
            (b'{"event": "media.play", "Metadata": {"Guid": [{"x": 1}]}}', "Metadata.Guid.0.id"),
            (b'{"event": "media.play", "Account": [], "Metadata": {}}', "Account"),
            (b'{"event": "media.play", "user": "maybe", "Metadata": {}}', "user"),
        ],
    )
    def test_invalid_payload(self, body: bytes, fragment: str) -> None:
        with pytest.raises(PayloadError) as caught:
            parse_plex_payload(body)
        reason = str(caught.value)
        assert fragment in reason
        assert reason.startswith("invalid Plex payload")
        assert "\n" not in reason

    def test_payload_built_without_metadata_raises_payload_error(self) -> None:
        payload = PlexPayload(event="media.stop")
        with pytest.raises(PayloadError, match="without Metadata"):
            plex_event(payload, received_at=RECEIVED, household=Household.implicit())

    def test_non_text_input_is_a_payload_error(self) -> None:
        with pytest.raises(PayloadError):
            parse_plex_payload(12345)  # type: ignore[arg-type]  # untyped caller


class TestProgressPercent:
    """viewOffset/duration in ms -> percent, clamped and rounded to 0.1."""

    @pytest.mark.parametrize(
        ("offset", "duration", "expected"),
        [
            (622000, 1320000, 47.1),
            (0, 1000, 0.0),
            (1000, 1000, 100.0),
            (5000, 1000, 100.0),
            (-5, 1000, 0.0),
            (None, 1000, None),
            (1000, None, None),
            (1000, 0, None),
        ],
    )
    def test_progress(self, offset: int | None, duration: int | None, expected: float) -> None:
        assert progress_percent(offset, duration) == expected


class TestRatings:
    """``media.rate``: Plex's 0-10 ``rating`` (half stars x 2) becomes a 1-10 rating."""

    @pytest.mark.parametrize(
        ("sent", "rating"),
        [
            (8, 8),
            (7.0, 7),
            (4.5, 5),  # half up
            (1, 1),
            (10, 10),
            (0.5, 1),
            (9.5, 10),
            (12, 10),  # clamped
            ("6", 6),  # a number sent as a string
            (None, None),  # cleared
            (0, None),
            (-1, None),
        ],
    )
    def test_the_value_is_rounded_half_up_and_clamped(
        self, sent: float | str | None, rating: int | None
    ) -> None:
        body = data(BIG_TROUBLE_RATE)
        body["rating"] = sent
        event = play(body)
        assert (event.action, event.rating) == (Action.RATE, rating)

    def test_no_rating_at_all_clears_it(self) -> None:
        body = data(BIG_TROUBLE_RATE)
        del body["rating"]
        assert play(body).rating is None

    @pytest.mark.parametrize("sent", ["nan", "inf", "eight"])
    def test_a_rating_that_is_not_a_number_is_a_payload_error(self, sent: str) -> None:
        body = data(BIG_TROUBLE_RATE)
        body["rating"] = sent
        with pytest.raises(PayloadError, match="rating"):
            event_of(body)

    def test_an_episode_rating_keeps_its_show_and_position(self) -> None:
        body = data(FUTURAMA)
        body.update(event="media.rate", rating=9.0, user=True)
        event = play(body, accounts=[body["Account"]["title"]])
        assert (event.action, event.rating) == (Action.RATE, 9)
        assert event.item.kind is MediaKind.EPISODE
        assert (event.item.show_ids, event.item.season, event.item.number) == (
            Ids(tvdb="73871"),
            2,
            15,
        )

    def test_a_show_rating_carries_the_shows_own_ids(self) -> None:
        body = data(BIG_TROUBLE_RATE)
        body["Metadata"] = {
            "type": "show",
            "title": "Futurama",
            "year": 1999,
            "guid": "plex://show/5d9c086c46115600200aa2fe",
            "Guid": [{"id": "imdb://tt0149460"}, {"id": "tmdb://615"}, {"id": "tvdb://73871"}],
            "ratingKey": "59800",
        }
        item = play(body).item
        assert (item.kind, item.label()) == (MediaKind.SHOW, "Futurama (1999)")
        assert item.ids == Ids(imdb="tt0149460", tmdb="615", tvdb="73871")

    def test_a_legacy_season_rating_carries_its_show_and_number(self) -> None:
        body = data(BIG_TROUBLE_RATE)
        body["Metadata"] = {
            "type": "season",
            "title": "Season 2",
            "index": 2,
            "parentTitle": "Futurama",
            "parentRatingKey": "59800",
            "guid": "com.plexapp.agents.thetvdb://73871/2?lang=en",
            "ratingKey": "59801",
        }
        item = play(body).item
        assert (item.kind, item.label()) == (MediaKind.SEASON, "Futurama season 2")
        assert (item.show_ids, item.season, item.grandparent_rating_key) == (
            Ids(tvdb="73871"),
            2,
            "59800",
        )

    def test_a_rated_track_is_ignored(self) -> None:
        body = data(TRACK)
        body.update(event="media.rate", rating=6)
        assert (
            "not a movie, show, season or episode"
            in ignored(body, accounts=[body["Account"]["title"]]).reason
        )
