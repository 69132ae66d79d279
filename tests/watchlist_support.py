"""A world for the watchlist tests: the fake Plex Discover, Trakt and SIMKL sharing one
catalogue, settings pointing at them, the real outbox, state file and providers, and the
drainers that deliver what a pass queued (Plex's too, in two-way mode)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crosswatchd.app import Services, services
from crosswatchd.config import Settings
from crosswatchd.drain import Drainer
from crosswatchd.models import DEFAULT_PROFILE
from crosswatchd.outbox import DeliveryKind, Outbox
from crosswatchd.profiles import Household, Profile
from crosswatchd.providers.plex import PlexWatchlistProvider
from crosswatchd.storage import Storage
from crosswatchd.tokens.files import TokenFile
from crosswatchd.watchlist.passes import PassResult, WatchlistSync
from crosswatchd.watchlist.state import WatchlistState
from tests.fakes.catalog import Catalog, default_catalog
from tests.fakes.discover import FakeDiscover
from tests.fakes.simkl import FakeSimkl
from tests.fakes.trakt import FakeTrakt

CID, SECRET = "cid", "csecret"
PLEX_TOKEN = "plex-account-token"

#: Extra movies of the watchlist catalogue: (title, year, imdb, tmdb).
MOVIES = [(f"Film {n}", 1990 + n, f"tt{7_000_000 + n}", 900_000 + n) for n in range(1, 13)]


def watchlist_catalog() -> Catalog:
    """The default catalogue plus twelve films ``Film 1``…``Film 12``."""
    catalog = default_catalog()
    for title, year, imdb, tmdb in MOVIES:
        catalog.add_movie(title, year, imdb=imdb, tmdb=tmdb)
    return catalog


def imdb(n: int) -> str:
    """The imdb id of ``Film n``."""
    return MOVIES[n - 1][2]


def settings_for(
    data_dir: Path,
    plex: FakeDiscover,
    trakt: FakeTrakt | None,
    simkl: FakeSimkl | None,
    *,
    mode: str = "plex",
    profiles: list[dict[str, Any]] | None = None,
    plex_token: str = PLEX_TOKEN,
) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "plex": {
            "token": plex_token if profiles is None else "",
            "discover_url": plex.url,
            "plextv_url": plex.url,
            "discover_put_per_s": 100.0,
            "discover_get_per_s": 1000.0,
        },
        "trakt": {"enabled": False},
        "simkl": {"enabled": False},
        "watchlist": {"mode": mode, "interval_s": 0},
        "resolver": {"use_search": False, "use_plex": False, "use_tautulli": False},
        "delivery": {"timeout_s": 3.0, "poll_s": 0.05, "backoff_base_s": 0.1},
    }
    if trakt is not None:
        values["trakt"] = {
            "client_id": trakt.client_id,
            "client_secret": trakt.client_secret,
            "api_url": trakt.url,
            "post_per_s": 100.0,
        }
    if simkl is not None:
        values["simkl"] = {"client_id": simkl.client_id, "api_url": simkl.url, "post_per_s": 100.0}
    if profiles is not None:
        values["profiles"] = profiles
    return Settings(**values)


@dataclass
class FakeClock:
    """The fakes' wall clock: real time plus an offset tests move (:meth:`World.later`)."""

    offset_s: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self(), UTC)


