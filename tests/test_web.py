"""HTTP intake (web.py): real Plex and Tautulli requests in, committed outbox events out.

The app from :func:`crosswatchd.web.build_app` runs on a real aiohttp test server with a real
:class:`~crosswatchd.outbox.Outbox` in ``tmp_path``; requests are built the way Plex (multipart
with a ``payload`` part and, for some events, a ``thumb`` JPEG) and Tautulli (the JSON body of
``config/tautulli-webhook.json``) send them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import orjson
import pytest

from tests.intake_support import (
    ALL_FIXTURE_ACCOUNTS,
    BARRY_LYNDON_STOP,
    BIG_TROUBLE_RATE,
    BIG_TROUBLE_SCROBBLE,
    BLUEY_LIBRARY_NEW,
    BOBS_BURGERS_PAUSE,
    FUTURAMA_PAUSE,
    NOW,
    PLEX,
    PROVIDERS,
    SECRET,
    SOLAR_OPPOSITES_RESUME,
    TEMPLATE,
    THUMB_EVENTS,
    TRACK_PLAY,
    WATCHED_EPISODE,
    WATCHED_MOVIE,
    Intake,
    MakeIntake,
    Reply,
    jpeg,
    plex,
    plex_form,
    tautulli,
)

# -- every real Plex payload ----------------------------------------------------------------

ACCEPTED = [
    (BARRY_LYNDON_STOP, "stop"),
    (FUTURAMA_PAUSE, "pause"),
    (BOBS_BURGERS_PAUSE, "pause"),
    (SOLAR_OPPOSITES_RESUME, "start"),
    (BIG_TROUBLE_SCROBBLE, "watched"),
    (BIG_TROUBLE_RATE, "rate"),
]
IGNORED = [
    (BLUEY_LIBRARY_NEW, "library.new is not a playback event"),
    (TRACK_PLAY, "'track' is not a movie or episode"),
]


def test_fixture_lists_cover_every_real_payload() -> None:
    """The two parametrized lists below name every real Plex payload exactly once."""
    named = {name for name, _ in ACCEPTED} | {name for name, _ in IGNORED}
    assert named == {path.name for path in PLEX.glob("*.json")}


class TestRealPlexMultipart:
    """Every real Plex payload posted as Plex posts it (multipart/form-data)."""

    @pytest.mark.parametrize(("name", "action"), ACCEPTED, ids=lambda v: str(v)[:40])
    async def test_playback_event_is_committed_and_answered_202(
        self, intake: Intake, name: str, action: str
    ) -> None:
        payload = plex(name)
        thumb = jpeg() if payload["event"] in THUMB_EVENTS else None
        reply = await intake.plex(plex_form(payload, thumb))
        assert reply.status == 202, reply.text
        assert reply.body["status"] == "accepted"
        events = await intake.events()
        assert [(e[0], e[1], e[2]) for e in events] == [
            ("plex", action, payload["Account"]["title"])
        ]
        assert reply.body["event_id"] == 1
        assert reply.body["duplicate"] is False
        assert reply.body["deliveries"] == len(PROVIDERS)

    @pytest.mark.parametrize(("name", "reason"), IGNORED, ids=lambda v: str(v)[:40])
    async def test_non_playback_event_is_answered_200_with_reason_and_not_stored(
        self, intake: Intake, name: str, reason: str
    ) -> None:
        payload = plex(name)
        thumb = jpeg() if payload["event"] in THUMB_EVENTS else None
        reply = await intake.plex(plex_form(payload, thumb))
        assert reply.status == 200, reply.text
        assert reply.body["status"] == "ignored"
        assert reason in reply.body["reason"]
        assert await intake.events() == []

    async def test_thumb_part_is_not_stored_anywhere(self, intake: Intake) -> None:
        """A media.play of a movie with a 300 KB thumb: the event is stored, the JPEG nowhere."""
        marker = b"THUMB-MARKER-4b1d2e"
        payload = plex(BIG_TROUBLE_SCROBBLE)
        payload["event"] = "media.play"
        reply = await intake.plex(plex_form(payload, jpeg(300_000, marker)))
        assert reply.status == 202, reply.text
        assert len(await intake.events()) == 1
        files = [p for p in intake.data_dir.rglob("*") if p.is_file()]
        assert files, "the outbox files should exist"
        assert all(marker not in p.read_bytes() for p in files)
        assert sum(p.stat().st_size for p in files) < 300_000


class TestOtherBodyForms:
    """Besides multipart, a plain JSON body and a urlencoded ``payload=`` form work."""

    async def test_plain_json_body_is_accepted(self, intake: Intake) -> None:
        reply = await intake.plex(
            orjson.dumps(plex(BIG_TROUBLE_SCROBBLE)),
            headers={"Content-Type": "application/json"},
        )
        assert reply.status == 202, reply.text
        assert [(e[0], e[1]) for e in await intake.events()] == [("plex", "watched")]

    async def test_urlencoded_payload_field_is_accepted(self, intake: Intake) -> None:
        form = {"payload": orjson.dumps(plex(BIG_TROUBLE_SCROBBLE)).decode()}
        reply = await intake.plex(form)
        assert reply.status == 202, reply.text
        assert [(e[0], e[1]) for e in await intake.events()] == [("plex", "watched")]


class TestToken:
    """A wrong or missing token is 401, checked before the body is looked at."""

    async def test_wrong_token_is_401_and_nothing_is_stored(self, intake: Intake) -> None:
        reply = await intake.plex(plex_form(plex(BIG_TROUBLE_SCROBBLE)), token="nope")
        assert reply.status == 401
        assert await intake.events() == []

    async def test_missing_token_is_401(self, intake: Intake) -> None:
        reply = await intake.plex(plex_form(plex(BIG_TROUBLE_SCROBBLE)), token=None)
        assert reply.status == 401

    async def test_malformed_body_with_wrong_token_is_401_not_400(self, intake: Intake) -> None:
        reply = await intake.plex(
            b"{not json", token="nope", headers={"Content-Type": "application/json"}
        )
        assert reply.status == 401

    async def test_tautulli_wrong_token_is_401(self, intake: Intake) -> None:
        reply = await intake.tautulli(tautulli(WATCHED_MOVIE), token="nope")
        assert reply.status == 401
        assert await intake.events() == []

    async def test_tautulli_accepts_the_token_header(self, intake: Intake) -> None:
        reply = await intake.tautulli(
            tautulli(WATCHED_MOVIE), token=None, headers={"X-Crosswatchd-Token": SECRET}
        )
        assert reply.status == 202, reply.text

    async def test_tautulli_wrong_token_header_is_401(self, intake: Intake) -> None:
        reply = await intake.tautulli(
            tautulli(WATCHED_MOVIE), token=None, headers={"X-Crosswatchd-Token": "nope"}
        )
        assert reply.status == 401


# -- malformed input ------------------------------------------------------------------------


def _one_line_400(reply: Reply) -> str:
    assert reply.status == 400, reply.text
    reason = reply.body["error"]
    assert isinstance(reason, str) and reason
    assert "\n" not in reason
    return reason


class TestMalformed:
    """Malformed input is 400 with a one-line reason, and nothing is stored."""

    async def test_invalid_json_is_400(self, intake: Intake) -> None:
        reply = await intake.plex(b'{"event": ', headers={"Content-Type": "application/json"})
        assert "not JSON" in _one_line_400(reply)
        assert await intake.events() == []

    async def test_invalid_json_in_the_payload_part_is_400(self, intake: Intake) -> None:
        reply = await intake.plex(plex_form(b'{"event": "media.play",'))
        assert "not JSON" in _one_line_400(reply)

    async def test_media_event_without_metadata_is_400(self, intake: Intake) -> None:
        payload = plex(BIG_TROUBLE_SCROBBLE)
        del payload["Metadata"]
        reply = await intake.plex(plex_form(payload))
        assert "without Metadata" in _one_line_400(reply)

    async def test_multipart_without_payload_part_is_400(self, intake: Intake) -> None:
        form = aiohttp.FormData()
        form.add_field("thumb", jpeg(5_000), filename="thumb.jpg", content_type="image/jpeg")
        reply = await intake.plex(form)
        assert "payload" in _one_line_400(reply)

    async def test_broken_multipart_framing_is_400(self, intake: Intake) -> None:
        body = b'--XyZ\r\nContent-Disposition: form-data; name=payload\r\n\r\n{"event"'
        reply = await intake.plex(
            body, headers={"Content-Type": "multipart/form-data; boundary=XyZ"}
        )
        _one_line_400(reply)
        assert await intake.events() == []

    async def test_wrong_field_type_is_400_naming_the_field(self, intake: Intake) -> None:
        payload = plex(FUTURAMA_PAUSE)
        payload["Metadata"]["index"] = "fifteen"
        reply = await intake.plex(plex_form(payload))
        assert "Metadata.index" in _one_line_400(reply)

    async def test_tautulli_wrong_field_type_is_400_naming_the_field(self, intake: Intake) -> None:
        body = tautulli(WATCHED_MOVIE)
        body["year"] = ["1975"]
        reply = await intake.tautulli(body)
        assert "year" in _one_line_400(reply)
        assert await intake.events() == []


MULTIPART = "multipart/form-data; boundary=B"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
BIG = b"99999999999999999999999"  # beyond 64-bit integers
PART = b"--B\r\nContent-Disposition: form-data; name=payload\r\n"


def garbage(route: str, content_type: str, body: bytes, name: str) -> Any:
    return pytest.param(route, content_type, body, id=f"{route}-{name}")


GARBAGE = [
    garbage("plex", JSON, b"", "empty"),
    garbage("plex", JSON, b"null", "null"),
    garbage("plex", JSON, b"[1, 2, 3]", "array"),
    garbage("plex", JSON, b'"media.play"', "string"),
    garbage("plex", JSON, b"\xff\xfe\x00garbage", "not-utf8"),
    garbage("plex", JSON, b"[" * 100_000, "deep-nesting"),
    garbage("plex", JSON, b'{"event": 5}', "event-not-a-string"),
    garbage("plex", JSON, b'{"event": "media.play", "Metadata": []}', "metadata-a-list"),
    garbage("plex", JSON, b'{"event": "media.play", "Metadata": {"duration": 1e400}}', "inf"),
    garbage("plex", JSON, b'{"event": "media.stop", "Metadata": {"duration": NaN}}', "nan"),
    garbage(
        "plex",
        JSON,
        b'{"event": "media.stop", "Account": {"title": "testyboi"}, "Metadata":'
        b' {"type": "movie", "viewOffset": ' + BIG + b', "duration": -1}}',
        "huge-viewOffset",
    ),
    garbage(
        "plex",
        JSON,
        b'{"event": "media.pause", "Account": {"title": "testyboi"}, "Metadata":'
        b' {"type": "episode", "parentIndex": ' + BIG + b', "index": 1}}',
        "huge-parentIndex",
    ),
    garbage(
        "plex",
        JSON,
        b'{"event": "media.play", "Account": {"title": "testyboi"}, "Metadata":'
        b' {"type": "movie", "title": "X", "year": "' + BIG + b'"}}',
        "huge-year-string",
    ),
    garbage("plex", "text/plain", b"hello", "text-plain"),
    garbage("plex", "application/octet-stream", b"\x00\x01\x02", "octet-stream"),
    garbage("plex", "multipart/form-data", b"no boundary given", "multipart-no-boundary"),
    garbage("plex", MULTIPART, b"", "multipart-empty"),
    garbage("plex", MULTIPART, b"--B--\r\n", "multipart-no-parts"),
    garbage("plex", MULTIPART, b"not a multipart body at all", "multipart-junk"),
    garbage("plex", MULTIPART, b"--B\r\n\r\n{}\r\n--B--\r\n", "multipart-unnamed-part"),
    garbage("plex", MULTIPART, PART + b"\r\n\xff\xfe", "multipart-unterminated"),
    garbage(
        "plex",
        MULTIPART,
        PART + b"Content-Transfer-Encoding: base64\r\n\r\n!!!\r\n--B--\r\n",
        "multipart-bad-base64",
    ),
    garbage(
        "plex",
        MULTIPART,
        PART + b"Content-Encoding: gzip\r\n\r\nnot gzip\r\n--B--\r\n",
        "multipart-bad-gzip",
    ),
    garbage("plex", "multipart/mixed; boundary=B", b"--B\r\n\r\nx\r\n--B--\r\n", "mixed"),
    garbage("plex", FORM, b"", "form-empty"),
    garbage("plex", FORM, b"payload=%ff%fe", "form-not-utf8"),
    garbage("plex", FORM, b"payload=%7B", "form-bad-json"),
    garbage("plex", FORM, b"other=1", "form-no-payload"),
    garbage("plex", "application/json; charset=utf-16", b'{"event": "media.play"}', "utf16"),
    garbage("tautulli", JSON, b"", "empty"),
    garbage("tautulli", JSON, b"{", "bad-json"),
    garbage("tautulli", JSON, b"[]", "array"),
    garbage("tautulli", JSON, b'{"action": "watched"}', "no-username"),
    garbage(
        "tautulli",
        JSON,
        b'{"action": "watched", "username": "testyboi", "media_type": "movie",'
        b' "unixtime": "' + BIG + b'"}',
        "huge-unixtime",
    ),
    garbage("tautulli", JSON, b'{"action": {"x": 1}}', "action-an-object"),
    garbage("tautulli", JSON, b'{"action": "watched", "username": true}', "username-a-bool"),
    garbage("tautulli", JSON, b'{"season_num": "1e999"}', "inf"),
    garbage(
        "tautulli",
        JSON,
        b'{"action": "watched", "username": "testyboi", "media_type": "movie", "title": "X",'
        b' "view_offset": "' + BIG + b'", "duration_ms": "1"}',
        "huge-view_offset",
    ),
    garbage(
        "tautulli",
        JSON,
        b'{"action": "watched", "username": "testyboi", "media_type": "episode",'
        b' "show_name": "S", "season_num": "' + BIG + b'", "episode_num": "1"}',
        "huge-season_num",
    ),
    garbage("tautulli", "text/plain", b"\xff" * 100, "not-utf8"),
    garbage("tautulli", MULTIPART, b"--B\r\n\r\n{}\r\n--B--\r\n", "multipart"),
]


@pytest.mark.parametrize(("route", "content_type", "body"), GARBAGE)
async def test_garbage_input_never_gets_a_5xx(
    intake: Intake, route: str, content_type: str, body: bytes
) -> None:
    resp = await intake.client.post(
        f"/webhook/{route}",
        params={"token": SECRET},
        data=body,
        headers={"Content-Type": content_type},
    )
    assert resp.status < 500, await resp.text()


async def test_a_bad_webhook_does_not_fail_good_ones_arriving_with_it(intake: Intake) -> None:
    """Webhooks arriving together share a commit; one with an absurd number must not turn
    the others into errors (Plex does not resend a webhook)."""
    bad = (
        b'{"event": "media.stop", "Account": {"title": "testyboi"}, "Metadata":'
        b' {"type": "movie", "viewOffset": ' + BIG + b', "duration": 1}}'
    )
    headers = {"Content-Type": JSON}
    goods = [plex(BIG_TROUBLE_SCROBBLE), plex(FUTURAMA_PAUSE), plex(SOLAR_OPPOSITES_RESUME)]
    replies = await asyncio.gather(
        *(intake.plex(orjson.dumps(g), headers=headers) for g in goods[:2]),
        intake.plex(bad, headers=headers),
        intake.plex(orjson.dumps(goods[2]), headers=headers),
    )
    assert [r.status for r in (*replies[:2], replies[3])] == [202, 202, 202]
    assert len(await intake.events()) == 3


# -- size limit -----------------------------------------------------------------------------


class TestBodyLimit:
    """Above ``http.max_body_bytes`` the answer is 413 and nothing is stored."""

    @pytest.fixture
    async def small(self, make_intake: MakeIntake) -> Intake:
        return await make_intake(
            http={"max_body_bytes": 2048},
            plex={"accounts": ALL_FIXTURE_ACCOUNTS},
            tautulli={"users": ["testyboi"]},
        )

    @staticmethod
    def padded(payload: dict[str, Any], size: int = 4096) -> dict[str, Any]:
        payload["padding"] = "x" * size
        return payload

    async def test_payload_part_over_the_limit_is_413(self, small: Intake) -> None:
        reply = await small.plex(plex_form(self.padded(plex(BIG_TROUBLE_SCROBBLE))))
        assert reply.status == 413, reply.text
        assert await small.events() == []

    async def test_json_body_over_the_limit_is_413(self, small: Intake) -> None:
        reply = await small.plex(
            orjson.dumps(self.padded(plex(BIG_TROUBLE_SCROBBLE))),
            headers={"Content-Type": "application/json"},
        )
        assert reply.status == 413, reply.text
        assert await small.events() == []

    async def test_urlencoded_payload_over_the_limit_is_413(self, small: Intake) -> None:
        form = {"payload": orjson.dumps(self.padded(plex(BIG_TROUBLE_SCROBBLE))).decode()}
        reply = await small.plex(form)
        assert reply.status == 413, reply.text
        assert await small.events() == []

    async def test_chunked_body_over_the_request_cap_is_413_not_400(self, small: Intake) -> None:
        """Without a Content-Length the size is only known while reading; still 413."""

        async def chunks() -> AsyncIterator[bytes]:
            yield b"payload="
            for _ in range(10):
                yield b"x" * 10_000

        reply = await small.plex(chunks(), headers={"Content-Type": FORM})
        assert reply.status == 413, reply.text

    async def test_tautulli_body_over_the_limit_is_413(self, small: Intake) -> None:
        reply = await small.tautulli(self.padded(tautulli(WATCHED_MOVIE)))
        assert reply.status == 413, reply.text
        assert await small.events() == []

    async def test_payload_under_the_limit_with_a_larger_thumb_is_accepted(
        self, small: Intake
    ) -> None:
        """The thumb part is not counted against the payload limit."""
        payload = {
            "event": "media.play",
            "user": True,
            "Account": {"title": "testyboi"},
            "Metadata": {
                "type": "movie",
                "title": "Barry Lyndon",
                "year": 1975,
                "guid": "com.plexapp.agents.imdb://tt0072684?lang=en",
                "ratingKey": "75580",
                "duration": 11040000,
            },
        }
        assert len(orjson.dumps(payload)) < 2048
        reply = await small.plex(plex_form(payload, jpeg(8_000)))
        assert reply.status == 202, reply.text


# -- account filter -------------------------------------------------------------------------


class TestPlexAccounts:
    """``plex.accounts`` allowlist (case-insensitive), else only ``"user": true`` events."""

    async def test_allowlist_matches_account_title_case_insensitively(
        self, make_intake: MakeIntake
    ) -> None:
        intake = await make_intake(plex={"accounts": ["TestyBoi"]})
        reply = await intake.plex(plex_form(plex(FUTURAMA_PAUSE)))  # Account.title "testyboi"
        assert reply.status == 202, reply.text

    async def test_account_not_in_allowlist_is_ignored_and_remembered(
        self, make_intake: MakeIntake
    ) -> None:
        intake = await make_intake(plex={"accounts": ["someone-else"]})
        reply = await intake.plex(plex_form(plex(FUTURAMA_PAUSE)))
        assert reply.status == 200, reply.text
        assert "plex.accounts" in reply.body["reason"]
        assert await intake.events() == []
        assert await intake.outbox.seen_accounts("plex") == ["testyboi"]

    async def test_empty_allowlist_accepts_the_webhooks_own_user(
        self, make_intake: MakeIntake
    ) -> None:
        intake = await make_intake()
        reply = await intake.plex(plex_form(plex(FUTURAMA_PAUSE)))  # "user": true
        assert reply.status == 202, reply.text

    async def test_empty_allowlist_ignores_other_users_and_remembers_them(
        self, make_intake: MakeIntake
    ) -> None:
        intake = await make_intake()
        reply = await intake.plex(plex_form(plex(BOBS_BURGERS_PAUSE)))  # "user": false
        assert reply.status == 200, reply.text
        assert "user=false" in reply.body["reason"]
        assert await intake.events() == []
        assert await intake.outbox.seen_accounts("plex") == ["melissar26"]


# -- dedupe ---------------------------------------------------------------------------------


async def test_scrobble_then_stop_past_90_percent_is_one_play(intake: Intake) -> None:
    """Plex sends media.scrobble at 90 % and media.stop at the end: one play per target."""
    first = await intake.plex(plex_form(plex(BIG_TROUBLE_SCROBBLE)))
    stop = plex(BIG_TROUBLE_SCROBBLE)
    stop["event"] = "media.stop"
    stop["Metadata"]["viewOffset"] = 5_500_000  # of 5,940,000 ms: 92.6 %
    second = await intake.plex(plex_form(stop))
    assert (first.status, second.status) == (202, 202)
    assert first.body["duplicate"] is False
    assert second.body["duplicate"] is True
    assert second.body["deliveries"] == 0
    assert sorted(p for p, _ in await intake.plays()) == sorted(PROVIDERS)


# -- Tautulli -------------------------------------------------------------------------------


class TestTautulli:
    """Tautulli's Webhook agent body (all strings) for ``watched`` plays."""

    def test_fixtures_have_exactly_the_template_keys_and_string_values(self) -> None:
        template = json.loads(TEMPLATE.read_bytes())
        for name in (WATCHED_MOVIE, WATCHED_EPISODE):
            body = tautulli(name)
            assert set(body) == set(template)
            assert all(isinstance(v, str) for v in body.values())

    async def test_watched_movie_is_committed_as_a_play(self, intake: Intake) -> None:
        reply = await intake.tautulli(tautulli(WATCHED_MOVIE))
        assert reply.status == 202, reply.text
        (event,) = await intake.events()
        assert event[:3] == ("tautulli", "watched", "testyboi")
        item = json.loads(event[4])
        assert item["ids"] == {"imdb": "tt0072684", "tmdb": "3175"}
        assert sorted(p for p, _ in await intake.plays()) == sorted(PROVIDERS)

    async def test_watched_episode_stores_the_show_ids_as_show_ids(self, intake: Intake) -> None:
        reply = await intake.tautulli(tautulli(WATCHED_EPISODE))
        assert reply.status == 202, reply.text
        (event,) = await intake.events()
        item = json.loads(event[4])
        assert item["show_ids"] == {"imdb": "tt0149460", "tmdb": "615", "tvdb": "73871"}
        assert (item["season"], item["number"]) == (2, 15)
        assert event[3] == "Futurama S02E15"

    async def test_empty_users_is_200_ignored_and_username_remembered(
        self, make_intake: MakeIntake
    ) -> None:
        intake = await make_intake()
        reply = await intake.tautulli(tautulli(WATCHED_MOVIE))
        assert reply.status == 200, reply.text
        assert reply.body["status"] == "ignored"
        assert "tautulli.users is empty" in reply.body["reason"]
        assert await intake.events() == []
        assert await intake.outbox.seen_accounts("tautulli") == ["testyboi"]

    async def test_unsubstituted_placeholders_count_as_missing(self, intake: Intake) -> None:
        body = tautulli(WATCHED_MOVIE)
        body.update(imdb_id="{imdb_id}", guid="{guid}", unixtime="{unixtime}")
        reply = await intake.tautulli(body)
        assert reply.status == 202, reply.text
        (event,) = await intake.events()
        item = json.loads(event[4])
        assert item["ids"] == {"tmdb": "3175"}
        assert item["guid"] is None
        (watched_at,) = await intake.outbox.fetch_all(
            "SELECT DISTINCT watched_at FROM deliveries WHERE kind = 'play'"
        )
        assert watched_at[0] == NOW.timestamp()  # no unixtime: the receipt time


