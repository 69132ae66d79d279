"""Hostile and malformed input at the HTTP intake: always a 4xx with a one-line reason, never a
5xx, a traceback or a secret in the log; and replies that say what an event became.

Requests are written byte by byte on a raw socket where an HTTP client library would refuse to
send them (bad header bytes, broken multipart framing).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from structlog.testing import capture_logs

from crosswatchd.logs import configure_logging
from tests.intake_support import (
    BARRY_LYNDON_STOP,
    BIG_TROUBLE_SCROBBLE,
    FUTURAMA_PAUSE,
    NOW,
    SECRET,
    TEMPLATE,
    WATCHED_MOVIE,
    Intake,
    plex,
    plex_form,
    tautulli,
)


async def raw(intake: Intake, request: bytes, *, read_timeout_s: float = 5.0) -> tuple[int, Any]:
    """Send *request* as it is; return the status and the JSON body (or the text)."""
    server = intake.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), read_timeout_s)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await asyncio.wait_for(reader.readexactly(length), read_timeout_s)
    finally:
        writer.close()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def post(path: str, headers: dict[str, str] | list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A raw POST with *headers* (bytes pairs are written as they are) and *body*."""
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: test", b"Connection: close"]
    pairs = headers.items() if isinstance(headers, dict) else headers
    for name, value in pairs:
        lines.append(
            (name if isinstance(name, bytes) else name.encode())
            + b": "
            + (value if isinstance(value, bytes) else value.encode())
        )
    lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def multipart(part_headers: list[bytes], content: bytes) -> bytes:
    return (
        b"--B\r\n"
        + b"".join(h + b"\r\n" for h in part_headers)
        + b"\r\n"
        + content
        + b"\r\n--B--\r\n"
    )


PLEX_URL = f"/webhook/plex?token={SECRET}"
TAUTULLI_URL = f"/webhook/tautulli?token={SECRET}"
MULTIPART = {"Content-Type": "multipart/form-data; boundary=B"}
SCROBBLE_JSON = orjson.dumps(plex(BIG_TROUBLE_SCROBBLE))


def one_line_4xx(status: int, body: Any) -> str:
    assert 400 <= status < 500, (status, body)
    assert isinstance(body, dict), body
    reason = body["error"]
    assert isinstance(reason, str) and reason and "\n" not in reason
    return reason


class TestBadBytesAreTheClientsFault:
    """Each of these got a 503 and an ERROR traceback before: now a 4xx and no error line."""

    async def test_a_non_ascii_token_header_is_401(self, intake: Intake) -> None:
        request = post(
            "/webhook/tautulli",
            [(b"X-Crosswatchd-Token", b"\x80"), (b"Content-Type", b"application/json")],
            b"{}",
        )
        with capture_logs() as logs:
            status, body = await raw(intake, request)
        assert status == 401, body
        assert not [e for e in logs if e["log_level"] in ("error", "critical")]

    @pytest.mark.parametrize(
        "part_headers",
        [
            [b": ", b'Content-Disposition: form-data; name="payload"'],
            [b'Content-Disposition: form-data; name="payload"', b"na me: x"],
            [b'Content-Disposition: form-data; name="payload"', b"X-Long: " + b"a" * 9000],
            [b'Content-Disposition: form-data; name="payload"']
            + [f"X-H{i}: v".encode() for i in range(200)],
        ],
        ids=["empty-name", "space-in-name", "line-too-long", "too-many-headers"],
    )
    async def test_a_malformed_part_header_is_400(
        self, intake: Intake, part_headers: list[bytes]
    ) -> None:
        with capture_logs() as logs:
            status, body = await raw(
                intake, post(PLEX_URL, MULTIPART, multipart(part_headers, SCROBBLE_JSON))
            )
        one_line_4xx(status, body)
        assert status == 400
        assert not [e for e in logs if e["log_level"] in ("error", "critical")]
        assert await intake.events() == []

    async def test_a_form_body_with_an_unknown_charset_is_400(self, intake: Intake) -> None:
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=bogus"}
        status, body = await raw(intake, post(PLEX_URL, headers, b"payload=%7B%7D"))
        assert "charset" in one_line_4xx(status, body).lower()
        assert status == 400

    async def test_a_body_declared_gzip_that_is_not_is_400(self, intake: Intake) -> None:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        status, body = await raw(intake, post(PLEX_URL, headers, SCROBBLE_JSON))
        one_line_4xx(status, body)
        assert status == 400

    async def test_a_real_gzip_body_is_accepted(self, intake: Intake) -> None:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        status, body = await raw(intake, post(PLEX_URL, headers, gzip.compress(SCROBBLE_JSON)))
        assert status == 202, body

    async def test_a_client_gone_mid_body_logs_no_error(self, intake: Intake) -> None:
        server = intake.client.server
        with capture_logs() as logs:
            _, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(
                post(PLEX_URL, {"Content-Type": "application/json"}, b"")[:-4].replace(
                    b"Content-Length: 0", b"Content-Length: 5000"
                )
                + b"\r\n\r\n{"
            )
            await writer.drain()
            writer.close()
            await asyncio.sleep(0.3)
        assert not [e for e in logs if e["log_level"] in ("error", "critical")], logs
        assert await intake.events() == []


