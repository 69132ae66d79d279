"""Wake-ups: which drainer loops have work, found with one query per poll for all of them.

A drainer runs one loop per kind of delivery (play, live, rating, watchlist) for each target
account it holds. Idle loops used to ask the outbox for their own next due time and be woken
by every new event: fine for a household's few accounts, but a relay replica holding 5,000
accounts asked 20,000 questions per poll, and 20,000 claims per webhook. Now an idle loop
waits on its own :class:`asyncio.Event`, and one poller per outbox sets the events of the
loops whose deliveries are due:

* every ``poll_s`` (the smallest any watcher asked for) it reads ``due_accounts`` (the earliest
  ``next_attempt_at`` per profile, provider and kind, from a partial index of pending and
  leased deliveries) and wakes the loops whose time has come; it sleeps less when a known due
  time (a retry's backoff, a lease's expiry) comes sooner;
* a loop that starts watching (an account just taken up) is looked up at once, in a query for
  its profile alone (those that start together share one query), so a taken-over account's
  queued plays go out without waiting for a poll;
* this process's own intake wakes just the accounts it gave deliveries to
  (:meth:`Wakeups.notify`).

Deliveries queued by another replica (PostgreSQL) are found by the poll, within ``poll_s``.
A wake-up is a hint: the loop's claim decides what there is to do, so a spurious one costs a
claim that finds nothing, and a missed one is made up by the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Final

import structlog

from crosswatchd.db import storage_errors

__all__ = ["DueRow", "Wakeups"]

log = structlog.get_logger(__name__)

#: ``(profile, provider, kind, due)``: the account's earliest due time of that kind (unix s).
DueRow = tuple[str, str, str, float]
#: ``async (profiles or None) -> rows``: the due times of these profiles' accounts (all: None).
DueFn = Callable[[Sequence[str] | None], Awaitable[Sequence[DueRow]]]

#: Loops that start watching within this long share one lookup (seconds).
_GATHER_S: Final = 0.02
#: The soonest the poller looks again for a due time it already knows (seconds).
_MIN_SLEEP_S: Final = 0.05


class Wakeups:
    """The wake-up events of one outbox's drainer loops, and the poller that sets them.

    *due* reads the due times (the outbox's ``due_accounts`` query); *unix_s* gives unix
    seconds. The poller runs while at least one loop watches; :meth:`close` ends it.
    """

    def __init__(self, due: DueFn, *, unix_s: Callable[[], float] = time.time) -> None:
        self._due = due
        self._unix_s = unix_s
        # (profile, provider) -> kind -> the events of the loops watching it
        self._watchers: dict[tuple[str, str], dict[str, set[asyncio.Event]]] = {}
        self._poll_s: dict[asyncio.Event, float] = {}
        self._keys: dict[asyncio.Event, tuple[tuple[str, str], str]] = {}
        self._fresh: set[str] = set()  # profiles whose new loops have not been looked up
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    # -- the loops' side ------------------------------------------------------------------------

    def watch(self, profile: str, provider: str, kind: str, *, poll_s: float) -> asyncio.Event:
        """An event set when (*profile*, *provider*)'s deliveries of *kind* may be due: at
        once if some are due now (looked up right away), then as they come due. The loop
        clears it before claiming and waits on it when idle; *poll_s* is the longest a due
        delivery may wait unnoticed (seconds)."""
        event = asyncio.Event()
        kinds = self._watchers.setdefault((profile, provider), {})
        kinds.setdefault(kind, set()).add(event)
        self._poll_s[event] = poll_s
        self._keys[event] = ((profile, provider), kind)
        self._fresh.add(profile)
        self._kick.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="outbox-wakeups")
        return event

    def unwatch(self, event: asyncio.Event) -> None:
        """Stop setting *event* (its loop ended)."""
        self._poll_s.pop(event, None)
        key = self._keys.pop(event, None)
        if key is None:
            return
        account, kind = key
        kinds = self._watchers[account]
        kinds[kind].discard(event)
        if not kinds[kind]:
            del kinds[kind]
            if not kinds:
                del self._watchers[account]

    def notify(self, accounts: Iterable[tuple[str, str]] | None = None) -> None:
        """Wake every loop of these ``(profile, provider)`` *accounts* (all loops: None):
        deliveries were just created for them in this process."""
        if accounts is None:
            for kinds in self._watchers.values():
                _set_all(kinds)
            return
        for account in set(accounts):
            watched = self._watchers.get(account)
            if watched is not None:
                _set_all(watched)

    async def close(self) -> None:
        """End the poller (the loops end on their own)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # -- the poller -----------------------------------------------------------------------------

    async def _run(self) -> None:
        next_poll = -math.inf  # monotonic time of the next full poll
        next_due = math.inf  # monotonic time of the soonest due time known
        while self._watchers:
            sleep_s = max(0.0, min(next_poll, next_due) - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), sleep_s)
            kicked = self._kick.is_set()
            if kicked:
                await asyncio.sleep(_GATHER_S)  # loops starting together: one lookup
                self._kick.clear()
            poll_s = min(self._poll_s.values(), default=5.0)
            now_m = time.monotonic()
            full = not kicked or now_m >= next_poll
            profiles = None if full else sorted(self._fresh)
            self._fresh.clear()
            try:
                rows = await self._due(profiles)
            except storage_errors() as exc:
                # The drainers' own claims report an outage; look again after a poll.
                if not self._failing:
                    log.warning("wakeups.storage_unavailable", error=type(exc).__name__)
                    self._failing = True
                next_poll, next_due = now_m + poll_s, math.inf
                continue
            self._failing = False
            soonest_m = now_m + max(_MIN_SLEEP_S, self._wake_due(rows))
            if full:
                next_poll, next_due = now_m + poll_s, soonest_m
            else:
                next_due = min(next_due, soonest_m)

    def _wake_due(self, rows: Sequence[DueRow]) -> float:
        """Set the events of the rows due now; seconds until the next known due time of a
        watched account (inf if none)."""
        now = self._unix_s()
        soonest = math.inf
        for profile, provider, kind, due in rows:
            kinds = self._watchers.get((profile, provider))
            if kinds is None or kind not in kinds:
                continue
            if due <= now:
                for event in kinds[kind]:
                    event.set()
            else:
                soonest = min(soonest, due - now)
        return soonest


def _set_all(kinds: dict[str, set[asyncio.Event]]) -> None:
    for events in kinds.values():
        for event in events:
            event.set()
