"""When reconcile passes run: every ``reconcile.interval_s`` inside ``serve``, or by hand
(``crosswatchd reconcile``), never two at once on one data dir, nor on one shared database.

The lock (:meth:`~crosswatchd.storage.Storage.exclusive`) is ``flock`` on
``data_dir/reconcile.lock`` (it holds the PID of the pass's process), or with PostgreSQL an
advisory lock every replica asks for, taken without waiting: a pass by hand while ``serve``
(or another replica) runs one exits at once with one line naming it (exit code 1), and a
scheduled pass that finds another one running skips its turn with one log line. The lock
dies with its process, so a killed pass never leaves it held.

In ``serve`` the first pass runs ``reconcile.first_delay_s`` after start, then one every
``interval_s`` seconds, each wait jittered by up to a tenth (so the daemons of many users do
not all read Trakt at the same minute). Each pass logs one line (``reconcile.done``, a warning
when a side could not be read); one that fails outright logs ``reconcile.error``, and the next
one runs on time; stopping the daemon cancels a pass at once (everything it enqueued is
committed; its target copies are written only once complete).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Final

import structlog

from crosswatchd.config import Settings
from crosswatchd.errors import CrosswatchError
from crosswatchd.metrics import Metrics
from crosswatchd.outbox import Outbox
from crosswatchd.profiles import Household, TargetAccount
from crosswatchd.providers.base import Provider
from crosswatchd.reconcile.run import Reconciler
from crosswatchd.reconcile.state import ReconcileState
from crosswatchd.sources.plex_library import PlexLibrary
from crosswatchd.sources.plex_server import PlexServer
from crosswatchd.stopping import until_stopped

if TYPE_CHECKING:  # app.py starts the schedule: no import cycle at run time
    from crosswatchd.app import Services
    from crosswatchd.storage import Storage

__all__ = [
    "LOCK_FILE",
    "PassRunning",
    "has_source",
    "make_reconciler",
    "pass_lock",
    "run_forever",
]

log = structlog.get_logger(__name__)

#: The name of the pass lock (``data_dir/reconcile.lock`` in SQLite mode).
LOCK_NAME: Final = "reconcile"
LOCK_FILE: Final = f"{LOCK_NAME}.lock"
#: Largest share of a wait added or taken off at random.
_JITTER: Final = 0.1


class PassRunning(CrosswatchError):
    """Another reconcile pass holds the lock of this data dir (or shared database)."""


@contextlib.asynccontextmanager
async def pass_lock(storage: Storage) -> AsyncIterator[None]:
    """Hold the reconcile lock of *storage* for one pass, or raise :class:`PassRunning`
    naming who holds it."""
    async with storage.exclusive(LOCK_NAME) as holder:
        if holder is not None:
            who = f" ({holder})" if holder else ""
            raise PassRunning(
                f"a reconcile pass{who} is already running on {storage.where}; try again later"
            )
        yield


def has_source(settings: Settings) -> bool:
    """True when a source to reconcile from is configured (Tautulli, or the Plex server)."""
    tautulli = bool(settings.tautulli.url and settings.tautulli.api_key)
    return tautulli or bool(settings.plex.url and settings.plex.token)


def make_reconciler(
    settings: Settings,
    outbox: Outbox,
    services: Services,
    state: ReconcileState,
    *,
    providers: dict[TargetAccount, Provider]
    | Callable[[TargetAccount], Provider | None]
    | None = None,
    metrics: Metrics | None = None,
    household: Household | None = None,
) -> Reconciler:
    """A :class:`Reconciler` over the daemon's (or a command's) outbox and services: its
    providers (unless *providers* are given; an account of a profile added at run time gets
    one on first use), resolver, Tautulli client, and a Plex server client when ``plex.url``
    and ``plex.token`` are set; *household* as :class:`Reconciler`'s."""
    plex = None
    if settings.plex.url and settings.plex.token:
        server = PlexServer(
            session=services.session,
            url=settings.plex.url,
            token=settings.plex.token,
            timeout_s=settings.delivery.timeout_s,
        )
        plex = PlexLibrary(server, page_size=settings.reconcile.page_size)
    return Reconciler(
        settings,
        outbox=outbox,
        providers=services.provider if providers is None else providers,
        resolve=services.resolve,
        state=state,
        tautulli=services.tautulli,
        plex=plex,
        metrics=metrics,
        household=household,
    )


def _jittered(seconds: float, rand: Callable[[], float]) -> float:
    return max(0.0, seconds * (1.0 + _JITTER * (2.0 * rand() - 1.0)))


async def run_forever(
    storage: Storage,
    outbox: Outbox,
    services: Services,
    stop: asyncio.Event,
    *,
    metrics: Metrics | None = None,
    rand: Callable[[], float] = random.random,
    household: Callable[[], Household] | None = None,
    providers: Callable[[TargetAccount], Provider | None] | None = None,
) -> None:
    """Run passes on the schedule (see the module docstring) until *stop* is set; the state
    and the lock are *storage*'s. Each pass covers *household*'s profiles as they are then
    (the daemon's live household: profiles added at run time included; the config file's by
    default), through *providers* (the daemon's, whose writes pass the lease gate; the
    services' by default)."""
    settings = storage.settings
    cfg = settings.reconcile
    if not cfg.interval_s:
        return
    if not has_source(settings):
        log.info(
            "reconcile.disabled",
            reason="no source: set tautulli.url and tautulli.api_key, or plex.url and plex.token",
        )
        return
    wait_s = _jittered(cfg.first_delay_s, rand)
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait_s)
        if stop.is_set():
            return
        await _one_pass(
            storage,
            outbox,
            services,
            metrics,
            stop,
            household=None if household is None else household(),
            providers=providers,
        )
        wait_s = _jittered(float(cfg.interval_s), rand)


async def _one_pass(
    storage: Storage,
    outbox: Outbox,
    services: Services,
    metrics: Metrics | None,
    stop: asyncio.Event,
    *,
    household: Household | None = None,
    providers: Callable[[TargetAccount], Provider | None] | None = None,
) -> None:
    """One scheduled pass, cancelled as soon as *stop* is set; never raises (but
    cancellation)."""
    settings = storage.settings
    try:
        async with pass_lock(storage):
            state = await storage.reconcile_state()
            try:
                reconciler = make_reconciler(
                    settings,
                    outbox,
                    services,
                    state,
                    providers=providers,
                    metrics=metrics,
                    household=household,
                )
                await until_stopped(reconciler.run(), stop)  # the pass logs its own line
            finally:
                await state.close()
    except PassRunning as exc:
        log.info("reconcile.skipped", reason=str(exc))
    except Exception as exc:  # a failing pass must not stop the daemon
        log.warning("reconcile.error", reason=f"{type(exc).__name__}: {exc}")
