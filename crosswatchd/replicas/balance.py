"""How the target accounts are shared out among live replicas: a pure function of what every
replica can read (the live replicas, the accounts wanted, the lease rows), so each computes
the same shares without talking to the others.

Shares are exact: with N accounts and k live replicas, sorted by id, the first ``N mod k``
replicas hold ``N // k + 1`` accounts and the others ``N // k`` (:func:`quotas`). A replica
over its share releases the excess (gracefully: its drainer stops first); a replica under it
takes free or expired leases up to it. When a replica joins, the others are over their new
share and hand accounts over; when one leaves (stops, or its heartbeat goes silent), the
others' shares grow and they take its accounts as its leases are released or expire. An
account's siblings (the same profile's other accounts) are kept together where the shares
allow, so a profile's watchlist pass and its accounts tend to live in one replica.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from crosswatchd.profiles import TargetAccount
from crosswatchd.replicas.store import LeaseRow

__all__ = ["Plan", "plan", "quotas"]


def quotas(replicas: Collection[str], accounts: int) -> dict[str, int]:
    """Each replica's share of *accounts*: exact, the larger shares to the first ids."""
    ordered = sorted(replicas)
    if not ordered:
        return {}
    base, extra = divmod(accounts, len(ordered))
    return {rid: base + (1 if index < extra else 0) for index, rid in enumerate(ordered)}


@dataclass(frozen=True, slots=True)
class Plan:
    """What one replica does now: ``release`` (held accounts over its share, or no longer
    wanted) and ``acquire`` (every free account, in the order to try them; the replica stops
    once it holds its share: another replica may take some first); ``share`` is its share of
    the wanted accounts and ``held`` how many of them it holds once the release is done."""

    share: int
    held: int
    release: tuple[TargetAccount, ...]
    acquire: tuple[TargetAccount, ...]


def plan(
    me: str,
    live: Collection[str],
    wanted: Sequence[TargetAccount],
    leases: Mapping[TargetAccount, LeaseRow],
    now_s: float,
) -> Plan:
    """The plan of replica *me*, given the *live* replicas (``me`` counts, listed or not),
    the accounts *wanted* (the household's, and those of removed profiles with plays still
    queued), the lease rows and the time (unix seconds)."""
    wanted_set = set(wanted)
    share = quotas({*live, me}, len(wanted_set))[me]
    mine = {a for a, row in leases.items() if row.holder == me and row.held_at(now_s)}
    unwanted = sorted(mine - wanted_set, key=_key)
    held = mine & wanted_set
    my_profiles = [a.profile for a in held]

    def siblings(account: TargetAccount) -> int:
        return my_profiles.count(account.profile)

    release: list[TargetAccount] = []
    acquire: list[TargetAccount] = []
    if len(held) > share:
        # Give up the accounts with the fewest siblings here first: profiles stay together.
        ordered = sorted(held, key=lambda a: (siblings(a), _key(a)))
        release = ordered[: len(held) - share]
    elif len(held) < share:
        free = sorted(
            (a for a in wanted_set if (row := leases.get(a)) is None or not row.held_at(now_s)),
            key=_key,
        )
        # Replicas starting together would all try the same accounts first: each starts at
        # its own place in the list (by its rank among the live replicas).
        ranked = sorted({*live, me})
        offset = ranked.index(me) * len(free) // len(ranked)
        place = {a: (i - offset) % len(free) for i, a in enumerate(free)}
        acquire = sorted(free, key=lambda a: (-siblings(a), place[a]))
    return Plan(share, min(len(held), share), (*unwanted, *release), tuple(acquire))


def _key(account: TargetAccount) -> tuple[str, str]:
    return (account.profile, account.provider)
