"""The stores behind the storage seam, on both backends: tokens (files, or the shared
``tokens`` table), the webhook secret and the watchlist state; and what a relay's operator
sees: ``auth`` with one replica's config authorizes every replica, ``status`` with another's
says so, and nothing is written to the data dir in PostgreSQL mode.

Two replicas refreshing one Trakt account are two token stores on the same storage: a
refresher that lost the race (its refresh token used a moment ago by the other, or a newer
token stored meanwhile) uses the stored token; it never overwrites it, never revokes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crosswatchd import postgres
from crosswatchd.config import Settings
from crosswatchd.errors import StaleTokenError
from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.providers.base import Activities, Play, PlayOutcome, TargetRating, TargetWatch
from crosswatchd.providers.trakt import TraktProvider
from crosswatchd.ratelimit import Limiter
from crosswatchd.reconcile import PassRunning, pass_lock
from crosswatchd.reconcile.state import Copy
from crosswatchd.storage import PG_STORES, Storage
from crosswatchd.tokens import Token, TokenStore
from crosswatchd.watchlist.state import PassRecord, StoredSide
from tests.backends import BACKENDS, tokens_for
from tests.fakes.catalog import default_catalog
from tests.fakes.trakt import FakeTrakt
from tests.test_cli import Home, cli

CID, SECRET = "cid", "csecret"
T0 = datetime(2026, 11, 21, 10, 54, 52, tzinfo=UTC)
MOVIE = Item(MediaKind.MOVIE, "Big Trouble in Little China", 1986, ids=Ids(imdb="tt0090728"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def where(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The data dir (SQLite) or the database URL (PostgreSQL) the stores of a test share."""
    if backend == "sqlite":
        return str(tmp_path / "data")
    return str(request.getfixturevalue("pg_url"))


def answer(access: str, refresh: str | None = None, **more: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"access_token": access, **more}
    if refresh is not None:
        data["refresh_token"] = refresh
    return data


