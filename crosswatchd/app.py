"""The daemon: wires settings, outbox, providers, resolver, drainers and the web app.

Start-up order (reverse on shutdown, through aiohttp's ``cleanup_ctx``):

1. lock ``data_dir/crosswatchd.lock`` (one daemon per data directory, so leases left by a
   killed daemon can be released at once);
2. open the storage (:class:`~crosswatchd.storage.Storage`: the SQLite files of the data dir,
   or one pool on the ``database_url`` PostgreSQL database for every store), the household
   (the config file's profiles and the roster's) and the outbox; with SQLite files, return
   leased deliveries to pending (``sent_at`` kept: in-flight sends are checked against the
   target's history before being sent again; replicas sharing PostgreSQL never release each
   other's leases);
3. one ``aiohttp.ClientSession``, a rate limiter and a provider per target account (tokens
   from the storage), the id cache, the Anime-Lists store and the resolver;
4. the supervisor (:mod:`crosswatchd.replicas`): this replica's share of the target accounts
   (all of them with SQLite files), a drainer for each, the plays an account missed given to
   it as it is taken up; it follows the roster and the other replicas while the daemon runs.
   Beside it: the task that loads and refreshes the Anime-Lists file, the watchlist pass and
   the reconcile schedule (:func:`~crosswatchd.reconcile.run_forever`; one pass at a time
   across replicas);
5. the HTTP site. On SIGTERM/SIGINT the site stops first (no new webhooks), then the
   drainers (their leases handed back), then the outbox closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import structlog
from aiohttp import web

from crosswatchd import __version__, postgres
from crosswatchd.animelists import REASON_MARK
from crosswatchd.animelists_store import AnimeListStore
from crosswatchd.config import Settings
from crosswatchd.drain import Drainer, ResolveFn
from crosswatchd.errors import ConfigError, SourceUnavailableError
from crosswatchd.http import USER_AGENT
from crosswatchd.instance import WEBHOOK_SECRET
from crosswatchd.logs import configure_logging
from crosswatchd.metrics import Metrics
from crosswatchd.models import Item
from crosswatchd.outbox import DeliveryKind, Outbox, ReasonKind
from crosswatchd.profiles import Household, Profile, TargetAccount
from crosswatchd.providers.base import Provider
from crosswatchd.providers.simkl import SimklProvider
from crosswatchd.providers.trakt import TraktProvider
from crosswatchd.ratelimit import Limiter
from crosswatchd.reconcile import run_forever
from crosswatchd.replicas import Identity, ReplicaStore, Supervisor, Timing, anchor_of
from crosswatchd.resolve import IdCache, Resolver, build_resolver
from crosswatchd.roster import LiveHousehold
from crosswatchd.sources.tautulli_api import TautulliClient
from crosswatchd.storage import Storage
from crosswatchd.systemd import Notifier, watchdog
from crosswatchd.tokens import TokenStore
from crosswatchd.watchlist.daemon import WatchlistTasks, plex_drainer, start_watchlist
from crosswatchd.web import STOPPING, CappedSite, ServerHint, build_app, listen

__all__ = [
    "POST_HEADROOM",
    "Services",
    "anime_lists",
    "data_lock",
    "ensure_webhook_secret",
    "keep_anime_lists",
    "known_secrets",
    "learn_server",
    "limiter_for",
    "make_data_dir",
    "make_provider",
    "profile_webhook_url",
    "run_daemon",
    "services",
    "tautulli_client",
    "webhook_url",
]

log = structlog.get_logger(__name__)

#: Share of a GET bucket that background work (reconcile) leaves to live deliveries.
_BACKGROUND_RESERVE = 0.2


def anime_lists(settings: Settings, session: aiohttp.ClientSession) -> AnimeListStore:
    """The Anime-Lists store of *settings* (``[anime]``), its files in ``data_dir``. Nothing is
    read or fetched until it is first asked (``ensure``, ``run``)."""
    return AnimeListStore(
        session=session,
        directory=settings.data_dir,
        url=settings.anime.mapping_url,
        refresh_s=settings.anime.refresh_s,
        retry_s=settings.anime.retry_s,
    )


async def keep_anime_lists(store: AnimeListStore, outbox: Outbox, stop: asyncio.Event) -> None:
    """Load and refresh the list until *stop* (the daemon's task); after each refresh that
    brings a new list, the plays it parked (their reasons name the list) are queued again."""

    async def requeue() -> None:
        count = await outbox.retry_parked(
            kinds=(ReasonKind.UNRESOLVED, ReasonKind.NOT_FOUND),
            reason_contains=REASON_MARK,
            announce=False,
        )
        if count:
            log.info("anime.list.requeued", deliveries=count)

    await store.run(stop, on_updated=requeue)


def tautulli_client(settings: Settings, session: aiohttp.ClientSession) -> TautulliClient:
    """A Tautulli API client for ``tautulli.url``/``tautulli.api_key``."""
    return TautulliClient(
        session=session,
        url=settings.tautulli.url,
        api_key=settings.tautulli.api_key,
        timeout_s=settings.delivery.timeout_s,
    )


def _base_url(settings: Settings) -> str:
    host = settings.http.host
    if host in ("0.0.0.0", "::", ""):
        host = "<this-machine's-address>"
    return f"http://{host}:{settings.http.port}"


def webhook_url(settings: Settings, secret: str, source: str = "plex") -> str:
    """The URL to paste into Plex (or Tautulli): ``http://HOST:PORT/webhook/plex?token=…``."""
    return f"{_base_url(settings)}/webhook/{source}?token={secret}"


def profile_webhook_url(settings: Settings, token: str, source: str = "plex") -> str:
    """One profile's own URL, whose events are that profile's alone:
    ``http://HOST:PORT/webhook/plex/<profile token>``."""
    return f"{_base_url(settings)}/webhook/{source}/{token}"


async def ensure_webhook_secret(storage: Storage) -> tuple[str, bool]:
    """The webhook secret: ``webhook.secret`` if set, else the one stored in
    ``data_dir/webhook_secret`` (0600) or, with PostgreSQL, in the database (every replica
    then accepts the same webhook URL), generated on first use by whichever process asks
    first. Returns ``(secret, created_now)``."""
    return await storage.webhook_secret()


def make_data_dir(path: Path) -> None:
    """Create the data directory (and missing parents) with mode 0700: it holds the viewing
    history, tokens and the webhook secret. An existing directory is left as it is."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)


@contextlib.contextmanager
def data_lock(settings: Settings) -> Iterator[IO[str]]:
    """Hold an exclusive lock on ``data_dir/crosswatchd.lock`` (mode 0600, holding the PID)
    or raise :class:`ConfigError` naming the PID that holds it."""
    make_data_dir(settings.data_dir)
    path = settings.data_dir / "crosswatchd.lock"
    fh = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "a+", encoding="utf-8")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip()
        fh.close()
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise ConfigError(
            "data_dir", f"another crosswatchd{who} is already running on {settings.data_dir}"
        ) from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield fh
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


#: Writes go out at this fraction of the documented rate: spaced exactly at the limit, network
#: jitter would now and then land two POSTs closer than it at the service, and SIMKL answers an
#: overage by blocking the client for a while (api.simkl.org "Rate limits").
POST_HEADROOM = 0.95


def limiter_for(settings: Settings, provider: str, metrics: Metrics | None = None) -> Limiter:
    """A limiter with *provider*'s rate limits from the settings.

    The services count per user token (each target account gets its own) and, for requests
    without one (id searches), per client id (one shared by the resolver): Trakt "Rate
    Limiting" (1 POST/s, 1000 GETs per 5 min), api.simkl.org "Rate limits" (1 POST/s and
    10 GETs/s). POSTs keep :data:`POST_HEADROOM` below the configured rate. A fifth of the
    GET burst is kept from background work (reconcile's history reads,
    :func:`~crosswatchd.ratelimit.background`) for the drainer's history checks.
    """
    if provider == "trakt":
        limiter = Limiter.per_second(
            post_per_s=settings.trakt.post_per_s * POST_HEADROOM,
            get_per_s=settings.trakt.get_limit / settings.trakt.get_period_s,
            # Trakt counts GETs per 5-minute window; allow a modest burst, not the whole window.
            get_capacity=min(50.0, float(settings.trakt.get_limit)),
            get_reserve=min(50.0, float(settings.trakt.get_limit)) * _BACKGROUND_RESERVE,
        )
    else:
        limiter = Limiter.per_second(
            post_per_s=settings.simkl.post_per_s * POST_HEADROOM,
            get_per_s=settings.simkl.get_per_s,
            get_capacity=max(1.0, settings.simkl.get_per_s),
            get_reserve=max(1.0, settings.simkl.get_per_s) * _BACKGROUND_RESERVE,
        )
    if metrics is not None:
        limiter.on_wait = lambda seconds: metrics.rate_limit_wait(provider, seconds)
    return limiter


def make_provider(
    settings: Settings,
    session: aiohttp.ClientSession,
    account: TargetAccount,
    tokens: TokenStore,
    metrics: Metrics | None = None,
    limiter: Limiter | None = None,
) -> Provider:
    """The provider of one target account: its own token store (*tokens*, from
    ``Storage.tokens``) and its own limiter (*limiter*, or a new one), so one account's 429s,
    outage or revoked token never hold up another's."""
    if limiter is None:
        limiter = limiter_for(settings, account.provider, metrics)
    if account.provider == "trakt":
        return TraktProvider(
            session=session,
            limiter=limiter,
            tokens=tokens,
            client_id=settings.trakt.client_id,
            client_secret=settings.trakt.client_secret,
            api_url=settings.trakt.api_url,
            timeout_s=settings.delivery.timeout_s,
        )
    return SimklProvider(
        session=session,
        limiter=limiter,
        tokens=tokens,
        client_id=settings.simkl.client_id,
        api_url=settings.simkl.api_url,
        timeout_s=settings.delivery.timeout_s,
    )