@dataclass
class World:
    """Fakes, settings and the daemon's parts, for one test (see the module docstring)."""

    plex: FakeDiscover
    trakt: FakeTrakt
    simkl: FakeSimkl
    settings: Settings
    outbox: Outbox
    state: WatchlistState
    svc: Services
    clock: FakeClock = field(default_factory=lambda: FakeClock())
    sync: WatchlistSync = field(init=False)

    def __post_init__(self) -> None:
        self.sync = self._sync()

    def _sync(self) -> WatchlistSync:
        return WatchlistSync(
            settings=self.settings,
            outbox=self.outbox,
            state=self.state,
            session=self.svc.session,
            providers=self.svc.providers,
            tokens=self.storage.tokens,
            plex_client_id="crosswatchd-tests",
        )

    @property
    def storage(self) -> Storage:
        """The settings' SQLite-mode storage (its token files, its state file)."""
        return Storage.files(self.settings)

    def later(self) -> None:
        """Move the services' clocks on two seconds: what a person does next is stamped
        later than what came before (Trakt and SIMKL stamp activities to the second)."""
        self.clock.offset_s += 2.0

    def use_mode(self, mode: str) -> None:
        """Switch ``watchlist.mode`` (as a restart with another config would)."""
        self.settings.watchlist.mode = mode  # type: ignore[assignment]
        self.sync = self._sync()

    def profile(self, name: str = DEFAULT_PROFILE) -> Profile:
        found = Household.from_settings(self.settings).get(name)
        assert found is not None
        return found

    async def run(self, name: str = DEFAULT_PROFILE, *, dry_run: bool = False) -> PassResult:
        """One pass of profile *name*."""
        return await self.sync.run(self.profile(name), dry_run=dry_run)

    async def deliver(self, name: str = DEFAULT_PROFILE) -> int:
        """Drain every watchlist change of profile *name* due now (Plex's included); returns
        how many were settled."""
        profile = self.profile(name)
        drainers = [
            Drainer(self.outbox, self.svc.providers[account], self.settings.delivery, profile=name)
            for account in profile.accounts()
        ]
        drainers.append(
            Drainer(
                self.outbox,
                PlexWatchlistProvider(self.sync.discover(profile)),
                self.settings.delivery,
                profile=name,
            )
        )
        settled = 0
        for drainer in drainers:
            while n := await drainer.drain_watchlist_once():
                settled += n
        return settled

    async def sync_and_deliver(self, name: str = DEFAULT_PROFILE) -> PassResult:
        result = await self.run(name)
        await self.deliver(name)
        return result

    async def changes(self, *columns: str) -> list[tuple[Any, ...]]:
        """Watchlist deliveries (default columns: provider, action, state, label)."""
        cols = ", ".join(columns or ("d.provider", "e.action", "d.state", "e.label"))
        return await self.outbox.fetch_all(
            f"SELECT {cols} FROM deliveries AS d JOIN events AS e ON e.id = d.event_id"
            " WHERE d.kind = ? ORDER BY d.id",
            (str(DeliveryKind.WATCHLIST),),
        )


def plex_key(world: World, n: int) -> str:
    """The Discover ratingKey of ``Film n``."""
    key = world.plex.rating_key_for({"imdb": imdb(n)})
    assert key is not None
    return key


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path,
    *,
    mode: str = "plex",
    trakt_on: bool = True,
    simkl_on: bool = True,
    authorize: bool = True,
) -> AsyncIterator[World]:
    """A :class:`World` with the default profile's Trakt and SIMKL accounts authorized."""
    catalog = watchlist_catalog()
    clock = FakeClock()
    async with (
        FakeDiscover(catalog=catalog, token=PLEX_TOKEN, clock=clock) as plex,
        FakeTrakt(
            client_id=CID, client_secret=SECRET, catalog=catalog, post_tolerance_s=1.0, clock=clock
        ) as trakt,
        FakeSimkl(
            client_id=CID, catalog=catalog, get_per_s=1000, post_per_s=1000, now=clock.utc
        ) as simkl,
    ):
        settings = settings_for(
            tmp_path / "data",
            plex,
            trakt if trakt_on else None,
            simkl if simkl_on else None,
            mode=mode,
        )
        if authorize:
            TokenFile(settings.data_dir, "trakt").write(trakt.issue_token())
            TokenFile(settings.data_dir, "simkl").write({"access_token": simkl.issue_token()})
        outbox = await Storage.files(settings).outbox()
        state = await WatchlistState.open(settings.data_dir)
        try:
            async with services(Storage.files(settings)) as svc:
                yield World(plex, trakt, simkl, settings, outbox, state, svc, clock)
        finally:
            await state.close()
            await outbox.close()
