"""The comparison at the heart of a reconcile pass, pure: which source plays a target lacks,
which target plays no source accounts for, and which ratings differ. No I/O, no clock.

Items are compared by their identity keys (:func:`~crosswatchd.models.item_keys`: typed ids
such as ``movie:imdb:tt0072684`` or ``show:tvdb:73871:2:15``), as the outbox's dedupe does:
two entries are the same item when they share a key. Each side is first grouped into items
(one dict lookup per key), so the work is linear in the number of plays and keys: 100,000
plays against 100,000 take well under a second (``bench/reconcile.py``).

Plays, for a target that keeps every play (Trakt):

1. the source plays of one item closer than the window to the one kept before them are one
   play (the outbox's rule: "the same account finishing the same item again within this
   window is one play"; a Plex history row and a Tautulli row of one viewing are one play);
2. each remaining source play is matched to a target play of the same item at most the window
   away, one target play for one source play, earliest first (optimal for equal windows);
3. source plays left unmatched are *missing*; target plays left unmatched are *extra*.

For a target that keeps one watched state per item (SIMKL), a source item is present when the
target has it watched at all; a missing item is sent once, as its latest play (rewatches are
not sent again). Extra: target items no source item accounts for.

Plays *waiting* in the outbox for the target (pending or being sent) count as present: a
source play of the same item within the window of one (for SIMKL: any) is not missing, and
they are never extra.

Ratings: a source rating the target lacks is *missing*, one the target holds with another
value *different* (both are sent); a target rating with no source rating is *extra*.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "PlayDiff",
    "Rated",
    "RatingDiff",
    "Timed",
    "Valued",
    "Watch",
    "diff_plays",
    "diff_ratings",
    "holds",
    "time_index",
]


class Timed(Protocol):
    """A play: the item's identity ``keys`` and when (``at``, unix seconds)."""

    @property
    def keys(self) -> tuple[str, ...]: ...

    @property
    def at(self) -> float: ...


class Valued(Protocol):
    """A rating: the item's identity ``keys`` and the 1-10 ``rating``."""

    @property
    def keys(self) -> tuple[str, ...]: ...

    @property
    def rating(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Watch:
    """One play as the diff sees it: the item's identity ``keys`` and when (unix seconds)."""

    keys: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True)
class Rated:
    """One rating as the diff sees it: the item's identity ``keys`` and the 1-10 value."""

    keys: tuple[str, ...]
    rating: int


@dataclass(frozen=True, slots=True)
class PlayDiff:
    """What :func:`diff_plays` found.

    ``missing``: indices into the source sequence of the plays to send, in source order.
    ``source_plays``: source plays after repeats within the window were merged.
    ``target_plays``: entries of the target. ``matched``: source plays the target holds.
    ``waiting``: source plays the target lacks but the outbox is sending. ``extra``: target
    entries no source play accounts for (watched at or after ``since`` when given).
    """

    missing: list[int]
    source_plays: int
    target_plays: int
    matched: int
    extra: int
    waiting: int = 0


@dataclass(frozen=True, slots=True)
class RatingDiff:
    """What :func:`diff_ratings` found: ``send`` (indices into the source sequence of the
    ratings to send: the ``missing`` ones and the ``different`` ones), and the ``extra``
    target ratings no source rating accounts for."""

    send: list[int]
    missing: int
    different: int
    extra: int


def _groups(keys_of: Sequence[tuple[str, ...]]) -> tuple[list[int], int, dict[str, int]]:
    """Assign each entry an item number: the number of the first of its keys seen before,
    else a new one; every key is then registered (an earlier registration wins). Returns the
    numbers, per entry, how many items there are, and the key index."""
    index: dict[str, int] = {}
    groups: list[int] = []
    count = 0
    get, setdefault, append = index.get, index.setdefault, groups.append
    for keys in keys_of:
        group = None
        for key in keys:
            group = get(key)
            if group is not None:
                break
        if group is None:
            group = count
            count += 1
        for key in keys:
            setdefault(key, group)
        append(group)
    return groups, count, index


def _target_items(target: Sequence[Timed]) -> tuple[dict[str, int], list[list[float]]]:
    """The target's key index and, per target item, its plays' times, sorted."""
    groups, count, index = _groups([w.keys for w in target])
    times: list[list[float]] = [[] for _ in range(count)]
    for watch, group in zip(target, groups, strict=True):
        times[group].append(watch.at)
    for found in times:
        found.sort()
    return index, times


def diff_plays(
    source: Sequence[Timed],
    target: Sequence[Timed],
    *,
    window_s: float,
    every_play: bool,
    since: float | None = None,
    waiting: Sequence[Timed] = (),
) -> PlayDiff:
    """Compare *source* plays with *target* plays (see the module docstring): *window_s* is
    the match window, *every_play* whether the target keeps every play (Trakt) or one state
    per item (SIMKL), *since* (unix seconds) limits what counts as extra, *waiting* are the
    plays the outbox holds for the target, not delivered yet."""
    target_index, target_times = _target_items(target)
    floor = float("-inf") if since is None else since
    # Source items; each mapped to the target item sharing a key with any of its plays.
    source_groups, source_count, _ = _groups([w.keys for w in source])
    mapped: list[int | None] = [None] * source_count
    members: list[list[int]] = [[] for _ in range(source_count)]
    get = target_index.get
    for position, (watch, group) in enumerate(zip(source, source_groups, strict=True)):
        members[group].append(position)
        if mapped[group] is None:
            for key in watch.keys:
                hit = get(key)
                if hit is not None:
                    mapped[group] = hit
                    break
    if every_play:
        found = _every_play(source, members, mapped, target_times, len(target), window_s, floor)
    else:
        found = _one_state(source, members, mapped, target_times, len(target), window_s, floor)
    if not waiting or not found.missing:
        return found
    sent = _on_the_way(source, found.missing, waiting, window_s if every_play else None)
    return PlayDiff(
        [p for p in found.missing if p not in sent],
        found.source_plays,
        found.target_plays,
        found.matched,
        found.extra,
        len(sent),
    )


