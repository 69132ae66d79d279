"""The resolution chain: its steps in order, the work they share, the goal that stops it.

:class:`Resolver` runs one :class:`Work` through a list of :class:`Step` objects, cheapest
first (see :mod:`crosswatchd.resolve` for what each does), and stops at the first one after
which :func:`goal` holds. Each step reads and adds to the work (``work.add``) or says why it
found nothing (``work.fail``); a step that needs an outside service asks through
:class:`Answers`, which caches every answer per question and shares one request among
concurrent askers (single-flight). The chain turns a step's transient failure into a reason,
and raises it as :class:`~crosswatchd.errors.RetryableError` only when it is why the goal was
not met.

The warm path (an item whose GUID, or whose identity in the cache's memory, meets the goal:
most resolutions of a running daemon) is answered before any :class:`Work` is built, by the
payload and cache steps' own functions (:func:`~crosswatchd.resolve.payload.with_guid`,
:meth:`~crosswatchd.resolve.recall.RecallStep.in_memory`): the same answer, for no more than
the few attribute reads it needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Protocol

import aiohttp
import structlog

from crosswatchd.errors import (
    ProviderError,
    RetryableError,
    SourceUnavailableError,
    UnresolvedError,
)
from crosswatchd.models import Ids, Item, MediaKind
from crosswatchd.providers.simkl import SimklSearch
from crosswatchd.providers.trakt import TraktSearch
from crosswatchd.ratelimit import Limiter
from crosswatchd.resolve.anime import AnimeStep
from crosswatchd.resolve.anime import claims as anime_claims
from crosswatchd.resolve.keys import (
    NOT_CATALOGUED,
    Keys,
    identity_value,
    parsed_guid,
    with_identity,
)
from crosswatchd.resolve.payload import PayloadStep, with_guid
from crosswatchd.resolve.plex import PlexStep
from crosswatchd.resolve.recall import RecallStep
from crosswatchd.resolve.search import SimklStep, TraktStep
from crosswatchd.resolve.shows import SHOW_KINDS, show_goal
from crosswatchd.resolve.tautulli import TautulliStep
from crosswatchd.resolve.title import TitleStep
from crosswatchd.sources.plex_server import PlexServer

if TYPE_CHECKING:
    from crosswatchd.animelists_store import AnimeListStore
    from crosswatchd.config import Settings
    from crosswatchd.resolve.cache import IdCache
    from crosswatchd.resolve.tautulli import MetadataSource
    from crosswatchd.sources.guids import ParsedGuid

__all__ = [
    "STEPS",
    "Answers",
    "Fetch",
    "Resolution",
    "Resolver",
    "Step",
    "Work",
    "build_resolver",
    "goal",
    "usable",
]

log = structlog.get_logger(__name__)

#: Step names, in chain order, as reported in :attr:`Resolution.step` and
#: :attr:`UnresolvedError.step`. ``anime`` runs alone, for items a HAMA GUID names by AniDB id
#: (:mod:`~crosswatchd.resolve.anime`); every other item starts at ``payload``.
STEPS: Final = ("anime", "payload", "cache", "plex", "tautulli", "trakt", "simkl", "title")
#: Steps whose findings need no remembering: the payload (and the Anime-Lists mapping) has
#: them again next time, the cache has them already.
_AT_HAND: Final = frozenset({"anime", "payload", "cache"})

#: Told of every answer a step got: ``(step, True)`` from the cache, ``(step, False)`` asked
#: outside (the metrics' ``crosswatchd_resolver_lookups``).
LookupHook = Callable[[str, bool], None]

#: One outside request of a step: the answer to keep (a JSON-able object), or ``None`` for
#: "nothing found". Raises what the service raises.
Fetch = Callable[[], Awaitable[dict[str, Any] | None]]


def goal(item: Item) -> bool:
    """The stopping rule: a movie has an imdb or tmdb id; an episode has its show's imdb,
    tmdb, tvdb, trakt or simkl id (anidb alone does not do: Trakt cannot use it), a season
    and an episode number; a show or a season (rated) :func:`~.shows.show_goal`."""
    if item.kind is MediaKind.MOVIE:
        return bool(item.ids.imdb or item.ids.tmdb)
    if item.kind in SHOW_KINDS:
        return show_goal(item)
    if item.season is None or item.number is None:
        return False
    show = item.show_ids
    return bool(show.imdb or show.tmdb or show.tvdb or show.trakt or show.simkl)


def usable(item: Item) -> bool:
    """Short of the goal but of use to a target: any id of a movie; an episode's own ids, or
    its show's ids with a season and an episode number."""
    if item.kind in (MediaKind.MOVIE, MediaKind.SEASON):  # a season: its own ids (Trakt)
        return bool(item.ids) or goal(item)
    if item.kind is MediaKind.SHOW:
        return goal(item)
    return bool(item.ids) or (
        bool(item.show_ids) and item.season is not None and item.number is not None
    )


