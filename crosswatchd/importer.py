"""Backfill of Tautulli play history into the outbox (``crosswatchd import tautulli``).

Flow, one history page at a time (memory stays flat however long the history is)::

    get_history page ──filter──▶ completed movie/episode plays of allowed accounts
        ──ids from the row guid──▶ enough? ──no──▶ get_metadata(rating_key)
                                    still not? ──▶ get_metadata(grandparent_rating_key)
        ──▶ PlayEvent(source=import, action=watched, occurred_at=row.stopped)
        ──▶ outbox.enqueue_many() in chunks (a dry run: into a scratch copy of the outbox)

Paging (:class:`~crosswatchd.sources.tautulli_history.HistoryPager`, shared with reconcile) is
newest first and ends at the last page, or at a safety stop: a page made only of rows already
seen (a server ignoring ``start``), or ``page_cap`` pages. A row seen twice (history shifting
while we page) counts once.

Every completed play (``watched_status == 1``) is its own play — rewatches included — with
``watched_at`` = the row's ``stopped`` (Unix seconds, so UTC). Plays go through the same outbox
as webhook plays, so its dedupe (same account and item within the dedupe window), rate limits,
batching and crash safety apply; plays the outbox already has for every target are not
enqueued again, so re-running an import adds nothing. A play whose ids stay incomplete is still
enqueued (the resolver parks it visibly later) and is listed as *unresolved* with a reason.
Every play names the Plex server Tautulli watches (``get_server_identity``: ``Item.server``),
so its ratingKeys dedupe against that server's webhook plays, never another server's.

Plays of HAMA libraries (``com.plexapp.agents.hama://anidb-…``) are judged as the resolver's
``anime`` step maps them (:func:`~crosswatchd.resolve.anime.map_item` on the stored
Anime-Lists file): one the list cannot map is listed as unresolved with the list's reason
(no ``get_metadata`` call can help it); the play itself is enqueued as the row has it and
mapped when it is delivered, as a webhook play of the same GUID is.

Metadata answers (including "item gone") are read as the resolver reads them
(:class:`~crosswatchd.resolve.tautulli.TautulliMetadata`) and cached per ``rating_key`` for the
run: each key is fetched at most once, with a few lookups in flight at a time. A rating_key may
have been given to another item since the play (a library rebuilt years ago), so an answer is
used only when it is the row's item, as the resolver decides it
(:func:`~crosswatchd.resolve.same.other_item`): the same ``guid`` when the row has one, else the
same title; the same ``media_type``; for an episode the same season and number (a show: the
row's show title). Otherwise the play stays unresolved and says so.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import structlog

from crosswatchd.animelists import REASON_MARK, Unmapped
from crosswatchd.animelists_store import AnimeListStore, ListUnavailable
from crosswatchd.errors import ConfigError, SourceUnavailableError
from crosswatchd.models import (
    DEFAULT_PROFILE,
    Action,
    Ids,
    Item,
    MediaKind,
    PlayEvent,
    Source,
    format_utc,
)
from crosswatchd.outbox import Outbox, scratch_copy
from crosswatchd.resolve.anime import map_item
from crosswatchd.resolve.same import other_item
from crosswatchd.resolve.tautulli import TautulliMetadata
from crosswatchd.sources.guids import ParsedGuid, anidb_guid, parse_guid
from crosswatchd.sources.tautulli_api import api_int
from crosswatchd.sources.tautulli_history import ROW_KINDS, HistoryPager, play_of_row

if TYPE_CHECKING:
    from crosswatchd.sources.tautulli_api import TautulliClient

__all__ = ["ImportSummary", "format_summary", "run_import"]

log = structlog.get_logger(__name__)

#: Events per ``enqueue_many`` transaction.
CHUNK_SIZE = 500
#: Plays kept in :attr:`ImportSummary.sample`.
SAMPLE_SIZE = 10
#: get_metadata lookups in flight at once (Tautulli asks the Plex server for each).
METADATA_CONCURRENCY = 4
#: Unresolved items (and sample plays) shown by :func:`format_summary`.
SHOW_MAX = 25


@dataclass
class ImportSummary:
    """What an import saw and did.

    Counts are of history rows (``rows_seen``: distinct rows read; the ``skipped_*`` ones) or of
    completed plays (``plays``, ``enqueued``, ``already_known``, ``unresolved_plays``).
    ``enqueued`` is plays that created at least one delivery (in a dry run: that would);
    ``already_known`` plays every target already had (queued or delivered, within the dedupe
    window). ``unresolved`` holds one ``(label, reason)`` per distinct item still lacking ids;
    ``unresolved_plays`` counts their plays. ``by_kind`` counts plays per ``"movie"`` /
    ``"episode"``; ``sample`` holds the first plays (newest first). ``safety_stop`` says why
    paging stopped early, if it did; ``notes`` are warnings for the user; ``anime_waiting``
    counts AniDB plays enqueued before any Anime-Lists file could be had.
    """

    rows_seen: int = 0
    plays: int = 0
    skipped_incomplete: int = 0
    skipped_media_type: int = 0
    skipped_user: int = 0
    unresolved: list[tuple[str, str]] = field(default_factory=list)
    enqueued: int = 0
    already_known: int = 0
    metadata_calls: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    sample: list[PlayEvent] = field(default_factory=list)
    unresolved_plays: int = 0
    skipped_repeated: int = 0
    pages: int = 0
    records_filtered: int = 0
    safety_stop: str | None = None
    notes: list[str] = field(default_factory=list)
    #: AniDB plays enqueued while no Anime-Lists file could be had: the daemon maps them later.
    anime_waiting: int = 0


# -- row parsing ------------------------------------------------------------------------------


def _any_id(ids: Ids) -> bool:
    # Same as bool(ids), without the generator (this runs several times per row).
    return bool(ids.imdb or ids.tmdb or ids.tvdb or ids.trakt or ids.simkl or ids.anidb)


def _has_enough_ids(item: Item) -> bool:
    """Movie: imdb or tmdb. Episode: its own ids, or show ids plus season and number."""
    if item.kind is MediaKind.MOVIE:
        return bool(item.ids.imdb or item.ids.tmdb)
    if _any_id(item.ids):
        return True
    return _any_id(item.show_ids) and item.season is not None and item.number is not None


# -- metadata ---------------------------------------------------------------------------------


class _MetadataCache:
    """``get_metadata`` answers per rating_key for one run; ``None`` = the item is gone."""

    def __init__(self, client: TautulliClient, concurrency: int) -> None:
        self._client = client
        self._concurrency = max(1, concurrency)
        self._entries: dict[str, TautulliMetadata | None] = {}
        self.calls = 0

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: str | None) -> TautulliMetadata | None:
        return self._entries.get(key) if key else None

    async def fetch(self, keys: Iterable[str]) -> None:
        """Fetch every key not cached yet, a few at a time. Raises SourceUnavailableError."""
        missing = iter([k for k in dict.fromkeys(keys) if k not in self._entries])

        async def worker() -> None:
            for key in missing:  # a shared iterator: each key goes to one worker
                data = await self._client.get_metadata(key)
                self.calls += 1
                self._entries[key] = TautulliMetadata.from_data(data) if data else None

        tasks = [asyncio.create_task(worker()) for _ in range(self._concurrency)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


def _other(item: Item, meta: TautulliMetadata, *, show: bool = False) -> str | None:
    """Why *meta* (get_metadata of the row's rating_key; *show*: of its show's) is another
    item now, or None (:func:`~crosswatchd.resolve.same.other_item`, types checked too)."""
    return other_item(item, meta, show=show, same_kind=True)


def _with_item_meta(item: Item, meta: TautulliMetadata) -> Item:
    """Merge an item's own metadata (ids; for an episode also show ids, S/E, show key)."""
    if item.kind is MediaKind.MOVIE:
        return replace(item.with_ids(ids=meta.ids), year=item.year or meta.year)
    season, number = meta.position
    return replace(
        item.with_ids(ids=meta.ids, show_ids=meta.show_ids),
        season=item.season if item.season is not None else season,
        number=item.number if item.number is not None else number,
        # The item is confirmed (same guid): its show key now beats the row's old one.
        grandparent_rating_key=meta.grandparent_rating_key or item.grandparent_rating_key,
    )


