"""The watchlist planner, pure: from each side's list now and at the last pass, and what the
outbox still holds for it, the additions and removals to queue. No I/O here.

Sides are ``plex`` (the source) and each target (``trakt``, ``simkl``). Per side:

- ``before``: the last synced state, what the side held at its last read, less the items our
  removals took off since (so our own removal never reads as the side's). Items we *added*
  since are not counted: if one is missing at the next read, it is not taken for the side's
  removal (an addition that did not stick must never delete an item everywhere else);
- ``now``: what it holds now (identified items only);
- ``changes``: the latest change queued for each item that has not landed (waiting, parked,
  given up) or that the target deliberately kept unapplied (SIMKL holds it in another list);
- ``watched``: identity keys of items played since the side's last read: a target that drops
  such an item did so because it was watched (Trakt's auto removal; SIMKL moves it out of
  Plan to Watch), which is not a removal to copy.

A side *added* an item when it holds it now and did not before; it *removed* one it held before
and does not now (watched ones excepted). A removal queued earlier that has not landed yet
(waiting, parked) is a removal *on its way*. Then, per item:

- mode ``"plex"``: held by Plex → every target gets it; removed by Plex (now, or on its way)
  → every target loses it; held by targets only → left alone (``extra``). Nothing is written
  to Plex; targets' additions and removals are not copied.
- mode ``"two-way"``: removed by any side → every side loses it (a removal wins: a side that
  still held it does not bring it back); else added afresh by a side → every side gets it (a
  new addition beats an older removal still on its way); else a removal on its way → it goes
  on; else held by any side, or on its way to one → every side gets it.

A change is queued for a side only when the side needs it and the outbox does not already hold
the same change waiting, kept, or parked for a reason a retry will not cure (``not_found``,
``unresolved``). An addition refused because the list is full (parked ``rejected``) is queued
again: a later pass tries it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from crosswatchd.models import Action, Item
from crosswatchd.outbox import ReasonKind, WatchlistChange
from crosswatchd.watchlist.items import Groups, identity_keys, merged

__all__ = ["PLEX", "Mode", "Plan", "Planned", "Side", "plan", "vanished"]

#: The source side's name (also the outbox provider of the Plex watchlist).
PLEX: Final = "plex"
Mode = Literal["plex", "two-way"]

#: Parked for a reason a new try will not cure: the item waits for the user instead.
_WAITS_FOR_USER: Final = frozenset({ReasonKind.NOT_FOUND, ReasonKind.UNRESOLVED})


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a pass (the module docstring says what each field holds)."""

    name: str
    before: Sequence[Item]
    now: Sequence[Item]
    changes: Sequence[WatchlistChange] = ()
    watched: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Planned:
    """A change to queue: *action* (WATCHLIST_ADD or WATCHLIST_REMOVE) of *item* on *side*."""

    side: str
    action: Action
    item: Item


@dataclass
class Plan:
    """What a pass queues (``changes``), and what it found: per side the items only on that
    target that mode ``"plex"`` leaves alone (``extra``), and the additions and removals each
    side made since the last pass (``added_by``, ``removed_by``; for the logs)."""

    changes: list[Planned] = field(default_factory=list)
    extra: dict[str, int] = field(default_factory=dict)
    added_by: dict[str, int] = field(default_factory=dict)
    removed_by: dict[str, int] = field(default_factory=dict)

    def count(self, side: str, action: Action) -> int:
        """How many changes of *action* this plan queues for *side*."""
        return sum(1 for c in self.changes if c.side == side and c.action is action)


@dataclass
class _Entry:
    """One item group on one side."""

    before: Item | None = None
    now: Item | None = None
    change: WatchlistChange | None = None


def vanished(before: Iterable[Item], now: Iterable[Item]) -> list[Item]:
    """The items of *before* that share no identity key with any item of *now*: the
    candidates of a side's removals (the caller then looks for their plays)."""
    present = {key for item in now for key in identity_keys(item)}
    return [item for item in before if not identity_keys(item) & present]


