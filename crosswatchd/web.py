"""HTTP intake: Plex and Tautulli webhooks in, committed outbox events out.

Routes:

- ``POST /webhook/plex?token=SECRET`` — Plex's ``multipart/form-data`` (JSON in the
  ``payload`` part; the ``thumb`` JPEG part is read past in chunks, never kept), or a plain
  JSON body, or ``application/x-www-form-urlencoded`` with ``payload=``.
- ``POST /webhook/tautulli?token=SECRET`` — the JSON body of Tautulli's Webhook agent
  (``config/tautulli-webhook.json``). Both endpoints also take the secret in an
  ``X-Crosswatchd-Token`` header.
- ``POST /webhook/plex/<profile token>`` and ``POST /webhook/tautulli/<profile token>`` — one
  profile's own URLs (``crosswatchd webhook-url --profile NAME``): their events are that
  profile's alone (its ``plex_accounts``, or the webhook owner's own plays when it lists none;
  its ``tautulli_users``), so people who share no Plex server can share one relay. An unknown
  token is 401.
- ``GET /healthz`` — ``{"status": "ok"}``: the process answers (liveness).
- ``GET /readyz`` — ready when the outbox can be written and a target account is
  authorized; else 503 with the problems (readiness).

Replies are JSON: **202** once the event is committed to the outbox, with ``"kind": "play"`` or
``"live"``; **200** ``"kind": "ignored"`` with a reason for events deliberately ignored;
**400** with a one-line reason for malformed input (also a part header aiohttp cannot parse,
an unknown charset, a body that is not the gzip it claims); **401** for a wrong or missing
token (constant-time compare); **404**/**405**; **413** above the body limit. Bad input never
gets a 5xx: 503 is kept for real storage faults (a full disk, a PostgreSQL server that cannot
be reached: nothing was acknowledged, the sender tries again).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import BodyPartReader, hdrs, http_exceptions, web
from aiohttp.web_protocol import RequestPayloadError
from multidict import MultiDictProxy

from crosswatchd.config import Settings
from crosswatchd.db import storage_errors
from crosswatchd.errors import PayloadError
from crosswatchd.logs import RepeatLimiter
from crosswatchd.metrics import Metrics
from crosswatchd.models import PlayEvent
from crosswatchd.outbox import Outbox
from crosswatchd.page import render_page
from crosswatchd.profiles import Household, Profile
from crosswatchd.replicas import ReplicaStore
from crosswatchd.report import build_report
from crosswatchd.roster import LiveHousehold
from crosswatchd.sources.plex import Ignored, parse_plex_payload, plex_event
from crosswatchd.sources.tautulli import parse_tautulli_body, tautulli_event
from crosswatchd.storage import Storage

__all__ = [
    "HOUSEHOLD",
    "OUTBOX",
    "SECRET",
    "SETTINGS",
    "STOPPING",
    "CappedSite",
    "ServerHint",
    "build_app",
    "listen",
]

log = structlog.get_logger(__name__)

OUTBOX = web.AppKey("outbox", Outbox)
SETTINGS = web.AppKey("settings", Settings)
#: The household webhooks are routed by (kept up to date with the roster by the daemon).
HOUSEHOLD = web.AppKey("household", LiveHousehold)
#: The replicas store, for the status page (the daemon's).
REPLICAS = web.AppKey("replicas", ReplicaStore)
SECRET = web.AppKey("secret", str)
Clock = Callable[[], datetime]
NOW: web.AppKey[Clock] = web.AppKey("now")


@dataclass(slots=True)
class ServerHint:
    """The Plex server (machineIdentifier) a Tautulli webhook without ``server_id`` is about.

    Set at start from Tautulli's ``get_server_identity`` when the API is configured, and
    learned from Plex webhooks sent because the webhook's owner owns the server
    (``"owner": true``): that is the server Tautulli watches.
    """

    machine_id: str | None = None


@dataclass(slots=True)
class StorageHealth:
    """Whether the outbox could be written lately: a failed commit (a full disk, a read-only
    file) is remembered for :data:`STORAGE_MEMORY_S` at most, so ``/readyz`` says so while it
    lasts and says ready again soon after space returns. Every webhook still tries its own
    commit: nothing is refused on the memory alone."""

    failed_at_s: float | None = None  # monotonic seconds of the last failed commit
    error: str = ""

    def failed(self, exc: BaseException, monotonic_s: float) -> None:
        self.failed_at_s, self.error = monotonic_s, f"{type(exc).__name__}: {exc}"

    def succeeded(self) -> None:
        self.failed_at_s = None

    def problem(self, monotonic_s: float) -> str | None:
        """The recent storage failure, if one happened in the last few seconds."""
        if self.failed_at_s is None or monotonic_s - self.failed_at_s > STORAGE_MEMORY_S:
            return None
        return f"the outbox cannot be written: {self.error}"


#: How long a failed commit keeps /readyz not ready (seconds).
STORAGE_MEMORY_S = 5.0
#: What ``/readyz`` asks the daemon besides the outbox: problems in words (none: ready).
ReadyCheck = Callable[[], Awaitable[list[str]]]


async def _no_more_checks() -> list[str]:
    return []


SERVER_HINT = web.AppKey("server_hint", ServerHint)
METRICS = web.AppKey("metrics", Metrics)
STORAGE = web.AppKey("storage", StorageHealth)
#: The process's stores (tokens, watchlist state … for the status page).
STORES = web.AppKey("stores", Storage)
READY_CHECK: web.AppKey[ReadyCheck] = web.AppKey("ready_check")
REJECTIONS = web.AppKey("rejections", RepeatLimiter)
#: Set when the daemon is stopping: new requests get 503, never a 202 it might not keep.
STOPPING = web.AppKey("stopping", asyncio.Event)

#: The ``payload`` part, from the raw Content-Disposition header (``part.name`` runs aiohttp's
#: full RFC 2231 parser, a tenth of the intake's CPU in bench/ingest.py).
_PAYLOAD_PART = re.compile(r'(?:^|;)\s*name\s*=\s*"?payload"?\s*(?:;|$)', re.IGNORECASE)

#: A whole request (payload plus Plex's thumbnail) may not exceed this many times the JSON limit.
_REQUEST_FACTOR = 16

#: What a client may send that cannot be read: its fault, answered 400 (never a 5xx).
_UNREADABLE = (
    ValueError,  # broken multipart framing, bad JSON in a form
    LookupError,  # an unknown charset
    http_exceptions.HttpProcessingError,  # malformed part headers, lines too long
    RequestPayloadError,  # a body that does not decode as its Content-Encoding says
    web.HTTPException,
)
#: The client went away mid-request: nothing to answer, nothing to log as an error.
_GONE = (ConnectionError, aiohttp.ClientConnectionResetError, asyncio.IncompleteReadError)


class _TooLarge(Exception):
    pass


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _reply(http_status: int, headers: dict[str, str] | None = None, **body: Any) -> web.Response:
    return web.json_response(body, status=http_status, dumps=_dumps, headers=headers)


def _shown_path(request: web.Request) -> str:
    """The request's path for logs: a profile's own token is a secret, never shown."""
    if "token" in request.match_info:
        return request.path.replace(request.match_info["token"], "<profile token>")
    return request.path


def _token_ok(request: web.Request) -> bool:
    """The secret from ``?token=`` or the ``X-Crosswatchd-Token`` header, compared in
    constant time. Header bytes that are not UTF-8 arrive as surrogates; they compare
    unequal instead of raising."""
    given = request.query.get("token", "") or request.headers.get("X-Crosswatchd-Token", "")
    expected = request.app[SECRET]
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


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


def _since_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def _accept(
    request: web.Request, source: str, event: PlayEvent | Ignored, started: float
) -> web.Response:
    outbox = request.app[OUTBOX]
    if isinstance(event, Ignored):
        if event.account and event.account_filtered:
            try:
                await outbox.note_account(source, event.account)
            except storage_errors() as exc:  # a note only: answer anyway
                log.warning("webhook.note_failed", source=source, error=str(exc))
        log.info(
            "webhook.ignored",
            source=source,
            kind="ignored",
            reason=event.reason,
            account=event.account,
            duration_ms=_since_ms(started),
        )
        request.app[METRICS].webhook(source, "ignored")
        return _reply(200, status="ignored", kind="ignored", reason=event.reason)
    health = request.app[STORAGE]
    try:
        result = await outbox.enqueue(event)
    except storage_errors() as exc:
        # A fault of ours, not of the input: nothing was acknowledged, the sender tries again.
        health.failed(exc, time.monotonic())
        held = request.app[REJECTIONS].admit("storage")
        if held is not None:
            log.error("webhook.storage_failed", source=source, error=str(exc), suppressed=held)
        return _reply(503, error=f"cannot store the event now ({exc}); try again later")
    health.succeeded()
    request.app[METRICS].webhook(source, "accepted")
    kind = "play" if event.action.is_play else "live"
    log.info(
        "webhook.accepted",
        source=source,
        kind=kind,
        profile=event.profile,
        action=event.action.value,
        item=event.item.label(),
        account=event.account,
        event_id=result.event_id,
        duplicate=result.duplicate,
        duration_ms=_since_ms(started),
    )
    return _reply(
        202,
        status="accepted",
        kind=kind,
        profile=event.profile,
        event_id=result.event_id,
        duplicate=result.duplicate,
        deliveries=result.new_deliveries,
    )


def _rejected(request: web.Request, source: str, status: int, reason: str) -> web.Response:
    """Answer a client error; repeated rejections of one kind are logged once a minute
    with the number held back (a flood of bad tokens makes a few lines, not thousands)."""
    request.app[METRICS].webhook(source, "rejected")
    held = request.app[REJECTIONS].admit(f"{source}:{status}:{reason}")
    if held is not None:
        extra = {"suppressed": held} if held else {}
        log.warning("webhook.rejected", source=source, status=status, reason=reason, **extra)
    return _reply(status, error=reason)


async def _read_event(
    request: web.Request,
    source: str,
    limit: int,
    read: Callable[[], Awaitable[PlayEvent | Ignored]],
) -> web.Response:
    """Run *read* (body → event) and answer: 202/200 via :func:`_accept`, or the client
    error its input deserves (400, 413), never a 5xx for input."""
    started = time.perf_counter()
    if "token" not in request.match_info and not _token_ok(request):
        return _rejected(request, source, 401, "missing or wrong token")
    cap = limit * _REQUEST_FACTOR if source == "plex" else limit
    if (request.content_length or 0) > cap:
        return _rejected(request, source, 413, f"body larger than {cap} bytes")
    try:
        async with asyncio.timeout(request.app[SETTINGS].http.body_timeout_s):
            event = await read()
    except TimeoutError:
        return _rejected(request, source, 408, "the body did not arrive in time")
    except _TooLarge:
        return _rejected(request, source, 413, f"payload larger than {limit} bytes")
    except web.HTTPRequestEntityTooLarge:
        return _rejected(request, source, 413, f"body larger than {cap} bytes")
    except PayloadError as exc:
        return _rejected(request, source, 400, str(exc))
    except LookupError as exc:
        return _rejected(request, source, 400, f"unreadable body: unknown charset ({exc})")
    except _GONE:
        log.info("webhook.client_gone", source=source, duration_ms=_since_ms(started))
        return _reply(400, error="the client closed the connection before the body ended")
    except _UNREADABLE as exc:
        return _rejected(request, source, 400, f"unreadable body: {type(exc).__name__}")
    return await _accept(request, source, event, started)


async def plex_webhook(request: web.Request) -> web.Response:
    """``POST /webhook/plex`` (Plex support article "Webhooks")."""
    settings = request.app[SETTINGS]
    limit = settings.http.max_body_bytes

    household = await _household_of(request)
    if household is None:
        return _rejected(request, "plex", 401, "unknown profile token")

    async def read() -> PlayEvent | Ignored:
        payload = parse_plex_payload(await _plex_json(request, limit))
        if payload.owner and payload.server and payload.server.uuid:
            request.app[SERVER_HINT].machine_id = payload.server.uuid
        return plex_event(payload, received_at=request.app[NOW](), household=household)

    return await _read_event(request, "plex", limit, read)


async def _household_of(request: web.Request) -> Household | None:
    """Who a webhook may be about: the whole household on the shared URLs; on a profile's own
    URL (``/webhook/…/<profile token>``) that profile alone (None: no profile has the token).
    """
    live = request.app[HOUSEHOLD]
    token = request.match_info.get("token")
    if token is None:
        return live.current
    profile: Profile | None = await live.for_token(token)
    return None if profile is None else live.current.alone(profile.name)


async def tautulli_webhook(request: web.Request) -> web.Response:
    """``POST /webhook/tautulli`` (Tautulli Webhook notification agent, JSON data)."""
    settings = request.app[SETTINGS]
    limit = settings.http.max_body_bytes

    household = await _household_of(request)
    if household is None:
        return _rejected(request, "tautulli", 401, "unknown profile token")

    async def read() -> PlayEvent | Ignored:
        body = parse_tautulli_body(await _read_limited(request, limit))
        event = tautulli_event(
            body,
            received_at=request.app[NOW](),
            household=household,
            default_server=request.app[SERVER_HINT].machine_id,
        )
        if isinstance(event, Ignored) and event.account_filtered and not household.tautulli_users():
            log.warning(
                "tautulli.users_empty",
                username=event.account,
                hint="add the usernames whose plays are yours to tautulli.users",
            )
        return event

    return await _read_event(request, "tautulli", limit, read)


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: liveness for Docker/systemd watchdogs (the process answers)."""
    return _reply(200, status="ok")