@dataclass
class Services:
    """Everything a command needs to talk to the outside: the session, one provider per
    target account (and its limiter), the resolver (shared: ids do not depend on who
    watched). :meth:`provider` makes the provider of an account added later (a profile added
    at run time)."""

    session: aiohttp.ClientSession
    providers: dict[TargetAccount, Provider]
    resolve: ResolveFn
    cache: IdCache
    tautulli: TautulliClient | None
    resolver: Resolver
    anime: AnimeListStore
    limiters: dict[TargetAccount, Limiter] = field(default_factory=dict)
    storage: Storage | None = None
    metrics: Metrics | None = None

    def provider(self, account: TargetAccount) -> Provider:
        """*account*'s provider, made (with its limiter and its token store) on first use."""
        found = self.providers.get(account)
        if found is None:
            assert self.storage is not None
            settings = self.storage.settings
            limiter = limiter_for(settings, account.provider, self.metrics)
            tokens = self.storage.tokens(account.provider, account.profile)
            found = make_provider(settings, self.session, account, tokens, self.metrics, limiter)
            self.limiters[account] = limiter
            self.providers[account] = found
        return found

    async def close(self) -> None:
        await self.resolver.close()
        for provider in self.providers.values():
            await provider.close()
        await self.cache.close()
        await self.session.close()


