"""structlog set-up: JSON lines when stdout is not a terminal, coloured console otherwise.

Log events are dotted names (``webhook.accepted``, ``delivery.delivered``) with bound context.
Secrets are removed by one processor, :class:`Redactor`, that every line passes through —
crosswatchd's own events and the messages of aiohttp's and asyncio's stdlib loggers alike:

- a field whose name says token, secret, api key, password or authorization is replaced by
  ``"[redacted]"``;
- ``token=…``/``apikey=…``/``client_secret=…`` query values inside any text (URLs, request
  lines quoted in an error) are masked;
- the secrets the daemon knows (the webhook secret, API keys and tokens from the config) are
  masked verbatim wherever they appear, tracebacks included.

aiohttp reports a client's malformed request (a request line over 8 KB, a bad byte in the URL,
a body shorter than its Content-Length …) as an ERROR with a traceback that quotes the raw
request. That is the client's fault, not ours: such a record becomes one
``http.bad_request`` line naming the error type only, and repeats are counted
(:class:`RepeatLimiter`), never a traceback and never the request text.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, TextIO

import orjson
import structlog
from aiohttp import http_exceptions
from aiohttp.web_protocol import RequestPayloadError

__all__ = ["Redactor", "RepeatLimiter", "configure_logging", "redact"]

_SECRET_FIELD = re.compile(r"token|secret|api_?key|password|authorization", re.IGNORECASE)
_SECRET_QUERY = re.compile(
    r"((?:token|apikey|api_key|client_secret|x-plex-token)=)[^&\s\"']+", re.IGNORECASE
)
_SAFE_FIELDS = frozenset({"event", "has_token", "token_source"})
#: Shorter "secrets" would mask ordinary words; real ones are long.
_MIN_SECRET_LEN = 8
#: stdlib loggers whose records about a client's malformed request are quieted.
_AIOHTTP_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal")


class Redactor:
    """A structlog processor that removes secrets from every field (see the module docstring).

    ``secrets`` are exact values to mask wherever they appear (at least 8 characters; shorter
    ones are ignored, they would mask ordinary words).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}, key=len)
        self._known = re.compile("|".join(re.escape(s) for s in reversed(known))) if known else None

    def scrub(self, text: str) -> str:
        """*text* with secret query values and known secrets masked."""
        text = _SECRET_QUERY.sub(r"\1[redacted]", text)
        if self._known is not None:
            text = self._known.sub("[redacted]", text)
        return text

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            value = event_dict[key]
            if key not in _SAFE_FIELDS and _SECRET_FIELD.search(key):
                event_dict[key] = "[redacted]"
            elif isinstance(value, str):
                event_dict[key] = self.scrub(value)
        return event_dict


#: The redaction of a logger configured without known secrets (kept for callers and tests).
redact = Redactor()


class RepeatLimiter:
    """Lets the first event of a kind through, then at most one per ``window_s`` seconds,
    counting what it held back (``suppressed``) so a flood of bad requests makes a few lines
    that say how many, not one line each.

    ``monotonic_s`` returns monotonic seconds.
    """

    def __init__(self, window_s: float = 60.0, monotonic_s: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self._monotonic_s = monotonic_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, key: str) -> int | None:
        """None: hold this one back. Else log it, with the returned count of the events of
        this *key* held back since the last line (0 for the first)."""
        now = self._monotonic_s()
        last = self._last.get(key)
        if last is not None and now - last < self.window_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        if len(self._last) > 1024:  # many distinct keys: forget the old ones
            self._last.clear()
            self._held.clear()
        self._last[key] = now
        return self._held.pop(key, 0)


#: Exceptions aiohttp logs that only say a client sent something malformed (or went away).
_CLIENT_FAULTS = (http_exceptions.HttpProcessingError, RequestPayloadError, ConnectionError)


class _ClientErrors(logging.Filter):
    """Turns aiohttp's records about malformed requests into one quiet line, rate-limited.

    A stdlib filter on the handler: the record is rewritten (no message text, no traceback,
    level INFO, ``error`` = the exception's type) or dropped while repeats are counted.
    """

    def __init__(self, limiter: RepeatLimiter) -> None:
        super().__init__()
        self._limiter = limiter

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiohttp") or not record.exc_info:
            return True
        exc = record.exc_info[1]
        if not isinstance(exc, _CLIENT_FAULTS):
            return True
        error = type(exc).__name__
        held = self._limiter.admit(f"bad_request:{error}")
        if held is None:
            return False
        record.msg, record.args = "http.bad_request", ()
        record.exc_info = record.exc_text = record.stack_info = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.error = error
        if held:
            record.suppressed = held
        return True


class _PoolReconnects(logging.Filter):
    """asyncpg's pool, while PostgreSQL is down, warns "Failed to restore the pool
    connection floor" with a traceback every few seconds; crosswatchd already says the
    database is unreachable (``replica.storage_unavailable``, ``drain.storage_unavailable``),
    so each becomes one quiet line (``postgres.reconnecting``, the error's type), at most one
    a minute with the number held back."""

    def __init__(self, limiter: RepeatLimiter) -> None:
        super().__init__()
        self._limiter = limiter

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "asyncpg.pool" or "connection floor" not in str(record.msg):
            return True
        held = self._limiter.admit("postgres.reconnecting")
        if held is None:
            return False
        exc = record.exc_info[1] if record.exc_info else None
        record.msg, record.args = "postgres.reconnecting", ()
        record.exc_info = record.exc_text = record.stack_info = None
        record.error = "" if exc is None else f"{type(exc).__name__}: {exc}"
        if held:
            record.suppressed = held
        return True


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(
    level: str = "info",
    *,
    json: bool | None = None,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Configure structlog and route stdlib logging (aiohttp, asyncio) through it.

    Log lines go to *stream* (default stdout), one line each. ``json=None`` picks JSON lines
    unless the stream is a TTY. *secrets* are masked verbatim everywhere (see
    :class:`Redactor`). stdlib records below WARNING are dropped unless *level* is debug.
    """
    out = sys.stdout if stream is None else stream
    if json is None:
        json = not out.isatty()
    numeric = getattr(logging, level.upper(), logging.INFO)
    redactor = Redactor(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if json:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer()
    # Tracebacks become text before redaction, so secrets inside them are masked too.
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redactor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.addFilter(_ClientErrors(RepeatLimiter()))
    handler.addFilter(_PoolReconnects(RepeatLimiter()))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.stdlib.ExtraAdder(allow=("error", "suppressed")),
                structlog.processors.format_exc_info,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redactor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)
    for name in _AIOHTTP_LOGGERS:
        # Their client-error records are ERRORs we turn into quiet lines; keep them flowing.
        logging.getLogger(name).setLevel(
            logging.DEBUG if numeric <= logging.DEBUG else logging.INFO
        )
