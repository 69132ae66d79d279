"""When reconcile passes run: every ``reconcile.interval_s`` inside ``serve``, or by hand
(``crosswatchd reconcile``), never two at once on one data dir.

The lock is ``flock`` on ``data_dir/reconcile.lock`` (it holds the PID of the pass's process),
taken without waiting: a pass by hand while ``serve`` runs one exits at once with one line
naming that PID (exit code 1), and a scheduled pass that finds a pass by hand running skips
its turn with one log line. The lock dies with its process, so a killed pass never leaves
it held.

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
import fcntl
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

import structlog

from crosswatchd.config import Settings
from crosswatchd.errors import CrosswatchError
from crosswatchd.metrics import Metrics
from crosswatchd.outbox import Outbox
from crosswatchd.profiles import TargetAccount
from crosswatchd.providers.base import Provider
from crosswatchd.reconcile.run import Reconciler
from crosswatchd.reconcile.state import ReconcileState
from crosswatchd.sources.plex_library import PlexLibrary
from crosswatchd.sources.plex_server import PlexServer
from crosswatchd.stopping import until_stopped

if TYPE_CHECKING:  # app.py starts the schedule: no import cycle at run time
    from crosswatchd.app import Services

__all__ = [
    "LOCK_FILE",
    "PassRunning",
    "has_source",
    "make_reconciler",
    "pass_lock",
    "run_forever",
]

log = structlog.get_logger(__name__)

#: The lock file in the data dir.
LOCK_FILE: Final = "reconcile.lock"
#: Largest share of a wait added or taken off at random.
_JITTER: Final = 0.1


class PassRunning(CrosswatchError):
    """Another reconcile pass holds the lock of this data dir."""


@contextlib.contextmanager
def pass_lock(data_dir: Path) -> Iterator[None]:
    """Hold ``data_dir/reconcile.lock`` for one pass, or raise :class:`PassRunning` naming
    the PID that holds it."""
    path = data_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = fh.read().strip()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise PassRunning(
                f"a reconcile pass{who} is already running on {data_dir}; try again later"
            ) from None
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


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
    providers: dict[TargetAccount, Provider] | None = None,
    metrics: Metrics | None = None,
) -> Reconciler:
    """A :class:`Reconciler` over the daemon's (or a command's) outbox and services: its
    providers (unless *providers* are given), resolver, Tautulli client, and a Plex server
    client when ``plex.url`` and ``plex.token`` are set."""
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
        providers=services.providers if providers is None else providers,
        resolve=services.resolve,
        state=state,
        tautulli=services.tautulli,
        plex=plex,
        metrics=metrics,
    )


def _jittered(seconds: float, rand: Callable[[], float]) -> float:
    return max(0.0, seconds * (1.0 + _JITTER * (2.0 * rand() - 1.0)))


async def run_forever(
    settings: Settings,
    outbox: Outbox,
    services: Services,
    stop: asyncio.Event,
    *,
    metrics: Metrics | None = None,
    rand: Callable[[], float] = random.random,
) -> None:
    """Run passes on the schedule (see the module docstring) until *stop* is set."""
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
        await _one_pass(settings, outbox, services, metrics, stop)
        wait_s = _jittered(float(cfg.interval_s), rand)


async def _one_pass(
    settings: Settings,
    outbox: Outbox,
    services: Services,
    metrics: Metrics | None,
    stop: asyncio.Event,
) -> None:
    """One scheduled pass, cancelled as soon as *stop* is set; never raises (but
    cancellation)."""
    try:
        with pass_lock(settings.data_dir):
            state = await ReconcileState.open(settings.data_dir)
            try:
                reconciler = make_reconciler(settings, outbox, services, state, metrics=metrics)
                await until_stopped(reconciler.run(), stop)  # the pass logs its own line
            finally:
                await state.close()
    except PassRunning as exc:
        log.info("reconcile.skipped", reason=str(exc))
    except Exception as exc:  # a failing pass must not stop the daemon
        log.warning("reconcile.error", reason=f"{type(exc).__name__}: {exc}")
