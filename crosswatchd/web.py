"""HTTP intake: Plex and Tautulli webhooks in, committed outbox events out.

Routes:

- ``POST /webhook/plex?token=SECRET`` — Plex's ``multipart/form-data`` (JSON in the
  ``payload`` part; the ``thumb`` JPEG part is read past in chunks, never kept), or a plain
  JSON body, or ``application/x-www-form-urlencoded`` with ``payload=``.
- ``POST /webhook/tautulli?token=SECRET`` (or header ``X-Crosswatchd-Token``) — the JSON
  body of Tautulli's Webhook agent (``config/tautulli-webhook.json``).
- ``GET /healthz`` — ``{"status": "ok"}`` while the outbox is open.

Replies: **202** once the event is committed to SQLite; **200** with a reason for events
deliberately ignored; **400** with a one-line reason for malformed input; **401** for a wrong
or missing token (constant-time compare); **413** above the body limit. Bad input never gets
a 5xx.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from aiohttp import BodyPartReader, hdrs, web
from multidict import MultiDictProxy

from crosswatchd.config import Settings
from crosswatchd.errors import PayloadError
from crosswatchd.models import PlayEvent
from crosswatchd.outbox import Outbox
from crosswatchd.sources.plex import Ignored, parse_plex_payload, plex_event
from crosswatchd.sources.tautulli import parse_tautulli_body, tautulli_event

__all__ = ["OUTBOX", "SECRET", "SETTINGS", "build_app"]

log = structlog.get_logger(__name__)

OUTBOX = web.AppKey("outbox", Outbox)
SETTINGS = web.AppKey("settings", Settings)
SECRET = web.AppKey("secret", str)
Clock = Callable[[], datetime]
CLOCK: web.AppKey[Clock] = web.AppKey("clock")

#: The ``payload`` part, from the raw Content-Disposition header (``part.name`` runs aiohttp's
#: full RFC 2231 parser, a tenth of the intake's CPU in bench/ingest.py).
_PAYLOAD_PART = re.compile(r'(?:^|;)\s*name\s*=\s*"?payload"?\s*(?:;|$)', re.IGNORECASE)

#: A whole request (payload plus Plex's thumbnail) may not exceed this many times the JSON limit.
_REQUEST_FACTOR = 16


class _TooLarge(Exception):
    pass


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _reply(http_status: int, **body: Any) -> web.Response:
    return web.json_response(body, status=http_status, dumps=_dumps)


def _token_ok(request: web.Request, *, header: bool) -> bool:
    given = request.query.get("token", "")
    if not given and header:
        given = request.headers.get("X-Crosswatchd-Token", "")
    expected = request.app[SECRET]
    return hmac.compare_digest(given.encode(), expected.encode())


async def _read_limited(part: BodyPartReader | web.Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await (
            part.read_chunk() if isinstance(part, BodyPartReader) else part.content.read(65536)
        )
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)


async def _plex_json(request: web.Request, limit: int) -> bytes:
    """The JSON of a Plex webhook, from whichever body form it came in."""
    # The raw header, not request.content_type: aiohttp parses that with the (slow) email
    # package, which costs more than the whole SQLite commit (see bench/ingest.py).
    ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if ctype == "multipart/form-data":
        reader = await request.multipart()
        payload: bytes | None = None
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                await part.release()
                continue
            disposition = part.headers.get(hdrs.CONTENT_DISPOSITION, "")
            if payload is None and _PAYLOAD_PART.search(disposition):
                payload = await _read_limited(part, limit)
            else:  # `thumb` and anything else: stream past it without keeping it
                await part.release()
        if payload is None:
            raise PayloadError("multipart body has no `payload` part")
        return payload
    if ctype == "application/x-www-form-urlencoded":
        form: MultiDictProxy[Any] = await request.post()
        value = form.get("payload")
        if not isinstance(value, str):
            raise PayloadError("form body has no `payload` field")
        raw = value.encode()
        if len(raw) > limit:
            raise _TooLarge
        return raw
    return await _read_limited(request, limit)


async def _accept(
    request: web.Request, source: str, event: PlayEvent | Ignored, started: float
) -> web.Response:
    outbox = request.app[OUTBOX]
    if isinstance(event, Ignored):
        if event.account and event.account_filtered:
            await outbox.note_account(source, event.account)
        log.info(
            "webhook.ignored",
            source=source,
            reason=event.reason,
            account=event.account,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return _reply(200, status="ignored", reason=event.reason)
    result = await outbox.enqueue(event)
    log.info(
        "webhook.accepted",
        source=source,
        action=event.action.value,
        item=event.item.label(),
        account=event.account,
        event_id=result.event_id,
        duplicate=result.duplicate,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return _reply(
        202,
        status="accepted",
        event_id=result.event_id,
        duplicate=result.duplicate,
        deliveries=result.new_deliveries,
    )


def _rejected(source: str, status: int, reason: str) -> web.Response:
    log.warning("webhook.rejected", source=source, status=status, reason=reason)
    return _reply(status, error=reason)


async def plex_webhook(request: web.Request) -> web.Response:
    """``POST /webhook/plex`` (Plex support article "Webhooks")."""
    started = time.perf_counter()
    settings = request.app[SETTINGS]
    if not _token_ok(request, header=True):
        return _rejected("plex", 401, "missing or wrong token")
    limit = settings.http.max_body_bytes
    if (request.content_length or 0) > limit * _REQUEST_FACTOR:
        return _rejected("plex", 413, f"body larger than {limit * _REQUEST_FACTOR} bytes")
    try:
        raw = await _plex_json(request, limit)
        payload = parse_plex_payload(raw)
        event = plex_event(
            payload, received_at=request.app[CLOCK](), accounts=settings.plex.accounts
        )
    except _TooLarge:
        return _rejected("plex", 413, f"payload larger than {limit} bytes")
    except web.HTTPRequestEntityTooLarge:
        return _rejected("plex", 413, f"body larger than {limit * _REQUEST_FACTOR} bytes")
    except PayloadError as exc:
        return _rejected("plex", 400, str(exc))
    except (ValueError, web.HTTPException) as exc:  # broken multipart framing and the like
        return _rejected("plex", 400, f"unreadable body: {type(exc).__name__}")
    return await _accept(request, "plex", event, started)


async def tautulli_webhook(request: web.Request) -> web.Response:
    """``POST /webhook/tautulli`` (Tautulli Webhook notification agent, JSON data)."""
    started = time.perf_counter()
    settings = request.app[SETTINGS]
    if not _token_ok(request, header=True):
        return _rejected("tautulli", 401, "missing or wrong token")
    limit = settings.http.max_body_bytes
    if (request.content_length or 0) > limit:
        return _rejected("tautulli", 413, f"body larger than {limit} bytes")
    try:
        raw = await _read_limited(request, limit)
        body = parse_tautulli_body(raw)
        event = tautulli_event(
            body, received_at=request.app[CLOCK](), users=settings.tautulli.users
        )
    except _TooLarge:
        return _rejected("tautulli", 413, f"body larger than {limit} bytes")
    except PayloadError as exc:
        return _rejected("tautulli", 400, str(exc))
    if isinstance(event, Ignored) and event.account_filtered and not settings.tautulli.users:
        log.warning(
            "tautulli.users_empty",
            username=event.account,
            hint="add the usernames whose plays are yours to tautulli.users",
        )
    return await _accept(request, "tautulli", event, started)


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: liveness for Docker/systemd watchdogs."""
    return _reply(200, status="ok")


@web.middleware
async def _never_500_for_input(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException:
        raise
    except Exception:
        log.exception("webhook.error", path=request.path)
        # A fault of ours (the database), not of the input: ask the sender to come back.
        return _reply(503, error="temporarily unable to store the event")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_app(
    settings: Settings,
    outbox: Outbox,
    secret: str,
    *,
    clock: Callable[[], datetime] = _utc_now,
) -> web.Application:
    """The aiohttp application. Lifecycle (drainers, sessions) is added by the caller."""
    app = web.Application(
        middlewares=[_never_500_for_input],
        client_max_size=settings.http.max_body_bytes * _REQUEST_FACTOR,
    )
    app[SETTINGS] = settings
    app[OUTBOX] = outbox
    app[SECRET] = secret
    app[CLOCK] = clock
    app.router.add_post("/webhook/plex", plex_webhook)
    app.router.add_post("/webhook/tautulli", tautulli_webhook)
    app.router.add_get("/healthz", healthz)
    return app
