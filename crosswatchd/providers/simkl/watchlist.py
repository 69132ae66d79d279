"""SIMKL's "Plan to Watch" as a watchlist: reading it, and adding to or removing from it
without ever losing a watch record.

Facts (``shared/reference/simkl``, "Apiary" = the SIMKL API blueprint; summarised in
``shared/reference/plex/discover-watchlist.md`` §8):

- Read: ``GET /sync/all-items/{movies|shows|anime}/plantowatch`` (``null`` when empty), only
  after ``GET /sync/activities`` shows a change (Apiary "Get All Items": clients that skip the
  check get their client id suspended). The fields that move: ``plantowatch`` and
  ``removed_from_list`` of ``movies``, ``tv_shows`` and ``anime`` (Apiary "Last Activities").
  Removals are only visible by reading the whole list, so each read is whole.
- Each item is in at most one list. ``POST /sync/add-to-list`` with ``to: plantowatch`` *moves*
  an item there from whatever list it is in (Apiary "Add Item to the List"), so an item SIMKL
  holds in another list (Completed, Watching, On Hold, Dropped) is left there: the change is
  ``KEPT`` with a note.
- ``POST /sync/history/remove`` takes a movie, or a show without seasons, off every list
  *with its watched history and rating* (Apiary "Remove Items from History and from Lists").
  It is only sent for items still in Plan to Watch.
- Where an item is now: ``POST /sync/watched`` with a list of flat id objects answers one
  object per item with ``result`` (``true``/``false``/``"not_found"``) and ``list`` (Apiary
  "Check if watched"). It is asked right before sending, so a decision never rests on a list
  read an hour ago.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from pydantic import ConfigDict, ValidationError

from crosswatchd.http import Lenient, LenientList, OptInt, OptStr, WireModel
from crosswatchd.models import Action, Ids, Item, MediaKind
from crosswatchd.providers.base import Change, ChangeOutcome, ChangeResult
from crosswatchd.providers.simkl.changes import RatingsReply, rating_results, ratings_body
from crosswatchd.providers.simkl.history import api_ids, id_pairs

__all__ = [
    "ACTIVITY_FIELDS",
    "PLAN_TO_WATCH",
    "READ_TYPES",
    "AllItemsRow",
    "apply_watchlist",
    "plan_to_watch_item",
    "rows_of",
]

PLAN_TO_WATCH: Final = "plantowatch"
#: The activity fields that move when Plan to Watch changes (Apiary "Last Activities").
ACTIVITY_FIELDS: Final = tuple(
    (group, name)
    for group in ("movies", "tv_shows", "anime")
    for name in (PLAN_TO_WATCH, "removed_from_list")
)
#: The ``/sync/all-items`` types read, and the kind of item each holds.
READ_TYPES: Final = (
    ("movies", MediaKind.MOVIE),
    ("shows", MediaKind.SHOW),
    ("anime", MediaKind.SHOW),
)
_NOT_FOUND: Final = "not_found"

#: ``post(path, body)``: a POST with the user's token; the decoded 2xx body (None when
#: empty); raises the provider's errors otherwise.
Post = Callable[[str, Any], Awaitable[Any]]


class _Media(WireModel):
    title: OptStr = None
    year: OptInt = None
    ids: Lenient[dict[str, Any]] = None


class AllItemsRow(WireModel):
    """One ``/sync/all-items`` row: its ``movie`` or ``show`` (anime rows carry ``show``)."""

    movie: Lenient[_Media] = None
    show: Lenient[_Media] = None


def plan_to_watch_item(row: AllItemsRow, kind: MediaKind) -> Item | None:
    """The :class:`Item` of a Plan to Watch row of *kind*, or None when it carries none."""
    media = row.movie if kind is MediaKind.MOVIE else row.show
    if media is None:
        return None
    return Item(kind, media.title or "", media.year, ids=Ids.from_dict(media.ids))


class _Where(WireModel):
    """One ``/sync/watched`` answer: ``result`` true, false or ``"not_found"``, ``list``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    result: Any = None
    list: OptStr = None


