"""The Plex server a Tautulli webhook is about, when the webhook does not say: learned from
Tautulli's ``get_server_identity`` at start (and from a Plex owner webhook), so ratingKeys of
Tautulli plays are scoped by server like Plex's and one play reported by both is one play."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crosswatchd.app import learn_server
from crosswatchd.sources.tautulli_api import TautulliClient
from crosswatchd.tokens import TokenStore
from crosswatchd.web import ServerHint
from tests.e2e_support import Daemon, free_port, wait_for, write_config
from tests.fakes.tautulli import FakeTautulli
from tests.fakes.trakt import FakeTrakt
from tests.test_e2e_households import post_tautulli, tautulli_watched

MACHINE = "ds48g4r354a8v9byrrtr697g3g79w"  # FakeTautulli's default


async def test_tautulli_down_at_first_is_asked_again_until_it_answers() -> None:
    async with FakeTautulli() as fake, aiohttp.ClientSession() as session:
        fake.fail_next(503, count=2)
        client = TautulliClient(session=session, url=fake.url, api_key="key")
        hint, stop = ServerHint(), asyncio.Event()
        await asyncio.wait_for(learn_server(client, hint, stop, waits_s=(0.01,)), 5)
    assert hint.machine_id == MACHINE
    assert [r.get("cmd") for r in fake.requests].count("get_server_identity") == 3


async def test_a_server_already_known_is_not_asked_about() -> None:
    async with FakeTautulli() as fake, aiohttp.ClientSession() as session:
        client = TautulliClient(session=session, url=fake.url, api_key="key")
        hint = ServerHint(machine_id="from-a-plex-owner-webhook")
        await learn_server(client, hint, asyncio.Event())
    assert hint.machine_id == "from-a-plex-owner-webhook"
    assert fake.requests == []


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[Daemon, Path]]:
    async with FakeTautulli() as tautulli, FakeTrakt() as trakt:
        data_dir = tmp_path / "data"
        TokenStore(data_dir, "trakt").save(trakt.issue_token())
        port = free_port()
        config = write_config(
            tmp_path / "crosswatchd.toml", data_dir=data_dir, port=port, trakt=trakt
        )
        with config.open("a") as fh:
            fh.write(f'[tautulli]\nurl = "{tautulli.url}"\napi_key = "key"\nusers = ["alex"]\n')
        proc = Daemon(config, port, tmp_path / "daemon.log")
        try:
            yield proc, data_dir
        finally:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.proc.kill()
                proc.proc.wait()


async def test_a_tautulli_webhook_without_server_id_is_scoped_by_tautullis_server(
    daemon: tuple[Daemon, Path],
) -> None:
    proc, data_dir = daemon
    await proc.start()
    body: dict[str, Any] = tautulli_watched(1, "alex")
    del body["server_machine_id"]  # a template pasted before the field existed
    await wait_for(
        lambda: "tautulli.server_identity" in proc.log_path.read_text(), 10, "the identity"
    )
    async with aiohttp.ClientSession() as http:
        assert await post_tautulli(http, proc.port, body) == 202
    assert proc.stop() == 0
    with sqlite3.connect(data_dir / "outbox.sqlite3") as db:
        (item,) = db.execute("SELECT item FROM events").fetchone()
    assert json.loads(item)["server"] == MACHINE