def _on_the_way(
    source: Sequence[Timed], missing: list[int], waiting: Sequence[Timed], window_s: float | None
) -> set[int]:
    """The *missing* source plays a *waiting* play stands for: the same item within the
    window (any time when *window_s* is None)."""
    index = time_index(waiting)
    return {p for p in missing if holds(index, source[p], window_s)}


def time_index(plays: Sequence[Timed]) -> dict[str, list[float]]:
    """Key → the times of the *plays* that have it (for :func:`holds`)."""
    index: dict[str, list[float]] = {}
    for play in plays:
        for key in play.keys:
            index.setdefault(key, []).append(play.at)
    return index


def holds(index: dict[str, list[float]], play: Timed, within_s: float | None) -> bool:
    """True when *index* (:func:`time_index`) has a play of *play*'s item at most *within_s*
    seconds from it (at any time when None)."""
    for key in play.keys:
        times = index.get(key)
        if times and (within_s is None or any(abs(t - play.at) <= within_s for t in times)):
            return True
    return False


def _kept(source: Sequence[Timed], positions: list[int], window_s: float) -> list[int]:
    """The positions of an item's plays left once repeats within the window are merged
    (each kept play is more than the window after the one kept before it), by time."""
    ordered = sorted(positions, key=lambda p: source[p].at)
    kept: list[int] = []
    last = float("-inf")
    for position in ordered:
        at = source[position].at
        if at - last > window_s:
            kept.append(position)
            last = at
    return kept


def _every_play(
    source: Sequence[Timed],
    members: list[list[int]],
    mapped: list[int | None],
    target_times: list[list[float]],
    target_plays: int,
    window_s: float,
    floor: float,
) -> PlayDiff:
    missing: list[int] = []
    by_target: dict[int, list[int]] = {}
    distinct = 0
    for group, positions in enumerate(members):
        kept = _kept(source, positions, window_s)
        distinct += len(kept)
        hit = mapped[group]
        if hit is None:
            missing.extend(kept)
        else:
            by_target.setdefault(hit, []).extend(kept)
    matched = 0
    extra = 0
    for hit, times in enumerate(target_times):
        wanted = by_target.get(hit)
        if not wanted:
            extra += sum(1 for t in times if t >= floor)
            continue
        wanted.sort(key=lambda p: source[p].at)
        j, used = 0, 0
        for position in wanted:
            at = source[position].at
            while j < len(times) and times[j] < at - window_s:
                extra += times[j] >= floor  # passed by: no later play can take it
                j += 1
            if j < len(times) and times[j] <= at + window_s:
                used += 1
                j += 1
            else:
                missing.append(position)
        extra += sum(1 for t in times[j:] if t >= floor)
        matched += used
    missing.sort()
    return PlayDiff(missing, distinct, target_plays, matched, extra)


def _one_state(
    source: Sequence[Timed],
    members: list[list[int]],
    mapped: list[int | None],
    target_times: list[list[float]],
    target_plays: int,
    window_s: float,
    floor: float,
) -> PlayDiff:
    missing: list[int] = []
    present: set[int] = set()
    matched = distinct = 0
    for group, positions in enumerate(members):
        plays = len(_kept(source, positions, window_s))
        distinct += plays
        hit = mapped[group]
        if hit is None:
            missing.append(max(positions, key=lambda p: source[p].at))
        else:
            present.add(hit)
            matched += plays
    extra = sum(
        sum(1 for t in times if t >= floor)
        for hit, times in enumerate(target_times)
        if hit not in present
    )
    missing.sort()
    return PlayDiff(missing, distinct, target_plays, matched, extra)


def diff_ratings(source: Sequence[Valued], target: Sequence[Valued]) -> RatingDiff:
    """Compare *source* ratings with *target* ratings (see the module docstring); of several
    source ratings of one item, each is compared (callers pass one per item)."""
    index: dict[str, int] = {}
    for position, rated in enumerate(target):
        for key in rated.keys:
            index.setdefault(key, position)
    send: list[int] = []
    missing = different = 0
    used: set[int] = set()
    for position, rated in enumerate(source):
        hit = next((index[k] for k in rated.keys if k in index), None)
        if hit is None:
            missing += 1
            send.append(position)
            continue
        used.add(hit)
        if target[hit].rating != rated.rating:
            different += 1
            send.append(position)
    # A target item rated twice under different keys counts once per entry.
    extra = sum(1 for position in range(len(target)) if position not in used)
    return RatingDiff(send, missing, different, extra)
