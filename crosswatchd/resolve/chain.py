"""Id resolution: every item matched to stable external ids through a persistent cache.

Whatever a source knows about an item (new-agent ``Guid[]`` ids, a legacy agent GUID, only a
Plex ratingKey, Tautulli's show ids, a title and year), :meth:`Resolver.resolve` finds the ids
the delivery targets need, or raises :class:`~crosswatchd.errors.UnresolvedError` naming the
step that failed and why. Every intake path goes through it.

The chain, cheapest first; it stops as soon as the goal is met::

    payload   ids already in the item (Guid[] ids, show ids, legacy GUID incl. thetvdb/HAMA)
    cache     an earlier resolution of the same item (by GUID, ratingKey, any external id)
    plex      GET /library/metadata/{ratingKey} (and the show's grandparentRatingKey)
    tautulli  get_metadata(rating_key): guids + grandparent_guids in one call
    trakt     GET /search/{imdb|tmdb|tvdb}/{id}?type=movie|show|episode
    simkl     GET /search/id?imdb=|tmdb=|tvdb=|anidb=&type=movie|show
    title     exact title + year search on Trakt (``resolver.title_fallback``, off by default)

Goal: a movie has an imdb or tmdb id; an episode has its show's ids (imdb, tmdb, tvdb, trakt
or simkl) plus season and episode number. When the chain ends short of that but with something
a target can use (any id of a movie; an episode's own ids), that partial result is returned and
the provider decides. Nothing usable: :class:`UnresolvedError`.

Every answer from steps 3-7 is cached per question (positive answers for
``resolver.positive_ttl_s``, "not found" for the shorter ``negative_ttl_s``), and concurrent
questions share one request (single-flight), so each outside service is asked about an item at
most once per TTL. Transient failures (5xx, timeouts, a source that is down) are never cached:
when they are why the goal was not met, :meth:`Resolver.resolve` raises them as
:class:`~crosswatchd.errors.RetryableError` so the drainer tries again later.

Deliberate cases: specials (season 0) and year-numbered seasons (``2019``) are ordinary season
numbers; ``local://`` and ``com.plexapp.agents.none://`` (personal media) and extras
(``iva://``, Plex type ``clip``) never resolve to anything; an episode's own year is never used
as its show's year. Plex webhooks also report plays on friends' servers, whose ratingKeys name
other items on the configured server: the Plex and Tautulli steps first check that the item
under the ratingKey is the played one (same GUID, else same type/title/position) and are
skipped otherwise (``resolve.plex_other_server``); ratingKey cache handles are likewise used
only for items without a GUID or once the configured server confirmed them. Tautulli reads
the same server, so once Plex has answered about a ratingKey (this item or another one)
Tautulli is not asked about it again; only a ratingKey Plex does not know (404) or could not
be asked about goes on to Tautulli.

Cost on a cold cache: an item known by ratingKey costs one Plex lookup; an episode that needs
its show's ids one more for the show, by the server's own ``grandparentRatingKey`` and shared
by all the show's episodes (10 episodes of one show: 10 episode lookups + 1 show lookup).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn, Protocol

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
from crosswatchd.resolve.cache import CacheEntry, CacheStats, IdCache
from crosswatchd.sources.guids import ParsedGuid, guid_base, ids_from_guid_list, parse_guid
from crosswatchd.sources.plex_server import PlexMetadata, PlexServer

if TYPE_CHECKING:
    from crosswatchd.config import Settings

__all__ = [
    "STEPS",
    "CacheEntry",
    "CacheStats",
    "IdCache",
    "MetadataSource",
    "Resolution",
    "Resolver",
    "build_resolver",
]

log = structlog.get_logger(__name__)

#: Step names, in chain order, as reported in :attr:`Resolution.step` and
#: :attr:`UnresolvedError.step`.
STEPS: Final = ("payload", "cache", "plex", "tautulli", "trakt", "simkl", "title")

#: Show ids that satisfy the episode goal (anidb alone does not: Trakt cannot use it).
_STRONG: Final = ("imdb", "tmdb", "tvdb", "trakt", "simkl")
#: GUID agents of personal media and extras: never an external id, never searched by title.
_NOT_CATALOGUED: Final = frozenset({"local", "none", "iva"})
#: Search id preference per looked-up kind.
_ID_ORDER: Final = {
    "movie": ("imdb", "tmdb", "tvdb"),
    "show": ("tvdb", "imdb", "tmdb"),
    "episode": ("tvdb", "imdb", "tmdb"),
}
_SIMKL_ID_ORDER: Final = ("imdb", "tmdb", "tvdb", "anidb")
_ID_FIELDS: Final = ("imdb", "tmdb", "tvdb", "trakt", "simkl", "anidb")

SearchKind = Literal["movie", "show", "episode"]


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


class MetadataSource(Protocol):
    """What the resolver needs from Tautulli: ``get_metadata``'s ``data`` dict or ``None``.

    Keys read: ``media_type``, ``guids``, ``grandparent_guids``, ``guid``, ``media_index``,
    ``parent_media_index``, ``grandparent_rating_key`` (Tautulli API v2, "get_metadata").
    """

    async def get_metadata(self, rating_key: str) -> dict[str, Any] | None:
        """Metadata of the item, ``None`` when unknown; raises SourceUnavailableError."""
        ...


# --------------------------------------------------------------------------------------------
# Resolver
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolution:
    """A resolved item and the step that completed it (one of :data:`STEPS`).

    ``item`` is the input with ``ids`` (and, for episodes, ``show_ids``, ``season``,
    ``number``) filled in as far as found; what the source sent is kept and wins on conflicts.
    """

    item: Item
    step: str


@dataclass(slots=True)
class _Work:
    """Mutable state of one resolution."""

    item: Item
    step: str = "payload"  # last step that added something
    fresh: bool = False  # an outside request was made (or shared) for this item
    failed_step: str = "payload"
    reason: str = ""
    transient: RetryableError | None = None
    # The configured server (Plex or Tautulli) confirmed that the item's ratingKey names this
    # very item there, so its per-server handles (ratingKey, show ratingKey) may be cached.
    own_server: bool = False
    # The Plex step got the configured server's metadata for the item's ratingKey (whichever
    # item it names there). Tautulli's get_metadata reads the same server, so it would only
    # repeat that answer and is not asked.
    plex_answered: bool = False

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


@dataclass(slots=True)
class _Identity:
    """A cached final identity, decoded once per in-memory cache entry.

    ``last_in``/``last_out`` remember the latest merge: a source reports the same item several
    times in a row (play, pause, resume, stop), and an equal input gives an equal output.
    """

    ids: Ids
    show_ids: Ids
    season: int | None
    number: int | None
    last_in: Item | None = None
    last_out: Item | None = None


#: What parse_guid answers for any ``plex://`` GUID (checked by a test), without the regex.
_PLEX_GUID: Final = ParsedGuid(agent="plex")


def _has_ids(ids: Ids) -> bool:
    """``bool(ids)`` without the generator (hot path)."""
    return bool(ids.imdb or ids.tmdb or ids.tvdb or ids.trakt or ids.simkl or ids.anidb)


def _goal(item: Item) -> bool:
    if item.kind is MediaKind.MOVIE:
        return bool(item.ids.imdb or item.ids.tmdb)
    if item.season is None or item.number is None:
        return False
    show = item.show_ids
    return bool(show.imdb or show.tmdb or show.tvdb or show.trakt or show.simkl)


def _usable(item: Item) -> bool:
    if item.kind is MediaKind.MOVIE:
        return bool(item.ids)
    return bool(item.ids) or (
        bool(item.show_ids) and item.season is not None and item.number is not None
    )


def _norm_title(title: str) -> str:
    return " ".join(title.casefold().split())


def _position(season: int | None, number: int | None) -> str:
    s = "??" if season is None else f"{season:02d}"
    e = "??" if number is None else f"{number:02d}"
    return f"S{s}E{e}"


def _other_item(
    item: Item,
    *,
    guid: str | None,
    kind: str,
    title: str | None,
    season: int | None,
    number: int | None,
) -> str | None:
    """Why the configured server's item under *item*'s ratingKey is another item, or ``None``.

    Plex webhooks also report plays on friends' servers (reference/plex/README.md: the server
    fires the webhooks of shared users too), whose ratingKeys name unrelated items here. With
    a known ``item.guid`` the server's GUID must equal it (query such as ``?lang=en``
    ignored); without one, the title must agree when both are known, and the type too unless
    the titles agree (then a wrong type is the same library entry's extra, for the caller to
    refuse). For an episode a known season and number must agree as well.
    """
    want = guid_base(item.guid)
    if want:
        have = guid_base(guid)
        if have != want:
            return f"its guid is {have or 'unknown'}, the play's {want}"
    else:
        titled = bool(item.title.strip() and title and title.strip())
        if titled and _norm_title(item.title) != _norm_title(title or ""):
            return f"it is titled {title!r}, the play {item.title!r}"
        if not titled and kind != item.kind.value:
            return f"it is a {kind or 'item of unknown type'}, the play a {item.kind.value}"
    moved = (item.season is not None and season is not None and season != item.season) or (
        item.number is not None and number is not None and number != item.number
    )
    if moved and item.kind is MediaKind.EPISODE and kind == "episode":
        here, there = _position(season, number), _position(item.season, item.number)
        return f"it is {here}, the play {there}"
    return None


def _identity(item: Item) -> dict[str, Any]:
    return {
        "kind": item.kind.value,
        "ids": item.ids.as_dict(),
        "show_ids": item.show_ids.as_dict(),
        "season": item.season,
        "number": item.number,
    }


class Resolver:
    """The resolution chain (see the module docstring). Every collaborator is optional.

    ``server_id`` namespaces Plex ratingKeys in cache keys (ratingKeys identify an item on one
    server; Plex webhooks and Tautulli of that server share them). ``title_fallback`` enables
    the exact title + year step (needs ``trakt_search``).
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
    ) -> None:
        self._cache = cache
        self._plex = plex
        self._tautulli = tautulli
        self._trakt = trakt_search
        self._simkl = simkl_search
        self._title_fallback = title_fallback
        self._server = server_id
        self._inflight: dict[str, asyncio.Task[dict[str, Any] | None]] = {}

    async def close(self) -> None:
        """Cancel lookups still in flight (at shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- public -----------------------------------------------------------------------------

    async def resolve(self, item: Item) -> Resolution:
        """Resolve *item* (see the module docstring for the chain and the goal).

        Returns a :class:`Resolution`. Raises :class:`UnresolvedError` (``reason``, ``step``)
        when nothing usable was found, and :class:`RetryableError` (provider = the step) when a
        transient failure of a step is why the goal was not met.
        """
        guid = item.guid
        if not guid:
            parsed = None
        elif guid.startswith("plex://"):  # new-agent GUIDs carry no external id
            parsed = _PLEX_GUID
        else:
            parsed = parse_guid(guid)
        known = self._payload(item, parsed)
        if _goal(known):
            return Resolution(known, "payload")
        if parsed is not None and parsed.agent in _NOT_CATALOGUED and not _usable(known):
            raise UnresolvedError(
                f"payload: {guid} is personal media or an extra, not a catalogued "
                f"{item.kind.value}; it has no external ids",
                "payload",
            )

        # 2: an earlier resolution of the same item, by any of its handles
        cache = self._cache
        cached: Item | None = None
        for key in self._iter_keys(known, parsed):
            entry = cache.peek(key) or await cache.get(key)
            if entry is not None and entry.value is not None:
                cached = self._with_identity(known, entry)
                break
        if cached is not None and _goal(cached):
            return Resolution(cached, "cache")
        cache_hit = cached is not None
        work = _Work(item=cached or known, step="cache" if cache_hit else "payload")
        input_keys = list(self._iter_keys(work.item, parsed))

        for step, run in (
            ("plex", self._step_plex),
            ("tautulli", self._step_tautulli),
            ("trakt", self._step_trakt),
            ("simkl", self._step_simkl),
            ("title", self._step_title),
        ):
            try:
                await run(work)
            except RetryableError as exc:
                work.transient = exc
                work.fail(step, str(exc))
            except SourceUnavailableError as exc:
                work.transient = RetryableError(step, str(exc))
                work.fail(step, str(exc))
            except ProviderError as exc:  # permanent refusal of a search: a failed step
                work.fail(step, str(exc))
            if _goal(work.item):
                return await self._done(work, input_keys)

        if work.transient is not None:
            log.warning(
                "resolve.retry", item=item.label(), step=work.failed_step, reason=work.reason
            )
            raise work.transient
        if _usable(work.item):
            if work.fresh or not cache_hit:
                # Remembered too, so the next resolution of this item needs no outside call
                # until the negative answers that stopped the chain expire.
                await self._store(work, input_keys)
            if not work.fresh:
                return Resolution(work.item, "cache" if cache_hit else work.step)
            log.info(
                "resolve.partial",
                item=item.label(),
                step=work.step,
                ids=work.item.ids.as_dict(),
                show_ids=work.item.show_ids.as_dict(),
            )
            return Resolution(work.item, work.step)
        reason = work.reason or f"{work.failed_step}: no external ids and no lookup configured"
        log.warning("resolve.unresolved", item=item.label(), step=work.failed_step, reason=reason)
        raise UnresolvedError(reason, work.failed_step)

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _payload(item: Item, parsed: ParsedGuid | None) -> Item:
        """Step 1: fold the ids of the item's own GUID into it."""
        if parsed is None or not _has_ids(parsed.ids):
            return item
        if item.kind is MediaKind.MOVIE:
            return item.with_ids(ids=parsed.ids) if parsed.scope == "item" else item
        if parsed.scope == "show":
            out = item.with_ids(show_ids=parsed.ids)
            if (item.season is None and parsed.season is not None) or (
                item.number is None and parsed.number is not None
            ):
                out = replace(
                    out,
                    season=item.season if item.season is not None else parsed.season,
                    number=item.number if item.number is not None else parsed.number,
                )
            return out
        if parsed.agent in ("imdb", "tmdb", "tvdb"):  # a Guid[]-style entry names the episode
            return item.with_ids(ids=parsed.ids)
        return item

    def _iter_keys(
        self, item: Item, parsed: ParsedGuid | None, *, own_server: bool = False
    ) -> Iterator[str]:
        """Final-cache keys of *item*'s stable handles, most specific first: its GUID, its
        ratingKey (per server), its typed external ids, grandparent ratingKey or show ids with
        season/number (the handles of :func:`~crosswatchd.models.item_keys`); with title
        fallback on, an exact title + year when it has nothing else.

        RatingKeys only name an item on one server, and Plex webhooks also report plays on
        friends' servers, whose ratingKeys mean something else here. So an item with a GUID
        (every Plex webhook item) neither reads nor writes the per-server handles, unless
        *own_server* says the configured server confirmed the ratingKey is this item's; items
        without a GUID come only from this server's own sources (Tautulli).
        """
        guid = item.guid
        if guid and parsed is not None and parsed.agent and parsed.agent not in _NOT_CATALOGUED:
            base = guid.split("?", 1)[0]
            if item.kind is MediaKind.MOVIE:
                ok = parsed.scope != "show" and (
                    not base.startswith("plex://") or base.startswith("plex://movie/")
                )
            else:
                ok = base.startswith("plex://episode/") or (
                    parsed.scope == "show" and parsed.number is not None
                )
            if ok:
                yield "item:guid:" + base
        # The same typed handles as models.item_keys, generated lazily: the warm path usually
        # stops at the first one.
        handles = 0
        per_server = own_server or not guid
        if per_server and item.rating_key:
            handles += 1
            yield f"item:{self._server}:rk:{item.rating_key}"
        kind = item.kind.value
        ids = item.ids
        for name in _ID_FIELDS:
            if value := getattr(ids, name):
                handles += 1
                yield f"item:{kind}:{name}:{value}"
        if item.kind is MediaKind.EPISODE and item.season is not None and item.number is not None:
            se = f"{item.season}:{item.number}"
            if per_server and item.grandparent_rating_key:
                handles += 1
                yield f"item:{self._server}:grk:{item.grandparent_rating_key}:{se}"
            show_ids = item.show_ids
            for name in _ID_FIELDS:
                if value := getattr(show_ids, name):
                    handles += 1
                    yield f"item:show:{name}:{value}:{se}"
        if not handles and not guid and self._title_fallback:
            # Nothing but a title: the title step's own (exact, unique) answer, remembered.
            if item.kind is MediaKind.MOVIE and item.title and item.year is not None:
                yield f"item:title:movie:{item.year}:{_norm_title(item.title)}"
            elif (
                item.kind is MediaKind.EPISODE
                and item.show_title
                and item.show_year is not None
                and item.number is not None
            ):
                yield (
                    f"item:title:show:{item.show_year}:{_norm_title(item.show_title)}:"
                    f"{item.season}:{item.number}"
                )

    @staticmethod
    def _merge_identity(work: _Work, step: str, value: dict[str, Any]) -> None:
        work.add(
            step,
            ids=Ids.from_dict(value.get("ids")),
            show_ids=Ids.from_dict(value.get("show_ids")),
            season=_int_or_none(value.get("season")),
            number=_int_or_none(value.get("number")),
        )

    @staticmethod
    def _with_identity(item: Item, entry: CacheEntry) -> Item:
        """*item* with a cached final identity merged in (the warm path: keep it cheap)."""
        memo: _Identity | None = entry.memo
        if memo is None:
            value = entry.value or {}
            memo = entry.memo = _Identity(
                Ids.from_dict(value.get("ids")),
                Ids.from_dict(value.get("show_ids")),
                _int_or_none(value.get("season")),
                _int_or_none(value.get("number")),
            )
        elif memo.last_in == item and memo.last_out is not None:
            return memo.last_out
        ids = item.ids.merged(memo.ids) if _has_ids(item.ids) else memo.ids
        show_ids = item.show_ids.merged(memo.show_ids) if _has_ids(item.show_ids) else memo.show_ids
        season, number = item.season, item.number
        if item.kind is MediaKind.EPISODE:
            season = season if season is not None else memo.season
            number = number if number is not None else memo.number
        out = Item(
            item.kind,
            item.title,
            item.year,
            ids,
            item.show_title,
            item.show_year,
            show_ids,
            season,
            number,
            item.rating_key,
            item.grandparent_rating_key,
            item.guid,
        )
        memo.last_in, memo.last_out = item, out
        return out

    async def _store(self, work: _Work, input_keys: list[str]) -> None:
        keys = [*input_keys, *self._iter_keys(work.item, None, own_server=work.own_server)]
        await self._cache.put(keys, _identity(work.item), step=work.step)

    async def _done(self, work: _Work, input_keys: list[str]) -> Resolution:
        step = work.step if work.fresh else "cache"
        await self._store(work, input_keys)
        if work.fresh:
            log.info(
                "resolve.resolved",
                item=work.item.label(),
                step=step,
                ids=work.item.ids.as_dict(),
                show_ids=work.item.show_ids.as_dict(),
            )
        return Resolution(work.item, step)

    async def _ask(
        self,
        work: _Work,
        step: str,
        query: str,
        fetch: Callable[[], Awaitable[dict[str, Any] | None]],
    ) -> dict[str, Any] | None:
        """Answer *query* for *step* from the cache, or ask once (single-flight) and cache.

        Returns the positive answer, or ``None`` for a (possibly cached) "nothing found".
        Exceptions of *fetch* propagate and are not cached.
        """
        key = f"{step}:{query}"
        task = self._inflight.get(key)
        if task is None:
            entry = await self._cache.get(key)
            if entry is None:
                task = self._inflight.get(key)
                entry = self._cache.peek(key) if task is None else None
            if entry is not None:
                return entry.value
            if task is None:
                task = asyncio.create_task(self._fetch_and_store(key, step, query, fetch))
                self._inflight[key] = task
                task.add_done_callback(self._forget_task(key))
        work.fresh = True
        return await asyncio.shield(task)

    def _forget_task(self, key: str) -> Callable[[asyncio.Task[dict[str, Any] | None]], None]:
        def done(task: asyncio.Task[dict[str, Any] | None]) -> None:
            if self._inflight.get(key) is task:
                del self._inflight[key]
            if not task.cancelled():
                task.exception()  # retrieved here too, so an abandoned failure is not logged

        return done

    async def _fetch_and_store(
        self,
        key: str,
        step: str,
        query: str,
        fetch: Callable[[], Awaitable[dict[str, Any] | None]],
    ) -> dict[str, Any] | None:
        value = await fetch()
        if value is None:
            await self._cache.put_negative(key, f"{step}: nothing found for {query}", step=step)
        else:
            await self._cache.put([key], value, step=step)
        return value

    # -- step 3: Plex ---------------------------------------------------------------------

    async def _plex_meta(self, work: _Work, rating_key: str) -> PlexMetadata | None:
        plex = self._plex
        assert plex is not None

        async def fetch() -> dict[str, Any] | None:
            meta = await plex.metadata(rating_key)
            if meta is None:
                return None
            return {
                "kind": meta.kind,
                "subtype": meta.subtype,
                "guid": meta.guid,
                "title": meta.title,
                "year": meta.year,
                "ids": meta.ids.as_dict(),
                "guid_show_ids": meta.guid_show_ids.as_dict(),
                "guid_season": meta.guid_season,
                "guid_number": meta.guid_number,
                "season": meta.season,
                "number": meta.number,
                "grk": meta.grandparent_rating_key,
            }

        # ":meta:" (not the former ":rk:"): answers cached before the GUID was kept are ignored.
        value = await self._ask(work, "plex", f"{self._server}:meta:{rating_key}", fetch)
        if value is None:
            return None
        return PlexMetadata(
            rating_key=rating_key,
            kind=str(value.get("kind") or ""),
            subtype=value.get("subtype"),
            guid=value.get("guid"),
            title=str(value.get("title") or ""),
            year=_int_or_none(value.get("year")),
            ids=Ids.from_dict(value.get("ids")),
            guid_show_ids=Ids.from_dict(value.get("guid_show_ids")),
            guid_season=_int_or_none(value.get("guid_season")),
            guid_number=_int_or_none(value.get("guid_number")),
            season=_int_or_none(value.get("season")),
            number=_int_or_none(value.get("number")),
            grandparent_rating_key=value.get("grk"),
        )

    @staticmethod
    def _wrong_kind(
        source: str, rating_key: str, found: str, subtype: str | None, want: str
    ) -> NoReturn:
        what = f"{found} ({subtype})" if subtype else (found or "item of unknown type")
        raise UnresolvedError(f"{source}: ratingKey {rating_key} is a {what}, not a {want}", source)

    @staticmethod
    def _other_server(work: _Work, step: str, rating_key: str, why: str) -> None:
        """The configured server's *rating_key* is another item: skip the step, say why.

        Nothing more is asked: the server's answer stays cached (so the check costs no request
        next time) and the chain goes on with the searches.
        """
        log.info(
            "resolve.plex_other_server",
            step=step,
            item=work.item.label(),
            rating_key=rating_key,
            why=why,
        )
        work.fail(
            step,
            f"{step}: ratingKey {rating_key} is another item on the configured server ({why}); "
            "the play was probably on another Plex server",
        )

    async def _step_plex(self, work: _Work) -> None:
        if self._plex is None:
            return
        item = work.item
        rk = item.rating_key
        if not rk:
            return
        # The webhook may come from a friend's server: what this server keeps under the same
        # ratingKey (and its show) is trusted only once it is shown to be the same item.
        meta = await self._plex_meta(work, rk)
        if meta is None:
            work.fail("plex", f"plex: ratingKey {rk} not found")
            return
        work.plex_answered = True
        want = item.kind.value
        other = _other_item(
            item,
            guid=meta.guid,
            kind=meta.kind,
            title=meta.title,
            season=meta.season if meta.season is not None else meta.guid_season,
            number=meta.number if meta.number is not None else meta.guid_number,
        )
        if other is not None:
            self._other_server(work, "plex", rk, other)
            return
        if meta.kind != want:
            self._wrong_kind("plex", rk, meta.kind, meta.subtype, want)
        work.own_server = True
        if item.kind is MediaKind.MOVIE:
            work.add("plex", ids=meta.ids)
            if not meta.ids:
                work.fail("plex", f"plex: ratingKey {rk} has no external ids")
            return

        work.add(
            "plex",
            ids=meta.ids,
            show_ids=meta.guid_show_ids,
            season=meta.season if meta.season is not None else meta.guid_season,
            number=meta.number if meta.number is not None else meta.guid_number,
        )
        # This server's show key, not the webhook's (another server's shows differ).
        grk = meta.grandparent_rating_key
        if _goal(work.item):
            return
        if not grk:
            work.fail("plex", f"plex: episode ratingKey {rk} has no show ratingKey")
            return
        show = await self._plex_meta(work, grk)
        if show is None:
            work.fail("plex", f"plex: show ratingKey {grk} not found")
            return
        if show.kind != "show":
            self._wrong_kind("plex", grk, show.kind, show.subtype, "show")
        work.add("plex", show_ids=show.ids.merged(show.guid_show_ids))
        if not (show.ids or show.guid_show_ids):
            work.fail("plex", f"plex: show ratingKey {grk} has no external ids")
        elif work.item.season is None or work.item.number is None:
            work.fail("plex", "plex: season or episode number unknown")

    # -- step 4: Tautulli -------------------------------------------------------------------

    async def _tautulli_meta(self, work: _Work, rating_key: str) -> dict[str, Any] | None:
        source = self._tautulli
        assert source is not None

        async def fetch() -> dict[str, Any] | None:
            data = await source.get_metadata(rating_key)
            if not data:
                return None
            raw_guid = str(data.get("guid") or "")
            parsed = parse_guid(raw_guid)
            guids = data.get("guids")
            grand = data.get("grandparent_guids")
            return {
                "kind": str(data.get("media_type") or "").lower(),
                "guid": raw_guid or None,
                "title": str(data.get("title") or ""),
                "ids": ids_from_guid_list(guids if isinstance(guids, list) else []).as_dict(),
                "show_ids": ids_from_guid_list(grand if isinstance(grand, list) else []).as_dict(),
                "guid_scope": parsed.scope,
                "guid_ids": parsed.ids.as_dict(),
                "guid_season": parsed.season,
                "guid_number": parsed.number,
                "season": _int_or_none(data.get("parent_media_index")),
                "number": _int_or_none(data.get("media_index")),
                "grk": str(data.get("grandparent_rating_key") or "") or None,
            }

        # ":meta:" (not the former ":rk:"): answers cached before the GUID was kept are ignored.
        return await self._ask(work, "tautulli", f"{self._server}:meta:{rating_key}", fetch)

    async def _step_tautulli(self, work: _Work) -> None:
        if self._tautulli is None:
            return
        item = work.item
        rk = item.rating_key
        if not rk or work.plex_answered:
            return
        want = item.kind.value
        data = await self._tautulli_meta(work, rk)
        if data is None:
            work.fail("tautulli", f"tautulli: ratingKey {rk} not found")
            return
        kind = data["kind"]
        scope = data.get("guid_scope")
        season = _int_or_none(data.get("season"))
        number = _int_or_none(data.get("number"))
        if scope == "show":
            season = season if season is not None else _int_or_none(data.get("guid_season"))
            number = number if number is not None else _int_or_none(data.get("guid_number"))
        # Tautulli watches the configured server: a webhook from a friend's server names
        # another item here under the same ratingKey (see _step_plex).
        other = _other_item(
            item,
            guid=data.get("guid"),
            kind=kind,
            title=data.get("title"),
            season=season,
            number=number,
        )
        if other is not None:
            self._other_server(work, "tautulli", rk, other)
            return
        if kind != want:
            self._wrong_kind("tautulli", rk, kind, None, want)
        work.own_server = True
        ids = Ids.from_dict(data.get("ids"))
        guid_ids = Ids.from_dict(data.get("guid_ids"))
        if item.kind is MediaKind.MOVIE:
            work.add("tautulli", ids=ids.merged(guid_ids) if scope == "item" else ids)
            if not work.item.ids:
                work.fail("tautulli", f"tautulli: ratingKey {rk} has no external ids")
            return
        show_ids = Ids.from_dict(data.get("show_ids"))
        if scope == "show":
            show_ids = show_ids.merged(guid_ids)
        work.add("tautulli", ids=ids, show_ids=show_ids, season=season, number=number)
        grk = data.get("grk")  # this server's show key, not the webhook's
        if _goal(work.item):
            return
        if not grk:
            work.fail("tautulli", f"tautulli: episode ratingKey {rk} has no show ids")
            return
        show = await self._tautulli_meta(work, grk)  # older Tautulli: no grandparent_guids
        if show is None:
            work.fail("tautulli", f"tautulli: show ratingKey {grk} not found")
            return
        if show["kind"] != "show":
            self._wrong_kind("tautulli", grk, show["kind"], None, "show")
        work.add("tautulli", show_ids=Ids.from_dict(show.get("ids")))
        if not _goal(work.item):
            work.fail("tautulli", f"tautulli: no show ids or episode number for ratingKey {rk}")

    # -- step 5: Trakt search ---------------------------------------------------------------

    async def _step_trakt(self, work: _Work) -> None:
        trakt = self._trakt
        if trakt is None:
            return
        item = work.item
        kind: SearchKind = "movie" if item.kind is MediaKind.MOVIE else "episode"
        pick = next(((n, v) for n in _ID_ORDER[kind] if (v := getattr(item.ids, n))), None)
        if pick is None:
            work.skip("trakt", f"trakt: no imdb, tmdb or tvdb id of the {kind} to look up")
            return
        id_type, value = pick

        async def fetch() -> dict[str, Any] | None:
            hits = await trakt.by_id(id_type, value, kind)
            if not hits:
                return None
            hit = hits[0]
            return {
                "ids": hit.ids.as_dict(),
                "show_ids": hit.show_ids.as_dict(),
                "season": hit.season,
                "number": hit.number,
            }

        found = await self._ask(work, "trakt", f"{kind}:{id_type}:{value}", fetch)
        if found is None:
            work.fail("trakt", f"trakt: no match for {kind} {id_type} {value}")
            return
        self._merge_identity(work, "trakt", found)

    # -- step 6: SIMKL search ---------------------------------------------------------------

    async def _step_simkl(self, work: _Work) -> None:
        simkl = self._simkl
        if simkl is None:
            return
        item = work.item
        kind: Literal["movie", "show"]
        if item.kind is MediaKind.MOVIE:
            kind, ids = "movie", item.ids
        else:
            kind, ids = "show", item.show_ids
            if not ids:
                work.skip("simkl", "simkl: cannot look up an episode without its show's ids")
                return
        pick = next(((n, v) for n in _SIMKL_ID_ORDER if (v := getattr(ids, n))), None)
        if pick is None:
            work.skip("simkl", f"simkl: no imdb, tmdb, tvdb or anidb id of the {kind} to look up")
            return
        id_type, value = pick

        async def fetch() -> dict[str, Any] | None:
            hits = await simkl.by_id(id_type, value, kind)
            return {"ids": hits[0].ids.as_dict()} if hits else None

        found = await self._ask(work, "simkl", f"{kind}:{id_type}:{value}", fetch)
        if found is None:
            work.fail("simkl", f"simkl: no match for {kind} {id_type} {value}")
            return
        # SIMKL echoes only some ids; the queried one is known to be right.
        hit_ids = Ids.from_dict(found.get("ids")).merged(Ids(**{id_type: value}))
        if kind == "movie":
            work.add("simkl", ids=hit_ids)
        else:
            work.add("simkl", show_ids=hit_ids)
            if work.item.season is None or work.item.number is None:
                work.fail("simkl", "simkl: season or episode number unknown")

    # -- step 7: exact title + year -----------------------------------------------------------

    async def _step_title(self, work: _Work) -> None:
        trakt = self._trakt
        if not self._title_fallback or trakt is None:
            return
        item = work.item
        kind: Literal["movie", "show"]
        if item.kind is MediaKind.MOVIE:
            kind, title, year = "movie", item.title, item.year
        else:
            # An episode's own year is never its show's year.
            kind, title, year = "show", item.show_title or "", item.show_year
        if not title.strip() or year is None:
            work.fail(
                "title",
                f"title: the {kind}'s {'title' if not title.strip() else 'year'} is unknown; "
                "exact title + year search needs both",
            )
            return
        wanted = _norm_title(title)

        async def fetch() -> dict[str, Any] | None:
            hits = await trakt.by_title(kind, title, year)
            exact = [h for h in hits if _norm_title(h.title) == wanted and h.year == year]
            if len({h.ids for h in exact}) != 1:
                return None
            return {"ids": exact[0].ids.as_dict()}

        found = await self._ask(work, "title", f"{kind}:{year}:{wanted}", fetch)
        if found is None:
            work.fail("title", f"title: no single exact match for {kind} {title!r} ({year})")
            return
        ids = Ids.from_dict(found.get("ids"))
        if kind == "movie":
            work.add("title", ids=ids)
        else:
            work.add("title", show_ids=ids)
            if work.item.season is None or work.item.number is None:
                work.fail("title", "title: season or episode number unknown")


def build_resolver(
    settings: Settings,
    *,
    session: aiohttp.ClientSession,
    cache: IdCache,
    trakt_limiter: Limiter | None,
    simkl_limiter: Limiter | None,
    tautulli: MetadataSource | None,
) -> Resolver:
    """A :class:`Resolver` with the steps the settings enable and the services configured.

    Plex: ``resolver.use_plex`` and both ``plex.url`` and ``plex.token``. Tautulli:
    ``resolver.use_tautulli`` and a *tautulli* source. Trakt/SIMKL search:
    ``resolver.use_search`` and the provider enabled with a client id; the provider's
    *limiter* is shared (one is built from the settings' GET limits when ``None``). Title
    fallback: ``resolver.title_fallback``.
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
        title_fallback=rs.title_fallback,
    )
