"""The supervisor inside ``serve``: this replica's share of the target accounts, and a drainer
for each account it holds.

Every ``heartbeat_s`` (:class:`Timing`) it:

1. beats and renews its leases (one transaction); a lease it held and could not renew is lost:
   its drainer is stopped at once (its sends were already refused by the gate). Renewals also
   run on their own every ``heartbeat_s``, so a long round never lets the leases run out;
2. reloads the household if the roster changed (``crosswatchd profile add|remove``);
3. computes its share (:func:`crosswatchd.replicas.balance.plan`) and releases what is over
   it — gracefully: the account's drainer stops first (finishing what it is sending), then
   the account's deliveries still leased are made due and the lease is handed back with the
   limiter's state, so the next holder starts at once — and takes free or expired leases up
   to it: the limiter state travels with the lease (:meth:`~crosswatchd.ratelimit.Limiter.
   restore`), the plays the account missed are adopted, and its drainer starts at once (a
   drainer's first step is a claim: no waiting for a poll);
4. saves the limiter state of the accounts it holds, when it moved.

It sleeps less than ``heartbeat_s`` when a lease it wants expires sooner (a dead replica's),
so a dead replica's accounts are taken within ``lease_s`` plus a few seconds of its death.

**The gate.** Each account's limiter awaits :meth:`Supervisor.gate` before every write (token
refreshes included) leaves: the lease must be held, by this process's monotonic clock, for at
least ``send_window_s`` more (the request timeout plus a margin: a send that starts may finish
before anyone else could take the lease), and, with a shared database, the lease row must say
so too (one read). Otherwise :class:`~crosswatchd.errors.LeaseLostError` stops the write and
the drainer ends. So a replica that lost a lease sends nothing more for the account, and a
replica that cannot reach the database stops sending before its leases can expire.

With SQLite (one daemon per data dir) the same supervisor holds every account: at start the
leases an earlier process left are freed at once (:meth:`ReplicaStore.reset`), and the limiter
states it saved are taken up, so a restart keeps a ``Retry-After`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from typing import Any, Final

import structlog

from crosswatchd.config import DeliverySettings
from crosswatchd.db import storage_errors
from crosswatchd.errors import LeaseLostError
from crosswatchd.outbox import Outbox
from crosswatchd.profiles import Household, Profile, TargetAccount
from crosswatchd.ratelimit import Gate, Limiter
from crosswatchd.replicas.balance import plan
from crosswatchd.replicas.store import ReplicaStore
from crosswatchd.roster import LiveHousehold

__all__ = ["AccountWork", "Identity", "Supervisor", "Timing", "anchor_of"]

log = structlog.get_logger(__name__)

#: ``async (account, stop)``: run the account's drainer until *stop* is set.
AccountWork = Callable[[TargetAccount, asyncio.Event], Coroutine[Any, Any, None]]

#: Removed profiles with deliveries still queued are looked for this often (seconds).
_QUEUED_EVERY_S: Final = 30.0
#: With a shared database, a replica's first round waits this long (at most a heartbeat) for
#: replicas started with it to register (seconds).
_SETTLE_S: Final = 2.0
#: Limiter states saved per transaction (a relay replica saves thousands after taking them).
_WRITE_CHUNK: Final = 250
#: Up to this many accounts taken in one round are logged one by one (more: one line).
_LOG_EACH: Final = 20
#: Replicas silent (and holding nothing) this long are forgotten (seconds).
_PRUNE_AFTER_S: Final = 3600.0


@dataclass(frozen=True, slots=True)
class Timing:
    """The supervisor's times, in seconds: ``lease_s`` (an account lease lasts this long past
    each renewal), ``heartbeat_s`` (how often it beats and renews), ``live_s`` (a replica
    whose heartbeat is older is not counted when sharing out), ``send_window_s`` (a write
    leaves only while the lease is held for at least this long), ``stop_timeout_s`` (how long
    a drainer may take to stop before it is cancelled)."""

    lease_s: float
    heartbeat_s: float
    live_s: float
    send_window_s: float
    stop_timeout_s: float = 4.0

    @classmethod
    def of(cls, delivery: DeliverySettings) -> Timing:
        """The times for *delivery* settings: account leases last ``lease_s`` (as claimed
        deliveries do, so a dead replica's accounts and its claims come free together),
        renewed every ``lease_s / 12`` (0.5-5 s); a write needs ``timeout_s`` + 2 s of lease
        left (at most half the lease)."""
        heartbeat_s = min(5.0, max(0.5, delivery.lease_s / 12))
        return cls(
            lease_s=delivery.lease_s,
            heartbeat_s=heartbeat_s,
            live_s=3 * heartbeat_s,
            send_window_s=min(delivery.timeout_s + 2.0, delivery.lease_s / 2),
        )


@dataclass(frozen=True, slots=True)
class Identity:
    """Who this replica is: ``id`` (``host:pid:random``), host name, PID, start (unix s)."""

    id: str
    host: str
    pid: int
    started_at: float

    @classmethod
    def here(cls, unix_s: Callable[[], float] = time.time) -> Identity:
        host = socket.gethostname()
        pid = os.getpid()
        return cls(f"{host}:{pid}:{secrets.token_hex(3)}", host, pid, unix_s())


def anchor_of(profile: Profile) -> TargetAccount | None:
    """The account whose holder runs *profile*'s watchlist work (the pass, the Plex watchlist
    drainer): its Trakt account when it has one (the pass may refresh its rotating token,
    which only the holder may do), else its first target; None without targets."""
    if not profile.targets:
        return None
    provider = "trakt" if "trakt" in profile.targets else profile.targets[0]
    return TargetAccount(profile.name, provider)


@dataclass(slots=True)
class _Running:
    task: asyncio.Task[None]
    stop: asyncio.Event


class Supervisor:
    """Holds this replica's share of the target accounts and runs their drainers.

    *store* keeps the leases; *outbox* is asked to release an account's leased deliveries and
    to adopt plays for an account taken up, and its targets follow the household; *household*
    is the live household (refreshed here); *work* runs one account's drainer; *limiter_of*
    gives an account's limiter (its state travels with the lease; None: nothing to carry);
    *providers* are the configured providers (a removed profile's queued deliveries to
    another are not taken up); *shared* is True with PostgreSQL (other replicas exist).
    Clocks are injected: ``monotonic_s`` for lease validity, ``unix_s`` for the store (give
    the store the same one).
    """

    def __init__(
        self,
        *,
        store: ReplicaStore,
        outbox: Outbox,
        household: LiveHousehold,
        work: AccountWork,
        limiter_of: Callable[[TargetAccount], Limiter | None],
        timing: Timing,
        identity: Identity,
        shared: bool,
        providers: Collection[str],
        monotonic_s: Callable[[], float] = time.monotonic,
        unix_s: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._household = household
        self._work = work
        self._limiter_of = limiter_of
        self.timing = timing
        self.identity = identity
        self._shared = shared
        self._providers = set(providers)
        self._monotonic_s = monotonic_s
        self._unix_s = unix_s
        self._held: dict[TargetAccount, float] = {}  # account -> lease valid until (monotonic)
        self._since: dict[TargetAccount, float] = {}  # account -> taken at (monotonic)
        self._releasing: set[TargetAccount] = set()  # being handed back right now
        self._renewer: asyncio.Task[None] | None = None
        # One lease write at a time: the renewals and the round's writes touch the same rows
        # (in different orders), and two transactions of this replica must never deadlock.
        self._writing = asyncio.Lock()
        self._running: dict[TargetAccount, _Running] = {}
        self._saved: dict[TargetAccount, Any] = {}  # the limiter state saved last
        self._ensured: set[TargetAccount] = set()
        self._household_accounts: set[TargetAccount] = set()
        self._to_adopt: set[TargetAccount] = set()
        self._queued: set[TargetAccount] = set()
        self._queued_at: float | None = None
        self._wake_in_s = timing.heartbeat_s
        self._last_prune: float | None = None
        self._failing = False
        self._stop = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._log = log.bind(replica=identity.id)
        household.listeners.append(self._household_changed)

    @property
    def id(self) -> str:
        return self.identity.id

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, *, background: bool = True) -> None:
        """Register, take this replica's share (its drainers start), and keep going in the
        background until :meth:`stop` (without *background*, the caller calls :meth:`tick`:
        tests on an injected clock). The share is taken now, or with a shared database after
        up to 2 s, when replicas started at the same moment have registered too. Raises
        what the store raises at start."""
        if not self._shared:
            await self._store.reset()
        await self._store.register(
            self.id,
            host=self.identity.host,
            pid=self.identity.pid,
            started_at=self.identity.started_at,
        )
        self._log.info("replica.started", host=self.identity.host, pid=self.identity.pid)
        if background:  # already during the first round, which may take thousands of accounts
            self._renewer = asyncio.create_task(self._renew_forever(), name="replica-renewals")
        if background and self._shared:
            # Replicas started together (a deploy) are all registered by the first round and
            # share out at once, instead of the first one taking every account and handing
            # most of them back a round later.
            self._wake_in_s = min(self.timing.heartbeat_s, _SETTLE_S)
        else:
            await self.tick()
        if background:
            self._loop = asyncio.create_task(self._run(), name="replica-supervisor")

    async def stop(self) -> None:
        """Stop the drainers (they finish what they are sending), hand every lease back with
        its limiter state and its account's leased deliveries made due, and deregister."""
        self._stop.set()
        for task in (self._loop, self._renewer):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        running, self._running = self._running, {}
        ended = await asyncio.gather(*(self._end(r) for r in running.values()))
        clean = {a for a, ok in zip(running, ended, strict=True) if ok}
        try:
            await self._hand_back(
                sorted(self._held, key=str),
                clean={a for a in self._held if a not in running} | clean,
            )
            await self._store.deregister(self.id)
        except storage_errors() as exc:
            self._log.warning(
                "replica.stop_unclean",
                error=f"{type(exc).__name__}: {exc}",
                hint="its leases expire by themselves (delivery.lease_s)",
            )
        self._held.clear()
        self._log.info("replica.stopped")

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._wake_in_s)
            if self._stop.is_set():
                return
            try:
                await self.tick()
            except Exception:  # defensive: a bug must not end the supervisor for good
                self._log.exception("replica.tick_crashed")
                self._wake_in_s = self.timing.heartbeat_s

    # -- one round ---------------------------------------------------------------------------

    async def tick(self) -> None:
        """One round (see the module docstring). A database that cannot be reached is logged
        once; the round ends there and the next one tries again."""
        self._wake_in_s = self.timing.heartbeat_s
        try:
            await self._round()
        except storage_errors() as exc:
            if not self._failing:
                self._log.error(
                    "replica.storage_unavailable",
                    error=f"{type(exc).__name__}: {exc}",
                    held=len(self._held),
                    hint="sends stop before the leases could expire; retrying",
                )
                self._failing = True
            self._wake_in_s = min(self.timing.heartbeat_s, 1.0)
            await self._keep_tasks()
            return
        if self._failing:
            self._log.info("replica.storage_recovered", held=len(self._held))
            self._failing = False

    async def _renew(self) -> None:
        """Beat and renew every lease held (one statement). A lease held since before the
        beat and not renewed was lost; one taken or handed back meanwhile is left alone."""
        began = self._monotonic_s()
        async with self._writing:
            renewed = await self._store.heartbeat(
                self.id,
                lease_s=self.timing.lease_s,
                host=self.identity.host,
                pid=self.identity.pid,
                started_at=self.identity.started_at,
            )
        await self._lost(
            [a for a in self._held if a not in renewed and self._since.get(a, began) < began],
            "the lease expired before it could be renewed",
        )
        for account in renewed:
            if account not in self._releasing:
                self._held[account] = began + self.timing.lease_s
                self._since.setdefault(account, began)

    async def _renew_forever(self) -> None:
        """Renewals on their own, every ``heartbeat_s``: a long round (thousands of accounts
        taken or handed over, a slow database) never lets the leases it holds run out."""
        failing = False
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.timing.heartbeat_s)
            if self._stop.is_set():
                return
            try:
                await self._renew()
            except storage_errors() as exc:
                if not failing:  # the round says so too; sends stop before leases expire
                    self._log.warning("replica.renew_failed", error=type(exc).__name__)
                failing = True
            except Exception:  # defensive: a bug must not end renewals for good
                self._log.exception("replica.renew_crashed")
            else:
                failing = False

    async def _round(self) -> None:
        began = self._monotonic_s()
        phases: dict[str, float] = {}
        mark = began

        def lap(name: str) -> None:
            nonlocal mark
            now_m = self._monotonic_s()
            phases[name] = round(now_m - mark, 3)
            mark = now_m

        await self._renew()
        lap("renew")
        await self._household.refresh()
        wanted = await self._wanted()
        lap("household")
        fresh = [a for a in wanted if a not in self._ensured]
        if fresh:
            await self._store.ensure(fresh)
            self._ensured.update(fresh)
        now = self._unix_s()
        live = {
            r.id for r in await self._store.replicas() if r.heartbeat_at > now - self.timing.live_s
        }
        leases = await self._store.leases()
        todo = plan(self.id, live, wanted, leases, now)
        lap("plan")
        await self._release(todo.release)
        lap("release")
        held = todo.held
        candidates = list(todo.acquire)
        while held < todo.share and candidates:
            batch, candidates = candidates[: todo.share - held], candidates[todo.share - held :]
            held += await self._acquire(batch)
        if held < todo.share:
            # Wake when the first lease we could take expires (a dead replica's).
            wanted_set = set(wanted)
            ends = [
                row.expires_at
                for account, row in leases.items()
                if account in wanted_set and row.holder not in (None, self.id)
            ]
            soonest = min((end - now for end in ends if end > now), default=None)
            if soonest is not None:
                self._wake_in_s = max(0.05, min(self._wake_in_s, soonest + 0.05))
        lap("acquire")
        await self._adopt()
        lap("adopt")
        await self._keep_tasks()
        await self._save_states()
        lap("save")
        if self._last_prune is None or began - self._last_prune > 60.0:
            self._last_prune = began
            await self._store.prune(max(_PRUNE_AFTER_S, 10 * self.timing.lease_s))
        took_s = self._monotonic_s() - began
        if took_s > self.timing.send_window_s / 2:
            # Renewals go on meanwhile, but a round this slow delays hand-overs: say where.
            self._log.warning("replica.round_slow", took_s=round(took_s, 1), **phases)

    async def _wanted(self) -> list[TargetAccount]:
        """The household's accounts, and those of removed profiles with deliveries queued."""
        household = self._household.current
        accounts = set(household.accounts())
        self._household_accounts = accounts
        now = self._monotonic_s()
        if self._queued_at is None or now - self._queued_at >= _QUEUED_EVERY_S:
            names = set(household.names())
            self._queued = {
                TargetAccount(profile, provider)
                for profile, provider in await self._outbox.queued_accounts()
                if profile not in names and provider in self._providers
            }
            self._queued_at = now
        return sorted(accounts | self._queued, key=str)

    def _household_changed(self, household: Household) -> None:
        """The roster changed: new events fan out to the new household's targets, and removed
        profiles' queues are looked for in this round."""
        self._outbox.set_targets(household.targets())
        self._queued_at = None

    # -- taking and handing back -------------------------------------------------------------

    async def _acquire(self, accounts: list[TargetAccount]) -> int:
        """Take what is free of *accounts* (one statement); their drainers start at once
        (a drainer first looks for due deliveries: no waiting for a poll). Returns how many
        were taken."""
        began = self._monotonic_s()
        async with self._writing:
            taken = await self._store.acquire_many(self.id, accounts, lease_s=self.timing.lease_s)
        for got in taken:
            account = got.account
            self._held[account] = began + self.timing.lease_s
            self._since[account] = began
            limiter = self._limiter_of(account)
            if limiter is not None and got.limiter_state is not None:
                limiter.restore(got.limiter_state)
            if account in self._household_accounts:
                self._to_adopt.add(account)
            self._start(account)
        if len(taken) <= _LOG_EACH:
            for got in taken:
                self._log.info(
                    "account.acquired",
                    account=str(got.account),
                    taken_from=got.previous_holder,
                    limiter_state=got.limiter_state is not None,
                )
        else:
            self._log.info(
                "accounts.acquired",
                accounts=len(taken),
                taken_from=dict(Counter(g.previous_holder or "free" for g in taken)),
                limiter_states=sum(g.limiter_state is not None for g in taken),
            )
        return len(taken)

    async def _release(self, accounts: Collection[TargetAccount]) -> None:
        """Hand *accounts* over: their drainers stop first (together), then the leases go
        back (one transaction)."""
        if not accounts:
            return
        running = {a: r for a in accounts if (r := self._running.pop(a, None)) is not None}
        ended = await asyncio.gather(*(self._end(r) for r in running.values()))
        unclean = {a for a, ok in zip(running, ended, strict=True) if not ok}
        await self._hand_back(accounts, clean=[a for a in accounts if a not in unclean])

    async def _hand_back(
        self, accounts: Collection[TargetAccount], *, clean: Collection[TargetAccount]
    ) -> None:
        """Release *accounts* (their drainers stopped), each with its limiter's state. The
        deliveries still leased are made due at once only for the *clean* ones, whose drainer
        ended by itself: one cancelled mid-send may still be talking to the service (then they
        wait out their lease, and the next holder looks them up in the history first)."""
        if not accounts:
            return
        states: dict[TargetAccount, dict[str, Any] | None] = {}
        for account in accounts:
            limiter = self._limiter_of(account)
            states[account] = None if limiter is None else limiter.snapshot()
        self._releasing.update(accounts)
        try:
            freed = await self._outbox.release_accounts(
                (a.profile, a.provider) for a in accounts if a in clean
            )
            async with self._writing:
                released = await self._store.release_many(self.id, states)
        finally:
            for account in accounts:
                self._forget(account)
            self._releasing.difference_update(accounts)
        if len(accounts) == 1:
            self._log.info(
                "account.released",
                account=str(next(iter(accounts))),
                deliveries_freed=freed,
                held=bool(released),
            )
        else:
            self._log.info("accounts.released", accounts=released, deliveries_freed=freed)

    async def _lost(self, accounts: Collection[TargetAccount], reason: str) -> None:
        """*accounts*' leases are no longer ours: their drainers stop at once (together)."""
        if not accounts:
            return
        running = []
        for account in accounts:
            self._forget(account)
            if (r := self._running.pop(account, None)) is not None:
                running.append(r)
        if len(accounts) <= _LOG_EACH:
            for account in accounts:
                self._log.warning("account.lost", account=str(account), reason=reason)
        else:
            self._log.warning("accounts.lost", accounts=len(accounts), reason=reason)
        await asyncio.gather(*(self._end(r) for r in running))

    def _forget(self, account: TargetAccount) -> None:
        """*account* is not held any more (handed back or lost): drop what was kept for it."""
        self._held.pop(account, None)
        self._since.pop(account, None)
        self._saved.pop(account, None)
        self._to_adopt.discard(account)

    async def _adopt(self) -> None:
        """Plays stored before an account taken up was a target (a profile just added)."""
        if not self._to_adopt:
            return
        accounts = sorted(self._to_adopt, key=str)
        created = await self._outbox.adopt_targets((a.profile, a.provider) for a in accounts)
        self._to_adopt.difference_update(accounts)
        if created:
            self._log.info("accounts.adopted_plays", accounts=len(accounts), plays=created)

    # -- drainers ----------------------------------------------------------------------------

    def _start(self, account: TargetAccount) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(self._work(account, stop), name=f"drain-{account}")
        self._running[account] = _Running(task, stop)

    async def _end(self, running: _Running) -> bool:
        """Stop a drainer; True when it ended by itself within ``stop_timeout_s``."""
        running.stop.set()
        done, _ = await asyncio.wait({running.task}, timeout=self.timing.stop_timeout_s)
        if not done:
            running.task.cancel()
            await asyncio.gather(running.task, return_exceptions=True)
            return False
        if not running.task.cancelled() and running.task.exception() is not None:
            self._log.error("drain.ended", error=repr(running.task.exception()))
        return True

    async def _keep_tasks(self) -> None:
        """A drainer for every account held (again after it ended: a lost lease that came
        back, a crash), none for the others."""
        now = self._monotonic_s()
        for account, until in list(self._held.items()):
            running = self._running.get(account)
            if until - now < self.timing.send_window_s:
                continue  # not renewed lately: its sends would be refused anyway
            if running is None or running.task.done():
                if running is not None and not running.task.cancelled():
                    exc = running.task.exception()
                    if exc is not None:
                        self._log.error("drain.ended", account=str(account), error=repr(exc))
                self._start(account)
        for account in [a for a in self._running if a not in self._held]:
            await self._end(self._running.pop(account))

    # -- limiter state -----------------------------------------------------------------------

    async def _save_states(self) -> None:
        changed: dict[TargetAccount, dict[str, Any]] = {}
        for account in self._held:
            limiter = self._limiter_of(account)
            if limiter is None:
                continue
            snapshot = limiter.snapshot()
            if snapshot["buckets"] != self._saved.get(account):
                changed[account] = snapshot
        items = list(changed.items())
        for start in range(0, len(items), _WRITE_CHUNK):
            chunk = dict(items[start : start + _WRITE_CHUNK])
            async with self._writing:  # chunks: the renewals get their turn in between
                await self._store.save_states(self.id, chunk)
            for account, snapshot in chunk.items():
                self._saved[account] = snapshot["buckets"]

    # -- what the rest of the daemon asks ----------------------------------------------------

    def holds(self, account: TargetAccount) -> bool:
        """True while this replica holds *account* (by its own clock)."""
        until = self._held.get(account)
        return until is not None and until > self._monotonic_s()

    @property
    def held(self) -> list[TargetAccount]:
        """The accounts held now, sorted."""
        return sorted((a for a in self._held if self.holds(a)), key=str)

    def gate(self, account: TargetAccount) -> Gate:
        """The check *account*'s limiter awaits before each write (module docstring)."""

        async def check() -> None:
            until = self._held.get(account)
            left_s = float("-inf") if until is None else until - self._monotonic_s()
            if left_s < self.timing.send_window_s:
                raise LeaseLostError(
                    account,
                    "this replica does not hold the account's lease (or could not renew it"
                    " lately): not sending",
                )
            if not self._shared:
                return
            try:
                held = await self._store.holds(self.id, account, for_s=self.timing.send_window_s)
            except storage_errors() as exc:
                raise LeaseLostError(
                    account, f"cannot confirm the lease (database: {type(exc).__name__})"
                ) from None
            if not held:
                self._held.pop(account, None)
                raise LeaseLostError(account, "another replica holds the account's lease now")

        return check