def _with_show_meta(item: Item, meta: TautulliMetadata) -> Item:
    """Merge a show's metadata (its own ids are the episode's show ids)."""
    merged = item.with_ids(show_ids=meta.ids.merged(meta.show_ids))
    return replace(
        merged,
        show_title=item.show_title or meta.title or None,
        show_year=item.show_year or meta.year,
    )


def _unresolved_reason(item: Item, cache: _MetadataCache, anime: str | None = None) -> str:
    """Why *item* still lacks ids, in words a user can check against Plex (*anime*: the
    Anime-Lists mapping's reason, when that is why)."""
    if anime is not None:
        return anime
    rk, grk = item.rating_key, item.grandparent_rating_key
    where = f"guid {item.guid}" if item.guid else "no guid"
    meta = cache.get(rk)
    if meta is not None and (why := _other(item, meta)):
        return f"rating_key {rk} now belongs to another item ({why}); {where}"
    if item.kind is MediaKind.MOVIE:
        if not rk:
            return f"no imdb/tmdb id in the history row ({where}) and no rating_key to look up"
        if cache.get(rk) is None:
            return f"gone from Plex (get_metadata rating_key {rk} is empty); {where}"
        return f"Plex metadata has no imdb/tmdb id (rating_key {rk}, {where})"
    if item.show_ids and (item.season is None or item.number is None):
        return f"show ids known but no season/episode number (rating_key {rk})"
    show = cache.get(grk)
    if show is not None and (why := _other(item, show, show=True)):
        return f"show rating_key {grk} now belongs to another item ({why}); {where}"
    episode_gone = bool(rk) and rk in cache and cache.get(rk) is None
    show_gone = bool(grk) and grk in cache and cache.get(grk) is None
    if (episode_gone or not rk) and (show_gone or not grk):
        return (
            f"neither the episode (rating_key {rk or '-'}) nor its show "
            f"(rating_key {grk or '-'}) is on Plex any more; {where}"
        )
    return (
        f"Plex metadata has no ids for the episode (rating_key {rk or '-'}) "
        f"or its show (rating_key {grk or '-'}); {where}"
    )


