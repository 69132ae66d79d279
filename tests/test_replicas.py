"""Replicas sharing the target accounts: the lease store, the exact shares, and the supervisor
taking, renewing, handing over and losing leases, on SQLite and on PostgreSQL.

Replicas run in the test's process (tests/replica_support.py: each with its own connections,
as separate processes would have), on one injected clock (unix and monotonic seconds), their
rounds run by hand. The drainers are stand-ins that record when they run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crosswatchd.config import Settings
from crosswatchd.errors import LeaseLostError
from crosswatchd.profiles import StoredProfile, TargetAccount
from crosswatchd.ratelimit import Limiter
from crosswatchd.replicas import ReplicaStore, plan, quotas
from crosswatchd.replicas.store import LeaseRow
from tests.backends import BACKENDS
from tests.clocks import Clock
from tests.replica_support import TIMING, Backend, Node

T0 = 1_700_000_000.0
NAMES = ["ann", "ben", "cat", "dan", "eve"]


def settings_for(tmp_path: Path, names: list[str] = NAMES) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        trakt={"client_id": "cid", "client_secret": "csecret"},
        profiles=[{"name": name, "plex_accounts": [name.title()]} for name in names],
    )


def account(name: str) -> TargetAccount:
    return TargetAccount(name, "trakt")


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", tmp_path)
    return Backend("postgresql", tmp_path, request.getfixturevalue("pg_url"))


@pytest.fixture
async def nodes(backend: Backend, tmp_path: Path, clock: Clock) -> AsyncIterator[Any]:
    """A factory of replicas on the test's backend; every replica made is closed after."""
    made: list[Node] = []

    async def make(name: str, **kwargs: Any) -> Node:
        node = await Node.make(backend, name, settings_for(tmp_path), clock, **kwargs)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.close(graceful=False)


async def rounds(*replicas: Node, times: int = 1) -> None:
    """Run a round of every replica, *times* times (one after the other, as they interleave)."""
    for _ in range(times):
        for node in replicas:
            await node.tick()


def shares(*replicas: Node) -> list[int]:
    return [len(node.held) for node in replicas]


class TestShares:
    """The pure sharing-out: exact shares, and what each replica does about them."""

    @pytest.mark.parametrize(
        ("replicas", "accounts", "expected"),
        [(1, 5, [5]), (2, 5, [3, 2]), (3, 5, [2, 2, 1]), (3, 4, [2, 1, 1]), (3, 2, [1, 1, 0])],
    )
    def test_shares_are_exact_and_sum_to_the_accounts(
        self, replicas: int, accounts: int, expected: list[int]
    ) -> None:
        got = quotas([f"r{n}" for n in range(replicas)], accounts)
        assert [got[f"r{n}"] for n in range(replicas)] == expected

    def test_a_replica_over_its_share_releases_the_excess_and_takes_nothing(self) -> None:
        wanted = [account(n) for n in NAMES]
        leases = {a: LeaseRow(a, "r0", T0 + 30) for a in wanted}
        todo = plan("r0", {"r0", "r1"}, wanted, leases, T0)
        assert (todo.share, todo.held, len(todo.release), todo.acquire) == (3, 3, 2, ())

    def test_a_replica_under_its_share_tries_only_free_or_expired_leases(self) -> None:
        wanted = [account(n) for n in NAMES]
        leases = {
            account("ann"): LeaseRow(account("ann"), "r0", T0 + 30),  # held by a live one
            account("ben"): LeaseRow(account("ben"), "r9", T0 - 1),  # expired
            account("cat"): LeaseRow(account("cat"), None, 0.0),  # released
        }
        todo = plan("r1", {"r0", "r1"}, wanted, leases, T0)
        assert set(todo.acquire) == {account(n) for n in ("ben", "cat", "dan", "eve")}
        assert todo.release == ()

    def test_accounts_no_longer_wanted_are_released(self) -> None:
        gone = account("zed")
        leases = {gone: LeaseRow(gone, "r0", T0 + 30)}
        assert plan("r0", {"r0"}, [account("ann")], leases, T0).release == (gone,)


