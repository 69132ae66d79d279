"""Reference server for bench/ingest.py: a bare aiohttp handler that parses a Plex multipart
webhook (reads the `payload` part, streams past `thumb`) and replies 202, storing nothing.

Run: python bench/bare_handler.py PORT
"""

from __future__ import annotations

import sys

import orjson
from aiohttp import BodyPartReader, web


async def webhook(request: web.Request) -> web.Response:
    reader = await request.multipart()
    payload = b""
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader) and part.name == "payload":
            payload = await part.read()
        else:
            await part.release()
    orjson.loads(payload)
    return web.json_response({"status": "accepted"}, status=202)


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhook/plex", webhook)
    app.router.add_get("/healthz", lambda _: web.json_response({"status": "ok"}))
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