# -- the import -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Draft:
    item: Item
    account: str
    occurred_at: datetime
    progress_pct: float | None
    enough: bool  # _has_enough_ids(item), kept current as ids are merged in
    anime: str | None = None  # why the Anime-Lists mapping cannot map this AniDB play


def _draft(
    row: dict[str, Any],
    allowed: frozenset[str],
    summary: ImportSummary,
    parse: Callable[[str], ParsedGuid],
    server: str | None,
    anime: AnimeListStore | None = None,
) -> _Draft | None:
    """A play from one row, or None (counted as skipped) when the row is not one of ours.
    An AniDB play is judged by the Anime-Lists mapping *anime* (when given)."""
    kind = ROW_KINDS.get(str(row.get("media_type") or ""))
    if kind is None or api_int(row.get("live")):
        summary.skipped_media_type += 1
        return None
    if str(row.get("user") or "").strip().casefold() not in allowed:
        summary.skipped_user += 1
        return None
    play = play_of_row(row, parse, server)
    if isinstance(play, str):
        summary.skipped_incomplete += 1
        return None
    item = play.item
    enough, why = _has_enough_ids(item), None
    guid = anidb_guid(item.guid) if anime is not None and item.guid else None
    if guid is not None:
        assert anime is not None
        mapped = map_item(item, guid, anime)
        if isinstance(mapped, Unmapped):
            enough, why = False, mapped.reason
        else:  # mapped, or waiting for the list: the daemon maps it when it delivers it
            enough = True
            summary.anime_waiting += isinstance(mapped, ListUnavailable)
    return _Draft(
        item=item,
        account=play.account,
        occurred_at=play.watched_at,
        progress_pct=play.progress_pct,
        enough=enough,
        anime=why,
    )


async def _resolve(drafts: list[_Draft], cache: _MetadataCache) -> None:
    """Fill ids from get_metadata where the rows lack them (items first, then shows)."""
    lacking = [d for d in drafts if not d.enough and d.anime is None]
    wanted = [d.item.rating_key for d in lacking if d.item.rating_key]
    if not wanted:
        return
    await cache.fetch(wanted)
    episodes: list[_Draft] = []
    for d in lacking:
        meta = cache.get(d.item.rating_key)
        if meta is not None:
            if _other(d.item, meta) is not None:
                continue  # the key is another item's now: unresolved (see _unresolved_reason)
            d.item = _with_item_meta(d.item, meta)
            d.enough = _has_enough_ids(d.item)
        if not d.enough and d.item.kind is MediaKind.EPISODE:
            episodes.append(d)
    shows = [d.item.grandparent_rating_key for d in episodes if d.item.grandparent_rating_key]
    if not shows:
        return
    await cache.fetch(shows)
    for d in episodes:
        meta = cache.get(d.item.grandparent_rating_key)
        if meta is not None and _other(d.item, meta, show=True) is None:
            d.item = _with_show_meta(d.item, meta)
            d.enough = _has_enough_ids(d.item)


