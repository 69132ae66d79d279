"""SIMKL ratings changes, pure: the request body and its reply mapped back to changes. No
HTTP here; :mod:`.provider` sends.

Shapes (``shared/reference/simkl``, Apiary "Add Ratings" / "Remove Ratings"): ``movies[]``
and ``shows[]`` of ``{title?, year?, ids, rating, rated_at}`` (anime are shows; SIMKL rates
neither seasons nor episodes); the reply ``{"added": {...}, "not_found": {"movies": [...],
"shows": [...]}}`` echoes the objects it could not place. Rating an item SIMKL does not list
yet puts it in a list (a movie in Completed, a show in Watching: Apiary "Add Ratings").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crosswatchd.http import Lenient, LenientList, WireModel
from crosswatchd.models import MediaKind
from crosswatchd.providers.base import Change, ChangeOutcome, ChangeResult
from crosswatchd.providers.simkl.history import api_ids, id_pairs, simkl_time, titled

__all__ = ["RatingsReply", "rating_results", "ratings_body"]


def ratings_body(
    changes: Sequence[Change], *, with_rating: bool
) -> tuple[dict[str, Any], list[tuple[str, Change, dict[str, str | int]]]]:
    """The ratings body for *changes* (movies and shows only) and, per change, the list it
    went in and the ids sent. ``with_rating`` adds ``rating`` and ``rated_at`` (removals
    carry bare objects)."""
    body: dict[str, list[dict[str, Any]]] = {"movies": [], "shows": []}
    placed: list[tuple[str, Change, dict[str, str | int]]] = []
    for change in changes:
        item = change.item
        if item.kind is MediaKind.MOVIE:
            form, ids, obj = (
                "movies",
                api_ids(item.ids),
                titled(api_ids(item.ids), item.title, item.year),
            )
        elif item.kind is MediaKind.SHOW:
            ids = api_ids(item.ids.merged(item.show_ids))
            title = item.show_title or item.title
            form, obj = "shows", titled(ids, title, item.show_year or item.year)
        else:
            raise ValueError(f"SIMKL rates movies and shows only, not a {item.kind}")
        if with_rating:
            obj["rating"] = change.rating
            obj["rated_at"] = simkl_time(change.at)
        body[form].append(obj)
        placed.append((form, change, ids))
    return {k: v for k, v in body.items() if v}, placed


class _Echo(WireModel):
    ids: Lenient[dict[str, Any]] = None


class _NotFound(WireModel):
    movies: LenientList[_Echo] = []
    shows: LenientList[_Echo] = []


class RatingsReply(WireModel):
    """A 2xx ratings reply; only ``not_found`` is read (the call is idempotent)."""

    not_found: Lenient[_NotFound] = None


def rating_results(
    reply: RatingsReply | None, placed: Sequence[tuple[str, Change, dict[str, str | int]]]
) -> dict[int, ChangeResult]:
    """``NOT_FOUND`` for the changes ``not_found`` echoes (by ids), ``APPLIED`` for the rest."""
    missing: set[int] = set()
    if reply is not None and reply.not_found is not None:
        for form in ("movies", "shows"):
            for echo in getattr(reply.not_found, form):
                pairs = id_pairs(echo.ids)
                missing |= {c.key for f, c, ids in placed if f == form and pairs & id_pairs(ids)}
    return {
        c.key: ChangeResult(ChangeOutcome.NOT_FOUND if c.key in missing else ChangeOutcome.APPLIED)
        for _, c, _ in placed
    }