async def until(predicate: Any, what: str, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class TestTokenStore:
    """One interface, both backends."""

    async def test_a_saved_token_is_loaded_back_and_kept_private(
        self, backend: str, where: str
    ) -> None:
        async with tokens_for(backend, where, "trakt", "sam") as store:
            assert store.load() is None
            saved = await store.save(answer("a1", "r1", expires_in=86400, created_at=1000))
            assert store.load() == saved == await store.current()
            assert (saved.access_token, saved.refresh_token, saved.expires_at) == (
                "a1",
                "r1",
                87400.0,
            )
            assert "a1" not in repr(saved) and "r1" not in repr(saved)
        if backend == "sqlite":
            path = Path(where) / "tokens" / "sam" / "trakt.json"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    async def test_accounts_are_apart(self, backend: str, where: str) -> None:
        async with (
            tokens_for(backend, where, "trakt", "alex") as alex,
            tokens_for(backend, where, "simkl", "alex") as alex_simkl,
            tokens_for(backend, where, "trakt", "sam") as sam,
        ):
            await alex.save(answer("alex-trakt"))
            await alex_simkl.save(answer("alex-simkl"))
            assert sam.load() is None and await sam.current() is None
            assert (await alex.current(), await alex_simkl.current()) != (None, None)
            assert alex.load() is not None and alex.load().access_token == "alex-trakt"  # type: ignore[union-attr]

    async def test_a_save_replacing_a_token_that_changed_meanwhile_is_refused(
        self, backend: str, where: str
    ) -> None:
        """A stale refresher (it read T1, a newer T2 was stored since) cannot clobber T2."""
        async with tokens_for(backend, where) as store:
            t1 = await store.save(answer("a1", "r1"))
            t2 = await store.save(answer("a2", "r2"))
            with pytest.raises(StaleTokenError) as caught:
                await store.save(answer("a3", "r3"), replacing=t1)
            assert caught.value.current == t2
            assert (await store.current()) == t2
            t3 = await store.save(answer("a3", "r3"), replacing=t2)
            assert store.load() == t3

    async def test_a_revocation_of_a_token_that_changed_meanwhile_does_nothing(
        self, backend: str, where: str
    ) -> None:
        async with tokens_for(backend, where) as store:
            t1 = await store.save(answer("a1", "r1"))
            t2 = await store.save(answer("a2", "r2"))
            assert not await store.revoke(t1)
            assert store.load() == t2
            assert await store.revoke(t2)
            assert store.load() is None and await store.current() is None
            with pytest.raises(StaleTokenError):
                await store.save(answer("a3", "r3"), replacing=t2)  # revoked: nothing to replace
            fresh = await store.save(answer("a4", "r4"))  # a new authorization
            assert store.load() == fresh
        if backend == "sqlite":
            assert (Path(where) / "tokens" / "trakt.json.revoked").exists()

    async def test_another_process_sees_a_save_and_a_revocation(
        self, backend: str, where: str
    ) -> None:
        """A replica's copy follows the shared store without being asked (NOTIFY, or the
        file's new signature)."""
        async with (
            tokens_for(backend, where) as daemon,
            tokens_for(backend, where) as command,
        ):
            saved = await command.save(answer("from-auth", "r"))
            await until(lambda: daemon.load() == saved, "the other process's copy")
            await command.revoke()
            await until(lambda: daemon.load() is None, "the revocation")


def trakt_for(fake: FakeTrakt, session: aiohttp.ClientSession, store: TokenStore) -> TraktProvider:
    return TraktProvider(
        session=session,
        limiter=Limiter.per_second(post_per_s=50, get_per_s=100),
        tokens=store,
        client_id=CID,
        client_secret=SECRET,
        api_url=fake.url,
        refusal_settle_s=0.5,
    )


class SlowSave:
    """A token store whose saves reach the storage *delay_s* late (a slow disk or database),
    and can let something happen just before (*before_save*)."""

    def __init__(self, inner: TokenStore, delay_s: float = 0.0) -> None:
        self.inner = inner
        self.provider, self.profile = inner.provider, inner.profile
        self.delay_s = delay_s
        self.before_save: Any = None

    @property
    def where(self) -> str:
        return self.inner.where

    def load(self) -> Token | None:
        return self.inner.load()

    async def current(self) -> Token | None:
        return await self.inner.current()

    async def save(self, response: dict[str, Any], *, replacing: Token | None = None) -> Token:
        await asyncio.sleep(self.delay_s)
        if self.before_save is not None:
            await self.before_save()
        return await self.inner.save(response, replacing=replacing)

    async def revoke(self, used: Token | None = None) -> bool:
        return await self.inner.revoke(used)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTrakt]:
    async with FakeTrakt(client_id=CID, client_secret=SECRET, catalog=default_catalog()) as f:
        yield f


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class TestTwoRefreshers:
    """Two replicas (two token stores) of one Trakt account whose token needs a refresh."""

    async def test_the_loser_of_a_refresh_race_uses_the_winners_token_and_revokes_nothing(
        self, backend: str, where: str, fake: FakeTrakt, session: aiohttp.ClientSession
    ) -> None:
        """A refreshes (R1 → R2 at Trakt) but stores its answer late; B meanwhile refreshes
        with R1 and is refused (``invalid_grant``): B waits for the stored token to move,
        uses A's, and revokes nothing; both plays land, the stored token is A's and works."""
        fake.post_tolerance_s = 1.0  # two replicas of one account: the lease's business
        async with tokens_for(backend, where) as store_a, tokens_for(backend, where) as store_b:
            await store_a.save(fake.issue_token(expires_in=0))
            await until(lambda: store_b.load() is not None, "B's copy")
            slow = SlowSave(store_a, delay_s=0.3)
            replica_a, replica_b = trakt_for(fake, session, slow), trakt_for(fake, session, store_b)

            first = asyncio.create_task(replica_a.add_history([Play(1, MOVIE, T0)]))
            await until(
                lambda: any(p == "/oauth/token" for _, p, _ in fake.requests), "A's refresh"
            )
            second = await replica_b.add_history([Play(2, MOVIE, T0.replace(hour=12))])

            assert await first == {1: PlayOutcome.ADDED}
            assert second == {2: PlayOutcome.ADDED}
            stored = await store_b.current()
            assert stored is not None and fake.token_user(stored.access_token) is not None
            assert stored == await store_a.current()
            assert len(fake.history) == 2
        if backend == "sqlite":
            assert not (Path(where) / "tokens" / "trakt.json.revoked").exists()

    async def test_a_stale_refresher_never_clobbers_a_newer_token(
        self, backend: str, where: str, fake: FakeTrakt, session: aiohttp.ClientSession
    ) -> None:
        """While A's refresh is on its way, B (or `auth trakt`) stores a newer token: A's
        answer is dropped, A sends with the stored token, which stays."""
        async with tokens_for(backend, where) as store_a, tokens_for(backend, where) as store_b:
            await store_a.save(fake.issue_token(expires_in=0))
            slow = SlowSave(store_a)
            newer: dict[str, Token] = {}

            async def someone_else_saves() -> None:
                newer["token"] = await store_b.save(fake.issue_token())

            slow.before_save = someone_else_saves
            outcome = await trakt_for(fake, session, slow).add_history([Play(1, MOVIE, T0)])

            assert outcome == {1: PlayOutcome.ADDED}
            assert await store_a.current() == newer["token"]
            assert fake.history and len(fake.history) == 1