async def _settle_chunk(events: list[PlayEvent], outbox: Outbox, summary: ImportSummary) -> None:
    """Enqueue one chunk; the outbox dedupes against what it holds and within the chunk."""
    for result in await outbox.enqueue_many(events, keep_duplicates=False):
        if result.new_deliveries > 0:
            summary.enqueued += 1
        else:  # every target already has this play (queued or delivered) within the window
            summary.already_known += 1


class _Writer:
    """Settles event chunks in order in a background task.

    SQLite work runs in the outbox's thread, so while one chunk commits the next history page
    is fetched and parsed. At most ``depth`` chunks wait, which keeps memory flat. A failure
    of the writer surfaces at the next :meth:`put` or at :meth:`finish`.
    """

    def __init__(self, outbox: Outbox, summary: ImportSummary, depth: int = 2) -> None:
        self._queue: asyncio.Queue[list[PlayEvent] | None] = asyncio.Queue(maxsize=depth)
        self._outbox = outbox
        self._summary = summary
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while (chunk := await self._queue.get()) is not None:
            await _settle_chunk(chunk, self._outbox, self._summary)

    async def put(self, chunk: list[PlayEvent] | None) -> None:
        """Queue *chunk* (``None``: no more); raises what the writer raised, if it failed."""
        put = asyncio.ensure_future(self._queue.put(chunk))
        await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
        if self._task.done():
            self._task.result()

    async def finish(self) -> None:
        """Wait until every queued chunk is settled."""
        await self.put(None)
        await self._task

    async def abort(self) -> None:
        """Stop without settling what is still queued."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def _page_events(
    rows: list[dict[str, Any]],
    allowed: frozenset[str],
    cache: _MetadataCache,
    summary: ImportSummary,
    unresolved: dict[tuple[str, str], None],
    parse: Callable[[str], ParsedGuid],
    server: str | None,
    profile_of: Callable[[str], str],
    anime: AnimeListStore | None = None,
) -> list[PlayEvent]:
    """The plays of one page of new rows, with ids filled in and each routed to the profile
    *profile_of* names for its Tautulli user; updates the counts."""
    drafts = [
        d for row in rows if (d := _draft(row, allowed, summary, parse, server, anime)) is not None
    ]
    await _resolve(drafts, cache)
    events: list[PlayEvent] = []
    for d in drafts:
        event = PlayEvent(
            source=Source.IMPORT,
            action=Action.WATCHED,
            account=d.account,
            item=d.item,
            occurred_at=d.occurred_at,
            progress_pct=d.progress_pct,
            profile=profile_of(d.account),
        )
        events.append(event)
        kind = d.item.kind.value
        summary.by_kind[kind] = summary.by_kind.get(kind, 0) + 1
        if len(summary.sample) < SAMPLE_SIZE:
            summary.sample.append(event)
        if not d.enough:
            summary.unresolved_plays += 1
            unresolved.setdefault((d.item.label(), _unresolved_reason(d.item, cache, d.anime)))
    summary.plays += len(events)
    summary.metadata_calls = cache.calls
    return events


async def _check_users(
    client: TautulliClient, users: Sequence[str], summary: ImportSummary
) -> list[str]:
    """The wanted usernames; raises ConfigError listing the server's users when none."""
    wanted = list(dict.fromkeys(u.strip() for u in users if u and u.strip()))
    server_users = await client.get_users()
    listing = ", ".join(server_users) if server_users else "(none)"
    if not wanted:
        raise ConfigError(
            "tautulli.users",
            f"no account filter; set tautulli.users or pass --user NAME "
            f"(users on this Tautulli: {listing})",
        )
    known = set(server_users)
    summary.notes.extend(
        f"user {name!r} is not a Tautulli user (known: {listing})"
        for name in wanted
        if name not in known
    )
    return wanted