def service_urls(settings: Settings) -> dict[str, str]:
    """The base URL of every outside service, by name (for the request metrics)."""
    return {
        settings.trakt.api_url: "trakt",
        settings.simkl.api_url: "simkl",
        settings.plex.url: "plex",
        settings.plex.discover_url: "plex",
        settings.tautulli.url: "tautulli",
    }


@contextlib.asynccontextmanager
async def services(
    storage: Storage, metrics: Metrics | None = None, household: Household | None = None
) -> AsyncIterator[Services]:
    """Open the HTTP session, providers (one per target account of *household*, the
    settings' by default; their tokens from *storage*), id cache (*storage*'s) and resolver;
    close them on exit. With *metrics*, every request, rate-limit wait and token refresh is
    counted."""
    settings = storage.settings
    timeout = aiohttp.ClientTimeout(total=settings.delivery.timeout_s)
    traces = [metrics.trace_config(service_urls(settings))] if metrics is not None else []
    session = aiohttp.ClientSession(
        timeout=timeout, headers={"User-Agent": USER_AGENT}, trace_configs=traces
    )
    household = household or Household.from_settings(settings)
    limiters = {
        account: limiter_for(settings, account.provider, metrics)
        for account in household.accounts()
    }
    providers = {
        account: make_provider(
            settings,
            session,
            account,
            storage.tokens(account.provider, account.profile),
            metrics,
            limiter,
        )
        for account, limiter in limiters.items()
    }
    tautulli = None
    if settings.tautulli.url and settings.tautulli.api_key:
        tautulli = tautulli_client(settings, session)
    try:
        cache = await storage.cache()
    except BaseException:
        await session.close()
        raise
    anime = anime_lists(settings, session)
    resolver = build_resolver(
        settings,
        session=session,
        cache=cache,
        # Searches carry no user token: they count per client id, one limiter each.
        trakt_limiter=limiter_for(settings, "trakt", metrics),
        simkl_limiter=limiter_for(settings, "simkl", metrics),
        tautulli=tautulli,
        on_lookup=None if metrics is None else metrics.resolver_lookup,
        anime=anime,
    )

    async def resolve(item: Item) -> tuple[Item, str]:
        resolution = await resolver.resolve(item)
        return resolution.item, resolution.step

    bundle = Services(
        session, providers, resolve, cache, tautulli, resolver, anime, limiters, storage, metrics
    )
    try:
        yield bundle
    finally:
        await bundle.close()


