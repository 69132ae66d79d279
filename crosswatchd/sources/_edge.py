"""What both webhook parsers share (:mod:`~crosswatchd.sources.plex`,
:mod:`~crosswatchd.sources.tautulli`): the :class:`Ignored` result, decoding the JSON body,
the one-line reason for an invalid field, bounded lenient integers, and progress percentages.

Nothing here knows a source's field names; each parser passes its own (``"Plex"``,
``"Tautulli"``) for the messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
from pydantic import ValidationError

from crosswatchd.errors import PayloadError
from crosswatchd.models import MediaKind

__all__ = [
    "MAX_INT",
    "MEDIA_KINDS",
    "Ignored",
    "bounded",
    "lenient_int",
    "load_json_object",
    "percent",
    "progress_percent",
    "validation_reason",
]

#: Largest magnitude accepted for an integer field (exact in JSON doubles, fits SQLite INTEGER).
MAX_INT: Final = 2**53

#: The media types that are plays, by their (lower-case) name in either source.
MEDIA_KINDS: Final[Mapping[str, MediaKind]] = {
    "movie": MediaKind.MOVIE,
    "episode": MediaKind.EPISODE,
}


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed source event that is deliberately not turned into a play.

    ``reason`` is one human line (e.g. ``"plex event library.new is not a playback event"``);
    ``account`` is the source account the event belonged to, when known;
    ``account_filtered`` is True when the account filter (``plex.accounts``,
    ``tautulli.users``) is the reason, so ``status`` can list the accounts a user may want to
    allow. The HTTP layer answers 200 and logs it; it is not an error.
    """

    reason: str
    account: str | None = None
    account_filtered: bool = False


def bounded(number: int) -> int:
    """*number* itself; ``ValueError`` ("number out of range": a 400, not a 5xx) beyond
    +-:data:`MAX_INT`."""
    if abs(number) > MAX_INT:
        raise ValueError("number out of range")
    return number


def lenient_int(value: Any) -> Any:
    """A pydantic ``BeforeValidator`` for integer fields: ints, integral floats and numeric
    strings (``"15"``, ``"15.0"``) become ints, ``""`` becomes ``None``, anything else is
    left for pydantic to report. Integers beyond +-:data:`MAX_INT` raise ``ValueError``."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return value  # let pydantic report the wrong type
            if not number.is_integer():
                return value
            value = int(number)
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return bounded(value)
    return value


def validation_reason(source: str, err: ValidationError) -> str:
    """One line naming the first invalid field: ``invalid <source> payload: Metadata.index: …``.

    Never includes the offending input value.
    """
    first = err.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    message = " ".join(str(first.get("msg", "invalid")).split())
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"invalid {source} payload: {where}: {message}{more}"


def load_json_object(raw: bytes | str | Mapping[str, Any], source: str) -> dict[str, Any]:
    """Decode *raw* (UTF-8 JSON text or an already-decoded mapping) into a dict.

    Raises :class:`PayloadError` (``"invalid <source> payload: …"``) for bad UTF-8, bad JSON or
    a top level that is not an object.
    """
    if isinstance(raw, Mapping):
        return dict(raw)
    if not isinstance(raw, bytes | str):
        raise PayloadError(f"invalid {source} payload: expected JSON text")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        reason = " ".join(str(err).split())
        raise PayloadError(f"invalid {source} payload: not JSON ({reason})") from None
    if not isinstance(data, dict):
        raise PayloadError(f"invalid {source} payload: top level must be a JSON object")
    return data


def percent(value: float) -> float:
    """*value* (a percentage) clamped to 0-100 and rounded to 0.1."""
    return round(min(100.0, max(0.0, value)), 1)


def progress_percent(view_offset_ms: int | None, duration_ms: int | None) -> float | None:
    """``view_offset_ms / duration_ms`` as a percentage clamped to 0-100, rounded to 0.1.

    ``None`` when either is missing or the duration is not positive.
    """
    if view_offset_ms is None or duration_ms is None or duration_ms <= 0:
        return None
    return percent(100.0 * view_offset_ms / duration_ms)
