"""The token buckets and the limiter, on an injected clock that moves only when someone sleeps
(as aiolimiter's tests move a mocked loop clock): no real waiting, exact times."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson

from crosswatchd.ratelimit import Limiter, TokenBucket, background, method_class, tally


class VirtualTime:
    """Monotonic seconds that advance only by the sleeps requested of it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds
        await asyncio.sleep(0)


async def take(
    bucket: TokenBucket | Limiter, n: int, clock: VirtualTime, method: str = "GET"
) -> list[float]:
    """Acquire *n* tokens one after the other; the virtual times they were granted at."""
    times = []
    for _ in range(n):
        if isinstance(bucket, Limiter):
            await bucket.acquire(method)
        else:
            await bucket.acquire()
        times.append(round(clock.now - 1000.0, 6))
    return times


class TestTokenBucket:
    async def test_a_full_bucket_grants_its_capacity_at_once_then_paces(self) -> None:
        clock = VirtualTime()
        bucket = TokenBucket(2.0, 3.0, monotonic_s=clock, sleep=clock.sleep)
        assert await take(bucket, 5, clock) == [0.0, 0.0, 0.0, 0.5, 1.0]

    async def test_an_empty_bucket_waits_one_interval_first(self) -> None:
        clock = VirtualTime()
        bucket = TokenBucket(1.0, 1.0, monotonic_s=clock, sleep=clock.sleep, tokens=0.0)
        assert await take(bucket, 2, clock) == [1.0, 2.0]

    async def test_tokens_refill_while_nobody_asks(self) -> None:
        clock = VirtualTime()
        bucket = TokenBucket(1.0, 2.0, monotonic_s=clock, sleep=clock.sleep)
        await take(bucket, 2, clock)
        clock.now += 10  # idle for 10 s: the bucket is full again, not fuller
        assert await take(bucket, 3, clock) == [10.0, 10.0, 11.0]

    async def test_concurrent_callers_are_served_in_turn_at_the_rate(self) -> None:
        clock = VirtualTime()
        bucket = TokenBucket(4.0, 1.0, monotonic_s=clock, sleep=clock.sleep)
        granted: list[tuple[int, float]] = []

        async def caller(n: int) -> None:
            await bucket.acquire()
            granted.append((n, round(clock.now - 1000.0, 6)))

        await asyncio.gather(*(caller(n) for n in range(4)))
        assert granted == [(0, 0.0), (1, 0.25), (2, 0.5), (3, 0.75)]

    async def test_a_block_holds_every_token_until_then_and_empties_the_bucket(self) -> None:
        clock = VirtualTime()
        bucket = TokenBucket(1.0, 5.0, monotonic_s=clock, sleep=clock.sleep)
        bucket.block_until(clock.now + 30)
        assert await take(bucket, 2, clock) == [31.0, 32.0]


class TestLimiter:
    def test_writes_and_reads(self) -> None:
        assert [method_class(m) for m in ("GET", "head", "POST", "PUT", "DELETE")] == [
            "get",
            "get",
            "post",
            "post",
            "post",
        ]

    async def test_the_first_post_waits_one_interval_the_first_gets_do_not(self) -> None:
        """A restarted daemon cannot know when the killed one last wrote (Trakt: 1 POST/s)."""
        clock = VirtualTime()
        limiter = Limiter.per_second(
            post_per_s=1.0, get_per_s=2.0, get_capacity=2.0, monotonic_s=clock, sleep=clock.sleep
        )
        assert await take(limiter, 2, clock, "GET") == [0.0, 0.0]
        assert await take(limiter, 2, clock, "POST") == [1.0, 2.0]

    async def test_retry_after_blocks_that_class_only(self) -> None:
        clock = VirtualTime()
        limiter = Limiter.per_second(
            post_per_s=1.0, get_per_s=10.0, get_capacity=10.0, monotonic_s=clock, sleep=clock.sleep
        )
        assert limiter.observe("POST", 429, {"Retry-After": "20"}) == 20.0
        assert await take(limiter, 1, clock, "GET") == [0.0]
        assert await take(limiter, 1, clock, "POST") == [21.0]

    async def test_an_exhausted_x_ratelimit_blocks_until_its_until(self) -> None:
        clock = VirtualTime()
        wall = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
        limiter = Limiter.per_second(
            post_per_s=1.0,
            get_per_s=10.0,
            get_capacity=10.0,
            monotonic_s=clock,
            sleep=clock.sleep,
            now=lambda: wall,
        )
        info = {
            "name": "AUTHED_API_GET_LIMIT",
            "period": 300,
            "limit": 1000,
            "remaining": 0,
            "until": (wall + timedelta(seconds=45)).isoformat().replace("+00:00", "Z"),
        }
        wait = limiter.observe("GET", 429, {"X-Ratelimit": orjson.dumps(info).decode()})
        assert wait == 45.0
        assert await take(limiter, 1, clock, "GET") == [45.1]  # then one interval

    async def test_a_429_without_advice_blocks_for_a_second(self) -> None:
        clock = VirtualTime()
        limiter = Limiter.per_second(
            post_per_s=1.0, get_per_s=10.0, monotonic_s=clock, sleep=clock.sleep
        )
        assert limiter.observe("GET", 429, {}) == 1.0


