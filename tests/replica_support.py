"""Replicas in one test process: each :class:`Node` has its own connections to the shared
storage (its own PostgreSQL pool, or its own SQLite connections to the same files), its own
outbox, live household and :class:`~crosswatchd.replicas.Supervisor`, as a separate ``serve``
would. Clocks are injected and rounds are run by hand (``await node.tick()``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crosswatchd import postgres
from crosswatchd.config import Settings
from crosswatchd.db import Database
from crosswatchd.outbox import Outbox
from crosswatchd.profiles import Household, TargetAccount
from crosswatchd.ratelimit import Limiter
from crosswatchd.replicas import Identity, ReplicaStore, Supervisor, Timing
from crosswatchd.roster import LiveHousehold, ProfileStore
from crosswatchd.storage import PG_STORES

__all__ = ["TIMING", "Backend", "Node", "Work"]

#: Short, round times for tests on an injected clock.
TIMING = Timing(lease_s=30.0, heartbeat_s=1.0, live_s=3.0, send_window_s=5.0, stop_timeout_s=2.0)


@dataclass
class Backend:
    """Where the shared state lives: ``kind`` ``sqlite`` (files in ``root``) or
    ``postgresql`` (``url``)."""

    kind: str
    root: Path
    url: str = ""

    async def database(self) -> Database | None:
        """A new pool on the PostgreSQL database (None with SQLite: each store opens its file)."""
        if self.kind == "sqlite":
            return None
        return await postgres.connect(self.url, stores=PG_STORES)

    async def replica_store(self, db: Database | None, clock: Callable[[], float]) -> ReplicaStore:
        if db is None:
            return await ReplicaStore.open(self.root / "replicas.sqlite3", unix_s=clock)
        return ReplicaStore.on(db, unix_s=clock)

    async def roster(self, db: Database | None) -> ProfileStore:
        if db is None:
            return await ProfileStore.open(self.root / "profiles.sqlite3")
        return ProfileStore.on(db)

    async def outbox(
        self, db: Database | None, clock: Callable[[], float], household: Household
    ) -> Outbox:
        targets = {p.name: list(p.targets) for p in household.profiles}
        if db is None:
            return await Outbox.open(self.root / "outbox.sqlite3", targets=targets, unix_s=clock)
        return Outbox.on(db, targets=targets, unix_s=clock)


@dataclass
class Work:
    """A stand-in for the drainers: records which accounts run, and asks *on_stop* (if any)
    what it wants to check at the moment a drainer stops."""

    running: set[TargetAccount] = field(default_factory=set)
    log: list[tuple[str, TargetAccount]] = field(default_factory=list)
    on_stop: Callable[[TargetAccount], Any] | None = None

    async def __call__(self, account: TargetAccount, stop: asyncio.Event) -> None:
        self.running.add(account)
        self.log.append(("start", account))
        try:
            await stop.wait()
            if self.on_stop is not None:
                result = self.on_stop(account)
                if asyncio.iscoroutine(result):
                    await result
        finally:
            self.running.discard(account)
            self.log.append(("stop", account))


@dataclass
class Node:
    """One replica (see the module docstring)."""

    name: str
    db: Database | None
    store: ReplicaStore
    roster: ProfileStore
    outbox: Outbox
    household: LiveHousehold
    supervisor: Supervisor
    work: Work
    limiters: dict[TargetAccount, Limiter]
    closed: bool = False

    @classmethod
    async def make(
        cls,
        backend: Backend,
        name: str,
        settings: Settings,
        clock: Callable[[], float],
        *,
        shared: bool = True,
        timing: Timing = TIMING,
        limiter: Callable[[TargetAccount], Limiter] | None = None,
        work: Callable[[Node, TargetAccount, asyncio.Event], Awaitable[None]] | None = None,
    ) -> Node:
        """A replica called *name* on *clock* (unix and monotonic seconds: a
        :class:`~tests.clocks.Clock`, or ``time.time``). *limiter* makes an account's limiter
        (gated by the supervisor), made at once for every account of the household, as
        ``serve`` does; *work* (default: a :class:`Work` recorder) runs an account's drainer."""
        db = await backend.database()
        store = await backend.replica_store(db, clock)
        roster = await backend.roster(db)
        household = await LiveHousehold.load(settings, "secret", roster)
        outbox = await backend.outbox(db, clock, household.current)
        recorder = Work()
        limiters: dict[TargetAccount, Limiter] = {}

        def limiter_of(account: TargetAccount) -> Limiter | None:
            if limiter is None:
                return None
            if account not in limiters:
                limiters[account] = limiter(account)
                limiters[account].gate = supervisor.gate(account)
            return limiters[account]

        made: list[Node] = []

        async def run(account: TargetAccount, stop: asyncio.Event) -> None:
            assert work is not None
            await work(made[0], account, stop)

        supervisor = Supervisor(
            store=store,
            outbox=outbox,
            household=household,
            work=recorder if work is None else run,
            limiter_of=limiter_of,
            timing=timing,
            identity=Identity(name, "testhost", 1000 + len(name), clock()),
            shared=shared,
            providers=settings.providers(),
            monotonic_s=clock,
            unix_s=clock,
        )
        node = cls(name, db, store, roster, outbox, household, supervisor, recorder, limiters)
        made.append(node)
        for account in household.current.accounts():
            limiter_of(account)
        return node

    async def start(self) -> None:
        await self.supervisor.start(background=False)

    async def tick(self) -> None:
        await self.supervisor.tick()

    @property
    def held(self) -> list[TargetAccount]:
        return self.supervisor.held

    async def close(self, *, graceful: bool = True) -> None:
        """Stop (handing every lease back) when *graceful*; else just let go of the
        connections, as a killed process would (its leases stay until they expire). Closing
        again does nothing."""
        if self.closed:
            return
        self.closed = True
        if graceful:
            await self.supervisor.stop()
        else:
            for running in list(self.supervisor._running.values()):  # a "kill": no stop
                running.task.cancel()
                await asyncio.gather(running.task, return_exceptions=True)
        await self.outbox.close()
        await self.roster.close()
        await self.store.close()
        if self.db is not None:
            await self.db.close()
