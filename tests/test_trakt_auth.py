"""Trakt OAuth: token refresh inside TraktProvider; the device flow (`crosswatchd auth trakt`)."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crosswatchd.errors import AuthError
from crosswatchd.http import GetRetry
from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.providers.base import Play, PlayOutcome
from crosswatchd.providers.trakt import TraktProvider, device_auth
from crosswatchd.ratelimit import Limiter, TokenBucket
from crosswatchd.tokens.files import TokenFile
from tests.fakes.catalog import default_catalog
from tests.fakes.trakt import FakeTrakt

CID, SECRET = "cid", "csecret"
T0 = datetime(2026, 11, 21, 10, 54, 52, tzinfo=UTC)
MOVIE = Item(MediaKind.MOVIE, "Big Trouble in Little China", 1986, ids=Ids(imdb="tt0090728"))
PLAY = Play(1, MOVIE, T0)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTrakt]:
    async with FakeTrakt(client_id=CID, client_secret=SECRET, catalog=default_catalog()) as f:
        yield f


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def store(tmp_path: Path) -> TokenFile:
    return TokenFile(tmp_path, "trakt")


def make_provider(
    fake: FakeTrakt,
    session: aiohttp.ClientSession,
    store: TokenFile,
    limiter: Limiter | None = None,
) -> TraktProvider:
    return TraktProvider(
        session=session,
        limiter=limiter or Limiter.per_second(post_per_s=20, get_per_s=100),
        tokens=store,
        client_id=CID,
        client_secret=SECRET,
        api_url=fake.url,
        get_retry=GetRetry(base_s=0.01),
        refusal_settle_s=0.05,
    )


def refreshes(fake: FakeTrakt) -> int:
    return sum(1 for _, path, _ in fake.requests if path == "/oauth/token")


async def refresh_with(session: aiohttp.ClientSession, fake: FakeTrakt, refresh_token: str) -> int:
    """Status of a raw refresh request with *refresh_token*."""
    body = {
        "refresh_token": refresh_token,
        "client_id": CID,
        "client_secret": SECRET,
        "redirect_uri": "urn:ietf:wg:oauth:2.0:oob",
        "grant_type": "refresh_token",
    }
    headers = {"trakt-api-key": CID, "trakt-api-version": "2"}
    async with session.post(f"{fake.url}/oauth/token", json=body, headers=headers) as resp:
        return resp.status


class TokenSnoopingLimiter(Limiter):
    """A real limiter that notes which access token is on disk at each acquire."""

    def __init__(self, store: TokenFile) -> None:
        super().__init__({"post": TokenBucket(20.0), "get": TokenBucket(100.0)})
        self.store = store
        self.on_disk: list[str | None] = []

    async def acquire(self, method: str) -> None:
        token = self.store.load()
        self.on_disk.append(token.access_token if token else None)
        await super().acquire(method)


class TestRefresh:
    async def test_401_refreshes_once_and_retries(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """A rejected access token → one refresh → the same request again, which lands."""
        old = store.write(fake.issue_token())
        fake.expire_access_tokens()  # the server disagrees with the stored expiry

        outcomes = await make_provider(fake, session, store).add_history([PLAY])

        assert outcomes == {1: PlayOutcome.ADDED}
        assert [(m, p) for m, p, _ in fake.requests] == [
            ("POST", "/sync/history"),
            ("POST", "/oauth/token"),
            ("POST", "/sync/history"),
        ]
        assert len(fake.history) == 1
        new = store.load()
        assert new is not None and new.refresh_token != old.refresh_token

    async def test_rotated_token_is_on_disk_0600_before_it_is_used(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """The new refresh token is saved (mode 0600) before the retried request goes out,
        and the old refresh token is dead (Trakt rotates them)."""
        old = store.write(fake.issue_token())
        fake.expire_access_tokens()
        limiter = TokenSnoopingLimiter(store)

        await make_provider(fake, session, store, limiter).add_history([PLAY])

        new = store.load()
        assert new is not None and old.refresh_token is not None and new.refresh_token is not None
        # acquires: the first POST, the refresh, the retried POST
        assert limiter.on_disk == [old.access_token, old.access_token, new.access_token]
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
        assert await refresh_with(session, fake, old.refresh_token) == 401
        assert await refresh_with(session, fake, new.refresh_token) == 200

    @pytest.mark.parametrize("expires_in", [0, 1800])
    async def test_expiring_token_is_refreshed_before_use(
        self,
        fake: FakeTrakt,
        session: aiohttp.ClientSession,
        store: TokenFile,
        expires_in: int,
    ) -> None:
        """An expired token, or one expiring within an hour, is refreshed first: no 401."""
        store.write(fake.issue_token(expires_in=expires_in))

        assert await make_provider(fake, session, store).add_history([PLAY]) == {
            1: PlayOutcome.ADDED
        }
        assert [(m, p) for m, p, _ in fake.requests] == [
            ("POST", "/oauth/token"),
            ("POST", "/sync/history"),
        ]

    async def test_concurrent_callers_share_one_proactive_refresh(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """Several requests finding an expiring token cause exactly one refresh."""
        store.write(fake.issue_token(expires_in=60))
        trakt = make_provider(fake, session, store)

        results = await asyncio.gather(*(trakt.find_in_history([PLAY]) for _ in range(4)))

        assert results == [set()] * 4
        assert refreshes(fake) == 1

    async def test_concurrent_401s_share_one_refresh(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """Several requests rejected with 401 at once cause exactly one refresh."""
        store.write(fake.issue_token())
        fake.expire_access_tokens()
        trakt = make_provider(fake, session, store)

        results = await asyncio.gather(*(trakt.find_in_history([PLAY]) for _ in range(4)))

        assert results == [set()] * 4
        assert refreshes(fake) == 1

    async def test_revoked_refresh_token_is_auth_error(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """The user revoked the app: AuthError telling them to re-run auth; no secret leaks."""
        token = store.write(fake.issue_token())
        fake.revoke_all()

        with pytest.raises(AuthError, match="crosswatchd auth trakt") as err:
            await make_provider(fake, session, store).add_history([PLAY])
        assert token.access_token not in str(err.value)
        assert str(token.refresh_token) not in str(err.value)
        assert SECRET not in str(err.value)
        assert fake.history == []

    async def test_refused_refresh_revokes_the_token(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """invalid_grant on /oauth/token: the token file becomes trakt.json.revoked, the
        provider is no longer authorized, and the next call fails without a request."""
        store.write(fake.issue_token())
        fake.revoke_all()
        trakt = make_provider(fake, session, store)

        with pytest.raises(AuthError, match="revoked"):
            await trakt.add_history([PLAY])

        assert not store.path.exists()
        assert store.path.with_name("trakt.json.revoked").exists()
        assert not trakt.is_authorized()
        sent = len(fake.requests)
        with pytest.raises(AuthError, match="not authorized; run `crosswatchd auth trakt`"):
            await trakt.add_history([PLAY])
        assert len(fake.requests) == sent

    @pytest.mark.parametrize("status", [400, 401])
    async def test_refresh_refused_with_status_revokes(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile, status: int
    ) -> None:
        """A 400 or 401 on /oauth/token (whatever the body) revokes the token."""
        store.write(fake.issue_token(expires_in=0))
        fake.fail_next(status, path="/oauth/token", body={"error": "invalid_request"})
        trakt = make_provider(fake, session, store)

        with pytest.raises(AuthError, match="crosswatchd auth trakt"):
            await trakt.find_in_history([PLAY])
        assert not trakt.is_authorized()
        assert store.path.with_name("trakt.json.revoked").exists()

    async def test_refresh_with_a_wrong_client_secret_keeps_the_token(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """invalid_client (the app's secret is wrong) is config, not the grant: AuthError
        naming the settings, and the token stays."""
        store.write(fake.issue_token(expires_in=0))
        trakt = TraktProvider(
            session=session,
            limiter=Limiter.per_second(post_per_s=20, get_per_s=100),
            tokens=store,
            client_id=CID,
            client_secret="wrong-secret",
            api_url=fake.url,
        )

        with pytest.raises(AuthError, match="client_secret"):
            await trakt.add_history([PLAY])
        assert trakt.is_authorized()
        assert not store.path.with_name("trakt.json.revoked").exists()

    async def test_401_after_refresh_is_auth_error(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """Still 401 with a fresh token: AuthError, no third attempt, the token revoked."""
        store.write(fake.issue_token())
        fake.fail_next(401, count=2, path="/sync/history")
        trakt = make_provider(fake, session, store)

        with pytest.raises(AuthError, match="crosswatchd auth trakt"):
            await trakt.add_history([PLAY])
        assert sum(1 for _, p, _ in fake.requests if p == "/sync/history") == 2
        assert not trakt.is_authorized()
        assert store.path.with_name("trakt.json.revoked").exists()

    async def test_reauthorized_token_is_not_revoked_by_a_stale_refusal(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """`auth trakt` saved a new token while the old refresh token was being refused:
        the new token is kept, and the request goes out with it."""
        store.write(fake.issue_token(expires_in=0))
        fake.revoke_all()
        trakt = make_provider(fake, session, store)
        fake.delay_s = 0.2
        call = asyncio.create_task(trakt.find_in_history([PLAY]))
        await asyncio.sleep(0.05)  # the refresh with the old refresh token is in flight
        fresh = store.write(fake.issue_token())

        assert not await call  # asked with the new token: nothing there yet
        assert refreshes(fake) == 1
        assert store.load() == fresh

    async def test_no_token_is_auth_error_without_a_request(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """Never authorized: not authorized, AuthError, nothing sent."""
        trakt = make_provider(fake, session, store)

        assert not trakt.is_authorized()
        with pytest.raises(AuthError, match="crosswatchd auth trakt"):
            await trakt.add_history([PLAY])
        assert fake.requests == []


Sleep = Callable[[float], Awaitable[None]]


class Sleeper:
    """The device flow's sleep: records each wait, really sleeps ``scale`` times it, and can run
    a hook (e.g. the user approving) after a given number of sleeps."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self.waits: list[float] = []
        self.hooks: dict[int, Callable[[], None]] = {}

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(seconds * self.scale)
        hook = self.hooks.get(len(self.waits))
        if hook:
            hook()


async def run_device_auth(
    fake: FakeTrakt,
    session: aiohttp.ClientSession,
    store: TokenFile,
    sleep: Sleep,
    **kwargs: Any,
) -> tuple[Any, list[str]]:
    lines: list[str] = []
    token = await device_auth(
        session=session,
        tokens=store,
        client_id=CID,
        client_secret=SECRET,
        api_url=fake.url,
        out=lines.append,
        sleep=sleep,
        **kwargs,
    )
    return token, lines


def polls(fake: FakeTrakt) -> int:
    return sum(1 for _, path, _ in fake.requests if path == "/oauth/device/token")


class TestDeviceAuth:
    @pytest.fixture(autouse=True)
    def _fast_device_flow(self, fake: FakeTrakt) -> None:
        fake.device_interval_s = 0.05

    async def test_pending_then_approved_saves_the_token(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """Code shown, polled at the interval while pending, token saved 0600 on approval."""
        fake.auto_approve_after = 2

        token, lines = await run_device_auth(fake, session, store, Sleeper())

        [device] = fake.devices.values()
        assert lines == [f"Open https://trakt.tv/activate and enter the code {device.user_code}"]
        assert polls(fake) == 3
        assert fake.rate_limited == 0
        assert store.load() == token
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
        assert make_provider(fake, session, store).is_authorized()

    async def test_user_approval_is_picked_up(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """The user approves after the first poll; the next poll gets the token."""
        sleeper = Sleeper()
        sleeper.hooks[2] = lambda: fake.approve_device(next(iter(fake.devices)))

        token, _ = await run_device_auth(fake, session, store, sleeper)

        assert polls(fake) == 2
        assert token.access_token

    async def test_slow_down_lengthens_the_interval(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """A client polling faster than asked gets 429s and backs off until they stop."""
        fake.auto_approve_after = 4
        sleeper = Sleeper(scale=0.1)  # a clock that runs fast: polls come too early

        token, _ = await run_device_auth(fake, session, store, sleeper)

        assert token.access_token
        assert fake.rate_limited >= 1
        assert sleeper.waits[-1] >= 4 * sleeper.waits[0]

    async def test_injected_slow_down_doubles_the_interval(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """One 429 from /oauth/device/token → the next wait is twice as long."""
        fake.fail_next(429, path="/oauth/device/token")
        fake.auto_approve_after = 0
        sleeper = Sleeper()

        await run_device_auth(fake, session, store, sleeper)

        assert sleeper.waits == [0.05, 0.1]

    async def test_denied(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """The user denies the code → AuthError saying so; no token saved."""
        sleeper = Sleeper()
        sleeper.hooks[1] = lambda: fake.deny_device(next(iter(fake.devices)))

        with pytest.raises(AuthError, match="denied"):
            await run_device_auth(fake, session, store, sleeper)
        assert store.load() is None

    async def test_server_says_expired(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """Trakt answers 410 once the code expired → AuthError asking to start again."""
        fake.device_expires_in_s = 0.2

        with pytest.raises(AuthError, match="expired"):
            await run_device_auth(fake, session, store, Sleeper(), monotonic_s=lambda: 0.0)
        assert polls(fake) >= 3
        assert store.load() is None

    async def test_gives_up_at_expires_in(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """The client stops polling once expires_in has passed on its own clock."""
        now = [0.0]
        sleeper = Sleeper()
        sleeper.hooks = {1: lambda: now.__setitem__(0, 300.0), 2: lambda: now.__setitem__(0, 600.0)}

        with pytest.raises(AuthError, match="expired"):
            await run_device_auth(fake, session, store, sleeper, monotonic_s=lambda: now[0])
        assert polls(fake) == 1

    @pytest.mark.parametrize(
        ("status", "reason"),
        [(404, "invalid device code"), (409, "already used"), (410, "expired"), (418, "denied")],
    )
    async def test_terminal_statuses(
        self,
        fake: FakeTrakt,
        session: aiohttp.ClientSession,
        store: TokenFile,
        status: int,
        reason: str,
    ) -> None:
        """Each terminal poll status ends the flow with a clear AuthError."""
        fake.fail_next(status, path="/oauth/device/token")

        with pytest.raises(AuthError, match=reason):
            await run_device_auth(fake, session, store, Sleeper())
        assert polls(fake) == 1

    async def test_wrong_client_id_is_auth_error(
        self, fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenFile
    ) -> None:
        """A client id Trakt does not know → AuthError pointing at the setting."""
        with pytest.raises(AuthError, match="client_id"):
            await device_auth(
                session=session,
                tokens=store,
                client_id="wrong",
                client_secret=SECRET,
                api_url=fake.url,
                out=lambda _: None,
                sleep=Sleeper(),
            )