async def test_same_play_from_plex_and_tautulli_is_delivered_once(intake: Intake) -> None:
    """Plex scrobbles an episode (Guid[] episode ids, ratingKey R); minutes later Tautulli
    reports ``watched`` for rating_key R with the show's ids: one play per target."""
    scrobble = plex(SOLAR_OPPOSITES_RESUME)
    scrobble["event"] = "media.scrobble"
    rating_key = scrobble["Metadata"]["ratingKey"]
    first = await intake.plex(plex_form(scrobble))
    assert first.status == 202, first.text

    body = json.loads(TEMPLATE.read_bytes())
    body.update(
        action="watched",
        unixtime=str(int((NOW + timedelta(minutes=4)).timestamp())),
        username="testyboi",
        user_id="1",
        media_type="episode",
        title="Solar Opposites - The Quantum Ring",
        show_name="Solar Opposites",
        season_num="1",
        episode_num="3",
        year="2020",
        rating_key=rating_key,
        grandparent_rating_key=scrobble["Metadata"]["grandparentRatingKey"],
        guid=scrobble["Metadata"]["guid"],
        imdb_id="tt8910922",
        themoviedb_id="93758",
        thetvdb_id="375892",
        progress_percent="95",
        view_offset="1197000",
        duration_ms="1260000",
        session_key="7",
        user_rating="",
    )
    second = await intake.tautulli(body)
    assert second.status == 202, second.text
    assert second.body["duplicate"] is True
    plays = await intake.plays()
    assert sorted(p for p, _ in plays) == sorted(PROVIDERS)
    assert {event_id for _, event_id in plays} == {first.body["event_id"]}


async def test_healthz_is_200(intake: Intake) -> None:
    resp = await intake.client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}
