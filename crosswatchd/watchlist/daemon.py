"""The watchlist inside ``serve``: a pass every ``watchlist.interval_s`` (0: none), and in
two-way mode one drainer per profile for its Plex watchlist (watchlist changes only), beside
the drainers of Trakt and SIMKL.

A pass that cannot read a side logs one line (``watchlist.pass_failed``) and the daemon goes
on; so does an unexpected failure (``watchlist.pass_crashed``, the next pass runs on time). On
stop, a pass under way is cancelled at once: it is safe to interrupt anywhere
(:mod:`.passes`).

With replicas, a profile's watchlist work runs in the replica holding the profile's anchor
account (:func:`crosswatchd.replicas.anchor_of`): the passes ask ``profiles()`` which
profiles are theirs at each round, and the supervisor runs the Plex watchlist drainer with the
anchor account's drainer (:func:`plex_drainer`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
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
    from crosswatchd.storage import Storage

__all__ = ["WatchlistTasks", "plex_drainer", "run_passes", "start_watchlist"]

log = structlog.get_logger(__name__)


@dataclass
class WatchlistTasks:
    """What :func:`start_watchlist` started: ``tasks`` to wait for (they end when the stop
    event is set) and the state to :meth:`close` after them."""

    state: WatchlistState
    sync: WatchlistSync
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        await self.state.close()


async def run_passes(
    sync: WatchlistSync,
    profiles: Callable[[], Sequence[Profile]],
    interval_s: float,
    stop: asyncio.Event,
) -> None:
    """A pass for every profile of ``profiles()`` (asked at each round) now, then every
    *interval_s* seconds, until *stop* is set."""
    while not stop.is_set():
        for profile in profiles():
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


def plex_drainer(
    settings: Settings,
    outbox: Outbox,
    sync: WatchlistSync,
    profile: Profile,
    metrics: Metrics | None = None,
    slots: asyncio.Semaphore | None = None,
) -> Drainer:
    """The drainer of *profile*'s Plex watchlist (two-way mode; run it with
    ``kinds={DeliveryKind.WATCHLIST}``); *slots* as :class:`~crosswatchd.drain.Drainer`'s."""
    return Drainer(
        outbox,
        PlexWatchlistProvider(sync.discover(profile)),
        settings.delivery,
        profile=profile.name,
        metrics=metrics,
        slots=slots,
    )


async def start_watchlist(
    storage: Storage,
    outbox: Outbox,
    svc: Services,
    stop: asyncio.Event,
    metrics: Metrics | None = None,
    *,
    profiles: Callable[[], Sequence[Profile]] | None = None,
    plex_drainers: bool = True,
) -> WatchlistTasks:
    """Open the watchlist state of *storage* and start the periodic pass over ``profiles()``
    (default: the settings' household) and, in two-way mode with *plex_drainers*, the Plex
    watchlist drainers (without: the caller runs :func:`plex_drainer` itself); they run until
    *stop* is set."""
    settings = storage.settings
    state = await storage.watchlist_state()
    household = Household.from_settings(settings)
    sync = WatchlistSync(
        settings=settings,
        outbox=outbox,
        state=state,
        session=svc.session,
        providers=svc.providers,
        tokens=storage.tokens,
        plex_client_id=await storage.plex_client_id(),
    )
    started = WatchlistTasks(state, sync)
    if settings.watchlist.mode == "two-way" and plex_drainers:
        for profile in household.profiles:
            drainer = plex_drainer(settings, outbox, sync, profile, metrics)
            started.tasks.append(
                asyncio.create_task(
                    drainer.run(stop, kinds={DeliveryKind.WATCHLIST}),
                    name=f"drain-{profile.name}/plex",
                )
            )
    if settings.watchlist.interval_s > 0:
        chosen = profiles if profiles is not None else (lambda: household.profiles)
        started.tasks.append(
            asyncio.create_task(
                run_passes(sync, chosen, settings.watchlist.interval_s, stop),
                name="watchlist",
            )
        )
    return started
