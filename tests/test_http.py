"""The shared HTTP pieces: the Retry-After parser, in-process GET retries, lenient models."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from crosswatchd.errors import PermanentError, RetryableError
from crosswatchd.http import (
    Entries,
    GetRetry,
    Lenient,
    LenientList,
    OptInt,
    RetryGet,
    WireModel,
    parse_retry_after,
)
from crosswatchd.ratelimit import Limiter, TokenBucket

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
FAST = GetRetry(tries=3, base_s=0.001, max_wait_s=5.0)


class TestParseRetryAfter:
    """``Retry-After`` is delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""

    @pytest.mark.parametrize(
        ("value", "seconds"),
        [("7", 7.0), ("0", 0.0), (" 120 ", 120.0), ("1.5", 1.5)],
    )
    def test_delay_seconds_are_seconds(self, value: str, seconds: float) -> None:
        assert parse_retry_after(value, now=NOW) == seconds

    def test_negative_delay_is_zero(self) -> None:
        assert parse_retry_after("-3", now=NOW) == 0.0

    @pytest.mark.parametrize(
        "value",
        [
            "Wed, 21 Oct 2015 07:29:00 GMT",  # IMF-fixdate, the preferred form
            "Wednesday, 21-Oct-15 07:29:00 GMT",  # obsolete RFC 850 form
            "Wed Oct 21 07:29:00 2015",  # obsolete asctime form
        ],
    )
    def test_http_date_is_the_seconds_until_then(self, value: str) -> None:
        assert parse_retry_after(value, now=NOW) == 60.0

    def test_http_date_in_the_past_is_zero(self) -> None:
        assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now=NOW) == 0.0

    @pytest.mark.parametrize("value", [None, "", "   ", "soon", "12 abc", "nan", "inf", "-inf"])
    def test_garbage_is_none(self, value: str | None) -> None:
        assert parse_retry_after(value, now=NOW) is None


class TestLimiterObserve:
    """The limiter reads Retry-After with the same parser."""

    def test_http_date_blocks_for_the_seconds_until_then(self) -> None:
        limiter = Limiter({"get": TokenBucket(10.0), "post": TokenBucket(1.0)}, now=lambda: NOW)
        later = "Wed, 21 Oct 2015 07:28:30 GMT"

        assert limiter.observe("GET", 429, {"Retry-After": later}) == 30.0

    def test_unreadable_retry_after_on_a_429_blocks_for_a_second(self) -> None:
        limiter = Limiter({"get": TokenBucket(10.0), "post": TokenBucket(1.0)}, now=lambda: NOW)

        assert limiter.observe("GET", 429, {"Retry-After": "soon"}) == 1.0


class Flaky:
    """An attempt that fails with the given errors, one per call, then answers ``"ok"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def transient(retry_after_s: float | None = None) -> RetryableError:
    return RetryableError("svc", "HTTP 503", retry_after_s)


class TestRetryGet:
    """A few short jittered retries of transient failures, and no more."""

    async def retry(self, attempt: Flaky, policy: GetRetry = FAST) -> str:
        retry = RetryGet(policy=policy, transient=RetryableError, event="t.retry")
        return await retry(attempt)

    async def test_a_transient_failure_is_retried_until_the_attempt_answers(self) -> None:
        attempt = Flaky(transient(), transient())

        assert await self.retry(attempt) == "ok"
        assert attempt.calls == 3

    async def test_the_last_failure_is_raised_after_the_tries(self) -> None:
        attempt = Flaky(transient(), transient(), transient(), transient())

        with pytest.raises(RetryableError):
            await self.retry(attempt)
        assert attempt.calls == FAST.tries

    async def test_a_long_server_wait_gives_up_at_once(self) -> None:
        """A wait beyond max_wait_s belongs in the outbox's schedule, not in a held request."""
        attempt = Flaky(transient(retry_after_s=60.0))

        with pytest.raises(RetryableError) as caught:
            await self.retry(attempt)
        assert (attempt.calls, caught.value.retry_after_s) == (1, 60.0)

    async def test_a_short_server_wait_is_honoured(self) -> None:
        attempt = Flaky(transient(retry_after_s=0.05))
        loop = asyncio.get_running_loop()
        started = loop.time()

        assert await self.retry(attempt) == "ok"
        assert loop.time() - started >= 0.04  # the loop may wake within its clock resolution

    async def test_other_errors_are_not_retried(self) -> None:
        attempt = Flaky(PermanentError("svc", "HTTP 400"))

        with pytest.raises(PermanentError):
            await self.retry(attempt)
        assert attempt.calls == 1

    async def test_one_try_means_no_retry(self) -> None:
        attempt = Flaky(transient())

        with pytest.raises(RetryableError):
            await self.retry(attempt, GetRetry(tries=1))
        assert attempt.calls == 1


class _Episode(WireModel):
    number: OptInt = None
    ids: Lenient[dict[str, Any]] = None


class _Season(WireModel):
    episodes: LenientList[_Episode] = []


class _Page(WireModel):
    entries: Entries[_Episode]


class TestLenientModels:
    """Answers are read leniently: wrong types read as missing, bad entries skipped."""

    @pytest.mark.parametrize(
        ("raw", "number"), [(15, 15), ("15", 15), (True, None), ("x", None), (None, None)]
    )
    def test_an_optional_field_of_another_type_reads_as_missing(
        self, raw: Any, number: int | None
    ) -> None:
        assert _Episode.model_validate({"number": raw}).number == number

    def test_a_list_keeps_only_the_entries_that_validate(self) -> None:
        season = _Season.model_validate({"episodes": [{"number": 1}, "junk", 7, {"number": 2}]})

        assert [e.number for e in season.episodes] == [1, 2]

    @pytest.mark.parametrize("raw", [None, "junk", {"number": 1}])
    def test_a_lenient_list_that_is_not_a_list_is_empty(self, raw: Any) -> None:
        assert _Season.model_validate({"episodes": raw}).episodes == []

    def test_entries_that_are_not_a_list_are_a_validation_error(self) -> None:
        with pytest.raises(ValidationError):
            _Page.model_validate({"entries": {"number": 1}})

    def test_unknown_fields_are_ignored(self) -> None:
        assert _Episode.model_validate({"number": 3, "runtime": 22}).number == 3
