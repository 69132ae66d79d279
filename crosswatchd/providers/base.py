"""The interface every delivery target (Trakt, SIMKL) implements for the drainer, and the
shapes its parts share.

A provider owns its HTTP client details: headers, auth tokens, rate limiting, and the
translation of HTTP statuses into :mod:`crosswatchd.errors`. The drainer only sees these
methods and those exceptions. :class:`SearchHit` is what either provider's id search (used
by the resolver) returns; :class:`AddedCounts` and :func:`search_data` read answers both
providers shape alike.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson
import structlog

from crosswatchd.errors import PermanentError
from crosswatchd.http import Answer, OptInt, WireModel
from crosswatchd.models import Action, Ids, Item, MediaKind

__all__ = [
    "Activities",
    "AddedCounts",
    "Change",
    "ChangeOutcome",
    "ChangeResult",
    "LiveOutcome",
    "Play",
    "PlayOutcome",
    "Provider",
    "SearchHit",
    "TargetRating",
    "TargetWatch",
    "search_data",
    "split_sendable",
]


@dataclass(frozen=True, slots=True)
class Play:
    """A completed play to record: ``item`` (ids resolved) watched at ``watched_at`` (UTC).

    ``key`` is an opaque caller reference (the outbox delivery id) echoed back in results.
    ``sent_at`` (UTC) is when an earlier send that may have landed started, if there was one
    (a history check can then look at what changed since, e.g. SIMKL's ``date_from``).
    """

    key: int
    item: Item
    watched_at: datetime
    sent_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Activities:
    """When each part of an account last changed, as the target reports it: Trakt's ``GET
    /sync/last_activities`` ("Sync / Last Activities"), SIMKL's ``GET /sync/activities``
    (Apiary "Get last activity"). ``stamps`` maps a group to its fields' timestamps (strings
    as sent, compared for equality only): Trakt ``{"movies": {"watched_at", "rated_at",
    "watchlisted_at"…}, "episodes": …, "shows": …, "seasons": …, "watchlist": {"updated_at"}}``,
    SIMKL ``{"movies": {"all", "rated_at", "plantowatch", "completed", "removed_from_list"…},
    "tv_shows": …, "anime": …}``. A top-level string (both send ``all``) is kept as
    ``{"": {"all": …}}``.
    """

    stamps: dict[str, dict[str, str]]

    @classmethod
    def parse(cls, data: Any) -> Activities:
        """Read a decoded reply leniently: fields that are not strings are left out; a reply
        that is not an object is empty."""
        stamps: dict[str, dict[str, str]] = {}
        if isinstance(data, dict):
            for group, value in data.items():
                if isinstance(value, str):
                    stamps.setdefault("", {})[str(group)] = value
                elif isinstance(value, dict):
                    fields = {str(k): v for k, v in value.items() if isinstance(v, str)}
                    if fields:
                        stamps[str(group)] = fields
        return cls(stamps)

    def get(self, group: str, name: str) -> str | None:
        """The timestamp of ``group.name`` (``None`` if the target did not send it)."""
        return self.stamps.get(group, {}).get(name)

    def moved(self, since: Activities | None, *fields: tuple[str, str]) -> bool:
        """True if any of *fields* (``(group, name)`` pairs) differs from *since* (a field
        sent now but not then, or the reverse, differs; one never sent by either has not
        moved), or when there is nothing to compare with (*since* is ``None``): a pass then
        reads the data instead of trusting an unknown."""
        if since is None:
            return True
        return any(self.get(g, n) != since.get(g, n) for g, n in fields)


@dataclass(frozen=True, slots=True)
class TargetWatch:
    """One play (Trakt) or one watched movie or episode (SIMKL: its latest watch) as a
    target's history reports it, reduced to what reconcile compares: the item's identity
    ``keys`` (:func:`~crosswatchd.models.item_keys` of the ids the target sent) and ``at``,
    when it was watched (unix seconds). ``ident`` names the entry on the target (a Trakt history
    id; SIMKL ``m:<simkl id>`` or ``e:<show simkl id>:<season>:<number>``); ``None`` for a
    play reconcile knows of only because the daemon added it."""

    ident: str | None
    keys: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True)
class TargetRating:
    """One rating a target holds: the item's ``keys``, its ``kind`` and the 1-10
    ``rating``; ``ident`` names it on the target (SIMKL ``m:<id>``/``s:<id>``, for its
    ``date_from`` updates), ``label`` is for people."""

    keys: tuple[str, ...]
    kind: MediaKind
    rating: int
    ident: str = ""
    label: str = ""


@dataclass(frozen=True, slots=True)
class Change:
    """A rating or watchlist change to apply to a target account.

    ``action`` is ``RATE`` (``rating`` 1-10; ``None`` removes the rating), ``WATCHLIST_ADD``
    or ``WATCHLIST_REMOVE``; ``item`` (ids resolved) a movie, show, season or episode; ``at``
    (UTC) when the change happened at the source (Trakt's ``rated_at`` / ``listed_at``).
    ``key`` is the outbox delivery id, echoed back in results.
    """

    key: int
    action: Action
    item: Item
    at: datetime
    rating: int | None = None


class ChangeOutcome(enum.StrEnum):
    """What the target said about one change of a batch."""

    APPLIED = "applied"  # the target holds the change now (added, updated, or already so)
    NOT_FOUND = "not_found"  # the target does not know the item: park it
    LIMIT = "limit"  # refused because the account's list is full (Trakt 420 X-Account-Limit)
    KEPT = "kept"  # deliberately not applied, the target left as it is (the note says why)


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """One change's outcome, with a one-line ``note`` for the log and ``status``."""

    outcome: ChangeOutcome
    note: str | None = None


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result.

    ``kind`` is ``"movie"``, ``"show"`` or ``"episode"``; ``ids`` the hit's own ids; for an
    episode ``show_ids`` are its show's and ``season``/``number`` its position.
    """

    kind: str
    title: str = ""
    year: int | None = None
    ids: Ids = field(default_factory=Ids)
    show_ids: Ids = field(default_factory=Ids)
    season: int | None = None
    number: int | None = None


class AddedCounts(WireModel):
    """``added`` of a ``POST /sync/history`` reply, on Trakt and SIMKL alike: how many
    movie and episode plays were recorded (Trakt "Sync / Add to History", SIMKL Apiary "Add
    Items to the history"). A count that is missing or not a number is ``None``."""

    movies: OptInt = None
    episodes: OptInt = None


def search_data(provider: str, answer: Answer) -> Any:
    """The decoded body of a 2xx search answer, ``None`` when it is empty.

    A body that is not JSON is :class:`~crosswatchd.errors.PermanentError`: the search step
    fails for this item rather than the delivery waiting on a proxy page.
    """
    if not answer.body.strip():
        return None
    try:
        return answer.json()
    except orjson.JSONDecodeError:
        raise PermanentError(
            provider, f"search: HTTP {answer.status} with a body that is not JSON"
        ) from None


class PlayOutcome(enum.StrEnum):
    """What the target said about one play of a batch."""

    ADDED = "added"  # counted in `added`
    NOT_FOUND = "not_found"  # listed in `not_found`: park it, never retry blindly
    UNCONFIRMED = "unconfirmed"  # 2xx, but neither added nor not_found: check, do not assume


class LiveOutcome(enum.StrEnum):
    """What the target said about a live scrobble."""

    SENT = "sent"
    ALREADY = "already"  # 409: already recorded / in progress
    NOT_FOUND = "not_found"


def split_sendable(
    provider: str, plays: Sequence[Play], missing_ids: Callable[[Item], str | None]
) -> tuple[list[Play], dict[int, PlayOutcome]]:
    """Plays the target can take, and NOT_FOUND outcomes for those it cannot.

    A guard inside ``add_history``: the drainer parks such plays before sending, so reaching
    here means a caller skipped that check; the play is reported, never sent half-identified.
    """
    sendable: list[Play] = []
    outcomes: dict[int, PlayOutcome] = {}
    for play in plays:
        reason = missing_ids(play.item)
        if reason is None:
            sendable.append(play)
        else:
            structlog.get_logger(__name__).warning(
                f"{provider}.history.unsendable", key=play.key, reason=reason
            )
            outcomes[play.key] = PlayOutcome.NOT_FOUND
    return sendable, outcomes


class Provider(Protocol):
    """A delivery target.

    Errors: every method raises :class:`~crosswatchd.errors.RetryableError`,
    :class:`~crosswatchd.errors.PermanentError` or :class:`~crosswatchd.errors.AuthError` for
    failures; anything else escaping is a bug.
    """

    #: ``"trakt"`` or ``"simkl"``; also the outbox's provider column.
    name: str
    #: Most plays :meth:`add_history` accepts in one call.
    max_batch: int
    #: Most changes :meth:`apply_changes` accepts in one call.
    max_changes: int
    #: True when the history is a list of plays, so the same play sent twice is two plays
    #: (Trakt). False when the target keeps one watched state per item (SIMKL): re-sending a
    #: play another app recorded changes nothing, so imports need no look-up first.
    keeps_every_play: bool

    def is_authorized(self) -> bool:
        """True when a token is stored (it may still be refreshed on use)."""
        ...

    def missing_ids(self, item: Item) -> str | None:
        """Why *item* cannot be sent to this target (a one-line reason), or ``None`` if it can.

        E.g. SIMKL needs the show's ids plus season/number for an episode.
        """
        ...

    async def add_history(self, plays: Sequence[Play]) -> dict[int, PlayOutcome]:
        """Record completed plays with their ``watched_at`` (``POST /sync/history``).

        Returns an outcome for every ``Play.key``.
        """
        ...

    async def find_in_history(self, plays: Sequence[Play], *, tolerance_s: float = 5.0) -> set[int]:
        """Keys of *plays* already in the account's history within ``tolerance_s`` of their
        ``watched_at``.

        Used after a crash or an unconfirmed send (default tolerance: the same play), and
        before sending imported plays (tolerance: the dedupe window, so a play another
        scrobbler already recorded is not added twice).
        """
        ...

    async def scrobble(self, action: Action, item: Item, progress_pct: float) -> LiveOutcome:
        """Send live state (``/scrobble/start`` for START, ``/scrobble/pause`` for PAUSE/STOP).

        Never records a play: callers clamp progress below the target's completion mark.
        """
        ...

    async def last_activities(self) -> Activities:
        """When each part of the account last changed (one GET, retried in-process): the
        first request of every reconcile or watchlist pass, so a pass with nothing new costs
        nothing more."""
        ...

    async def apply_changes(self, changes: Sequence[Change]) -> dict[int, ChangeResult]:
        """Apply rating and watchlist changes (at most :attr:`max_changes`, any mix).

        Every change is idempotent on the target (setting a rating, adding a listed item or
        removing an absent one changes nothing), so a batch whose fate is unknown is simply
        sent again. Returns a result for every ``Change.key``; raises like the others, a
        request-scoped :class:`~crosswatchd.errors.PermanentError` meaning nothing was applied.
        """
        ...

    async def close(self) -> None:
        """Release resources (nothing else owns the provider's HTTP session)."""
        ...