#: Waits between tries to learn the Plex server Tautulli watches (then the last one, repeated).
_SERVER_IDENTITY_WAITS_S = (5.0, 30.0, 120.0, 600.0)


async def learn_server(
    tautulli: TautulliClient,
    hint: ServerHint,
    stop: asyncio.Event,
    waits_s: tuple[float, ...] = _SERVER_IDENTITY_WAITS_S,
) -> None:
    """Fill *hint* with the machineIdentifier of the Plex server Tautulli watches
    (``get_server_identity``), trying again after each of *waits_s* (the last repeated) while
    Tautulli cannot say, until *stop*. A Plex owner webhook may fill it first; then nothing
    is asked."""
    attempt = 0
    while not stop.is_set() and hint.machine_id is None:
        try:
            machine_id = await tautulli.get_server_identity()
        except SourceUnavailableError as exc:
            machine_id = None
            if attempt == 0:
                log.warning("tautulli.server_identity_unavailable", error=str(exc))
        if machine_id:
            if hint.machine_id is None:
                hint.machine_id = machine_id
                log.info("tautulli.server_identity", machine_id=machine_id)
            return
        wait_s = waits_s[min(attempt, len(waits_s) - 1)]
        attempt += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait_s)


def _daemon_app(
    settings: Settings,
    storage: Storage,
    outbox: Outbox,
    household: LiveHousehold,
    store: ReplicaStore,
    secret: str,
    metrics: Metrics,
) -> web.Application:
    running: dict[TargetAccount, Provider] = {}
    hint = ServerHint()

    async def ready_check() -> list[str]:
        if not running:
            return ["no target account is configured (set trakt.client_id or simkl.client_id)"]
        if not any(provider.is_authorized() for provider in running.values()):
            return ["no target account is authorized (run `crosswatchd auth trakt|simkl`)"]
        return []

    app = build_app(
        settings,
        outbox,
        secret,
        ready_check=ready_check,
        metrics=metrics,
        server_hint=hint,
        storage=storage,
        household=household,
        replicas=store,
    )

    async def delivery_ctx(_app: web.Application) -> AsyncIterator[None]:
        async with services(storage, metrics, household.current) as svc:
            running.update(svc.providers)
            stop = asyncio.Event()
            watchlist: WatchlistTasks | None = None
            two_way = settings.watchlist.mode == "two-way"
            # Shared by every drainer of this process (delivery.concurrency).
            slots = asyncio.Semaphore(settings.delivery.concurrency)

            def provider_of(account: TargetAccount) -> Provider:
                provider = svc.provider(account)
                running[account] = provider
                limiter = svc.limiters.get(account)
                if limiter is not None and limiter.gate is None:
                    limiter.gate = supervisor.gate(account)
                return provider

            def limiter_of(account: TargetAccount) -> Limiter | None:
                provider_of(account)
                return svc.limiters.get(account)

            async def work(account: TargetAccount, account_stop: asyncio.Event) -> None:
                """One account's drainer; with two-way watchlists, the anchor account's also
                runs its profile's Plex watchlist drainer. Ends when either ends."""
                drainer = Drainer(
                    outbox,
                    provider_of(account),
                    settings.delivery,
                    resolve=svc.resolve,
                    on_retry_requested=svc.cache.forget_negative,
                    profile=account.profile,
                    metrics=metrics,
                    slots=slots,
                )
                jobs = [asyncio.create_task(drainer.run(account_stop))]
                profile = household.current.get(account.profile)
                if (
                    two_way
                    and watchlist is not None
                    and profile is not None
                    and anchor_of(profile) == account
                ):
                    plex = plex_drainer(settings, outbox, watchlist.sync, profile, metrics, slots)
                    jobs.append(
                        asyncio.create_task(plex.run(account_stop, kinds={DeliveryKind.WATCHLIST}))
                    )
                try:
                    await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
                except asyncio.CancelledError:
                    for job in jobs:  # the supervisor gave up waiting: end now
                        job.cancel()
                    raise
                finally:
                    account_stop.set()
                    await asyncio.gather(*jobs, return_exceptions=True)
                for job in jobs:
                    failure = None if job.cancelled() else job.exception()
                    if failure is not None:
                        raise failure

            supervisor = Supervisor(
                store=store,
                outbox=outbox,
                household=household,
                work=work,
                limiter_of=limiter_of,
                timing=Timing.of(settings.delivery),
                identity=Identity.here(),
                shared=storage.shared,
                providers=settings.providers(),
            )
            for account, limiter in svc.limiters.items():
                limiter.gate = supervisor.gate(account)

            def my_profiles() -> list[Profile]:
                return [
                    p
                    for p in household.current.profiles
                    if (anchor := anchor_of(p)) is not None and supervisor.holds(anchor)
                ]

            watchlist = await start_watchlist(
                storage, outbox, svc, stop, metrics, profiles=my_profiles, plex_drainers=False
            )
            tasks = list(watchlist.tasks)
            if svc.tautulli is not None:
                tasks.append(
                    asyncio.create_task(
                        learn_server(svc.tautulli, hint, stop), name="tautulli-server-identity"
                    )
                )
            if settings.providers() and settings.reconcile.interval_s:
                tasks.append(
                    asyncio.create_task(
                        run_forever(
                            storage,
                            outbox,
                            svc,
                            stop,
                            metrics=metrics,
                            household=lambda: household.current,
                            providers=provider_of,
                        ),
                        name="reconcile",
                    )
                )
            tasks.append(
                asyncio.create_task(keep_anime_lists(svc.anime, outbox, stop), name="anime-lists")
            )
            if not settings.providers():
                log.warning(
                    "daemon.no_targets",
                    hint="set trakt.client_id and/or simkl.client_id; plays are stored"
                    " meanwhile and delivered once a target is configured",
                )
            try:
                await supervisor.start()
                yield
            finally:
                stop.set()
                await supervisor.stop()
                pending: set[asyncio.Task[None]] = set()
                if tasks:
                    _, pending = await asyncio.wait(tasks, timeout=_DRAIN_STOP_TIMEOUT_S)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                await watchlist.close()

    app.cleanup_ctx.append(delivery_ctx)
    return app