#: How long /readyz waits for its outbox write probe.
_PROBE_TIMEOUT_S = 2.0


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 ``{"status": "ready"}`` when the daemon can store webhooks and
    deliver them; else 503 with the problems: the outbox could not be written in the last
    few seconds or does not answer a tiny write now, or no target account is authorized."""
    problems: list[str] = []
    stored = request.app[STORAGE].problem(time.monotonic())
    if stored:
        problems.append(stored)
    else:
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
                await request.app[OUTBOX].probe_write()
        except storage_errors() as exc:
            request.app[STORAGE].failed(exc, time.monotonic())
            problems.append(f"the outbox cannot be written: {type(exc).__name__}: {exc}")
    problems.extend(await request.app[READY_CHECK]())
    if problems:
        return _reply(503, status="not ready", problems=problems)
    return _reply(200, status="ready")


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


async def status_page(request: web.Request) -> web.Response:
    """``GET /``: the status page (:mod:`crosswatchd.page`). It shows the household's viewing
    activity, so a client that is not on this machine must give the webhook secret
    (``?token=`` or ``X-Crosswatchd-Token``), like a webhook."""
    if not _is_loopback(request.remote) and not _token_ok(request):
        return _reply(401, error="the status page takes the webhook token from other machines")
    settings = request.app[SETTINGS]
    report = await build_report(
        request.app[STORES],
        request.app[OUTBOX],
        household=request.app[HOUSEHOLD].current,
        replicas=request.app.get(REPLICAS),
    )
    return web.Response(
        text=render_page(settings, report),
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            # Nothing may load from anywhere: the page is self-contained.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        },
    )


async def metrics_page(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus metrics (:mod:`crosswatchd.metrics`); the delivery gauges
    are read from the outbox now, as ``status --json`` reads them."""
    metrics = request.app[METRICS]
    counts = await request.app[OUTBOX].account_counts()
    metrics.set_deliveries(
        {
            account: {
                "pending": c.pending,
                "delivered": c.delivered,
                "unresolved": c.unresolved,
                "parked": c.parked,
                "dead": c.dead,
            }
            for account, c in counts.items()
        }
    )
    body, content_type = metrics.render(request.headers.get("Accept"))
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every reply is JSON: 404 and 405 too (a GET on a webhook URL says it takes POST); an
    unexpected fault of ours (the database) is a 503 asking the sender to come back, as is
    any request while the daemon stops."""
    if request.app[STOPPING].is_set():
        return _reply(503, headers={"Connection": "close"}, error="crosswatchd is stopping")
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return _reply(
            405,
            headers={"Allow": allowed},
            error=f"{request.method} is not allowed here; this URL takes {allowed}",
        )
    except web.HTTPNotFound:
        return _reply(404, error=f"no such page: {request.path}")
    except web.HTTPException:
        raise
    except _GONE:
        return _reply(400, error="the client closed the connection")
    except storage_errors() as exc:
        # The database went away mid-request (a PostgreSQL restart): ours, not the sender's.
        request.app[STORAGE].failed(exc, time.monotonic())
        held = request.app[REJECTIONS].admit("storage")
        if held is not None:
            log.error(
                "http.storage_unavailable",
                path=_shown_path(request),
                error=f"{type(exc).__name__}: {exc}",
                suppressed=held,
            )
        return _reply(503, error="the database cannot be reached now; try again later")
    except Exception:
        log.exception("webhook.error", path=_shown_path(request))
        return _reply(503, error="temporarily unable to store the event")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def build_app(
    settings: Settings,
    outbox: Outbox,
    secret: str,
    *,
    now: Callable[[], datetime] = _utc_now,
    server_hint: ServerHint | None = None,
    ready_check: ReadyCheck = _no_more_checks,
    metrics: Metrics | None = None,
    storage: Storage | None = None,
    household: LiveHousehold | None = None,
    replicas: ReplicaStore | None = None,
) -> web.Application:
    """The aiohttp application. Lifecycle (drainers, sessions) is added by the caller.

    *server_hint* is shared with the caller, who may fill it from Tautulli's API;
    *ready_check* adds the caller's readiness problems to ``/readyz`` (e.g. no authorized
    target account); *storage* is the process's (the status page reads tokens and watchlist
    state from it; default: the SQLite files of *settings*); *household* routes webhooks
    (default: the settings' profiles, with tokens derived from *secret*), kept up to date by
    the caller; *replicas* lists the replicas on the status page.
    """
    app = web.Application(
        middlewares=[_json_errors],
        client_max_size=settings.http.max_body_bytes * _REQUEST_FACTOR,
    )
    app[SETTINGS] = settings
    app[HOUSEHOLD] = (
        household
        if household is not None
        else LiveHousehold(
            settings, secret, store=None, household=Household.from_settings(settings)
        )
    )
    if replicas is not None:
        app[REPLICAS] = replicas
    app[OUTBOX] = outbox
    app[SECRET] = secret
    app[NOW] = now
    app[SERVER_HINT] = server_hint if server_hint is not None else ServerHint()
    app[REJECTIONS] = RepeatLimiter()
    app[STOPPING] = asyncio.Event()
    app[STORAGE] = StorageHealth()
    app[STORES] = storage if storage is not None else Storage.files(settings)
    app[READY_CHECK] = ready_check
    app[METRICS] = metrics if metrics is not None else Metrics()
    app.router.add_post("/webhook/plex", plex_webhook)
    app.router.add_post("/webhook/tautulli", tautulli_webhook)
    app.router.add_post("/webhook/plex/{token}", plex_webhook)
    app.router.add_post("/webhook/tautulli/{token}", tautulli_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/", status_page)
    return app


# -- serving ---------------------------------------------------------------------------------


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on *host*:*port* (bound first thing at start-up, so a busy port
    is the first and only thing the user hears about). Raises ``OSError``."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


_BUSY = orjson.dumps({"error": "too many open connections; try again"})


class _Refuse(asyncio.Protocol):
    """A connection over the cap: answered 503 and closed before anything is read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(_BUSY)}\r\nConnection: close\r\n\r\n".encode()
            + _BUSY
        )
        transport.close()


class CappedSite(web.BaseSite):
    """Serves a :class:`web.AppRunner` on an already listening socket, with at most
    *max_connections* open connections (more are answered 503 and closed at once)."""

    __slots__ = ("_max_connections", "_sock")

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, *, max_connections: int):
        super().__init__(runner)
        self._sock = sock
        self._max_connections = max_connections

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        cap = self._max_connections

        def protocol() -> asyncio.Protocol:
            if len(server.connections) >= cap:
                return _Refuse()
            return server()

        loop = asyncio.get_running_loop()
        # BaseSite.stop() closes self._server: keep aiohttp's contract.
        self._server = await loop.create_server(protocol, sock=self._sock)