class TestNothingIdentifiesTheItem:
    """A webhook that names no item at all is malformed, not a play to park forever."""

    async def test_plex_metadata_without_any_identity_is_400(self, intake: Intake) -> None:
        payload = plex(BIG_TROUBLE_SCROBBLE)
        payload["Metadata"] = {"type": "movie", "viewOffset": 100, "duration": 100}
        reply = await intake.plex(plex_form(payload))
        assert reply.status == 400, reply.text
        reason = reply.body["error"]
        assert "guid" in reason and "ratingKey" in reason and "title" in reason
        assert await intake.events() == []

    async def test_plex_metadata_with_only_a_title_is_accepted(self, intake: Intake) -> None:
        payload = plex(BIG_TROUBLE_SCROBBLE)
        payload["Metadata"] = {"type": "movie", "title": "Home Video"}
        reply = await intake.plex(plex_form(payload))
        assert reply.status == 202, reply.text

    async def test_tautulli_body_of_unsubstituted_placeholders_is_400(self, intake: Intake) -> None:
        body = json.loads(TEMPLATE.read_bytes())
        body.update(action="watched", username="testyboi", media_type="movie")
        reply = await intake.tautulli(body)
        assert reply.status == 400, reply.text
        assert "template" in reply.body["error"]
        assert await intake.events() == []

    async def test_an_empty_plex_metadata_says_the_type_is_missing(self, intake: Intake) -> None:
        payload = plex(BIG_TROUBLE_SCROBBLE)
        payload["Metadata"] = {}
        reply = await intake.plex(plex_form(payload))
        assert reply.status in (200, 400), reply.text
        text = reply.body.get("reason") or reply.body.get("error")
        assert "None" not in text
        assert "type" in text and "missing" in text


class TestRepliesAreJson:
    async def test_404_is_json(self, intake: Intake) -> None:
        resp = await intake.client.get("/nothing-here")
        assert resp.status == 404
        body = await resp.json()
        assert body["error"]

    @pytest.mark.parametrize("route", ["plex", "tautulli"])
    async def test_get_on_a_webhook_url_says_it_takes_post(
        self, intake: Intake, route: str
    ) -> None:
        resp = await intake.client.get(f"/webhook/{route}")
        assert resp.status == 405
        body = await resp.json()
        assert "POST" in body["error"]
        assert resp.headers["Allow"] == "POST"


class TestRepliesSayWhatTheEventBecame:
    async def test_a_completed_play_is_kind_play(self, intake: Intake) -> None:
        with capture_logs() as logs:
            reply = await intake.plex(plex_form(plex(BIG_TROUBLE_SCROBBLE)))
        assert reply.status == 202
        assert reply.body["kind"] == "play"
        (accepted,) = [e for e in logs if e["event"] == "webhook.accepted"]
        assert accepted["kind"] == "play"

    async def test_a_pause_is_kind_live(self, intake: Intake) -> None:
        reply = await intake.plex(plex_form(plex(FUTURAMA_PAUSE)))
        assert (reply.status, reply.body["kind"]) == (202, "live")

    async def test_an_ignored_event_says_why(self, intake: Intake) -> None:
        payload = plex(BIG_TROUBLE_SCROBBLE)
        payload["event"] = "library.new"
        reply = await intake.plex(plex_form(payload))
        assert reply.status == 200
        assert reply.body["status"] == "ignored"
        assert reply.body["kind"] == "ignored"
        assert "not a playback event" in reply.body["reason"]


async def test_the_token_header_works_on_the_plex_endpoint_too(intake: Intake) -> None:
    reply = await intake.plex(
        plex_form(plex(BIG_TROUBLE_SCROBBLE)), token=None, headers={"X-Crosswatchd-Token": SECRET}
    )
    assert reply.status == 202, reply.text


async def test_a_flood_of_bad_tokens_makes_few_log_lines(intake: Intake) -> None:
    with capture_logs() as logs:
        for _ in range(200):
            reply = await intake.plex(plex_form(plex(BIG_TROUBLE_SCROBBLE)), token="wrong")
            assert reply.status == 401
    rejected = [e for e in logs if e["event"] == "webhook.rejected"]
    assert 1 <= len(rejected) <= 5, len(rejected)


