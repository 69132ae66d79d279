"""Headless Chromium (Debian's ``chromium`` package) driven over the DevTools protocol, for
tests of the status page: load a URL, record every request the page makes, take a PNG.

No browser download: the system's ``/usr/bin/chromium`` is started with a fresh profile, no
sandbox (the tests run as root in CI) and no background networking (the machines have no
internet; Chromium's own update and sync calls would only fail).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["Loaded", "chromium_path", "load_page"]


def chromium_path() -> str | None:
    """The Chromium binary, if installed (``apt install chromium``)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Loaded:
    """What a page load produced: every request URL, the PNG, the page's text."""

    requests: list[str] = field(default_factory=list)
    png: bytes = b""
    text: str = ""
    html: str = ""


@contextlib.asynccontextmanager
async def _browser(binary: str) -> AsyncIterator[str]:
    """Start Chromium; yield its DevTools HTTP base URL."""
    profile = tempfile.mkdtemp(prefix="crosswatchd-chromium-")
    proc = await asyncio.create_subprocess_exec(
        *[
            binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--hide-scrollbars",
            "--window-size=1280,1600",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
        ],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.05)
        port = port_file.read_text().splitlines()[0]
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def load_page(url: str, *, timeout_s: float = 30.0) -> Loaded:
    """Open *url* in headless Chromium; return its requests, a screenshot and its text."""
    binary = chromium_path()
    assert binary, "chromium is not installed (.ci/run installs it)"
    loaded = Loaded()
    ids = itertools.count(1)
    async with _browser(binary) as base, aiohttp.ClientSession() as http:
        async with http.put(f"{base}/json/new?about:blank") as resp:
            target: dict[str, Any] = await resp.json(content_type=None)
        async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:

            async def call(method: str, **params: Any) -> dict[str, Any]:
                my_id = next(ids)
                await ws.send_json({"id": my_id, "method": method, "params": params})
                while True:
                    message = await ws.receive_json()
                    if message.get("method") == "Network.requestWillBeSent":
                        loaded.requests.append(message["params"]["request"]["url"])
                    elif message.get("method") == "Page.loadEventFired":
                        loaded_event.set()
                    if message.get("id") == my_id:
                        result: dict[str, Any] = message.get("result", {})
                        return result

            loaded_event = asyncio.Event()
            await call("Network.enable")
            await call("Page.enable")
            async with asyncio.timeout(timeout_s):
                await call("Page.navigate", url=url)
                while not loaded_event.is_set():
                    await call("Runtime.evaluate", expression="1")
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)  # anything the page would fetch after load
                await call("Runtime.evaluate", expression="1")
                text = await call("Runtime.evaluate", expression="document.body.innerText")
                loaded.text = str(text.get("result", {}).get("value", ""))
                html = await call(
                    "Runtime.evaluate", expression="document.documentElement.outerHTML"
                )
                loaded.html = str(html.get("result", {}).get("value", ""))
                shot = await call(
                    "Page.captureScreenshot", format="png", captureBeyondViewport=True
                )
                loaded.png = base64.b64decode(shot["data"])
    return loaded