@dataclass(frozen=True, slots=True)
class Resolution:
    """A resolved item and the step that completed it (one of :data:`STEPS`).

    ``item`` is the input with ``ids`` (and, for episodes, ``show_ids``, ``season``,
    ``number``) filled in as far as found; what the source sent is kept and wins on conflicts.
    """

    item: Item
    step: str


@dataclass(slots=True)
class Work:
    """The mutable state of one resolution, shared by the steps in turn.

    ``item`` is the item as far as resolved; ``parsed`` its GUID's parse (``None`` without a
    GUID). ``step`` is the last step that added something, ``failed_step``/``reason`` the last
    one that found nothing and why, ``transient`` the last transient failure. ``fresh``: an
    outside request was made (or shared) for this item. ``recalled``: the cache knew an
    identity of it. ``known``: the item as the payload and the cache knew it (set by the cache
    step; its keys are remembered with the result).
    """

    item: Item
    parsed: ParsedGuid | None = None
    step: str = "payload"
    fresh: bool = False
    failed_step: str = "payload"
    reason: str = ""
    transient: RetryableError | None = None
    recalled: bool = False
    known: Item | None = None
    # The configured server (Plex or Tautulli) confirmed that the item's ratingKey names this
    # very item there, so its per-server handles (ratingKey, show ratingKey) may be cached.
    own_server: bool = False
    # The Plex step got the configured server's metadata for the item's ratingKey (whichever
    # item it names there). Tautulli's get_metadata reads the same server, so it would only
    # repeat that answer and is not asked.
    plex_answered: bool = False

    def goal_met(self) -> bool:
        """:func:`goal` of the item as far as resolved."""
        return goal(self.item)

    def usable(self) -> bool:
        """:func:`usable` of the item as far as resolved."""
        return usable(self.item)

    def fail(self, step: str, reason: str) -> None:
        """*step* was tried and found nothing (or failed): the reason a user will see."""
        self.failed_step = step
        self.reason = reason

    def skip(self, step: str, reason: str) -> None:
        """*step* could not even ask; its reason only shows when no step was tried."""
        if not self.reason:
            self.fail(step, reason)

    def add(
        self,
        step: str,
        *,
        ids: Ids | None = None,
        show_ids: Ids | None = None,
        season: int | None = None,
        number: int | None = None,
    ) -> None:
        """Merge what *step* found; what the item has wins (season and number only fill gaps,
        and only for an episode)."""
        before = self.item
        item = before.with_ids(ids, show_ids)
        if before.kind is MediaKind.EPISODE and (
            (before.season is None and season is not None)
            or (before.number is None and number is not None)
        ):
            item = replace(
                item,
                season=before.season if before.season is not None else season,
                number=before.number if before.number is not None else number,
            )
        if item != before:
            self.item = item
            self.step = step


class Step(Protocol):
    """One step of the chain: it reads *work* and adds what it finds, or records why not.

    ``run`` may raise :class:`RetryableError` or :class:`SourceUnavailableError` (transient:
    the chain goes on, and retries later if that is why the goal was not met),
    :class:`ProviderError` (a refusal: the step found nothing), or :class:`UnresolvedError`
    (the item can never resolve: the chain stops). Steps are built with what they need
    (their service, the :class:`Answers`, the key scheme) and keep no state of their own.
    """

    @property
    def name(self) -> str:
        """The step's name, one of :data:`STEPS`."""
        ...

    async def run(self, work: Work) -> None:
        """Try to resolve *work* further."""
        ...