class TestLeaseStore:
    async def test_a_lease_is_held_by_one_replica_until_released(
        self, backend: Backend, clock: Clock
    ) -> None:
        db = await backend.database()
        one = await backend.replica_store(db, clock)
        other_db = await backend.database()
        two = await backend.replica_store(other_db, clock)
        try:
            await one.ensure([account("ann")])
            got = await one.acquire("one", account("ann"), lease_s=30)
            assert got is not None and got.previous_holder is None
            assert await two.acquire("two", account("ann"), lease_s=30) is None
            assert await one.holds("one", account("ann"), for_s=10)
            assert not await two.holds("two", account("ann"), for_s=0)
            assert await one.release("one", account("ann"), {"at": T0, "buckets": {}})
            taken = await two.acquire("two", account("ann"), lease_s=30)
            assert taken is not None and taken.limiter_state == {"at": T0, "buckets": {}}
            assert taken.previous_holder is None  # handed over, not taken from anyone
        finally:
            for store, conn in ((one, db), (two, other_db)):
                await store.close()
                if conn is not None:
                    await conn.close()

    async def test_an_expired_lease_is_taken_over_and_says_from_whom(
        self, backend: Backend, clock: Clock
    ) -> None:
        db = await backend.database()
        store = await backend.replica_store(db, clock)
        try:
            await store.ensure([account("ann")])
            assert await store.acquire("dead", account("ann"), lease_s=30) is not None
            clock.advance(29)
            assert await store.acquire("live", account("ann"), lease_s=30) is None
            clock.advance(1)
            taken = await store.acquire("live", account("ann"), lease_s=30)
            assert taken is not None and taken.previous_holder == "dead"
        finally:
            await store.close()
            if db is not None:
                await db.close()

    async def test_the_heartbeat_renews_held_leases_and_not_expired_ones(
        self, backend: Backend, clock: Clock
    ) -> None:
        db = await backend.database()
        store = await backend.replica_store(db, clock)
        meta = {"host": "h", "pid": 1, "started_at": T0}
        try:
            await store.ensure([account("ann"), account("ben")])
            await store.acquire("me", account("ann"), lease_s=30)
            await store.acquire("me", account("ben"), lease_s=10)
            clock.advance(20)  # ann has 10 s left, ben expired
            renewed = await store.heartbeat("me", lease_s=30, **meta)
            assert renewed == {account("ann")}
            clock.advance(25)
            assert await store.holds("me", account("ann"), for_s=4)
        finally:
            await store.close()
            if db is not None:
                await db.close()

    async def test_replicas_racing_for_one_account_get_it_once(
        self, backend: Backend, clock: Clock
    ) -> None:
        dbs = [await backend.database() for _ in range(4)]
        stores = [await backend.replica_store(db, clock) for db in dbs]
        try:
            await stores[0].ensure([account("ann")])
            got = await asyncio.gather(
                *(s.acquire(f"r{n}", account("ann"), lease_s=30) for n, s in enumerate(stores))
            )
            assert sum(g is not None for g in got) == 1
        finally:
            for store, db in zip(stores, dbs, strict=True):
                await store.close()
                if db is not None:
                    await db.close()