async def run_import(
    client: TautulliClient,
    outbox: Outbox | None,
    *,
    users: Sequence[str],
    since: date | None = None,
    dry_run: bool = False,
    page_size: int = 1000,
    page_cap: int = 10_000,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
    metadata_concurrency: int = METADATA_CONCURRENCY,
    profile_of: Callable[[str], str] | None = None,
    anime: AnimeListStore | None = None,
) -> ImportSummary:
    """Import the Tautulli play history of *users* into *outbox*.

    ``users`` are Tautulli usernames (``tautulli.users`` or ``--user``); with none, raises
    :class:`ConfigError` (key ``tautulli.users``) naming the server's users (``get_users``).
    ``since`` keeps plays on or after that day (Tautulli's ``after``, judged by the server in
    its own time zone). ``dry_run`` writes nothing: *outbox* (may be ``None``) is only read,
    to count plays it already has. ``progress(rows_read, rows_total)`` is called after each
    page. ``page_size`` rows per ``get_history`` call; at most ``page_cap`` pages;
    ``chunk_size`` events per outbox transaction; ``metadata_concurrency`` get_metadata calls
    in flight at once. ``profile_of(username)`` names the household profile a user's plays
    belong to (default: the ``default`` profile); usernames compare case-insensitively.
    *anime* (the Anime-Lists store, loaded) judges AniDB plays.

    Returns the :class:`ImportSummary`. Raises :class:`SourceUnavailableError` when Tautulli
    fails (plays of the pages read before stay enqueued; a re-run skips them), ``ValueError``
    for a real run without an outbox. Reference: api_v2_reference.md, "get_history",
    "get_metadata", "get_users", "get_server_identity".
    """
    if outbox is None and not dry_run:
        raise ValueError("a real import needs an outbox")
    if page_size < 1 or page_cap < 1 or chunk_size < 1:
        raise ValueError("page_size, page_cap and chunk_size must be positive")
    options: dict[str, Any] = {
        "users": users,
        "since": since,
        "page_size": page_size,
        "page_cap": page_cap,
        "progress": progress,
        "chunk_size": chunk_size,
        "metadata_concurrency": metadata_concurrency,
        "profile_of": profile_of or (lambda _user: DEFAULT_PROFILE),
        "anime": anime,
    }
    if dry_run:
        # Import for real into a throw-away copy: the counts are exactly what a real run
        # would enqueue (dedupe against the outbox and within the import alike).
        async with scratch_copy(outbox) as scratch:
            return await _import(client, scratch, dry_run=True, **options)
    assert outbox is not None
    return await _import(client, outbox, dry_run=False, **options)


async def _import(
    client: TautulliClient,
    outbox: Outbox,
    *,
    users: Sequence[str],
    since: date | None,
    dry_run: bool,
    page_size: int,
    page_cap: int,
    progress: Callable[[int, int], None] | None,
    chunk_size: int,
    metadata_concurrency: int,
    profile_of: Callable[[str], str],
    anime: AnimeListStore | None,
) -> ImportSummary:
    summary = ImportSummary()
    wanted = await _check_users(client, users, summary)
    server = await client.get_server_identity()
    if server is None:
        summary.notes.append(
            "Tautulli names no Plex server (get_server_identity): the plays' ratingKeys are"
            " not scoped by server, so they do not dedupe against webhook plays by ratingKey"
        )
    allowed = frozenset(name.casefold() for name in wanted)
    server_user = wanted[0] if len(wanted) == 1 else None
    cache = _MetadataCache(client, metadata_concurrency)
    # Items recur (rewatches, episodes of one show): parse each distinct guid once per run.
    parse = functools.lru_cache(maxsize=65_536)(parse_guid)
    unresolved: dict[tuple[str, str], None] = {}
    pager = HistoryPager(
        client, since=since, user=server_user, page_size=page_size, page_cap=page_cap
    )
    log.info("import.start", users=wanted, since=since and since.isoformat(), dry_run=dry_run)
    writer = _Writer(outbox, summary)
    try:
        try:
            async for fresh in pager.rows():
                events = await _page_events(
                    fresh, allowed, cache, summary, unresolved, parse, server, profile_of, anime
                )
                for offset in range(0, len(events), chunk_size):
                    await writer.put(events[offset : offset + chunk_size])
                if progress is not None:
                    progress(pager.rows_seen, max(pager.records_filtered, pager.rows_seen))
                log.debug("import.page", page=pager.pages, rows=len(fresh), plays=len(events))
        finally:
            summary.pages, summary.records_filtered = pager.pages, pager.records_filtered
            summary.rows_seen, summary.skipped_repeated = pager.rows_seen, pager.skipped_repeated
            summary.safety_stop = pager.safety_stop
        await writer.finish()
    except SourceUnavailableError:
        await writer.finish()  # Tautulli failed: keep the plays of the pages already read
        raise
    except BaseException:
        await writer.abort()
        raise
    summary.unresolved = list(unresolved)
    if summary.anime_waiting and anime is not None:
        why = f" ({anime.last_error})" if anime.last_error else ""
        summary.notes.append(
            f"{summary.anime_waiting} AniDB play(s) wait for the {REASON_MARK} mapping, which"
            f" could not be fetched{why}: the daemon maps and sends them once it is"
        )
    if summary.safety_stop:
        log.warning("import.safety_stop", reason=summary.safety_stop, pages=summary.pages)
    log.info(
        "import.done",
        dry_run=dry_run,
        rows=summary.rows_seen,
        plays=summary.plays,
        enqueued=summary.enqueued,
        already_known=summary.already_known,
        unresolved=summary.unresolved_plays,
        metadata_calls=summary.metadata_calls,
    )
    return summary


