"""The watchlist inside ``serve``: a pass every ``watchlist.interval_s`` (0: none), and in
two-way mode one drainer per profile for its Plex watchlist (watchlist changes only), beside
the drainers of Trakt and SIMKL.

A pass that cannot read a side logs one line (``watchlist.pass_failed``) and the daemon goes
on; so does an unexpected failure (``watchlist.pass_crashed``, the next pass runs on time). On
stop, a pass under way is cancelled at once: it is safe to interrupt anywhere
(:mod:`.passes`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from crosswatchd.config import Settings
from crosswatchd.drain import Drainer
from crosswatchd.metrics import Metrics
from crosswatchd.outbox import DeliveryKind, Outbox
from crosswatchd.profiles import Household, Profile
from crosswatchd.providers.plex import PlexWatchlistProvider
from crosswatchd.stopping import until_stopped
from crosswatchd.watchlist.passes import WatchlistSync
from crosswatchd.watchlist.state import WatchlistState

if TYPE_CHECKING:  # crosswatchd.app imports this module
    from crosswatchd.app import Services

__all__ = ["WatchlistTasks", "start_watchlist"]

log = structlog.get_logger(__name__)


@dataclass
class WatchlistTasks:
    """What :func:`start_watchlist` started: ``tasks`` to wait for (they end when the stop
    event is set) and the state file to :meth:`close` after them."""

    state: WatchlistState
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        await self.state.close()


async def run_passes(
    sync: WatchlistSync, profiles: Sequence[Profile], interval_s: float, stop: asyncio.Event
) -> None:
    """A pass for every profile with a Plex token now, then every *interval_s* seconds,
    until *stop* is set."""
    while not stop.is_set():
        for profile in profiles:
            if stop.is_set():
                return
            try:
                await until_stopped(sync.run(profile), stop)
            except Exception as exc:  # one line; the daemon and the next pass go on
                log.error(
                    "watchlist.pass_crashed",
                    profile=profile.name,
                    error=f"{type(exc).__name__}: {exc}",
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


async def start_watchlist(
    settings: Settings,
    outbox: Outbox,
    svc: Services,
    stop: asyncio.Event,
    metrics: Metrics | None = None,
) -> WatchlistTasks:
    """Open the watchlist state and start the periodic pass and (two-way) the Plex
    watchlist drainers; they run until *stop* is set."""
    state = await WatchlistState.open(settings.data_dir)
    started = WatchlistTasks(state)
    household = Household.from_settings(settings)
    sync = WatchlistSync(
        settings=settings,
        outbox=outbox,
        state=state,
        session=svc.session,
        providers=svc.providers,
    )
    if settings.watchlist.mode == "two-way":
        for profile in household.profiles:
            drainer = Drainer(
                outbox,
                PlexWatchlistProvider(sync.discover(profile)),
                settings.delivery,
                profile=profile.name,
                metrics=metrics,
            )
            started.tasks.append(
                asyncio.create_task(
                    drainer.run(stop, kinds={DeliveryKind.WATCHLIST}),
                    name=f"drain-{profile.name}/plex",
                )
            )
    if settings.watchlist.interval_s > 0:
        started.tasks.append(
            asyncio.create_task(
                run_passes(sync, household.profiles, settings.watchlist.interval_s, stop),
                name="watchlist",
            )
        )
    return started