def plan(mode: Mode, sides: Sequence[Side]) -> Plan:
    """The changes that bring *sides* in step under *mode* (the module docstring's rules).
    One of *sides* must be :data:`PLEX`. Deterministic: changes come in the order the
    groups were first seen (Plex's list first)."""
    if not any(s.name == PLEX for s in sides):
        raise ValueError("a watchlist plan needs the plex side")
    groups = Groups()
    for side in sides:
        for item in (*side.now, *side.before, *(c.item for c in side.changes)):
            groups.add(identity_keys(item))
    table: dict[str, dict[str, _Entry]] = {}
    for side in sides:
        for slot, items in (("now", side.now), ("before", side.before)):
            for item in items:
                group = groups.group_of(identity_keys(item))
                if group is not None:
                    entry = table.setdefault(group, {}).setdefault(side.name, _Entry())
                    if getattr(entry, slot) is None:
                        setattr(entry, slot, item)
        for change in side.changes:
            group = groups.group_of(identity_keys(change.item))
            if group is not None:
                entry = table.setdefault(group, {}).setdefault(side.name, _Entry())
                if entry.change is None or change.occurred_at > entry.change.occurred_at:
                    entry.change = change
    result = Plan()
    by_name = {s.name: s for s in sides}
    for entries in table.values():
        _decide(mode, by_name, entries, result)
    return result


def _decide(mode: Mode, sides: dict[str, Side], entries: dict[str, _Entry], out: Plan) -> None:
    def entry(name: str) -> _Entry:
        return entries.get(name) or _Entry()

    added = [n for n, e in entries.items() if e.now is not None and e.before is None]
    removed = [
        n
        for n, e in entries.items()
        if e.before is not None
        and e.now is None
        and not (n != PLEX and identity_keys(e.before) & sides[n].watched)
    ]
    for name in added:
        out.added_by[name] = out.added_by.get(name, 0) + 1
    for name in removed:
        out.removed_by[name] = out.removed_by.get(name, 0) + 1
    targets = [n for n in sides if n != PLEX]
    writable = [*targets, PLEX] if mode == "two-way" else targets
    removing = any(_unlanded(e.change, Action.WATCHLIST_REMOVE) for e in entries.values())
    want: bool | None = None
    if mode == "plex":
        if entry(PLEX).now is not None:
            want = True
        elif PLEX in removed or removing:
            want = False
        else:
            for name in targets:
                if entry(name).now is not None:
                    out.extra[name] = out.extra.get(name, 0) + 1
    elif removed:
        want = False  # a removal wins over every side that still holds the item
    elif added:
        want = True  # a fresh addition wins over an older removal still on its way
    elif removing:
        want = False
    elif any(
        e.now is not None or _unlanded(e.change, Action.WATCHLIST_ADD) for e in entries.values()
    ):
        want = True
    if want is None:
        return
    holders = [e.now for e in (entry(PLEX), *(entry(n) for n in targets)) if e.now is not None]
    if not holders:  # only on its way somewhere: send what that change carries
        holders = [
            e.change.item
            for e in entries.values()
            if e.change is not None and _unlanded(e.change, Action.WATCHLIST_ADD)
        ]
    for name in writable:
        e = entry(name)
        if want:
            # Missing, or held but with our removal on its way (the addition supersedes it).
            lacks = e.now is None or _unlanded(e.change, Action.WATCHLIST_REMOVE)
            if lacks and holders and _needs(e.change, Action.WATCHLIST_ADD):
                out.changes.append(Planned(name, Action.WATCHLIST_ADD, merged(holders)))
            continue
        held = e.now or (
            e.change.item if _unlanded(e.change, Action.WATCHLIST_ADD) and e.change else None
        )
        if held is not None and _needs(e.change, Action.WATCHLIST_REMOVE):
            out.changes.append(Planned(name, Action.WATCHLIST_REMOVE, held))


def _unlanded(change: WatchlistChange | None, action: Action) -> bool:
    """True for a change of *action* that has not landed: waiting, parked or given up."""
    return change is not None and change.action is action and (change.waiting or change.held_back)


def _needs(change: WatchlistChange | None, action: Action) -> bool:
    """Whether *action* must be queued, given the latest change the outbox holds for the
    item on that side: not when the same change is waiting, was kept unapplied, or is parked
    for a reason a retry will not cure; yes otherwise (a full list's refusal is tried again)."""
    if change is None or change.action is not action:
        return True
    if change.waiting or change.kept:
        return False
    if change.held_back:
        return change.reason_kind not in _WAITS_FOR_USER
    return True  # applied earlier, and the side does not hold what it should: again