class TestWebhookSecret:
    async def test_replicas_starting_together_on_an_empty_database_agree_on_one_secret(
        self, pg_url: str, tmp_path: Path
    ) -> None:
        settings = [
            Settings(data_dir=tmp_path / f"replica{n}", database_url=pg_url) for n in range(6)
        ]

        async def start(one: Settings) -> tuple[str, bool]:
            async with Storage.opened(one) as storage:
                return await storage.webhook_secret()

        secrets = await asyncio.gather(*(start(one) for one in settings))

        assert len({secret for secret, _ in secrets}) == 1
        assert sum(created for _, created in secrets) == 1
        assert not any(one.data_dir.exists() for one in settings)

    async def test_two_commands_on_one_data_dir_agree_on_one_secret(self, tmp_path: Path) -> None:
        home = Home(tmp_path / "data", tmp_path / "c.toml")
        home.configure()
        runs = await asyncio.gather(*(cli(home.config, "webhook-url") for _ in range(4)))
        assert all(run.code == 0 for run in runs), [run.err for run in runs]
        assert len({run.out for run in runs}) == 1
        secret = (home.data_dir / "webhook_secret").read_text().strip()
        assert f"token={secret}" in runs[0].out
        assert stat.S_IMODE((home.data_dir / "webhook_secret").stat().st_mode) == 0o600

    async def test_every_replica_prints_the_same_webhook_url(
        self, pg_url: str, tmp_path: Path
    ) -> None:
        env = {"CROSSWATCHD_DATABASE_URL": pg_url}
        homes = [Home(tmp_path / f"data{n}", tmp_path / f"c{n}.toml") for n in range(2)]
        for home in homes:
            home.configure()
        runs = [await cli(home.config, "webhook-url", env=env) for home in homes]
        assert [run.code for run in runs] == [0, 0], runs[0].err
        assert runs[0].out == runs[1].out and "token=" in runs[0].out


def _settings(backend: str, where: str) -> Settings:
    """Settings on the data dir, or on the database, *where*."""
    if backend == "sqlite":
        return Settings(data_dir=Path(where))
    return Settings(data_dir=Path("/nonexistent"), database_url=where)


class TestWatchlistState:
    async def test_what_a_pass_stored_is_read_back(self, backend: str, where: str) -> None:
        settings = _settings(backend, where)
        async with Storage.opened(settings) as storage:
            state = await storage.watchlist_state()
            try:
                item = Item(MediaKind.MOVIE, "Heat", 1995, ids=Ids(imdb="tt0113277"))
                side = StoredSide([item], None, 1000.0)
                record = PassRecord("plex", tried_at=1000.0, finished_at=1001.0)
                await state.save("sam", {"plex": side}, record)
                await state.record("sam", PassRecord("plex", 2000.0, errors={"trakt": "down"}))
                await state.remember_ids({"rk1": Ids(tmdb="949"), "rk2": Ids()})
                await state.remember_match(["movie:tmdb:949"], "rk1")

                assert (await state.sides("sam"))["plex"].items == [item]
                passes = await state.passes()
                assert (passes["sam"].tried_at, passes["sam"].finished_at) == (2000.0, 1001.0)
                assert passes["sam"].errors == {"trakt": "down"}
                known = await state.known_ids(["rk1", "rk2", "rk3"])
                assert known == {"rk1": Ids(tmdb="949"), "rk2": Ids()}
                assert await state.known_match("movie:tmdb:949") == (True, "rk1")
                assert await state.known_match("movie:tmdb:1") == (False, None)
            finally:
                await state.close()