def test_aiohttp_messages_about_a_clients_bad_request_are_one_quiet_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """aiohttp logs a bad request line as an ERROR with the raw line (secret included) and a
    traceback; through our logging it is one ``http.bad_request`` line without either."""
    from aiohttp import http_exceptions

    configure_logging("info", json=True, secrets=["the-webhook-secret-0123"])
    try:
        try:
            raise http_exceptions.LineTooLong(
                "/webhook/plex?token=the-webhook-secret-0123&x=aaaa", "8190"
            )
        except http_exceptions.LineTooLong:
            for _ in range(3):
                logging.getLogger("aiohttp.server").exception(
                    "Error handling request from 127.0.0.1"
                )
        logging.getLogger("asyncio").error("boom with token=the-webhook-secret-0123 inside")
        out = capsys.readouterr().out
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert "the-webhook-secret-0123" not in out
    assert "Traceback" not in out
    bad = [line for line in lines if line["event"] == "http.bad_request"]
    assert len(bad) == 1
    assert bad[0]["error"] == "LineTooLong"
    assert any("boom" in line["event"] for line in lines)


@pytest.mark.parametrize("route", ["plex", "tautulli"])
async def test_garbage_bytes_never_get_a_5xx_on_a_raw_socket(intake: Intake, route: str) -> None:
    for junk in (b"\xff\xfe\x00", b"{" * 10, b'{"event": "media.scrobble", "Metadata": 5}'):
        for ctype in ("application/json", "multipart/form-data; boundary=B", "text/x"):
            status, _ = await raw(
                intake, post(f"/webhook/{route}?token={SECRET}", {"Content-Type": ctype}, junk)
            )
            assert status < 500


async def test_aiohttp_client_is_usable_after_bad_requests(intake: Intake) -> None:
    await raw(intake, post(PLEX_URL, MULTIPART, b"junk"))
    resp = await intake.client.get("/healthz")
    assert resp.status == 200
    assert isinstance(await resp.json(), dict)
    assert aiohttp.__version__
    assert BARRY_LYNDON_STOP and WATCHED_MOVIE and tautulli


class TestTwoPlaysAreNeverOne:
    """ratingKeys are unique per Plex server only: plays on two servers are two plays."""

    @staticmethod
    def _bare(rating_key: str, title: str, server: str, guid: str) -> dict[str, Any]:
        payload = plex(BIG_TROUBLE_SCROBBLE)
        payload["Server"] = {"title": server, "uuid": server}
        payload["owner"] = server == "server-a"
        meta = payload["Metadata"]
        meta.update(ratingKey=rating_key, title=title, guid=guid, key=f"/x/{rating_key}")
        meta["Guid"] = []
        return payload

    async def test_same_rating_key_on_two_servers_is_two_plays(self, intake: Intake) -> None:
        one_piece = self._bare("31444", "One Piece Film", "server-a", "plex://movie/aaaa")
        october_sky = self._bare("31444", "October Sky", "server-b", "plex://movie/bbbb")
        first = await intake.plex(plex_form(one_piece))
        second = await intake.plex(plex_form(october_sky))
        assert (first.status, second.status) == (202, 202)
        assert second.body["duplicate"] is False
        assert len(await intake.plays()) == 2 * 2  # two plays, two targets each

    async def test_same_rating_key_on_one_server_is_still_one_play(self, intake: Intake) -> None:
        first = await intake.plex(plex_form(self._bare("5", "X", "server-a", "plex://movie/cc")))
        again = await intake.plex(plex_form(self._bare("5", "X", "server-a", "plex://movie/cc")))
        assert again.body["duplicate"] is True
        assert first.status == 202

    async def test_tautulli_naming_the_same_server_dedupes_with_plex(self, intake: Intake) -> None:
        scrobble = self._bare("77", "Home Movie", "server-z", "plex://movie/dd")
        scrobble["owner"] = False  # nothing to learn from: the template says the server
        assert (await intake.plex(plex_form(scrobble))).status == 202
        body = tautulli(WATCHED_MOVIE)
        body.update(
            rating_key="77",
            imdb_id="",
            themoviedb_id="",
            thetvdb_id="",
            guid="plex://movie/dd",
            title="Home Movie",
            server_machine_id="server-z",
            unixtime=str(int(NOW.timestamp()) + 120),
        )
        reply = await intake.tautulli(body)
        assert reply.status == 202, reply.text
        assert reply.body["duplicate"] is True
