"""Token-bucket rate limiting per provider and method class.

Every HTTP attempt to a provider, retries included, first awaits :meth:`Limiter.acquire` for
its method class (``"get"`` or ``"post"``; PUT and DELETE count as ``"post"``, as in Trakt's
``AUTHED_API_POST_LIMIT``). A server's ``Retry-After`` or an exhausted ``X-Ratelimit`` header
blocks the whole provider until the given time, so one 429 cannot turn into a storm.

Time is injected (``monotonic_s`` returns monotonic seconds, ``sleep`` waits, ``now`` is the wall
clock for ``Retry-After`` dates and ``X-Ratelimit``'s ``until``) so tests can drive a fake clock
instead of sleeping.

Background work (a reconcile pass reading whole histories) runs inside :func:`background`: a
bucket with a ``reserve`` then hands it a token only while more than ``reserve`` tokens are left,
so the requests of live deliveries (the drainer's history check after a crash) always find
room. The flag is a context variable, read by :meth:`TokenBucket.acquire`, so no caller between
the pass and the limiter changes its signature; tasks started inside inherit it. Likewise
:func:`tally` counts the requests made inside it (what a pass cost).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from crosswatchd.http import parse_retry_after, utc_now

__all__ = ["Limiter", "Tally", "TokenBucket", "background", "method_class", "tally"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


#: Tolerance of the token count for float rounding.
_EPSILON = 1e-9

#: True inside :func:`background` (this task and the tasks it starts).
_BACKGROUND: ContextVar[bool] = ContextVar("crosswatchd_background", default=False)


@dataclass(slots=True)
class Tally:
    """Requests counted by :func:`tally`: every attempt through a :class:`Limiter`, by
    method class (``{"get": 3, "post": 0}``)."""

    by_class: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """All requests counted."""
        return sum(self.by_class.values())


_TALLY: ContextVar[Tally | None] = ContextVar("crosswatchd_tally", default=None)


@contextlib.contextmanager
def background() -> Iterator[None]:
    """Mark the requests made inside as background work: they leave each bucket's
    ``reserve`` to foreground callers (see :class:`TokenBucket`)."""
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


@contextlib.contextmanager
def tally() -> Iterator[Tally]:
    """Count every request made inside (this task and the tasks it starts) through any
    :class:`Limiter`; the :class:`Tally` is filled in as they are made."""
    counts = Tally()
    token = _TALLY.set(counts)
    try:
        yield counts
    finally:
        _TALLY.reset(token)


def method_class(method: str) -> str:
    """``"get"`` for GET/HEAD, ``"post"`` for everything that writes."""
    return "get" if method.upper() in {"GET", "HEAD"} else "post"


class TokenBucket:
    """``capacity`` tokens, refilled continuously at ``rate_per_s``; one token per request.

    Waiters are served in arrival order (a lock serialises them), so a burst of callers is
    spread out at exactly the configured rate. ``tokens`` is the fill at creation (default
    full); a bucket for writes starts empty, because a process that just started cannot know
    when the account's last write went out (a restart after a crash, a replica taking over).

    ``reserve`` tokens (at most ``capacity - 1``) are kept for foreground callers: inside
    :func:`background` a caller takes a token only while more than ``reserve`` are left, and
    waits without holding the queue, so a foreground caller arriving meanwhile is served first.
    """

    def __init__(
        self,
        rate_per_s: float,
        capacity: float = 1.0,
        *,
        monotonic_s: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        tokens: float | None = None,
        reserve: float = 0.0,
    ) -> None:
        if rate_per_s <= 0 or capacity < 1:
            raise ValueError("rate_per_s must be > 0 and capacity >= 1")
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self.reserve = max(0.0, min(reserve, capacity - 1.0))
        self._monotonic_s = monotonic_s
        self._sleep = sleep
        self._tokens = capacity if tokens is None else max(0.0, min(capacity, tokens))
        self._stamp = monotonic_s()
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._monotonic_s()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now

    def block_until(self, monotonic_s: float) -> None:
        """Hand out no token before *monotonic_s* (and start from an empty bucket then)."""
        if monotonic_s > self._blocked_until:
            self._blocked_until = monotonic_s

    async def acquire(self) -> None:
        """Wait until a token is available, then take it (inside :func:`background`: until
        more than ``reserve`` are)."""
        keep = self.reserve if _BACKGROUND.get() else 0.0
        while True:
            async with self._lock:
                wait = await self._take(keep)
                if wait is None:
                    return
            await self._sleep(wait)  # background: wait outside the queue, then try again

    async def _take(self, keep: float) -> float | None:
        """Take a token, waiting in the queue for it when *keep* is 0 (``None``: taken), or
        return how long a background caller should wait before trying again."""
        while True:
            now = self._monotonic_s()
            if now < self._blocked_until:
                await self._sleep(self._blocked_until - now)
                self._tokens = 0.0
                self._stamp = self._monotonic_s()
                continue
            self._refill()
            # A hair below 1 after sleeping exactly the time a token takes is float
            # rounding, not a missing token: without the slack it would sleep ~1e-13 s again
            # and again.
            need = 1.0 + keep
            if self._tokens >= need - _EPSILON:
                self._tokens = max(0.0, self._tokens - 1.0)
                return None
            wait = (need - self._tokens) / self.rate_per_s
            if keep:
                return wait
            await self._sleep(wait)


class Limiter:
    """The buckets of one provider, keyed by method class (``"get"``, ``"post"``).

    *on_wait* is told the seconds each :meth:`acquire` waited (the metrics' rate-limit wait).
    """

    def __init__(
        self,
        buckets: Mapping[str, TokenBucket],
        *,
        monotonic_s: Clock = time.monotonic,
        now: Callable[[], datetime] = utc_now,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._buckets = dict(buckets)
        self._monotonic_s = monotonic_s
        self._now = now
        self.on_wait = on_wait

    @classmethod
    def per_second(
        cls,
        *,
        post_per_s: float,
        get_per_s: float,
        get_capacity: float = 1.0,
        get_reserve: float = 0.0,
        monotonic_s: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        now: Callable[[], datetime] = utc_now,
    ) -> Limiter:
        """A limiter with one POST bucket (capacity 1, starting empty: the first write waits
        one interval, as the previous process may have written just before it ended) and one
        GET bucket (starting full) keeping *get_reserve* tokens from background work."""
        return cls(
            {
                "post": TokenBucket(
                    post_per_s, 1.0, monotonic_s=monotonic_s, sleep=sleep, tokens=0.0
                ),
                "get": TokenBucket(
                    get_per_s,
                    get_capacity,
                    monotonic_s=monotonic_s,
                    sleep=sleep,
                    reserve=get_reserve,
                ),
            },
            monotonic_s=monotonic_s,
            now=now,
        )

    async def acquire(self, method: str) -> None:
        """Wait for a token of *method*'s class (``GET`` → get, others → post); counted in
        the current :func:`tally`, if any."""
        started = self._monotonic_s()
        kind = method_class(method)
        await self._buckets[kind].acquire()
        counts = _TALLY.get()
        if counts is not None:
            counts.by_class[kind] = counts.by_class.get(kind, 0) + 1
        if self.on_wait is not None:
            self.on_wait(self._monotonic_s() - started)

    def block_for(self, seconds: float, method: str | None = None) -> None:
        """Stop handing out tokens for *seconds* (one class, or all when *method* is None)."""
        until = self._monotonic_s() + max(0.0, seconds)
        targets = [self._buckets[method_class(method)]] if method else self._buckets.values()
        for bucket in targets:
            bucket.block_until(until)

    def observe(self, method: str, status: int, headers: Mapping[str, str]) -> float | None:
        """Learn from a response: returns the wait in seconds it demands, if any.

        ``Retry-After`` (any status; seconds or an HTTP-date, see
        :func:`~crosswatchd.http.parse_retry_after`) blocks the method's class. Trakt's
        ``X-Ratelimit: {"name","period","limit","remaining","until"}`` with ``remaining`` 0
        blocks it until ``until`` (Trakt API docs, "Rate Limiting"). A 429 without either
        blocks it for 1 s.
        """
        now = self._now()
        wait = parse_retry_after(headers.get("Retry-After"), now=now)
        raw = headers.get("X-Ratelimit")
        if raw:
            try:
                info = orjson.loads(raw)
                if int(info.get("remaining", 1)) <= 0 and info.get("until"):
                    until = datetime.fromisoformat(str(info["until"]).replace("Z", "+00:00"))
                    ahead = (until - now).total_seconds()
                    wait = max(wait or 0.0, min(ahead, 3600.0))
            except (orjson.JSONDecodeError, ValueError, TypeError, AttributeError):
                pass
        if wait is None and status == 429:
            wait = 1.0
        if wait:
            self.block_for(wait, method)
        return wait