class Answers:
    """The answers of the outside steps, per question: from the cache, or asked once.

    A question is a step name and a query (``"plex"``, ``"plex:meta:123"``); its answer is
    cached under ``<step>:<query>``, positive for the cache's positive TTL, "nothing found"
    for its negative TTL. Concurrent askers share one request (single-flight).
    """

    def __init__(self, cache: IdCache, on_lookup: LookupHook | None = None) -> None:
        self._cache = cache
        self._inflight: dict[str, asyncio.Task[dict[str, Any] | None]] = {}
        self._on_lookup = on_lookup

    async def ask(self, work: Work, step: str, query: str, fetch: Fetch) -> dict[str, Any] | None:
        """Answer *query* for *step* from the cache, or ask once (single-flight) and cache.

        Returns the positive answer, or ``None`` for a (possibly cached) "nothing found".
        Exceptions of *fetch* propagate and are not cached. A request made or shared marks
        *work* fresh.
        """
        key = f"{step}:{query}"
        task = self._inflight.get(key)
        if task is None:
            entry = await self._cache.get(key)
            if entry is None:
                task = self._inflight.get(key)
                entry = self._cache.peek(key) if task is None else None
            if entry is not None:
                if self._on_lookup is not None:
                    self._on_lookup(step, True)
                return entry.value
            if task is None:
                task = asyncio.create_task(self._fetch_and_store(key, step, query, fetch))
                self._inflight[key] = task
                task.add_done_callback(self._forget_task(key))
        work.fresh = True
        if self._on_lookup is not None:
            self._on_lookup(step, False)
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel requests still in flight (at shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget_task(self, key: str) -> Callable[[asyncio.Task[dict[str, Any] | None]], None]:
        def done(task: asyncio.Task[dict[str, Any] | None]) -> None:
            if self._inflight.get(key) is task:
                del self._inflight[key]
            if not task.cancelled():
                task.exception()  # retrieved here too, so an abandoned failure is not logged

        return done

    async def _fetch_and_store(
        self, key: str, step: str, query: str, fetch: Fetch
    ) -> dict[str, Any] | None:
        value = await fetch()
        if value is None:
            await self._cache.put_negative(key, f"{step}: nothing found for {query}", step=step)
        else:
            await self._cache.put([key], value, step=step)
        return value


class Resolver:
    """The resolution chain (see :mod:`crosswatchd.resolve`). Every collaborator is optional;
    a step whose service is missing is left out.

    ``server_id`` namespaces Plex ratingKeys in cache keys (ratingKeys identify an item on one
    server; Plex webhooks and Tautulli of that server share them). ``title_fallback`` enables
    the exact title + year step (needs ``trakt_search`` or ``simkl_search``). ``on_lookup`` is
    told of every answer a step got, from the cache or from outside.
    """

    def __init__(
        self,
        *,
        cache: IdCache,
        plex: PlexServer | None = None,
        tautulli: MetadataSource | None = None,
        trakt_search: TraktSearch | None = None,
        simkl_search: SimklSearch | None = None,
        title_fallback: bool = False,
        server_id: str = "plex",
        on_lookup: LookupHook | None = None,
        anime: AnimeListStore | None = None,
    ) -> None:
        self._cache = cache
        self._keys = keys = Keys(server_id, title_fallback)
        self._answers = answers = Answers(cache, on_lookup)
        self._on_lookup = on_lookup
        self._recall = RecallStep(cache, keys)
        self._anime = None if anime is None else AnimeStep(anime, answers, trakt_search)
        steps: list[Step] = [PayloadStep(), self._recall]
        if plex is not None:
            steps.append(PlexStep(plex, answers, keys))
        if tautulli is not None:
            steps.append(TautulliStep(tautulli, answers, keys))
        if trakt_search is not None:
            steps.append(TraktStep(trakt_search, answers))
        if simkl_search is not None:
            steps.append(SimklStep(simkl_search, answers))
        if title_fallback and (trakt_search is not None or simkl_search is not None):
            steps.append(TitleStep(trakt_search, answers, simkl_search))
        self._steps: tuple[Step, ...] = tuple(steps)

    @property
    def steps(self) -> tuple[str, ...]:
        """The names of the steps this resolver runs, in order (``anime`` first: it runs
        alone, for AniDB items)."""
        anime = () if self._anime is None else (self._anime.name,)
        return (*anime, *(step.name for step in self._steps))

    async def close(self) -> None:
        """Cancel lookups still in flight (at shutdown)."""
        await self._answers.close()

    async def prefetch(self, items: Iterable[Item]) -> None:
        """Load what the cache knows of *items* into memory in a few queries, so that
        resolving them one by one (a file import's rows) asks SQLite nothing more; items
        whose own ids already meet the goal are left out."""
        keys: list[str] = []
        for item in items:
            parsed = parsed_guid(item)
            known = with_guid(item, parsed)
            if not goal(known):
                keys.extend(self._keys.of(known, parsed))
        if keys:
            await self._cache.prefetch(keys)

    async def resolve(self, item: Item) -> Resolution:
        """Resolve *item* (see :mod:`crosswatchd.resolve` for the chain and the goal).

        Returns a :class:`Resolution`. Raises :class:`UnresolvedError` (``reason``, ``step``)
        when nothing usable was found, and :class:`RetryableError` (provider = the step) when a
        transient failure of a step is why the goal was not met.
        """
        parsed = parsed_guid(item)
        if self._anime is not None and anime_claims(parsed):
            # AniDB numbering: only the Anime-Lists mapping knows what it is on TVDB. The other
            # steps (and cached answers) would pair AniDB's season and number with a TVDB show.
            return await self._run(Work(item, parsed), (self._anime,), item.label())
        if item.kind in SHOW_KINDS:
            return await self._resolve_show(item, parsed)
        # The warm path, most resolutions of a running daemon: the payload step's ids, or the
        # cache step's answer from memory, meet the goal. Answered as those steps would, without
        # a Work or a step coroutine (bench/resolve.py's warm figure depends on it).
        known = with_guid(item, parsed)
        if goal(known):
            return Resolution(known, "payload")
        entry = None
        if parsed is None or parsed.agent not in NOT_CATALOGUED:
            entry = self._recall.in_memory(known, parsed)
            if entry is not None:
                recalled = with_identity(known, entry)
                if goal(recalled):
                    if self._on_lookup is not None:
                        self._on_lookup("cache", True)
                    return Resolution(recalled, "cache")
        work = Work(known, parsed)
        if entry is not None:  # what the cache step would find again
            RecallStep.take(work, entry)
        return await self._run(work, self._steps, item.label())

    async def _run(self, work: Work, steps: tuple[Step, ...], label: str) -> Resolution:
        """Run *steps* on *work* until the goal is met; then :meth:`_done`, else
        :meth:`_short` (*label* names the item in the logs)."""
        for step in steps:
            try:
                await step.run(work)
            except RetryableError as exc:
                work.transient = exc
                work.fail(step.name, str(exc))
            except SourceUnavailableError as exc:
                work.transient = RetryableError(step.name, str(exc))
                work.fail(step.name, str(exc))
            except ProviderError as exc:  # permanent refusal of a search: a failed step
                work.fail(step.name, str(exc))
            if goal(work.item):
                return await self._done(work)
        return await self._short(work, label)

    async def _resolve_show(self, item: Item, parsed: ParsedGuid | None) -> Resolution:
        """A show or a season (a rating): its GUID's ids, else the configured server's show
        (:mod:`.shows`); the searches and the identity cache are for plays and not asked.
        Raises like :meth:`resolve`."""
        work = Work(with_guid(item, parsed), parsed)
        if goal(work.item):
            return Resolution(work.item, "payload")
        for step in self._steps:
            if step.name not in ("plex", "tautulli"):
                continue
            try:
                await step.run(work)
            except (RetryableError, SourceUnavailableError) as exc:
                work.transient = RetryableError(step.name, str(exc))
                work.fail(step.name, str(exc))
            except ProviderError as exc:
                work.fail(step.name, str(exc))
            if goal(work.item):
                return Resolution(work.item, work.step)
        if work.transient is not None:
            raise work.transient
        if usable(work.item):
            return Resolution(work.item, work.step)
        what = "show" if item.kind is MediaKind.SHOW else "season's show"
        reason = work.reason or f"payload: no ids of the {what}, and no Plex server or Tautulli"
        log.warning("resolve.unresolved", item=item.label(), step=work.failed_step, reason=reason)
        raise UnresolvedError(reason, work.failed_step)

    async def _done(self, work: Work) -> Resolution:
        """The goal is met: remember what the outside steps found, and say who found it."""
        if work.step in _AT_HAND:
            return Resolution(work.item, work.step)
        step = work.step if work.fresh else "cache"
        await self._store(work)
        if work.fresh:
            log.info(
                "resolve.resolved",
                item=work.item.label(),
                step=step,
                ids=work.item.ids.as_dict(),
                show_ids=work.item.show_ids.as_dict(),
            )
        return Resolution(work.item, step)

    async def _short(self, work: Work, label: str) -> Resolution:
        """Every step ran and the goal is not met: a transient failure to retry, a usable
        partial result, or :class:`UnresolvedError`. *label* names the item in the logs."""
        if work.step == "anime":
            # A show or season the mapping placed: as far as it goes (no episode to find).
            return Resolution(work.item, work.step)
        if work.transient is not None:
            log.warning("resolve.retry", item=label, step=work.failed_step, reason=work.reason)
            raise work.transient
        if usable(work.item):
            if work.fresh or not work.recalled:
                # Remembered too, so the next resolution of this item needs no outside call
                # until the negative answers that stopped the chain expire.
                await self._store(work)
            if not work.fresh:
                return Resolution(work.item, "cache" if work.recalled else work.step)
            log.info(
                "resolve.partial",
                item=label,
                step=work.step,
                ids=work.item.ids.as_dict(),
                show_ids=work.item.show_ids.as_dict(),
            )
            return Resolution(work.item, work.step)
        reason = work.reason or f"{work.failed_step}: no external ids and no lookup configured"
        log.warning("resolve.unresolved", item=label, step=work.failed_step, reason=reason)
        raise UnresolvedError(reason, work.failed_step)

    async def _store(self, work: Work) -> None:
        """Remember the identity under the handles the item came with and those it has now."""
        keys = self._keys
        known = [] if work.known is None else list(keys.of(work.known, work.parsed))
        now = keys.of(work.item, None, own_server=work.own_server)
        await self._cache.put([*known, *now], identity_value(work.item), step=work.step)


def build_resolver(
    settings: Settings,
    *,
    session: aiohttp.ClientSession,
    cache: IdCache,
    trakt_limiter: Limiter | None,
    simkl_limiter: Limiter | None,
    tautulli: MetadataSource | None,
    on_lookup: LookupHook | None = None,
    anime: AnimeListStore | None = None,
    title_fallback: bool | None = None,
) -> Resolver:
    """A :class:`Resolver` with the steps the settings enable and the services configured.

    *anime* (the daemon's Anime-Lists store) adds the ``anime`` step for HAMA AniDB items.

    Plex: ``resolver.use_plex`` and both ``plex.url`` and ``plex.token``. Tautulli:
    ``resolver.use_tautulli`` and a *tautulli* source. Trakt/SIMKL search:
    ``resolver.use_search`` and the provider enabled with a client id; the provider's
    *limiter* is shared (one is built from the settings' GET limits when ``None``). Title
    fallback: ``resolver.title_fallback``, unless *title_fallback* says otherwise (file
    imports turn it on: a Letterboxd diary has titles and years only).
    """
    rs = settings.resolver
    timeout_s = settings.delivery.timeout_s
    plex = None
    if rs.use_plex and settings.plex.url and settings.plex.token:
        plex = PlexServer(
            session=session, url=settings.plex.url, token=settings.plex.token, timeout_s=timeout_s
        )
    trakt = simkl = None
    if rs.use_search and settings.trakt_enabled():
        limiter = trakt_limiter or Limiter.per_second(
            post_per_s=settings.trakt.post_per_s,
            get_per_s=settings.trakt.get_limit / settings.trakt.get_period_s,
        )
        trakt = TraktSearch(
            session=session,
            limiter=limiter,
            client_id=settings.trakt.client_id,
            api_url=settings.trakt.api_url,
            timeout_s=timeout_s,
        )
    if rs.use_search and settings.simkl_enabled():
        limiter = simkl_limiter or Limiter.per_second(
            post_per_s=settings.simkl.post_per_s, get_per_s=settings.simkl.get_per_s
        )
        simkl = SimklSearch(
            session=session,
            limiter=limiter,
            client_id=settings.simkl.client_id,
            api_url=settings.simkl.api_url,
            timeout_s=timeout_s,
        )
    return Resolver(
        cache=cache,
        plex=plex,
        tautulli=tautulli if rs.use_tautulli else None,
        trakt_search=trakt,
        simkl_search=simkl,
        title_fallback=rs.title_fallback if title_fallback is None else title_fallback,
        on_lookup=on_lookup,
        anime=anime,
    )