def _check_body(changes: Sequence[Change]) -> list[dict[str, Any]]:
    """``/sync/watched``'s body: flat id objects with ``type`` (TMDB ids are per type)."""
    body = []
    for change in changes:
        item = change.item
        ids = api_ids(item.ids.merged(item.show_ids) if item.kind is MediaKind.SHOW else item.ids)
        entry: dict[str, Any] = {"type": "movie" if item.kind is MediaKind.MOVIE else "show"}
        if item.title:
            entry["title"] = item.title
        if item.year:
            entry["year"] = item.year
        body.append({**entry, **ids})
    return body


async def _where(post: Post, changes: Sequence[Change]) -> dict[int, str | None]:
    """Per change key, the list SIMKL holds the item in (``None``: none; ``"not_found"``:
    SIMKL does not know it). Answers are matched by position, or by the ids they echo."""
    sent = _check_body(changes)
    data = await post("/sync/watched", sent)
    answers: list[_Where] = []
    if isinstance(data, list):
        for entry in data:
            try:
                answers.append(_Where.model_validate(entry))
            except ValidationError:
                answers.append(_Where())
    where: dict[int, str | None] = {}
    for index, change in enumerate(changes):
        if len(answers) == len(changes):
            answer: _Where | None = answers[index]
        else:
            pairs = id_pairs(sent[index])
            answer = next((a for a in answers if pairs & id_pairs(a.model_extra or {})), None)
        if answer is None or answer.result == _NOT_FOUND:
            where[change.key] = _NOT_FOUND
        else:
            where[change.key] = answer.list if answer.result is True else None
    return where


async def _send(
    post: Post, path: str, changes: Sequence[Change], to: str | None
) -> dict[int, ChangeResult]:
    """Movies and shows of *changes* to *path* (with ``to`` on each object when given);
    ``NOT_FOUND`` for those the reply's ``not_found`` echoes, ``APPLIED`` for the rest."""
    body, placed = ratings_body(changes, with_rating=False)
    if to is not None:
        for objects in body.values():
            for obj in objects:
                obj["to"] = to
    data = await post(path, body)
    try:
        reply: RatingsReply | None = RatingsReply.model_validate(data)
    except ValidationError:
        reply = None
    return rating_results(reply, placed)


async def apply_watchlist(post: Post, changes: Sequence[Change]) -> dict[int, ChangeResult]:
    """Apply watchlist additions and removals to Plan to Watch (the module docstring's rules):
    one ``/sync/watched`` check, then ``/sync/history/remove`` for removals of items still in
    Plan to Watch and ``/sync/add-to-list`` (``to: plantowatch``) for additions of items on
    no list. The caller holds the account's lock across this call, so its own plays cannot
    land between the check and the sends."""
    where = await _where(post, changes)
    results: dict[int, ChangeResult] = {}
    additions: list[Change] = []
    removals: list[Change] = []
    for change in changes:
        now = where[change.key]
        add = change.action is Action.WATCHLIST_ADD
        if now == _NOT_FOUND:
            results[change.key] = ChangeResult(ChangeOutcome.NOT_FOUND)
        elif now == PLAN_TO_WATCH:
            if add:
                results[change.key] = ChangeResult(ChangeOutcome.APPLIED)
            else:
                removals.append(change)
        elif now is None:
            if add:
                additions.append(change)
            else:
                results[change.key] = ChangeResult(ChangeOutcome.APPLIED)
        else:
            note = (
                f"SIMKL holds it in {now}: not moved to Plan to Watch"
                if add
                else f"SIMKL holds it in {now}, not in Plan to Watch: left there"
            )
            results[change.key] = ChangeResult(ChangeOutcome.KEPT, note)
    if removals:
        results.update(await _send(post, "/sync/history/remove", removals, None))
    if additions:
        results.update(await _send(post, "/sync/add-to-list", additions, PLAN_TO_WATCH))
    return results


class _Rows(WireModel):
    movies: LenientList[AllItemsRow] = []
    shows: LenientList[AllItemsRow] = []
    anime: LenientList[AllItemsRow] = []


def rows_of(data: Any) -> list[AllItemsRow]:
    """The rows of one ``/sync/all-items/{type}/plantowatch`` answer (``null``: none)."""
    if not isinstance(data, dict):
        return []
    parsed = _Rows.model_validate(data)
    return [*parsed.movies, *parsed.shows, *parsed.anime]
