"""Shared harness for the end-to-end tests: the real daemon as a child process, real Plex
multipart webhooks built from the reference payloads."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson

FIXTURES = Path(__file__).parent / "fixtures" / "plex"
SECRET = "e2e-secret-not-in-logs"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def movie_payload(n: int, event: str = "media.scrobble") -> dict[str, Any]:
    """The real Big Trouble in Little China scrobble, re-labelled as movie number *n*."""
    base = orjson.loads(
        (FIXTURES / "movie_media.scrobble_plex-agent_big-trouble-in-little-china.json").read_bytes()
    )
    payload = copy.deepcopy(base)
    payload["event"] = event
    meta = payload["Metadata"]
    meta["ratingKey"] = str(900_000 + n)
    meta["key"] = f"/library/metadata/{900_000 + n}"
    meta["title"] = f"Test Movie {n}"
    meta["guid"] = f"plex://movie/{n:024x}"
    meta["Guid"] = [{"id": f"imdb://tt{9_000_000 + n}"}, {"id": f"tmdb://{800_000 + n}"}]
    return payload


class Daemon:
    """``crosswatchd serve`` as a child process."""

    def __init__(self, config: Path, port: int, log_path: Path) -> None:
        self.config = config
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; we poll /healthz
                [sys.executable, "-m", "crosswatchd.cli", "--config", str(self.config), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert self.proc.poll() is None, self.log_path.read_text()
                await asyncio.sleep(0.05)
        raise AssertionError("daemon did not come up:\n" + self.log_path.read_text())

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
        return self.proc.returncode


async def post_webhook(http: aiohttp.ClientSession, port: int, payload: dict[str, Any]) -> int:
    form = aiohttp.FormData()
    form.add_field("payload", orjson.dumps(payload).decode(), content_type="application/json")
    form.add_field(
        "thumb", b"\xff\xd8\xff" + b"\0" * 20_000, filename="thumb.jpg", content_type="image/jpeg"
    )
    url = f"http://127.0.0.1:{port}/webhook/plex?token={SECRET}"
    try:
        async with http.post(url, data=form) as resp:
            return resp.status
    except aiohttp.ClientError:
        return 0


async def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s / 0.1)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def write_config(
    path: Path,
    *,
    data_dir: Path,
    port: int,
    trakt: Any = None,
    simkl: Any = None,
    use_search: bool = False,
    anime_url: str = "",
    anime_retry_s: float = 300.0,
    anime_refresh_s: float = 86400.0,
) -> Path:
    """A daemon config for the e2e tests: fast polling and backoff, fakes as targets; the
    Anime-Lists mapping off unless *anime_url* names a fake list (never the real one)."""
    sections = [
        f'data_dir = "{data_dir}"',
        f"[http]\nport = {port}",
        f'[webhook]\nsecret = "{SECRET}"',
        f"[resolver]\nuse_search = {'true' if use_search else 'false'}",
        "[delivery]\ntimeout_s = 3.0\npoll_s = 0.2\nbackoff_base_s = 0.2\n"
        "backoff_max_s = 1.0\nlease_s = 30",
        f'[anime]\nmapping_url = "{anime_url}"\nretry_s = {anime_retry_s}\n'
        f"refresh_s = {anime_refresh_s}",
    ]
    if trakt is not None:
        sections.append(
            f'[trakt]\nclient_id = "{trakt.client_id}"\nclient_secret = "{trakt.client_secret}"\n'
            f'api_url = "{trakt.url}"'
        )
    if simkl is not None:
        sections.append(f'[simkl]\nclient_id = "{simkl.client_id}"\napi_url = "{simkl.url}"')
    path.write_text("\n".join(sections) + "\n")
    return path
