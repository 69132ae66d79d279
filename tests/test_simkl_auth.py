"""SIMKL PIN authorization (``pin_auth``) against the fake SIMKL, on an injected clock."""

from __future__ import annotations

import asyncio
import itertools
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from crosswatchd.errors import AuthError
from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.providers.base import Play, PlayOutcome
from crosswatchd.providers.simkl import SimklProvider, pin_auth
from crosswatchd.ratelimit import Limiter
from crosswatchd.tokens import Token
from crosswatchd.tokens.files import TokenFile
from tests.fakes.simkl import PIN_VERIFICATION_URL, FakeSimkl

CLIENT_ID = "test-client-id"


class FakeClock:
    """Monotonic seconds that only move when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(clock: FakeClock) -> AsyncIterator[FakeSimkl]:
    async with FakeSimkl(client_id=CLIENT_ID, clock=clock) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def tokens(tmp_path: Path) -> TokenFile:
    return TokenFile(tmp_path, "simkl")


async def authorize(
    fake: FakeSimkl,
    session: aiohttp.ClientSession,
    tokens: TokenFile,
    clock: FakeClock,
    lines: list[str] | None = None,
    client_id: str = CLIENT_ID,
) -> Token:
    return await pin_auth(
        session=session,
        tokens=tokens,
        client_id=client_id,
        api_url=fake.url,
        out=(lines if lines is not None else []).append,
        sleep=clock.sleep,
    )


def replies(fake: FakeSimkl) -> list[str]:
    return [poll["reply"] for poll in fake.pin_polls]


async def test_pending_then_token_is_stored(
    fake: FakeSimkl, session: aiohttp.ClientSession, tokens: TokenFile, clock: FakeClock
) -> None:
    """Polls while "Authorization pending", stores the token and stops at the first OK."""
    fake.auto_approve_after = 2
    lines: list[str] = []

    token = await authorize(fake, session, tokens, clock, lines)

    assert replies(fake) == ["pending", "pending", "ok"]
    assert token.access_token in fake.tokens
    stored = tokens.load()
    assert stored is not None and stored.access_token == token.access_token
    assert "result" not in stored.raw


async def test_shows_verification_url_and_user_code(
    fake: FakeSimkl, session: aiohttp.ClientSession, tokens: TokenFile, clock: FakeClock
) -> None:
    """The user is told where to go and which code to enter."""
    fake.auto_approve_after = 0
    lines: list[str] = []

    await authorize(fake, session, tokens, clock, lines)

    code = fake.pin_polls[0]["user_code"]
    assert PIN_VERIFICATION_URL in lines[0] and code in lines[0]


async def test_polls_at_the_advertised_interval(
    fake: FakeSimkl, session: aiohttp.ClientSession, tokens: TokenFile, clock: FakeClock
) -> None:
    """Polls are `interval` (5 s) apart, so the fake never has to say "Slow down"."""
    fake.auto_approve_after = 3

    await authorize(fake, session, tokens, clock)

    times = [poll["at"] for poll in fake.pin_polls]
    assert [b - a for a, b in itertools.pairwise(times)] == [5.0, 5.0, 5.0]
    assert "slow_down" not in replies(fake)


async def test_slow_down_lengthens_the_interval(
    fake: FakeSimkl, session: aiohttp.ClientSession, tokens: TokenFile, clock: FakeClock
) -> None:
    """After "Slow down" the next poll waits 5 s longer, and then succeeds."""
    fake.pin_slow_down_below_s = 8.0  # stricter than the advertised 5 s
    fake.auto_approve_after = 0

    await authorize(fake, session, tokens, clock)

    assert replies(fake) == ["slow_down", "ok"]
    first, second = (poll["at"] for poll in fake.pin_polls)
    assert second - first == 10.0


async def test_gives_up_when_the_code_expires(
    fake: FakeSimkl, session: aiohttp.ClientSession, tokens: TokenFile, clock: FakeClock
) -> None:
    """Never approved: AuthError at expires_in, without polling a dead code; no token file."""
    fake.pin_expires_in_s = 20

    with pytest.raises(AuthError, match="expired"):
        await authorize(fake, session, tokens, clock)

    assert replies(fake) == ["pending", "pending", "pending"]
    assert tokens.load() is None


async def test_stops_when_the_code_is_gone(
    fake: FakeSimkl, session: aiohttp.ClientSession, tokens: TokenFile, clock: FakeClock
) -> None:
    """A poll answered with a fresh device_code means the code is gone: AuthError, stop."""

    def forget_codes(_: str) -> None:
        fake.pins.clear()

    with pytest.raises(AuthError, match="no longer valid"):
        await pin_auth(
            session=session,
            tokens=tokens,
            client_id=CLIENT_ID,
            api_url=fake.url,
            out=forget_codes,
            sleep=clock.sleep,
        )
    assert replies(fake) == ["gone"]


async def test_transient_poll_failure_is_ridden_out(
    fake: FakeSimkl, session: aiohttp.ClientSession, tokens: TokenFile, clock: FakeClock
) -> None:
    """A 503 while polling does not abort the flow; the next poll gets the token."""
    fake.auto_approve_after = 0
    fake.fail_next(503, path="/oauth/pin/")

    token = await authorize(fake, session, tokens, clock)

    assert token.access_token in fake.tokens


async def test_wrong_client_id_is_auth_error(
    fake: FakeSimkl, session: aiohttp.ClientSession, tokens: TokenFile, clock: FakeClock
) -> None:
    """412 client_id_failed on the first request → AuthError with SIMKL's message."""
    with pytest.raises(AuthError, match="client_id"):
        await authorize(fake, session, tokens, clock, client_id="wrong")


async def test_token_file_is_private(
    fake: FakeSimkl, session: aiohttp.ClientSession, tokens: TokenFile, clock: FakeClock
) -> None:
    """The stored token file is mode 0600."""
    fake.auto_approve_after = 0

    await authorize(fake, session, tokens, clock)

    assert stat.S_IMODE(tokens.path.stat().st_mode) == 0o600


async def test_provider_delivers_with_the_new_token(
    fake: FakeSimkl, session: aiohttp.ClientSession, tokens: TokenFile, clock: FakeClock
) -> None:
    """After pin_auth the provider is authorized and its plays land."""
    fake.auto_approve_after = 0
    provider = SimklProvider(
        session=session,
        limiter=Limiter.per_second(post_per_s=1000, get_per_s=1000),
        tokens=tokens,
        client_id=CLIENT_ID,
        api_url=fake.url,
    )
    assert provider.is_authorized() is False

    await authorize(fake, session, tokens, clock)

    movie = Item(MediaKind.MOVIE, "Barry Lyndon", 1975, Ids(imdb="tt0072684"))
    watched = datetime(2024, 3, 1, 20, 0, tzinfo=UTC)
    assert provider.is_authorized() is True
    assert await provider.add_history([Play(1, movie, watched)]) == {1: PlayOutcome.ADDED}
