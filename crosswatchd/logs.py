"""structlog set-up: JSON lines when stdout is not a terminal, coloured console otherwise.

Log events are dotted names (``webhook.accepted``, ``delivery.delivered``) with bound context.
A processor removes secrets: any field whose name says token, secret, api key, password or
authorization is replaced by ``"[redacted]"``, and ``token=…``/``apikey=…`` query values inside
string fields (URLs) are masked, so a webhook URL or an access token never reaches the log.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson
import structlog

__all__ = ["configure_logging", "redact"]

_SECRET_FIELD = re.compile(r"token|secret|api_?key|password|authorization", re.IGNORECASE)
_SECRET_QUERY = re.compile(r"((?:token|apikey|api_key|client_secret)=)[^&\s\"']+", re.IGNORECASE)
_SAFE_FIELDS = frozenset({"event", "has_token", "token_source"})


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_QUERY.sub(r"\1[redacted]", value)
    return value


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: drop secret-looking fields and mask secrets in URLs."""
    for key in list(event_dict):
        if key not in _SAFE_FIELDS and _SECRET_FIELD.search(key):
            event_dict[key] = "[redacted]"
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default or str).decode()


def configure_logging(
    level: str = "info", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog (and stdlib logging, for aiohttp's own messages).

    Log lines go to *stream* (default stdout). ``json=None`` picks JSON lines unless the
    stream is a TTY.
    """
    out = sys.stdout if stream is None else stream
    if json is None:
        json = not out.isatty()
    numeric = getattr(logging, level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if json:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        # Tracebacks become text before redaction, so secrets inside them are masked too.
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer()
    shared.append(redact)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)