class TestReconcileState:
    async def test_a_large_copy_and_the_pass_figures_are_read_back(
        self, backend: str, where: str
    ) -> None:
        """A copy of 12,000 plays (several bulk statements) replaces the last one whole."""
        settings = _settings(backend, where)
        async with Storage.opened(settings) as storage:
            state = await storage.reconcile_state()
            try:
                watches = [
                    TargetWatch(None if n % 7 == 0 else str(n), (f"movie:imdb:tt{n}",), 1e9 + n)
                    for n in range(12_000)
                ]
                await state.save_copy("sam", "trakt", "plays", Copy(None, 1.0, watches=[]))
                stamps = Activities({"movies.watched_at": "2026-01-01T00:00:00Z"})
                await state.save_copy(
                    "sam", "trakt", "plays", Copy(stamps, 2.0, total=12_000, watches=watches)
                )
                rating = TargetRating(("show:tvdb:1",), MediaKind.SHOW, 8, "s:1", "Futurama")
                await state.save_copy("sam", "simkl", "ratings", Copy(None, 3.0, ratings=[rating]))
                await state.save_pass("sam", "trakt", {"missing": 1})

                plays = await state.copy("sam", "trakt", "plays")
                assert plays is not None and (plays.read_at, plays.total) == (2.0, 12_000)
                assert plays.activities == stamps
                assert sorted(plays.watches, key=lambda w: w.at) == watches
                ratings = await state.copy("sam", "simkl", "ratings")
                assert ratings is not None and ratings.ratings == [rating]
                assert await state.copy("alex", "trakt", "plays") is None
                assert await state.passes() == {"sam": {"trakt": {"missing": 1}}}
            finally:
                await state.close()

    async def test_one_reconcile_pass_at_a_time_across_replicas(
        self, pg_url: str, tmp_path: Path
    ) -> None:
        one, two = (
            Settings(data_dir=tmp_path / name, database_url=pg_url) for name in ("one", "two")
        )
        async with Storage.opened(one) as first, Storage.opened(two) as second:
            async with pass_lock(first):
                with pytest.raises(PassRunning, match="already running on postgresql://"):
                    async with pass_lock(second):
                        pass
            async with pass_lock(second):  # released again
                pass


# -- a relay's operator -------------------------------------------------------------------------


class TestSharedTokensInTheCli:
    async def test_auth_with_one_replicas_config_authorizes_every_replica(
        self, tmp_path: Path, pg_url: str
    ) -> None:
        """`auth trakt` with replica 1's config; `status` with replica 2's (another data dir)
        shows the account authorized; neither command writes to its data dir."""
        env = {"CROSSWATCHD_DATABASE_URL": pg_url}
        async with FakeTrakt(device_interval_s=0.2, auto_approve_after=1) as fake:
            trakt = {
                "client_id": fake.client_id,
                "client_secret": fake.client_secret,
                "api_url": fake.url,
            }
            one = Home(tmp_path / "one", tmp_path / "one.toml")
            two = Home(tmp_path / "two", tmp_path / "two.toml")
            one.configure(trakt=trakt)
            two.configure(trakt=trakt)
            before = json.loads((await cli(two.config, "status", "--json", env=env)).out)
            assert before["providers"]["trakt"]["authorized"] is False

            run = await cli(one.config, "auth", "trakt", env=env)
            assert run.code == 0, run.err
            status = await cli(two.config, "status", "--json", env=env)
            assert status.code == 0, status.err
            report = json.loads(status.out)
            assert report["providers"]["trakt"]["authorized"] is True
            assert report["database"] == postgres.masked(pg_url)
            text = await cli(two.config, "status", env=env)
            assert "database:" in text.out
            assert not one.data_dir.exists() and not two.data_dir.exists()

        db = await postgres.connect(pg_url, stores=PG_STORES)
        try:
            row = await db.fetch_one("SELECT token FROM tokens WHERE provider = 'trakt'")
        finally:
            await db.close()
        assert row is not None and json.loads(row["token"])["access_token"] not in run.out

    async def test_the_storage_closes_what_it_opened(self, pg_url: str, tmp_path: Path) -> None:
        """The token follower's connection is released: the pool closes at once."""
        storage = await Storage.open(Settings(data_dir=tmp_path, database_url=pg_url))
        with contextlib.suppress(Exception):
            await storage.tokens("trakt").save(answer("x"))
        await asyncio.wait_for(storage.close(), 5.0)
