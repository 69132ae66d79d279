"""The intake under test: the app of :func:`crosswatchd.web.build_app` on a real aiohttp test
server with a real :class:`~crosswatchd.outbox.Outbox`, and requests built the way Plex and
Tautulli send them. The fixtures ``make_intake`` and ``intake`` are registered in conftest.py."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from crosswatchd.config import Settings
from crosswatchd.outbox import Outbox
from crosswatchd.web import build_app

ROOT = Path(__file__).parent.parent
PLEX = Path(__file__).parent / "fixtures" / "plex"
TAUTULLI = Path(__file__).parent / "fixtures" / "tautulli"
TEMPLATE = ROOT / "config" / "tautulli-webhook.json"

SECRET = "s3cret-webhook-token"
NOW = datetime(2026, 11, 21, 10, 54, 52, tzinfo=UTC)
PROVIDERS = ["trakt", "simkl"]

BARRY_LYNDON_STOP = "movie_media.stop_legacy-agent_imdb_barry-lyndon.json"
FUTURAMA_PAUSE = "episode_media.pause_legacy-agent_thetvdb_futurama.json"
BOBS_BURGERS_PAUSE = "episode_media.pause_plex-agent_bobs-burgers_s09e15.json"
SOLAR_OPPOSITES_RESUME = "episode_media.resume_plex-agent_solar-opposites_s01e03.json"
BIG_TROUBLE_SCROBBLE = "movie_media.scrobble_plex-agent_big-trouble-in-little-china.json"
BIG_TROUBLE_RATE = "movie_media.rate_plex-agent_big-trouble-in-little-china.json"
BLUEY_LIBRARY_NEW = "episode_library.new_plex-agent_bluey_s02e50.json"
TRACK_PLAY = "official-doc-example_media.play_track.json"

WATCHED_MOVIE = "watched_movie_barry-lyndon.json"
WATCHED_EPISODE = "watched_episode_futurama_s02e15.json"

#: Every Plex account title in the fixtures, so the account filter lets all of them through.
ALL_FIXTURE_ACCOUNTS = ["testyboi", "melissar26", "user_redacted", "title", "elan", "Aquarion"]
#: Plex sends a JPEG ``thumb`` part with these events (Plex support article "Webhooks").
THUMB_EVENTS = {"media.play", "media.rate", "library.new"}


def plex(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((PLEX / name).read_bytes())
    return copy.deepcopy(loaded)


def tautulli(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((TAUTULLI / name).read_bytes())
    return loaded


def jpeg(size: int = 300_000, marker: bytes = b"THUMB-MARKER-7f3a9c") -> bytes:
    """A JPEG-framed blob of *size* bytes carrying *marker* (to look for it on disk later)."""
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + marker
    body = bytes((i * 7 + 13) % 251 for i in range(size - len(head) - 2))
    return head + body + b"\xff\xd9"


def plex_form(payload: dict[str, Any] | bytes, thumb: bytes | None = None) -> aiohttp.FormData:
    """The multipart body Plex POSTs: a ``payload`` JSON part and maybe a ``thumb`` JPEG."""
    text = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    form = aiohttp.FormData()
    form.add_field("payload", text.decode(), content_type="application/json")
    if thumb is not None:
        form.add_field("thumb", thumb, filename="thumb.jpg", content_type="image/jpeg")
    return form


@dataclass
class Intake:
    """A running intake app, its client and its outbox."""

    client: TestClient[aiohttp.web.Request, aiohttp.web.Application]
    outbox: Outbox
    data_dir: Path

    async def plex(self, data: Any, *, token: str | None = SECRET, **kw: Any) -> Reply:
        params = {"token": token} if token is not None else {}
        resp = await self.client.post("/webhook/plex", params=params, data=data, **kw)
        return await Reply.of(resp)

    async def tautulli(
        self, body: Any, *, token: str | None = SECRET, headers: dict[str, str] | None = None
    ) -> Reply:
        params = {"token": token} if token is not None else {}
        data = body if isinstance(body, bytes | str) else orjson.dumps(body)
        resp = await self.client.post(
            "/webhook/tautulli",
            params=params,
            data=data,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        return await Reply.of(resp)

    async def events(self) -> list[tuple[Any, ...]]:
        return await self.outbox.fetch_all(
            "SELECT source, action, account, label, item FROM events ORDER BY id"
        )

    async def plays(self) -> list[tuple[Any, ...]]:
        return await self.outbox.fetch_all(
            "SELECT provider, event_id FROM deliveries WHERE kind = 'play' ORDER BY id"
        )


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    text: str

    @classmethod
    async def of(cls, resp: aiohttp.ClientResponse) -> Reply:
        text = await resp.text()
        try:
            body = json.loads(text)
        except ValueError:
            body = {}
        return cls(resp.status, body if isinstance(body, dict) else {}, text)


MakeIntake = Callable[..., Awaitable[Intake]]


@pytest.fixture
async def make_intake(tmp_path: Path) -> AsyncIterator[MakeIntake]:
    """Build and serve an intake app; ``make_intake(plex={...}, http={...}, ...)``."""
    opened: list[tuple[TestClient[Any, Any], Outbox]] = []

    async def make(**sections: Any) -> Intake:
        data_dir = tmp_path / f"data{len(opened)}"
        settings = Settings(data_dir=data_dir, **sections)
        outbox = await Outbox.open(
            data_dir / "outbox.sqlite3",
            providers=PROVIDERS,
            dedupe_window_s=settings.delivery.dedupe_window_s,
        )
        app = build_app(settings, outbox, SECRET, now=lambda: NOW)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        opened.append((client, outbox))
        return Intake(client, outbox, data_dir)

    yield make
    for client, outbox in opened:
        await client.close()
        await outbox.close()


@pytest.fixture
async def intake(make_intake: MakeIntake) -> Intake:
    """Defaults, except every fixture account is allowed and Tautulli user testyboi is."""
    return await make_intake(
        plex={"accounts": ALL_FIXTURE_ACCOUNTS}, tautulli={"users": ["testyboi"]}
    )