#: How long in-flight webhooks may take to finish once the daemon stops (then it closes them).
_SHUTDOWN_TIMEOUT_S = 2.0
#: How long drainers may take to finish the deliveries they are sending once stopping.
_DRAIN_STOP_TIMEOUT_S = 4.0


def _banner(settings: Settings, storage: Storage) -> str:
    """What a first start prints: the webhook URLs with the secret masked."""
    masked = "<secret>"
    where = (
        f"stored in the database {storage.where}"
        if storage.shared
        else f"stored 0600 in {settings.data_dir / WEBHOOK_SECRET}"
    )
    return (
        f"crosswatchd: generated a webhook secret ({where}).\n"
        f"  Plex (Settings → Webhooks):   {webhook_url(settings, masked, 'plex')}\n"
        f"  Tautulli (Webhook agent):     {webhook_url(settings, masked, 'tautulli')}\n"
        "Run `crosswatchd webhook-url` to print them with the secret."
    )


def known_secrets(settings: Settings, webhook_secret: str) -> list[str]:
    """Every secret the logs must never show verbatim (see :class:`~crosswatchd.logs.Redactor`)."""
    return [
        webhook_secret,
        postgres.password_of(settings.database_url),
        settings.trakt.client_secret,
        settings.simkl.client_secret,
        settings.tautulli.api_key,
        settings.plex.token,
        *(profile.plex_token for profile in settings.profiles),
    ]