class YieldingTime(VirtualTime):
    """Virtual time whose sleeps let other tasks run before the clock moves (so a caller can
    arrive while another one waits)."""

    async def sleep(self, seconds: float) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        await super().sleep(seconds)


class TestBackground:
    """Background work (a reconcile pass) leaves a reserve of tokens to live deliveries."""

    async def test_background_callers_stop_at_the_reserve(self) -> None:
        clock = VirtualTime()
        bucket = TokenBucket(1.0, 5.0, monotonic_s=clock, sleep=clock.sleep, reserve=2.0)
        with background():
            # 5 tokens: three go at once, then one per second, always two kept
            assert await take(bucket, 5, clock) == [0.0, 0.0, 0.0, 1.0, 2.0]

    async def test_a_foreground_caller_finds_the_reserve_after_a_background_burst(self) -> None:
        clock = VirtualTime()
        bucket = TokenBucket(1.0, 5.0, monotonic_s=clock, sleep=clock.sleep, reserve=2.0)
        with background():
            await take(bucket, 3, clock)
        assert await take(bucket, 2, clock) == [0.0, 0.0]  # the drainer's two GETs: no wait

    async def test_a_waiting_background_caller_does_not_hold_up_the_foreground(self) -> None:
        clock = YieldingTime()
        bucket = TokenBucket(1.0, 3.0, monotonic_s=clock, sleep=clock.sleep, reserve=2.0)
        order: list[tuple[str, float]] = []

        async def reader() -> None:
            with background():
                for _ in range(3):
                    await bucket.acquire()
                    order.append(("background", round(clock.now - 1000.0, 6)))

        async def drainer() -> None:
            await asyncio.sleep(0)  # arrives while the reader waits for its second token
            await bucket.acquire()
            order.append(("foreground", round(clock.now - 1000.0, 6)))

        await asyncio.gather(reader(), drainer())
        assert order[0] == ("background", 0.0)
        assert ("foreground", 0.0) in order  # served at once, from the reserve
        assert [who for who, _ in order].count("background") == 3

    async def test_no_reserve_without_the_flag_and_the_limiter_counts_requests(self) -> None:
        clock = VirtualTime()
        limiter = Limiter.per_second(
            post_per_s=1.0,
            get_per_s=1.0,
            get_capacity=4.0,
            get_reserve=3.0,
            monotonic_s=clock,
            sleep=clock.sleep,
        )
        with tally() as counted:
            assert await take(limiter, 4, clock, "GET") == [0.0, 0.0, 0.0, 0.0]
            with background():
                assert await take(limiter, 1, clock, "GET") == [4.0]  # waits for 1 + 3 tokens
        assert counted.by_class == {"get": 5} and counted.requests == 5
        assert await take(limiter, 1, clock, "GET") == [4.0]  # from the reserve; not counted
        assert counted.requests == 5

    def test_a_reserve_never_exceeds_what_background_work_can_use(self) -> None:
        bucket = TokenBucket(1.0, 2.0, reserve=5.0)
        assert bucket.reserve == 1.0