class TestSupervisor:
    async def test_one_replica_holds_every_account_and_runs_a_drainer_for_each(
        self, nodes: Any
    ) -> None:
        a: Node = await nodes("a")
        await a.start()
        assert a.held == sorted((account(n) for n in NAMES), key=str)
        assert a.work.running == set(a.held)

    async def test_accounts_spread_evenly_over_two_then_three_replicas(self, nodes: Any) -> None:
        a: Node = await nodes("a")
        await a.start()
        b: Node = await nodes("b")
        await b.start()
        await rounds(a, b, times=2)
        assert shares(a, b) == [3, 2]
        c: Node = await nodes("c")
        await c.start()
        await rounds(a, b, c, times=2)
        assert shares(a, b, c) == [2, 2, 1]
        held = [acc for node in (a, b, c) for acc in node.held]
        assert sorted(held, key=str) == sorted((account(n) for n in NAMES), key=str)
        for node in (a, b, c):  # each runs the drainers of what it holds, no others
            assert node.work.running == set(node.held)

    async def test_a_handed_over_account_stops_its_drainer_before_the_lease_goes(
        self, nodes: Any, clock: Clock
    ) -> None:
        a: Node = await nodes("a")
        await a.start()
        seen_at_stop: dict[TargetAccount, str | None] = {}

        async def check(acc: TargetAccount) -> None:
            leases = await a.store.leases()
            seen_at_stop[acc] = leases[acc].holder if leases[acc].held_at(clock()) else None

        a.work.on_stop = check
        b: Node = await nodes("b")
        await b.start()
        await a.tick()
        assert len(seen_at_stop) == 2
        assert set(seen_at_stop.values()) == {"a"}  # still a's while its drainer stopped
        await b.tick()
        assert set(b.held) == set(seen_at_stop)  # b took them at once, no expiry to wait for

    async def test_a_replica_that_leaves_hands_its_accounts_to_the_others(self, nodes: Any) -> None:
        a: Node = await nodes("a")
        b: Node = await nodes("b")
        await a.start()
        await b.start()
        await rounds(a, b, times=2)
        assert shares(a, b) == [3, 2]
        await b.close()  # graceful: stops, hands back
        await a.tick()
        assert shares(a) == [5]

    async def test_a_dead_replicas_accounts_are_taken_once_its_leases_expire(
        self, nodes: Any, clock: Clock
    ) -> None:
        a: Node = await nodes("a")
        b: Node = await nodes("b")
        await a.start()
        await b.start()
        await rounds(a, b, times=2)
        theirs = set(b.held)
        assert len(theirs) == 2
        await b.close(graceful=False)  # killed: no hand-over, its leases stay
        for _ in range(int(TIMING.lease_s) - 1):
            clock.advance(1)
            await a.tick()
            assert not theirs & set(a.held), "taken before the dead replica's lease expired"
        clock.advance(1.5)
        await a.tick()
        assert theirs <= set(a.held)
        assert a.work.running == set(a.held)

    async def test_leases_are_renewed_by_the_heartbeat(self, nodes: Any, clock: Clock) -> None:
        a: Node = await nodes("a")
        b: Node = await nodes("b")
        await a.start()
        await b.start()
        await rounds(a, b, times=2)
        before = (set(a.held), set(b.held))
        for _ in range(3 * int(TIMING.lease_s)):
            clock.advance(1)
            await rounds(a, b)
        assert (set(a.held), set(b.held)) == before

    async def test_a_joining_replica_gets_its_share_from_the_others(self, nodes: Any) -> None:
        a: Node = await nodes("a")
        b: Node = await nodes("b")
        await a.start()
        await b.start()
        await rounds(a, b, times=2)
        c: Node = await nodes("c")
        await c.start()
        assert shares(c) == [0]  # nothing is free: the others hand over at their next round
        await rounds(a, b, c)
        assert sorted(shares(a, b, c), reverse=True) == [2, 2, 1]


class TestGate:
    async def test_the_gate_lets_writes_out_while_the_lease_is_held(self, nodes: Any) -> None:
        a: Node = await nodes("a")
        await a.start()
        await a.supervisor.gate(account("ann"))()  # no error

    async def test_a_replica_whose_lease_was_taken_stops_sending_and_its_drainer(
        self, nodes: Any, clock: Clock
    ) -> None:
        a: Node = await nodes("a")
        await a.start()
        thief = await nodes("thief")
        await thief.store.db.execute(
            "UPDATE account_leases SET holder = 'thief', expires_at = :until WHERE profile = 'ann'",
            {"until": clock() + 300},
        )
        with pytest.raises(LeaseLostError, match="another replica"):
            await a.supervisor.gate(account("ann"))()
        await a.tick()
        assert account("ann") not in a.held
        assert account("ann") not in a.work.running

    async def test_a_lease_not_renewed_for_long_stops_writes_before_it_expires(
        self, nodes: Any, clock: Clock
    ) -> None:
        a: Node = await nodes("a")
        await a.start()
        clock.advance(TIMING.lease_s - TIMING.send_window_s - 1)
        await a.supervisor.gate(account("ann"))()
        clock.advance(2)  # no round in between (the database unreachable, say)
        with pytest.raises(LeaseLostError, match="could not renew"):
            await a.supervisor.gate(account("ann"))()

    async def test_an_account_this_replica_never_held_is_refused(self, nodes: Any) -> None:
        a: Node = await nodes("a")
        await a.start()
        with pytest.raises(LeaseLostError):
            await a.supervisor.gate(account("nobody"))()