# -- report -----------------------------------------------------------------------------------


def _n(value: int) -> str:
    return f"{value:,}"


def _sample_line(event: PlayEvent) -> str:
    item = event.item
    ids = item.ids.as_dict() or {f"show {k}": v for k, v in item.show_ids.as_dict().items()}
    id_text = " ".join(f"{k}={v}" for k, v in ids.items()) or "no ids yet"
    return f"    {format_utc(event.occurred_at)}  {event.account}  {item.label()}  [{id_text}]"


def format_summary(summary: ImportSummary, dry_run: bool) -> str:
    """A multi-line report of *summary*; the last line is the one-line summary.

    A dry run also lists a sample of the plays that would be sent. Unresolved items are
    listed with their reasons (at most :data:`SHOW_MAX`, then a count of the rest).
    """
    lines = [f"Tautulli import{' (dry run: nothing written)' if dry_run else ''}"]
    lines.append(
        f"  history rows read:  {_n(summary.rows_seen)}"
        f" ({summary.pages} page{'s' if summary.pages != 1 else ''})"
    )
    kinds = ", ".join(
        f"{_n(v)} {k}{'s' if v != 1 else ''}" for k, v in sorted(summary.by_kind.items())
    )
    lines.append(f"  completed plays:    {_n(summary.plays)}" + (f" ({kinds})" if kinds else ""))
    skipped = [
        (summary.skipped_incomplete, "not completed"),
        (summary.skipped_media_type, "not a movie or episode"),
        (summary.skipped_user, "other accounts"),
        (summary.skipped_repeated, "repeated rows"),
    ]
    skipped_text = ", ".join(f"{_n(n)} {what}" for n, what in skipped if n)
    lines.append(f"  skipped rows:       {skipped_text or 'none'}")
    lines.append(f"  get_metadata calls: {_n(summary.metadata_calls)}")
    if summary.safety_stop:
        lines.append(f"  safety stop:        {summary.safety_stop}")
    lines.extend(f"  note: {note}" for note in summary.notes)
    if dry_run and summary.sample:
        lines.append(f"  sample (newest {len(summary.sample)}):")
        lines.extend(_sample_line(event) for event in summary.sample)
    if summary.unresolved:
        lines.append(
            f"  unresolved ({_n(len(summary.unresolved))} items, "
            f"{_n(summary.unresolved_plays)} plays"
            f"{'' if dry_run else '; parked until ids are found'}):"
        )
        lines.extend(f"    {label}: {reason}" for label, reason in summary.unresolved[:SHOW_MAX])
        if len(summary.unresolved) > SHOW_MAX:
            lines.append(f"    … and {_n(len(summary.unresolved) - SHOW_MAX)} more")
    tail = (
        f"{_n(summary.plays)} plays, {_n(summary.already_known)} already known, "
        f"{_n(summary.unresolved_plays)} unresolved, {_n(summary.rows_seen)} rows read"
    )
    if dry_run:
        lines.append(
            f"dry run: {_n(summary.enqueued)} would be enqueued of {tail}; nothing written"
        )
    else:
        lines.append(f"import: {_n(summary.enqueued)} enqueued of {tail}")
    return "\n".join(lines)