async def run_daemon(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; exit within a few seconds of it, whatever clients do.

    Start: lock the data dir, bind the port (a busy port or a held lock is the only output),
    then logging, storage, secret, outbox, app, drainers. Stop (first signal): new connections are
    refused at once and requests on open ones get 503; in-flight webhooks get
    ``_SHUTDOWN_TIMEOUT_S`` to finish, drainers ``_DRAIN_STOP_TIMEOUT_S``; what was in flight is
    reclaimed on the next start. A second signal exits at once (everything acknowledged is
    already committed). Raises :class:`ConfigError` for an unusable data_dir or port.
    """
    with data_lock(settings):
        try:
            sock = listen(settings.http.host, settings.http.port)
        except OSError as exc:
            raise ConfigError(
                "http.port",
                f"cannot listen on {settings.http.host}:{settings.http.port}: "
                f"{exc.strerror or exc}",
            ) from None
        configure_logging(settings.log_level, secrets=known_secrets(settings, ""))
        storage = await Storage.open(settings)
        roster = None
        outbox = None
        store = None
        try:
            # A profile both in the config file and in the roster stops the start before
            # anything is printed or created.
            await Household.load(settings, storage)
            secret, created = await ensure_webhook_secret(storage)
            configure_logging(settings.log_level, secrets=known_secrets(settings, secret))
            if created:
                print(_banner(settings, storage), file=sys.stderr, flush=True)
            roster = await storage.roster()
            household = await LiveHousehold.load(settings, secret, roster)
            store = await storage.replicas()
            outbox = await storage.outbox(household.current)
            # One daemon per data dir owns every lease left in its SQLite outbox; replicas
            # sharing PostgreSQL must not take each other's: theirs expire (lease_s).
            released = 0 if storage.shared else await outbox.release_all_leases()
            app = _daemon_app(settings, storage, outbox, household, store, secret, Metrics())
            runner = web.AppRunner(
                app,
                access_log=None,
                handle_signals=False,
                keepalive_timeout=settings.http.idle_timeout_s,
                shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
            )
            await runner.setup()
            site = CappedSite(runner, sock, max_connections=settings.http.max_connections)
            await site.start()
            notifier = Notifier.from_environ()
            notifier.ready(f"accepting webhooks on {settings.http.host}:{settings.http.port}")
            watchdog_stop = asyncio.Event()
            probe = outbox.fetch_all
            pinger = asyncio.create_task(
                watchdog(notifier, watchdog_stop, lambda: probe("SELECT 1")),
                name="systemd-watchdog",
            )
            log.info(
                "daemon.started",
                version=__version__,
                listen=f"{settings.http.host}:{settings.http.port}",
                webhook_url=webhook_url(settings, secret),
                targets=settings.providers(),
                profiles=len(household.current.profiles),
                released_leases=released,
                data_dir=str(settings.data_dir),
                storage=storage.where,
            )
            await _until_signalled()
            log.info("daemon.stopping")
            notifier.stopping()
            watchdog_stop.set()
            await pinger
            app[STOPPING].set()
            await site.stop()  # no new connections from here on
            await runner.cleanup()
        finally:
            if outbox is not None:
                await outbox.close()
            if store is not None:
                await store.close()
            if roster is not None:
                await roster.close()
            await storage.close()
        log.info("daemon.stopped")


async def _until_signalled() -> None:
    """Wait for SIGTERM or SIGINT; from then on a second one ends the process at once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def first() -> None:
        stop.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, second)

    def second() -> None:
        log.warning("daemon.forced_exit", reason="second signal while stopping")
        os._exit(1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, first)
    await stop.wait()