class TestLimiterState:
    """The limiter's state travels with the lease: a 429 block carried to the next holder."""

    @staticmethod
    def limiter_factory(clock: Clock) -> Any:
        from datetime import UTC, datetime

        def make(_: TargetAccount) -> Limiter:
            return Limiter.per_second(
                post_per_s=1.0,
                get_per_s=10.0,
                monotonic_s=clock,
                now=lambda: datetime.fromtimestamp(clock(), UTC),
            )

        return make

    async def test_a_block_is_carried_by_a_hand_over(self, nodes: Any, clock: Clock) -> None:
        limiter = self.limiter_factory(clock)
        a: Node = await nodes("a", limiter=limiter)
        await a.start()
        for acc in a.held:
            a.limiters[acc].block_for(120.0)  # Retry-After: 120
        b: Node = await nodes("b", limiter=limiter)
        await b.start()
        await rounds(a, b)
        assert len(b.held) == 2
        for acc in b.held:
            until = b.limiters[acc].snapshot()["buckets"]["post"]["blocked_until"]
            assert until == pytest.approx(T0 + 120.0)

    async def test_a_block_saved_by_the_heartbeat_reaches_the_replica_that_takes_over(
        self, nodes: Any, clock: Clock
    ) -> None:
        limiter = self.limiter_factory(clock)
        a: Node = await nodes("a", limiter=limiter)
        await a.start()
        a.limiters[account("ann")].block_for(600.0)
        await a.tick()  # saved with the heartbeat
        await a.close(graceful=False)
        clock.advance(TIMING.lease_s + 1)
        b: Node = await nodes("b", limiter=limiter)
        await b.start()
        assert account("ann") in b.held
        until = b.limiters[account("ann")].snapshot()["buckets"]["post"]["blocked_until"]
        assert until == pytest.approx(T0 + 600.0)


class TestRoster:
    async def test_a_profile_added_while_running_is_taken_up_and_one_removed_let_go(
        self, nodes: Any
    ) -> None:
        a: Node = await nodes("a")
        await a.start()
        await a.roster.add(StoredProfile("zoe", ("Zoe",), webhook_token="tok-zoe"))
        await a.tick()
        assert account("zoe") in a.held and account("zoe") in a.work.running
        assert a.outbox.targets["zoe"] == ["trakt"]
        await a.roster.remove("zoe")
        await a.tick()
        assert account("zoe") not in a.held  # nothing queued for it: let go

    async def test_on_sqlite_a_new_daemon_frees_what_a_killed_one_held(
        self, tmp_path: Path, clock: Clock
    ) -> None:
        backend = Backend("sqlite", tmp_path)
        old = await Node.make(backend, "old", settings_for(tmp_path), clock, shared=False)
        await old.start()
        await old.close(graceful=False)  # killed: its leases stay in the file
        new = await Node.make(backend, "new", settings_for(tmp_path), clock, shared=False)
        try:
            await new.start()
            assert shares(new) == [5]  # at once, not after lease_s
        finally:
            await new.close()


async def test_the_replicas_store_lists_replicas_and_what_each_holds(
    nodes: Any, clock: Clock
) -> None:
    a: Node = await nodes("a")
    b: Node = await nodes("b")
    await a.start()
    await b.start()
    await rounds(a, b, times=2)
    rows = await a.store.replicas()
    assert [(r.id, r.accounts) for r in rows] == [("a", 3), ("b", 2)]
    assert len(await a.store.held_by("b")) == 2
    assert isinstance(a.store, ReplicaStore)
